//! The lease error type: what went wrong, with the paths and leases involved.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::record::{Lease, Mode, fmt_time};
use crate::ErrorClass;
use crate::mutex::MutexError;

/// An error from a lease operation. Match on [`LeaseError::kind`] to handle a case.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct LeaseError {
    kind: Box<LeaseErrorKind>,
}

impl LeaseError {
    pub(crate) fn new(kind: LeaseErrorKind) -> LeaseError {
        LeaseError {
            kind: Box::new(kind),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, step: &'static str, source: io::Error) -> Self {
        LeaseError::new(LeaseErrorKind::Io {
            path: path.into(),
            step,
            source,
        })
    }

    /// What went wrong.
    pub fn kind(&self) -> &LeaseErrorKind {
        &self.kind
    }

    /// The class of this error: a conflict, a lease held by someone else or expired is
    /// [`ErrorClass::Conflict`]; a bad path or request [`ErrorClass::Invalid`]; an unknown
    /// lease [`ErrorClass::NotFound`]; damaged state [`ErrorClass::Damaged`]; a busy or
    /// timed-out root mutex [`ErrorClass::Busy`]; another mutex failure by
    /// [`MutexError::class`]; anything else (an I/O error) [`ErrorClass::Failure`].
    pub fn class(&self) -> ErrorClass {
        use LeaseErrorKind as K;
        match &*self.kind {
            K::Conflict { .. } | K::NotHolder { .. } | K::Expired { .. } => ErrorClass::Conflict,
            K::InvalidPath { .. } | K::InvalidRequest { .. } => ErrorClass::Invalid,
            K::NotFound { .. } => ErrorClass::NotFound,
            K::Corrupt { .. } => ErrorClass::Damaged,
            K::Busy { .. } | K::Timeout { .. } => ErrorClass::Busy,
            K::Mutex { source } => source.class(),
            K::Io { .. } => ErrorClass::Failure,
            #[cfg(feature = "postgres")]
            K::Server { source } => source.class(),
        }
    }

    /// The conflicting leases, if this is a refused acquire.
    pub fn conflicts(&self) -> &[ConflictInfo] {
        match &*self.kind {
            LeaseErrorKind::Conflict { conflicts } => conflicts,
            _ => &[],
        }
    }

    /// True when an acquire was refused because of conflicting leases.
    pub fn is_conflict(&self) -> bool {
        matches!(*self.kind, LeaseErrorKind::Conflict { .. })
    }

    /// True when coordination state is damaged or unsafe ([`LeaseErrorKind::Corrupt`], or a
    /// root mutex whose files are; see [`MutexError::is_damaged`]): retrying will not help
    /// until a person or a repair fixes the named file.
    pub fn is_damaged(&self) -> bool {
        match &*self.kind {
            LeaseErrorKind::Corrupt { .. } => true,
            LeaseErrorKind::Mutex { source } => source.is_damaged(),
            _ => false,
        }
    }

    /// The error for a failed [`atomic_file::dir::Dir`] call during `step`: an entry that is
    /// damaged, too large or of the wrong type is [`LeaseErrorKind::Corrupt`] naming it,
    /// anything else an I/O error.
    pub(crate) fn file(step: &'static str, e: atomic_file::Error) -> LeaseError {
        if e.is_damaged() {
            return LeaseError::corrupt(e.path(), describe(&e));
        }
        let path = e.path().to_path_buf();
        let source = match e.io_error().and_then(io::Error::raw_os_error) {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::from(e),
        };
        LeaseError::io(path, step, source)
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> LeaseError {
        LeaseError::new(LeaseErrorKind::Corrupt {
            path: path.into(),
            reason: reason.into(),
        })
    }
}

/// Why an entry refused by [`atomic_file`] cannot be trusted, without repeating its path.
pub(crate) fn describe(e: &atomic_file::Error) -> String {
    use atomic_file::ErrorKind as K;
    match e.kind() {
        K::WrongType { found, expected } => format!(
            "it is {found}, not {expected}; it was not followed, opened or changed (a repository \
             can hold planted entries): remove or replace it by hand"
        ),
        K::Corrupt(c) => c.to_string(),
        K::Decode { message, .. } => format!("it does not decode: {message}"),
        K::TooLarge { len, limit } => {
            format!("it is {len} bytes, more than the {limit} bytes allowed; it was not read")
        }
        _ => e.to_string(),
    }
}

/// What went wrong in a lease operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseErrorKind {
    /// The request overlaps leases that are (or might be) live. Every one of them is listed.
    #[error("lease refused: {}", list_conflicts(.conflicts))]
    Conflict {
        /// Every lease (or unreadable lease file) that blocks the request.
        conflicts: Vec<ConflictInfo>,
    },
    /// A claimed path was refused before anything was read or written.
    #[error("invalid lease path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// The request itself is unusable (no paths, a zero TTL, a bad holder name or lease id).
    #[error("invalid lease request: {reason}")]
    InvalidRequest {
        /// Why it was refused.
        reason: String,
    },
    /// No lease with this id exists (it was released, swept, or taken over).
    #[error("no lease {id:?} exists: it was released, swept or taken over")]
    NotFound {
        /// The lease id asked for.
        id: String,
    },
    /// The lease exists but belongs to someone else (another holder, or a newer grant).
    #[error("lease {id:?} is held by {holder:?} (token {token}), not by {requested_by:?}")]
    NotHolder {
        /// The lease id.
        id: String,
        /// The holder recorded in the lease.
        holder: String,
        /// The fencing token recorded in the lease.
        token: u64,
        /// Who asked.
        requested_by: String,
    },
    /// The lease exists but its time is up by the holder's own clock; renew it first.
    #[error("lease {id:?} expired at {}; renew it before writing", fmt_time(*.expires_at))]
    Expired {
        /// The lease id.
        id: String,
        /// When it expired.
        expires_at: SystemTime,
    },
    /// Coordination state cannot be trusted, so nothing was granted or changed: a lease file
    /// that does not decode or fails its checksum (it might describe a live lease on any path,
    /// so it blocks every grant until a forced release or a forced sweep removes it), a missing
    /// or damaged fencing-token counter (see [`Leases::repair`](super::Leases::repair)), or an
    /// entry of the leases directory that is a symlink, a FIFO or of the wrong type (never
    /// followed; a person must remove it). The file was left untouched. A command-line tool
    /// reports this as corrupt or unsafe data.
    #[error("{} is damaged or unsafe: {reason}", .path.display())]
    Corrupt {
        /// The damaged file (or directory entry).
        path: PathBuf,
        /// Why it cannot be trusted, and what to do about it.
        reason: String,
    },
    /// The root's mutex is held by another process and a non-waiting call gave up at once.
    #[error("the lease root's mutex {} is busy", .lock_path.display())]
    Busy {
        /// The mutex's lock file.
        lock_path: PathBuf,
    },
    /// Waiting for the root's mutex took longer than the configured timeout.
    #[error(
        "timed out after {waited:?} waiting for the lease root's mutex {}{}",
        .lock_path.display(),
        .holder.as_ref().map(|h| format!(" (held by {h})")).unwrap_or_default()
    )]
    Timeout {
        /// The mutex's lock file.
        lock_path: PathBuf,
        /// How long this call waited.
        waited: Duration,
        /// The holder the lock file names, if any.
        holder: Option<String>,
    },
    /// The root's mutex failed otherwise: a network file system, a call from inside
    /// [`Leases::run_if_current`](super::Leases::run_if_current) on the same root
    /// (`WouldDeadlock`), or an I/O error. The [`MutexError`] says which.
    #[error("the lease root's mutex failed: {source}")]
    Mutex {
        /// The mutex's error.
        #[source]
        source: MutexError,
    },
    /// The coordination server failed (unreachable, a wait ran out, refused credentials):
    /// nothing was granted or changed, unless it says the outcome is unknown.
    #[cfg(feature = "postgres")]
    #[error("{source}")]
    Server {
        /// The server's error.
        #[source]
        source: crate::server::ServerError,
    },
    /// A system call failed.
    #[error("cannot {step} {}: {source}", .path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

