//! nxops settings: the registry of every setting, and their resolution from
//! four layers, lowest first: built-in default, nx.json plugin options,
//! `NXOPS_*` environment variables, command-line flags.
//!
//! One name per setting, spelled three ways: `cache.maxSize` in the plugin
//! options (nested objects) and in `--set`, `NXOPS_CACHE_MAX_SIZE` in the
//! environment, and a command's own flag (`--max-size`) where it has one.
//! Unknown names are errors with a suggestion, never silently ignored.

pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::environment::Environment;
pub use crate::input_error::ConfigError;

/// What a setting holds, which decides how its text is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Size,
    Duration,
    Count,
}

/// One setting as the registry declares it.
#[derive(Debug)]
pub struct SettingDef {
    pub key: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every setting nxops knows. Later features add their sections here.
pub const SETTINGS: &[SettingDef] = &[
    SettingDef {
        key: "cache.maxSize",
        kind: Kind::Size,
        default: "5GB",
        doc: "evict least recently used entries above this size",
    },
    SettingDef {
        key: "cache.maxAge",
        kind: Kind::Duration,
        default: "7d",
        doc: "evict entries not used for this long",
    },
    SettingDef {
        key: "cache.autoCleanAt",
        kind: Kind::Count,
        default: "90",
        doc: "the owner sidecar cleans by itself above this percentage of cache.maxSize (0 turns it off)",
    },
    SettingDef {
        key: "cache.checkInterval",
        kind: Kind::Duration,
        default: "5m",
        doc: "how often the owner checks whether an automatic clean is due, and the least time between two",
    },
    SettingDef {
        key: "health.interval",
        kind: Kind::Duration,
        default: "30s",
        doc: "how often the health report is computed",
    },
    SettingDef {
        key: "processes.healthInterval",
        kind: Kind::Duration,
        default: "60s",
        doc: "how often supervised processes are probed and their memory and CPU sampled (a spec's health.interval wins)",
    },
    SettingDef {
        key: "processes.maxRestarts",
        kind: Kind::Count,
        default: "3",
        doc: "restarts allowed before a process is given up",
    },
    SettingDef {
        key: "processes.stopTimeout",
        kind: Kind::Duration,
        default: "5s",
        doc: "SIGTERM to SIGKILL grace period",
    },
    SettingDef {
        key: "sessions.timeout",
        kind: Kind::Duration,
        default: "60s",
        doc: "how long a client's session outlives its connection when the client vanished without closing it",
    },
    SettingDef {
        key: "sessions.namedTimeout",
        kind: Kind::Duration,
        default: "1h",
        doc: "how long a named session lives after its last request or heartbeat (unless opened with its own timeout)",
    },
];

/// `NXOPS_*` variables that are not settings but are still ours.
/// `NXOPS_SUPERVISED` marks the processes the supervisor starts (see `supervisor::tree`);
/// `NXOPS_SOCKET` is the sidecar's socket, which the Nx plugin exports to tasks; `NXOPS_CACHE_LISTEN`
/// is `cache serve --listen`; `NXOPS_S3_ACCESS_KEY_ID` and `NXOPS_S3_SECRET_ACCESS_KEY` are the
/// credentials of `cache serve`'s bucket (see `team_cache::config`).
pub const OTHER_ENV_VARS: &[&str] = &[
    "NXOPS_BIN",
    "NXOPS_LOG",
    "NXOPS_STATE_DIR",
    "NXOPS_FAULTS",
    "NXOPS_SUPERVISED",
    "NXOPS_SOCKET",
    "NXOPS_CACHE_LISTEN",
    "NXOPS_S3_ACCESS_KEY_ID",
    "NXOPS_S3_SECRET_ACCESS_KEY",
];

/// A parsed setting value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingValue {
    Size(u64),
    Duration(Duration),
    Count(u64),
}

/// Where a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Default,
    NxJson,
    Env,
    Flag,
}

/// A setting with its effective value and provenance.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub def: &'static SettingDef,
    pub value: SettingValue,
    pub source: Source,
    /// The exact place: `nx.json plugins[0].options.cache.maxSize`, `NXOPS_CACHE_MAX_SIZE`, `--max-size`.
    pub origin: String,
}

/// A value given on the command line: the setting key, its text and the flag spelling used.
#[derive(Debug, Clone)]
pub struct FlagValue {
    pub key: String,
    pub value: String,
    pub flag: String,
}

