//! 50 processes reserving at once on one store: exactly the IDs 1..=N, no duplicate, no hole.

use std::collections::BTreeSet;

use idreserve::{Config, Store};

use crate::util::{child_param, printed_ids, spawn_child};

const PROCESSES: usize = 50;
const SINGLES: u64 = 100;
/// Every fifth process also reserves these batches.
const BATCHES: [u64; 3] = [10, 3, 7];

#[test]
fn fifty_processes_get_distinct_contiguous_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    Store::create(dir.path(), Config::default()).expect("create");
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            spawn_child(
                "multiprocess::child_reserver",
                &format!("{}|{i}", dir.path().display()),
            )
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a reserving process failed: {:?}",
            out.status
        );
        for id in printed_ids(&out.stdout) {
            let n: u64 = id
                .strip_prefix("SEC-")
                .expect("SEC id")
                .parse()
                .expect("number");
            assert!(seen.insert(n), "{id} was handed out twice");
            total += 1;
        }
    }
    let batch_ids: u64 = BATCHES.iter().sum::<u64>() * (PROCESSES as u64).div_ceil(5);
    assert_eq!(total, PROCESSES as u64 * SINGLES + batch_ids);
    assert_eq!(seen, (1..=total).collect(), "holes in the handed-out IDs");
    let store = Store::open(dir.path()).expect("open");
    assert_eq!(store.peek("SEC").expect("peek").number(), total + 1);
}

#[test]
#[ignore = "child process of fifty_processes_get_distinct_contiguous_ids"]
fn child_reserver() {
    let Some(param) = child_param() else { return };
    let (dir, index) = param.rsplit_once('|').expect("dir|index");
    let index: usize = index.parse().expect("index");
    let store = Store::open(dir).expect("open");
    let mut out = Vec::new();
    for i in 0..SINGLES {
        if index % 5 == 0 && i % 40 == 0 {
            let batch = BATCHES[(i / 40) as usize % BATCHES.len()];
            out.extend(
                store
                    .reserve("SEC", batch)
                    .expect("batch")
                    .ids()
                    .map(|id| id.to_string()),
            );
        }
        out.extend(
            store
                .reserve("SEC", 1)
                .expect("reserve")
                .ids()
                .map(|id| id.to_string()),
        );
    }
    let text: String = out.iter().map(|id| format!("\nID {id}\n")).collect();
    print!("{text}");
}
