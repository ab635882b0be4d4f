//! Reading a log: every slot classified, every byte checked, damage told from the one
//! tolerated defect (an interrupted write in the slot after the records). The rules are in
//! the [module docs](super); this module never allocates more than the data it is given
//! holds, and never panics on any input (the `idreserve_counters` fuzz target checks both).

use std::collections::BTreeMap;
use std::fmt;

use super::record::Record;
use super::slot::{FREE, HEADER_V2, header};
use super::{MAGIC, MAX_SLOTS, SLOT_LEN};

/// Longest legacy log read (the first release compacted at 64 records; this is generous).
const MAX_LEGACY_LEN: usize = 1 << 20;

/// Which format a log was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Version 2: header and slots.
    V2,
    /// The first release's: lines without a header (to be rewritten in version 2).
    Legacy,
}

/// What a log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The format it was read in.
    pub format: Format,
    /// Each prefix's counter.
    pub counters: BTreeMap<String, u64>,
    /// Records read.
    pub records: usize,
    /// Slots after the header (version 2; 0 for a legacy log).
    pub slots: usize,
    /// The slot the next record goes to (the first one after the records), or `None` when
    /// every slot is taken (or the log is legacy): then the log must be rewritten.
    pub next_slot: Option<usize>,
    /// Whether that slot holds an interrupted write (ignored; the next writer overwrites it).
    pub interrupted: bool,
    /// The checksum the next record chains from: the last record's, or the header's.
    pub chain: u32,
}

/// Damage found in a log: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// 1-based line (the header is line 1; slot `i` is line `i + 2`).
    pub line: usize,
    /// Byte offset where the damaged line starts.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
    /// Whether the damage is in the slot a writer writes next (the first after the records),
    /// in a file of the right length: a reader without the lock may have read that slot
    /// while a writer was writing it, and should read again before calling it damage.
    pub in_next_slot: bool,
}

impl Damage {
    fn at(line: usize, reason: impl Into<String>) -> Damage {
        Damage {
            line,
            offset: (line - 1) * SLOT_LEN,
            reason: reason.into(),
            in_next_slot: false,
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} (byte {}): {}",
            self.line, self.offset, self.reason
        )
    }
}

impl std::error::Error for Damage {}

/// One slot, classified.
enum Slot {
    Record(Record, u32),
    Free,
    Interrupted,
}

fn classify(slot: &[u8], chain: u32) -> Result<Slot, &'static str> {
    let (body, newline) = slot.split_at(SLOT_LEN - 1);
    if newline != b"\n" {
        return Err("the line does not end in a newline at byte 64 of its slot");
    }
    if body.contains(&0) {
        return Err("it holds zero bytes (blocks lost in a crash, or overwritten)");
    }
    if body.iter().all(|&b| b == FREE) {
        return Ok(Slot::Free);
    }
    if let Some(dots) = body.iter().position(|&b| b == FREE) {
        // The beginning of a record and the dots of the free slot it was written over.
        let (written, rest) = body.split_at(dots);
        let record_byte = |b: &u8| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'a'..=b'f' | b'-' | b' ')
        };
        if written.first().is_some_and(u8::is_ascii_uppercase)
            && written.iter().all(record_byte)
            && rest.iter().all(|&b| b == FREE)
        {
            return Ok(Slot::Interrupted);
        }
        return Err("it is neither a record nor a free slot");
    }
    let text_len = body.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    Record::decode(&body[..text_len], Some(chain))
        .map(|(record, crc)| Slot::Record(record, crc))
        .ok_or(
            "it is not a valid `PREFIX NUMBER CRC32` record (its checksum, which chains to the \
             record before, does not match, or its form is not canonical)",
        )
}

