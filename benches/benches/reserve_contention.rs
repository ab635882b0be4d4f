//! Concurrent reservers: 8 workers reserving one ID at a time on one shared store, as threads
//! of this process and as processes, against a SQLite counter and the floor (issue 4's
//! throughput and tail targets). One reservation alone is `reserve.rs`.
//!
//! Each worker does `K` single reservations (`IDRESERVE_BENCH_K`, default 150); all start
//! together (threads at a barrier; child processes — this binary re-executed in a role — open
//! their handle, say ready, and wait for go). Every scenario runs 3 rounds, interleaved, each
//! on fresh files, pooled. Reported: total IDs/s (from go to the last worker done) and the
//! per-reservation latency median, p99 and max. The IDs handed out must be exactly the next
//! `8 × K` numbers, each once. The floor row (8 workers appending to one shared `O_APPEND`
//! file, each write followed by its own `fdatasync`, no lock) shows what concurrent flushes on
//! this disk reach.
//!
//! `cargo bench -p gapreg-benches --bench reserve_contention` (about 30 s). Under `cargo test
//! --benches` one round with `K` = 3.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use gapreg_benches::process::{
    self, child_ready, env_var, go, self_command, spawn_ready, wait_all,
};
use gapreg_benches::report::{Table, verdict};
use gapreg_benches::reserve::{PREFIX, SqliteCounter, floor_append, open_append};
use gapreg_benches::run::{Mode, env_number, scratch};
use gapreg_benches::stats::{Stats, ms, us};
use idreserve::{Config, Store};

/// Workers per scenario.
const WORKERS: usize = 8;
/// Default reservations per worker and round.
const DEFAULT_K: usize = 150;
/// Rounds of every scenario.
const ROUNDS: usize = 3;

/// A child's store directory, database or floor file; its number of reservations; where it
/// writes `first_id latency_ns` lines.
const PATH_ENV: &str = "IDRESERVE_BENCH_PATH";
const K_ENV: &str = "IDRESERVE_BENCH_CHILD_K";
const OUT_ENV: &str = "IDRESERVE_BENCH_OUT";

/// Issue 4's targets: 8 processes get ≥ 1.5 × SQLite's IDs/s, the slowest reservation ≤ 10 ×
/// the median.
const TARGET_THROUGHPUT: f64 = 1.5;
const TARGET_TAIL: f64 = 10.0;

/// What the workers share.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idreserve,
    Sqlite,
    FloorAppend,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Idreserve, Kind::Sqlite, Kind::FloorAppend];

    fn name(self) -> &'static str {
        match self {
            Kind::Idreserve => "idreserve",
            Kind::Sqlite => "sqlite",
            Kind::FloorAppend => "floor-append",
        }
    }

    /// Creates the shared store, database or file at `path`, with one reservation done, so
    /// that the workers find everything created (lock queue directory, WAL file).
    fn prepare(self, path: &Path) -> u64 {
        match self {
            Kind::Idreserve => {
                drop(Store::create(path, Config::default()).expect("create the store"))
            }
            Kind::Sqlite => drop(SqliteCounter::create(path).expect("create the database")),
            Kind::FloorAppend => {}
        }
        Worker::open(self, path).reserve()
    }
}

/// One worker's handle: its own store handle, connection or file descriptor.
enum Worker {
    Idreserve(Store),
    Sqlite(SqliteCounter),
    FloorAppend(File),
}

impl Worker {
    fn open(kind: Kind, path: &Path) -> Worker {
        match kind {
            Kind::Idreserve => Worker::Idreserve(Store::open(path).expect("open the store")),
            Kind::Sqlite => Worker::Sqlite(SqliteCounter::open(path).expect("open the counter")),
            Kind::FloorAppend => Worker::FloorAppend(open_append(path).expect("open the file")),
        }
    }

    /// One reservation of one ID; returns its number (0 for the floor, which hands out none).
    fn reserve(&mut self) -> u64 {
        match self {
            Worker::Idreserve(store) => {
                store.reserve(PREFIX, 1).expect("idreserve reserve").first()
            }
            Worker::Sqlite(counter) => counter.reserve(PREFIX, 1).expect("sqlite reserve"),
            Worker::FloorAppend(file) => {
                floor_append(file).expect("append + fdatasync");
                0
            }
        }
    }

