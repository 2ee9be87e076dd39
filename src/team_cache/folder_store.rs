//! Artifacts in a folder, for one machine or a shared file system: `<root>/<prefix><hash>`, each
//! holding the artifact's bytes and its [`Footer`].
//!
//! # Invariants
//! - An artifact appears under its name only complete: an upload is written to
//!   `<root>/.incoming/<random>.part`, synced, and renamed with `RENAME_NOREPLACE`, so a cut upload
//!   is never visible and a stored artifact is never replaced (a second upload of the hash loses).
//! - Damaged objects are moved to `<root>/.damaged/` (never deleted by a read), so the next request
//!   for the hash is a clean miss and the evidence stays for a look.
//! - Nothing outside `root` is ever written: keys are a checked prefix and a checked hash.
//! - Uploads left in `.incoming` by a killed server are removed when a server opens the folder and
//!   they are more than an hour old (another server on a shared folder may still be writing younger
//!   ones).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::artifact::{Damage, FOOTER_LEN, Footer};
use super::store::{CommitError, Opened, Source};

const INCOMING: &str = ".incoming";
const DAMAGED: &str = ".damaged";
const STALE_UPLOAD: Duration = Duration::from_secs(3600);

pub struct FolderStore {
    root: PathBuf,
}

/// An artifact found, opened and positioned at its first byte.
struct Found {
    file: tokio::fs::File,
    footer: Footer,
}

/// Milliseconds since the epoch, for the names of what is set aside.
pub fn stamp_ms() -> u128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis()
}

