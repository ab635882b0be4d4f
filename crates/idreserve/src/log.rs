//! The counter log `counters.log`: its on-disk format (version 2), the reader of the first
//! release's format, and the rules that decide what damage is.
//!
//! Public so that tools and the fuzz targets can check a log without a store; a store reads
//! and writes it only through [`Store`](crate::Store).
//!
//! # Format (version 2)
//!
//! The file is a sequence of **slots** of exactly [`SLOT_LEN`] = 64 bytes, each one text line
//! (63 bytes and a `\n`). The first slot is the header, every other slot a record or free:
//!
//! ```text
//! # idreserve counters v2 slots=64 crc32=bfcffa1f      header: 64 slots follow
//! SEC 24 3c3487e1                                      record: SEC is at 24
//! GAP-OP 1091 8c887d3b                                 record: GAP-OP is at 1091
//! ...............................................................
//! ...............................................................
//! ```
//!
//! (Every line is padded with spaces to 63 bytes; a free slot is 63 dots.)
//!
//! - **Header**: `# idreserve counters v2 slots=N crc32=C`, padded with spaces; `C` is the
//!   CRC-32 (8 lower-case hex digits) of the text before ` crc32=`. `N` (1 to [`MAX_SLOTS`])
//!   is the number of slots after the header, so the file is exactly `64 × (N + 1)` bytes.
//!   The header is canonical: it is rendered again from `N` and compared byte for byte.
//! - **Record**: `PREFIX NUMBER CRC`, padded with spaces: the prefix's counter (the highest
//!   number reserved) is `NUMBER` (decimal, no leading zeros), and `CRC` is the CRC-32 of the
//!   previous record's `CRC` (the header's for the first record) in hex, a space, and
//!   `PREFIX NUMBER`. The checksums form a chain, so a record moved, copied over another or
//!   pasted from another log is damage too. A prefix (at most 32 bytes) and a `u64` fit with
//!   room to spare. The last record of a prefix wins.
//! - **Free**: 63 dots. The file is records first, then free slots.
//!
//! A reservation overwrites the first free slot with its record (one 64-byte `pwrite` inside
//! blocks that already exist, so the file's length never changes) and `fdatasync`s it before
//! it returns. When no slot is free, the writer rewrites the whole file atomically
//! ([`atomic_file::dir::Dir::write`]: temp file, `fsync`, rename, directory `fsync`) with one
//! record per prefix and [`FREE_SLOTS`] free slots. A store is created the same way, with no
//! record, so an ID store's log is never empty.
//!
//! # What is damage
//!
//! Anything but the above is damage ([`Damage`], reported as
//! [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt) naming the file), with one exception,
//! the **interrupted write**: the first slot after the records may hold the beginning of a
//! record (bytes of the record alphabet, starting with a letter) followed by dots up to its
//! newline, when the rest of the file is free. A writer that dies or loses power during its
//! `pwrite` can leave that, and so can a reader without the lock that reads while a writer
//! writes. It is ignored (it counts for nothing) and the next writer overwrites it.
//!
//! Why this never hands out an acknowledged ID again: a record is acknowledged (its
//! reservation returns) only after its whole slot was written and `fdatasync` returned, and
//! it is never written over afterwards except by the atomic rewrite, which carries every
//! counter. So an acknowledged record can only disappear through damage, and every single
//! damage of a log is detected: a truncation or an extension changes the length the header
//! announces; zeros (blocks lost in a power cut) are never valid anywhere; a flipped bit
//! breaks a checksum, the canonical header, a padding byte, a dot or a newline (none of
//! these single flips turns a valid file into another valid one, nor a record into an
//! interrupted write, whose dots are at least 3 bits away from a space); garbage has no
//! header; slots swapped, duplicated or spliced in from another log break the checksum
//! chain. The interrupted write cannot hide an acknowledged record: it needs dots where a
//! complete record has its checksum, padding and newline.
//!
//! An append-only log cannot promise this: cutting its last records off at a line boundary
//! leaves a valid, shorter log, and cutting inside the last line looks exactly like a torn
//! append, so the counter would silently step back. Fixed slots keep the length constant.
//!
//! # The first release's format
//!
//! The first release wrote one `PREFIX NUMBER CRC` line per record, with no header and no
//! padding ([`scan_legacy`]). Such a log is read only if **every** line is a valid record (the
//! last may lack its newline); anything else is damage. A writer rewrites it atomically in
//! version 2 under the lock, counters unchanged. An empty legacy log is a first-release store
//! in which nothing was reserved; in version 2 an empty file is damage. Which format a store
//! uses is recorded in its `config.yaml` (`version: 2`), so a version-2 store whose log was
//! emptied or replaced is never mistaken for an unused first-release store.

