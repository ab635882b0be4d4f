//! Unit tests of the mutex within one process (threads); multi-process tests live in
//! `tests/mutex.rs`.

use super::*;
use std::fs;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn tickets(mutex: &FileMutex) -> Vec<u64> {
    let mut numbers: Vec<u64> = fs::read_dir(mutex.inner.queue_dir())
        .expect("queue dir")
        .filter_map(|e| files::parse_ticket_name(&e.expect("entry").file_name()))
        .collect();
    numbers.sort_unstable();
    numbers
}

/// Tickets whose owner still holds them (a waiter that acquired leaves its ticket unlocked for
/// the next waiter to remove; those do not count).
fn live_tickets(mutex: &FileMutex) -> Vec<u64> {
    tickets(mutex)
        .into_iter()
        .filter(|&n| {
            let path = mutex.inner.queue_dir().join(format!("t-{n:020}"));
            fs::File::open(path).is_ok_and(|f| {
                !os_lock::lock(&f, Mode::Shared, Wait::Never).expect("try the ticket's lock")
            })
        })
        .collect()
}

/// Waits (without a time limit: the test harness has one) until `cond` holds.
fn wait_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn network_file_systems_are_recognised_by_magic() {
    for (magic, name) in [
        (0x6969, "NFS"),
        (0x517B, "SMB"),
        (0xFF53_4D42, "CIFS"),
        (0xFE53_4D42, "SMB2"),
        (0x5346_414F, "AFS"),
        (0x6B41_4653, "AFS"),
        (0x00C3_6400, "CephFS"),
        (0x0102_1997, "9P"),
    ] {
        assert_eq!(
            atomic_file::lock::network_fs_name(magic),
            Some(name),
            "{magic:#x}"
        );
    }
    // ext4, tmpfs, btrfs, xfs, overlayfs, zfs: local.
    for magic in [
        0xEF53,
        0x0102_1994,
        0x9123_683E,
        0x5846_5342,
        0x794C_7630,
        0x2FC1_2FC1,
    ] {
        assert_eq!(
            atomic_file::lock::network_fs_name(magic),
            None,
            "{magic:#x}"
        );
    }
}

#[test]
fn the_temp_dir_is_not_a_network_file_system() {
    let dir = temp();
    let file = fs::File::open(dir.path()).expect("open");
    assert_eq!(atomic_file::lock::network_fs(&file).expect("fstatfs"), None);
}

#[test]
fn ticket_names_parse_strictly() {
    let name = |s: &str| files::parse_ticket_name(std::ffi::OsStr::new(s));
    assert_eq!(name("t-00000000000000000042"), Some(42));
    assert_eq!(name("t-42"), None);
    assert_eq!(name("t-0000000000000000004x"), None);
    assert_eq!(name("tmp-1-00000000000000000042"), None);
    assert_eq!(name("waiters"), None);
}

#[test]
fn holder_record_round_trips_and_is_fixed_size() {
    let bytes = holder::record(Mode::Shared);
    assert_eq!(bytes.len(), holder::RECORD_LEN);
    let h = holder::parse(&bytes).expect("parses");
    assert_eq!(h.pid, std::process::id());
    assert_eq!(h.host, holder::host_name());
    assert!(h.shared);
    assert!(
        !holder::parse(&holder::record(Mode::Exclusive))
            .expect("parses")
            .shared
    );
    // A torn or foreign file names no holder.
    assert_eq!(holder::parse(&bytes[..20]), None);
    assert_eq!(holder::parse(b""), None);
    assert_eq!(holder::parse(b"not json\n{}"), None);
    assert!(h.to_string().contains(&format!("pid {}", h.pid)));
}

#[test]
fn record_is_the_serde_form() {
    for (mode, name) in [(Mode::Shared, "shared"), (Mode::Exclusive, "exclusive")] {
        let bytes = holder::record(mode);
        let line = bytes.split(|&b| b == b'\n').next().expect("a line");
        let record: holder::Record = serde_json::from_slice(line).expect("valid JSON");
        assert_eq!(record.pid, std::process::id());
        assert_eq!(record.host, holder::host_name());
        assert_eq!(record.mode, name);
        assert!(bytes[line.len() + 1..].iter().all(|&b| b == b' '));
    }
}

#[test]
fn lock_creates_files_and_writes_the_holder() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let guard = mutex.lock().expect("lock");
    assert!(!guard.is_shared());
    assert_eq!(guard.path(), mutex.path());
    assert!(mutex.inner.queue_dir().is_dir());
    let h = mutex.inner.read_holder().expect("holder record");
    assert_eq!((h.pid, h.shared), (std::process::id(), false));
    drop(guard);
    // Uncontended: no tickets were taken.
    assert!(tickets(&mutex).is_empty());
}

