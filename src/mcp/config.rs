//! Which MCP servers a workspace has: read from the files users already have.
//!
//! nxops does not invent a list of its own: people already describe their MCP servers for Claude
//! Code, VS Code, Cursor and Claude Desktop. [`discover`] reads those files, in this order, and the
//! first definition of a name wins (a later one is reported, never merged):
//!
//! 1. `<root>/.mcp.json` (Claude Code): `{"mcpServers": {NAME: {type?, command, args, env, url,
//!    headers}}}`. `${VAR}` and `${VAR:-default}` expand from the environment; the default applies
//!    when the variable is unset (an empty value is a value).
//! 2. `<root>/.vscode/mcp.json` (VS Code, JSONC): `{"servers": {...}, "inputs": [...]}`. Stdio
//!    entries may add `envFile`, a dotenv file relative to the root. Editor variables expand (below);
//!    `${input:ID}` is a value VS Code prompts for, so nxops cannot start such a server.
//! 3. `<root>/.cursor/mcp.json` (Cursor): `mcpServers`, with the same editor variables. An `envFile`
//!    is honoured here too when an entry names one: a server started without the variables it
//!    names would only fail later and less clearly.
//! 4. Claude Desktop's `claude_desktop_config.json` in `$XDG_CONFIG_HOME/Claude/`, else
//!    `~/.config/Claude/` (Electron's user data folder on Linux): `mcpServers` with command, args
//!    and env. Nothing is expanded: we found no documented substitution for this file, only
//!    reports of values passed through as written, so we are not sure it expands anything and
//!    expand nothing (see `FileKind::syntax`).
//!
//! Every file is parsed as JSONC (comments, trailing commas): VS Code allows them, and accepting
//! them in the others costs nothing. Within one file, servers come in name order.
//!
//! ## Entries
//!
//! The transport is `type` (`stdio`, `http` or its alias `streamable-http`, `sse`); without one, a
//! `command` means stdio and a `url` means http (sse only when asked for). `command` is a non-empty
//! string, `args` an array of strings, `env` and `headers` objects of strings. Only the fields of
//! the server's transport are expanded. Names are pool keys: 1 to 64 of `[A-Za-z0-9._-]`.
//!
//! Editor variables (VS Code and Cursor): `${workspaceFolder}` (the root),
//! `${workspaceFolderBasename}`, `${userHome}`, `${pathSeparator}` and `${/}`, `${env:NAME}`.
//! `${input:ID}`, `${command:...}` and `${config:...}` need the editor and make the server
//! unusable here. Other `${...}` text is left as written. VS Code resolves an unset `${env:NAME}` to
//! an empty string; nxops reports it instead, because a server started with an empty secret fails
//! later, far from the cause.
//!
//! In an `envFile`, each line is `KEY=VALUE` (optionally `export KEY=VALUE`); blank lines and
//! lines starting with `#` are skipped, values may be quoted with `"` (where `\n`, `\"` and `\\`
//! are escapes) or `'`, and an unquoted value ends at ` #`. Values are not expanded. The entry's
//! own `env` wins over the file.
//!
//! ## Problems
//!
//! Discovery never fails as a whole. Each problem names the file and the place in it
//! (`/ws/.mcp.json mcpServers.db.env.TOKEN: ...`): a bad entry skips that server, a file that
//! cannot be read or parsed skips the file, and a missing file is not a problem. A name is taken
//! by its first definition even when that definition is skipped, so which definition runs never
//! depends on whether a variable happens to be set.
//!
//! ## Trust
//!
//! Workspace files come from the repository and name commands, so like nxops.json they are used
//! only once the user has allowed their exact content (see `trust`): the allowance is the file's
//! path and [`SourceFile::sha256`], which every [`ServerDef`] from that file carries. An `envFile`
//! is part of what is trusted: when a file's servers read env files, the hash covers the file's
//! bytes and each env file's path and bytes, so editing either asks for a new allowance. The
//! user-level Claude Desktop file is the user's own, outside every repository, and needs no
//! allowance (as with processes a client starts: the user already runs that code).
//!
//! ## Why http and sse servers are listed but not pooled
//!
//! The pool exists to save a process's cold start (250 ms to 1.4 s measured for real servers); a
//! remote server has no process to keep warm, and its connection carries the client's own
//! credentials and session. They are listed so a client sees the workspace's whole set; their
//! `url` and `headers` are checked and expanded like everything else so their problems are
//! reported, but headers (often secrets) are not kept.
//!
//! ## Pool settings
//!
//! [`pool_settings`] reads nxops.json's `"mcp"` section: `defaults` and per-server overrides
//! (`servers.NAME`), field by field, with errors that name their place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::Digest;

use crate::config::ConfigError;
use crate::config::units::parse_duration;
use crate::environment::Environment;

/// How a client talks to the server. Only stdio servers are started and pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Stdio,
    Http,
    Sse,
}

/// Which tool's file a definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `<root>/.mcp.json`, Claude Code's project file.
    McpJson,
    /// `<root>/.vscode/mcp.json`.
    VsCode,
    /// `<root>/.cursor/mcp.json`.
    Cursor,
    /// The user's `claude_desktop_config.json`.
    ClaudeDesktop,
}

/// The file a definition comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub kind: FileKind,
    /// A repository file, used only once allowed; false for the user's own file.
    pub workspace_file: bool,
}

/// One usable server definition, with every value expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDef {
    /// As in the file; unique per workspace.
    pub name: String,
    pub transport: Transport,
    /// Stdio only.
    pub command: Option<String>,
    pub args: Vec<String>,
    /// After expansion, with the `envFile`'s variables under the entry's own.
    pub env: BTreeMap<String, String>,
    /// The workspace root.
    pub cwd: PathBuf,
    /// Http and sse only: listed, not pooled.
    pub url: Option<String>,
    pub source: Source,
    /// The source file's hash as trusted: [`SourceFile::sha256`].
    pub sha256: String,
}

/// A file that was read, with the hash an allowance must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub kind: FileKind,
    /// sha256 of the file's bytes, or, when its servers read env files, of that hash with each
    /// env file's path and hash (see the module doc, "Trust").
    pub sha256: String,
    pub workspace_file: bool,
}

/// What [`discover`] found.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// In file order, then name order within a file.
    pub servers: Vec<ServerDef>,
    /// One sentence each, naming the file and the field.
    pub problems: Vec<String>,
    /// The files read, in reading order (files skipped as a whole are not listed).
    pub files: Vec<SourceFile>,
}

/// Pool sizes and timings for one server.
///
/// Not `Copy`, so it can grow a field that is not (the pool clones it where it keeps one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Started servers kept waiting for a session (0: start on demand only).
    pub min_idle: usize,
    /// At most this many processes of the server at once.
    pub max: usize,
    /// An idle process beyond `min_idle` ends after this long.
    pub idle_timeout: Duration,
    /// How long a session waits for a free process before it fails.
    pub acquire_timeout: Duration,
    /// How often idle processes are checked.
    pub health_interval: Duration,
    /// Whether the server keeps no state between sessions, so that a process
    /// one session used may serve the next (`false`: every session gets a
    /// never-used process, and a released one ends).
    pub sharing: Sharing,
}