/// All settings, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    entries: Vec<Resolved>,
}

impl Settings {
    /// Resolves every setting from the layers, highest precedence last.
    pub fn resolve(
        plugin: Option<PluginOptions<'_>>,
        env: &Environment,
        flags: &[FlagValue],
    ) -> Result<Settings, ConfigError> {
        let mut entries: Vec<Resolved> = SETTINGS.iter().map(default_of).collect();
        if let Some(plugin) = plugin {
            for (key, raw, origin) in plugin_options(&plugin)? {
                set(&mut entries, &key, raw_text(&raw), Source::NxJson, origin, Some(plugin.file))?;
            }
        }
        for (name, value) in env.with_prefix("NXOPS_") {
            if value.is_empty() || OTHER_ENV_VARS.contains(&name) {
                continue;
            }
            let key = key_for_env(name).ok_or_else(|| unknown_env(name))?;
            set(&mut entries, key, Ok(value.to_string()), Source::Env, name.to_string(), None)?;
        }
        for flag in flags {
            set(&mut entries, &flag.key, Ok(flag.value.clone()), Source::Flag, flag.flag.clone(), None)?;
        }
        Ok(Settings { entries })
    }

    pub fn defaults() -> Settings {
        Settings { entries: SETTINGS.iter().map(default_of).collect() }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resolved> {
        self.entries.iter()
    }

    pub fn get(&self, key: &str) -> SettingValue {
        self.entries.iter().find(|e| e.def.key == key).map(|e| e.value).expect("setting keys come from SETTINGS")
    }

    pub fn cache_max_size(&self) -> u64 {
        self.size("cache.maxSize")
    }
    pub fn cache_max_age(&self) -> Duration {
        self.duration("cache.maxAge")
    }
    /// Percentage of `cache.maxSize` above which the owner cleans by itself (0 = never).
    pub fn auto_clean_at(&self) -> u64 {
        match self.get("cache.autoCleanAt") {
            SettingValue::Count(n) => n,
            other => unreachable!("cache.autoCleanAt is a count, got {other:?}"),
        }
    }
    pub fn cache_check_interval(&self) -> Duration {
        self.duration("cache.checkInterval")
    }
    pub fn health_interval(&self) -> Duration {
        self.duration("health.interval")
    }
    pub fn process_health_interval(&self) -> Duration {
        self.duration("processes.healthInterval")
    }
    pub fn max_restarts(&self) -> u64 {
        match self.get("processes.maxRestarts") {
            SettingValue::Count(n) => n,
            other => unreachable!("processes.maxRestarts is a count, got {other:?}"),
        }
    }
    pub fn stop_timeout(&self) -> Duration {
        self.duration("processes.stopTimeout")
    }

    pub fn session_timeout(&self) -> Duration {
        self.duration("sessions.timeout")
    }

    pub fn named_session_timeout(&self) -> Duration {
        self.duration("sessions.namedTimeout")
    }

    fn size(&self, key: &str) -> u64 {
        match self.get(key) {
            SettingValue::Size(n) => n,
            other => unreachable!("{key} is a size, got {other:?}"),
        }
    }
    fn duration(&self, key: &str) -> Duration {
        match self.get(key) {
            SettingValue::Duration(d) => d,
            other => unreachable!("{key} is a duration, got {other:?}"),
        }
    }
}

impl SettingDef {
    /// The environment variable that sets this: `cache.maxSize` -> `NXOPS_CACHE_MAX_SIZE`.
    pub fn env_name(&self) -> String {
        let mut name = String::from("NXOPS_");
        for c in self.key.chars() {
            match c {
                '.' => name.push('_'),
                c if c.is_ascii_uppercase() => {
                    name.push('_');
                    name.push(c);
                }
                c => name.push(c.to_ascii_uppercase()),
            }
        }
        name
    }

    /// What a valid value looks like, for error messages.
    pub fn expected(&self) -> &'static str {
        match self.kind {
            Kind::Size => "a size such as \"5GB\", \"512 MiB\" or a number of bytes",
            Kind::Duration => "a duration such as \"7d\", \"30s\" or \"500ms\"",
            Kind::Count => "a whole number such as 3",
        }
    }

