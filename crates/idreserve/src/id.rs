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

/// Widest zero padding, in digits: every `u64` fits in 20 digits, so more would only be
/// leading zeros (and an untrusted width must not size an allocation).
pub const MAX_WIDTH: usize = 20;

/// One ID: a prefix and a number, shown as `PREFIX-NUMBER` (zero-padded to `width` digits).
///
/// Each ID has exactly one canonical text: the number in decimal, without leading zeros unless
/// its store's config sets a width for the prefix (then padded to that width). Parsing with
/// [`str::parse`] accepts only the unpadded form; [`Id::parse_lenient`] accepts any padding
/// (for scanners), and [`Store::validate`](crate::Store::validate) accepts exactly the
/// store's form, so `GAP-OP-0001` and `GAP-OP-1` can never both be valid in one store.
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

    /// The same ID shown with its number zero-padded to `width` digits (at most
    /// [`MAX_WIDTH`]; a larger width is clamped).
    pub fn with_width(mut self, width: usize) -> Id {
        self.width = width.min(MAX_WIDTH);
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

    /// The zero padding this ID is shown with (0: none).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Parses `PREFIX-NUMBER` accepting any zero padding, which is kept (`SEC-007` has width
    /// 3). For tools that must see every number in use, such as a scan of existing files; to
    /// accept an ID from a person or a file name, use [`str::parse`] or
    /// [`Store::validate`](crate::Store::validate), which insist on the canonical form.
    ///
    /// ```
    /// let id = idreserve::Id::parse_lenient("GAP-OP-0042")?;
    /// assert_eq!((id.prefix(), id.number(), id.width()), ("GAP-OP", 42, 4));
    /// assert_eq!(id.to_string(), "GAP-OP-0042");
    /// # Ok::<(), idreserve::Error>(())
    /// ```
    pub fn parse_lenient(text: &str) -> Result<Id, Error> {
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
        let significant = digits.trim_start_matches('0');
        if significant.len() > MAX_WIDTH {
            return Err(invalid("the number is too large"));
        }
        let number = if significant.is_empty() {
            0
        } else {
            significant
                .parse()
                .map_err(|_| invalid("the number is too large"))?
        };
        if digits.len() > MAX_WIDTH {
            return Err(invalid("the number has more than 20 digits"));
        }
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

    /// Checks that `text` is exactly how this ID is written (its prefix, its number padded to
    /// its width); [`ErrorKind::NotCanonical`] names the canonical form otherwise.
    pub(crate) fn check_canonical(&self, text: &str) -> Result<(), Error> {
        let canonical = self.to_string();
        if canonical == text {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::NotCanonical {
                text: text.to_owned(),
                canonical,
            }))
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{:0width$}",
            self.prefix,
            self.number,
            width = self.width.min(MAX_WIDTH)
        )
    }
}

impl FromStr for Id {
    type Err = Error;

    /// Parses `PREFIX-NUMBER` in canonical form: the number is what follows the last dash (so
    /// prefixes may contain dashes), in decimal without leading zeros. A zero-padded number
    /// is refused with [`ErrorKind::NotCanonical`] naming the unpadded form (use
    /// [`Id::parse_lenient`] or [`Store::validate`](crate::Store::validate) for a store that
    /// pads).
    ///
    /// ```
    /// let id: idreserve::Id = "GAP-OP-42".parse()?;
    /// assert_eq!((id.prefix(), id.number()), ("GAP-OP", 42));
    /// let err = "GAP-OP-0042".parse::<idreserve::Id>().unwrap_err();
    /// assert!(err.to_string().contains("write it as GAP-OP-42"), "{err}");
    /// assert!("GAP-OP".parse::<idreserve::Id>().is_err());
    /// # Ok::<(), idreserve::Error>(())
    /// ```
    fn from_str(text: &str) -> Result<Id, Error> {
        let id = Id::parse_lenient(text)?.with_width(0);
        id.check_canonical(text)?;
        Ok(id)
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
            Id::parse_lenient("SEC-007").expect("padded").to_string(),
            "SEC-007"
        );
        assert_eq!("SEC-0".parse::<Id>().expect("zero").to_string(), "SEC-0");
        for (padded, canonical) in [("SEC-0001", "SEC-1"), ("SEC-00", "SEC-0"), ("A-01", "A-1")] {
            let err = padded.parse::<Id>().expect_err(padded);
            assert!(
                matches!(err.kind(), ErrorKind::NotCanonical { canonical: c, .. } if c == canonical),
                "{err}"
            );
        }
        // u64::MAX parses; one more, or more than 20 digits of padding, does not.
        assert_eq!(
            "SEC-18446744073709551615"
                .parse::<Id>()
                .expect("max")
                .number(),
            u64::MAX
        );
        assert!("SEC-18446744073709551616".parse::<Id>().is_err());
        assert!(Id::parse_lenient(&format!("SEC-{}", "0".repeat(21) + "1")).is_err());
        // An untrusted width cannot size an allocation.
        let id = Id::new("SEC", 1).expect("id").with_width(usize::MAX);
        assert_eq!(id.to_string().len(), "SEC-".len() + MAX_WIDTH);
    }
}