/// Reads a log. `legacy` allows the first release's format (a store whose `config.yaml` has
/// no `version`). Never panics; reads nothing beyond `data`.
pub fn scan(data: &[u8], legacy: bool) -> Result<Scan, Damage> {
    if !data.starts_with(MAGIC) {
        if legacy {
            return scan_legacy(data);
        }
        let reason = if data.is_empty() {
            "the file is empty; an ID store's log always starts with its \
             `# idreserve counters v2` header (written when the store was created), so it \
             was truncated or emptied"
        } else {
            "it does not start with the `# idreserve counters v2` header (garbage, or a file \
             not written by idreserve)"
        };
        return Err(Damage::at(1, reason));
    }
    if data.len() < SLOT_LEN {
        return Err(Damage::at(1, "the header is cut off"));
    }
    let head = &data[..SLOT_LEN];
    let (slots, chain) = parse_header(head).ok_or_else(|| {
        let reason = if head.starts_with(HEADER_V2.as_bytes()) {
            "the header is damaged (not canonical, or its checksum does not match)"
        } else {
            "the header names a format version this release does not read (written by a \
             newer idreserve?)"
        };
        Damage::at(1, reason)
    })?;
    let expected = SLOT_LEN * (slots + 1);
    if data.len() != expected {
        return Err(Damage::at(
            1,
            format!(
                "the file is {} bytes but its header announces {slots} slots ({expected} \
                 bytes): it was truncated or extended",
                data.len()
            ),
        ));
    }
    let mut scan = Scan {
        format: Format::V2,
        counters: BTreeMap::new(),
        records: 0,
        slots,
        next_slot: None,
        interrupted: false,
        chain,
    };
    for (i, slot) in data[SLOT_LEN..].chunks_exact(SLOT_LEN).enumerate() {
        let line = i + 2;
        let kind = classify(slot, scan.chain).map_err(|reason| Damage {
            in_next_slot: scan.next_slot.is_none(),
            ..Damage::at(line, reason)
        })?;
        match (kind, scan.next_slot) {
            (Slot::Record(r, crc), None) => {
                scan.counters.insert(r.prefix, r.value);
                scan.records += 1;
                scan.chain = crc;
            }
            (Slot::Free, None) => scan.next_slot = Some(i),
            (Slot::Interrupted, None) => {
                scan.next_slot = Some(i);
                scan.interrupted = true;
            }
            (Slot::Free, Some(_)) => {}
            (Slot::Record(..), Some(_)) => {
                return Err(Damage::at(
                    line,
                    "a record follows a free slot (records are written in order, so one \
                     before it was lost or this one was moved)",
                ));
            }
            (Slot::Interrupted, Some(_)) => {
                return Err(Damage::at(line, "it is neither a record nor a free slot"));
            }
        }
    }
    Ok(scan)
}

/// The number of slots a canonical version-2 header announces, and its checksum.
pub(super) fn parse_header(head: &[u8]) -> Option<(usize, u32)> {
    let rest = head.strip_prefix(HEADER_V2.as_bytes())?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 5 {
        return None;
    }
    let slots: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let (expected, crc) = header(slots);
    ((1..=MAX_SLOTS).contains(&slots) && expected == head).then_some((slots, crc))
}

/// Reads a log in the first release's format: one `PREFIX NUMBER CRC` line per record, every
/// line valid (the last may lack its newline). An empty log holds no counter.
pub fn scan_legacy(data: &[u8]) -> Result<Scan, Damage> {
    let damage = |line: usize, offset: usize, reason: &str| Damage {
        line,
        offset,
        in_next_slot: false,
        reason: format!(
            "{reason} (this log has no `# idreserve counters v2` header, so it is read in the \
             first release's format, where every line must be a valid record)"
        ),
    };
    if data.len() > MAX_LEGACY_LEN {
        return Err(damage(1, 0, "it is too long for a first-release log"));
    }
    let mut scan = Scan {
        format: Format::Legacy,
        counters: BTreeMap::new(),
        records: 0,
        slots: 0,
        next_slot: None,
        interrupted: false,
        chain: 0,
    };
    let mut offset = 0;
    for (i, line) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let (record, _) = Record::decode(text, None).ok_or_else(|| {
            damage(
                i + 1,
                offset,
                "it is not a valid `PREFIX NUMBER CRC32` record",
            )
        })?;
        scan.counters.insert(record.prefix, record.value);
        scan.records += 1;
        offset += line.len();
    }
    Ok(scan)
}
