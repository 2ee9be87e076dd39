//! The process supervisor through the real sidecar: real processes, real
//! signals, real process groups. Every test ends with no process left.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Scratch, Sidecar, alive, json_of, run_ok, supervised_by};
use serde_json::{Value, json};

fn procs(script: &str) -> String {
    common::repo_root().join("fixtures/procs").join(script).display().to_string()
}

/// A fixture workspace with this nxops.json.
fn workspace(scratch: &Scratch, nxops_json: &Value) -> PathBuf {
    let ws = scratch.workspace("ws", "none");
    std::fs::write(ws.join("nxops.json"), serde_json::to_vec_pretty(nxops_json).unwrap()).unwrap();
    ws
}

fn list(sidecar: &mut Sidecar) -> Value {
    sidecar.request("nxops/process/list", json!({})).expect("list")
}

fn process<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

fn pids(p: &Value) -> Vec<u32> {
    p["pids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// Polls `check` until it holds (or fails the test after 20 s).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn subscribe_all(sidecar: &mut Sidecar) {
    let events = ["processStarted", "processExited", "processFailure", "processRestarted", "processMemoryLeak"];
    sidecar.request("nxops/subscribe", json!({"events": events})).unwrap();
}

#[test]
fn declared_processes_wait_for_trust_then_run_and_stop_with_their_trees() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({"processes": {"web": {"command": procs("forker.sh")}}}));
    let mut sidecar = Sidecar::started(&scratch, &ws);
    subscribe_all(&mut sidecar);

    let before = list(&mut sidecar);
    assert_eq!(before["config"]["trust"], "not-allowed", "{before}");
    assert_eq!(before["processes"], json!([]));
    assert_eq!(before["config"]["blocked"][0]["name"], "web");
    assert!(before["config"]["problem"].as_str().unwrap().contains("nxops trust"), "{before}");
    let refused = sidecar.request("nxops/process/start", json!({"name": "web"})).unwrap_err();
    assert_eq!(refused["code"], -32006, "{refused}");

    // The CLI reaches the running sidecar, shows what it would allow, then allows it.
    let status = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "trust", "--status"])));
    assert_eq!(status["trust"], "not-allowed");
    assert_eq!(status["processes"][0]["command"], procs("forker.sh"));
    let stale = scratch.nxops(&ws).args(["trust", "--sha256", "0000"]).output().unwrap();
    assert_eq!(stale.status.code(), Some(2), "a reviewed hash that no longer matches is refused");
    let allowed =
        json_of(&run_ok(scratch.nxops(&ws).args(["--json", "trust", "--sha256", status["sha256"].as_str().unwrap()])));
    assert_eq!(allowed["trust"], "allowed");

    let started = sidecar.notification("nxops/processStarted");
    assert_eq!(started["params"]["name"], "web");
    assert_eq!(started["params"]["workspace"], json!(ws));
    let pid = started["params"]["pid"].as_u64().unwrap() as u32;
    let mut tree = Vec::new();
    eventually("the forker's two children are in its tree", || {
        tree = pids(process(&list(&mut sidecar), "web"));
        tree.len() == 3
    });
    assert!(tree.contains(&pid));
    let web = process(&list(&mut sidecar), "web").clone();
    assert_eq!(web["state"], "running");
    assert_eq!(web["pgid"], json!(pid));
    assert!(web["rssBytes"].as_u64().unwrap() > 100_000, "{web}");

    // The CLI renders the same list.
    let human = run_ok(scratch.nxops(&ws).args(["proc", "list"]));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.lines().any(|l| l.starts_with("web ") && l.contains("running")), "{text}");

    let stopped = sidecar.request("nxops/process/stop", json!({"name": "web"})).unwrap();
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(stopped["lastExit"]["reason"], "stopped on request");
    assert!(tree.iter().all(|p| !alive(*p)), "the whole tree ended: {tree:?}");
    let exited = sidecar.notification("nxops/processExited");
    assert_eq!(exited["params"]["requested"], true);
    assert_eq!(exited["params"]["exit"]["signal"], 15);

    // Revoking stops nothing already stopped, and the declared process is blocked again.
    let revoked = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "trust", "--revoke"])));
    assert_eq!(revoked["trust"], "not-allowed");
    drop(sidecar);
    assert!(supervised_by(scratch.home()).is_empty());
}

