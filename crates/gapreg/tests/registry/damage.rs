//! Damaged and hostile registries: every file gapreg writes, truncated at every byte, zeroed,
//! with every bit flipped, replaced by garbage or removed; symlinks, FIFOs and directories at
//! every path. Each case ends in an error naming the file (corrupt, exit 6 in the CLI), or in
//! a correct result — never a panic, a hang, a silently shorter list, a duplicate gap or a
//! change outside the registry.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gapreg::{Config, ErrorKind, Filter, GapSpec, LoopSpec, Registry, Severity, Status};

fn registry() -> (tempfile::TempDir, Registry) {
    let repo = tempfile::tempdir().expect("tmp");
    let reg = Registry::init(repo.path(), Config::default()).expect("init");
    (repo, reg)
}

fn spec(title: &str) -> GapSpec {
    GapSpec::new(title, Severity::High)
}

/// Every way one file can be damaged, as (what, new contents or `None` for removed).
fn damages(original: &[u8]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = vec![
        ("removed".to_owned(), None),
        ("empty".to_owned(), Some(Vec::new())),
        ("garbage".to_owned(), Some(b"\x00garbage{{".to_vec())),
        ("zero-filled".to_owned(), Some(vec![0; original.len()])),
    ];
    for cut in 1..original.len() {
        out.push((
            format!("truncated to {cut}"),
            Some(original[..cut].to_vec()),
        ));
    }
    for byte in 0..original.len() {
        for bit in 0..8 {
            let mut d = original.to_vec();
            d[byte] ^= 1 << bit;
            out.push((format!("bit {bit} of byte {byte} flipped"), Some(d)));
        }
    }
    out
}

fn put(path: &Path, contents: &Option<Vec<u8>>) {
    match contents {
        Some(c) => fs::write(path, c).expect("damage"),
        None => {
            let _ = fs::remove_file(path);
        }
    }
}

fn is_corrupt(e: &gapreg::Error) -> bool {
    match e.kind() {
        ErrorKind::Corrupt { .. } => true,
        ErrorKind::File(f) => f.is_damaged(),
        ErrorKind::Ids(i) => matches!(i.kind(), gapreg::idreserve::ErrorKind::Corrupt { .. }),
        _ => false,
    }
}

#[test]
fn a_damaged_gap_file_is_reported_never_dropped_silently() {
    let (_repo, reg) = registry();
    for t in ["one", "two", "three"] {
        reg.file(spec(t)).expect("file");
    }
    let path = reg.gap_path("GAP-OP-2");
    let original = fs::read(&path).expect("read");
    for (what, contents) in damages(&original) {
        put(&path, &contents);
        let listed = reg.list_checked(&Filter::default()).expect(&what);
        // A flip of `seq` moves a gap in the registry order: compare the sets of ids.
        let mut ids: Vec<_> = listed.value.iter().map(|g| g.id.as_str()).collect();
        ids.sort_unstable();
        match &contents {
            None => assert_eq!(ids, ["GAP-OP-1", "GAP-OP-3"], "{what}"),
            Some(_) => {
                let shown = reg.show("GAP-OP-2");
                match shown {
                    // A flip inside a text field can leave a well-formed gap: then it is listed.
                    Ok(g) => {
                        assert_eq!(g.id, "GAP-OP-2", "{what}");
                        assert_eq!(ids, ["GAP-OP-1", "GAP-OP-2", "GAP-OP-3"], "{what}");
                        assert!(listed.is_complete(), "{what}");
                    }
                    Err(e) => {
                        assert!(is_corrupt(&e), "{what}: {e}");
                        assert!(e.to_string().contains("GAP-OP-2"), "{what}: {e}");
                        assert_eq!(ids, ["GAP-OP-1", "GAP-OP-3"], "{what}");
                        assert_eq!(listed.damaged.len(), 1, "{what}: {:?}", listed.damaged);
                        assert!(listed.damaged[0].file.contains("GAP-OP-2"), "{what}");
                        assert!(!reg.summary_checked().expect("summary").is_complete());
                        assert!(!reg.ready_checked().expect("ready").is_complete());
                        assert!(!reg.render_checked().expect("render").is_complete());
                    }
                }
            }
        }
    }
    fs::write(&path, &original).expect("restore");
    assert!(
        reg.list_checked(&Filter::default())
            .expect("list")
            .is_complete()
    );
}

