//! The API, its checks and its error messages.

use std::time::Duration;

use gapreg::{
    Blocker, Config, ConflictDetail, ErrorKind, Filter, FindingKind, GapSpec, LoopSpec, Registry,
    Severity, Status,
};

use crate::util::{all_ids, fast_config, scratch, write_loop};

fn spec(title: &str) -> GapSpec {
    GapSpec::new(title, Severity::Medium)
}

#[test]
fn init_open_discover() {
    let (dir, reg) = scratch();
    let err = Registry::init(dir.path(), Config::default()).expect_err("second init");
    assert!(
        matches!(err.kind(), ErrorKind::AlreadyExists { .. }),
        "{err}"
    );
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).expect("mkdir");
    let found = Registry::discover(&nested).expect("discover");
    assert_eq!(
        found.dir().canonicalize().expect("canon"),
        reg.dir().canonicalize().expect("canon")
    );
    let other = tempfile::tempdir().expect("tempdir");
    let err = Registry::discover(other.path()).expect_err("none");
    assert!(
        err.is_not_found() && err.to_string().contains("gapreg init"),
        "{err}"
    );
    let gitignore = std::fs::read_to_string(reg.dir().join(".gitignore")).expect("gitignore");
    for line in [
        "index.log",
        "registry.lock",
        "registry.lock.queue/",
        "ids/",
        "leases/",
        "claims/",
        ".leases.init-*/",
        ".*.atomic-tmp",
        "staging/",
        "batch.pending",
        "keys/",
    ] {
        assert!(
            gitignore.lines().any(|l| l == line),
            "{line} missing:\n{gitignore}"
        );
    }
}

/// In a real git repository, after every kind of write (a gap, a batch, a keyed filing, a
/// claim, a lease), git sees exactly the documents: the coordination state lives under the
/// common git directory, and every other file gapreg and the crates below it wrote is
/// ignored.
#[test]
fn git_sees_only_the_documents() {
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no git");
        return;
    }
    let repo = tempfile::tempdir().expect("tempdir");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(repo.path())
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    git(&["init", "-q"]);
    let reg = Registry::init(repo.path(), Config::default()).expect("init");
    reg.file(GapSpec::new("one", Severity::High)).expect("file");
    reg.file_batch(vec![
        GapSpec::new("two", Severity::Low),
        GapSpec::new("three", Severity::Low),
    ])
    .expect("batch");
    reg.file_idempotent(GapSpec::new("four", Severity::Low), "k-1")
        .expect("keyed");
    reg.claim("GAP-OP-1", "CC-1", None).expect("claim");
    let leases = reg
        .leases(gapreg::leaselock::lease::LeaseOptions::default())
        .expect("leases");
    leases
        .acquire(
            &gapreg::leaselock::lease::LeaseRequest::exclusive("CC-1")
                .file("src/main.rs")
                .bind(gapreg::leaselock::lease::Binding::TtlOnly),
        )
        .expect("lease");
    let seen: Vec<String> = git(&["status", "--porcelain", "--untracked-files=all"])
        .lines()
        .map(|l| l[3..].to_owned())
        .collect();
    let expected = [
        ".gapreg/.gitignore",
        ".gapreg/config.yaml",
        ".gapreg/gaps/GAP-OP-1.yaml",
        ".gapreg/gaps/GAP-OP-2.yaml",
        ".gapreg/gaps/GAP-OP-3.yaml",
        ".gapreg/gaps/GAP-OP-4.yaml",
    ];
    assert_eq!(
        seen, expected,
        "git sees files it should not, or misses documents"
    );
}

#[test]
fn filing_assigns_ids_seqs_and_checks_fields() {
    let (_dir, reg) = scratch();
    assert_eq!(reg.next_id("OP").expect("peek").to_string(), "GAP-OP-1");
    let a = reg.file(spec("a")).expect("file");
    let b = reg.file(spec("b").prefix("SEC")).expect("file");
    let c = reg.file(spec("c").prefix("GAP-OP")).expect("file");
    assert_eq!((a.id.as_str(), a.seq, a.rev), ("GAP-OP-1", 1, 1));
    assert_eq!((b.id.as_str(), b.seq), ("GAP-SEC-1", 2));
    assert_eq!((c.id.as_str(), c.seq), ("GAP-OP-2", 3));
    assert_eq!(reg.next_id("GAP-OP").expect("peek").to_string(), "GAP-OP-3");
    assert_eq!(reg.show("GAP-OP-2").expect("show"), c);
    assert_eq!(all_ids(&reg), ["GAP-OP-1", "GAP-SEC-1", "GAP-OP-2"]);

    let err = reg.file(spec("  ")).expect_err("empty title");
    assert!(matches!(err.kind(), ErrorKind::Invalid { .. }), "{err}");
    let mut s = spec("x");
    s.status = Some(Status::InProgress);
    let err = reg.file(s).expect_err("in-progress");
    assert!(err.to_string().contains("claim"), "{err}");
    let err = reg.show("GAP-OP-99").expect_err("missing");
    assert!(err.is_not_found(), "{err}");
    let err = reg.show("../etc/passwd").expect_err("not an id");
    assert!(matches!(err.kind(), ErrorKind::Invalid { .. }), "{err}");
    let err = reg
        .file(spec("x").depends_on("GAP-OP-77"))
        .expect_err("dangling dep");
    assert!(err.is_not_found(), "{err}");
    assert_eq!(all_ids(&reg).len(), 3, "nothing filed by failed calls");
    assert_eq!(reg.next_id("OP").expect("peek").to_string(), "GAP-OP-3");
}

