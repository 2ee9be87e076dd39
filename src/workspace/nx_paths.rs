//! Where Nx 24 keeps this workspace's task cache and database.
//!
//! Mirrors `nx/src/utils/cache-directory.js` of nx 24.0.x. Nx makes one decision
//! for both the cache folder and the database folder ("shared" under
//! `~/.nx/<dir>` or "local" in the checkout) so that a database row never points
//! at a cache it does not index; nxops makes the same decision with the same
//! inputs. Unlike Nx, nxops never creates or chmods anything while deciding: it
//! predicts what Nx would do with the folders as they are.
//!
//! The rules, in order:
//! 1. `NX_CACHE_DIRECTORY`, `NX_WORKSPACE_DATA_DIRECTORY` or
//!    `NX_PROJECT_GRAPH_CACHE_DIRECTORY` set (non-empty) -> local.
//! 2. nx.json `cacheDirectory` (or `tasksRunnerOptions.default.options.cacheDirectory`) -> local.
//! 3. No identity (`nxCloudId`/`nxCloudAccessToken`, else git remote, else
//!    first commit unless shallow) -> local.
//! 4. `~/.nx` unusable (no absolute home, home at or under `/tmp`, a level that
//!    is not a directory we own, or not writable) -> local.
//! 5. Otherwise shared: `~/.nx/<first 16 hex of sha256(identity)>/{cache,databases}`.
//!
//! Local layout: cache = `NX_CACHE_DIRECTORY` || nx.json `cacheDirectory` ||
//! `.nx/cache` (lerna-only repos: `node_modules/.cache/nx`), relative values
//! taken from the workspace root; database folder = `NX_WORKSPACE_DATA_DIRECTORY`
//! ?? `NX_PROJECT_GRAPH_CACHE_DIRECTORY` ?? `.nx/workspace-data`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::git_identity::{self, IdentitySource, normalize};
use super::nx_json::NxJson;
use crate::environment::Environment;

/// The answer: where the cache and database are, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NxLocations {
    /// The folder holding `<hash>/` entries and `terminalOutputs/`.
    pub cache_dir: PathBuf,
    /// The folder holding the shared database (`<machine>-v<N>.db`).
    pub db_dir: PathBuf,
    /// The database files found in `db_dir` (none before Nx's first run).
    pub db_files: Vec<PathBuf>,
    /// The checkout's own workspace data: daemon files, running-task database.
    pub workspace_data_dir: PathBuf,
    pub layout: Layout,
    /// Problems Nx will hit with these folders (it refuses unsafe configured folders).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum Layout {
    /// Every checkout of the repository shares `~/.nx/<dir_name>`.
    Shared { dir_name: String, identity: IdentitySource },
    /// The checkout keeps its own cache; `reason` says which rule decided it.
    Local { reason: String },
}

/// Resolves the locations for the workspace at `root` (absolute, canonical).
pub fn resolve(root: &Path, nx_json: Option<&NxJson>, env: &Environment) -> NxLocations {
    let mut warnings = Vec::new();
    let layout = decide_layout(root, nx_json, env);
    let (cache_dir, db_dir) = match &layout {
        Layout::Shared { dir_name, .. } => {
            let base = nx_home(env).expect("shared layout implies a home").join(dir_name);
            (base.join("cache"), base.join("databases"))
        }
        Layout::Local { .. } => {
            (local_cache_dir(root, nx_json, env, &mut warnings), workspace_data_dir(root, env, &mut warnings))
        }
    };
    let workspace_data_dir = workspace_data_dir(root, env, &mut Vec::new());
    let db_files = find_db_files(&db_dir);
    NxLocations { cache_dir, db_dir, db_files, workspace_data_dir, layout, warnings }
}

/// What the layout decision reads that can change while a sidecar runs, as file
/// stats (no file is read and nothing is run, so it is cheap to poll): nx.json,
/// and the git files that give the repository its identity (`.git`, its
/// `config`, `HEAD`, `shallow`, `packed-refs` and `refs/heads`). A `.git` file
/// (a linked worktree) is stat'ed itself; its real git folder is not followed.
/// Equal fingerprints mean [`resolve`] would decide the same folders.
pub fn inputs_fingerprint(root: &Path) -> Vec<Option<(i64, i64, u64, u64)>> {
    let git = root.join(".git");
    let files = [
        root.join("nx.json"),
        git.clone(),
        git.join("config"),
        git.join("HEAD"),
        git.join("shallow"),
        git.join("packed-refs"),
        git.join("refs/heads"),
    ];
    files
        .iter()
        .map(|f| std::fs::symlink_metadata(f).ok().map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino())))
        .collect()
}

