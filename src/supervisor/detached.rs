//! `<state>/detached.json`: the specs of the workspace's detached processes
//! (started with `detached: true`, "runs until stopped"), so that the next owner,
//! after a crash or a restart of the sidecar, starts them again, as sessions'
//! processes are restored from `sessions.json`.
//!
//! A process is recorded when a client starts it detached and forgotten when a
//! client stops it (`nxops/process/stop`), or when it becomes a session's
//! process. Ending with the sidecar (a graceful exit stops every process) does
//! not forget it: only a user's stop does ("unless stopped").
//!
//! # Writing
//! One writer task owns the file: a change bumps the book's generation and
//! wakes it; it writes the latest book whole to a temporary file in the same
//! folder, fsyncs it, renames it over the old one and fsyncs the folder, so a
//! crash at any point leaves the old file or the new one, never a torn one.
//! The request that made the change waits until its generation is on disk, so
//! a process stopped by a request that was answered is never revived. No lock
//! is held across the write: the book is copied under its mutex first.
//!
//! A new owner removes the temporary files of writers killed mid-write.
//!
//! # Compatibility
//! `{"version": 1, "processes": {name: spec as given}}`. A file that cannot be
//! read as that is moved aside (`detached.json.corrupt`), never deleted, and the
//! owner starts no detached process from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::runtime::Handle as Handle_;
use tokio::sync::{Notify, watch};

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    processes: BTreeMap<String, Value>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("detached.json")
}

/// The detached processes of one workspace, kept by its supervisor.
#[derive(Clone)]
pub struct Detached(Arc<Handle>);

/// The last handle's drop ends the writer task (after it has written what is left).
struct Handle(Arc<Inner>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        self.0.dirty.notify_one();
    }
}

struct Inner {
    file: Option<PathBuf>,
    book: Mutex<Book>,
    /// Wakes the writer.
    dirty: Notify,
    closed: std::sync::atomic::AtomicBool,
    /// The generation last written.
    written: watch::Sender<u64>,
}

#[derive(Default)]
struct Book {
    generation: u64,
    /// Recorded on disk: started again by the next owner.
    running: BTreeMap<String, Value>,
    /// Stopped by a client: known here, so a start by name records it again.
    stopped: BTreeMap<String, Value>,
}

impl Detached {
    /// A book for `state_dir` (none: nothing is written) with its writer task on `runtime`.
    pub fn new(state_dir: Option<&Path>, runtime: &Handle_) -> Detached {
        let inner = Arc::new(Inner {
            file: state_dir.map(path),
            book: Mutex::default(),
            dirty: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            written: watch::channel(0).0,
        });
        runtime.spawn(write_changes(inner.clone()));
        Detached(Arc::new(Handle(inner)))
    }

    /// Records a client's detached process (its spec as given) and waits until it is on disk.
    pub async fn keep(&self, name: &str, given: Value) {
        let changed = {
            let mut book = self.inner().lock();
            book.stopped.remove(name);
            let changed = book.running.get(name) != Some(&given);
            book.running.insert(name.to_string(), given);
            changed
        };
        self.changed(changed).await;
    }

    /// A client stopped it: not started again by the next owner. Waits until that is on disk.
    pub async fn stopped(&self, name: &str) {
        let changed = {
            let mut book = self.inner().lock();
            match book.running.remove(name) {
                Some(given) => {
                    book.stopped.insert(name.to_string(), given);
                    true
                }
                None => false,
            }
        };
        self.changed(changed).await;
    }

    /// A client started it again by name: recorded again, if it was a detached one.
    pub async fn started_by_name(&self, name: &str) {
        let changed = {
            let mut book = self.inner().lock();
            match book.stopped.remove(name) {
                Some(given) => {
                    book.running.insert(name.to_string(), given);
                    true
                }
                None => false,
            }
        };
        self.changed(changed).await;
    }

    /// It is no detached process any more (a session's now, or removed).
    pub async fn forget(&self, name: &str) {
        let changed = {
            let mut book = self.inner().lock();
            book.stopped.remove(name);
            book.running.remove(name).is_some()
        };
        self.changed(changed).await;
    }

    /// True when `name` is a detached process this book knows (running or stopped).
    pub fn knows(&self, name: &str) -> bool {
        let book = self.inner().lock();
        book.running.contains_key(name) || book.stopped.contains_key(name)
    }

    /// The previous owner's detached processes, read from the file (blocking), and
    /// taken into this book. A broken file is moved aside and reported in the `Err`.
    pub fn load(&self) -> Result<BTreeMap<String, Value>, String> {
        let Some(file) = &self.inner().file else { return Ok(BTreeMap::new()) };
        remove_stale_temporaries(file);
        let processes = load(file)?;
        self.inner().lock().running.extend(processes.clone());
        Ok(processes)
    }

    fn inner(&self) -> &Inner {
        &self.0.0
    }