#[test]
fn an_unknown_status_is_reported_by_every_read() {
    let (_repo, reg) = registry();
    reg.file(spec("one")).expect("file");
    reg.file(spec("two")).expect("file");
    let path = reg.gap_path("GAP-OP-2");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(&path, text.replace("status: open", "status: opened")).expect("edit");
    for checked in [
        reg.list_checked(&Filter::default()).expect("list").damaged,
        reg.ready_checked().expect("ready").damaged,
        reg.summary_checked().expect("summary").damaged,
        reg.render_checked().expect("render").damaged,
    ] {
        assert_eq!(checked.len(), 1, "{checked:?}");
        assert!(checked[0].file.ends_with("GAP-OP-2.yaml"), "{checked:?}");
    }
    assert!(!reg.doctor(false).expect("doctor").healthy());
}

#[test]
fn a_damaged_index_is_rebuilt_never_trusted() {
    let (_repo, reg) = registry();
    for t in ["one", "two"] {
        reg.file(spec(t)).expect("file");
    }
    reg.claim("GAP-OP-1", "CC-1", None).expect("claim");
    let truth = reg.list(&Filter::default()).expect("list");
    let path = reg.dir().join("index.log");
    let original = fs::read(&path).expect("read");
    // Every byte of a small index: the lines of two gaps and stamps.
    for (what, contents) in damages(&original) {
        put(&path, &contents);
        let got = reg.list(&Filter::default()).expect(&what);
        assert_eq!(got, truth, "{what}");
    }
}

#[test]
fn a_damaged_batch_manifest_is_corrupt_and_files_nothing() {
    let (_repo, reg) = registry();
    reg.file_batch(vec![spec("a"), spec("b")]).expect("batch");
    let manifest = reg.dir().join("batch.pending");
    let original = gapreg::atomic_file::checksum::encode(b"GAP-OP-1\nGAP-OP-2\n");
    for (what, contents) in damages(&original) {
        let Some(contents) = contents else { continue };
        fs::write(&manifest, &contents).expect("damage");
        match reg.file(spec("c")) {
            // Only a manifest that still checks out is acted on (its gaps exist already).
            Ok(g) => {
                assert!(
                    fs::read(&manifest).is_err(),
                    "{what}: the manifest is finished"
                );
                let _ = g;
            }
            Err(e) => assert!(is_corrupt(&e), "{what}: {e}"),
        }
        let _ = fs::remove_file(&manifest);
    }
    // No gap was filed twice, and every id is unique.
    let all = reg.list(&Filter::default()).expect("list");
    let mut ids: Vec<_> = all.iter().map(|g| g.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), all.len());
}

#[test]
fn a_damaged_config_is_an_error_never_a_default() {
    let (repo, reg) = registry();
    let path = reg.dir().join("config.yaml");
    let original = fs::read(&path).expect("read");
    for (what, contents) in damages(&original) {
        put(&path, &contents);
        match Registry::discover(repo.path()) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    matches!(e.kind(), ErrorKind::NoRegistry { .. }) || msg.contains("config.yaml"),
                    "{what}: {msg}"
                );
            }
            // A flip that keeps every key and leaves a valid value (`OP` -> `OQ`, `120` ->
            // `121`) is indistinguishable from a hand edit of a tracked file; it is still a
            // complete config, never a default.
            Ok(r) => {
                assert!(
                    gapreg::idreserve::check_prefix(&gapreg::gap_prefix(
                        &r.config().default_prefix
                    ))
                    .is_ok(),
                    "{what}"
                );
            }
        }
    }
    // The two cases of the issue.
    fs::write(&path, "").expect("empty");
    let e = Registry::discover(repo.path()).expect_err("empty config");
    assert!(e.to_string().contains("empty"), "{e}");
    let typo = String::from_utf8(original.clone())
        .expect("utf8")
        .replace("default_prefix", "default_prefiy");
    fs::write(&path, typo).expect("typo");
    let e = Registry::discover(repo.path()).expect_err("typo");
    assert!(e.to_string().contains("default_prefiy"), "{e}");
}

