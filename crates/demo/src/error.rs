//! The crate's error type: what stopped a demo run before it could be checked.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use gapreg::atomic_file::{self, ErrorClass};
use gapreg::leaselock::lease::LeaseError;

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a demo run (or one of its processes) stopped. A run that finished but whose checks
/// failed is no error: see [`Verification::passed`](crate::Verification::passed) and
/// [`FileLayerReport::passed`](crate::file_layer::FileLayerReport::passed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A registry operation failed (reserving ids in its id store included).
    #[error(transparent)]
    Registry(#[from] gapreg::Error),
    /// Taking or releasing a lease failed.
    #[error(transparent)]
    Leases(#[from] LeaseError),
    /// Writing, reading or recovering a file failed.
    #[error(transparent)]
    File(#[from] atomic_file::Error),
    /// Another operating-system call failed (starting or waiting for a process, a plain read
    /// or write of a scratch file).
    #[error("cannot {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// An agent's report could not be read or written.
    #[error("an agent's report is not valid JSON: {0}")]
    Report(#[from] serde_json::Error),
    /// Some agent processes did not exit successfully (every one was waited for).
    #[error("{} of {total} agent processes failed ({})", failed.len(), failed.join(", "))]
    AgentsFailed {
        /// How many agents were started.
        total: u32,
        /// The exit status of each that failed.
        failed: Vec<String>,
    },
    /// A worker process of the file-layer run did not exit successfully.
    #[error("a worker failed: {status}")]
    WorkerFailed {
        /// Its exit status.
        status: ExitStatus,
    },
    /// The file to damage is too short to flip a bit in.
    #[error("{} is too short to damage", path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
    },
}

impl Error {
    /// Wraps an operating-system error with what was being done.
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { op, source }
    }

    /// The class of this error: a library error's own class, an I/O error's by
    /// [`ErrorClass::of_io`], anything else (a failed process, an unreadable report)
    /// [`ErrorClass::Failure`].
    ///
    /// ```
    /// use gapreg_demo::Error;
    /// use gapreg::atomic_file::ErrorClass;
    ///
    /// let err = Error::AgentsFailed { total: 3, failed: vec!["exit status: 1".into()] };
    /// assert_eq!(err.class(), ErrorClass::Failure);
    /// assert_eq!(err.to_string(), "1 of 3 agent processes failed (exit status: 1)");
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Registry(e) => e.class(),
            Error::Leases(e) => e.class(),
            Error::File(e) => e.class(),
            Error::Io { source, .. } => ErrorClass::of_io(source),
            Error::Report(_)
            | Error::AgentsFailed { .. }
            | Error::WorkerFailed { .. }
            | Error::TooShort { .. } => ErrorClass::Failure,
        }
    }
}
