//! What `cache serve` counts, per token (hits, misses, uploads, refusals, bytes each way) and in
//! all (requests without a valid token, damaged artifacts), and its exposition at `GET /metrics`
//! in the Prometheus text format. Counters are atomics, one set per token fixed at start: nothing
//! is locked on a request's path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::policy::Evictions;
use super::tokens::Tokens;
use crate::exposition::{Family, label};

#[derive(Debug, Default)]
pub struct TokenCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub uploads: AtomicU64,
    pub refused: AtomicU64,
    pub bytes_served: AtomicU64,
    pub bytes_stored: AtomicU64,
}

#[derive(Debug)]
pub struct Counters {
    tokens: Vec<(String, TokenCounters)>,
    pub unauthorized: AtomicU64,
    pub damaged: AtomicU64,
    /// Requests the store failed (unreachable, refused, timed out).
    pub store_errors: AtomicU64,
    /// Connections cut because their client read nothing for the client time-out (shared with
    /// the acceptor).
    pub stalled: std::sync::Arc<AtomicU64>,
    /// Written by the policy thread.
    pub evictions: std::sync::Arc<Evictions>,
    started: Instant,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub fn new(tokens: &Tokens) -> Counters {
        let tokens = tokens.0.iter().map(|t| (t.name.clone(), TokenCounters::default())).collect();
        Counters {
            tokens,
            unauthorized: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            stalled: Default::default(),
            evictions: Default::default(),
            started: Instant::now(),
        }
    }

    /// The counters of the token at `index` in the server's tokens.
    pub fn of(&self, index: usize) -> &TokenCounters {
        &self.tokens[index].1
    }

    /// Every token's counts, by name.
    pub fn per_token_json(&self) -> Vec<serde_json::Value> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let of = |(name, c): &(String, TokenCounters)| {
            serde_json::json!({
                "name": name, "hits": load(&c.hits), "misses": load(&c.misses), "uploads": load(&c.uploads),
                "refused": load(&c.refused), "servedBytes": load(&c.bytes_served), "storedBytes": load(&c.bytes_stored),
            })
        };
        self.tokens.iter().map(of).collect()
    }

    pub fn render(&self) -> String {
        let mut up = Family::new("nxops_cache_serve_up", "gauge", "1 while the team cache server runs");
        let mut uptime = Family::new("nxops_cache_serve_uptime_seconds", "gauge", "seconds since the server started");
        let mut unauthorized =
            Family::new("nxops_cache_serve_unauthorized_total", "counter", "requests without a valid token (401)");
        let mut damaged = Family::new(
            "nxops_cache_serve_damaged_total",
            "counter",
            "stored artifacts that failed their check, answered as misses and set aside",
        );
        let mut store_errors = Family::new(
            "nxops_cache_serve_store_errors_total",
            "counter",
            "requests the store failed (downloads answered as misses, uploads with 403)",
        );
        store_errors.sample("", self.store_errors.load(Ordering::Relaxed));
        let mut stalled = Family::new(
            "nxops_cache_serve_stalled_total",
            "counter",
            "connections cut because their client read nothing for clientTimeout",
        );
        stalled.sample("", self.stalled.load(Ordering::Relaxed));
        up.sample("", 1);
        uptime.sample("", format!("{:.3}", self.started.elapsed().as_secs_f64()));
        unauthorized.sample("", self.unauthorized.load(Ordering::Relaxed));
        damaged.sample("", self.damaged.load(Ordering::Relaxed));
        let evictions = &self.evictions;
        let mut evicted =
            Family::new("nxops_cache_serve_evicted_total", "counter", "artifacts removed by maxSize and maxAge");
        let mut evicted_bytes = Family::new(
            "nxops_cache_serve_evicted_bytes_total",
            "counter",
            "artifact bytes removed by maxSize and maxAge",
        );
        let mut stored =
            Family::new("nxops_cache_serve_artifacts", "gauge", "artifacts in the store, as of the last policy run");
        let mut stored_bytes =
            Family::new("nxops_cache_serve_bytes", "gauge", "artifact bytes in the store, as of the last policy run");
        evicted.sample("", evictions.artifacts.load(Ordering::Relaxed));
        evicted_bytes.sample("", evictions.bytes.load(Ordering::Relaxed));
        stored.sample("", evictions.stored_artifacts.load(Ordering::Relaxed));
        stored_bytes.sample("", evictions.stored_bytes.load(Ordering::Relaxed));
        let mut families = vec![
            up,
            uptime,
            unauthorized,
            damaged,
            store_errors,
            stalled,
            evicted,
            evicted_bytes,
            stored,
            stored_bytes,
        ];
        families.extend(self.per_token());
        crate::exposition::render(&families)
    }

    fn per_token(&self) -> Vec<Family> {
        type Pick = fn(&TokenCounters) -> &AtomicU64;
        let kinds: [(&'static str, &'static str, Pick); 6] = [
            ("nxops_cache_serve_hits_total", "downloads served, by token", |c| &c.hits),
            ("nxops_cache_serve_misses_total", "downloads of hashes not stored (404), by token", |c| &c.misses),
            ("nxops_cache_serve_uploads_total", "artifacts stored, by token", |c| &c.uploads),
            ("nxops_cache_serve_refused_total", "requests refused (403, 409, 4xx), by token", |c| &c.refused),
            ("nxops_cache_serve_served_bytes_total", "artifact bytes served, by token", |c| &c.bytes_served),
            ("nxops_cache_serve_stored_bytes_total", "artifact bytes stored, by token", |c| &c.bytes_stored),
        ];
        kinds
            .into_iter()
            .map(|(name, help, pick)| {
                let mut family = Family::new(name, "counter", help);
                for (token, counters) in &self.tokens {
                    family.sample(&format!("token=\"{}\"", label(token)), pick(counters).load(Ordering::Relaxed));
                }
                family
            })
            .collect()
    }
}
