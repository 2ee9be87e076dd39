//! Nx runs reported by the Nx plugin's `postTasksExecution` hook, kept by the
//! workspace's owner: the last `KEPT` runs with their tasks, for `nxops/tasks/runs`
//! and, later, the health report. A report also wakes the owner's maintenance
//! check, so a run that pushed the cache over its limit is cleaned up promptly.

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

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: String,
    pub command: Option<String>,
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    pub received_at: u64,
    pub summary: Summary,
    pub tasks: Vec<TaskResult>,
}

/// The owner's log of recent runs.
#[derive(Default)]
pub struct RunLog {
    runs: Mutex<VecDeque<Run>>,
}

impl RunLog {
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

fn summarize(tasks: &[TaskResult]) -> Summary {
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
                summary,
                tasks: params.tasks,
            };
            let event = json!({"workspace": ws.root, "runId": run.run_id, "command": run.command, "summary": summary});
            {
                let mut runs = owned.runs.lock();
                runs.push_back(run);
                while runs.len() > KEPT {
                    runs.pop_front();
                }
            }
            owned.maintenance.notify_one();
            ctx.core.publish("tasksReported", event);
            Ok(json!({"accepted": summary.tasks}))
        }
        "nxops/tasks/runs" => {
            let params: RunsParams = parse(method, raw)?;
            let limit = params.limit.unwrap_or(10).min(KEPT);
            let runs: Vec<Run> = match &owned {
                Some(owned) => owned.runs.lock().iter().rev().take(limit).cloned().collect(),
                None => Vec::new(),
            };
            Ok(json!({"workspace": ws.root, "sidecar": owned.is_some(), "runs": runs}))
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
}
