//! Coordination on PostgreSQL (`coordination: postgres`) against the least a client can do on
//! the same server, in one run, every comparison interleaved:
//!
//! - (a) **a process**: `gapreg ids reserve SEC` (the release binary, in a registry made by
//!   `gapreg init --coordination postgres`, `GAPREG_COORDINATION_URL` set) against the real
//!   `psql` binary (`/usr/lib/postgresql/<v>/bin/psql`, not Debian's wrapper script) running
//!   `psql -X -q -Atc "UPDATE … RETURNING last"` on an existing counter, as gapreg updates its
//!   own; target ≤ 0.6×. The floor: `pg-reserve` (`src/bin/pg-reserve.rs`), the least a Rust
//!   process can do — start, connect, the library's upsert in one round trip, print, close.
//!   Context: the same upsert in psql (`psql -X -q -Atc "INSERT … ON CONFLICT … DO UPDATE …
//!   RETURNING last"`), `psql -X -q -Atc "SELECT 1"` (psql's start and connection alone) and
//!   `gapreg --version` (the binary's start alone).
//! - (b) **a library call on an open connection**: `idreserve::PgCounters::reserve` against the
//!   bare statement on an open `postgres::Client` (`query_one` with the same SQL text, as the
//!   library sends it); target ≤ 1.2×. Context: the statement prepared once.
//! - (c) **16 concurrent reservers** on one counter: 16 threads, each with its own `Server` and
//!   `PgCounters`, against 16 threads with a bare `Client` each, all started at a barrier;
//!   throughput ≥ 0.8× the bare clients', and the slowest reservation ≤ 20× the median.
//! - (d) **leases at 10,000**: `leaselock::lease::PgLeases` acquire + release of one file with
//!   10,000 live leases in the namespace; median ≤ 5 ms. Context: the same in an empty
//!   namespace, and `list` of the 10,000 (what a claim reads first).
//!
//! Every competitor runs the same statement on the same table (`gapreg.id_counters`), each in
//! a namespace of its own (fresh per run), with `synchronous_commit=on` as the library sets
//! it, so every reservation waits for its commit's flush. The ids handed out are checked:
//! consecutive, each once.
//!
//! Needs a server: `GAPREG_BENCH_PG_URL=postgres://user@host:port/database` (a database the
//! user may create the `gapreg` schema in; a fresh one is best); without it the bench says so
//! and exits. (a) also needs the release binary (`cargo build --release -p gapreg-cli`, or
//! `GAPREG_BIN`) and `psql` (`GAPREG_BENCH_PSQL`, else found as `testkit::pg` finds it);
//! without them (a) is skipped. `cargo bench -p gapreg-benches --bench postgres` (about 1–2
//! minutes, most of it seeding the 10,000 leases). Under `cargo test --benches`: one round
//! of each on small numbers, if the server is set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use gapreg_benches::interleave::{self, Series};
use gapreg_benches::pg::{RESERVE_SQL, SESSION_OPTIONS};
use gapreg_benches::process::{gapreg_binary, run_timed};
use gapreg_benches::report::{Table, at_most, ratio, verdict};
use gapreg_benches::run::{Mode, env_number, scratch};
use gapreg_benches::stats::{Stats, ms, us};
use idreserve::PgCounters;
use leaselock::lease::{Binding, LeaseRequest, PgLeases};
use leaselock::server::Server;

/// The server to measure against.
const URL_ENV: &str = "GAPREG_BENCH_PG_URL";
/// The `psql` binary, when not the one `testkit::pg` finds.
const PSQL_ENV: &str = "GAPREG_BENCH_PSQL";

/// The targets.
const TARGET_PROCESS: f64 = 0.6;
const TARGET_CALL: f64 = 1.2;
const TARGET_THROUGHPUT: f64 = 0.8;
const TARGET_TAIL: f64 = 20.0;
const TARGET_LEASE_MS: f64 = 5.0;

/// Concurrent reservers in (c).
const WORKERS: usize = 16;
/// Live leases in (d).
const LEASES: usize = 10_000;

/// The prefix every competitor reserves.
const PREFIX: &str = "SEC";

