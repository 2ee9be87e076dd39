//! Runs a parsed command line: builds the configuration, finds the workspace,
//! and sends the command's request to the workspace's sidecar when one owns it,
//! or answers it in-process (the same handlers) when none does.
//!
//! Exit codes: 0 success; 1 the command failed; 2 bad input (configuration,
//! flags, params, or no workspace where one is needed). clap uses 2 for usage
//! errors too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_lsp_server::jsonrpc::{Error, ErrorCode};

use crate::cli::{
    CacheCommand, CallArgs, Cli, Command, EnvCommand, GlobalArgs, McpCommand, MonitorCommand, PerfCommand, ProcCommand,
    SessionCommand, SystemCommand, TrustArgs,
};
use crate::config::{self, ConfigError, FlagValue, workspace_key};
use crate::environment::Environment;
use crate::info;
use crate::output::{Format, Report, emit};
use crate::rpc::client::{ClientError, RpcClient};
use crate::rpc::errors::{Code, to_jsonrpc};
use crate::sidecar::core::{Core, TransportKind};
use crate::sidecar::methods::{self, CallCtx};
use crate::sidecar::ownership::Paths;
use crate::sidecar::progress::Progress;
use crate::workspace::{WorkspaceError, find_root};

/// A JSON-RPC error answered to a CLI command (by the sidecar or in-process).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message)]
pub struct CallFailed(pub Error);

pub fn run(cli: Cli, env: Environment) -> anyhow::Result<()> {
    let format = if cli.global.json { Format::Json } else { Format::Human };
    let flags = flag_values(&cli.global)?;
    config::Settings::resolve(None, &env, &flags)?;
    match cli.command {
        Command::System { command: SystemCommand::Info } => {
            let root = optional_root(&cli.global)?;
            let params = json!({"workspace": root});
            show::<info::system::SystemInfo>(
                invoke(&env, &flags, root.as_deref(), "nxops/system/info", params)?,
                format,
            )
        }
        Command::Env { command: EnvCommand::Info } => {
            let root = find_root(&start_dir(&cli.global)?)?;
            let set: serde_json::Map<String, Value> = flags.iter().map(|f| (f.key.clone(), json!(f.value))).collect();
            let params = json!({"workspace": root, "set": set});
            show::<info::env::EnvInfo>(invoke(&env, &flags, Some(&root), "nxops/env/info", params)?, format)
        }
        Command::Cache { command: CacheCommand::Serve { config, listen, check } } => {
            crate::team_cache::cli::serve(&config, listen.as_deref(), check, format)
        }
        Command::Cache { command: CacheCommand::Token { name, access, prefix } } => {
            let access = match access {
                crate::cli::TokenAccess::Read => crate::team_cache::tokens::Access::Read,
                crate::cli::TokenAccess::ReadWrite => crate::team_cache::tokens::Access::ReadWrite,
            };
            crate::team_cache::cli::token(&name, access, &prefix, format)
        }
        Command::Cache { command: CacheCommand::Stats { remote: true, .. } } => {
            let remote = crate::team_cache::cli::Remote::from_env(|name| env.get(name).map(str::to_string))?;
            let db = start_dir(&cli.global)
                .ok()
                .and_then(|dir| find_root(&dir).ok())
                .and_then(|root| crate::workspace::Workspace::open(&root, &env, &flags).ok())
                .and_then(|ws| ws.nx().db_files.first().cloned());
            crate::team_cache::cli::remote_stats(&remote, db.as_deref(), format)
        }
        Command::Cache { command } => cache(&cli.global, &env, &flags, command, format),
        Command::Proc { command } => proc(&cli.global, &env, &flags, command, format),
        Command::Session { command } => session(&cli.global, &env, &flags, command, format),
        Command::Trust(args) => trust(&cli.global, &env, &flags, args, format),
        Command::Perf { command: PerfCommand::Optimize } => {
            let root = find_root(&start_dir(&cli.global)?)?;
            let answer = invoke(&env, &flags, Some(&root), "nxops/perf/optimize", json!({"workspace": root}))?;
            show::<crate::sidecar::perf_methods::PerfReport>(answer, format)
        }
        Command::Monitor { command: MonitorCommand::Start { interval, count } } => {
            let root = find_root(&start_dir(&cli.global)?)?;
            monitor(&env, &flags, &root, &interval, count, format)
        }
        Command::Monitor { command: MonitorCommand::Check } => {
            let root = find_root(&start_dir(&cli.global)?)?;
            let answer = invoke(&env, &flags, Some(&root), "nxops/health", json!({"workspace": root}))?;
            let report: crate::health::HealthReport =
                serde_json::from_value(answer).context("the sidecar's answer does not match this nxops version")?;
            emit(&report, format)?;
            std::process::exit(report.rating.exit_code())
        }
        Command::Mcp { command: McpCommand::Proxy { server } } => {
            let root = find_root(&start_dir(&cli.global)?)?;
            std::process::exit(crate::sidecar::mcp_proxy::run(env, &root, &server)?)
        }
        Command::Mcp { command: McpCommand::List } => {
            let root = find_root(&start_dir(&cli.global)?)?;
            let answer = invoke(&env, &flags, Some(&root), "nxops/mcp/servers", json!({"workspace": root}))?;
            let text = crate::supervisor::render::mcp_servers(&answer);
            emit(&Rendered { value: answer, text }, format)
        }
        Command::Maintain { if_due } => {
            let root = find_root(&start_dir(&cli.global)?)?;
            let params = json!({"workspace": root, "ifDue": if_due});
            let answer = invoke(&env, &flags, Some(&root), "nxops/maintenance/run", params)?;
            show::<crate::sidecar::maintenance::MaintenanceReport>(answer, format)
        }
        Command::Serve(args) => {
            std::process::exit(crate::sidecar::serve_stdio(env, flags.clone(), args.metrics_addr.as_deref())?)
        }
        Command::Call(args) => call(&cli.global, &env, &flags, args),
    }
}