    fn parse(&self, text: &str) -> Result<SettingValue, String> {
        match self.kind {
            Kind::Size => units::parse_size(text).map(SettingValue::Size),
            Kind::Duration => units::parse_duration(text).map(SettingValue::Duration),
            Kind::Count => text
                .trim()
                .parse::<u64>()
                .map(SettingValue::Count)
                .map_err(|_| format!("{text:?} is not a whole number")),
        }
    }
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingValue::Size(bytes) => f.write_str(&units::format_size(*bytes)),
            SettingValue::Duration(d) => f.write_str(&units::format_duration(*d)),
            SettingValue::Count(n) => write!(f, "{n}"),
        }
    }
}

impl SettingValue {
    /// The value as JSON for scripts: bytes, milliseconds, or the count.
    pub fn to_json(self) -> Value {
        match self {
            SettingValue::Size(bytes) => bytes.into(),
            SettingValue::Duration(d) => (d.as_millis() as u64).into(),
            SettingValue::Count(n) => n.into(),
        }
    }
}

/// Finds the known name closest to `given`, if it is close enough to be a typo.
pub fn suggest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(&given.to_ascii_lowercase(), &k.to_ascii_lowercase()), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// Looks a setting up by its dotted key, with a suggestion when it is unknown.
pub fn lookup(key: &str) -> Result<&'static SettingDef, String> {
    SETTINGS.iter().find(|d| d.key == key).ok_or_else(|| {
        let hint =
            suggest(key, SETTINGS.iter().map(|d| d.key)).map(|s| format!("; did you mean {s:?}?")).unwrap_or_default();
        format!(
            "unknown setting {key:?}{hint} (known: {})",
            SETTINGS.iter().map(|d| d.key).collect::<Vec<_>>().join(", ")
        )
    })
}

fn key_for_env(name: &str) -> Option<&'static str> {
    SETTINGS.iter().find(|d| d.env_name() == name).map(|d| d.key)
}

fn unknown_env(name: &str) -> ConfigError {
    let known: Vec<String> =
        SETTINGS.iter().map(SettingDef::env_name).chain(OTHER_ENV_VARS.iter().map(|s| s.to_string())).collect();
    let hint =
        suggest(name, known.iter().map(String::as_str)).map(|s| format!("; did you mean {s}?")).unwrap_or_default();
    ConfigError { location: "environment".into(), problem: format!("unknown variable {name}{hint}") }
}

fn default_of(def: &'static SettingDef) -> Resolved {
    let value = def.parse(def.default).expect("defaults in SETTINGS parse");
    Resolved { def, value, source: Source::Default, origin: "default".into() }
}

fn set(
    entries: &mut [Resolved],
    key: &str,
    raw: Result<String, String>,
    source: Source,
    origin: String,
    file: Option<&Path>,
) -> Result<(), ConfigError> {
    let location = match file {
        Some(path) => format!("{} ({origin})", path.display()),
        None => origin.clone(),
    };
    let def = lookup(key).map_err(|problem| ConfigError { location: location.clone(), problem })?;
    let text = raw.map_err(|given| ConfigError {
        location: location.clone(),
        problem: format!("{given} is not valid: expected {}", def.expected()),
    })?;
    let value = def.parse(&text).map_err(|why| ConfigError {
        location: location.clone(),
        problem: format!("{text:?} is not valid ({why}): expected {}", def.expected()),
    })?;
    let entry = entries.iter_mut().find(|e| e.def.key == def.key).expect("looked up in SETTINGS");
    *entry = Resolved { def, value, source, origin: if file.is_some() { format!("nx.json {origin}") } else { origin } };
    Ok(())
}

/// A JSON leaf as setting text: strings as they are, numbers in decimal; anything else is refused.
fn raw_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_u64() => Ok(n.to_string()),
        other => Err(format!("the JSON value {other}")),
    }
}

/// Flattens the plugin's nested options into (dotted key, leaf, origin) triples.
/// The nxops plugin's entry in nx.json, as `workspace` found it (this module
/// reads no files: the arrow goes from `workspace` to `config`, not back).
#[derive(Debug, Clone, Copy)]
pub struct PluginOptions<'a> {
    /// The file whose `plugins` array holds the entry (nx.json, or the one it extends).
    pub file: &'a Path,
    /// Where the options sit, for messages: `plugins[2].options`.
    pub pointer: &'a str,
    pub options: Option<&'a Value>,
}

