//! Times the durable-replace competitors of `benches/atomic_replace.rs` round-robin.
//!
//! Criterion measures one competitor after another; when other processes write to the same disk
//! (a CI runner, a shared VM), their load changes between competitors and the comparison drifts
//! by far more than the competitors differ. This runner instead does one replace per competitor
//! per round, rotating the order every round, so every competitor sees the same disk. It prints
//! a markdown table per size: the median time, the median over rounds of the time divided by
//! the same round's `floor` time (the paired ratio, which cancels the shared drift), and in how
//! many rounds the competitor was slower than the floor (about half of them means no measurable
//! difference).
//!
//! ```sh
//! cargo run --release -p gapreg-benches --example replace_interleaved -- [ROUNDS] [SCRATCH_DIR]
//! ```
//!
//! `ROUNDS` defaults to 200 (50 for 4 MiB); `SCRATCH_DIR` defaults to `target/tmp` under the
//! current directory, so run it from the workspace root to measure the disk holding `target/`.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use gapreg_benches::stats::median;
use gapreg_benches::{Competitor, MIB, REPLACE_SIZES, Slot, payload, size_label};

/// Untimed rounds before the timed ones.
const WARM_UP_ROUNDS: usize = 3;

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: Option<usize> = args
        .next()
        .map(|s| s.parse().expect("ROUNDS must be a positive integer"));
    let base = args
        .next()
        .map_or_else(|| PathBuf::from("target/tmp"), PathBuf::from);
    fs::create_dir_all(&base).expect("create the scratch base directory");
    let floor = Competitor::ALL
        .iter()
        .position(|&c| c == Competitor::Floor)
        .expect("the floor is a competitor");

    for len in REPLACE_SIZES {
        let rounds = rounds.unwrap_or(if len >= MIB { 50 } else { 200 }).max(1);
        let data = payload(len);
        let scratch = tempfile::Builder::new()
            .prefix("replace_interleaved-")
            .tempdir_in(&base)
            .expect("create a scratch dir");
        let slots: Vec<Slot> = Competitor::ALL
            .iter()
            .map(|c| Slot::create(scratch.path(), c.name(), &data).expect("create a target"))
            .collect();

        let n = Competitor::ALL.len();
        let mut millis = vec![Vec::with_capacity(rounds); n];
        for round in 0..WARM_UP_ROUNDS + rounds {
            for k in 0..n {
                let i = (round + k) % n;
                let competitor = Competitor::ALL[i];
                let started = Instant::now();
                competitor.replace(&slots[i], &data).unwrap_or_else(|e| {
                    panic!("{}: durable replace failed: {e}", competitor.name())
                });
                if round >= WARM_UP_ROUNDS {
                    millis[i].push(started.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        for (competitor, slot) in Competitor::ALL.iter().zip(&slots) {
            competitor
                .check(slot, &data)
                .unwrap_or_else(|e| panic!("{}: {e}", competitor.name()));
        }

        println!(
            "\n{} ({rounds} rounds, in {})\n",
            size_label(len),
            base.display()
        );
        println!("| competitor | median ms | median per-round ratio to floor | rounds slower |");
        println!("|---|---:|---:|---:|");
        for (i, competitor) in Competitor::ALL.iter().enumerate() {
            let ratios: Vec<f64> = millis[i]
                .iter()
                .zip(&millis[floor])
                .map(|(t, f)| t / f)
                .collect();
            let slower = ratios.iter().filter(|&&r| r > 1.0).count();
            println!(
                "| {} | {:.3} | {:.3} | {}/{rounds} |",
                competitor.name(),
                median(&millis[i]).unwrap_or(f64::NAN),
                median(&ratios).unwrap_or(f64::NAN),
                slower
            );
        }
    }
}
