//! nxops finds the same cache and database folders as Nx 24 itself, in real
//! fixture workspaces, one per rule of `nx/src/utils/cache-directory.js`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Scratch, json_of, run_ok};

/// What Nx answers for (cache folder, database folder), asked in the workspace.
const NX_ANSWER: &str = "const c = require('nx/src/utils/cache-directory'); \
     const root = require('nx/src/utils/workspace-root').workspaceRoot; \
     console.log(JSON.stringify({cache: c.cacheDir, db: c.sharedDataDirectory(root, 'workspace-data')}))";

struct Case<'a> {
    git: &'a str,
    env: Vec<(&'a str, String)>,
    nx_json_patch: Option<(&'a str, serde_json::Value)>,
    /// Files written into the workspace first: (relative path, content).
    files: Vec<(&'a str, String)>,
    expect_layout: &'a str,
}

fn case(git: &str) -> Case<'_> {
    Case { git, env: Vec::new(), nx_json_patch: None, files: Vec::new(), expect_layout: "shared" }
}

/// Asks nxops (before and after Nx has created its folders) and Nx, and compares.
fn check(name: &str, c: Case, scratch: &Scratch) -> serde_json::Value {
    let ws = scratch.workspace(name, c.git);
    for (path, content) in &c.files {
        let path = ws.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    if let Some((key, value)) = &c.nx_json_patch {
        let path = ws.join("nx.json");
        let mut nx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        nx[*key] = value.clone();
        std::fs::write(&path, serde_json::to_string_pretty(&nx).unwrap()).unwrap();
    }
    let with_env = |mut cmd: Command| {
        for (k, v) in &c.env {
            cmd.env(k, v);
        }
        cmd
    };
    let before = json_of(&run_ok(with_env(scratch.nxops(&ws)).args(["env", "info", "--json"])));
    let nx = json_of(&run_ok(&mut with_env(scratch.node(&ws, NX_ANSWER))));
    let after = json_of(&run_ok(with_env(scratch.nxops(&ws)).args(["env", "info", "--json"])));
    for (when, ours) in [("before Nx ran", &before), ("after Nx ran", &after)] {
        assert_eq!(ours["nx"]["cacheDir"], nx["cache"], "{name}: cache folder {when}; nxops said {:#}", ours["nx"]);
        assert_eq!(ours["nx"]["dbDir"], nx["db"], "{name}: database folder {when}; nxops said {:#}", ours["nx"]);
        assert_eq!(ours["nx"]["layout"]["kind"], c.expect_layout, "{name}: layout {when}: {:#}", ours["nx"]["layout"]);
    }
    assert_eq!(before["workspaceRoot"], serde_json::json!(ws));
    after
}

#[test]
fn shared_layout_from_git_remote() {
    let s = Scratch::new();
    let info = check("remote", case("remote"), &s);
    let dir = info["nx"]["cacheDir"].as_str().unwrap();
    assert!(dir.starts_with(s.home().join(".nx").to_str().unwrap()), "{dir}");
    assert_eq!(info["nx"]["layout"]["identity"]["identity"], "github.com/example/nx24-fixture");
}

#[test]
fn shared_layout_from_first_commit_without_remote() {
    let s = Scratch::new();
    let info = check("local", case("local"), &s);
    assert_eq!(info["nx"]["layout"]["identity"]["kind"], "first-commit");
}

#[test]
fn local_layout_without_git() {
    let s = Scratch::new();
    check("none", Case { expect_layout: "local", ..case("none") }, &s);
}

#[test]
fn local_layout_for_shallow_clone_without_remote() {
    let s = Scratch::new();
    check("shallow", Case { expect_layout: "local", ..case("shallow") }, &s);
}

#[test]
fn nx_cache_directory_relative_and_absolute() {
    let s = Scratch::new();
    check(
        "rel",
        Case { env: vec![("NX_CACHE_DIRECTORY", "my-cache".into())], expect_layout: "local", ..case("remote") },
        &s,
    );
    let abs = s.spaces.path().join("elsewhere/cache");
    let abs = abs.to_string_lossy().into_owned();
    check("abs", Case { env: vec![("NX_CACHE_DIRECTORY", abs)], expect_layout: "local", ..case("remote") }, &s);
}

#[test]
fn nx_json_cache_directory() {
    let s = Scratch::new();
    let c = Case {
        nx_json_patch: Some(("cacheDirectory", "custom-cache".into())),
        expect_layout: "local",
        ..case("remote")
    };
    check("cfg", c, &s);
}

#[test]
fn an_extended_nx_json_is_read_as_nx_reads_it() {
    let s = Scratch::new();
    // A relative file: its cacheDirectory applies, as Nx's readNxJson merges it.
    let c = Case {
        nx_json_patch: Some(("extends", "./nx.base.json".into())),
        files: vec![("nx.base.json", r#"{"cacheDirectory": "from-base"}"#.into())],
        expect_layout: "local",
        ..case("remote")
    };
    let info = check("ext-file", c, &s);
    assert!(info["nx"]["cacheDir"].as_str().unwrap().ends_with("/from-base"), "{info:#}");
    // A package's exports map (where Nx looks first: .nx/installation/node_modules),
    // with conditions Node does not use for require listed before the one it does.
    let manifest = r#"{"name": "@acme/nx-preset", "exports": {"./base": {"import": "./esm/base.json",
        "types": "./x.d.ts", "default": "./dist/base.json"}}}"#;
    let c = Case {
        nx_json_patch: Some(("extends", "@acme/nx-preset/base".into())),
        files: vec![
            (".nx/installation/node_modules/@acme/nx-preset/package.json", manifest.into()),
            (".nx/installation/node_modules/@acme/nx-preset/esm/base.json", r#"{"cacheDirectory": "wrong"}"#.into()),
            (
                ".nx/installation/node_modules/@acme/nx-preset/dist/base.json",
                r#"{"nxCloudId": "0123456789abcdef01234567"}"#.into(),
            ),
        ],
        ..case("none")
    };
    let info = check("ext-package", c, &s);
    assert_eq!(info["nx"]["layout"]["dirName"], "8865fea8edb69716", "the cloud id came from the package: {info:#}");
    // A name that resolves nowhere: Nx fails, and so does nxops, saying where.
    let ws = s.workspace("ext-missing", "none");
    let mut nx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.join("nx.json")).unwrap()).unwrap();
    nx["extends"] = "@acme/missing/base".into();
    std::fs::write(ws.join("nx.json"), nx.to_string()).unwrap();
    let out = s.nxops(&ws).args(["env", "info"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nx.json: extends: package @acme/missing not found"), "{err}");
}

#[test]
fn workspace_data_directory_variables() {
    let s = Scratch::new();
    let c = Case {
        env: vec![("NX_WORKSPACE_DATA_DIRECTORY", "my-wsdata".into())],
        expect_layout: "local",
        ..case("remote")
    };
    check("wsdata", c, &s);
    let c = Case {
        env: vec![("NX_PROJECT_GRAPH_CACHE_DIRECTORY", "pg-dir".into())],
        expect_layout: "local",
        ..case("local")
    };
    check("pgdir", c, &s);
}

#[test]
fn nx_cloud_id_is_the_identity_even_without_git() {
    let s = Scratch::new();
    let c = Case { nx_json_patch: Some(("nxCloudId", "0123456789abcdef01234567".into())), ..case("none") };
    let info = check("cloud", c, &s);
    assert_eq!(info["nx"]["layout"]["dirName"], "8865fea8edb69716");
}

#[test]
fn home_under_tmp_is_refused_like_nx() {
    let s = Scratch::new();
    let tmp_home = tempfile::tempdir().unwrap();
    let c = Case {
        env: vec![("HOME", tmp_home.path().to_string_lossy().into_owned())],
        expect_layout: "local",
        ..case("remote")
    };
    check("tmphome", c, &s);
}

#[test]
fn nx_home_owned_by_another_user_is_refused_like_nx() {
    if rustix::process::getuid().as_raw() != 0 {
        eprintln!("needs root to chown ~/.nx to another user; the rule is covered by unit tests");
        return;
    }
    let s = Scratch::new();
    let nx_home = s.home().join(".nx");
    std::fs::create_dir(&nx_home).unwrap();
    std::os::unix::fs::chown(&nx_home, Some(65534), Some(65534)).unwrap();
    check("foreign", Case { expect_layout: "local", ..case("remote") }, &s);
}

#[test]
fn database_file_is_found_after_real_tasks_ran() {
    let s = Scratch::new();
    let ws = s.workspace("filled", "remote");
    let mut fill = Command::new(common::repo_root().join("fixtures/fill-cache.sh"));
    fill.arg(&ws).env("HOME", s.home());
    run_ok(&mut fill);
    let info = json_of(&run_ok(s.nxops(&ws).args(["env", "info", "--json"])));
    let files: Vec<PathBuf> = serde_json::from_value(info["nx"]["dbFiles"].clone()).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("-v6.db"), "{name}");
    assert_eq!(files[0].parent(), Some(Path::new(info["nx"]["dbDir"].as_str().unwrap())));
    let entries = std::fs::read_dir(info["nx"]["cacheDir"].as_str().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .count();
    assert_eq!(entries, 8, "fill-cache.sh leaves 8 entries in the folder nxops found");
}
