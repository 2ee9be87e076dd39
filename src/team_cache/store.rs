//! Where the team cache's artifacts live: a folder ([`FolderStore`]) or an S3 bucket
//! ([`S3Store`]), behind one interface, so that everything above (the API, integrity, tokens,
//! policies, stats) is the same code for both. Both keep an artifact as its bytes then its
//! [`Footer`], under `<prefix><hash>`, and both check what they serve before its status is sent.
//!
//! The store also knows which artifacts are being read ([`Store::reading`]): an eviction skips
//! them, so a removal never races a download (an S3 object, unlike an open file, does not outlive
//! its deletion on every service).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::io::AsyncReadExt;

use super::artifact::{Damage, Footer};
use super::config::StoreConfig;
use super::folder_store::{FolderStore, FolderUpload};
use super::s3_store::{S3Store, S3Upload};

pub struct Store {
    backend: Backend,
    reading: Mutex<HashMap<String, usize>>,
}

enum Backend {
    Folder(FolderStore),
    S3(S3Store),
}

/// What a read of one key found.
pub enum Opened {
    Missing,
    /// Something is stored, and it is not a sound artifact.
    Damaged(Damage),
    /// A sound artifact: its bytes (the footer left out) and its footer.
    Sound(Source, Footer),
}

/// The bytes of a sound artifact, read chunk by chunk.
pub enum Source {
    File(tokio::fs::File),
    Stream(aws_sdk_s3::primitives::ByteStream),
    Memory(Option<Bytes>),
}

impl Source {
    /// The next chunk, at most `max` bytes for a file; `None` at the end.
    pub async fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match self {
            Source::File(file) => {
                let mut chunk = vec![0u8; max];
                let read = file.read(&mut chunk).await?;
                chunk.truncate(read);
                Ok((read > 0).then(|| Bytes::from(chunk)))
            }
            Source::Stream(stream) => stream.next().await.transpose().map_err(io::Error::other),
            Source::Memory(bytes) => Ok(bytes.take()),
        }
    }
}

/// Why an upload could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("the hash is already stored")]
    Exists,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// An upload in progress: dropped without [`Upload::commit`], it leaves nothing behind.
pub enum Upload {
    Folder(FolderUpload, String),
    S3(S3Upload),
}

impl Upload {
    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        match self {
            Upload::Folder(upload, _) => upload.write(&chunk).await,
            Upload::S3(upload) => upload.write(chunk).await,
        }
    }

    pub fn written(&self) -> u64 {
        match self {
            Upload::Folder(upload, _) => upload.written(),
            Upload::S3(upload) => upload.written(),
        }
    }

    /// Makes the artifact visible under its key, unless that key is taken.
    pub async fn commit(self, store: &Store) -> Result<(), CommitError> {
        match (self, &store.backend) {
            (Upload::Folder(upload, key), Backend::Folder(folder)) => upload.commit(folder, &key).await,
            (Upload::S3(upload), Backend::S3(s3)) => upload.commit(s3).await.map_err(|e| match e {
                super::s3_store::PutError::Exists => CommitError::Exists,
                super::s3_store::PutError::Io(err) => CommitError::Io(err),
            }),
            _ => unreachable!("an upload is committed to the store that began it"),
        }
    }
}

impl Store {
    /// Opens the configured store (a folder is created when missing; a bucket must exist, which
    /// [`Store::check`] verifies).
    pub fn open(config: &StoreConfig) -> io::Result<Store> {
        let backend = match config {
            StoreConfig::Folder(root) => Backend::Folder(FolderStore::open(root)?),
            StoreConfig::S3(s3) => Backend::S3(S3Store::new(s3)),
        };
        Ok(Store { backend, reading: Mutex::new(HashMap::new()) })
    }

    /// Where the store is, for people: a folder, or `<endpoint> bucket <name>`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Folder(folder) => folder.root().display().to_string(),
            Backend::S3(s3) => s3.describe(),
        }
    }

    /// Whether the store can be used: the folder opened already; a bucket is listed.
    pub async fn check(&self) -> io::Result<()> {
        match &self.backend {
            Backend::Folder(_) => Ok(()),
            Backend::S3(s3) => s3.check().await,
        }
    }

    /// The artifact under `key`, checked against its footer.
    pub async fn open_checked(&self, key: &str) -> io::Result<Opened> {
        match &self.backend {
            Backend::Folder(folder) => folder.open_checked(key).await,
            Backend::S3(s3) => s3.open(key).await,
        }
    }

    pub async fn exists(&self, key: &str) -> io::Result<bool> {
        match &self.backend {
            Backend::Folder(folder) => folder.exists(key).await,
            Backend::S3(s3) => s3.exists(key).await,
        }
    }

    /// Starts the upload of `length` bytes under `key`.
    pub async fn upload(&self, key: &str, length: u64) -> io::Result<Upload> {
        match &self.backend {
            Backend::Folder(folder) => Ok(Upload::Folder(folder.upload().await?, key.to_string())),
            Backend::S3(s3) => Ok(Upload::S3(s3.upload(key, length))),
        }
    }

    /// Moves what is stored under `key` out of the way (kept under `.damaged/`): a miss from now on.
    pub async fn set_aside(&self, key: &str) -> io::Result<()> {
        match &self.backend {
            Backend::Folder(folder) => folder.set_aside(key).await,
            Backend::S3(s3) => s3.set_aside(key).await,
        }
    }

    /// Deletes the artifact under `key` (an eviction); gone already is no error.
    pub async fn remove(&self, key: &str) -> io::Result<()> {
        match &self.backend {
            Backend::Folder(folder) => folder.remove(key).await,
            Backend::S3(s3) => s3.remove(key).await,
        }
    }

    /// Every artifact: key, stored bytes (footer included), modification time (ms since the epoch).
    pub async fn list(&self) -> io::Result<Vec<(String, u64, i64)>> {
        match &self.backend {
            Backend::Folder(folder) => folder.list().await,
            Backend::S3(s3) => s3.list().await,
        }
    }

    /// Marks `key` as being read until the guard is dropped.
    pub fn reading(self: &Arc<Store>, key: &str) -> Reading {
        *self.reading.lock().expect("the reading map").entry(key.to_string()).or_default() += 1;
        Reading { store: self.clone(), key: key.to_string() }
    }

    /// Whether a download of `key` is in progress.
    pub fn is_being_read(&self, key: &str) -> bool {
        self.reading.lock().expect("the reading map").contains_key(key)
    }
}

/// A read in progress (see [`Store::reading`]).
pub struct Reading {
    store: Arc<Store>,
    key: String,
}

impl Drop for Reading {
    fn drop(&mut self) {
        let mut reading = self.store.reading.lock().expect("the reading map");
        if let Some(count) = reading.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                reading.remove(&self.key);
            }
        }
    }
}
