//! What a supervised process is: its command and the rules it lives by.
//!
//! Specs come from the workspace's `nxops.json` (`"processes": {"name": {...}}`)
//! or from a client at run time (`nxops/process/start` with a `command`). Both
//! are the same JSON, read by [`parse`]: unknown fields, bad units and bad
//! values are errors that name the place (`nxops.json processes.api.backoff.initial`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Settings;
use crate::config::units::{parse_duration, parse_size};

/// When a process is started again after it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// After every end that nxops did not ask for.
    Always,
    /// After a non-zero exit, a signal, a failed health check or a memory limit.
    OnFailure,
    Never,
}

/// Exponential backoff between restarts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    #[serde(with = "duration_text")]
    pub initial: Duration,
    pub factor: f64,
    #[serde(with = "duration_text")]
    pub max: Duration,
    /// An uptime this long resets the delay to `initial`.
    #[serde(with = "duration_text")]
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            factor: 2.0,
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// How a process shows it is healthy, besides running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Probe {
    /// A command that must exit 0 (run in the process's cwd and env).
    Command(Vec<String>),
    /// A TCP port on 127.0.0.1 that must accept a connection.
    Port(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub probe: Probe,
    #[serde(with = "duration_text")]
    pub interval: Duration,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Consecutive failed probes before the process counts as failed and is restarted.
    pub retries: u32,
}

/// Leak detection: a sustained upward slope of the tree's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leak {
    /// The span of samples the slope is fitted over.
    #[serde(with = "duration_text")]
    pub window: Duration,
    /// The least growth over one window that counts as a leak.
    pub min_growth: u64,
    /// Restart the process when a leak is found (else only report it).
    pub restart: bool,
}

/// A fully resolved process spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSpec {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Absolute; relative paths in the file are relative to the workspace root.
    pub cwd: PathBuf,
    pub restart: RestartMode,
    pub max_restarts: u32,
    #[serde(with = "duration_text")]
    pub restart_window: Duration,
    pub backoff: Backoff,
    #[serde(with = "duration_text")]
    pub stop_timeout: Duration,
    pub health: Option<Health>,
    /// Sample interval for memory and CPU (the health interval when there is no probe).
    #[serde(with = "duration_text")]
    pub sample_interval: Duration,
    pub memory_limit: Option<u64>,
    pub leak: Option<Leak>,
    /// Declared specs start when the sidecar attaches, unless this is false.
    pub autostart: bool,
}

impl ProcessSpec {
    /// The command and its arguments as one line a shell would read back the same way.
    pub fn command_line(&self) -> String {
        crate::output::shell_line(std::iter::once(self.command.as_str()).chain(self.args.iter().map(String::as_str)))
    }
}

/// The JSON form, as users write it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpecJson {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    restart: Option<RestartMode>,
    max_restarts: Option<u32>,
    restart_window: Option<String>,
    backoff: Option<BackoffJson>,
    stop_timeout: Option<String>,
    health: Option<HealthJson>,
    memory_limit: Option<String>,
    leak: Option<LeakJson>,
    autostart: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackoffJson {
    initial: Option<String>,
    factor: Option<f64>,
    max: Option<String>,
    reset_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HealthJson {
    command: Option<Vec<String>>,
    port: Option<u16>,
    interval: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LeakJson {
    window: Option<String>,
    min_growth: Option<String>,
    restart: Option<bool>,
}

/// A spec that cannot be used, with the place it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct SpecError {
    pub location: String,
    pub problem: String,
}

/// Reads one spec. `location` names it in errors (`nxops.json processes.api`).
pub fn parse(
    name: &str,
    value: Value,
    root: &Path,
    settings: &Settings,
    location: &str,
) -> Result<ProcessSpec, SpecError> {
    let err = |field: &str, problem: String| SpecError {
        location: if field.is_empty() { location.to_string() } else { format!("{location}.{field}") },
        problem,
    };
    check_name(name).map_err(|p| err("", p))?;
    let json: SpecJson = serde_json::from_value(value).map_err(|e| err("", e.to_string()))?;
    if json.command.trim().is_empty() {
        return Err(err("command", "must not be empty".into()));
    }
    let duration = |field: &str, text: Option<String>, default: Duration| -> Result<Duration, SpecError> {
        text.map_or(Ok(default), |t| parse_duration(&t).map_err(|p| err(field, p)))
    };
    let defaults = Backoff::default();
    let backoff = match json.backoff {
        None => defaults,
        Some(b) => Backoff {
            initial: duration("backoff.initial", b.initial, defaults.initial)?,
            factor: b.factor.unwrap_or(defaults.factor),
            max: duration("backoff.max", b.max, defaults.max)?,
            reset_after: duration("backoff.resetAfter", b.reset_after, defaults.reset_after)?,
        },
    };
    if !(1.0..=100.0).contains(&backoff.factor) {
        return Err(err("backoff.factor", format!("{} is out of range (1 to 100)", backoff.factor)));
    }
    if backoff.max < backoff.initial {
        return Err(err("backoff.max", "must not be less than backoff.initial".into()));
    }
    let health_interval = settings.process_health_interval();
    let health = match json.health {
        None => None,
        Some(h) => {
            let probe = match (h.command, h.port) {
                (Some(command), None) if !command.is_empty() && !command[0].is_empty() => Probe::Command(command),
                (Some(_), None) => return Err(err("health.command", "must name a program".into())),
                (None, Some(0)) => return Err(err("health.port", "must be 1 to 65535".into())),
                (None, Some(port)) => Probe::Port(port),
                (Some(_), Some(_)) => return Err(err("health", "give either command or port, not both".into())),
                (None, None) => return Err(err("health", "needs a command or a port".into())),
            };
            let interval = duration("health.interval", h.interval, health_interval)?;
            if interval < Duration::from_millis(10) {
                return Err(err("health.interval", "must be at least 10ms".into()));
            }
            let timeout = duration("health.timeout", h.timeout, Duration::from_secs(5).min(interval))?;
            Some(Health { probe, interval, timeout, retries: h.retries.unwrap_or(3).max(1) })
        }
    };
    let memory_limit = match json.memory_limit {
        None => None,
        Some(text) => Some(parse_size(&text).map_err(|p| err("memoryLimit", p))?),
    };
    let leak = match json.leak {
        None => None,
        Some(l) => {
            let window = duration("leak.window", l.window, Duration::from_secs(600))?;
            let min_growth = match l.min_growth {
                None => 64 << 20,
                Some(text) => parse_size(&text).map_err(|p| err("leak.minGrowth", p))?,
            };
            Some(Leak { window, min_growth, restart: l.restart.unwrap_or(false) })
        }
    };
    let cwd = match json.cwd {
        None => root.to_path_buf(),
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => root.join(dir),
    };
    for key in json.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(err("env", format!("{key:?} is not a variable name")));
        }
    }
    Ok(ProcessSpec {
        name: name.to_string(),
        command: json.command,
        args: json.args,
        env: json.env,
        cwd,
        restart: json.restart.unwrap_or(RestartMode::OnFailure),
        max_restarts: json.max_restarts.unwrap_or(settings.max_restarts().min(u32::MAX as u64) as u32),
        restart_window: duration("restartWindow", json.restart_window, Duration::from_secs(600))?,
        backoff,
        stop_timeout: duration("stopTimeout", json.stop_timeout, settings.stop_timeout())?,
        sample_interval: health.as_ref().map_or(health_interval, |h| h.interval.min(health_interval)),
        health,
        memory_limit,
        leak,
        autostart: json.autostart.unwrap_or(true),
    })
}

