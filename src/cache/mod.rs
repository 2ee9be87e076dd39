//! The Nx task cache: statistics, eviction, reset and verification, always in
//! step with Nx's own database.

pub mod scan;
pub mod trash;
