//! `<state>/sessions.json`: the sessions of a workspace, so that a new owner
//! (after a crash or a restart of the sidecar) restores them.
//!
//! Written whole to a temporary file in the same directory, fsynced, renamed
//! over the old file, and the directory fsynced: a crash at any point leaves
//! either the old file or the new one, never a torn one. A file that cannot be
//! read as sessions is moved aside (`sessions.json.corrupt`), never deleted,
//! and the owner starts with no sessions.
//!
//! The temporary file is `.sessions.json.<pid>.tmp`, named after its writer.
//! A writer killed between creating and renaming it leaves it behind; the next
//! owner's `load` removes those of writers that no longer run (a live pid's
//! file may be mid-write, so it is left alone).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::registry::Record;

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    version: u32,
    sessions: Vec<Record>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("sessions.json")
}

/// Writes the sessions atomically (see the module docs).
pub fn save(file: &Path, sessions: Vec<Record>) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(&File { version: VERSION, sessions }).map_err(std::io::Error::other)?;
    crate::atomic_file::replace(file, &text)
}

/// Why the file could not be used.
enum Unusable {
    /// It could not be read (permissions, I/O): left alone.
    Unreadable(String),
    /// It was read and is not sessions: moved aside by `load`.
    Broken(String),
}

fn read(file: &Path) -> Result<Vec<Record>, Unusable> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Unusable::Unreadable(format!("cannot read {}: {err}", file.display()))),
    };
    match serde_json::from_slice::<File>(&bytes) {
        Ok(parsed) if parsed.version == VERSION => Ok(parsed.sessions),
        Ok(parsed) => Err(Unusable::Broken(format!(
            "{}: version {} is not one this nxops reads ({VERSION})",
            file.display(),
            parsed.version
        ))),
        Err(err) => Err(Unusable::Broken(format!("{}: {err}", file.display()))),
    }
}

/// What the file holds, touching nothing (for a CLI without a sidecar). A
/// missing file is no sessions.
pub fn peek(file: &Path) -> Result<Vec<Record>, String> {
    read(file).map_err(|(Unusable::Unreadable(problem) | Unusable::Broken(problem))| problem)
}

/// What the file holds, for the owner that restores it. A missing file is no
/// sessions; a broken one is moved aside and reported in the `Err`, with no
/// sessions restored.
pub fn load(file: &Path) -> Result<Vec<Record>, String> {
    if let Some(dir) = file.parent() {
        remove_stale_temporaries(dir, |pid| Path::new(&format!("/proc/{pid}")).exists());
    }
    let problem = match read(file) {
        Ok(records) => return Ok(records),
        Err(Unusable::Unreadable(problem)) => return Err(problem),
        Err(Unusable::Broken(problem)) => problem,
    };
    let aside = file.with_extension("json.corrupt");
    let moved = match std::fs::rename(file, &aside) {
        Ok(()) => format!("moved to {}", aside.display()),
        Err(err) => format!("could not be moved aside: {err}"),
    };
    Err(format!("{problem}; no sessions restored (the file was {moved})"))
}

/// Removes `.sessions.json.<pid>.tmp` files in `dir` whose writer is not `alive`; returns how many.
fn remove_stale_temporaries(dir: &Path, alive: impl Fn(u32) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_pid) else { continue };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(err) => tracing::warn!(target: "nxops::sessions", "cannot remove {}: {err}", entry.path().display()),
        }
    }
    removed
}

/// The writer's pid in a temporary file's name (`.sessions.json.<pid>.tmp`).
fn temporary_pid(name: &str) -> Option<u32> {
    let pid = name.strip_prefix(".sessions.json.")?.strip_suffix(".tmp")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::sessions::registry::Kind;

    fn record(id: &str) -> Record {
        Record {
            id: id.into(),
            kind: Kind::Named,
            client_name: None,
            client_version: None,
            opened_at: 1,
            last_seen: 2,
            disconnected_at: None,
            timeout_ms: 60_000,
            labels: BTreeMap::new(),
            processes: BTreeMap::from([("web".into(), serde_json::json!({"command": "sleep", "args": ["60"]}))]),
            mcp: BTreeSet::from(["memory".into()]),
            restarts: 1,
            subscriptions: BTreeSet::from(["healthCheck".into()]),
        }
    }

    #[test]
    fn sessions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        assert_eq!(load(&file).unwrap(), Vec::new(), "no file, no sessions");
        save(&file, vec![record("a"), record("b")]).unwrap();
        assert_eq!(load(&file).unwrap(), vec![record("a"), record("b")]);
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, vec!["sessions.json".to_string()], "no temporary file is left behind");
    }

    #[test]
    fn a_write_that_died_before_the_rename_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        save(&file, vec![record("a")]).unwrap();
        // What a crash mid-write leaves: a torn temporary file beside the real one.
        std::fs::write(dir.path().join(".sessions.json.999.tmp"), b"{\"version\":1,\"sess").unwrap();
        assert_eq!(load(&file).unwrap(), vec![record("a")]);
    }

    /// Regression: killed owners left their temporary files behind for good.
    #[test]
    fn load_removes_temporary_files_of_writers_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        save(&file, vec![record("a")]).unwrap();
        let names = ["dead", "live", "mine", "other"];
        let files = [
            dir.path().join(".sessions.json.4194999.tmp"),
            dir.path().join(".sessions.json.1.tmp"),
            dir.path().join(format!(".sessions.json.{}.tmp", std::process::id())),
            dir.path().join(".sessions.json.x1.tmp"),
        ];
        for f in &files {
            std::fs::write(f, b"{\"version\":1,\"sess").unwrap();
        }
        assert_eq!(remove_stale_temporaries(dir.path(), |pid| pid == 1), 1);
        let kept: Vec<bool> = files.iter().map(|f| f.exists()).collect();
        assert_eq!(kept, [false, true, true, true], "{names:?}: only the dead writer's file goes");
        std::fs::write(&files[0], b"torn").unwrap();
        assert_eq!(load(&file).unwrap(), vec![record("a")]);
        assert!(!files[0].exists(), "the owner's load removes it (pid 4194999 is above the largest pid_max)");
        assert!(files[1].exists(), "pid 1 runs");
    }

    #[test]
    fn a_broken_file_is_moved_aside_and_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        std::fs::write(&file, b"{\"version\":1,\"sessions\":[{\"id\":").unwrap();
        let err = load(&file).unwrap_err();
        assert!(err.contains("sessions.json") && err.contains("moved to"), "{err}");
        assert!(!file.exists());
        assert!(dir.path().join("sessions.json.corrupt").exists(), "kept for the user, not deleted");
        assert_eq!(load(&file).unwrap(), Vec::new());
    }
}