/// `nxops cache ...`: each subcommand is its `nxops/cache/*` method.
fn cache(
    global: &GlobalArgs,
    env: &Environment,
    flags: &[FlagValue],
    command: CacheCommand,
    format: Format,
) -> anyhow::Result<()> {
    use crate::cache::{clean::CleanReport, reset::ResetReport, stats::CacheStats, verify::VerifyReport};
    let root = find_root(&start_dir(global)?)?;
    // The value once: the parser's message may already quote it.
    let bad = |flag: &str, value: &str, problem: String| {
        let problem = if problem.contains(&format!("{value:?}")) { problem } else { format!("{value:?}: {problem}") };
        ConfigError { location: flag.to_string(), problem }
    };
    let (method, mut params) = match &command {
        CacheCommand::Stats { deep, .. } => ("nxops/cache/stats", json!({"deep": deep})),
        CacheCommand::Clean { max_size, max_age, dry_run, force } => {
            if let Some(size) = max_size {
                config::units::parse_size(size).map_err(|e| bad("--max-size", size, e))?;
            }
            if let Some(age) = max_age {
                config::units::parse_duration(age).map_err(|e| bad("--max-age", age, e))?;
            }
            let params = json!({"maxSize": max_size, "maxAge": max_age, "dryRun": dry_run, "force": force});
            ("nxops/cache/clean", params)
        }
        CacheCommand::Reset { all, timeout } => {
            config::units::parse_duration(timeout).map_err(|e| bad("--timeout", timeout, e))?;
            ("nxops/cache/reset", json!({"all": all, "timeout": timeout}))
        }
        CacheCommand::Verify { fix } => ("nxops/cache/verify", json!({"fix": fix})),
        CacheCommand::Serve { .. } | CacheCommand::Token { .. } => unreachable!("run needs no workspace for these"),
    };
    params["workspace"] = json!(root);
    strip_nulls(&mut params);
    let bar = ProgressBar::for_terminal(global);
    if bar.is_some() {
        params["workDoneToken"] = json!("nxops-cli");
    }
    let answer = invoke_with_progress(env, flags, Some(&root), method, params, bar.clone());
    if let Some(bar) = bar {
        bar.finish();
    }
    let answer = answer?;
    match command {
        CacheCommand::Stats { .. } => show::<CacheStats>(answer, format),
        CacheCommand::Clean { .. } => show::<CleanReport>(answer, format),
        CacheCommand::Reset { .. } => show::<ResetReport>(answer, format),
        CacheCommand::Verify { .. } => show::<VerifyReport>(answer, format),
        CacheCommand::Serve { .. } | CacheCommand::Token { .. } => unreachable!("run needs no workspace for these"),
    }
}