use std::collections::BTreeMap;
use std::fmt;

use crate::id::check_prefix;

/// Bytes per slot, newline included.
pub const SLOT_LEN: usize = 64;
/// Free slots a rewritten (or new) log gets: a writer rewrites the log once per this many
/// records.
pub const FREE_SLOTS: usize = 64;
/// Most slots a log may have after its header (so a log is at most about 1 MiB, and a reader
/// refuses anything longer before reading it).
pub const MAX_SLOTS: usize = 16_384;
/// Most distinct prefixes a store holds: a rewritten log keeps [`FREE_SLOTS`] free.
pub const MAX_PREFIXES: usize = MAX_SLOTS - FREE_SLOTS;
/// The longest valid log, in bytes.
pub const MAX_LEN: u64 = (SLOT_LEN * (MAX_SLOTS + 1)) as u64;
/// What every version-2 (and later) log starts with.
pub const MAGIC: &[u8] = b"# idreserve counters ";

const HEADER_V2: &str = "# idreserve counters v2 slots=";
const FREE: u8 = b'.';
/// Longest legacy log read (the first release compacted at 64 records; this is generous).
const MAX_LEGACY_LEN: usize = 1 << 20;

/// One record: `prefix`'s counter is now `value`. Valid by construction (its prefix is
/// checked), so its slot always fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub(crate) prefix: String,
    pub(crate) value: u64,
}

/// Why [`encode`] cannot write a log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// More prefixes than [`MAX_PREFIXES`].
    TooManyPrefixes(usize),
    /// A key that is not a valid prefix.
    InvalidPrefix(String),
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
    fn decode(text: &[u8], chain: Option<u32>) -> Option<(Record, u32)> {
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

/// The checksum of a version-2 record `body` after the checksum `chain`: the CRC-32 of
/// `chain` in hex, a space, and `body`.
fn chained(chain: u32, body: &str) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(format!("{chain:08x} ").as_bytes());
    hasher.update(body.as_bytes());
    hasher.finalize()
}

/// `text` followed by `fill` up to 63 bytes, and a newline. `text` must be shorter.
fn padded(text: &[u8], fill: u8) -> [u8; SLOT_LEN] {
    let mut slot = [fill; SLOT_LEN];
    slot[..text.len()].copy_from_slice(text);
    slot[SLOT_LEN - 1] = b'\n';
    slot
}