#[test]
fn try_lock_is_busy_while_held_and_free_after() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let guard = mutex.try_lock().expect("free");
    let other = FileMutex::new(dir.path().join("a.lock"));
    let err = other.try_lock().expect_err("held");
    assert!(matches!(err.kind(), MutexErrorKind::Busy));
    assert!(err.is_contended());
    assert_eq!(err.path(), mutex.path());
    assert!(err.to_string().contains("a.lock"), "{err}");
    assert!(matches!(
        other.try_lock_shared().expect_err("held").kind(),
        MutexErrorKind::Busy
    ));
    guard.unlock().expect("unlock");
    let _guard = other.try_lock().expect("free again");
}

#[test]
fn shared_holders_coexist_and_exclude_writers() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let r1 = mutex.lock_shared().expect("shared");
    let r2 = mutex
        .try_lock_shared()
        .expect("second shared, same thread, no wait");
    assert!(r1.is_shared() && r2.is_shared());
    let other = mutex.clone();
    std::thread::spawn(move || {
        let r3 = other
            .lock_shared_for(Duration::from_secs(60))
            .expect("third");
        let err = other.try_lock().expect_err("readers hold it");
        assert!(matches!(err.kind(), MutexErrorKind::Busy));
        drop(r3);
    })
    .join()
    .expect("thread");
    drop((r1, r2));
    let _guard = mutex.try_lock().expect("all readers gone");
}

#[test]
fn waiting_again_on_the_same_thread_is_an_error_not_a_deadlock() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let guard = mutex.lock().expect("lock");
    // Another FileMutex on the same file, by another path spelling: still detected.
    let again = FileMutex::new(dir.path().join(".").join("a.lock"));
    for result in [
        again.lock(),
        again.lock_for(Duration::from_secs(3600)),
        again.lock_shared(),
        again.lock_shared_for(Duration::from_secs(3600)),
    ] {
        let err = result.expect_err("would deadlock");
        assert!(matches!(err.kind(), MutexErrorKind::WouldDeadlock), "{err}");
        assert!(!err.is_contended());
    }
    // A try cannot deadlock; it just reports what it sees.
    assert!(matches!(
        again.try_lock().expect_err("held").kind(),
        MutexErrorKind::Busy
    ));
    drop(guard);
    let _guard = again.lock().expect("released");
}

#[test]
fn threads_with_their_own_guards_exclude_each_other() {
    // flock belongs to the open file description: every guard opens (or reuses an idle) one of
    // its own, so threads of one process exclude each other like processes do.
    let dir = temp();
    let counter = dir.path().join("counter");
    fs::write(&counter, "0").expect("init");
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            // Half share one FileMutex through clones, half have their own.
            let mutex = if i % 2 == 0 {
                mutex.clone()
            } else {
                FileMutex::new(mutex.path())
            };
            let counter = counter.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let _guard = mutex.lock().expect("lock");
                    let n: u64 = fs::read_to_string(&counter)
                        .expect("read")
                        .parse()
                        .expect("number");
                    std::thread::yield_now();
                    fs::write(&counter, (n + 1).to_string()).expect("write");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(fs::read_to_string(&counter).expect("read"), "400");
    assert!(live_tickets(&mutex).is_empty(), "{:?}", tickets(&mutex));
    assert!(tickets(&mutex).len() <= 1, "{:?}", tickets(&mutex));
}

#[test]
fn a_guard_can_move_to_another_thread_and_unlock_there() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let guard = mutex.lock().expect("lock");
    std::thread::spawn(move || drop(guard))
        .join()
        .expect("thread");
    let _guard = mutex.try_lock().expect("released by the other thread");
}

