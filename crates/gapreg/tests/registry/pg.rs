//! The registry over `coordination: postgres`, on a real server (`testkit::pg`; skipped with a
//! reason when there is none, required under CI): the model test of `model.rs` run over it
//! (and checked against the same operations over the files), idempotency keys retried, two
//! clones of one repository on one namespace (ids never twice, each other's claims seen), and
//! two repositories on one database (their counters and claims apart).
//!
//! Each registry is given its server with [`Registry::set_coordination_url`] (the clone's own
//! `coordination.url`), so nothing here sets `GAPREG_COORDINATION_URL` in this multi-threaded
//! process; when the environment sets it, it wins, and every registry uses that server
//! instead (each has a namespace of its own, so the tests still hold). One database is created
//! for this test binary; every registry in it has a fresh random namespace.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use gapreg::{
    Backend, Config, ConflictDetail, ErrorKind, Filter, GapSpec, GapSummary, Registry, Severity,
    Status,
};
use proptest::prelude::*;

use crate::model::{LOOP_FILES, Op, drive, op};
use crate::util::{fast_config, scratch, write_loop};

/// This binary's database on the test server, made on first use; `None` (after a message on
/// stderr) when there is no server.
fn database(test: &str) -> Option<String> {
    static DB: OnceLock<Option<String>> = OnceLock::new();
    let db = DB
        .get_or_init(|| testkit::pg::server_or_skip(test).map(|u| testkit::pg::fresh_database(&u)))
        .clone();
    if db.is_none() {
        eprintln!("skipped: {test}: no PostgreSQL");
    }
    db
}

/// The fast test config with its coordination state on a server.
fn pg_config() -> Config {
    Config {
        coordination: Backend::Postgres,
        ..fast_config()
    }
}

/// A registry in a fresh temp dir with its coordination state on `db`, in a namespace of its
/// own (`Registry::init` makes one), and the model's loops.
fn pg_registry(db: &str) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Registry::init(dir.path(), pg_config()).expect("init");
    reg.set_coordination_url(db).expect("set url");
    assert_eq!(reg.backend(), Backend::Postgres);
    for (id, status, deps) in LOOP_FILES {
        write_loop(&reg, id, status, deps);
    }
    (dir, reg)
}

/// Another clone of `reg`'s repository on the same server: a fresh registry whose tracked
/// `config.yaml` is a copy of `reg`'s (so the same namespace), with the same loops, but none
/// of its gap files (a clone made before they were filed, never pulled).
fn clone_of(reg: &Registry, db: &str) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("tempdir");
    // A throwaway config of its own, replaced by the first clone's as `git clone` would.
    Registry::init(dir.path(), pg_config()).expect("init");
    let gapreg_dir = dir.path().join(gapreg::REGISTRY_DIR);
    std::fs::copy(
        reg.dir().join("config.yaml"),
        gapreg_dir.join("config.yaml"),
    )
    .expect("copy config.yaml");
    let clone = Registry::open(&gapreg_dir).expect("open the clone");
    assert_eq!(clone.config(), reg.config(), "the same tracked config");
    clone.set_coordination_url(db).expect("set url");
    for (id, status, deps) in LOOP_FILES {
        write_loop(&clone, id, status, deps);
    }
    (dir, clone)
}

/// Brings gap `id`'s file from `from` into `to`, as `git pull` would.
fn pull_gap(from: &Registry, to: &Registry, id: &str) {
    std::fs::copy(from.gap_path(id), to.gap_path(id)).expect("copy the gap file");
}

fn namespace(reg: &Registry) -> String {
    reg.config().namespace.clone().expect("a namespace")
}

fn claimed_by(err: &gapreg::Error) -> Option<&str> {
    match err.kind() {
        ErrorKind::Conflict {
            detail: ConflictDetail::ClaimedBy { agent, .. },
            ..
        } => Some(agent),
        _ => None,
    }
}

