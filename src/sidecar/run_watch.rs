//! The owner's watch of Nx's own run records: how nxops learns of every Nx run
//! with no plugin hook (see `nx_records` for what Nx writes and how it is read).
//!
//! One thread per owned workspace (`nxops-runs`), ended by the owner's stop
//! signal within [`TICK`]. It sleeps in `poll` on an inotify descriptor watching
//! the database folder (the WAL file changes when Nx commits the task history)
//! and the cache folder (run.json), for at most [`TICK`], so it also finds the
//! database when Nx creates it on its first run, follows a cache that moved and
//! works without inotify. An event reads the new `task_history` rows; a tick
//! without one reads only when the database's size or mtime moved. A write that
//! shows no new rows is read again every 20 ms for a second: SQLite publishes a
//! commit in its memory-mapped `-shm` index after writing the WAL, and no event
//! says when (a read that came too early once left a run unseen until the next
//! run's writes, seconds later). The rows that appeared together are one run,
//! logged with `task_runs::record` like a hook's report: `nxops/tasks/runs`,
//! `tasksReported` and the maintenance check. No runtime thread ever waits here.
//!
//! Checkouts: with Nx's checkout-local layout the database is the checkout's
//! own, so every run is this checkout's (`checkout` is the workspace root). In
//! the shared layout (`~/.nx/<id>`, one per repository) the task history and
//! run.json of every checkout land in one database and neither names the
//! checkout, so those runs are logged with `checkout: null`; each owner of a
//! checkout sharing the cache logs them all.
//!
//! Compatibility: an unknown schema is said once (log, and `watchProblem` in
//! `nxops/tasks/runs`) and the watch keeps polling, so a fixed database is read
//! again; nothing here can end the owner.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify;
use tokio::sync::watch;

use super::core::Core;
use super::nx_records::{self, RecordsError};
use super::task_runs::{Run, RunSource, record, summarize};
use crate::clock::now_ms;
use crate::workspace::Workspace;
use crate::workspace::nx_paths::Layout;

/// The longest the thread sleeps between two stats of the database.
pub const TICK: Duration = Duration::from_millis(500);
/// How long a wake waits for the rest of Nx's writes of the same moment.
pub const SETTLE: Duration = Duration::from_millis(10);
/// How often, and for how long, a write that showed no new rows is read again.
const RECHECK: Duration = Duration::from_millis(20);
const RECHECK_FOR: Duration = Duration::from_secs(1);

/// Starts the watch of `ws`'s runs on its own thread, until `stop`.
pub fn start(core: Core, ws: Arc<Workspace>, stop: watch::Receiver<bool>) {
    let root = ws.root.clone();
    let spawned = std::thread::Builder::new().name("nxops-runs".into()).spawn(move || run(&core, &ws, &stop));
    if let Err(e) = spawned {
        tracing::warn!(target: "nxops::sidecar", "runs of {} are not watched: failed to start a thread: {e}", root.display());
    }
}

fn run(core: &Core, ws: &Workspace, stop: &watch::Receiver<bool>) {
    let mut reader = Reader::new(ws);
    let mut events: Option<Events> = None;
    // After a write that showed no new rows, read again every RECHECK until they
    // show or RECHECK_FOR has passed: SQLite makes a commit visible by updating
    // its `-shm` index through a memory map after writing the WAL, which inotify
    // never reports, so a read soon after the WAL write can come too early.
    let mut recheck_until: Option<Instant> = None;
    while !stopped(stop) {
        if events.as_ref().is_none_or(|e| e.dirs != reader.dirs) {
            events = Events::watch(&reader.dirs);
        }
        let rechecking = recheck_until.is_some_and(|t| Instant::now() < t);
        let wait = if rechecking { RECHECK } else { TICK };
        let woke = match events.as_mut() {
            Some(events) if events.wait(wait) => {
                std::thread::sleep(SETTLE);
                events.drain_for(reader.db.as_deref())
            }
            Some(_) => false,
            None => {
                std::thread::sleep(wait);
                false
            }
        };
        if stopped(stop) {
            return;
        }
        let learned = reader.check(ws, woke || rechecking);
        match learned {
            Learned::Nothing if woke => recheck_until = Some(Instant::now() + RECHECK_FOR),
            Learned::Nothing => {}
            _ => recheck_until = None,
        }
        log(core, &ws.root, &mut reader, learned);
    }
}

/// The owner said stop, or is gone.
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// What a check found: a run, nothing new, or a problem with the records.
enum Learned {
    Run(Box<Run>),
    Nothing,
    Problem(String),
}

/// Where the reading stands: which database, after which row.
struct Reader {
    dirs: (PathBuf, PathBuf),
    db: Option<PathBuf>,
    after: i64,
    seen: Option<(u64, SystemTime, u64, SystemTime)>,
    problem: Option<String>,
    /// The database could not be read at the start: its history up to the
    /// first good read is not replayed as a run.
    history_unread: bool,
}

impl Reader {
    /// Starts after the last row of the database there is now (history is not
    /// replayed); a database that appears later is read from its first row. A
    /// database that cannot be read now is checked at once, so its problem is
    /// said even if the file never changes again.
    fn new(ws: &Workspace) -> Reader {
        let nx = ws.nx();
        let db = nx.db_files.first().cloned();
        let last = db.as_deref().map(nx_records::last_id);
        let after = match &last {
            Some(Ok(id)) => *id,
            _ => 0,
        };
        let seen = match (&db, &last) {
            (Some(db), Some(Ok(_))) => Some(fingerprint(db)),
            _ => None,
        };
        let history_unread = matches!(last, Some(Err(_)));
        Reader { dirs: (nx.db_dir.clone(), nx.cache_dir.clone()), db, after, seen, problem: None, history_unread }
    }