/// Whether one server process may serve one session after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// A process serves one session only (the default: MCP servers keep state per connection).
    #[default]
    OneSession,
    /// `"stateless": true`: a released process goes back to the idle set for any session.
    Stateless,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            min_idle: 1,
            max: 4,
            idle_timeout: Duration::from_secs(300),
            acquire_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(30),
            sharing: Sharing::OneSession,
        }
    }
}

/// Reads every MCP server definition of the workspace at `root` (absolute) and of the user.
pub fn discover(root: &Path, env: &Environment) -> Discovered {
    let mut out = Discovered::default();
    let mut claimed = BTreeMap::new();
    for source in sources(root, env) {
        read_source(source, root, env, &mut claimed, &mut out);
    }
    out
}

/// The pool settings in nxops.json's `"mcp"` value: the defaults, then each server's.
///
/// `location` names the value in errors (`nxops.json mcp`); fields are appended to it
/// (`nxops.json mcp.servers.memory.max`).
pub fn pool_settings(
    mcp: Option<&Value>,
    location: &str,
) -> Result<(PoolSettings, BTreeMap<String, PoolSettings>), ConfigError> {
    let Some(mcp) = mcp else { return Ok((PoolSettings::default(), BTreeMap::new())) };
    let top = object_at(mcp, location)?;
    reject_unknown(top, &["defaults", "servers"], location)?;
    let defaults = match top.get("defaults") {
        None => PoolSettings::default(),
        Some(value) => overlay(PoolSettings::default(), value, &format!("{location}.defaults"))?,
    };
    let mut servers = BTreeMap::new();
    if let Some(value) = top.get("servers") {
        for (name, value) in object_at(value, &format!("{location}.servers"))? {
            let here = format!("{location}.servers.{name}");
            check_name(name).map_err(|problem| ConfigError { location: here.clone(), problem })?;
            servers.insert(name.clone(), overlay(defaults.clone(), value, &here)?);
        }
    }
    Ok((defaults, servers))
}

/// Server names are pool keys: 1 to 64 ASCII letters, digits, `.`, `_` or `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid { Ok(()) } else { Err("is not a usable server name (1 to 64 letters, digits, '.', '_' or '-')".into()) }
}

/// Claude Desktop's file on Linux: Electron's user data folder, `$XDG_CONFIG_HOME/Claude`,
/// else `~/.config/Claude`.
pub fn claude_desktop_config(env: &Environment) -> Option<PathBuf> {
    let config = match env.get_non_empty("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => env.home()?.join(".config"),
    };
    Some(config.join("Claude").join("claude_desktop_config.json"))
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
            Transport::Sse => "sse",
        }
    }
}

impl FileKind {
    /// The tool whose file this is, for people.
    pub fn label(self) -> &'static str {
        match self {
            FileKind::McpJson => "Claude Code",
            FileKind::VsCode => "VS Code",
            FileKind::Cursor => "Cursor",
            FileKind::ClaudeDesktop => "Claude Desktop",
        }
    }

    fn servers_key(self) -> &'static str {
        match self {
            FileKind::VsCode => "servers",
            _ => "mcpServers",
        }
    }

    fn syntax(self) -> Syntax {
        match self {
            FileKind::McpJson => Syntax::ClaudeCode,
            FileKind::VsCode | FileKind::Cursor => Syntax::Editor,
            // Unsure: Claude Desktop documents no variables for this file, and users report values
            // reaching servers as written (`~` in modelcontextprotocol/mcpb#37). Expanding what the
            // app does not would start a server differently from how the user's app starts it.
            FileKind::ClaudeDesktop => Syntax::Literal,
        }
    }

    fn reads_env_file(self) -> bool {
        matches!(self, FileKind::VsCode | FileKind::Cursor)
    }
}

impl Discovered {
    /// The server with this name.
    pub fn get(&self, name: &str) -> Option<&ServerDef> {
        self.servers.iter().find(|s| s.name == name)
    }
}

fn sources(root: &Path, env: &Environment) -> Vec<Source> {
    let workspace = |relative: &str, kind| Source { path: root.join(relative), kind, workspace_file: true };
    let mut list = vec![
        workspace(".mcp.json", FileKind::McpJson),
        workspace(".vscode/mcp.json", FileKind::VsCode),
        workspace(".cursor/mcp.json", FileKind::Cursor),
    ];
    if let Some(path) = claude_desktop_config(env) {
        list.push(Source { path, kind: FileKind::ClaudeDesktop, workspace_file: false });
    }
    list
}

/// Reads one file into `out`. `claimed` maps each name taken so far to where it was defined.
fn read_source(
    source: Source,
    root: &Path,
    env: &Environment,
    claimed: &mut BTreeMap<String, String>,
    out: &mut Discovered,
) {
    let Some((bytes, servers)) = load(&source, &mut out.problems) else { return };
    let reader = Reader { source: &source, expander: Expander { syntax: source.kind.syntax(), root, env } };
    let mut entries = Vec::new();
    let mut env_files = BTreeMap::new();
    for (name, value) in &servers {
        let pointer = server_pointer(source.kind, name);
        if let Err(why) = check_name(name) {
            out.problems.push(format!("{} {pointer}: {why} (server skipped)", source.path.display()));
            continue;
        }
        let here = format!("{} ({pointer})", source.path.display());
        if let Some(first) = claimed.get(name) {
            out.problems.push(format!(
                "server {name:?} is defined again in {here}, first in {first}; the first definition is used"
            ));
            continue;
        }
        claimed.insert(name.clone(), here);
        match reader.entry(name, value) {
            Ok(entry) => {
                env_files.extend(entry.env_file.clone());
                entries.push(entry);
            }
            Err(bad) => out.problems.push(reader.problem(name, bad)),
        }
    }
    let sha256 = trusted_hash(&bytes, &env_files);
    out.servers.extend(entries.into_iter().map(|e| e.into_def(&source, root, &sha256)));
    out.files.push(SourceFile { path: source.path, kind: source.kind, sha256, workspace_file: source.workspace_file });
}

/// The file's bytes and its server entries; `None` (with a problem unless it is missing) when
/// the file is skipped.
fn load(source: &Source, problems: &mut Vec<String>) -> Option<(Vec<u8>, Map<String, Value>)> {
    let path = source.path.display();
    let bytes = match std::fs::read(&source.path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            problems.push(format!("{path}: cannot be read: {e} (file skipped)"));
            return None;
        }
    };
    let key = source.kind.servers_key();
    let skipped = match parse_jsonc(&bytes) {
        Err(why) => format!("{path}: {why} (file skipped)"),
        Ok(mut top) => match top.remove(key) {
            None => return Some((bytes, Map::new())),
            Some(Value::Object(servers)) => return Some((bytes, servers)),
            Some(_) => format!("{path} {key}: must be an object of server name to definition (file skipped)"),
        },
    };
    problems.push(skipped);
    None
}