    /// `k` timed reservations: (ID, latency) each.
    fn run(&mut self, k: usize) -> Vec<(u64, Duration)> {
        (0..k)
            .map(|_| {
                let start = Instant::now();
                let id = self.reserve();
                (id, start.elapsed())
            })
            .collect()
    }
}

/// The child's role: open, say ready, wait for go, reserve, write the results.
fn child_main(role: &str) {
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.name() == role)
        .unwrap_or_else(|| panic!("unknown role {role:?}"));
    let path = PathBuf::from(env_var(PATH_ENV));
    let k: usize = env_var(K_ENV).parse().expect("a number of reservations");
    let mut worker = Worker::open(kind, &path);
    child_ready();
    let mut text = String::new();
    for (id, took) in worker.run(k) {
        let _ = writeln!(text, "{id} {}", took.as_nanos());
    }
    fs::write(env_var(OUT_ENV), text).expect("write the child's results");
}

/// Checks that the workers got exactly the IDs after `first_taken`, each once.
fn check_ids(kind: Kind, first_taken: u64, results: &[(u64, Duration)]) {
    if kind == Kind::FloorAppend {
        return;
    }
    let mut ids: Vec<u64> = results.iter().map(|&(id, _)| id).collect();
    ids.sort_unstable();
    let last = first_taken + results.len() as u64;
    let expected: Vec<u64> = (first_taken + 1..=last).collect();
    assert!(
        ids == expected,
        "{}: the IDs are not exactly {}..={last}",
        kind.name(),
        first_taken + 1
    );
}

