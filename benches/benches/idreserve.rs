//! Durable ID reservation: `idreserve` against a SQLite counter and the syscall floor, alone
//! (criterion) and under contention (8 threads, 8 processes; a printed table).
//!
//! **Alone** — one criterion group, `reserve`; every competitor works in its own directory under
//! a fresh temp dir in `CARGO_TARGET_TMPDIR` (the disk that holds `target/`) and is durable when
//! a call returns:
//!
//! - `idreserve-1`, `idreserve-10`: `Store::reserve("SEC", 1)` and `("SEC", 10)`, each on its own
//!   store (one lock, read of the log, one appended record, one `fdatasync`).
//! - `sqlite-1`, `sqlite-10`: the counter a user would otherwise write: rusqlite with bundled
//!   SQLite, `journal_mode=WAL`, `synchronous=FULL`, `busy_timeout` 10 s, a table
//!   `counters(prefix TEXT PRIMARY KEY, value INTEGER)` and per reservation `BEGIN IMMEDIATE;
//!   UPDATE counters SET value = value + n WHERE prefix = ?; SELECT value …; COMMIT`.
//! - `floor-append`: the least an append-only log can do: one 20-byte `write` to an `O_APPEND`
//!   file that stays open, then `fdatasync`.
//! - `floor-replace`: the least a replace-based store can do: `flock` a lock file (kept open),
//!   create and write a fixed temp name, `fsync`, rename over the target, open the directory
//!   and `fsync` it, unlock.
//!
//! Each call is also timed on its own (`iter_custom`). After criterion, the same competitors
//! run again **interleaved**: 40 rounds of 25 calls of each, the order rotated every round, so
//! all see the same background load (criterion runs one competitor after the other, and on a
//! shared machine the flush latency drifts between them). The summary printed at the end gives
//! per-call median, mean and p99 for both passes, and the ratios against the targets of
//! issue 4; a verdict uses the *paired* ratio: the median over the rounds of the ratio of two
//! competitors' median calls in the same round. Every counter must equal the number of calls.
//!
//! **Contention** — no criterion: 8 workers, each doing `K` single reservations
//! (`IDRESERVE_BENCH_K`, default 150) on one shared store or database, started together, as
//! threads of this process and as child processes (this binary re-executed with
//! `IDRESERVE_BENCH_CHILD` set; each child opens its handle, reports ready, waits for "go" on
//! stdin and writes its IDs and latencies to a file). Every scenario runs 3 rounds, interleaved,
//! each on fresh files, pooled. Reported: total IDs/s (from "go" to the last worker done) and
//! the per-reservation latency median, p99 and max. The IDs handed out must be exactly the next
//! `8 × K` numbers, each once. A reference row runs the floor (8 workers appending to one
//! shared `O_APPEND` file, each write followed by its own `fdatasync`, no lock): what
//! concurrent flushes on this disk reach.
//!
//! Run with `cargo bench -p gapreg-benches --bench idreserve` (about a minute);
//! `IDRESERVE_BENCH_CONTENTION=0` skips the contention part. Under `cargo test --benches`
//! (criterion's test mode) every part runs once, with `K` = 3.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use idreserve::{Config, Store};
use rusqlite::{Connection, TransactionBehavior};

/// The prefix every competitor reserves for.
const PREFIX: &str = "SEC";
/// The floor's record: as long as an idreserve record (`SEC 100000 6c1bb5f1`).
const RECORD: &[u8; 20] = b"SEC 100000 6c1bb5f1\n";
/// Workers in the contention runs.
const WORKERS: usize = 8;
/// Default reservations per contention worker and round.
const DEFAULT_K: usize = 150;
/// Rounds of every contention scenario.
const CONTENTION_ROUNDS: usize = 3;
/// Interleaved single-threaded rounds, and calls per competitor in each.
const INTERLEAVED_ROUNDS: usize = 40;
const INTERLEAVED_BATCH: usize = 25;

