//! The crate's error type.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use atomic_file::ErrorClass;
use atomic_file::dir::FileKind;
use leaselock::mutex::MutexError;

/// An error from an ID store operation. Match on [`Error::kind`], or use the `is_*` helpers
/// for the classes a caller usually maps to exit codes.
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
    /// A file of the store is damaged, missing while the store exists, or is not a regular
    /// file (a symbolic link, a FIFO, a directory...). Nothing was read through it, changed
    /// or reset: resetting a counter would hand out every ID again.
    #[error(
        "{} (ID store) is corrupt: {reason}. Nothing was changed; restore it from version \
         control or a backup (`gapreg doctor` lists every problem of the store)",
        path.display()
    )]
    Corrupt {
        /// The damaged file (or directory).
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
    /// An ID is well formed but not written the one way its store writes it (zero padding
    /// added or missing), so that `GAP-OP-0001` and `GAP-OP-1` can never both exist.
    #[error("{text:?} is not the canonical form of this ID: write it as {canonical}")]
    NotCanonical {
        /// The text given.
        text: String,
        /// How the store writes this ID.
        canonical: String,
    },
    /// Settings given to [`Store::create`](crate::Store::create) break a rule of
    /// `config.yaml` (an empty allow-list, a duplicate, a width outside 1–20).
    #[error("invalid ID store settings: {reason}")]
    InvalidConfig {
        /// The rule broken, naming the key.
        reason: String,
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
    /// A reservation asked for more than [`MAX_COUNT`](crate::MAX_COUNT) IDs at once. Nothing
    /// was reserved; the counter is unchanged.
    #[error(
        "cannot reserve {count} IDs at once: at most {max} per reservation (reserve in batches, \
         or raise the counter with `Store::raise` if the IDs are already in use)"
    )]
    CountTooLarge {
        /// How many IDs were asked for.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// The store would need more distinct prefixes than its log can hold.
    #[error("the ID store cannot hold {count} prefixes: at most {max}")]
    TooManyPrefixes {
        /// Prefixes that would be stored.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A path given to [`Store::init_from`](crate::Store::init_from) cannot be scanned (a
    /// symbolic link, which is never followed, or not a file or directory).
    #[error("cannot scan {} for IDs: {reason}", path.display())]
    InvalidPath {
        /// The path given.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
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
    /// Reading or writing a file failed (through [`atomic_file`]).
    #[error(transparent)]
    File(#[from] atomic_file::Error),
    /// The coordination server failed (counters on a server, [`crate::PgCounters`]).
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Server(#[from] leaselock::server::ServerError),
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

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::Corrupt {
            path: path.into(),
            reason: reason.into(),
        })
    }

    /// An error of [`atomic_file`] about a file of the store: damage and wrong types (a
    /// symlink, a FIFO, a directory, a file too large to be ours) become
    /// [`ErrorKind::Corrupt`] naming the file; anything else (I/O) stays [`ErrorKind::File`].
    pub(crate) fn store_file(e: atomic_file::Error) -> Error {
        if !e.is_damaged() {
            return Error::new(ErrorKind::File(e));
        }
        let reason = match e.kind() {
            atomic_file::ErrorKind::WrongType { found, expected } => wrong_type(*found, *expected),
            atomic_file::ErrorKind::TooLarge { len, limit } => format!(
                "it is {len} bytes, more than the {limit} bytes a file of the store may have; \
                 it was not read"
            ),
            atomic_file::ErrorKind::Decode { message, .. } => message.clone(),
            _ => e.to_string(),
        };
        Error::corrupt(e.path(), reason)
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// True when a file of the store cannot be trusted ([`ErrorKind::Corrupt`]): damaged,
    /// missing while the store exists, not a regular file, or an invalid `config.yaml`. A
    /// CLI reports it as corrupt data on disk.
    pub fn is_corrupt(&self) -> bool {
        matches!(self.kind, ErrorKind::Corrupt { .. })
    }

    /// True when there is no store ([`ErrorKind::NoStore`]).
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::NoStore { .. })
    }

    /// True when waiting for the store's lock ran out: retry later.
    pub fn is_contended(&self) -> bool {
        matches!(&self.kind, ErrorKind::Lock(m) if m.is_contended())
    }

    /// True for invalid input: a bad prefix, ID, count or path, an unknown prefix, an ID
    /// that was never reserved or is not canonical.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::InvalidPrefix { .. }
                | ErrorKind::InvalidId { .. }
                | ErrorKind::NotCanonical { .. }
                | ErrorKind::InvalidConfig { .. }
                | ErrorKind::UnknownPrefix { .. }
                | ErrorKind::NotReserved { .. }
                | ErrorKind::Overflow { .. }
                | ErrorKind::EmptyReservation
                | ErrorKind::CountTooLarge { .. }
                | ErrorKind::InvalidPath { .. }
        )
    }

    /// The class of this error, for a caller that maps errors to exit codes or retries
    /// without matching every kind: [`ErrorKind::NoStore`] is
    /// [`NotFound`](ErrorClass::NotFound), [`ErrorKind::AlreadyExists`]
    /// [`Conflict`](ErrorClass::Conflict), [`ErrorKind::Corrupt`]
    /// [`Damaged`](ErrorClass::Damaged); a lock or file error has the class of the error it
    /// wraps ([`MutexError::class`], [`atomic_file::Error::class`]), an I/O error that of its
    /// [`io::ErrorKind`] ([`ErrorClass::of_io`]); every other kind is invalid input
    /// ([`Invalid`](ErrorClass::Invalid): a bad prefix, ID, count, path or setting, an unknown
    /// prefix, an ID never reserved or not canonical, an overflow).
    ///
    /// ```
    /// use idreserve::{Config, ErrorClass, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let missing = Store::open(dir.path().join("ids")).unwrap_err();
    /// assert_eq!(missing.class(), ErrorClass::NotFound);
    /// let store = Store::create(dir.path().join("ids"), Config::default())?;
    /// assert_eq!(store.validate("SEC-1").unwrap_err().class(), ErrorClass::Invalid);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn class(&self) -> ErrorClass {
        match &self.kind {
            ErrorKind::NoStore { .. } => ErrorClass::NotFound,
            ErrorKind::AlreadyExists { .. } => ErrorClass::Conflict,
            ErrorKind::Corrupt { .. } => ErrorClass::Damaged,
            ErrorKind::Lock(m) => m.class(),
            ErrorKind::File(f) => f.class(),
            ErrorKind::Io { source, .. } => ErrorClass::of_io(source),
            #[cfg(feature = "postgres")]
            ErrorKind::Server(e) => e.class(),
            _ => ErrorClass::Invalid,
        }
    }

    /// The file this error is about, if it names one.
    pub fn path(&self) -> Option<&Path> {
        match &self.kind {
            ErrorKind::Corrupt { path, .. }
            | ErrorKind::InvalidPath { path, .. }
            | ErrorKind::Io { path, .. } => Some(path),
            ErrorKind::NoStore { dir } | ErrorKind::AlreadyExists { dir } => Some(dir),
            ErrorKind::File(e) => Some(e.path()),
            ErrorKind::Lock(e) => Some(e.path()),
            _ => None,
        }
    }
}

