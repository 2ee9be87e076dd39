//! The team's cache: `nxops cache serve`, an HTTP server speaking Nx 24's self-hosted remote-cache
//! API, so that what CI builds every developer restores.
//!
//! # The API (Nx's "self-hosted caching" OpenAPI spec, as Nx 24's native `HttpRemoteCache` calls it)
//! - `GET /v1/cache/{hash}`: 200 with the artifact (`application/octet-stream`, `Content-Length`),
//!   404 when there is none, 401 without a valid bearer token, 403 when the token may not read.
//! - `PUT /v1/cache/{hash}` with `Content-Length`: 200 when stored, 409 when the hash is already
//!   stored (an artifact is never overwritten), 401, 403 for a token that may only read, 411
//!   without `Content-Length`, 413 past `maxArtifactSize`, 400 for a hash that is not one (1 to 128
//!   ASCII letters and digits; Nx's are digits) or a body shorter or longer than its length.
//!
//! # Storage and integrity
//! An artifact is stored as its bytes followed by a 48-byte footer ([`artifact::Footer`]: a magic
//! word, the size and the blake3 digest of the bytes), under `<prefix><hash>`, in a folder
//! ([`folder_store`]) or a bucket of an S3-compatible service ([`s3_store`]), both behind
//! [`store::Store`], so that everything here is one code path. An upload never becomes visible
//! unless complete (a folder renames a finished temporary file without replacing; a bucket gets one
//! streaming `PutObject` whose length counts the footer). What is served is checked against its
//! footer before the status is sent, because Nx 24 fails the whole run on a cut body ("Failed to
//! read remote cache response body", exit 1, seen with 24.0.6): a damaged object is a 404, so Nx
//! runs the task, and it is counted and moved aside. A bucket's objects are checked once and then
//! fetched by their checked entity tag (see [`s3_store`]). The bytes are checked again as they
//! stream (the last chunk held back until the digest is known), so an object changed after its
//! check is cut rather than served whole. A store that fails makes a download a miss and an
//! upload a 403 (Nx 24 fails the run on a 5xx to either, and takes 403 as "not stored"). Memory per request is one chunk (64 KiB).
//!
//! # Tokens
//! Tokens are stored as sha256 digests in the server's configuration (`nxops cache token` makes
//! one); a presented token is hashed and compared with every stored digest in constant time. Each
//! token reads or reads and writes, and may be limited to a key prefix (a team or a branch in one
//! store): its hashes are stored and looked up under that prefix only.
//!
//! # Slow clients
//! An upload that sends nothing for `clientTimeout` (30 s) gets 408 and stores nothing; a
//! connection whose client reads nothing for as long is cut ([`stalled_writes`]), so a download
//! nobody reads frees its task and its artifact's eviction guard.
//!
//! # Health
//! A workspace whose Nx is configured for a team cache has it in its health report
//! (`remoteCache`, see [`probe`]). `GET /metrics` (no token: counts only, no hashes) gives the counters; the policies are in
//! [`policy`].

pub mod artifact;
pub mod cli;
pub mod config;
pub mod counters;
pub mod folder_store;
pub mod policy;
pub mod probe;
pub mod s3_store;
pub mod server;
pub mod stalled_writes;
pub mod store;
pub mod tokens;