#[test]
fn a_changed_file_needs_a_new_allowance() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({"processes": {"a": {"command": "sleep", "args": ["1000"]}}}));
    run_ok(scratch.nxops(&ws).args(["trust"]));
    let mut sidecar = Sidecar::started(&scratch, &ws);
    eventually("a runs", || process(&list(&mut sidecar), "a")["state"] == "running");
    std::fs::write(ws.join("nxops.json"), r#"{"processes": {"a": {"command": "sleep", "args": ["999"]}}}"#).unwrap();
    let status = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "trust", "--status"])));
    assert_eq!(status["trust"], "changed");
    drop(sidecar);
    assert!(supervised_by(scratch.home()).is_empty());
}

#[test]
fn crashes_restart_after_the_backoff_then_the_process_is_given_up() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({}));
    let mut sidecar = Sidecar::started(&scratch, &ws);
    subscribe_all(&mut sidecar);
    let spec = json!({
        "name": "crashy", "command": "sh", "args": ["-c", "echo starting; exit 3"],
        "maxRestarts": 2, "backoff": {"initial": "100ms", "factor": 3}
    });
    let started = Instant::now();
    sidecar.request("nxops/process/start", spec).unwrap();
    let mut delays = Vec::new();
    loop {
        let failure = sidecar.notification("nxops/processFailure");
        let params = &failure["params"];
        assert_eq!(params["exit"]["code"], 3, "{failure}");
        assert_eq!(params["reason"], "exit code 3");
        if params["willRestart"] == false {
            assert_eq!(params["givenUp"], "restarted 2 times within 10m; given up");
            break;
        }
        delays.push(params["restartInMs"].as_u64().unwrap());
    }
    assert_eq!(delays, vec![100, 300]);
    assert!(started.elapsed() >= Duration::from_millis(400), "the delays were waited out");
    let restarted = sidecar.notification("nxops/processRestarted");
    assert!(restarted["params"]["previousPid"].as_u64().is_some(), "{restarted}");
    let crashy = process(&list(&mut sidecar), "crashy").clone();
    assert_eq!(crashy["state"], "failed");
    assert_eq!(crashy["restarts"], 2);
    let logs = sidecar.request("nxops/process/logs", json!({"name": "crashy"})).unwrap();
    assert_eq!(logs["stdout"].as_array().unwrap().iter().filter(|l| *l == "starting").count(), 3, "{logs}");
    let file = PathBuf::from(logs["files"]["stdout"].as_str().unwrap());
    assert!(std::fs::read_to_string(&file).unwrap().contains("starting\n"));

    // A user's start forgives the failures: its run counts no restarts (the
    // answer may already show the next one, 100 ms later, on a loaded machine).
    sidecar.notifications.retain(|n| n["method"] != "nxops/processStarted");
    sidecar.request("nxops/process/start", json!({"name": "crashy"})).unwrap();
    let started = sidecar.notification("nxops/processStarted");
    assert_eq!(started["params"]["restarts"], 0, "{started}");
}

#[test]
fn a_tree_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({}));
    let mut sidecar = Sidecar::started(&scratch, &ws);
    let spec = json!({"name": "stubborn", "command": procs("stubborn.sh"), "stopTimeout": "300ms"});
    sidecar.request("nxops/process/start", spec).unwrap();
    let mut tree = Vec::new();
    eventually("both children run", || {
        tree = pids(process(&list(&mut sidecar), "stubborn"));
        tree.len() == 3
    });
    let asked = Instant::now();
    let stopped = sidecar.request("nxops/process/stop", json!({"name": "stubborn"})).unwrap();
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(300), "SIGTERM was ignored, so the timeout was waited: {took:?}");
    assert!(took < Duration::from_millis(1300), "then SIGKILL ended it: {took:?}");
    assert_eq!(stopped["lastExit"]["signal"], 9, "{stopped}");
    assert!(tree.iter().all(|p| !alive(*p)), "{tree:?}");
}

