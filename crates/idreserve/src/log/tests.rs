//! Tests of the log format: what writers write, what readers accept, and that every damage
//! is told.

use std::collections::BTreeMap;

use super::read::parse_header;
use super::slot::{header, padded};
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
    let many: BTreeMap<String, u64> = (0..=MAX_PREFIXES).map(|i| (format!("P{i}"), 1)).collect();
    assert_eq!(
        encode(&many),
        Err(EncodeError::TooManyPrefixes(MAX_PREFIXES + 1))
    );
    let bad = BTreeMap::from([("A".repeat(33), 1)]);
    assert!(matches!(encode(&bad), Err(EncodeError::InvalidPrefix(_))));
    assert!(Record::new(&"A".repeat(33), 1).is_err());
}
