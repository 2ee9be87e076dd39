//! Pools of warm stdio MCP servers per workspace (see ARCHITECTURE.md, "Code map").
//!
//! `McpPools` is what a workspace's owner keeps: the servers discovered in the
//! files users already have (`config`), and a `pool::Pool` for each stdio server
//! whose file is allowed (workspace files need `nxops trust`; the user's own
//! Claude Desktop config does not). http and sse servers are listed, not pooled.

pub mod config;
pub mod conn;
pub mod pool;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use self::config::{Discovered, PoolSettings, ServerDef, Transport};
use self::conn::Launch;
use self::pool::{Pool, PoolView};
use crate::environment::Environment;
use crate::supervisor::Supervisor;
use crate::trust::{self, Trust};

/// One configured server, as `nxops/mcp/servers` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerView {
    pub name: String,
    pub transport: &'static str,
    pub source: PathBuf,
    pub source_kind: &'static str,
    pub command: Option<String>,
    pub url: Option<String>,
    pub pooled: bool,
    /// Why the server is not pooled, when it is not.
    pub reason: Option<String>,
    pub trust: Option<Trust>,
    pub pool: Option<PoolView>,
}

/// How a stdio server starts; `None` for http and sse servers.
fn launch_of(server: &ServerDef) -> Option<Launch> {
    Some(Launch {
        server: server.name.clone(),
        command: server.command.clone()?,
        args: server.args.clone(),
        env: server.env.clone(),
        cwd: server.cwd.clone(),
    })
}

/// How one configured server looks to clients; `reason` says why it is not pooled.
pub fn view(server: &ServerDef, env: &Environment, reason: Option<String>, pool: Option<PoolView>) -> ServerView {
    ServerView {
        name: server.name.clone(),
        transport: server.transport.as_str(),
        source: server.source.path.clone(),
        source_kind: server.source.kind.label(),
        command: server.command.clone(),
        url: server.url.clone(),
        pooled: reason.is_none(),
        reason,
        trust: server.source.workspace_file.then(|| trust::check(env, &server.source.path, &server.sha256)),
        pool,
    }
}

#[derive(Clone)]
pub struct McpPools(Arc<Inner>);

struct Inner {
    root: PathBuf,
    env: Environment,
    sup: Supervisor,
    /// The one server whose pool warms, when not all do (see `start`).
    warm_only: Option<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    discovered: Discovered,
    settings_problem: Option<String>,
    pools: BTreeMap<String, Pool>,
}

