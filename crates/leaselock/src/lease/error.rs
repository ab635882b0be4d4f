//! The lease error type: what went wrong, with the paths and leases involved.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::record::{Lease, Mode, fmt_time};
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
    /// A lease file or the token file could not be decoded. It was left untouched.
    #[error(
        "lease file {} is corrupt: {reason}; it may still describe a live lease, so it blocks \
         grants until a forced release or a forced sweep removes it",
        .path.display()
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Why it could not be read.
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
    /// Why the file could not be read, if it is corrupt.
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
