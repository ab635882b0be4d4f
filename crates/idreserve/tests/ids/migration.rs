//! Stores written by the first release (a `config.yaml` without `version`, a log of bare
//! lines without a header) are read as they are, migrated by the first writer under the lock
//! with every counter unchanged, and refused when any line is damaged. Also: a creation or a
//! migration that died halfway.

use std::fs;
use std::path::{Path, PathBuf};

use idreserve::{Config, ErrorKind, FindingKind, Store};

/// A first-release record line.
fn v1(prefix: &str, value: u64) -> String {
    let body = format!("{prefix} {value}");
    format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
}

fn first_release(config: &str, log: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ids");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("config.yaml"), config).expect("config");
    fs::write(dir.join("counters.log"), log).expect("log");
    (tmp, dir)
}

fn files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        fs::read(dir.join("config.yaml")).expect("config"),
        fs::read(dir.join("counters.log")).expect("log"),
    )
}

#[test]
fn a_first_release_store_is_read_then_migrated_by_the_first_writer() {
    let log = format!("{}{}{}", v1("SEC", 4), v1("GAP-OP", 1091), v1("SEC", 9));
    let config = "# who may reserve\nallow: [SEC, GAP-OP]\n";
    let (_t, dir) = first_release(config, &log);
    let before = files(&dir);
    let s = Store::open(&dir).expect("open");
    // Readers change nothing.
    assert_eq!(s.peek("SEC").expect("peek").to_string(), "SEC-10");
    assert!(s.validate("GAP-OP-1091").is_ok());
    let report = s.verify().expect("verify");
    assert!(report.is_healthy(), "{report:?}");
    assert_eq!(
        report
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::Legacy)
            .count(),
        2,
        "{report:?}"
    );
    assert_eq!(files(&dir), before, "a reader changed the store");
    // The first writer migrates: v2 log, counters unchanged, config gets its version.
    assert_eq!(s.reserve("SEC", 1).expect("reserve").first(), 10);
    let (config_after, log_after) = files(&dir);
    assert!(
        log_after.starts_with(b"# idreserve counters v2 "),
        "{log_after:?}"
    );
    assert_eq!(
        String::from_utf8(config_after).expect("text"),
        format!("version: 2\n{config}"),
        "the comment and settings are kept"
    );
    let reopened = Store::open(&dir).expect("reopen");
    assert_eq!(reopened.counters().expect("counters")["GAP-OP"], 1091);
    assert_eq!(reopened.counters().expect("counters")["SEC"], 10);
    assert!(reopened.verify().expect("verify").findings.is_empty());
    // Now a v2 store: an emptied log is damage, not "unused".
    fs::write(dir.join("counters.log"), "").expect("empty");
    let err = reopened.reserve("SEC", 1).expect_err("emptied");
    assert!(
        err.is_corrupt() && err.to_string().contains("empty"),
        "{err}"
    );
}

#[test]
fn a_no_op_writer_migrates_too() {
    let (_t, dir) = first_release("{}\n", &v1("SEC", 4));
    let s = Store::open(&dir).expect("open");
    assert!(!s.raise("SEC", 2).expect("raise").changed());
    let (config, log) = files(&dir);
    assert_eq!(config, b"version: 2\n");
    assert!(log.starts_with(b"# idreserve counters v2 "));
    assert_eq!(s.peek("SEC").expect("peek").number(), 5);
}

#[test]
fn an_unused_first_release_store_starts_at_one() {
    let (_t, dir) = first_release("{}\n", "");
    let s = Store::open(&dir).expect("open");
    assert_eq!(s.peek("SEC").expect("peek").number(), 1);
    assert_eq!(s.reserve("SEC", 1).expect("reserve").first(), 1);
    assert!(files(&dir).1.starts_with(b"# idreserve counters v2 "));
}

#[test]
fn a_damaged_first_release_log_is_corrupt_and_left_alone() {
    let good = format!("{}{}", v1("SEC", 4), v1("SEC", 9));
    for bad in [
        format!("{good}SEC 12 00"),     // a torn last line
        good.replace("SEC 9", "SEC 8"), // a changed value under the old checksum
        good.replace('\n', "\r\n"),     // CRLF
        format!("{good}\n"),            // an empty line
        "\u{0}garbage{{".to_owned(),    // garbage
        format!("# idreserve counters v2 slots=1 crc32=00000000\n{good}"), // a forged header
    ] {
        let (_t, dir) = first_release("{}\n", &bad);
        let before = files(&dir);
        let s = Store::open(&dir).expect("open");
        for err in [
            s.peek("SEC").expect_err("peek"),
            s.reserve("SEC", 1).expect_err("reserve"),
        ] {
            assert!(
                matches!(err.kind(), ErrorKind::Corrupt { path, .. } if path.ends_with("counters.log")),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(files(&dir), before, "{bad:?}: the store changed");
        assert!(!s.verify().expect("verify").is_healthy());
    }
}

#[test]
fn a_version_2_config_needs_a_header() {
    let (_t, dir) = first_release("version: 2\n", &v1("SEC", 4));
    let s = Store::open(&dir).expect("open");
    let err = s.reserve("SEC", 1).expect_err("no header");
    assert!(
        err.is_corrupt() && err.to_string().contains("header"),
        "{err}"
    );
}

#[test]
fn a_migration_that_died_before_the_config_is_finished() {
    // The log was rewritten, the config not yet.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ids");
    let s = Store::create(&dir, Config::default()).expect("create");
    s.reserve("SEC", 4).expect("reserve");
    fs::write(dir.join("config.yaml"), "{}\n").expect("first-release config");
    let s = Store::open(&dir).expect("open");
    assert_eq!(s.peek("SEC").expect("peek").number(), 5);
    assert_eq!(s.reserve("SEC", 1).expect("reserve").first(), 5);
    assert_eq!(files(&dir).0, b"version: 2\n");
}

#[test]
fn a_creation_that_died_before_the_config_is_finished_by_create() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ids");
    Store::create(&dir, Config::default()).expect("create");
    fs::remove_file(dir.join("config.yaml")).expect("as if it died");
    let err = Store::open(&dir).expect_err("no config");
    assert!(
        matches!(err.kind(), ErrorKind::Corrupt { path, .. } if path.ends_with("config.yaml")),
        "{err}"
    );
    let s = Store::create(&dir, Config::default()).expect("finish the creation");
    assert_eq!(s.reserve("SEC", 1).expect("reserve").first(), 1);
    // But a store with records is never created over.
    fs::remove_file(dir.join("config.yaml")).expect("remove");
    let err = Store::create(&dir, Config::default()).expect_err("exists");
    assert!(
        matches!(err.kind(), ErrorKind::AlreadyExists { .. }),
        "{err}"
    );
    // Nor one whose config exists without its log.
    fs::write(dir.join("config.yaml"), "version: 2\n").expect("config");
    fs::remove_file(dir.join("counters.log")).expect("remove log");
    let err = Store::create(&dir, Config::default()).expect_err("exists");
    assert!(
        matches!(err.kind(), ErrorKind::AlreadyExists { .. }),
        "{err}"
    );
    let err = Store::open(&dir).expect_err("no log");
    assert!(
        matches!(err.kind(), ErrorKind::Corrupt { path, reason } if path.ends_with("counters.log") && reason.contains("missing")),
        "{err}"
    );
}
