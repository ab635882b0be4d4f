//! The store's behaviour and every error it reports.

use std::collections::BTreeMap;
use std::fs;

use idreserve::{Config, ErrorKind, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::create(dir.path().join("ids"), Config::default()).expect("create");
    (dir, store)
}

fn ids(r: &idreserve::Reservation) -> Vec<String> {
    r.ids().map(|id| id.to_string()).collect()
}

#[test]
fn reservations_are_consecutive_per_prefix() {
    let (_d, s) = store();
    assert_eq!(ids(&s.reserve("SEC", 1).expect("1")), ["SEC-1"]);
    assert_eq!(
        ids(&s.reserve("SEC", 3).expect("3")),
        ["SEC-2", "SEC-3", "SEC-4"]
    );
    assert_eq!(ids(&s.reserve("GAP-OP", 1).expect("other")), ["GAP-OP-1"]);
    assert_eq!(s.peek("SEC").expect("peek").to_string(), "SEC-5");
    assert_eq!(s.peek("NEW").expect("peek").to_string(), "NEW-1");
    assert_eq!(
        s.counters().expect("counters"),
        BTreeMap::from([("GAP-OP".into(), 1), ("SEC".into(), 4)])
    );
    // A second handle (another process would do the same) sees the same counters.
    let again = Store::open(s.dir()).expect("open");
    assert_eq!(ids(&again.reserve("SEC", 1).expect("1")), ["SEC-5"]);
}

#[test]
fn zero_padding_and_allow_list_come_from_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        allow: Some(vec!["GAP-OP".into(), "SEC".into()]),
        width: BTreeMap::from([("GAP-OP".into(), 4)]),
    };
    let s = Store::create(dir.path(), config).expect("create");
    assert_eq!(
        ids(&s.reserve("GAP-OP", 2).expect("r")),
        ["GAP-OP-0001", "GAP-OP-0002"]
    );
    let err = s.reserve("TASK", 1).expect_err("not allowed");
    assert!(matches!(err.kind(), ErrorKind::UnknownPrefix { .. }));
    let msg = err.to_string();
    assert!(msg.contains("TASK") && msg.contains("GAP-OP, SEC"), "{msg}");
    // The config is a hand-editable YAML file.
    let text = fs::read_to_string(dir.path().join("config.yaml")).expect("config");
    assert!(text.contains("allow") && text.contains("GAP-OP"), "{text}");
}

#[test]
fn invalid_prefixes_and_ids_are_refused_with_reasons() {
    let (_d, s) = store();
    for bad in ["sec", "", "9A", "A_B"] {
        let err = s.reserve(bad, 1).expect_err(bad);
        assert!(
            matches!(err.kind(), ErrorKind::InvalidPrefix { .. }),
            "{err}"
        );
    }
    let err = s.reserve("SEC", 0).expect_err("zero");
    assert!(matches!(err.kind(), ErrorKind::EmptyReservation));
    let err = s.validate("SEC20").expect_err("no dash");
    assert!(matches!(err.kind(), ErrorKind::InvalidId { .. }), "{err}");
}

#[test]
fn validate_accepts_only_reserved_ids() {
    let (_d, s) = store();
    s.reserve("SEC", 20).expect("reserve");
    assert_eq!(s.validate("SEC-20").expect("reserved").number(), 20);
    assert!(s.validate("SEC-1").is_ok());
    for bad in ["SEC-21", "SEC-0", "OTHER-1"] {
        let err = s.validate(bad).expect_err(bad);
        let msg = err.to_string();
        assert!(matches!(err.kind(), ErrorKind::NotReserved { .. }), "{msg}");
        assert!(msg.contains("gapreg ids reserve"), "{msg}");
    }
    assert!(
        s.validate("SEC-21")
            .expect_err("x")
            .to_string()
            .contains("at 20")
    );
}

#[test]
fn missing_store_says_how_to_create_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Store::open(dir.path().join("nope")).expect_err("missing");
    assert!(matches!(err.kind(), ErrorKind::NoStore { .. }));
    assert!(err.to_string().contains("Store::create"), "{err}");
    let (_d, s) = store();
    let err = Store::create(s.dir(), Config::default()).expect_err("exists");
    assert!(matches!(err.kind(), ErrorKind::AlreadyExists { .. }));
}