    /// Reads new rows when the database changed: always after a wake (a write
    /// within the file system's timestamp granularity, to a WAL reused at the same
    /// size after a checkpoint, leaves size and mtime as they were), and on a tick
    /// only when its size or mtime moved.
    fn check(&mut self, ws: &Workspace, woke: bool) -> Learned {
        let nx = ws.nx();
        self.dirs = (nx.db_dir.clone(), nx.cache_dir.clone());
        let Some(db) = nx.db_files.first().cloned() else { return Learned::Nothing };
        if self.db.as_ref() != Some(&db) {
            // A database that existed before we saw it keeps its history unread.
            let existed = self.db.is_some();
            self.after = if existed { nx_records::last_id(&db).unwrap_or(0) } else { 0 };
            self.db = Some(db.clone());
            self.seen = None;
        }
        let now = fingerprint(&db);
        if !woke && self.seen == Some(now) && self.problem.is_none() {
            return Learned::Nothing;
        }
        self.seen = Some(now);
        match self.read(&db, &nx.cache_dir) {
            Ok(Some(run)) => Learned::Run(Box::new(self.attributed(run, ws, &nx.layout))),
            Ok(None) => Learned::Nothing,
            Err(RecordsError::Schema(problem)) => Learned::Problem(problem),
            Err(other) => Learned::Problem(other.to_string()),
        }
    }

    fn read(&mut self, db: &Path, cache_dir: &Path) -> Result<Option<Run>, RecordsError> {
        let last = nx_records::last_id(db)?;
        if std::mem::take(&mut self.history_unread) {
            self.after = last;
        }
        self.after = nx_records::resume_after(self.after, last);
        if last == self.after {
            return Ok(None);
        }
        let rows = nx_records::rows_after(db, self.after)?;
        let Some(end) = rows.last() else { return Ok(None) };
        self.after = end.id;
        let run_json = nx_records::read_run_json(&cache_dir.join("run.json"));
        let Some(learned) = nx_records::learned_run(&rows, run_json.as_ref()) else { return Ok(None) };
        Ok(Some(Run {
            summary: summarize(&learned.tasks),
            run_id: learned.run_id,
            command: learned.command,
            start_time: learned.start_time,
            end_time: learned.end_time,
            received_at: now_ms(),
            source: RunSource::NxRecords,
            checkout: None,
            tasks: learned.tasks,
        }))
    }

    fn attributed(&self, mut run: Run, ws: &Workspace, layout: &Layout) -> Run {
        if matches!(layout, Layout::Local { .. }) {
            run.checkout = Some(ws.root.clone());
        }
        run
    }
}

/// Logs what a check found; a problem is said once, until the records read again.
fn log(core: &Core, root: &Path, reader: &mut Reader, learned: Learned) {
    let Some(owned) = core.owned(root) else { return };
    match learned {
        Learned::Run(run) => {
            if reader.problem.take().is_some() {
                owned.runs.set_watch_problem(None);
            }
            record(core, root, &owned, *run);
        }
        Learned::Nothing => {}
        Learned::Problem(problem) => {
            if reader.problem.as_ref() != Some(&problem) {
                tracing::warn!(target: "nxops::sidecar", "runs of {} are not learned: {problem}", root.display());
                owned.runs.set_watch_problem(Some(problem.clone()));
                reader.problem = Some(problem);
            }
        }
    }
}

/// Size and modification time of the database and its WAL.
fn fingerprint(db: &Path) -> (u64, SystemTime, u64, SystemTime) {
    let stat = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
            .unwrap_or((0, SystemTime::UNIX_EPOCH))
    };
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let (a, b) = stat(db);
    let (c, d) = stat(Path::new(&wal));
    (a, b, c, d)
}

/// An inotify descriptor watching the database and cache folders.
struct Events {
    fd: OwnedFd,
    dirs: (PathBuf, PathBuf),
}

impl Events {
    /// `None` when a folder does not exist yet or inotify is unavailable (the tick covers both).
    fn watch(dirs: &(PathBuf, PathBuf)) -> Option<Events> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
        let changes = inotify::WatchFlags::MODIFY
            | inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::CREATE
            | inotify::WatchFlags::MOVED_TO;
        inotify::add_watch(&fd, &dirs.0, changes).ok()?;
        inotify::add_watch(&fd, &dirs.1, inotify::WatchFlags::CLOSE_WRITE | inotify::WatchFlags::MOVED_TO).ok()?;
        Some(Events { fd, dirs: dirs.clone() })
    }

    /// True when an event came within `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        let timeout = Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        matches!(poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
    }

    /// Reads every queued event; true when one was a write to the database `db`
    /// or its WAL, the database appearing, or run.json written. Not a close of
    /// the database's files, nor anything on `-shm`: nxops's own reads cause
    /// those, and a wake on them would read again at once, for ever.
    fn drain_for(&mut self, db: Option<&Path>) -> bool {
        use inotify::ReadFlags;
        let written = ReadFlags::MODIFY | ReadFlags::CREATE | ReadFlags::MOVED_TO;
        let name = db.and_then(Path::file_name).map(|n| n.as_encoded_bytes().to_vec());
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut relevant = false;
        while let Ok(event) = reader.next() {
            let Some(file) = event.file_name() else { continue };
            let file = file.to_bytes();
            let database = match &name {
                Some(db) => file == db.as_slice() || file.strip_suffix(b"-wal") == Some(db.as_slice()),
                None => file.ends_with(b".db") || file.ends_with(b".db-wal"),
            };
            relevant |= (database && event.events().intersects(written))
                || (file == b"run.json" && event.events().intersects(ReadFlags::CLOSE_WRITE | ReadFlags::MOVED_TO));
        }
        relevant
    }
}