/// Set (to a [`Kind`] name) in a child process of the contention run.
const CHILD_ENV: &str = "IDRESERVE_BENCH_CHILD";
/// The child's store directory, database or floor file.
const CHILD_PATH_ENV: &str = "IDRESERVE_BENCH_PATH";
/// The child's number of reservations.
const CHILD_K_ENV: &str = "IDRESERVE_BENCH_CHILD_K";
/// Where the child writes `first_id latency_ns` lines.
const CHILD_OUT_ENV: &str = "IDRESERVE_BENCH_OUT";

/// Issue 4's targets.
const TARGET_VS_SQLITE: f64 = 0.6;
const TARGET_VS_APPEND: f64 = 1.3;
const TARGET_BATCH: f64 = 1.1;
const TARGET_THROUGHPUT: f64 = 1.5;
const TARGET_TAIL: f64 = 10.0;

// ---------------------------------------------------------------------------------------------
// The competitors
// ---------------------------------------------------------------------------------------------

/// A SQLite counter table, as a user would write it.
struct SqliteCounter {
    conn: Connection,
}

impl SqliteCounter {
    /// Creates the database with the table and a row for [`PREFIX`] at 0.
    fn create(path: &Path) -> rusqlite::Result<SqliteCounter> {
        let counter = SqliteCounter::open(path)?;
        counter.conn.execute_batch(
            "CREATE TABLE counters (prefix TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        counter
            .conn
            .execute("INSERT INTO counters VALUES (?1, 0)", [PREFIX])?;
        Ok(counter)
    }

    /// Opens a connection: WAL (checked), `synchronous=FULL` (a per-connection setting),
    /// `busy_timeout` 10 s.
    fn open(path: &Path) -> rusqlite::Result<SqliteCounter> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        assert!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
        conn.pragma_update(None, "synchronous", "FULL")?;
        let sync: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
        assert_eq!(sync, 2, "synchronous is not FULL");
        Ok(SqliteCounter { conn })
    }

    /// Reserves `n` numbers; returns the first.
    fn reserve(&mut self, prefix: &str, n: u64) -> rusqlite::Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value: i64 = {
            let changed = tx
                .prepare_cached("UPDATE counters SET value = value + ?2 WHERE prefix = ?1")?
                .execute(rusqlite::params![prefix, n as i64])?;
            assert_eq!(changed, 1, "no counter row for {prefix}");
            tx.prepare_cached("SELECT value FROM counters WHERE prefix = ?1")?
                .query_row([prefix], |row| row.get(0))?
        };
        tx.commit()?;
        Ok(value as u64 - n + 1)
    }

    /// The counter's value, read outside any reservation.
    fn value(&self, prefix: &str) -> rusqlite::Result<u64> {
        let value: i64 = self.conn.query_row(
            "SELECT value FROM counters WHERE prefix = ?1",
            [prefix],
            |row| row.get(0),
        )?;
        Ok(value as u64)
    }
}

/// The append floor's file, opened for appending.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// One small append and `fdatasync`: what a reservation in an append-only log cannot go below.
fn floor_append(file: &mut File) -> io::Result<()> {
    file.write_all(RECORD)?;
    file.sync_data()
}

/// The replace floor's files.
struct ReplaceFloor {
    dir: PathBuf,
    lock: fd_lock::RwLock<File>,
    temp: PathBuf,
    target: PathBuf,
}

impl ReplaceFloor {
    fn create(dir: &Path) -> io::Result<ReplaceFloor> {
        fs::create_dir_all(dir)?;
        let lock = File::create(dir.join("counter.lock"))?;
        Ok(ReplaceFloor {
            dir: dir.into(),
            lock: fd_lock::RwLock::new(lock),
            temp: dir.join("counter.tmp"),
            target: dir.join("counter"),
        })
    }