impl McpPools {
    /// Discovers the workspace's servers and starts a pool for each allowed stdio one.
    /// With `warm_only`, only that server's pool keeps warm connections; the others
    /// have `min_idle` 0, so their first connection opens when first asked.
    pub fn start(root: &Path, env: &Environment, sup: Supervisor, warm_only: Option<String>) -> McpPools {
        let pools = McpPools(Arc::new(Inner {
            root: root.to_path_buf(),
            env: env.clone(),
            sup,
            warm_only,
            state: Mutex::default(),
        }));
        pools.reload();
        pools
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the files again: new allowed servers get a pool, servers no longer
    /// allowed or configured, or started another way, lose theirs (their
    /// connections close), and changed settings apply to the running pools.
    pub fn reload(&self) {
        let discovered = config::discover(&self.0.root, &self.0.env);
        let nxops = crate::workspace::nxops_json::NxopsJson::read(&self.0.root);
        let (settings, problem) = match nxops {
            Ok(file) => match config::pool_settings(file.as_ref().and_then(|f| f.mcp.as_ref()), "nxops.json mcp") {
                Ok(settings) => (settings, None),
                Err(err) => ((PoolSettings::default(), BTreeMap::new()), Some(err.to_string())),
            },
            Err(err) => ((PoolSettings::default(), BTreeMap::new()), Some(err.to_string())),
        };
        let wanted: BTreeMap<String, (Launch, PoolSettings)> = discovered
            .servers
            .iter()
            .filter(|s| self.pooled_reason(s).is_none())
            .filter_map(|s| {
                let launch = launch_of(s)?;
                let mut settings = settings.1.get(&s.name).cloned().unwrap_or_else(|| settings.0.clone());
                if self.0.warm_only.as_ref().is_some_and(|only| *only != s.name) {
                    settings.min_idle = 0;
                }
                Some((s.name.clone(), (launch, settings)))
            })
            .collect();
        let retired: Vec<Pool> = {
            let mut state = self.state();
            // A server no longer configured, or now started another way, loses its pool.
            let gone: Vec<String> = state
                .pools
                .iter()
                .filter(|(n, pool)| wanted.get(*n).is_none_or(|(launch, _)| pool.launch() != launch))
                .map(|(n, _)| n.clone())
                .collect();
            let retired = gone.iter().filter_map(|n| state.pools.remove(n)).collect();
            for (name, (launch, settings)) in wanted {
                match state.pools.get(&name) {
                    Some(pool) if pool.settings() != settings => pool.update(settings),
                    Some(_) => {}
                    None => {
                        state.pools.insert(name, Pool::start(self.0.sup.clone(), launch, settings));
                    }
                }
            }
            state.discovered = discovered;
            state.settings_problem = problem;
            retired
        };
        for pool in retired {
            self.0.sup.runtime().spawn(async move { pool.shutdown().await });
        }
    }

    /// `None` when the server can be pooled; else why not.
    fn pooled_reason(&self, server: &ServerDef) -> Option<String> {
        if server.transport != Transport::Stdio {
            return Some(format!("{} servers are listed, not pooled", server.transport.as_str()));
        }
        if server.source.workspace_file
            && trust::check(&self.0.env, &server.source.path, &server.sha256) != Trust::Allowed
        {
            return Some(format!("{} is not allowed: review it, then run `nxops trust`", server.source.path.display()));
        }
        None
    }

    /// How `name`'s server starts for an agent whose variables are `agent`
    /// (`nxops mcp proxy` sends its environment with its first request), when
    /// that differs from how the pool starts it: the entry is expanded again
    /// with the agent's variables over the owner's, so an `env` the agent's
    /// config gives the proxy reaches every `${VAR}` the entry names. `None`
    /// when the pool's servers serve the agent: the same values, an entry the
    /// agent's variables cannot expand either, or a file changed since it was
    /// allowed (the next reload deals with that). Reads the MCP files: call it
    /// off the runtime's threads.
    pub fn launch_for(&self, name: &str, agent: &BTreeMap<String, String>) -> Option<Launch> {
        let (source, pooled) = {
            let state = self.state();
            let pool = state.pools.get(name)?;
            let def = state.discovered.servers.iter().find(|s| s.name == name)?;
            ((def.source.path.clone(), def.sha256.clone()), pool.launch().clone())
        };
        let discovered = config::discover(&self.0.root, &self.0.env.overlaid(agent));
        let def = discovered.servers.into_iter().find(|s| s.name == name)?;
        // Only what the allowed file says, with other values: never another file's entry.
        if def.source.path != source.0 || def.sha256 != source.1 {
            return None;
        }
        launch_of(&def).filter(|own| *own != pooled)
    }

    pub fn pool(&self, name: &str) -> Option<Pool> {
        self.state().pools.get(name).cloned()
    }

    /// Every configured server, with its pool's figures.
    pub fn servers(&self) -> (Vec<ServerView>, Vec<String>) {
        let state = self.state();
        let views = state
            .discovered
            .servers
            .iter()
            .map(|s| view(s, &self.0.env, self.pooled_reason(s), state.pools.get(&s.name).map(Pool::view)))
            .collect();
        let mut problems = state.discovered.problems.clone();
        problems.extend(state.settings_problem.clone());
        (views, problems)
    }

    /// The workspace files that name MCP servers, for `nxops trust`.
    pub fn workspace_files(root: &Path, env: &Environment) -> Vec<config::SourceFile> {
        config::discover(root, env).files.into_iter().filter(|f| f.workspace_file).collect()
    }

    /// A session ended: every connection leased (or parked) under `key` ends,
    /// or goes back to its pool if the server is stateless (`Pool::end_session`).
    pub fn release_all(&self, key: &str) {
        let pools: Vec<Pool> = self.state().pools.values().cloned().collect();
        for pool in pools {
            pool.end_session(key);
        }
    }

    /// Closes idle connections beyond each pool's `min_idle` now; returns how many.
    pub async fn trim_idle(&self) -> usize {
        let pools: Vec<Pool> = self.state().pools.values().cloned().collect();
        let mut closed = 0;
        for pool in pools {
            closed += pool.trim_idle().await;
        }
        closed
    }

    pub async fn shutdown(&self) {
        let pools: Vec<Pool> = std::mem::take(&mut self.state().pools).into_values().collect();
        futures_util::future::join_all(pools.iter().map(Pool::shutdown)).await;
    }
}
