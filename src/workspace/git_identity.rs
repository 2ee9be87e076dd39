//! The workspace identity Nx 24 derives from git, byte for byte.
//!
//! Mirrors `generateWorkspaceId`/`deriveRepoKey` in `nx/src/utils/workspace-id.js`
//! and the helpers in `git-utils.js` of nx 24.0.x: the remote is read from the
//! repository's own config file when that file can answer on its own, else from
//! `git remote -v`; without a remote, the sorted-first root commit stands in,
//! unless the clone is shallow. The key is
//! `sha256("<domain>/<slug>#<workspace path relative to the git root>")`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// What the identity was derived from, for `env info`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum IdentitySource {
    NxCloud,
    Remote { identity: String },
    FirstCommit { sha: String },
}

/// Nx's repo key for `root`, or `None` when the repository has no identity.
pub fn repo_key(root: &Path) -> Option<(String, IdentitySource)> {
    let (identity, source) = repo_identity(root)?;
    let relative = git_root_relative_path(root).unwrap_or_default();
    let key = hex::encode(Sha256::digest(format!("{identity}#{relative}").as_bytes()));
    Some((key, source))
}

/// The remote's `domain/slug` in lower case, else the first commit.
fn repo_identity(root: &Path) -> Option<(String, IdentitySource)> {
    if let Some(remote) = remote_info(root) {
        let identity = format!("{}/{}", remote.domain, remote.slug).to_lowercase();
        let identity = identity.trim_end_matches('/').to_string();
        return Some((identity.clone(), IdentitySource::Remote { identity }));
    }
    if is_shallow(root) {
        return None;
    }
    let sha = first_commit(root)?;
    Some((sha.clone(), IdentitySource::FirstCommit { sha }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInfo {
    pub domain: String,
    pub slug: String,
}

/// `parseVcsRemoteUrl`: ssh, https (with or without user), and ssh:// forms.
pub fn parse_remote_url(url: &str) -> Option<RemoteInfo> {
    let url = url.trim();
    let split_slug = |path: &str| -> Option<String> {
        let (owner, repo) = path.split_once('/')?;
        if owner.is_empty() || repo.is_empty() {
            return None;
        }
        let repo = match repo.strip_suffix(".git") {
            Some(stripped) if !stripped.is_empty() => stripped,
            _ => repo,
        };
        Some(format!("{owner}/{repo}"))
    };
    if let Some(rest) = url.strip_prefix("git@") {
        let (domain, path) = rest.split_once(':')?;
        if domain.is_empty() {
            return None;
        }
        return Some(RemoteInfo { domain: domain.into(), slug: split_slug(path)? });
    }
    for scheme in ["https://", "http://"] {
        let Some(rest) = url.strip_prefix(scheme) else { continue };
        // `^https?://[^@]+@([^/]+)/...`: everything up to the first '@' is credentials.
        if let Some(at) = rest.find('@').filter(|&at| at > 0)
            && let Some((domain, path)) = rest[at + 1..].split_once('/')
            && !domain.is_empty()
            && let Some(slug) = split_slug(path)
        {
            return Some(RemoteInfo { domain: domain.into(), slug });
        }
        // `^https?://([^@/]+)/...`
        let (domain, path) = rest.split_once('/')?;
        if domain.is_empty() || domain.contains('@') {
            return None;
        }
        return Some(RemoteInfo { domain: domain.into(), slug: split_slug(path)? });
    }
    if let Some(rest) = url.strip_prefix("ssh://") {
        let at = rest.find('@')?;
        if at == 0 {
            return None;
        }
        let after = &rest[at + 1..];
        let host_end = after.find([':', '/'])?;
        let domain = &after[..host_end];
        let mut path = &after[host_end..];
        if let Some(port_and_path) = path.strip_prefix(':') {
            let digits = port_and_path.find(|c: char| !c.is_ascii_digit()).unwrap_or(port_and_path.len());
            if digits == 0 {
                return None;
            }
            path = &port_and_path[digits..];
        }
        let path = path.strip_prefix('/')?;
        if domain.is_empty() {
            return None;
        }
        return Some(RemoteInfo { domain: domain.into(), slug: split_slug(path)? });
    }
    None
}

fn remote_info(root: &Path) -> Option<RemoteInfo> {
    if let Some(answer) = remote_from_config(root) {
        return answer;
    }
    remote_from_git(root)
}

/// `Some(answer)` when the config file settles it, `None` when git must be asked.
fn remote_from_config(root: &Path) -> Option<Option<RemoteInfo>> {
    let located = locate_git_dir(root)?;
    let contents = read_owned_file(&located.common_dir.join("config"))?;
    let remotes = parse_config_remotes(&contents)?;
    let parsed: Vec<(String, RemoteInfo)> =
        remotes.into_iter().filter_map(|(name, url)| Some((name, parse_remote_url(&url)?))).collect();
    let chosen = select_remote(&parsed);
    // Nx falls through to `git remote -v` when the file names no usable remote.
    chosen.map(Some)
}

fn remote_from_git(root: &Path) -> Option<RemoteInfo> {
    let out = git(root, &["remote", "-v"])?;
    let mut found: Vec<(String, RemoteInfo)> = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(url), Some(kind), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let word = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !word || !(kind == "(fetch)" || kind == "(push)") {
            continue;
        }
        if let Some(info) = parse_remote_url(url)
            && !found.iter().any(|(n, _)| n == name)
        {
            found.push((name.to_string(), info));
        }
    }
    select_remote(&found)
}

/// `origin`, then `upstream`, then `base`, then the first one found.
fn select_remote(found: &[(String, RemoteInfo)]) -> Option<RemoteInfo> {
    ["origin", "upstream", "base"]
        .iter()
        .find_map(|want| found.iter().find(|(n, _)| n == want))
        .or(found.first())
        .map(|(_, info)| info.clone())
}

/// Remote name -> first url, or `None` when the file uses something this parser
/// does not resolve (includes, url rewrites, escapes), exactly where Nx gives up too.
pub fn parse_config_remotes(contents: &str) -> Option<Vec<(String, String)>> {
    let mut remotes: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for raw in contents.split('\n') {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(inner) = line.strip_prefix('[') {
            let section = inner.find(']').map_or(inner, |close| &inner[..close]).trim();
            let lower = section.to_ascii_lowercase();
            let word_at = |word: &str| lower.starts_with(word) && starts_with_word(&lower, word);
            if word_at("include") || word_at("includeif") {
                return None;
            }
            let after_url = lower.strip_prefix("url").unwrap_or("");
            if after_url.starts_with(char::is_whitespace) && after_url.trim_start().starts_with('"') {
                return None;
            }
            current = remote_section_name(section);
            continue;
        }
        let Some(name) = &current else { continue };
        let Some(eq) = line.find('=') else { continue };
        if !line[..eq].trim().eq_ignore_ascii_case("url") {
            continue;
        }
        let raw_value = line[eq + 1..].trim();
        if raw_value.contains(['#', ';', '\\']) {
            return None;
        }
        let value = match raw_value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) => inner,
            None => raw_value,
        };
        if value.contains('"') {
            return None;
        }
        if !remotes.contains_key(name) {
            remotes.insert(name.clone(), value.to_string());
            order.push(name.clone());
        }
    }
    Some(
        order
            .into_iter()
            .map(|n| {
                let url = remotes[&n].clone();
                (n, url)
            })
            .collect(),
    )
}