fn plugin_options(plugin: &PluginOptions<'_>) -> Result<Vec<(String, Value, String)>, ConfigError> {
    let entry = plugin;
    let Some(options) = entry.options else { return Ok(Vec::new()) };
    let err = |pointer: &str, problem: String| ConfigError::file(plugin.file, format!("{pointer}: {problem}"));
    let sections = options.as_object().ok_or_else(|| err(entry.pointer, "must be an object".into()))?;
    let mut out = Vec::new();
    for (section, body) in sections {
        let pointer = format!("{}.{section}", entry.pointer);
        let known_sections: Vec<&str> = dedup_sections();
        if !known_sections.contains(&section.as_str()) {
            let hint = suggest(section, known_sections.iter().copied())
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            return Err(err(&pointer, format!("unknown section {section:?}{hint}")));
        }
        let fields = body.as_object().ok_or_else(|| err(&pointer, format!("must be an object, got {body}")))?;
        for (field, leaf) in fields {
            let key = format!("{section}.{field}");
            out.push((key, leaf.clone(), format!("{pointer}.{field}")));
        }
    }
    Ok(out)
}

fn dedup_sections() -> Vec<&'static str> {
    let mut sections: Vec<&str> = SETTINGS.iter().map(|d| d.key.split('.').next().unwrap_or(d.key)).collect();
    sections.dedup();
    sections
}

/// The nxops state folder: `$NXOPS_STATE_DIR`, else `$XDG_STATE_HOME/nxops`,
/// else `~/.local/state/nxops`.
pub fn state_base(env: &Environment) -> Option<PathBuf> {
    match (env.get_non_empty("NXOPS_STATE_DIR"), env.get_non_empty("XDG_STATE_HOME")) {
        (Some(dir), _) => Some(PathBuf::from(dir)),
        (None, Some(xdg)) => Some(Path::new(xdg).join("nxops")),
        (None, None) => Some(env.home()?.join(".local/state/nxops")),
    }
}

/// The state folder of one workspace: `<state base>/workspaces/<id>`, where
/// `<id>` is the first 16 hex digits of sha256 of the canonical root.
pub fn state_dir(env: &Environment, workspace_root: &Path) -> Option<PathBuf> {
    Some(state_base(env)?.join("workspaces").join(workspace_key(workspace_root)))
}

