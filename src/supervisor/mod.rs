//! The process supervisor (see `supervisor.rs` for the design).

pub mod leak;
pub mod logs;
pub mod policy;
pub mod spec;