#[test]
fn an_escaped_daemon_belongs_to_its_process_and_ends_with_it() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({}));
    let pid_file = scratch.home().join("daemon.pid");
    let mut sidecar = Sidecar::started(&scratch, &ws);
    let spec = json!({"name": "d", "command": procs("daemonize.sh"), "args": [pid_file]});
    sidecar.request("nxops/process/start", spec).unwrap();
    let mut daemon = 0;
    eventually("the daemon wrote its pid", || {
        daemon = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        daemon != 0
    });
    eventually("the daemon is in the tree", || pids(process(&list(&mut sidecar), "d")).contains(&daemon));
    let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    let ppid: u32 = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(ppid, sidecar.pid(), "the sidecar is the subreaper that adopted the daemon");
    assert_eq!(list(&mut sidecar)["unattributed"], json!([]));
    sidecar.request("nxops/process/stop", json!({"name": "d"})).unwrap();
    assert!(!alive(daemon), "the daemon was ended with its process");
}

#[test]
fn a_failing_health_probe_restarts_the_process() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({}));
    let mut sidecar = Sidecar::started(&scratch, &ws);
    subscribe_all(&mut sidecar);
    let spec = json!({
        "name": "deaf", "command": "sleep", "args": ["1000"],
        "health": {"command": ["sh", "-c", "exit 1"], "interval": "50ms", "retries": 2},
        "backoff": {"initial": "0ms"}
    });
    sidecar.request("nxops/process/start", spec).unwrap();
    let failure = sidecar.notification("nxops/processFailure");
    assert_eq!(failure["params"]["reason"], "health check failed 2 times", "{failure}");
    assert_eq!(failure["params"]["willRestart"], true);
    assert_eq!(failure["params"]["exit"]["signal"], 15, "ended by SIGTERM: {failure}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = json!({
        "name": "listening", "command": "sleep", "args": ["1000"],
        "health": {"port": port.local_addr().unwrap().port(), "interval": "50ms", "retries": 1}
    });
    sidecar.request("nxops/process/start", spec).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let listening = process(&list(&mut sidecar), "listening").clone();
    assert_eq!(listening["healthy"], true, "{listening}");
    assert_eq!(listening["restarts"], 0);
}

#[test]
fn memory_over_the_limit_restarts_and_a_steady_climb_is_reported_as_a_leak() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({}));
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_HEALTH_INTERVAL", "100ms")]);
    sidecar.initialize(&ws);
    subscribe_all(&mut sidecar);
    let grow = procs("grow.py");
    let leaky = json!({
        "name": "leaky", "command": "python3", "args": [grow], "env": {"STEP_MB": "4", "INTERVAL": "0.1"},
        "leak": {"window": "1s", "minGrowth": "8MB"}
    });
    sidecar.request("nxops/process/start", leaky).unwrap();
    let leak = sidecar.notification("nxops/processMemoryLeak");
    assert_eq!(leak["params"]["name"], "leaky");
    assert_eq!(leak["params"]["action"], "report");
    let per_minute = leak["params"]["bytesPerMinute"].as_u64().unwrap();
    assert!(per_minute > 100 << 20, "about 4 MB every 100 ms: {leak}");

    let hungry = json!({
        "name": "hungry", "command": "python3", "args": [procs("grow.py")],
        "env": {"STEP_MB": "20", "INTERVAL": "0.05"}, "memoryLimit": "60MB", "restart": "never"
    });
    sidecar.request("nxops/process/start", hungry).unwrap();
    let failure = loop {
        let failure = sidecar.notification("nxops/processFailure");
        if failure["params"]["name"] == "hungry" {
            break failure;
        }
    };
    let reason = failure["params"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("memory ") && reason.ends_with("over the limit of 60 MiB"), "{reason}");
    assert_eq!(process(&list(&mut sidecar), "hungry")["state"], "failed");
}

