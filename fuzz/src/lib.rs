//! Shared pieces of the fuzz targets: a small typed document and value comparisons.
//!
//! The targets live in `fuzz_targets/`; see `README.md` for what each one asserts.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A small typed document, shaped like the files gapreg keeps: required and optional fields,
/// a list, a string-keyed map, an enum and recursion. Decoding fuzz input into it exercises the
/// typed error paths (missing field, wrong type, unknown variant, duplicate field, integer out
/// of range) that a `Value` never reaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    /// Required string.
    pub name: String,
    /// Required unsigned integer (rejects negatives, floats and anything above `u64::MAX`).
    pub next: u64,
    /// Optional; `null` and a missing field both read as `None`.
    #[serde(default)]
    pub note: Option<String>,
    /// A list of small integers (rejects anything above `u32::MAX`).
    #[serde(default)]
    pub gaps: Vec<u32>,
    /// A map with string keys and signed values.
    #[serde(default)]
    pub labels: BTreeMap<String, i64>,
    /// An externally tagged enum (unit, struct and tuple variants).
    #[serde(default)]
    pub state: Option<State>,
    /// Nested documents, so the decoder's recursion limit is reachable through typed code.
    #[serde(default)]
    pub children: Vec<Doc>,
}

/// The enum field of [`Doc`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum State {
    /// A unit variant: `"Open"`.
    Open,
    /// A struct variant: `{"Closed": {"at": 3}}`.
    Closed {
        /// When.
        at: u64,
    },
    /// A newtype variant holding a list: `{"Reserved": ["a", "b"]}`.
    Reserved(Vec<String>),
}

/// Largest distance, in units in the last place, that [`json_equivalent`] accepts between two
/// finite floats.
///
/// serde_json is built without its `float_roundtrip` feature (atomic-file does not enable it,
/// and the fuzz crate must not either, or it would fuzz a configuration production does not
/// use). Its default float parser computes `significand as f64` and then multiplies or divides
/// by a power of ten (repeatedly by `1e308` for very small numbers), so each parse may land a
/// few ULPs away from the correctly rounded value, and the shortest (`ryu`) text the encoder
/// writes for a float does not always parse back to the same bits. Integers (`u64`/`i64`) are
/// parsed exactly and are compared exactly.
pub const JSON_FLOAT_ULPS: u64 = 8;

/// The float tolerance the JSON round-trip checks use: [`JSON_FLOAT_ULPS`] with serde_json's
/// default float parser, 0 (exact) if a build ever enables `float_roundtrip`.
///
/// The probe is a number the default parser reads one ULP off (found with random `f64` bit
/// patterns: about 30% of them do not survive `to_string` then `from_str` without
/// `float_roundtrip`, by at most 2 ULPs in 2,000,000 samples).
pub fn json_float_ulps() -> u64 {
    static ULPS: OnceLock<u64> = OnceLock::new();
    *ULPS.get_or_init(|| {
        let text = "-1.0016497685151441e+74";
        let parsed: f64 = serde_json::from_str(text).expect("a JSON number");
        let exact: f64 = text.parse().expect("a float");
        if parsed.to_bits() == exact.to_bits() {
            0
        } else {
            JSON_FLOAT_ULPS
        }
    })
}

/// Distance between two finite floats in units in the last place (`u64::MAX` if they differ in
/// sign, except that `0.0` and `-0.0` are at distance 0).
pub fn ulps(a: f64, b: f64) -> u64 {
    if a == b {
        return 0;
    }
    if a.is_sign_negative() != b.is_sign_negative() {
        return u64::MAX;
    }
    a.abs().to_bits().abs_diff(b.abs().to_bits())
}

/// Structural equality of two JSON values in which numbers of the same kind must be equal,
/// except that two floats may differ by up to `float_ulps` ULPs. Integer and float numbers
/// never compare equal to each other (serde_json keeps `1` and `1.0` apart, and so must every
/// round trip).
pub fn json_equivalent(a: &Value, b: &Value, float_ulps: u64) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x.is_f64() != y.is_f64() => false,
            (Some(fx), Some(fy)) if x.is_f64() => ulps(fx, fy) <= float_ulps,
            _ => x == y,
        },
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(ys)
                    .all(|(x, y)| json_equivalent(x, y, float_ulps))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(ys)
                    .all(|((kx, x), (ky, y))| kx == ky && json_equivalent(x, y, float_ulps))
        }
        _ => a == b,
    }
}

/// Whether `value` holds a float anywhere (used to tell a float-precision difference apart from
/// a real round-trip bug in a failure message).
pub fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(xs) => xs.iter().any(has_float),
        Value::Object(xs) => xs.values().any(has_float),
        _ => false,
    }
}

/// Depth of nesting of a JSON value (a scalar is depth 1).
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(xs) => 1 + xs.iter().map(depth).max().unwrap_or(0),
        Value::Object(xs) => 1 + xs.values().map(depth).max().unwrap_or(0),
        _ => 1,
    }
}
