//! What one durable ID reservation costs: `idreserve` against a SQLite counter and the syscall
//! floor, one thread, no contention (issue 4's targets). The contended case is
//! `reserve_contention.rs`.
//!
//! Every competitor works in its own directory under a fresh temp dir in
//! `CARGO_TARGET_TMPDIR` (the disk that holds `target/`) and is durable when a call returns:
//!
//! - `idreserve-1`, `idreserve-10`: `Store::reserve("SEC", 1)` and `("SEC", 10)`, each on its own
//!   store (one lock, read of the log, one appended record, one `fdatasync`).
//! - `sqlite-1`, `sqlite-10`: the counter a user would otherwise write
//!   ([`SqliteCounter`]: WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`, `UPDATE … + n`).
//! - `floor-append`: one 20-byte `write` to an `O_APPEND` file that stays open, then
//!   `fdatasync`.
//! - `floor-replace`: `flock`, temp write, `fsync`, rename, directory `fsync`, unlock.
//!
//! First criterion's group `reserve` (each call also timed on its own, `iter_custom`), then the
//! same competitors **interleaved**: 40 rounds of 25 calls of each, the order rotated every
//! round. The summary gives per-call median, mean and p99 for both passes, and the targets'
//! verdicts on the *paired* ratio (median over rounds of the two competitors' same-round
//! medians). Every counter must equal the number of calls made.
//!
//! `cargo bench -p gapreg-benches --bench reserve` (about 40 s). Under `cargo test --benches`
//! every part runs once.

use std::fs::{self, File};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use gapreg_benches::interleave::{self, Series};
use gapreg_benches::report::{Table, at_most, ratio};
use gapreg_benches::reserve::{
    PREFIX, RECORD, ReplaceFloor, SqliteCounter, floor_append, open_append,
};
use gapreg_benches::run::{Mode, scratch};
use gapreg_benches::stats::{Stats, median_ratio, timed, us};
use idreserve::{Config, Store};

/// Interleaved rounds, and calls per competitor in each.
const ROUNDS: usize = 40;
const BATCH: u64 = 25;

/// Issue 4's targets.
const TARGET_VS_SQLITE: f64 = 0.6;
const TARGET_VS_APPEND: f64 = 1.3;
const TARGET_BATCH: f64 = 1.1;

/// What a competitor works on.
enum Subject {
    Idreserve(Store),
    Sqlite(SqliteCounter),
    FloorAppend { file: File, path: PathBuf },
    FloorReplace(ReplaceFloor),
}

/// A competitor and every call it made.
struct Competitor {
    name: &'static str,
    /// IDs per call.
    n: u64,
    subject: Subject,
    /// Calls made (criterion's, warm-up included, and the interleaved ones).
    calls: u64,
    /// Per-call latencies under criterion (warm-up included).
    criterion: Vec<Duration>,
}

impl Competitor {
    fn new(name: &'static str, n: u64, subject: Subject) -> Competitor {
        Competitor {
            name,
            n,
            subject,
            calls: 0,
            criterion: Vec::new(),
        }
    }

    /// One call: a durable reservation of `n` IDs (or the floor's equivalent).
    fn call(&mut self) {
        self.calls += 1;
        match &mut self.subject {
            Subject::Idreserve(store) => {
                black_box(store.reserve(PREFIX, self.n).expect("idreserve reserve"));
            }
            Subject::Sqlite(counter) => {
                black_box(counter.reserve(PREFIX, self.n).expect("sqlite reserve"));
            }
            Subject::FloorAppend { file, .. } => floor_append(file).expect("append + fdatasync"),
            Subject::FloorReplace(floor) => floor.replace().expect("replace floor"),
        }
    }

    /// Panics unless every call really reserved (or wrote) what it was timed for.
    fn check(&self) {
        let (calls, name) = (self.calls, self.name);
        match &self.subject {
            Subject::Idreserve(store) => {
                let next = store.peek(PREFIX).expect("peek").number();
                assert_eq!(next, calls * self.n + 1, "{name}: calls and counter differ");
            }
            Subject::Sqlite(counter) => {
                let value = counter.value(PREFIX).expect("read the SQLite counter");
                assert_eq!(value, calls * self.n, "{name}: calls and counter differ");
            }
            Subject::FloorAppend { path, .. } => {
                let len = fs::metadata(path).expect("stat the floor's file").len();
                assert_eq!(len, calls * RECORD.len() as u64, "{name}: lost appends");
            }
            Subject::FloorReplace(floor) => {
                if calls > 0 {
                    let found = fs::read(&floor.target).expect("read the floor's target");
                    assert!(found == RECORD, "{name} left wrong contents");
                }
            }
        }
    }
}

