//! Synthetic Nx 24 workspaces for the cache benchmarks.
//!
//! [`generate`] writes `WS/nx.json` with `cacheDirectory` (the local layout: Nx, and nxops, then keep the
//! cache in that folder and the database in `WS/.nx/workspace-data`), the entry folders with their
//! terminal outputs, and a database with Nx 24.0.6's exact schema, filled consistently with the files.
//!
//! # Invariants
//! - Deterministic: the same [`Spec`] (seed and clock included) gives byte-identical entry folders and
//!   terminal outputs, so a second call in another folder makes an identical copy for a baseline.
//! - Every entry has a folder `<hash>/dist/<project>/...`, a `terminalOutputs/<hash>` file, a
//!   `cache_outputs` row whose `size` is the bytes of both, a `task_details` row and at least one
//!   `task_history` row. Hashes are random 19-digit numbers, unique within one workspace.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub entries: usize,
    /// Output files per entry, 1 to 8 KiB each.
    pub files_per_entry: usize,
    pub seed: u64,
    /// "Now" in Unix seconds: accessed_at spreads over the 30 days before it, task_history over 10.
    pub now: i64,
}

impl Spec {
    pub fn new(entries: usize, files_per_entry: usize) -> Spec {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970").as_secs();
        Spec { entries, files_per_entry, seed: 0x6e78_6f70_7321, now: now as i64 }
    }
}

/// A generated workspace.
#[derive(Debug)]
pub struct Generated {
    pub workspace: PathBuf,
    pub cache: PathBuf,
    pub db_file: PathBuf,
    pub entries: Vec<Entry>,
}

impl Generated {
    /// Bytes of all entries as recorded in `cache_outputs.size`.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|entry| entry.bytes).sum()
    }
}

/// One cache entry as generated.
#[derive(Debug, Clone)]
pub struct Entry {
    pub hash: String,
    pub project: usize,
    pub target: usize,
    /// Output bytes plus terminal output bytes (`cache_outputs.size`).
    pub bytes: u64,
    pub file_sizes: Vec<usize>,
    pub terminal_bytes: usize,
    pub created_at: i64,
    pub accessed_at: i64,
}

pub const PROJECTS: usize = 50;
pub const TARGETS: [&str; 3] = ["build", "test", "lint"];

/// Creates the workspace in `dir` (which must exist): `dir/ws` and the cache in `dir/cache`.
pub fn generate(dir: &Path, spec: &Spec) -> Generated {
    let workspace = dir.join("ws");
    let cache = dir.join("cache");
    let data_dir = workspace.join(".nx/workspace-data");
    std::fs::create_dir_all(&data_dir).expect("create the workspace data folder");
    std::fs::create_dir_all(cache.join("terminalOutputs")).expect("create the cache folder");
    let nx_json = serde_json::json!({ "cacheDirectory": cache.to_str().expect("a UTF-8 path") });
    std::fs::write(workspace.join("nx.json"), nx_json.to_string()).expect("write nx.json");
    let entries = plan(spec);
    write_entries(&cache, &entries, 4);
    let db_file = data_dir.join(format!("{}-v6.db", machine_id(spec.seed)));
    write_database(&db_file, &entries, spec);
    Generated { workspace, cache, db_file, entries }
}

/// Writes only the entry folders and terminal outputs of `entries` into `cache` (no workspace, no
/// database): an identical copy of a generated cache's files, for a baseline that deletes them.
pub fn write_entries(cache: &Path, entries: &[Entry], threads: usize) {
    std::fs::create_dir_all(cache.join("terminalOutputs")).expect("create the cache folder");
    let chunk = entries.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for part in entries.chunks(chunk) {
            scope.spawn(move || part.iter().for_each(|entry| write_entry(cache, entry)));
        }
    });
}

pub fn project_name(index: usize) -> String {
    if index.is_multiple_of(2) { format!("app-{index:02}") } else { format!("lib-{index:02}") }
}

