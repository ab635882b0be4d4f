//! One record of the log: its text, its checksum chained to the slot before, and its slot.
//!
//! A [`Record`] is valid by construction (its prefix passed [`check_prefix`]), so its text
//! always fits in one slot: a prefix is at most 32 bytes and a `u64` at most 20 digits,
//! which with two spaces and 8 hex digits stays below the 63 bytes of a slot's line.

use super::SLOT_LEN;
use super::slot::{chained, padded};
use crate::id::check_prefix;

/// One record: `prefix`'s counter is now `value`. Valid by construction (its prefix is
/// checked), so its slot always fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub(crate) prefix: String,
    pub(crate) value: u64,
}

impl Record {
    /// A record, if `prefix` is valid ([`check_prefix`]).
    pub fn new(prefix: &str, value: u64) -> Result<Record, crate::Error> {
        check_prefix(prefix)?;
        Ok(Record {
            prefix: prefix.to_owned(),
            value,
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The counter it sets: the highest number reserved for the prefix.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// The record's line in the first release's format (without its newline): `PREFIX NUMBER
    /// CRC`, the CRC-32 of `PREFIX NUMBER`.
    pub fn legacy_text(&self) -> String {
        let body = format!("{} {}", self.prefix, self.value);
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body} {crc:08x}")
    }

    /// The record's version-2 text (no padding) when it follows a record or header whose
    /// checksum is `chain`, and its own checksum (the next record's `chain`).
    pub fn text_after(&self, chain: u32) -> (String, u32) {
        let body = format!("{} {}", self.prefix, self.value);
        let crc = chained(chain, &body);
        (format!("{body} {crc:08x}"), crc)
    }

    /// The record's slot after `chain` (its text padded with spaces to 63 bytes, and a
    /// newline), and its checksum.
    pub fn slot_after(&self, chain: u32) -> ([u8; SLOT_LEN], u32) {
        let (text, crc) = self.text_after(chain);
        (padded(text.as_bytes(), b' '), crc)
    }

    /// Parses a record's text (no padding, no newline): chained to `chain` (version 2), or
    /// with the checksum of its own text (`None`: the first release). `None` unless
    /// canonical and checksum-valid; else the record and its checksum.
    pub(super) fn decode(text: &[u8], chain: Option<u32>) -> Option<(Record, u32)> {
        let text = std::str::from_utf8(text).ok()?;
        let (body, crc) = text.rsplit_once(' ')?;
        let (prefix, value) = body.split_once(' ')?;
        let canonical_hex =
            crc.len() == 8 && crc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let canonical_value = value == "0"
            || (!value.is_empty()
                && !value.starts_with('0')
                && value.bytes().all(|b| b.is_ascii_digit()));
        if !canonical_hex || !canonical_value || check_prefix(prefix).is_err() {
            return None;
        }
        let value = value.parse().ok()?;
        let crc = u32::from_str_radix(crc, 16).ok()?;
        let expected = match chain {
            Some(chain) => chained(chain, body),
            None => crc32fast::hash(body.as_bytes()),
        };
        (crc == expected).then(|| {
            (
                Record {
                    prefix: prefix.to_owned(),
                    value,
                },
                crc,
            )
        })
    }
}