/// The competitors, each in its own directory (or file) under `scratch`.
fn competitors(scratch: &Path) -> Vec<Competitor> {
    let store = |name: &str| {
        Subject::Idreserve(
            Store::create(scratch.join(name), Config::default()).expect("create a store"),
        )
    };
    let sqlite = |name: &str| {
        Subject::Sqlite(
            SqliteCounter::create(&scratch.join(format!("{name}.db")))
                .expect("create the SQLite counter"),
        )
    };
    let path = scratch.join("floor-append.log");
    let file = open_append(&path).expect("create the append floor's file");
    let replace = ReplaceFloor::create(&scratch.join("floor-replace")).expect("create the floor");
    vec![
        Competitor::new("idreserve-1", 1, store("idreserve-1")),
        Competitor::new("idreserve-10", 10, store("idreserve-10")),
        Competitor::new("sqlite-1", 1, sqlite("sqlite-1")),
        Competitor::new("sqlite-10", 10, sqlite("sqlite-10")),
        Competitor::new("floor-append", 1, Subject::FloorAppend { file, path }),
        Competitor::new("floor-replace", 1, Subject::FloorReplace(replace)),
    ]
}

/// Criterion's group `reserve`: each competitor in turn.
fn reserve_criterion(c: &mut Criterion, competitors: &mut [Competitor]) {
    let mut group = c.benchmark_group("reserve");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for comp in competitors.iter_mut() {
        group.throughput(Throughput::Elements(comp.n));
        let name = comp.name;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut lat = Vec::new();
                let total = timed(&mut lat, iters, || comp.call());
                comp.criterion.extend(lat);
                total
            })
        });
    }
    group.finish();
}

/// The per-call table and the targets' verdicts.
fn report(competitors: &[Competitor], series: &[Series]) -> String {
    let cells = |lat: &[Duration]| match lat.is_empty() {
        true => ["0".to_owned(), "–".into(), "–".into(), "–".into()],
        false => {
            let s = Stats::of(lat);
            let f = |d| format!("{:.0}", us(d));
            [s.count.to_string(), f(s.median), f(s.mean), f(s.p99)]
        }
    };
    let mut alone = Table::new(&[
        "competitor",
        "IDs/call",
        "criterion calls",
        "median",
        "mean",
        "p99",
        "interleaved calls",
        "median",
        "mean",
        "p99",
        "max",
        "median per ID",
    ]);
    for (c, s) in competitors.iter().zip(series) {
        let (max, per_id) = s.stats().map_or(("–".into(), "–".into()), |st| {
            (
                format!("{:.0}", us(st.max)),
                format!("{:.1}", us(st.median) / c.n as f64),
            )
        });
        let mut row = vec![c.name.to_owned(), c.n.to_string()];
        row.extend(cells(&c.criterion));
        row.extend(cells(&s.calls));
        row.extend([max, per_id]);
        alone.row(row);
    }

    let mut targets = Table::new(&["target", "paired", "pooled", "criterion", "<verdict"]);
    let rows = [
        ("reserve 1 ≤ 0.6 × SQLite", 0, 2, Some(TARGET_VS_SQLITE)),
        (
            "reserve 1 ≈ 1.3 × append + fdatasync",
            0,
            4,
            Some(TARGET_VS_APPEND),
        ),
        ("reserve 10 ≤ 1.1 × reserve 1", 1, 0, Some(TARGET_BATCH)),
        ("(context) reserve 1 vs flock + replace floor", 0, 5, None),
        ("(context) SQLite vs append + fdatasync", 2, 4, None),
    ];
    for (label, a, b, target) in rows {
        let paired = series[a].paired(&series[b]);
        let crit = median_ratio(&competitors[a].criterion, &competitors[b].criterion);
        targets.row([
            label.to_owned(),
            ratio(paired),
            ratio(series[a].pooled(&series[b])),
            ratio(crit),
            target.map_or("", |t| at_most(paired, t)).to_owned(),
        ]);
    }
    format!(
        "\n### Alone (one thread; per-call latency in µs)\n\n\
         `criterion`: every call criterion made, warm-up included, one competitor after the \
         other. `interleaved`: rounds of a batch of calls of each competitor in turn, so all \
         see the same background load.\n\n{alone}\n### Targets (issue 4)\n\n\
         `paired` is the median over the interleaved rounds of the ratio of the two \
         competitors' median calls in the same round (the verdict uses it); `pooled` divides \
         the medians of all interleaved calls; `criterion` those of criterion's calls.\n\n{targets}"
    )
}

fn main() {
    let mode = Mode::from_args();
    let scratch = scratch(env!("CARGO_TARGET_TMPDIR"), "reserve-");
    let mut criterion = Criterion::default().configure_from_args();
    let mut competitors = competitors(scratch.path());
    reserve_criterion(&mut criterion, &mut competitors);
    criterion.final_summary();
    if mode.has("--list") {
        return;
    }
    let (rounds, batch) = mode.pick((ROUNDS, BATCH), (1, 1));
    eprintln!("interleaved: {rounds} rounds x {batch} calls of each competitor");
    let names: Vec<&str> = competitors.iter().map(|c| c.name).collect();
    let series = interleave::run(&names, 0, rounds, |i, _| {
        let mut lat = Vec::new();
        timed(&mut lat, batch, || competitors[i].call());
        lat
    });
    for c in &competitors {
        c.check();
    }
    mode.note();
    println!("{}", report(&competitors, &series));
}
