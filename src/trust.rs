//! Which repository files the user has allowed to run commands, the way
//! `direnv allow` works.
//!
//! A file that names commands (nxops.json's processes, later MCP server lists)
//! is only acted on once the user has allowed its exact content: the allowance
//! is the file's absolute path and the sha256 of its bytes, kept in
//! `<state base>/trust.json`, outside every workspace (a repository cannot
//! allow itself). A changed file needs a new allowance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::environment::Environment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    Allowed,
    /// Never allowed.
    NotAllowed,
    /// Allowed once, but the content has changed since.
    Changed,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    allowed: BTreeMap<PathBuf, Allowance>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Allowance {
    sha256: String,
    allowed_at: u64,
}

fn store_path(env: &Environment) -> Option<PathBuf> {
    Some(crate::config::state_base(env)?.join("trust.json"))
}

fn load(env: &Environment) -> Store {
    store_path(env)
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn save(env: &Environment, store: &Store) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = store_path(env).ok_or_else(|| std::io::Error::other("no HOME and no NXOPS_STATE_DIR"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
    std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(store).expect("trust store serializes"))?;
    std::fs::rename(&temp, &path)
}

/// Whether `file` with content hash `sha256` is allowed.
pub fn check(env: &Environment, file: &Path, sha256: &str) -> Trust {
    match load(env).allowed.get(file) {
        Some(a) if a.sha256 == sha256 => Trust::Allowed,
        Some(_) => Trust::Changed,
        None => Trust::NotAllowed,
    }
}

/// Allows `file` with exactly this content hash.
pub fn allow(env: &Environment, file: &Path, sha256: &str) -> std::io::Result<()> {
    let mut store = load(env);
    let allowance = Allowance { sha256: sha256.to_string(), allowed_at: crate::clock::now_ms() };
    store.allowed.insert(file.to_path_buf(), allowance);
    save(env, &store)
}

/// Withdraws any allowance of `file`; true when there was one.
pub fn revoke(env: &Environment, file: &Path) -> std::io::Result<bool> {
    let mut store = load(env);
    let had = store.allowed.remove(file).is_some();
    if had {
        save(env, &store)?;
    }
    Ok(had)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowances_follow_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let env = Environment::from_pairs([("NXOPS_STATE_DIR", state.to_str().unwrap())]);
        let file = Path::new("/ws/nxops.json");
        assert_eq!(check(&env, file, "aa"), Trust::NotAllowed);
        allow(&env, file, "aa").unwrap();
        assert_eq!(check(&env, file, "aa"), Trust::Allowed);
        assert_eq!(check(&env, file, "bb"), Trust::Changed);
        assert_eq!(check(&env, Path::new("/other/nxops.json"), "aa"), Trust::NotAllowed);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(state.join("trust.json")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(revoke(&env, file).unwrap());
        assert!(!revoke(&env, file).unwrap());
        assert_eq!(check(&env, file, "aa"), Trust::NotAllowed);
    }
}
