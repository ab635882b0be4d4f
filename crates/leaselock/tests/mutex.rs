//! `FileMutex` across processes. The test binary re-executes itself as the children: a child
//! runs the same test function (selected with `--exact NAME`) with `LEASELOCK_MUTEX_CHILD=NAME`
//! set, does its part and exits; the parent checks outcomes, never timings.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leaselock::mutex::{FileMutex, MutexErrorKind};

const ROLE: &str = "LEASELOCK_MUTEX_CHILD";
const DIR: &str = "LEASELOCK_MUTEX_DIR";
const ARG: &str = "LEASELOCK_MUTEX_ARG";

/// `Some((dir, arg))` when this process is a child started for `test`.
fn child_of(test: &str) -> Option<(PathBuf, String)> {
    if env::var(ROLE).ok()? != test {
        return None;
    }
    let dir = PathBuf::from(env::var(DIR).expect("child dir"));
    Some((dir, env::var(ARG).unwrap_or_default()))
}

/// A child process that is killed if the parent test panics before reaping it, so no child
/// outlives a failed test.
struct Kid(Option<Child>);

impl Kid {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGKILL and reaps it.
    fn kill(mut self) {
        let mut child = self.0.take().expect("child");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_child(test: &str, dir: &Path, arg: &str) -> Kid {
    let child = Command::new(env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, test)
        .env(DIR, dir)
        .env(ARG, arg)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    Kid(Some(child))
}

fn wait_success(mut kid: Kid) {
    let mut child = kid.0.take().expect("child");
    let status = child.wait().expect("wait for child");
    assert!(status.success(), "child failed: {status}");
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("shared.lock")
}

/// Tickets now queued for the lock in `dir`.
fn queued(dir: &Path) -> usize {
    fs::read_dir(dir.join("shared.lock.queue"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("t-"))
                .count()
        })
        .unwrap_or(0)
}

/// Tickets still held by a live waiter (one that acquired leaves its ticket unlocked for the
/// next waiter to remove; those do not count).
fn live_tickets(dir: &Path) -> usize {
    fs::read_dir(dir.join("shared.lock.queue"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("t-"))
                .filter(|e| {
                    fs::File::open(e.path()).is_ok_and(|f| {
                        use atomic_file::lock::{Mode, Wait, lock};
                        !lock(&f, Mode::Shared, Wait::Never).expect("try the ticket")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

/// Waits until `cond` holds; gives up (panics) after a generous minute, so that a child whose
/// parent is gone does not linger. Not a timing assertion: the conditions hold within
/// milliseconds on a healthy machine.
fn wait_until(mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "gave up waiting"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn counter_is_exact_across_processes() {
    const TEST: &str = "counter_is_exact_across_processes";
    const CHILDREN: usize = 8;
    const INCREMENTS: u64 = 200;
    if let Some((dir, arg)) = child_of(TEST) {
        let mutex = FileMutex::new(lock_path(&dir));
        let counter = dir.join("counter");
        let timed = arg == "timed";
        for _ in 0..INCREMENTS {
            let guard = if timed {
                mutex.lock_for(Duration::from_secs(120))
            } else {
                mutex.lock()
            }
            .expect("lock");
            // A deliberately non-atomic read-modify-write: only the lock makes it exact.
            let n: u64 = fs::read_to_string(&counter)
                .expect("read")
                .trim()
                .parse()
                .expect("a number");
            fs::write(&counter, (n + 1).to_string()).expect("write");
            drop(guard);
        }
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("counter"), "0").expect("init");
    let children: Vec<_> = (0..CHILDREN)
        .map(|i| spawn_child(TEST, dir.path(), if i % 2 == 0 { "timed" } else { "" }))
        .collect();
    children.into_iter().for_each(wait_success);
    let total = fs::read_to_string(dir.path().join("counter")).expect("read");
    assert_eq!(total, (CHILDREN as u64 * INCREMENTS).to_string());
    assert_eq!(live_tickets(dir.path()), 0, "live tickets left behind");
    assert!(
        queued(dir.path()) <= 1,
        "more than the last waiter's ticket left"
    );
    let _guard = FileMutex::new(lock_path(dir.path()))
        .try_lock()
        .expect("free and nobody registered");
}

#[test]
fn killed_holder_frees_the_lock_at_once() {
    const TEST: &str = "killed_holder_frees_the_lock_at_once";
    if let Some((dir, _)) = child_of(TEST) {
        let _guard = FileMutex::new(lock_path(&dir)).lock().expect("lock");
        fs::write(dir.join("held"), "").expect("marker");
        // The parent kills this process; if it does not, give up after a while.
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let holder = spawn_child(TEST, dir.path(), "");
    wait_until(|| dir.path().join("held").exists());
    let mutex = FileMutex::new(lock_path(dir.path()));

    // While it lives: busy, and a timeout names it.
    let busy = mutex.try_lock().expect_err("held by the child");
    assert!(matches!(busy.kind(), MutexErrorKind::Busy));
    let err = mutex
        .lock_for(Duration::from_millis(20))
        .expect_err("held by the child");
    match err.kind() {
        MutexErrorKind::Timeout {
            holder: Some(h), ..
        } => {
            assert_eq!(h.pid, holder.id());
            assert!(!h.shared);
        }
        other => panic!("unexpected {other:?}"),
    }

    // A waiter queues; then the holder is killed with SIGKILL.
    let waiter = {
        let mutex = mutex.clone();
        std::thread::spawn(move || {
            let guard = mutex.lock_for(Duration::from_secs(60));
            (guard.map(drop), Instant::now())
        })
    };
    wait_until(|| queued(dir.path()) == 1);
    let killed_at = Instant::now();
    holder.kill();
    let (got, at) = waiter.join().expect("waiter thread");
    got.expect("the waiter gets the lock once the holder is dead");
    eprintln!(
        "waiter got the lock {:?} after the kill",
        at.saturating_duration_since(killed_at)
    );
}

#[test]
fn killed_waiter_is_skipped() {
    const TEST: &str = "killed_waiter_is_skipped";
    if let Some((dir, arg)) = child_of(TEST) {
        let _guard = FileMutex::new(lock_path(&dir)).lock().expect("lock");
        fs::write(dir.join(format!("got-{arg}")), "").expect("marker");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mutex = FileMutex::new(lock_path(dir.path()));
    let guard = mutex.lock().expect("lock");
    let first = spawn_child(TEST, dir.path(), "first");
    wait_until(|| queued(dir.path()) == 1);
    let second = spawn_child(TEST, dir.path(), "second");
    wait_until(|| queued(dir.path()) == 2);
    // Kill the waiter at the head of the queue while it waits.
    first.kill();
    drop(guard);
    wait_success(second);
    assert!(dir.path().join("got-second").exists());
    assert!(!dir.path().join("got-first").exists());
    // The dead waiter's ticket was removed by the one behind it, which left its own unlocked.
    assert_eq!(live_tickets(dir.path()), 0);
    assert!(queued(dir.path()) <= 1);
}

#[test]
fn waiters_across_processes_are_served_in_arrival_order() {
    const TEST: &str = "waiters_across_processes_are_served_in_arrival_order";
    const CHILDREN: usize = 6;
    if let Some((dir, arg)) = child_of(TEST) {
        let mutex = FileMutex::new(lock_path(&dir));
        let guard = if arg.ends_with('r') {
            mutex.lock_shared()
        } else {
            mutex.lock()
        }
        .expect("lock");
        let order = dir.join("order");
        // Readers may hold it together; a read-modify-write of the log needs its own lock.
        let log = FileMutex::new(dir.join("log.lock"));
        let _log = log.lock().expect("log lock");
        let mut text = fs::read_to_string(&order).unwrap_or_default();
        text.push_str(&arg);
        text.push('\n');
        fs::write(&order, text).expect("append");
        drop(_log);
        std::thread::sleep(Duration::from_millis(5));
        drop(guard);
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mutex = FileMutex::new(lock_path(dir.path()));
    let guard = mutex.lock().expect("lock");
    // Writers w, readers r; started one by one, each once the previous one has queued.
    let roles = ["1w", "2w", "3r", "4r", "5w", "6w"];
    assert_eq!(roles.len(), CHILDREN);
    let mut children = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        children.push(spawn_child(TEST, dir.path(), role));
        wait_until(|| queued(dir.path()) == i + 1);
    }
    drop(guard);
    children.into_iter().for_each(wait_success);
    let order = fs::read_to_string(dir.path().join("order")).expect("order");
    let order: Vec<&str> = order.lines().collect();
    // The two readers hold the lock together, so they may log in either order.
    let mut readers = order[2..4].to_vec();
    readers.sort_unstable();
    assert_eq!(order[..2], ["1w", "2w"], "{order:?}");
    assert_eq!(readers, ["3r", "4r"], "{order:?}");
    assert_eq!(order[4..], ["5w", "6w"], "{order:?}");
}

#[test]
fn shared_holders_in_two_processes_coexist() {
    const TEST: &str = "shared_holders_in_two_processes_coexist";
    if let Some((dir, _)) = child_of(TEST) {
        let _guard = FileMutex::new(lock_path(&dir)).lock_shared().expect("lock");
        fs::write(dir.join("held"), "").expect("marker");
        wait_until(|| dir.join("done").exists());
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let child = spawn_child(TEST, dir.path(), "");
    wait_until(|| dir.path().join("held").exists());
    let mutex = FileMutex::new(lock_path(dir.path()));
    let reader = mutex.try_lock_shared().expect("readers share");
    let err = mutex
        .lock_for(Duration::from_millis(10))
        .expect_err("this thread holds it");
    assert!(matches!(err.kind(), MutexErrorKind::WouldDeadlock), "{err}");
    drop(reader);
    let err = mutex
        .lock_for(Duration::from_millis(10))
        .expect_err("the child reads");
    match err.kind() {
        MutexErrorKind::Timeout {
            holder: Some(h), ..
        } => assert!(h.shared),
        other => panic!("unexpected {other:?}"),
    }
    fs::write(dir.path().join("done"), "").expect("marker");
    wait_success(child);
    let _guard = mutex.lock().expect("free");
}
