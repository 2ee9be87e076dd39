//! Runs a parsed command line: builds the configuration, opens the workspace,
//! calls the command, and decides the exit code of a failure.
//!
//! Exit codes: 0 success; 1 the command failed; 2 bad input (configuration,
//! flags, or no workspace where one is needed). clap uses 2 for usage errors too.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::{Cli, Command, EnvCommand, GlobalArgs, SystemCommand};
use crate::config::{self, ConfigError, FlagValue};
use crate::environment::Environment;
use crate::info;
use crate::output::{Format, emit};
use crate::workspace::{Workspace, WorkspaceError};

pub fn run(cli: Cli, env: Environment) -> anyhow::Result<()> {
    let format = if cli.global.json { Format::Json } else { Format::Human };
    let flags = flag_values(&cli.global)?;
    match cli.command {
        Command::System { command: SystemCommand::Info } => {
            let ws = open_optional(&cli.global, &env, &flags)?;
            let report = info::system::collect(
                &env,
                ws.as_ref().map(|w| w.root.as_path()),
                ws.as_ref().map(|w| w.nx.cache_dir.as_path()),
            );
            emit(&report, format)
        }
        Command::Env { command: EnvCommand::Info } => {
            let ws = open_required(&cli.global, &env, &flags)?;
            emit(&info::env::collect(&ws, &env), format)
        }
    }
}

/// The exit code for an error: 2 for bad input, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let bad_input = err.chain().any(|cause| cause.is::<ConfigError>() || cause.is::<WorkspaceError>());
    if bad_input { 2 } else { 1 }
}

/// Logs go to stderr only; `NXOPS_LOG` (an env-filter string) wins over -v/--quiet.
pub fn init_logging(global: &GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "nxops=info",
        (false, 2) => "nxops=debug",
        (false, _) => "nxops=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NXOPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(true).try_init();
}

fn flag_values(global: &GlobalArgs) -> anyhow::Result<Vec<FlagValue>> {
    global
        .set
        .iter()
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or_else(|| ConfigError {
                location: format!("--set {pair}"),
                problem: "expected KEY=VALUE, for example --set cache.maxSize=2GB".into(),
            })?;
            config::lookup(key).map_err(|problem| ConfigError { location: format!("--set {pair}"), problem })?;
            Ok(FlagValue { key: key.to_string(), value: value.to_string(), flag: format!("--set {key}") })
        })
        .collect()
}

fn start_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    match &global.workspace {
        Some(path) => Ok(path.clone()),
        None => std::env::current_dir().context("failed to read the current directory"),
    }
}

fn open_required(global: &GlobalArgs, env: &Environment, flags: &[FlagValue]) -> anyhow::Result<Workspace> {
    let start = start_dir(global)?;
    Ok(Workspace::open(&start, env, flags)?)
}

/// Like `open_required`, but a missing workspace is fine unless `--workspace` named one.
fn open_optional(global: &GlobalArgs, env: &Environment, flags: &[FlagValue]) -> anyhow::Result<Option<Workspace>> {
    let start = start_dir(global)?;
    match Workspace::open(Path::new(&start), env, flags) {
        Ok(ws) => Ok(Some(ws)),
        Err(WorkspaceError::NotFound { .. }) if global.workspace.is_none() => {
            // Outside a workspace the environment and flags are still checked.
            config::Settings::resolve(None, env, flags)?;
            Ok(None)
        }
        Err(other) => Err(other.into()),
    }
}
