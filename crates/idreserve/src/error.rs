//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use leaselock::mutex::MutexError;

/// An error from an ID store operation. Match on [`Error::kind`].
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// There is no store at this directory.
    #[error(
        "no ID store at {}: create one with `idreserve::Store::create` (CLI: `gapreg init`)",
        dir.display()
    )]
    NoStore {
        /// The directory that was expected to hold the store.
        dir: PathBuf,
    },
    /// A store already exists where one was to be created.
    #[error("an ID store already exists at {}; open it instead of creating it", dir.display())]
    AlreadyExists {
        /// The store's directory.
        dir: PathBuf,
    },
    /// The counter log is damaged. It is never reset: that would hand out every ID again.
    #[error(
        "the counter log {} is corrupt: {reason}; it was left untouched. Restore it from a \
         backup or version control, or repair the named line by hand (each line is \
         `PREFIX NUMBER CRC32`; `gapreg doctor` checks it)",
        path.display()
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A prefix breaks the naming rules.
    #[error("invalid prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// An ID could not be parsed.
    #[error("invalid ID {text:?}: {reason}")]
    InvalidId {
        /// The text given.
        text: String,
        /// Why it is not an ID.
        reason: &'static str,
    },
    /// The store's allow-list does not contain the prefix.
    #[error("unknown prefix {prefix:?}: this store allows only {}; add it to the `allow` list in the store's config.yaml to use it", allowed.join(", "))]
    UnknownPrefix {
        /// The prefix given.
        prefix: String,
        /// The prefixes the store allows.
        allowed: Vec<String>,
    },
    /// An ID was never reserved: its number is above its prefix's counter.
    #[error(
        "{id} was never reserved: the counter for {prefix} is at {counter}; reserve IDs with \
         `gapreg ids reserve {prefix}` instead of choosing them by hand"
    )]
    NotReserved {
        /// The ID given.
        id: String,
        /// Its prefix.
        prefix: String,
        /// The prefix's counter (0 if never used).
        counter: u64,
    },
    /// A reservation would overflow the counter.
    #[error("cannot reserve {count} more IDs for {prefix}: its counter {counter} would overflow")]
    Overflow {
        /// The prefix.
        prefix: String,
        /// Its counter.
        counter: u64,
        /// How many IDs were asked for.
        count: u64,
    },
    /// A reservation of zero IDs was asked for.
    #[error("a reservation must ask for at least one ID")]
    EmptyReservation,
    /// Taking the store's lock failed or timed out (the error names the holder).
    #[error(transparent)]
    Lock(#[from] MutexError),
    /// Reading or writing a store file failed.
    #[error("cannot {step} {}: {source}", path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Reading or writing the store's config failed.
    #[error(transparent)]
    File(#[from] atomic_file::Error),
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error { kind }
    }

    pub(crate) fn io(step: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::new(ErrorKind::Io {
            step,
            path: path.into(),
            source,
        })
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl<E: Into<ErrorKind>> From<E> for Error {
    fn from(e: E) -> Error {
        Error::new(e.into())
    }
}
