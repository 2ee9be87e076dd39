//! Taking cache entries out atomically, then deleting them fast.
//!
//! An entry is first renamed into `<cache>/.nxops-trash` ([`Trash::take`]): one atomic `renameat` on the
//! same file system, so Nx sees either the whole entry under its real name or nothing, never a folder
//! emptied halfway (which Nx would report as a cache hit that restores nothing). Deleting happens later,
//! outside any lock, with several workers ([`Trash::empty`]). Items left in the trash by an interrupted run
//! are orphans: the next `empty` deletes them with the rest.
//!
//! # Invariants
//! - Nothing outside the cache folder is ever renamed or deleted. `take` and `restore` accept only paths
//!   lexically inside the cache folder and open every folder on the way with `O_NOFOLLOW`, relative to the
//!   cache folder opened once, so a symlink anywhere on the path is refused rather than followed.
//! - Deleting never follows a symlink: folders are opened relative to their parent with `O_NOFOLLOW`, and
//!   `unlinkat` removes a symlink itself. A symlink in the trash pointing anywhere leaves its target alone.
//! - Renames never overwrite: trash names are unique (`<name>.<pid>.<n>`, with `RENAME_NOREPLACE`), and
//!   `restore` refuses to replace an entry that Nx wrote again in the meantime.
//! - `ENOENT` is tolerated everywhere while deleting (another cleaner may be emptying the same trash).
//! - The trash folder is ours: created 0700, and refused when a symlink, a non-folder or a folder of
//!   another user is in its place.
//!
//! # Locking
//! None here. Several processes may take into and empty the same trash at once: names never collide and
//! deleting tolerates items vanishing. The caller's clean lock decides who evicts.
//!
//! # Performance
//! A rename costs about 20 us on ext4. Deleting is bound by waits on the file system (about 80 us per
//! inode for `rm -rf`), so workers deleting different items overlap them. Taking then emptying 10,000 of
//! the 20,000 generated entries of `benches/cache.rs` (100,000 inodes) on a 2 vCPU VM:
//!
//! | workers | 1 | 2 | 4 | 8 | 16 | 32 | 64 | `rm -rf` of a copy |
//! |---|---|---|---|---|---|---|---|---|
//! | s | 8.2-9.6 | 5.3-5.4 | 3.7-3.9 | 2.7-3.6 | 2.5 | 2.2-2.35 | 2.2 | 6.9-11.2 |
//!
//! Taking the 20,000 items (folders and terminal outputs) is 0.2 s of that.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Statx};
use rustix::io::Errno;

use super::scan::{self, DirBuffer, HardLinks, Kind, Usage};

/// `<cache>/.nxops-trash`: entries are renamed here first (atomic, same filesystem), so no entry is ever
/// left partly deleted under its real name, then deleted in parallel.
pub const TRASH_DIR: &str = ".nxops-trash";

/// The trash folder of one cache folder, open.
#[derive(Debug)]
pub struct Trash {
    cache_dir: PathBuf,
    path: PathBuf,
    cache_fd: OwnedFd,
    fd: OwnedFd,
    taken: AtomicU64,
}