/// `nxops proc ...`: each subcommand is its `nxops/process/*` method.
fn proc(
    global: &GlobalArgs,
    env: &Environment,
    flags: &[FlagValue],
    command: ProcCommand,
    format: Format,
) -> anyhow::Result<()> {
    use crate::supervisor::render;
    let root = find_root(&start_dir(global)?)?;
    let (method, mut params) = match &command {
        ProcCommand::List => ("nxops/process/list", json!({})),
        ProcCommand::Start { name, restart, cwd, env: vars, session, command } => {
            let mut params = json!({"name": name});
            if command.is_empty() {
                if restart.is_some() || cwd.is_some() || !vars.is_empty() || session.is_some() {
                    let problem =
                        "--restart, --cwd, --env and --session describe your own process: give its command after `--`";
                    return Err(ConfigError { location: "nxops proc start".into(), problem: problem.into() }.into());
                }
            } else {
                // This command exits at once: its own connection's session would end the process.
                match session {
                    Some(id) => params["session"] = json!(id),
                    None => params["detached"] = json!(true),
                }
                params["command"] = json!(command[0]);
                params["args"] = json!(command[1..]);
                if let Some(restart) = restart {
                    params["restart"] = json!(restart);
                }
                if let Some(cwd) = cwd {
                    params["cwd"] = json!(cwd);
                }
                let mut map = serde_json::Map::new();
                for var in vars {
                    let (k, v) = var.split_once('=').ok_or_else(|| ConfigError {
                        location: "--env".into(),
                        problem: format!("{var:?} is not NAME=VALUE"),
                    })?;
                    map.insert(k.to_string(), json!(v));
                }
                if !map.is_empty() {
                    params["env"] = Value::Object(map);
                }
            }
            ("nxops/process/start", params)
        }
        ProcCommand::Stop { name, force } => ("nxops/process/stop", json!({"name": name, "force": force})),
        ProcCommand::Restart { name } => ("nxops/process/restart", json!({"name": name})),
        ProcCommand::Logs { name, lines } => ("nxops/process/logs", json!({"name": name, "lines": lines})),
    };
    params["workspace"] = json!(root);
    let answer = invoke(env, flags, Some(&root), method, params)?;
    let text = match &command {
        ProcCommand::List => render::list(&answer),
        ProcCommand::Logs { .. } => render::logs(&answer),
        _ => render::one(&answer),
    };
    emit(&Rendered { value: answer, text }, format)
}

/// `nxops session ...`: each subcommand is its `nxops/session/*` method.
fn session(
    global: &GlobalArgs,
    env: &Environment,
    flags: &[FlagValue],
    command: SessionCommand,
    format: Format,
) -> anyhow::Result<()> {
    use crate::sessions::render;
    let root = find_root(&start_dir(global)?)?;
    let (method, params) = match &command {
        SessionCommand::List => ("nxops/session/list", json!({})),
        SessionCommand::Open { name, timeout, labels } => {
            let mut map = serde_json::Map::new();
            for label in labels {
                let (k, v) = label.split_once('=').ok_or_else(|| ConfigError {
                    location: "--label".into(),
                    problem: format!("{label:?} is not KEY=VALUE"),
                })?;
                map.insert(k.to_string(), json!(v));
            }
            ("nxops/session/open", json!({"name": name, "timeout": timeout, "labels": map}))
        }
        SessionCommand::Close { id, force } => {
            ("nxops/session/close", json!({"session": id, "mode": if *force { "force" } else { "graceful" }}))
        }
        SessionCommand::Restart { id } => ("nxops/session/restart", json!({"session": id})),
        SessionCommand::Heartbeat { id } => ("nxops/session/heartbeat", json!({"session": id})),
    };
    let mut params = params;
    strip_nulls(&mut params);
    params["workspace"] = json!(root);
    let answer = invoke(env, flags, Some(&root), method, params)?;
    let text = match &command {
        SessionCommand::List => render::list(&answer),
        SessionCommand::Close { .. } => render::closed(&answer),
        _ => render::one(&answer),
    };
    emit(&Rendered { value: answer, text }, format)
}