impl FolderStore {
    /// Opens (creating when missing) the store at `root` and removes stale uploads.
    pub fn open(root: &Path) -> io::Result<FolderStore> {
        for dir in [root.to_path_buf(), root.join(INCOMING), root.join(DAMAGED)] {
            std::fs::create_dir_all(&dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        let store = FolderStore { root: root.to_path_buf() };
        store.remove_stale_uploads();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The artifact under `key`, its bytes read through once (off the runtime's threads) and
    /// checked against its footer, then rewound.
    pub async fn open_checked(&self, key: &str) -> io::Result<Opened> {
        let found = match self.find(key).await? {
            None => return Ok(Opened::Missing),
            Some(Err(damage)) => return Ok(Opened::Damaged(damage)),
            Some(Ok(found)) => found,
        };
        let Found { file, footer } = found;
        let mut file = file.into_std().await;
        let damage = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek};
            let mut hasher = blake3::Hasher::new();
            let read = std::io::copy(&mut (&mut file).take(footer.size), &mut hasher)?;
            file.seek(io::SeekFrom::Start(0))?;
            let damage = if read != footer.size {
                Some(Damage::WrongSize { said: footer.size, stored: read })
            } else if *hasher.finalize().as_bytes() != footer.digest {
                Some(Damage::WrongDigest)
            } else {
                None
            };
            io::Result::Ok((file, damage))
        })
        .await
        .map_err(io::Error::other)??;
        Ok(match damage {
            (file, None) => Opened::Sound(Source::File(tokio::fs::File::from_std(file)), footer),
            (_, Some(damage)) => Opened::Damaged(damage),
        })
    }

    /// The artifact stored under `key`: `None` when there is none, `Some(Err)` when what is stored
    /// has no sound footer.
    async fn find(&self, key: &str) -> io::Result<Option<Result<Found, Damage>>> {
        let mut file = match tokio::fs::File::open(self.root.join(key)).await {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let meta = file.metadata().await?;
        if !meta.is_file() {
            // A folder here is another token's prefix (`team/` beside a hash `team`): no artifact,
            // and never something to set aside.
            return Ok(None);
        }
        let stored = meta.len();
        if stored < FOOTER_LEN {
            return Ok(Some(Err(Damage::NoFooter(stored))));
        }
        let mut tail = [0u8; FOOTER_LEN as usize];
        file.seek(io::SeekFrom::Start(stored - FOOTER_LEN)).await?;
        file.read_exact(&mut tail).await?;
        file.seek(io::SeekFrom::Start(0)).await?;
        Ok(Some(Footer::decode(&tail, stored).map(|footer| Found { file, footer })))
    }

    pub async fn exists(&self, key: &str) -> io::Result<bool> {
        tokio::fs::try_exists(self.root.join(key)).await
    }

    /// Starts an upload under a temporary name.
    pub async fn upload(&self) -> io::Result<FolderUpload> {
        let token = super::tokens::generate()?;
        let temp = self.root.join(INCOMING).join(format!("{}.part", &token[4..28]));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&temp).await?;
        Ok(FolderUpload { file, temp: Some(temp), hasher: blake3::Hasher::new(), written: 0 })
    }

    /// Moves what is stored under `key` to `.damaged/`, so that the hash reads as a miss.
    pub async fn set_aside(&self, key: &str) -> io::Result<()> {
        let stamp = stamp_ms();
        let aside = self.root.join(DAMAGED).join(format!("{}.{stamp}", key.replace('/', "_")));
        match tokio::fs::rename(self.root.join(key), aside).await {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Deletes the artifact under `key`; gone already is no error. A download that opened it
    /// finishes (an open file outlives its name).
    pub async fn remove(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.root.join(key)).await {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Every artifact (the store's own `.` folders left out): key, stored bytes, modification time.
    pub async fn list(&self) -> io::Result<Vec<(String, u64, i64)>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let mut pending = vec![(root, String::new())];
            while let Some((dir, prefix)) = pending.pop() {
                let Ok(items) = std::fs::read_dir(&dir) else { continue };
                for item in items.flatten() {
                    let name = item.file_name().to_string_lossy().into_owned();
                    let Ok(meta) = item.metadata() else { continue };
                    if name.starts_with('.') {
                        continue;
                    } else if meta.is_dir() {
                        pending.push((item.path(), format!("{prefix}{name}/")));
                    } else if meta.is_file() {
                        let at = meta.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
                        found.push((format!("{prefix}{name}"), meta.len(), at.map_or(0, |d| d.as_millis() as i64)));
                    }
                }
            }
            found
        })
        .await
        .map_err(io::Error::other)
    }

    fn remove_stale_uploads(&self) {
        let Ok(items) = std::fs::read_dir(self.root.join(INCOMING)) else { return };
        for item in items.flatten() {
            let old = item.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if old.is_some_and(|age| age > STALE_UPLOAD) {
                let _ = std::fs::remove_file(item.path());
            }
        }
    }
}

/// An upload in progress; dropped without [`FolderUpload::commit`], it leaves nothing behind.
pub struct FolderUpload {
    file: tokio::fs::File,
    temp: Option<PathBuf>,
    hasher: blake3::Hasher,
    written: u64,
}

impl FolderUpload {
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        self.file.write_all(chunk).await
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Adds the footer, syncs, and gives the upload its name `key` unless that name is taken.
    pub async fn commit(mut self, store: &FolderStore, key: &str) -> Result<(), CommitError> {
        let footer = Footer { size: self.written, digest: *self.hasher.finalize().as_bytes() };
        self.file.write_all(&footer.encode()).await?;
        self.file.sync_all().await?;
        let target = store.root.join(key);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let temp = self.temp.clone().expect("an upload is committed once");
        let renamed = tokio::task::spawn_blocking(move || {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &temp,
                rustix::fs::CWD,
                &target,
                rustix::fs::RenameFlags::NOREPLACE,
            )
        })
        .await
        .map_err(io::Error::other)?;
        match renamed {
            Ok(()) => {
                self.temp = None;
                Ok(())
            }
            Err(rustix::io::Errno::EXIST) => Err(CommitError::Exists),
            Err(err) => Err(CommitError::Io(err.into())),
        }
    }
}

impl Drop for FolderUpload {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}
