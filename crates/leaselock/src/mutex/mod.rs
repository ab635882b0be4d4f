//! [`FileMutex`]: an advisory lock on a lock-file path that waits first-come-first-served,
//! with timeouts that name the holder, and that a crashed holder cannot leave behind.
//!
//! ```
//! use leaselock::mutex::FileMutex;
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let mutex = FileMutex::new(dir.path().join("registry.lock"));
//! {
//!     let _guard = mutex.lock()?; // waits for its turn
//!     // ... read-modify-write the files this lock protects ...
//! } // unlocked here
//! let _guard = mutex.lock_for(Duration::from_secs(5))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! - **Mutual exclusion comes from the kernel.** Every guard holds an `flock` (through
//!   `fd-lock`) on its own open file description of the lock file: exclusive for
//!   [`FileMutex::lock`], shared for [`FileMutex::lock_shared`]. Two guards exclude each other
//!   whether they are in two processes or in two threads of one process (or even on two
//!   clones of one `FileMutex` in one thread, see below).
//! - **A crashed holder leaves nothing behind.** The kernel drops a dead process's locks at
//!   once; the next waiter gets the lock without any timeout or clean-up.
//! - **First come, first served.** Waiters queue in the order they took their tickets; the
//!   kernel wakes exactly the next one. A newcomer never overtakes a queued waiter, not even
//!   with [`FileMutex::try_lock`] (which reports [`MutexErrorKind::Busy`] when others are
//!   queued, even if the lock is free for that instant).
//! - **Idle waiters use no CPU.** [`FileMutex::lock`] sleeps in the kernel (`flock` without
//!   `LOCK_NB`). [`FileMutex::lock_for`] polls with exponential backoff and jitter: 50 µs
//!   doubling up to 2 ms, and after longer waits up to an eighth of the time waited so far
//!   (at most 50 ms), so a long timed wait costs about 20 wake-ups a second and notices its turn
//!   at most 1/8 of its wait late.
//! - **Never a silent self-deadlock.** A thread that already holds a guard on a lock file and
//!   calls `lock`, `lock_shared` or their `_for` variants on it again gets
//!   [`MutexErrorKind::WouldDeadlock`] at once. (`try_` variants just report `Busy`, or succeed
//!   for shared-after-shared.) Different threads simply wait for each other.
//! - **Network file systems are refused.** `flock` on NFS, SMB/CIFS and similar can hang past
//!   any timeout or fail to exclude other hosts, so the first lock call checks the file system
//!   of the lock file (Linux `fstatfs`) and returns [`MutexErrorKind::Unsupported`].
//!
//! - **Nothing is followed.** The lock file's directory is opened once (`O_DIRECTORY |
//!   O_NOFOLLOW`: its last component must be a real directory) and the lock file, the queue
//!   directory and every file in it are reached only through `*at` calls on descriptors, with
//!   `O_NOFOLLOW | O_NONBLOCK` and an `fstat` of what was opened (through
//!   [`atomic_file::dir::Dir`]). A symlink, FIFO, socket or device, or a directory where a file
//!   belongs (and the other way round), is refused with [`MutexErrorKind::Unsafe`] naming the
//!   entry ([`MutexError::is_damaged`]): a repository holding planted links cannot make the
//!   mutex create or write anything outside it, and a FIFO cannot hang it. Reads (the queue
//!   counter, the holder record) are bounded. A queue entry that is not a regular file is not a
//!   ticket: it is skipped and never removed.
//! - **Root does not lock the owner out.** A file or directory the mutex creates in a directory
//!   owned by another user, while running as root, is given that directory's owner and group.
//!
//! The lock is advisory: it excludes only processes that use it. Do not delete the lock file or
//! its queue directory while the lock is in use (a new file would be a new, separate lock), and
//! do not `fork` without `exec` while holding a guard (the child would share the lock). Processes
//! that `flock` the lock file directly (not through this type) still exclude each other and
//! this type, but do not queue, so they can overtake waiters.
//!
//! # Who holds it
//!
//! After taking the lock a holder writes one line of JSON into the lock file (pid, host, time,
//! mode), padded to a fixed size and written with a single positional write. A
//! [`MutexErrorKind::Timeout`] reads it back as a [`Holder`]. The record is informational only:
//! writing it is best effort (a read-only lock file is fine), it is never read to decide
//! anything, and a stale record (the last holder's) can be seen for an instant after a hand-over.
//!
//! # The queue protocol
//!
//! Beside the lock file `L` lives a directory `L.queue/` with `waiters`, `seq` and ticket files
//! `t-<n>` (20-digit, zero-padded `n`). To take the lock in mode `M`:
//!
//! 1. **Fast path.** Try to lock `waiters` exclusively without waiting, and unlock it at once.
//!    If that worked, nobody is queued: try to lock `L` in mode `M` without waiting; if that
//!    works too, done. (Uncontended, this costs four `flock` calls and one `pwrite`, and no
//!    file is opened: the guard's descriptor and the checker's are cached and reused.)
//! 2. **Register.** Lock `waiters` shared, and keep it until step 5. While any waiter is
//!    registered, the fast path of every newcomer fails, so newcomers queue.
//! 3. **Take a ticket.** Under a short exclusive lock on `seq`: read the last number `m`,
//!    create `t-<m+1>` with `O_EXCL` (on a clash try the next number), lock it exclusively,
//!    write the new number back, and only then unlock `seq`. The only waiters that ever look at
//!    ticket `n` are those numbered after it, and they take their numbers after `seq` is
//!    unlocked, so nobody can see our ticket unlocked while we live: a ticket whose lock *can*
//!    be taken belongs to a waiter that is gone (crashed, even between creating and locking).
//! 4. **Wait for the waiter ahead.** List `L.queue/`; let `p` be the greatest ticket number
//!    below ours. If there is one, open `t-<p>` and lock it **shared**, blocking: the kernel wakes
//!    us exactly when its owner unlocks it or dies. Its owner then took `L`, gave up, or died;
//!    if the name is still there, remove it. Repeat step 4 (the ticket ahead may have been a
//!    waiter that timed out, with others still ahead of it). If there is no earlier ticket, we
//!    are at the head: lock `L` in mode `M`, blocking.
//! 5. **Move the queue on.** Holding `L`: close our ticket (which unlocks it and wakes our
//!    successor, who then blocks on `L` during our critical section, so the hand-over at release
//!    is a single kernel wake-up) and close the registration. The ticket's name is left for the
//!    successor (or the next newcomer) to remove, which keeps a directory update off the
//!    hand-over's critical path.
//!
//! A waiter that times out, or fails, removes its ticket's name and then closes it, without
//! holding `L`: its successor wakes, finds the next ticket ahead, and waits for that one
//! instead. A waiter that dies leaves a ticket name whose lock the kernel has released; whoever
//! waits on it next removes it. So at rest the queue directory holds at most the last
//! acquirer's unlocked ticket, plus tickets of waiters that died with nobody queued behind them.
//!
//! Why this is safe and live: `L`'s `flock` alone decides who holds the lock, so no bug or crash
//! in the queue can let two exclusive holders in; the queue only decides who *tries*. A waiter
//! only ever waits for a smaller ticket number, or (at the head) for `L`, whose holders never
//! wait on the queue while holding it, so the waits-for graph has no cycle. The locks on
//! `waiters` and `seq` are held for a few system calls by anyone who holds them exclusively.
//! Shared waiters behind a shared head move up one after another and hold `L` together; an
//! exclusive waiter behind them waits until they have all released it.
//!
//! The protocol is one function over a storage trait (`queue::acquire`), model-checked with
//! loom over an in-memory queue (mutual exclusion; ticket holders granted in ticket order) and tested over
//! files with several processes (`tests/mutex.rs`).