fn parse_jsonc(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("is not UTF-8: {e}"))?;
    let value: Value = jsonc_parser::parse_to_serde_value(text, &jsonc_parser::ParseOptions::default())
        .map_err(|e| format!("is not valid JSON: {e}"))?;
    match value {
        Value::Object(top) => Ok(top),
        _ => Err("must hold a JSON object".into()),
    }
}

/// `mcpServers.memory`, or `mcpServers["my server"]` for a name that is not a plain word.
fn server_pointer(kind: FileKind, name: &str) -> String {
    match check_name(name) {
        Ok(()) => format!("{}.{name}", kind.servers_key()),
        Err(_) => format!("{}[{name:?}]", kind.servers_key()),
    }
}

/// The hash an allowance must match: the file's own, or that combined with its env files'.
fn trusted_hash(bytes: &[u8], env_files: &BTreeMap<PathBuf, String>) -> String {
    let own = hex::encode(sha2::Sha256::digest(bytes));
    if env_files.is_empty() {
        return own;
    }
    let mut hasher = sha2::Sha256::new();
    hasher.update(own.as_bytes());
    for (path, sha256) in env_files {
        hasher.update(b"\n");
        hasher.update(path.as_os_str().as_encoded_bytes());
        hasher.update(b"\0");
        hasher.update(sha256.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// A mistake in one entry: the field (empty for the entry itself) and what is wrong.
#[derive(Debug)]
struct Bad {
    field: String,
    what: String,
}

impl Bad {
    fn new(field: impl Into<String>, what: impl Into<String>) -> Bad {
        Bad { field: field.into(), what: what.into() }
    }
}

/// An entry as read, before it is tied to its file's hash.
struct Entry {
    name: String,
    transport: Transport,
    command: Option<String>,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    url: Option<String>,
    /// The env file read (path and sha256 of its bytes).
    env_file: Option<(PathBuf, String)>,
}

/// The entry's fields, checked for shape but not expanded.
struct Raw {
    transport: Transport,
    command: Option<String>,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    url: Option<String>,
    headers: BTreeMap<String, String>,
    env_file: Option<String>,
}

struct Reader<'a> {
    source: &'a Source,
    expander: Expander<'a>,
}

impl Reader<'_> {
    fn problem(&self, name: &str, bad: Bad) -> String {
        let pointer = server_pointer(self.source.kind, name);
        let field = if bad.field.is_empty() { String::new() } else { format!(".{}", bad.field) };
        format!("{} {pointer}{field}: {} (server skipped)", self.source.path.display(), bad.what)
    }

    fn entry(&self, name: &str, value: &Value) -> Result<Entry, Bad> {
        let raw = shape(value)?;
        let x = |field: String, text: &str| self.expander.expand(text).map_err(|what| Bad::new(field, what));
        let mut entry = Entry {
            name: name.to_string(),
            transport: raw.transport,
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            url: None,
            env_file: None,
        };
        if raw.transport != Transport::Stdio {
            entry.url = Some(x("url".into(), raw.url.as_deref().unwrap_or_default())?);
            for (key, value) in &raw.headers {
                x(format!("headers.{key}"), value)?;
            }
            return Ok(entry);
        }
        entry.command = Some(x("command".into(), raw.command.as_deref().unwrap_or_default())?);
        for (i, arg) in raw.args.iter().enumerate() {
            entry.args.push(x(format!("args[{i}]"), arg)?);
        }
        if let Some(text) = raw.env_file.as_deref().filter(|_| self.source.kind.reads_env_file()) {
            let (path, sha256, vars) = self.env_file(text)?;
            entry.env = vars;
            entry.env_file = Some((path, sha256));
        }
        for (key, value) in &raw.env {
            entry.env.insert(key.clone(), x(format!("env.{key}"), value)?);
        }
        Ok(entry)
    }

    /// Reads an `envFile`: its absolute path, its hash and its variables.
    fn env_file(&self, text: &str) -> Result<(PathBuf, String, BTreeMap<String, String>), Bad> {
        let bad = |what: String| Bad::new("envFile", what);
        let path = self.expander.root.join(self.expander.expand(text).map_err(bad)?);
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad(format!("{} is not UTF-8", path.display())))?;
        let vars = parse_env_file(text).map_err(|why| bad(format!("{} {why}", path.display())))?;
        Ok((path, hex::encode(sha2::Sha256::digest(&bytes)), vars))
    }
}

impl Entry {
    fn into_def(self, source: &Source, root: &Path, sha256: &str) -> ServerDef {
        ServerDef {
            name: self.name,
            transport: self.transport,
            command: self.command,
            args: self.args,
            env: self.env,
            cwd: root.to_path_buf(),
            url: self.url,
            source: source.clone(),
            sha256: sha256.to_string(),
        }
    }
}

/// Checks an entry's shape: the kinds of its fields and its transport.
fn shape(value: &Value) -> Result<Raw, Bad> {
    let Value::Object(entry) = value else { return Err(Bad::new("", "must be an object")) };
    let command = string_field(entry, "command")?;
    let url = string_field(entry, "url")?;
    let transport = transport(string_field(entry, "type")?.as_deref(), command.as_deref(), url.as_deref())?;
    let env = string_map(entry, "env")?;
    if let Some(key) = env.keys().find(|k| k.is_empty() || k.contains(['=', '\0'])) {
        return Err(Bad::new("env", format!("{key:?} is not a variable name")));
    }
    Ok(Raw {
        transport,
        command,
        args: string_list(entry, "args")?,
        env,
        url,
        headers: string_map(entry, "headers")?,
        env_file: string_field(entry, "envFile")?,
    })
}

fn transport(declared: Option<&str>, command: Option<&str>, url: Option<&str>) -> Result<Transport, Bad> {
    let transport = match declared {
        None if command.is_some() => Transport::Stdio,
        None if url.is_some() => Transport::Http,
        None => return Err(Bad::new("", "has neither a command (stdio) nor a url (http, sse)")),
        Some("stdio") => Transport::Stdio,
        Some("http" | "streamable-http") => Transport::Http,
        Some("sse") => Transport::Sse,
        Some(other) => return Err(Bad::new("type", format!("{other:?} is not a transport (stdio, http or sse)"))),
    };
    match (transport, command, url) {
        (Transport::Stdio, None, _) => Err(Bad::new("command", "is required for a stdio server")),
        (Transport::Stdio, Some(c), _) if c.trim().is_empty() => Err(Bad::new("command", "must not be empty")),
        (Transport::Http | Transport::Sse, _, None) => {
            Err(Bad::new("url", format!("is required for an {} server", transport.as_str())))
        }
        _ => Ok(transport),
    }
}

