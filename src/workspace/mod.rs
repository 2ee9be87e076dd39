//! An Nx workspace: its root, its nx.json and where Nx keeps its cache.
//!
//! Where Nx keeps the cache is not fixed at open: Nx creates its database on its
//! first run (often after the editor's sidecar attached), and a changed nx.json
//! or a first commit can move the cache. So [`Workspace::nx`] lists the database
//! files on every read (one `read_dir`), and the layout decision itself is made
//! again by [`Workspace::refresh_nx`], which the owner's watch
//! (`sidecar::nx_watch`) calls when its inputs change.

pub mod git_identity;
pub mod node_resolve;
pub mod nx_json;
pub mod nx_paths;
pub mod nxops_json;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// The last layout decision; read it through [`Workspace::nx`].
    nx: NxCell,
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
        let workspace = Self::open_undecided(start, env, flags)?;
        workspace.decided();
        Ok(workspace)
    }

    /// Opens the workspace without deciding yet where Nx keeps its cache: the
    /// decision may run git (two or three processes, most of an MCP proxy's
    /// start), so a front-end that only forwards to the owner leaves it to the
    /// first use of [`Workspace::nx`], which never comes unless it takes over.
    pub fn open_undecided(start: &Path, env: &Environment, flags: &[FlagValue]) -> Result<Workspace, WorkspaceError> {
        let root = find_root(start)?;
        let nx_json = NxJson::read(&root.join("nx.json"))?;
        let entry = nx_json.nxops_plugin();
        let plugin = entry.as_ref().map(|entry| config::PluginOptions {
            file: nx_json.file_of("plugins"),
            pointer: &entry.pointer,
            options: entry.options,
        });
        let settings = Settings::resolve(plugin, env, flags)?;
        let state_dir = state_dir(env, &root);
        let nx = NxCell { decided: Mutex::new(None), env: env.clone() };
        Ok(Workspace { root, nx_json, nx, settings, state_dir })
    }

    /// Where Nx keeps the cache and database now: the last layout decision, with
    /// the database files as they are at this moment (Nx creates them on its first run).
    /// Blocking the first time on a workspace opened undecided (it may run git).
    pub fn nx(&self) -> NxLocations {
        let mut nx = self.decided();
        nx.db_files = nx_paths::find_db_files(&nx.db_dir);
        nx
    }

    /// The last layout decision, made now if none was (blocking: it may run git).
    fn decided(&self) -> NxLocations {
        if let Some(nx) = self.nx.decided.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return nx;
        }
        // Decided outside the lock; a concurrent first use may decide too, and the first stored wins.
        let fresh = nx_paths::resolve(&self.root, Some(&self.nx_json), &self.nx.env);
        self.nx.decided.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(fresh).clone()
    }

    /// The cache folder of the last layout decision, `None` before the first (no
    /// I/O: fit for a view under a lock).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.nx.decided.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|nx| nx.cache_dir.clone())
    }

    /// Decides the layout again from nx.json and git as they are now (blocking: it
    /// may run git). True when the cache, database or workspace data folder moved.
    pub fn refresh_nx(&self) -> bool {
        let nx_json = NxJson::read(&self.root.join("nx.json")).ok();
        let fresh = nx_paths::resolve(&self.root, nx_json.as_ref().or(Some(&self.nx_json)), &self.nx.env);
        let mut decided = self.nx.decided.lock().unwrap_or_else(|p| p.into_inner());
        let moved = decided.as_ref().is_some_and(|decided| {
            (&decided.cache_dir, &decided.db_dir, &decided.workspace_data_dir)
                != (&fresh.cache_dir, &fresh.db_dir, &fresh.workspace_data_dir)
        });
        *decided = Some(fresh);
        moved
    }
}

/// The layout decision (none yet for a workspace opened undecided), replaced
/// by `refresh_nx` (held only to copy or swap it).
#[derive(Debug)]
struct NxCell {
    decided: Mutex<Option<NxLocations>>,
    /// The environment the decision depends on (`NX_*`, HOME).
    env: Environment,
}

impl Clone for NxCell {
    fn clone(&self) -> Self {
        let decided = self.decided.lock().unwrap_or_else(|p| p.into_inner()).clone();
        NxCell { decided: Mutex::new(decided), env: self.env.clone() }
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
