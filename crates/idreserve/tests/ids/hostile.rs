//! Hostile paths: a store from a stranger's repository with symbolic links (to directories,
//! to files, dangling, relative and absolute), FIFOs, directories where files belong and files
//! where directories belong, at every path the store opens. Every operation returns (no hang)
//! with a clear error naming the path, or succeeds without following anything; nothing
//! outside the repository changes and the planted entry stays as it was.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use idreserve::{Config, ErrorKind, FindingKind, SkipReason, Store};

use crate::util::{Snapshot, mkfifo, snapshot, within};

/// The paths of a store, relative to its directory (`""` is the directory itself), and
/// whether a directory belongs there.
const PATHS: [(&str, bool); 8] = [
    ("", true),
    ("config.yaml", false),
    ("counters.log", false),
    ("counters.lock", false),
    ("counters.lock.queue", true),
    ("counters.lock.queue/waiters", false),
    ("counters.lock.queue/seq", false),
    ("counters.lock.queue/t-00000000000000000001", false),
];

#[derive(Debug, Clone, Copy)]
enum Plant {
    LinkToDir,
    LinkToFile,
    RelativeLinkToFile,
    Dangling,
    RelativeDangling,
    LinkToStore,
    Fifo,
    Directory,
    File,
}

const PLANTS: [Plant; 9] = [
    Plant::LinkToDir,
    Plant::LinkToFile,
    Plant::RelativeLinkToFile,
    Plant::Dangling,
    Plant::RelativeDangling,
    Plant::LinkToStore,
    Plant::Fifo,
    Plant::Directory,
    Plant::File,
];

/// A repository with a used store at `repo/ids`, and outside it a victim home directory
/// holding secrets and another store (the one a followed link would change).
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    victim: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let victim = root.join("home");
        fs::create_dir_all(victim.join(".ssh")).expect("victim");
        fs::write(victim.join(".ssh/id_ed25519"), "secret key\n").expect("write");
        fs::write(victim.join("notes.txt"), "SEC-999 is mine\n").expect("write");
        // Another store outside the repository, with its lock files in place.
        let other = Store::create(victim.join("ids"), Config::default()).expect("victim store");
        other.reserve("SEC", 7).expect("victim reserve");
        let store = root.join("repo/ids");
        let s = Store::create(&store, Config::default()).expect("store");
        s.reserve("SEC", 3).expect("reserve");
        World {
            _tmp: tmp,
            root,
            store,
            victim,
        }
    }

    /// Replaces `rel` (inside the store) with `plant`; returns the planted path.
    fn plant(&self, rel: &str, plant: Plant) -> PathBuf {
        let path = if rel.is_empty() {
            self.store.clone()
        } else {
            self.store.join(rel)
        };
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path).expect("rm dir"),
            Ok(_) => fs::remove_file(&path).expect("rm"),
            Err(_) => {}
        }
        let depth = path
            .strip_prefix(&self.root)
            .expect("inside")
            .components()
            .count();
        let up = "../".repeat(depth - 1);
        match plant {
            Plant::LinkToDir => symlink(self.victim.join(".ssh"), &path),
            Plant::LinkToFile => symlink(self.victim.join(".ssh/id_ed25519"), &path),
            Plant::RelativeLinkToFile => symlink(format!("{up}home/.ssh/id_ed25519"), &path),
            Plant::Dangling => symlink(self.victim.join("created-through-link"), &path),
            Plant::RelativeDangling => symlink(format!("{up}home/created-relative"), &path),
            Plant::LinkToStore => {
                let target = if rel.is_empty() {
                    self.victim.join("ids")
                } else {
                    self.victim.join("ids").join(rel)
                };
                symlink(target, &path)
            }
            Plant::Fifo => {
                mkfifo(&path);
                Ok(())
            }
            Plant::Directory => {
                fs::create_dir(&path).and_then(|()| fs::write(path.join("inside"), "x"))
            }
            Plant::File => fs::write(&path, "not a directory\n"),
        }
        .expect("plant");
        path
    }
}

/// The planted entry, as it is now: its type and (for a link) its target.
fn entry_state(path: &Path) -> (String, Option<PathBuf>) {
    let meta = fs::symlink_metadata(path).expect("planted entry still there");
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        "link"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "special"
    };
    (kind.into(), fs::read_link(path).ok())
}

