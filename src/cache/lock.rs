//! One cleaner at a time per cache: an exclusive `flock` on
//! `<cache>/.nxops-clean.lock`, released when dropped or when the process dies.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

/// The lock file's name inside the cache folder.
pub const LOCK_FILE: &str = ".nxops-clean.lock";

pub struct CleanerLock {
    _file: File,
}

impl CleanerLock {
    /// Waits for the lock (manual runs).
    pub fn wait(cache_dir: &Path) -> std::io::Result<CleanerLock> {
        let file = open(cache_dir)?;
        flock(&file, FlockOperation::LockExclusive)?;
        Ok(CleanerLock { _file: file })
    }

    /// Takes the lock if it is free; `None` when another cleaner holds it (automatic runs).
    pub fn try_take(cache_dir: &Path) -> std::io::Result<Option<CleanerLock>> {
        let file = open(cache_dir)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(CleanerLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn open(cache_dir: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(cache_dir.join(LOCK_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_cleaner_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = CleanerLock::wait(dir.path()).unwrap();
        assert!(CleanerLock::try_take(dir.path()).unwrap().is_none());
        drop(first);
        assert!(CleanerLock::try_take(dir.path()).unwrap().is_some());
    }
}
