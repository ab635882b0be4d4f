//! The damage suite: every file the store writes, truncated at every byte offset, zero-filled,
//! bit-flipped (every bit of the log), replaced with garbage and removed. Every case must end
//! in a `Corrupt` error naming the damaged file, or in a correct result — never in an ID that
//! was handed out before the damage.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use idreserve::{Config, ErrorKind, FindingKind, Store};

const PREFIXES: [&str; 2] = ["SEC", "GAP-OP"];

/// A store with some history, the IDs it handed out, and its files as they were.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    handed: BTreeMap<String, BTreeSet<u64>>,
    counters: BTreeMap<String, u64>,
    files: Vec<(&'static str, Vec<u8>)>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ids");
        let config = Config {
            allow: Some(PREFIXES.iter().map(|p| p.to_string()).collect()),
            width: BTreeMap::from([("GAP-OP".to_owned(), 4)]),
        };
        let store = Store::create(&dir, config).expect("create");
        let mut handed: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for (prefix, count) in [("SEC", 3), ("GAP-OP", 2), ("SEC", 1), ("GAP-OP", 5)] {
            let r = store.reserve(prefix, count).expect("reserve");
            handed
                .entry(prefix.into())
                .or_default()
                .extend(r.first()..=r.last());
        }
        let counters = store.counters().expect("counters");
        let files = ["counters.log", "config.yaml", "counters.lock"]
            .into_iter()
            .map(|name| (name, fs::read(dir.join(name)).expect("read")))
            .collect();
        Fixture {
            _tmp: tmp,
            dir,
            handed,
            counters,
            files,
        }
    }

    fn pristine(&self, name: &str) -> Vec<u8> {
        self.files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.clone())
            .expect("known file")
    }

    /// Puts every file back as it was.
    fn restore(&self) {
        for (name, bytes) in &self.files {
            let path = self.dir.join(name);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&path).expect("rm dir");
            }
            put(&path, bytes);
        }
    }

    /// Writes `bytes` as `name` (or removes it for `None`), runs `check`, restores.
    fn with(&self, name: &str, bytes: Option<&[u8]>, label: &str, ops: Ops) {
        let path = self.dir.join(name);
        match bytes {
            Some(bytes) => put(&path, bytes),
            None => fs::remove_file(&path).expect("remove"),
        }
        self.check(name, label, ops);
        self.restore();
    }

    /// Runs the operations on the damaged store: each must be a Corrupt error naming `name`,
    /// or correct; no ID handed out before may come back.
    fn check(&self, name: &str, label: &str, ops: Ops) {
        let ctx = |what: &str| format!("{name}, {label}: {what}");
        let corrupt = |e: &idreserve::Error, what: &str| {
            assert!(
                matches!(e.kind(), ErrorKind::Corrupt { path, .. } if path.ends_with(name)),
                "{}: expected Corrupt naming {name}, got {e}",
                ctx(what)
            );
        };
        let store = match Store::open(&self.dir) {
            Ok(store) => store,
            Err(e) => {
                corrupt(&e, "open");
                self.verify_reports(name, label);
                return;
            }
        };
        let mut any_corrupt = false;
        match store.counters() {
            Ok(c) => assert_eq!(c, self.counters, "{}", ctx("counters")),
            Err(e) => {
                corrupt(&e, "counters");
                any_corrupt = true;
            }
        }
        if ops == Ops::All {
            for prefix in PREFIXES {
                match store.peek(prefix) {
                    Ok(id) => assert_eq!(id.number(), self.counters[prefix] + 1, "{}", ctx("peek")),
                    Err(e) => {
                        corrupt(&e, "peek");
                        any_corrupt = true;
                    }
                }
            }
            match store.validate("SEC-1") {
                Ok(id) => assert_eq!(id.number(), 1),
                Err(e) => {
                    corrupt(&e, "validate");
                    any_corrupt = true;
                }
            }
            match store.raise("SEC", 2) {
                Ok(r) => assert_eq!(r.after, self.counters["SEC"], "{}", ctx("raise")),
                Err(e) => {
                    corrupt(&e, "raise");
                    any_corrupt = true;
                }
            }
        }
        for prefix in PREFIXES {
            match store.reserve(prefix, 1) {
                Ok(r) => {
                    assert!(
                        !self.handed[prefix].contains(&r.first()),
                        "{}: {prefix}-{} handed out again",
                        ctx("reserve"),
                        r.first()
                    );
                    assert_eq!(r.first(), self.counters[prefix] + 1, "{}", ctx("reserve"));
                }
                Err(e) => {
                    corrupt(&e, "reserve");
                    any_corrupt = true;
                }
            }
            if ops == Ops::Few {
                break;
            }
        }
        if any_corrupt {
            self.verify_reports(name, label);
        }
    }

    /// `verify` reports the damage, naming the file.
    fn verify_reports(&self, name: &str, label: &str) {
        let report = idreserve::verify(&self.dir).expect("verify");
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.kind == FindingKind::Corrupt && f.path.ends_with(name)),
            "{name}, {label}: verify did not report it: {report:?}"
        );
    }
}