fn key(g: &GapSummary) -> (String, u64, u64, Status, Option<String>, Vec<String>) {
    (
        g.id.clone(),
        g.seq,
        g.rev,
        g.status,
        g.claimed_by.clone(),
        g.depends_on.clone(),
    )
}

/// The model's operations over a registry on the server, and then over one on files: each
/// matches the model step by step, and the two end holding the same gaps.
fn run(db: &str, ops: &[Op]) {
    let (_dir, reg) = pg_registry(db);
    drive(&reg, ops);
    let report = reg.doctor(false).expect("doctor");
    assert!(report.healthy(), "{:#?}", report.findings);

    let (_files_dir, files) = scratch();
    for (id, status, deps) in LOOP_FILES {
        write_loop(&files, id, status, deps);
    }
    drive(&files, ops);
    let on_server = reg.list(&Filter::default()).expect("list");
    let on_files = files.list(&Filter::default()).expect("list");
    assert_eq!(
        on_server.iter().map(key).collect::<Vec<_>>(),
        on_files.iter().map(key).collect::<Vec<_>>()
    );
    // The server's counters are the registry's: every id and position handed out, no more.
    let counters = reg.ids().expect("ids").counters().expect("counters");
    let filed = on_server.len() as u64;
    if filed > 0 {
        assert_eq!(counters.get("GAP-OP"), Some(&filed), "{counters:?}");
        assert_eq!(
            counters.get(gapreg::SEQ_PREFIX),
            Some(&filed),
            "{counters:?}"
        );
    }
}

/// One `#[test]`: its cases run one after another, each on a registry of its own.
#[test]
fn registry_on_postgres_matches_the_model() {
    let Some(db) = database("pg::registry_on_postgres_matches_the_model") else {
        return;
    };
    let config = ProptestConfig {
        cases: 24,
        max_shrink_iters: 50,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op(), 1..30))| {
        run(&db, &ops);
    });
}

#[test]
fn an_idempotency_key_files_once_over_postgres() {
    let Some(db) = database("pg::an_idempotency_key_files_once_over_postgres") else {
        return;
    };
    let (_dir, reg) = pg_registry(&db);
    let spec = GapSpec::new("Lock contention", Severity::High);
    let first = reg
        .file_idempotent(spec.clone(), "agent-7:task-31")
        .expect("file");
    let again = reg
        .file_idempotent(spec.clone(), "agent-7:task-31")
        .expect("retry");
    assert_eq!(
        (first.id.as_str(), again.id.as_str()),
        ("GAP-OP-1", "GAP-OP-1")
    );
    assert_eq!(first.seq, again.seq);
    // A retry from another process: a new handle on the same registry.
    let reopened = Registry::open(reg.dir()).expect("reopen");
    let third = reopened
        .file_idempotent(spec.clone(), "agent-7:task-31")
        .expect("retry after reopening");
    assert_eq!(third.id, "GAP-OP-1");
    assert_eq!(reg.list(&Filter::default()).expect("list").len(), 1);

    // The same key for another request is refused, naming what it filed.
    let err = reg
        .file_idempotent(GapSpec::new("Other", Severity::Low), "agent-7:task-31")
        .expect_err("key reused");
    assert!(
        matches!(err.kind(), ErrorKind::Conflict { detail: ConflictDetail::KeyReused { ids }, .. } if ids == &["GAP-OP-1"]),
        "{err}"
    );

    // A batch under a key: the same gaps on retry, nothing more reserved.
    let batch = vec![
        GapSpec::new("first", Severity::High),
        GapSpec::new("second", Severity::Low).depends_on("@0"),
    ];
    let filed = reg
        .file_batch_idempotent(batch.clone(), "batch-1")
        .expect("batch");
    let refiled = reg
        .file_batch_idempotent(batch, "batch-1")
        .expect("batch retried");
    let ids = |gaps: &[gapreg::Gap]| gaps.iter().map(|g| g.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&filed), ["GAP-OP-2", "GAP-OP-3"]);
    assert_eq!(ids(&refiled), ids(&filed));
    assert_eq!(reg.list(&Filter::default()).expect("list").len(), 3);
    assert_eq!(reg.next_id("OP").expect("peek").to_string(), "GAP-OP-4");

    // A retry after a crash between the key's record and the document (here: the document
    // removed) files it again under the same id, reserving none.
    let lost = reg
        .file_idempotent(
            GapSpec::new("lost answer", Severity::Medium),
            "agent-7:task-32",
        )
        .expect("file");
    assert_eq!(lost.id, "GAP-OP-4");
    std::fs::remove_file(reg.gap_path(&lost.id)).expect("remove the document");
    let refiled = Registry::open(reg.dir())
        .expect("reopen")
        .file_idempotent(
            GapSpec::new("lost answer", Severity::Medium),
            "agent-7:task-32",
        )
        .expect("retry after the crash");
    assert_eq!((refiled.id.as_str(), refiled.seq), ("GAP-OP-4", lost.seq));
    assert_eq!(reg.next_id("OP").expect("peek").to_string(), "GAP-OP-5");

    // Another clone retrying the same request (its agent lost the answer and moved) gets the
    // same id: the key lives on the server, with the namespace.
    let (_clone_dir, clone) = clone_of(&reg, &db);
    let elsewhere = clone
        .file_idempotent(spec, "agent-7:task-31")
        .expect("retry in another clone");
    assert_eq!(
        (elsewhere.id.as_str(), elsewhere.seq),
        ("GAP-OP-1", first.seq)
    );
    assert_eq!(clone.next_id("OP").expect("peek").to_string(), "GAP-OP-5");
}