mod error;
mod files;
mod holder;
mod queue;

use std::path::{Path, PathBuf};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use atomic_file::dir::Dir;

pub use error::{MutexError, MutexErrorKind, Step};
pub use holder::Holder;
pub(crate) use holder::host_name;

/// What the queue directory's name adds to its lock file's: the lock file `L` keeps its wait
/// queue in the directory `L.queue/` beside it (see the [module docs](self)).
pub const QUEUE_SUFFIX: &str = ".queue";

use crate::sync::Arc;
use atomic_file::lock::{self as os_lock, Mode, Wait};
use files::{Files, Held, Inner, Key};

/// An advisory, first-come-first-served lock on a lock-file path, shared between processes
/// and threads. See the [module docs](self) for the guarantees and the protocol.
///
/// Cheap to clone; clones share cached descriptors but every guard holds its own lock, so
/// guards from clones exclude each other like guards from separate processes.
#[derive(Debug, Clone)]
pub struct FileMutex {
    inner: Arc<Inner>,
}

impl FileMutex {
    /// A mutex on the lock file at `path`, created on first use (with its queue directory
    /// `<path>.queue/` beside it). No I/O happens here. On first use the lock file's directory
    /// is opened once; its last component must be a directory, not a symlink to one
    /// ([`MutexErrorKind::Unsafe`] otherwise), and everything after that is reached through
    /// that descriptor.
    ///
    /// ```
    /// # use leaselock::mutex::FileMutex;
    /// let mutex = FileMutex::new("/tmp/example.lock");
    /// assert_eq!(mutex.path(), std::path::Path::new("/tmp/example.lock"));
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> FileMutex {
        FileMutex {
            inner: Arc::new(Inner::new(path.into())),
        }
    }

