//! [`MutexError`]: which lock file, and what went wrong.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::holder::Holder;
use crate::ErrorClass;

/// An error from taking a [`FileMutex`](super::FileMutex). It names the lock file
/// ([`MutexError::path`]); match on [`MutexError::kind`] to handle a case.
///
/// ```
/// use leaselock::mutex::{FileMutex, MutexErrorKind};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let mutex = FileMutex::new(dir.path().join("db.lock"));
/// let _held = mutex.lock()?;
/// // Another thread (or process) waiting up to 10 ms gets a `Timeout` naming the holder.
/// let other = mutex.clone();
/// let err = std::thread::spawn(move || other.lock_for(Duration::from_millis(10)))
///     .join()
///     .expect("thread panicked")
///     .unwrap_err();
/// match err.kind() {
///     MutexErrorKind::Timeout { holder: Some(holder), .. } => {
///         assert_eq!(holder.pid, std::process::id())
///     }
///     other => panic!("unexpected: {other}"),
/// }
/// assert!(err.is_contended());
/// assert!(matches!(mutex.try_lock().unwrap_err().kind(), MutexErrorKind::Busy));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MutexError {
    path: PathBuf,
    kind: MutexErrorKind,
}

/// What went wrong while taking a [`FileMutex`](super::FileMutex).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MutexErrorKind {
    /// `try_lock` (or `try_lock_shared`): another holder has the lock, or others are already
    /// queued for it (a try never jumps the queue).
    #[error("the lock is held by another holder or others are queued for it")]
    Busy,
    /// `lock_for` waited `waited` and did not get the lock.
    #[error("timed out after {waited:?} waiting for the lock{}", holder_suffix(.holder))]
    Timeout {
        /// How long this call waited.
        waited: Duration,
        /// The holder the lock file names (pid, host, since). `None` when the file names none
        /// or cannot be read; with shared holders it names the latest of them.
        holder: Option<Holder>,
    },
    /// The lock file is on a network file system (named here), whose locks can hang past any
    /// timeout or fail to exclude other hosts.
    #[error(
        "the lock file is on a {fs} network file system, where advisory locks can hang or do \
         not exclude other hosts; put the lock file on a local disk"
    )]
    Unsupported {
        /// The file system's name, for example `"NFS"`.
        fs: &'static str,
    },
    /// This thread already holds a guard on this lock file, so waiting for another would never
    /// end. Drop the first guard, or pass it where it is needed.
    #[error(
        "this thread already holds this lock; waiting for it again would deadlock (a guard that \
         was moved to another thread still counts for the thread that took it)"
    )]
    WouldDeadlock,
    /// A file or directory the mutex uses (the lock file's directory, the lock file, the queue
    /// directory or a file in it) is not what it must be: a symbolic link, a FIFO, a device, a
    /// directory where a file belongs or the other way round, or a file too large to be ours.
    /// Nothing was followed, opened for writing or removed through it. The error names the
    /// entry; a person must remove or replace it (a repository can hold planted entries).
    #[error("{source}")]
    Unsafe {
        /// The refusal, naming the entry and what was found there.
        #[source]
        source: atomic_file::Error,
    },
    /// A system call failed during `step`.
    #[error("cannot {step}: {source}")]
    Io {
        /// The step that failed.
        step: Step,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

fn holder_suffix(holder: &Option<Holder>) -> String {
    match holder {
        Some(h) => format!("; it is held by {h}"),
        None => String::new(),
    }
}

/// A step of taking or releasing the lock, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Opening or creating the lock file.
    OpenLock,
    /// Asking which file system the lock file is on.
    CheckFileSystem,
    /// Creating or opening the queue directory beside the lock file, or a file in it.
    OpenQueue,
    /// Registering as a waiter.
    Register,
    /// Taking a ticket (a place in the queue).
    TakeTicket,
    /// Listing the queue to find the waiter ahead.
    ListQueue,
    /// Waiting for the waiter ahead.
    WaitTurn,
    /// Taking the lock itself.
    Lock,
    /// Releasing the lock.
    Unlock,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::OpenLock => "open the lock file",
            Step::CheckFileSystem => "check the lock file's file system",
            Step::OpenQueue => "open the wait queue",
            Step::Register => "register as a waiter",
            Step::TakeTicket => "take a ticket in the wait queue",
            Step::ListQueue => "list the wait queue",
            Step::WaitTurn => "wait for the waiter ahead",
            Step::Lock => "lock the lock file",
            Step::Unlock => "unlock the lock file",
        })
    }
}

