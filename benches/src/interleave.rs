//! Running competitors alternately, so that all of them see the same machine.
//!
//! Criterion measures one competitor after another. On a shared machine the flush latency and
//! the CPU left to a benchmark drift over the seconds spent on one competitor, by more than the
//! competitors differ. [`run`] instead gives every competitor one turn per round, rotating
//! the order every round, and keeps each competitor's median call of each round; the *paired*
//! ratio ([`Series::paired`]) is the median over the rounds of the ratio of two competitors'
//! medians in the same round, which cancels the drift the two shared.

use std::time::Duration;

use crate::stats::{Stats, median, median_duration, median_ratio};

/// One competitor's calls in interleaved rounds.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// The competitor's name.
    pub name: String,
    /// Every timed call (warm-up rounds excluded).
    pub calls: Vec<Duration>,
    /// The median call of each timed round.
    pub rounds: Vec<Duration>,
}

impl Series {
    /// An empty series.
    pub fn new(name: impl Into<String>) -> Series {
        Series {
            name: name.into(),
            ..Series::default()
        }
    }

    /// Records one round's calls.
    pub fn record(&mut self, calls: &[Duration]) {
        if let Some(m) = median_duration(calls) {
            self.calls.extend_from_slice(calls);
            self.rounds.push(m);
        }
    }

    /// The statistics of every call; `None` before any.
    pub fn stats(&self) -> Option<Stats> {
        (!self.calls.is_empty()).then(|| Stats::of(&self.calls))
    }

    /// The per-round ratios of this series to `other` (round by round).
    pub fn ratios(&self, other: &Series) -> Vec<f64> {
        self.rounds
            .iter()
            .zip(&other.rounds)
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect()
    }

    /// The median over the rounds of this series' median divided by `other`'s in the same
    /// round.
    pub fn paired(&self, other: &Series) -> Option<f64> {
        median(&self.ratios(other))
    }

    /// The median of all this series' calls divided by that of `other`'s.
    pub fn pooled(&self, other: &Series) -> Option<f64> {
        median_ratio(&self.calls, &other.calls)
    }

    /// In how many rounds this series was slower than `other`.
    pub fn slower_rounds(&self, other: &Series) -> usize {
        self.ratios(other).iter().filter(|&&r| r > 1.0).count()
    }
}

/// `warm_up + rounds` rounds; in each, every competitor `0..names.len()` gets one turn, in an
/// order rotated by one every round. A turn is `turn(competitor, round)`, which makes its calls
/// and returns their latencies (one or more). Warm-up rounds are run and dropped. Returns one
/// series per competitor, in the order of `names`.
pub fn run(
    names: &[&str],
    warm_up: usize,
    rounds: usize,
    mut turn: impl FnMut(usize, usize) -> Vec<Duration>,
) -> Vec<Series> {
    let mut series: Vec<Series> = names.iter().map(|n| Series::new(*n)).collect();
    let n = names.len();
    for round in 0..warm_up + rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let calls = turn(i, round);
            if round >= warm_up {
                series[i].record(&calls);
            }
        }
    }
    series
}

/// The series named `name`.
pub fn find<'a>(series: &'a [Series], name: &str) -> Option<&'a Series> {
    series.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_rotate_and_pair() {
        let mut order = Vec::new();
        let series = run(&["a", "b"], 1, 3, |i, round| {
            order.push((round, i));
            // b is twice as slow as a, and the machine gets slower every round.
            let base = Duration::from_millis(10 * (round as u64 + 1));
            vec![base * (i as u32 + 1)]
        });
        assert_eq!(
            order,
            [
                (0, 0),
                (0, 1),
                (1, 1),
                (1, 0),
                (2, 0),
                (2, 1),
                (3, 1),
                (3, 0)
            ]
        );
        let (a, b) = (&series[0], &series[1]);
        assert_eq!((a.calls.len(), b.rounds.len()), (3, 3));
        assert_eq!(b.paired(a), Some(2.0));
        assert_eq!(b.slower_rounds(a), 3);
        assert_eq!(find(&series, "b").map(|s| s.name.as_str()), Some("b"));
    }
}