fn string_field(entry: &Map<String, Value>, field: &str) -> Result<Option<String>, Bad> {
    match entry.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Bad::new(field, "must be a string")),
    }
}

fn string_list(entry: &Map<String, Value>, field: &str) -> Result<Vec<String>, Bad> {
    let bad = || Bad::new(field, "must be an array of strings");
    match entry.get(field) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(bad)).collect(),
        Some(_) => Err(bad()),
    }
}

fn string_map(entry: &Map<String, Value>, field: &str) -> Result<BTreeMap<String, String>, Bad> {
    let bad = || Bad::new(field, "must be an object of strings");
    match entry.get(field) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => {
            map.iter().map(|(k, v)| Ok((k.clone(), v.as_str().ok_or_else(bad)?.to_string()))).collect()
        }
        Some(_) => Err(bad()),
    }
}

/// Which `${...}` forms a file's values use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// `${VAR}` and `${VAR:-default}` (Claude Code).
    ClaudeCode,
    /// `${workspaceFolder}`, `${env:NAME}` and the rest of VS Code's and Cursor's variables.
    Editor,
    /// Nothing is expanded (Claude Desktop).
    Literal,
}

struct Expander<'a> {
    syntax: Syntax,
    root: &'a Path,
    env: &'a Environment,
}

impl Expander<'_> {
    /// Expands every `${...}` in one pass (values are not expanded again); an unclosed `${` is text.
    fn expand(&self, text: &str) -> Result<String, String> {
        if self.syntax == Syntax::Literal {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let Some(len) = rest[start + 2..].find('}') else { break };
            let whole = &rest[start..start + len + 3];
            out.push_str(&rest[..start]);
            out.push_str(&self.resolve(&whole[2..len + 2])?.unwrap_or_else(|| whole.to_string()));
            rest = &rest[start + len + 3..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The value of one `${content}`; `None` leaves it as written.
    fn resolve(&self, content: &str) -> Result<Option<String>, String> {
        match self.syntax {
            Syntax::ClaudeCode => self.resolve_claude_code(content),
            Syntax::Editor => self.resolve_editor(content),
            Syntax::Literal => Ok(None),
        }
    }

    fn resolve_claude_code(&self, content: &str) -> Result<Option<String>, String> {
        let (name, default) = match content.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (content, None),
        };
        match (self.env.get(name), default) {
            _ if name.is_empty() => Ok(None),
            (Some(value), _) => Ok(Some(value.to_string())),
            (None, Some(default)) => Ok(Some(default.to_string())),
            (None, None) => Err(format!("variable {name} is not set and has no default")),
        }
    }

    fn resolve_editor(&self, content: &str) -> Result<Option<String>, String> {
        let value = match content {
            "workspaceFolder" => self.root.to_string_lossy().into_owned(),
            "workspaceFolderBasename" => self.root.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            "userHome" => match self.env.home() {
                Some(home) => home.to_string_lossy().into_owned(),
                None => return Err("${userHome}: the home folder is unknown".into()),
            },
            "pathSeparator" | "/" => "/".into(),
            _ => return self.resolve_editor_prefixed(content),
        };
        Ok(Some(value))
    }

    fn resolve_editor_prefixed(&self, content: &str) -> Result<Option<String>, String> {
        match content.split_once(':') {
            Some(("env", name)) => match self.env.get(name) {
                Some(value) => Ok(Some(value.to_string())),
                None => Err(format!("variable {name} (${{env:{name}}}) is not set")),
            },
            Some(("input", id)) => {
                Err(format!("${{input:{id}}} is a value the editor prompts for (inputs[]); nxops cannot answer it"))
            }
            Some(("command" | "config", _)) => Err(format!("${{{content}}} can only be resolved by the editor")),
            _ => Ok(None),
        }
    }
}

/// Parses a dotenv file (see the module doc); errors name the line.
pub(crate) fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |why: &str| format!("line {}: {why}", index + 1);
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else { return Err(at("expected KEY=VALUE")) };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(at(&format!("{key:?} is not a variable name")));
        }
        let value = env_file_value(value.trim()).ok_or_else(|| at("the quoted value is not closed"))?;
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

/// A value after `=`: quoted (what follows the closing quote is ignored) or up to ` #`.
fn env_file_value(text: &str) -> Option<String> {
    if let Some(quoted) = text.strip_prefix('\'') {
        return quoted.find('\'').map(|end| quoted[..end].to_string());
    }
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find(" #").or_else(|| text.find("\t#")).unwrap_or(text.len());
        return Some(text[..end].trim_end().to_string());
    };
    let mut value = String::new();
    let mut chars = quoted.chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                c @ ('"' | '\\') => value.push(c),
                c => value.extend(['\\', c]),
            },
            c => value.push(c),
        }
    }
}

/// Applies one `defaults` or `servers.NAME` object over `base`.
fn overlay(base: PoolSettings, value: &Value, at: &str) -> Result<PoolSettings, ConfigError> {
    const FIELDS: &[&str] = &["minIdle", "max", "idleTimeout", "acquireTimeout", "healthInterval", "stateless"];
    let fields = object_at(value, at)?;
    reject_unknown(fields, FIELDS, at)?;
    let mut out = base;
    for (field, value) in fields {
        let here = format!("{at}.{field}");
        match field.as_str() {
            "minIdle" => out.min_idle = count_at(value, &here)?,
            "max" => out.max = count_at(value, &here)?,
            "idleTimeout" => out.idle_timeout = duration_at(value, &here)?,
            "acquireTimeout" => out.acquire_timeout = duration_at(value, &here)?,
            "stateless" => out.sharing = sharing_at(value, &here)?,
            _ => out.health_interval = duration_at(value, &here)?,
        }
    }
    check_pool(&out, fields, at)?;
    Ok(out)
}

fn sharing_at(value: &Value, at: &str) -> Result<Sharing, ConfigError> {
    match value {
        Value::Bool(true) => Ok(Sharing::Stateless),
        Value::Bool(false) => Ok(Sharing::OneSession),
        other => Err(ConfigError {
            location: at.to_string(),
            problem: format!(
                "must be true or false, got {other} (true lets one server process serve one session after another)"
            ),
        }),
    }
}

/// Checks the merged values; an error names the field this object gave.
fn check_pool(settings: &PoolSettings, given: &Map<String, Value>, at: &str) -> Result<(), ConfigError> {
    let err = |field: &str, problem: String| Err(ConfigError { location: format!("{at}.{field}"), problem });
    if settings.max == 0 {
        return err("max", "must be at least 1".into());
    }
    if settings.max < settings.min_idle {
        let field = if given.contains_key("max") { "max" } else { "minIdle" };
        return err(field, format!("max ({}) must not be less than minIdle ({})", settings.max, settings.min_idle));
    }
    if settings.acquire_timeout.is_zero() {
        return err("acquireTimeout", "must be more than 0s".into());
    }
    if settings.health_interval < Duration::from_millis(10) {
        return err("healthInterval", "must be at least 10ms".into());
    }
    Ok(())
}

