//! The process supervisor of one workspace, run by the workspace's owner.
//!
//! Design (see ARCHITECTURE.md, "Processes"):
//! - the sidecar is the child subreaper and `crate::reaper` is the only waiter,
//!   so no exit status is ever lost and adopted orphans never stay zombies;
//! - every process gets its own process group and a marker variable naming its
//!   run (`tree`), so stopping it ends the group and whatever escaped the group;
//! - each process is one task (`service`), the only writer of its state;
//! - a sampler reads `/proc` once per interval for every tree's memory and CPU,
//!   and feeds the leak detector and memory limits;
//! - the ledger (`ledger`) lets the next owner end what a crash left behind,
//!   and `detached` lets it start the detached processes again;
//! - declared processes (nxops.json) start only when the file is allowed (`trust`).

pub mod detached;
pub mod leak;
pub mod ledger;
pub mod logs;
pub mod policy;
pub mod render;
pub mod service;
pub mod spec;
pub mod tree;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use self::detached::Detached;
use self::ledger::Ledger;
use self::service::{Cmd, Origin, Service, State, View};
use self::spec::ProcessSpec;
use crate::config::Settings;
use crate::environment::Environment;
use crate::procfs;
use crate::rpc::errors::RpcError;
use crate::trust::{self, Trust};
use crate::workspace::nxops_json::{self, NxopsJson};

