//! Exit codes, and the mapping from library errors to them: every library error states its
//! class (`class()`, an [`ErrorClass`]), and [`code_of`] is the one table from class to code.
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

use atomic_file::ErrorClass;

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
    failure(Code::Invalid, message)
}

/// A corrupt-data error (exit 6).
pub fn corrupt(message: impl Into<String>) -> Box<dyn StdError> {
    failure(Code::Corrupt, message)
}

/// A not-found error (exit 4).
pub fn not_found(message: impl Into<String>) -> Box<dyn StdError> {
    failure(Code::NotFound, message)
}

/// A conflict (exit 5).
pub fn conflict(message: impl Into<String>) -> Box<dyn StdError> {
    failure(Code::Conflict, message)
}

fn failure(code: Code, message: impl Into<String>) -> Box<dyn StdError> {
    Box::new(CliError {
        code,
        message: message.into(),
    })
}

/// The exit code for an error: a [`CliError`]'s own code, else the class the library error
/// states (`class()`, see [`ErrorClass`]) mapped by [`code_of`].
pub fn classify(err: &(dyn StdError + 'static)) -> Code {
    if let Some(e) = err.downcast_ref::<CliError>() {
        return e.code;
    }
    code_of(class_of(err))
}

/// Each library error type, asked for its class; the first that `err` is answers.
type ClassOf = fn(&(dyn StdError + 'static)) -> Option<ErrorClass>;
const CLASSES: [ClassOf; 7] = [
    |e| e.downcast_ref().map(gapreg::Error::class),
    |e| e.downcast_ref().map(gapreg_demo::Error::class),
    |e| e.downcast_ref().map(idreserve::Error::class),
    |e| e.downcast_ref().map(leaselock::lease::LeaseError::class),
    |e| e.downcast_ref().map(leaselock::mutex::MutexError::class),
    |e| e.downcast_ref().map(atomic_file::Error::class),
    |e| e.downcast_ref::<std::io::Error>().map(ErrorClass::of_io),
];

/// The class of a library error; [`ErrorClass::Failure`] for anything else.
fn class_of(err: &(dyn StdError + 'static)) -> ErrorClass {
    CLASSES
        .iter()
        .find_map(|class| class(err))
        .unwrap_or(ErrorClass::Failure)
}

/// The exit code of each class.
fn code_of(class: ErrorClass) -> Code {
    match class {
        ErrorClass::Invalid => Code::Invalid,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::Conflict => Code::Conflict,
        ErrorClass::Damaged => Code::Corrupt,
        ErrorClass::Busy => Code::Busy,
        ErrorClass::Failure => Code::Failure,
        // A class added later: unexpected until it is given its own code.
        _ => Code::Failure,
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn each_error_type_answers_with_its_class() {
        let code = |e: Box<dyn StdError>| classify(e.as_ref());
        assert_eq!(code(invalid("bad")), Code::Invalid);
        assert_eq!(code(corrupt("bad")), Code::Corrupt);
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = gapreg::Registry::open(dir.path().join(".gapreg")).expect_err("no registry");
        assert_eq!(code(Box::new(missing)), Code::NotFound);
        let store = idreserve::Store::open(dir.path().join("ids")).expect_err("no store");
        assert_eq!(code(Box::new(store)), Code::NotFound);
        let file = atomic_file::read_checksummed(dir.path().join("f")).expect_err("no file");
        assert_eq!(code(Box::new(file)), Code::NotFound);
        let busy = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(code(Box::new(busy)), Code::Busy);
        assert_eq!(code("anything else".into()), Code::Failure);
    }

    #[test]
    fn every_class_has_its_code() {
        let codes = [
            (ErrorClass::Invalid, 3),
            (ErrorClass::NotFound, 4),
            (ErrorClass::Conflict, 5),
            (ErrorClass::Damaged, 6),
            (ErrorClass::Busy, 75),
            (ErrorClass::Failure, 1),
        ];
        for (class, code) in codes {
            assert_eq!(code_of(class) as u8, code, "{class}");
        }
    }
}