/// Writes `bytes` over `path` in place (creating it if needed): truncating a file to zero
/// and writing it again makes ext4 flush it on close, which would make this suite slow.
fn put(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open to damage");
    file.write_all_at(bytes, 0).expect("write");
    file.set_len(bytes.len() as u64).expect("set length");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ops {
    /// Open, counters and one reservation.
    Few,
    /// Every operation.
    All,
}

fn truncations(fx: &Fixture, name: &str, ops: Ops) {
    let good = fx.pristine(name);
    for len in 0..good.len() {
        fx.with(
            name,
            Some(&good[..len]),
            &format!("cut to {len} bytes"),
            ops,
        );
    }
}

fn garbage_cases(len: usize) -> Vec<(String, Vec<u8>)> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut cases = vec![
        ("NUL garbage".to_owned(), b"\x00garbage{{".to_vec()),
        ("empty".to_owned(), Vec::new()),
        ("zeros".to_owned(), vec![0; len]),
        ("one newline".to_owned(), b"\n".to_vec()),
        ("text".to_owned(), b"SEC 999\n".to_vec()),
    ];
    for i in 0..8 {
        let n = if i % 2 == 0 {
            len
        } else {
            rng.usize(1..2 * len)
        };
        cases.push((
            format!("random {n} bytes"),
            std::iter::repeat_with(|| rng.u8(..)).take(n).collect(),
        ));
    }
    cases
}

#[test]
fn counters_log_truncated_at_every_offset_is_corrupt() {
    let fx = Fixture::new();
    truncations(&fx, "counters.log", Ops::Few);
}

#[test]
fn counters_log_every_single_bit_flip_is_corrupt() {
    let fx = Fixture::new();
    let good = fx.pristine("counters.log");
    let path = fx.dir.join("counters.log");
    // One handle for all (the config is not damaged here), so the loop stays fast.
    let store = Store::open(&fx.dir).expect("open");
    let used = 64 * (2 + fx.counters.len() + 4);
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        put(&path, &bad);
        for err in [
            store.counters().map(drop).expect_err("counters"),
            store.reserve("SEC", 1).map(drop).expect_err("reserve"),
        ] {
            assert!(
                matches!(err.kind(), ErrorKind::Corrupt { path, .. } if path.ends_with("counters.log")),
                "bit {bit}: {err}"
            );
        }
        // verify for every bit of the header, the records and the first free slots; for a
        // sample of the other free slots' bits (they are all alike).
        if bit / 8 < used || bit % 61 == 0 {
            fx.verify_reports("counters.log", &format!("bit {bit}"));
        }
        assert_eq!(
            fs::read(&path).expect("read"),
            bad,
            "bit {bit}: damaged log changed"
        );
    }
    put(&path, &good);
    assert_eq!(store.counters().expect("restored"), fx.counters);
}