impl Trash {
    /// Opens (creating 0700) the trash folder inside `cache_dir`; refuses a symlink or a non-folder in its
    /// place. `cache_dir` itself is resolved like any path; what `take` accepts is compared with it as given.
    pub fn open(cache_dir: &Path) -> io::Result<Trash> {
        let path = cache_dir.join(TRASH_DIR);
        let cache_fd = rustix::fs::open(cache_dir, DIR_FLAGS, Mode::empty())
            .map_err(|err| scan::with_path(err.into(), cache_dir))?;
        let fd = open_own_folder(cache_fd.as_fd(), TRASH_DIR).map_err(|err| scan::with_path(err, &path))?;
        Ok(Trash { cache_dir: cache_dir.to_path_buf(), path, cache_fd, fd, taken: AtomicU64::new(0) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames `path` (file, folder or symlink; never followed) into the trash under a unique name.
    /// Ok(None) when `path` no longer exists. Refuses a `path` outside the cache folder.
    ///
    /// An item of the trash itself (a leftover) is already taken: it stays where it is and its path comes
    /// back as is. The trash folder and what lies deeper in it are refused.
    pub fn take(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        if let Ok(name) = self.name_in_trash(path) {
            return Ok(scan::lstat_at(self.fd.as_fd(), &name)?.map(|_| path.to_path_buf()));
        }
        let Some(place) = self.locate(path)? else { return Ok(None) };
        loop {
            let unique = self.unique_name(&place.name);
            match rename_no_replace(place.folder(self), &place.name, self.fd.as_fd(), &unique) {
                Ok(()) => return Ok(Some(self.path.join(OsStr::from_bytes(unique.to_bytes())))),
                Err(Errno::EXIST) => continue,
                Err(Errno::NOENT) => return self.vanished(&place, path),
                Err(err) => return Err(scan::with_path(err.into(), path)),
            }
        }
    }

    /// Puts a taken item back (used when the database update that goes with it fails). Refuses to replace
    /// anything at `original` (Nx may have written the entry again): `AlreadyExists`.
    pub fn restore(&self, taken: &Path, original: &Path) -> io::Result<()> {
        let name = self.name_in_trash(taken)?;
        let place = self.locate(original)?.ok_or_else(|| {
            scan::with_path(io::Error::new(io::ErrorKind::NotFound, "the folder that held it is gone"), original)
        })?;
        rename_no_replace(self.fd.as_fd(), &name, place.folder(self), &place.name).map_err(|err| {
            let err = io::Error::from(err);
            io::Error::new(
                err.kind(),
                format!("failed to put {} back at {}: {err}", taken.display(), original.display()),
            )
        })
    }

    /// Deletes everything in the trash with `threads` workers, never following symlinks, tolerating ENOENT;
    /// returns how many files/dirs/bytes (apparent) were removed.
    ///
    /// Each item is deleted by one worker, so a single huge item is deleted by one thread. Hard-linked inodes
    /// are counted once, as in [`scan`]. An item that cannot be deleted does not stop the others: the first
    /// such error is returned once they are done ([`Trash::empty_all`] returns them all instead).
    pub fn empty(&self, threads: usize) -> io::Result<Usage> {
        let (usage, mut stuck) = self.empty_all(threads)?;
        if stuck.is_empty() { Ok(usage) } else { Err(stuck.swap_remove(0).1) }
    }

    /// Like [`Trash::empty`], but an item that cannot be deleted is skipped: the
    /// others are deleted, and the errors (each with the item's name in the trash,
    /// and naming its path) come back beside what was removed. Only a trash that
    /// cannot be listed is an error.
    pub fn empty_all(&self, threads: usize) -> io::Result<(Usage, Vec<(String, io::Error)>)> {
        let names = self.names().map_err(|err| scan::with_path(err.into(), &self.path))?;
        let links = HardLinks::default();
        let workers = scan::run_pool(
            names.len(),
            threads,
            || (Remover::new(&links), Vec::new()),
            |(remover, stuck), index| {
                let name = &names[index];
                if let Err(err) = remover.remove(self.fd.as_fd(), name) {
                    let item = OsStr::from_bytes(name.to_bytes());
                    let err = scan::with_path(err.into(), &self.path.join(item));
                    stuck.push((item.to_string_lossy().into_owned(), err));
                }
                Ok(())
            },
        )?;
        let mut stuck = Vec::new();
        let mut usage = Usage::default();
        for (remover, errors) in workers {
            usage = add(usage, remover.removed);
            stuck.extend(errors);
        }
        Ok((usage, stuck))
    }

    /// How many items wait in the trash (leftovers of an interrupted run count as orphans). 0 when the
    /// trash cannot be listed.
    pub fn len(&self) -> usize {
        self.names().map_or(0, |names| names.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names in the trash, read through a descriptor of its own (a directory's read position is shared
    /// by everyone who reads through the same descriptor).
    fn names(&self) -> rustix::io::Result<Vec<CString>> {
        let fd = rustix::fs::openat(self.fd.as_fd(), c".", DIR_FLAGS, Mode::empty())?;
        DirBuffer::new().names(fd.as_fd())
    }

    /// Opens the folder that holds `path`, checking that `path` is inside the cache folder (and not the
    /// trash). `None` when a folder on the way no longer exists.
    fn locate(&self, path: &Path) -> io::Result<Option<Place>> {
        let parts = self.parts_inside(path)?;
        let (last, folders) = parts.split_last().expect("parts_inside returns at least one part");
        let mut folder: Option<OwnedFd> = None;
        for part in folders {
            let base = folder.as_ref().map_or(self.cache_fd.as_fd(), |fd| fd.as_fd());
            match rustix::fs::openat(base, *part, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(fd) => folder = Some(fd),
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => return Err(refused(path, "a symlink or a file is on its way")),
                Err(err) => return Err(scan::with_path(err.into(), path)),
            }
        }
        let name = CString::new(last.as_bytes()).map_err(|err| scan::with_path(err.into(), path))?;
        Ok(Some(Place { folder, name }))
    }

    /// The components of `path` below the cache folder: at least one, all plain names, not in the trash.
    fn parts_inside<'p>(&self, path: &'p Path) -> io::Result<Vec<&'p OsStr>> {
        let relative =
            path.strip_prefix(&self.cache_dir).map_err(|_| refused(path, "it is outside the cache folder"))?;
        let mut parts = Vec::new();
        for component in relative.components() {
            let Component::Normal(part) = component else {
                return Err(refused(path, "it is not a plain path inside the cache folder"));
            };
            parts.push(part);
        }
        match parts.first() {
            None => Err(refused(path, "it is the cache folder itself")),
            Some(first) if *first == OsStr::new(TRASH_DIR) => Err(refused(path, "it is in the trash already")),
            Some(_) => Ok(parts),
        }
    }

    /// The name of `taken` in the trash, which must be a direct child of it.
    fn name_in_trash(&self, taken: &Path) -> io::Result<CString> {
        match (taken.parent(), taken.file_name()) {
            (Some(parent), Some(name)) if parent == self.path => {
                CString::new(name.as_bytes()).map_err(|err| scan::with_path(err.into(), taken))
            }
            _ => Err(refused(taken, "it is not an item of the trash")),
        }
    }

    /// `<name>.<pid>.<n>`: unique among this process's takes; `RENAME_NOREPLACE` settles the rest.
    fn unique_name(&self, name: &CStr) -> CString {
        let number = self.taken.fetch_add(1, Ordering::Relaxed);
        let mut unique = name.to_bytes()[..name.to_bytes().len().min(MAX_KEPT_NAME)].to_vec();
        unique.extend(format!(".{}.{number}", std::process::id()).bytes());
        CString::new(unique).expect("no NUL in a name read from a CStr")
    }

    /// After `ENOENT` from a rename: `None` when the item is gone, an error when it is the trash that is.
    fn vanished(&self, place: &Place, path: &Path) -> io::Result<Option<PathBuf>> {
        match scan::lstat_at(place.folder(self), &place.name) {
            Ok(None) => Ok(None),
            Ok(Some(_)) => {
                Err(scan::with_path(io::Error::new(io::ErrorKind::NotFound, "the trash folder is gone"), path))
            }
            Err(err) => Err(scan::with_path(err.into(), path)),
        }
    }
}

/// A name in the folder that holds it; `folder` is `None` for the cache folder itself.
struct Place {
    folder: Option<OwnedFd>,
    name: CString,
}

impl Place {
    fn folder<'a>(&'a self, trash: &'a Trash) -> BorrowedFd<'a> {
        self.folder.as_ref().map_or(trash.cache_fd.as_fd(), |fd| fd.as_fd())
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// Bytes of the original name kept in a trash name, leaving room for the suffix within `NAME_MAX` (255).
const MAX_KEPT_NAME: usize = 200;

/// Creates (0700) or opens the folder `name` in `parent`, refusing anything but a folder of ours.
fn open_own_folder(parent: BorrowedFd, name: &str) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(parent, name, Mode::RWXU) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(err) => return Err(err.into()),
    }
    let fd = match rustix::fs::openat(parent, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
        Err(Errno::LOOP | Errno::NOTDIR) => {
            return Err(io::Error::other("a symlink or a file is in the place of the trash folder; refusing it"));
        }
        other => other?,
    };
    let stat = rustix::fs::fstat(&fd)?;
    if stat.st_uid != rustix::process::geteuid().as_raw() {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "the trash folder belongs to another user"));
    }
    if stat.st_mode & 0o077 != 0 {
        rustix::fs::fchmod(&fd, Mode::RWXU)?;
    }
    Ok(fd)
}

/// `renameat2(RENAME_NOREPLACE)`, or a check then a plain rename on file systems without it.
fn rename_no_replace(from: BorrowedFd, old: &CStr, to: BorrowedFd, new: &CStr) -> rustix::io::Result<()> {
    match rustix::fs::renameat_with(from, old, to, new, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS) => match scan::lstat_at(to, new)? {
            Some(_) => Err(Errno::EXIST),
            None => rustix::fs::renameat(from, old, to, new),
        },
        other => other,
    }
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("refusing {}: {why}", path.display()))
}

