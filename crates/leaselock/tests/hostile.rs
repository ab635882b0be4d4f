//! Hostile repositories: at every path leaselock opens (the `.gapreg` and `leases`
//! directories, the root mutex's lock file and queue, `token.json`, `generation`,
//! `index.json`, lease files, and a standalone `FileMutex`'s files), plant a symlink (to a
//! directory, to a file, dangling; relative and absolute), a FIFO, a directory where a file
//! belongs or a file where a directory belongs. Then run every operation. Nothing outside the
//! repository may change (a decoy directory is snapshotted before and after), nothing may hang
//! (every call runs under a watchdog), the planted entry is left as it was, and every refusal
//! is a damaged/unsafe error naming the entry.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use leaselock::lease::{Durability, LeaseError, LeaseOptions, LeaseRequest, Leases};
use leaselock::mutex::FileMutex;

const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `f` on another thread and fails the test if it does not return in time.
fn no_hang<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(value) => value,
        Err(_) => panic!("{what} hung for {WATCHDOG:?}"),
    }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Everything under `dir` (not following symlinks): kind, mode, owner, contents, link target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let ft = meta.file_type();
        let what = if ft.is_symlink() {
            format!(
                "link -> {}",
                fs::read_link(&path).expect("readlink").display()
            )
        } else if ft.is_dir() {
            for entry in fs::read_dir(&path).expect("list") {
                stack.push(entry.expect("entry").path());
            }
            "dir".to_owned()
        } else if ft.is_file() {
            format!("file {:?}", fs::read(&path).expect("read"))
        } else {
            "other".to_owned()
        };
        out.insert(
            path,
            format!("{what} mode {:o} uid {}", meta.mode(), meta.uid()),
        );
    }
    out
}

/// What to plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    LinkToDirAbs,
    LinkToDirRel,
    LinkToFileAbs,
    LinkToFileRel,
    DanglingAbs,
    DanglingRel,
    Fifo,
    /// A directory (with a file in it) where a file belongs.
    Dir,
    /// A regular file where a directory belongs.
    File,
}

const FILE_PLANTS: [Plant; 8] = [
    Plant::LinkToDirAbs,
    Plant::LinkToDirRel,
    Plant::LinkToFileAbs,
    Plant::LinkToFileRel,
    Plant::DanglingAbs,
    Plant::DanglingRel,
    Plant::Fifo,
    Plant::Dir,
];

const DIR_PLANTS: [Plant; 8] = [
    Plant::LinkToDirAbs,
    Plant::LinkToDirRel,
    Plant::LinkToFileAbs,
    Plant::LinkToFileRel,
    Plant::DanglingAbs,
    Plant::DanglingRel,
    Plant::Fifo,
    Plant::File,
];

/// A relative path from `from`'s directory to `to` (both absolute, inside one temp dir).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from_dir = from.parent().expect("parent");
    let common = from_dir
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in from_dir.components().skip(common) {
        rel.push("..");
    }
    for c in to.components().skip(common) {
        rel.push(c);
    }
    rel
}

