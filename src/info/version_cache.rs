//! The answers of `<binary> --version`, kept in `<state base>/tool-versions.json`
//! so that `nxops system info` starts no process while the binaries are unchanged.
//!
//! An entry is keyed by the binary's resolved path and holds what identifies one
//! build of it on disk: device, inode, size, mtime and ctime (in nanoseconds). A
//! reinstall or upgrade replaces the file or rewrites it, and changes at least one
//! of them, so a stale answer is never returned; ctime cannot be set back by
//! `touch`, so neither can an edited file pass for the old one.
//!
//! Locking: none. The file is read once when the cache is opened and written
//! whole (temporary file, then rename) only when an entry was added, so readers
//! never see half a file; two writers at once lose one's new entry, which the
//! next report asks again. Compatibility: an unreadable or foreign file counts as
//! empty. Performance: one small read per report, a write only after a miss.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The file's name in the state folder base.
pub const FILE_NAME: &str = "tool-versions.json";

/// The cached answers, loaded once; `put` marks it for [`VersionCache::save`].
#[derive(Debug, Default)]
pub struct VersionCache {
    file: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<PathBuf, Entry>,
    changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    identity: Identity,
    version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    entries: BTreeMap<PathBuf, Entry>,
}

impl VersionCache {
    /// The cache kept in `dir` (the state folder base), or one that keeps
    /// nothing when there is no such folder.
    pub fn open(dir: Option<&Path>) -> VersionCache {
        let Some(dir) = dir else { return VersionCache::default() };
        let file = dir.join(FILE_NAME);
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<OnDisk>(&bytes).ok())
            .map(|d| d.entries)
            .unwrap_or_default();
        VersionCache { file: Some(file), state: Mutex::new(State { entries, changed: false }) }
    }

    /// The version recorded for `binary`, if the file on disk is still the one asked.
    pub fn get(&self, binary: &Path) -> Option<String> {
        let identity = identity(binary)?;
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let entry = state.entries.get(binary)?;
        (entry.identity == identity).then(|| entry.version.clone())
    }

    /// Records `version` as the answer of `binary` as it is on disk now.
    pub fn put(&self, binary: &Path, version: &str) {
        let Some(identity) = identity(binary) else { return };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.entries.insert(binary.to_path_buf(), Entry { identity, version: version.to_string() });
        state.changed = true;
    }

    /// Writes the file when an entry was added; a failure only costs a `--version` next time.
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        let bytes = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !state.changed {
                return;
            }
            state.changed = false;
            serde_json::to_vec_pretty(&OnDisk { entries: state.entries.clone() }).expect("entries serialize")
        };
        if let Err(e) = write_atomically(file, &bytes) {
            tracing::debug!(target: "nxops", "cannot save {}: {e}", file.display());
        }
    }
}

fn identity(binary: &Path) -> Option<Identity> {
    let m = std::fs::metadata(binary).ok()?;
    Some(Identity {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    })
}

fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = file.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}