#[test]
fn two_clones_on_one_namespace_never_hand_out_an_id_twice() {
    let Some(db) = database("pg::two_clones_on_one_namespace_never_hand_out_an_id_twice") else {
        return;
    };
    let (_a_dir, a) = pg_registry(&db);
    let (_b_dir, b) = clone_of(&a, &db);
    assert_eq!(namespace(&a), namespace(&b));

    // Two threads in each clone, filing one gap, a batch of three, or reserving an id
    // directly, at once.
    let filed: Vec<(String, Option<u64>)> = std::thread::scope(|s| {
        let workers: Vec<_> = [&a, &a, &b, &b]
            .into_iter()
            .enumerate()
            .map(|(w, reg)| {
                s.spawn(move || {
                    let mut got = Vec::new();
                    for round in 0..12 {
                        match (w + round) % 3 {
                            0 => {
                                let g = reg
                                    .file(GapSpec::new(format!("w{w} r{round}"), Severity::Low))
                                    .expect("file");
                                got.push((g.id, Some(g.seq)));
                            }
                            1 => {
                                let gaps = reg
                                    .file_batch(
                                        (0..3)
                                            .map(|k| {
                                                GapSpec::new(
                                                    format!("w{w} r{round} #{k}"),
                                                    Severity::Medium,
                                                )
                                            })
                                            .collect(),
                                    )
                                    .expect("batch");
                                let first = gaps[0].seq;
                                for (k, g) in gaps.into_iter().enumerate() {
                                    // A batch's positions are contiguous.
                                    assert_eq!(g.seq, first + k as u64);
                                    got.push((g.id, Some(g.seq)));
                                }
                            }
                            _ => {
                                let r = reg
                                    .ids()
                                    .expect("ids")
                                    .reserve("GAP-OP", 1)
                                    .expect("reserve");
                                got.push((format!("GAP-OP-{}", r.first()), None));
                            }
                        }
                    }
                    got
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let ids: BTreeSet<&str> = filed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), filed.len(), "an id handed out twice: {filed:?}");
    let seqs: Vec<u64> = filed.iter().filter_map(|(_, s)| *s).collect();
    assert_eq!(
        seqs.iter().collect::<BTreeSet<_>>().len(),
        seqs.len(),
        "a registry position handed out twice: {filed:?}"
    );
    // Every number handed out, none skipped: the two clones drew from one counter.
    let highest = ids.iter().map(|id| crate::util::number(id)).max();
    assert_eq!(highest, Some(filed.len() as u64));
    assert_eq!(
        a.ids().expect("ids").counters().expect("counters"),
        b.ids().expect("ids").counters().expect("counters")
    );
    // Each clone holds only its own documents, and together every gap filed.
    let in_a = crate::util::all_ids(&a);
    let in_b = crate::util::all_ids(&b);
    assert!(in_a.iter().all(|id| !in_b.contains(id)));
    assert_eq!(in_a.len() + in_b.len(), seqs.len());
    for reg in [&a, &b] {
        let report = reg.doctor(false).expect("doctor");
        assert!(report.healthy(), "{:#?}", report.findings);
    }
}

#[test]
fn two_clones_on_one_namespace_see_each_others_claims() {
    let Some(db) = database("pg::two_clones_on_one_namespace_see_each_others_claims") else {
        return;
    };
    let (_a_dir, a) = pg_registry(&db);
    let (_b_dir, b) = clone_of(&a, &db);
    let gap = a
        .file(GapSpec::new("shared work", Severity::High))
        .expect("file");
    let other = a
        .file(GapSpec::new("other work", Severity::Low))
        .expect("file");
    pull_gap(&a, &b, &gap.id);
    pull_gap(&a, &b, &other.id);
    assert_eq!(crate::util::all_ids(&b), [gap.id.clone(), other.id.clone()]);

    let held = a.claim(&gap.id, "CC-1", None).expect("claim in A");
    assert_eq!(held.claimed_by.as_deref(), Some("CC-1"));
    // B's document still says open, but the claim is on the server.
    let err = b
        .claim(&gap.id, "CC-2", None)
        .expect_err("claimed in the other clone");
    assert_eq!(claimed_by(&err), Some("CC-1"), "{err}");
    let listed = b.list(&Filter::default()).expect("list");
    assert_eq!(listed[0].claimed_by.as_deref(), Some("CC-1"), "{listed:?}");
    assert!(
        b.ready().expect("ready").iter().all(|g| g.id != gap.id),
        "a gap claimed in A is ready in B"
    );
    // The claim next in B passes over it.
    let next = b.claim_next("CC-2", None, None).expect("claim next");
    assert_eq!(next.map(|g| g.id), Some(other.id.clone()));
    let err = a
        .claim(&other.id, "CC-1", None)
        .expect_err("claimed in the other clone");
    assert_eq!(claimed_by(&err), Some("CC-2"), "{err}");

    // Released in A: free in B.
    a.unclaim(&gap.id, "CC-1").expect("unclaim in A");
    let taken = b.claim(&gap.id, "CC-2", None).expect("claim in B");
    assert_eq!(taken.claimed_by.as_deref(), Some("CC-2"));
    let err = a.claim(&gap.id, "CC-1", None).expect_err("claimed in B");
    assert_eq!(claimed_by(&err), Some("CC-2"), "{err}");

    // A claim race from both clones at once: exactly one agent wins each gap.
    let contested: Vec<String> = (0..6)
        .map(|k| {
            let g = a
                .file(GapSpec::new(format!("race {k}"), Severity::Medium))
                .expect("file");
            pull_gap(&a, &b, &g.id);
            g.id
        })
        .collect();
    let winners: Vec<Vec<(String, String)>> = std::thread::scope(|s| {
        let racers: Vec<_> = [(&a, "CC-1"), (&b, "CC-2"), (&a, "CC-3"), (&b, "CC-4")]
            .into_iter()
            .map(|(reg, agent)| {
                let contested = &contested;
                s.spawn(move || {
                    contested
                        .iter()
                        .filter_map(|id| match reg.claim(id, agent, None) {
                            Ok(_) => Some((id.clone(), agent.to_owned())),
                            Err(e) => {
                                assert!(claimed_by(&e).is_some(), "{id}: {e}");
                                None
                            }
                        })
                        .collect()
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("racer"))
            .collect()
    });
    let mut won: Vec<(String, String)> = winners.into_iter().flatten().collect();
    won.sort();
    assert_eq!(
        won.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        contested.iter().collect::<Vec<_>>(),
        "each contested gap has one winner: {won:?}"
    );
    // Both clones see the winners.
    for reg in [&a, &b] {
        let listed = reg.list(&Filter::default()).expect("list");
        for (id, agent) in &won {
            let g = listed.iter().find(|g| &g.id == id).expect("listed");
            assert_eq!(g.claimed_by.as_deref(), Some(agent.as_str()), "{id}");
        }
    }
}

#[test]
fn two_namespaces_on_one_database_stay_apart() {
    let Some(db) = database("pg::two_namespaces_on_one_database_stay_apart") else {
        return;
    };
    let (_a_dir, a) = pg_registry(&db);
    let (_c_dir, c) = pg_registry(&db);
    assert_ne!(namespace(&a), namespace(&c));
    let in_a: Vec<String> = (0..3)
        .map(|k| {
            a.file(GapSpec::new(format!("a{k}"), Severity::Low))
                .expect("file")
                .id
        })
        .collect();
    assert_eq!(in_a, ["GAP-OP-1", "GAP-OP-2", "GAP-OP-3"]);
    a.ids()
        .expect("ids")
        .reserve("SEC", 5)
        .expect("reserve SEC");
    // The other repository's counters start afresh.
    assert_eq!(c.next_id("OP").expect("peek").to_string(), "GAP-OP-1");
    let first_c = c.file(GapSpec::new("c0", Severity::Low)).expect("file");
    assert_eq!((first_c.id.as_str(), first_c.seq), ("GAP-OP-1", 1));
    let counters_a = a.ids().expect("ids").counters().expect("counters");
    let counters_c = c.ids().expect("ids").counters().expect("counters");
    assert_eq!(counters_a.get("GAP-OP"), Some(&3));
    assert_eq!(counters_a.get("SEC"), Some(&5));
    assert_eq!(counters_c.get("GAP-OP"), Some(&1));
    assert_eq!(counters_c.get("SEC"), None, "{counters_c:?}");
    assert_eq!(
        c.ids()
            .expect("ids")
            .reserve("SEC", 1)
            .expect("reserve")
            .first(),
        1
    );
    // GAP-OP-1 is a different gap in each; a claim in one is no claim in the other.
    a.claim("GAP-OP-1", "CC-1", None).expect("claim in A");
    let in_c = c.claim("GAP-OP-1", "CC-2", None).expect("claim in C");
    assert_eq!(in_c.claimed_by.as_deref(), Some("CC-2"));
    let listed_a = a.list(&Filter::default()).expect("list");
    assert_eq!(listed_a[0].claimed_by.as_deref(), Some("CC-1"));
    // An idempotency key is per namespace too.
    let spec = GapSpec::new("keyed", Severity::High);
    let ka = a.file_idempotent(spec.clone(), "same-key").expect("file");
    let kc = c.file_idempotent(spec, "same-key").expect("file");
    assert_eq!((ka.id.as_str(), kc.id.as_str()), ("GAP-OP-4", "GAP-OP-2"));
}

/// The config copied in [`clone_of`] is what `init` wrote: a namespace and `postgres`.
#[test]
fn a_postgres_registry_writes_its_namespace_to_the_tracked_config() {
    let Some(db) = database("pg::a_postgres_registry_writes_its_namespace") else {
        return;
    };
    let (_dir, reg) = pg_registry(&db);
    let text = std::fs::read_to_string(reg.dir().join("config.yaml")).expect("config");
    assert!(text.contains("coordination: postgres"), "{text}");
    assert!(
        text.contains(&format!("namespace: {}", namespace(&reg))),
        "{text}"
    );
    assert!(
        !text.contains("postgres://"),
        "the address is never tracked: {text}"
    );
    assert!(
        !Path::new(&reg.dir().join("ids")).exists(),
        "no local counters"
    );
}
