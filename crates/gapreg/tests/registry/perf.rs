//! A rough measurement, not a timing assertion (criterion benches live in `benches/`):
//!
//! ```sh
//! GAPREG_PERF_GAPS=10000 cargo test --release -p gapreg --test registry -- perf --ignored --nocapture
//! ```
//!
//! Fills a registry with N gaps (without fsync, for speed), then, with the default durable
//! configuration, measures filing one gap, filing a batch of 10, listing by status, `ready`,
//! `summary` and `render`, and prints the medians.

use std::time::{Duration, Instant};

use gapreg::{Config, Filter, GapSpec, Registry, Severity, Status};

use crate::util::write_loop;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn perf_file_and_list() {
    let n: usize = std::env::var("GAPREG_PERF_GAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let repo = match std::env::var("GAPREG_PERF_DIR") {
        Ok(d) => tempfile::tempdir_in(d).expect("tempdir"),
        Err(_) => tempfile::tempdir().expect("tempdir"),
    };
    let fast = Config {
        durable: false,
        ..Config::default()
    };
    let reg = Registry::init(repo.path(), fast).expect("init");
    for l in 0..20 {
        write_loop(&reg, &format!("LOOP-{l}"), "active", &[]);
    }
    let fill = Instant::now();
    let statuses = [
        Status::Open,
        Status::Ready,
        Status::Complete,
        Status::NeedsPlan,
    ];
    let mut i = 0;
    while i < n {
        let specs = (0..1000.min(n - i))
            .map(|k| {
                let j = i + k;
                let mut s = GapSpec::new(
                    format!("gap number {j} with a realistic title"),
                    Severity::ALL[j % 4],
                )
                .gap_type("missing-entry")
                .parent_loop(format!("LOOP-{}", j % 20))
                .tag("perf");
                s.status = Some(statuses[j % 4]);
                s
            })
            .collect::<Vec<_>>();
        i += specs.len();
        reg.file_batch(specs).expect("fill");
    }
    let fill = fill.elapsed();
    // Measure with the default, durable configuration.
    let mut config: Config = atomic_file::read_yaml(reg.dir().join("config.yaml")).expect("config");
    config.durable = true;
    atomic_file::write_yaml(reg.dir().join("config.yaml"), &config).expect("config");
    let reg = Registry::open(reg.dir()).expect("reopen");
    reg.list(&Filter::default()).expect("warm");

    let reserve = time(20, || {
        reg.id_store()
            .expect("a file id store")
            .reserve("PERF", 1)
            .expect("reserve")
    });
    let peek = time(20, || reg.next_id("OP").expect("peek"));
    let file_one = time(50, || {
        reg.file(GapSpec::new("measured", Severity::High).parent_loop("LOOP-3"))
            .expect("file")
    });
    let file_ten = time(10, || {
        reg.file_batch(
            (0..10)
                .map(|k| GapSpec::new(format!("batch {k}"), Severity::Low))
                .collect(),
        )
        .expect("batch")
    });
    let by_status = Filter {
        status: Some(Status::Ready),
        ..Filter::default()
    };
    let list = time(10, || reg.list(&by_status).expect("list").len());
    let to_claim: Vec<String> = (0..20)
        .map(|_| {
            reg.file(GapSpec::new("to claim", Severity::Low))
                .expect("file")
                .id
        })
        .collect();
    let mut next = to_claim.iter();
    let claim = time(20, || {
        reg.claim(next.next().expect("gap"), "CC-1", None)
            .expect("claim")
    });
    let set_status = time(20, || {
        reg.set_status(&to_claim[0], Status::Blocked, None)
            .expect("set");
        reg.set_status(&to_claim[0], Status::Open, None)
            .expect("set")
    }) / 2;
    let ready = time(5, || reg.ready().expect("ready").len());
    let summary = time(5, || reg.summary().expect("summary").total);
    let render = time(3, || reg.render().expect("render").len());
    let parse_only = time(5, || {
        let text = std::fs::read_to_string(reg.dir().join("index.log")).expect("read");
        text.lines()
            .filter(|l| gapreg::parse_index_line(l).is_ok())
            .count()
    });
    let rebuild_start = Instant::now();
    std::fs::remove_file(reg.dir().join("index.log")).expect("drop index");
    reg.list(&by_status).expect("rebuild");
    let rebuild = rebuild_start.elapsed();
    eprintln!(
        "gapreg perf at {n} gaps (fill {fill:.2?}): id reserve alone {reserve:.2?}, next_id {peek:.2?}, file one {file_one:.2?}, file batch of 10 \
         {file_ten:.2?}, claim {claim:.2?}, set_status {set_status:.2?}, list by status {list:.2?}, ready {ready:.2?}, \
         summary {summary:.2?}, render {render:.2?}, index rebuild {rebuild:.2?}, read+parse index.log only {parse_only:.2?}"
    );
}