/// The path of one output file inside its entry folder, like Nx stores `dist/<project>/...`.
pub fn output_path(entry: &Entry, file: usize) -> String {
    let project = project_name(entry.project);
    let last_of_several = file + 1 == entry.file_sizes.len() && file >= 3;
    if last_of_several {
        format!("{}/dist/{project}/assets/data-{file}.txt", entry.hash)
    } else {
        format!("{}/dist/{project}/chunk-{file}.js", entry.hash)
    }
}

fn write_entry(cache: &Path, entry: &Entry) {
    let content = filler();
    for (file, size) in entry.file_sizes.iter().enumerate() {
        let path = cache.join(output_path(entry, file));
        let parent = path.parent().expect("an output has a folder");
        if !parent.exists() {
            std::fs::create_dir_all(parent).expect("create an output folder");
        }
        std::fs::write(&path, &content[..*size]).expect("write an output file");
    }
    if entry.file_sizes.is_empty() {
        std::fs::create_dir_all(cache.join(&entry.hash)).expect("create an empty entry folder");
    }
    let terminal = terminal_output(entry);
    std::fs::write(cache.join("terminalOutputs").join(&entry.hash), terminal).expect("write a terminal output");
    // Nx writes the folder before it stamps the row: a folder newer than its row
    // is an entry being written again, which no clean may take.
    let written = std::time::UNIX_EPOCH + std::time::Duration::from_secs(entry.created_at.max(0) as u64);
    let folder = std::fs::File::open(cache.join(&entry.hash)).expect("open the entry folder");
    folder.set_modified(written).expect("date the entry folder as Nx wrote it");
}

/// 8 KiB of printable, deterministic bytes (file contents do not matter, sizes do).
fn filler() -> &'static [u8] {
    static FILLER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILLER.get_or_init(|| {
        let mut rng = Rng(7);
        (0..8192).map(|_| b' ' + (rng.next() % 94) as u8).collect()
    })
}

fn terminal_output(entry: &Entry) -> Vec<u8> {
    let header = format!("\r\n> nx run {}:{}\r\n\r\n", project_name(entry.project), TARGETS[entry.target]);
    let mut text = header.into_bytes();
    text.extend(filler().iter().take(entry.terminal_bytes.saturating_sub(text.len())));
    text.truncate(entry.terminal_bytes);
    text
}

/// Decides every entry up front, so writing can be split across threads and repeated identically.
fn plan(spec: &Spec) -> Vec<Entry> {
    let mut rng = Rng(spec.seed);
    let mut seen = std::collections::HashSet::new();
    let mut entries = Vec::with_capacity(spec.entries);
    while entries.len() < spec.entries {
        let hash = (1_000_000_000_000_000_000 + rng.next() % 9_000_000_000_000_000_000).to_string();
        if !seen.insert(hash.clone()) {
            continue;
        }
        let file_sizes: Vec<usize> = (0..spec.files_per_entry).map(|_| 1024 + rng.below(7 * 1024 + 1)).collect();
        let terminal_bytes = 200 + rng.below(1800);
        let accessed_at = spec.now - rng.below(30 * 86_400) as i64;
        let created_at = accessed_at - rng.below(5 * 86_400) as i64;
        let bytes = (file_sizes.iter().sum::<usize>() + terminal_bytes) as u64;
        let (project, target) = (rng.below(PROJECTS), rng.below(TARGETS.len()));
        entries.push(Entry { hash, project, target, bytes, file_sizes, terminal_bytes, created_at, accessed_at });
    }
    entries
}

