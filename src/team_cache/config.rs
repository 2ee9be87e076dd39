//! The server's own configuration file (JSON with comments), read once at start:
//!
//! ```jsonc
//! {
//!   "listen": "127.0.0.1:4300",              // optional; --listen wins
//!   "store": { "folder": "/srv/nx-cache" },   // relative to this file's folder, or a bucket:
//!   // "store": { "s3": { "endpoint": "http://127.0.0.1:3900", "bucket": "nx-cache",
//!   //   "region": "garage",                    // optional, default us-east-1
//!   //   "accessKeyId": "GK...", "secretAccessKey": "..." } },  // or NXOPS_S3_ACCESS_KEY_ID and
//!   //                                         // NXOPS_S3_SECRET_ACCESS_KEY, which win
//!   "index": "nx-cache.index.db",             // optional: the policies' index (see `policy`)
//!   "maxArtifactSize": "2GB",                 // optional, default 2GB
//!   "clientTimeout": "30s",                   // optional: an upload silent this long gets 408, a
//!   //                                         // client reading nothing this long is cut
//!   "tls": { "cert": "cert.pem", "key": "key.pem" },  // optional: HTTPS (PEM, relative to this file)
//!   "maxSize": "5GB", "maxAge": "7d",         // optional: the local cache's defaults
//!   "evictInterval": "1m",                    // optional: how often the policies run
//!   "tokens": [
//!     { "name": "ci",  "sha256": "<64 hex digits>", "access": "readWrite" },
//!     { "name": "dev", "sha256": "<64 hex digits>", "access": "read", "prefix": "team-a/" }
//!   ]
//! }
//! ```
//!
//! Every mistake is a [`ConfigError`] naming the file and the key. Tokens are never in the file,
//! only their sha256 digests (`nxops cache token` prints both).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::policy::Rules;
use super::tokens::{Access, Token, Tokens};
use crate::config::units::{parse_duration, parse_size};
use crate::input_error::ConfigError;

/// Where `listen` defaults to: loopback, so that a server is never exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4300";
pub const DEFAULT_MAX_ARTIFACT_SIZE: u64 = 2 << 30;
/// How long an upload may send nothing before it is refused (408).
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub file: PathBuf,
    pub listen: SocketAddr,
    pub store: StoreConfig,
    /// The policies' index (see `policy`).
    pub index: PathBuf,
    pub max_artifact_size: u64,
    pub client_timeout: Duration,
    pub tls: Option<TlsFiles>,
    pub rules: Rules,
    pub tokens: Tokens,
}

/// PEM files for HTTPS: the certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A folder on this machine or a shared file system.
    Folder(PathBuf),
    /// A bucket of an S3-compatible service.
    S3(S3Config),
}

