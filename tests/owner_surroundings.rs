//! The owner copes with what happens around it: its predecessor SIGKILLed with
//! detached processes running (they are started again, stopped ones are not),
//! Nx's database appearing after the sidecar attached (found, counted by health),
//! and the socket folder taken by another local user first (a private folder
//! is used, and every command still works).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, alive, json_of, run_ok, supervised_by};
use serde_json::{Value, json};

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn process(sidecar: &mut Sidecar, name: &str) -> Option<Value> {
    let list = sidecar.request("nxops/process/list", json!({})).unwrap();
    list["processes"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned()
}

fn pid(view: &Value) -> Option<u32> {
    view["pid"].as_u64().map(|p| p as u32)
}

fn detached_file(scratch: &Scratch, ws: &Path) -> PathBuf {
    let key = nxops::config::workspace_key(ws);
    scratch.home().join(".local/state/nxops/workspaces").join(key).join("detached.json")
}

#[test]
fn a_detached_process_outlives_its_owners_sigkill_and_a_stopped_one_is_not_revived() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut first = Sidecar::started(&scratch, &ws);
    let cli = |args: &[&str]| json_of(&run_ok(scratch.nxops(&ws).arg("--json").args(args)));

    // What `nxops proc start NAME -- CMD` sends: detached, the session of nobody.
    let tool = cli(&["proc", "start", "tool", "--", "sleep", "1000"]);
    assert_eq!(tool["session"], Value::Null);
    let old = pid(&tool).unwrap();
    let gone = cli(&["proc", "start", "gone", "--", "sleep", "1001"]);
    let gone_pid = pid(&gone).unwrap();
    cli(&["proc", "stop", "gone"]);
    assert!(!alive(gone_pid));
    // A client's own process (its connection's session) is not detached.
    first.request("nxops/process/start", json!({"name": "mine", "command": "sleep", "args": ["1002"]})).unwrap();
    let spec_before = process(&mut first, "tool").unwrap()["spec"].clone();
    // Answered only once on disk, so the file says it already.
    let saved: Value = serde_json::from_slice(&std::fs::read(detached_file(&scratch, &ws)).unwrap()).unwrap();
    assert_eq!(saved["processes"], json!({"tool": {"command": "sleep", "args": ["1000"]}}), "{saved}");

    first.child.kill().unwrap();
    let _ = first.child.wait();
    let mut second = Sidecar::started(&scratch, &ws);
    eventually("tool runs again under the new owner", || {
        process(&mut second, "tool").and_then(|p| pid(&p)).is_some_and(|p| p != old && alive(p))
    });
    assert!(!alive(old), "the crashed owner's run was ended as a leftover, not adopted");
    let tool = process(&mut second, "tool").unwrap();
    assert_eq!(tool["spec"], spec_before, "started again from the same spec");
    assert_eq!((tool["state"].as_str(), tool["session"].clone()), (Some("running"), Value::Null));
    assert!(process(&mut second, "gone").is_none(), "a process stopped by the user is not revived");
    assert!(process(&mut second, "mine").is_none(), "the dead owner's client took its process with it");

    // Stopped now, it is forgotten for good: a third owner after another crash does not start it.
    let stopped = second.request("nxops/process/stop", json!({"name": "tool"})).unwrap();
    assert_eq!(stopped["state"], "stopped");
    second.child.kill().unwrap();
    let _ = second.child.wait();
    let mut third = Sidecar::started(&scratch, &ws);
    let list = third.request("nxops/process/list", json!({})).unwrap();
    assert_eq!(list["processes"], json!([]), "{list}");
    drop(third);
    assert!(supervised_by(scratch.home()).is_empty(), "nothing is left running");
}