#[test]
fn counters_log_zero_filled_garbage_and_removed_is_corrupt() {
    let fx = Fixture::new();
    let good = fx.pristine("counters.log");
    // Zeros over each line, each 512-byte block, and from every line to the end.
    for start in (0..good.len()).step_by(64) {
        for len in [64, 512, good.len() - start] {
            let mut bad = good.clone();
            let end = (start + len).min(good.len());
            bad[start..end].fill(0);
            fx.with(
                "counters.log",
                Some(&bad),
                &format!("zeros {start}..{end}"),
                Ops::All,
            );
        }
    }
    for (label, bad) in garbage_cases(good.len()) {
        fx.with("counters.log", Some(&bad), &label, Ops::All);
    }
    // Line endings converted (a checkout with core.autocrlf), a file doubled (a bad merge).
    let crlf: Vec<u8> = good
        .iter()
        .flat_map(|&b| {
            if b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![b]
            }
        })
        .collect();
    fx.with("counters.log", Some(&crlf), "CRLF", Ops::All);
    fx.with(
        "counters.log",
        Some(&[good.clone(), good.clone()].concat()),
        "doubled",
        Ops::All,
    );
    // A record's slot set free before others: a hole.
    // (Setting the last record's slot free again by hand gives exactly an older, valid log:
    // like restoring an old backup, it cannot be told from the real thing. No single fault
    // does that: it takes rewriting 63 bytes with dots.)
    let mut hole = good.clone();
    hole[64..127].fill(b'.');
    fx.with(
        "counters.log",
        Some(&hole),
        "first record freed (a hole)",
        Ops::All,
    );
    fx.with("counters.log", None, "removed", Ops::All);
}

/// A damaged `config.yaml`: opening fails with Corrupt naming it, or the store opens with
/// the settings the damaged text says, and no reservation reissues an ID (the counters do not
/// depend on the config). The config is edited by hand, so it has no checksum: a flip of `4`
/// to `5` in a width, or a cut at a line end that drops the last allow-list entry, is another
/// valid config.
fn config_case(fx: &Fixture, bad: &[u8], label: &str) {
    put(&fx.dir.join("config.yaml"), bad);
    match Store::open(&fx.dir) {
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::Corrupt { path, .. } if path.ends_with("config.yaml")),
            "{label}: {e}"
        ),
        Ok(store) => {
            for prefix in PREFIXES {
                match store.reserve(prefix, 1) {
                    Ok(r) => {
                        assert!(
                            !fx.handed[prefix].contains(&r.first()),
                            "{label}: {prefix}-{} handed out again",
                            r.first()
                        );
                        assert_eq!(r.first(), fx.counters[prefix] + 1, "{label}");
                    }
                    // The damage renamed or dropped a prefix of the allow-list.
                    Err(e) => assert!(
                        matches!(e.kind(), ErrorKind::UnknownPrefix { .. }),
                        "{label}: {e}"
                    ),
                }
            }
        }
    }
    fx.restore();
}

#[test]
fn config_yaml_damage_is_corrupt_or_harmless() {
    let fx = Fixture::new();
    let good = fx.pristine("config.yaml");
    let text = String::from_utf8(good.clone()).expect("text");
    assert!(text.starts_with("version: 2\n"), "{text}");
    for len in 0..good.len() {
        config_case(&fx, &good[..len], &format!("cut to {len}"));
    }
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        config_case(&fx, &bad, &format!("bit {bit} flipped"));
    }
    // Empty, zeros, garbage: never the defaults.
    for (label, bad) in garbage_cases(good.len()) {
        fx.with("config.yaml", Some(&bad), &label, Ops::All);
    }
    fx.with("config.yaml", None, "removed", Ops::All);
}

#[test]
fn lock_files_damage_is_harmless() {
    let fx = Fixture::new();
    // The lock file only holds an informational holder record; the queue's `seq` a ticket
    // number that is recomputed when damaged.
    let lock = fx.pristine("counters.lock");
    for len in (0..lock.len()).step_by(7) {
        fx.with(
            "counters.lock",
            Some(&lock[..len]),
            &format!("cut to {len}"),
            Ops::Few,
        );
    }
    for (label, bad) in garbage_cases(lock.len()) {
        fx.with("counters.lock", Some(&bad), &label, Ops::Few);
    }
    fx.with("counters.lock", None, "removed", Ops::Few);
    let seq = Path::new("counters.lock.queue").join("seq");
    let seq = seq.to_str().expect("utf-8");
    for (label, bad) in garbage_cases(20) {
        put(&fx.dir.join(seq), &bad);
        fx.check(seq, &label, Ops::Few);
        fx.restore();
    }
}