#[test]
fn a_damaged_idempotency_key_is_corrupt_and_never_files_twice() {
    let (_repo, reg) = registry();
    let s = spec("keyed");
    let first = reg.file_idempotent(s.clone(), "k-1").expect("file");
    let again = reg.file_idempotent(s.clone(), "k-1").expect("retry");
    assert_eq!(first.id, again.id);
    let err = reg
        .file_idempotent(spec("other"), "k-1")
        .expect_err("reused key");
    assert!(matches!(err.kind(), ErrorKind::Conflict { .. }), "{err}");
    let path = reg.dir().join("keys/k-1.json");
    let original = fs::read(&path).expect("read");
    for (what, contents) in damages(&original).into_iter().step_by(7) {
        let Some(contents) = contents else { continue };
        fs::write(&path, &contents).expect("damage");
        match reg.file_idempotent(s.clone(), "k-1") {
            Ok(g) => assert_eq!(g.id, first.id, "{what}"),
            Err(e) => assert!(is_corrupt(&e), "{what}: {e}"),
        }
    }
    assert_eq!(reg.list(&Filter::default()).expect("list").len(), 1);
}

#[test]
fn a_retry_after_the_key_but_before_the_gap_files_the_same_id() {
    let (_repo, reg) = registry();
    let s = spec("keyed");
    let first = reg.file_idempotent(s.clone(), "k-2").expect("file");
    // As if the writer died after recording the key and before its gap file.
    fs::remove_file(reg.gap_path(&first.id)).expect("remove");
    let again = reg.file_idempotent(s, "k-2").expect("retry");
    assert_eq!(again.id, first.id);
    assert_eq!(reg.list(&Filter::default()).expect("list").len(), 1);
}

/// A decoy "home directory" outside the repository, and a hash of everything in it.
fn decoy(root: &Path) -> (PathBuf, String) {
    let home = root.join("home");
    fs::create_dir_all(home.join(".ssh")).expect("decoy");
    fs::write(home.join(".ssh/id_ed25519"), "secret").expect("decoy");
    fs::write(home.join("GAP-OP-1.yaml"), "not yours").expect("decoy");
    fs::write(home.join("index.log"), "not yours").expect("decoy");
    let h = hash_tree(&home);
    (home, h)
}

fn hash_tree(dir: &Path) -> String {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&d).expect("list").flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            let meta = fs::symlink_metadata(&p).expect("lstat");
            out.push(format!(
                "{} {:?} {}",
                p.display(),
                meta.file_type(),
                meta.len()
            ));
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.push(format!("{:08x}", crc(&fs::read(&p).expect("read"))));
            }
        }
    }
    out.join("\n")
}

fn crc(data: &[u8]) -> u32 {
    data.iter()
        .fold(0u32, |h, &b| h.rotate_left(5) ^ u32::from(b))
}