    /// A mutex on the lock file `name` inside the already opened directory `dir` (with its
    /// queue directory `<name>.queue/` beside it). Use this when the directory is one a program
    /// already holds open: the lock file is then reached only through `dir`'s descriptor, even
    /// if the path `dir` was opened at is later replaced. No I/O happens here.
    ///
    /// ```
    /// use atomic_file::dir::Dir;
    /// use leaselock::mutex::FileMutex;
    ///
    /// let tmp = tempfile::tempdir()?;
    /// let state = Dir::create(tmp.path().join(".state"))?;
    /// let mutex = FileMutex::in_dir(&state, "registry.lock");
    /// assert_eq!(mutex.path(), tmp.path().join(".state/registry.lock"));
    /// drop(mutex.lock()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_dir(dir: &Dir, name: impl AsRef<std::ffi::OsStr>) -> FileMutex {
        FileMutex {
            inner: Arc::new(Inner::in_dir(dir, name.as_ref())),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Takes the lock exclusively, waiting for its turn for as long as it takes.
    ///
    /// # Errors
    ///
    /// [`MutexErrorKind::WouldDeadlock`] if this thread already holds it,
    /// [`MutexErrorKind::Unsupported`] on a network file system, [`MutexErrorKind::Io`] if a
    /// file cannot be opened or locked.
    pub fn lock(&self) -> Result<MutexGuard, MutexError> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// Takes the lock exclusively if it is free and nobody is queued for it; never waits.
    ///
    /// ```
    /// # use leaselock::mutex::{FileMutex, MutexErrorKind};
    /// # let dir = tempfile::tempdir()?;
    /// let mutex = FileMutex::new(dir.path().join("a.lock"));
    /// let guard = mutex.try_lock()?;
    /// let err = mutex.try_lock().unwrap_err();
    /// assert!(matches!(err.kind(), MutexErrorKind::Busy));
    /// drop(guard);
    /// assert!(mutex.try_lock().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`MutexErrorKind::Busy`] when it is held or others are queued; otherwise as
    /// [`FileMutex::lock`].
    pub fn try_lock(&self) -> Result<MutexGuard, MutexError> {
        self.acquire(Mode::Exclusive, Wait::Never)
    }

    /// Takes the lock exclusively, waiting up to `timeout` for its turn.
    ///
    /// # Errors
    ///
    /// [`MutexErrorKind::Timeout`] naming the holder when the time runs out; otherwise as
    /// [`FileMutex::lock`].
    pub fn lock_for(&self, timeout: Duration) -> Result<MutexGuard, MutexError> {
        self.acquire(Mode::Exclusive, deadline(timeout))
    }

    /// Takes the lock shared (other shared holders may hold it at the same time), waiting for
    /// its turn. A shared waiter queued behind an exclusive one waits for it.
    ///
    /// ```
    /// # use leaselock::mutex::FileMutex;
    /// # let dir = tempfile::tempdir()?;
    /// let mutex = FileMutex::new(dir.path().join("a.lock"));
    /// let reader = mutex.lock_shared()?;
    /// assert!(reader.is_shared());
    /// let other = mutex.clone();
    /// // Another thread may read at the same time, but not write.
    /// std::thread::spawn(move || {
    ///     assert!(other.try_lock_shared().is_ok());
    ///     assert!(other.try_lock().is_err());
    /// })
    /// .join()
    /// .expect("thread panicked");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`FileMutex::lock`].
    pub fn lock_shared(&self) -> Result<MutexGuard, MutexError> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// Takes the lock shared if no exclusive holder has it and nobody is queued; never waits.
    ///
    /// # Errors
    ///
    /// As [`FileMutex::try_lock`].
    pub fn try_lock_shared(&self) -> Result<MutexGuard, MutexError> {
        self.acquire(Mode::Shared, Wait::Never)
    }

    /// Takes the lock shared, waiting up to `timeout` for its turn.
    ///
    /// # Errors
    ///
    /// As [`FileMutex::lock_for`].
    pub fn lock_shared_for(&self, timeout: Duration) -> Result<MutexGuard, MutexError> {
        self.acquire(Mode::Shared, deadline(timeout))
    }

    fn acquire(&self, mode: Mode, wait: Wait) -> Result<MutexGuard, MutexError> {
        let started = Instant::now();
        let key = self.prepare()?;
        let thread = std::thread::current().id();
        if wait != Wait::Never && held::contains(key, thread) {
            return Err(self.error(MutexErrorKind::WouldDeadlock));
        }
        let acquired = match wait {
            Wait::Until(at) => self.acquire_until(mode, at)?,
            Wait::Forever | Wait::Never => queue::acquire(&Files(&self.inner), mode, wait)?,
        };
        match acquired {
            Some(held) => {
                if held.writable {
                    files::write_holder(&held.file, mode);
                }
                held::insert(key, thread);
                Ok(MutexGuard {
                    held: Some(held),
                    inner: self.inner.clone(),
                    key,
                    thread,
                })
            }
            None if wait == Wait::Never => Err(self.error(MutexErrorKind::Busy)),
            None => Err(self.error(MutexErrorKind::Timeout {
                waited: started.elapsed(),
                holder: self.inner.read_holder(),
            })),
        }
    }

    /// Waits for the lock until `at` without polling: after a failed fast try, a helper thread
    /// waits in the kernel (queueing like [`FileMutex::lock`]) and hands the lock over through a
    /// channel, so the caller is woken exactly when its turn comes. If the time runs out first,
    /// the caller returns `None` and the helper keeps its place in the queue until its turn,
    /// then releases the lock at once (one extra hand-over for the waiters behind it; the
    /// helper thread lives as long as that takes).
    fn acquire_until(&self, mode: Mode, at: Instant) -> Result<Option<Held>, MutexError> {
        if let Some(held) = queue::acquire(&Files(&self.inner), mode, Wait::Never)? {
            return Ok(Some(held));
        }
        let (tx, rx) = crate::sync::unmodelled::mpsc::sync_channel(1);
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name("leaselock-wait".into())
            .spawn(move || {
                let result = queue::acquire(&Files(&inner), mode, Wait::Forever);
                // A caller that gave up has dropped the receiver: the lock is released here.
                let _ = tx.send(result);
            })
            .map_err(|e| MutexError::io(&self.inner.path, Step::Lock, e))?;
        match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
            Ok(result) => result,
            Err(_) => Ok(None),
        }
    }

