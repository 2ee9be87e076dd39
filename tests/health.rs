//! The health report: each rating from a workspace that produces it, the exit
//! codes of `nxops monitor check`, and the owner's `healthCheck` events.

mod common;

use common::{Scratch, Sidecar, json_of, run_ok};
use serde_json::json;

#[test]
fn cache_utilization_gives_each_rating_and_its_exit_code() {
    let scratch = Scratch::new();
    let ws = scratch.filled_workspace();
    let bytes = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "cache", "stats"])))["bytes"].as_u64().unwrap();
    // (limit as a multiple of the cache's size, rating, exit code)
    for (factor, rating, code) in
        [(2.0, "Excellent", 0), (1.0 / 0.85, "Good", 0), (1.0 / 0.95, "Fair", 1), (0.5, "Poor", 1)]
    {
        let limit = format!("cache.maxSize={}", (bytes as f64 * factor) as u64);
        let out = scratch.nxops(&ws).args(["--json", "--set", &limit, "monitor", "check"]).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{rating}: {out:?}");
        let report = json_of(&out);
        assert_eq!(report["rating"], rating, "{report}");
        if rating != "Excellent" {
            assert!(report["reasons"][0].as_str().unwrap().starts_with("cache at "), "{report}");
        }
    }
}

#[test]
fn a_failed_process_is_critical_and_the_owner_reports_every_check() {
    let scratch = Scratch::new();
    let ws = scratch.filled_workspace();
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_HEALTH_INTERVAL", "100ms")]);
    sidecar.initialize(&ws);
    sidecar.request("nxops/subscribe", json!({"events": ["healthCheck"]})).unwrap();
    let first = sidecar.notification("nxops/healthCheck");
    assert_eq!(first["params"]["rating"], "Excellent", "{first}");
    let names: Vec<&str> =
        first["params"]["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for name in ["processes", "cache", "mcp", "sidecar"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    let spec = json!({"name": "broken", "command": "sh", "args": ["-c", "exit 1"], "restart": "never"});
    sidecar.request("nxops/process/start", spec).unwrap();
    // The start answers once the run began; its failure is a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sidecar.request("nxops/process/list", json!({})).unwrap()["processes"][0]["state"] != "failed" {
        assert!(std::time::Instant::now() < deadline, "the process never failed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = scratch.nxops(&ws).args(["monitor", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Health: Critical (0/100)") && text.contains("- process \"broken\" failed"), "{text}");
    loop {
        let check = sidecar.notification("nxops/healthCheck");
        if check["params"]["rating"] == "Critical" {
            assert_eq!(check["params"]["changed"], true, "{check}");
            break;
        }
    }
}

