//! `nxops.json` at the workspace root: what nxops runs for the workspace.
//!
//! ```jsonc
//! {
//!   "processes": {
//!     "api": { "command": "node", "args": ["server.js"], "health": { "port": 3000 } }
//!   }
//! }
//! ```
//!
//! Settings stay in nx.json's plugin options; this file holds only commands,
//! because commands from a repository run only once the user has allowed this
//! exact file content (see `trust`). The file is read once into bytes: the hash
//! that is checked is the hash of what is used.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::input_error::ConfigError;

pub const FILE_NAME: &str = "nxops.json";
const KNOWN_KEYS: &[&str] = &["$schema", "processes", "mcp"];

/// The file as read: its bytes' hash and its process entries (not yet validated).
#[derive(Debug, Clone)]
pub struct NxopsJson {
    pub path: PathBuf,
    pub sha256: String,
    /// `(name, spec JSON)`, in file order.
    pub processes: Vec<(String, Value)>,
    /// The `mcp` section (pool settings), read by `mcp::config::pool_settings`.
    pub mcp: Option<Value>,
}

impl NxopsJson {
    /// `Ok(None)` when the workspace has no nxops.json.
    pub fn read(root: &Path) -> Result<Option<NxopsJson>, ConfigError> {
        let path = root.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ConfigError::file(&path, format!("cannot read the file: {e}"))),
        };
        NxopsJson::parse(&path, &bytes).map(Some)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<NxopsJson, ConfigError> {
        use sha2::Digest;
        let sha256 = hex::encode(sha2::Sha256::digest(bytes));
        let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::file(path, format!("is not UTF-8: {e}")))?;
        let value: Value = jsonc_parser::parse_to_serde_value(text, &jsonc_parser::ParseOptions::default())
            .map_err(|e| ConfigError::file(path, format!("is not valid JSON: {e}")))?;
        let Value::Object(top) = value else {
            return Err(ConfigError::file(path, "must hold a JSON object".into()));
        };
        for key in top.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                let hint = crate::config::suggest(key, KNOWN_KEYS.iter().copied())
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                return Err(ConfigError::file(path, format!("unknown key {key:?}{hint}")));
            }
        }
        let processes = match top.get("processes") {
            None => Vec::new(),
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(_) => return Err(ConfigError::file(path, "processes: must be an object of name to spec".into())),
        };
        Ok(NxopsJson { path: path.to_path_buf(), sha256, processes, mcp: top.get("mcp").cloned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_are_allowed() {
        let text = b"{ // ops\n \"processes\": { \"api\": {\"command\": \"node\"}, }, }";
        let file = NxopsJson::parse(Path::new("/ws/nxops.json"), text).unwrap();
        assert_eq!(file.processes.len(), 1);
        assert_eq!(file.processes[0].0, "api");
        assert_eq!(file.sha256.len(), 64);
    }

    #[test]
    fn mistakes_name_the_file() {
        let err = NxopsJson::parse(Path::new("/ws/nxops.json"), b"{\"proceses\": {}}").unwrap_err();
        assert_eq!(err.to_string(), "/ws/nxops.json: unknown key \"proceses\"; did you mean \"processes\"?");
        let err = NxopsJson::parse(Path::new("/ws/nxops.json"), b"{\"processes\": [1]}").unwrap_err();
        assert!(err.to_string().contains("processes: must be an object"), "{err}");
        let err = NxopsJson::parse(Path::new("/ws/nxops.json"), b"{\"processes\": ").unwrap_err();
        assert!(err.to_string().starts_with("/ws/nxops.json: is not valid JSON"), "{err}");
    }
}
