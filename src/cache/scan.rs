//! Measuring a cache folder on disk, fast.
//!
//! [`scan_children`] lists a folder (the cache root) and measures the whole subtree of each child, with
//! several workers pulling children from a shared index; [`measure`] measures one subtree on the calling
//! thread. Both walk with `openat` + `getdents64` + `statx` relative to the folder already open, so no path
//! is ever walked again from the root, and no folder is listed twice.
//!
//! # Invariants
//! - Symlinks are never followed. A symlink counts as itself (its own `lstat` size and blocks), and every
//!   folder below the starting point is opened relative to its parent with `O_NOFOLLOW`, so a folder swapped
//!   for a symlink mid-scan is not entered. Only the path the caller passes to [`scan_children`] is resolved
//!   like any path (the cache folder may live on another disk through a symlink).
//! - A hard-linked inode (a non-folder with more than one name) is counted once per scan, by (dev, ino),
//!   under the first name met; folders cannot be hard-linked.
//! - Items that vanish mid-scan (`ENOENT`, or a folder replaced by something else between its `statx` and
//!   its `openat`) are skipped: they are not counted, and a child of the root that vanished before it
//!   could be measured is left out of the result. Any other error ends the scan, naming the child.
//!
//! # Units
//! `apparent_bytes` adds up `st_size` of everything but folders: a folder's size is file-system bookkeeping
//! (4096 bytes and up on ext4), and Nx's `cache_outputs.size` counts file bytes only, so the two can be
//! compared. `allocated_bytes` is `st_blocks * 512` of everything, folders included: what the subtree
//! occupies on disk, as `du -sB1` reports it. Fifos, sockets and devices count as files.
//!
//! # Performance
//! Measured with `cargo bench --bench cache -- --sweep` on a 2 vCPU VM (ext4 on virtio) over 20,000 entry
//! folders of 5 files each in the Nx 24 layout (`<hash>/dist/<project>/...`, one terminal output per
//! entry: 200,000 inodes):
//!
//! | workers | 1 | 2 | 4 | 8 | 16 | 32 | 64 | `du -sb` |
//! |---|---|---|---|---|---|---|---|---|
//! | warm, ms | 450-470 | 250-300 | 265-275 | 270-290 | 265-270 | 270-305 | 272 | 590-675 |
//! | cold, s | 7.2 | 4.5-5.0 | 2.8 | 2.0 | 1.5-1.65 | 1.2 | 1.2 | 7.2 |
//!
//! A warm scan is CPU-bound (about 1 us per system call), so it stops gaining at one worker per core and
//! loses little beyond; a cold scan waits on the disk, so workers beyond the cores keep more reads in
//! flight, up to about 32. Emptying the trash behaves the same way (see `trash`).
//!
//! Workers take the shared folders (`terminalOutputs` above all: one file per entry) before the entries,
//! so that the longest job does not start last and run alone on one core at the end of the scan.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Statx, StatxFlags};

/// What a subtree holds and occupies (see the module doc for the units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub apparent_bytes: u64,
    pub allocated_bytes: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and devices (also counted in `files`): never in an Nx entry.
    pub specials: u64,
}

/// The kind of a child of the scanned folder, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// One direct child of the scanned folder and the usage of its whole subtree (itself included).
#[derive(Debug, Clone)]
pub struct Child {
    pub name: OsString,
    pub kind: Kind,
    pub usage: Usage,
    /// The child's own modification time (not the newest in its subtree).
    pub modified: SystemTime,
}

/// Lists `root`'s direct children and measures each child's whole subtree, in parallel (`threads` workers
/// pulling children from a shared index), never following symlinks (a symlink counts as itself: its own
/// lstat size), counting each hard-linked inode once by (dev, ino) across the whole scan, tolerating files
/// and folders that vanish mid-scan (ENOENT = skip). `allocated_bytes` = st_blocks * 512.
///
/// Children come back in the order the folder lists them.
pub fn scan_children(root: &Path, threads: usize) -> io::Result<Vec<Child>> {
    let root_fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|err| with_path(err.into(), root))?;
    let names = DirBuffer::new().names(root_fd.as_fd()).map_err(|err| with_path(err.into(), root))?;
    let order = largest_first(&names);
    let links = HardLinks::default();
    let workers = run_pool(
        names.len(),
        threads,
        || (Walker::new(&links), Vec::new()),
        |(walker, found), job| {
            let index = order[job];
            let name = &names[index];
            let measured =
                walker.measure_at(root_fd.as_fd(), name).map_err(|err| with_child_path(err.into(), root, name))?;
            found.extend(measured.map(|(stat, usage)| (index, child_of(name, &stat, usage))));
            Ok(())
        },
    )?;
    let mut found: Vec<(usize, Child)> = workers.into_iter().flat_map(|(_, found)| found).collect();
    found.sort_unstable_by_key(|(index, _)| *index);
    Ok(found.into_iter().map(|(_, child)| child).collect())
}