#[test]
fn perf_optimize_runs_every_maintenance_action_and_shows_before_and_after() {
    let scratch = Scratch::new();
    let ws = scratch.filled_workspace();
    // A daemon record pointing at a process that is not an Nx daemon (this test's own sleep).
    let mut impostor = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let record_dir = ws.join(".nx/workspace-data/d");
    std::fs::create_dir_all(&record_dir).unwrap();
    std::fs::write(record_dir.join("server-process.json"), format!(r#"{{"processId": {}}}"#, impostor.id())).unwrap();
    let stubborn = common::repo_root().join("fixtures/mcp/stubborn.sh");
    std::fs::write(
        ws.join(".mcp.json"),
        serde_json::to_vec(&json!({"mcpServers": {"stubborn": {"command": stubborn}}})).unwrap(),
    )
    .unwrap();
    // Stateless, so the released connection goes back to the idle set (a
    // stateful server's connection ends with the release: no other session may see its state).
    std::fs::write(
        ws.join("nxops.json"),
        r#"{"mcp": {"defaults": {"minIdle": 0}, "servers": {"stubborn": {"stateless": true}}}}"#,
    )
    .unwrap();
    run_ok(scratch.nxops(&ws).args(["trust"]));

    let mut sidecar = Sidecar::started(&scratch, &ws);
    sidecar.request("nxops/mcp/request", json!({"server": "stubborn", "method": "ping"})).unwrap();
    sidecar.request("nxops/mcp/release", json!({})).unwrap();
    let report = json_of(&run_ok(scratch.nxops(&ws).args(["--json", "perf", "optimize"])));
    assert_eq!(report["before"]["idleMcpConnections"], 1, "{report}");
    assert_eq!(report["after"]["idleMcpConnections"], 0, "{report}");
    let done = |name: &str| {
        report["actions"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap()["done"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(done("cache"), "nothing due");
    assert_eq!(done("mcp"), "closed 1 idle connections beyond minIdle");
    assert!(done("nx daemon").starts_with("removed a stale record"), "{report}");
    assert!(!record_dir.join("server-process.json").exists());
    assert!(impostor.try_wait().unwrap().is_none(), "the foreign process was left alone");
    impostor.kill().unwrap();
    impostor.wait().unwrap();
    drop(sidecar);
    assert!(common::supervised_by(scratch.home()).is_empty());
}

#[test]
fn monitor_start_prints_a_check_per_interval() {
    let scratch = Scratch::new();
    let ws = scratch.filled_workspace();
    let out = run_ok(scratch.nxops(&ws).args(["--json", "monitor", "start", "--interval", "50ms", "--count", "3"]));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["rating"] == "Excellent"), "{lines:?}");
    assert!(lines[2]["checkedAt"].as_u64() > lines[0]["checkedAt"].as_u64());
    assert!(lines.iter().all(|l| l["sidecar"] == false), "{lines:?}");
    assert_eq!(lines[0]["warning"], "NO SIDECAR is watching this workspace; only the cache is checked");
    let human = run_ok(scratch.nxops(&ws).args(["monitor", "start", "--count", "1"]));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("Health: Excellent (100/100)"), "{human:?}");
    assert!(text.contains("NO SIDECAR is watching this workspace"), "{text}");
    assert!(text.contains("No sidecar is watching this workspace: only the cache was checked"), "{text}");
    let bad = scratch.nxops(&ws).args(["monitor", "start", "--interval", "soon"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--interval"), "{bad:?}");
}

#[test]
fn an_mcp_server_that_keeps_dying_makes_the_workspace_fair_and_says_so() {
    let scratch = Scratch::new();
    let ws = common::memory_mcp_workspace(&scratch, r#"{"mcp": {"defaults": {"minIdle": 0, "max": 1}}}"#);
    let mut sidecar = Sidecar::started(&scratch, &ws);
    let call = json!({"server": "memory", "method": "tools/list"});
    // A request that meets a connection whose death was not noticed yet fails, and
    // leaves the lease; the next one gets a fresh connection.
    let request = |sidecar: &mut Sidecar| match sidecar.request("nxops/mcp/request", call.clone()) {
        Ok(answer) => answer,
        Err(_) => sidecar.request("nxops/mcp/request", call.clone()).unwrap(),
    };
    for round in 1..=3 {
        request(&mut sidecar);
        // The server dies under its lease (a crash, an OOM kill): the next request gets a fresh one.
        for pid in common::supervised_by(scratch.home()) {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !common::supervised_by(scratch.home()).is_empty() {
            assert!(std::time::Instant::now() < deadline, "round {round}: the server did not die");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    // The next request notices the third death and replaces the connection.
    let answer = request(&mut sidecar);
    assert!(answer["result"]["tools"].is_array(), "{answer}");
    let out = scratch.nxops(&ws).args(["--json", "monitor", "check"]).output().unwrap();
    let report = json_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["rating"], "Fair", "{report}");
    let reason = report["reasons"][0].as_str().unwrap();
    assert_eq!(reason, "mcp server \"memory\" restarted 3 times in 10 min", "{report}");
}

#[test]
fn zombies_a_process_leaves_unreaped_are_reported_and_lower_the_rating() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_PROCESSES_HEALTH_INTERVAL", "100ms")]);
    sidecar.initialize(&ws);
    // The shell starts two short children, then becomes `sleep`, which never waits for them.
    let spec = json!({"name": "careless", "command": "sh", "args": ["-c", "true & true & exec sleep 1000"]});
    sidecar.request("nxops/process/start", spec).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let view = loop {
        let list = sidecar.request("nxops/process/list", json!({})).unwrap();
        let view = list["processes"][0].clone();
        if view["zombies"].as_array().is_some_and(|z| z.len() == 2) {
            break view;
        }
        assert!(std::time::Instant::now() < deadline, "the zombies were never reported: {view}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    for pid in view["zombies"].as_array().unwrap() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(stat.contains(") Z "), "{pid} is a zombie: {stat}");
    }
    let out = scratch.nxops(&ws).args(["--json", "monitor", "check"]).output().unwrap();
    let report = json_of(&out);
    assert_eq!((out.status.code(), report["rating"].as_str()), (Some(0), Some("Good")), "{report}");
    assert_eq!(
        report["reasons"][0],
        "process \"careless\" leaves 2 zombie process(es) unreaped (their parent does not wait for them)"
    );
    // Stopping the process ends its tree; the sidecar, their new parent, reaps them.
    sidecar.request("nxops/process/stop", json!({"name": "careless"})).unwrap();
    for pid in view["zombies"].as_array().unwrap() {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "{pid} was reaped");
    }
}

#[test]
fn a_rating_change_is_published_at_once_not_at_the_next_interval() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_HEALTH_INTERVAL", "1h")]);
    sidecar.initialize(&ws);
    sidecar.request("nxops/subscribe", json!({"events": ["healthCheck"]})).unwrap();
    let spec = json!({"name": "broken", "command": "sh", "args": ["-c", "exit 1"], "restart": "never"});
    let started = std::time::Instant::now();
    sidecar.request("nxops/process/start", spec).unwrap();
    let check = sidecar.notification("nxops/healthCheck");
    assert_eq!(
        (check["params"]["rating"].as_str(), check["params"]["changed"].as_bool()),
        (Some("Critical"), Some(true))
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?} (the interval is 1 h)", started.elapsed());
    // Starting it again moves the rating back once the better rating has held for the recovery
    // hold (10 s): said then, by a check made for it, not at the next interval.
    let spec = json!({"name": "broken", "command": "sleep", "args": ["1000"], "restart": "never"});
    let restarted = std::time::Instant::now();
    sidecar.request("nxops/process/start", spec).unwrap();
    let check = sidecar.notification("nxops/healthCheck");
    let waited = restarted.elapsed();
    assert_eq!(
        (check["params"]["rating"].as_str(), check["params"]["changed"].as_bool()),
        (Some("Excellent"), Some(true))
    );
    assert_eq!(check["params"]["measuredRating"], "Excellent", "{check}");
    let hold = nxops::health::RECOVERY_HOLD;
    assert!(waited >= hold && waited < hold + std::time::Duration::from_secs(4), "published after {waited:?}");
}

/// Regression: a crash-looping process flipped the rating on every crash and restart (8
/// `healthCheck` changes in 3 s with four looping processes).
#[test]
fn a_crash_loop_moves_the_published_rating_down_once_and_does_not_flap() {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut sidecar = Sidecar::start(&scratch, &ws, &[("NXOPS_HEALTH_INTERVAL", "1h")]);
    sidecar.initialize(&ws);
    sidecar.request("nxops/subscribe", json!({"events": ["healthCheck"]})).unwrap();
    for i in 0..4 {
        let spec = json!({"name": format!("loop{i}"), "command": "sh", "args": ["-c", "sleep 0.15; exit 1"],
            "restart": "always", "maxRestarts": 1000,
            "backoff": {"initial": "150ms", "factor": 1.0, "max": "150ms"}});
        sidecar.request("nxops/process/start", spec).unwrap();
    }
    // Poll the measured rating meanwhile (events received on the way are kept aside).
    let started = std::time::Instant::now();
    let mut measured = std::collections::BTreeSet::new();
    while started.elapsed() < std::time::Duration::from_secs(3) {
        let report = sidecar.request("nxops/health", json!({})).unwrap();
        measured.insert(report["rating"].as_str().unwrap().to_string());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(measured.len() >= 2, "the measured rating does swing: {measured:?}");
    let changes: Vec<_> = sidecar
        .notifications
        .iter()
        .filter(|m| m["method"] == "nxops/healthCheck" && m["params"]["changed"] == true)
        .map(|m| (m["params"]["rating"].clone(), m["params"]["measuredRating"].clone()))
        .collect();
    let list = sidecar.request("nxops/process/list", json!({})).unwrap();
    let restarts: Vec<u64> =
        list["processes"].as_array().unwrap().iter().map(|p| p["restarts"].as_u64().unwrap_or(0)).collect();
    assert!(restarts.iter().all(|&n| n >= 4), "the processes did loop: {restarts:?} {list}");
    // Four looping processes score 100, 87, 75, 62 or 50: Excellent, Good or Fair. Only a worse
    // rating is published during the loop, so at most two changes (Good, then Fair).
    assert!(!changes.is_empty() && changes.len() <= 2, "{changes:?}");
    let ranks = ["Excellent", "Good", "Fair", "Poor", "Critical"];
    let rank = |r: &serde_json::Value| ranks.iter().position(|x| r == x).unwrap();
    assert!(changes.windows(2).all(|w| rank(&w[1].0) > rank(&w[0].0)), "only ever worse: {changes:?}");
    for i in 0..4 {
        sidecar.request("nxops/process/stop", json!({"name": format!("loop{i}")})).unwrap();
    }
}

/// Regression: `monitor start` fell back to the cache-only check when the sidecar went away, and
/// went on showing Excellent as if the workspace were still watched.
#[test]
fn monitor_start_says_plainly_when_the_sidecar_goes_away() {
    use std::io::BufRead;
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", "none");
    let mut sidecar = Sidecar::started(&scratch, &ws);
    let mut monitor = scratch
        .nxops(&ws)
        .args(["--json", "monitor", "start", "--interval", "200ms", "--count", "30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(monitor.stdout.take().unwrap()).lines();
    let mut next = || -> serde_json::Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    let first = next();
    assert_eq!((first["sidecar"].clone(), first.get("warning")), (json!(true), None), "{first}");
    sidecar.child.kill().unwrap();
    let _ = sidecar.child.wait();
    let gone = loop {
        let line = next();
        if line["sidecar"] == false {
            break line;
        }
    };
    assert_eq!(
        gone["warning"], "NO SIDECAR: the sidecar that watched this workspace went away; only the cache is checked now",
        "{gone}"
    );
    assert_eq!(next()["warning"], "NO SIDECAR is watching this workspace; only the cache is checked");
    let _ = monitor.kill();
    let _ = monitor.wait();
}
