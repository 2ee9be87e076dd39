//! nxops: a sidecar and CLI that keeps Nx workspaces healthy.
//!
//! See ARCHITECTURE.md for the map of this crate.

pub mod app;
pub mod atomic_file;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod environment;
pub mod exposition;
pub mod health;
pub mod info;
pub mod input_error;
pub mod mcp;
pub mod output;
pub mod procfs;
pub mod reaper;
pub mod rpc;
pub mod sessions;
pub mod sidecar;
pub mod supervisor;
pub mod sync;
pub mod team_cache;
pub mod trust;
pub mod workspace;
