//! The command line: clap definitions only. Parsing happens here; building the
//! configuration and running commands happens in `app`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keeps Nx workspaces healthy: task cache, processes, MCP servers, sessions.
#[derive(Debug, Parser)]
#[command(name = "nxops", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The Nx workspace (default: the nearest folder with nx.json, from the current directory up)
    #[arg(long, global = true, value_name = "PATH")]
    pub workspace: Option<PathBuf>,
    /// Print machine-readable JSON carrying the same data as the human output
    #[arg(long, global = true)]
    pub json: bool,
    /// Log more detail to stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Log only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Override a setting for this command, e.g. --set cache.maxSize=2GB (repeatable)
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Facts about this machine and the workspace's toolchain
    System {
        #[command(subcommand)]
        command: SystemCommand,
    },
    /// Where the workspace's cache, database and state live, and every setting with its source
    Env {
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// Inspect and manage the workspace's Nx task cache
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Supervised processes of the workspace (run by its sidecar)
    Proc {
        #[command(subcommand)]
        command: ProcCommand,
    },
    /// Sessions of the workspace's clients, and named sessions for scripts
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Performance upkeep
    Perf {
        #[command(subcommand)]
        command: PerfCommand,
    },
    /// The workspace's health
    Monitor {
        #[command(subcommand)]
        command: MonitorCommand,
    },
    /// MCP servers of the workspace, pooled warm by its sidecar
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
    /// Allow the commands in the workspace's nxops.json to run (like `direnv allow`)
    Trust(TrustArgs),
    /// Check the maintenance thresholds now and clean the cache when one is passed
    Maintain {
        /// Do nothing when the last check is younger than cache.checkInterval (what the Nx plugin runs after a run)
        #[arg(long)]
        if_due: bool,
    },
    /// Run the sidecar that editors, the Nx plugin and scripts talk to
    Serve(ServeArgs),
    /// Send one JSON-RPC request to the workspace's sidecar (or answer it in-process) and print the result
    Call(CallArgs),
}

/// `nxops serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Speak JSON-RPC 2.0 with LSP framing on stdin/stdout (the only transport)
    #[arg(long, required = true)]
    pub stdio: bool,
    /// Serve the figures in Prometheus text format at http://ADDR/metrics (loopback only, e.g. 127.0.0.1:9464)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