/// `/^include(If)?\b/i`: the word must end at a non-word character.
fn starts_with_word(lower: &str, word: &str) -> bool {
    lower[word.len()..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
}

/// `/^remote\s+"(.*)"$/i`
fn remote_section_name(section: &str) -> Option<String> {
    if section.len() < 6 || !section[..6].eq_ignore_ascii_case("remote") {
        return None;
    }
    let rest = &section[6..];
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let quoted = rest.trim_start();
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    Some(inner.to_string())
}

#[derive(Debug)]
struct LocatedGit {
    git_root: PathBuf,
    common_dir: PathBuf,
}

/// `locateGitDir`: walk up for `.git`, a directory or a `gitdir:` file.
fn locate_git_dir(start: &Path) -> Option<LocatedGit> {
    for dir in start.ancestors() {
        match git_dir_at(dir) {
            Lookup::Found(found) => return Some(found),
            Lookup::Refused => return None,
            Lookup::Absent => {}
        }
    }
    None
}

enum Lookup {
    Found(LocatedGit),
    Refused,
    Absent,
}

fn git_dir_at(dir: &Path) -> Lookup {
    let dot_git = dir.join(".git");
    let Ok(meta) = std::fs::metadata(&dot_git) else { return Lookup::Absent };
    let uid = rustix::process::getuid().as_raw();
    if meta.is_dir() {
        if !dot_git.join("HEAD").exists() || !dot_git.join("objects").exists() {
            return Lookup::Refused;
        }
        return match std::fs::symlink_metadata(&dot_git) {
            Ok(m) if m.is_dir() && m.uid() == uid => {
                Lookup::Found(LocatedGit { git_root: dir.into(), common_dir: dot_git })
            }
            _ => Lookup::Refused,
        };
    }
    if meta.is_file() {
        let Some(text) = read_owned_file(&dot_git) else { return Lookup::Refused };
        let Some(pointer) = text.lines().find_map(|l| l.strip_prefix("gitdir:")) else { return Lookup::Refused };
        let git_dir = normalize(&dir.join(pointer.trim()));
        let common_dir = match read_owned_file(&git_dir.join("commondir")).map(|s| s.trim().to_string()) {
            Some(shared) if !shared.is_empty() => normalize(&git_dir.join(shared)),
            _ => git_dir,
        };
        return match std::fs::symlink_metadata(&common_dir) {
            Ok(m) if m.is_dir() && m.uid() == uid => Lookup::Found(LocatedGit { git_root: dir.into(), common_dir }),
            _ => Lookup::Refused,
        };
    }
    Lookup::Absent
}

/// A regular file we own, read without following a symlink at the last component.
fn read_owned_file(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.uid() != rustix::process::getuid().as_raw() {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// `getGitRootRelativePath`: posix path of `root` below the git root, '' at the root.
fn git_root_relative_path(root: &Path) -> Option<String> {
    let git_root = match locate_git_dir(root) {
        Some(found) => found.git_root,
        None => PathBuf::from(git(root, &["rev-parse", "--show-toplevel"])?.trim()),
    };
    let relative = relative_path(&git_root, root);
    Some(relative.to_string_lossy().into_owned())
}

fn is_shallow(root: &Path) -> bool {
    git(root, &["rev-parse", "--is-shallow-repository"]).is_some_and(|s| s.trim() == "true")
}

fn first_commit(root: &Path) -> Option<String> {
    let out = git(root, &["rev-list", "--max-parents=0", "HEAD"])?;
    let mut roots: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    roots.sort();
    roots.first().map(|s| s.to_string())
}

/// Runs git in `dir`; `None` when git fails or is missing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = crate::reaper::output(Command::new("git").args(args).current_dir(dir).stdin(Stdio::null())).ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lexical normalization, as Node's `path.resolve`/`path.join` do it.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("/");
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Node's `path.relative(from, to)` for absolute, normalized paths.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let (from, to) = (normalize(from), normalize(to));
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part.as_os_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(domain: &str, slug: &str) -> Option<RemoteInfo> {
        Some(RemoteInfo { domain: domain.into(), slug: slug.into() })
    }

    #[test]
    fn remote_urls_parse_like_nx() {
        assert_eq!(parse_remote_url("git@github.com:nrwl/nx.git"), info("github.com", "nrwl/nx"));
        assert_eq!(parse_remote_url("https://github.com/nrwl/nx.git"), info("github.com", "nrwl/nx"));
        assert_eq!(parse_remote_url("https://github.com/nrwl/nx"), info("github.com", "nrwl/nx"));
        assert_eq!(parse_remote_url("https://user:tok@github.com/nrwl/nx.git"), info("github.com", "nrwl/nx"));
        assert_eq!(parse_remote_url("ssh://git@host.org:2222/team/repo.git"), info("host.org", "team/repo"));
        assert_eq!(parse_remote_url("ssh://git@host.org/team/repo"), info("host.org", "team/repo"));
        assert_eq!(parse_remote_url("https://gitlab.com/group/sub/repo.git"), info("gitlab.com", "group/sub/repo"));
        assert_eq!(parse_remote_url("/srv/git/repo.git"), None);
        assert_eq!(parse_remote_url("file:///srv/repo"), None);
    }

    #[test]
    fn config_parsing_defers_to_git_where_nx_does() {
        let cfg = "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = git@a.com:x/y.git\n[remote \"origin\"]\n\turl = \"https://b.com/p/q\"\n\turl = https://c.com/z/z\n";
        assert_eq!(
            parse_config_remotes(cfg).unwrap(),
            vec![
                ("upstream".to_string(), "git@a.com:x/y.git".to_string()),
                ("origin".to_string(), "https://b.com/p/q".to_string())
            ]
        );
        assert_eq!(parse_config_remotes("[include]\n path = x\n"), None);
        assert_eq!(parse_config_remotes("[includeIf \"gitdir:x\"]\n path = y\n"), None);
        assert_eq!(parse_config_remotes("[url \"git@x:\"]\n insteadOf = https://x/\n"), None);
        assert_eq!(parse_config_remotes("[remote \"o\"]\n url = a#b\n"), None);
        assert_eq!(parse_config_remotes("[core]\n"), Some(vec![]));
    }

    #[test]
    fn origin_wins_over_first() {
        let found =
            vec![("fork".to_string(), info("a", "b/c").unwrap()), ("origin".to_string(), info("d", "e/f").unwrap())];
        assert_eq!(select_remote(&found), info("d", "e/f"));
    }

    #[test]
    fn paths_relative_like_node() {
        assert_eq!(relative_path(Path::new("/a/b"), Path::new("/a/b/c/d")), PathBuf::from("c/d"));
        assert_eq!(relative_path(Path::new("/a/b"), Path::new("/a/b")), PathBuf::from(""));
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
    }
}