#[test]
fn explicit_ids_must_be_reserved_and_unused() {
    let (_dir, reg) = scratch();
    let mut s = spec("explicit");
    s.id = Some("GAP-OP-5".into());
    let err = reg.file(s.clone()).expect_err("not reserved");
    assert!(err.to_string().contains("never reserved"), "{err}");
    reg.id_store()
        .expect("a file id store")
        .reserve("GAP-OP", 5)
        .expect("reserve");
    let g = reg.file(s.clone()).expect("reserved id");
    assert_eq!(g.id, "GAP-OP-5");
    let err = reg.file(s).expect_err("used");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Conflict {
                detail: ConflictDetail::Exists,
                ..
            }
        ),
        "{err}"
    );
    let mut s = spec("seq");
    s.id = Some("SEQ-1".into());
    assert!(reg.file(s).is_err());
    // The next automatic id continues after the reservation.
    assert_eq!(reg.file(spec("auto")).expect("auto").id, "GAP-OP-6");
}

#[test]
fn parent_loop_must_exist_and_errors_list_close_matches() {
    let (_dir, reg) = scratch();
    write_loop(&reg, "LOOP-GAPS-FILE-BATCH-20260228", "active", &[]);
    write_loop(&reg, "LOOP-NETWORK-20260228", "active", &[]);
    let err = reg
        .file(spec("x").parent_loop("LOOP-GAPS-FILE-BATCH-20260227"))
        .expect_err("typo");
    match err.kind() {
        ErrorKind::NotFound { suggestions, .. } => {
            assert_eq!(suggestions, &["LOOP-GAPS-FILE-BATCH-20260228"])
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .contains("did you mean LOOP-GAPS-FILE-BATCH-20260228"),
        "{err}"
    );
    let g = reg
        .file(spec("x").parent_loop("LOOP-GAPS-FILE-BATCH-20260228"))
        .expect("file");
    assert_eq!(
        g.parent_loop.as_deref(),
        Some("LOOP-GAPS-FILE-BATCH-20260228")
    );
    let listed = reg
        .list(&Filter {
            parent_loop: Some("LOOP-GAPS-FILE-BATCH-20260228".into()),
            ..Filter::default()
        })
        .expect("list");
    assert_eq!(listed.len(), 1);
}

#[test]
fn batch_is_all_or_nothing_and_reports_every_invalid_entry() {
    let (_dir, reg) = scratch();
    reg.file(spec("before")).expect("file");
    let err = reg
        .file_batch(vec![
            spec("ok"),
            spec(""),
            spec("ok").parent_loop("NOPE"),
            spec("ok").depends_on("@7"),
            spec("ok"),
        ])
        .expect_err("invalid batch");
    match err.kind() {
        ErrorKind::BatchInvalid { errors } => {
            let idx: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
            assert_eq!(idx, [1, 2, 3]);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("nothing was filed"), "{err}");
    assert_eq!(all_ids(&reg), ["GAP-OP-1"]);
    assert_eq!(reg.next_id("OP").expect("peek").to_string(), "GAP-OP-2");

    // A cycle inside a batch through @N references.
    let err = reg
        .file_batch(vec![spec("a").depends_on("@1"), spec("b").depends_on("@0")])
        .expect_err("cycle");
    assert!(err.to_string().contains("cycle"), "{err}");

    let gaps = reg
        .file_batch(vec![
            spec("a").prefix("X"),
            spec("b"),
            spec("c").prefix("X").depends_on("@1"),
        ])
        .expect("batch");
    let ids: Vec<_> = gaps.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["GAP-X-1", "GAP-OP-2", "GAP-X-2"]);
    let seqs: Vec<_> = gaps.iter().map(|g| g.seq).collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert_eq!(gaps[2].depends_on, ["GAP-OP-2"]);
}

#[test]
fn claims_are_compare_and_swap() {
    let (_dir, reg) = scratch();
    let mut s = spec("x");
    s.status = Some(Status::Ready);
    reg.file(s).expect("file");
    let g = reg.claim("GAP-OP-1", "CC-1", None).expect("claim");
    assert_eq!(
        (g.status, g.claimed_by.as_deref(), g.rev),
        (Status::InProgress, Some("CC-1"), 2)
    );
    let again = reg.claim("GAP-OP-1", "CC-1", None).expect("same agent");
    assert_eq!(again.rev, 2, "re-claiming changes nothing");
    let err = reg.claim("GAP-OP-1", "CC-2", None).expect_err("taken");
    match err.kind() {
        ErrorKind::Conflict {
            detail: ConflictDetail::ClaimedBy { agent, .. },
            ..
        } => {
            assert_eq!(agent, "CC-1")
        }
        other => panic!("{other}"),
    }
    let err = reg
        .unclaim("GAP-OP-1", "CC-2")
        .expect_err("not the claimed_by");
    assert!(err.to_string().contains("CC-1"), "{err}");
    let g = reg.unclaim("GAP-OP-1", "CC-1").expect("unclaim");
    assert_eq!((g.status, g.claimed_by), (Status::Ready, None));
    assert!(reg.claim("GAP-OP-1", "has space", None).is_err());

    // A claim that would lapse as it is granted is refused.
    let err = reg
        .claim("GAP-OP-1", "CC-1", Some(Duration::ZERO))
        .expect_err("zero ttl");
    assert!(matches!(err.kind(), ErrorKind::Invalid { .. }), "{err}");
    // A claim holds for its whole TTL; once it has lapsed it may be taken over, and the
    // status from before the first claim survives.
    reg.claim("GAP-OP-1", "CC-1", Some(Duration::from_secs(1)))
        .expect("claim with ttl");
    reg.claim("GAP-OP-1", "CC-2", None).expect_err("still held");
    std::thread::sleep(Duration::from_millis(2100));
    let g = reg.claim("GAP-OP-1", "CC-2", None).expect("take over");
    assert_eq!(g.claimed_by.as_deref(), Some("CC-2"));
    let g = reg.unclaim("GAP-OP-1", "CC-2").expect("unclaim");
    assert_eq!(g.status, Status::Ready);

    reg.set_status("GAP-OP-1", Status::Complete, None)
        .expect("complete");
    // A closed gap cannot be claimed; a conflict, as when another agent finished it first.
    let err = reg.claim("GAP-OP-1", "CC-1", None).expect_err("complete");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Conflict {
                detail: gapreg::ConflictDetail::Closed { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn revisions_and_transitions() {
    let (_dir, reg) = scratch();
    write_loop(&reg, "LOOP-DONE", "closed", &[]);
    write_loop(&reg, "LOOP-OPEN", "active", &[]);
    reg.file(spec("dep")).expect("file");
    reg.file(spec("x").depends_on("GAP-OP-1").depends_on("LOOP-DONE"))
        .expect("file");
    let err = reg
        .set_status("GAP-OP-2", Status::Complete, Some(1))
        .expect_err("dep open");
    assert!(err.to_string().contains("GAP-OP-1 (open)"), "{err}");
    let err = reg
        .set_status("GAP-OP-2", Status::Ready, Some(7))
        .expect_err("revision");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Conflict {
                detail: ConflictDetail::Revision {
                    expected: 7,
                    actual: 1
                },
                ..
            }
        ),
        "{err}"
    );
    reg.set_status("GAP-OP-1", Status::Complete, Some(1))
        .expect("complete dep");
    let g = reg
        .set_status("GAP-OP-2", Status::Complete, Some(1))
        .expect("complete");
    assert_eq!(g.rev, 2);
    assert!(g.completed_at.is_some());
    // A complete gap may not gain an unfinished dependency; reopened, it may.
    let err = reg
        .add_dependency("GAP-OP-2", "LOOP-OPEN")
        .expect_err("complete gap, open loop");
    assert!(err.to_string().contains("reopen it first"), "{err}");
    reg.set_status("GAP-OP-2", Status::Open, None)
        .expect("reopen");
    reg.add_dependency("GAP-OP-2", "LOOP-OPEN")
        .expect("loop dep");
    let err = reg
        .set_status("GAP-OP-2", Status::Complete, None)
        .expect_err("loop open");
    assert!(err.to_string().contains("loop LOOP-OPEN (active)"), "{err}");
}

#[test]
fn cycles_are_refused_and_spelled_out() {
    let (_dir, reg) = scratch();
    reg.file(spec("1")).expect("file");
    reg.file(spec("2").depends_on("GAP-OP-1")).expect("file");
    reg.file(spec("3").depends_on("GAP-OP-2")).expect("file");
    reg.remove_dependency("GAP-OP-3", "GAP-OP-2").expect("rm");
    reg.add_dependency("GAP-OP-1", "GAP-OP-3").expect("1 -> 3");
    let err = reg
        .add_dependency("GAP-OP-3", "GAP-OP-1")
        .expect_err("cycle");
    match err.kind() {
        ErrorKind::Cycle { path } => {
            assert_eq!(path.join(" -> "), "GAP-OP-3 -> GAP-OP-1 -> GAP-OP-3")
        }
        other => panic!("{other}"),
    }
    let err = reg
        .add_dependency("GAP-OP-3", "GAP-OP-2")
        .expect_err("longer cycle");
    assert!(
        err.to_string()
            .contains("GAP-OP-3 -> GAP-OP-2 -> GAP-OP-1 -> GAP-OP-3"),
        "{err}"
    );
    let err = reg
        .add_dependency("GAP-OP-2", "GAP-OP-2")
        .expect_err("self");
    assert!(err.to_string().contains("GAP-OP-2 -> GAP-OP-2"), "{err}");
    let err = reg
        .remove_dependency("GAP-OP-3", "GAP-OP-2")
        .expect_err("not a dep");
    assert!(matches!(err.kind(), ErrorKind::Invalid { .. }), "{err}");
}

#[test]
fn ready_and_blockers() {
    let (_dir, reg) = scratch();
    write_loop(&reg, "LOOP-A", "active", &[]);
    write_loop(&reg, "LOOP-B", "active", &["LOOP-A"]);
    reg.file(GapSpec::new("low", Severity::Low)).expect("1");
    reg.file(GapSpec::new("crit", Severity::Critical))
        .expect("2");
    reg.file(GapSpec::new("waits", Severity::Critical).depends_on("GAP-OP-1"))
        .expect("3");
    reg.file(GapSpec::new("in B", Severity::High).parent_loop("LOOP-B"))
        .expect("4");
    reg.file(GapSpec::new("high", Severity::High)).expect("5");
    let ids = |v: Vec<gapreg::GapSummary>| v.into_iter().map(|g| g.id).collect::<Vec<_>>();
    assert_eq!(
        ids(reg.ready().expect("ready")),
        ["GAP-OP-2", "GAP-OP-5", "GAP-OP-1"]
    );
    assert_eq!(
        reg.blockers("GAP-OP-3").expect("blockers"),
        [Blocker::Gap {
            id: "GAP-OP-1".into(),
            status: Status::Open
        }]
    );
    let b = reg.blockers("GAP-OP-4").expect("blockers");
    assert_eq!(b.len(), 1);
    assert!(b[0].to_string().contains("via its loop LOOP-B"), "{}", b[0]);
    reg.claim("GAP-OP-2", "CC-1", None).expect("claim");
    reg.set_status("GAP-OP-1", Status::Complete, None)
        .expect("complete");
    write_loop(&reg, "LOOP-A", "complete", &[]);
    assert_eq!(
        ids(reg.ready().expect("ready")),
        ["GAP-OP-3", "GAP-OP-4", "GAP-OP-5"]
    );
    assert!(reg.blockers("GAP-OP-3").expect("blockers").is_empty());
    assert!(matches!(
        reg.blockers("GAP-OP-2").expect("blockers")[..],
        [Blocker::Claimed { .. }]
    ));
}

#[test]
fn loops_from_template_and_from_an_existing_folder() {
    let repo = tempfile::tempdir().expect("tempdir");
    let existing = repo.path().join("loop-scopes");
    std::fs::create_dir_all(&existing).expect("mkdir");
    // The seed's front matter, which is not strict YAML (`objective: ...: ...`).
    std::fs::write(
        existing.join("LOOP-GAPS-FILE-BATCH-AND-LOCK-IMPROVEMENT-20260228.md"),
        "---\nloop_id: LOOP-GAPS-FILE-BATCH-AND-LOCK-IMPROVEMENT-20260228\ncreated: 2026-02-28\n\
         status: active\nowner: \"@ronny\"\nscope: gaps\npriority: medium\nobjective: Eliminate \
         agent friction in gaps.file: add --parent-loop flag, implement single-lock batch mode\n\
         ---\n\n# Loop Scope\n",
    )
    .expect("seed loop");
    std::fs::write(existing.join("README.md"), "# not a loop\n").expect("readme");
    let reg = Registry::init(
        repo.path(),
        Config {
            loops_dir: "../loop-scopes".into(),
            ..fast_config()
        },
    )
    .expect("init");
    let loops = reg.loops().expect("loops");
    assert_eq!(loops.len(), 1);
    assert_eq!(loops[0].owner.as_deref(), Some("@ronny"));
    let made = reg
        .new_loop(LoopSpec {
            id: "LOOP-NEXT".into(),
            objective: "Follow-up: more".into(),
            depends_on: vec!["LOOP-GAPS-FILE-BATCH-AND-LOCK-IMPROVEMENT-20260228".into()],
            ..LoopSpec::default()
        })
        .expect("new loop");
    assert!(made.path.starts_with(&existing));
    assert_eq!(
        reg.show_loop("LOOP-NEXT")
            .expect("show")
            .objective
            .as_deref(),
        Some("Follow-up: more")
    );
    let err = reg
        .new_loop(LoopSpec {
            id: "LOOP-NEXT".into(),
            ..LoopSpec::default()
        })
        .expect_err("exists");
    assert!(matches!(err.kind(), ErrorKind::Conflict { .. }), "{err}");
    assert!(
        reg.show_loop("LOOP-NXT")
            .expect_err("typo")
            .to_string()
            .contains("LOOP-NEXT")
    );
    reg.file(spec("x").parent_loop("LOOP-NEXT"))
        .expect("file under new loop");
    assert!(reg.doctor(false).expect("doctor").healthy());
}

#[test]
fn render_is_deterministic_and_summary_counts() {
    let (_dir, reg) = scratch();
    write_loop(&reg, "LOOP-A", "active", &[]);
    write_loop(&reg, "LOOP-B", "active", &["LOOP-A"]);
    reg.file(spec("a | pipe").parent_loop("LOOP-A"))
        .expect("file");
    reg.file(spec("b").parent_loop("LOOP-B").depends_on("GAP-OP-1"))
        .expect("file");
    reg.file(spec("c")).expect("file");
    reg.set_status("GAP-OP-1", Status::Complete, None)
        .expect("complete");
    let first = reg.render().expect("render");
    std::fs::remove_file(reg.dir().join("index.log")).expect("drop the index");
    let reopened = Registry::open(reg.dir()).expect("open");
    assert_eq!(reopened.render().expect("render"), first);
    for needle in [
        "| Total gaps | 3 |",
        "### LOOP-A",
        "LOOP-A (active)\n└── blocks LOOP-B (active)",
        "a \\| pipe",
        "GAP-OP-2 (open) waits for GAP-OP-1 (complete)",
        "## Recently Completed",
        "## Gaps Without a Loop",
    ] {
        assert!(first.contains(needle), "{needle:?} missing from:\n{first}");
    }
    let s = reg.summary().expect("summary");
    assert_eq!(s.total, 3);
    assert_eq!(s.by_status[&Status::Complete], 1);
    assert_eq!(s.by_loop["LOOP-A"].complete, 1);
    assert_eq!(s.by_loop["(none)"].total, 1);
    let json = serde_json::to_string(&s).expect("json");
    assert!(json.contains("\"complete\":1"), "{json}");
}

#[test]
fn index_follows_changes_made_outside_gapreg() {
    let (_dir, reg) = scratch();
    for i in 0..3 {
        reg.file(spec(&format!("g{i}"))).expect("file");
    }
    // A checkout removes a gap file and adds another: the index notices.
    let text = std::fs::read_to_string(reg.gap_path("GAP-OP-3")).expect("read");
    std::fs::remove_file(reg.gap_path("GAP-OP-2")).expect("rm");
    reg.id_store()
        .expect("a file id store")
        .reserve("GAP-OP", 7)
        .expect("reserve");
    reg.id_store()
        .expect("a file id store")
        .reserve("SEQ", 6)
        .expect("reserve");
    std::fs::write(
        reg.gap_path("GAP-OP-9"),
        text.replace("GAP-OP-3", "GAP-OP-9")
            .replace("seq: 3", "seq: 9"),
    )
    .expect("add");
    assert_eq!(all_ids(&reg), ["GAP-OP-1", "GAP-OP-3", "GAP-OP-9"]);
    // A torn last line is ignored and repaired.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(reg.dir().join("index.log"))
        .expect("open");
    f.write_all(b"{\"m\":1,\"g\":{\"id\"").expect("tear");
    assert_eq!(all_ids(&reg), ["GAP-OP-1", "GAP-OP-3", "GAP-OP-9"]);
    reg.file(spec("after")).expect("file after tear");
    assert_eq!(all_ids(&reg).len(), 4);
    let report = reg.doctor(false).expect("doctor");
    assert!(report.healthy(), "{:#?}", report.findings);
}

#[test]
fn index_is_compacted() {
    let (_dir, reg) = scratch();
    reg.file(spec("x")).expect("file");
    for i in 0..100 {
        let st = if i % 2 == 0 {
            Status::Ready
        } else {
            Status::Open
        };
        reg.set_status("GAP-OP-1", st, None).expect("set");
    }
    let before = std::fs::read_to_string(reg.dir().join("index.log"))
        .expect("read")
        .lines()
        .count();
    assert!(before > 100);
    assert_eq!(all_ids(&reg), ["GAP-OP-1"]);
    let after = std::fs::read_to_string(reg.dir().join("index.log"))
        .expect("read")
        .lines()
        .count();
    assert!(
        after <= 3,
        "{after} lines after compaction (header, gap, stamp)"
    );
    assert_eq!(reg.show("GAP-OP-1").expect("show").rev, 101);
}

#[test]
fn writers_compact_the_index_without_readers() {
    let (_dir, reg) = scratch();
    reg.file(spec("x")).expect("file");
    let index = reg.dir().join("index.log");
    let mut largest = 0;
    for i in 0..1500 {
        let st = if i % 2 == 0 {
            Status::Ready
        } else {
            Status::Open
        };
        reg.set_status("GAP-OP-1", st, None).expect("set");
        largest = largest.max(std::fs::metadata(&index).expect("index").len());
    }
    let len = std::fs::metadata(&index).expect("index").len();
    assert!(largest <= 300 * 1024, "the index grew to {largest} bytes");
    assert!(len < largest, "never compacted");
    assert_eq!(reg.show("GAP-OP-1").expect("show").rev, 1501);
    let listed = reg.list(&Filter::default()).expect("list");
    assert_eq!(listed[0].rev, 1501);
}

#[test]
fn doctor_finds_and_repairs() {
    let (_dir, reg) = scratch();
    write_loop(&reg, "LOOP-A", "active", &[]);
    reg.file(spec("a").parent_loop("LOOP-A")).expect("file");
    reg.file(spec("b").depends_on("GAP-OP-1")).expect("file");
    reg.file(spec("c")).expect("file");
    assert!(reg.doctor(false).expect("doctor").findings.is_empty());

    // Hand damage: a dangling reference, a cycle, a corrupt file, a misnamed file.
    std::fs::remove_file(reg.loops_dir().join("LOOP-A.md")).expect("rm loop");
    let one = std::fs::read_to_string(reg.gap_path("GAP-OP-1")).expect("read");
    let cyclic = one.replace(
        "parent_loop: LOOP-A\n",
        "parent_loop: LOOP-A\ndepends_on:\n- GAP-OP-2\n",
    );
    assert_ne!(cyclic, one, "{one}");
    std::fs::write(reg.gap_path("GAP-OP-1"), cyclic).expect("cycle");
    std::fs::write(reg.gap_path("GAP-OP-3"), "id: [").expect("corrupt");
    std::fs::write(reg.gap_path("GAP-OP-4"), one).expect("misnamed copy");
    // GAP-OP-4's file (the misnamed copy) is above the GAP-OP counter, which stands at 3.
    // A dead writer's temp file.
    std::fs::write(
        reg.dir()
            .join("gaps/.GAP-OP-9.yaml.999999999-0123456789abcdef.atomic-tmp"),
        "x",
    )
    .expect("temp");

    let report = reg.doctor(false).expect("doctor");
    assert!(!report.healthy());
    let kinds: std::collections::BTreeSet<FindingKind> =
        report.findings.iter().map(|f| f.kind).collect();
    for k in [
        FindingKind::DanglingReference,
        FindingKind::Cycle,
        FindingKind::Corrupt,
        FindingKind::IdMismatch,
        FindingKind::DuplicateId,
        FindingKind::IdAboveCounter,
        FindingKind::TempFile,
        FindingKind::StaleIndex,
    ] {
        assert!(
            kinds.contains(&k),
            "{k:?} not found in {:#?}",
            report.findings
        );
    }
    let cycle = report
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Cycle)
        .expect("cycle");
    assert!(
        cycle.message.contains("GAP-OP-1 -> GAP-OP-2 -> GAP-OP-1"),
        "{cycle}"
    );

    let repaired = reg.doctor(true).expect("repair");
    for f in &repaired.findings {
        let safe = matches!(
            f.kind,
            FindingKind::IdAboveCounter | FindingKind::TempFile | FindingKind::StaleIndex
        );
        assert_eq!(f.repaired, safe, "{f}");
    }
    assert_eq!(reg.next_id("OP").expect("peek").to_string(), "GAP-OP-5");
    let again = reg.doctor(false).expect("doctor");
    assert!(again.findings.iter().all(|f| !matches!(
        f.kind,
        FindingKind::IdAboveCounter | FindingKind::TempFile | FindingKind::StaleIndex
    )));
}

#[test]
fn edits_and_loop_status() {
    let (_dir, reg) = scratch();
    write_loop(&reg, "LOOP-A", "active", &[]);
    write_loop(&reg, "LOOP-B", "active", &["LOOP-A"]);
    reg.file(spec("in B").parent_loop("LOOP-B")).expect("file");
    assert!(
        reg.ready().expect("ready").is_empty(),
        "LOOP-A blocks LOOP-B"
    );
    let before = std::fs::read_to_string(reg.loops_dir().join("LOOP-A.md")).expect("read");
    let l = reg.set_loop_status("LOOP-A", "closed").expect("close loop");
    assert!(l.is_complete());
    let after = std::fs::read_to_string(reg.loops_dir().join("LOOP-A.md")).expect("read");
    assert_eq!(
        after,
        before.replace("status: active", "status: closed"),
        "only one line changes"
    );
    assert_eq!(reg.ready().expect("ready").len(), 1);
    assert!(reg.set_loop_status("LOOP-A", "two words").is_err());
    assert!(
        reg.set_loop_status("LOOP-Z", "closed")
            .expect_err("missing")
            .is_not_found()
    );

    let edit = gapreg::GapEdit {
        title: Some("renamed".into()),
        parent_loop: Some(None),
        tags: Some(vec!["t1".into()]),
        ..gapreg::GapEdit::default()
    };
    let g = reg.edit("GAP-OP-1", edit.clone(), Some(1)).expect("edit");
    assert_eq!(
        (g.title.as_str(), g.parent_loop.as_deref(), g.rev),
        ("renamed", None, 2)
    );
    assert_eq!(
        reg.edit("GAP-OP-1", edit.clone(), None).expect("no-op").rev,
        2
    );
    let err = reg
        .edit("GAP-OP-1", edit, Some(1))
        .expect_err("stale revision");
    assert!(err.to_string().contains("expected revision 1"), "{err}");
    let bad = gapreg::GapEdit {
        parent_loop: Some(Some("LOOP-C".into())),
        ..gapreg::GapEdit::default()
    };
    assert!(
        reg.edit("GAP-OP-1", bad, None)
            .expect_err("no loop")
            .is_not_found()
    );
    let tagged = reg
        .list(&Filter {
            tag: Some("t1".into()),
            ..Filter::default()
        })
        .expect("list");
    assert_eq!(tagged.len(), 1);
}

#[test]
fn batches_cut_short_are_finished_or_dropped() {
    let (_dir, reg) = scratch();
    let gaps = reg.file_batch(vec![spec("a"), spec("b")]).expect("batch");
    assert!(!reg.dir().join("batch.pending").exists());
    let staging = reg.dir().join("staging");
    assert_eq!(std::fs::read_dir(&staging).expect("staging").count(), 0);

    // A writer died after committing its manifest, with one file moved and one not.
    let text = std::fs::read_to_string(reg.gap_path(&gaps[1].id)).expect("read");
    reg.id_store()
        .expect("a file id store")
        .reserve("GAP-OP", 2)
        .expect("reserve");
    reg.id_store()
        .expect("a file id store")
        .reserve("SEQ", 2)
        .expect("reserve");
    let staged = |id: &str, seq: u64| {
        text.replace(&gaps[1].id, id)
            .replace(&format!("seq: {}", gaps[1].seq), &format!("seq: {seq}"))
    };
    std::fs::write(reg.gap_path("GAP-OP-3"), staged("GAP-OP-3", 3)).expect("moved");
    std::fs::write(staging.join("GAP-OP-4.yaml"), staged("GAP-OP-4", 4)).expect("staged");
    gapreg::atomic_file::write_checksummed(
        reg.dir().join("batch.pending"),
        b"GAP-OP-3\nGAP-OP-4\n",
    )
    .expect("manifest");
    let report = reg.doctor(false).expect("doctor");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::IncompleteBatch)
    );
    // Any change finishes it.
    reg.file(spec("c")).expect("file");
    assert_eq!(
        all_ids(&reg),
        ["GAP-OP-1", "GAP-OP-2", "GAP-OP-3", "GAP-OP-4", "GAP-OP-5"]
    );
    assert!(!reg.dir().join("batch.pending").exists());

    // A writer died before its manifest: its staged files never become gaps.
    std::fs::write(staging.join("GAP-OP-9.yaml"), staged("GAP-OP-9", 9)).expect("staged");
    let report = reg.doctor(false).expect("doctor");
    assert!(!report.healthy());
    assert!(reg.doctor(true).expect("repair").healthy());
    assert_eq!(std::fs::read_dir(&staging).expect("staging").count(), 0);
    assert_eq!(all_ids(&reg).len(), 5);
    assert!(reg.doctor(false).expect("doctor").findings.is_empty());
}

