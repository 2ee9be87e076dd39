//! When to restart a process that ended, and after how long.
//!
//! Restarts follow the spec's mode; the delay grows exponentially from
//! `backoff.initial` by `backoff.factor` up to `backoff.max`, and goes back to
//! `initial` once a run has lasted `backoff.resetAfter`. More than
//! `maxRestarts` restarts within `restartWindow` gives the process up (the
//! supervisord FATAL and OTP intensity rule): it stays `failed` until a user
//! starts it again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::spec::{ProcessSpec, RestartMode};

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Restart {
        delay: Duration,
    },
    /// The restart budget is spent.
    GiveUp {
        reason: String,
    },
    /// The mode does not ask for a restart (a clean exit under on-failure, or never).
    Stay,
}

/// Restarts made so far, for one process.
#[derive(Debug, Default, Clone)]
pub struct RestartBook {
    recent: VecDeque<Instant>,
    consecutive: u32,
    pub total: u32,
}

impl RestartBook {
    /// Decides what follows an end after `uptime`; `failed` when the end was a
    /// failure (non-zero exit, signal, failed health check, memory limit).
    pub fn decide(&mut self, spec: &ProcessSpec, failed: bool, uptime: Duration, now: Instant) -> Decision {
        let wanted = match spec.restart {
            RestartMode::Always => true,
            RestartMode::OnFailure => failed,
            RestartMode::Never => false,
        };
        if !wanted {
            return Decision::Stay;
        }
        if uptime >= spec.backoff.reset_after {
            self.consecutive = 0;
        }
        while self.recent.front().is_some_and(|t| now.duration_since(*t) >= spec.restart_window) {
            self.recent.pop_front();
        }
        if self.recent.len() >= spec.max_restarts as usize {
            return Decision::GiveUp {
                reason: format!(
                    "restarted {} within {}; given up",
                    times(self.recent.len()),
                    crate::config::units::format_duration(spec.restart_window)
                ),
            };
        }
        let b = spec.backoff;
        let scaled = b.initial.as_secs_f64() * b.factor.powi(self.consecutive.min(64) as i32);
        let delay = Duration::try_from_secs_f64(scaled).unwrap_or(b.max).min(b.max);
        self.consecutive += 1;
        self.total += 1;
        self.recent.push_back(now);
        Decision::Restart { delay }
    }

    /// A user's start: the budget is whole again.
    pub fn forgive(&mut self) {
        self.recent.clear();
        self.consecutive = 0;
    }
}

/// "1 time", "3 times".
fn times(n: usize) -> String {
    if n == 1 { "1 time".into() } else { format!("{n} times") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use serde_json::json;
    use std::path::Path;

    fn spec(extra: serde_json::Value) -> ProcessSpec {
        let mut value = json!({"command": "x"});
        value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        super::super::spec::parse("p", value, Path::new("/ws"), &Settings::defaults(), "test").unwrap()
    }

    #[test]
    fn delays_grow_then_the_process_is_given_up() {
        let spec = spec(json!({"backoff": {"initial": "100ms", "factor": 2, "max": "250ms"}}));
        let (mut book, now) = (RestartBook::default(), Instant::now());
        let short = Duration::from_millis(10);
        let ms = |n| Decision::Restart { delay: Duration::from_millis(n) };
        assert_eq!(book.decide(&spec, true, short, now), ms(100));
        assert_eq!(book.decide(&spec, true, short, now), ms(200));
        assert_eq!(book.decide(&spec, true, short, now), ms(250));
        let Decision::GiveUp { reason } = book.decide(&spec, true, short, now) else { panic!() };
        assert_eq!(reason, "restarted 3 times within 10m; given up");
        assert_eq!(book.total, 3);
    }

    #[test]
    fn the_window_forgets_old_restarts_and_uptime_resets_the_delay() {
        let spec = spec(json!({"restartWindow": "1m", "maxRestarts": 1}));
        let (mut book, start) = (RestartBook::default(), Instant::now());
        assert!(matches!(book.decide(&spec, true, Duration::ZERO, start), Decision::Restart { .. }));
        let Decision::GiveUp { reason } = book.decide(&spec, true, Duration::ZERO, start) else { panic!() };
        assert_eq!(reason, "restarted 1 time within 1m; given up", "one restart is \"1 time\"");
        let later = start + Duration::from_secs(61);
        let after_a_long_run = book.decide(&spec, true, Duration::from_secs(61), later);
        assert_eq!(after_a_long_run, Decision::Restart { delay: Duration::from_millis(200) });
    }

    #[test]
    fn modes_decide_which_ends_restart() {
        let mut book = RestartBook::default();
        let now = Instant::now();
        assert_eq!(book.decide(&spec(json!({})), false, Duration::ZERO, now), Decision::Stay);
        assert!(matches!(
            book.decide(&spec(json!({"restart": "always"})), false, Duration::ZERO, now),
            Decision::Restart { .. }
        ));
        assert_eq!(book.decide(&spec(json!({"restart": "never"})), true, Duration::ZERO, now), Decision::Stay);
    }
}
