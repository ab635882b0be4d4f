//! `gapreg::parse_gap_yaml` on arbitrary bytes: the parser behind every `gaps/<ID>.yaml`.
//!
//! Asserts, beyond "never panics" (also on anchors/aliases, tags, duplicate keys, deep nesting,
//! invalid UTF-8 and timestamps at the edges of the calendar):
//! - a parsed `Gap` serializes with `gapreg::gap_to_yaml` (serialization never fails);
//! - that text parses back to an *equal* `Gap` (every field, including timestamps, statuses and
//!   strings that look like other YAML scalars, which the writer must quote);
//! - the serialization is a fixed point: writing the re-parsed gap gives the same text.
//!
//! A leap-second bug this target found (`9999-12-31T23:59:60Z` rolled into an unreadable
//! year 10000) is fixed; its reproducers stay in `artifacts-found/` as regression inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(gap) = gapreg::parse_gap_yaml(data) else {
        return;
    };
    let text = gapreg::gap_to_yaml(&gap)
        .unwrap_or_else(|e| panic!("gap_to_yaml failed on a parsed gap {gap:?}: {e}"));
    let back = gapreg::parse_gap_yaml(text.as_bytes())
        .unwrap_or_else(|e| panic!("gap_to_yaml output does not parse: {e}\n{text}"));
    assert_eq!(back, gap, "gap YAML round trip changed the gap\n{text}");
    let again = gapreg::gap_to_yaml(&back).expect("second gap_to_yaml");
    assert_eq!(again, text, "gap_to_yaml is not a fixed point");
});
