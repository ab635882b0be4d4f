//! Reserving processes killed with SIGKILL at random moments, hundreds of times: every ID any
//! of them printed is unique, and the final counter is at least the highest ID printed.

use std::collections::BTreeSet;
use std::io::Write;

use idreserve::{Config, Store};

use crate::util::{CHILDREN, child_param};

const KILLS: usize = 200;

#[test]
fn sigkilled_reservers_never_duplicate_an_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    Store::create(dir.path(), Config::default()).expect("create");
    let mut seen = BTreeSet::new();
    for round in 0..KILLS {
        // Two reservers at once, so kills also land while one waits for the other's lock.
        let param = dir.path().display().to_string();
        for line in CHILDREN.kill_round("crash::child_forever", &param, 2, 2_000..25_000) {
            if let Some((_, id)) = line.split_once("ID ") {
                let n: u64 = id.strip_prefix("SEC-").expect("SEC id").parse().expect("n");
                assert!(seen.insert(n), "round {round}: SEC-{n} handed out twice");
            }
        }
    }
    let store = Store::open(dir.path()).expect("open after kills");
    let counter = store.counters().expect("readable after kills")["SEC"];
    let highest = *seen
        .last()
        .expect("the children printed no ID; the test proved nothing");
    assert!(
        counter >= highest,
        "counter {counter} below printed SEC-{highest}"
    );
    // The store still works and continues above everything handed out.
    let next = store
        .reserve("SEC", 1)
        .expect("reserve after kills")
        .first();
    assert!(next > highest);
}

#[test]
#[ignore = "child process of sigkilled_reservers_never_duplicate_an_id"]
fn child_forever() {
    let Some(dir) = child_param() else { return };
    let store = Store::open(dir).expect("open");
    let mut stdout = std::io::stdout().lock();
    for i in 0u64.. {
        let r = store.reserve("SEC", 1 + i % 3).expect("reserve");
        for id in r.ids() {
            // Printed only after `reserve` returned, i.e. after the counter was durable.
            writeln!(stdout, "\nID {id}").expect("print");
        }
        stdout.flush().expect("flush");
    }
}
