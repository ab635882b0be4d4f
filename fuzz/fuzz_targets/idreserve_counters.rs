//! `idreserve::log::scan`, the reader of an ID store's `counters.log` (version 2: a header
//! slot and 64-byte checksummed, chained slots; or the first release's bare lines).
//!
//! Byte 0 picks the mode (the rest of the input is `data`):
//! - `0`: `data` as a whole log (version 2 only);
//! - `1`: `data` as a whole log, the first release's format allowed;
//! - `2`: `data` as the slots of a log: a valid header for that many slots is put in front
//!   (so the fuzzer reaches the slot parser without forging the header's checksum);
//! - `3`: `data` as a script for a writer: records written one by one the way a store writes
//!   them (`Scan::write_next`, a rewrite with `encode` when the log is full), checked against
//!   a model of the counters, then damaged (a bit flip, a cut, zeros, a moved slot).
//!
//! Asserts, beyond "never panics":
//! - a log that reads has the length its header announces, at most one interrupted write,
//!   in the first slot after the records, and as many counters as records at most;
//! - `encode(counters)` reads back as exactly those counters, with every slot after them free;
//! - a writer's log always reads back as the model's counters;
//! - **damage never goes unnoticed or changes a counter**: every strict prefix and every
//!   one-byte extension of a valid log is refused; a single-bit flip, zeros or a moved slot
//!   are refused or (only inside an interrupted write or a free slot overwritten by the same
//!   bytes) read as the very same counters;
//! - a first-release log that reads re-encodes, line by line, to one that reads the same;
//! - `encode` refuses keys that are not valid prefixes instead of writing a bad slot.
#![no_main]

use std::collections::BTreeMap;

use idreserve::log::{self, Format, Record, SLOT_LEN, Scan};
use libfuzzer_sys::fuzz_target;

/// Prefixes of a writer's script: short ones, and one of the longest allowed (32 bytes).
const PREFIXES: [&str; 4] = ["SEC", "GAP-OP", "A", "ABCDEFGHIJKLMNOPQRSTUVWXYZ-12345"];

