//! What every bench's `main` decides first: benchmarking or a smoke test, the scratch
//! directory, and numbers from the environment.

use std::path::Path;

use tempfile::TempDir;

/// How the bench binary was started.
#[derive(Debug, Clone)]
pub struct Mode {
    args: Vec<String>,
    /// A measurement (`cargo bench`, which passes `--bench`); otherwise a smoke test
    /// (`cargo test --benches`), where every part runs once on small data.
    pub benchmarking: bool,
}

impl Mode {
    /// As criterion decides it: benchmarking under `--bench`, unless `--test` or
    /// `--profile-time` is given too.
    pub fn from_args() -> Mode {
        let args: Vec<String> = std::env::args().collect();
        let mut mode = Mode {
            args,
            benchmarking: false,
        };
        mode.benchmarking =
            mode.has("--bench") && !mode.has("--test") && !mode.has("--profile-time");
        mode
    }

    /// Whether `flag` (or `flag=…`) was given.
    pub fn has(&self, flag: &str) -> bool {
        self.args.iter().any(|a| {
            a == flag
                || a.strip_prefix(flag)
                    .is_some_and(|rest| rest.starts_with('='))
        })
    }

    /// `bench` when benchmarking, else `smoke`.
    pub fn pick<T>(&self, bench: T, smoke: T) -> T {
        if self.benchmarking { bench } else { smoke }
    }

    /// Under `--list` (what `cargo bench -- --list` asks): prints `names` as criterion does and
    /// returns true, so that the caller returns without measuring.
    pub fn listed(&self, names: &[&str]) -> bool {
        if self.has("--list") {
            for name in names {
                println!("{name}: benchmark");
            }
        }
        self.has("--list")
    }

    /// Printed at the end of a smoke test.
    pub fn note(&self) {
        if !self.benchmarking {
            println!(
                "\n(test mode: every part ran once on small data; these are not measurements)"
            );
        }
    }
}

/// The number in environment variable `name`, else `default`; panics on a non-number.
pub fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}: a number")),
        Err(_) => default,
    }
}

/// A fresh scratch directory named `prefix…` under `base` (a bench passes
/// `env!("CARGO_TARGET_TMPDIR")`, so it measures the disk that holds `target/`), removed when
/// dropped.
pub fn scratch(base: &str, prefix: &str) -> TempDir {
    let base = Path::new(base);
    std::fs::create_dir_all(base).expect("create CARGO_TARGET_TMPDIR");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("create a scratch dir under CARGO_TARGET_TMPDIR")
}

/// `n` as `1k`, `10k`, `100k` when it is a whole number of thousands.
pub fn count_label(n: usize) -> String {
    if n >= 1000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}
