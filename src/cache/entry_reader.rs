//! Reading cache entries without ever leaving the cache: the one rule every
//! reader of entry content (`verify`, its digests) follows.
//!
//! # Rule
//! - Everything is opened relative to the cache folder, opened once, with
//!   `openat` and `O_NOFOLLOW`; kinds come from `statx` with
//!   `AT_SYMLINK_NOFOLLOW`. Only the cache folder's own path is resolved like
//!   any path (it may live on another disk through a symlink).
//! - Only regular files and folders are opened. An entry folder, the
//!   `terminalOutputs` folder or a terminal output that is anything else (a
//!   symlink, a FIFO, a device, a socket, or a file where a folder belongs) is a
//!   [`Trap`]: it is described, never opened, and the entry is damaged (Nx would
//!   restore from outside the cache, or hang).
//! - Inside an entry's outputs, a symlink is an output Nx stores as it found it:
//!   it is digested by its target text (`readlinkat`), never followed. A FIFO,
//!   device or socket there is a trap: Nx never stores one.
//! - A file is opened `O_NONBLOCK | O_NOCTTY` as well, and checked with `fstat`
//!   to be the regular file `statx` saw: something swapped in between (a FIFO,
//!   a device) is refused before a byte is read, so no read can block for good.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Statx};

use super::scan::{DirBuffer, lstat_at};

/// Something in the cache that is not what Nx writes there, and was not opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    /// Relative to the cache folder.
    pub path: PathBuf,
    /// What it is: "a symlink to /x", "a FIFO", "a character device", ...
    pub what: String,
}

/// An item looked up in the cache: absent, a trap, or opened.
#[derive(Debug)]
pub enum Found<T> {
    Missing,
    Trap(Trap),
    Opened(T),
}

/// The cache folder, opened once; every lookup is relative to it.
pub struct CacheReader {
    root: OwnedFd,
    /// `terminalOutputs`, opened; a trap when it is not a folder.
    terminal: Found<OwnedFd>,
}

/// A regular file opened for reading, and its size.
pub struct OpenedFile {
    pub file: std::fs::File,
    pub len: u64,
}

/// An entry's digest (see `digests`) and the bytes of its output files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDigest {
    pub digest: String,
    pub output_bytes: u64,
}

/// Why an entry could not be digested.
#[derive(Debug)]
pub enum DigestError {
    Trap(Trap),
    Io(io::Error),
}

impl From<rustix::io::Errno> for DigestError {
    fn from(err: rustix::io::Errno) -> DigestError {
        DigestError::Io(err.into())
    }
}

