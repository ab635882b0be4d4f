//! Exit codes, and the mapping from library errors to them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | unexpected failure (an I/O error and the like) |
//! | 2 | usage error (bad arguments; printed by clap) |
//! | 3 | invalid input: a bad value, unknown prefix or status, unreserved id, path escaping the root, dependency cycle, invalid batch entry |
//! | 4 | not found: no registry, unknown gap, loop or lease |
//! | 5 | conflict: lease overlap, gap already claimed or closed (a lost race), id already used |
//! | 6 | corrupt data on disk |
//! | 75 | busy: a lock wait timed out; try again later |

use std::error::Error as StdError;
use std::io;

/// The text of `gapreg --help`'s exit-code section.
pub const HELP: &str = "\
Exit codes:
  0   success
  1   unexpected failure (I/O error and the like)
  2   usage error
  3   invalid input (bad value, unknown prefix or status, unreserved id, path escaping the
      root, dependency cycle, invalid batch entry)
  4   not found (no registry, unknown gap, loop or lease)
  5   conflict (lease overlap, gap already claimed or closed, id already used)
  6   corrupt data on disk
  75  busy (a lock wait timed out; try again later)";

/// An exit code class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Failure = 1,
    Invalid = 3,
    NotFound = 4,
    Conflict = 5,
    Corrupt = 6,
    Busy = 75,
}

/// A failure the CLI itself detects (bad input it parsed), with its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: Code,
    pub message: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for CliError {}

/// An invalid-input error (exit 3).
pub fn invalid(message: impl Into<String>) -> Box<dyn StdError> {
    Box::new(CliError {
        code: Code::Invalid,
        message: message.into(),
    })
}

/// A corrupt-data error (exit 6).
pub fn corrupt(message: impl Into<String>) -> Box<dyn StdError> {
    Box::new(CliError {
        code: Code::Corrupt,
        message: message.into(),
    })
}

/// A not-found error (exit 4).
pub fn not_found(message: impl Into<String>) -> Box<dyn StdError> {
    Box::new(CliError {
        code: Code::NotFound,
        message: message.into(),
    })
}

/// The exit code for an error from any of the library crates.
pub fn classify(err: &(dyn StdError + 'static)) -> Code {
    if let Some(e) = err.downcast_ref::<CliError>() {
        return e.code;
    }
    if let Some(e) = err.downcast_ref::<atomic_file::Error>() {
        return file_code(e);
    }
    if let Some(e) = err.downcast_ref::<leaselock::mutex::MutexError>() {
        return mutex_code(e);
    }
    if let Some(e) = err.downcast_ref::<idreserve::Error>() {
        use idreserve::ErrorKind as K;
        return match e.kind() {
            K::NoStore { .. } => Code::NotFound,
            K::AlreadyExists { .. } => Code::Conflict,
            K::Corrupt { .. } => Code::Corrupt,
            K::Lock(m) => mutex_code(m),
            K::File(f) => file_code(f),
            K::Io { source, .. } => io_code(source),
            _ => Code::Invalid,
        };
    }
    if let Some(e) = err.downcast_ref::<gapreg::Error>() {
        use gapreg::ErrorKind as K;
        return match e.kind() {
            K::NoRegistry { .. } | K::NotFound { .. } => Code::NotFound,
            K::AlreadyExists { .. } | K::Conflict { .. } => Code::Conflict,
            K::Invalid { .. } | K::BatchInvalid { .. } | K::Cycle { .. } => Code::Invalid,
            K::Corrupt { .. } => Code::Corrupt,
            K::Timeout(_) => Code::Busy,
            K::Lock(m) => mutex_code(m),
            K::Ids(inner) => classify(inner),
            K::File(f) => file_code(f),
            K::Leases(l) => lease_code(l),
            K::Io { source, .. } => io_code(source),
            _ => Code::Failure,
        };
    }
    if let Some(e) = err.downcast_ref::<leaselock::lease::LeaseError>() {
        return lease_code(e);
    }
    if let Some(e) = err.downcast_ref::<io::Error>() {
        return io_code(e);
    }
    Code::Failure
}

fn file_code(e: &atomic_file::Error) -> Code {
    use atomic_file::ErrorKind as K;
    match e.kind() {
        // Damaged, undecodable, of the wrong type (a planted symlink or FIFO) or too large.
        K::Corrupt(_) | K::Decode { .. } | K::WrongType { .. } | K::TooLarge { .. } => {
            Code::Corrupt
        }
        K::LockTimeout { .. } => Code::Busy,
        K::InvalidPath { .. } | K::Encode { .. } => Code::Invalid,
        K::Io { source, .. } => io_code(source),
        _ => Code::Failure,
    }
}

fn mutex_code(e: &leaselock::mutex::MutexError) -> Code {
    if e.is_contended() {
        Code::Busy
    } else if e.is_damaged() {
        // A planted link, FIFO or wrong type at the lock file or its queue.
        Code::Corrupt
    } else {
        Code::Failure
    }
}

fn lease_code(e: &leaselock::lease::LeaseError) -> Code {
    use leaselock::lease::LeaseErrorKind as K;
    match e.kind() {
        K::Conflict { .. } | K::NotHolder { .. } | K::Expired { .. } => Code::Conflict,
        K::InvalidPath { .. } | K::InvalidRequest { .. } => Code::Invalid,
        K::NotFound { .. } => Code::NotFound,
        K::Corrupt { .. } => Code::Corrupt,
        K::Busy { .. } | K::Timeout { .. } => Code::Busy,
        K::Mutex { source } => mutex_code(source),
        _ => Code::Failure,
    }
}

fn io_code(e: &io::Error) -> Code {
    match e.kind() {
        io::ErrorKind::NotFound => Code::NotFound,
        io::ErrorKind::InvalidInput => Code::Invalid,
        io::ErrorKind::InvalidData => Code::Corrupt,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Code::Busy,
        _ => Code::Failure,
    }
}