#[test]
fn a_detached_file_that_is_broken_is_moved_aside_and_the_owner_starts_anyway() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let file = detached_file(&scratch, &ws);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"{\"version\": 1, \"processes\": {\"tool\": ").unwrap();
    let mut owner = Sidecar::started(&scratch, &ws);
    let list = owner.request("nxops/process/list", json!({})).unwrap();
    assert_eq!(list["processes"], json!([]));
    assert!(file.with_extension("json.corrupt").exists(), "kept for the user, not deleted");
}

/// Nx 24 from the fixture, run in `ws` the way a developer would after opening the editor.
fn nx_build(scratch: &Scratch, ws: &Path) {
    let nx = ws.join("node_modules/.bin/nx");
    run_ok(
        scratch
            .tool(ws, nx.to_str().unwrap())
            .args(["run-many", "-t", "build", "--outputStyle=static"])
            .env("NX_TUI", "false"),
    );
}

fn cache_score(sidecar: &mut Sidecar) -> Value {
    let health = sidecar.request("nxops/health", json!({})).unwrap();
    health["components"].as_array().unwrap().iter().find(|c| c["name"] == "cache").unwrap().clone()
}

#[test]
fn the_nx_database_is_found_when_nx_first_runs_after_the_sidecar_started() {
    let scratch = Scratch::new();
    // A fresh clone with a remote: Nx shares ~/.nx/<repo>, which does not exist yet.
    let ws = scratch.workspace("clone", "remote");
    // A tiny limit, so a counted cache shows in the rating.
    let env = [("NXOPS_CACHE_MAX_SIZE", "1KB"), ("NXOPS_CACHE_CHECK_INTERVAL", "1s")];
    let mut owner = Sidecar::start(&scratch, &ws, &env);
    owner.initialize(&ws);
    owner.request("nxops/subscribe", json!({"events": ["cacheCleanup"]})).unwrap();

    let err = owner.request("nxops/cache/stats", json!({})).unwrap_err();
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("Nx has not run in") && !message.contains("layout"), "{err}");
    let out = scratch.nxops(&ws).args(["cache", "stats"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nx has not run in"), "{out:?}");
    let info = owner.request("nxops/env/info", json!({})).unwrap();
    assert_eq!(info["nx"]["dbFiles"], json!([]));
    assert_eq!(cache_score(&mut owner)["score"], 100, "nothing to count yet");

    nx_build(&scratch, &ws);
    // The automatic check finds the new database too: over the limit, and blocked (every entry was
    // just used), it says so once.
    let cleanup = owner.notification("nxops/cacheCleanup");
    assert_eq!(cleanup["params"]["trigger"], "automatic", "{cleanup}");
    let why = cleanup["params"]["blocked"].as_str().unwrap_or_default();
    assert!(why.contains("every entry was used in the last hour"), "{cleanup}");

    let stats = owner.request("nxops/cache/stats", json!({})).unwrap();
    assert!(stats["entries"].as_u64().unwrap() > 0, "{stats}");
    let via_cli = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "cache", "stats"])));
    assert_eq!(via_cli["entries"], stats["entries"], "the CLI asks the same owner");
    let info = owner.request("nxops/env/info", json!({})).unwrap();
    let db = info["nx"]["dbFiles"][0].as_str().expect("the database is listed");
    assert!(db.starts_with(scratch.home().join(".nx").to_str().unwrap()), "{info}");
    let cache = cache_score(&mut owner);
    assert_eq!(cache["score"], 40, "the cache is counted against the 1 KB limit: {cache}");
    assert!(cache["reasons"][0].as_str().unwrap().starts_with("cache at "), "{cache}");
    // Entries used in the last hour are kept by the clean, so this changes nothing.
    let perf = owner.request("nxops/perf/optimize", json!({})).unwrap();
    let cache_action = perf["actions"].as_array().unwrap().iter().find(|a| a["name"] == "cache").unwrap().clone();
    assert!(!cache_action["done"].as_str().unwrap().starts_with("not checked"), "{perf}");
    assert!(perf["before"]["cacheBytes"].as_u64().is_some_and(|b| b > 0), "{perf}");

    // A changed nx.json moves the cache: the owner follows within seconds.
    let nx_json_path = ws.join("nx.json");
    let mut nx_json: Value = serde_json::from_slice(&std::fs::read(&nx_json_path).unwrap()).unwrap();
    nx_json["cacheDirectory"] = json!("moved-cache");
    std::fs::write(&nx_json_path, serde_json::to_vec_pretty(&nx_json).unwrap()).unwrap();
    eventually("the owner sees the moved cache folder", || {
        let info = owner.request("nxops/env/info", json!({})).unwrap();
        info["nx"]["cacheDir"] == json!(ws.join("moved-cache"))
    });
    let err = owner.request("nxops/cache/stats", json!({})).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("Nx has not run in"), "{err}");
}