    /// flock, temp write, fsync, rename, dir fsync, unlock: a replace-by-rename update with no
    /// checks at all.
    fn replace(&mut self) -> io::Result<()> {
        let _guard = self.lock.write()?;
        let mut file = File::create(&self.temp)?;
        file.write_all(RECORD)?;
        file.sync_all()?;
        fs::rename(&self.temp, &self.target)?;
        drop(file);
        File::open(&self.dir)?.sync_all()
    }
}

// ---------------------------------------------------------------------------------------------
// Latency statistics
// ---------------------------------------------------------------------------------------------

/// Order statistics of a set of latencies.
#[derive(Clone, Copy)]
struct Stats {
    count: usize,
    median: Duration,
    mean: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(latencies: &[Duration]) -> Stats {
        assert!(!latencies.is_empty(), "no latencies recorded");
        let mut sorted = latencies.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        let total: Duration = sorted.iter().sum();
        Stats {
            count: n,
            median: sorted[n / 2],
            mean: total / n as u32,
            p99: sorted[(n * 99).div_ceil(100) - 1],
            max: sorted[n - 1],
        }
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs `call` `iters` times, timing each call into `latencies`; returns the sum (for
/// criterion's `iter_custom`).
fn timed(latencies: &mut Vec<Duration>, iters: u64, mut call: impl FnMut()) -> Duration {
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

// ---------------------------------------------------------------------------------------------
// Single-threaded: criterion, then interleaved rounds
// ---------------------------------------------------------------------------------------------

/// What a single-threaded competitor works on.
enum Subject {
    Idreserve(Store),
    Sqlite(SqliteCounter),
    FloorAppend { file: File, path: PathBuf },
    FloorReplace(ReplaceFloor),
}

/// A single-threaded competitor and every call it made.
struct Competitor {
    name: &'static str,
    /// IDs per call.
    n: u64,
    subject: Subject,
    /// Per-call latencies under criterion (warm-up included).
    criterion: Vec<Duration>,
    /// Per-call latencies in the interleaved rounds.
    interleaved: Vec<Duration>,
    /// The median call of each interleaved round.
    round_medians: Vec<Duration>,
}

impl Competitor {
    fn new(name: &'static str, n: u64, subject: Subject) -> Competitor {
        Competitor {
            name,
            n,
            subject,
            criterion: Vec::new(),
            interleaved: Vec::new(),
            round_medians: Vec::new(),
        }
    }

    /// One call: a durable reservation of `n` IDs (or the floor's equivalent).
    fn call(subject: &mut Subject, n: u64) {
        match subject {
            Subject::Idreserve(store) => {
                black_box(store.reserve(PREFIX, n).expect("idreserve reserve"));
            }
            Subject::Sqlite(counter) => {
                black_box(counter.reserve(PREFIX, n).expect("sqlite reserve"));
            }
            Subject::FloorAppend { file, .. } => floor_append(file).expect("append + fdatasync"),
            Subject::FloorReplace(floor) => floor.replace().expect("replace floor"),
        }
    }

    /// Panics unless every call really reserved (or wrote) what it was timed for.
    fn check(&self) {
        let calls = (self.criterion.len() + self.interleaved.len()) as u64;
        let name = self.name;
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

/// The single-threaded competitors, each in its own directory (or file) under `scratch`.
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
        let (n, subject, lat) = (comp.n, &mut comp.subject, &mut comp.criterion);
        group.throughput(Throughput::Elements(n));
        group.bench_function(comp.name, |b| {
            b.iter_custom(|iters| timed(lat, iters, || Competitor::call(subject, n)))
        });
    }
    group.finish();
}

/// `rounds` rounds of `batch` calls of every competitor, the order rotated each round, so
/// that every competitor sees the same background load (on a shared machine, flush latency
/// drifts over the seconds criterion spends on one competitor). Each round's median call is
/// kept for paired ratios.
fn reserve_interleaved(competitors: &mut [Competitor], rounds: usize, batch: u64) {
    for round in 0..rounds {
        for i in 0..competitors.len() {
            let comp = &mut competitors[(round + i) % competitors.len()];
            let (n, subject) = (comp.n, &mut comp.subject);
            let before = comp.interleaved.len();
            timed(&mut comp.interleaved, batch, || {
                Competitor::call(subject, n)
            });
            let this_round = Stats::of(&comp.interleaved[before..]).median;
            comp.round_medians.push(this_round);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Contention: workers (threads or child processes)
// ---------------------------------------------------------------------------------------------

/// What the contention workers share.
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

    fn from_name(name: &str) -> Kind {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .unwrap_or_else(|| panic!("unknown {CHILD_ENV} role {name:?}"))
    }

    /// Creates the shared store, database or file at `path`, with one reservation done, so
    /// that the workers find everything created (lock queue directory, WAL file).
    fn prepare(self, path: &Path) -> u64 {
        let mut worker = match self {
            Kind::Idreserve => {
                Store::create(path, Config::default()).expect("create the shared store");
                Worker::open(self, path)
            }
            Kind::Sqlite => {
                SqliteCounter::create(path).expect("create the shared database");
                Worker::open(self, path)
            }
            Kind::FloorAppend => Worker::open(self, path),
        };
        worker.reserve()
    }
}

/// One contention worker's handle: its own store handle, connection or file descriptor.
enum Worker {
    Idreserve(Store),
    Sqlite(SqliteCounter),
    FloorAppend(File),
}

impl Worker {
    fn open(kind: Kind, path: &Path) -> Worker {
        match kind {
            Kind::Idreserve => Worker::Idreserve(Store::open(path).expect("open the store")),
            Kind::Sqlite => {
                Worker::Sqlite(SqliteCounter::open(path).expect("open the SQLite counter"))
            }
            Kind::FloorAppend => {
                Worker::FloorAppend(open_append(path).expect("open the append floor's file"))
            }
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

/// The child-process role: open, report ready, wait for "go", reserve, write the results.
fn child_main(role: &str) {
    let kind = Kind::from_name(role);
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let path = PathBuf::from(var(CHILD_PATH_ENV));
    let k: usize = var(CHILD_K_ENV).parse().expect("a number of reservations");
    let out = PathBuf::from(var(CHILD_OUT_ENV));

    let mut worker = Worker::open(kind, &path);
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "ready")
        .and_then(|()| stdout.flush())
        .expect("report ready");
    let mut go = String::new();
    io::stdin().lock().read_line(&mut go).expect("wait for go");
    assert_eq!(go.trim(), "go", "the parent did not say go");

    let results = worker.run(k);
    let mut text = String::with_capacity(results.len() * 24);
    for (id, took) in results {
        let _ = writeln!(text, "{id} {}", took.as_nanos());
    }
    fs::write(&out, text).expect("write the child's results");
}

/// One contention scenario's outcome, pooled over its rounds.
struct Contended {
    kind: Kind,
    processes: bool,
    /// Summed over the rounds: from "go" to the last worker done.
    wall: Duration,
    latencies: Vec<Duration>,
}

impl Contended {
    fn ids_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Checks that the workers got exactly the IDs after `first_taken`, each once.
fn check_ids(kind: Kind, first_taken: u64, results: &[(u64, Duration)]) {
    if kind == Kind::FloorAppend {
        return;
    }
    let mut ids: Vec<u64> = results.iter().map(|&(id, _)| id).collect();
    ids.sort_unstable();
    let expected: Vec<u64> = (first_taken + 1..=first_taken + results.len() as u64).collect();
    assert!(
        ids == expected,
        "{}: the workers' IDs are not exactly {}..={} (duplicates or holes)",
        kind.name(),
        first_taken + 1,
        first_taken + results.len() as u64
    );
}

/// One round of `WORKERS` threads × `k` reservations; returns the wall time and the latencies.
fn contend_threads(kind: Kind, path: &Path, k: usize) -> (Duration, Vec<Duration>) {
    let first_taken = kind.prepare(path);
    let barrier = Arc::new(Barrier::new(WORKERS + 1));
    let handles: Vec<_> = (0..WORKERS)
        .map(|_| {
            let barrier = barrier.clone();
            let path = path.to_path_buf();
            std::thread::spawn(move || {
                let mut worker = Worker::open(kind, &path);
                barrier.wait();
                let results = worker.run(k);
                (results, Instant::now())
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut results = Vec::with_capacity(WORKERS * k);
    let mut end = start;
    for handle in handles {
        let (r, done) = handle.join().expect("a contention thread panicked");
        results.extend(r);
        end = end.max(done);
    }
    check_ids(kind, first_taken, &results);
    (end - start, results.iter().map(|&(_, d)| d).collect())
}

/// One round of `WORKERS` child processes × `k` reservations; returns the wall time and the
/// latencies.
fn contend_processes(
    kind: Kind,
    path: &Path,
    k: usize,
    scratch: &Path,
) -> (Duration, Vec<Duration>) {
    let first_taken = kind.prepare(path);
    let exe = std::env::current_exe().expect("the bench binary's path");
    let outs: Vec<PathBuf> = (0..WORKERS)
        .map(|i| scratch.join(format!("{}-child-{i}.txt", kind.name())))
        .collect();
    let mut children: Vec<_> = outs
        .iter()
        .map(|out| {
            Command::new(&exe)
                .env(CHILD_ENV, kind.name())
                .env(CHILD_PATH_ENV, path)
                .env(CHILD_K_ENV, k.to_string())
                .env(CHILD_OUT_ENV, out)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn a contention child")
        })
        .collect();
    for child in &mut children {
        let stdout = child.stdout.take().expect("the child's stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the child's ready line");
        assert_eq!(line.trim(), "ready", "a contention child did not get ready");
    }
    let start = Instant::now();
    for child in &mut children {
        let mut stdin = child.stdin.take().expect("the child's stdin");
        stdin.write_all(b"go\n").expect("tell a child to go");
    }
    for child in &mut children {
        let status = child.wait().expect("wait for a contention child");
        assert!(status.success(), "a contention child failed: {status}");
    }
    let wall = start.elapsed();
    let mut results = Vec::with_capacity(WORKERS * k);
    for out in &outs {
        let text = fs::read_to_string(out).expect("read a child's results");
        for line in text.lines() {
            let (id, ns) = line.split_once(' ').expect("an `id ns` line");
            let id = id.parse().expect("an ID number");
            let ns = ns.parse().expect("a latency in ns");
            results.push((id, Duration::from_nanos(ns)));
        }
    }
    assert_eq!(results.len(), WORKERS * k, "a child lost results");
    check_ids(kind, first_taken, &results);
    (wall, results.iter().map(|&(_, d)| d).collect())
}

/// Every contention scenario, `rounds` times, interleaved (each round on fresh files).
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
            let (kind, how) = (
                run.kind,
                if run.processes {
                    "processes"
                } else {
                    "threads"
                },
            );
            let path = match kind {
                Kind::Idreserve => scratch.join(format!("contend-{how}-{round}-store")),
                Kind::Sqlite => scratch.join(format!("contend-{how}-{round}.db")),
                Kind::FloorAppend => scratch.join(format!("contend-{how}-{round}-floor.log")),
            };
            eprintln!(
                "contention round {}/{rounds}: {WORKERS} {how} x {k} on {}",
                round + 1,
                kind.name()
            );
            let (wall, latencies) = if run.processes {
                contend_processes(kind, &path, k, scratch)
            } else {
                contend_threads(kind, &path, k)
            };
            run.wall += wall;
            run.latencies.extend(latencies);
        }
    }
    runs
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn report(competitors: &[Competitor], contended: &[Contended], k: usize, rounds: usize) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "\n### Alone (one thread; per-call latency in µs)\n\n\
         `criterion`: every call criterion made, warm-up included, one competitor after the \
         other. `interleaved`: rounds of a batch of calls of each competitor in turn, so all \
         see the same background load.\n"
    );
    let _ = writeln!(
        w,
        "| competitor | IDs/call | criterion calls | median | mean | p99 | interleaved calls | median | mean | p99 | max | median per ID |"
    );
    let _ = writeln!(
        w,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let fmt = |lat: &[Duration]| match lat.is_empty() {
        true => (
            "0".to_owned(),
            "–".to_owned(),
            "–".to_owned(),
            "–".to_owned(),
        ),
        false => {
            let s = Stats::of(lat);
            (
                s.count.to_string(),
                format!("{:.0}", us(s.median)),
                format!("{:.0}", us(s.mean)),
                format!("{:.0}", us(s.p99)),
            )
        }
    };
    for c in competitors {
        let (cn, cmed, cmean, cp99) = fmt(&c.criterion);
        let (inn, imed, imean, ip99) = fmt(&c.interleaved);
        let (imax, per_id) = match c.interleaved.is_empty() {
            true => ("–".to_owned(), "–".to_owned()),
            false => {
                let s = Stats::of(&c.interleaved);
                (
                    format!("{:.0}", us(s.max)),
                    format!("{:.1}", us(s.median) / c.n as f64),
                )
            }
        };
        let _ = writeln!(
            w,
            "| {} | {} | {cn} | {cmed} | {cmean} | {cp99} | {inn} | {imed} | {imean} | {ip99} | {imax} | {per_id} |",
            c.name, c.n
        );
    }

    if !contended.is_empty() {
        let _ = writeln!(
            w,
            "\n### Contention ({WORKERS} workers × {k} single reservations on one shared store, \
             {rounds} interleaved rounds pooled)\n"
        );
        let _ = writeln!(
            w,
            "| competitor | workers | IDs | wall s | IDs/s | median µs | p99 µs | max µs | max/median |"
        );
        let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in contended {
            let s = Stats::of(&r.latencies);
            let _ = writeln!(
                w,
                "| {} | {WORKERS} {} | {} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
                r.kind.name(),
                if r.processes { "processes" } else { "threads" },
                s.count,
                r.wall.as_secs_f64(),
                r.ids_per_sec(),
                us(s.median),
                us(s.p99),
                us(s.max),
                s.max.as_secs_f64() / s.median.as_secs_f64()
            );
        }
    }

    let _ = writeln!(
        w,
        "\n### Targets (issue 4)\n\n\
         Alone: `paired` is the median over the interleaved rounds of the ratio of the two \
         competitors' median calls in the same round (the verdict uses it); `pooled` divides \
         the medians of all interleaved calls; `criterion` those of criterion's calls.\n"
    );
    let _ = writeln!(w, "| target | paired | pooled | criterion | verdict |");
    let _ = writeln!(w, "|---|---:|---:|---:|---|");
    let get = |name: &str| competitors.iter().find(|c| c.name == name);
    let median_of =
        |lat: &[Duration]| (!lat.is_empty()).then(|| Stats::of(lat).median.as_secs_f64());
    let pooled = |a: &Competitor, b: &Competitor, crit: bool| {
        let pick = |c: &Competitor| {
            if crit {
                median_of(&c.criterion)
            } else {
                median_of(&c.interleaved)
            }
        };
        Some(pick(a)? / pick(b)?)
    };
    let paired = |a: &Competitor, b: &Competitor| {
        let mut r: Vec<f64> = a
            .round_medians
            .iter()
            .zip(&b.round_medians)
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied()
    };
    let show = |r: Option<f64>| r.map_or("–".to_owned(), |r| format!("{r:.2} ×"));
    let rows = [
        (
            "reserve 1 ≤ 0.6 × SQLite",
            "idreserve-1",
            "sqlite-1",
            Some(TARGET_VS_SQLITE),
        ),
        (
            "reserve 1 ≈ 1.3 × append + fdatasync",
            "idreserve-1",
            "floor-append",
            Some(TARGET_VS_APPEND),
        ),
        (
            "reserve 10 ≤ 1.1 × reserve 1",
            "idreserve-10",
            "idreserve-1",
            Some(TARGET_BATCH),
        ),
        (
            "(context) reserve 1 vs flock + replace floor",
            "idreserve-1",
            "floor-replace",
            None,
        ),
        (
            "(context) SQLite vs append + fdatasync",
            "sqlite-1",
            "floor-append",
            None,
        ),
    ];
    for (label, a, b, target) in rows {
        let (Some(a), Some(b)) = (get(a), get(b)) else {
            continue;
        };
        let p = paired(a, b);
        let verdict = match (p, target) {
            (Some(r), Some(t)) => verdict(r <= t),
            _ => "",
        };
        let _ = writeln!(
            w,
            "| {label} | {} | {} | {} | {verdict} |",
            show(p),
            show(pooled(a, b, false)),
            show(pooled(a, b, true))
        );
    }
    let find = |kind: Kind| contended.iter().find(|r| r.processes && r.kind == kind);
    if let (Some(ours), Some(sqlite)) = (find(Kind::Idreserve), find(Kind::Sqlite)) {
        let ratio = ours.ids_per_sec() / sqlite.ids_per_sec();
        let _ = writeln!(
            w,
            "| {WORKERS} processes: IDs/s ≥ {TARGET_THROUGHPUT} × SQLite | {ratio:.2} × | {:.0} vs {:.0} IDs/s | | {} |",
            ours.ids_per_sec(),
            sqlite.ids_per_sec(),
            verdict(ratio >= TARGET_THROUGHPUT)
        );
        let s = Stats::of(&ours.latencies);
        let tail = s.max.as_secs_f64() / s.median.as_secs_f64();
        let _ = writeln!(
            w,
            "| {WORKERS} processes: slowest ≤ {TARGET_TAIL} × median | {tail:.1} × | {:.1} ms vs {:.2} ms | | {} |",
            us(s.max) / 1e3,
            us(s.median) / 1e3,
            verdict(tail <= TARGET_TAIL)
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        child_main(&role);
        return;
    }

    // As criterion decides its mode: a benchmark run only under `cargo bench` (`--bench`);
    // `cargo test --benches` runs everything once.
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| {
        args.iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    let benchmarking = has("--bench") && !has("--test") && !has("--profile-time");
    let env_number = |name: &str, default: usize| match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}: a number")),
        Err(_) => default,
    };
    let (rounds, batch, k, contention_rounds) = if benchmarking {
        (
            INTERLEAVED_ROUNDS,
            INTERLEAVED_BATCH,
            env_number("IDRESERVE_BENCH_K", DEFAULT_K),
            CONTENTION_ROUNDS,
        )
    } else {
        (1, 1, env_number("IDRESERVE_BENCH_K", 3), 1)
    };

    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).expect("create CARGO_TARGET_TMPDIR");
    let scratch = tempfile::Builder::new()
        .prefix("idreserve-")
        .tempdir_in(base)
        .expect("create a scratch dir under CARGO_TARGET_TMPDIR");

    let mut criterion = Criterion::default().configure_from_args();
    let mut competitors = competitors(scratch.path());
    reserve_criterion(&mut criterion, &mut competitors);
    criterion.final_summary();
    if has("--list") {
        return;
    }
    eprintln!("interleaved: {rounds} rounds x {batch} calls of each competitor");
    reserve_interleaved(&mut competitors, rounds, batch as u64);
    for c in &competitors {
        c.check();
    }

    let contended = if std::env::var("IDRESERVE_BENCH_CONTENTION").is_ok_and(|v| v == "0") {
        Vec::new()
    } else {
        contention(scratch.path(), k, contention_rounds)
    };
    if !benchmarking {
        println!("\n(test mode: every part ran once, as a smoke test; these are not measurements)");
    }
    println!("{}", report(&competitors, &contended, k, contention_rounds));
}