/// The header slot of a log with `slots` slots after it, and its checksum (the first
/// record's chain).
fn header(slots: usize) -> ([u8; SLOT_LEN], u32) {
    let body = format!("{HEADER_V2}{slots}");
    let crc = crc32fast::hash(body.as_bytes());
    (
        padded(format!("{body} crc32={crc:08x}").as_bytes(), b' '),
        crc,
    )
}

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
fn parse_header(head: &[u8]) -> Option<(usize, u32)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn log(counters: &[(&str, u64)]) -> Vec<u8> {
        let map = counters.iter().map(|&(p, v)| (p.to_owned(), v)).collect();
        encode(&map).expect("encode")
    }

    /// Writes `record` as a writer would (into the next slot).
    fn append(data: &mut [u8], record: &Record) {
        let mut scan = scan(data, false).expect("valid before");
        let (at, bytes) = scan.write_next(record).expect("a free slot");
        let at = at as usize;
        data[at..at + SLOT_LEN].copy_from_slice(&bytes);
    }

    fn rec(prefix: &str, value: u64) -> Record {
        Record {
            prefix: prefix.into(),
            value,
        }
    }

    fn slot(data: &[u8], index: usize) -> &[u8] {
        let at = slot_offset(index) as usize;
        &data[at..at + SLOT_LEN]
    }

    #[test]
    fn new_log_is_a_header_and_free_slots() {
        let data = log(&[]);
        assert_eq!(data.len(), SLOT_LEN * (FREE_SLOTS + 1));
        let text = std::str::from_utf8(&data).expect("text");
        assert!(
            text.starts_with("# idreserve counters v2 slots=64 crc32="),
            "{text}"
        );
        let s = scan(&data, false).expect("valid");
        assert!(s.counters.is_empty());
        assert_eq!((s.records, s.slots, s.next_slot), (0, 64, Some(0)));
        assert!(text.lines().all(|l| l.len() == 63));
    }

    #[test]
    fn the_module_docs_example_is_what_a_writer_writes() {
        let mut data = log(&[]);
        append(&mut data, &rec("SEC", 24));
        append(&mut data, &rec("GAP-OP", 1091));
        let text = std::str::from_utf8(&data).expect("text");
        let lines: Vec<&str> = text.lines().take(4).map(str::trim_end).collect();
        assert_eq!(
            lines,
            [
                "# idreserve counters v2 slots=64 crc32=bfcffa1f",
                "SEC 24 3c3487e1",
                "GAP-OP 1091 8c887d3b",
                &".".repeat(63),
            ]
        );
    }

    #[test]
    fn slots_fill_in_order_and_the_last_record_wins() {
        let mut data = log(&[("SEC", 3)]);
        append(&mut data, &rec("GAP-OP", 9));
        append(&mut data, &rec("SEC", 5));
        let s = scan(&data, false).expect("valid");
        assert_eq!(s.counters["SEC"], 5);
        assert_eq!(s.counters["GAP-OP"], 9);
        assert_eq!((s.records, s.next_slot, s.interrupted), (3, Some(3), false));
        // The longest prefix and value fit in one slot.
        let long = rec(&"A".repeat(32), u64::MAX);
        assert!(long.text_after(0).0.len() < SLOT_LEN - 1);
        append(&mut data, &long);
        assert_eq!(
            scan(&data, false).expect("valid").counters[&long.prefix],
            u64::MAX
        );
    }

    #[test]
    fn a_full_log_has_no_next_slot() {
        let mut data = log(&[]);
        for i in 0..FREE_SLOTS {
            append(&mut data, &rec("SEC", i as u64 + 1));
        }
        let mut s = scan(&data, false).expect("valid");
        assert_eq!((s.next_slot, s.counters["SEC"]), (None, 64));
        assert_eq!(s.write_next(&rec("SEC", 65)), None);
    }

    #[test]
    fn an_interrupted_write_counts_for_nothing() {
        let base = log(&[("SEC", 3)]);
        let mut s = scan(&base, false).expect("valid");
        let (at, next) = s.write_next(&rec("SEC", 4)).expect("slot");
        let at = at as usize;
        for cut in 1..next.len() - 1 {
            let mut data = base.clone();
            data[at..at + cut].copy_from_slice(&next[..cut]);
            let s = scan(&data, false).unwrap_or_else(|d| panic!("cut {cut}: {d}"));
            if cut < SLOT_LEN - 1 {
                assert_eq!(s.counters["SEC"], 3, "cut {cut}");
                assert!(s.interrupted && s.next_slot == Some(1), "cut {cut}");
            }
        }
        // Not in the first slot after the records: damage.
        let mut data = base.clone();
        let at = slot_offset(2) as usize;
        data[at..at + 5].copy_from_slice(b"SEC 9");
        assert_eq!(scan(&data, false).expect_err("late").line, 4);
    }

    #[test]
    fn every_single_bit_flip_is_damage() {
        let mut data = log(&[("SEC", 3), ("GAP-OP", 1091)]);
        append(&mut data, &rec("SEC", 10));
        let good = scan(&data, false).expect("valid");
        for bit in 0..data.len() * 8 {
            let mut bad = data.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok(s) = scan(&bad, false) {
                panic!("flip of bit {bit} went unnoticed: {s:?} (was {good:?})");
            }
        }
    }

    #[test]
    fn records_moved_copied_or_taken_from_another_log_are_damage() {
        let mut data = log(&[]);
        for (p, v) in [("SEC", 5), ("SEC", 10), ("GAP-OP", 3)] {
            append(&mut data, &rec(p, v));
        }
        // Two records swapped (SEC would read 5).
        let mut swapped = data.clone();
        let (a, b) = (slot(&data, 0).to_vec(), slot(&data, 1).to_vec());
        swapped[64..128].copy_from_slice(&b);
        swapped[128..192].copy_from_slice(&a);
        assert!(scan(&swapped, false).is_err());
        // An older record copied over a newer one.
        let mut copied = data.clone();
        copied[128..192].copy_from_slice(&a);
        assert!(scan(&copied, false).is_err());
        // A record copied into the next free slot.
        let mut extra = data.clone();
        extra[256..320].copy_from_slice(&a);
        assert!(scan(&extra, false).is_err());
        // A slot from another log with the same records in another order.
        let mut other = log(&[]);
        for (p, v) in [("GAP-OP", 3), ("SEC", 5), ("SEC", 10)] {
            append(&mut other, &rec(p, v));
        }
        let mut spliced = data.clone();
        spliced[192..256].copy_from_slice(slot(&other, 2));
        assert!(scan(&spliced, false).is_err());
    }

    #[test]
    fn truncation_extension_zeros_and_garbage_are_damage() {
        let mut data = log(&[("SEC", 3)]);
        append(&mut data, &rec("SEC", 4));
        for len in 0..data.len() {
            assert!(scan(&data[..len], false).is_err(), "cut at {len}");
        }
        let mut longer = data.clone();
        longer.push(b'\n');
        assert!(scan(&longer, false).is_err());
        let mut zeroed = data.clone();
        let at = slot_offset(1) as usize;
        zeroed[at..at + SLOT_LEN].fill(0);
        assert_eq!(scan(&zeroed, false).expect_err("zeros").line, 3);
        assert!(scan(&vec![0; data.len()], false).is_err());
        assert!(scan(b"\x00garbage{{", false).is_err());
        assert!(scan(b"\x00garbage{{", true).is_err());
        assert!(scan(b"", false).is_err());
        // A record after a free slot: one was lost.
        let mut hole = log(&[]);
        append(&mut hole, &rec("SEC", 4));
        let first = slot(&hole, 0).to_vec();
        hole[128..192].copy_from_slice(&first);
        hole[64..127].fill(b'.');
        assert_eq!(scan(&hole, false).expect_err("hole").line, 3);
    }

    #[test]
    fn headers_are_canonical_and_versioned() {
        let data = log(&[]);
        let mut v3 = data.clone();
        v3[22] = b'3';
        let err = scan(&v3, false).expect_err("v3");
        assert!(err.reason.contains("newer"), "{err}");
        let mut padded = data.clone();
        padded[..SLOT_LEN].copy_from_slice(&padded_header("# idreserve counters v2 slots=064"));
        assert!(scan(&padded, false).is_err());
        assert_eq!(
            parse_header(&header(MAX_SLOTS).0).map(|h| h.0),
            Some(MAX_SLOTS)
        );
        assert_eq!(parse_header(&header(MAX_SLOTS + 1).0), None);
        assert_eq!(parse_header(&header(0).0), None);
    }

    fn padded_header(body: &str) -> [u8; SLOT_LEN] {
        let crc = crc32fast::hash(body.as_bytes());
        padded(format!("{body} crc32={crc:08x}").as_bytes(), b' ')
    }

    #[test]
    fn legacy_logs_are_read_only_when_every_line_is_valid() {
        let lines = format!(
            "{}\n{}\n",
            rec("SEC", 3).legacy_text(),
            rec("SEC", 5).legacy_text()
        );
        let s = scan(lines.as_bytes(), true).expect("legacy");
        assert_eq!(
            (s.format, s.counters["SEC"], s.next_slot),
            (Format::Legacy, 5, None)
        );
        assert!(
            scan(lines.as_bytes(), false).is_err(),
            "a v2 store needs the header"
        );
        let no_newline = lines.trim_end();
        assert_eq!(
            scan(no_newline.as_bytes(), true)
                .expect("last line")
                .counters["SEC"],
            5
        );
        assert!(scan(b"", true).expect("unused").counters.is_empty());
        for bad in [
            format!("{lines}SEC 9 12"),
            lines.replace('\n', "\r\n"),
            format!("{lines}\n"),
            lines.replace("SEC 5", "SEC 6"),
        ] {
            assert!(scan(bad.as_bytes(), true).is_err(), "{bad:?}");
        }
        // A first-release log cannot be written to slot by slot: it is rewritten.
        let mut s = scan(lines.as_bytes(), true).expect("legacy");
        assert_eq!(s.write_next(&rec("SEC", 6)), None);
    }

    #[test]
    fn too_many_prefixes_are_refused() {
        let many: BTreeMap<String, u64> =
            (0..=MAX_PREFIXES).map(|i| (format!("P{i}"), 1)).collect();
        assert_eq!(
            encode(&many),
            Err(EncodeError::TooManyPrefixes(MAX_PREFIXES + 1))
        );
        let bad = BTreeMap::from([("A".repeat(33), 1)]);
        assert!(matches!(encode(&bad), Err(EncodeError::InvalidPrefix(_))));
        assert!(Record::new(&"A".repeat(33), 1).is_err());
    }
}
