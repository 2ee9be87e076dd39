//! The cache manager against real Nx 24: eviction keeps Nx's database and the
//! folders in step, kept entries restore byte for byte, evicted ones re-run,
//! a clean racing `nx run-many` breaks nothing (forced too, while Nx writes new
//! entries), running tasks are protected in both layouts, and verify finds what Nx would
//! serve wrong.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Scratch, json_of, run_ok};
use serde_json::{Value, json};

/// A filled fixture workspace and where its cache is.
struct Filled {
    scratch: Scratch,
    ws: PathBuf,
    cache: PathBuf,
    db: PathBuf,
}

fn filled(git: &str) -> Filled {
    let scratch = Scratch::new();
    let ws = scratch.workspace("ws", git);
    run_ok(Command::new(common::repo_root().join("fixtures/fill-cache.sh")).arg(&ws).env("HOME", scratch.home()));
    let info = json_of(&run_ok(scratch.nxops(&ws).args(["env", "info", "--json"])));
    let cache = PathBuf::from(info["nx"]["cacheDir"].as_str().unwrap());
    let db = PathBuf::from(info["nx"]["dbFiles"][0].as_str().unwrap());
    Filled { scratch, ws, cache, db }
}

impl Filled {
    fn nxops(&self, args: &[&str]) -> Value {
        json_of(&run_ok(self.scratch.nxops(&self.ws).args(args).arg("--json")))
    }