#[test]
fn corrupt_log_is_reported_never_reset() {
    let (_d, s) = store();
    s.reserve("SEC", 5).expect("reserve");
    s.reserve("SEC", 5).expect("reserve");
    let log = s.dir().join("counters.log");
    let mut bytes = fs::read(&log).expect("read");
    // Line 2 (the first record, after the header) is "SEC 5 <crc>": make it "SEC 7".
    assert_eq!(&bytes[64..70], b"SEC 5 ");
    bytes[64 + 4] = b'7';
    fs::write(&log, &bytes).expect("damage");
    for err in [
        s.reserve("SEC", 1).expect_err("reserve"),
        s.peek("SEC").expect_err("peek"),
        s.validate("SEC-1").expect_err("validate"),
        s.raise("SEC", 100).expect_err("raise"),
    ] {
        assert!(matches!(err.kind(), ErrorKind::Corrupt { .. }), "{err}");
        assert!(err.is_corrupt());
        let msg = err.to_string();
        assert!(
            msg.contains("counters.log") && msg.contains("line 2"),
            "{msg}"
        );
    }
    assert_eq!(
        fs::read(&log).expect("read"),
        bytes,
        "a corrupt log must be left untouched"
    );
}

#[test]
fn interrupted_write_is_ignored_by_readers_and_overwritten_by_the_next_writer() {
    let (_d, s) = store();
    s.reserve("SEC", 3).expect("reserve");
    let log = s.dir().join("counters.log");
    let mut bytes = fs::read(&log).expect("read");
    // The beginning of a record in the next free slot (line 3), as a crash mid-write leaves.
    bytes[128..136].copy_from_slice(b"SEC 9 12");
    fs::write(&log, &bytes).expect("interrupted write");
    assert_eq!(s.peek("SEC").expect("peek").to_string(), "SEC-4");
    let report = s.verify().expect("verify");
    assert!(report.is_healthy(), "{report:?}");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == idreserve::FindingKind::InterruptedWrite),
        "{report:?}"
    );
    assert_eq!(ids(&s.reserve("SEC", 1).expect("reserve")), ["SEC-4"]);
    let text = fs::read_to_string(&log).expect("read");
    assert!(
        !text.contains("SEC 9"),
        "interrupted write not overwritten: {text:?}"
    );
    assert_eq!(
        text.lines()
            .nth(2)
            .map(str::trim_end)
            .map(|l| l.starts_with("SEC 4 ")),
        Some(true)
    );
    assert!(s.verify().expect("verify").findings.is_empty());
}

#[test]
fn long_logs_are_compacted_without_losing_counters() {
    let (_d, s) = store();
    for i in 0..1100u64 {
        s.reserve(if i % 2 == 0 { "A" } else { "B" }, 1)
            .expect("reserve");
    }
    let text = fs::read_to_string(s.dir().join("counters.log")).expect("read");
    assert!(text.lines().count() < 200, "log was not compacted");
    assert_eq!(
        s.counters().expect("counters"),
        BTreeMap::from([("A".into(), 550), ("B".into(), 550)])
    );
}

#[test]
fn init_from_documents_raises_counters_and_reports_where() {
    let (d, s) = store();
    let docs = d.path().join("docs");
    fs::create_dir_all(docs.join(".git")).expect("mkdir");
    fs::create_dir_all(docs.join("tasks")).expect("mkdir");
    fs::write(docs.join("tasks/a.md"), "SEC-12 and GAP-OP-1091, see SEC-7").expect("w");
    fs::write(docs.join("tasks/b.md"), "Refs: SEC-19.\n").expect("w");
    fs::write(docs.join(".git/ignored"), "SEC-999").expect("w");
    fs::write(docs.join("blob.bin"), b"\0SEC-500").expect("w");
    s.reserve("SEC", 25).expect("reserve");
    let report = s
        .init_from(std::slice::from_ref(&docs), None, false)
        .expect("init");
    let sec = &report["SEC"];
    assert_eq!(sec.highest.to_string(), "SEC-19");
    assert!(sec.file.ends_with("tasks/b.md"));
    assert_eq!(
        (sec.old_counter, sec.new_counter),
        (25, 25),
        "never lowered"
    );
    assert_eq!(report["GAP-OP"].new_counter, 1091);
    assert_eq!(s.peek("GAP-OP").expect("peek").to_string(), "GAP-OP-1092");
    assert_eq!(s.peek("SEC").expect("peek").to_string(), "SEC-26");
    // Forced, a counter may go down; and `only` restricts the prefixes.
    let only = ["SEC".to_owned()];
    let report = s.init_from(&[docs], Some(&only), true).expect("force");
    assert_eq!(report.keys().collect::<Vec<_>>(), ["SEC"]);
    assert_eq!(s.peek("SEC").expect("peek").to_string(), "SEC-20");
}