fn main() {
    let mode = Mode::from_args();
    if mode.listed(&["postgres"]) {
        return;
    }
    let Some(url) = std::env::var(URL_ENV).ok().filter(|u| !u.is_empty()) else {
        println!(
            "postgres: skipped: {URL_ENV} is not set (a postgres://user@host:port/database \
             URL, a fresh database)"
        );
        return;
    };
    let run = unique();
    let scratch = scratch(env!("CARGO_TARGET_TMPDIR"), "postgres-");
    let wait = Duration::from_secs(30);
    let started = Instant::now();

    eprintln!("(a) processes");
    let processes = processes(&mode, &url, &run, scratch.path());
    eprintln!("(b) one call on an open connection");
    let calls = calls(&mode, &url, &run, wait);
    eprintln!("(c) {WORKERS} concurrent reservers");
    let contended = contention(&mode, &url, &run, wait);
    eprintln!("(d) leases");
    let leases = leases(&mode, &url, &run, wait, scratch.path());

    mode.note();
    println!(
        "\n## Coordination on PostgreSQL ({})\n",
        server_version(&url)
    );
    if let Some(p) = &processes {
        println!("{}", p.report());
    }
    println!("{}", calls.report());
    println!("{}", contended.report());
    println!("{}", leases.report());
    let mut targets = Table::new(&["target", "measured", "<detail", "<verdict"]);
    match &processes {
        Some(p) => p.targets(&mut targets),
        None => {
            targets.row([
                format!("(a) `gapreg ids reserve` ≤ {TARGET_PROCESS} × psql"),
                "–".to_owned(),
                "skipped".to_owned(),
                "–".to_owned(),
            ]);
        }
    }
    calls.targets(&mut targets);
    contended.targets(&mut targets);
    leases.targets(&mut targets);
    println!("### Targets\n\n{targets}");
    println!("(whole run {:.0} s)", started.elapsed().as_secs_f64());
}

/// A name no earlier run on the same database used.
fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("bench-{}-{nanos:x}", std::process::id())
}

/// A bare client: the URL's settings with the library's session options, no TLS.
fn bare_client(url: &str) -> postgres::Client {
    gapreg_benches::pg::config(url)
        .expect("a postgres:// URL")
        .connect(postgres::NoTls)
        .expect("connect a bare client")
}

/// The server's version, for the report.
fn server_version(url: &str) -> String {
    let mut client = bare_client(url);
    let row = client
        .query_one("SELECT current_setting('server_version')", &[])
        .expect("the server version");
    format!("PostgreSQL {}", row.get::<_, String>(0))
}

/// A library handle on namespace `ns`: its own connection, opened now.
fn library(url: &str, ns: &str, wait: Duration) -> PgCounters {
    let server = Arc::new(Server::connect(url, wait).expect("connect the library's server"));
    PgCounters::open(server, ns).expect("open the counters")
}

/// One reservation with the bare statement; the number handed out.
fn bare_reserve(client: &mut postgres::Client, ns: &str) -> u64 {
    let last: i64 = client
        .query_one(RESERVE_SQL, &[&ns, &PREFIX, &1i64])
        .expect("the bare statement")
        .get(0);
    u64::try_from(last).expect("a positive counter")
}

/// Checks that `ids` are exactly `after + 1 ..= after + n`, each once.
fn check_consecutive(what: &str, after: u64, ids: &mut [u64]) {
    ids.sort_unstable();
    let expected: Vec<u64> = (after + 1..=after + ids.len() as u64).collect();
    assert!(
        ids == expected.as_slice(),
        "{what}: the ids are not exactly {}..={}",
        after + 1,
        after + ids.len() as u64
    );
}

// ---------------------------------------------------------------------------------------------
// (a) processes
// ---------------------------------------------------------------------------------------------