/// `nxops monitor start`: a health check every `interval`, shown in place on a
/// terminal, or one JSON line per check with `--json`. Each says plainly when
/// no sidecar watches the workspace (only the cache is judged then): the
/// report's own line, and in JSON `"sidecar": false` with a `warning`; a
/// sidecar that goes away while it runs is announced as such.
fn monitor(
    env: &Environment,
    flags: &[FlagValue],
    root: &Path,
    interval: &str,
    count: Option<u64>,
    format: Format,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    let every = config::units::parse_duration(interval)
        .map_err(|e| ConfigError { location: "--interval".into(), problem: format!("{interval:?}: {e}") })?;
    let live = format == Format::Human && std::io::stdout().is_terminal();
    exit_zero_on_ctrl_c();
    let mut done = 0;
    let mut watched_before = None;
    loop {
        let text = match invoke(env, flags, Some(root), "nxops/health", json!({"workspace": root})) {
            Ok(mut answer) => {
                let watched = answer["sidecar"] == true;
                let gone = watched_before == Some(true) && !watched;
                watched_before = Some(watched);
                if format == Format::Json {
                    if !watched {
                        answer["warning"] = json!(unwatched_warning(gone));
                    }
                    serde_json::to_string(&answer)? + "\n"
                } else {
                    let report: crate::health::HealthReport = serde_json::from_value(answer)
                        .context("the sidecar's answer does not match this nxops version")?;
                    let clock = crate::clock::now_ms() / 1000 % 86_400;
                    let stamp = format!("{:02}:{:02}:{:02} UTC", clock / 3600, clock / 60 % 60, clock % 60);
                    let banner = if watched { String::new() } else { format!("{}\n", unwatched_warning(gone)) };
                    format!("{stamp}  (every {interval}; Ctrl-C to stop)\n{banner}{}", report.human())
                }
            }
            Err(err) if format == Format::Json => serde_json::to_string(&json!({"error": format!("{err:#}")}))? + "\n",
            Err(err) => format!("health check failed: {err:#}\n"),
        };
        let mut out = std::io::stdout().lock();
        let cleared = if live { "\x1b[H\x1b[2J" } else { "" };
        if out.write_all(format!("{cleared}{text}").as_bytes()).and_then(|()| out.flush()).is_err() {
            return Ok(()); // the reader went away (a closed pipe)
        }
        drop(out);
        done += 1;
        if count.is_some_and(|n| done >= n) {
            return Ok(());
        }
        std::thread::sleep(every);
    }
}

/// Ctrl-C is `monitor start`'s documented way out, so it ends the command with
/// success (exit 0) instead of death by SIGINT, which npm, pnpm and Nx report as
/// a failed command. A thread of its own waits for the signal.
fn exit_zero_on_ctrl_c() {
    let _ = std::thread::Builder::new().name("nxops-ctrl-c".into()).spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_io().build() else { return };
        if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
            let _ = std::io::Write::flush(&mut std::io::stdout());
            std::process::exit(0);
        }
    });
}

/// What `monitor start` says when no sidecar watches the workspace; `gone`: one did until now.
fn unwatched_warning(gone: bool) -> &'static str {
    if gone {
        "NO SIDECAR: the sidecar that watched this workspace went away; only the cache is checked now"
    } else {
        "NO SIDECAR is watching this workspace; only the cache is checked"
    }
}

/// `nxops trust`: shows what nxops.json would run, and allows exactly that content.
fn trust(
    global: &GlobalArgs,
    env: &Environment,
    flags: &[FlagValue],
    args: TrustArgs,
    format: Format,
) -> anyhow::Result<()> {
    let root = find_root(&start_dir(global)?)?;
    let action = match (args.revoke, args.status) {
        (true, _) => "revoke",
        (_, true) => "status",
        _ => "allow",
    };
    let mut params = json!({"workspace": root, "action": action});
    if let Some(sha) = &args.sha256 {
        params["sha256"] = json!(sha);
    }
    let answer = invoke(env, flags, Some(&root), "nxops/trust", params)?;
    let text = crate::supervisor::render::trust(&answer, action);
    emit(&Rendered { value: answer, text }, format)
}

