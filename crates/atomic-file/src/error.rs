//! The one error type of this crate: which path, which step, and why.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checksum::Corruption;
use crate::typed::Format;

/// A specialized `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from an operation on one file.
///
/// It always names the file the caller asked about ([`Error::path`]) and says what went wrong
/// ([`Error::kind`]). For I/O failures the step that failed is part of the kind, and the
/// underlying [`io::Error`] stays reachable through [`Error::io_error`] and
/// [`std::error::Error::source`].
#[derive(Debug)]
pub struct Error {
    path: PathBuf,
    kind: ErrorKind,
}

/// What went wrong; match on it to handle a case.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A system call failed during `step`.
    Io {
        /// The step of the protocol that failed.
        step: Step,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file exists but its checksummed envelope is damaged: it was truncated, altered, or
    /// never written by this crate's checksummed writer. The file was left as it is.
    Corrupt(Corruption),
    /// The file's bytes could not be decoded as the requested type.
    Decode {
        /// The format the bytes were decoded as.
        format: Format,
        /// The decoder's message, with line and column where it gives them.
        message: String,
    },
    /// The value could not be encoded (for example a map with non-string keys as JSON).
    Encode {
        /// The format the value was encoded as.
        format: Format,
        /// The encoder's message.
        message: String,
    },
    /// Waiting for the update lock took longer than the configured timeout.
    LockTimeout {
        /// The lock file that another process holds.
        lock_path: PathBuf,
        /// How long this call waited.
        waited: Duration,
    },
    /// The path cannot be used as a file to replace (a directory, no file name, a symlink loop).
    InvalidPath {
        /// Why the path was refused.
        reason: &'static str,
    },
    /// Inside a [`Dir`](crate::dir::Dir), the entry is not of the expected type: a symlink
    /// (never followed), a FIFO, a directory where a file belongs, or the other way round.
    /// Nothing was opened through it, written or removed.
    WrongType {
        /// What is there.
        found: crate::dir::FileKind,
        /// What was expected.
        expected: crate::dir::FileKind,
    },
    /// The file is longer than the reader's limit; nothing was allocated for it.
    TooLarge {
        /// Its length in bytes.
        len: u64,
        /// The limit in bytes.
        limit: u64,
    },
}

/// The class of an error: what a caller (a command-line tool choosing an exit code, a retry
/// loop) needs to know about it without matching every kind of every crate.
///
/// Every library error of this workspace states its class (`class()` on
/// [`Error`], on leaselock's `MutexError` and `LeaseError`, on idreserve's and gapreg's
/// errors), so a caller maps classes, not error types.
///
/// ```
/// use atomic_file::ErrorClass;
///
/// let err = atomic_file::read_checksummed("/nonexistent/ids.txt").unwrap_err();
/// assert_eq!(err.class(), ErrorClass::NotFound);
/// let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
/// assert_eq!(ErrorClass::of_io(&io), ErrorClass::Busy);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The input was refused: a bad value or path (one escaping its root, no file name), or a
    /// value that cannot be encoded. Retrying the same call will not help.
    Invalid,
    /// What was asked for does not exist (a file, a registry, a lease).
    NotFound,
    /// The request conflicts with the state: it already exists, overlaps what someone else
    /// holds, or lost a race. Nothing was changed.
    Conflict,
    /// Data on disk cannot be trusted: corrupt (failed checksum), undecodable, of the wrong
    /// file type (a planted symlink or FIFO) or too large to be ours. A person or a repair
    /// must fix the named file.
    Damaged,
    /// A lock wait timed out, or the lock was contended and the call did not wait. Retrying
    /// later may succeed.
    Busy,
    /// Anything else: an unexpected I/O error and the like.
    Failure,
}

impl ErrorClass {
    /// The class of an operating-system error, by its [`io::ErrorKind`]: `NotFound` is
    /// [`ErrorClass::NotFound`], `InvalidInput` [`ErrorClass::Invalid`], `InvalidData`
    /// [`ErrorClass::Damaged`], `TimedOut` and `WouldBlock` [`ErrorClass::Busy`], anything else
    /// [`ErrorClass::Failure`]. The one rule every crate of this workspace uses for the
    /// `io::Error`s it carries.
    pub fn of_io(err: &io::Error) -> ErrorClass {
        match err.kind() {
            io::ErrorKind::NotFound => ErrorClass::NotFound,
            io::ErrorKind::InvalidInput => ErrorClass::Invalid,
            io::ErrorKind::InvalidData => ErrorClass::Damaged,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorClass::Busy,
            _ => ErrorClass::Failure,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Invalid => "invalid",
            ErrorClass::NotFound => "not found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Damaged => "damaged",
            ErrorClass::Busy => "busy",
            ErrorClass::Failure => "failure",
        })
    }
}

