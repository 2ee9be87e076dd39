//! The health report: a score per component and an overall rating.
//!
//! Each component scores 0 to 100 and gives its reasons in words. The overall
//! score is the worst component's (one failing part makes the workspace
//! unhealthy, however well the rest does), and the rating follows from it:
//!
//! | score | rating |
//! |---|---|
//! | 90-100 | Excellent |
//! | 75-89 | Good |
//! | 50-74 | Fair |
//! | 25-49 | Poor |
//! | 0-24 | Critical |
//!
//! Components (a component with nothing to judge scores 100):
//! - processes: 100, minus 100 × failed / all and 50 × waiting-to-restart / all;
//!   at most 85 while a process's tree holds zombies its own processes do not
//!   reap (seen in two samples in a row);
//! - cache: by utilization of `cache.maxSize`: up to 80% 100, up to 90% 85, up to
//!   100% 70, over 40; and at most 60 when the cache's volume has under 10% free,
//!   at most 20 under 5%;
//! - MCP pools: 100; 40 for a pooled server that cannot be started (failing
//!   warm-ups); 85 for a server whose connections died once or twice in the last
//!   10 minutes, 60 for three times or more;
//! - sessions: 100, minus 10 per client that vanished (its connection broke, or
//!   the sidecar or follower it came through went away) and whose session then
//!   expired in the last hour, at least 60. Not counted: named sessions that
//!   expire (their timeout is the contract), and clients that ended their input
//!   (a finished script; see `sessions::End`);
//! - the sidecar's memory: 100 up to 100 MB RSS, 60 up to 500 MB, 20 above;
//! - the team cache, only when Nx is configured to use one (`team_cache::probe`): 100 when it
//!   answers; 10 when it refuses the token (or there is none), cannot be reached or answers with
//!   a server error, since Nx 24 then fails every run that misses the local cache.
//!
//! Without a sidecar that owns the workspace only the cache (and the team cache) is judged, and the
//! report says so (`sidecar: false`, and a line in words).
//!
//! # Hysteresis
//!
//! The owner's `healthCheck` events publish a rating through [`Hysteresis`]: a
//! worse rating is published at once, a better one only once every check for
//! [`RECOVERY_HOLD`] has found it better (the worst of those is published). So a
//! crash loop, which swings between "waiting to restart" and "running" several
//! times a second, moves the published rating down once and keeps it there
//! until the loop has been quiet for the whole hold.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Rating {
    Critical,
    Poor,
    Fair,
    Good,
    Excellent,
}

impl Rating {
    pub fn of(score: u32) -> Rating {
        match score {
            90.. => Rating::Excellent,
            75..=89 => Rating::Good,
            50..=74 => Rating::Fair,
            25..=49 => Rating::Poor,
            _ => Rating::Critical,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    pub name: String,
    pub score: u32,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub workspace: std::path::PathBuf,
    pub rating: Rating,
    pub score: u32,
    pub components: Vec<Component>,
    /// Every component's reasons, worst component first.
    pub reasons: Vec<String>,
    pub checked_at: u64,
    /// Whether the workspace's owner sidecar made the check; false: nobody watches the workspace
    /// (its processes, MCP pools and sessions), and only the cache was judged.
    #[serde(default)]
    pub sidecar: bool,
}

/// How long a better rating must hold, check after check, before it is published.
pub const RECOVERY_HOLD: std::time::Duration = std::time::Duration::from_secs(10);

/// The published rating: worse at once, better after [`RECOVERY_HOLD`] (see the module docs).
/// Time is a parameter, so the rule is tested without waiting.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    published: Rating,
    /// The worst better rating seen since the first check that found one, and when that was.
    better: Option<(Rating, std::time::Instant)>,
}

impl Hysteresis {
    pub fn new(first: Rating) -> Hysteresis {
        Hysteresis { published: first, better: None }
    }

    pub fn published(&self) -> Rating {
        self.published
    }

