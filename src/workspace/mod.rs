//! An Nx workspace: its root, its nx.json and where Nx keeps its cache.

pub mod git_identity;
pub mod node_resolve;
pub mod nx_json;
pub mod nx_paths;
pub mod nxops_json;

use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, FlagValue, Settings, state_dir};
use crate::environment::Environment;
use nx_json::NxJson;
use nx_paths::NxLocations;

/// A workspace nxops has found and understood.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Absolute and canonical, as Nx sees it (`process.cwd()` is physical).
    pub root: PathBuf,
    pub nx_json: NxJson,
    pub nx: NxLocations,
    pub settings: Settings,
    pub state_dir: Option<PathBuf>,
}

/// Why no workspace could be opened.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("no Nx workspace found: no nx.json in {}", searched_list(.searched))]
    NotFound { searched: Vec<PathBuf> },
    #[error("{}: {reason}", .path.display())]
    BadPath { path: PathBuf, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn searched_list(searched: &[PathBuf]) -> String {
    searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Walks up from `start` to the nearest folder holding `nx.json`.
pub fn find_root(start: &Path) -> Result<PathBuf, WorkspaceError> {
    let start = std::fs::canonicalize(start).map_err(|e| WorkspaceError::BadPath {
        path: start.to_path_buf(),
        reason: format!("cannot open the folder: {e}"),
    })?;
    let mut searched = Vec::new();
    for dir in start.ancestors() {
        if dir.join("nx.json").is_file() {
            return Ok(dir.to_path_buf());
        }
        searched.push(dir.to_path_buf());
    }
    Err(WorkspaceError::NotFound { searched })
}

impl Workspace {
    /// Opens the workspace whose root is `root` (or contains it, when `root` is a subfolder).
    pub fn open(start: &Path, env: &Environment, flags: &[FlagValue]) -> Result<Workspace, WorkspaceError> {
        let root = find_root(start)?;
        let nx_json = NxJson::read(&root.join("nx.json"))?;
        let entry = nx_json.nxops_plugin();
        let plugin = entry.as_ref().map(|entry| config::PluginOptions {
            file: nx_json.file_of("plugins"),
            pointer: &entry.pointer,
            options: entry.options,
        });
        let settings = Settings::resolve(plugin, env, flags)?;
        let nx = nx_paths::resolve(&root, Some(&nx_json), env);
        let state_dir = state_dir(env, &root);
        Ok(Workspace { root, nx_json, nx, settings, state_dir })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_workspace_lists_every_folder_searched() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        let err = find_root(&deep).unwrap_err();
        let WorkspaceError::NotFound { searched } = &err else { panic!("{err}") };
        let canonical = std::fs::canonicalize(&deep).unwrap();
        assert_eq!(searched.first(), Some(&canonical));
        assert_eq!(searched.last(), Some(&PathBuf::from("/")));
        assert!(err.to_string().starts_with("no Nx workspace found: no nx.json in "));
    }

    #[test]
    fn nearest_nx_json_wins() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("outer/inner/src");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(dir.path().join("outer/nx.json"), "{}").unwrap();
        std::fs::write(dir.path().join("outer/inner/nx.json"), "{}").unwrap();
        let root = find_root(&inner).unwrap();
        assert_eq!(root, std::fs::canonicalize(dir.path().join("outer/inner")).unwrap());
    }
}
