//! Placeholder (being written by another engineer): minimal version.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub const TRASH_DIR: &str = ".nxops-trash";
pub struct Trash {
    dir: PathBuf,
    counter: AtomicU64,
}
impl Trash {
    pub fn open(cache_dir: &Path) -> std::io::Result<Trash> {
        let dir = cache_dir.join(TRASH_DIR);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(Trash { dir, counter: AtomicU64::new(0) })
    }
    pub fn path(&self) -> &Path {
        &self.dir
    }
    pub fn take(&self, path: &Path) -> std::io::Result<Option<PathBuf>> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let dest =
            self.dir.join(format!("{name}.{}.{}", std::process::id(), self.counter.fetch_add(1, Ordering::Relaxed)));
        match std::fs::rename(path, &dest) {
            Ok(()) => Ok(Some(dest)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    pub fn restore(&self, taken: &Path, original: &Path) -> std::io::Result<()> {
        std::fs::rename(taken, original)
    }
    pub fn empty(&self, _threads: usize) -> std::io::Result<super::scan::Usage> {
        let mut total = super::scan::Usage::default();
        for item in std::fs::read_dir(&self.dir)?.flatten() {
            let u = super::scan::measure(&item.path()).unwrap_or_default();
            total.apparent_bytes += u.apparent_bytes;
            total.files += u.files;
            if item.file_type()?.is_dir() {
                std::fs::remove_dir_all(item.path())?;
            } else {
                std::fs::remove_file(item.path())?;
            }
        }
        Ok(total)
    }
    pub fn len(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |d| d.count())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