/// A step of the replace, read, lock or recovery protocol, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Inspecting the target (`lstat`, following symlinks).
    Inspect,
    /// Creating the uniquely named temp file next to the target.
    CreateTemp,
    /// Copying the target's owner and permission bits to the temp file.
    CopyPermissions,
    /// Writing the new contents into the temp file.
    Write,
    /// `fsync` of the temp file.
    SyncFile,
    /// Renaming the temp file over the target.
    Rename,
    /// `fsync` of the directory holding the target, which makes the rename durable.
    SyncDir,
    /// Reading the file.
    Read,
    /// Opening or creating the sibling lock file.
    OpenLock,
    /// Taking the advisory lock.
    Lock,
    /// Listing a directory during recovery.
    ListDir,
    /// Removing a leftover temp file during recovery.
    RemoveTemp,
    /// Opening a file or directory.
    Open,
    /// Creating a directory.
    CreateDir,
    /// Removing a file or directory.
    Remove,
    /// Giving a new file or directory its directory's owner and group.
    Chown,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Inspect => "inspect the target",
            Step::CreateTemp => "create a temp file",
            Step::CopyPermissions => "copy owner and permissions to the temp file",
            Step::Write => "write the temp file",
            Step::SyncFile => "fsync the temp file",
            Step::Rename => "rename the temp file over the target",
            Step::SyncDir => "fsync the directory after the rename",
            Step::Read => "read",
            Step::OpenLock => "open the lock file",
            Step::Lock => "lock the lock file",
            Step::ListDir => "list the directory",
            Step::RemoveTemp => "remove a leftover temp file",
            Step::Open => "open",
            Step::CreateDir => "create the directory",
            Step::Remove => "remove",
            Step::Chown => "give the directory's owner and group to a new entry",
        })
    }
}