/// A position in `0..n` taken from the input (n > 0).
fn pick(data: &[u8], salt: u64, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

fn check_valid(bytes: &[u8], scan: &Scan) {
    match scan.format {
        Format::V2 => {
            assert_eq!(bytes.len(), SLOT_LEN * (scan.slots + 1), "length");
            assert!(scan.records <= scan.slots);
            assert!(scan.counters.len() <= scan.records);
            if let Some(next) = scan.next_slot {
                assert_eq!(next, scan.records, "the next slot follows the records");
            } else {
                assert!(!scan.interrupted);
                assert_eq!(
                    scan.records, scan.slots,
                    "no next slot in a log with free slots"
                );
            }
            // Damage is refused: strict prefixes, one more byte.
            let cut = pick(bytes, 1, bytes.len());
            assert!(
                log::scan(&bytes[..cut], false).is_err(),
                "a log cut at {cut} read"
            );
            let mut longer = bytes.to_vec();
            longer.push(bytes[pick(bytes, 2, bytes.len())]);
            assert!(
                log::scan(&longer, false).is_err(),
                "a log one byte longer read"
            );
            // A single-bit flip: refused, or the same counters.
            let bit = pick(bytes, 3, bytes.len() * 8);
            let mut flipped = bytes.to_vec();
            flipped[bit / 8] ^= 1 << (bit % 8);
            if let Ok(other) = log::scan(&flipped, false) {
                assert_eq!(
                    other.counters, scan.counters,
                    "a flip of bit {bit} changed counters"
                );
            }
        }
        Format::Legacy => {
            assert_eq!(scan.slots, 0);
            assert_eq!(scan.next_slot, None);
        }
    }
    // Re-encoded, the counters read back the same, in a log with free slots after them; a key
    // that is not a prefix is refused.
    let mut bad_key = scan.counters.clone();
    bad_key.insert("A".repeat(33), 1);
    assert!(
        log::encode(&bad_key).is_err(),
        "encode wrote an invalid prefix"
    );
    let encoded = log::encode(&scan.counters).expect("few prefixes");
    let again = log::scan(&encoded, false).expect("an encoded log reads");
    assert_eq!(again.counters, scan.counters);
    assert_eq!(again.records, scan.counters.len());
    assert_eq!(again.next_slot, Some(scan.counters.len()));
    assert!(!again.interrupted);
}

/// `data` as the slots of a log: a valid header in front, the last slot completed with the
/// end of a free slot (dots and a newline), and free slots up to the smallest log a store
/// writes.
fn with_header(data: &[u8]) -> Vec<u8> {
    let slots = data
        .len()
        .div_ceil(SLOT_LEN)
        .clamp(log::FREE_SLOTS, log::MAX_SLOTS);
    // The header of a log of `slots` slots: the one `encode` writes for that many.
    let counters: BTreeMap<String, u64> = (0..slots - log::FREE_SLOTS)
        .map(|i| (format!("P{i}"), 0))
        .collect();
    let encoded = log::encode(&counters).expect("few prefixes");
    let mut file = encoded[..SLOT_LEN].to_vec();
    file.extend_from_slice(&data[..data.len().min(SLOT_LEN * slots)]);
    let mut free = [b'.'; SLOT_LEN];
    free[SLOT_LEN - 1] = b'\n';
    while file.len() < SLOT_LEN * (slots + 1) {
        let in_slot = file.len() % SLOT_LEN;
        file.extend_from_slice(&free[in_slot..]);
    }
    file
}

/// Mode 3: a writer's log, checked against a model, then damaged.
fn writer(script: &[u8]) {
    let mut bytes = log::encode(&BTreeMap::new()).expect("empty");
    let mut model: BTreeMap<String, u64> = BTreeMap::new();
    for op in script.chunks(3) {
        let prefix = PREFIXES[usize::from(op[0]) % PREFIXES.len()];
        let value = match op.get(1..3) {
            Some(&[a, b]) if op[0] & 0x80 != 0 => u64::MAX - u64::from(u16::from_le_bytes([a, b])),
            Some(&[a, b]) => u64::from(u16::from_le_bytes([a, b])),
            _ => 0,
        };
        let record = Record::new(prefix, value).expect("a valid prefix");
        let mut scan = log::scan(&bytes, false).expect("the writer's log reads");
        assert_eq!(scan.counters, model, "the log disagrees with the model");
        match scan.write_next(&record) {
            Some((offset, slot)) => {
                let at = offset as usize;
                bytes[at..at + SLOT_LEN].copy_from_slice(&slot);
                model.insert(prefix.to_owned(), value);
            }
            None => {
                model.insert(prefix.to_owned(), value);
                bytes = log::encode(&model).expect("few prefixes");
            }
        }
    }
    let scan = log::scan(&bytes, false).expect("the writer's log reads");
    assert_eq!(scan.counters, model);
    check_valid(&bytes, &scan);
    // Damage picked from the script.
    let mut bad = bytes.clone();
    let which = pick(script, 10, 4);
    let at = pick(script, 11, bytes.len());
    match which {
        0 => bad[at] ^= 1 << pick(script, 12, 8),
        1 => bad.truncate(at),
        2 => {
            let end = (at + 1 + pick(script, 13, 512)).min(bad.len());
            bad[at..end].fill(0);
        }
        _ => {
            // One slot copied over another; but not a free slot over the last record, which
            // gives exactly the log as it was before that record: the one damage no reader
            // can tell from the real thing (it takes rewriting 63 bytes, not one fault).
            let slots = bytes.len() / SLOT_LEN;
            let (from, to) = (pick(script, 14, slots), pick(script, 15, slots));
            let src = bytes[from * SLOT_LEN..(from + 1) * SLOT_LEN].to_vec();
            let free_over_last = src[0] == b'.' && to == scan.records && to > 0;
            if !free_over_last {
                bad[to * SLOT_LEN..(to + 1) * SLOT_LEN].copy_from_slice(&src);
            }
        }
    }
    if bad != bytes
        && let Ok(other) = log::scan(&bad, false)
    {
        assert_eq!(
            other.counters, model,
            "damage ({which} at {at}) went unnoticed and changed the counters"
        );
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    match mode % 4 {
        0 | 1 => {
            let legacy = mode % 4 == 1;
            if let Ok(scan) = log::scan(data, legacy) {
                check_valid(data, &scan);
                if scan.format == Format::Legacy {
                    let lines: String = scan
                        .counters
                        .iter()
                        .map(|(p, &v)| {
                            Record::new(p, v).expect("a prefix read").legacy_text() + "\n"
                        })
                        .collect();
                    let again = log::scan_legacy(lines.as_bytes()).expect("re-encoded legacy");
                    assert_eq!(again.counters, scan.counters);
                }
            }
        }
        2 => {
            let file = with_header(data);
            if let Ok(scan) = log::scan(&file, false) {
                check_valid(&file, &scan);
            }
        }
        _ => writer(data),
    }
});