/// An answer with its human rendering made beforehand.
#[derive(serde::Serialize)]
struct Rendered {
    #[serde(flatten)]
    value: Value,
    #[serde(skip)]
    text: String,
}

impl Report for Rendered {
    fn human(&self) -> String {
        self.text.clone()
    }
}

fn strip_nulls(params: &mut Value) {
    if let Value::Object(map) = params {
        map.retain(|_, v| !v.is_null());
    }
}

/// A one-line progress bar on stderr, drawn from `$/progress` values; only on a terminal.
#[derive(Clone)]
struct ProgressBar {
    shown: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ProgressBar {
    fn for_terminal(global: &GlobalArgs) -> Option<ProgressBar> {
        use std::io::IsTerminal;
        (!global.quiet && std::io::stderr().is_terminal()).then(|| ProgressBar { shown: Default::default() })
    }

    fn draw(&self, value: &Value) {
        use std::io::Write;
        let (Some(percentage), Some(message)) =
            (value.get("percentage").and_then(Value::as_u64), value.get("message").and_then(Value::as_str))
        else {
            return;
        };
        let filled = (percentage.min(100) / 5) as usize;
        let line = format!("\r[{}{}] {percentage:>3}% {message}   ", "#".repeat(filled), " ".repeat(20 - filled));
        self.shown.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn finish(&self) {
        if self.shown.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!();
        }
    }
}

/// The exit code for an error: 2 for bad input, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(crate::output::Reported(code)) = err.downcast_ref() {
        return *code;
    }
    let bad_input = err.chain().any(|cause| {
        cause.is::<ConfigError>()
            || cause.is::<WorkspaceError>()
            || cause.downcast_ref::<CallFailed>().is_some_and(|CallFailed(e)| is_bad_input(e))
    });
    if bad_input { 2 } else { 1 }
}

fn is_bad_input(err: &Error) -> bool {
    matches!(err.code, ErrorCode::InvalidParams | ErrorCode::MethodNotFound | ErrorCode::InvalidRequest)
        || err.code == ErrorCode::ServerError(Code::BadWorkspace as i64)
        || err.code == ErrorCode::ServerError(Code::NotAttached as i64)
}

/// `nxops call METHOD [PARAMS]`: prints the result as JSON; a JSON-RPC error goes
/// to stderr as JSON with a non-zero exit code.
fn call(global: &GlobalArgs, env: &Environment, flags: &[FlagValue], args: CallArgs) -> anyhow::Result<()> {
    let params: Value = match &args.params {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| ConfigError { location: "PARAMS_JSON".into(), problem: format!("is not valid JSON: {e}") })?,
        None => json!({}),
    };
    let root = optional_root(global)?;
    match invoke(env, flags, root.as_deref(), &args.method, params) {
        Ok(result) => emit(&RawJson(result), Format::Json),
        Err(err) => {
            if let Some(CallFailed(rpc)) = err.downcast_ref::<CallFailed>() {
                eprintln!("{}", serde_json::to_string_pretty(rpc).unwrap_or_default());
            }
            Err(err)
        }
    }
}

/// Sends `method` to the owner of `root`'s workspace, or runs it here when none runs.
/// `flags` (`--set`) apply when the work is done in-process; a running sidecar
/// answers with the settings in force there.
pub fn invoke(
    env: &Environment,
    flags: &[FlagValue],
    root: Option<&Path>,
    method: &str,
    params: Value,
) -> anyhow::Result<Value> {
    invoke_with_progress(env, flags, root, method, params, None)
}

fn invoke_with_progress(
    env: &Environment,
    flags: &[FlagValue],
    root: Option<&Path>,
    method: &str,
    params: Value,
    bar: Option<ProgressBar>,
) -> anyhow::Result<Value> {
    if let Some(root) = root
        && let Some(client) = connect_owner(env, root, bar.clone())?
    {
        return remote(&client, method, params);
    }
    let progress = match bar {
        Some(bar) => Progress::local(std::sync::Arc::new(move |value: &Value| bar.draw(value))),
        None => Progress::none(),
    };
    in_process(env, flags, root, method, params, progress)
}