/// Publishes an event to clients (the sidecar adds the workspace).
pub type Publish = Arc<dyn Fn(&'static str, Value) + Send + Sync>;

/// What the services share.
pub struct Shared {
    pub key: String,
    pub root: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub runtime: Handle,
    publish: Publish,
    ledger: Mutex<Ledger>,
    runs: AtomicU64,
    stopping: AtomicBool,
}

impl Shared {
    pub fn publish(&self, event: &'static str, params: Value) {
        (self.publish)(event, params);
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn next_run(&self) -> u64 {
        self.runs.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn stopped(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// The state of the workspace's nxops.json, as `list` reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView {
    pub path: PathBuf,
    pub exists: bool,
    pub sha256: Option<String>,
    pub trust: Option<Trust>,
    /// Why declared processes are not running, and what to do about it.
    pub problem: Option<String>,
    /// Declared processes not started because the file is not allowed.
    pub blocked: Vec<ProcessSpec>,
}

/// The answer of `nxops/process/list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListView {
    pub workspace: PathBuf,
    pub config: ConfigView,
    pub processes: Vec<View>,
    /// Children of the sidecar that belong to no supervised process (none, normally).
    pub unattributed: Vec<Unattributed>,
    pub leftovers_ended: Vec<u32>,
    pub orphans_reaped: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unattributed {
    pub pid: u32,
    pub command: String,
}

#[derive(Clone)]
pub struct Supervisor(Arc<Inner>);

struct Inner {
    shared: Arc<Shared>,
    env: Environment,
    settings: Settings,
    services: Mutex<BTreeMap<String, Arc<Service>>>,
    config: Mutex<ConfigView>,
    leftovers: Mutex<Vec<u32>>,
    /// The detached processes' specs, started again by the next owner.
    detached: Detached,
    unattributed: Mutex<Vec<Unattributed>>,
    started: Instant,
    ready: watch::Sender<bool>,
    stop_sampler: watch::Sender<bool>,
    /// Wakes the sampler when the set of processes changes (its interval may shrink).
    specs_changed: tokio::sync::Notify,
}

impl Supervisor {
    /// Starts the supervisor of an owned workspace: ends leftovers of a previous
    /// owner, then starts the allowed declared processes and the previous owner's
    /// detached processes. Returns at once.
    pub fn launch(
        root: PathBuf,
        state_dir: Option<PathBuf>,
        settings: Settings,
        env: Environment,
        runtime: Handle,
        publish: Publish,
    ) -> Supervisor {
        let key = crate::config::workspace_key(&root);
        let detached = Detached::new(state_dir.as_deref(), &runtime);
        let shared = Arc::new(Shared {
            key,
            root: root.clone(),
            ledger: Mutex::new(Ledger::new(state_dir.as_deref())),
            state_dir,
            runtime: runtime.clone(),
            publish,
            runs: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let config = ConfigView {
            path: root.join(nxops_json::FILE_NAME),
            exists: false,
            sha256: None,
            trust: None,
            problem: None,
            blocked: Vec::new(),
        };
        let supervisor = Supervisor(Arc::new(Inner {
            shared,
            env,
            settings,
            services: Mutex::default(),
            config: Mutex::new(config),
            leftovers: Mutex::default(),
            detached,
            unattributed: Mutex::default(),
            started: Instant::now(),
            ready: watch::channel(false).0,
            stop_sampler: watch::channel(false).0,
            specs_changed: tokio::sync::Notify::new(),
        }));
        let this = supervisor.clone();
        runtime.spawn(async move {
            let (state_dir, key) = (this.0.shared.state_dir.clone(), this.0.shared.key.clone());
            let timeout = this.0.settings.stop_timeout();
            let found =
                tokio::task::spawn_blocking(move || ledger::end_leftovers(state_dir.as_deref(), &key, timeout)).await;
            if let Ok(found) = found {
                if !found.ended.is_empty() {
                    tracing::warn!(target: "nxops::supervisor", "ended {} processes left by a previous sidecar", found.ended.len());
                }
                *lock(&this.0.leftovers) = found.ended;
            }
            if let Err(err) = this.reload() {
                tracing::warn!(target: "nxops::supervisor", "{err}");
            }
            this.restore_detached().await;
            this.0.ready.send_replace(true);
            this.sample_forever().await;
        });
        supervisor
    }

    fn services(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Service>>> {
        lock(&self.0.services)
    }

    /// Starts the previous owner's detached processes from their specs (after its
    /// leftovers were ended). A spec that no longer parses, or whose name nxops.json
    /// now declares, is forgotten with a warning; one that fails to start is kept.
    async fn restore_detached(&self) {
        let book = self.0.detached.clone();
        let processes = match tokio::task::spawn_blocking(move || book.load()).await {
            Ok(Ok(processes)) => processes,
            Ok(Err(problem)) => {
                tracing::warn!(target: "nxops::supervisor", "{problem}");
                return;
            }
            Err(_) => return,
        };
        let (root, settings) = (&self.0.shared.root, &self.0.settings);
        for (name, given) in processes {
            let location = format!("detached process {name}");
            let started = match spec::parse(&name, given, root, settings, &location) {
                Ok(spec) => self.start_now(&name, Some(spec)).await.map(|_| ()),
                Err(err) => Err(RpcError::invalid_params("nxops/process/start", err.to_string())),
            };
            match started {
                Ok(()) => tracing::info!(target: "nxops::supervisor", "started detached process {name} again"),
                Err(err @ RpcError::InvalidParams { .. }) => {
                    tracing::warn!(target: "nxops::supervisor", "detached process {name} not started again: {err}");
                    self.0.detached.forget(&name).await;
                }
                Err(err) => tracing::warn!(target: "nxops::supervisor", "detached process {name}: {err}"),
            }
        }
    }

    /// The detached processes' book (recorded by `nxops/process/start` and `stop`).
    pub fn detached(&self) -> &Detached {
        &self.0.detached
    }

    /// Waits until leftovers are handled and declared processes are started.
    pub async fn ready(&self) {
        let mut ready = self.0.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Reads nxops.json again and brings declared processes in line with it:
    /// new ones start (when autostart), changed ones restart, removed ones stop.
    pub fn reload(&self) -> Result<ConfigView, RpcError> {
        let root = &self.0.shared.root;
        let mut view = lock(&self.0.config).clone();
        view.blocked.clear();
        view.problem = None;
        let file = match NxopsJson::read(root) {
            Ok(file) => file,
            Err(err) => {
                view.problem = Some(err.to_string());
                *lock(&self.0.config) = view;
                return Err(err.into());
            }
        };
        let Some(file) = file else {
            view.exists = false;
            view.sha256 = None;
            view.trust = None;
            *lock(&self.0.config) = view.clone();
            self.retire_config_services(&[]);
            return Ok(view);
        };
        view.exists = true;
        view.sha256 = Some(file.sha256.clone());
        let mut specs = Vec::new();
        for (name, value) in &file.processes {
            let location = format!("{} processes.{name}", file.path.display());
            match spec::parse(name, value.clone(), root, &self.0.settings, &location) {
                Ok(spec) => specs.push(spec),
                Err(err) => {
                    view.problem = Some(err.to_string());
                    *lock(&self.0.config) = view;
                    return Err(crate::config::ConfigError { location: err.location, problem: err.problem }.into());
                }
            }
        }
        let trust = trust::check(&self.0.env, &file.path, &file.sha256);
        view.trust = Some(trust);
        if trust != Trust::Allowed {
            let what = if trust == Trust::Changed { "has changed since it was allowed" } else { "is not allowed yet" };
            if !specs.is_empty() {
                view.problem = Some(format!(
                    "{} {what}: its {} process(es) will not start until you review it and run `nxops trust`",
                    file.path.display(),
                    specs.len()
                ));
            }
            view.blocked = specs;
            *lock(&self.0.config) = view.clone();
            // Processes started under an earlier allowance keep running until stopped.
            return Ok(view);
        }
        *lock(&self.0.config) = view.clone();
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        for spec in specs {
            self.apply_declared(spec);
        }
        self.retire_config_services(&names);
        Ok(view)
    }

    fn apply_declared(&self, spec: ProcessSpec) {
        let mut services = self.services();
        match services.get(&spec.name) {
            None => {
                let autostart = spec.autostart && !self.0.shared.stopped();
                let name = spec.name.clone();
                services.insert(name, service::create(&self.0.shared, spec, Origin::Config, autostart));
                self.0.specs_changed.notify_one();
            }
            Some(existing) if existing.view().spec != spec => {
                let running = matches!(existing.view().state, State::Running | State::Backoff);
                let _ = existing.tx.send(Cmd::Respec(Box::new(spec)));
                if running {
                    let (reply, _) = oneshot::channel();
                    let _ = existing.tx.send(Cmd::Restart { reply });
                }
            }
            Some(_) => {}
        }
    }

    fn retire_config_services(&self, keep: &[String]) {
        let mut services = self.services();
        let gone: Vec<String> = services
            .iter()
            .filter(|(name, s)| s.view().origin == Origin::Config && !keep.contains(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            // Dropping the last sender ends the task, which stops its run first.
            services.remove(&name);
        }
    }

    /// Starts a declared process, or a client's process when `spec` is given.
    pub async fn start_process(&self, name: &str, spec: Option<ProcessSpec>) -> Result<View, RpcError> {
        self.ready().await;
        self.start_now(name, spec).await
    }

    /// `start_process` without waiting for start-up (which calls it itself).
    async fn start_now(&self, name: &str, spec: Option<ProcessSpec>) -> Result<View, RpcError> {
        if self.0.shared.stopped() {
            return Err(RpcError::OwnerUnavailable("the workspace is being detached".into()));
        }
        let service = match spec {
            Some(spec) => {
                if lock(&self.0.config).blocked.iter().any(|s| s.name == name) {
                    return Err(RpcError::invalid_params(
                        "nxops/process/start",
                        format!("name: {name:?} is declared in nxops.json; pick another name for your own process"),
                    ));
                }
                let mut services = self.services();
                match services.get(name) {
                    Some(existing) if existing.view().origin == Origin::Config => {
                        return Err(RpcError::invalid_params(
                            "nxops/process/start",
                            format!("name: {name:?} is declared in nxops.json; start it without a command"),
                        ));
                    }
                    Some(existing) => {
                        let _ = existing.tx.send(Cmd::Respec(Box::new(spec)));
                        self.0.specs_changed.notify_one();
                        existing.clone()
                    }
                    None => {
                        let created = service::create(&self.0.shared, spec, Origin::Client, false);
                        services.insert(name.to_string(), created.clone());
                        self.0.specs_changed.notify_one();
                        created
                    }
                }
            }
            None => self.find(name)?,
        };
        let (reply, answer) = oneshot::channel();
        let _ = service.tx.send(Cmd::Start { reply });
        match answer.await {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => return Err(RpcError::Failed(anyhow::anyhow!("{name}: {problem}"))),
            Err(_) => return Err(RpcError::Failed(anyhow::anyhow!("{name}: the process was removed"))),
        }
        self.settle(&service).await;
        Ok(service.view().current())
    }

    /// Waits briefly until the service's task has acted on a start (running, or failed to start).
    async fn settle(&self, service: &Service) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && matches!(service.view().state, State::Stopped | State::Exited | State::Failed)
            && service.view().pid.is_none()
            && service.view().last_exit.is_none()
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub async fn stop_process(&self, name: &str, force: bool) -> Result<View, RpcError> {
        let service = self.find(name)?;
        let (reply, answer) = oneshot::channel();
        let _ = service.tx.send(Cmd::Stop { force, reply });
        let _ = answer.await;
        Ok(service.view().current())
    }

    /// Stops a client's process (force: SIGKILL at once) and forgets it, so its
    /// name is free again. A declared process is only stopped: the file owns it.
    pub async fn remove_process(&self, name: &str, force: bool) {
        let Ok(service) = self.find(name) else { return };
        let (reply, answer) = oneshot::channel();
        let _ = service.tx.send(Cmd::Stop { force, reply });
        let _ = answer.await;
        if service.view().origin == Origin::Client {
            let mut services = self.services();
            if services.get(name).is_some_and(|s| Arc::ptr_eq(s, &service)) {
                services.remove(name);
            }
            drop(services);
            self.0.specs_changed.notify_one();
        }
    }

    pub async fn restart_process(&self, name: &str) -> Result<View, RpcError> {
        self.ready().await;
        let service = self.find(name)?;
        let (reply, answer) = oneshot::channel();
        let _ = service.tx.send(Cmd::Restart { reply });
        match answer.await {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => return Err(RpcError::Failed(anyhow::anyhow!("{name}: {problem}"))),
            Err(_) => return Err(RpcError::Failed(anyhow::anyhow!("{name}: the process was removed"))),
        }
        Ok(service.view().current())
    }

    /// The last `lines` lines of each stream, and the log files.
    pub fn logs(&self, name: &str, lines: usize) -> Result<Value, RpcError> {
        let service = self.find(name)?;
        Ok(json!({
            "name": name,
            "stdout": service.stdout.tail(lines),
            "stderr": service.stderr.tail(lines),
            "files": {"stdout": service.stdout.file(), "stderr": service.stderr.file()},
        }))
    }

    fn find(&self, name: &str) -> Result<Arc<Service>, RpcError> {
        let services = self.services();
        services.get(name).cloned().ok_or_else(|| {
            let blocked = lock(&self.0.config).blocked.iter().any(|s| s.name == name);
            if blocked {
                let problem = lock(&self.0.config).problem.clone().unwrap_or_default();
                return RpcError::NotAllowed(format!("{name:?} cannot start: {problem}"));
            }
            let known: Vec<&str> = services.keys().map(String::as_str).collect();
            let hint = crate::config::suggest(name, known.iter().copied())
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            RpcError::invalid_params(
                "process",
                format!(
                    "no process named {name:?}{hint} (known: {})",
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ),
            )
        })
    }

    /// Every process with fresh memory, CPU and tree figures.
    pub async fn list(&self) -> ListView {
        self.ready().await;
        self.sample(false).await;
        let processes = self.services().values().map(|s| s.view().current()).collect();
        let unattributed = lock(&self.0.unattributed).clone();
        ListView {
            workspace: self.0.shared.root.clone(),
            config: lock(&self.0.config).clone(),
            processes,
            unattributed,
            leftovers_ended: lock(&self.0.leftovers).clone(),
            orphans_reaped: crate::reaper::orphans_reaped(),
        }
    }

    /// One `/proc` pass over every running tree: memory, CPU, members; with
    /// `judge`, memory limits and the leak detector act on the figures.
    async fn sample(&self, judge: bool) {
        let services: Vec<Arc<Service>> = self.services().values().cloned().collect();
        let runs: Vec<tree::RunId> = services
            .iter()
            .filter_map(|s| {
                let v = s.view();
                Some(tree::RunId { name: v.name.clone(), run: v.run, leader: v.pid?, pgid: v.pgid? })
            })
            .collect();
        let key = self.0.shared.key.clone();
        let sampled = tokio::task::spawn_blocking(move || tree::trees(&key, &runs, &crate::reaper::is_watched)).await;
        let Ok(trees) = sampled else { return };
        *lock(&self.0.unattributed) =
            trees.unattributed.iter().map(|p| Unattributed { pid: p.pid, command: procfs::cmdline(p.pid) }).collect();
        let ticks = procfs::ticks_per_second() as f64;
        let now = Instant::now();
        for service in services {
            let (name, run, spec) = {
                let v = service.view();
                if v.pid.is_none() {
                    continue;
                }
                (v.name.clone(), v.run, v.spec.clone())
            };
            let members = trees.of(&name, run);
            let live: Vec<&procfs::ProcStat> = members.iter().filter(|p| !p.is_zombie()).collect();
            let rss: u64 = live.iter().map(|p| p.rss_bytes).sum();
            let cpu: u64 = live.iter().map(|p| p.cpu_ticks).sum();
            let cpu_percent = {
                let mut last = lock(&service.last_cpu);
                let percent = match *last {
                    Some((ticks_before, at, r)) if r == run => {
                        let secs = now.duration_since(at).as_secs_f64();
                        if secs > 0.0 { (cpu.saturating_sub(ticks_before) as f64 / ticks / secs) * 100.0 } else { 0.0 }
                    }
                    _ => 0.0,
                };
                *last = Some((cpu, now, run));
                percent
            };
            {
                let mut view = service.view();
                if view.run != run {
                    continue;
                }
                view.rss_bytes = rss;
                view.cpu_percent = (cpu_percent * 10.0).round() / 10.0;
                view.pids = members.iter().map(|p| p.pid).collect();
                view.sampled_zombies(members.iter().filter(|p| p.is_zombie()).map(|p| p.pid).collect());
            }
            if !judge {
                continue;
            }
            if let Some(limit) = spec.memory_limit.filter(|limit| rss > *limit) {
                use crate::config::units::format_size;
                let reason = format!("memory {} over the limit of {}", format_size(rss), format_size(limit));
                let _ = service.tx.send(Cmd::Fail { reason });
                continue;
            }
            if let Some(rule) = spec.leak {
                let at = self.0.started.elapsed();
                let found = lock(&service.leak).push(&rule, at, rss);
                if let Some(found) = found {
                    self.0.shared.publish(
                        "processMemoryLeak",
                        json!({"name": name, "pid": live.first().map(|p| p.pid), "rssBytes": rss,
                               "bytesPerMinute": found.bytes_per_minute.round() as u64, "growthBytes": found.growth,
                               "windowMs": rule.window.as_millis() as u64, "samples": found.samples,
                               "fit": (found.r_squared * 1000.0).round() / 1000.0,
                               "action": if rule.restart { "restart" } else { "report" }}),
                    );
                    if rule.restart {
                        let reason = format!(
                            "memory grew {}/min for {}",
                            crate::config::units::format_size(found.bytes_per_minute as u64),
                            crate::config::units::format_duration(rule.window)
                        );
                        let _ = service.tx.send(Cmd::Fail { reason });
                    }
                }
            }
        }
    }

    async fn sample_forever(&self) {
        let mut stop = self.0.stop_sampler.subscribe();
        loop {
            let interval = self
                .services()
                .values()
                .map(|s| s.view().spec.sample_interval)
                .min()
                .unwrap_or(self.0.settings.process_health_interval())
                .max(Duration::from_millis(50));
            tokio::select! {
                () = tokio::time::sleep(interval) => self.sample(true).await,
                () = self.0.specs_changed.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Stops every process (each with its stop timeout, all at once) and the sampler.
    pub async fn shutdown(&self) {
        self.0.shared.stopping.store(true, Ordering::Relaxed);
        self.0.stop_sampler.send_replace(true);
        let services: Vec<Arc<Service>> = self.services().values().cloned().collect();
        let stops = services.iter().map(|service| {
            let (reply, answer) = oneshot::channel();
            let _ = service.tx.send(Cmd::Stop { force: false, reply });
            answer
        });
        futures_util::future::join_all(stops).await;
    }

    /// Every process's state as of the last sample, without sampling `/proc`.
    pub fn states(&self) -> Vec<crate::health::ProcessHealth> {
        self.services()
            .values()
            .map(|s| {
                let v = s.view();
                let state = serde_json::to_value(v.state).ok().and_then(|s| s.as_str().map(str::to_string));
                crate::health::ProcessHealth {
                    name: v.name.clone(),
                    state: state.unwrap_or_default(),
                    given_up: v.given_up.clone(),
                    zombies: v.zombies.len(),
                }
            })
            .collect()
    }

    /// `(name, restarts)` of every process.
    pub fn restarts(&self) -> Vec<(String, u32)> {
        self.services()
            .values()
            .map(|s| {
                let view = s.view();
                (view.name.clone(), view.restarts)
            })
            .collect()
    }

    /// The longest stop timeout of any process, for the sidecar's exit deadline.
    pub fn longest_stop(&self) -> Duration {
        self.services().values().map(|s| s.view().spec.stop_timeout).max().unwrap_or_default()
    }

    pub fn config(&self) -> ConfigView {
        lock(&self.0.config).clone()
    }

    /// Starts a process that another part of nxops manages itself (an MCP
    /// server of a pool), with everything that makes supervised processes safe:
    /// its own process group, the run's marker, and the ledger record, so a
    /// crashed sidecar's successor ends it too. End it with [`Supervisor::end_managed`].
    /// Waits until the previous owner's leftovers are ended (they carry the same marker).
    pub async fn spawn_managed(&self, name: &str, command: &mut std::process::Command) -> std::io::Result<Managed> {
        self.ready().await;
        let shared = &self.0.shared;
        let run = shared.next_run();
        command.env(tree::MARKER_VAR, tree::marker(&shared.key, name, run));
        std::os::unix::process::CommandExt::process_group(command, 0);
        let child = crate::reaper::spawn(command)?;
        let start_time = procfs::stat(child.pid).map_or(0, |s| s.start_time);
        let record = ledger::Record { run, pid: child.pid, pgid: child.pid, start_time, stop_timeout_ms: 5000 };
        shared.ledger().started(&format!("{name}#{run}"), record);
        Ok(Managed { name: name.to_string(), run, child })
    }

    /// Ends a managed process's whole tree (SIGTERM, then SIGKILL after `timeout`)
    /// and forgets its ledger record.
    pub async fn end_managed(&self, name: &str, run: u64, pid: u32, exit: crate::reaper::ExitWatch, timeout: Duration) {
        let id = tree::RunId { name: name.to_string(), run, leader: pid, pgid: pid };
        service::end_tree(self.0.shared.clone(), id, exit, timeout).await;
        self.0.shared.ledger().ended(&format!("{name}#{run}"), run);
    }

    /// The runtime the supervisor's tasks run on.
    pub fn runtime(&self) -> &Handle {
        &self.0.shared.runtime
    }
}

/// A process started by [`Supervisor::spawn_managed`].
pub struct Managed {
    pub name: String,
    pub run: u64,
    pub child: crate::reaper::Child,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
