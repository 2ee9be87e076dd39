//! Memory leak detection: a sustained upward slope, not one threshold crossing.
//!
//! Samples of a process tree's resident memory are kept for one window. Once
//! they span the window, a least-squares line is fitted through them. It is a
//! leak when the line rises by at least `minGrowth` over the window and fits
//! well (r² at least 0.8): steady growth, not a spike or a sawtooth of
//! allocations and frees. After a finding the samples start over, so one leak
//! is reported once per window.

use std::collections::VecDeque;
use std::time::Duration;

use super::spec::Leak;

/// What was found, for the `processMemoryLeak` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub bytes_per_minute: f64,
    pub growth: u64,
    pub r_squared: f64,
    pub samples: usize,
}

#[derive(Debug, Default)]
pub struct LeakWatch {
    samples: VecDeque<(f64, f64)>,
}

const MIN_SAMPLES: usize = 5;
const MIN_FIT: f64 = 0.8;

impl LeakWatch {
    /// Adds a sample taken `at` (since any fixed start) and judges the window.
    pub fn push(&mut self, rule: &Leak, at: Duration, bytes: u64) -> Option<Finding> {
        let (t, window) = (at.as_secs_f64(), rule.window.as_secs_f64());
        self.samples.push_back((t, bytes as f64));
        while self.samples.front().is_some_and(|(first, _)| t - first > window) {
            self.samples.pop_front();
        }
        let span = t - self.samples.front()?.0;
        if self.samples.len() < MIN_SAMPLES || span < window * 0.9 {
            return None;
        }
        let (slope, r_squared) = fit(&self.samples)?;
        let growth = slope * window;
        if slope <= 0.0 || growth < rule.min_growth as f64 || r_squared < MIN_FIT {
            return None;
        }
        let finding =
            Finding { bytes_per_minute: slope * 60.0, growth: growth as u64, r_squared, samples: self.samples.len() };
        self.samples.clear();
        Some(finding)
    }

    /// A restart starts a new series.
    pub fn reset(&mut self) {
        self.samples.clear();
    }
}

/// Least-squares slope (per second) and r² of the samples.
fn fit(samples: &VecDeque<(f64, f64)>) -> Option<(f64, f64)> {
    let n = samples.len() as f64;
    let (sx, sy) = samples.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in samples {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
        syy += (y - my) * (y - my);
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r_squared = if syy == 0.0 { 0.0 } else { (sxy * sxy) / (sxx * syy) };
    Some((slope, r_squared))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn rule() -> Leak {
        Leak { window: Duration::from_secs(60), min_growth: 10 * MB, restart: false }
    }

    fn run(values: impl Iterator<Item = u64>) -> Option<Finding> {
        let mut watch = LeakWatch::default();
        let mut found = None;
        for (i, bytes) in values.enumerate() {
            found = found.or(watch.push(&rule(), Duration::from_secs(i as u64 * 10), bytes));
        }
        found
    }

    #[test]
    fn steady_growth_is_a_leak() {
        let found = run((0..8).map(|i| 100 * MB + i * 3 * MB)).unwrap();
        assert!((found.bytes_per_minute - 18.0 * MB as f64).abs() < 1.0, "{found:?}");
        assert!(found.r_squared > 0.99);
    }

    #[test]
    fn one_spike_flat_memory_and_slow_growth_are_not() {
        assert_eq!(run((0..8).map(|i| if i == 6 { 900 * MB } else { 100 * MB })), None);
        assert_eq!(run((0..8).map(|_| 100 * MB)), None);
        assert_eq!(run((0..8).map(|i| 100 * MB + i * MB / 10)), None);
    }

    #[test]
    fn a_sawtooth_does_not_fit_a_line() {
        assert_eq!(run((0..12).map(|i| 100 * MB + (i % 3) * 20 * MB)), None);
    }

    #[test]
    fn a_short_series_is_not_judged() {
        assert_eq!(run((0..4).map(|i| 100 * MB + i * 50 * MB)), None);
    }
}