/// The order in which [`scan_children`] hands children to its workers: the cache's shared folders
/// (`terminalOutputs`, `batchOutputs`, the trash: any name that is not an entry's all-digit hash) first,
/// then the entries in listing order. A shared folder holds one item per entry, so it is the longest job
/// by far; started last, it would run alone on one core while the others sit idle (longest job first).
fn largest_first(names: &[CString]) -> Vec<usize> {
    let is_entry = |name: &CString| {
        let bytes = name.as_bytes();
        !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
    };
    let shared = (0..names.len()).filter(|&i| !is_entry(&names[i]));
    shared.chain((0..names.len()).filter(|&i| is_entry(&names[i]))).collect()
}

/// One subtree, same rules, single thread. A symlink at `path` counts as itself. `ENOENT` for `path`
/// itself is an error: there is nothing to measure.
pub fn measure(path: &Path) -> io::Result<Usage> {
    let links = HardLinks::default();
    let mut walker = Walker::new(&links);
    let name = CString::new(path.as_os_str().as_bytes()).map_err(|err| with_path(err.into(), path))?;
    let measured = walker.measure_at(rustix::fs::CWD, &name).map_err(|err| with_path(err.into(), path))?;
    measured.map(|(_, usage)| usage).ok_or_else(|| with_path(io::ErrorKind::NotFound.into(), path))
}

/// Workers for [`scan_children`] and [`Trash::empty`](super::trash::Trash::empty): 32, the best count
/// measured here for cold scans and for deleting, and as good as any above two for warm scans (see the
/// module doc). Workers past the number of entries are not started.
pub fn default_threads() -> usize {
    32
}

/// Runs `job` for every index below `count` on up to `threads` workers that pull indexes from a shared
/// counter, each with its own state from `new_state`, and returns the workers' states. Stops at the first
/// error and returns it. A single worker runs on the calling thread, without spawning.
pub(super) fn run_pool<S: Send>(
    count: usize,
    threads: usize,
    new_state: impl Fn() -> S + Sync,
    job: impl Fn(&mut S, usize) -> io::Result<()> + Sync,
) -> io::Result<Vec<S>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut state = new_state();
        while !failed.load(Ordering::Relaxed) {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= count {
                break;
            }
            if let Err(err) = job(&mut state, index) {
                failed.store(true, Ordering::Relaxed);
                return Err(err);
            }
        }
        Ok(state)
    };
    let workers = threads.clamp(1, count.max(1));
    if workers == 1 {
        return work().map(|state| vec![state]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        let joined =
            handles.into_iter().map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        joined.collect()
    })
}

/// Inodes with more than one name met in one scan (or one emptying of the trash), so that each is counted
/// once. Only such inodes are remembered: a cache without hard links never takes the lock.
#[derive(Default)]
pub(super) struct HardLinks {
    seen: Mutex<HashSet<(u32, u32, u64)>>,
    any: AtomicBool,
}

impl HardLinks {
    /// True when the item behind `stat` is to be counted: always for a folder; the first time for an
    /// inode with several names; for an inode with one name, unless another of its names was met before
    /// (and deleted since, as when the trash is emptied). Claim before deleting the name.
    pub(super) fn claim(&self, stat: &Statx) -> bool {
        if kind_of(stat) == Kind::Dir {
            return true;
        }
        let key = (stat.stx_dev_major, stat.stx_dev_minor, stat.stx_ino);
        if stat.stx_nlink > 1 {
            self.any.store(true, Ordering::SeqCst);
            return self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key);
        }
        !self.any.load(Ordering::SeqCst)
            || !self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&key)
    }
}

/// One worker's walk state.
struct Walker<'s> {
    links: &'s HardLinks,
    buf: DirBuffer,
}

