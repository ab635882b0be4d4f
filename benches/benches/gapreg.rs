//! The gap registry at scale (issue 5): filing one gap, filing a batch of 10, listing by
//! status, `ready` and `render`, with 1,000, 10,000 and 100,000 gaps already filed.
//!
//! One criterion group per size (`gapreg/1k`, `gapreg/10k`, `gapreg/100k`). For each size a
//! fresh registry is built once, in a temp dir under `CARGO_TARGET_TMPDIR` (the disk that holds
//! `target/`):
//!
//! - **Seeding** (not measured): `Registry::init` with `Config { durable: false, .. }` (gap
//!   files not fsynced; the id counters always are), 20 loops (`LOOP-k` depends on `LOOP-(k-1)`
//!   for odd `k`, so `ready` has loop blockers to evaluate), then `file_batch` in chunks of 500.
//!   Gap `j` has severity `j % 4`, status open / ready / complete / needs-plan by `j % 4`, type
//!   `missing-entry`, parent loop `LOOP-(j % 20)`, tag `bench`; every tenth gap depends on the
//!   gap before it (`@k-1` in its batch) and is `open`.
//! - **Measuring**: `config.yaml` is rewritten with `durable: true` (the default) and the
//!   registry reopened, so filing is measured exactly as a user would get it (gap file, id
//!   counters and index append all durable). The read-only operations run first, on exactly
//!   N gaps; then the filing benchmarks, with shorter runs (0.2 s warm-up, 1.5 s measured),
//!   each of which adds the gaps it files (hundreds to a few thousand: filing cost does not
//!   depend on the registry's size by design); each prints the range of sizes it ran at.
//!
//! | benchmark | call |
//! |---|---|
//! | `list_by_status` | `reg.list(&Filter { status: Some(Status::Ready), .. })` (a quarter of the gaps) |
//! | `ready` | `reg.ready()` |
//! | `render` | `reg.render()` (the whole markdown overview) |
//! | `file_one` | `reg.file(GapSpec::new(..).parent_loop("LOOP-3"))`, durable |
//! | `file_batch_10` | `reg.file_batch(10 specs)`, durable |
//!
//! Few samples and short measurement times (one iteration can take a second at 100k); the
//! whole run takes a few minutes: `cargo bench -p gapreg-benches --bench gapreg`.
//! `GAPREG_BENCH_SIZES=1000,10000` picks the sizes (default `1000,10000,100000`). Under
//! `cargo test --benches` (criterion's test mode) only 1,000 gaps are seeded and every
//! benchmark runs once, as a smoke test.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, measurement::WallTime};
use gapreg::{Config, Filter, GapSpec, LoopSpec, Registry, Severity, Status};
use gapreg_benches::run::{Mode, count_label, scratch};

/// Gaps per `file_batch` call while seeding.
const SEED_CHUNK: usize = 500;
/// Loops the seeded gaps belong to.
const LOOPS: usize = 20;
/// Seeded statuses, by `j % 4`.
const STATUSES: [Status; 4] = [
    Status::Open,
    Status::Ready,
    Status::Complete,
    Status::NeedsPlan,
];

/// The spec of seeded gap `j`, the `k`-th entry of its batch.
fn seed_spec(j: usize, k: usize) -> GapSpec {
    let mut s = GapSpec::new(
        format!("seeded gap {j}: a title about as long as a real one"),
        Severity::ALL[j % 4],
    )
    .gap_type("missing-entry")
    .parent_loop(format!("LOOP-{}", j % LOOPS))
    .tag("bench");
    if j % 10 == 9 && k > 0 {
        s = s.depends_on(format!("@{}", k - 1));
        s.status = Some(Status::Open);
    } else {
        s.status = Some(STATUSES[j % 4]);
    }
    s
}

