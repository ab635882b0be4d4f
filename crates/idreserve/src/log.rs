//! The counter log: an append-only text file of checksummed records, one per line.
//!
//! ```text
//! SEC 24 6c1bb5f1
//! GAP-OP 1091 0b6d2ef4
//! ```
//!
//! Each record sets one prefix's counter (the highest number reserved so far) and ends with
//! the CRC-32 of the text before it, as 8 lower-case hex digits. The last record of a prefix
//! wins. A reservation appends one record with a single `write` and returns after `fdatasync`,
//! so the log only ever grows by whole records, except when a writer dies or the power fails
//! during its append. Such a **torn tail** is the last line and was never acknowledged, so it
//! is safe to ignore (readers) and to cut off (the next writer, under the lock). It is
//! recognised as a final line without a newline that is not a valid record, or a final line
//! containing NUL bytes (blocks the file system allocated but never wrote). A *valid* final
//! record without its newline counts (the checksum covers all of it; an editor may have
//! dropped the newline), and the next writer starts a new line before appending. Any other damaged line — a bit flip, a hand
//! edit — makes the whole log [`Corrupt`](crate::ErrorKind::Corrupt): silently dropping a
//! record could lower a counter and hand out IDs twice.

use std::collections::BTreeMap;
use std::fmt;

use crate::id::check_prefix;

/// One record: `prefix`'s counter is now `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The prefix.
    pub prefix: String,
    /// The highest number reserved for it.
    pub value: u64,
}

impl Record {
    /// The record's line, newline included.
    pub fn encode(&self) -> String {
        let body = format!("{} {}", self.prefix, self.value);
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body} {crc:08x}\n")
    }

    /// Parses one line (without its newline); `None` if it is not a valid record.
    fn decode(line: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(line).ok()?;
        let (body, crc) = text.rsplit_once(' ')?;
        let (prefix, value) = body.split_once(' ')?;
        let canonical_hex =
            crc.len() == 8 && crc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let canonical_value = value == "0" || (!value.starts_with('0') && !value.is_empty());
        if !canonical_hex || !canonical_value || check_prefix(prefix).is_err() {
            return None;
        }
        let value = value.parse().ok()?;
        (u32::from_str_radix(crc, 16).ok()? == crc32fast::hash(body.as_bytes())).then(|| Record {
            prefix: prefix.to_owned(),
            value,
        })
    }
}

/// What a log holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Each prefix's counter.
    pub counters: BTreeMap<String, u64>,
    /// Records read.
    pub records: usize,
    /// Bytes up to the end of the last valid record.
    pub valid_len: usize,
    /// Whether a torn tail follows `valid_len`.
    pub torn_tail: bool,
    /// Whether the last record lacks its newline (the next append must start a new line).
    pub missing_newline: bool,
}

/// A damaged record in the middle of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// 1-based line number of the damaged record.
    pub line: usize,
    /// Byte offset where it starts.
    pub offset: usize,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} (byte {}) is not a valid `PREFIX NUMBER CRC32` record",
            self.line, self.offset
        )
    }
}

/// Reads a whole log. Never panics.
pub fn scan(data: &[u8]) -> Result<Scan, Damage> {
    let mut scan = Scan::default();
    let mut offset = 0;
    let mut line_no = 0;
    while offset < data.len() {
        line_no += 1;
        let rest = &data[offset..];
        let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        let next = offset + line.len() + usize::from(complete);
        let is_last = next >= data.len();
        match Record::decode(line) {
            // A valid record without its newline is the last line (a hand repair saved
            // without a final newline, or an append torn just before it). It counts: the
            // checksum covers everything but the newline, so it is exactly what was written,
            // and counting a never-acknowledged record can only skip IDs, never repeat them.
            Some(record) => {
                scan.counters.insert(record.prefix, record.value);
                scan.records += 1;
                scan.valid_len = next;
                scan.missing_newline = !complete;
            }
            None if is_last && (!complete || line.contains(&0)) => {
                scan.torn_tail = true;
                break;
            }
            None => {
                return Err(Damage {
                    line: line_no,
                    offset,
                });
            }
        }
        offset = next;
    }
    Ok(scan)
}

/// The log holding exactly `counters`, one record each (used to compact a log).
pub fn compacted(counters: &BTreeMap<String, u64>) -> String {
    counters
        .iter()
        .map(|(prefix, &value)| {
            Record {
                prefix: prefix.clone(),
                value,
            }
            .encode()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(prefix: &str, value: u64) -> String {
        Record {
            prefix: prefix.into(),
            value,
        }
        .encode()
    }

    #[test]
    fn last_record_wins_and_counts() {
        let log = format!("{}{}{}", rec("SEC", 3), rec("GAP-OP", 9), rec("SEC", 5));
        let s = scan(log.as_bytes()).expect("valid");
        assert_eq!(s.counters["SEC"], 5);
        assert_eq!(s.counters["GAP-OP"], 9);
        assert_eq!((s.records, s.valid_len, s.torn_tail), (3, log.len(), false));
        assert_eq!(scan(b"").expect("empty"), Scan::default());
    }

    #[test]
    fn torn_tails_are_ignored() {
        let good = rec("SEC", 3);
        let next = rec("SEC", 4);
        for cut in 0..next.len() - 1 {
            let log = format!("{good}{}", &next[..cut]);
            let s = scan(log.as_bytes()).expect("torn tail is not corruption");
            assert_eq!(s.counters["SEC"], 3);
            assert_eq!(s.valid_len, good.len());
            assert_eq!(s.torn_tail, cut > 0);
            assert!(!s.missing_newline);
        }
        // Only the newline missing: the record is whole and counts.
        let log = format!("{good}{}", next.trim_end());
        let s = scan(log.as_bytes()).expect("valid");
        assert_eq!(s.counters["SEC"], 4);
        assert!(s.missing_newline && !s.torn_tail);
        assert_eq!(s.valid_len, log.len());
        let mut zeros = good.clone().into_bytes();
        zeros.extend_from_slice(&[0; 7]);
        zeros.extend_from_slice(&next.as_bytes()[7..]);
        let s = scan(&zeros).expect("unwritten blocks at the tail");
        assert!(s.torn_tail && s.counters["SEC"] == 3);
    }

    #[test]
    fn damage_is_reported_with_its_line() {
        let log = format!("{}{}{}", rec("SEC", 3), rec("SEC", 4), rec("SEC", 5));
        let mut bytes = log.clone().into_bytes();
        let second = rec("SEC", 3).len();
        bytes[second + 4] = b'9'; // "SEC 9" with the old checksum
        assert_eq!(
            scan(&bytes),
            Err(Damage {
                line: 2,
                offset: second
            })
        );
        // A damaged complete last line is corruption too, not a torn tail.
        let mut bytes = log.into_bytes();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        assert_eq!(scan(&bytes).expect_err("flip").line, 3);
        for bad in [
            "SEC 3\n",
            "SEC 03 00000000\n",
            "sec 3 00000000\n",
            "SEC 3 ABCDEF01\n",
            "\n",
        ] {
            let log = format!("{bad}{}", rec("SEC", 4));
            assert!(scan(log.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn compaction_keeps_every_counter() {
        let counters = BTreeMap::from([("A".to_owned(), 1), ("B-2".to_owned(), 30)]);
        let s = scan(compacted(&counters).as_bytes()).expect("valid");
        assert_eq!(s.counters, counters);
    }
}