impl<'s> Walker<'s> {
    fn new(links: &'s HardLinks) -> Walker<'s> {
        Walker { links, buf: DirBuffer::new() }
    }

    /// Measures the item `name` under `parent` and its subtree; `None` when it vanished first.
    fn measure_at(&mut self, parent: BorrowedFd, name: &CStr) -> rustix::io::Result<Option<(Statx, Usage)>> {
        let Some(stat) = lstat_at(parent, name)? else { return Ok(None) };
        let mut usage = Usage::default();
        count_into(self.links, &stat, &mut usage);
        if kind_of(&stat) == Kind::Dir {
            self.walk(parent, name, &mut usage)?;
        }
        Ok(Some((stat, usage)))
    }

    /// Adds the subtree below the folder `name` (not the folder itself) to `usage`, depth first. Each
    /// pending folder holds its parent open, so at most one descriptor per level of depth is open.
    fn walk(&mut self, parent: BorrowedFd, name: &CStr, usage: &mut Usage) -> rustix::io::Result<()> {
        let Some(top) = open_dir_at(parent, name)? else { return Ok(()) };
        let mut pending: Vec<(Rc<OwnedFd>, CString)> = Vec::new();
        self.list(Rc::new(top), usage, &mut pending)?;
        while let Some((dir, name)) = pending.pop() {
            if let Some(fd) = open_dir_at(dir.as_fd(), &name)? {
                self.list(Rc::new(fd), usage, &mut pending)?;
            }
        }
        Ok(())
    }

    /// Counts the items of one folder and queues its subfolders.
    fn list(
        &mut self,
        dir: Rc<OwnedFd>,
        usage: &mut Usage,
        pending: &mut Vec<(Rc<OwnedFd>, CString)>,
    ) -> rustix::io::Result<()> {
        let mut entries = self.buf.entries(dir.as_fd());
        while let Some(entry) = entries.next() {
            let Some(entry) = tolerate_deleted(entry)? else { break };
            let name = entry.file_name();
            if is_dot(name) {
                continue;
            }
            let Some(stat) = lstat_at(dir.as_fd(), name)? else { continue };
            count_into(self.links, &stat, usage);
            if kind_of(&stat) == Kind::Dir {
                pending.push((Rc::clone(&dir), name.to_owned()));
            }
        }
        Ok(())
    }
}

/// Adds one item to `usage`, unless it is a hard-linked inode this scan already counted.
fn count_into(links: &HardLinks, stat: &Statx, usage: &mut Usage) {
    if links.claim(stat) {
        add_item(usage, stat);
    }
}

/// Adds one item to `usage`.
pub(super) fn add_item(usage: &mut Usage, stat: &Statx) {
    usage.allocated_bytes += stat.stx_blocks * 512;
    match kind_of(stat) {
        Kind::Dir => usage.dirs += 1,
        Kind::Symlink => {
            usage.symlinks += 1;
            usage.apparent_bytes += stat.stx_size;
        }
        Kind::File => {
            usage.files += 1;
            usage.apparent_bytes += stat.stx_size;
        }
        Kind::Other => {
            usage.files += 1;
            usage.specials += 1;
            usage.apparent_bytes += stat.stx_size;
        }
    }
}

/// A reusable `getdents64` buffer: 32 KiB lists a typical entry folder in one call and the cache root in
/// a few.
pub(super) struct DirBuffer(Vec<MaybeUninit<u8>>);

impl DirBuffer {
    pub(super) fn new() -> DirBuffer {
        DirBuffer(vec![MaybeUninit::uninit(); 32 * 1024])
    }

    /// The names in the folder `dir`, `.` and `..` left out; none when the folder was deleted while open.
    pub(super) fn names(&mut self, dir: BorrowedFd) -> rustix::io::Result<Vec<CString>> {
        let mut entries = self.entries(dir);
        let mut names = Vec::new();
        while let Some(entry) = entries.next() {
            let Some(entry) = tolerate_deleted(entry)? else { break };
            if !is_dot(entry.file_name()) {
                names.push(entry.file_name().to_owned());
            }
        }
        Ok(names)
    }

    /// The names in `dir` with the kind the folder itself records (`None` where the
    /// file system does not say: ask `lstat_at`).
    pub(super) fn names_and_kinds(&mut self, dir: BorrowedFd) -> rustix::io::Result<Vec<(CString, Option<Kind>)>> {
        let mut entries = self.entries(dir);
        let mut out = Vec::new();
        while let Some(entry) = entries.next() {
            let Some(entry) = tolerate_deleted(entry)? else { break };
            if is_dot(entry.file_name()) {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Directory => Some(Kind::Dir),
                FileType::RegularFile => Some(Kind::File),
                FileType::Symlink => Some(Kind::Symlink),
                FileType::Unknown => None,
                _ => Some(Kind::Other),
            };
            out.push((entry.file_name().to_owned(), kind));
        }
        Ok(out)
    }

    fn entries<'b>(&'b mut self, dir: BorrowedFd<'b>) -> RawDir<'b, BorrowedFd<'b>> {
        RawDir::new(dir, &mut self.0)
    }
}

