//! `FileMutex` benchmarks.
//!
//! 1. criterion group `uncontended lock+unlock`: `FileMutex::lock` + drop against raw `flock`
//!    (through `fd-lock`) on a freshly opened lock file, which is what a caller without this
//!    crate writes, and against the floor: `flock`/unlock on a descriptor held open.
//! 2. The fairness run (only under `cargo bench`, which passes `--bench`): 8 processes (this
//!    binary re-executed) each repeatedly take the lock, hold it 1 ms, release it and at once
//!    ask again, for `LEASELOCK_FAIRNESS_SECS` seconds (default 3); once with raw `flock`, once
//!    with `FileMutex`. Prints each run's acquisitions per process, Jain's fairness index, the
//!    worst wait, throughput, and each waiter's CPU use.
//!
//! Scratch files live under `CARGO_TARGET_TMPDIR`.
// The raw-`flock` peer and floor must be the bare calls the workspace's clippy.toml keeps
// inside `atomic_file::lock`; a benchmark of them is the one other place allowed to make them.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::env;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use leaselock::mutex::FileMutex;

const CHILD: &str = "LEASELOCK_BENCH_CHILD";
const PROCESSES: usize = 8;
const HOLD: Duration = Duration::from_millis(1);

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("leaselock-mutex-bench");
    let _ = fs::remove_dir_all(dir.join(name));
    fs::create_dir_all(dir.join(name)).expect("scratch dir");
    dir.join(name)
}

fn open(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open lock file")
}

fn uncontended(c: &mut Criterion) {
    let dir = scratch("uncontended");
    let path = dir.join("bench.lock");
    let mut group = c.benchmark_group("uncontended lock+unlock");
    group.bench_function("raw flock, open+lock+unlock+close", |b| {
        b.iter(|| {
            let mut lock = fd_lock::RwLock::new(open(&path));
            drop(lock.write().expect("flock"));
        })
    });
    group.bench_function("raw flock on a held-open fd (floor)", |b| {
        let mut lock = fd_lock::RwLock::new(open(&path));
        b.iter(|| drop(lock.write().expect("flock")))
    });
    group.bench_function("FileMutex::lock", |b| {
        let mutex = FileMutex::new(&path);
        b.iter(|| drop(mutex.lock().expect("lock")))
    });
    group.bench_function("FileMutex::try_lock", |b| {
        let mutex = FileMutex::new(&path);
        b.iter(|| drop(mutex.try_lock().expect("lock")))
    });
    group.bench_function("FileMutex::lock_shared", |b| {
        let mutex = FileMutex::new(&path);
        b.iter(|| drop(mutex.lock_shared().expect("lock")))
    });
    group.finish();
}

criterion_group!(benches, uncontended);