#[test]
fn a_sidecar_killed_with_children_running_leaves_nothing_behind() {
    let scratch = Scratch::new();
    let pid_file = scratch.home().join("daemon.pid");
    let ws = workspace(
        &scratch,
        &json!({"processes": {
            "web": {"command": procs("forker.sh"), "stopTimeout": "200ms"},
            "d": {"command": procs("daemonize.sh"), "args": [pid_file], "stopTimeout": "200ms"},
            "stubborn": {"command": procs("stubborn.sh"), "stopTimeout": "200ms"}
        }}),
    );
    run_ok(scratch.nxops(&ws).args(["trust"]));
    let mut first = Sidecar::started(&scratch, &ws);
    eventually("all seven processes run", || {
        let l = list(&mut first);
        l["processes"].as_array().unwrap().iter().map(|p| pids(p).len()).sum::<usize>() == 8
    });
    let old = supervised_by(scratch.home());
    assert_eq!(old.len(), 8, "3 + 2 (daemon and its parent) + 3");
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(old.iter().all(|p| alive(*p)), "SIGKILL left the children running");

    let mut second = Sidecar::started(&scratch, &ws);
    let l = list(&mut second);
    let ended: Vec<u64> = l["leftoversEnded"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(old.iter().all(|p| !alive(*p)), "no process of the first run survives");
    assert!(old.iter().all(|p| ended.contains(&(*p as u64))), "{ended:?} vs {old:?}");
    eventually("the declared processes run again", || {
        list(&mut second)["processes"].as_array().unwrap().iter().all(|p| p["state"] == "running")
    });
    drop(second);
    assert!(supervised_by(scratch.home()).is_empty());
}

#[test]
fn bad_requests_name_what_is_wrong() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({"processes": {"web": {"command": "sleep", "args": ["1000"]}}}));
    let mut sidecar = Sidecar::started(&scratch, &ws);
    let err = sidecar.request("nxops/process/start", json!({"name": "x", "comand": "sleep"})).unwrap_err();
    assert_eq!(err["code"], -32602);
    assert!(err["message"].as_str().unwrap().contains("needs a command"), "{err}");
    let err = sidecar
        .request("nxops/process/start", json!({"name": "x", "command": "sleep", "restrat": "always"}))
        .unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("unknown field `restrat`"), "{err}");
    let err = sidecar.request("nxops/process/start", json!({"name": "../x", "command": "sleep"})).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("not a valid process name"), "{err}");
    let err = sidecar.request("nxops/process/stop", json!({"name": "wbe"})).unwrap_err();
    assert_eq!(err["message"], "invalid params for process: no process named \"wbe\" (known: none)");
    let err = sidecar.request("nxops/process/start", json!({"name": "web", "command": "true"})).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("is declared in nxops.json"), "{err}");

    // A command that does not exist fails its start, visibly.
    let missing = json!({"name": "missing", "command": "nxops-no-such-command", "restart": "never"});
    let view = sidecar.request("nxops/process/start", missing).unwrap();
    assert_eq!(view["state"], "failed", "{view}");
    assert!(view["lastExit"]["reason"].as_str().unwrap().contains("is not found in PATH"), "{view}");

    let nowhere =
        json!({"name": "nowhere", "command": "sleep", "args": ["1"], "cwd": "no/such/dir", "restart": "never"});
    let view = sidecar.request("nxops/process/start", nowhere).unwrap();
    assert!(view["lastExit"]["reason"].as_str().unwrap().contains("no/such/dir does not exist"), "{view}");

    // A process that ends at once, cleanly, is `exited` (on-failure does not restart it).
    sidecar.request("nxops/process/start", json!({"name": "quick", "command": "true"})).unwrap();
    eventually("quick has exited", || process(&list(&mut sidecar), "quick")["state"] == "exited");

    // A broken nxops.json is named with its place, and the sidecar carries on.
    std::fs::write(
        ws.join("nxops.json"),
        r#"{"processes": {"web": {"command": "sleep", "backoff": {"initial": "soon"}}}}"#,
    )
    .unwrap();
    let out = scratch.nxops(&ws).args(["trust", "--status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nxops.json processes.web.backoff.initial"), "{stderr}");
    assert!(sidecar.request("nxops/status", json!({})).is_ok());
}