/// An entry read from a folder, or `None` when the folder was deleted while it was open (`ENOENT`).
fn tolerate_deleted<T>(entry: rustix::io::Result<T>) -> rustix::io::Result<Option<T>> {
    match entry {
        Ok(entry) => Ok(Some(entry)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(err) => Err(err),
    }
}

/// `statx` of `name` under `dir` without following a symlink; `None` when it does not exist.
pub(super) fn lstat_at(dir: BorrowedFd, name: &CStr) -> rustix::io::Result<Option<Statx>> {
    let wanted = StatxFlags::TYPE | StatxFlags::NLINK | StatxFlags::INO | StatxFlags::SIZE | StatxFlags::BLOCKS;
    match rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, wanted | StatxFlags::MTIME) {
        Ok(stat) => Ok(Some(stat)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Opens the folder `name` under `dir` for listing, never through a symlink. `None` when it vanished or
/// is no longer a folder (replaced by a file or a symlink since it was seen).
pub(super) fn open_dir_at(dir: BorrowedFd, name: &CStr) -> rustix::io::Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => Ok(None),
        Err(err) => Err(err),
    }
}

pub(super) fn kind_of(stat: &Statx) -> Kind {
    match FileType::from_raw_mode(u32::from(stat.stx_mode)) {
        FileType::Directory => Kind::Dir,
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn child_of(name: &CStr, stat: &Statx, usage: Usage) -> Child {
    Child {
        name: OsString::from_vec(name.to_bytes().to_vec()),
        kind: kind_of(stat),
        usage,
        modified: modified_of(stat),
    }
}

fn modified_of(stat: &Statx) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(stat.stx_mtime.tv_nsec));
    match u64::try_from(stat.stx_mtime.tv_sec) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs) + nanos,
        Err(_) => UNIX_EPOCH - Duration::from_secs(stat.stx_mtime.tv_sec.unsigned_abs()) + nanos,
    }
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

/// Adds the path to an error, keeping its kind (so callers can still match `NotFound`).
pub(super) fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