/// The schema of a database created by Nx 24.0.6, statement by statement as `sqlite_master` holds it.
const NX_24_0_6_SCHEMA: &str = "CREATE TABLE task_details (
    hash    TEXT PRIMARY KEY NOT NULL,
    project  TEXT NOT NULL,
    target  TEXT NOT NULL,
    configuration  TEXT
);
CREATE TABLE running_tasks (
    task_id TEXT PRIMARY KEY NOT NULL,
    pid INTEGER NOT NULL,
    command TEXT NOT NULL,
    cwd TEXT NOT NULL
);
CREATE TABLE running_task_readiness (
    task_id TEXT PRIMARY KEY NOT NULL,
    status INTEGER NOT NULL,
    url TEXT
);
CREATE TABLE task_invocations (
    root_pid INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    overrides_hash TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (root_pid, pid, task_id)
);
CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE task_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    hash TEXT NOT NULL,
    status TEXT NOT NULL,
    code INTEGER NOT NULL,
    start TIMESTAMP NOT NULL,
    end TIMESTAMP NOT NULL,
    FOREIGN KEY (hash) REFERENCES task_details (hash)
);
CREATE INDEX hash_idx ON task_history (hash);
CREATE INDEX status_idx ON task_history (status);
CREATE TABLE nx_plugin_capabilities (
    position   INTEGER PRIMARY KEY NOT NULL,
    computed_at   INTEGER NOT NULL,
    create_nodes_pattern   TEXT,
    has_create_dependencies   INTEGER NOT NULL,
    has_create_metadata   INTEGER NOT NULL,
    has_pre_tasks_execution   INTEGER NOT NULL,
    has_post_tasks_execution   INTEGER NOT NULL
);
CREATE TABLE cache_outputs (
                hash    TEXT PRIMARY KEY NOT NULL,
                code   INTEGER NOT NULL,
                size   INTEGER NOT NULL,
                is_cache_entry BOOLEAN NOT NULL DEFAULT TRUE CHECK (is_cache_entry IN (0, 1)),
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                accessed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                FOREIGN KEY (hash) REFERENCES task_details (hash)
            );";

/// Creates the database like Nx does (WAL, the schema above) and fills it in one transaction.
fn write_database(db_file: &Path, entries: &[Entry], spec: &Spec) {
    let mut db = rusqlite::Connection::open(db_file).expect("create the database");
    db.pragma_update(None, "journal_mode", "WAL").expect("switch to WAL");
    db.execute_batch(NX_24_0_6_SCHEMA).expect("create Nx's tables");
    let tx = db.transaction().expect("a transaction");
    insert_rows(&tx, entries, spec).expect("insert the rows");
    tx.commit().expect("commit the rows");
    std::fs::write(db_file.with_extension("lock"), "").expect("write the database lock file");
}

fn insert_rows(tx: &rusqlite::Transaction, entries: &[Entry], spec: &Spec) -> rusqlite::Result<()> {
    let mut details =
        tx.prepare("INSERT INTO task_details (hash, project, target, configuration) VALUES (?1, ?2, ?3, NULL)")?;
    let mut outputs = tx.prepare(
        "INSERT INTO cache_outputs (hash, code, size, is_cache_entry, created_at, accessed_at) VALUES (?1, 0, ?2, 1, ?3, ?4)",
    )?;
    let mut history =
        tx.prepare("INSERT INTO task_history (hash, status, code, start, end) VALUES (?1, ?2, 0, ?3, ?4)")?;
    let mut rng = Rng(spec.seed ^ 0x5eed);
    for entry in entries {
        details.execute((&entry.hash, project_name(entry.project), TARGETS[entry.target]))?;
        outputs.execute((&entry.hash, entry.bytes as i64, utc_text(entry.created_at), utc_text(entry.accessed_at)))?;
        for (run, status) in ["success", "local-cache", "local-cache-kept-existing"].iter().enumerate() {
            if run > 0 && rng.below(2) == 0 {
                continue;
            }
            let start_ms = (spec.now - rng.below(10 * 86_400) as i64) * 1000 + rng.below(1000) as i64;
            let took_ms = if run == 0 { 200 + rng.below(20_000) } else { 1 + rng.below(20) } as i64;
            history.execute((&entry.hash, status, start_ms, start_ms + took_ms))?;
        }
    }
    Ok(())
}

/// 32 hex characters, like the machine id Nx names its database after.
fn machine_id(seed: u64) -> String {
    let mut rng = Rng(seed ^ 0xdb);
    format!("{:016x}{:016x}", rng.next(), rng.next())
}

/// Unix seconds as UTC text `YYYY-MM-DD HH:MM:SS`, the format of SQLite's `CURRENT_TIMESTAMP`.
pub fn utc_text(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// splitmix64: small, fast, deterministic; good enough for sizes and names.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}
