//! `Format::Json.decode` on arbitrary bytes, into a generic `serde_json::Value` and into a
//! typed struct ([`gapreg_fuzz::Doc`]). Decoding is done in memory; `read_json` adds only
//! `std::fs::read` to this.
//!
//! Asserts, beyond "never panics":
//! - a failure is `ErrorKind::Decode { format: Json, .. }` naming the path, with a message;
//! - a decoded `Value` re-encodes (`Format::Json.encode`) to pretty JSON ending in a newline,
//!   which decodes again to an equal value: exactly equal when the value holds no float, and
//!   within `JSON_FLOAT_ULPS` (8) ULPs per float otherwise (serde_json's default float parser
//!   is not correctly rounded; see `gapreg_fuzz::json_float_ulps`); and re-encoding is then a fixed
//!   point for float-free values;
//! - a decoded `Doc` round-trips exactly (it holds no floats), and when the input also decodes
//!   as a `Value`, the `Doc` decoded from that value's re-encoding is the same `Doc`.
#![no_main]

use atomic_file::{ErrorKind, Format};
use gapreg_fuzz::{Doc, has_float, json_equivalent, json_float_ulps};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const PATH: &str = "x.json";

fuzz_target!(|data: &[u8]| {
    let value = Format::Json.decode::<Value>(PATH, data);
    match &value {
        Ok(value) => check_value_round_trip(value),
        Err(e) => check_decode_error(e),
    }

    match Format::Json.decode::<Doc>(PATH, data) {
        Ok(doc) => {
            let bytes = Format::Json
                .encode(PATH, &doc)
                .expect("a Doc encodes as JSON");
            let again: Doc = Format::Json
                .decode(PATH, &bytes)
                .expect("re-encoded Doc decodes");
            assert_eq!(doc, again, "typed JSON round trip");
            if let Ok(value) = &value {
                // Through the generic value: duplicate keys are last-wins in both a `Value` map
                // and a `Doc` map (a duplicate *field* makes the `Doc` decode fail instead), and
                // integers are kept exactly, so nothing the `Doc` reads can change.
                let bytes = Format::Json
                    .encode(PATH, value)
                    .expect("a Value encodes as JSON");
                let via_value: Doc = Format::Json
                    .decode(PATH, &bytes)
                    .expect("the re-encoded Value decodes as the Doc it came from");
                assert_eq!(doc, via_value, "Doc via Value differs from Doc");
            }
        }
        Err(e) => check_decode_error(&e),
    }
});

fn check_value_round_trip(value: &Value) {
    let bytes = Format::Json
        .encode(PATH, value)
        .expect("a Value always encodes as JSON");
    assert!(bytes.ends_with(b"\n"));
    let again: Value = Format::Json.decode(PATH, &bytes).unwrap_or_else(|e| {
        panic!(
            "re-encoded JSON does not decode: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    if has_float(value) {
        assert!(
            json_equivalent(value, &again, json_float_ulps()),
            "JSON round trip changed a value by more than {} ULPs:\n{value:?}\n{again:?}",
            json_float_ulps()
        );
    } else {
        assert_eq!(value, &again, "JSON round trip");
        let bytes_again = Format::Json.encode(PATH, &again).expect("encodes");
        assert_eq!(bytes, bytes_again, "re-encoding is not a fixed point");
    }
}

fn check_decode_error(e: &atomic_file::Error) {
    assert_eq!(e.path(), std::path::Path::new(PATH));
    match e.kind() {
        ErrorKind::Decode {
            format: Format::Json,
            message,
        } => assert!(!message.is_empty()),
        other => panic!("decoding bytes failed with an unexpected kind: {other:?}"),
    }
    assert!(!e.to_string().is_empty());
}