    /// On first use: opens the lock file's directory, creates the lock file, refuses network
    /// file systems, creates the queue directory, and learns the lock file's identity. Retried
    /// until it succeeds once.
    fn prepare(&self) -> Result<Key, MutexError> {
        if let Some(key) = self.inner.key.get() {
            return Ok(*key);
        }
        let path = &self.inner.path;
        let (file, writable) = self.inner.open_main()?;
        match os_lock::network_fs(&file) {
            Ok(None) => {}
            Ok(Some(fs)) => return Err(self.error(MutexErrorKind::Unsupported { fs })),
            Err(e) => return Err(MutexError::io(path, Step::CheckFileSystem, e)),
        }
        let key = identity(&file).map_err(|e| MutexError::io(path, Step::OpenLock, e))?;
        self.inner.create_queue_dir()?;
        self.inner.put_main(file, writable);
        Ok(*self.inner.key.get_or_init(|| key))
    }

    fn error(&self, kind: MutexErrorKind) -> MutexError {
        MutexError::new(&self.inner.path, kind)
    }
}

fn deadline(timeout: Duration) -> Wait {
    match Instant::now().checked_add(timeout) {
        Some(at) => Wait::Until(at),
        None => Wait::Forever,
    }
}

fn identity(file: &std::fs::File) -> std::io::Result<Key> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// A held [`FileMutex`]: exclusive or shared. Owns its file handle, so it can be stored and
/// sent to another thread; the lock is released when it is dropped (or, if the process dies,
/// by the kernel).
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard {
    held: Option<Held>,
    inner: Arc<Inner>,
    key: Key,
    thread: ThreadId,
}

