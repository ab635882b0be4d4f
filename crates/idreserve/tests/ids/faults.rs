//! Faults injected with `strace -e inject=...` into a child process that reserves: after
//! each, what the child reported tells the truth. `OK` means the IDs are in the log and no
//! later reservation hands them out again; an error means either nothing changed, or the
//! IDs are skipped (never handed out) when the record had become visible before the failure.
//! Also checks the order of the system calls of one reservation.
//!
//! Skipped (with a message) where `strace` cannot run.

use std::path::Path;
use std::process::Command;

use idreserve::{Config, FindingKind, Store};

use crate::util::{CHILDREN, child_param};

fn strace_works() -> bool {
    let ok = Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("strace is not available or not permitted here: fault injection skipped");
    }
    ok
}

/// Runs the child `op` on the store `dir` under `strace` with `args`; returns its result line
/// (`OK <first> <last>` or `ERR <message>`).
fn child(dir: &Path, op: &str, args: &[&str]) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "signal=none"])
        .args(args)
        .arg(exe)
        .args([
            "faults::child_op",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILDREN_ENV, format!("{}|{op}", dir.display()))
        .output()
        .expect("run strace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_owned()))
        .unwrap_or_else(|| {
            panic!(
                "no result from the child: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

const CHILDREN_ENV: &str = "IDRESERVE_CHILD";

#[test]
#[ignore = "child process of the fault-injection tests"]
fn child_op() {
    let _ = CHILDREN;
    let Some(param) = child_param() else { return };
    let (dir, op) = param.rsplit_once('|').expect("dir|op");
    let store = Store::open(dir).expect("open");
    let result = match op {
        "reserve" => store.reserve("SEC", 2).map(|r| (r.first(), r.last())),
        "raise" => store.raise("SEC", 1000).map(|r| (r.before, r.after)),
        other => panic!("unknown op {other}"),
    };
    match result {
        Ok((a, b)) => println!("\nRESULT OK {a} {b}"),
        Err(e) => println!("\nRESULT ERR {e}"),
    }
}

/// A store with SEC at 3 (and, with `full`, a log without a free slot, so the next
/// reservation rewrites it).
fn fixture(full: bool) -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::create(tmp.path().join("ids"), Config::default()).expect("create");
    if full {
        for _ in 0..idreserve::log::FREE_SLOTS - 1 {
            store.reserve("OTHER", 1).expect("fill");
        }
    }
    store.reserve("SEC", 3).expect("reserve");
    (tmp, store)
}

fn log_bytes(store: &Store) -> Vec<u8> {
    std::fs::read(store.dir().join("counters.log")).expect("log")
}

/// No temp file of a failed rewrite is left, and the store is healthy.
fn healthy(store: &Store) {
    let report = store.verify().expect("verify");
    assert!(report.is_healthy(), "{report:?}");
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::LeftoverTemp),
        "{report:?}"
    );
}

#[test]
fn a_failed_write_changes_nothing() {
    if !strace_works() {
        return;
    }
    for full in [false, true] {
        let (_tmp, store) = fixture(full);
        let log = store.dir().join("counters.log");
        let log = log.to_str().expect("utf-8");
        let before = log_bytes(&store);
        let faults: &[&[&str]] = if full {
            // The rewrite: its fsync, its rename (its `write` goes to a temp file whose name
            // is not known in advance, and failing every write would silence the child).
            &[
                &["-e", "inject=fsync:error=EIO"],
                &["-e", "inject=rename,renameat,renameat2:error=EIO"],
            ]
        } else {
            &[&[
                "-P",
                log,
                "-e",
                "trace=pwrite64",
                "-e",
                "inject=pwrite64:error=ENOSPC",
            ]]
        };
        for fault in faults {
            let result = child(store.dir(), "reserve", fault);
            assert!(result.starts_with("ERR"), "{fault:?}: {result}");
            assert_eq!(log_bytes(&store), before, "{fault:?}: the log changed");
            assert_eq!(store.counters().expect("counters")["SEC"], 3, "{fault:?}");
            healthy(&store);
        }
        // Nothing was visible, so nothing is skipped.
        assert_eq!(store.reserve("SEC", 1).expect("reserve").first(), 4);
    }
}

#[test]
fn a_failed_flush_is_repaired_or_skips_the_ids() {
    if !strace_works() {
        return;
    }
    // The first fdatasync fails: the writer rewrites the log with fsync, and the reservation
    // is acknowledged because it is durable.
    let (_tmp, store) = fixture(false);
    let result = child(
        store.dir(),
        "reserve",
        &["-e", "inject=fdatasync:error=EIO:when=1"],
    );
    assert_eq!(result, "OK 4 5");
    assert_eq!(store.counters().expect("counters")["SEC"], 5);
    healthy(&store);
    assert_eq!(store.reserve("SEC", 1).expect("reserve").first(), 6);

    // Every flush fails: the reservation fails, and its IDs (already visible in the log) are
    // skipped, never handed out.
    let (_tmp, store) = fixture(false);
    let result = child(
        store.dir(),
        "reserve",
        &[
            "-e",
            "inject=fdatasync:error=EIO",
            "-e",
            "inject=fsync:error=EIO",
        ],
    );
    assert!(
        result.starts_with("ERR") && result.contains("flush"),
        "{result}"
    );
    let next = store.reserve("SEC", 1).expect("reserve").first();
    assert!(
        next > 5,
        "SEC-{next}: an ID of the failed reservation was handed out"
    );
    healthy(&store);

    // The same for a raise.
    let (_tmp, store) = fixture(false);
    let result = child(
        store.dir(),
        "raise",
        &["-e", "inject=fdatasync:error=EIO:when=1"],
    );
    assert_eq!(result, "OK 3 1000");
    assert_eq!(store.peek("SEC").expect("peek").number(), 1001);
}

/// The order of the system calls of one reservation: the record is written with one
/// `pwrite64` of 64 bytes under the lock, the lock is released, then `fdatasync`; nothing is
/// truncated or renamed, and nothing reaches the log after its flush.
#[test]
fn one_reservation_is_one_pwrite_then_one_fdatasync() {
    if !strace_works() {
        return;
    }
    let (tmp, store) = fixture(false);
    let trace = tmp.path().join("trace.txt");
    let trace_arg = trace.to_str().expect("utf-8").to_owned();
    let result = child(
        store.dir(),
        "reserve",
        &[
            "-y",
            "-o",
            &trace_arg,
            "-e",
            "trace=openat,write,pwrite64,fsync,fdatasync,rename,renameat,renameat2,flock,close",
        ],
    );
    assert_eq!(result, "OK 4 5");
    let text = std::fs::read_to_string(&trace).expect("trace");
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("/ids/counters."))
        .filter(|l| !l.contains("counters.lock.queue"))
        .collect();
    let find = |pred: &dyn Fn(&str) -> bool| ours.iter().position(|l| pred(l));
    let pwrite = find(&|l| l.contains("pwrite64(") && l.contains("counters.log>"))
        .unwrap_or_else(|| panic!("no pwrite64 to the log:\n{}", ours.join("\n")));
    let flush = find(&|l| l.contains("fdatasync(") && l.contains("counters.log>"))
        .unwrap_or_else(|| panic!("no fdatasync of the log:\n{}", ours.join("\n")));
    let unlock = find(&|l| l.contains("flock(") && l.contains("LOCK_UN"));
    assert!(pwrite < flush, "{}", ours.join("\n"));
    assert!(
        ours[pwrite].contains(", 64, "),
        "one 64-byte record: {}",
        ours[pwrite]
    );
    if let Some(unlock) = unlock {
        assert!(pwrite < unlock && unlock < flush, "{}", ours.join("\n"));
    }
    assert!(
        !ours[flush + 1..]
            .iter()
            .any(|l| l.contains("counters.log>") && l.contains("write")),
        "a write after the flush:\n{}",
        ours.join("\n")
    );
    for l in &ours {
        assert!(!l.contains("O_TRUNC") && !l.contains("rename"), "{l}");
        if l.contains("openat(") && l.contains("counters.log") {
            assert!(l.contains("O_NOFOLLOW"), "opened without O_NOFOLLOW: {l}");
        }
    }
    if std::env::var_os("IDRESERVE_SHOW").is_some() {
        eprintln!("{}", ours.join("\n"));
    }
}