    /// Takes a check's rating at `now`; returns true when the published rating changed.
    pub fn observe(&mut self, measured: Rating, now: std::time::Instant) -> bool {
        if measured <= self.published {
            self.better = None;
            let changed = measured != self.published;
            self.published = measured;
            return changed;
        }
        let (worst, since) = match self.better {
            Some((seen, since)) => (seen.min(measured), since),
            None => (measured, now),
        };
        if now.duration_since(since) >= RECOVERY_HOLD {
            self.published = worst;
            self.better = None;
            return true;
        }
        self.better = Some((worst, since));
        false
    }

    /// When a check must run to publish a better rating that keeps holding, if one is pending.
    pub fn due(&self) -> Option<std::time::Instant> {
        self.better.map(|(_, since)| since + RECOVERY_HOLD)
    }
}

impl HealthReport {
    pub fn new(workspace: std::path::PathBuf, mut components: Vec<Component>, checked_at: u64) -> HealthReport {
        components.sort_by_key(|c| c.score);
        let score = components.iter().map(|c| c.score).min().unwrap_or(100);
        let reasons = components.iter().flat_map(|c| c.reasons.iter().cloned()).collect();
        HealthReport { workspace, rating: Rating::of(score), score, components, reasons, checked_at, sidecar: false }
    }
}

impl crate::output::Report for HealthReport {
    fn human(&self) -> String {
        let mut out = String::new();
        let mut section = crate::output::Section::new(&format!("Health: {:?} ({}/100)", self.rating, self.score));
        for c in &self.components {
            section.push(&c.name, c.score.to_string());
        }
        section.render(&mut out);
        if !self.sidecar {
            out.push_str(
                "\nNo sidecar is watching this workspace: only the cache was checked (processes, MCP servers and\n\
                 sessions are judged by a running `nxops serve`, e.g. the editor's).\n",
            );
        }
        if !self.reasons.is_empty() {
            out.push('\n');
            for reason in &self.reasons {
                out.push_str(&format!("- {reason}\n"));
            }
        }
        out
    }
}

impl Rating {
    /// `nxops monitor check`'s exit code: 0 for Excellent or Good, 1 for Fair or Poor, 2 for Critical.
    pub fn exit_code(self) -> i32 {
        match self {
            Rating::Excellent | Rating::Good => 0,
            Rating::Fair | Rating::Poor => 1,
            Rating::Critical => 2,
        }
    }
}

/// One supervised process, as the health check sees it.
pub struct ProcessHealth {
    pub name: String,
    pub state: String,
    pub given_up: Option<String>,
    /// Zombies in its tree that its own processes have left unreaped.
    pub zombies: usize,
}

/// Processes: failed, waiting to restart, or leaving zombies behind.
pub fn processes(states: &[ProcessHealth]) -> Component {
    let all = states.len() as f64;
    let mut reasons = Vec::new();
    let (mut failed, mut waiting, mut zombies) = (0.0, 0.0, false);
    for process in states {
        let name = &process.name;
        match process.state.as_str() {
            "failed" => {
                failed += 1.0;
                reasons.push(match &process.given_up {
                    Some(why) => format!("process {name:?} failed: {why}"),
                    None => format!("process {name:?} failed"),
                });
            }
            "backoff" => {
                waiting += 1.0;
                reasons.push(format!("process {name:?} is waiting to restart"));
            }
            _ => {}
        }
        if process.zombies > 0 {
            zombies = true;
            reasons.push(format!(
                "process {name:?} leaves {} zombie process(es) unreaped (their parent does not wait for them)",
                process.zombies
            ));
        }
    }
    let mut score = if all == 0.0 { 100.0 } else { 100.0 - 100.0 * failed / all - 50.0 * waiting / all };
    if zombies {
        score = score.min(85.0);
    }
    Component { name: "processes".into(), score: score.clamp(0.0, 100.0) as u32, reasons }
}

/// The cache: its bytes against the limit, and the free space of its volume.
pub fn cache(bytes: Option<u64>, max_size: u64, volume: Option<(u64, u64)>) -> Component {
    use crate::config::units::format_size;
    let mut reasons = Vec::new();
    let mut score = 100;
    if let Some(bytes) = bytes.filter(|_| max_size > 0) {
        let used = bytes as f64 / max_size as f64;
        score = match used {
            u if u <= 0.8 => 100,
            u if u <= 0.9 => 85,
            u if u <= 1.0 => 70,
            _ => 40,
        };
        if score < 100 {
            reasons.push(format!("cache at {:.0}% of {}", used * 100.0, format_size(max_size)));
        }
    }
    if let Some((total, free)) = volume.filter(|(total, _)| *total > 0) {
        let share = free as f64 / total as f64;
        let cap = if share < 0.05 {
            20
        } else if share < 0.10 {
            60
        } else {
            100
        };
        if cap < 100 {
            score = score.min(cap);
            reasons.push(format!("the cache's disk has {} free ({:.0}%)", format_size(free), share * 100.0));
        }
    }
    Component { name: "cache".into(), score, reasons }
}

/// One pooled MCP server, as the health check sees it.
pub struct PoolHealth {
    pub server: String,
    /// Warm-ups that failed in a row.
    pub warm_failures: u32,
    /// Connections that died or failed a health check in the last 10 minutes.
    pub replaced_last_10m: usize,
    pub stderr: Vec<String>,
}

/// MCP pools: a server that cannot be started, or whose connections keep dying.
pub fn mcp(pools: &[PoolHealth]) -> Component {
    let mut reasons = Vec::new();
    let mut score = 100;
    for pool in pools {
        let server = &pool.server;
        if pool.warm_failures > 0 {
            score = score.min(40);
            let last = pool.stderr.last().map(|l| format!(": {l}")).unwrap_or_default();
            reasons.push(format!("mcp server {server:?} failed to start {} times in a row{last}", pool.warm_failures));
        }
        if pool.replaced_last_10m > 0 {
            score = score.min(if pool.replaced_last_10m >= 3 { 60 } else { 85 });
            reasons.push(format!("mcp server {server:?} restarted {} times in 10 min", pool.replaced_last_10m));
        }
    }
    Component { name: "mcp".into(), score, reasons }
}

/// What a probe of the workspace's team cache found (see `team_cache::probe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteProbe {
    /// The server answered.
    Answered,
    /// It refused the token, or there is none.
    Refused(String),
    /// It answered with a server error.
    Failing(String),
    /// No connection, or no answer in time.
    Unreachable(String),
}

