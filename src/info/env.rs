//! `nxops env info`: where everything is and which setting came from where.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Source;
use crate::environment::Environment;
use crate::output::{Report, Section};
use crate::workspace::Workspace;
use crate::workspace::nx_paths::{Layout, NxLocations};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvInfo {
    pub workspace_root: PathBuf,
    pub nx_json: PathBuf,
    pub nx: NxLocations,
    /// Nx's own eviction limit as configured (`NX_MAX_CACHE_SIZE` or nx.json `maxCacheSize`).
    pub nx_max_cache_size: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub settings: Vec<SettingReport>,
    /// `NX_*` variables set in this environment that change cache behaviour.
    pub nx_env: Vec<NxVar>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingReport {
    pub key: String,
    /// As people read it: "5 GiB", "7d".
    pub value: String,
    /// For scripts: bytes, milliseconds or a count.
    pub raw: serde_json::Value,
    pub source: Source,
    pub origin: String,
    pub env: String,
    pub default: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NxVar {
    pub name: String,
    /// The value, or "(set, hidden)" for secrets.
    pub value: String,
    pub effect: String,
}

/// `NX_*` variables that change where or whether Nx caches, with what each does.
pub const NX_CACHE_VARS: &[(&str, &str, bool)] = &[
    ("NX_CACHE_DIRECTORY", "cache folder; forces the checkout-local layout", false),
    ("NX_WORKSPACE_DATA_DIRECTORY", "database and daemon folder; forces the checkout-local layout", false),
    ("NX_PROJECT_GRAPH_CACHE_DIRECTORY", "older name of NX_WORKSPACE_DATA_DIRECTORY", false),
    ("NX_MAX_CACHE_SIZE", "Nx's own eviction limit (wins over nx.json maxCacheSize)", false),
    ("NX_SKIP_NX_CACHE", "tasks neither read nor write the cache", false),
    ("NX_DISABLE_NX_CACHE", "disables the cache", false),
    ("NX_CACHE_FAILURES", "failed tasks are cached too", false),
    ("NX_REJECT_UNKNOWN_LOCAL_CACHE", "legacy switch; not supported with the database cache", false),
    ("NX_ALLOW_INSECURE_DIRECTORIES", "Nx accepts cache folders other users could change", false),
    ("NX_WORKSPACE_ROOT_PATH", "overrides the workspace root Nx uses", false),
    ("NX_DAEMON", "turns the Nx daemon on or off", false),
    ("NX_NO_CLOUD", "disables Nx Cloud and its remote cache", false),
    ("NX_SKIP_REMOTE_CACHE", "skips the remote cache", false),
    ("NX_SELF_HOSTED_REMOTE_CACHE_SERVER", "self-hosted remote cache URL", false),
    ("NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN", "self-hosted remote cache token", true),
    ("NX_CLOUD_ACCESS_TOKEN", "Nx Cloud token (also an identity for the shared layout)", true),
];

pub fn collect(ws: &Workspace, env: &Environment) -> EnvInfo {
    let settings = ws
        .settings
        .iter()
        .map(|r| SettingReport {
            key: r.def.key.to_string(),
            value: r.value.to_string(),
            raw: r.value.to_json(),
            source: r.source,
            origin: r.origin.clone(),
            env: r.def.env_name(),
            default: r.def.default.to_string(),
        })
        .collect();
    let nx_env = NX_CACHE_VARS
        .iter()
        .filter_map(|(name, effect, secret)| {
            let value = env.get(name)?;
            let value = if *secret { "(set, hidden)".to_string() } else { value.to_string() };
            Some(NxVar { name: name.to_string(), value, effect: effect.to_string() })
        })
        .collect();
    EnvInfo {
        workspace_root: ws.root.clone(),
        nx_json: ws.nx_json.path.clone(),
        nx: ws.nx(),
        nx_max_cache_size: env
            .get_non_empty("NX_MAX_CACHE_SIZE")
            .map(str::to_string)
            .or_else(|| ws.nx_json.max_cache_size()),
        state_dir: ws.state_dir.clone(),
        settings,
        nx_env,
    }
}

impl Report for EnvInfo {
    fn human(&self) -> String {
        let mut out = String::new();
        let layout = match &self.nx.layout {
            Layout::Shared { dir_name, .. } => format!("shared by every checkout (~/.nx/{dir_name})"),
            Layout::Local { reason } => format!("local to this checkout ({reason})"),
        };
        let db = match self.nx.db_files.as_slice() {
            [] => "none yet (Nx creates it on its first run)".to_string(),
            files => files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
        };
        let mut ws = Section::new("Workspace")
            .row("root", self.workspace_root.display().to_string())
            .row("nx.json", self.nx_json.display().to_string())
            .row("cache layout", layout)
            .row("cache folder", self.nx.cache_dir.display().to_string())
            .row("database folder", self.nx.db_dir.display().to_string())
            .row("database", db)
            .row("workspace data", self.nx.workspace_data_dir.display().to_string())
            .row(
                "nx maxCacheSize",
                self.nx_max_cache_size.clone().unwrap_or_else(|| "not set (Nx uses 10% of the disk)".into()),
            )
            .row(
                "nxops state",
                self.state_dir.as_ref().map_or("unknown (no home directory)".into(), |p| p.display().to_string()),
            );
        for warning in &self.nx.warnings {
            ws.push("warning", warning.clone());
        }
        ws.render(&mut out);
        let mut settings = Section::new("Settings");
        for s in &self.settings {
            let from = match s.source {
                Source::Default => "default".to_string(),
                _ => s.origin.clone(),
            };
            settings.push(&s.key, format!("{:<8} from {from}", s.value));
        }
        settings.render(&mut out);
        let mut vars = Section::new("Nx environment");
        if self.nx_env.is_empty() {
            vars.push("none set", "");
        }
        for v in &self.nx_env {
            vars.push(&v.name, format!("{} ({})", v.value, v.effect));
        }
        vars.render(&mut out);
        out
    }
}
