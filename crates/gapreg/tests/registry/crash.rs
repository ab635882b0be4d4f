//! Filers killed with SIGKILL at random moments, ~100 rounds: afterwards `doctor --repair`
//! leaves a healthy registry, and every gap a filer reported as filed is present.

use std::collections::BTreeSet;
use std::io::Write;

use gapreg::{GapSpec, Registry, Severity};

use crate::util::{CHILDREN, all_ids, child_param, scratch, write_loop};

const ROUNDS: usize = 100;

#[test]
fn sigkilled_filers_leave_a_consistent_registry() {
    let (_dir, reg) = scratch();
    write_loop(&reg, "LOOP-K", "active", &[]);
    let dir = reg.dir().display().to_string();
    let mut filed = BTreeSet::new();
    for round in 0..ROUNDS {
        for line in CHILDREN.kill_round("crash::child_forever", &dir, 2, 3_000..40_000) {
            if let Some((_, id)) = line.split_once("FILED ") {
                assert!(
                    filed.insert(id.trim().to_owned()),
                    "round {round}: {id} filed twice"
                );
            }
        }
        if round % 25 == 24 {
            // Readers work between rounds without any repair: the index heals itself.
            let ids: BTreeSet<String> = all_ids(&reg).into_iter().collect();
            assert!(
                filed.is_subset(&ids),
                "round {round}: a filed gap is missing from the list"
            );
        }
    }
    assert!(
        !filed.is_empty(),
        "no child filed anything; the test proved nothing"
    );
    let report = reg.doctor(true).expect("doctor --repair");
    let mut repaired: std::collections::BTreeMap<String, usize> = Default::default();
    for f in &report.findings {
        *repaired.entry(format!("{:?}", f.kind)).or_default() += 1;
    }
    assert!(report.healthy(), "{:#?}", report.findings);
    let after = reg.doctor(false).expect("doctor");
    assert!(after.findings.is_empty(), "{:#?}", after.findings);
    let ids: BTreeSet<String> = all_ids(&reg).into_iter().collect();
    for id in &filed {
        assert!(ids.contains(id), "{id} was reported filed but is missing");
        reg.show(id).expect("every filed gap reads back");
    }
    // Batches are all or nothing even when their writer was killed in the middle.
    let mut batches: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for g in reg.list(&gapreg::Filter::default()).expect("list") {
        if let Some((batch, _)) = g
            .title
            .strip_prefix("batch ")
            .and_then(|t| t.split_once('.'))
        {
            batches.entry(batch.to_owned()).or_default().push(g.seq);
        }
    }
    assert!(!batches.is_empty(), "no batch was filed");
    for (batch, seqs) in &batches {
        assert_eq!(seqs.len(), 3, "batch {batch} is partial: {seqs:?}");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "batch {batch}: {seqs:?}"
        );
    }
    // Still works, and continues above everything handed out.
    let next = reg
        .file(GapSpec::new("after", Severity::Low))
        .expect("file after kills");
    assert!(!ids.contains(&next.id));
    eprintln!(
        "crash test: {} gaps reported filed, {} present, {} complete batches; doctor repaired \
         {repaired:?}",
        filed.len(),
        ids.len(),
        batches.len()
    );
}

#[test]
#[ignore = "child process of sigkilled_filers_leave_a_consistent_registry"]
fn child_forever() {
    let Some(dir) = child_param() else { return };
    let reg = Registry::open(dir).expect("open");
    let mut stdout = std::io::stdout().lock();
    for i in 0u64.. {
        let gaps = if i % 2 == 0 {
            let specs = (0..3)
                .map(|n| {
                    GapSpec::new(
                        format!("batch {}:{i}.{n}", std::process::id()),
                        Severity::High,
                    )
                    .parent_loop("LOOP-K")
                })
                .collect();
            reg.file_batch(specs).expect("batch")
        } else {
            vec![
                reg.file(GapSpec::new(format!("single {i}"), Severity::Low))
                    .expect("file"),
            ]
        };
        if i % 4 == 3 {
            reg.claim(&gaps[0].id, "CC-K", None).expect("claim");
        }
        for g in gaps {
            // Printed only after `file` returned.
            writeln!(stdout, "\nFILED {}", g.id).expect("print");
        }
        stdout.flush().expect("flush");
    }
}
