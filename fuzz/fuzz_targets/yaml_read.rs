//! `Format::Yaml.decode` on arbitrary bytes, into a `serde_json::Value` (atomic-file does not
//! re-export the YAML crate's own `Value`) and into a typed struct ([`gapreg_fuzz::Doc`]).
//!
//! Asserts, beyond "never panics" (also on anchors/aliases, merge keys, tags and deep nesting,
//! where the YAML crate's recursion and alias-repetition limits must turn into errors):
//! - a failure is `ErrorKind::Decode { format: Yaml, .. }` naming the path, with a message;
//! - a decoded `Value` re-encodes as YAML and decodes again to an *exactly* equal value. This is
//!   sound here although YAML has `.nan`: `serde_json::Value` stores a NaN or infinite float as
//!   `null` (so `NaN != NaN` never reaches the comparison, and `null` round-trips), the YAML
//!   writer prints finite floats with `ryu` (shortest text that parses back to the same bits)
//!   and the YAML reader parses them with Rust's correctly rounded `str::parse::<f64>`. Strings
//!   that look like other scalars (`"true"`, `"1"`, `"~"`, `"0x10"`, `"<<"`) must be quoted by
//!   the writer, so they come back as strings;
//! - the same value also encodes as JSON and decodes back (floats within `json_float_ulps()`);
//! - a decoded `Doc` round-trips exactly through YAML.
//!
//! Not asserted: that a `Doc` read from YAML equals the `Doc` read through a `Value`. The YAML
//! reader lets a typed `String` field take a plain scalar's text (`name: 0x10` gives `"0x10"`),
//! while a `Value` resolves the scalar first (to the number 16), so the two legitimately differ.
#![no_main]

use atomic_file::{ErrorKind, Format};
use gapreg_fuzz::{Doc, json_equivalent, json_float_ulps};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const PATH: &str = "x.yaml";

fuzz_target!(|data: &[u8]| {
    match Format::Yaml.decode::<Value>(PATH, data) {
        Ok(value) => {
            let bytes = Format::Yaml
                .encode(PATH, &value)
                .expect("a Value encodes as YAML");
            let again: Value = Format::Yaml.decode(PATH, &bytes).unwrap_or_else(|e| {
                panic!(
                    "re-encoded YAML does not decode: {e}\n{}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_eq!(
                value,
                again,
                "YAML round trip changed the value; YAML written:\n{}",
                String::from_utf8_lossy(&bytes)
            );

            let json = Format::Json
                .encode("x.json", &value)
                .expect("a Value encodes as JSON");
            let from_json: Value = match Format::Json.decode("x.json", &json) {
                Ok(v) => v,
                // serde_json stops at 128 levels of nesting; YAML block nesting may go deeper
                // (its reader bounds it by the document size): not a change of the value.
                Err(e) if e.to_string().contains("recursion limit exceeded") => return,
                Err(e) => panic!("JSON decodes: {e:?}"),
            };
            assert!(
                json_equivalent(&value, &from_json, json_float_ulps()),
                "YAML value changed through JSON:\n{value:?}\n{from_json:?}"
            );
        }
        Err(e) => check_decode_error(&e),
    }

    match Format::Yaml.decode::<Doc>(PATH, data) {
        Ok(doc) => {
            let bytes = Format::Yaml
                .encode(PATH, &doc)
                .expect("a Doc encodes as YAML");
            let again: Doc = Format::Yaml.decode(PATH, &bytes).unwrap_or_else(|e| {
                panic!(
                    "re-encoded Doc does not decode: {e}\n{}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_eq!(
                doc,
                again,
                "typed YAML round trip; YAML written:\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Err(e) => check_decode_error(&e),
    }
});

fn check_decode_error(e: &atomic_file::Error) {
    assert_eq!(e.path(), std::path::Path::new(PATH));
    match e.kind() {
        ErrorKind::Decode {
            format: Format::Yaml,
            message,
        } => assert!(!message.is_empty()),
        other => panic!("decoding bytes failed with an unexpected kind: {other:?}"),
    }
    assert!(!e.to_string().is_empty());
}