/// The team cache Nx is configured to use (`server`): reachable, and taking the token. Nx 24 fails
/// a run whose remote lookup gets no answer, a 401 or a 5xx (seen with 24.0.6: "Failed to send
/// request", "Misconfigured remote cache endpoint"), so any of those is Critical.
pub fn remote_cache(server: &str, probe: &RemoteProbe) -> Component {
    let (score, reason) = match probe {
        RemoteProbe::Answered => (100, None),
        RemoteProbe::Refused(why) | RemoteProbe::Failing(why) | RemoteProbe::Unreachable(why) => (
            10,
            Some(format!("the team cache at {server} cannot be used ({why}): Nx runs that miss the local cache fail")),
        ),
    };
    Component { name: "remoteCache".into(), score, reasons: reason.into_iter().collect() }
}

/// What the sessions component is scored on (plain figures, so scoring needs no
/// service: `sidecar::health_methods` gathers them).
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionFigures {
    /// Sessions of clients that vanished, expired in the last hour.
    pub vanished_recently: usize,
    /// Sessions whose client is gone, waiting for their expiry.
    pub disconnected: usize,
    /// Events not sent to clients that read too slowly: in all, and how long ago the last was.
    pub events_dropped: u64,
    pub last_drop_ago_ms: Option<u64>,
}

/// Sessions: clients that vanished without a word leave work for the expiry;
/// clients that read too slowly miss events (5 points while the last loss is
/// under an hour old: the client misses what happens, the workspace is fine).
pub fn sessions(figures: &SessionFigures) -> Component {
    let mut reasons = Vec::new();
    let vanished = figures.vanished_recently;
    let mut score = 100u32.saturating_sub(10 * vanished as u32).max(60);
    if vanished > 0 {
        reasons
            .push(format!("{vanished} client(s) vanished without closing; their session(s) expired in the last hour"));
    }
    if figures.disconnected > 0 {
        reasons.push(format!("{} session(s) waiting to expire", figures.disconnected));
    }
    if let Some(ago) = figures.last_drop_ago_ms.filter(|ago| *ago < 3_600_000) {
        score = score.saturating_sub(5);
        reasons.push(format!(
            "{} event(s) dropped for clients that read too slowly, the last {} min ago",
            figures.events_dropped,
            ago / 60_000
        ));
    }
    Component { name: "sessions".into(), score, reasons }
}

