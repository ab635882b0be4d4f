//! Multi-process stress: 16 processes repeatedly take random overlapping leases; each logs
//! `token start end mode files dirs` while it holds one; the parent proves that no two
//! conflicting leases were ever held at the same time and that tokens only increase.
//!
//! The children are this test binary, re-executed with `--exact stress_child` and an
//! environment variable. Times are wall-clock nanoseconds (`SystemTime`), one clock for every
//! process on this host (a wall-clock step during the run would void the check; CI hosts slew).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leaselock::lease::{Durability, LeaseOptions, LeaseRequest, Leases};

const CHILD_ENV: &str = "LEASELOCK_STRESS_CHILD";
const PROCESSES: usize = 16;
const ROUNDS: usize = 25;
const FILES: &[&str] = &["a", "a/b", "a/b/c", "b", "c/d", "./c//e", "a/x/../b"];
const DIRS: &[&str] = &["a", "a/b", "c", "b/"];

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The child's body; does nothing unless started by the parent.
#[test]
fn stress_child() -> Result {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let (root, log) = spec.split_once('|').ok_or("bad spec")?;
    let leases = Leases::open_with(root, LeaseOptions::new().durability(Durability::NoSync))?;
    let mut out = OpenOptions::new().create(true).append(true).open(log)?;
    let mut refusals = 0u64;
    for _ in 0..ROUNDS {
        let exclusive = fastrand::u8(0..10) < 6;
        let holder = format!("p{}", std::process::id());
        let mut req = if exclusive {
            LeaseRequest::exclusive(&holder)
        } else {
            LeaseRequest::shared(&holder)
        };
        let mut claims = 0;
        while claims == 0 {
            if fastrand::bool() {
                req = req.file(FILES[fastrand::usize(..FILES.len())]);
                claims += 1;
            }
            if fastrand::u8(0..3) == 0 {
                req = req.dir(DIRS[fastrand::usize(..DIRS.len())]);
                claims += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let grant = loop {
            match leases.acquire(&req) {
                Ok(grant) => break grant,
                Err(e) if e.is_conflict() && Instant::now() < deadline => {
                    refusals += 1;
                    std::thread::sleep(Duration::from_micros(fastrand::u64(100..2000)));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let start = now_ns();
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..3000)));
        let end = now_ns();
        let l = &grant.lease;
        writeln!(
            out,
            "{} {} {} {} {} {}",
            l.token,
            start,
            end,
            if exclusive { "x" } else { "s" },
            l.files.join(",") + "|",
            l.dirs.join(",")
        )?;
        leases.release(l)?;
    }
    writeln!(out, "refusals {refusals}")?;
    Ok(())
}

#[derive(Debug)]
struct Held {
    process: usize,
    token: u64,
    start: u128,
    end: u128,
    exclusive: bool,
    files: Vec<String>,
    dirs: Vec<String>,
}

fn under(inner: &str, outer: &str) -> bool {
    let (i, o): (Vec<&str>, Vec<&str>) = (inner.split('/').collect(), outer.split('/').collect());
    i.len() >= o.len() && i[..o.len()] == o[..]
}

fn conflict(a: &Held, b: &Held) -> bool {
    if !a.exclusive && !b.exclusive {
        return false;
    }
    let files = a
        .files
        .iter()
        .any(|f| b.files.contains(f) || b.dirs.iter().any(|d| under(f, d)))
        || b.files.iter().any(|f| a.dirs.iter().any(|d| under(f, d)));
    files
        || a.dirs
            .iter()
            .any(|x| b.dirs.iter().any(|y| under(x, y) || under(y, x)))
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse(process: usize, path: &Path, refusals: &mut u64) -> Result<Vec<Held>> {
    let mut held = Vec::new();
    for line in fs::read_to_string(path)?.lines() {
        if let Some(n) = line.strip_prefix("refusals ") {
            *refusals += n.parse::<u64>()?;
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let [token, start, end, mode, files, dirs] = f[..] else {
            return Err(format!("bad line {line:?}").into());
        };
        held.push(Held {
            process,
            token: token.parse()?,
            start: start.parse()?,
            end: end.parse()?,
            exclusive: mode == "x",
            files: split(files.trim_end_matches('|')),
            dirs: split(dirs),
        });
    }
    Ok(held)
}

#[test]
fn many_processes_never_hold_conflicting_leases() -> Result {
    if std::env::var(CHILD_ENV).is_ok() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let logs: Vec<PathBuf> = (0..PROCESSES)
        .map(|i| root.path().join(format!("log-{i}.txt")))
        .collect();
    let children: Vec<_> = logs
        .iter()
        .map(|log| {
            Command::new(&exe)
                .args(["--exact", "stress_child", "--test-threads=1", "--quiet"])
                .stdout(std::process::Stdio::null())
                .env(
                    CHILD_ENV,
                    format!("{}|{}", root.path().display(), log.display()),
                )
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    for mut child in children {
        assert!(child.wait()?.success(), "a child failed");
    }
    let mut refusals = 0;
    let mut all = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let held = parse(i, log, &mut refusals)?;
        assert_eq!(held.len(), ROUNDS, "process {i} logged every round");
        assert!(
            held.windows(2).all(|w| w[0].token < w[1].token),
            "process {i}: tokens increase"
        );
        all.extend(held);
    }
    let mut tokens: Vec<u64> = all.iter().map(|h| h.token).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), all.len(), "every grant has its own token");
    let mut conflicting_pairs = 0;
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if a.process == b.process || !conflict(a, b) {
                continue;
            }
            conflicting_pairs += 1;
            assert!(
                a.end <= b.start || b.end <= a.start,
                "overlapping conflicting holds: {a:?} {b:?}"
            );
            let (first, second) = if a.end <= b.start { (a, b) } else { (b, a) };
            assert!(
                first.token < second.token,
                "token went back: {first:?} then {second:?}"
            );
        }
    }
    assert!(
        conflicting_pairs > 100,
        "the run had contention ({conflicting_pairs} pairs)"
    );
    assert!(refusals > 0, "some acquires were refused");
    let leases = Leases::open(root.path())?;
    assert!(leases.list()?.leases.is_empty(), "every lease was released");
    Ok(())
}
