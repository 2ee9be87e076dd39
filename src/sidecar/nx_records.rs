//! What Nx records about its own runs, read without any plugin hook.
//!
//! Nx 24 writes two records at the end of every run (run-command.js, in this
//! order, one after the other in `CompositeLifeCycle::endCommand`):
//! - `<cache>/run.json` (`StoreRunInformationLifeCycle`): the command, the
//!   run's start and end, and each task's id, hash, times, cache status and exit
//!   code. Overwritten by every run; it has no run id and no checkout.
//! - one `task_history` row per task (`TaskHistoryLifeCycle`: hash, status,
//!   code, start, end in epoch ms), joined here with `task_details` for project,
//!   target and configuration, in the database beside the cache.
//!
//! A run is the `task_history` rows that appeared since the last read; run.json
//! adds its command and task ids when its hashes are exactly those rows'.
//!
//! Locking: the database is opened read-only with a busy timeout, one short
//! read transaction per check; nxops never takes a write lock on Nx's database.
//! Under WAL a reader never blocks Nx's writer.
//!
//! Compatibility: the schema is Nx's internal one (`-v6` in Nx 24). The columns
//! used are checked on every read; a missing table or column is a
//! [`RecordsError::Schema`] naming it, never a panic.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use serde::Deserialize;

use super::task_runs::TaskResult;

/// Rows read per check at most (a run-many over a huge workspace is cut here).
pub const MAX_ROWS: usize = super::task_runs::MAX_TASKS;
/// How long a read waits for Nx's writer.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The columns nxops reads, per table.
const COLUMNS: &[(&str, &[&str])] = &[
    ("task_history", &["id", "hash", "status", "code", "start", "end"]),
    ("task_details", &["hash", "project", "target", "configuration"]),
];

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The database lacks a table or column nxops reads.
    #[error("{0}")]
    Schema(String),
    #[error("failed to read Nx's task history in {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
}

/// One `task_history` row with its task's details.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub id: i64,
    pub hash: String,
    pub status: String,
    pub code: i64,
    pub start: i64,
    pub end: i64,
    pub project: Option<String>,
    pub target: Option<String>,
    pub configuration: Option<String>,
}

/// The largest `task_history` id, 0 for an empty table.
pub fn last_id(db: &Path) -> Result<i64, RecordsError> {
    let conn = open(db)?;
    check_schema(&conn, db)?;
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM task_history", [], |r| r.get(0)).map_err(sqlite(db))
}

/// The rows after `after`, oldest first, at most [`MAX_ROWS`].
pub fn rows_after(db: &Path, after: i64) -> Result<Vec<HistoryRow>, RecordsError> {
    let conn = open(db)?;
    check_schema(&conn, db)?;
    let mut stmt = conn
        .prepare(
            "SELECT h.id, h.hash, h.status, h.code, h.start, h.end, d.project, d.target, d.configuration \
             FROM task_history h LEFT JOIN task_details d ON d.hash = h.hash \
             WHERE h.id > ?1 ORDER BY h.id LIMIT ?2",
        )
        .map_err(sqlite(db))?;
    let rows = stmt
        .query_map(params![after, MAX_ROWS as i64], |r| {
            Ok(HistoryRow {
                id: r.get(0)?,
                hash: r.get(1)?,
                status: r.get(2)?,
                code: r.get(3)?,
                start: r.get(4)?,
                end: r.get(5)?,
                project: r.get(6)?,
                target: r.get(7)?,
                configuration: r.get(8)?,
            })
        })
        .map_err(sqlite(db))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sqlite(db))
}

fn open(db: &Path) -> Result<Connection, RecordsError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db, flags).map_err(sqlite(db))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(db))?;
    Ok(conn)
}

fn check_schema(conn: &Connection, db: &Path) -> Result<(), RecordsError> {
    for (table, wanted) in COLUMNS {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)").map_err(sqlite(db))?;
        let have: BTreeSet<String> =
            stmt.query_map([table], |r| r.get(0)).map_err(sqlite(db))?.collect::<Result<_, _>>().map_err(sqlite(db))?;
        let missing: Vec<&str> = wanted.iter().copied().filter(|c| !have.contains(*c)).collect();
        if have.is_empty() || !missing.is_empty() {
            let what = if have.is_empty() {
                format!("no table {table}")
            } else {
                format!("no column {} in {table}", missing.join(", "))
            };
            return Err(RecordsError::Schema(format!(
                "Nx's database {} has {what}: nxops reads the task history of Nx 24's schema (-v6), so runs are \
                 not learned from this database",
                db.display()
            )));
        }
    }
    Ok(())
}

fn sqlite(db: &Path) -> impl Fn(rusqlite::Error) -> RecordsError + '_ {
    move |source| RecordsError::Sqlite { path: db.display().to_string(), source }
}