impl CacheReader {
    pub fn open(cache_dir: &Path) -> io::Result<CacheReader> {
        let root = rustix::fs::open(cache_dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let terminal = open_folder_at(root.as_fd(), c"terminalOutputs", Path::new("terminalOutputs"))?;
        Ok(CacheReader { root, terminal })
    }

    /// The entry folder `<hash>/`.
    pub fn entry_folder(&self, hash: &str) -> io::Result<Found<OwnedFd>> {
        let name = c_name(hash)?;
        open_folder_at(self.root.as_fd(), &name, Path::new(hash))
    }

    /// What `terminalOutputs` is when it is not a folder.
    pub fn terminal_outputs_trap(&self) -> Option<&Trap> {
        match &self.terminal {
            Found::Trap(trap) => Some(trap),
            _ => None,
        }
    }

    /// The terminal output `terminalOutputs/<hash>`.
    pub fn terminal_output(&self, hash: &str) -> io::Result<Found<OpenedFile>> {
        let dir = match &self.terminal {
            Found::Missing => return Ok(Found::Missing),
            Found::Trap(trap) => return Ok(Found::Trap(trap.clone())),
            Found::Opened(dir) => dir,
        };
        let name = c_name(hash)?;
        open_file_at(dir.as_fd(), &name, &Path::new("terminalOutputs").join(hash))
    }
}

/// The digest of an entry folder plus its terminal output: blake3 over the
/// entry's files in path order (relative path, kind, content or link target),
/// then the terminal output. The same bytes as nxops has always hashed, so
/// digests recorded before stay valid. `folder_path` names the folder in traps.
pub fn digest_entry(
    folder: BorrowedFd,
    folder_path: &Path,
    terminal: Option<&mut OpenedFile>,
) -> Result<EntryDigest, DigestError> {
    let mut hasher = blake3::Hasher::new();
    let mut output_bytes = 0;
    let mut buf = DirBuffer::new();
    digest_folder(folder, folder_path, Path::new(""), &mut buf, &mut hasher, &mut output_bytes)?;
    hasher.update(b"\0terminal\0");
    if let Some(terminal) = terminal {
        hasher.update_reader(&mut terminal.file).map_err(DigestError::Io)?;
    }
    Ok(EntryDigest { digest: hasher.finalize().to_hex().to_string(), output_bytes })
}

/// Depth first, names in byte order: the order of sorting the relative paths,
/// since `Path` compares component by component. One descriptor per level.
fn digest_folder(
    dir: BorrowedFd,
    folder_path: &Path,
    relative: &Path,
    buf: &mut DirBuffer,
    hasher: &mut blake3::Hasher,
    output_bytes: &mut u64,
) -> Result<(), DigestError> {
    let mut names = buf.names(dir)?;
    names.sort_unstable_by(|a, b| a.to_bytes().cmp(b.to_bytes()));
    for name in names {
        let path = relative.join(OsStr::from_bytes(name.to_bytes()));
        let Some(stat) = lstat_at(dir, &name)? else { continue };
        match file_type(&stat) {
            FileType::Directory => {
                let Found::Opened(sub) =
                    open_folder_at(dir, &name, &folder_path.join(&path)).map_err(DigestError::Io)?
                else {
                    continue;
                };
                digest_folder(sub.as_fd(), folder_path, &path, buf, hasher, output_bytes)?;
            }
            FileType::Symlink => {
                hasher.update(path.as_os_str().as_bytes());
                hasher.update(b"\0link\0");
                let target = rustix::fs::readlinkat(dir, name.as_c_str(), Vec::new())?;
                hasher.update(target.to_bytes());
            }
            FileType::RegularFile => {
                let mut file = match open_file_at(dir, &name, &folder_path.join(&path)).map_err(DigestError::Io)? {
                    Found::Opened(file) => file,
                    Found::Missing => continue,
                    Found::Trap(trap) => return Err(DigestError::Trap(trap)),
                };
                hasher.update(path.as_os_str().as_bytes());
                hasher.update(b"\0file\0");
                *output_bytes += file.len;
                hasher.update_reader(&mut file.file).map_err(DigestError::Io)?;
            }
            other => {
                let trap = Trap { path: folder_path.join(&path), what: describe(other, None) };
                return Err(DigestError::Trap(trap));
            }
        }
    }
    Ok(())
}

/// Opens the folder `name` under `dir`, never through a symlink.
fn open_folder_at(dir: BorrowedFd, name: &CStr, path: &Path) -> io::Result<Found<OwnedFd>> {
    let Some(stat) = lstat_at(dir, name)? else { return Ok(Found::Missing) };
    let kind = file_type(&stat);
    if kind != FileType::Directory {
        return Ok(Found::Trap(trap_of(dir, name, path, kind)));
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Found::Opened(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(Found::Missing),
        // Swapped for something else since the statx: look again, to say what.
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => match lstat_at(dir, name)? {
            Some(stat) => Ok(Found::Trap(trap_of(dir, name, path, file_type(&stat)))),
            None => Ok(Found::Missing),
        },
        Err(err) => Err(err.into()),
    }
}

/// Opens the regular file `name` under `dir` for reading, never through a
/// symlink and never anything but a regular file.
fn open_file_at(dir: BorrowedFd, name: &CStr, path: &Path) -> io::Result<Found<OpenedFile>> {
    let Some(stat) = lstat_at(dir, name)? else { return Ok(Found::Missing) };
    let kind = file_type(&stat);
    if kind != FileType::RegularFile {
        return Ok(Found::Trap(trap_of(dir, name, path, kind)));
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Found::Missing),
        Err(rustix::io::Errno::LOOP) => return Ok(Found::Trap(trap_of(dir, name, path, FileType::Symlink))),
        Err(err) => return Err(err.into()),
    };
    let opened = rustix::fs::fstat(&fd)?;
    let kind = FileType::from_raw_mode(opened.st_mode);
    if kind != FileType::RegularFile {
        return Ok(Found::Trap(Trap { path: path.to_path_buf(), what: describe(kind, None) }));
    }
    Ok(Found::Opened(OpenedFile { file: std::fs::File::from(fd), len: opened.st_size as u64 }))
}

fn trap_of(dir: BorrowedFd, name: &CStr, path: &Path, kind: FileType) -> Trap {
    let target = (kind == FileType::Symlink)
        .then(|| rustix::fs::readlinkat(dir, name, Vec::new()).ok())
        .flatten()
        .map(|t| PathBuf::from(OsStr::from_bytes(t.to_bytes())));
    Trap { path: path.to_path_buf(), what: describe(kind, target.as_deref()) }
}

/// "a symlink to /x", "a FIFO", ...: what an item is, in words.
pub fn describe(kind: FileType, target: Option<&Path>) -> String {
    match kind {
        FileType::Symlink => match target {
            Some(target) => format!("a symlink to {}", target.display()),
            None => "a symlink".into(),
        },
        FileType::Fifo => "a FIFO".into(),
        FileType::Socket => "a socket".into(),
        FileType::CharacterDevice => "a character device".into(),
        FileType::BlockDevice => "a block device".into(),
        FileType::RegularFile => "a file".into(),
        FileType::Directory => "a folder".into(),
        FileType::Unknown => "of an unknown kind".into(),
    }
}

fn file_type(stat: &Statx) -> FileType {
    FileType::from_raw_mode(u32::from(stat.stx_mode))
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("a NUL in {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(rustix::fs::CWD, path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
    }

    fn digest_of(reader: &CacheReader, hash: &str) -> Result<EntryDigest, DigestError> {
        let Found::Opened(folder) = reader.entry_folder(hash).unwrap() else { panic!("{hash} is a folder") };
        let mut terminal = match reader.terminal_output(hash).unwrap() {
            Found::Opened(file) => Some(file),
            _ => None,
        };
        digest_entry(folder.as_fd(), Path::new(hash), terminal.as_mut())
    }

    #[test]
    fn digest_changes_with_content_and_not_with_order_of_creation() {
        let dir = tempfile::tempdir().unwrap();
        for (hash, order) in [("1", ["x", "y"]), ("2", ["y", "x"])] {
            std::fs::create_dir_all(dir.path().join(hash).join("sub")).unwrap();
            for name in order {
                std::fs::write(dir.path().join(hash).join("sub").join(name), name).unwrap();
            }
        }
        let reader = CacheReader::open(dir.path()).unwrap();
        let a = digest_of(&reader, "1").unwrap();
        assert_eq!(a.output_bytes, 2);
        assert_eq!(a, digest_of(&reader, "2").unwrap());
        std::fs::write(dir.path().join("2/sub/x"), "changed").unwrap();
        assert_ne!(a.digest, digest_of(&reader, "2").unwrap().digest);
    }

    #[test]
    fn the_digest_is_the_one_nxops_always_recorded() {
        // blake3 over "a\0file\0A", "b/c\0link\0/t", "\0terminal\0T", as the path-based digest did.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("terminalOutputs")).unwrap();
        std::fs::write(dir.path().join("1/a"), "A").unwrap();
        symlink("/t", dir.path().join("1/b/c")).unwrap();
        std::fs::write(dir.path().join("terminalOutputs/1"), "T").unwrap();
        let mut expected = blake3::Hasher::new();
        expected.update(b"a\0file\0A").update(b"b/c\0link\0/t").update(b"\0terminal\0T");
        let reader = CacheReader::open(dir.path()).unwrap();
        assert_eq!(digest_of(&reader, "1").unwrap().digest, expected.finalize().to_hex().to_string());
    }

    #[test]
    fn traps_are_described_and_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        mkfifo(&outside.path().join("fifo"));
        symlink(outside.path(), dir.path().join("1")).unwrap();
        std::fs::create_dir_all(dir.path().join("2/dist")).unwrap();
        mkfifo(&dir.path().join("2/dist/pipe"));
        std::fs::create_dir_all(dir.path().join("3")).unwrap();
        symlink("/dev/zero", dir.path().join("3/zero")).unwrap();
        std::fs::create_dir_all(dir.path().join("terminalOutputs")).unwrap();
        symlink("/dev/zero", dir.path().join("terminalOutputs/3")).unwrap();
        mkfifo(&dir.path().join("terminalOutputs/4"));
        let reader = CacheReader::open(dir.path()).unwrap();

        let Found::Trap(trap) = reader.entry_folder("1").unwrap() else { panic!("a symlinked entry is a trap") };
        assert_eq!(trap.what, format!("a symlink to {}", outside.path().display()));
        let Err(DigestError::Trap(trap)) = digest_of(&reader, "2") else { panic!("a FIFO inside is a trap") };
        assert_eq!((trap.path, trap.what.as_str()), (PathBuf::from("2/dist/pipe"), "a FIFO"));
        let Found::Trap(trap) = reader.terminal_output("3").unwrap() else { panic!("a symlinked terminal output") };
        assert_eq!(trap.what, "a symlink to /dev/zero");
        let Found::Trap(trap) = reader.terminal_output("4").unwrap() else { panic!("a FIFO terminal output") };
        assert_eq!(trap.what, "a FIFO");
        // A symlink among the outputs is an output: digested by its target, not followed.
        let Found::Opened(folder) = reader.entry_folder("3").unwrap() else { panic!() };
        assert!(digest_entry(folder.as_fd(), Path::new("3"), None).is_ok());
        assert!(matches!(reader.entry_folder("5").unwrap(), Found::Missing));
    }

    #[test]
    fn a_symlinked_terminal_outputs_folder_is_a_trap() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("1"), "outside").unwrap();
        symlink(outside.path(), dir.path().join("terminalOutputs")).unwrap();
        let reader = CacheReader::open(dir.path()).unwrap();
        let Found::Trap(trap) = reader.terminal_output("1").unwrap() else { panic!("not read through the symlink") };
        assert_eq!(trap.path, PathBuf::from("terminalOutputs"));
    }
}
