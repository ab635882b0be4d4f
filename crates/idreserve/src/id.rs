//! IDs (`PREFIX-NUMBER`) and prefixes.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind};

/// Longest prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 32;

/// Checks a prefix: upper-case ASCII letters, digits and dashes, starting with a letter, not
/// ending with a dash, no two dashes in a row, at most [`MAX_PREFIX_LEN`] bytes.
///
/// ```
/// assert!(idreserve::check_prefix("GAP-OP").is_ok());
/// assert!(idreserve::check_prefix("sec").is_err());
/// ```
pub fn check_prefix(prefix: &str) -> Result<(), Error> {
    let reason = if prefix.is_empty() {
        Some("it is empty")
    } else if prefix.len() > MAX_PREFIX_LEN {
        Some("it is longer than 32 characters")
    } else if !prefix.starts_with(|c: char| c.is_ascii_uppercase()) {
        Some("it must start with an upper-case letter A-Z")
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("it may only contain upper-case letters A-Z, digits and dashes")
    } else if prefix.ends_with('-') || prefix.contains("--") {
        Some("dashes must separate letters or digits (no trailing or doubled dash)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::new(ErrorKind::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        })),
        None => Ok(()),
    }
}

/// One ID: a prefix and a number, shown as `PREFIX-NUMBER` (zero-padded to `width` digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub(crate) prefix: String,
    pub(crate) number: u64,
    pub(crate) width: usize,
}

impl Id {
    /// An ID from its parts; checks the prefix.
    ///
    /// ```
    /// let id = idreserve::Id::new("GAP-OP", 1091)?;
    /// assert_eq!(id.to_string(), "GAP-OP-1091");
    /// assert_eq!(id.clone().with_width(6).to_string(), "GAP-OP-001091");
    /// # Ok::<(), idreserve::Error>(())
    /// ```
    pub fn new(prefix: &str, number: u64) -> Result<Id, Error> {
        check_prefix(prefix)?;
        Ok(Id {
            prefix: prefix.to_owned(),
            number,
            width: 0,
        })
    }

    /// The same ID shown with its number zero-padded to `width` digits.
    pub fn with_width(mut self, width: usize) -> Id {
        self.width = width;
        self
    }

    /// The prefix, e.g. `GAP-OP`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The number, e.g. `1091`.
    pub fn number(&self) -> u64 {
        self.number
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{:0width$}",
            self.prefix,
            self.number,
            width = self.width
        )
    }
}

impl FromStr for Id {
    type Err = Error;

    /// Parses `PREFIX-NUMBER`; the number is what follows the last dash, so prefixes may
    /// contain dashes. Zero padding is accepted and kept.
    ///
    /// ```
    /// let id: idreserve::Id = "GAP-OP-0042".parse()?;
    /// assert_eq!((id.prefix(), id.number()), ("GAP-OP", 42));
    /// assert_eq!(id.to_string(), "GAP-OP-0042");
    /// assert!("GAP-OP".parse::<idreserve::Id>().is_err());
    /// # Ok::<(), idreserve::Error>(())
    /// ```
    fn from_str(text: &str) -> Result<Id, Error> {
        let invalid = |reason| {
            Error::new(ErrorKind::InvalidId {
                text: text.to_owned(),
                reason,
            })
        };
        let (prefix, digits) = text
            .rsplit_once('-')
            .ok_or_else(|| invalid("expected PREFIX-NUMBER, like SEC-20 or GAP-OP-1091"))?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the part after the last dash must be a number"));
        }
        let number = digits
            .parse()
            .map_err(|_| invalid("the number is too large"))?;
        check_prefix(prefix)?;
        Ok(Id {
            prefix: prefix.to_owned(),
            number,
            width: if digits.len() > 1 && digits.starts_with('0') {
                digits.len()
            } else {
                0
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for good in ["SEC", "GAP-OP", "A", "X9", "GAP-OP-2"] {
            assert!(check_prefix(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "sec",
            "9X",
            "-A",
            "A-",
            "A--B",
            "A_B",
            "A B",
            &"A".repeat(33),
        ] {
            let err = check_prefix(bad).expect_err(bad);
            assert!(err.to_string().contains("prefix"), "{err}");
        }
    }

    #[test]
    fn parse_and_show() {
        let id: Id = "GAP-OP-1091".parse().expect("parse");
        assert_eq!(id, Id::new("GAP-OP", 1091).expect("new"));
        assert_eq!(id.to_string(), "GAP-OP-1091");
        for bad in [
            "SEC",
            "SEC-",
            "SEC-x1",
            "-1",
            "sec-1",
            "SEC-99999999999999999999999",
        ] {
            assert!(bad.parse::<Id>().is_err(), "{bad}");
        }
        assert_eq!(
            "SEC-007".parse::<Id>().expect("padded").to_string(),
            "SEC-007"
        );
        assert_eq!("SEC-0".parse::<Id>().expect("zero").to_string(), "SEC-0");
    }
}
