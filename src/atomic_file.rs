//! Crash-safe replacement of a small state file: the bytes go to
//! `.<name>.<pid>.tmp` beside it (mode 0600), which is fsynced, renamed over
//! the file, and the folder fsynced. A crash leaves the old file or the new
//! one, never a mix; a failed write removes its temporary file. A leaf.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The temporary file this process writes `file` through.
pub fn temporary(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?.to_string_lossy();
    Some(file.with_file_name(format!(".{name}.{}.tmp", std::process::id())))
}

/// Replaces `file` with `bytes` atomically, creating its folder if needed.
pub fn replace(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().ok_or_else(|| std::io::Error::other(format!("{} has no folder", file.display())))?;
    let temp = temporary(file).ok_or_else(|| std::io::Error::other(format!("{} has no name", file.display())))?;
    std::fs::create_dir_all(dir)?;
    let written = (|| {
        let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        std::fs::rename(&temp, file)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/state.json");
        super::replace(&file, b"one").unwrap();
        super::replace(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        let names: Vec<_> =
            std::fs::read_dir(file.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"]);
        let temp = super::temporary(&file).unwrap();
        assert_eq!(temp.file_name().unwrap().to_string_lossy(), format!(".state.json.{}.tmp", std::process::id()));
    }
}
