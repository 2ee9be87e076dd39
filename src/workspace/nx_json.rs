//! Reading `nx.json` the way Nx reads it: JSON with comments and trailing commas.
//!
//! Only the handful of fields nxops needs are looked at; everything else in the
//! file is Nx's business. `extends` is not followed (see ARCHITECTURE.md,
//! "Known gaps").

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::ConfigError;

/// The package name users register the nxops plugin under.
pub const PLUGIN_NAME: &str = "@nxops/nx-plugin";

#[derive(Debug, Clone)]
pub struct NxJson {
    pub path: PathBuf,
    value: Value,
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
    pub fn read(path: &Path) -> Result<NxJson, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::file(path, format!("cannot read the file: {e}")))?;
        NxJson::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<NxJson, ConfigError> {
        let options = jsonc_parser::ParseOptions::default();
        let value: Value = jsonc_parser::parse_to_serde_value(text, &options)
            .map_err(|e| ConfigError::file(path, format!("is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ConfigError::file(path, "must hold a JSON object".to_string()));
        }
        Ok(NxJson { path: path.to_path_buf(), value })
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
}
