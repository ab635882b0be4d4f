//! Lease benchmarks: acquire + release with 0, 100, 1,000 and 10,000 existing leases, and the
//! pure conflict check at 10,000. Targets (issue 3): conflict check <= 1 ms at 10,000;
//! acquire + release <= 5 ms at 1,000.
//!
//! Run: `cargo bench -p leaselock --bench lease`. Scratch roots live under
//! `CARGO_TARGET_TMPDIR`-like `target/` space (here: a temp dir inside the target directory).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use leaselock::lease::{
    Durability, Lease, LeaseOptions, LeaseRequest, Leases, Mode, find_conflicts,
};

fn scratch() -> tempfile::TempDir {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let _ = std::fs::create_dir_all(&base);
    tempfile::tempdir_in(base).expect("scratch dir")
}

/// `n` leases, each on its own file under `pre/`, written directly as lease files (taking
/// them one by one through `acquire` would cost O(n^2) stats just to set up), then repaired.
fn template(root: &Path) -> Lease {
    let leases =
        Leases::open_with(root, LeaseOptions::new().durability(Durability::NoSync)).expect("open");
    let grant = leases
        .acquire(
            &LeaseRequest::exclusive("seed")
                .file("seed")
                .ttl(Duration::from_secs(86_400)),
        )
        .expect("seed");
    leases.release(&grant.lease).expect("release seed");
    grant.lease
}

fn populate(root: &Path, n: usize) -> Vec<Lease> {
    let template = template(root);
    let dir = root.join(leaselock::lease::DEFAULT_LEASES_DIR);
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        let mut lease = template.clone();
        lease.token = 1000 + i as u64;
        lease.id = format!("{}-pre", lease.token);
        lease.holder = format!("agent-{}", i % 50);
        lease.files = vec![format!("pre/{i}/file.rs")];
        lease.dirs = vec![format!("pre/{i}/dir")];
        std::fs::write(
            dir.join(format!("{}.lease.json", lease.id)),
            lease.to_file_bytes().expect("encode"),
        )
        .expect("write lease");
        all.push(lease);
    }
    // Lease files written behind the library's back carry tokens the counter has not seen:
    // that reads as a counter gone back, so rebuild it (and the index) as a person would.
    Leases::open_with(root, LeaseOptions::new().durability(Durability::NoSync))
        .expect("open")
        .repair()
        .expect("repair");
    all
}

fn acquire_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("lease_acquire_release");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for (n, durability, label) in [
        (0, Durability::NoSync, "nosync"),
        (100, Durability::NoSync, "nosync"),
        (1_000, Durability::NoSync, "nosync"),
        (10_000, Durability::NoSync, "nosync"),
        (0, Durability::Full, "fsync"),
        (1_000, Durability::Full, "fsync"),
    ] {
        let root = scratch();
        populate(root.path(), n);
        let leases = Leases::open_with(root.path(), LeaseOptions::new().durability(durability))
            .expect("open");
        // The existing leases are all on other paths: the request conflicts with none.
        let req_free = LeaseRequest::exclusive("bench").file("src/lib.rs");
        group.bench_with_input(BenchmarkId::new(format!("warm_{label}"), n), &n, |b, _| {
            b.iter(|| {
                let g = leases.acquire(&req_free).expect("acquire");
                leases.release(&g.lease).expect("release");
            })
        });
        if durability == Durability::NoSync && n > 0 && n <= 1_000 {
            // A new handle per operation: what a one-shot CLI process pays (index.json + stats).
            group.bench_with_input(BenchmarkId::new("cold_nosync", n), &n, |b, _| {
                b.iter(|| {
                    let fresh = Leases::open_with(
                        root.path(),
                        LeaseOptions::new().durability(Durability::NoSync),
                    )
                    .expect("open");
                    let g = fresh.acquire(&req_free).expect("acquire");
                    fresh.release(&g.lease).expect("release");
                })
            });
        }
    }
    group.finish();
}

fn conflict_check(c: &mut Criterion) {
    let root = scratch();
    let leases = populate(root.path(), 10_000);
    let now = SystemTime::now();
    let mut group = c.benchmark_group("lease_conflict_check");
    let free = vec!["src/lib.rs".to_owned()];
    let dirs = vec!["pre/5000".to_owned()];
    group.bench_function("10000_no_conflict", |b| {
        b.iter(|| find_conflicts(Mode::Exclusive, &free, &[], &leases, now, Duration::ZERO).len())
    });
    group.bench_function("10000_one_conflict_dir", |b| {
        b.iter(|| find_conflicts(Mode::Exclusive, &free, &dirs, &leases, now, Duration::ZERO).len())
    });
    group.finish();
}

criterion_group!(benches, conflict_check, acquire_release);
criterion_main!(benches);