fn main() {
    if let Ok(role) = env::var(CHILD) {
        child(&role);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if env::args().any(|a| a == "--bench") {
        let secs = env::var("LEASELOCK_FAIRNESS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0);
        fairness(Duration::from_secs_f64(secs));
    }
}

/// One contender: `role` is `raw|mutex <dir> <secs>`. Prints
/// `acquisitions worst_wait_us cpu_us wall_us`.
fn child(role: &str) {
    let mut parts = role.split(' ');
    let kind = parts.next().expect("kind");
    if kind == "idle" {
        idle_child(&PathBuf::from(parts.next().expect("dir")), parts.next());
        return;
    }
    let dir = PathBuf::from(parts.next().expect("dir"));
    let secs: f64 = parts.next().expect("secs").parse().expect("secs");
    let path = dir.join("fair.lock");
    let mutex = FileMutex::new(&path);
    let mut raw = fd_lock::RwLock::new(open(&path));
    // Everyone starts together.
    while !dir.join("go").exists() {
        std::thread::sleep(Duration::from_micros(200));
    }
    let cpu_start = cpu_ns();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let (mut count, mut worst) = (0u64, Duration::ZERO);
    while Instant::now() < end {
        let asked = Instant::now();
        if kind == "raw" {
            let _guard = raw.write().expect("flock");
            worst = worst.max(asked.elapsed());
            count += 1;
            std::thread::sleep(HOLD);
        } else {
            let _guard = mutex.lock().expect("lock");
            worst = worst.max(asked.elapsed());
            count += 1;
            std::thread::sleep(HOLD);
        }
    }
    let wall = start.elapsed();
    let cpu = cpu_ns().saturating_sub(cpu_start);
    println!(
        "{count} {} {} {}",
        worst.as_micros(),
        cpu / 1000,
        wall.as_micros()
    );
}

/// An idle waiter: waits for the lock the parent holds (with `lock`, or `lock_for` when `timed`)
/// and prints `cpu_us wall_us` spent in that call.
fn idle_child(dir: &Path, how: Option<&str>) {
    let timed = how.filter(|&h| h != "lock");
    // Warm up (first-use set-up, page faults) on another lock file.
    drop(FileMutex::new(dir.join("warm.lock")).lock().expect("lock"));
    let mutex = FileMutex::new(dir.join("idle.lock"));
    let (cpu, wall) = (cpu_ns(), Instant::now());
    let guard = if timed.is_some() {
        mutex.lock_for(Duration::from_secs(60))
    } else {
        mutex.lock()
    }
    .expect("lock");
    let (cpu, wall) = (
        cpu_ns().saturating_sub(cpu) / 1000,
        wall.elapsed().as_micros(),
    );
    drop(guard);
    println!("{cpu} {wall}");
}

/// CPU used by one waiter (`how`: `raw` flock, `lock`, `timed`) while the lock is held by
/// someone else for 2 s.
fn idle_cpu(how: &str) -> (u64, u64) {
    let dir = scratch(&format!("idle-{how}"));
    let mutex = FileMutex::new(dir.join("idle.lock"));
    let guard = mutex.lock().expect("lock");
    let role = format!("idle {} {how}", dir.display());
    let child = Command::new(env::current_exe().expect("bench binary"))
        .env(CHILD, role)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn waiter");
    std::thread::sleep(Duration::from_secs(2));
    drop(guard);
    let out = child.wait_with_output().expect("waiter");
    let f: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    (f[0], f[1])
}

/// This (single-threaded) process's CPU time so far, from `/proc/self/schedstat`; 0 elsewhere.
fn cpu_ns() -> u64 {
    fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Run {
    counts: Vec<u64>,
    worst: Duration,
    throughput: f64,
    cpu_share: f64,
}

fn contend(kind: &str, secs: Duration) -> Run {
    let dir = scratch(&format!("fair-{kind}"));
    let exe = env::current_exe().expect("bench binary");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .env(
                    CHILD,
                    format!("{kind} {} {}", dir.display(), secs.as_secs_f64()),
                )
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn contender")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    fs::write(dir.join("go"), "").expect("go");
    let mut counts = Vec::new();
    let (mut worst, mut cpu, mut wall) = (Duration::ZERO, 0u64, 0u64);
    for child in children {
        let out = child.wait_with_output().expect("contender");
        assert!(out.status.success(), "contender failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<u64> = text
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        counts.push(f[0]);
        worst = worst.max(Duration::from_micros(f[1]));
        cpu += f[2];
        wall += f[3];
    }
    let total: u64 = counts.iter().sum();
    Run {
        throughput: total as f64 / secs.as_secs_f64(),
        counts,
        worst,
        cpu_share: cpu as f64 / wall as f64,
    }
}

fn jain(counts: &[u64]) -> f64 {
    let sum: f64 = counts.iter().map(|&c| c as f64).sum();
    let squares: f64 = counts.iter().map(|&c| (c as f64).powi(2)).sum();
    if squares == 0.0 {
        0.0
    } else {
        sum * sum / (counts.len() as f64 * squares)
    }
}

fn fairness(secs: Duration) {
    println!("\nfairness: {PROCESSES} processes, hold {HOLD:?}, re-acquire at once, {secs:?} each");
    let raw = contend("raw", secs);
    let mutex = contend("mutex", secs);
    for (name, run) in [("raw flock", &raw), ("FileMutex", &mutex)] {
        let (min, max) = (
            run.counts.iter().min().copied().unwrap_or(0),
            run.counts.iter().max().copied().unwrap_or(0),
        );
        println!(
            "{name:>10}: jain {:.3}  worst wait {:>8.1} ms  throughput {:>6.0}/s  \
             per-process min {min} max {max}  cpu {:.2}% of each process's wall time  {:?}",
            jain(&run.counts),
            run.worst.as_secs_f64() * 1e3,
            run.throughput,
            run.cpu_share * 100.0,
            run.counts
        );
    }
    println!(
        "FileMutex throughput = {:.1}% of raw flock",
        100.0 * mutex.throughput / raw.throughput
    );
    for (how, name) in [
        ("raw", "raw flock, blocked"),
        ("lock", "FileMutex::lock, blocked"),
        ("timed", "FileMutex::lock_for, polling"),
    ] {
        let (cpu, wall) = idle_cpu(how);
        println!(
            "idle waiter ({name}): {cpu} µs CPU in {:.2} s of waiting",
            wall as f64 / 1e6
        );
    }
}