/// A bucket, where it is served and the credentials to use it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, in any log.
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The region signed for when the file names none (S3's own default; Garage's is its `s3_region`).
pub const DEFAULT_REGION: &str = "us-east-1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    listen: Option<String>,
    store: RawStore,
    index: Option<PathBuf>,
    max_artifact_size: Option<String>,
    client_timeout: Option<String>,
    tls: Option<TlsFiles>,
    max_size: Option<String>,
    max_age: Option<String>,
    evict_interval: Option<String>,
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum RawStore {
    Folder(PathBuf),
    S3(RawS3),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawS3 {
    endpoint: String,
    bucket: String,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawToken {
    name: String,
    sha256: String,
    access: Access,
    #[serde(default)]
    prefix: String,
}

impl ServeConfig {
    /// Reads `file`; `listen` (from `--listen`) replaces the file's address.
    pub fn load(file: &Path, listen: Option<&str>) -> Result<ServeConfig, ConfigError> {
        Self::load_with(file, listen, &|name| std::env::var(name).ok())
    }

    /// [`ServeConfig::load`], with the environment read through `env`.
    pub fn load_with(
        file: &Path,
        listen: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ServeConfig, ConfigError> {
        let text =
            std::fs::read_to_string(file).map_err(|e| ConfigError::file(file, format!("cannot be read: {e}")))?;
        let value = jsonc_parser::parse_to_serde_value(&text, &jsonc_parser::ParseOptions::default())
            .map_err(|e| ConfigError::file(file, format!("is not valid JSON: {e}")))?;
        let raw: RawConfig = serde_json::from_value(value).map_err(|e| ConfigError::file(file, e.to_string()))?;
        let at = |key: &str, problem: String| ConfigError { location: format!("{}: {key}", file.display()), problem };
        let listen_text = listen.or(raw.listen.as_deref()).unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text
            .parse()
            .map_err(|_| at("listen", format!("{listen_text:?} is not an address such as {DEFAULT_LISTEN}")))?;
        let max_artifact_size = match &raw.max_artifact_size {
            Some(text) => parse_size(text).map_err(|e| at("maxArtifactSize", format!("{text:?}: {e}")))?,
            None => DEFAULT_MAX_ARTIFACT_SIZE,
        };
        let client_timeout = match &raw.client_timeout {
            Some(text) => parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| at("clientTimeout", format!("{text:?} is not a duration above zero such as 30s")))?,
            None => DEFAULT_CLIENT_TIMEOUT,
        };
        let rules = rules(&raw, &at)?;
        let base = file.parent().unwrap_or(Path::new("/"));
        let (store, index) = match raw.store {
            RawStore::Folder(folder) => {
                let root = base.join(folder);
                let index = root.join(".index.db");
                (StoreConfig::Folder(root), index)
            }
            RawStore::S3(s3) => {
                let s3 = s3_config(s3, env, &at)?;
                let index = base.join(format!("{}.index.db", s3.bucket));
                (StoreConfig::S3(s3), index)
            }
        };
        let index = raw.index.map_or(index, |file| base.join(file));
        let tls = raw.tls.map(|tls| TlsFiles { cert: base.join(tls.cert), key: base.join(tls.key) });
        let tokens =
            raw.tokens.into_iter().enumerate().map(|(i, t)| token(t).map_err(|p| at(&format!("tokens[{i}]"), p)));
        let tokens = Tokens(tokens.collect::<Result<_, _>>()?);
        if tokens.0.is_empty() {
            return Err(at(
                "tokens",
                "is empty: no client could read or write; add one made by `nxops cache token`".into(),
            ));
        }
        Ok(ServeConfig {
            file: file.to_path_buf(),
            listen,
            store,
            index,
            max_artifact_size,
            client_timeout,
            tls,
            rules,
            tokens,
        })
    }
}

/// The bucket's settings; the credentials come from `NXOPS_S3_ACCESS_KEY_ID` and
/// `NXOPS_S3_SECRET_ACCESS_KEY` when set (so that they need not be in the file), else the file.
fn s3_config(
    raw: RawS3,
    env: &dyn Fn(&str) -> Option<String>,
    at: &impl Fn(&str, String) -> ConfigError,
) -> Result<S3Config, ConfigError> {
    let url = raw.endpoint.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.split("://").nth(1).is_none_or(str::is_empty)
    {
        return Err(at("store.s3.endpoint", format!("{:?} is not a URL such as http://127.0.0.1:3900", raw.endpoint)));
    }
    // S3's rules for bucket names: 3 to 63 lowercase letters, digits, '.' and '-'.
    let bucket_ok = (3..=63).contains(&raw.bucket.len())
        && raw.bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !bucket_ok {
        return Err(at(
            "store.s3.bucket",
            format!("{:?} is not a bucket name (3 to 63 of a-z, 0-9, '.', '-')", raw.bucket),
        ));
    }
    let credential = |key: &str, variable: &str, from_file: Option<String>| {
        env(variable).filter(|v| !v.is_empty()).or(from_file).filter(|v| !v.is_empty()).ok_or_else(|| {
            at(&format!("store.s3.{key}"), format!("is missing: set it here or in the environment as {variable}"))
        })
    };
    Ok(S3Config {
        endpoint: url.to_string(),
        bucket: raw.bucket,
        region: raw.region.unwrap_or_else(|| DEFAULT_REGION.into()),
        access_key_id: credential("accessKeyId", "NXOPS_S3_ACCESS_KEY_ID", raw.access_key_id)?,
        secret_access_key: credential("secretAccessKey", "NXOPS_S3_SECRET_ACCESS_KEY", raw.secret_access_key)?,
    })
}

/// The policies: `maxSize` and `maxAge` default to the local cache's defaults (`cache.maxSize`,
/// `cache.maxAge`), `evictInterval` to one minute.
fn rules(raw: &RawConfig, at: &impl Fn(&str, String) -> ConfigError) -> Result<Rules, ConfigError> {
    let default_of = |key: &str| crate::config::SETTINGS.iter().find(|s| s.key == key).map_or("", |s| s.default);
    let size_text = raw.max_size.clone().unwrap_or_else(|| default_of("cache.maxSize").into());
    let max_size = parse_size(&size_text).map_err(|e| at("maxSize", format!("{size_text:?}: {e}")))?;
    let duration = |key: &str, text: &str| {
        parse_duration(text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| at(key, format!("{text:?} is not a duration above zero such as 7d")))
    };
    let max_age = duration("maxAge", raw.max_age.as_deref().unwrap_or(default_of("cache.maxAge")))?;
    let interval = duration("evictInterval", raw.evict_interval.as_deref().unwrap_or("1m"))?;
    Ok(Rules { max_size, max_age, interval })
}

fn token(raw: RawToken) -> Result<Token, String> {
    let digest = hex::decode(&raw.sha256).ok().and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
    let Some(sha256) = digest else {
        return Err(format!("sha256 of {:?} must be 64 hex digits (the token's digest, not the token)", raw.name));
    };
    check_prefix(&raw.prefix).map_err(|p| format!("prefix {:?} {p}", raw.prefix))?;
    Ok(Token { name: raw.name, sha256, access: raw.access, prefix: raw.prefix })
}

/// A prefix is empty or folder-like segments of `[A-Za-z0-9._-]`, each ending in `/`, none starting
/// with `.` (so never `.`, `..` or the store's own `.incoming` and `.damaged`): it names a place
/// inside the store for artifacts, nowhere else.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    let Some(body) = prefix.strip_suffix('/') else { return Err("must end with /".into()) };
    let sound = |segment: &str| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if body.split('/').all(sound) {
        Ok(())
    } else {
        Err("must be segments of letters, digits, '.', '_' or '-', none starting with '.'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ServeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache-serve.json");
        std::fs::write(&file, text).unwrap();
        ServeConfig::load(&file, None)
    }

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let text = format!(
            r#"{{ "store": {{"folder": "store"}}, "tokens": [{{"name": "ci", "sha256": "{DIGEST}", "access": "readWrite"}}] }}"#
        );
        let config = load(&text).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.max_artifact_size, DEFAULT_MAX_ARTIFACT_SIZE);
        assert!(matches!(&config.store, StoreConfig::Folder(p) if p.ends_with("store") && p.is_absolute()));
        assert_eq!(config.tokens.check("test").map(|(_, t)| t.name.as_str()), Some("ci"));
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            (r#"{"store": {"folder": "s"}, "tokens": []}"#.to_string(), "tokens: is empty"),
            (
                r#"{"store": {"folder": "s"}, "tokens": [{"name": "ci", "sha256": "abc", "access": "read"}]}"#
                    .to_string(),
                "tokens[0]: sha256 of \"ci\"",
            ),
            (
                format!(
                    r#"{{"store": {{"folder": "s"}}, "tokens": [{{"name": "ci", "sha256": "{DIGEST}", "access": "read", "prefix": "../x/"}}]}}"#
                ),
                "prefix \"../x/\" must be segments",
            ),
            (
                r#"{"listen": "everywhere", "store": {"folder": "s"}, "tokens": []}"#.to_string(),
                "listen: \"everywhere\" is not an address",
            ),
            (r#"{"store": {"folder": "s"}, "tokens": [], "colour": 1}"#.to_string(), "unknown field `colour`"),
            (
                r#"{"clientTimeout": "0s", "store": {"folder": "s"}, "tokens": []}"#.to_string(),
                "clientTimeout: \"0s\" is not",
            ),
        ];
        for (text, expected) in cases {
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }

    #[test]
    fn prefixes_stay_inside_the_store() {
        for good in ["", "team-a/", "ci/main/", "v1.2/"] {
            assert!(check_prefix(good).is_ok(), "{good}");
        }
        for bad in ["team-a", "/abs/", "a//", "./", "../", "a b/", ".incoming/", "x/.damaged/"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }
}