#[cfg(feature = "postgres")]
impl From<crate::server::ServerError> for LeaseError {
    fn from(source: crate::server::ServerError) -> LeaseError {
        LeaseError::new(LeaseErrorKind::Server { source })
    }
}

/// One lease (or unreadable lease file) that blocks a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConflictInfo {
    /// The blocking lease's id (for an unreadable file: its file stem).
    pub id: String,
    /// The lease file.
    pub file: PathBuf,
    /// The decoded lease, or `None` if the file is corrupt.
    pub lease: Option<Lease>,
    /// Why the file could not be read, if it is corrupt. (Acquire no longer reports unreadable
    /// lease files as conflicts: it refuses with [`LeaseErrorKind::Corrupt`] naming the file,
    /// so this is `None` in every conflict it returns; kept for compatibility.)
    pub corrupt: Option<String>,
}

impl ConflictInfo {
    /// The holder's name, if the lease could be read.
    pub fn holder(&self) -> Option<&str> {
        self.lease.as_ref().map(|l| l.holder.as_str())
    }
}

impl fmt::Display for ConflictInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.lease, &self.corrupt) {
            // A waiting request ahead in the queue (no grant has token 0).
            (Some(l), _) if l.token == 0 => write!(
                f,
                "{} waits ({}) for {} lease on files {:?} dirs {:?}, until {} at the latest, \
                 and is ahead in the queue",
                l.holder,
                l.id,
                match l.mode {
                    Mode::Exclusive => "an exclusive",
                    Mode::Shared => "a shared",
                },
                l.files,
                l.dirs,
                fmt_time(l.expires_at),
            ),
            (Some(l), _) => write!(
                f,
                "{} holds {} lease {} (token {}) on files {:?} dirs {:?} until {}{}",
                l.holder,
                match l.mode {
                    Mode::Exclusive => "an exclusive",
                    Mode::Shared => "a shared",
                },
                l.id,
                l.token,
                l.files,
                l.dirs,
                fmt_time(l.expires_at),
                if l.task.is_empty() {
                    String::new()
                } else {
                    format!(" (task: {})", l.task)
                }
            ),
            (None, reason) => write!(
                f,
                "unreadable lease file {} ({}) might still be live; remove it with a forced \
                 release of {:?} or a forced sweep",
                self.file.display(),
                reason.as_deref().unwrap_or("unknown reason"),
                self.id
            ),
        }
    }
}