#[test]
fn lock_timeout_names_the_holder() {
    let (_d, s) = store();
    let mutex = leaselock::mutex::FileMutex::new(s.dir().join("counters.lock"));
    let _held = mutex.lock().expect("hold");
    let waiting = s
        .clone()
        .with_lock_timeout(std::time::Duration::from_millis(50));
    let err = std::thread::spawn(move || waiting.reserve("SEC", 1))
        .join()
        .expect("thread")
        .expect_err("must time out");
    assert!(matches!(err.kind(), ErrorKind::Lock(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("timed out") && msg.contains(&std::process::id().to_string()),
        "{msg}"
    );
}

#[test]
fn ids_have_one_canonical_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        allow: None,
        width: BTreeMap::from([("GAP-OP".into(), 4)]),
    };
    let s = Store::create(dir.path(), config).expect("create");
    s.reserve("GAP-OP", 12).expect("reserve");
    s.reserve("SEC", 12).expect("reserve");
    assert_eq!(
        s.validate("GAP-OP-0012").expect("padded").to_string(),
        "GAP-OP-0012"
    );
    assert_eq!(s.validate("SEC-12").expect("plain").to_string(), "SEC-12");
    for (text, canonical) in [
        ("GAP-OP-12", "GAP-OP-0012"),
        ("GAP-OP-00012", "GAP-OP-0012"),
        ("SEC-0012", "SEC-12"),
        ("SEC-01", "SEC-1"),
    ] {
        let err = s.validate(text).expect_err(text);
        assert!(
            matches!(err.kind(), ErrorKind::NotCanonical { canonical: c, .. } if c == canonical),
            "{text}: {err}"
        );
        assert!(err.to_string().contains(canonical), "{err}");
    }
    // Without a store, only the unpadded form parses.
    assert!("SEC-0001".parse::<idreserve::Id>().is_err());
    assert_eq!(
        idreserve::Id::parse_lenient("SEC-0001")
            .expect("lenient")
            .number(),
        1
    );
}

#[test]
fn raise_never_lowers_and_writes_one_record() {
    let (_d, s) = store();
    s.reserve("SEC", 5).expect("reserve");
    let log = s.dir().join("counters.log");
    let before = fs::read(&log).expect("log");
    let r = s.raise("SEC", 3).expect("lower is a no-op");
    assert_eq!((r.before, r.after, r.changed()), (5, 5, false));
    assert_eq!(fs::read(&log).expect("log"), before, "a no-op raise wrote");
    let r = s.raise("SEC", 40).expect("raise");
    assert_eq!((r.before, r.after, r.changed()), (5, 40, true));
    let after = fs::read(&log).expect("log");
    let changed: Vec<usize> = (0..after.len() / 64)
        .filter(|&i| after[64 * i..64 * (i + 1)] != before[64 * i..64 * (i + 1)])
        .collect();
    assert_eq!(changed, [2], "one record, in the next slot");
    assert_eq!(s.reserve("SEC", 1).expect("reserve").first(), 41);
    assert_eq!(s.raise("NEW", 7).expect("new prefix").before, 0);
    assert_eq!(s.peek("NEW").expect("peek").number(), 8);
}

#[test]
fn stores_open_and_create_through_a_directory_handle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = atomic_file::dir::Dir::create(dir.path().join(".gapreg")).expect("root");
    let err = Store::open_at(&root, "ids").expect_err("none yet");
    assert!(err.is_not_found(), "{err}");
    let s = Store::create_at(&root, "ids", Config::default()).expect("create");
    s.reserve("SEC", 2).expect("reserve");
    let again = Store::open_at(&root, "ids").expect("open");
    assert_eq!(again.peek("SEC").expect("peek").number(), 3);
    assert!(
        idreserve::verify_at(&root, "ids")
            .expect("verify")
            .findings
            .is_empty()
    );
    let err = Store::create_at(&root, "ids", Config::default()).expect_err("exists");
    assert!(
        matches!(err.kind(), ErrorKind::AlreadyExists { .. }),
        "{err}"
    );
}

#[test]
fn a_new_store_has_a_header_and_a_versioned_config() {
    let (_d, s) = store();
    let log = fs::read(s.dir().join("counters.log")).expect("log");
    assert!(log.starts_with(b"# idreserve counters v2 slots=64 crc32="));
    assert_eq!(log.len(), 64 * 65);
    assert_eq!(
        fs::read_to_string(s.dir().join("config.yaml")).expect("config"),
        "version: 2\n"
    );
    let report = s.verify().expect("verify");
    assert!(
        report.is_healthy() && report.findings.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.counters, Some(BTreeMap::new()));
}

#[test]
fn invalid_settings_are_refused_at_create() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (config, what) in [
        (
            Config {
                allow: Some(vec![]),
                width: BTreeMap::new(),
            },
            "allow",
        ),
        (
            Config {
                allow: None,
                width: BTreeMap::from([("SEC".into(), 0)]),
            },
            "width",
        ),
        (
            Config {
                allow: None,
                width: BTreeMap::from([("SEC".into(), 1 << 40)]),
            },
            "width",
        ),
    ] {
        let err = Store::create(dir.path().join("ids"), config).expect_err(what);
        assert!(
            matches!(err.kind(), ErrorKind::InvalidConfig { reason } if reason.contains(what)),
            "{err}"
        );
        assert!(err.is_invalid());
    }
    assert!(!dir.path().join("ids/counters.log").exists());
}