fn with_child_path(err: io::Error, root: &Path, name: &CStr) -> io::Error {
    with_path(err, &root.join(OsStr::from_bytes(name.to_bytes())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn write(path: &Path, bytes: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![b'x'; bytes]).unwrap();
    }

    fn child<'c>(children: &'c [Child], name: &str) -> &'c Child {
        children.iter().find(|child| child.name == name).unwrap_or_else(|| panic!("no child {name}"))
    }

    #[test]
    fn counts_files_folders_and_bytes_of_each_child() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("111/dist/app/main.js"), 1000);
        write(&dir.path().join("111/dist/app/assets/a.txt"), 24);
        write(&dir.path().join("run.json"), 7);
        std::fs::create_dir(dir.path().join("222")).unwrap();

        let children = scan_children(dir.path(), 2).unwrap();

        assert_eq!(children.len(), 3);
        let entry = child(&children, "111");
        assert_eq!(entry.kind, Kind::Dir);
        assert_eq!((entry.usage.files, entry.usage.dirs, entry.usage.symlinks), (2, 4, 0));
        assert_eq!(entry.usage.apparent_bytes, 1024, "folders' own sizes are not apparent bytes");
        assert!(entry.usage.allocated_bytes >= 4 * 4096, "folders' blocks are allocated bytes");
        assert_eq!(child(&children, "run.json").kind, Kind::File);
        assert_eq!(child(&children, "run.json").usage, measure(&dir.path().join("run.json")).unwrap());
        assert_eq!(child(&children, "222").usage.dirs, 1);
        assert_eq!(entry.usage, measure(&dir.path().join("111")).unwrap());
    }

    #[test]
    fn shared_folders_are_handed_out_before_the_entries() {
        let names: Vec<CString> = ["123", "terminalOutputs", "456", ".nxops-trash", "12a"]
            .iter()
            .map(|name| CString::new(*name).unwrap())
            .collect();
        assert_eq!(largest_first(&names), vec![1, 3, 4, 0, 2]);
    }

    #[test]
    fn children_come_in_listing_order_whatever_the_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..50 {
            write(&dir.path().join(format!("{i}/out/f")), i);
        }
        let listed: Vec<OsString> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        for threads in [1, 3, 16] {
            let children = scan_children(dir.path(), threads).unwrap();
            let names: Vec<OsString> = children.iter().map(|child| child.name.clone()).collect();
            assert_eq!(names, listed, "with {threads} threads");
        }
    }

    #[test]
    fn modified_is_the_childs_own_mtime() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("e/f"), 1);
        let expected = std::fs::symlink_metadata(dir.path().join("e")).unwrap().modified().unwrap();
        assert_eq!(scan_children(dir.path(), 1).unwrap()[0].modified, expected);
    }

    #[test]
    fn symlinks_count_as_themselves_and_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        write(&outside.join("big"), 100_000);
        let cache = dir.path().join("cache");
        write(&cache.join("111/dist/real"), 10);
        symlink(&outside, cache.join("111/dist/to-folder")).unwrap();
        symlink(outside.join("big"), cache.join("111/to-file")).unwrap();
        symlink(&outside, cache.join("top-link")).unwrap();

        let children = scan_children(&cache, 2).unwrap();

        let entry = child(&children, "111");
        assert_eq!((entry.usage.files, entry.usage.dirs, entry.usage.symlinks), (1, 2, 2));
        let link_bytes = outside.as_os_str().len() + outside.join("big").as_os_str().len();
        assert_eq!(entry.usage.apparent_bytes, (10 + link_bytes) as u64);
        let top = child(&children, "top-link");
        assert_eq!(top.kind, Kind::Symlink);
        assert_eq!(top.usage, Usage { apparent_bytes: outside.as_os_str().len() as u64, symlinks: 1, ..top.usage });
        assert_eq!((top.usage.files, top.usage.dirs), (0, 0));
        let as_link = measure(&cache.join("top-link")).unwrap();
        assert_eq!(as_link.symlinks, 1, "measure does not follow a symlink it is given");
    }

    #[test]
    fn a_symlinked_root_is_resolved() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("real/111/f"), 5);
        symlink(dir.path().join("real"), dir.path().join("cache")).unwrap();
        let children = scan_children(&dir.path().join("cache"), 1).unwrap();
        assert_eq!(children[0].usage.files, 1);
    }

    #[test]
    fn hard_linked_files_are_counted_once_across_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a/f"), 5000);
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::hard_link(dir.path().join("a/f"), dir.path().join("b/f")).unwrap();
        std::fs::hard_link(dir.path().join("a/f"), dir.path().join("a/g")).unwrap();

        for threads in [1, 2] {
            let children = scan_children(dir.path(), threads).unwrap();
            let files: u64 = children.iter().map(|child| child.usage.files).sum();
            let bytes: u64 = children.iter().map(|child| child.usage.apparent_bytes).sum();
            assert_eq!((files, bytes), (1, 5000), "with {threads} threads");
        }
        assert_eq!(measure(dir.path()).unwrap().files, 1);
    }

    #[test]
    fn a_missing_path_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = measure(&dir.path().join("nope")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(scan_children(&dir.path().join("nope"), 2).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn items_that_vanish_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = rustix::fs::open(dir.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert!(lstat_at(root.as_fd(), c"gone").unwrap().is_none());
        assert!(open_dir_at(root.as_fd(), c"gone").unwrap().is_none());
        write(&dir.path().join("now-a-file"), 1);
        assert!(open_dir_at(root.as_fd(), c"now-a-file").unwrap().is_none(), "a folder replaced by a file");
        symlink(dir.path(), dir.path().join("now-a-link")).unwrap();
        assert!(open_dir_at(root.as_fd(), c"now-a-link").unwrap().is_none(), "a folder replaced by a symlink");
    }

    #[test]
    fn scans_while_entries_are_being_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let entries = 300;
        for i in 0..entries {
            for f in 0..10 {
                write(&dir.path().join(format!("{i}/dist/p/{f}")), 100);
            }
        }
        let root = dir.path().to_path_buf();
        let deleter = std::thread::spawn(move || {
            for i in 0..entries {
                std::fs::remove_dir_all(root.join(i.to_string())).unwrap();
            }
        });
        let mut scans = 0;
        while !deleter.is_finished() || scans == 0 {
            let children = scan_children(dir.path(), 4).expect("vanishing entries are tolerated");
            assert!(children.iter().all(|child| child.usage.files <= 10));
            scans += 1;
        }
        deleter.join().unwrap();
        assert!(scan_children(dir.path(), 4).unwrap().is_empty());
    }

    #[test]
    fn walks_paths_longer_than_path_max() {
        let dir = tempfile::tempdir().unwrap();
        let long = "d".repeat(200);
        let mut deep = dir.path().join("111");
        for _ in 0..30 {
            deep.push(&long);
        }
        // Too long a path for open(2) as a whole, fine for openat one level at a time.
        let made = std::process::Command::new("mkdir").arg("-p").arg(&deep).status().unwrap();
        assert!(made.success());
        let children = scan_children(dir.path(), 1).unwrap();
        assert_eq!(children[0].usage.dirs, 31);
    }
}