/// Runs every library operation against the registry, each bounded in time; returns the
/// results as text (for the assertion messages).
fn every_operation(reg: &Registry) -> Vec<String> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<String, gapreg::Error>| {
        out.push(format!(
            "{what}: {}",
            r.unwrap_or_else(|e| format!("error: {e}"))
        ));
    };
    note("file", reg.file(spec("x")).map(|g| g.id));
    note(
        "batch",
        reg.file_batch(vec![spec("y"), spec("z")])
            .map(|g| g.len().to_string()),
    );
    note(
        "list",
        reg.list_checked(&Filter::default())
            .map(|l| format!("{} {:?}", l.value.len(), l.damaged)),
    );
    note("ready", reg.ready().map(|l| l.len().to_string()));
    note("show", reg.show("GAP-OP-1").map(|g| g.id));
    note("claim", reg.claim("GAP-OP-1", "CC-1", None).map(|g| g.id));
    note(
        "status",
        reg.set_status("GAP-OP-1", Status::Blocked, None)
            .map(|g| g.id),
    );
    note("render", reg.render().map(|r| r.len().to_string()));
    note(
        "summary",
        reg.summary().map(|s| format!("{s:?}").len().to_string()),
    );
    note("loops", reg.loops().map(|l| l.len().to_string()));
    note(
        "new loop",
        reg.new_loop(LoopSpec {
            id: "LOOP-Z".into(),
            objective: "z".into(),
            ..LoopSpec::default()
        })
        .map(|l| l.id),
    );
    note(
        "doctor",
        reg.doctor(false).map(|r| format!("{:?}", r.findings.len())),
    );
    note(
        "doctor --repair",
        reg.doctor(true).map(|r| format!("{:?}", r.findings.len())),
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "an operation hung: {out:?}"
    );
    out
}

#[test]
fn links_fifos_and_wrong_types_at_every_registry_path_touch_nothing_outside() {
    // (path under .gapreg, what to plant)
    let paths = [
        "staging",
        "gaps",
        "loops",
        "ids",
        "leases",
        "keys",
        "index.log",
        "batch.pending",
        "registry.lock",
        "gaps/GAP-OP-1.yaml",
        "gaps/GAP-OP-2.yaml",
        "loops/LOOP-Z.md",
        "staging/GAP-OP-9.yaml",
        "keys/k.json",
        ".gitignore",
    ];
    #[derive(Debug, Clone, Copy)]
    enum Plant {
        LinkToDir,
        LinkToFile,
        Dangling,
        Relative,
        Fifo,
        Directory,
    }
    for path in paths {
        for plant in [
            Plant::LinkToDir,
            Plant::LinkToFile,
            Plant::Dangling,
            Plant::Relative,
            Plant::Fifo,
            Plant::Directory,
        ] {
            let tmp = tempfile::tempdir().expect("tmp");
            let (home, before) = decoy(tmp.path());
            let repo = tmp.path().join("repo");
            fs::create_dir(&repo).expect("repo");
            let reg = Registry::init(&repo, Config::default()).expect("init");
            reg.file(spec("first")).expect("file");
            let target = reg.dir().join(path);
            if target.is_dir() {
                let _ = fs::remove_dir_all(&target);
            } else {
                let _ = fs::remove_file(&target);
            }
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).expect("parent");
            }
            match plant {
                Plant::LinkToDir => symlink(&home, &target),
                Plant::LinkToFile => symlink(home.join("GAP-OP-1.yaml"), &target),
                Plant::Dangling => symlink(home.join("created-by-gapreg"), &target),
                Plant::Relative => symlink("../../home/.ssh", &target),
                Plant::Fifo => {
                    let ok = std::process::Command::new("mkfifo")
                        .arg(&target)
                        .status()
                        .expect("mkfifo");
                    assert!(ok.success());
                    Ok(())
                }
                Plant::Directory => fs::create_dir(&target),
            }
            .expect("plant");
            let reg = Registry::discover(&repo);
            let results = match &reg {
                Ok(reg) => every_operation(reg),
                Err(e) => vec![format!("open: {e}")],
            };
            assert_eq!(
                hash_tree(&home),
                before,
                "{path} as {plant:?} changed the decoy: {results:#?}"
            );
            assert!(
                !home.join("created-by-gapreg").exists(),
                "{path} as {plant:?}"
            );
        }
    }
}

