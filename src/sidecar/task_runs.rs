//! Nx runs kept by the workspace's owner: the last `KEPT` runs with their tasks,
//! for `nxops/tasks/runs` and the `tasksReported` event. They come from two
//! sources: Nx's own records, watched by `run_watch` (always, no plugin needed),
//! and the opt-in `@nxops/nx-plugin/hooks` plugin's `nxops/tasks/report`. A run
//! both sources saw (same tasks, same times) is logged once. Logging a run also
//! wakes the owner's maintenance check, so a run that pushed the cache over its
//! limit is cleaned up promptly.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::methods::{CallCtx, parse};
use crate::clock::now_ms;
use crate::rpc::errors::RpcError;
use crate::workspace::Workspace;

/// Runs kept per workspace.
pub const KEPT: usize = 50;
/// Tasks accepted per report (a run-many over a huge workspace is cut here).
pub const MAX_TASKS: usize = 10_000;

/// Nx's statuses of a task result (`TaskStatus` in nx 24).
const STATUSES: &[&str] =
    &["success", "failure", "skipped", "stopped", "local-cache", "local-cache-kept-existing", "remote-cache"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskResult {
    pub id: String,
    pub project: String,
    pub target: String,
    #[serde(default)]
    pub configuration: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
    pub status: String,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub end_time: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReportParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    run_id: String,
    start_time: Option<u64>,
    end_time: Option<u64>,
    #[serde(default)]
    command: Option<String>,
    tasks: Vec<TaskResult>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsParams {
    #[serde(rename = "workspace")]
    _workspace: Option<PathBuf>,
    limit: Option<usize>,
}

/// Counts by outcome.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub tasks: usize,
    pub cache_hits: usize,
    pub executed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Where the owner learned of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunSource {
    /// Nx's task history and run.json, watched by the owner.
    NxRecords,
    /// The opt-in plugin hook's `nxops/tasks/report`.
    PluginHook,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: String,
    pub command: Option<String>,
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    pub received_at: u64,
    pub source: RunSource,
    /// The checkout that ran it, when known (see `run_watch` for when it is not).
    pub checkout: Option<PathBuf>,
    pub summary: Summary,
    pub tasks: Vec<TaskResult>,
}

/// The owner's log of recent runs, and what its watch of Nx's records last said.
#[derive(Default)]
pub struct RunLog {
    runs: Mutex<VecDeque<Run>>,
    watch: Mutex<Option<String>>,
}

impl RunLog {
    /// Adds a run unless the other source logged it already; true when added.
    pub fn push(&self, run: Run) -> bool {
        let mut runs = self.lock();
        if runs.iter().rev().take(8).any(|r| r.source != run.source && same_tasks(r, &run)) {
            return false;
        }
        runs.push_back(run);
        while runs.len() > KEPT {
            runs.pop_front();
        }
        true
    }

    /// The watch's problem (an unknown schema, say), or `None` when it reads fine.
    pub fn set_watch_problem(&self, problem: Option<String>) {
        *self.watch.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    pub fn watch_problem(&self) -> Option<String> {
        self.watch.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn recent(&self, limit: usize) -> Vec<Run> {
        self.lock().iter().rev().take(limit).cloned().collect()
    }

    /// How many runs are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Run>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Two logs of one run: the same tasks (hash and start), times known.
fn same_tasks(a: &Run, b: &Run) -> bool {
    let key = |r: &Run| {
        let mut k: Vec<(Option<String>, Option<u64>)> =
            r.tasks.iter().map(|t| (t.hash.clone(), t.start_time)).collect();
        k.sort();
        k
    };
    !a.tasks.is_empty() && a.tasks.iter().all(|t| t.start_time.is_some()) && key(a) == key(b)
}

/// Logs `run` on `owned` (unless logged already), wakes its maintenance check and
/// publishes `tasksReported` for `root`. True when the run was new.
pub fn record(core: &super::core::Core, root: &std::path::Path, owned: &super::core::Owned, run: Run) -> bool {
    let event = json!({
        "workspace": root, "runId": run.run_id, "command": run.command, "summary": run.summary,
        "source": run.source, "checkout": run.checkout,
    });
    if !owned.runs.push(run) {
        return false;
    }
    owned.maintenance.notify_one();
    core.publish("tasksReported", event);
    true
}

pub(crate) fn summarize(tasks: &[TaskResult]) -> Summary {
    let mut s = Summary { tasks: tasks.len(), ..Summary::default() };
    for t in tasks {
        match t.status.as_str() {
            "local-cache" | "local-cache-kept-existing" | "remote-cache" => s.cache_hits += 1,
            "success" => s.executed += 1,
            "failure" => {
                s.executed += 1;
                s.failed += 1
            }
            _ => s.skipped += 1,
        }
    }
    s
}

/// `nxops/tasks/report` and `nxops/tasks/runs` for `ws`, on its owner (or in-process).
pub async fn run(ctx: &CallCtx, ws: &Workspace, method: &str, raw: Value) -> Result<Value, RpcError> {
    let owned = ctx.core.owned(&ws.root);
    match method {
        "nxops/tasks/report" => {
            let params: ReportParams = parse(method, raw)?;
            if params.tasks.len() > MAX_TASKS {
                return Err(RpcError::invalid_params(method, format!("tasks: more than {MAX_TASKS} tasks")));
            }
            for (i, task) in params.tasks.iter().enumerate() {
                if !STATUSES.contains(&task.status.as_str()) {
                    return Err(RpcError::invalid_params(
                        method,
                        format!(
                            "tasks[{i}].status: unknown status {:?} (Nx's are {})",
                            task.status,
                            STATUSES.join(", ")
                        ),
                    ));
                }
            }
            let Some(owned) = owned else {
                return Err(RpcError::OwnerUnavailable(format!(
                    "no sidecar runs for {}: task results are kept by the workspace's sidecar",
                    ws.root.display()
                )));
            };
            let summary = summarize(&params.tasks);
            let run = Run {
                run_id: params.run_id,
                command: params.command,
                start_time: params.start_time,
                end_time: params.end_time,
                received_at: now_ms(),
                source: RunSource::PluginHook,
                checkout: Some(ws.root.clone()),
                summary,
                tasks: params.tasks,
            };
            record(&ctx.core, &ws.root, &owned, run);
            Ok(json!({"accepted": summary.tasks}))
        }
        "nxops/tasks/runs" => {
            let params: RunsParams = parse(method, raw)?;
            let limit = params.limit.unwrap_or(10).min(KEPT);
            let (runs, problem) = match &owned {
                Some(owned) => (owned.runs.recent(limit), owned.runs.watch_problem()),
                None => (Vec::new(), None),
            };
            Ok(json!({"workspace": ws.root, "sidecar": owned.is_some(), "watchProblem": problem, "runs": runs}))
        }
        other => Err(RpcError::UnknownMethod(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: &str) -> TaskResult {
        TaskResult {
            id: "a:build".into(),
            project: "a".into(),
            target: "build".into(),
            configuration: None,
            hash: Some("1".into()),
            status: status.into(),
            code: Some(0),
            start_time: None,
            end_time: None,
        }
    }

    #[test]
    fn statuses_are_counted_by_outcome() {
        let tasks: Vec<TaskResult> =
            ["success", "local-cache", "remote-cache", "failure", "skipped", "local-cache-kept-existing"]
                .into_iter()
                .map(task)
                .collect();
        let s = summarize(&tasks);
        assert_eq!((s.tasks, s.cache_hits, s.executed, s.failed, s.skipped), (6, 3, 2, 1, 1));
    }

    fn logged(source: RunSource, start: Option<u64>) -> Run {
        let tasks = vec![TaskResult { start_time: start, ..task("success") }];
        Run {
            run_id: "r".into(),
            command: None,
            start_time: None,
            end_time: None,
            received_at: 0,
            source,
            checkout: None,
            summary: summarize(&tasks),
            tasks,
        }
    }

    #[test]
    fn a_run_both_sources_saw_is_logged_once() {
        let log = RunLog::default();
        assert!(log.push(logged(RunSource::NxRecords, Some(5))));
        assert!(!log.push(logged(RunSource::PluginHook, Some(5))), "the hook's report of the same tasks");
        assert!(log.push(logged(RunSource::PluginHook, Some(6))), "another run");
        assert!(log.push(logged(RunSource::NxRecords, Some(5))), "the same source twice is two runs");
        assert!(log.push(logged(RunSource::PluginHook, None)), "no times: nothing to match by");
        assert_eq!(log.len(), 4);
    }
}
