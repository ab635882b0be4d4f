//! 20 processes each filing a batch of 10 gaps under one loop, plus 20 filing single gaps, all
//! at once: every gap present exactly once, ids distinct, each batch's ids consecutive and its
//! entries contiguous in registry order.

use std::collections::{BTreeMap, BTreeSet};

use gapreg::{Config, GapSpec, Registry, Severity};

use crate::util::{child_param, number, printed, spawn_child, write_loop};

const BATCHERS: usize = 20;
const SINGLES: usize = 20;
const BATCH: usize = 10;

#[test]
fn forty_processes_file_at_once() {
    let repo = tempfile::tempdir().expect("tempdir");
    let reg = Registry::init(repo.path(), Config::default()).expect("init");
    write_loop(&reg, "LOOP-MULTI", "active", &[]);
    let dir = reg.dir().display().to_string();
    let children: Vec<_> = (0..BATCHERS + SINGLES)
        .map(|i| {
            let role = if i % 2 == 0 { "batch" } else { "single" };
            spawn_child("multiprocess::child_filer", &format!("{dir}|{role}|{i}"))
        })
        .collect();
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut singles: Vec<String> = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a filing process failed: {:?}",
            out.status
        );
        let batch = printed(&out.stdout, "BATCH");
        if !batch.is_empty() {
            batches.push(batch);
        }
        singles.extend(printed(&out.stdout, "SINGLE"));
    }
    assert_eq!(batches.len(), BATCHERS);
    assert_eq!(singles.len(), SINGLES);

    let listed = reg.list(&gapreg::Filter::default()).expect("list");
    let ids: Vec<&str> = listed.iter().map(|g| g.id.as_str()).collect();
    let distinct: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), BATCHERS * BATCH + SINGLES, "gap count");
    assert_eq!(distinct.len(), ids.len(), "an id appears twice");
    let seqs: BTreeSet<u64> = listed.iter().map(|g| g.seq).collect();
    assert_eq!(
        seqs.len(),
        listed.len(),
        "a registry position appears twice"
    );
    let position: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let by_id: BTreeMap<&str, &gapreg::GapSummary> =
        listed.iter().map(|g| (g.id.as_str(), g)).collect();

    let mut reported = BTreeSet::new();
    for batch in &batches {
        assert_eq!(batch.len(), BATCH);
        for w in batch.windows(2) {
            assert_eq!(
                number(&w[1]),
                number(&w[0]) + 1,
                "batch ids not consecutive: {batch:?}"
            );
            assert_eq!(
                position[w[1].as_str()],
                position[w[0].as_str()] + 1,
                "batch interleaved: {batch:?}"
            );
            assert_eq!(by_id[w[1].as_str()].seq, by_id[w[0].as_str()].seq + 1);
        }
        for id in batch {
            assert_eq!(
                by_id[id.as_str()].parent_loop.as_deref(),
                Some("LOOP-MULTI")
            );
            assert!(reported.insert(id.clone()), "{id} reported twice");
        }
    }
    for id in &singles {
        assert!(reported.insert(id.clone()), "{id} reported twice");
    }
    assert_eq!(reported, distinct.iter().map(|s| s.to_string()).collect());
    assert!(reg.doctor(false).expect("doctor").healthy());
}

#[test]
#[ignore = "child process of forty_processes_file_at_once"]
fn child_filer() {
    let Some(param) = child_param() else { return };
    let mut parts = param.split('|');
    let (dir, role, i) = (
        parts.next().expect("dir"),
        parts.next().expect("role"),
        parts.next().expect("index"),
    );
    let reg = Registry::open(dir).expect("open");
    if role == "batch" {
        let specs = (0..BATCH)
            .map(|n| {
                GapSpec::new(format!("batch {i} entry {n}"), Severity::Medium)
                    .parent_loop("LOOP-MULTI")
                    .tag(format!("batch-{i}"))
            })
            .collect();
        let gaps = reg.file_batch(specs).expect("file batch");
        let text: String = gaps.iter().map(|g| format!("\nBATCH {}\n", g.id)).collect();
        print!("{text}");
    } else {
        let gap = reg
            .file(GapSpec::new(format!("single {i}"), Severity::Low))
            .expect("file");
        print!("\nSINGLE {}\n", gap.id);
    }
}
