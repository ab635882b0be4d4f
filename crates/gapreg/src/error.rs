//! The crate's error type: [`Error`] with a matchable [`ErrorKind`].

use std::fmt;
use std::io;
use std::path::PathBuf;

// The class of an error (what an exit code or a retry loop needs), shared by every crate of
// this workspace: see `Error::class`. (A doc comment here makes rustdoc 1.95 panic.)
pub use atomic_file::ErrorClass;
use leaselock::mutex::{MutexError, MutexErrorKind};

use crate::time::Timestamp;

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from a registry operation. Match on [`Error::kind`]; the message names what is
/// wrong and how to fix it.
#[derive(Debug)]
pub struct Error {
    kind: Box<ErrorKind>,
}

/// Why a compare-and-swap update was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictDetail {
    /// Another agent holds a live claim on the gap.
    ClaimedBy {
        /// The agent holding the claim (the winner of a claim race).
        agent: String,
        /// When the claim expires, if it has a TTL.
        expires_at: Option<Timestamp>,
    },
    /// The gap changed since the caller read it.
    Revision {
        /// The revision the caller expected.
        expected: u64,
        /// The gap's current revision.
        actual: u64,
    },
    /// An object with this id already exists.
    Exists,
    /// The gap is closed (complete or out of scope): most often another agent finished it
    /// between `ready` and `claim`.
    Closed {
        /// Its status.
        status: crate::model::Status,
    },
    /// An idempotency key already filed a different request.
    KeyReused {
        /// What the key filed.
        ids: Vec<String>,
    },
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No registry was found or opened.
    #[error(
        "no gap registry at or above {}: create one with `gapreg init` (library: \
         `Registry::init`)",
        start.display()
    )]
    NoRegistry {
        /// Where the search started (or the directory that was opened).
        start: PathBuf,
    },
    /// `init` found a registry directory already there.
    #[error(
        "a gap registry already exists at {}; open it instead (`Registry::open`), or remove \
         the directory first if you really want to start over",
        path.display()
    )]
    AlreadyExists {
        /// The existing registry directory.
        path: PathBuf,
    },
    /// A gap or loop does not exist.
    #[error("{what} {id} does not exist{}", suggest(.suggestions))]
    NotFound {
        /// `"gap"`, `"loop"` or `"gap or loop"`.
        what: &'static str,
        /// The id asked for.
        id: String,
        /// Existing ids that look like it (closest first).
        suggestions: Vec<String>,
    },
    /// A compare-and-swap update lost: the message names the winner or the revisions.
    #[error("{}", conflict_message(.id, .detail))]
    Conflict {
        /// The gap (or loop) the update was about.
        id: String,
        /// What the update ran into.
        detail: ConflictDetail,
    },
    /// An argument or a requested transition is not allowed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What is invalid (a field, an id, a transition).
        what: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// Some entries of a batch are invalid; nothing was written.
    #[error(
        "nothing was filed: {} of the batch's entries are invalid: {}; fix them and file the \
         whole batch again",
        errors.len(),
        errors.iter().map(|(i, e)| format!("[{i}] {e}")).collect::<Vec<_>>().join("; ")
    )]
    BatchInvalid {
        /// `(index in the batch, what is wrong)` for every invalid entry.
        errors: Vec<(usize, String)>,
    },
    /// A dependency would close a cycle (spelled out in `path`, first = last).
    #[error(
        "dependency cycle: {}; remove one of these dependencies instead",
        path.join(" -> ")
    )]
    Cycle {
        /// The cycle, starting and ending with the same id.
        path: Vec<String>,
    },
    /// A registry file is damaged or unparseable.
    #[error(
        "{} is corrupt: {reason}; fix or restore it from version control (`gapreg doctor` \
         lists every damaged file)",
        path.display()
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry lock was busy until the configured timeout (the error names the holder).
    #[error(
        "{0}; the registry lock {lock} is held by another writer: retry later or raise \
         `lock_timeout_secs` in .gapreg/config.yaml",
        lock = .0.path().display()
    )]
    Timeout(MutexError),
    /// Taking the registry lock failed for another reason.
    #[error("cannot take the registry lock: {0}")]
    Lock(MutexError),
    /// The id store failed (reserving or validating an id).
    #[error(transparent)]
    Ids(#[from] idreserve::Error),
    /// An atomic write or typed read failed.
    #[error(transparent)]
    File(#[from] atomic_file::Error),
    /// The leases (coordination state of [`leaselock`]) failed.
    #[error(transparent)]
    Leases(leaselock::lease::LeaseError),
    /// The coordination server failed (unreachable, a wait ran out, refused credentials).
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Server(#[from] leaselock::server::ServerError),
    /// Another file-system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
}

fn suggest(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

fn conflict_message(id: &str, detail: &ConflictDetail) -> String {
    match detail {
        ConflictDetail::ClaimedBy { agent, expires_at } => format!(
            "{id} is claimed by {agent}{}; pick another gap (`gapreg ready`) or ask {agent} \
             to unclaim it",
            expires_at.map_or(String::new(), |t| format!(" until {t}"))
        ),
        ConflictDetail::Revision { expected, actual } => format!(
            "{id} changed meanwhile: expected revision {expected} but it is at revision \
             {actual}; read it again (`gapreg show {id}`) and redo the change"
        ),
        ConflictDetail::Exists => format!("{id} already exists; choose another id"),
        ConflictDetail::KeyReused { ids } => format!(
            "{id} was already used to file a different request ({}); use a new key for a new \
             request",
            ids.join(", ")
        ),
        ConflictDetail::Closed { status } => format!(
            "{id} is {status}, so there is nothing to claim (it may have been finished since \
             you listed it); pick another gap (`gapreg ready`)"
        ),
    }
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error {
            kind: Box::new(kind),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::new(ErrorKind::Io {
            op,
            path: path.into(),
            source,
        })
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid {
            what: what.into(),
            reason: reason.into(),
        })
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::Corrupt {
            path: path.into(),
            reason: reason.into(),
        })
    }

    pub(crate) fn conflict(id: impl Into<String>, detail: ConflictDetail) -> Error {
        Error::new(ErrorKind::Conflict {
            id: id.into(),
            detail,
        })
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// True when waiting for a lock (the registry's or the id store's) ran out: retry later
    /// (the CLI exits with 75, EX_TEMPFAIL).
    pub fn is_contended(&self) -> bool {
        match &*self.kind {
            ErrorKind::Timeout(_) => true,
            ErrorKind::Ids(e) => matches!(
                e.kind(),
                idreserve::ErrorKind::Lock(m) if m.is_contended()
            ),
            _ => false,
        }
    }

    /// True for [`ErrorKind::NotFound`] and [`ErrorKind::NoRegistry`].
    pub fn is_not_found(&self) -> bool {
        matches!(
            &*self.kind,
            ErrorKind::NotFound { .. } | ErrorKind::NoRegistry { .. }
        )
    }

    /// True when a claim lost a race: the gap was claimed by another agent
    /// ([`ConflictDetail::ClaimedBy`]) or closed ([`ConflictDetail::Closed`]) since the caller
    /// saw it ready. Both are conflicts ([`ErrorClass::Conflict`]); an agent moves on to the
    /// next ready gap.
    pub fn is_lost_race(&self) -> bool {
        matches!(
            &*self.kind,
            ErrorKind::Conflict {
                detail: ConflictDetail::ClaimedBy { .. } | ConflictDetail::Closed { .. },
                ..
            }
        )
    }

    /// The class of this error, what an exit code or a retry loop needs:
    /// [`ErrorClass::NotFound`] for no registry or an unknown gap or loop;
    /// [`ErrorClass::Conflict`] for an existing registry or a lost compare-and-swap;
    /// [`ErrorClass::Invalid`] for a refused argument, batch or dependency cycle;
    /// [`ErrorClass::Damaged`] for a corrupt file; [`ErrorClass::Busy`] for a registry lock
    /// that stayed busy; the wrapped error's own class for the lock, the id store, a file and
    /// the leases; [`ErrorClass::of_io`] for another I/O error.
    ///
    /// ```
    /// use gapreg::{Config, Registry};
    /// use gapreg::atomic_file::ErrorClass;
    ///
    /// let repo = tempfile::tempdir()?;
    /// let reg = Registry::init(repo.path(), Config::default())?;
    /// assert_eq!(reg.show("GAP-OP-9").unwrap_err().class(), ErrorClass::NotFound);
    /// let again = Registry::init(repo.path(), Config::default()).unwrap_err();
    /// assert_eq!(again.class(), ErrorClass::Conflict);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn class(&self) -> ErrorClass {
        match &*self.kind {
            ErrorKind::NoRegistry { .. } | ErrorKind::NotFound { .. } => ErrorClass::NotFound,
            ErrorKind::AlreadyExists { .. } | ErrorKind::Conflict { .. } => ErrorClass::Conflict,
            ErrorKind::Invalid { .. }
            | ErrorKind::BatchInvalid { .. }
            | ErrorKind::Cycle { .. } => ErrorClass::Invalid,
            ErrorKind::Corrupt { .. } => ErrorClass::Damaged,
            ErrorKind::Timeout(_) => ErrorClass::Busy,
            ErrorKind::Lock(m) => m.class(),
            ErrorKind::Ids(e) => e.class(),
            ErrorKind::File(f) => f.class(),
            ErrorKind::Leases(l) => l.class(),
            #[cfg(feature = "postgres")]
            ErrorKind::Server(e) => e.class(),
            ErrorKind::Io { source, .. } => ErrorClass::of_io(source),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.kind)
    }
}

impl From<MutexError> for Error {
    fn from(e: MutexError) -> Error {
        if matches!(
            e.kind(),
            MutexErrorKind::Timeout { .. } | MutexErrorKind::Busy
        ) {
            Error::new(ErrorKind::Timeout(e))
        } else {
            Error::new(ErrorKind::Lock(e))
        }
    }
}

impl From<idreserve::Error> for Error {
    fn from(e: idreserve::Error) -> Error {
        Error::new(ErrorKind::Ids(e))
    }
}

impl From<leaselock::lease::LeaseError> for Error {
    fn from(e: leaselock::lease::LeaseError) -> Error {
        Error::new(ErrorKind::Leases(e))
    }
}

#[cfg(feature = "postgres")]
impl From<leaselock::server::ServerError> for Error {
    fn from(e: leaselock::server::ServerError) -> Error {
        Error::new(ErrorKind::Server(e))
    }
}

impl From<atomic_file::Error> for Error {
    fn from(e: atomic_file::Error) -> Error {
        Error::new(ErrorKind::File(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_own_kind_has_its_class() {
        let class = |kind| Error::new(kind).class();
        let s = String::new;
        assert_eq!(
            class(ErrorKind::NoRegistry { start: "r".into() }),
            ErrorClass::NotFound
        );
        assert_eq!(
            class(ErrorKind::NotFound {
                what: "gap",
                id: s(),
                suggestions: vec![],
            }),
            ErrorClass::NotFound
        );
        assert_eq!(
            class(ErrorKind::AlreadyExists { path: "r".into() }),
            ErrorClass::Conflict
        );
        assert_eq!(
            Error::conflict("GAP-OP-1", ConflictDetail::Exists).class(),
            ErrorClass::Conflict
        );
        assert_eq!(Error::invalid("id", "bad").class(), ErrorClass::Invalid);
        assert_eq!(
            class(ErrorKind::BatchInvalid { errors: vec![] }),
            ErrorClass::Invalid
        );
        assert_eq!(
            class(ErrorKind::Cycle { path: vec![] }),
            ErrorClass::Invalid
        );
        assert_eq!(Error::corrupt("f", "bad").class(), ErrorClass::Damaged);
        let io = |kind| Error::io("read", "f", io::Error::from(kind)).class();
        assert_eq!(io(io::ErrorKind::NotFound), ErrorClass::NotFound);
        assert_eq!(io(io::ErrorKind::TimedOut), ErrorClass::Busy);
        assert_eq!(io(io::ErrorKind::PermissionDenied), ErrorClass::Failure);
    }

    #[test]
    fn a_lost_claim_race_is_a_conflict() {
        let claimed = Error::conflict(
            "GAP-OP-1",
            ConflictDetail::ClaimedBy {
                agent: "CC-1".into(),
                expires_at: None,
            },
        );
        let closed = Error::conflict(
            "GAP-OP-1",
            ConflictDetail::Closed {
                status: crate::model::Status::Complete,
            },
        );
        for lost in [&claimed, &closed] {
            assert!(lost.is_lost_race());
            assert_eq!(lost.class(), ErrorClass::Conflict);
        }
        let moved = ConflictDetail::Revision {
            expected: 1,
            actual: 2,
        };
        assert!(!Error::conflict("GAP-OP-1", moved).is_lost_race());
        assert!(!Error::corrupt("f", "bad").is_lost_race());
    }
}