/// One round of `WORKERS` threads × `k` reservations: the wall time and the results.
fn threads(kind: Kind, path: &Path, k: usize) -> (Duration, Vec<(u64, Duration)>) {
    let barrier = Arc::new(Barrier::new(WORKERS + 1));
    let handles: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (barrier, path) = (barrier.clone(), path.to_path_buf());
            std::thread::spawn(move || {
                let mut worker = Worker::open(kind, &path);
                barrier.wait();
                (worker.run(k), Instant::now())
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let (mut results, mut end) = (Vec::new(), start);
    for handle in handles {
        let (r, done) = handle.join().expect("a worker thread panicked");
        results.extend(r);
        end = end.max(done);
    }
    (end - start, results)
}

/// One round of `WORKERS` child processes × `k` reservations: the wall time and the results.
fn processes(
    kind: Kind,
    path: &Path,
    k: usize,
    scratch: &Path,
) -> (Duration, Vec<(u64, Duration)>) {
    let outs: Vec<PathBuf> = (0..WORKERS)
        .map(|i| scratch.join(format!("{}-child-{i}.txt", kind.name())))
        .collect();
    let mut children: Vec<_> = outs
        .iter()
        .map(|out| {
            spawn_ready(
                self_command(kind.name())
                    .env(PATH_ENV, path)
                    .env(K_ENV, k.to_string())
                    .env(OUT_ENV, out),
            )
        })
        .collect();
    let start = go(&mut children);
    wait_all(&mut children);
    let wall = start.elapsed();
    let mut results = Vec::with_capacity(WORKERS * k);
    for out in &outs {
        for line in fs::read_to_string(out)
            .expect("read a child's results")
            .lines()
        {
            let (id, ns) = line.split_once(' ').expect("an `id ns` line");
            let ns = ns.parse().expect("a latency in ns");
            results.push((id.parse().expect("an ID"), Duration::from_nanos(ns)));
        }
    }
    assert_eq!(results.len(), WORKERS * k, "a child lost results");
    (wall, results)
}

/// One scenario's outcome, pooled over its rounds.
struct Contended {
    kind: Kind,
    processes: bool,
    /// Summed over the rounds: from go to the last worker done.
    wall: Duration,
    latencies: Vec<Duration>,
}

impl Contended {
    fn ids_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Every scenario, `rounds` times, interleaved (each round on fresh files).
fn contention(scratch: &Path, k: usize, rounds: usize) -> Vec<Contended> {
    let mut runs: Vec<Contended> = [false, true]
        .into_iter()
        .flat_map(|processes| {
            Kind::ALL.map(|kind| Contended {
                kind,
                processes,
                wall: Duration::ZERO,
                latencies: Vec::new(),
            })
        })
        .collect();
    for round in 0..rounds {
        for run in &mut runs {
            let how = if run.processes {
                "processes"
            } else {
                "threads"
            };
            let path = scratch.join(format!("{how}-{round}-{}", run.kind.name()));
            eprintln!(
                "round {}/{rounds}: {WORKERS} {how} x {k} on {}",
                round + 1,
                run.kind.name()
            );
            let first_taken = run.kind.prepare(&path);
            let (wall, results) = if run.processes {
                processes(run.kind, &path, k, scratch)
            } else {
                threads(run.kind, &path, k)
            };
            check_ids(run.kind, first_taken, &results);
            run.wall += wall;
            run.latencies.extend(results.iter().map(|&(_, d)| d));
        }
    }
    runs
}

fn report(runs: &[Contended], k: usize, rounds: usize) -> String {
    let mut table = Table::new(&[
        "competitor",
        "<workers",
        "IDs",
        "wall s",
        "IDs/s",
        "median µs",
        "p99 µs",
        "max µs",
        "max/median",
    ]);
    for r in runs {
        let s = Stats::of(&r.latencies);
        table.row([
            r.kind.name().to_owned(),
            format!(
                "{WORKERS} {}",
                if r.processes { "processes" } else { "threads" }
            ),
            s.count.to_string(),
            format!("{:.2}", r.wall.as_secs_f64()),
            format!("{:.0}", r.ids_per_sec()),
            format!("{:.0}", us(s.median)),
            format!("{:.0}", us(s.p99)),
            format!("{:.0}", us(s.max)),
            format!("{:.1}", s.max.as_secs_f64() / s.median.as_secs_f64()),
        ]);
    }
    let mut targets = Table::new(&["target", "measured", "<detail", "<verdict"]);
    let find = |kind: Kind| runs.iter().find(|r| r.processes && r.kind == kind);
    if let (Some(ours), Some(sqlite)) = (find(Kind::Idreserve), find(Kind::Sqlite)) {
        let r = ours.ids_per_sec() / sqlite.ids_per_sec();
        targets.row([
            format!("{WORKERS} processes: IDs/s ≥ {TARGET_THROUGHPUT} × SQLite"),
            format!("{r:.2}×"),
            format!(
                "{:.0} vs {:.0} IDs/s",
                ours.ids_per_sec(),
                sqlite.ids_per_sec()
            ),
            verdict(r >= TARGET_THROUGHPUT).to_owned(),
        ]);
        let s = Stats::of(&ours.latencies);
        let tail = s.max.as_secs_f64() / s.median.as_secs_f64();
        targets.row([
            format!("{WORKERS} processes: slowest ≤ {TARGET_TAIL} × median"),
            format!("{tail:.1}×"),
            format!("{:.1} ms vs {:.2} ms", ms(s.max), ms(s.median)),
            verdict(tail <= TARGET_TAIL).to_owned(),
        ]);
    }
    format!(
        "\n### Contention ({WORKERS} workers × {k} single reservations on one shared store, \
         {rounds} interleaved rounds pooled)\n\n{table}\n### Targets (issue 4)\n\n{targets}"
    )
}

fn main() {
    if let Some(role) = process::role() {
        child_main(&role);
        return;
    }
    let mode = Mode::from_args();
    if mode.listed(&["reserve_contention"]) {
        return;
    }
    let k = env_number("IDRESERVE_BENCH_K", mode.pick(DEFAULT_K, 3));
    let rounds = mode.pick(ROUNDS, 1);
    let scratch = scratch(env!("CARGO_TARGET_TMPDIR"), "reserve_contention-");
    let runs = contention(scratch.path(), k, rounds);
    mode.note();
    println!("{}", report(&runs, k, rounds));
}