/// The sidecar's own resident memory.
pub fn sidecar_memory(rss: u64) -> Component {
    let mb = rss as f64 / (1 << 20) as f64;
    let score = if mb <= 100.0 {
        100
    } else if mb <= 500.0 {
        60
    } else {
        20
    };
    let reasons = if score < 100 { vec![format!("the sidecar uses {mb:.0} MB")] } else { Vec::new() };
    Component { name: "sidecar".into(), score, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_events_cost_five_points_for_an_hour() {
        let recent = SessionFigures { events_dropped: 40, last_drop_ago_ms: Some(120_000), ..Default::default() };
        let component = sessions(&recent);
        assert_eq!(component.score, 95);
        assert_eq!(component.reasons, ["40 event(s) dropped for clients that read too slowly, the last 2 min ago"]);
        let old = SessionFigures { events_dropped: 40, last_drop_ago_ms: Some(3_700_000), ..Default::default() };
        assert_eq!(sessions(&old).score, 100);
        assert!(sessions(&old).reasons.is_empty());
        assert_eq!(sessions(&SessionFigures::default()).score, 100);
    }

    #[test]
    fn the_worst_component_rates_the_workspace() {
        let ok = cache(Some(10), 100, Some((100, 50)));
        let failed = processes(&[ProcessHealth {
            name: "web".into(),
            state: "failed".into(),
            given_up: Some("restarted 3 times within 10m; given up".into()),
            zombies: 0,
        }]);
        let report = HealthReport::new("/ws".into(), vec![ok, failed], 0);
        assert_eq!((report.rating, report.score), (Rating::Critical, 0));
        assert_eq!(report.reasons, vec!["process \"web\" failed: restarted 3 times within 10m; given up"]);
    }

    #[test]
    fn a_worse_rating_is_published_at_once_and_a_better_one_after_it_held() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut h = Hysteresis::new(Rating::Excellent);
        assert!(h.observe(Rating::Fair, at(0)), "worse: at once");
        assert!(!h.observe(Rating::Excellent, at(300)), "a crash loop's restart");
        assert_eq!(h.due(), Some(at(300) + RECOVERY_HOLD));
        assert!(!h.observe(Rating::Fair, at(600)), "its next crash: same as published");
        assert_eq!(h.due(), None, "the hold starts over");
        // Eight swings in three seconds publish nothing more.
        let changes = (0..8u64)
            .filter(|&i| h.observe([Rating::Excellent, Rating::Fair][(i % 2) as usize], at(1000 + i * 375)))
            .count();
        assert_eq!(changes, 0);
        assert!(h.observe(Rating::Poor, at(4000)), "worse again: at once");
        assert!(!h.observe(Rating::Excellent, at(5000)));
        assert!(!h.observe(Rating::Good, at(9000)));
        assert!(h.observe(Rating::Excellent, at(15_000)), "held 10 s");
        assert_eq!(h.published(), Rating::Good, "the worst rating seen while it held");
        assert!(!h.observe(Rating::Good, at(15_001)) && h.due().is_none());
    }

    #[test]
    fn ratings_follow_the_documented_bands() {
        let rate = |bytes| HealthReport::new("/ws".into(), vec![cache(Some(bytes), 100, None)], 0).rating;
        assert_eq!(rate(50), Rating::Excellent);
        assert_eq!(rate(85), Rating::Good);
        assert_eq!(rate(95), Rating::Fair);
        assert_eq!(rate(150), Rating::Poor);
        assert_eq!(cache(Some(96), 100, None).reasons, vec!["cache at 96% of 100 B"]);
        assert_eq!(cache(Some(1), 100, Some((100, 3))).score, 20);
        assert_eq!(Rating::of(24), Rating::Critical);
    }
}