#[test]
fn timeout_names_the_holder_and_leaves_no_ticket() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let guard = mutex.lock().expect("lock");
    let other = mutex.clone();
    let err = std::thread::spawn(move || other.lock_for(Duration::from_millis(30)))
        .join()
        .expect("thread")
        .expect_err("held");
    match err.kind() {
        MutexErrorKind::Timeout {
            waited,
            holder: Some(h),
        } => {
            assert!(*waited >= Duration::from_millis(30));
            assert_eq!((h.pid, h.shared), (std::process::id(), false));
            assert_eq!(h.host, holder::host_name());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(err.to_string().contains("held by pid"), "{err}");
    drop(guard);
    // The timed-out waiter's helper kept its place in the queue; at its turn it releases the
    // lock at once, and then nothing is left behind: no ticket, no registration.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let _guard = loop {
        match mutex.try_lock() {
            Ok(guard) => break guard,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(matches!(e.kind(), MutexErrorKind::Busy), "{e}");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("the abandoned waiter never let go: {e}"),
        }
    };
    assert_eq!(live_tickets(&mutex), Vec::<u64>::new());
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn shared_timeout_while_a_writer_holds_it() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let _guard = mutex.lock().expect("lock");
    let other = mutex.clone();
    let err = std::thread::spawn(move || other.lock_shared_for(Duration::ZERO))
        .join()
        .expect("thread")
        .expect_err("held");
    assert!(matches!(err.kind(), MutexErrorKind::Timeout { .. }));
}

#[test]
fn lock_for_succeeds_when_released_in_time() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let guard = mutex.lock().expect("lock");
    let other = mutex.clone();
    let waiter = std::thread::spawn(move || other.lock_for(Duration::from_secs(3600)).map(drop));
    wait_until(|| tickets(&mutex).len() == 1);
    drop(guard);
    waiter.join().expect("thread").expect("got it");
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let guard = mutex.lock().expect("lock");
    let mut threads = Vec::new();
    // Mixed modes: 1 W, 2 R, 3 R, 4 W, 5 R.
    for (i, shared) in [(1, false), (2, true), (3, true), (4, false), (5, true)] {
        let (waiter, order) = (mutex.clone(), order.clone());
        threads.push(std::thread::spawn(move || {
            let guard = if shared {
                waiter.lock_shared()
            } else {
                waiter.lock()
            }
            .expect("lock");
            order.lock().expect("order").push(i);
            // Hold long enough that a reader behind a writer would show up out of order.
            std::thread::sleep(Duration::from_millis(5));
            drop(guard);
        }));
        // The next thread starts only once this one has queued.
        wait_until(|| tickets(&mutex).len() == i);
    }
    drop(guard);
    for t in threads {
        t.join().expect("thread");
    }
    let order = order.lock().expect("order").clone();
    // 2 and 3 are readers side by side, so they may record in either order; the rest is fixed.
    assert_eq!(order[0], 1, "{order:?}");
    assert_eq!(
        {
            let mut mid = order[1..3].to_vec();
            mid.sort_unstable();
            mid
        },
        [2, 3],
        "{order:?}"
    );
    assert_eq!(order[3..], [4, 5], "{order:?}");
}

#[test]
fn try_lock_does_not_overtake_a_queued_waiter() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let guard = mutex.lock().expect("lock");
    let release = std::sync::Arc::new(Barrier::new(2));
    let (other, barrier) = (mutex.clone(), release.clone());
    let waiter = std::thread::spawn(move || {
        let guard = other.lock().expect("lock");
        barrier.wait();
        drop(guard);
    });
    wait_until(|| tickets(&mutex).len() == 1);
    // The lock is held and someone is queued: Busy, before and after the hand-over.
    assert!(matches!(
        mutex.try_lock().expect_err("queued").kind(),
        MutexErrorKind::Busy
    ));
    drop(guard);
    // The waiter now holds it (or is about to): still Busy until it lets go.
    assert!(mutex.try_lock().is_err());
    release.wait();
    waiter.join().expect("thread");
    let _guard = mutex.try_lock().expect("free");
}

#[test]
fn a_dead_waiters_ticket_is_skipped_and_removed() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let guard = mutex.lock().expect("lock");
    // A ticket nobody holds locked: its waiter died (no lock on it).
    let dead = mutex.inner.queue_dir().join(format!("t-{:020}", 1));
    fs::write(&dead, "").expect("dead ticket");
    let other = mutex.clone();
    let waiter = std::thread::spawn(move || other.lock().map(drop));
    // The waiter took ticket 2 (1 is taken), found 1 dead and removed it, and queued for the
    // lock itself.
    wait_until(|| tickets(&mutex) == [2]);
    assert!(!dead.exists());
    drop(guard);
    waiter.join().expect("thread").expect("got it");
    // Having acquired, the waiter left its ticket unlocked for the next one to remove.
    assert!(live_tickets(&mutex).is_empty());
    assert!(
        tickets(&mutex).iter().all(|&n| n == 2),
        "{:?}",
        tickets(&mutex)
    );
}

