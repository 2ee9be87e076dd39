//! Which processes belong to a supervised run, and ending all of them.
//!
//! A run is one start of a process. Its tree is, from one `/proc` snapshot:
//! - every process in its process group (the leader was started with `setpgid(0, 0)`);
//! - everything below its leader by parent pid;
//! - processes that escaped the group (`setsid`, double forks) and were
//!   reparented to the sidecar, the child subreaper: each carries the run's
//!   marker `NXOPS_SUPERVISED=<workspace key>:<name>:<run>` in its environment
//!   (inherited from the leader), which only the sidecar's direct children need
//!   to be asked for; and everything below those.
//!
//! Membership never relies on a pid alone: a group id cannot be reused while
//! any member is alive, and markers name the run.

use std::collections::{HashMap, HashSet};

use crate::procfs::{self, ProcStat};

pub const MARKER_VAR: &str = "NXOPS_SUPERVISED";

/// One run, as the tree walk needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunId {
    pub name: String,
    pub run: u64,
    pub leader: u32,
    pub pgid: u32,
}

/// The value of the marker variable for a run.
pub fn marker(key: &str, name: &str, run: u64) -> String {
    format!("{key}:{name}:{run}")
}

/// `(key, name, run)` from a marker value.
pub fn parse_marker(value: &str) -> Option<(&str, &str, u64)> {
    let (key, rest) = value.split_once(':')?;
    let (name, run) = rest.rsplit_once(':')?;
    Some((key, name, run.parse().ok()?))
}

/// The trees of `runs` of workspace `key`, and the sidecar's children that no
/// run of any workspace claims (`unattributed`, marker-less orphans).
#[derive(Debug, Default)]
pub struct Trees {
    pub members: HashMap<(String, u64), Vec<ProcStat>>,
    pub unattributed: Vec<ProcStat>,
}

impl Trees {
    pub fn of(&self, name: &str, run: u64) -> &[ProcStat] {
        self.members.get(&(name.to_string(), run)).map_or(&[], Vec::as_slice)
    }
}

/// Reads `/proc` once and attributes processes to runs. `watched` says which
/// of our children are transient helpers (probes, git) that belong to no run.
pub fn trees(key: &str, runs: &[RunId], watched: &dyn Fn(u32) -> bool) -> Trees {
    let procs = procfs::snapshot();
    attribute(&procs, std::process::id(), key, runs, &|pid| procfs::environ_get(pid, MARKER_VAR), watched)
}

/// The attribution itself, with `/proc` passed in (for tests).
pub fn attribute(
    procs: &[ProcStat],
    me: u32,
    key: &str,
    runs: &[RunId],
    marker_of: &dyn Fn(u32) -> Option<String>,
    watched: &dyn Fn(u32) -> bool,
) -> Trees {
    let index = procfs::children_index(procs);
    let by_pid: HashMap<u32, &ProcStat> = procs.iter().map(|p| (p.pid, p)).collect();
    let mut roots: HashMap<(String, u64), Vec<u32>> = HashMap::new();
    let leaders: HashSet<u32> = runs.iter().map(|r| r.leader).collect();
    let mut trees = Trees::default();
    for child in index.get(&me).map_or(&[][..], Vec::as_slice) {
        let claimed = marker_of(*child).and_then(|value| {
            let (k, name, run) = parse_marker(&value)?;
            Some((k == key, name.to_string(), run))
        });
        match claimed {
            Some((true, name, run)) => roots.entry((name, run)).or_default().push(*child),
            Some((false, _, _)) => {} // another workspace's run
            None if leaders.contains(child) || watched(*child) => {}
            None => trees.unattributed.extend(by_pid.get(child).map(|p| (*p).clone())),
        }
    }
    for run in runs {
        let id = (run.name.clone(), run.run);
        let mut starts = roots.remove(&id).unwrap_or_default();
        if by_pid.contains_key(&run.leader) {
            starts.push(run.leader);
        }
        starts.extend(procs.iter().filter(|p| p.pgid == run.pgid).map(|p| p.pid));
        let members: Vec<ProcStat> = procfs::descendants(&index, starts)
            .into_iter()
            .filter(|pid| *pid != me)
            .filter_map(|pid| by_pid.get(&pid).map(|p| (*p).clone()))
            .collect();
        trees.members.insert(id, members);
    }
    trees
}

/// Every live process of our user whose marker names workspace `key`; used at
/// start-up to find what a crashed sidecar left behind.
pub fn marked_by(key: &str) -> Vec<ProcStat> {
    let me = std::process::id();
    procfs::snapshot()
        .into_iter()
        .filter(|p| p.pid != me && !p.is_zombie())
        .filter(|p| {
            procfs::environ_get(p.pid, MARKER_VAR).is_some_and(|v| parse_marker(&v).is_some_and(|(k, _, _)| k == key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, ppid: u32, pgid: u32) -> ProcStat {
        ProcStat {
            pid,
            comm: String::new(),
            state: 'S',
            ppid,
            pgid,
            sid: pgid,
            cpu_ticks: 0,
            start_time: 0,
            rss_bytes: 0,
        }
    }

    #[test]
    fn groups_children_and_escaped_daemons_are_one_tree() {
        // 100 is the sidecar. Run api#1: leader 10 (group 10), a child 11 in the group,
        // 12 moved itself to group 12 under 11, and 20 double-forked away (now under 100,
        // group 20) with its child 21. 30 is another workspace's, 40 is a probe, 50 is unknown.
        let procs = vec![
            proc(100, 1, 100),
            proc(10, 100, 10),
            proc(11, 10, 10),
            proc(12, 11, 12),
            proc(20, 100, 20),
            proc(21, 20, 20),
            proc(30, 100, 30),
            proc(40, 100, 40),
            proc(50, 100, 50),
        ];
        let markers = |pid| match pid {
            10 | 11 | 12 | 20 | 21 => Some("k:api:1".to_string()),
            30 => Some("other:api:1".to_string()),
            _ => None,
        };
        let runs = [RunId { name: "api".into(), run: 1, leader: 10, pgid: 10 }];
        let trees = attribute(&procs, 100, "k", &runs, &markers, &|pid| pid == 40);
        let mut pids: Vec<u32> = trees.of("api", 1).iter().map(|p| p.pid).collect();
        pids.sort();
        assert_eq!(pids, vec![10, 11, 12, 20, 21]);
        assert_eq!(trees.unattributed.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![50]);
        assert!(trees.of("api", 2).is_empty());
    }

    #[test]
    fn markers_round_trip() {
        let value = marker("0123abcd", "web.dev-1", 42);
        assert_eq!(parse_marker(&value), Some(("0123abcd", "web.dev-1", 42)));
        assert_eq!(parse_marker("nonsense"), None);
    }
}
