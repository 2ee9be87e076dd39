//! The informational reports: `system info` and `env info`.

pub mod env;
pub mod system;
pub mod version_cache;
pub mod versions;
