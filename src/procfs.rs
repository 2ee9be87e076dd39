//! What Linux's `/proc` says about processes: parent, group, state, start
//! time, CPU time and resident memory, read without any dependency.
//!
//! A pid alone names nothing for long (pids are reused), so every record keeps
//! the process's start time (clock ticks since boot): a pid together with its
//! start time names one process forever.

use std::collections::HashMap;
use std::path::Path;

/// One line of `/proc/<pid>/stat`, the fields nxops uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// The executable's name as the kernel keeps it (at most 15 bytes).
    pub comm: String,
    /// `R`, `S`, `D`, `Z` (zombie), `T`, ...
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    pub rss_bytes: u64,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Parses the text of `/proc/<pid>/stat`. The name sits in parentheses and may
/// itself hold spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
    Some(ProcStat {
        pid,
        comm,
        state: fields.first()?.chars().next()?,
        ppid: field(1)? as u32,
        pgid: field(2)? as u32,
        sid: field(3)? as u32,
        cpu_ticks: field(11)? + field(12)?,
        start_time: field(19)?,
        rss_bytes: field(21)?.saturating_mul(page_size()),
    })
}

/// The stat of one process; `None` when it is gone.
pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process visible now. Processes that end while the table is read are skipped.
pub fn snapshot() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            stat(pid)
        })
        .collect()
}

/// True when `pid`'s environment holds exactly `KEY=VALUE` (`marker`). Only
/// processes of our own user are readable; others read as not marked.
pub fn environ_has(pid: u32, marker: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(bytes) => bytes.split(|b| *b == 0).any(|entry| entry == marker.as_bytes()),
        Err(_) => false,
    }
}

/// The value of `key` in `pid`'s environment.
pub fn environ_get(pid: u32, key: &str) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    bytes.split(|b| *b == 0).find_map(|entry| {
        let text = std::str::from_utf8(entry).ok()?;
        text.strip_prefix(key)?.strip_prefix('=').map(str::to_string)
    })
}

/// The command line, arguments joined by spaces (kernel threads: empty).
pub fn cmdline(pid: u32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let parts: Vec<String> =
        bytes.split(|b| *b == 0).filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    parts.join(" ")
}

/// True while `pid` exists and is the process that started at `start_time`.
pub fn is_same_process(pid: u32, start_time: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_time == start_time)
}

pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// Children by parent pid, for walking process trees.
pub fn children_index(procs: &[ProcStat]) -> HashMap<u32, Vec<u32>> {
    let mut index: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        index.entry(p.ppid).or_default().push(p.pid);
    }
    index
}

/// `roots` and everything below them, each pid once.
pub fn descendants(index: &HashMap<u32, Vec<u32>>, roots: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<u32> = roots.into_iter().collect();
    let mut out = Vec::new();
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        out.push(pid);
        if let Some(children) = index.get(&pid) {
            stack.extend(children.iter().copied());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_spaces_and_parentheses_parse() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000000 250 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.comm, "my (odd) name");
        assert_eq!((stat.state, stat.ppid, stat.pgid, stat.sid), ('S', 1, 4242, 4242));
        assert_eq!(stat.cpu_ticks, 10);
        assert_eq!(stat.start_time, 123456);
        assert_eq!(stat.rss_bytes, 250 * page_size());
    }

    #[test]
    fn truncated_lines_are_rejected() {
        assert_eq!(parse_stat("12 (x) S 1 12"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_process_reads_back() {
        let me = std::process::id();
        let stat = stat(me).unwrap();
        assert_eq!(stat.pid, me);
        assert!(stat.rss_bytes > 0);
        assert!(is_same_process(me, stat.start_time));
        assert!(!is_same_process(me, stat.start_time + 1));
        assert!(snapshot().iter().any(|p| p.pid == me));
        assert!(environ_has(me, &format!("PATH={}", std::env::var("PATH").unwrap())));
        assert_eq!(environ_get(me, "PATH"), std::env::var("PATH").ok());
    }

    #[test]
    fn descendants_walk_the_tree_once() {
        let procs: Vec<ProcStat> = [(2, 1), (3, 2), (4, 2), (5, 4), (6, 1)]
            .iter()
            .map(|(pid, ppid)| ProcStat {
                pid: *pid,
                comm: String::new(),
                state: 'S',
                ppid: *ppid,
                pgid: *pid,
                sid: *pid,
                cpu_ticks: 0,
                start_time: 0,
                rss_bytes: 0,
            })
            .collect();
        let mut tree = descendants(&children_index(&procs), [2, 4]);
        tree.sort();
        assert_eq!(tree, vec![2, 3, 4, 5]);
    }
}