/// The database files in `dir`: names ending in `-v<digits>.db`, newest schema first.
pub fn find_db_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = schema_version(&name)?;
            Some((version, e.path()))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    found.into_iter().map(|(_, p)| p).collect()
}

/// `abc-v6.db` -> 6.
pub fn schema_version(file_name: &str) -> Option<u32> {
    let stem = file_name.strip_suffix(".db")?;
    let (_, version) = stem.rsplit_once("-v")?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    version.parse().ok()
}

fn decide_layout(root: &Path, nx_json: Option<&NxJson>, env: &Environment) -> Layout {
    for var in ["NX_CACHE_DIRECTORY", "NX_WORKSPACE_DATA_DIRECTORY", "NX_PROJECT_GRAPH_CACHE_DIRECTORY"] {
        if env.get_non_empty(var).is_some() {
            return Layout::Local { reason: format!("{var} is set") };
        }
    }
    if nx_json.and_then(NxJson::cache_directory).is_some() {
        return Layout::Local { reason: "nx.json sets cacheDirectory".into() };
    }
    let identity = match nx_json.and_then(NxJson::nx_cloud_identity) {
        Some(cloud) => Some((cloud.to_string(), IdentitySource::NxCloud)),
        None => git_identity::repo_key(root),
    };
    let Some((workspace_id, source)) = identity else {
        return Layout::Local {
            reason:
                "the repository has no identity (not a git repository, no commits, or a shallow clone without a remote)"
                    .into(),
        };
    };
    let dir_name = hex::encode(Sha256::digest(workspace_id.as_bytes()))[..16].to_string();
    match shared_root_refusal(env, &dir_name) {
        Some(reason) => Layout::Local { reason },
        None => Layout::Shared { dir_name, identity: source },
    }
}

/// `~/.nx`, when the home directory is absolute.
pub fn nx_home(env: &Environment) -> Option<PathBuf> {
    env.home().filter(|h| h.is_absolute() && !h.as_os_str().is_empty()).map(|h| h.join(".nx"))
}

/// Why Nx would refuse the shared root (`establishUserRoot`), or `None`.
fn shared_root_refusal(env: &Environment, dir_name: &str) -> Option<String> {
    let Some(nx_home) = nx_home(env) else { return Some("the home directory is not an absolute path".into()) };
    let home = canonical_dir(nx_home.parent().unwrap_or(Path::new("/")));
    let tmp = canonical_dir(Path::new("/tmp"));
    if home.starts_with(&tmp) {
        return Some(format!("the home directory {} is at or under /tmp, which Nx refuses to share", home.display()));
    }
    let repo_root = nx_home.join(dir_name);
    let required = [nx_home.clone(), repo_root.clone(), repo_root.join("cache"), repo_root.join("databases")];
    for dir in &required {
        if let Some(reason) = private_dir_refusal(dir, env.uid()) {
            return Some(reason);
        }
    }
    None
}

/// `ensureOwnedPrivateDir` judged without side effects: an existing level must be a
/// real directory we own (Nx tightens its mode itself); a missing one must be creatable.
fn private_dir_refusal(dir: &Path, uid: u32) -> Option<String> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Some(format!("{} is a symlink, not a real directory", dir.display()))
        }
        Ok(meta) if !meta.is_dir() => Some(format!("{} exists and is not a directory", dir.display())),
        Ok(meta) if meta.uid() != uid => Some(format!("{} is owned by uid {}, not by you", dir.display(), meta.uid())),
        Ok(_) => (!writable(dir)).then(|| format!("{} is not writable", dir.display())),
        Err(_) => {
            let parent = dir.parent()?;
            (parent.exists() && !writable(parent)).then(|| format!("{} could not be created", dir.display()))
        }
    }
}

fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

/// `canonicalDir`: realpath of the longest existing ancestor, with the rest re-appended.
fn canonical_dir(dir: &Path) -> PathBuf {
    let resolved = normalize(dir);
    let mut missing: Vec<&std::ffi::OsStr> = Vec::new();
    let mut candidate: &Path = &resolved;
    loop {
        if let Ok(real) = std::fs::canonicalize(candidate) {
            return missing.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (candidate.file_name(), candidate.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                candidate = parent;
            }
            _ => return resolved,
        }
    }
}

