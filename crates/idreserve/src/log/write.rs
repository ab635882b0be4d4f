//! What writers write: one record into the next free slot ([`Scan::write_next`], a single
//! 64-byte `pwrite` at [`slot_offset`]), or a whole new log ([`encode`]) when none is free.
//! Both keep the file's length equal to what its header announces, which is what lets a
//! reader tell every truncation or extension from a valid log.

use std::collections::BTreeMap;

use super::read::{Format, Scan};
use super::record::Record;
use super::slot::{FREE, header};
use super::{FREE_SLOTS, MAX_PREFIXES, SLOT_LEN};
use crate::id::check_prefix;

/// Why [`encode`] cannot write a log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// More prefixes than [`MAX_PREFIXES`].
    TooManyPrefixes(usize),
    /// A key that is not a valid prefix.
    InvalidPrefix(String),
}

impl Scan {
    /// What a writer does to add `record` to the log this scan read: the offset and bytes of
    /// the slot to write (one `pwrite`), with this scan updated to the log as it will be.
    /// `None` when the log has no free slot (or is legacy) and must be rewritten whole
    /// ([`encode`]).
    pub fn write_next(&mut self, record: &Record) -> Option<(u64, [u8; SLOT_LEN])> {
        if self.format != Format::V2 {
            return None;
        }
        let slot = self.next_slot?;
        let (bytes, chain) = record.slot_after(self.chain);
        self.chain = chain;
        self.records += 1;
        self.counters.insert(record.prefix.clone(), record.value);
        self.interrupted = false;
        self.next_slot = Some(slot + 1).filter(|&next| next < self.slots);
        Some((slot_offset(slot), bytes))
    }
}

/// A whole version-2 log holding exactly `counters` (one record each) and [`FREE_SLOTS`]
/// free slots: what a writer writes when it creates or rewrites a log.
///
/// # Errors
///
/// More than [`MAX_PREFIXES`] prefixes, or a key that is not a valid prefix.
pub fn encode(counters: &BTreeMap<String, u64>) -> Result<Vec<u8>, EncodeError> {
    if counters.len() > MAX_PREFIXES {
        return Err(EncodeError::TooManyPrefixes(counters.len()));
    }
    if let Some(bad) = counters.keys().find(|p| check_prefix(p).is_err()) {
        return Err(EncodeError::InvalidPrefix(bad.clone()));
    }
    let slots = counters.len() + FREE_SLOTS;
    let mut out = Vec::with_capacity(SLOT_LEN * (slots + 1));
    let (head, mut chain) = header(slots);
    out.extend_from_slice(&head);
    for (prefix, &value) in counters {
        let record = Record {
            prefix: prefix.clone(),
            value,
        };
        let (slot, crc) = record.slot_after(chain);
        out.extend_from_slice(&slot);
        chain = crc;
    }
    for _ in 0..FREE_SLOTS {
        out.extend_from_slice(&[FREE; SLOT_LEN - 1]);
        out.push(b'\n');
    }
    Ok(out)
}

/// The byte offset of slot `index` (0 is the first slot after the header).
pub fn slot_offset(index: usize) -> u64 {
    (SLOT_LEN * (index + 1)) as u64
}