/// Names are used in file names and on the command line: letters, digits, `.`, `_`, `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid process name (1 to 64 letters, digits, '.', '_' or '-')"))
    }
}

/// Durations travel as text ("5s"), the way users write them.
mod duration_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::config::units::format_duration(*d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> Result<ProcessSpec, SpecError> {
        parse("api", value, Path::new("/ws"), &Settings::defaults(), "nxops.json processes.api")
    }

    #[test]
    fn a_command_alone_gets_every_default() {
        let s = spec(json!({"command": "node", "args": ["server.js"]})).unwrap();
        assert_eq!(s.cwd, PathBuf::from("/ws"));
        assert_eq!(s.restart, RestartMode::OnFailure);
        assert_eq!(s.max_restarts, 3);
        assert_eq!(s.stop_timeout, Duration::from_secs(5));
        assert_eq!(s.backoff, Backoff::default());
        assert_eq!(s.sample_interval, Duration::from_secs(60));
        assert!(s.autostart);
    }

    #[test]
    fn every_field_is_read() {
        let s = spec(json!({
            "command": "node", "cwd": "apps/api", "env": {"PORT": "3000"}, "restart": "always",
            "maxRestarts": 5, "restartWindow": "1m", "stopTimeout": "2s", "memoryLimit": "1GB",
            "backoff": {"initial": "0ms", "factor": 1.5, "max": "10s", "resetAfter": "30s"},
            "health": {"port": 3000, "interval": "5s", "timeout": "1s", "retries": 2},
            "leak": {"window": "5m", "minGrowth": "32MB", "restart": true}, "autostart": false
        }))
        .unwrap();
        assert_eq!(s.cwd, PathBuf::from("/ws/apps/api"));
        assert_eq!(s.restart, RestartMode::Always);
        assert_eq!((s.max_restarts, s.restart_window), (5, Duration::from_secs(60)));
        assert_eq!(s.backoff.initial, Duration::ZERO);
        assert_eq!(s.health.as_ref().unwrap().probe, Probe::Port(3000));
        assert_eq!(s.sample_interval, Duration::from_secs(5));
        assert_eq!(s.memory_limit, Some(1 << 30));
        assert_eq!(s.leak, Some(Leak { window: Duration::from_secs(300), min_growth: 32 << 20, restart: true }));
        assert!(!s.autostart);
    }

    #[test]
    fn mistakes_name_their_place() {
        let e = spec(json!({"command": "node", "comand": "x"})).unwrap_err();
        assert_eq!(e.location, "nxops.json processes.api");
        assert!(e.problem.contains("unknown field `comand`"), "{e}");
        let e = spec(json!({"command": "node", "backoff": {"initial": "fast"}})).unwrap_err();
        assert_eq!(e.location, "nxops.json processes.api.backoff.initial");
        let e = spec(json!({"command": "node", "health": {"port": 1, "command": ["x"]}})).unwrap_err();
        assert_eq!(e.to_string(), "nxops.json processes.api.health: give either command or port, not both");
        let e = spec(json!({"command": " "})).unwrap_err();
        assert_eq!(e.location, "nxops.json processes.api.command");
        let e = spec(json!({"command": "x", "restart": "sometimes"})).unwrap_err();
        assert!(e.problem.contains("unknown variant `sometimes`"), "{e}");
        let e = parse("../evil", json!({"command": "x"}), Path::new("/ws"), &Settings::defaults(), "here").unwrap_err();
        assert!(e.problem.contains("not a valid process name"), "{e}");
    }
}