fn absolute_from(root: &Path, value: &str) -> PathBuf {
    normalize(&root.join(value))
}

fn local_cache_dir(root: &Path, nx_json: Option<&NxJson>, env: &Environment, warnings: &mut Vec<String>) -> PathBuf {
    let configured = env.get_non_empty("NX_CACHE_DIRECTORY").or_else(|| nx_json.and_then(NxJson::cache_directory));
    if let Some(dir) = configured {
        let dir = absolute_from(root, dir);
        warnings.extend(
            untrusted_reason(&dir, root, env)
                .map(|r| format!("Nx will refuse the cache folder {}: {r}", dir.display())),
        );
        return dir;
    }
    if root.join("lerna.json").exists() && !root.join("nx.json").exists() {
        return root.join("node_modules/.cache/nx");
    }
    root.join(".nx/cache")
}

/// `workspaceDataDirectoryForWorkspace`: `??` semantics, so an empty variable counts.
fn workspace_data_dir(root: &Path, env: &Environment, warnings: &mut Vec<String>) -> PathBuf {
    let configured = env.get("NX_WORKSPACE_DATA_DIRECTORY").or_else(|| env.get("NX_PROJECT_GRAPH_CACHE_DIRECTORY"));
    match configured {
        Some(dir) => {
            let dir = absolute_from(root, dir);
            warnings.extend(
                untrusted_reason(&dir, root, env)
                    .map(|r| format!("Nx will refuse the workspace data folder {}: {r}", dir.display())),
            );
            dir
        }
        None if root.join("lerna.json").exists() && !root.join("nx.json").exists() => {
            root.join("node_modules/.cache/nx-workspace-data")
        }
        None => root.join(".nx/workspace-data"),
    }
}

/// `ensureTrustedConfiguredDir`: a configured folder outside the workspace must not
/// be replaceable by another user (owner is us, root or the workspace owner; no
/// other-writable level unless sticky). `None` when Nx accepts it.
fn untrusted_reason(dir: &Path, root: &Path, env: &Environment) -> Option<String> {
    if env.get("NX_ALLOW_INSECURE_DIRECTORIES") == Some("true") || dir.starts_with(root) {
        return None;
    }
    let mut trusted = vec![env.uid(), 0];
    if let Ok(meta) = std::fs::metadata(root) {
        trusted.push(meta.uid());
    }
    for (i, level) in dir.ancestors().enumerate() {
        if level == root {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(level) else { continue };
        if !trusted.contains(&meta.uid()) {
            return Some(format!("{} is owned by uid {}", level.display(), meta.uid()));
        }
        let mode = meta.permissions().mode();
        if meta.is_dir() && mode & 0o002 != 0 {
            if i == 0 {
                return Some(format!("{} is writable by other users", level.display()));
            }
            if mode & 0o1000 == 0 {
                return Some(format!("{} is writable by other users and not sticky", level.display()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_versions_from_file_names() {
        assert_eq!(schema_version("a1b2-v6.db"), Some(6));
        assert_eq!(schema_version("machine-id-v12.db"), Some(12));
        assert_eq!(schema_version("x.db"), None);
        assert_eq!(schema_version("x-v6.db-wal"), None);
        assert_eq!(schema_version("x-v.db"), None);
    }

    #[test]
    fn env_override_forces_the_local_layout() {
        let env = Environment::from_pairs([("NX_CACHE_DIRECTORY", "tmp/c"), ("HOME", "/nonexistent-home")]);
        let loc = resolve(Path::new("/ws"), None, &env);
        assert_eq!(loc.cache_dir, PathBuf::from("/ws/tmp/c"));
        assert_eq!(loc.db_dir, PathBuf::from("/ws/.nx/workspace-data"));
        assert!(matches!(loc.layout, Layout::Local { ref reason } if reason == "NX_CACHE_DIRECTORY is set"));
    }

    #[test]
    fn empty_workspace_data_variable_counts_as_set() {
        let env = Environment::from_pairs([("NX_WORKSPACE_DATA_DIRECTORY", "")]);
        assert_eq!(workspace_data_dir(Path::new("/ws"), &env, &mut Vec::new()), PathBuf::from("/ws"));
    }

    #[test]
    fn home_under_tmp_is_refused() {
        let env = Environment::from_pairs([("HOME", "/tmp/somebody")]);
        let reason = shared_root_refusal(&env, "0123456789abcdef").unwrap();
        assert!(reason.contains("under /tmp"), "{reason}");
    }
}