/// A short stable name for a workspace root, used for per-workspace folders.
pub fn workspace_key(workspace_root: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(workspace_root.as_os_str().as_encoded_bytes());
    hex::encode(digest)[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::workspace::nx_json::NxJson;

    fn nx(text: &str) -> NxJson {
        NxJson::parse(Path::new("/ws/nx.json"), text).unwrap()
    }

    fn plugin(options: &str) -> NxJson {
        nx(&format!(r#"{{"plugins":[{{"plugin":"@nxops/nx-plugin","options":{options}}}]}}"#))
    }

    /// What `Workspace::open` hands to `Settings::resolve`.
    fn resolve(nx: Option<&NxJson>, env: &Environment, flags: &[FlagValue]) -> Result<Settings, ConfigError> {
        let entry = nx.and_then(NxJson::nxops_plugin);
        let plugin = entry.as_ref().zip(nx).map(|(entry, nx)| PluginOptions {
            file: nx.file_of("plugins"),
            pointer: &entry.pointer,
            options: entry.options,
        });
        Settings::resolve(plugin, env, flags)
    }

    #[test]
    fn env_names_are_derived_from_keys() {
        let names: Vec<String> = SETTINGS.iter().map(SettingDef::env_name).collect();
        assert_eq!(
            names,
            [
                "NXOPS_CACHE_MAX_SIZE",
                "NXOPS_CACHE_MAX_AGE",
                "NXOPS_CACHE_AUTO_CLEAN_AT",
                "NXOPS_CACHE_CHECK_INTERVAL",
                "NXOPS_HEALTH_INTERVAL",
                "NXOPS_PROCESSES_HEALTH_INTERVAL",
                "NXOPS_PROCESSES_MAX_RESTARTS",
                "NXOPS_PROCESSES_STOP_TIMEOUT",
                "NXOPS_SESSIONS_TIMEOUT",
                "NXOPS_SESSIONS_NAMED_TIMEOUT",
            ]
        );
    }

    #[test]
    fn defaults_are_the_products() {
        let s = Settings::defaults();
        assert_eq!(s.cache_max_size(), 5 << 30);
        assert_eq!(s.cache_max_age(), Duration::from_secs(7 * 86_400));
        assert_eq!(s.health_interval(), Duration::from_secs(30));
        assert_eq!(s.process_health_interval(), Duration::from_secs(60));
        assert_eq!(s.max_restarts(), 3);
        assert_eq!(s.stop_timeout(), Duration::from_secs(5));
        assert!(s.iter().all(|r| r.source == Source::Default));
    }

    #[test]
    fn layers_apply_in_order_of_precedence() {
        let nx = plugin(r#"{"cache":{"maxSize":"1GB","maxAge":"2d"},"processes":{"maxRestarts":5}}"#);
        let env = Environment::from_pairs([("NXOPS_CACHE_MAX_SIZE", "2GB"), ("NXOPS_BIN", "/x")]);
        let flags = [FlagValue { key: "cache.maxSize".into(), value: "3GB".into(), flag: "--max-size".into() }];
        let s = resolve(Some(&nx), &env, &flags).unwrap();
        let by_key = |k: &str| s.iter().find(|r| r.def.key == k).unwrap().clone();
        assert_eq!(by_key("cache.maxSize").value, SettingValue::Size(3 << 30));
        assert_eq!(by_key("cache.maxSize").source, Source::Flag);
        assert_eq!(by_key("cache.maxAge").origin, "nx.json plugins[0].options.cache.maxAge");
        assert_eq!(s.max_restarts(), 5);
        let s = resolve(Some(&nx), &env, &[]).unwrap();
        assert_eq!(s.cache_max_size(), 2 << 30);
        assert_eq!(by_key("health.interval").source, Source::Default);
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let err = resolve(Some(&plugin(r#"{"cache":{"maxSzie":"1GB"}}"#)), &Environment::default(), &[]).unwrap_err();
        assert_eq!(err.location, "/ws/nx.json (plugins[0].options.cache.maxSzie)");
        assert!(err.problem.contains("unknown setting \"cache.maxSzie\"; did you mean \"cache.maxSize\"?"), "{err}");

        let err = resolve(Some(&plugin(r#"{"cahce":{}}"#)), &Environment::default(), &[]).unwrap_err();
        assert!(err.to_string().contains("unknown section \"cahce\"; did you mean \"cache\"?"), "{err}");

        let env = Environment::from_pairs([("NXOPS_CACHE_MAXSIZE", "1GB")]);
        let err = resolve(None, &env, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment: unknown variable NXOPS_CACHE_MAXSIZE; did you mean NXOPS_CACHE_MAX_SIZE?"
        );
    }

    #[test]
    fn bad_values_name_the_value_and_what_was_expected() {
        let err =
            resolve(Some(&plugin(r#"{"cache":{"maxSize":"5 gigs"}}"#)), &Environment::default(), &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("/ws/nx.json (plugins[0].options.cache.maxSize): \"5 gigs\" is not valid"),
            "{err}"
        );
        assert!(err.problem.contains("expected a size"), "{err}");

        let err =
            resolve(Some(&plugin(r#"{"processes":{"stopTimeout":5}}"#)), &Environment::default(), &[]).unwrap_err();
        assert!(err.problem.contains("needs a unit"), "{err}");

        let err = resolve(Some(&plugin(r#"{"cache":{"maxSize":true}}"#)), &Environment::default(), &[]).unwrap_err();
        assert!(err.problem.contains("the JSON value true is not valid"), "{err}");

        let env = Environment::from_pairs([("NXOPS_PROCESSES_MAX_RESTARTS", "three")]);
        let err = resolve(None, &env, &[]).unwrap_err();
        assert_eq!(err.location, "NXOPS_PROCESSES_MAX_RESTARTS");
        assert!(err.problem.contains("expected a whole number"), "{err}");
    }

    #[test]
    fn plugin_without_options_and_empty_env_values_are_fine() {
        let nx = nx(r#"{"plugins":["@nxops/nx-plugin"]}"#);
        let env = Environment::from_pairs([("NXOPS_CACHE_MAX_SIZE", "")]);
        let s = resolve(Some(&nx), &env, &[]).unwrap();
        assert_eq!(s.cache_max_size(), 5 << 30);
    }
}
