//! `ConfigError`, the one shape of bad input (a file, a key, a flag): where it
//! is and what is wrong with it. A leaf, so that the readers of input files
//! (`workspace::nx_json`, `workspace::nxops_json`) and `config`, which layers
//! them, all use it without depending on one another.

use std::path::Path;

/// A configuration mistake: where it is, what was given and what was expected.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct ConfigError {
    pub location: String,
    pub problem: String,
}

impl ConfigError {
    pub fn file(path: &Path, problem: String) -> Self {
        ConfigError { location: path.display().to_string(), problem }
    }
}