/// Every operation of the store, each in its own thread with a time limit.
fn every_operation(
    store_dir: &Path,
    doc: &Path,
) -> Vec<(&'static str, Result<String, idreserve::Error>)> {
    let limit = Duration::from_secs(20);
    let mut out = Vec::new();
    let dir = store_dir.to_path_buf();
    out.push((
        "open",
        within(limit, "open", move || {
            Store::open(dir).map(|_| "opened".to_owned())
        }),
    ));
    let dir = store_dir.to_path_buf();
    out.push((
        "create",
        within(limit, "create", move || {
            Store::create(dir, Config::default()).map(|_| "created".to_owned())
        }),
    ));
    let dir = store_dir.to_path_buf();
    out.push((
        "verify",
        within(limit, "verify", move || {
            idreserve::verify(dir).map(|v| format!("{v:?}"))
        }),
    ));
    let Ok(store) = Store::open(store_dir) else {
        return out;
    };
    let store = store.with_lock_timeout(Duration::from_secs(5));
    type Op = fn(&Store, &Path) -> Result<String, idreserve::Error>;
    let ops: [(&'static str, Op); 8] = [
        ("reserve", |s, _| {
            s.reserve("SEC", 2).map(|r| r.first().to_string())
        }),
        ("raise", |s, _| {
            s.raise("SEC", 50).map(|r| r.after.to_string())
        }),
        ("peek", |s, _| s.peek("SEC").map(|id| id.to_string())),
        ("counters", |s, _| s.counters().map(|c| format!("{c:?}"))),
        ("validate", |s, _| {
            s.validate("SEC-1").map(|id| id.to_string())
        }),
        ("init_from", |s, doc| {
            s.init_from(&[doc.to_path_buf()], None, false)
                .map(|f| format!("{f:?}"))
        }),
        ("verify", |s, _| s.verify().map(|v| format!("{v:?}"))),
        ("remove_temp_files", |s, _| {
            s.remove_temp_files().map(|r| format!("{r:?}"))
        }),
    ];
    for (name, op) in ops {
        let (s, doc) = (store.clone(), doc.to_path_buf());
        out.push((name, within(limit, name, move || op(&s, &doc))));
    }
    out
}

#[test]
fn planted_entries_are_refused_never_followed() {
    let mut cases = 0;
    for (rel, dir_expected) in PATHS {
        for plant in PLANTS {
            let world = World::new();
            let doc = world.root.join("repo/doc.md");
            fs::write(&doc, "see SEC-20\n").expect("doc");
            let planted = world.plant(rel, plant);
            let before_victim: Snapshot = snapshot(&world.victim);
            let before_entry = entry_state(&planted);
            let label = format!(
                "{plant:?} at {:?}",
                if rel.is_empty() { "ids" } else { rel }
            );
            // An entry of the right type is not an attack on the path but ordinary damage
            // (garbage in a file, an empty directory): covered by the damage suite.
            let right_type = matches!(
                (dir_expected, plant),
                (true, Plant::Directory) | (false, Plant::File)
            );
            let mut refused = 0;
            for (op, result) in every_operation(&world.store, &doc) {
                match result {
                    Ok(_) => {}
                    Err(e) => {
                        refused += 1;
                        if std::env::var_os("IDRESERVE_SHOW").is_some() {
                            eprintln!("{label}: {op}: {e}");
                        }
                        let msg = e.to_string();
                        let names_it = matches!(
                            e.kind(),
                            ErrorKind::Corrupt { path, .. } if path == &planted
                        );
                        let acceptable = names_it
                            || (op == "create"
                                && matches!(e.kind(), ErrorKind::AlreadyExists { .. }))
                            || (right_type && matches!(e.kind(), ErrorKind::NoStore { .. }));
                        assert!(acceptable, "{label}: {op} failed without naming it: {msg}");
                    }
                }
            }
            assert!(right_type || refused > 0, "{label}: nothing noticed it");
            // verify reports what is wrong with the store, naming the entry.
            if let Ok(report) = idreserve::verify(&world.store) {
                assert!(
                    right_type
                        || report
                            .findings
                            .iter()
                            .any(|f| f.kind == FindingKind::Corrupt && f.path == planted),
                    "{label}: verify did not report it: {report:?}"
                );
            }
            assert_eq!(
                snapshot(&world.victim),
                before_victim,
                "{label}: something outside the repository changed"
            );
            assert!(
                !world.victim.join("created-through-link").exists(),
                "{label}"
            );
            assert!(!world.victim.join("created-relative").exists(), "{label}");
            assert_eq!(
                entry_state(&planted),
                before_entry,
                "{label}: the planted entry was replaced or removed"
            );
            cases += 1;
        }
    }
    assert_eq!(cases, PATHS.len() * PLANTS.len());
}

#[test]
fn a_planted_temp_file_link_is_left_alone() {
    let world = World::new();
    let before = snapshot(&world.victim);
    // Named like a temp file of a dead writer (pid 1 is never ours).
    let link = world.store.join(".counters.log.1-deadbeef.atomic-tmp");
    symlink(world.victim.join(".ssh/id_ed25519"), &link).expect("link");
    let store = Store::open(&world.store).expect("open");
    assert_eq!(
        store.remove_temp_files().expect("remove"),
        Vec::<PathBuf>::new()
    );
    assert!(fs::symlink_metadata(&link).is_ok(), "the link was removed");
    store.reserve("SEC", 1).expect("reserve");
    assert_eq!(snapshot(&world.victim), before);
}

#[test]
fn the_scan_never_follows_links_or_opens_fifos() {
    let world = World::new();
    let store = Store::open(&world.store).expect("open");
    let docs = world.root.join("repo/docs");
    fs::create_dir_all(docs.join("a/b")).expect("mkdir");
    fs::write(docs.join("a/tasks.md"), "- SEC-20 fix the thing\n").expect("doc");
    symlink(&world.victim, docs.join("home-link")).expect("dir link");
    symlink(world.victim.join("notes.txt"), docs.join("a/notes-link.md")).expect("file link");
    symlink("../../../home/notes.txt", docs.join("a/b/relative.md")).expect("relative link");
    symlink(world.victim.join("nothing"), docs.join("dangling.md")).expect("dangling");
    mkfifo(&docs.join("a/pipe.md"));
    let _socket = std::os::unix::net::UnixListener::bind(docs.join("sock.md")).expect("socket");
    // Deeper than the walk goes.
    let mut deep = docs.join("deep");
    for _ in 0..idreserve::MAX_DEPTH + 2 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).expect("deep");
    fs::write(deep.join("SEC.md"), "SEC-5000\n").expect("deep doc");
    let only = ["SEC".to_owned()];
    let report = within(Duration::from_secs(20), "init_from", {
        let (store, docs) = (store.clone(), docs.clone());
        move || store.init_from_report(&[docs], Some(&only), false)
    })
    .expect("scan");
    assert_eq!(report.found["SEC"].new_counter, 20, "{report:?}");
    let reasons: Vec<(String, SkipReason)> = report
        .skipped
        .iter()
        .map(|s| {
            let rel = s
                .path
                .strip_prefix(&docs)
                .expect("inside")
                .display()
                .to_string();
            (rel, s.reason)
        })
        .collect();
    for (rel, reason) in [
        ("home-link", SkipReason::Symlink),
        ("a/notes-link.md", SkipReason::Symlink),
        ("a/b/relative.md", SkipReason::Symlink),
        ("dangling.md", SkipReason::Symlink),
        ("a/pipe.md", SkipReason::Special),
        ("sock.md", SkipReason::Special),
    ] {
        assert!(
            reasons.iter().any(|(r, why)| r == rel && *why == reason),
            "{rel} not skipped as {reason:?}: {reasons:?}"
        );
    }
    assert!(
        reasons.iter().any(|(_, why)| *why == SkipReason::TooDeep),
        "{reasons:?}"
    );
    // A path given that is a link or a FIFO is refused, not followed or opened.
    for given in [docs.join("home-link"), docs.join("a/pipe.md")] {
        let err = within(Duration::from_secs(20), "init_from", {
            let (store, given) = (store.clone(), given.clone());
            move || store.init_from(&[given], None, false)
        })
        .expect_err("refused");
        assert!(
            matches!(err.kind(), ErrorKind::InvalidPath { path, .. } if *path == given),
            "{err}"
        );
    }
    assert_eq!(store.peek("SEC").expect("peek").to_string(), "SEC-21");
}
