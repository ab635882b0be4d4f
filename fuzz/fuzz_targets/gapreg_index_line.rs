//! `gapreg::parse_index_line` on arbitrary UTF-8: the reader of each line of `index.log`.
//!
//! Asserts, beyond "never panics":
//! - a parsed `IndexLine` encodes (`IndexLine::encode`) as exactly one line: non-empty text
//!   ending in the only `\n` it contains (a newline inside would split a record in the log);
//! - that line, without its newline, parses back to an equal `IndexLine`;
//! - encoding is a fixed point (encoding the re-parsed line gives the same text).
//!
//! - a line whose checksum does not match its JSON never parses: every input is also tried
//!   with its correct CRC-32 appended (so the fuzzer reaches the JSON parser, which random
//!   checksums never would), and that same line with one byte of its JSON changed must be
//!   refused unless the change left the checksum equal.
//!
//! A leap-second bug this target found (`9999-12-31T23:59:60Z` rolled into an unreadable
//! year 10000) is fixed; its reproducers stay in `artifacts-found/` as regression inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains('\n') || text.contains('\t') {
        let _ = gapreg::parse_index_line(text);
        return;
    }
    let checked = gapreg::checked_index_line(text);
    let Ok(line) = gapreg::parse_index_line(&checked) else {
        assert!(gapreg::parse_index_line(text).is_err(), "a line without a checksum parsed");
        return;
    };
    // The same JSON with a byte flipped and the old checksum: refused (unless the checksum of
    // the altered text happens to be the same).
    if let Some(first) = text.bytes().next() {
        let flipped = (first ^ 1) as char;
        if flipped.is_ascii() {
            let altered = format!("{flipped}{}", &text[1..]);
            let crc = |json: &str| gapreg::checked_index_line(json)[json.len()..].to_owned();
            if crc(&altered) != crc(text) {
                let bad = format!("{altered}{}", crc(text));
                assert!(gapreg::parse_index_line(&bad).is_err(), "a damaged line parsed: {bad:?}");
            }
        }
    }
    let encoded = line.encode();
    let body = encoded
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("encoded index line lacks its newline: {encoded:?}"));
    assert!(!body.is_empty(), "encoded index line is empty");
    assert!(
        !body.contains('\n'),
        "encoded index line spans several lines: {encoded:?}"
    );
    let back = gapreg::parse_index_line(body)
        .unwrap_or_else(|e| panic!("encoded index line does not parse: {e}\n{encoded}"));
    assert_eq!(back, line, "index line round trip changed it\n{encoded}");
    assert_eq!(
        back.encode(),
        encoded,
        "IndexLine::encode is not a fixed point"
    );
});
