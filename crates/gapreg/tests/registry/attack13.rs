//! Attacks on issue 13 through the library: the engine over both stores (the file store behind
//! `Registry`, and `MemDocuments`/`MemCoordination`), the one dependency rule, claims.
//!
//! Each test states the promise it checks; a failing test is a bug found.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gapreg::store::{Coordination, ManualClock, MemCoordination, MemDocuments};
use gapreg::{Engine, ErrorClass, ErrorKind, GapSpec, Registry, Severity};

use crate::util::{loop_text, scratch, write_loop};

/// `{id, depends_on}` as a spec.
fn spec(title: &str, id: Option<&str>, deps: &[&str]) -> GapSpec {
    let mut s = GapSpec::new(title, Severity::Low);
    s.id = id.map(str::to_owned);
    s.depends_on = deps.iter().map(|d| (*d).to_owned()).collect();
    s
}

/// What filing must refuse, by either store: an explicit id that a loop already waits for
/// (`LOOP-A` depends on `GAP-OP-1`, reserved but not filed yet — loop files are written by
/// people, ahead of the gaps they name).
///
/// Filed on its own, `{id: GAP-OP-1, depends_on: [LOOP-A]}` is refused as the cycle
/// `GAP-OP-1 -> LOOP-A -> GAP-OP-1` (`check_deps` walks the existing graph from an explicit
/// id). Put one batch entry in between — `[{id: GAP-OP-1, depends_on: [@1]}, {depends_on:
/// [LOOP-A]}]` — and the same cycle `GAP-OP-1 -> GAP-OP-2 -> LOOP-A -> GAP-OP-1` is filed:
/// the walk skips `@N` edges, and the batch-internal cycle check only sees `@N` edges. The
/// same happens on both stores (the engine is written once); `doctor` then reports the
/// cycle the filing let in. (The same hole with a gap instead of a loop: Y depends on X, X's
/// file is removed, and the batch re-files X through a new entry that depends on Y.)
#[test]
fn attack13_a_batch_cannot_file_a_cycle_that_filing_one_gap_refuses() {
    let is_cycle = |e: &gapreg::Error| match e.kind() {
        ErrorKind::Cycle { .. } => true,
        ErrorKind::BatchInvalid { errors } => errors.iter().any(|(_, m)| m.contains("cycle")),
        _ => false,
    };
    let single = vec![spec("X", Some("GAP-OP-1"), &["LOOP-A"])];
    let batch = vec![
        spec("X", Some("GAP-OP-1"), &["@1"]),
        spec("between", None, &["LOOP-A"]),
    ];
    let mut failures = Vec::new();

    // The file store.
    let (_dir, reg) = scratch();
    reg.id_store()
        .expect("a file id store")
        .reserve("GAP-OP", 1)
        .expect("reserve GAP-OP-1");
    write_loop(&reg, "LOOP-A", "active", &["GAP-OP-1"]);
    let err = reg
        .file_batch(single.clone())
        .expect_err("single filing closes a cycle");
    assert!(is_cycle(&err), "control: {err}");
    match reg.file_batch(batch.clone()) {
        Err(e) if is_cycle(&e) => {}
        Err(e) => failures.push(format!("file store: refused, but not as a cycle: {e}")),
        Ok(gaps) => {
            let report = reg.doctor(false).expect("doctor");
            let cycles: Vec<String> = report
                .findings
                .iter()
                .map(|f| format!("{}: {}", f.subject, f.message))
                .filter(|m| m.contains("cycle"))
                .collect();
            failures.push(format!(
                "file store: filed {:?} ({:?}); doctor then says {cycles:?}",
                gaps.iter().map(|g| &g.id).collect::<Vec<_>>(),
                gaps.iter().map(|g| &g.depends_on).collect::<Vec<_>>()
            ));
        }
    }

    // The in-memory stores.
    let (docs, coord, clock) = (
        MemDocuments::new(),
        MemCoordination::new(),
        ManualClock::default(),
    );
    coord.reserve("GAP-OP", 1).expect("reserve GAP-OP-1");
    docs.put_loop(gapreg::parse_loop(&loop_text("LOOP-A", "active", &["GAP-OP-1"])).expect("loop"));
    let engine = Engine::new(&docs, &coord, &clock, "OP");
    let err = engine
        .file_batch(single, None)
        .expect_err("single filing closes a cycle (memory)");
    assert!(is_cycle(&err), "control (memory): {err}");
    match engine.file_batch(batch, None) {
        Err(e) if is_cycle(&e) => {}
        Err(e) => failures.push(format!("memory: refused, but not as a cycle: {e}")),
        Ok(gaps) => failures.push(format!(
            "memory: filed {:?} ({:?})",
            gaps.iter().map(|g| &g.id).collect::<Vec<_>>(),
            gaps.iter().map(|g| &g.depends_on).collect::<Vec<_>>()
        )),
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The engine's operations answer the same on both stores. A malformed gap id (not
/// `PREFIX-NUMBER`, or zero-padded) is `Invalid` (exit 3) over the files — `Files::read_gap`
/// checks the id — but `NotFound` (exit 4) over memory, which just looks it up.
#[test]
fn attack13_a_malformed_id_fails_alike_over_files_and_memory() {
    let (_dir, reg) = scratch();
    reg.file(GapSpec::new("one", Severity::Low)).expect("file");
    let (docs, coord, clock) = (
        MemDocuments::new(),
        MemCoordination::new(),
        ManualClock::default(),
    );
    let engine = Engine::new(&docs, &coord, &clock, "OP");
    engine
        .file(GapSpec::new("one", Severity::Low))
        .expect("file (memory)");
    let mut differ = Vec::new();
    for id in ["bogus", "GAP-OP-01", "GAP-OP-", "-1"] {
        let files: ErrorClass = reg.claim(id, "A", None).expect_err(id).class();
        let memory: ErrorClass = engine.claim(id, "A", None).expect_err(id).class();
        if files != memory {
            differ.push(format!("claim {id:?}: files {files}, memory {memory}"));
        }
        let files = reg
            .set_status(id, gapreg::Status::Blocked, None)
            .expect_err(id)
            .class();
        let memory = engine
            .set_status(id, gapreg::Status::Blocked, None)
            .expect_err(id)
            .class();
        if files != memory {
            differ.push(format!("set_status {id:?}: files {files}, memory {memory}"));
        }
    }
    assert!(differ.is_empty(), "{differ:#?}");
}

/// A claim with a TTL holds for at least that long. Timestamps are whole seconds and `now`
/// is rounded down, so a 2 s claim taken at hh:mm:ss.9 expires at ss+2, about 1.1 s later, and
/// another agent's claim 1.15 s after the first one is granted while the first agent's TTL has
/// most of a second left: two agents each believe they hold the gap.
#[test]
fn attack13_a_claim_holds_for_its_whole_ttl() {
    let (_dir, reg): (_, Registry) = scratch();
    reg.file(GapSpec::new("one", Severity::Low)).expect("file");
    // Wait for the last tenth of a second.
    loop {
        let sub = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .subsec_millis();
        if (900..950).contains(&sub) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let taken = std::time::Instant::now();
    let a = reg
        .claim("GAP-OP-1", "A", Some(Duration::from_secs(2)))
        .expect("A claims");
    std::thread::sleep(Duration::from_millis(1150).saturating_sub(taken.elapsed()));
    let b = reg.claim("GAP-OP-1", "B", None);
    let after = taken.elapsed();
    assert!(
        b.is_err(),
        "B's claim {after:?} after A's 2 s claim (expires_at {:?}) was granted: {:?}",
        a.claim_expires_at.map(|t| t.to_string()),
        b.map(|g| g.claimed_by)
    );
}