impl MutexError {
    pub(crate) fn new(path: impl Into<PathBuf>, kind: MutexErrorKind) -> MutexError {
        MutexError {
            path: path.into(),
            kind,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, step: Step, source: io::Error) -> MutexError {
        MutexError::new(path, MutexErrorKind::Io { step, source })
    }

    /// An error of an [`atomic_file::dir::Dir`] call made during `step`: a refused entry
    /// (wrong type, too large) is [`MutexErrorKind::Unsafe`], anything else an I/O error.
    pub(crate) fn from_file(
        path: impl Into<PathBuf>,
        step: Step,
        source: atomic_file::Error,
    ) -> MutexError {
        if source.is_damaged() {
            MutexError::new(path, MutexErrorKind::Unsafe { source })
        } else {
            MutexError::io(path, step, io::Error::from(source))
        }
    }

    /// The lock file this error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &MutexErrorKind {
        &self.kind
    }

    /// True for [`MutexErrorKind::Busy`] and [`MutexErrorKind::Timeout`]: someone else has
    /// the lock; retrying later may succeed.
    pub fn is_contended(&self) -> bool {
        matches!(
            self.kind,
            MutexErrorKind::Busy | MutexErrorKind::Timeout { .. }
        )
    }

    /// True for [`MutexErrorKind::Unsafe`]: an entry the mutex uses is a symlink, a FIFO or of
    /// the wrong type. Retrying will not help; a person must remove or replace the entry (a
    /// command-line tool reports this as corrupt or unsafe data).
    pub fn is_damaged(&self) -> bool {
        matches!(self.kind, MutexErrorKind::Unsafe { .. })
    }

    /// The class of this error: [`ErrorClass::Busy`] when contended
    /// ([`MutexError::is_contended`]), [`ErrorClass::Damaged`] for an unsafe entry
    /// ([`MutexError::is_damaged`]), [`ErrorClass::Failure`] for everything else (a network
    /// file system, a would-be deadlock, an I/O error).
    pub fn class(&self) -> ErrorClass {
        if self.is_contended() {
            ErrorClass::Busy
        } else if self.is_damaged() {
            ErrorClass::Damaged
        } else {
            ErrorClass::Failure
        }
    }

    /// The operating system's error, if this is an I/O failure.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.kind {
            MutexErrorKind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl fmt::Display for MutexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lock {}: {}", self.path.display(), self.kind)
    }
}

impl std::error::Error for MutexError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The kind's text is already part of this error's message; skip to its cause.
        std::error::Error::source(&self.kind)
    }
}

impl From<MutexError> for io::Error {
    /// Converts to an [`io::Error`], keeping the OS error kind where there is one.
    fn from(err: MutexError) -> io::Error {
        let kind = match &err.kind {
            MutexErrorKind::Io { source, .. } => source.kind(),
            MutexErrorKind::Busy => io::ErrorKind::WouldBlock,
            MutexErrorKind::Timeout { .. } => io::ErrorKind::TimedOut,
            MutexErrorKind::Unsupported { .. } => io::ErrorKind::Unsupported,
            MutexErrorKind::WouldDeadlock => io::ErrorKind::Deadlock,
            MutexErrorKind::Unsafe { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_mirror_contended_damaged_and_failure() {
        let class = |kind| MutexError::new("l", kind).class();
        assert_eq!(class(MutexErrorKind::Busy), ErrorClass::Busy);
        assert_eq!(
            class(MutexErrorKind::Timeout {
                waited: Duration::from_millis(1),
                holder: None,
            }),
            ErrorClass::Busy
        );
        assert_eq!(
            class(MutexErrorKind::Unsupported { fs: "NFS" }),
            ErrorClass::Failure
        );
        assert_eq!(class(MutexErrorKind::WouldDeadlock), ErrorClass::Failure);
        // An I/O error of the mutex is a failure whatever its kind.
        assert_eq!(
            class(MutexErrorKind::Io {
                step: Step::Lock,
                source: io::Error::from(io::ErrorKind::NotFound),
            }),
            ErrorClass::Failure
        );
    }

    #[test]
    fn an_unsafe_entry_is_damaged() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("nowhere", dir.path().join("x")).expect("symlink");
        let root = atomic_file::dir::Dir::open(dir.path()).expect("open");
        let refused = root.read("x", 16).expect_err("a symlink is refused");
        let err = MutexError::from_file("l", Step::OpenLock, refused);
        assert_eq!(err.class(), ErrorClass::Damaged);
    }
}