/// A real local user, removed again on drop.
struct OtherUser(String);

impl OtherUser {
    fn create() -> OtherUser {
        let name = format!("nxsq{}", std::process::id());
        run_ok(Command::new("useradd").args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name]));
        OtherUser(name)
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[test]
fn a_socket_folder_taken_by_another_user_does_not_deny_nxops() {
    if !is_root() {
        eprintln!("SKIPPED: creating another user (useradd) needs root; CI runs this test as root");
        return;
    }
    let scratch = Scratch::new();
    let ws = scratch.filled_workspace();
    // No XDG_RUNTIME_DIR: the preferred folder is <TMPDIR>/nxops-<uid>, made first by someone else.
    let tmp = tempfile::Builder::new().prefix("nxops-shared-tmp-").tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let squatter = OtherUser::create();
    let taken = tmp.path().join("nxops-0");
    run_ok(Command::new("mkdir").args(["-m", "0755"]).arg(&taken));
    run_ok(Command::new("chown").arg(&squatter.0).arg(&taken));
    let env = |mut cmd: Command| {
        cmd.env_remove("XDG_RUNTIME_DIR").env("TMPDIR", tmp.path());
        cmd
    };

    let mut serve = env(scratch.nxops(&ws));
    serve.args(["serve", "--stdio"]);
    let mut owner = Sidecar::from_command(serve, &scratch);
    let init = owner.initialize(&ws);
    let announced = init["capabilities"]["experimental"]["nxops"]["workspaces"].clone();
    assert_eq!(announced.as_array().map(Vec::len), Some(1), "initialize names the workspace: {init}");
    let list = owner.request("nxops/workspace/list", json!({})).unwrap();
    let role = list["workspaces"][0]["role"].clone();
    assert_eq!(role["kind"], "owner", "{list}");
    let private = scratch.home().join(".local/state/nxops/run");
    assert!(Path::new(role["socket"].as_str().unwrap()).starts_with(&private), "{role}");

    let mut serve = env(scratch.nxops(&ws));
    serve.args(["serve", "--stdio"]);
    let mut follower = Sidecar::from_command(serve, &scratch);
    follower.initialize(&ws);
    eventually("the second sidecar follows the owner", || {
        let list = follower.request("nxops/workspace/list", json!({})).unwrap();
        let role = &list["workspaces"][0]["role"];
        role["kind"] == "follower" && role["connected"] == true && role["ownerPid"] == owner.pid()
    });

    for args in [&["system", "info"][..], &["env", "info"], &["cache", "stats"], &["monitor", "check"]] {
        let out = env(scratch.nxops(&ws)).arg("--json").args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        json_of(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.matches("using the private folder").count(), 1, "said once: {stderr}");
    }
    let status = json_of(&run_ok(env(scratch.nxops(&ws)).args(["call", "nxops/status"])));
    assert_eq!(status["pid"], owner.pid(), "the CLI reaches the owner through the private folder");
    assert_eq!(std::fs::read_dir(&taken).unwrap().count(), 0, "nothing was written into the other user's folder");
    drop(follower);
    drop(owner);
    drop(squatter);
}