impl MutexGuard {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether this is a shared (rather than exclusive) hold.
    pub fn is_shared(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.mode == Mode::Shared)
    }

    /// Releases the lock now, reporting a failure to unlock (dropping the guard releases it
    /// too, and closes the descriptor if unlocking fails, which releases it as well).
    ///
    /// ```
    /// # use leaselock::mutex::FileMutex;
    /// # let dir = tempfile::tempdir()?;
    /// let mutex = FileMutex::new(dir.path().join("a.lock"));
    /// mutex.lock()?.unlock()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`MutexErrorKind::Io`] with [`Step::Unlock`]; the lock is released anyway.
    pub fn unlock(mut self) -> Result<(), MutexError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), MutexError> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        held::remove(self.key, self.thread);
        match os_lock::unlock(&held.file) {
            Ok(()) => {
                self.inner.put_main(held.file, held.writable);
                Ok(())
            }
            // Closing the descriptor releases the lock.
            Err(e) => Err(MutexError::io(&self.inner.path, Step::Unlock, e)),
        }
    }
}

impl Drop for MutexGuard {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Which threads of this process hold a guard on which lock file, to refuse a wait that could
/// never end.
mod held {
    use super::Key;
    use crate::sync::unmodelled::{Mutex, MutexGuard};
    use std::thread::ThreadId;

    // A process-wide table outside any loom model, so plain std.
    static HELD: Mutex<Vec<(Key, ThreadId)>> = Mutex::new(Vec::new());

    fn table() -> MutexGuard<'static, Vec<(Key, ThreadId)>> {
        HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn contains(key: Key, thread: ThreadId) -> bool {
        table().contains(&(key, thread))
    }

    pub(super) fn insert(key: Key, thread: ThreadId) {
        table().push((key, thread));
    }

    pub(super) fn remove(key: Key, thread: ThreadId) {
        let mut table = table();
        if let Some(i) = table.iter().position(|&entry| entry == (key, thread)) {
            table.swap_remove(i);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
