//! Adversarial tests: attempts to make the store hand out an ID twice, accept damage silently,
//! or panic. Tests marked `// BUG:` fail because of a real violation of issue 4 or the crate's
//! docs; the others are kept as regressions.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use idreserve::{Config, ErrorKind, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::create(dir.path().join("ids"), Config::default()).expect("create");
    (dir, store)
}

fn ids(r: &idreserve::Reservation) -> Vec<String> {
    r.ids().map(|id| id.to_string()).collect()
}

/// A store as the first release left it: `config.yaml` without `version`, a log of bare
/// lines.
fn legacy_store(lines: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = dir.path().join("ids");
    fs::create_dir(&ids).expect("mkdir");
    fs::write(ids.join("config.yaml"), "{}\n").expect("config");
    fs::write(ids.join("counters.log"), lines).expect("log");
    let store = Store::open(&ids).expect("open a first-release store");
    (dir, store)
}

/// A first-release record line.
fn v1(prefix: &str, value: u64) -> String {
    let body = format!("{prefix} {value}");
    format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
}

// Found by review, fixed (first release); kept for first-release logs: an acknowledged,
// checksum-valid last record that merely lost its trailing newline (an editor saved it so)
// counts, and is never cut off. Expected: peek = SEC-6, next reserve = SEC-6.
#[test]
fn adv_valid_last_record_without_newline_is_not_dropped() {
    let (_d, s) = legacy_store(v1("SEC", 5).trim_end());
    let peek = s.peek("SEC").expect("peek").to_string();
    let next = ids(&s.reserve("SEC", 1).expect("reserve"));
    assert_eq!(
        (peek.as_str(), next),
        ("SEC-6", vec!["SEC-6".to_owned()]),
        "an acknowledged record that only lost its newline was dropped: IDs handed out twice"
    );
}

// Same with history: the counter is never lowered to the previous record.
#[test]
fn adv_valid_last_record_without_newline_lowers_counter() {
    let lines = format!("{}{}", v1("SEC", 5), v1("SEC", 10));
    let (_d, s) = legacy_store(lines.trim_end());
    assert_eq!(
        s.reserve("SEC", 1).expect("reserve").first(),
        11,
        "counter lowered: SEC-6.. handed out twice"
    );
}

// Found by review, fixed: a counter can legitimately reach u64::MAX (`init_from` on a document mentioning
// `ABC-18446744073709551615`, or reserving up to it). Then `Reservation::ids()` computes
// `first + count` = u64::MAX + 1 and `peek` computes `counter + 1`: both overflow — a panic in
// debug builds, and in release `ids()` yields nothing and `peek` returns `ABC-0`.
// Expected: ids() yields exactly ABC-18446744073709551615; peek returns an Overflow error.
// Actual: "attempt to add with overflow" panics.
// Fix: `Reservation::ids` iterate `first..=first + (count - 1)`; `peek` use
// `counter.checked_add(1)` and return `ErrorKind::Overflow` (or refuse counters that would
// make the next ID unrepresentable).
#[test]
fn adv_reservation_ids_at_u64_max_do_not_overflow() {
    let (d, s) = store();
    let doc = d.path().join("doc.md");
    fs::write(&doc, "see ABC-18446744073709551614\n").expect("doc");
    s.init_from(&[doc], None, false).expect("init");
    let r = s.reserve("ABC", 1).expect("the last representable id");
    assert_eq!(r.first(), u64::MAX);
    let listed = catch_unwind(AssertUnwindSafe(|| ids(&r)));
    assert_eq!(
        listed.ok(),
        Some(vec!["ABC-18446744073709551615".to_owned()]),
        "Reservation::ids() overflowed (panicked or returned nothing)"
    );
    // Reserving more must be an Overflow error, never a wrap.
    let err = s.reserve("ABC", 1).expect_err("overflow");
    assert!(matches!(err.kind(), ErrorKind::Overflow { .. }), "{err}");
}

// Found by review, fixed: (same family) `peek` at a counter of u64::MAX computes `counter + 1`: panics in debug,
// returns `ABC-0` in release. Expected: an Overflow error. Fix: `checked_add(1)` in `peek`.
#[test]
fn adv_peek_at_u64_max_does_not_panic_or_wrap() {
    let (d, s) = store();
    let doc = d.path().join("doc.md");
    fs::write(
        &doc,
        "hash-like token ABC-18446744073709551615 in a document\n",
    )
    .expect("doc");
    s.init_from(&[doc], None, false).expect("init");
    assert_eq!(s.counters().expect("c")["ABC"], u64::MAX);
    let peeked = catch_unwind(AssertUnwindSafe(|| s.peek("ABC").map(|i| i.to_string())));
    match peeked {
        Ok(Err(e)) => assert!(matches!(e.kind(), ErrorKind::Overflow { .. }), "{e}"),
        Ok(Ok(id)) => panic!("peek returned {id} for an exhausted counter"),
        Err(_) => panic!("peek panicked on a counter at u64::MAX"),
    }
}