struct World {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    decoy: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("repo");
        let decoy = tmp.path().join("home");
        fs::create_dir_all(&repo).expect("repo");
        fs::create_dir_all(decoy.join(".ssh")).expect("decoy");
        // Names leaselock would write, so that a followed link would find "its" files there.
        for name in [
            ".ssh/id_ed25519",
            "token.json",
            "generation",
            "index.json",
            "lock",
            "seq",
            "waiters",
            "7-agent.lease.json",
        ] {
            fs::write(decoy.join(name), format!("decoy {name}\n")).expect("decoy file");
        }
        World {
            _tmp: tmp,
            repo,
            decoy,
        }
    }

    fn plant(&self, at: &Path, plant: Plant) {
        if let Ok(meta) = fs::symlink_metadata(at) {
            if meta.is_dir() {
                fs::remove_dir_all(at).expect("clear");
            } else {
                fs::remove_file(at).expect("clear");
            }
        }
        let dir_target = self.decoy.clone();
        let file_target = self.decoy.join("token.json");
        let missing = self.decoy.join("missing");
        match plant {
            Plant::LinkToDirAbs => symlink(&dir_target, at),
            Plant::LinkToDirRel => symlink(relative(at, &dir_target), at),
            Plant::LinkToFileAbs => symlink(&file_target, at),
            Plant::LinkToFileRel => symlink(relative(at, &file_target), at),
            Plant::DanglingAbs => symlink(&missing, at),
            Plant::DanglingRel => symlink(relative(at, &missing), at),
            Plant::Fifo => {
                mkfifo(at);
                Ok(())
            }
            Plant::Dir => fs::create_dir(at).and_then(|()| fs::write(at.join("inside"), "x")),
            Plant::File => fs::write(at, "in the way"),
        }
        .expect("plant");
    }

    /// gapreg's layout (`.gapreg/leases`, two components under the root), so that a link at
    /// either is tried.
    fn opts() -> LeaseOptions {
        LeaseOptions::new()
            .leases_dir(".gapreg/leases")
            .durability(Durability::NoSync)
            .lock_timeout(Duration::from_secs(5))
    }

    /// A registry with one released and one held lease, so every file exists.
    fn populate(&self) {
        let leases = Leases::open_with(&self.repo, World::opts()).expect("open");
        let g = leases
            .acquire(&LeaseRequest::exclusive("old").file("gone"))
            .expect("acquire");
        leases.release(&g.lease).expect("release");
        leases
            .acquire(&LeaseRequest::exclusive("keeper").dir("kept"))
            .expect("acquire");
        leases.repair().expect("writes index.json");
    }

    fn leases_dir(&self) -> PathBuf {
        self.repo.join(".gapreg/leases")
    }
}

/// Every refusal must say the data is damaged or unsafe and name the planted entry.
fn assert_refusal(op: &str, err: &LeaseError, name: &str, case: &str) {
    assert!(
        err.is_damaged(),
        "{case}: {op}: not a damaged/unsafe error: {err}"
    );
    assert!(
        err.to_string().contains(name),
        "{case}: {op}: the error does not name {name}: {err}"
    );
}

/// Runs every lease operation once; returns which failed (each checked by `assert_refusal`).
fn every_operation(repo: &Path, name: &str, case: &str) -> Vec<&'static str> {
    let repo = repo.to_path_buf();
    let (name_owned, case_owned) = (name.to_owned(), case.to_owned());
    no_hang(case, move || {
        let (name, case) = (name_owned.as_str(), case_owned.as_str());
        let mut failed = Vec::new();
        let mut check = |op: &'static str, result: Result<(), LeaseError>| {
            if let Err(e) = result {
                assert_refusal(op, &e, name, case);
                failed.push(op);
            }
        };
        let leases = match Leases::open_with(&repo, World::opts()) {
            Ok(leases) => leases,
            Err(e) => {
                check("open", Err(e));
                return failed;
            }
        };
        check("list", leases.list().map(drop));
        check(
            "acquire",
            leases
                .acquire(&LeaseRequest::exclusive("newcomer").file("fresh/file"))
                .map(|g| {
                    let _ = leases.release(&g.lease);
                }),
        );
        let held = leases
            .list()
            .ok()
            .and_then(|l| l.leases.into_iter().find(|(l, _)| l.holder == "keeper"));
        if let Some((lease, _)) = held {
            check("renew", leases.renew(&lease).map(drop));
            check(
                "renew_id",
                leases.renew_id(&lease.id, "keeper", None).map(drop),
            );
            check("verify", leases.verify(&lease).map(drop));
        }
        check("sweep", leases.sweep().map(drop));
        check("sweep_forced", leases.sweep_forced().map(drop));
        check("check", leases.check().map(drop));
        check("repair", leases.repair().map(drop));
        if let Err(e) = leases.force_release("7-agent") {
            if !matches!(e.kind(), leaselock::lease::LeaseErrorKind::NotFound { .. }) {
                check("force_release", Err(e));
            }
        }
        failed
    })
}

fn run_case(world: &World, target: &Path, plant: Plant, must_fail: &[&str]) {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    let case = format!("{plant:?} at {}", target.display());
    world.plant(target, plant);
    let decoy_before = snapshot(&world.decoy);
    let planted_before = snapshot_entry(target);
    let failed = every_operation(&world.repo, &name, &case);
    assert_eq!(
        snapshot(&world.decoy),
        decoy_before,
        "{case}: something outside the repository changed"
    );
    assert_eq!(
        snapshot_entry(target),
        planted_before,
        "{case}: the planted entry was changed or removed"
    );
    for op in must_fail {
        assert!(
            failed.contains(op) || (failed.contains(&"open") && *op != "open"),
            "{case}: {op} succeeded through a planted entry (failed: {failed:?})"
        );
    }
}