fn add(a: Usage, b: Usage) -> Usage {
    Usage {
        apparent_bytes: a.apparent_bytes + b.apparent_bytes,
        allocated_bytes: a.allocated_bytes + b.allocated_bytes,
        files: a.files + b.files,
        dirs: a.dirs + b.dirs,
        symlinks: a.symlinks + b.symlinks,
        specials: a.specials + b.specials,
    }
}

/// One worker of [`Trash::empty`] and what it removed.
struct Remover<'s> {
    links: &'s HardLinks,
    buf: DirBuffer,
    removed: Usage,
}

/// A folder being emptied: its subfolders wait until its other items are gone.
struct Frame {
    fd: OwnedFd,
    name: CString,
    stat: Statx,
    subfolders: Vec<(CString, Statx)>,
}

impl<'s> Remover<'s> {
    fn new(links: &'s HardLinks) -> Remover<'s> {
        Remover { links, buf: DirBuffer::new(), removed: Usage::default() }
    }

    /// Deletes the item `name` in `parent` with its subtree (nothing when it is already gone), and adds
    /// what went to `removed`.
    fn remove(&mut self, parent: BorrowedFd, name: &CStr) -> rustix::io::Result<()> {
        let Some(stat) = scan::lstat_at(parent, name)? else { return Ok(()) };
        let mut usage = Usage::default();
        if scan::kind_of(&stat) == Kind::Dir {
            self.remove_tree(parent, name, stat, &mut usage)?;
        } else {
            self.remove_file(parent, name, &stat, &mut usage)?;
        }
        self.removed = add(self.removed, usage);
        Ok(())
    }

    /// Deletes the folder `name` in `parent` and everything below it, depth first, holding one descriptor
    /// per level of depth.
    fn remove_tree(
        &mut self,
        parent: BorrowedFd,
        name: &CStr,
        stat: Statx,
        usage: &mut Usage,
    ) -> rustix::io::Result<()> {
        let Some(fd) = scan::open_dir_at(parent, name)? else { return Ok(()) };
        let subfolders = self.clear(fd.as_fd(), usage)?;
        let mut stack = vec![Frame { fd, name: name.to_owned(), stat, subfolders }];
        while let Some(top) = stack.last_mut() {
            if let Some((sub, stat)) = top.subfolders.pop() {
                if let Some(fd) = scan::open_dir_at(top.fd.as_fd(), &sub)? {
                    let subfolders = self.clear(fd.as_fd(), usage)?;
                    stack.push(Frame { fd, name: sub, stat, subfolders });
                }
                continue;
            }
            let done = stack.pop().expect("the top frame");
            let holder = stack.last().map_or(parent, |frame| frame.fd.as_fd());
            if unlink(holder, &done.name, AtFlags::REMOVEDIR)? {
                scan::add_item(usage, &done.stat);
            }
        }
        Ok(())
    }

    /// Deletes everything but the subfolders of the folder `dir` and returns the subfolders. The names are
    /// read first: deleting while `getdents64` walks the folder may skip entries.
    fn clear(&mut self, dir: BorrowedFd, usage: &mut Usage) -> rustix::io::Result<Vec<(CString, Statx)>> {
        let mut subfolders = Vec::new();
        for name in self.buf.names(dir)? {
            let Some(stat) = scan::lstat_at(dir, &name)? else { continue };
            if scan::kind_of(&stat) == Kind::Dir {
                subfolders.push((name, stat));
            } else {
                self.remove_file(dir, &name, &stat, usage)?;
            }
        }
        Ok(subfolders)
    }

    /// Deletes a file or symlink, counting it once even when it has several names.
    fn remove_file(&self, dir: BorrowedFd, name: &CStr, stat: &Statx, usage: &mut Usage) -> rustix::io::Result<()> {
        let counted = self.links.claim(stat);
        if unlink(dir, name, AtFlags::empty())? && counted {
            scan::add_item(usage, stat);
        }
        Ok(())
    }
}

/// `unlinkat`; false when the item was already gone.
fn unlink(dir: BorrowedFd, name: &CStr, flags: AtFlags) -> rustix::io::Result<bool> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn write(path: &Path, bytes: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![b'x'; bytes]).unwrap();
    }

    /// A cache folder with one entry `111` (2 files, 3 folders) and its terminal output, and a folder
    /// `outside` beside it with one file.
    fn cache_with_entry() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        write(&cache.join("111/dist/app/main.js"), 1000);
        write(&cache.join("111/dist/app/assets/a.txt"), 24);
        write(&cache.join("terminalOutputs/111"), 50);
        write(&dir.path().join("outside/keep.txt"), 7);
        (dir, cache)
    }

    #[test]
    fn takes_entries_then_deletes_them_and_counts_what_went() {
        let (_dir, cache) = cache_with_entry();
        let trash = Trash::open(&cache).unwrap();

        let folder = trash.take(&cache.join("111")).unwrap().unwrap();
        let output = trash.take(&cache.join("terminalOutputs/111")).unwrap().unwrap();

        assert!(!cache.join("111").exists() && !cache.join("terminalOutputs/111").exists());
        assert!(folder.starts_with(trash.path()) && output.starts_with(trash.path()));
        assert_eq!(trash.len(), 2);
        let removed = trash.empty(4).unwrap();
        assert_eq!((removed.files, removed.dirs, removed.symlinks, removed.apparent_bytes), (3, 4, 0, 1074));
        assert!(trash.is_empty());
        assert!(cache.join("terminalOutputs").is_dir(), "only the taken items go");
    }

    #[test]
    fn open_creates_a_private_folder_and_refuses_impostors() {
        let (dir, cache) = cache_with_entry();
        let trash = Trash::open(&cache).unwrap();
        assert_eq!(trash.path(), cache.join(TRASH_DIR));
        let mode = std::fs::symlink_metadata(trash.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(trash);
        std::fs::set_permissions(cache.join(TRASH_DIR), std::fs::Permissions::from_mode(0o755)).unwrap();
        Trash::open(&cache).unwrap();
        let mode = std::fs::symlink_metadata(cache.join(TRASH_DIR)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "loose permissions are tightened");

        std::fs::remove_dir(cache.join(TRASH_DIR)).unwrap();
        symlink(dir.path().join("outside"), cache.join(TRASH_DIR)).unwrap();
        assert!(Trash::open(&cache).is_err(), "a symlink in its place");
        std::fs::remove_file(cache.join(TRASH_DIR)).unwrap();
        write(&cache.join(TRASH_DIR), 1);
        assert!(Trash::open(&cache).is_err(), "a file in its place");
        assert!(dir.path().join("outside/keep.txt").exists());
    }

    #[test]
    fn deleting_never_follows_a_symlink_out_of_the_cache() {
        let (dir, cache) = cache_with_entry();
        let outside = dir.path().join("outside");
        symlink(&outside, cache.join("111/dist/to-folder")).unwrap();
        symlink(outside.join("keep.txt"), cache.join("111/to-file")).unwrap();
        symlink(&outside, cache.join("222")).unwrap();
        let trash = Trash::open(&cache).unwrap();

        trash.take(&cache.join("111")).unwrap().unwrap();
        trash.take(&cache.join("222")).unwrap().unwrap();
        let removed = trash.empty(2).unwrap();

        assert_eq!((removed.files, removed.symlinks), (2, 3));
        assert_eq!(std::fs::read(outside.join("keep.txt")).unwrap().len(), 7, "the outside file is intact");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        assert!(trash.is_empty());
    }

    #[test]
    fn std_remove_dir_all_does_not_follow_symlinks_either() {
        let (dir, cache) = cache_with_entry();
        let outside = dir.path().join("outside");
        symlink(&outside, cache.join("111/dist/to-folder")).unwrap();
        std::fs::remove_dir_all(cache.join("111")).unwrap();
        assert!(outside.join("keep.txt").exists());
    }

    #[test]
    fn take_refuses_paths_outside_the_cache() {
        let (dir, cache) = cache_with_entry();
        let trash = Trash::open(&cache).unwrap();
        symlink(dir.path().join("outside"), cache.join("link")).unwrap();
        let refused = [
            dir.path().join("outside/keep.txt"),
            cache.clone(),
            cache.join("../outside/keep.txt"),
            cache.join("111/../../outside"),
            cache.join("link/keep.txt"),
            cache.join(TRASH_DIR),
            cache.join(TRASH_DIR).join("x/y"),
        ];
        for path in refused {
            let err = trash.take(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{}: {err}", path.display());
        }
        assert!(dir.path().join("outside/keep.txt").exists());
        assert!(trash.take(&cache.join("link")).unwrap().is_some(), "a symlink inside the cache is taken as itself");
        trash.empty(1).unwrap();
        assert!(dir.path().join("outside/keep.txt").exists());
    }

    #[test]
    fn an_item_already_in_the_trash_stays_taken() {
        let (_dir, cache) = cache_with_entry();
        let trash = Trash::open(&cache).unwrap();
        let taken = trash.take(&cache.join("111")).unwrap().unwrap();
        assert_eq!(trash.take(&taken).unwrap(), Some(taken.clone()));
        assert!(taken.join("dist/app/main.js").exists());
        assert_eq!(trash.take(&trash.path().join("gone")).unwrap(), None);
        assert_eq!(trash.len(), 1);
    }

    #[test]
    fn take_of_a_vanished_path_is_none() {
        let (_dir, cache) = cache_with_entry();
        let trash = Trash::open(&cache).unwrap();
        assert_eq!(trash.take(&cache.join("999")).unwrap(), None);
        assert_eq!(trash.take(&cache.join("gone/999")).unwrap(), None);
        assert!(trash.is_empty());
    }

    #[test]
    fn the_same_name_taken_twice_gets_two_names() {
        let (_dir, cache) = cache_with_entry();
        let trash = Trash::open(&cache).unwrap();
        let first = trash.take(&cache.join("111")).unwrap().unwrap();
        write(&cache.join("111/again"), 1);
        let second = trash.take(&cache.join("111")).unwrap().unwrap();
        let output = trash.take(&cache.join("terminalOutputs/111")).unwrap().unwrap();
        let other = Trash::open(&cache).unwrap();
        write(&cache.join("111/third"), 1);
        let third = other.take(&cache.join("111")).unwrap().unwrap();

        let mut names = vec![&first, &second, &output, &third];
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 4);
        assert!(
            first.join("dist/app/main.js").exists() && second.join("again").exists() && third.join("third").exists()
        );
        assert_eq!(trash.len(), 4);
    }

    #[test]
    fn restore_puts_an_item_back_but_never_over_a_new_one() {
        let (_dir, cache) = cache_with_entry();
        let trash = Trash::open(&cache).unwrap();
        let taken = trash.take(&cache.join("111")).unwrap().unwrap();
        trash.restore(&taken, &cache.join("111")).unwrap();
        assert_eq!(std::fs::read(cache.join("111/dist/app/main.js")).unwrap().len(), 1000);
        assert!(trash.is_empty());

        let taken = trash.take(&cache.join("111")).unwrap().unwrap();
        write(&cache.join("111/written-again"), 3);
        let err = trash.restore(&taken, &cache.join("111")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(cache.join("111/written-again").exists() && taken.exists());

        let err = trash.restore(&cache.join("111"), &cache.join("222")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "only items of the trash are restored");
    }

    #[test]
    fn hard_linked_files_are_counted_once() {
        let (_dir, cache) = cache_with_entry();
        std::fs::hard_link(cache.join("111/dist/app/main.js"), cache.join("111/dist/app/copy.js")).unwrap();
        std::fs::hard_link(cache.join("111/dist/app/main.js"), cache.join("terminalOutputs/linked")).unwrap();
        let trash = Trash::open(&cache).unwrap();
        trash.take(&cache.join("111")).unwrap();
        trash.take(&cache.join("terminalOutputs/linked")).unwrap();
        let removed = trash.empty(2).unwrap();
        assert_eq!((removed.files, removed.apparent_bytes), (2, 1024));
    }

    #[test]
    fn orphans_of_an_interrupted_run_are_counted_and_deleted() {
        let (_dir, cache) = cache_with_entry();
        write(&cache.join(TRASH_DIR).join("123.4242.0/dist/x"), 10);
        write(&cache.join(TRASH_DIR).join("123.4242.1"), 10);
        let trash = Trash::open(&cache).unwrap();
        assert_eq!(trash.len(), 2);
        assert_eq!(trash.empty(2).unwrap().files, 2);
        assert!(trash.is_empty());
    }

    #[test]
    fn two_cleaners_emptying_the_same_trash_tolerate_each_other() {
        let (_dir, cache) = cache_with_entry();
        for i in 0..200 {
            for f in 0..10 {
                write(&cache.join(format!("e{i}/dist/p/{f}")), 10);
            }
        }
        let trash = Trash::open(&cache).unwrap();
        for i in 0..200 {
            trash.take(&cache.join(format!("e{i}"))).unwrap().unwrap();
        }
        let other = Trash::open(&cache).unwrap();
        let (mine, theirs) = std::thread::scope(|scope| {
            let theirs = scope.spawn(|| other.empty(2).unwrap());
            (trash.empty(2).unwrap(), theirs.join().unwrap())
        });
        assert!(trash.is_empty());
        assert_eq!(mine.files + theirs.files, 2000, "each file counted by the one who deleted it");
        assert_eq!(mine.dirs + theirs.dirs, 600);
    }

    #[test]
    fn deletes_trees_deeper_than_path_max() {
        let (_dir, cache) = cache_with_entry();
        let mut deep = cache.join("111");
        for _ in 0..30 {
            deep.push("d".repeat(200));
        }
        assert!(std::process::Command::new("mkdir").arg("-p").arg(&deep).status().unwrap().success());
        let trash = Trash::open(&cache).unwrap();
        trash.take(&cache.join("111")).unwrap().unwrap();
        assert_eq!(trash.empty(1).unwrap().dirs, 3 + 30 + 1);
        assert!(trash.is_empty());
    }
}