/// The real `psql` binary: `GAPREG_BENCH_PSQL`, else the one beside the server's programs.
/// Debian's `/usr/bin/psql` is a Perl wrapper that picks a version and execs it: not measured.
fn psql_binary() -> Result<PathBuf, String> {
    let psql = std::env::var_os(PSQL_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(testkit::pg::psql_program);
    let real =
        std::fs::canonicalize(&psql).map_err(|e| format!("psql ({}): {e}", psql.display()))?;
    let head = std::fs::read(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    if !head.starts_with(b"\x7fELF") {
        return Err(format!(
            "{} is a script (Debian's wrapper?), not the psql binary; set {PSQL_ENV} to \
             /usr/lib/postgresql/<version>/bin/psql",
            real.display()
        ));
    }
    Ok(real)
}

struct Processes {
    series: Vec<Series>,
    gapreg_bin: PathBuf,
    psql_bin: PathBuf,
    calls_per_turn: usize,
}

/// `psql -X -q -Atc SQL URL` with the library's session options.
fn psql_command(psql: &Path, url: &str, sql: &str) -> Command {
    let mut cmd = Command::new(psql);
    cmd.args(["-X", "-q", "-Atc", sql, url])
        .env("PGOPTIONS", SESSION_OPTIONS);
    cmd
}

fn processes(mode: &Mode, url: &str, run: &str, dir: &Path) -> Option<Processes> {
    let gapreg_bin = match gapreg_binary() {
        Ok(bin) => bin,
        Err(why) => {
            println!("postgres (a): skipped: {why}");
            return None;
        }
    };
    let psql_bin = match psql_binary() {
        Ok(bin) => bin,
        Err(why) => {
            println!("postgres (a): skipped: {why}");
            return None;
        }
    };
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("create the repository directory");
    // Its own git repository: under `target/` the scratch directory lies inside this
    // project's work tree, whose `.gitattributes` `init` would otherwise extend.
    run_timed(Command::new("git").args(["init", "-q"]).arg(&repo));
    let mut init = Command::new(&gapreg_bin);
    init.arg("init")
        .arg(&repo)
        .args(["--coordination", "postgres", "-q"])
        .env("GAPREG_COORDINATION_URL", url);
    run_timed(&mut init);
    let registry = repo.join(".gapreg");
    let gapreg = || {
        let mut cmd = Command::new(&gapreg_bin);
        cmd.arg("--registry")
            .arg(&registry)
            .args(["ids", "reserve", PREFIX])
            .env("GAPREG_COORDINATION_URL", url);
        cmd
    };
    let psql_ns = format!("{run}-psql");
    let upsert = RESERVE_SQL
        .replace("$1", &format!("'{psql_ns}'"))
        .replace("$2", &format!("'{PREFIX}'"))
        .replace("$3", "1");
    // The peer: `psql -Atc "UPDATE … RETURNING …"` on a counter that exists (made
    // here by one upsert), as `gapreg ids reserve` updates its existing counter.
    let update_ns = format!("{run}-psql-update");
    let update = format!(
        "UPDATE gapreg.id_counters SET last = last + 1 WHERE ns = '{update_ns}' AND prefix = \
         '{PREFIX}' RETURNING last"
    );
    let seed = RESERVE_SQL
        .replace("$1", &format!("'{update_ns}'"))
        .replace("$2", &format!("'{PREFIX}'"))
        .replace("$3", "1");
    run_timed(&mut psql_command(&psql_bin, url, &seed));
    let floor_ns = format!("{run}-floor");
    let floor = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pg-reserve"));
        cmd.args([url, &floor_ns, PREFIX]);
        cmd
    };
    let names = [
        "gapreg ids reserve",
        "psql UPDATE",
        "psql upsert",
        "Rust client process (floor)",
        "psql SELECT 1",
        "gapreg --version",
    ];
    let (warm_up, rounds, per_turn) = mode.pick((3, 40, 3), (0, 1, 1));
    let mut gapreg_ids = Vec::new();
    let mut update_ids = Vec::new();
    let mut psql_ids = Vec::new();
    let mut floor_ids = Vec::new();
    let series = interleave::run(&names, warm_up, rounds, |i, _| {
        (0..per_turn)
            .map(|_| {
                let (took, out) = match i {
                    0 => run_timed(&mut gapreg()),
                    1 => run_timed(&mut psql_command(&psql_bin, url, &update)),
                    2 => run_timed(&mut psql_command(&psql_bin, url, &upsert)),
                    3 => run_timed(&mut floor()),
                    4 => run_timed(&mut psql_command(&psql_bin, url, "SELECT 1")),
                    _ => run_timed(Command::new(&gapreg_bin).arg("--version")),
                };
                let text = String::from_utf8_lossy(&out);
                match i {
                    0 => gapreg_ids.push(
                        text.trim()
                            .strip_prefix("SEC-")
                            .and_then(|n| n.parse::<u64>().ok())
                            .unwrap_or_else(|| panic!("gapreg printed {text:?}")),
                    ),
                    1..=3 => [&mut update_ids, &mut psql_ids, &mut floor_ids][i - 1].push(
                        text.trim()
                            .parse::<u64>()
                            .unwrap_or_else(|_| panic!("{} printed {text:?}", names[i])),
                    ),
                    _ => {}
                }
                took
            })
            .collect()
    });
    check_consecutive("gapreg ids reserve", 0, &mut gapreg_ids);
    check_consecutive("psql UPDATE", 1, &mut update_ids);
    check_consecutive("psql upsert", 0, &mut psql_ids);
    check_consecutive("Rust client process (floor)", 0, &mut floor_ids);
    Some(Processes {
        series,
        gapreg_bin,
        psql_bin,
        calls_per_turn: per_turn,
    })
}

/// One row per series: median, p99, paired ratios to the series `peer`.
fn series_table(series: &[Series], peer: usize, unit_us: bool) -> Table {
    let p = &series[peer];
    let unit = if unit_us { "µs" } else { "ms" };
    let mut t = Table::new(&[
        "competitor",
        "calls",
        &format!("median {unit}"),
        &format!("p99 {unit}"),
        &format!("× {} (paired)", p.name),
        &format!("rounds slower than {}", p.name),
    ]);
    let show = |d: Duration| {
        if unit_us {
            format!("{:.0}", us(d))
        } else {
            format!("{:.2}", ms(d))
        }
    };
    for s in series {
        let Some(st) = s.stats() else { continue };
        t.row([
            format!("`{}`", s.name),
            st.count.to_string(),
            show(st.median),
            show(st.p99),
            ratio(s.paired(p)),
            format!("{}/{}", s.slower_rounds(p), s.rounds.len()),
        ]);
    }
    t
}

impl Processes {
    fn report(&self) -> String {
        format!(
            "### (a) One reservation as a process ({} rounds × {} calls, interleaved)\n\n{}\n\
             `{}` against `{}`; each timed from spawn to exit, its output read.\n",
            self.series[0].rounds.len(),
            self.calls_per_turn,
            series_table(&self.series, 1, false),
            self.gapreg_bin.display(),
            self.psql_bin.display(),
        )
    }

    fn targets(&self, t: &mut Table) {
        let (g, p) = (&self.series[0], &self.series[1]);
        let r = g.paired(p);
        t.row([
            format!("(a) `gapreg ids reserve` ≤ {TARGET_PROCESS} × `psql` UPDATE"),
            ratio(r),
            format!(
                "{:.2} ms vs {:.2} ms (medians)",
                g.stats().map_or(0.0, |s| ms(s.median)),
                p.stats().map_or(0.0, |s| ms(s.median))
            ),
            at_most(r, TARGET_PROCESS).to_owned(),
        ]);
        let (u, f) = (&self.series[2], &self.series[3]);
        t.row([
            "(context) `gapreg ids reserve` × `psql` upsert".to_owned(),
            ratio(g.paired(u)),
            format!("{:.2} ms (median)", u.stats().map_or(0.0, |s| ms(s.median))),
            String::new(),
        ]);
        t.row([
            "(context) the floor process × `psql` UPDATE; `gapreg` × the floor".to_owned(),
            ratio(f.paired(p)),
            format!(
                "{:.2} ms (medians); `gapreg ids reserve` {} the floor's time",
                f.stats().map_or(0.0, |s| ms(s.median)),
                ratio(g.paired(f))
            ),
            String::new(),
        ]);
    }
}

// ---------------------------------------------------------------------------------------------
// (b) one call on an open connection
// ---------------------------------------------------------------------------------------------

struct Calls {
    series: Vec<Series>,
    per_turn: usize,
}

fn calls(mode: &Mode, url: &str, run: &str, wait: Duration) -> Calls {
    let lib_ns = format!("{run}-call-lib");
    let bare_ns = format!("{run}-call-bare");
    let prep_ns = format!("{run}-call-prepared");
    let lib = library(url, &lib_ns, wait);
    let mut bare = bare_client(url);
    let mut prepared_client = bare_client(url);
    let prepared = prepared_client
        .prepare(RESERVE_SQL)
        .expect("prepare the statement");
    let names = [
        "PgCounters::reserve",
        "bare statement",
        "bare statement, prepared once",
    ];
    let (warm_up, rounds, per_turn) = mode.pick((2, 40, 25), (0, 1, 2));
    let mut ids: [Vec<u64>; 3] = Default::default();
    let series = interleave::run(&names, warm_up, rounds, |i, _| {
        (0..per_turn)
            .map(|_| {
                let start = Instant::now();
                let id = match i {
                    0 => lib.reserve(PREFIX, 1).expect("reserve").first(),
                    1 => bare_reserve(&mut bare, &bare_ns),
                    _ => {
                        let last: i64 = prepared_client
                            .query_one(&prepared, &[&prep_ns, &PREFIX, &1i64])
                            .expect("the prepared statement")
                            .get(0);
                        u64::try_from(last).expect("a positive counter")
                    }
                };
                let took = start.elapsed();
                ids[i].push(id);
                took
            })
            .collect()
    });
    for (name, ids) in names.iter().zip(&mut ids) {
        check_consecutive(name, 0, ids);
    }
    Calls { series, per_turn }
}

impl Calls {
    fn report(&self) -> String {
        format!(
            "### (b) One reservation on an open connection ({} rounds × {} calls, interleaved)\n\n{}",
            self.series[0].rounds.len(),
            self.per_turn,
            series_table(&self.series, 1, true)
        )
    }

    fn targets(&self, t: &mut Table) {
        let (lib, bare, prepared) = (&self.series[0], &self.series[1], &self.series[2]);
        let r = lib.paired(bare);
        let median = |s: &Series| s.stats().map_or(0.0, |s| us(s.median));
        t.row([
            format!("(b) `PgCounters::reserve` ≤ {TARGET_CALL} × the bare statement"),
            ratio(r),
            format!("{:.0} µs vs {:.0} µs (medians)", median(lib), median(bare)),
            at_most(r, TARGET_CALL).to_owned(),
        ]);
        t.row([
            "(context) `PgCounters::reserve` vs the statement prepared once".to_owned(),
            ratio(lib.paired(prepared)),
            format!("{:.0} µs vs {:.0} µs", median(lib), median(prepared)),
            String::new(),
        ]);
    }
}

// ---------------------------------------------------------------------------------------------
// (c) 16 concurrent reservers
// ---------------------------------------------------------------------------------------------

/// One competitor's rounds, pooled.
#[derive(Default)]
struct Pool {
    wall: Duration,
    /// Per round: reservations per second.
    per_round: Vec<f64>,
    latencies: Vec<Duration>,
}

impl Pool {
    fn ids_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn tail(&self) -> f64 {
        let s = Stats::of(&self.latencies);
        s.max.as_secs_f64() / s.median.as_secs_f64()
    }
}

struct Contention {
    lib: Pool,
    bare: Pool,
    k: usize,
    rounds: usize,
}

/// `WORKERS` threads, each opening its own handle with `open` and then, after a barrier,
/// making `k` reservations with `reserve`: the wall time from the barrier to the last done,
/// and every (id, latency).
fn round<H>(
    k: usize,
    open: impl Fn() -> H + Sync,
    reserve: impl Fn(&mut H) -> u64 + Sync,
) -> (Duration, Vec<(u64, Duration)>) {
    let barrier = Barrier::new(WORKERS + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (barrier, open, reserve) = (&barrier, &open, &reserve);
                s.spawn(move || {
                    let mut handle = open();
                    barrier.wait();
                    let got: Vec<(u64, Duration)> = (0..k)
                        .map(|_| {
                            let start = Instant::now();
                            let id = reserve(&mut handle);
                            (id, start.elapsed())
                        })
                        .collect();
                    (got, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut end = start;
        let mut all = Vec::with_capacity(WORKERS * k);
        for w in workers {
            let (got, done) = w.join().expect("a reserver panicked");
            all.extend(got);
            end = end.max(done);
        }
        (end - start, all)
    })
}

fn contention(mode: &Mode, url: &str, run: &str, wait: Duration) -> Contention {
    let k = env_number("GAPREG_BENCH_PG_K", mode.pick(60, 3));
    let rounds = mode.pick(6, 1);
    let lib_ns = format!("{run}-contention-lib");
    let bare_ns = format!("{run}-contention-bare");
    let (mut lib, mut bare) = (Pool::default(), Pool::default());
    let (mut lib_taken, mut bare_taken) = (0, 0);
    for r in 0..rounds {
        // Alternate which goes first.
        for which in [r % 2, 1 - r % 2] {
            let (wall, results) = if which == 0 {
                round(
                    k,
                    || library(url, &lib_ns, wait),
                    |c| c.reserve(PREFIX, 1).expect("reserve").first(),
                )
            } else {
                round(k, || bare_client(url), |c| bare_reserve(c, &bare_ns))
            };
            let (pool, taken, what) = if which == 0 {
                (&mut lib, &mut lib_taken, "PgCounters")
            } else {
                (&mut bare, &mut bare_taken, "bare clients")
            };
            let mut ids: Vec<u64> = results.iter().map(|(id, _)| *id).collect();
            check_consecutive(what, *taken, &mut ids);
            *taken += ids.len() as u64;
            pool.wall += wall;
            pool.per_round
                .push(results.len() as f64 / wall.as_secs_f64());
            pool.latencies.extend(results.into_iter().map(|(_, d)| d));
        }
    }
    Contention {
        lib,
        bare,
        k,
        rounds,
    }
}

impl Contention {
    fn paired_throughput(&self) -> Option<f64> {
        let ratios: Vec<f64> = self
            .lib
            .per_round
            .iter()
            .zip(&self.bare.per_round)
            .map(|(a, b)| a / b)
            .collect();
        gapreg_benches::stats::median(&ratios)
    }

    fn report(&self) -> String {
        let mut t = Table::new(&[
            "competitor",
            "reservations",
            "wall s",
            "IDs/s",
            "median µs",
            "p99 µs",
            "max µs",
            "max/median",
        ]);
        for (name, p) in [
            ("PgCounters (own Server each)", &self.lib),
            ("bare clients", &self.bare),
        ] {
            let s = Stats::of(&p.latencies);
            t.row([
                format!("{WORKERS} threads, {name}"),
                s.count.to_string(),
                format!("{:.2}", p.wall.as_secs_f64()),
                format!("{:.0}", p.ids_per_sec()),
                format!("{:.0}", us(s.median)),
                format!("{:.0}", us(s.p99)),
                format!("{:.0}", us(s.max)),
                format!("{:.1}", p.tail()),
            ]);
        }
        format!(
            "### (c) {WORKERS} concurrent reservers on one counter ({WORKERS} × {} reservations, \
             {} rounds each, alternating, pooled)\n\n{t}",
            self.k, self.rounds
        )
    }

    fn targets(&self, t: &mut Table) {
        let r = self.lib.ids_per_sec() / self.bare.ids_per_sec();
        t.row([
            format!("(c) {WORKERS} reservers: IDs/s ≥ {TARGET_THROUGHPUT} × bare clients"),
            format!("{r:.2}×"),
            format!(
                "{:.0} vs {:.0} IDs/s pooled; paired over rounds {}",
                self.lib.ids_per_sec(),
                self.bare.ids_per_sec(),
                ratio(self.paired_throughput())
            ),
            verdict(r >= TARGET_THROUGHPUT).to_owned(),
        ]);
        let s = Stats::of(&self.lib.latencies);
        let tail = self.lib.tail();
        t.row([
            format!("(c) {WORKERS} reservers: slowest ≤ {TARGET_TAIL} × median"),
            format!("{tail:.1}×"),
            format!(
                "{:.1} ms vs {:.2} ms (bare clients: {:.1}×)",
                ms(s.max),
                ms(s.median),
                self.bare.tail()
            ),
            verdict(tail <= TARGET_TAIL).to_owned(),
        ]);
    }
}

// ---------------------------------------------------------------------------------------------
// (d) leases at 10,000
// ---------------------------------------------------------------------------------------------

struct Leases {
    /// Acquire + release at `live` leases, and in an empty namespace.
    series: Vec<Series>,
    acquire: Vec<Duration>,
    release: Vec<Duration>,
    list: Vec<Duration>,
    live: usize,
    seeding: Duration,
}

fn leases(mode: &Mode, url: &str, run: &str, wait: Duration, dir: &Path) -> Leases {
    let live = mode.pick(LEASES, 200);
    let root = dir.join("lease-root");
    std::fs::create_dir_all(&root).expect("create the lease root");
    let open = |ns: &str| {
        let server = Arc::new(Server::connect(url, wait).expect("connect"));
        PgLeases::open(server, ns, &root).expect("open the leases")
    };
    let full = open(&format!("{run}-leases-{live}"));
    let empty = open(&format!("{run}-leases-empty"));
    // Seed: `live` leases on files of their own, far from expiry, held by several agents.
    let seed_start = Instant::now();
    std::thread::scope(|s| {
        let seeders = 4;
        for w in 0..seeders {
            let leases = open(&format!("{run}-leases-{live}"));
            s.spawn(move || {
                for i in (w..live).step_by(seeders) {
                    let req = LeaseRequest::exclusive(&format!("agent-{}", i % 16))
                        .file(format!("seed/{i:05}.yaml"))
                        .ttl(Duration::from_secs(3600))
                        .task(format!("seed {i}"))
                        .bind(Binding::TtlOnly);
                    leases.acquire(&req).expect("seed a lease");
                }
            });
        }
    });
    let seeding = seed_start.elapsed();
    let listed = full.list().expect("list");
    assert_eq!(listed.leases.len(), live, "every seeded lease is live");

    let names = [
        format!("acquire + release, {live} live leases"),
        "acquire + release, empty namespace".to_owned(),
    ];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (warm_up, rounds, per_turn) = mode.pick((2, 30, 10), (0, 1, 2));
    let (mut acquire, mut release) = (Vec::new(), Vec::new());
    let mut n = 0usize;
    let series = interleave::run(&names, warm_up, rounds, |i, round| {
        let leases = if i == 0 { &full } else { &empty };
        (0..per_turn)
            .map(|_| {
                n += 1;
                let req = LeaseRequest::exclusive("bench")
                    .file(format!("work/{n}.yaml"))
                    .ttl(Duration::from_secs(60))
                    .bind(Binding::TtlOnly);
                let start = Instant::now();
                let grant = leases.acquire(&req).expect("acquire");
                let granted = start.elapsed();
                leases.release(&grant.lease).expect("release");
                let took = start.elapsed();
                if i == 0 && round >= warm_up {
                    acquire.push(granted);
                    release.push(took - granted);
                }
                took
            })
            .collect()
    });
    let list_calls = mode.pick(10, 1);
    let list = (0..list_calls)
        .map(|_| {
            let start = Instant::now();
            let l = full.list().expect("list");
            let took = start.elapsed();
            assert_eq!(l.leases.len(), live);
            took
        })
        .collect();
    Leases {
        series,
        acquire,
        release,
        list,
        live,
        seeding,
    }
}

impl Leases {
    fn report(&self) -> String {
        let mut t = Table::new(&["operation", "calls", "median ms", "p99 ms", "max ms"]);
        let mut row = |name: String, d: &[Duration]| {
            let s = Stats::of(d);
            t.row([
                name,
                s.count.to_string(),
                format!("{:.2}", ms(s.median)),
                format!("{:.2}", ms(s.p99)),
                format!("{:.2}", ms(s.max)),
            ]);
        };
        for s in &self.series {
            row(format!("`{}`", s.name), &s.calls);
        }
        row(
            format!("… of which acquire, {} live", self.live),
            &self.acquire,
        );
        row(
            format!("… of which release, {} live", self.live),
            &self.release,
        );
        row(
            format!("(context) `list` of {} live leases", self.live),
            &self.list,
        );
        format!(
            "### (d) `PgLeases` with {} live leases ({} rounds, interleaved with an empty \
             namespace; seeding took {:.0} s)\n\n{t}",
            self.live,
            self.series[0].rounds.len(),
            self.seeding.as_secs_f64()
        )
    }

    fn targets(&self, t: &mut Table) {
        let s = Stats::of(&self.series[0].calls);
        let empty = Stats::of(&self.series[1].calls);
        t.row([
            format!(
                "(d) acquire + release at {} live leases ≤ {TARGET_LEASE_MS} ms",
                self.live
            ),
            format!("{:.2} ms", ms(s.median)),
            format!(
                "median; p99 {:.2} ms; empty namespace {:.2} ms ({} paired)",
                ms(s.p99),
                ms(empty.median),
                ratio(self.series[0].paired(&self.series[1]))
            ),
            verdict(ms(s.median) <= TARGET_LEASE_MS).to_owned(),
        ]);
    }
}
