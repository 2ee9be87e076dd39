//! Reading `nx.json` the way Nx reads it: JSON with comments and trailing commas.
//!
//! Only the handful of fields nxops needs are looked at; everything else in the
//! file is Nx's business. `extends` is followed as Nx 24's `readNxJson` does:
//! the file it names (resolved like `require.resolve` from the workspace's
//! `.nx/installation`, then its root) is read, and its top-level keys fill in
//! those nx.json lacks; one level only (the base's own `extends` is not
//! followed, and nx.json's wins anyway).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::input_error::ConfigError;

/// The package name users register the nxops plugin under.
pub const PLUGIN_NAME: &str = "@nxops/nx-plugin";

#[derive(Debug, Clone)]
pub struct NxJson {
    pub path: PathBuf,
    value: Value,
    /// Top-level keys taken from the file `extends` names, with that file.
    inherited: BTreeMap<String, PathBuf>,
}

/// The nxops entry of nx.json's `plugins` array.
#[derive(Debug)]
pub struct PluginEntry<'a> {
    /// Where the options sit, for messages: `plugins[2].options`.
    pub pointer: String,
    pub options: Option<&'a Value>,
}

impl NxJson {
    /// Reads and parses `path`; a syntax error names the file, line and column.
    /// Reads and parses `path`, and the file its `extends` names.
    pub fn read(path: &Path) -> Result<NxJson, ConfigError> {
        let mut nx = NxJson::parse(path, &read_text(path)?)?;
        let Some(spec) = nx.value.get("extends").cloned() else { return Ok(nx) };
        let spec = spec.as_str().ok_or_else(|| ConfigError::file(path, "extends: must be a string".into()))?;
        let root = path.parent().unwrap_or(Path::new("/"));
        let paths = [root.join(".nx/installation"), root.to_path_buf()];
        let base_path = super::node_resolve::resolve(spec, &paths).map_err(|problem| {
            ConfigError::file(path, format!("extends: {problem} (Nx cannot read this configuration either)"))
        })?;
        let base = NxJson::parse(&base_path, &read_text(&base_path)?)?;
        let (Value::Object(ours), Value::Object(theirs)) = (&mut nx.value, base.value) else { return Ok(nx) };
        for (key, value) in theirs {
            if !ours.contains_key(&key) {
                nx.inherited.insert(key.clone(), base_path.clone());
                ours.insert(key, value);
            }
        }
        Ok(nx)
    }

    /// The file a top-level key was read from: nx.json, or the file it extends.
    pub fn file_of(&self, key: &str) -> &Path {
        self.inherited.get(key).map_or(&self.path, PathBuf::as_path)
    }

    pub fn parse(path: &Path, text: &str) -> Result<NxJson, ConfigError> {
        let options = jsonc_parser::ParseOptions::default();
        let value: Value = jsonc_parser::parse_to_serde_value(text, &options)
            .map_err(|e| ConfigError::file(path, format!("is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ConfigError::file(path, "must hold a JSON object".to_string()));
        }
        Ok(NxJson { path: path.to_path_buf(), value, inherited: BTreeMap::new() })
    }

    /// `cacheDirectory`, else `tasksRunnerOptions.default.options.cacheDirectory`,
    /// when it is a non-empty string (Nx tests it for truthiness).
    pub fn cache_directory(&self) -> Option<&str> {
        let direct = self.value.get("cacheDirectory");
        let legacy = self.value.pointer("/tasksRunnerOptions/default/options/cacheDirectory");
        let chosen = match direct {
            Some(Value::Null) | None => legacy,
            Some(other) => Some(other),
        };
        chosen.and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// `nxCloudId`, else `nxCloudAccessToken`: Nx's workspace identity when present.
    pub fn nx_cloud_identity(&self) -> Option<&str> {
        ["nxCloudId", "nxCloudAccessToken"]
            .iter()
            .find_map(|k| self.value.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
    }

    /// Nx's own `maxCacheSize`, as written, for reporting.
    pub fn max_cache_size(&self) -> Option<String> {
        match self.value.get("maxCacheSize")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The first `plugins` entry naming the nxops plugin, as a string or an object.
    pub fn nxops_plugin(&self) -> Option<PluginEntry<'_>> {
        let plugins = self.value.get("plugins")?.as_array()?;
        plugins.iter().enumerate().find_map(|(i, entry)| match entry {
            Value::String(name) if name == PLUGIN_NAME => {
                Some(PluginEntry { pointer: format!("plugins[{i}]"), options: None })
            }
            Value::Object(map) if map.get("plugin").and_then(Value::as_str) == Some(PLUGIN_NAME) => {
                Some(PluginEntry { pointer: format!("plugins[{i}].options"), options: map.get("options") })
            }
            _ => None,
        })
    }
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, format!("cannot read the file: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> NxJson {
        NxJson::parse(Path::new("/ws/nx.json"), text).unwrap()
    }

    #[test]
    fn comments_and_trailing_commas_are_accepted() {
        let nx = parse("{ // hi\n \"cacheDirectory\": \"tmp/c\", }");
        assert_eq!(nx.cache_directory(), Some("tmp/c"));
    }

    #[test]
    fn legacy_cache_directory_and_empty_values() {
        let nx = parse(r#"{"tasksRunnerOptions":{"default":{"options":{"cacheDirectory":"x"}}}}"#);
        assert_eq!(nx.cache_directory(), Some("x"));
        assert_eq!(parse(r#"{"cacheDirectory":""}"#).cache_directory(), None);
        assert_eq!(parse(r#"{"nxCloudAccessToken":"tok"}"#).nx_cloud_identity(), Some("tok"));
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let err = NxJson::parse(Path::new("/ws/nx.json"), "{\n \"a\": }").unwrap_err().to_string();
        assert!(err.contains("/ws/nx.json"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn plugin_entry_is_found_in_both_forms() {
        let nx = parse(r#"{"plugins":["other",{"plugin":"@nxops/nx-plugin","options":{"cache":{}}}]}"#);
        let entry = nx.nxops_plugin().unwrap();
        assert_eq!(entry.pointer, "plugins[1].options");
        assert!(entry.options.is_some());
        let nx = parse(r#"{"plugins":["@nxops/nx-plugin"]}"#);
        assert!(nx.nxops_plugin().unwrap().options.is_none());
    }

    #[test]
    fn extends_fills_in_what_nx_json_lacks_one_level_deep() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("nx.base.json"),
            r#"{"cacheDirectory": "base-cache", "nxCloudId": "base-id", "extends": "./nope.json", // comment
               "plugins": [{"plugin": "@nxops/nx-plugin", "options": {}}]}"#,
        )
        .unwrap();
        std::fs::write(root.join("nx.json"), r#"{"extends": "./nx.base.json", "nxCloudId": "ours"}"#).unwrap();
        let nx = NxJson::read(&root.join("nx.json")).unwrap();
        assert_eq!(nx.cache_directory(), Some("base-cache"), "inherited");
        assert_eq!(nx.nx_cloud_identity(), Some("ours"), "nx.json wins");
        assert_eq!(nx.file_of("plugins"), root.join("nx.base.json"));
        assert_eq!(nx.file_of("nxCloudId"), root.join("nx.json"));
        std::fs::write(root.join("nx.json"), r#"{"extends": "./missing.json"}"#).unwrap();
        let err = NxJson::read(&root.join("nx.json")).unwrap_err().to_string();
        assert!(err.contains("nx.json: extends: ./missing.json is not a file"), "{err}");
    }
}