fn object_at<'v>(value: &'v Value, at: &str) -> Result<&'v Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| ConfigError { location: at.to_string(), problem: format!("must be an object, got {value}") })
}

fn reject_unknown(fields: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), ConfigError> {
    match fields.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(field) => {
            let hint = crate::config::suggest(field, known.iter().copied())
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            let problem = format!("unknown field {field:?}{hint} (known: {})", known.join(", "));
            Err(ConfigError { location: format!("{at}.{field}"), problem })
        }
    }
}

fn count_at(value: &Value, at: &str) -> Result<usize, ConfigError> {
    value.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| ConfigError {
        location: at.to_string(),
        problem: format!("must be a whole number such as 2, got {value}"),
    })
}

fn duration_at(value: &Value, at: &str) -> Result<Duration, ConfigError> {
    let err = |problem: String| ConfigError { location: at.to_string(), problem };
    match value {
        Value::String(text) => parse_duration(text).map_err(err),
        other => Err(err(format!("must be a duration such as \"30s\", got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A temporary workspace (`<tmp>/ws`) and home (`<tmp>/home`).
    struct Ws {
        dir: tempfile::TempDir,
    }

    impl Ws {
        fn new() -> Ws {
            let ws = Ws { dir: tempfile::tempdir().unwrap() };
            std::fs::create_dir_all(ws.root()).unwrap();
            ws
        }

        fn root(&self) -> PathBuf {
            self.dir.path().join("ws")
        }

        fn home(&self) -> PathBuf {
            self.dir.path().join("home")
        }

        /// Writes `text` at `relative` under the temporary folder, making parents.
        fn write(&self, relative: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }

        /// The environment: HOME is the temporary home, plus `pairs`.
        fn env(&self, pairs: &[(&str, &str)]) -> Environment {
            let home = self.home().display().to_string();
            Environment::from_pairs([("HOME", home.as_str())].into_iter().chain(pairs.iter().copied()))
        }

        fn discover(&self, pairs: &[(&str, &str)]) -> Discovered {
            discover(&self.root(), &self.env(pairs))
        }

        /// `<root>/<relative>` as text, for expected messages.
        fn at(&self, relative: &str) -> String {
            self.root().join(relative).display().to_string()
        }
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(bytes))
    }

    fn names(found: &Discovered) -> Vec<&str> {
        found.servers.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_workspace_without_files_has_no_servers_and_no_problems() {
        let ws = Ws::new();
        let found = ws.discover(&[]);
        assert!(found.servers.is_empty() && found.problems.is_empty() && found.files.is_empty(), "{found:?}");
    }

    #[test]
    fn claude_code_file_gives_stdio_http_and_sse_servers() {
        let ws = Ws::new();
        let text = json!({"mcpServers": {
            "memory": {"command": "node", "args": ["m.js"], "env": {"A": "1"}},
            "remote": {"url": "https://example.com/mcp", "headers": {"X": "y"}},
            "web": {"type": "http", "url": "https://example.com/web"},
            "events": {"type": "sse", "url": "https://example.com/sse"},
            "both": {"command": "srv", "url": "https://example.com/ignored"}
        }})
        .to_string();
        let path = ws.write("ws/.mcp.json", &text);
        let found = ws.discover(&[]);
        assert_eq!(found.problems, Vec::<String>::new());
        assert_eq!(names(&found), ["both", "events", "memory", "remote", "web"]);
        let source = Source { path: path.clone(), kind: FileKind::McpJson, workspace_file: true };
        let memory = found.get("memory").unwrap();
        let expected = ServerDef {
            name: "memory".into(),
            transport: Transport::Stdio,
            command: Some("node".into()),
            args: vec!["m.js".into()],
            env: BTreeMap::from([("A".into(), "1".into())]),
            cwd: ws.root(),
            url: None,
            source: source.clone(),
            sha256: sha(text.as_bytes()),
        };
        assert_eq!(memory, &expected);
        let transports: Vec<_> = found.servers.iter().map(|s| s.transport).collect();
        use Transport::*;
        assert_eq!(transports, [Stdio, Sse, Stdio, Http, Http]);
        assert_eq!(found.get("both").unwrap().url, None, "a stdio server keeps no url");
        let remote = found.get("remote").unwrap();
        assert_eq!((remote.command.as_deref(), remote.url.as_deref()), (None, Some("https://example.com/mcp")));
        let file = SourceFile { path, kind: FileKind::McpJson, sha256: sha(text.as_bytes()), workspace_file: true };
        assert_eq!(found.files, [file]);
    }

    #[test]
    fn claude_code_values_expand_variables_and_defaults() {
        let ws = Ws::new();
        ws.write(
            "ws/.mcp.json",
            &json!({"mcpServers": {
                "srv": {
                    "command": "${BIN}",
                    "args": ["--token=${TOKEN}", "${MISSING:-fall:-back}", "${EMPTY:-unused}", "$TOKEN", "${}", "a${unclosed"],
                    "env": {"T": "${TOKEN}", "U": "${URL_HOST:-localhost}:${PORT:-80}"},
                    "url": "${NOT_SET}"
                },
                "remote": {"url": "https://${HOST:-example.com}/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
                "broken": {"command": "x", "env": {"K": "${NOT_SET}"}},
                "badurl": {"url": "https://${NOT_SET}/mcp"},
                "badheader": {"url": "https://example.com", "headers": {"Authorization": "Bearer ${NOT_SET}"}},
                "editor": {"command": "x", "args": ["${env:TOKEN}"]}
            }})
            .to_string(),
        );
        let found = ws.discover(&[("BIN", "/usr/bin/node"), ("TOKEN", "s3cret"), ("EMPTY", ""), ("PORT", "8080")]);
        let file = ws.at(".mcp.json");
        assert_eq!(
            found.problems,
            [
                format!(
                    "{file} mcpServers.badheader.headers.Authorization: variable NOT_SET is not set and has no default (server skipped)"
                ),
                format!(
                    "{file} mcpServers.badurl.url: variable NOT_SET is not set and has no default (server skipped)"
                ),
                format!(
                    "{file} mcpServers.broken.env.K: variable NOT_SET is not set and has no default (server skipped)"
                ),
                format!(
                    "{file} mcpServers.editor.args[0]: variable env:TOKEN is not set and has no default (server skipped)"
                ),
            ]
        );
        let srv = found.get("srv").unwrap();
        assert_eq!(srv.command.as_deref(), Some("/usr/bin/node"));
        assert_eq!(srv.args, ["--token=s3cret", "fall:-back", "", "$TOKEN", "${}", "a${unclosed"]);
        assert_eq!(srv.env["T"], "s3cret");
        assert_eq!(srv.env["U"], "localhost:8080");
        assert_eq!(found.get("remote").unwrap().url.as_deref(), Some("https://example.com/mcp"));
    }

    #[test]
    fn vscode_file_reads_servers_with_editor_variables_and_jsonc() {
        let ws = Ws::new();
        ws.write(
            "ws/.vscode/mcp.json",
            r#"{
              // VS Code allows comments and trailing commas.
              "inputs": [{"type": "promptString", "id": "db-pass", "password": true}],
              "servers": {
                "fs": {
                  "type": "stdio",
                  "command": "node",
                  "args": ["${workspaceFolder}/srv.js", "${workspaceFolderBasename}", "${userHome}${/}x${pathSeparator}y",
                           "${env:TOKEN}", "${unknownVar}", "${TOKEN}"],
                },
                "db": {"command": "db-mcp", "env": {"PASSWORD": "${input:db-pass}"}},
                "unset": {"command": "x", "args": ["${env:NOPE}"]},
                "cmd": {"command": "x", "args": ["${command:pick}"]},
                "remote": {"type": "http", "url": "https://example.com/${env:TOKEN}"},
              },
              "mcpServers": {"ignored": {"command": "x"}},
            }"#,
        );
        let found = ws.discover(&[("TOKEN", "t")]);
        let file = ws.at(".vscode/mcp.json");
        assert_eq!(
            found.problems,
            [
                format!(
                    "{file} servers.cmd.args[0]: ${{command:pick}} can only be resolved by the editor (server skipped)"
                ),
                format!(
                    "{file} servers.db.env.PASSWORD: ${{input:db-pass}} is a value the editor prompts for (inputs[]); \
                     nxops cannot answer it (server skipped)"
                ),
                format!("{file} servers.unset.args[0]: variable NOPE (${{env:NOPE}}) is not set (server skipped)"),
            ]
        );
        assert_eq!(names(&found), ["fs", "remote"]);
        let fs = found.get("fs").unwrap();
        let root = ws.root().display().to_string();
        let home = ws.home().display().to_string();
        assert_eq!(
            fs.args,
            [
                format!("{root}/srv.js"),
                "ws".into(),
                format!("{home}/x/y"),
                "t".into(),
                "${unknownVar}".into(),
                "${TOKEN}".into()
            ]
        );
        assert_eq!(fs.source.kind, FileKind::VsCode);
        assert_eq!(found.get("remote").unwrap().url.as_deref(), Some("https://example.com/t"));
    }

    #[test]
    fn vscode_env_file_is_read_under_the_entrys_env_and_trusted_with_the_file() {
        let ws = Ws::new();
        ws.write("ws/.env", "# secrets\nexport A=1\nB = \"two words\" # note\n");
        let config = json!({"servers": {
            "api": {"command": "node", "envFile": "${workspaceFolder}/.env", "env": {"A": "override"}},
            "again": {"command": "node", "envFile": ".env"},
            "plain": {"command": "node"},
            "missing": {"command": "node", "envFile": "missing.env"},
            "bad": {"command": "node", "envFile": "bad.env"}
        }})
        .to_string();
        ws.write("ws/.vscode/mcp.json", &config);
        ws.write("ws/bad.env", "A=1\nnot a pair\n");
        let found = ws.discover(&[]);
        let file = ws.at(".vscode/mcp.json");
        assert_eq!(
            found.problems,
            [
                format!("{file} servers.bad.envFile: {} line 2: expected KEY=VALUE (server skipped)", ws.at("bad.env")),
                format!(
                    "{file} servers.missing.envFile: cannot read {}: No such file or directory (os error 2) (server skipped)",
                    ws.at("missing.env")
                ),
            ]
        );
        let api = found.get("api").unwrap();
        assert_eq!(api.env, BTreeMap::from([("A".into(), "override".into()), ("B".into(), "two words".into())]));
        assert_eq!(found.get("again").unwrap().env["A"], "1");
        assert!(found.get("plain").unwrap().env.is_empty());

        // One hash for the file and the env files its servers read, carried by every server.
        let hash = found.files[0].sha256.clone();
        assert_ne!(hash, sha(config.as_bytes()));
        assert!(found.servers.iter().all(|s| s.sha256 == hash));
        ws.write("ws/.env", "A=2\n");
        let changed = ws.discover(&[]);
        assert_ne!(changed.files[0].sha256, hash, "editing the env file needs a new allowance");
        assert_eq!(changed.get("again").unwrap().env["A"], "2");
    }

    #[test]
    fn env_files_follow_dotenv_rules() {
        let text = "# comment\n\n  export A=1\nB = \"two words\" # note\nC='single # kept'\n\
                    D=\"line\\nbreak \\\"q\\\" \\\\ \\x\"\nE=plain # comment\nF=\nG=a#b\r\nH=x=y\n";
        let vars = parse_env_file(text).unwrap();
        let expected: BTreeMap<String, String> = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "single # kept"),
            ("D", "line\nbreak \"q\" \\ \\x"),
            ("E", "plain"),
            ("F", ""),
            ("G", "a#b"),
            ("H", "x=y"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, expected);
        assert_eq!(parse_env_file("A=1\nnope").unwrap_err(), "line 2: expected KEY=VALUE");
        assert_eq!(parse_env_file("=1").unwrap_err(), "line 1: \"\" is not a variable name");
        assert_eq!(parse_env_file("MY KEY=1").unwrap_err(), "line 1: \"MY KEY\" is not a variable name");
        assert_eq!(parse_env_file("A=\"open").unwrap_err(), "line 1: the quoted value is not closed");
        assert_eq!(parse_env_file("A='open").unwrap_err(), "line 1: the quoted value is not closed");
    }

    #[test]
    fn cursor_file_expands_env_and_workspace_folder() {
        let ws = Ws::new();
        let path = ws.write(
            "ws/.cursor/mcp.json",
            &json!({"mcpServers": {
                "local": {"command": "${workspaceFolder}/bin/srv", "args": ["${TOKEN}"], "env": {"K": "${env:TOKEN}"}},
                "remote": {"url": "https://api.example.com/${env:TENANT}", "headers": {"Authorization": "Bearer ${env:TOKEN}"}}
            }})
            .to_string(),
        );
        let found = ws.discover(&[("TOKEN", "t"), ("TENANT", "acme")]);
        assert_eq!(found.problems, Vec::<String>::new());
        let local = found.get("local").unwrap();
        assert_eq!(local.command, Some(format!("{}/bin/srv", ws.root().display())));
        assert_eq!(local.args, ["${TOKEN}"], "Claude Code's syntax is not Cursor's");
        assert_eq!(local.env["K"], "t");
        assert_eq!(local.source, Source { path, kind: FileKind::Cursor, workspace_file: true });
        assert_eq!(found.get("remote").unwrap().url.as_deref(), Some("https://api.example.com/acme"));
    }

    #[test]
    fn claude_desktop_file_is_the_users_own_and_expands_nothing() {
        let ws = Ws::new();
        let text =
            json!({"mcpServers": {"desk": {"command": "${HOME}/bin/x", "args": ["${env:A}"], "env": {"A": "${A}"}}}})
                .to_string();
        let path = ws.write("xdg/Claude/claude_desktop_config.json", &text);
        let xdg = ws.dir.path().join("xdg").display().to_string();
        let found = ws.discover(&[("XDG_CONFIG_HOME", &xdg), ("A", "a")]);
        assert_eq!(found.problems, Vec::<String>::new());
        let desk = found.get("desk").unwrap();
        assert_eq!(desk.command.as_deref(), Some("${HOME}/bin/x"));
        assert_eq!((desk.args[0].as_str(), desk.env["A"].as_str()), ("${env:A}", "${A}"));
        assert_eq!(desk.cwd, ws.root());
        assert_eq!(desk.source, Source { path: path.clone(), kind: FileKind::ClaudeDesktop, workspace_file: false });
        let file =
            SourceFile { path, kind: FileKind::ClaudeDesktop, sha256: sha(text.as_bytes()), workspace_file: false };
        assert_eq!(found.files, [file]);

        // Without XDG_CONFIG_HOME (or with it empty) the file is under ~/.config.
        assert!(ws.discover(&[("XDG_CONFIG_HOME", "")]).servers.is_empty());
        ws.write("home/.config/Claude/claude_desktop_config.json", &text);
        assert_eq!(names(&ws.discover(&[("XDG_CONFIG_HOME", "")])), ["desk"]);
        assert_eq!(
            claude_desktop_config(&ws.env(&[])),
            Some(ws.home().join(".config/Claude/claude_desktop_config.json"))
        );
    }

    #[test]
    fn first_definition_wins_and_later_ones_are_reported() {
        let ws = Ws::new();
        let server = |command: &str| json!({"command": command});
        ws.write(
            "ws/.mcp.json",
            &json!({"mcpServers": {"memory": server("a"), "x": {"command": "${NOT_SET}"}}}).to_string(),
        );
        ws.write("ws/.vscode/mcp.json", &json!({"servers": {"memory": server("b"), "code": server("b")}}).to_string());
        ws.write("ws/.cursor/mcp.json", &json!({"mcpServers": {"memory": server("c"), "x": server("c")}}).to_string());
        let desktop = json!({"mcpServers": {"code": server("d"), "desk": server("d")}}).to_string();
        ws.write("home/.config/Claude/claude_desktop_config.json", &desktop);
        let found = ws.discover(&[]);
        assert_eq!(names(&found), ["memory", "code", "desk"]);
        let commands: Vec<_> = found.servers.iter().map(|s| s.command.as_deref().unwrap()).collect();
        assert_eq!(commands, ["a", "b", "d"]);
        let (mcp, vscode, cursor) = (ws.at(".mcp.json"), ws.at(".vscode/mcp.json"), ws.at(".cursor/mcp.json"));
        let desktop = ws.home().join(".config/Claude/claude_desktop_config.json").display().to_string();
        assert_eq!(
            found.problems,
            [
                format!("{mcp} mcpServers.x.command: variable NOT_SET is not set and has no default (server skipped)"),
                format!(
                    "server \"memory\" is defined again in {vscode} (servers.memory), first in {mcp} (mcpServers.memory); \
                     the first definition is used"
                ),
                format!(
                    "server \"memory\" is defined again in {cursor} (mcpServers.memory), first in {mcp} (mcpServers.memory); \
                     the first definition is used"
                ),
                format!(
                    "server \"x\" is defined again in {cursor} (mcpServers.x), first in {mcp} (mcpServers.x); \
                     the first definition is used"
                ),
                format!(
                    "server \"code\" is defined again in {desktop} (mcpServers.code), first in {vscode} (servers.code); \
                     the first definition is used"
                ),
            ]
        );
        assert_eq!(found.files.len(), 4);
    }

    #[test]
    fn mistakes_in_entries_are_named_and_skip_the_server() {
        let ws = Ws::new();
        ws.write(
            "ws/.mcp.json",
            &json!({"mcpServers": {
                "notobj": 3,
                "nothing": {},
                "numcmd": {"command": 5},
                "badargs": {"command": "x", "args": "a b"},
                "mixedargs": {"command": "x", "args": ["a", 1]},
                "badenv": {"command": "x", "env": {"A": 1}},
                "envlist": {"command": "x", "env": ["A=1"]},
                "badenvkey": {"command": "x", "env": {"A=B": "1"}},
                "badtype": {"type": "ws", "url": "wss://x"},
                "numtype": {"type": 1, "command": "x"},
                "stdionocmd": {"type": "stdio", "url": "https://x"},
                "ssenourl": {"type": "sse", "command": "x"},
                "httpnourl": {"type": "http"},
                "emptycmd": {"command": " "},
                "badurl": {"url": 5},
                "badheaders": {"url": "https://x", "headers": []},
                "": {"command": "x"},
                "my server": {"command": "x"},
                "a".repeat(65): {"command": "x"},
                "ok.name_-1": {"command": "x"},
                "a".repeat(64): {"command": "x"}
            }})
            .to_string(),
        );
        let found = ws.discover(&[]);
        assert_eq!(names(&found), ["a".repeat(64).as_str(), "ok.name_-1"]);
        let file = ws.at(".mcp.json");
        let name_rule = "is not a usable server name (1 to 64 letters, digits, '.', '_' or '-') (server skipped)";
        let mut expected = vec![
            format!("{file} mcpServers[\"\"]: {name_rule}"),
            format!("{file} mcpServers[\"my server\"]: {name_rule}"),
            format!("{file} mcpServers[\"{}\"]: {name_rule}", "a".repeat(65)),
            format!("{file} mcpServers.notobj: must be an object (server skipped)"),
            format!("{file} mcpServers.nothing: has neither a command (stdio) nor a url (http, sse) (server skipped)"),
            format!("{file} mcpServers.numcmd.command: must be a string (server skipped)"),
            format!("{file} mcpServers.badargs.args: must be an array of strings (server skipped)"),
            format!("{file} mcpServers.mixedargs.args: must be an array of strings (server skipped)"),
            format!("{file} mcpServers.badenv.env: must be an object of strings (server skipped)"),
            format!("{file} mcpServers.envlist.env: must be an object of strings (server skipped)"),
            format!("{file} mcpServers.badenvkey.env: \"A=B\" is not a variable name (server skipped)"),
            format!("{file} mcpServers.badtype.type: \"ws\" is not a transport (stdio, http or sse) (server skipped)"),
            format!("{file} mcpServers.numtype.type: must be a string (server skipped)"),
            format!("{file} mcpServers.stdionocmd.command: is required for a stdio server (server skipped)"),
            format!("{file} mcpServers.ssenourl.url: is required for an sse server (server skipped)"),
            format!("{file} mcpServers.httpnourl.url: is required for an http server (server skipped)"),
            format!("{file} mcpServers.emptycmd.command: must not be empty (server skipped)"),
            format!("{file} mcpServers.badurl.url: must be a string (server skipped)"),
            format!("{file} mcpServers.badheaders.headers: must be an object of strings (server skipped)"),
        ];
        let mut problems = found.problems.clone();
        problems.sort();
        expected.sort();
        assert_eq!(problems, expected);
    }

    #[test]
    fn broken_files_are_one_problem_each_and_are_skipped() {
        let ws = Ws::new();
        ws.write("ws/.mcp.json", "{\n  \"mcpServers\": {\n    \"a\": }\n}");
        ws.write("ws/.vscode/mcp.json", r#"{"servers": [{"command": "x"}]}"#);
        ws.write("ws/.cursor/mcp.json", "[1]");
        std::fs::create_dir_all(ws.home().join(".config/Claude/claude_desktop_config.json")).unwrap();
        let found = ws.discover(&[]);
        let desktop = ws.home().join(".config/Claude/claude_desktop_config.json").display().to_string();
        assert_eq!(
            found.problems,
            [
                format!(
                    "{}: is not valid JSON: Unexpected close brace on line 3 column 10 (file skipped)",
                    ws.at(".mcp.json")
                ),
                format!(
                    "{} servers: must be an object of server name to definition (file skipped)",
                    ws.at(".vscode/mcp.json")
                ),
                format!("{}: must hold a JSON object (file skipped)", ws.at(".cursor/mcp.json")),
                format!("{desktop}: cannot be read: Is a directory (os error 21) (file skipped)"),
            ]
        );
        assert!(found.servers.is_empty() && found.files.is_empty());
    }

    #[test]
    fn a_file_without_its_servers_key_is_read_and_empty() {
        let ws = Ws::new();
        ws.write("ws/.vscode/mcp.json", r#"{"inputs": []}"#);
        let found = ws.discover(&[]);
        assert!(found.servers.is_empty() && found.problems.is_empty());
        assert_eq!(found.files.len(), 1);
    }

    fn settings(value: Value) -> Result<(PoolSettings, BTreeMap<String, PoolSettings>), ConfigError> {
        pool_settings(Some(&value), "nxops.json mcp")
    }

    #[test]
    fn pool_settings_default_without_a_section() {
        let (defaults, servers) = pool_settings(None, "nxops.json mcp").unwrap();
        assert_eq!(
            defaults,
            PoolSettings {
                min_idle: 1,
                max: 4,
                idle_timeout: Duration::from_secs(300),
                acquire_timeout: Duration::from_secs(10),
                health_interval: Duration::from_secs(30),
                sharing: Sharing::OneSession,
            }
        );
        assert!(servers.is_empty());
        assert_eq!(settings(json!({})).unwrap().0, PoolSettings::default());
    }

    #[test]
    fn pool_settings_merge_field_by_field() {
        let (defaults, servers) = settings(json!({
            "defaults": {"minIdle": 2, "max": 6, "idleTimeout": "10m", "acquireTimeout": "2s", "healthInterval": "1m"},
            "servers": {"memory": {"max": 2}, "cold": {"minIdle": 0, "idleTimeout": "30s"}, "time": {"stateless": true}}
        }))
        .unwrap();
        let expected = PoolSettings {
            min_idle: 2,
            max: 6,
            idle_timeout: Duration::from_secs(600),
            acquire_timeout: Duration::from_secs(2),
            health_interval: Duration::from_secs(60),
            sharing: Sharing::OneSession,
        };
        assert_eq!(defaults, expected);
        assert_eq!(servers["time"], PoolSettings { sharing: Sharing::Stateless, ..expected });
        assert_eq!(servers["memory"], PoolSettings { max: 2, ..expected });
        assert_eq!(servers["cold"], PoolSettings { min_idle: 0, idle_timeout: Duration::from_secs(30), ..expected });
        assert_eq!(servers.len(), 3);
        assert_eq!(
            settings(json!({"servers": {"time": {"stateless": "yes"}}})).unwrap_err().to_string(),
            "nxops.json mcp.servers.time.stateless: must be true or false, got \"yes\" \
             (true lets one server process serve one session after another)"
        );
    }

    #[test]
    fn pool_settings_mistakes_name_their_place() {
        let err = |value: Value| settings(value).unwrap_err().to_string();
        assert_eq!(
            err(json!({"servers": {"memory": {"maxx": 2}}})),
            "nxops.json mcp.servers.memory.maxx: unknown field \"maxx\"; did you mean \"max\"? \
             (known: minIdle, max, idleTimeout, acquireTimeout, healthInterval, stateless)"
        );
        assert_eq!(
            err(json!({"default": {}})),
            "nxops.json mcp.default: unknown field \"default\"; did you mean \"defaults\"? (known: defaults, servers)"
        );
        assert_eq!(err(json!([])), "nxops.json mcp: must be an object, got []");
        assert_eq!(err(json!({"servers": []})), "nxops.json mcp.servers: must be an object, got []");
        assert_eq!(err(json!({"defaults": {"max": 0}})), "nxops.json mcp.defaults.max: must be at least 1");
        assert_eq!(
            err(json!({"defaults": {"max": 2, "minIdle": 3}})),
            "nxops.json mcp.defaults.max: max (2) must not be less than minIdle (3)"
        );
        assert_eq!(
            err(json!({"servers": {"memory": {"minIdle": 5}}})),
            "nxops.json mcp.servers.memory.minIdle: max (4) must not be less than minIdle (5)"
        );
        assert_eq!(
            err(json!({"servers": {"memory": {"max": -1}}})),
            "nxops.json mcp.servers.memory.max: must be a whole number such as 2, got -1"
        );
        assert_eq!(
            err(json!({"defaults": {"minIdle": "1"}})),
            "nxops.json mcp.defaults.minIdle: must be a whole number such as 2, got \"1\""
        );
        assert_eq!(
            err(json!({"defaults": {"idleTimeout": 300}})),
            "nxops.json mcp.defaults.idleTimeout: must be a duration such as \"30s\", got 300"
        );
        assert!(
            err(json!({"defaults": {"idleTimeout": "5"}}))
                .starts_with("nxops.json mcp.defaults.idleTimeout: \"5\" needs a unit"),
        );
        assert_eq!(
            err(json!({"defaults": {"acquireTimeout": "0s"}})),
            "nxops.json mcp.defaults.acquireTimeout: must be more than 0s"
        );
        assert_eq!(
            err(json!({"servers": {"m": {"healthInterval": "1ms"}}})),
            "nxops.json mcp.servers.m.healthInterval: must be at least 10ms"
        );
        assert_eq!(
            err(json!({"servers": {"my server": {}}})),
            "nxops.json mcp.servers.my server: is not a usable server name (1 to 64 letters, digits, '.', '_' or '-')"
        );
        assert_eq!(err(json!({"servers": {"m": 3}})), "nxops.json mcp.servers.m: must be an object, got 3");
    }
}