#[test]
fn gap_files_are_readable_yaml_and_round_trip() {
    let (_dir, reg) = scratch();
    let mut s = GapSpec::new("Quotes \"and\": colons # hash", Severity::Critical)
        .gap_type("agent-behavior")
        .description("Line one\nLine two: with colon\n\n- a list item\n")
        .tag("lock");
    s.plan = Some("plans/epic03.md".into());
    let g = reg.file(s).expect("file");
    let text = std::fs::read_to_string(reg.gap_path(&g.id)).expect("read");
    assert!(text.starts_with("id: GAP-OP-1\nseq: 1\nrev: 1\n"), "{text}");
    assert!(text.contains("type: agent-behavior\n"), "{text}");
    let back = gapreg::parse_gap_yaml(text.as_bytes()).expect("parse");
    assert_eq!(back, g);
    assert_eq!(gapreg::gap_to_yaml(&back).expect("yaml"), text);
    // Unknown fields (from a newer version or a hand edit) are ignored.
    let extra = format!("{text}future_field: 1\n");
    assert_eq!(gapreg::parse_gap_yaml(extra.as_bytes()).expect("parse"), g);
}

/// Gap files written before the field names were unified (`revision`, `claimant`, `created`,
/// `updated`) still read, and are written back with the one name each field has now.
#[test]
fn gap_files_with_the_old_field_names_read() {
    let old = "id: GAP-OP-1\nseq: 1\nrevision: 4\ntitle: t\nseverity: high\nstatus: in-progress\n\
               claimant: CC-3\ncreated: 2026-01-01T00:00:00Z\nupdated: 2026-01-02T00:00:00Z\n";
    let g = gapreg::parse_gap_yaml(old.as_bytes()).expect("old names parse");
    assert_eq!((g.rev, g.claimed_by.as_deref()), (4, Some("CC-3")));
    assert_eq!(g.updated_at.to_string(), "2026-01-02T00:00:00Z");
    let text = gapreg::gap_to_yaml(&g).expect("yaml");
    for new in [
        "rev: 4\n",
        "claimed_by: CC-3\n",
        "created_at: ",
        "updated_at: ",
    ] {
        assert!(text.contains(new), "{new:?} missing from {text}");
    }
    assert!(
        !text.contains("revision") && !text.contains("claimant"),
        "{text}"
    );
}