/// `<cache>/run.json` as Nx 24 writes it (only what nxops uses).
#[derive(Debug, Clone, Deserialize)]
pub struct RunJson {
    pub run: RunJsonRun,
    pub tasks: Vec<RunJsonTask>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunJsonRun {
    pub command: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunJsonTask {
    pub task_id: String,
    pub hash: Option<String>,
}

/// Reads run.json; `None` when it is missing or not Nx 24's shape.
pub fn read_run_json(path: &Path) -> Option<RunJson> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a run is made of, before it is logged.
#[derive(Debug, Clone)]
pub struct LearnedRun {
    pub run_id: String,
    pub command: Option<String>,
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    pub tasks: Vec<TaskResult>,
}

/// One run from the rows that appeared together, with run.json's command and
/// task ids when run.json describes exactly these tasks.
pub fn learned_run(rows: &[HistoryRow], run_json: Option<&RunJson>) -> Option<LearnedRun> {
    let (first, last) = (rows.first()?, rows.last()?);
    let hashes: BTreeSet<&str> = rows.iter().map(|r| r.hash.as_str()).collect();
    let matching = run_json.filter(|rj| {
        let theirs: BTreeSet<&str> = rj.tasks.iter().filter_map(|t| t.hash.as_deref()).collect();
        theirs == hashes
    });
    let tasks = rows.iter().map(|row| task_of(row, matching)).collect();
    let start = rows.iter().map(|r| r.start).min().and_then(|t| u64::try_from(t).ok());
    let end = rows.iter().map(|r| r.end).max().and_then(|t| u64::try_from(t).ok());
    Some(LearnedRun {
        run_id: format!("nx-history-{}-{}", first.id, last.id),
        command: matching.and_then(|rj| rj.run.command.clone()),
        start_time: matching.and_then(|rj| iso_ms(rj.run.start_time.as_deref()?)).or(start),
        end_time: matching.and_then(|rj| iso_ms(rj.run.end_time.as_deref()?)).or(end),
        tasks,
    })
}

fn task_of(row: &HistoryRow, run_json: Option<&RunJson>) -> TaskResult {
    let project = row.project.clone().unwrap_or_default();
    let target = row.target.clone().unwrap_or_default();
    let id = run_json
        .and_then(|rj| rj.tasks.iter().find(|t| t.hash.as_deref() == Some(row.hash.as_str())))
        .map(|t| t.task_id.clone())
        .unwrap_or_else(|| match &row.configuration {
            Some(c) => format!("{project}:{target}:{c}"),
            None => format!("{project}:{target}"),
        });
    TaskResult {
        id,
        project,
        target,
        configuration: row.configuration.clone(),
        hash: Some(row.hash.clone()),
        status: row.status.clone(),
        code: Some(row.code),
        start_time: u64::try_from(row.start).ok(),
        end_time: u64::try_from(row.end).ok(),
    }
}

/// `2026-12-06T03:15:36.952Z` -> epoch ms (the only form Nx writes: `toISOString`).
pub fn iso_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from((((days * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms).ok()
}

/// The row id after which to read, given the database's last id now: 0 when
/// the table shrank below `after` (Nx's database was deleted and made
/// anew, e.g. by `nx reset`), so every row is new.
pub fn resume_after(after: i64, last_now: i64) -> i64 {
    if last_now < after { 0 } else { after }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, hash: &str) -> HistoryRow {
        HistoryRow {
            id,
            hash: hash.into(),
            status: "local-cache".into(),
            code: 0,
            start: 1_000 + id,
            end: 2_000 + id,
            project: Some("alpha".into()),
            target: Some("build".into()),
            configuration: None,
        }
    }

    #[test]
    fn iso_times_are_read_as_epoch_ms() {
        assert_eq!(iso_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(iso_ms("2026-12-06T03:15:36.952Z"), Some(1_796_526_936_952));
        assert_eq!(iso_ms("2026-12-06 03:15:36"), None);
    }

    #[test]
    fn run_json_names_the_run_only_when_its_tasks_are_the_rows() {
        let rows = [row(4, "1"), row(5, "2")];
        let rj: RunJson = serde_json::from_value(serde_json::json!({
            "run": {"command": "nx run-many -t build", "startTime": "1970-01-01T00:00:00.500Z",
                    "endTime": "1970-01-01T00:00:03.000Z", "inner": false},
            "tasks": [{"taskId": "alpha:build:prod", "hash": "1"}, {"taskId": "beta:build", "hash": "2"}]
        }))
        .unwrap();
        let run = learned_run(&rows, Some(&rj)).unwrap();
        assert_eq!(run.run_id, "nx-history-4-5");
        assert_eq!(run.command.as_deref(), Some("nx run-many -t build"));
        assert_eq!((run.start_time, run.end_time), (Some(500), Some(3000)));
        assert_eq!(run.tasks[0].id, "alpha:build:prod");

        let other = learned_run(&rows[..1], Some(&rj)).unwrap();
        assert_eq!(other.command, None, "run.json of another run is not used");
        assert_eq!((other.start_time, other.end_time), (Some(1004), Some(2004)));
        assert_eq!(other.tasks[0].id, "alpha:build");
    }

    #[test]
    fn a_recreated_database_is_read_from_its_start() {
        assert_eq!(resume_after(10, 12), 10);
        assert_eq!(resume_after(10, 3), 0);
    }
}