/// `nxops call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The method, e.g. nxops/status
    pub method: String,
    /// Its params as a JSON object (default {})
    pub params: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Entries, size, age, hit rate and biggest consumers, from Nx's database in milliseconds
    Stats {
        /// Also walk the disk: apparent and allocated bytes, and orphans the database does not know
        #[arg(long)]
        deep: bool,
        /// The team cache's figures instead: asks the `nxops cache serve` that
        /// NX_SELF_HOSTED_REMOTE_CACHE_SERVER names, with NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN
        #[arg(long, conflicts_with = "deep")]
        remote: bool,
    },
    /// Evict by age, then least recently used down to 90% of the size limit, then sweep orphans
    Clean {
        /// Size limit for this run (default: the cache.maxSize setting), e.g. 2GB
        #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
        max_size: Option<String>,
        /// Age limit for this run (default: the cache.maxAge setting), e.g. 3d
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        max_age: Option<String>,
        /// Print what would be removed and remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Also remove entries used in the last hour and entries of running tasks
        #[arg(long)]
        force: bool,
    },
    /// Run the workspace's nx reset (cache only unless --all); clean up by hand if it fails or hangs
    Reset {
        /// Everything nx reset removes: cache, database, workspace data, daemon
        #[arg(long)]
        all: bool,
        /// How long nx reset may take before the manual fallback
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        timeout: String,
    },
    /// Find entries Nx would serve wrong (empty, partial, or changed since first seen)
    Verify {
        /// Evict the entries found, so the next run is a clean miss
        #[arg(long)]
        fix: bool,
    },
    /// Serve Nx's remote-cache API (GET and PUT /v1/cache/HASH) for a team, from the store in FILE
    Serve {
        /// The server's configuration file (store, tokens, limits)
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
        /// Address to listen on, e.g. 0.0.0.0:4300 (default: the file's listen, else 127.0.0.1:4300)
        #[arg(long, value_name = "ADDR", env = "NXOPS_CACHE_LISTEN")]
        listen: Option<String>,
        /// Check the file and the store, then exit: 0 when sound, 2 when not
        #[arg(long)]
        check: bool,
    },
    /// Make a token for `cache serve`: the token for the client, and its entry for the server's file
    Token {
        /// A name for the token, shown in the server's logs and stats
        #[arg(long)]
        name: String,
        /// What the token may do: read (developers' machines) or read-write (CI)
        #[arg(long, value_enum, default_value = "read")]
        access: TokenAccess,
        /// Keep the token's artifacts under this prefix of the store, e.g. team-a/
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TokenAccess {
    Read,
    ReadWrite,
}

#[derive(Debug, Subcommand)]
pub enum ProcCommand {
    /// State, pid, uptime, restarts, memory and CPU of every process (and what nxops.json declares)
    List,
    /// Start a declared process, or with `-- COMMAND ARGS...` a process of your own
    Start {
        name: String,
        /// Restart mode for your own process: always, on-failure or never
        #[arg(long)]
        restart: Option<String>,
        /// Working folder for your own process (relative to the workspace root)
        #[arg(long)]
        cwd: Option<String>,
        /// An environment variable for your own process, NAME=VALUE (repeatable)
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Put your own process in this open session (it stops when the session ends);
        /// without it, the process runs until you stop it
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// The command and its arguments, after `--`
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Stop a process and everything it started: SIGTERM, then SIGKILL after its stop timeout
    Stop {
        name: String,
        /// SIGKILL at once
        #[arg(long)]
        force: bool,
    },
    /// Stop a process, then start it again
    Restart { name: String },
    /// The last lines of a process's stdout and stderr
    Logs {
        name: String,
        /// How many lines of each stream (at most 200)
        #[arg(long, default_value_t = 50)]
        lines: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Every session: kind, state, client, its processes and MCP servers, when it expires
    List,
    /// Open a named session that outlives this command (or find it: a sign of life)
    Open {
        name: String,
        /// How long it lives after its last sign of life (default: the sessions.namedTimeout setting)
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// A label kept with it, KEY=VALUE (repeatable)
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Close a session: release its MCP leases and stop its processes
    Close {
        id: String,
        /// Kill its processes and close its connections at once
        #[arg(long)]
        force: bool,
    },
    /// Stop a session's processes and MCP connections and start them again
    Restart { id: String },
    /// A sign of life that keeps a named session open
    Heartbeat { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PerfCommand {
    /// Every maintenance action now (cache, idle MCP connections, the Nx daemon), with figures before and after
    Optimize,
}

#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// One health check; exit code 0 for Excellent or Good, 1 for Fair or Poor, 2 for Critical
    Check,
    /// A live health view, refreshed in place on a terminal (JSON lines with --json), until interrupted
    Start {
        /// Time between checks
        #[arg(long, default_value = "2s")]
        interval: String,
        /// Stop after this many checks (default: run until interrupted)
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Every MCP server from the workspace's files, with its pool's figures
    List,
    /// Be the MCP stdio server SERVER for an agent, backed by a warm pooled connection
    Proxy { server: String },
}

/// `nxops trust`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Withdraw the allowance
    #[arg(long, conflicts_with = "status")]
    pub revoke: bool,
    /// Only show whether the file is allowed and what it would run
    #[arg(long)]
    pub status: bool,
    /// Allow only if the file still has this sha256 (as shown by --status)
    #[arg(long)]
    pub sha256: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// OS, kernel, CPU, memory, the cache volume, and node/npm/pnpm/nx versions
    Info,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Workspace root, Nx cache and database folders, nxops state folder, settings and NX_* variables
    Info,
}