// Found by review, fixed: `init_from` silently skips a path the caller named explicitly when it is a symlink
// (e.g. `docs -> ../shared/docs`, common in monorepos): `walk` uses `symlink_metadata` for the
// roots too, so the symlink is neither a file nor a directory and nothing is scanned, no error.
// The counter stays at 0 and the next reservation re-issues SEC-20, which the docs already use —
// exactly the collision `init` exists to prevent.
// Expected: SEC raised to 20 (or an error naming the skipped path). Actual: empty report, Ok.
// Fix (scan.rs): follow symlinks for the top-level paths given (use `fs::metadata` for roots,
// keep `symlink_metadata` while recursing to avoid loops), or return an error for them.
#[cfg(unix)]
#[test]
fn adv_init_from_explicit_symlinked_dir_is_not_silently_ignored() {
    let (d, s) = store();
    let real = d.path().join("real-docs");
    fs::create_dir_all(&real).expect("dir");
    fs::write(real.join("tasks.md"), "- SEC-20 fix the thing\n").expect("doc");
    let link = d.path().join("docs");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let only = vec!["SEC".to_owned()];
    let report = s.init_from(&[link], Some(&only), false);
    match report {
        Err(_) => {} // refusing loudly would be acceptable
        Ok(report) => {
            assert_eq!(
                report.get("SEC").map(|f| f.new_counter),
                Some(20),
                "the named (symlinked) directory was silently skipped: {report:?}"
            );
            assert_eq!(s.peek("SEC").expect("peek").to_string(), "SEC-21");
        }
    }
}

// Regression: a reader (`peek`, no lock) running while writers append and compact (replace the
// log by rename every ~1024 records) never sees an error or a counter going backwards.
#[test]
fn adv_peek_during_compaction_is_monotonic_and_never_fails() {
    let (_d, s) = store();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let s = s.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = s.peek("SEC").expect("peek during compaction").number();
                assert!(n >= last, "peek went backwards: {last} -> {n}");
                last = n;
                let all = s.counters().expect("counters during compaction");
                assert!(all.get("SEC").copied().unwrap_or(0) + 1 >= n);
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..1300 {
                    s.reserve("SEC", 1).expect("reserve");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader");
    assert!(reads > 0);
    assert_eq!(s.peek("SEC").expect("peek").number(), 2601);
    let text = fs::read_to_string(s.dir().join("counters.log")).expect("log");
    assert!(text.lines().count() < 1100, "never compacted");
}

// Regression: CRLF line endings (git `core.autocrlf=true` checkouts) are reported as Corrupt,
// never read as an empty log (which would reset every counter).
#[test]
fn adv_crlf_log_is_corrupt_not_reset() {
    let (_d, s) = store();
    s.reserve("SEC", 7).expect("reserve");
    let log = s.dir().join("counters.log");
    let text = fs::read_to_string(&log).expect("log");
    fs::write(&log, text.replace('\n', "\r\n")).expect("crlf");
    let err = s.peek("SEC").expect_err("crlf log");
    assert!(matches!(err.kind(), ErrorKind::Corrupt { .. }), "{err}");
    let err = s.reserve("SEC", 1).expect_err("crlf log");
    assert!(matches!(err.kind(), ErrorKind::Corrupt { .. }), "{err}");
}

// Regression: a damaged record in the middle is Corrupt even if the torn-looking tail follows,
// and the writer leaves the file untouched (no truncation of acknowledged records).
#[test]
fn adv_damage_before_torn_tail_is_corrupt_and_untouched() {
    let (_d, s) = store();
    s.reserve("SEC", 3).expect("r");
    s.reserve("SEC", 3).expect("r");
    let log = s.dir().join("counters.log");
    let mut bytes = fs::read(&log).expect("log");
    bytes[0] = b'X'; // first record's prefix: checksum no longer matches
    bytes.extend_from_slice(b"SEC 9 00"); // plus a torn tail
    fs::write(&log, &bytes).expect("damage");
    let err = s.reserve("SEC", 1).expect_err("corrupt");
    assert!(matches!(err.kind(), ErrorKind::Corrupt { .. }), "{err}");
    assert_eq!(
        fs::read(&log).expect("log"),
        bytes,
        "a corrupt log was modified"
    );
}

// Regression: init_from never lowers a counter without force, ignores prefixes outside `only`,
// and tokens such as `GAP-OP-1-5` count for the prefix `GAP-OP-1` (the number follows the last
// dash), not for `GAP-OP`.
#[test]
fn adv_init_from_prefix_ambiguity_and_no_lowering() {
    let (d, s) = store();
    s.reserve("GAP-OP", 10).expect("r");
    let doc = d.path().join("doc.md");
    fs::write(
        &doc,
        "GAP-OP-3 GAP-OP-1-500 GAP-OP-0007 x-GAP-OP-900 GAP-OP-800x GAP-OP-9_\n",
    )
    .expect("doc");
    let report = s
        .init_from(std::slice::from_ref(&doc), None, false)
        .expect("init");
    assert_eq!(report["GAP-OP"].new_counter, 10, "{report:?}");
    assert_eq!(report["GAP-OP"].old_counter, 10);
    assert_eq!(report["GAP-OP-1"].new_counter, 500);
    assert_eq!(s.counters().expect("c")["GAP-OP"], 10);
    let only = vec!["GAP-OP".to_owned()];
    let report = s.init_from(&[doc], Some(&only), false).expect("init");
    assert_eq!(report.keys().collect::<Vec<_>>(), ["GAP-OP"]);
    let counters: BTreeMap<String, u64> = s.counters().expect("c");
    assert_eq!(counters["GAP-OP"], 10);
    assert!(s.validate("GAP-OP-10").is_ok());
    assert!(s.validate("GAP-OP-11").is_err());
    assert!(s.validate("GAP-OP-0").is_err());
}
