//! Placeholder (being written by another engineer): minimal single-threaded version.
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub apparent_bytes: u64,
    pub allocated_bytes: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}
#[derive(Debug, Clone)]
pub struct Child {
    pub name: std::ffi::OsString,
    pub kind: Kind,
    pub usage: Usage,
    pub modified: std::time::SystemTime,
}

pub fn default_threads() -> usize {
    2
}

pub fn scan_children(root: &Path, _threads: usize) -> std::io::Result<Vec<Child>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(root)?.flatten() {
        let Ok(meta) = item.metadata() else { continue };
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        let usage = measure(&item.path()).unwrap_or_default();
        out.push(Child {
            name: item.file_name(),
            kind,
            usage,
            modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
        });
    }
    Ok(out)
}

pub fn measure(path: &Path) -> std::io::Result<Usage> {
    let meta = std::fs::symlink_metadata(path)?;
    let mut u = Usage::default();
    if meta.is_dir() {
        u.dirs += 1;
        for item in std::fs::read_dir(path)?.flatten() {
            let c = measure(&item.path()).unwrap_or_default();
            u.apparent_bytes += c.apparent_bytes;
            u.allocated_bytes += c.allocated_bytes;
            u.files += c.files;
            u.dirs += c.dirs;
            u.symlinks += c.symlinks;
        }
    } else {
        if meta.file_type().is_symlink() {
            u.symlinks += 1
        } else {
            u.files += 1
        }
        u.apparent_bytes += meta.len();
        u.allocated_bytes += meta.blocks() * 512;
    }
    Ok(u)
}