    /// A `--json` command that must exit with `code` (1: a report that says it failed).
    fn nxops_exit(&self, args: &[&str], code: i32) -> Value {
        let out = self.scratch.nxops(&self.ws).args(args).arg("--json").output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("nxops: error"), "the report says it all: {stderr}");
        json_of(&out)
    }

    /// `nx run-many -t build test`; returns hash -> cacheStatus from Nx's run.json.
    /// `nx ARGS --outputStyle=static` in the workspace, daemon and cloud off.
    fn nx(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.ws.join("node_modules/.bin/nx"));
        cmd.args(args).arg("--outputStyle=static").current_dir(&self.ws);
        cmd.env("HOME", self.scratch.home())
            .env("NX_DAEMON", "false")
            .env("NX_NO_CLOUD", "true")
            .env("NX_TUI", "false");
        cmd
    }

    fn run_many(&self) -> BTreeMap<String, String> {
        run_ok(&mut self.nx(&["run-many", "-t", "build", "test"]));
        let run: Value = serde_json::from_slice(&std::fs::read(self.cache.join("run.json")).unwrap()).unwrap();
        run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["hash"].as_str().unwrap().to_string(), t["cacheStatus"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    /// Makes every entry look written and last used `hours` earlier, as if time
    /// had passed (rows and files together, by fixtures/age-cache.py).
    fn age_entries(&self, hours: u32) {
        let script = common::repo_root().join("fixtures/age-cache.py");
        run_ok(Command::new("python3").arg(script).arg(&self.db).arg(&self.cache).arg((hours * 3600).to_string()));
    }

    /// The cache's database and the checkout's own (the same file in the local layout).
    fn databases(&self) -> Vec<PathBuf> {
        let mut found = vec![self.db.clone()];
        for item in std::fs::read_dir(self.ws.join(".nx/workspace-data")).into_iter().flatten().flatten() {
            if item.path().extension().is_some_and(|e| e == "db") && item.path() != self.db {
                found.push(item.path());
            }
        }
        found
    }

    fn rows(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        let mut stmt = conn.prepare("SELECT hash FROM cache_outputs WHERE is_cache_entry ORDER BY hash").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn entry_folders(&self) -> Vec<String> {
        let Ok(listing) = std::fs::read_dir(&self.cache) else { return Vec::new() };
        let mut names: Vec<String> = listing
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        names.sort();
        names
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for item in std::fs::read_dir(&d).unwrap().flatten() {
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            } else {
                out.insert(item.path().strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(item.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn kept_entries_restore_byte_for_byte_and_evicted_ones_rerun() {
    let f = filled("remote");
    let outputs = snapshot(&f.ws.join("dist"));
    assert_eq!(f.rows().len(), 8);
    f.age_entries(2);
    let stats = f.nxops(&["cache", "stats"]);
    // 80% of the bytes: the clean goes down to 72%, evicting some entries and keeping others.
    let limit = stats["bytes"].as_u64().unwrap() * 8 / 10;
    let report = f.nxops(&["cache", "clean", "--max-size", &limit.to_string()]);
    assert!(report["entries"].as_u64().unwrap() >= 1, "{report:#}");
    let evicted: Vec<String> =
        report["removed"].as_array().unwrap().iter().map(|r| r["hash"].as_str().unwrap().to_string()).collect();
    // Nx's database and the folders agree after the clean.
    assert_eq!(f.rows(), f.entry_folders());
    assert!(evicted.iter().all(|h| !f.rows().contains(h)));
    assert!(
        !f.cache.join(".nxops-trash").exists() || std::fs::read_dir(f.cache.join(".nxops-trash")).unwrap().count() == 0
    );

    std::fs::remove_dir_all(f.ws.join("dist")).unwrap();
    let statuses = f.run_many();
    for (hash, status) in &statuses {
        if evicted.contains(hash) {
            assert_eq!(status, "cache-miss", "evicted {hash} must re-run");
        } else if f.rows().contains(hash) {
            assert!(status.starts_with("local-cache"), "kept {hash} must be a hit, was {status}");
        }
    }
    assert!(
        statuses.values().any(|s| s == "cache-miss") && statuses.values().any(|s| s.starts_with("local-cache")),
        "{statuses:?}"
    );
    assert_eq!(snapshot(&f.ws.join("dist")), outputs, "restored outputs equal the originals byte for byte");
}

#[test]
fn entries_used_in_the_last_hour_are_kept_unless_forced() {
    let f = filled("none");
    let report = f.nxops(&["cache", "clean", "--max-size", "1"]);
    assert_eq!(report["entries"], 0);
    assert_eq!(report["skipped"].as_array().unwrap().len(), 8);
    // Nx just used them all: even --force keeps a 10-second grace, and a dry run says so too.
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    conn.execute("UPDATE cache_outputs SET accessed_at = datetime('now')", []).unwrap();
    drop(conn);
    for args in [&["--dry-run"][..], &[]] {
        let report = f.nxops(&[&["cache", "clean", "--max-size", "1", "--force"][..], args].concat());
        assert_eq!(report["entries"], 0, "{args:?}: {report:#}");
        let skipped = report["skipped"].as_array().unwrap();
        assert_eq!(skipped.len(), 8, "{args:?}: {report:#}");
        assert!(skipped.iter().all(|s| s["why"] == "used in the last 10 seconds"), "{args:?}: {report:#}");
    }
    std::thread::sleep(std::time::Duration::from_secs(11));
    let dry = f.nxops(&["cache", "clean", "--max-size", "1", "--force", "--dry-run"]);
    assert_eq!(dry["entries"], 8, "{dry:#}");
    assert_eq!(f.rows().len(), 8, "a dry run removes nothing");
    let forced = f.nxops(&["cache", "clean", "--max-size", "1", "--force"]);
    assert_eq!(forced["entries"], 8, "{forced:#}");
    assert!(f.rows().is_empty() && f.entry_folders().is_empty());
    assert!(std::fs::read_dir(f.cache.join("terminalOutputs")).unwrap().next().is_none());
}

/// Nx putting an entry again (`--skip-nx-cache`, or a run in another checkout,
/// whose running tasks this checkout's records do not show) removes the folder,
/// writes it anew and stamps the row last: a folder newer than its row is kept,
/// even forced, until the row is stamped.
#[test]
fn an_entry_nx_is_writing_again_is_kept_even_forced_until_its_row_is_stamped() {
    let f = filled("none");
    f.age_entries(2);
    let hash = f.rows()[0].clone();
    // Nx's put, stopped before its insert: remove the folder, create it, copy the outputs.
    let folder = f.cache.join(&hash);
    let copy = f.scratch.spaces.path().join("copy");
    std::fs::rename(&folder, &copy).unwrap();
    std::fs::create_dir(&folder).unwrap();
    for item in std::fs::read_dir(&copy).unwrap().flatten() {
        std::fs::rename(item.path(), folder.join(item.file_name())).unwrap();
    }
    for args in [&["--dry-run"][..], &[]] {
        let report = f.nxops(&[&["cache", "clean", "--max-size", "1", "--force"][..], args].concat());
        assert_eq!(report["entries"], 7, "{args:?}: {report:#}");
        let skipped = report["skipped"].as_array().unwrap();
        assert_eq!(skipped.len(), 1, "{args:?}: {report:#}");
        assert_eq!(skipped[0]["hash"], json!(hash), "{report:#}");
        assert_eq!(skipped[0]["why"], json!("Nx is writing it again (its folder is newer than its row)"));
    }
    assert_eq!(f.rows(), std::slice::from_ref(&hash));
    // Nx's insert stamps created_at (and accessed_at; here as if a minute ago, past the grace).
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    conn.execute(
        "UPDATE cache_outputs SET created_at = datetime('now'), accessed_at = datetime('now', '-1 minute')",
        [],
    )
    .unwrap();
    drop(conn);
    let forced = f.nxops(&["cache", "clean", "--max-size", "1", "--force"]);
    assert_eq!(forced["entries"], 1, "{forced:#}");
    assert!(f.rows().is_empty() && f.entry_folders().is_empty());
}

#[test]
fn clean_looping_during_run_many_breaks_no_run_and_no_hit() {
    let f = filled("none");
    let expected = snapshot(&f.ws.join("dist"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cleaner = {
        let (stop, ws, home, db) = (stop.clone(), f.ws.clone(), f.scratch.home().to_path_buf(), f.db.clone());
        std::thread::spawn(move || {
            let mut cleans = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let conn = rusqlite::Connection::open(&db).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                conn.execute("UPDATE cache_outputs SET accessed_at = datetime('now', '-2 hours') WHERE accessed_at < datetime('now', '-20 seconds')", []).unwrap();
                drop(conn);
                let mut cmd = Command::new(common::nxops_bin());
                cmd.args(["cache", "clean", "--max-size", "3KB", "--json"]).current_dir(&ws).env("HOME", &home);
                run_ok(&mut cmd);
                cleans += 1;
            }
            cleans
        })
    };
    for round in 0..6 {
        std::fs::remove_dir_all(f.ws.join("dist")).unwrap();
        let statuses = f.run_many();
        assert_eq!(statuses.len(), 6, "round {round}: every task ran or hit");
        assert_eq!(snapshot(&f.ws.join("dist")), expected, "round {round}: no hit restored nothing");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let cleans = cleaner.join().unwrap();
    assert!(cleans >= 2, "the cleaner ran during the runs ({cleans} times)");
}

/// `clean --force` with a limit of one byte, looping beside runs that write new
/// entries (every source changes each round): Nx writes an entry's folder first
/// and its row last, and no forced clean may take a folder Nx is writing. Every
/// run succeeds and every hit restores exactly what the run before it built.
#[test]
fn forced_clean_looping_beside_new_entries_breaks_no_run_and_no_hit() {
    let f = filled("none");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cleaner = {
        let (stop, ws, home) = (stop.clone(), f.ws.clone(), f.scratch.home().to_path_buf());
        std::thread::spawn(move || {
            let mut cleans = 0;
            let mut orphans = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut cmd = Command::new(common::nxops_bin());
                cmd.args(["cache", "clean", "--max-size", "1", "--force", "--json"])
                    .current_dir(&ws)
                    .env("HOME", &home);
                let report = json_of(&run_ok(&mut cmd));
                orphans += report["removed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["reason"].as_str().unwrap_or("").starts_with("orphan"))
                    .count();
                cleans += 1;
            }
            (cleans, orphans)
        })
    };
    let mut hits = 0;
    for round in 0..6 {
        for project in ["alpha", "beta", "gamma"] {
            let source = f.ws.join(format!("packages/{project}/src/index.js"));
            let mut text = std::fs::read_to_string(&source).unwrap();
            text.push_str(&format!("// round {round}\n"));
            std::fs::write(&source, text).unwrap();
        }
        let built = f.run_many();
        assert!(built.values().all(|s| s == "cache-miss"), "round {round}: new sources run: {built:?}");
        let expected = snapshot(&f.ws.join("dist"));
        std::fs::remove_dir_all(f.ws.join("dist")).unwrap();
        let again = f.run_many();
        hits += again.values().filter(|s| s.starts_with("local-cache")).count();
        assert_eq!(snapshot(&f.ws.join("dist")), expected, "round {round}: a hit restored other outputs: {again:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (cleans, orphans) = cleaner.join().unwrap();
    assert!(cleans >= 6, "the forced cleaner ran during the runs ({cleans} times)");
    assert!(hits > 0, "some entries lived long enough to be hits");
    assert_eq!(orphans, 0, "no folder Nx was writing was swept as an orphan");
}

#[test]
fn verify_finds_an_emptied_entry_and_fix_makes_the_next_run_a_clean_miss() {
    let f = filled("none");
    let first = f.nxops(&["cache", "verify"]);
    assert_eq!(first["problems"].as_array().unwrap().len(), 0, "{first:#}");
    assert_eq!(first["recorded"], 8);
    let build = f.rows().into_iter().find(|h| std::fs::read_dir(f.cache.join(h)).unwrap().next().is_some()).unwrap();
    for item in std::fs::read_dir(f.cache.join(&build)).unwrap().flatten() {
        std::fs::remove_dir_all(item.path()).unwrap();
    }
    let found = f.nxops_exit(&["cache", "verify"], 1);
    let problems = found["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{found:#}");
    assert_eq!(problems[0]["hash"], json!(build));
    assert_eq!(problems[0]["kind"], "empty");

    // Without the fix, Nx would report a hit and restore nothing.
    let fixed = f.nxops(&["cache", "verify", "--fix"]);
    assert_eq!(fixed["fixed"], 1, "{fixed:#}");
    assert!(!f.rows().contains(&build) && !f.cache.join(&build).exists());
    std::fs::remove_dir_all(f.ws.join("dist")).unwrap();
    let statuses = f.run_many();
    assert_eq!(statuses[&build], "cache-miss");
    assert!(f.cache.join(&build).read_dir().unwrap().next().is_some(), "the re-run stored the outputs again");

    // Content changed since first seen.
    let other = f.rows().into_iter().find(|h| *h != build && f.cache.join(h).join("dist").exists()).unwrap();
    let file = std::fs::read_dir(f.cache.join(&other).join("dist")).unwrap().next().unwrap().unwrap().path();
    let victim = std::fs::read_dir(&file).unwrap().flatten().find(|e| e.file_type().unwrap().is_file()).unwrap().path();
    std::fs::write(&victim, b"tampered").unwrap();
    let changed = f.nxops_exit(&["cache", "verify"], 1);
    assert!(
        changed["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["hash"] == json!(other) && (p["kind"] == "changed" || p["kind"] == "partial")),
        "{changed:#}"
    );
}

#[test]
fn deep_stats_and_clean_sweep_orphans_but_never_leave_the_cache() {
    let f = filled("none");
    let outside = f.scratch.spaces.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious.txt"), "keep me").unwrap();
    // An orphan folder (no row) holding a symlink to the outside, an orphan terminal output, leftover trash.
    let orphan = f.cache.join("1234567890123456789");
    std::fs::create_dir(&orphan).unwrap();
    std::fs::write(orphan.join("out.txt"), "orphan").unwrap();
    std::os::unix::fs::symlink(&outside, orphan.join("link")).unwrap();
    std::fs::write(f.cache.join("terminalOutputs/9876543210"), "stray").unwrap();
    std::fs::create_dir_all(f.cache.join(".nxops-trash/left-over")).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for path in [orphan.clone(), f.cache.join("terminalOutputs/9876543210")] {
        std::fs::File::open(&path).unwrap().set_modified(old).unwrap();
    }
    let deep = f.nxops(&["cache", "stats", "--deep"]);
    let orphans = &deep["deep"]["orphans"];
    assert_eq!(orphans["foldersWithoutRow"], 1, "{deep:#}");
    assert_eq!(orphans["terminalOutputsWithoutRow"], 1);
    assert_eq!(orphans["trashItems"], 1);
    assert_eq!(deep["deep"]["entryFolders"], 9);
    assert!(deep["deep"]["allocatedBytes"].as_u64().unwrap() >= deep["deep"]["apparentBytes"].as_u64().unwrap() / 2);

    let report = f.nxops(&["cache", "clean"]);
    let reasons: Vec<&str> =
        report["removed"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert!(
        reasons.contains(&"orphan-folder") && reasons.contains(&"orphan-terminal-output") && reasons.contains(&"trash"),
        "{report:#}"
    );
    assert!(!orphan.exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("precious.txt")).unwrap(),
        "keep me",
        "the symlink was not followed"
    );
    assert_eq!(f.rows().len(), 8, "entries used in the last hour stay");
}

#[test]
fn folders_of_terminal_output_rows_are_reported_and_swept_once_old_keeping_the_rows() {
    let f = filled("none");
    let with_files: Vec<String> =
        f.rows().into_iter().filter(|h| f.cache.join(h).join("dist").exists()).take(2).collect();
    let (old, young) = (&with_files[0], &with_files[1]);
    // What Nx 24 does when it finds an entry's folder missing (`UPDATE cache_outputs SET
    // is_cache_entry = FALSE`); a put that recreated the folder meanwhile leaves it under a row Nx
    // never serves.
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    for hash in [old, young] {
        conn.execute("UPDATE cache_outputs SET is_cache_entry = FALSE WHERE hash = ?1", [hash]).unwrap();
    }
    drop(conn);
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::open(f.cache.join(old)).unwrap().set_modified(two_hours_ago).unwrap();

    let deep = f.nxops(&["cache", "stats", "--deep"]);
    let orphans = &deep["deep"]["orphans"];
    assert_eq!(orphans["foldersOfNonEntryRows"], 2, "{deep:#}");
    assert_eq!(orphans["foldersWithoutRow"], 0, "{deep:#}");
    assert!(orphans["bytes"].as_u64().unwrap() > 0, "{deep:#}");

    let report = f.nxops(&["cache", "clean", "--force"]);
    let removed = report["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "only the old folder goes: {report:#}");
    assert_eq!(removed[0]["reason"], "orphan-folder", "{report:#}");
    assert!(removed[0]["hash"].as_str().unwrap().ends_with(old.as_str()), "{report:#}");
    assert!(!f.cache.join(old).exists());
    assert!(f.cache.join(young).join("dist").exists(), "a young one may be a put in flight");
    // Nx keeps those rows for their terminal outputs: both stay, with their files.
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    let kept: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM cache_outputs WHERE hash IN (?1, ?2) AND NOT is_cache_entry",
            [old, young],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 2);
    assert!(f.cache.join("terminalOutputs").join(old).is_file());
    let after = f.nxops(&["cache", "stats", "--deep"]);
    assert_eq!(after["deep"]["orphans"]["foldersOfNonEntryRows"], 1, "{after:#}");
}

#[test]
fn a_cache_that_is_not_nx_24_is_refused_with_a_clear_message() {
    let s = Scratch::new();
    let ws = s.workspace("old", "none");
    std::fs::create_dir_all(ws.join(".nx/cache/123")).unwrap();
    let out = s.nxops(&ws).args(["cache", "stats"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Nx database") && err.contains("not Nx 24's layout"), "{err}");

    let f = filled("none");
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    conn.execute_batch("ALTER TABLE cache_outputs RENAME COLUMN accessed_at TO last_used").unwrap();
    drop(conn);
    let out = f.scratch.nxops(&f.ws).args(["cache", "clean"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lacks column(s) accessed_at"), "{err}");
    assert_eq!(f.entry_folders().len(), 8, "nothing was removed");
}

#[test]
fn the_owner_cleans_automatically_over_the_threshold_and_says_so() {
    let f = filled("none");
    f.age_entries(2);
    let env = [("NXOPS_CACHE_MAX_SIZE", "4KB"), ("NXOPS_CACHE_CHECK_INTERVAL", "1s")];
    let mut sidecar = common::Sidecar::start(&f.scratch, &f.ws, &env);
    sidecar.initialize(&f.ws);
    sidecar.request("nxops/subscribe", json!({"events": ["cacheCleanup"]})).unwrap();
    let event = sidecar.notification("nxops/cacheCleanup");
    assert_eq!(event["params"]["trigger"], "automatic", "{event}");
    assert!(event["params"]["entries"].as_u64().unwrap() >= 1, "{event}");
    let stats = sidecar.request("nxops/cache/stats", json!({})).unwrap();
    assert!(stats["bytes"].as_u64().unwrap() <= 4096 * 9 / 10, "{stats:#}");
    assert_eq!(f.rows(), f.entry_folders());
}

/// Over its limit with every entry used within the hour, the automatic clean can
/// evict nothing: one `cacheCleanup` says why and when it can (not one per check),
/// and health says it too.
#[test]
fn a_blocked_automatic_clean_says_why_and_when_once() {
    let f = filled("none");
    let env = [("NXOPS_CACHE_MAX_SIZE", "4KB"), ("NXOPS_CACHE_CHECK_INTERVAL", "1s")];
    let mut sidecar = common::Sidecar::start(&f.scratch, &f.ws, &env);
    sidecar.initialize(&f.ws);
    sidecar.request("nxops/subscribe", json!({"events": ["cacheCleanup"]})).unwrap();
    let event = sidecar.notification("nxops/cacheCleanup");
    assert_eq!(
        (event["params"]["trigger"].clone(), event["params"]["entries"].clone()),
        (json!("automatic"), json!(0))
    );
    let why = event["params"]["blocked"].as_str().unwrap_or_default();
    assert!(why.contains("every entry was used in the last hour") && why.contains("min"), "{event}");
    let wait = event["params"]["evictableInMs"].as_u64().unwrap();
    assert!(wait > 0 && wait <= 3_600_000, "{event}");
    // Three more checks go by: no more events while nothing changes.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let health = sidecar.request("nxops/health", json!({})).unwrap();
    let again = sidecar.notifications.iter().filter(|n| n["method"] == "nxops/cacheCleanup").count();
    assert_eq!(again, 0, "told once: {:?}", sidecar.notifications);
    let cache = health["components"].as_array().unwrap().iter().find(|c| c["name"] == "cache").cloned().unwrap();
    let reasons = cache["reasons"].to_string();
    assert!(reasons.contains("every entry was used in the last hour"), "{cache}");
    assert_eq!(f.rows().len(), 8, "nothing was evicted");
}

#[test]
fn reset_runs_nx_reset_and_falls_back_to_manual_cleanup_when_it_hangs() {
    let f = filled("none");
    let report = f.nxops(&["cache", "reset"]);
    assert_eq!(report["path"], "nx-reset", "{report:#}");
    assert_eq!(report["exitCode"], 0);
    assert!(f.entry_folders().is_empty(), "nx reset --only-cache emptied the cache");

    // Refill, then start a real Nx daemon, and give nx reset no time at all: the manual path.
    let mut nx = Command::new(f.ws.join("node_modules/.bin/nx"));
    nx.args(["show", "projects"])
        .current_dir(&f.ws)
        .env("HOME", f.scratch.home())
        .env("NX_DAEMON", "true")
        .env_remove("CI");
    run_ok(&mut nx);
    f.run_many();
    assert!(!f.entry_folders().is_empty());
    let record = f.ws.join(".nx/workspace-data/d/server-process.json");
    let daemon = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["processId"].as_u64());
    let report = f.nxops(&["cache", "reset", "--all", "--timeout", "1ms"]);
    assert_eq!(report["path"], "manual", "{report:#}");
    assert!(report["fallbackReason"].as_str().unwrap().contains("did not finish"), "{report:#}");
    assert!(f.entry_folders().is_empty());
    assert!(!f.db.exists(), "--all removes the database");
    assert!(!f.ws.join(".nx/workspace-data").exists(), "--all removes the workspace data");
    let pid = daemon.expect("the Nx daemon started (NX_DAEMON=true) and recorded its pid");
    {
        assert_eq!(report["daemonStopped"], pid, "{report:#}");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!common::alive(pid as u32), "the daemon {pid} was stopped");
    }
    assert!(f.ws.join("packages/alpha/project.json").exists(), "nothing outside Nx's folders was touched");
}

#[test]
fn entries_of_a_running_task_are_kept() {
    running_task_kept("none", &[]);
}

/// In the shared layout Nx records running tasks in the checkout's own
/// database (no cache tables), not in the cache's; `--force` keeps them too.
#[test]
fn entries_of_a_running_task_are_kept_in_the_shared_layout_even_forced() {
    running_task_kept("remote", &["--force"]);
}

fn running_task_kept(git: &str, extra: &[&str]) {
    let f = filled(git);
    let layout = if f.databases().len() == 2 { "remote" } else { "none" };
    assert_eq!(layout, git, "a remote means the shared layout: {:?}", f.databases());
    // A cacheable task that takes a while; its first run leaves an entry.
    let project = f.ws.join("packages/alpha/project.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&project).unwrap()).unwrap();
    config["targets"]["slow"] = json!({
        "executor": "nx:run-commands",
        "cache": true,
        "inputs": ["{projectRoot}/slow-input.txt"],
        "options": {"command": "node -e \"setTimeout(() => {}, 6000)\""}
    });
    std::fs::write(&project, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    std::fs::write(f.ws.join("packages/alpha/slow-input.txt"), "1").unwrap();
    let nx = |f: &Filled| {
        let mut cmd = f.nx(&["run", "alpha:slow"]);
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        cmd
    };
    run_ok(&mut nx(&f));
    let slow_entries = |f: &Filled| -> Vec<String> {
        let conn = rusqlite::Connection::open(&f.db).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT c.hash FROM cache_outputs c JOIN task_details d ON d.hash = c.hash WHERE d.target = 'slow'",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let first = slow_entries(&f);
    assert_eq!(first.len(), 1);
    // Run it again with a new input (a miss that takes 6 s), and clean while it runs.
    std::fs::write(f.ws.join("packages/alpha/slow-input.txt"), "2").unwrap();
    let mut running = nx(&f).spawn().unwrap();
    // Wait until Nx records the task as running (it first builds the project graph).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let found: i64 = f
            .databases()
            .iter()
            .map(|db| {
                let conn = rusqlite::Connection::open(db).unwrap();
                conn.query_row("SELECT COUNT(*) FROM task_invocations WHERE task_id LIKE 'alpha:slow%'", [], |r| {
                    r.get(0)
                })
                .unwrap_or(0)
            })
            .sum();
        if found > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Nx never recorded alpha:slow as running");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f.age_entries(2);
    let report = f.nxops(&[&["cache", "clean", "--max-size", "1"][..], extra].concat());
    let _ = running.wait();
    let kept: Vec<&Value> =
        report["skipped"].as_array().unwrap().iter().filter(|s| s["hash"] == json!(first[0])).collect();
    assert_eq!(kept.len(), 1, "{report:#}");
    assert_eq!(kept[0]["why"], "task alpha:slow is running");
    assert!(report["entries"].as_u64().unwrap() >= 5, "other entries were evicted: {report:#}");
}

#[test]
fn a_cancelled_clean_stops_between_steps_and_reports_what_it_did() {
    let f = filled("none");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for i in 0..3000u64 {
        let orphan = f.cache.join(format!("{}", 5_000_000_000_000_000_000u64 + i));
        std::fs::create_dir(&orphan).unwrap();
        std::fs::write(orphan.join("f"), "x").unwrap();
        std::fs::File::open(&orphan).unwrap().set_modified(old).unwrap();
    }
    let mut sidecar = common::Sidecar::started(&f.scratch, &f.ws);
    sidecar.request("nxops/subscribe", json!({"events": ["cacheCleanup"]})).unwrap();
    sidecar.send(&json!({"jsonrpc": "2.0", "id": 500, "method": "nxops/cache/clean", "params": {}}));
    sidecar.notify("$/cancelRequest", json!({"id": 500}));
    let answer = sidecar.response_to(&json!(500));
    assert_eq!(answer["error"]["code"], -32800, "{answer}");
    let event = sidecar.notification("nxops/cacheCleanup");
    assert_eq!(event["params"]["cancelled"], true, "{event}");
    let left = std::fs::read_dir(&f.cache)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("50000000000000"))
        .count();
    assert!(left > 0, "the clean stopped before taking every orphan");
    assert_eq!(f.rows().len(), 8, "nothing half-done: the entries are intact");
    let rest = sidecar.request("nxops/cache/clean", json!({})).unwrap();
    assert!(!rest["cancelled"].as_bool().unwrap());
    assert_eq!(rest["byReason"]["orphan-folder"]["entries"].as_u64().unwrap() as usize, left, "{rest:#}");
}

/// Runs `cmd` (a `--json` command), which must end within `secs` with exit code `code`.
fn run_within(cmd: &mut Command, secs: u64, code: i32) -> Value {
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {secs} s (it hung on a trap)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    json_of(&out)
}

/// A regular file somewhere under `folder`.
fn first_file_in(folder: &Path) -> PathBuf {
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap().flatten() {
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            } else if item.file_type().unwrap().is_file() {
                return item.path();
            }
        }
    }
    panic!("no file in {}", folder.display())
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn verify_and_deep_stats_never_follow_a_trap_out_of_the_cache() {
    let f = filled("none");
    let first = f.nxops(&["cache", "verify"]);
    assert_eq!(first["recorded"], 8, "{first:#}");
    let outside = Outside::make(&f);
    let with_files: Vec<String> =
        f.rows().into_iter().filter(|h| f.cache.join(h).join("dist").exists()).take(4).collect();
    assert_eq!(with_files.len(), 4, "the fixture has four entries with outputs");
    let file_in = |hash: &str| first_file_in(&f.cache.join(hash));
    let (linked, fifo, zero, terminal) = (&with_files[0], &with_files[1], &with_files[2], &with_files[3]);
    std::fs::remove_dir_all(f.cache.join(linked)).unwrap();
    std::os::unix::fs::symlink(&outside.dir, f.cache.join(linked)).unwrap();
    let victim = file_in(fifo);
    std::fs::remove_file(&victim).unwrap();
    mkfifo(&victim);
    let victim = file_in(zero);
    std::fs::remove_file(&victim).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &victim).unwrap();
    let term = f.cache.join("terminalOutputs").join(terminal);
    let _ = std::fs::remove_file(&term);
    std::os::unix::fs::symlink(outside.dir.join("terminal.txt"), &term).unwrap();

    // Problems found: exit 1.
    let report = run_within(f.scratch.nxops(&f.ws).args(["cache", "verify", "--json"]), 60, 1);
    let problems = report["problems"].as_array().unwrap();
    let problem = |hash: &str| problems.iter().find(|p| p["hash"] == json!(hash)).cloned().unwrap_or(Value::Null);
    assert_eq!(problems.len(), 4, "{report:#}");
    assert_eq!(problem(linked)["kind"], "unsafe", "{report:#}");
    let detail = problem(linked)["detail"].as_str().unwrap().to_string();
    assert!(detail.contains(&format!("a symlink to {}", outside.dir.display())), "{detail}");
    assert_eq!(problem(fifo)["kind"], "unsafe");
    assert!(problem(fifo)["detail"].as_str().unwrap().contains("is a FIFO"), "{report:#}");
    assert_eq!(problem(terminal)["kind"], "unsafe");
    assert!(problem(terminal)["detail"].as_str().unwrap().contains("terminalOutputs/"), "{report:#}");
    // A symlink among the outputs is an output Nx restores as a symlink: never followed, and the
    // file it replaced is missing from the recorded content.
    let kind = problem(zero)["kind"].as_str().unwrap().to_string();
    assert!(kind == "changed" || kind == "partial", "{report:#}");
    assert_eq!(report["checked"], 8, "the symlinked entry is checked as itself, not as the outside folder");
    assert_eq!(report["recorded"], 0, "nothing outside was digested as a first sight");

    let deep = run_within(f.scratch.nxops(&f.ws).args(["cache", "stats", "--deep", "--json"]), 60, 0);
    let items = deep["deep"]["unsafeItems"].as_array().unwrap();
    let paths: Vec<&str> = items.iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&linked.as_str()), "{deep:#}");
    assert!(paths.contains(&fifo.as_str()), "{deep:#}");
    assert!(paths.contains(&format!("terminalOutputs/{terminal}").as_str()), "{deep:#}");
    assert_eq!(deep["deep"]["orphans"]["rowsWithoutFolder"], 0, "a symlinked entry is not a missing folder: {deep:#}");

    // All of them fixed: exit 0.
    let fixed = run_within(f.scratch.nxops(&f.ws).args(["cache", "verify", "--fix", "--json"]), 60, 0);
    assert_eq!(fixed["fixed"], 4, "{fixed:#}");
    outside.assert_intact("verify --fix");
    assert!(!f.cache.join(linked).exists() && std::fs::symlink_metadata(f.cache.join(linked)).is_err());
    let after = run_within(f.scratch.nxops(&f.ws).args(["cache", "verify", "--json"]), 60, 0);
    assert_eq!(after["problems"].as_array().unwrap().len(), 0, "{after:#}");
}

/// What `plant_traps` put outside the cache, to prove nothing there was followed, read or removed.
struct Outside {
    dir: PathBuf,
}

impl Outside {
    /// Outside the cache: a file, a FIFO (reading it would hang) and a terminal output.
    fn make(f: &Filled) -> Outside {
        let dir = f.scratch.spaces.path().join("outside");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("precious.txt"), "keep me").unwrap();
        mkfifo(&dir.join("pipe"));
        std::fs::write(dir.join("terminal.txt"), "x".repeat(1 << 20)).unwrap();
        Outside { dir }
    }

    fn assert_intact(&self, after: &str) {
        assert_eq!(std::fs::read_to_string(self.dir.join("precious.txt")).unwrap(), "keep me", "after {after}");
        assert!(std::fs::symlink_metadata(self.dir.join("pipe")).unwrap().file_type().is_fifo(), "after {after}");
        assert_eq!(std::fs::metadata(self.dir.join("terminal.txt")).unwrap().len(), 1 << 20, "after {after}");
    }
}

/// Every kind of trap at once, in and beside entries: an entry folder that is a symlink out of the
/// cache, a FIFO and a `/dev/zero` link among an entry's outputs, a terminal output linked out,
/// and old orphans (a folder link, a terminal-output link, a top-level FIFO, a trash item link).
fn plant_traps(f: &Filled) -> Outside {
    let outside = Outside::make(f);
    let dir = outside.dir.clone();
    let with_files: Vec<String> =
        f.rows().into_iter().filter(|h| f.cache.join(h).join("dist").exists()).take(4).collect();
    let first_file = |hash: &str| first_file_in(&f.cache.join(hash));
    std::fs::remove_dir_all(f.cache.join(&with_files[0])).unwrap();
    std::os::unix::fs::symlink(&dir, f.cache.join(&with_files[0])).unwrap();
    let fifo = first_file(&with_files[1]);
    std::fs::remove_file(&fifo).unwrap();
    mkfifo(&fifo);
    let zero = first_file(&with_files[2]);
    std::fs::remove_file(&zero).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let terminal = f.cache.join("terminalOutputs").join(&with_files[3]);
    let _ = std::fs::remove_file(&terminal);
    std::os::unix::fs::symlink(dir.join("terminal.txt"), &terminal).unwrap();
    let orphans = [
        (f.cache.join("1111111111111111111"), dir.clone()),
        (f.cache.join("terminalOutputs/2222222222222222222"), dir.join("terminal.txt")),
        (f.cache.join(".nxops-trash/planted"), dir.clone()),
    ];
    std::fs::create_dir_all(f.cache.join(".nxops-trash")).unwrap();
    for (link, target) in &orphans {
        std::os::unix::fs::symlink(target, link).unwrap();
        // Old enough to be swept: the link itself, never what it points at.
        assert!(Command::new("touch").args(["-h", "-d", "2 hours ago"]).arg(link).status().unwrap().success());
    }
    mkfifo(&f.cache.join("3333333333333333333"));
    outside
}

#[test]
fn every_cache_command_refuses_every_trap() {
    // Read-only commands, on one cache.
    let f = filled("none");
    let outside = plant_traps(&f);
    let stats = run_within(f.scratch.nxops(&f.ws).args(["cache", "stats", "--json"]), 60, 0);
    assert_eq!(stats["entries"], 8, "stats reads the database only: {stats:#}");
    let deep = run_within(f.scratch.nxops(&f.ws).args(["cache", "stats", "--deep", "--json"]), 60, 0);
    // The linked entry, the entry holding a FIFO, the linked terminal output, and the two row-less
    // traps at the top (the folder link and the FIFO); the `/dev/zero` link is an output Nx restores
    // as a link, for `verify` to find changed.
    let unsafe_paths: Vec<&str> =
        deep["deep"]["unsafeItems"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert_eq!(unsafe_paths.len(), 5, "{deep:#}");
    assert!(unsafe_paths.contains(&"1111111111111111111") && unsafe_paths.contains(&"3333333333333333333"), "{deep:#}");
    let verify = run_within(f.scratch.nxops(&f.ws).args(["cache", "verify", "--json"]), 60, 1);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 4, "{verify:#}");
    outside.assert_intact("stats, stats --deep and verify");

    // Each command that removes, on a cache of its own.
    let commands: [&[&str]; 4] = [
        &["cache", "verify", "--fix"],
        &["cache", "clean", "--force", "--max-size", "1"],
        &["cache", "reset", "--timeout", "1ms"],
        &["cache", "reset", "--all", "--timeout", "1ms"],
    ];
    for args in commands {
        let f = filled("none");
        f.age_entries(2);
        let outside = plant_traps(&f);
        let report = run_within(f.scratch.nxops(&f.ws).args(args).arg("--json"), 60, 0);
        outside.assert_intact(&format!("{args:?}"));
        let links_left: Vec<PathBuf> = [f.cache.clone(), f.cache.join("terminalOutputs"), f.cache.join(".nxops-trash")]
            .iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flat_map(|listing| listing.flatten())
            .filter(|item| item.file_type().unwrap().is_symlink())
            .map(|item| item.path())
            .collect();
        if args.contains(&"verify") {
            assert_eq!(report["fixed"], 4, "{report:#}");
            // The traps verify reported are gone (and its trash emptied, the planted link with it);
            // row-less orphans are clean's to sweep.
            let names: Vec<_> = links_left.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
            assert_eq!(names, ["1111111111111111111", "2222222222222222222"], "{links_left:?}");
        } else {
            assert!(links_left.is_empty(), "{args:?} left {links_left:?}: {report:#}");
        }
        if args.contains(&"reset") {
            assert_eq!(report["path"], "manual", "{report:#}");
        }
    }
}

/// A long-running process that is not Nx, and socket folders made for the test; all removed on drop.
struct Impostor {
    child: std::process::Child,
    folders: Vec<PathBuf>,
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for folder in &self.folders {
            let _ = std::fs::remove_dir(folder);
        }
    }
}

#[test]
fn reset_never_signals_a_reused_daemon_pid_nor_removes_other_workspaces_sockets() {
    let f = filled("none");
    // Started in the workspace itself, before the record is written: only the proof that it runs
    // this workspace's nx daemon script tells it apart. bash, since dash has no `exec -a`.
    let child = Command::new("bash")
        .args(["-c", "exec -a 'nginx: master process /usr/sbin/nginx -g daemon on;' sleep 1000"])
        .current_dir(&f.ws)
        .spawn()
        .unwrap();
    let pid = child.id();
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    let sockets = PathBuf::from(format!("/tmp/.nx/{}/sockets", uid.trim()));
    let ours = sockets.join(format!("nxops-test-ours-{pid}"));
    let other = sockets.join(format!("nxops-test-other-{pid}"));
    let mut impostor = Impostor { child, folders: vec![ours.clone(), other.clone()] };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("nx") && cmdline.contains("daemon"), "{cmdline}");
    for all in [false, true] {
        for folder in [&ours, &other] {
            std::fs::create_dir_all(folder).unwrap();
            let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
            std::fs::File::open(folder).unwrap().set_modified(old).unwrap();
        }
        let record = f.ws.join(".nx/workspace-data/d/server-process.json");
        std::fs::create_dir_all(record.parent().unwrap()).unwrap();
        let socket = ours.join("d.sock");
        std::fs::write(&record, json!({"processId": pid, "socketPath": socket, "nxVersion": "24.0.6"}).to_string())
            .unwrap();
        let mut args = vec!["cache", "reset", "--timeout", "1ms"];
        if all {
            args.push("--all");
        }
        let report = f.nxops(&args);
        assert_eq!(report["path"], "manual", "{report:#}");
        assert_eq!(report["daemonStopped"], Value::Null, "{report:#}");
        assert!(impostor.child.try_wait().unwrap().is_none(), "the impostor {pid} survives (all: {all})");
        assert!(other.is_dir(), "another workspace's socket folder survives (all: {all})");
        if all {
            assert!(!ours.exists(), "this workspace's own stale socket folder is removed: {report:#}");
        } else {
            assert!(ours.is_dir(), "without --all no socket folder is touched");
        }
    }
}

/// A real local user, removed again on drop (root makes one; permissions bind only
/// other users, so a denied move needs one).
struct OtherUser(String);

impl OtherUser {
    fn create() -> Option<OtherUser> {
        let out = Command::new("id").arg("-u").output().expect("id -u");
        if String::from_utf8_lossy(&out.stdout).trim() != "0" {
            return None;
        }
        let name = format!("nxcl{}", std::process::id());
        run_ok(Command::new("useradd").args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name]));
        Some(OtherUser(name))
    }

    /// `nxops args --json` in `ws` as this user, with `home` as its HOME.
    fn nxops(&self, ws: &Path, home: &Path, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("setpriv");
        cmd.args([&format!("--reuid={}", self.0), &format!("--regid={}", self.0), "--clear-groups", "--"]);
        cmd.arg(common::nxops_bin()).args(args).current_dir(ws).stdin(std::process::Stdio::null());
        cmd.env("HOME", home).env("XDG_RUNTIME_DIR", home.join("run")).env("NX_DAEMON", "false");
        cmd.output().unwrap()
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

/// An entry that cannot be moved makes the clean exit 1 with its report (the
/// others are removed); an item of the trash that cannot be deleted is reported
/// and skipped, and never blocks a later clean.
#[test]
fn a_clean_that_cannot_remove_an_entry_exits_1_and_a_stuck_trash_item_blocks_nothing() {
    let Some(user) = OtherUser::create() else {
        eprintln!("SKIPPED: a denied move needs another user (useradd needs root); CI runs this test as root");
        return;
    };
    let f = filled("none");
    f.age_entries(2);
    let spaces = f.ws.parent().unwrap().to_path_buf();
    let home = spaces.join("other-home");
    std::fs::create_dir(&home).unwrap();
    // One entry folder the user may not move (moving a folder rewrites its `..`).
    let stuck_entry = f.rows().into_iter().find(|h| f.cache.join(h).join("dist").exists()).unwrap();
    // An item in the trash the user cannot delete: a file in a folder it may not write.
    let trash_item = f.cache.join(".nxops-trash/left-over");
    std::fs::create_dir_all(&trash_item).unwrap();
    std::fs::write(trash_item.join("file"), "x").unwrap();
    run_ok(Command::new("chown").arg("-R").arg(format!("{0}:{0}", user.0)).arg(&spaces));
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
    };
    mode(&f.cache.join(&stuck_entry), 0o555);
    mode(&trash_item, 0o555);

    let out = user.nxops(&f.ws, &home, &["cache", "clean", "--max-size", "1", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "it could not do what it was asked: {stderr}");
    assert!(!stderr.contains("nxops: error"), "the report says it all: {stderr}");
    let report = json_of(&out);
    assert_eq!(report["failed"], 1, "{report:#}");
    assert_eq!(report["entries"], 7, "the others were removed: {report:#}");
    let failed: Vec<&Value> = report["skipped"].as_array().unwrap().iter().filter(|s| s["failed"] == true).collect();
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["hash"], json!(stuck_entry));
    assert!(failed[0]["why"].as_str().unwrap().contains("Permission denied"), "{report:#}");
    let stuck = report["trashStuck"].as_array().unwrap();
    assert_eq!(stuck.len(), 1, "{report:#}");
    assert!(stuck[0].as_str().unwrap().contains("left-over"), "{report:#}");
    assert!(
        report["removed"].as_array().unwrap().iter().all(|r| r["hash"] != "left-over"),
        "what stayed in the trash is not reported removed: {report:#}"
    );
    assert_eq!(f.rows(), vec![stuck_entry.clone()], "Nx's database keeps exactly the entry that stayed");
    assert!(f.cache.join(&stuck_entry).join("dist").exists(), "the entry that stayed is whole");

    // The human report names both; exit 1 again while the entry cannot move.
    let out = user.nxops(&f.ws, &home, &["cache", "clean", "--max-size", "1"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Could not remove 1 entries") && text.contains("Permission denied"), "{text}");
    assert!(text.contains("Left in the trash: 1 items"), "{text}");

    // Once the entry can move, the clean succeeds although the trash item is still stuck.
    mode(&f.cache.join(&stuck_entry), 0o755);
    let out = user.nxops(&f.ws, &home, &["cache", "clean", "--max-size", "1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out);
    assert_eq!((report["entries"].clone(), report["failed"].clone()), (json!(1), json!(0)), "{report:#}");
    assert_eq!(report["trashStuck"].as_array().unwrap().len(), 1, "still reported: {report:#}");
    assert!(f.rows().is_empty() && f.entry_folders().is_empty());
    mode(&trash_item, 0o755);
}

/// `verify` knows what nxops and Nx did: an entry evicted and built again under
/// the same hash with other bytes (a timestamp in its output) is a new entry, not
/// a changed one; an entry without its terminal output is counted, not a problem.
#[test]
fn verify_takes_a_rebuilt_entry_as_new_and_a_missing_terminal_output_as_harmless() {
    let f = filled("none");
    let project = f.ws.join("packages/alpha/project.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&project).unwrap()).unwrap();
    config["targets"]["stamp"] = json!({
        "executor": "nx:run-commands",
        "cache": true,
        "outputs": ["{workspaceRoot}/dist/stamp"],
        "options": {"command": "node -e \"require('fs').mkdirSync('dist/stamp', {recursive: true}); require('fs').writeFileSync('dist/stamp/built-at.txt', String(process.hrtime.bigint()))\""}
    });
    std::fs::write(&project, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let stamp = |f: &Filled| {
        run_ok(&mut f.nx(&["run", "alpha:stamp"]));
        let run: Value = serde_json::from_slice(&std::fs::read(f.cache.join("run.json")).unwrap()).unwrap();
        let task = run["tasks"].as_array().unwrap().iter().find(|t| t["taskId"] == "alpha:stamp").cloned().unwrap();
        (task["hash"].as_str().unwrap().to_string(), std::fs::read(f.ws.join("dist/stamp/built-at.txt")).unwrap())
    };
    let (hash, first) = stamp(&f);
    let seen = f.nxops(&["cache", "verify"]);
    assert_eq!(seen["problems"], json!([]), "{seen:#}");
    assert_eq!(seen["recorded"], 9, "{seen:#}");

    // nxops evicts everything; Nx builds the entry again, under the same hash, with other bytes.
    f.age_entries(2);
    let cleaned = f.nxops(&["cache", "clean", "--max-size", "1"]);
    assert_eq!(cleaned["entries"], 9, "{cleaned:#}");
    let (again, second) = stamp(&f);
    assert_eq!(again, hash, "the same inputs, the same hash");
    assert_ne!(first, second, "the output holds the time it was built");
    let rebuilt = f.nxops(&["cache", "verify"]);
    assert_eq!(rebuilt["problems"], json!([]), "a rebuilt entry is not a changed one: {rebuilt:#}");
    assert_eq!(rebuilt["recorded"], 1, "it is a first sight: {rebuilt:#}");

    // Changed in place (which Nx never does) is still found.
    std::fs::write(f.cache.join(&hash).join("dist/stamp/built-at.txt"), vec![b'x'; second.len()]).unwrap();
    let changed = f.nxops_exit(&["cache", "verify"], 1);
    assert_eq!(changed["problems"][0]["kind"], "changed", "{changed:#}");
    std::fs::write(f.cache.join(&hash).join("dist/stamp/built-at.txt"), &second).unwrap();

    // Without its terminal output the entry restores its outputs and replays an empty log.
    std::fs::remove_file(f.cache.join("terminalOutputs").join(&hash)).unwrap();
    let out = run_ok(f.scratch.nxops(&f.ws).args(["cache", "verify"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("0 problem(s)") && text.contains("no terminal output  1 entries"), "{text}");
    let missing = f.nxops(&["cache", "verify", "--fix"]);
    assert_eq!((missing["missingTerminalOutputs"].clone(), missing["fixed"].clone()), (json!(1), json!(0)));
    assert!(f.cache.join(&hash).join("dist/stamp/built-at.txt").exists(), "--fix evicts no complete outputs");
}