fn connect_owner(env: &Environment, root: &Path, bar: Option<ProgressBar>) -> anyhow::Result<Option<RpcClient>> {
    // No runtime folder at all means no sidecar can own the workspace either, so
    // the command is answered here: only commands that need a sidecar fail then.
    let paths = match Paths::for_workspace(env, &workspace_key(root)) {
        Ok(paths) => paths,
        Err(err) => {
            tracing::warn!(target: "nxops::cli", "no sidecar can be reached: {err:#}");
            return Ok(None);
        }
    };
    if !paths.socket.exists() {
        return Ok(None);
    }
    let on_notification = Box::new(move |method: &str, params: Value| {
        if let (Some(bar), "$/progress") = (&bar, method) {
            bar.draw(&params["value"]);
        }
    });
    let Ok(client) = RpcClient::connect(&paths.socket, on_notification) else { return Ok(None) };
    let pid = paths.owner_info().map_or_else(|| "unknown".into(), |i| i.pid.to_string());
    let hello = async { client.handshake("nxops-cli").await };
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    match rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), hello).await }) {
        Ok(Ok(_)) => Ok(Some(client)),
        Ok(Err(ClientError::Closed)) => Ok(None),
        Ok(Err(err)) => {
            anyhow::bail!("the sidecar owning {} (pid {pid}) refused the connection: {err}", root.display())
        }
        Err(_) => anyhow::bail!(
            "the sidecar owning {} (pid {pid}) did not answer within 5 s on {}",
            root.display(),
            paths.socket.display()
        ),
    }
}

fn remote(client: &RpcClient, method: &str, params: Value) -> anyhow::Result<Value> {
    // However long the request takes, the owner must keep answering: a stopped
    // (SIGSTOP) or stuck owner fails the command instead of hanging it.
    let result = client.request_watched_blocking(
        method,
        params,
        "nxops/status",
        crate::sidecar::core::LIVENESS_INTERVAL,
        crate::sidecar::core::LIVENESS_TIMEOUT,
    );
    // A deliberate end: the owner closes this connection's session now (what the
    // request made for it, if anything, ends with it) instead of expiring it later.
    // The outbox writes on its own thread: let `exit` out before the socket is shut.
    client.notify("exit", Value::Null);
    client.flush(std::time::Duration::from_millis(500));
    client.close();
    match result {
        Ok(value) => Ok(value),
        Err(ClientError::Rpc(err)) => Err(CallFailed(err).into()),
        Err(ClientError::Unresponsive(limit)) => Err(anyhow::anyhow!(
            "the workspace's sidecar stopped answering (no answer to a liveness check within {} s): it may be \
             stopped (SIGSTOP) or stuck",
            limit.as_secs()
        )),
        Err(other) => Err(anyhow::anyhow!("the workspace's sidecar: {other}")),
    }
}

fn in_process(
    env: &Environment,
    flags: &[FlagValue],
    root: Option<&Path>,
    method: &str,
    params: Value,
    progress: Progress,
) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let core = Core::in_process(env.clone(), runtime.handle().clone());
    core.set_overrides(flags.to_vec());
    if let Some(root) = root {
        core.attach(root).map_err(|e| CallFailed(to_jsonrpc(e)))?;
    }
    let session = core.open_session(TransportKind::InProcess);
    let ctx = CallCtx { core, session, progress };
    runtime.block_on(methods::call(&ctx, method, params)).map_err(|e| CallFailed(to_jsonrpc(e)).into())
}

fn show<T: Report + DeserializeOwned>(value: Value, format: Format) -> anyhow::Result<()> {
    let report: T = serde_json::from_value(value).context("the sidecar's answer does not match this nxops version")?;
    emit(&report, format)?;
    match report.exit_code() {
        0 => Ok(()),
        code => Err(crate::output::Reported(code).into()),
    }
}

/// A JSON value printed as it is.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct RawJson(Value);

impl Report for RawJson {
    fn human(&self) -> String {
        serde_json::to_string_pretty(&self.0).unwrap_or_default() + "\n"
    }
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
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(true)
        .try_init();
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

/// The workspace root, or `None` outside a workspace unless `--workspace` named one.
fn optional_root(global: &GlobalArgs) -> anyhow::Result<Option<PathBuf>> {
    match find_root(&start_dir(global)?) {
        Ok(root) => Ok(Some(root)),
        Err(WorkspaceError::NotFound { .. }) if global.workspace.is_none() => Ok(None),
        Err(other) => Err(other.into()),
    }
}