/// The planted entry itself (not what it points to, and for a directory only its kind).
fn snapshot_entry(path: &Path) -> String {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            format!("link -> {:?}", fs::read_link(path).ok())
        }
        Ok(meta) => format!("{:?} {:o}", meta.file_type(), meta.mode()),
        Err(e) => format!("missing: {e}"),
    }
}

#[test]
fn planted_gapreg_and_leases_directories_are_refused() {
    for plant in DIR_PLANTS {
        for which in [".gapreg", ".gapreg/leases"] {
            let world = World::new();
            if which == ".gapreg/leases" {
                fs::create_dir(world.repo.join(".gapreg")).expect("mkdir");
            }
            run_case(&world, &world.repo.join(which), plant, &["open"]);
        }
    }
}

#[test]
fn planted_files_in_the_leases_directory_are_refused() {
    // (entry, operations that must refuse)
    let every = &[
        "list",
        "acquire",
        "sweep",
        "sweep_forced",
        "check",
        "repair",
    ][..];
    let cases: [(&str, &[&str]); 5] = [
        ("lock", every),
        ("token.json", &["acquire", "repair"]),
        ("generation", every),
        ("index.json", every),
        ("7-agent.lease.json", &["acquire", "force_release"]),
    ];
    for (entry, must_fail) in cases {
        for plant in FILE_PLANTS {
            let world = World::new();
            world.populate();
            run_case(&world, &world.leases_dir().join(entry), plant, must_fail);
        }
    }
}

#[test]
fn a_planted_lease_file_is_reported_and_blocks_until_a_person_removes_it() {
    let world = World::new();
    world.populate();
    let planted = world.leases_dir().join("7-agent.lease.json");
    world.plant(&planted, Plant::LinkToFileAbs);
    let leases = Leases::open_with(&world.repo, World::opts()).expect("open");
    let listing = leases.list().expect("list");
    assert_eq!(listing.corrupt.len(), 1, "{listing:?}");
    assert_eq!(listing.corrupt[0].path, planted);
    assert!(listing.corrupt[0].reason.contains("symbolic link"));
    assert_eq!(listing.leases.len(), 1, "the real lease is still listed");
    let report = leases.sweep_forced().expect("sweep");
    assert!(report.corrupt_removed.is_empty() && report.corrupt_kept.len() == 1);
    assert!(fs::symlink_metadata(&planted).is_ok(), "never removed");
    fs::remove_file(&planted).expect("a person removes it");
    leases
        .acquire(&LeaseRequest::exclusive("newcomer").file("fresh"))
        .expect("granted again");
}

#[test]
fn planted_queue_entries_are_refused_or_skipped() {
    let every = &["list", "acquire", "sweep", "check", "repair"][..];
    // The queue directory itself, and `waiters` (opened by every lock call's fast path).
    for (entry, plants, must_fail) in [
        ("lock.queue", &DIR_PLANTS[..], every),
        ("lock.queue/waiters", &FILE_PLANTS[..], every),
        // A ticket name that is not a regular file is not a ticket: skipped, never opened.
        (
            "lock.queue/t-00000000000000000001",
            &FILE_PLANTS[..],
            &[][..],
        ),
    ] {
        for &plant in plants {
            let world = World::new();
            world.populate();
            run_case(&world, &world.leases_dir().join(entry), plant, must_fail);
        }
    }
}

