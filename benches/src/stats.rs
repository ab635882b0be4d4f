//! Order statistics of latencies, and timing calls into them.

use std::time::{Duration, Instant};

/// Order statistics of a set of latencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// How many latencies.
    pub count: usize,
    /// The middle one (the upper middle of an even count).
    pub median: Duration,
    /// Their mean.
    pub mean: Duration,
    /// The 99th percentile (nearest rank).
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

impl Stats {
    /// The statistics of `latencies`; panics if there are none (a benchmark that recorded
    /// nothing is a bug, not a measurement).
    pub fn of(latencies: &[Duration]) -> Stats {
        assert!(!latencies.is_empty(), "no latencies recorded");
        let mut sorted = latencies.to_vec();
        sorted.sort_unstable();
        let total: Duration = sorted.iter().sum();
        Stats {
            count: sorted.len(),
            median: percentile(&sorted, 50.0),
            mean: total / sorted.len() as u32,
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// The `p`-th percentile (0 < `p` ≤ 100, nearest rank; 50 is the upper middle of an even
/// count) of `sorted`, which must be sorted and not empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    assert!(!sorted.is_empty(), "the percentile of nothing");
    let rank = (sorted.len() as f64 * p / 100.0).ceil() as usize;
    if p == 50.0 {
        return sorted[sorted.len() / 2];
    }
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (the upper middle of an even count); `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (!sorted.is_empty()).then(|| percentile(&sorted, 50.0))
}

/// The median of some latencies; `None` when there are none.
pub fn median_duration(latencies: &[Duration]) -> Option<Duration> {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    (!sorted.is_empty()).then(|| percentile(&sorted, 50.0))
}

/// The median of `a` divided by the median of `b`; `None` when either is empty.
pub fn median_ratio(a: &[Duration], b: &[Duration]) -> Option<f64> {
    Some(median_duration(a)?.as_secs_f64() / median_duration(b)?.as_secs_f64())
}

/// Microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `call` `iters` times, timing each call into `latencies`; returns the sum (what
/// criterion's `iter_custom` wants).
pub fn timed(latencies: &mut Vec<Duration>, iters: u64, mut call: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        call();
        let took = start.elapsed();
        total += took;
        latencies.push(took);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics() {
        let ms = |v: u64| Duration::from_millis(v);
        let lat: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let s = Stats::of(&lat);
        assert_eq!(
            (s.count, s.median, s.p99, s.max),
            (100, ms(51), ms(99), ms(100))
        );
        assert_eq!(s.mean, Duration::from_micros(50_500));
        assert_eq!(Stats::of(&[ms(3)]).p99, ms(3));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median_duration(&[ms(2), ms(1)]), Some(ms(2)));
    }
}