/// A registry in `repo` holding `n` gaps, seeded without fsync, reopened durable.
fn seeded(repo: &Path, n: usize) -> Registry {
    let started = Instant::now();
    let fast = Config {
        durable: false,
        ..Config::default()
    };
    let reg = Registry::init(repo, fast).expect("init the registry");
    for l in 0..LOOPS {
        let depends_on = if l % 2 == 1 {
            vec![format!("LOOP-{}", l - 1)]
        } else {
            Vec::new()
        };
        reg.new_loop(LoopSpec {
            id: format!("LOOP-{l}"),
            objective: format!("loop {l} of the benchmark"),
            depends_on,
            ..LoopSpec::default()
        })
        .expect("create a loop");
    }
    let mut j = 0;
    while j < n {
        let chunk = SEED_CHUNK.min(n - j);
        let specs = (0..chunk).map(|k| seed_spec(j + k, k)).collect();
        reg.file_batch(specs).expect("seed a batch");
        j += chunk;
    }
    // Measure with the default, durable configuration.
    let config_path = reg.dir().join("config.yaml");
    let mut config: Config = atomic_file::read_yaml(&config_path).expect("read config.yaml");
    config.durable = true;
    atomic_file::write_yaml(&config_path, &config).expect("write config.yaml");
    let reg = Registry::open(reg.dir()).expect("reopen the registry");
    assert!(reg.config().durable);
    let all = reg.list(&Filter::default()).expect("list every gap");
    assert_eq!(all.len(), n, "seeded gap count");
    eprintln!(
        "gapreg bench: seeded {n} gaps in {:.1?} (non-durable, batches of {SEED_CHUNK})",
        started.elapsed()
    );
    reg
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    // At 100k one `render` takes on the order of a second: 10 samples of one iteration each.
    let measure = if n >= 100_000 { 8 } else { 4 };
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(measure));
}

fn bench_size(c: &mut Criterion, n: usize) {
    let scratch = scratch(env!("CARGO_TARGET_TMPDIR"), "gapreg-bench-");
    let reg = seeded(scratch.path(), n);
    let label = count_label(n);
    let mut group = c.benchmark_group(format!("gapreg/{label}"));
    configure(&mut group, n);

    let by_status = Filter {
        status: Some(Status::Ready),
        ..Filter::default()
    };
    let expected_ready_status = (0..n).filter(|j| j % 10 != 9 && j % 4 == 1).count();
    group.bench_function("list_by_status", |b| {
        b.iter(|| {
            let v = reg.list(black_box(&by_status)).expect("list");
            assert_eq!(v.len(), expected_ready_status);
            v
        })
    });
    group.bench_function("ready", |b| b.iter(|| reg.ready().expect("ready").len()));
    group.bench_function("render", |b| b.iter(|| reg.render().expect("render").len()));

    // Filing adds gaps: shorter runs, so that the registry stays near its size (each
    // benchmark prints the range of sizes it ran at).
    group
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(1500));
    let mut filed = 0usize;
    let before = n;
    group.bench_function("file_one", |b| {
        b.iter(|| {
            filed += 1;
            reg.file(GapSpec::new("measured gap", Severity::High).parent_loop("LOOP-3"))
                .expect("file one gap")
        })
    });
    eprintln!(
        "gapreg bench: {label}/file_one ran at {before}..{} gaps",
        n + filed
    );
    let before = n + filed;
    group.bench_function("file_batch_10", |b| {
        b.iter(|| {
            filed += 10;
            reg.file_batch(
                (0..10)
                    .map(|k| {
                        GapSpec::new(format!("measured batch entry {k}"), Severity::Low)
                            .parent_loop("LOOP-4")
                    })
                    .collect(),
            )
            .expect("file a batch of 10")
        })
    });
    eprintln!(
        "gapreg bench: {label}/file_batch_10 ran at {before}..{} gaps",
        n + filed
    );
    group.finish();

    let total = reg.list(&Filter::default()).expect("list every gap").len();
    assert_eq!(total, n + filed, "every filed gap is listed exactly once");
    assert!(reg.doctor(false).expect("doctor").healthy(), "doctor");
    eprintln!("gapreg bench: {label} ended with {total} gaps ({filed} filed while measuring)");
    drop(reg);
    // Removing 100k files takes a moment; do it now rather than at exit.
    drop(scratch);
}

fn main() {
    // A benchmark run only under `cargo bench`; `cargo test --benches` runs every benchmark
    // once, on 1,000 gaps.
    let mode = Mode::from_args();
    let sizes: Vec<usize> = match std::env::var("GAPREG_BENCH_SIZES") {
        Ok(v) => v
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("GAPREG_BENCH_SIZES: comma-separated counts")
            })
            .collect(),
        Err(_) => mode.pick(vec![1_000, 10_000, 100_000], vec![1_000]),
    };
    let names = [
        "list_by_status",
        "ready",
        "render",
        "file_one",
        "file_batch_10",
    ];
    let listed: Vec<String> = sizes
        .iter()
        .flat_map(|n| names.map(|name| format!("gapreg/{}/{name}", count_label(*n))))
        .collect();
    if mode.listed(&listed.iter().map(String::as_str).collect::<Vec<_>>()) {
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    for n in sizes {
        bench_size(&mut criterion, n);
    }
    criterion.final_summary();
}