#[test]
fn doctor_reports_and_repairs_a_lost_fencing_token_counter() {
    use gapreg::leaselock::lease::{LeaseOptions, LeaseRequest};
    let (_repo, reg) = registry();
    let leases = reg.leases(LeaseOptions::new()).expect("leases");
    let first = leases
        .acquire(&LeaseRequest::exclusive("H").file("src/a.rs"))
        .expect("acquire");
    let token = first.lease.token;
    leases.release(&first.lease).expect("release");
    fs::remove_file(reg.dir().join("leases/token.json")).expect("remove the counter");
    // Acquiring now must not start over at token 1: it fails closed until repaired.
    let err = leases
        .acquire(&LeaseRequest::exclusive("H").file("src/a.rs"))
        .expect_err("a lost counter is corrupt, not zero");
    assert!(err.to_string().contains("token"), "{err}");
    let report = reg.doctor(false).expect("doctor");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == gapreg::FindingKind::FencingToken && !f.repaired),
        "{report:?}"
    );
    let report = reg.doctor(true).expect("repair");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == gapreg::FindingKind::FencingToken && f.repaired),
        "{report:?}"
    );
    let next = leases
        .acquire(&LeaseRequest::exclusive("H").file("src/a.rs"))
        .expect("acquire after repair");
    assert!(next.lease.token > token, "{} <= {token}", next.lease.token);
    assert!(reg.doctor(false).expect("doctor").healthy());
}

#[test]
fn zero_padded_gap_ids_cannot_be_configured_and_zeroed_loops_are_reported() {
    let (repo, reg) = registry();
    reg.new_loop(LoopSpec {
        id: "EPIC-7".into(),
        objective: "x".into(),
        ..LoopSpec::default()
    })
    .expect("loop");
    let loop_file = reg.loops_dir().join("EPIC-7.md");
    let len = fs::metadata(&loop_file).expect("meta").len() as usize;
    fs::write(&loop_file, vec![0u8; len]).expect("zero the loop");
    let loops = reg.loops_checked().expect("loops");
    assert!(loops.value.is_empty());
    assert_eq!(loops.damaged.len(), 1, "{:?}", loops.damaged);
    let err = reg
        .new_loop(LoopSpec {
            id: "EPIC-7".into(),
            objective: "x".into(),
            ..LoopSpec::default()
        })
        .expect_err("damaged, not free");
    assert!(is_corrupt(&err), "{err}");
    // A width for the gap prefix would give GAP-OP-0001 beside GAP-OP-1: refused at open.
    let ids_config = reg.dir().join("ids/config.yaml");
    let text = fs::read_to_string(&ids_config).expect("read");
    fs::write(&ids_config, format!("{text}width:\n  GAP-OP: 4\n")).expect("pad");
    let err = Registry::discover(repo.path()).expect_err("padded gap ids");
    assert!(err.to_string().contains("width"), "{err}");
}

/// Above 4096 gaps the index's file stamps are checked on several threads: a file rewritten
/// in place (which leaves `gaps/`'s own time alone) is still noticed, wherever it is.
#[test]
fn a_gap_rewritten_in_place_is_noticed_in_a_large_registry() {
    let repo = tempfile::tempdir().expect("tmp");
    let config = Config {
        durable: false,
        ..Config::default()
    };
    let reg = Registry::init(repo.path(), config).expect("init");
    let specs: Vec<GapSpec> = (0..4200).map(|i| spec(&format!("gap {i}"))).collect();
    reg.file_batch(specs).expect("batch");
    assert_eq!(reg.list(&Filter::default()).expect("list").len(), 4200);
    for id in ["GAP-OP-7", "GAP-OP-4199"] {
        let path = reg.gap_path(id);
        let text = fs::read_to_string(&path).expect("read");
        // In place: same file, same directory entry, new contents.
        let edited = text.replace("status: open", "status: blocked");
        assert_ne!(edited, text);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut f, edited.as_bytes()).expect("write");
        drop(f);
        let blocked = reg
            .list(&Filter {
                status: Some(Status::Blocked),
                ..Filter::default()
            })
            .expect("list");
        assert!(
            blocked.iter().any(|g| g.id == id),
            "{id} edited in place was not noticed"
        );
    }
}