/// The reason text for an entry of the wrong type.
pub(crate) fn wrong_type(found: FileKind, expected: FileKind) -> String {
    format!(
        "it is {found}, not {expected}, and was not followed or opened (a repository can hold \
         planted links and pipes)"
    )
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use leaselock::mutex::FileMutex;

    use super::*;

    fn class(kind: ErrorKind) -> ErrorClass {
        Error::new(kind).class()
    }

    #[test]
    fn each_kind_has_the_class_the_cli_maps_it_to() {
        let dir = PathBuf::from("/ids");
        assert_eq!(
            class(ErrorKind::NoStore { dir: dir.clone() }),
            ErrorClass::NotFound
        );
        assert_eq!(
            class(ErrorKind::AlreadyExists { dir: dir.clone() }),
            ErrorClass::Conflict
        );
        assert_eq!(
            Error::corrupt(&dir, "flipped bit").class(),
            ErrorClass::Damaged
        );
        let invalid = [
            ErrorKind::InvalidPrefix {
                prefix: "sec".into(),
                reason: "lower case",
            },
            ErrorKind::InvalidId {
                text: "SEC".into(),
                reason: "no number",
            },
            ErrorKind::NotCanonical {
                text: "SEC-01".into(),
                canonical: "SEC-1".into(),
            },
            ErrorKind::InvalidConfig {
                reason: "`allow` is empty".into(),
            },
            ErrorKind::UnknownPrefix {
                prefix: "GAP".into(),
                allowed: vec!["SEC".into()],
            },
            ErrorKind::NotReserved {
                id: "SEC-2".into(),
                prefix: "SEC".into(),
                counter: 1,
            },
            ErrorKind::Overflow {
                prefix: "SEC".into(),
                counter: u64::MAX,
                count: 1,
            },
            ErrorKind::EmptyReservation,
            ErrorKind::CountTooLarge {
                count: 1 << 40,
                max: 1,
            },
            ErrorKind::TooManyPrefixes { count: 2, max: 1 },
            ErrorKind::InvalidPath {
                path: dir.clone(),
                reason: "a symbolic link".into(),
            },
        ];
        for kind in invalid {
            let text = kind.to_string();
            assert_eq!(class(kind), ErrorClass::Invalid, "{text}");
        }
    }

    #[test]
    fn io_errors_are_classed_by_their_kind() {
        for (kind, expected) in [
            (io::ErrorKind::NotFound, ErrorClass::NotFound),
            (io::ErrorKind::InvalidData, ErrorClass::Damaged),
            (io::ErrorKind::TimedOut, ErrorClass::Busy),
            (io::ErrorKind::PermissionDenied, ErrorClass::Failure),
        ] {
            let err = Error::io("read", "/ids/counters.log", io::Error::from(kind));
            assert_eq!(err.class(), expected, "{kind:?}");
        }
    }

    #[test]
    fn wrapped_errors_keep_the_class_of_what_they_wrap() {
        let missing = atomic_file::read_checksummed("/nonexistent/ids/counters.log")
            .expect_err("no such file");
        let expected = missing.class();
        assert_eq!(Error::from(missing).class(), expected);
        assert_eq!(expected, ErrorClass::NotFound);

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("counters.lock");
        let _held = FileMutex::new(&path).lock().expect("first lock");
        // From another thread: the mutex refuses a thread that waits for its own lock.
        let other = path.clone();
        let busy = std::thread::spawn(move || {
            FileMutex::new(other)
                .lock_for(Duration::from_millis(20))
                .expect_err("held by the first")
        })
        .join()
        .expect("waiter");
        let expected = busy.class();
        let busy_text = busy.to_string();
        assert_eq!(Error::from(busy).class(), expected);
        assert_eq!(expected, ErrorClass::Busy, "{busy_text}");
    }
}