#[test]
fn without_a_sidecar_the_cli_lists_declarations_and_refuses_to_start() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({"processes": {"web": {"command": "sleep", "args": ["1000"]}}}));
    let listed = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "proc", "list"])));
    assert_eq!(listed["sidecar"], false);
    assert_eq!(listed["processes"][0]["name"], "web");
    assert_eq!(listed["processes"][0]["state"], "stopped");
    let out = scratch.nxops(&ws).args(["proc", "start", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sidecar runs for"), "{out:?}");
}

/// The pids of every live descendant of `root` (by parent pid), and which of them are zombies.
fn descendants(root: u32) -> (Vec<u32>, Vec<u32>) {
    let mut parent = std::collections::HashMap::new();
    let mut zombie = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        parent.insert(pid, fields[1].parse::<u32>().unwrap());
        if fields[0] == "Z" {
            zombie.insert(pid);
        }
    }
    let mut out = Vec::new();
    for pid in parent.keys() {
        let mut at = *pid;
        while let Some(up) = parent.get(&at) {
            if *up == root {
                out.push(*pid);
                break;
            }
            at = *up;
        }
    }
    let zombies = out.iter().copied().filter(|p| zombie.contains(p)).collect();
    (out, zombies)
}

/// A tiny deterministic generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn chaos_three_hundred_random_kills_leave_no_zombie_and_no_stranger() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({}));
    let mut sidecar = Sidecar::started(&scratch, &ws);
    let mut names = Vec::new();
    let mut start = |sidecar: &mut Sidecar, name: String, mut spec: Value| {
        spec["name"] = json!(name);
        sidecar.request("nxops/process/start", spec).unwrap();
        names.push(name);
    };
    let resilient = json!({"restart": "always", "maxRestarts": 1000, "backoff": {"initial": "0ms", "max": "10ms"}});
    let with = |extra: Value| {
        let mut spec = resilient.clone();
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        spec
    };
    for i in 0..8 {
        start(&mut sidecar, format!("forker{i}"), with(json!({"command": procs("forker.sh")})));
    }
    for i in 0..4 {
        start(&mut sidecar, format!("plain{i}"), with(json!({"command": "sleep", "args": ["1000"]})));
    }
    for i in 0..3 {
        let spec = with(json!({"command": procs("stubborn.sh"), "stopTimeout": "300ms"}));
        start(&mut sidecar, format!("stubborn{i}"), spec);
    }
    for i in 0..3 {
        start(&mut sidecar, format!("daemon{i}"), with(json!({"command": procs("daemonize.sh")})));
    }
    for i in 0..2 {
        // The default budget: these are given up after three restarts.
        let spec = json!({"command": "sleep", "args": ["1000"], "restart": "always", "backoff": {"initial": "0ms"}});
        start(&mut sidecar, format!("fragile{i}"), spec);
    }
    assert_eq!(names.len(), 20);
    eventually("every tree is complete", || supervised_by(scratch.home()).len() == 8 * 3 + 4 + 3 * 3 + 3 * 2 + 2);

    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut seen = std::collections::HashSet::new();
    let mut kills = 0;
    while kills < 300 {
        let targets = supervised_by(scratch.home());
        seen.extend(targets.iter().copied());
        if targets.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let victim = targets[rng.below(targets.len())];
        let _ = std::process::Command::new("kill").args(["-KILL", &victim.to_string()]).status();
        kills += 1;
    }

    // Settled: each process runs or has been given up, and the sidecar knows every process it has.
    let mut last = Value::Null;
    eventually("the supervisor settles with no zombie and no stranger", || {
        last = list(&mut sidecar);
        let processes = last["processes"].as_array().unwrap();
        let settled = processes.iter().all(|p| p["state"] == "running" || p["state"] == "failed");
        let known: std::collections::HashSet<u32> = processes.iter().flat_map(pids).collect();
        let (ours, zombies) = descendants(sidecar.pid());
        let strangers: Vec<u32> = ours.iter().copied().filter(|p| !known.contains(p)).collect();
        settled && zombies.is_empty() && strangers.is_empty() && last["unattributed"] == json!([])
    });
    for p in last["processes"].as_array().unwrap() {
        if p["state"] == "running" {
            assert!(alive(p["pid"].as_u64().unwrap() as u32), "{p}");
        } else {
            assert!(p["givenUp"].as_str().unwrap().contains("given up"), "{p}");
        }
    }
    let fragile: Vec<&Value> = last["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("fragile"))
        .collect();
    assert!(fragile.iter().all(|p| p["restarts"].as_u64().unwrap() <= 3), "{fragile:?}");

    // After the sidecar stops, nothing at all is left.
    let sidecar_pid = sidecar.pid();
    let status = sidecar.close_stdin_and_wait();
    assert!(status.success(), "{status}");
    seen.extend(supervised_by(scratch.home()));
    assert!(supervised_by(scratch.home()).is_empty(), "left: {:?}", supervised_by(scratch.home()));
    assert!(descendants(sidecar_pid).0.is_empty());
    assert!(seen.len() > 300, "the chaos reached many processes: {}", seen.len());
}