impl Error {
    pub(crate) fn new(path: impl Into<PathBuf>, kind: ErrorKind) -> Self {
        Error {
            path: path.into(),
            kind,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, step: Step, source: io::Error) -> Self {
        Error::new(path, ErrorKind::Io { step, source })
    }

    /// The file this error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The operating system's error, if this is an I/O failure.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.kind {
            ErrorKind::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The failed step, if this is an I/O failure.
    pub fn step(&self) -> Option<Step> {
        match &self.kind {
            ErrorKind::Io { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// The class of this error: damaged, undecodable, wrong-type and too-large files are
    /// [`ErrorClass::Damaged`], a lock timeout [`ErrorClass::Busy`], a refused path or an
    /// unencodable value [`ErrorClass::Invalid`], an I/O error by [`ErrorClass::of_io`].
    pub fn class(&self) -> ErrorClass {
        match &self.kind {
            ErrorKind::Corrupt(_)
            | ErrorKind::Decode { .. }
            | ErrorKind::WrongType { .. }
            | ErrorKind::TooLarge { .. } => ErrorClass::Damaged,
            ErrorKind::LockTimeout { .. } => ErrorClass::Busy,
            ErrorKind::InvalidPath { .. } | ErrorKind::Encode { .. } => ErrorClass::Invalid,
            ErrorKind::Io { source, .. } => ErrorClass::of_io(source),
        }
    }

    /// True when the file (or its directory) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.io_error()
            .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
    }

    /// True when the file exists but is damaged ([`ErrorKind::Corrupt`]).
    pub fn is_corrupt(&self) -> bool {
        matches!(self.kind, ErrorKind::Corrupt(_))
    }

    /// True when the data on disk cannot be trusted: damaged ([`ErrorKind::Corrupt`]),
    /// undecodable ([`ErrorKind::Decode`]), of the wrong type ([`ErrorKind::WrongType`]) or
    /// too large to be ours ([`ErrorKind::TooLarge`]).
    pub fn is_damaged(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Corrupt(_)
                | ErrorKind::Decode { .. }
                | ErrorKind::WrongType { .. }
                | ErrorKind::TooLarge { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            ErrorKind::Io { step, source } => write!(f, "cannot {step} for {path}: {source}"),
            ErrorKind::Corrupt(reason) => write!(
                f,
                "{path} is corrupt: {reason}; the file was left untouched: restore it from a \
                 backup or version control, or rewrite it with the checksummed writer"
            ),
            ErrorKind::Decode { format, message } => {
                write!(
                    f,
                    "{path} is not valid {format} for the expected type: {message}"
                )
            }
            ErrorKind::Encode { format, message } => {
                write!(
                    f,
                    "cannot encode the value as {format} for {path}: {message}"
                )
            }
            ErrorKind::LockTimeout { lock_path, waited } => write!(
                f,
                "timed out after {waited:?} waiting for the lock {} guarding {path}: another \
                 process holds it; retry later or raise the lock timeout",
                lock_path.display()
            ),
            ErrorKind::InvalidPath { reason } => write!(f, "cannot use {path}: {reason}"),
            ErrorKind::WrongType { found, expected } => write!(
                f,
                "{path} is {found}, not {expected} as expected; it was not followed, opened or \
                 changed (a repository can hold planted links): remove or replace it by hand"
            ),
            ErrorKind::TooLarge { len, limit } => write!(
                f,
                "{path} is {len} bytes, more than the {limit} bytes allowed; it was not read"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io { source, .. } => Some(source),
            ErrorKind::Corrupt(reason) => Some(reason),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    /// Converts to an [`io::Error`], keeping the OS error kind where there is one.
    fn from(err: Error) -> io::Error {
        let kind = match &err.kind {
            ErrorKind::Io { source, .. } => source.kind(),
            ErrorKind::Corrupt(_)
            | ErrorKind::Decode { .. }
            | ErrorKind::WrongType { .. }
            | ErrorKind::TooLarge { .. } => io::ErrorKind::InvalidData,
            ErrorKind::Encode { .. } | ErrorKind::InvalidPath { .. } => io::ErrorKind::InvalidInput,
            ErrorKind::LockTimeout { .. } => io::ErrorKind::TimedOut,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn err(kind: ErrorKind) -> Error {
        Error::new("f", kind)
    }

    fn io_err(kind: io::ErrorKind) -> Error {
        Error::io("f", Step::Read, io::Error::from(kind))
    }

    #[test]
    fn io_errors_are_classed_by_kind() {
        use io::ErrorKind as K;
        let cases = [
            (K::NotFound, ErrorClass::NotFound),
            (K::InvalidInput, ErrorClass::Invalid),
            (K::InvalidData, ErrorClass::Damaged),
            (K::TimedOut, ErrorClass::Busy),
            (K::WouldBlock, ErrorClass::Busy),
            (K::PermissionDenied, ErrorClass::Failure),
            (K::AlreadyExists, ErrorClass::Failure),
            (K::Other, ErrorClass::Failure),
        ];
        for (kind, class) in cases {
            assert_eq!(ErrorClass::of_io(&io::Error::from(kind)), class, "{kind:?}");
            assert_eq!(io_err(kind).class(), class, "{kind:?}");
        }
    }

    #[test]
    fn every_kind_has_its_class() {
        let cases = [
            (
                err(ErrorKind::Corrupt(Corruption::MissingHeader)),
                ErrorClass::Damaged,
            ),
            (
                err(ErrorKind::Decode {
                    format: Format::Json,
                    message: "x".into(),
                }),
                ErrorClass::Damaged,
            ),
            (
                err(ErrorKind::WrongType {
                    found: crate::dir::FileKind::Symlink,
                    expected: crate::dir::FileKind::File,
                }),
                ErrorClass::Damaged,
            ),
            (
                err(ErrorKind::TooLarge { len: 2, limit: 1 }),
                ErrorClass::Damaged,
            ),
            (
                err(ErrorKind::LockTimeout {
                    lock_path: "l".into(),
                    waited: Duration::from_millis(1),
                }),
                ErrorClass::Busy,
            ),
            (
                err(ErrorKind::InvalidPath { reason: "r" }),
                ErrorClass::Invalid,
            ),
            (
                err(ErrorKind::Encode {
                    format: Format::Yaml,
                    message: "x".into(),
                }),
                ErrorClass::Invalid,
            ),
        ];
        for (e, class) in cases {
            assert_eq!(e.class(), class, "{e}");
        }
    }

    #[test]
    fn damaged_errors_and_the_damaged_class_agree() {
        let e = err(ErrorKind::TooLarge { len: 2, limit: 1 });
        assert!(e.is_damaged());
        assert_eq!(e.class(), ErrorClass::Damaged);
        assert!(!io_err(io::ErrorKind::Other).is_damaged());
    }
}