fn list_conflicts(conflicts: &[ConflictInfo]) -> String {
    let items: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
    format!("{} conflicting: {}", conflicts.len(), items.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutex::MutexErrorKind;

    #[test]
    fn every_kind_has_its_class() {
        let class = |kind| LeaseError::new(kind).class();
        let s = String::new;
        assert_eq!(
            class(LeaseErrorKind::Conflict { conflicts: vec![] }),
            ErrorClass::Conflict
        );
        assert_eq!(
            class(LeaseErrorKind::NotHolder {
                id: s(),
                holder: s(),
                token: 1,
                requested_by: s(),
            }),
            ErrorClass::Conflict
        );
        assert_eq!(
            class(LeaseErrorKind::Expired {
                id: s(),
                expires_at: SystemTime::UNIX_EPOCH,
            }),
            ErrorClass::Conflict
        );
        assert_eq!(
            class(LeaseErrorKind::InvalidPath {
                path: s(),
                reason: s(),
            }),
            ErrorClass::Invalid
        );
        assert_eq!(
            class(LeaseErrorKind::InvalidRequest { reason: s() }),
            ErrorClass::Invalid
        );
        assert_eq!(
            class(LeaseErrorKind::NotFound { id: s() }),
            ErrorClass::NotFound
        );
        assert_eq!(
            class(LeaseErrorKind::Corrupt {
                path: "p".into(),
                reason: s(),
            }),
            ErrorClass::Damaged
        );
        assert_eq!(
            class(LeaseErrorKind::Busy {
                lock_path: "l".into(),
            }),
            ErrorClass::Busy
        );
        assert_eq!(
            class(LeaseErrorKind::Timeout {
                lock_path: "l".into(),
                waited: Duration::from_millis(1),
                holder: None,
            }),
            ErrorClass::Busy
        );
        assert_eq!(
            class(LeaseErrorKind::Mutex {
                source: MutexError::new("l", MutexErrorKind::Busy),
            }),
            ErrorClass::Busy
        );
        assert_eq!(
            class(LeaseErrorKind::Mutex {
                source: MutexError::new("l", MutexErrorKind::WouldDeadlock),
            }),
            ErrorClass::Failure
        );
        // An I/O error of a lease operation is a failure whatever its kind.
        assert_eq!(
            class(LeaseErrorKind::Io {
                path: "p".into(),
                step: "read",
                source: io::Error::from(io::ErrorKind::NotFound),
            }),
            ErrorClass::Failure
        );
    }
}