#[test]
fn a_damaged_counter_continues_after_the_queued_tickets() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let guard = mutex.lock().expect("lock");
    fs::write(mutex.inner.queue_dir().join(format!("t-{:020}", 7)), "").expect("ticket");
    fs::write(mutex.inner.queue_dir().join("seq"), "garbage").expect("seq");
    let other = mutex.clone();
    let waiter = std::thread::spawn(move || other.lock().map(drop));
    wait_until(|| tickets(&mutex) == [8]);
    drop(guard);
    waiter.join().expect("thread").expect("got it");
    let seq = fs::read_to_string(mutex.inner.queue_dir().join("seq")).expect("seq");
    assert_eq!(seq.trim().parse::<u64>().expect("number"), 8);
}

#[test]
fn a_missing_directory_is_an_io_error() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("missing").join("a.lock"));
    let err = mutex.lock().expect_err("no directory");
    match err.kind() {
        MutexErrorKind::Io { step, source } => {
            assert_eq!(*step, Step::OpenLock);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.io_error().is_some());
    assert!(std::error::Error::source(&err).is_some());
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn a_directory_as_lock_file_is_refused_as_unsafe() {
    let dir = temp();
    fs::create_dir(dir.path().join("a.lock")).expect("a directory in the way");
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let err = mutex.try_lock().expect_err("a directory");
    assert!(
        matches!(err.kind(), MutexErrorKind::Unsafe { .. }) && err.is_damaged(),
        "{err}"
    );
    assert!(err.to_string().contains("a directory"), "{err}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn a_blocked_queue_directory_is_refused_as_unsafe() {
    let dir = temp();
    fs::write(dir.path().join("a.lock.queue"), "in the way").expect("blocker");
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let err = mutex.lock().expect_err("queue dir is a file");
    assert!(matches!(err.kind(), MutexErrorKind::Unsafe { .. }), "{err}");
    assert!(err.to_string().contains("a.lock.queue"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_read_only_lock_file_still_locks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp();
    let path = dir.path().join("a.lock");
    fs::write(&path, "").expect("create");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).expect("chmod");
    let mutex = FileMutex::new(&path);
    let guard = mutex.lock().expect("lock");
    // Root ignores permissions; otherwise the file was opened read-only and names no holder.
    if fs::OpenOptions::new().write(true).open(&path).is_err() {
        assert_eq!(mutex.inner.read_holder(), None);
    }
    let other = FileMutex::new(&path);
    assert!(other.try_lock().is_err());
    drop(guard);
    let _guard = other.try_lock().expect("free");
}

#[test]
fn errors_display_their_kind() {
    let path = Path::new("/x/a.lock");
    let cases = [
        (MutexErrorKind::Busy, "held by another holder"),
        (
            MutexErrorKind::Unsupported { fs: "NFS" },
            "on a NFS network file system",
        ),
        (MutexErrorKind::WouldDeadlock, "would deadlock"),
        (
            MutexErrorKind::Timeout {
                waited: Duration::from_secs(1),
                holder: None,
            },
            "timed out after 1s",
        ),
    ];
    for (kind, text) in cases {
        let err = MutexError::new(path, kind);
        let shown = err.to_string();
        assert!(
            shown.starts_with("lock /x/a.lock: ") && shown.contains(text),
            "{shown}"
        );
    }
    let unsupported: std::io::Error =
        MutexError::new(path, MutexErrorKind::Unsupported { fs: "NFS" }).into();
    assert_eq!(unsupported.kind(), std::io::ErrorKind::Unsupported);
    let busy: std::io::Error = MutexError::new(path, MutexErrorKind::Busy).into();
    assert_eq!(busy.kind(), std::io::ErrorKind::WouldBlock);
}

#[test]
fn mutex_and_guard_are_send_sync_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<FileMutex>();
    check::<MutexGuard>();
    check::<MutexError>();
}

#[test]
fn many_threads_hammering_try_and_lock_stay_exclusive() {
    let dir = temp();
    let mutex = FileMutex::new(dir.path().join("a.lock"));
    let inside = std::sync::Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (mutex, inside) = (mutex.clone(), inside.clone());
            std::thread::spawn(move || {
                for j in 0..200 {
                    let guard = match (i + j) % 3 {
                        0 => mutex.try_lock().ok(),
                        1 => mutex.lock_for(Duration::from_millis(1)).ok(),
                        _ => Some(mutex.lock().expect("lock")),
                    };
                    if let Some(guard) = guard {
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(guard);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert!(live_tickets(&mutex).is_empty(), "{:?}", tickets(&mutex));
    let _guard = mutex.try_lock().expect("nothing left behind");
}