/// A standalone `FileMutex` (gapreg's `registry.lock`) with planted files, uncontended and
/// contended (the slow path opens `seq` and creates tickets).
#[test]
fn a_standalone_mutex_refuses_planted_entries() {
    for (entry, plants) in [
        ("registry.lock", &FILE_PLANTS[..]),
        ("registry.lock.queue", &DIR_PLANTS[..]),
        ("registry.lock.queue/waiters", &FILE_PLANTS[..]),
        ("registry.lock.queue/seq", &FILE_PLANTS[..]),
        (
            "registry.lock.queue/t-00000000000000000005",
            &FILE_PLANTS[..],
        ),
    ] {
        for &plant in plants {
            let world = World::new();
            let dir = world.repo.join(".gapreg");
            fs::create_dir(&dir).expect("mkdir");
            let lock = dir.join("registry.lock");
            drop(FileMutex::new(&lock).lock().expect("first use"));
            fs::write(
                dir.join("registry.lock.queue/seq"),
                "00000000000000000004\n",
            )
            .expect("seq");
            let target = world.repo.join(".gapreg").join(entry);
            world.plant(&target, plant);
            let case = format!("{plant:?} at {entry}");
            let name = target
                .file_name()
                .and_then(|n| n.to_str())
                .expect("name")
                .to_owned();
            let decoy = snapshot(&world.decoy);
            let before = snapshot_entry(&target);
            let lock_path = lock.clone();
            let outcomes = no_hang(&case, move || {
                let mutex = FileMutex::new(&lock_path);
                let mut outcomes = Vec::new();
                let first = mutex.lock_for(Duration::from_secs(5));
                // Contended: a second waiter (another thread) queues, which opens `seq` and
                // creates a ticket, while the first holds the lock.
                if first.is_ok() {
                    let other = mutex.clone();
                    let second = std::thread::spawn(move || {
                        other.lock_for(Duration::from_millis(300)).map(drop)
                    })
                    .join()
                    .expect("second waiter");
                    // Timing out is fine (the first still holds it); a refusal must name it.
                    if second.as_ref().is_err_and(|e| !e.is_contended()) {
                        outcomes.push(second);
                    }
                }
                outcomes.push(first.map(drop));
                outcomes
            });
            for outcome in outcomes {
                if let Err(e) = outcome {
                    assert!(e.is_damaged(), "{case}: not an unsafe error: {e}");
                    assert!(e.to_string().contains(&name), "{case}: {e}");
                }
            }
            assert_eq!(snapshot(&world.decoy), decoy, "{case}: the decoy changed");
            assert_eq!(snapshot_entry(&target), before, "{case}: the plant changed");
        }
    }
}

/// A mutex on a planted lock file is refused, never followed, for every kind of plant.
#[test]
fn a_planted_lock_file_is_never_locked_through() {
    for plant in FILE_PLANTS {
        let world = World::new();
        let lock = world.repo.join("registry.lock");
        world.plant(&lock, plant);
        let decoy = snapshot(&world.decoy);
        let path = lock.clone();
        let err = no_hang("lock", move || FileMutex::new(path).try_lock().map(drop))
            .expect_err("planted");
        assert!(err.is_damaged(), "{plant:?}: {err}");
        assert!(err.to_string().contains("registry.lock"), "{err}");
        assert_eq!(snapshot(&world.decoy), decoy, "{plant:?}");
    }
}

/// Root working in another user's repository leaves nothing that user cannot use: every
/// file and directory leaselock creates takes the directory's owner.
#[test]
fn root_creates_files_owned_by_the_directory_owner() {
    if rustix::process::geteuid().as_raw() != 0 {
        return; // Only root can act in another user's directory.
    }
    const OWNER: u32 = 4242;
    let world = World::new();
    std::os::unix::fs::chown(&world.repo, Some(OWNER), Some(OWNER)).expect("chown");
    let leases = Leases::open_with(&world.repo, World::opts()).expect("open");
    let g = leases
        .acquire(&LeaseRequest::exclusive("root").file("x"))
        .expect("acquire");
    leases.list().expect("list");
    leases.renew(&g.lease).expect("renew");
    leases.repair().expect("repair");
    // Contended, so the queue's files and a ticket are created too.
    let mutex = FileMutex::new(world.repo.join(".gapreg/registry.lock"));
    let held = mutex.lock().expect("lock");
    let waiter = {
        let mutex = mutex.clone();
        std::thread::spawn(move || mutex.lock().map(drop))
    };
    std::thread::sleep(Duration::from_millis(100));
    drop(held);
    waiter.join().expect("thread").expect("waiter");
    for (path, what) in snapshot(&world.repo.join(".gapreg")) {
        assert!(
            what.ends_with(&format!("uid {OWNER}")),
            "{} is not owned by the directory's owner: {what}",
            path.display()
        );
    }
}
