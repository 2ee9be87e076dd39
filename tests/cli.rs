//! The command line as people and scripts use it: help, version, exit codes,
//! configuration errors, and human versus JSON output.

mod common;

use common::{Scratch, json_of, run_ok};

fn plugin_options(ws: &std::path::Path, options: serde_json::Value) {
    let path = ws.join("nx.json");
    let mut nx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    nx["plugins"] = serde_json::json!([{"plugin": "@nxops/nx-plugin", "options": options}]);
    std::fs::write(&path, serde_json::to_string_pretty(&nx).unwrap()).unwrap();
}

#[test]
fn version_and_help_describe_every_command() {
    let s = Scratch::new();
    let out = run_ok(s.nxops(s.home()).arg("--version"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("nxops {}", env!("CARGO_PKG_VERSION")));
    let help = String::from_utf8(run_ok(s.nxops(s.home()).arg("--help")).stdout).unwrap();
    for needle in ["system", "env", "cache", "serve", "call", "--workspace", "--json", "--verbose", "--quiet", "--set"]
    {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn missing_workspace_names_the_folders_searched() {
    let s = Scratch::new();
    let out = s.nxops(s.spaces.path()).args(["env", "info"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let searched = std::fs::canonicalize(s.spaces.path()).unwrap();
    assert!(err.contains("no Nx workspace found") && err.contains(searched.to_str().unwrap()), "{err}");
    assert!(out.stdout.is_empty());

    let out = s.nxops(s.home()).args(["env", "info", "--workspace", "/nonexistent/ws"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ws: cannot open the folder"));
}

#[test]
fn settings_come_from_nx_json_env_and_flags_in_that_order() {
    let s = Scratch::new();
    let ws = s.workspace("cfg", "none");
    plugin_options(
        &ws,
        serde_json::json!({"cache": {"maxSize": "1GB", "maxAge": "2d"}, "processes": {"maxRestarts": 5}}),
    );
    let out = run_ok(
        s.nxops(&ws.join("packages/alpha"))
            .args(["env", "info", "--json", "--set", "cache.maxSize=3GB"])
            .env("NXOPS_CACHE_MAX_AGE", "12h")
            .env("NXOPS_PROCESSES_MAX_RESTARTS", "7"),
    );
    let info = json_of(&out);
    let setting = |key: &str| info["settings"].as_array().unwrap().iter().find(|s| s["key"] == key).unwrap().clone();
    assert_eq!(setting("cache.maxSize")["raw"], 3u64 << 30);
    assert_eq!(setting("cache.maxSize")["source"], "flag");
    assert_eq!(setting("cache.maxAge")["raw"], 12 * 3600 * 1000);
    assert_eq!(setting("cache.maxAge")["source"], "env");
    assert_eq!(setting("processes.maxRestarts")["raw"], 7);
    assert_eq!(setting("health.interval")["source"], "default");
    assert_eq!(setting("health.interval")["raw"], 30_000);

    let human = String::from_utf8(run_ok(s.nxops(&ws).args(["env", "info"])).stdout).unwrap();
    assert!(
        human.contains("cache.maxSize")
            && human.contains("1 GiB")
            && human.contains("from nx.json plugins[0].options.cache.maxSize"),
        "{human}"
    );
}

#[test]
fn bad_config_names_file_key_value_and_expectation_with_exit_2() {
    let s = Scratch::new();
    let ws = s.workspace("bad", "none");
    plugin_options(&ws, serde_json::json!({"cache": {"maxSize": "5 gigs"}}));
    let out = s.nxops(&ws).args(["env", "info"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = ws.join("nx.json");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(
        err.contains("plugins[0].options.cache.maxSize")
            && err.contains("\"5 gigs\"")
            && err.contains("expected a size"),
        "{err}"
    );

    plugin_options(&ws, serde_json::json!({"cache": {"maxAgee": "1d"}}));
    let out = s.nxops(&ws).args(["env", "info"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean \"cache.maxAge\"?"));

    std::fs::write(ws.join("nx.json"), "{ \"plugins\": [ }").unwrap();
    let out = s.nxops(&ws).args(["env", "info"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nx.json") && err.contains("is not valid JSON") && err.contains("line 1"), "{err}");

    let out = s.nxops(&ws).args(["system", "info", "--set", "cache.maxsize=1GB"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean \"cache.maxSize\"?"));

    let out = s.nxops(s.home()).args(["system", "info"]).env("NXOPS_CACHE_MAXSIZE", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown NXOPS_ variable is an error even outside a workspace");
}

#[test]
fn system_info_reports_the_workspace_toolchain() {
    let s = Scratch::new();
    let ws = s.workspace("sys", "remote");
    let info = json_of(&run_ok(s.nxops(&ws).args(["system", "info", "--json"])));
    assert_eq!(info["tools"]["nx"]["version"], "24.0.6");
    assert!(info["tools"]["node"]["version"].as_str().unwrap().starts_with("20."));
    assert!(info["cpu"]["count"].as_u64().unwrap() >= 1);
    let volume = &info["cacheVolume"];
    assert!(volume["totalBytes"].as_u64().unwrap() >= volume["freeBytes"].as_u64().unwrap());
    assert!(volume["cacheDir"].as_str().unwrap().starts_with(s.home().to_str().unwrap()));
    let human = String::from_utf8(run_ok(s.nxops(&ws).args(["system", "info"])).stdout).unwrap();
    assert!(human.contains("nx     24.0.6"), "{human}");
}