#[test]
fn followers_and_the_cli_reach_the_owners_processes_and_sigterm_stops_them() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({}));
    let mut owner = Sidecar::started(&scratch, &ws);
    let mut follower = Sidecar::started(&scratch, &ws);
    let view = follower.request("nxops/process/start", json!({"name": "api", "command": procs("forker.sh")})).unwrap();
    assert_eq!(view["state"], "running");
    let pid = view["pid"].as_u64().unwrap() as u32;
    assert_eq!(process(&list(&mut owner), "api")["pid"], json!(pid), "the process lives in the owner");

    // The CLI: start your own process after `--`, read its logs, stop it.
    let started =
        run_ok(scratch.nxops(&ws).args(["proc", "start", "echoer", "--", "sh", "-c", "echo hello; exec sleep 1000"]));
    assert!(String::from_utf8_lossy(&started.stdout).starts_with("echoer is running"), "{started:?}");
    eventually("echoer printed", || {
        let logs = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "proc", "logs", "echoer"])));
        logs["stdout"].as_array().unwrap().iter().any(|l| l == "hello")
    });
    let text = run_ok(scratch.nxops(&ws).args(["proc", "logs", "echoer", "--lines", "5"]));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("==> stdout (") && text.contains("\nhello\n"), "{text}");
    let stopped = run_ok(scratch.nxops(&ws).args(["proc", "stop", "echoer"]));
    assert!(String::from_utf8_lossy(&stopped.stdout).starts_with("echoer is stopped"), "{stopped:?}");
    let bad = scratch.nxops(&ws).args(["proc", "start", "x", "--restart", "always"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "options without a command are refused: {bad:?}");

    // SIGTERM to the owner: a graceful exit that stops its processes first.
    let tree = pids(process(&list(&mut owner), "api"));
    assert_eq!(tree.len(), 3);
    let _ = std::process::Command::new("kill").args(["-TERM", &owner.pid().to_string()]).status();
    let status = owner.wait();
    assert!(status.success(), "{status}");
    assert!(tree.iter().all(|p| !alive(*p)), "{tree:?}");
    assert!(supervised_by(scratch.home()).is_empty());
    drop(follower);
}

#[test]
fn a_low_limit_of_open_files_does_not_cap_the_processes_and_children_keep_it() {
    let scratch = Scratch::new();
    let ws = workspace(&scratch, &json!({}));
    // 200 open files at most, as a soft limit: each process holds 4 in the sidecar.
    let mut cmd = scratch.tool(&ws, "sh");
    cmd.args(["-c", "ulimit -Sn 200 && exec \"$0\" serve --stdio", common::nxops_bin().to_str().unwrap()]);
    cmd.env("NXOPS_PROCESSES_HEALTH_INTERVAL", "1h");
    let mut sidecar = Sidecar::from_command(cmd, &scratch);
    sidecar.initialize(&ws);
    let soft_limit = |pid: u32| -> u64 {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
        line.split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    assert!(soft_limit(sidecar.pid()) > 200, "the sidecar raised its own soft limit");
    for i in 0..60 {
        let spec = json!({"name": format!("p{i}"), "command": "sleep", "args": ["1000"]});
        let view = sidecar.request("nxops/process/start", spec).unwrap();
        assert_eq!(view["state"], "running", "process {i}: {view}");
    }
    let listed = list(&mut sidecar);
    let pids: Vec<u32> =
        listed["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_u64().unwrap() as u32).collect();
    assert_eq!(pids.len(), 60);
    assert!(pids.iter().all(|pid| soft_limit(*pid) == 200), "children get the limit they would have had");
}