/// Text full of brackets (a markdown table, a pasted stack of `[[`) is text, not nested
/// collections: a gap whose fields hold 300 `[` is filed, listed and read back (the YAML
/// reader's nesting guard counted every bracket, so gapreg refused files it had written).
#[test]
fn brackets_in_text_are_not_nesting() {
    let (_dir, reg) = scratch();
    let deep = "[".repeat(300);
    let spec = GapSpec::new(format!("]]]{}", &deep[..200]), Severity::Low)
        .description(format!("]]]]\n{deep}\n"));
    let gap = reg.file(spec).expect("file");
    let back = reg.show(&gap.id).expect("show");
    assert_eq!(back.description, format!("]]]]\n{deep}\n"));
    assert_eq!(reg.list(&Filter::default()).expect("list").len(), 1);
}

/// A merge brings in a gap another clone filed at the id this counter gives next: filing
/// raises the counter above the documents (never lowers it) and files at the next free id,
/// instead of refusing.
#[test]
fn a_counter_behind_merged_documents_is_raised_when_filing() {
    let (_dir, reg) = scratch();
    reg.file(GapSpec::new("one", Severity::Low)).expect("file");
    let text = std::fs::read_to_string(reg.gap_path("GAP-OP-1")).expect("read");
    let merged = text
        .replace("id: GAP-OP-1\n", "id: GAP-OP-2\n")
        .replace("seq: 1\n", "seq: 90\n");
    std::fs::write(reg.gap_path("GAP-OP-2"), merged).expect("merged gap");
    let gap = reg
        .file(GapSpec::new("after the merge", Severity::Low))
        .expect("file");
    assert_eq!(gap.id, "GAP-OP-3");
    let batch = reg
        .file_batch(vec![
            GapSpec::new("a", Severity::Low),
            GapSpec::new("b", Severity::Low),
        ])
        .expect("batch");
    assert_eq!(
        (batch[0].id.as_str(), batch[1].id.as_str()),
        ("GAP-OP-4", "GAP-OP-5")
    );
    assert_eq!(reg.list(&Filter::default()).expect("list").len(), 5);
}