    async fn changed(&self, changed: bool) {
        if !changed {
            return;
        }
        let generation = {
            let mut book = self.inner().lock();
            book.generation += 1;
            book.generation
        };
        self.inner().dirty.notify_one();
        let mut written = self.inner().written.subscribe();
        let _ = written.wait_for(|w| *w >= generation).await;
    }
}

/// The writer task: writes after each change (changes that come meanwhile are
/// written together), until the book is dropped.
async fn write_changes(inner: Arc<Inner>) {
    loop {
        let notified = inner.dirty.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if inner.written_generation() < inner.generation() {
            let writer = inner.clone();
            let _ = tokio::task::spawn_blocking(move || writer.write_now()).await;
            continue;
        }
        if inner.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        notified.await;
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn written_generation(&self) -> u64 {
        *self.written.borrow()
    }

    /// Writes the book as it is now (only the writer task calls this, one at a time).
    fn write_now(&self) {
        let (generation, processes) = {
            let book = self.lock();
            (book.generation, book.running.clone())
        };
        if let Some(file) = &self.file
            && let Err(err) = save(file, processes)
        {
            tracing::warn!(target: "nxops::supervisor", "cannot save {}: {err}", file.display());
        }
        // Marked written even after a failure (it is logged), so no request waits forever.
        self.written.send_replace(generation);
    }
}

/// Writes the file atomically (see the module docs).
pub fn save(file: &Path, processes: BTreeMap<String, Value>) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(&File { version: VERSION, processes }).map_err(std::io::Error::other)?;
    crate::atomic_file::replace(file, &text)
}

/// Removes the temporary files of writers killed mid-write. Only the owner writes
/// the file, and we are the owner, so every temporary file but our own is stale.
fn remove_stale_temporaries(file: &Path) {
    let Some(dir) = file.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let ours = format!(".detached.json.{}.tmp", std::process::id());
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".detached.json.") && name.ends_with(".tmp") && name != ours {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What the file holds. A missing file is no processes; a file that is not ours
/// to read is left alone; a broken one is moved aside. Both are reported in the `Err`.
pub fn load(file: &Path) -> Result<BTreeMap<String, Value>, String> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(format!("cannot read {}: {err}", file.display())),
    };
    let problem = match serde_json::from_slice::<File>(&bytes) {
        Ok(parsed) if parsed.version == VERSION => return Ok(parsed.processes),
        Ok(parsed) => format!("{}: version {} is not one this nxops reads ({VERSION})", file.display(), parsed.version),
        Err(err) => format!("{}: {err}", file.display()),
    };
    let aside = file.with_extension("json.corrupt");
    let moved = match std::fs::rename(file, &aside) {
        Ok(()) => format!("moved to {}", aside.display()),
        Err(err) => format!("could not be moved aside: {err}"),
    };
    Err(format!("{problem}; no detached process restored (the file was {moved})"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_file_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        assert_eq!(load(&file).unwrap(), BTreeMap::new(), "no file, no processes");
        let processes = BTreeMap::from([("web".to_string(), json!({"command": "sleep", "args": ["60"]}))]);
        save(&file, processes.clone()).unwrap();
        assert_eq!(load(&file).unwrap(), processes);
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, vec!["detached.json".to_string()]);
    }

    #[test]
    fn a_broken_file_is_moved_aside_and_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        std::fs::write(&file, b"{\"version\":1,\"processes\":{\"web\":").unwrap();
        let err = load(&file).unwrap_err();
        assert!(err.contains("detached.json") && err.contains("moved to"), "{err}");
        assert!(!file.exists());
        assert!(dir.path().join("detached.json.corrupt").exists(), "kept for the user, not deleted");
        assert_eq!(load(&file).unwrap(), BTreeMap::new());
    }

    #[tokio::test]
    async fn a_killed_writers_temporary_file_is_removed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".detached.json.999999.tmp");
        std::fs::write(&stale, b"{\"version\":1,\"proc").unwrap();
        let book = Detached::new(Some(dir.path()), &Handle_::current());
        assert_eq!(book.load().unwrap(), BTreeMap::new());
        assert!(!stale.exists());
    }

    #[tokio::test]
    async fn a_stop_is_on_disk_when_it_returns_and_a_start_by_name_records_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let book = Detached::new(Some(dir.path()), &Handle_::current());
        let spec = json!({"command": "sleep", "args": ["60"]});
        book.keep("web", spec.clone()).await;
        assert_eq!(load(&path(dir.path())).unwrap(), BTreeMap::from([("web".to_string(), spec.clone())]));
        book.stopped("web").await;
        assert_eq!(load(&path(dir.path())).unwrap(), BTreeMap::new());
        assert!(book.knows("web"));
        book.started_by_name("web").await;
        assert_eq!(load(&path(dir.path())).unwrap(), BTreeMap::from([("web".to_string(), spec)]));
        book.forget("web").await;
        assert!(!book.knows("web"));
        assert_eq!(load(&path(dir.path())).unwrap(), BTreeMap::new());
    }
}
