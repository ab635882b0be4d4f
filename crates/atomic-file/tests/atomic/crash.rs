//! A writer killed with SIGKILL at random moments leaves the file as exactly one complete
//! version, and `recover` removes every temp file it left.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use atomic_file::{Durability, Options};

use crate::util::{child_param, spawn_child, temp_files};

const KILLS: usize = 200;
const VERSION_BYTES: usize = 1 << 20;
/// What a child prints once it is about to enter its write loop.
const READY: &str = "child-writer-ready";

/// Version `v` of the file: a header line naming it, then filler derived from `v`, 1 MiB in all.
fn version(v: u64) -> Vec<u8> {
    let mut data = format!("version {v}\n").into_bytes();
    let mut x = v.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while data.len() < VERSION_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(VERSION_BYTES);
    data
}

/// The version number the file holds, asserting that it is exactly that complete version.
fn check_complete(path: &Path) -> u64 {
    let data = std::fs::read(path).expect("the file must always exist");
    let line_end = data.iter().position(|&b| b == b'\n').expect("header line");
    let header = std::str::from_utf8(&data[..line_end]).expect("utf-8 header");
    let v: u64 = header
        .strip_prefix("version ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("torn file: bad header {header:?}"));
    assert!(
        data == version(v),
        "torn file: contents are not version {v}"
    );
    v
}

#[test]
fn sigkill_mid_write_leaves_one_complete_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.bin");
    atomic_file::write(&path, &version(0)).expect("seed");
    let (mut last, mut left_temps, mut removed) = (0, 0, 0);
    for round in 0..KILLS {
        let mut child = spawn_child("crash::child_writer", &path.display().to_string());
        // Wait until the child is inside its write loop, then kill it at a random moment.
        // (libtest prints its own lines first, and "test NAME ... " without a newline.)
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let ready = stdout
            .lines()
            .map_while(Result::ok)
            .any(|line| line.ends_with(READY));
        assert!(
            ready,
            "round {round}: the child exited before its write loop"
        );
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..30_000)));
        child.kill().expect("SIGKILL");
        // Reap it: a zombie's pid still exists, so recovery would (rightly) keep its temp.
        child.wait().expect("wait");

        let v = check_complete(&path);
        assert!(
            v >= last,
            "round {round}: version went back from {last} to {v}"
        );
        last = v;
        let temps = temp_files(dir.path());
        left_temps += temps.len();
        let report = atomic_file::recover(dir.path()).expect("recover");
        assert_eq!(
            report.removed, temps,
            "round {round}: recover must remove exactly the leftovers"
        );
        assert!(report.in_use.is_empty());
        removed += report.removed.len();
        assert!(temp_files(dir.path()).is_empty());
        assert_eq!(
            check_complete(&path),
            v,
            "recovery must not touch the target"
        );
    }
    assert!(
        last > 0,
        "the children never completed a write; the test proved nothing"
    );
    assert!(
        left_temps > 0,
        "no kill landed mid-write in {KILLS} rounds; the test proved nothing"
    );
    assert_eq!(removed, left_temps);
}

#[test]
#[ignore = "child process of sigkill_mid_write_leaves_one_complete_version"]
fn child_writer() {
    let Some(path) = child_param() else { return };
    let path = PathBuf::from(path);
    let mut v = check_complete(&path);
    println!("{READY}");
    loop {
        v += 1;
        // Alternate durabilities so that kills land in fsync as well as in write and rename.
        let durability = if v % 2 == 0 {
            Durability::Full
        } else {
            Durability::NoSync
        };
        Options::new()
            .durability(durability)
            .write(&path, &version(v))
            .expect("write");
    }
}
