//! Typed helpers: encode and decode any `serde` value as JSON or YAML.
//!
//! YAML goes through [`yaml_serde`](https://crates.io/crates/yaml_serde), the YAML
//! organization's maintained fork of the archived `serde_yaml` (RUSTSEC-2024-0320), used here
//! under the name `serde_yaml`. Like every serde YAML crate it does not keep comments: use these
//! helpers for files this tool owns, and a format-preserving editor for files people write.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// Deepest nesting of YAML flow collections accepted. The YAML parser takes time quadratic in
/// this depth (a 80 KB file of `{"a":` took seconds), and serde cannot decode more than 128
/// levels anyway, so deeper input is refused before parsing.
const MAX_YAML_FLOW_DEPTH: usize = 256;

/// Bounds what a YAML document may expand to through aliases (`&a` ... `*a`).
///
/// The parser replays an alias's events wherever it is used, so a 16 KB file of nested
/// aliases ("billion laughs") expands to gigabytes. Before decoding for real, a first pass
/// walks the document as the decoder would — aliases expanded — with a visitor that stores
/// nothing and charges every node and every byte of scalar text against a budget proportional
/// to the input: [`BUDGET_FACTOR`] × its length plus [`BUDGET_BASE`]. A document without
/// aliases costs at most about its own length plus 8 per node, so only expansion can exhaust
/// it; the pass stops at the first node past the budget, so time and memory stay bounded by
/// the input's size.
mod yaml_budget {
    use std::cell::Cell;
    use std::fmt;

    use serde::de::{
        self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess,
        Visitor,
    };

    /// Budget per input byte.
    pub const BUDGET_FACTOR: u64 = 16;
    /// Budget of every document, whatever its size.
    pub const BUDGET_BASE: u64 = 64 * 1024;
    /// What one node costs besides its text.
    const NODE: u64 = 8;

    /// `Ok` if `bytes` stays within its budget (or is not valid YAML, which the real decode
    /// reports with its own message).
    pub fn check(bytes: &[u8]) -> Result<(), String> {
        let limit = BUDGET_BASE.saturating_add(BUDGET_FACTOR.saturating_mul(bytes.len() as u64));
        let left = Cell::new(limit);
        let exceeded = Cell::new(false);
        let de = serde_yaml::Deserializer::from_slice(bytes);
        match (Budget {
            left: &left,
            exceeded: &exceeded,
        })
        .deserialize(de)
        {
            Err(_) if exceeded.get() => Err(format!(
                "it expands to more than {limit} bytes of values through YAML aliases \
                 (`*name`); write the values out, or remove the aliases"
            )),
            _ => Ok(()),
        }
    }

    #[derive(Clone, Copy)]
    struct Budget<'a> {
        left: &'a Cell<u64>,
        exceeded: &'a Cell<bool>,
    }

    impl Budget<'_> {
        fn charge<E: de::Error>(self, cost: u64) -> Result<(), E> {
            match self.left.get().checked_sub(cost) {
                Some(left) => {
                    self.left.set(left);
                    Ok(())
                }
                None => {
                    self.exceeded.set(true);
                    Err(E::custom("YAML alias expansion exceeds the budget"))
                }
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Budget<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
            de.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Budget<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any YAML value")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            self.charge(NODE)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            self.charge(NODE)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            self.charge(NODE)
        }
        fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
            self.charge(NODE)
        }
        fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
            self.charge(NODE)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            self.charge(NODE)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
            self.charge(NODE.saturating_add(v.len() as u64))
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
            self.charge(NODE.saturating_add(v.len() as u64))
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.charge(NODE)
        }
        fn visit_none<E: de::Error>(self) -> Result<(), E> {
            self.charge(NODE)
        }
        fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
            self.charge(NODE)?;
            de.deserialize_any(self)
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
            self.charge(NODE)?;
            de.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.charge(NODE)?;
            while seq.next_element_seed(self)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.charge(NODE)?;
            while map.next_key_seed(self)?.is_some() {
                map.next_value_seed(self)?;
            }
            Ok(())
        }
        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
            // A tagged value (`!Tag value`).
            self.charge(NODE)?;
            let ((), variant) = data.variant_seed(self)?;
            variant.newtype_variant_seed(self)
        }
    }
}

/// An upper bound of the flow-collection nesting depth of YAML text, from a scan that knows
/// just enough YAML to tell a bracket that opens a collection from one that is text: inside
/// quoted scalars, comments and block scalars (`|`, `>`), and in the middle of a plain
/// scalar outside any collection, a bracket is text. Anything it is unsure of counts, so it
/// can only over-estimate. (Counting every bracket refused files the writer itself made: a
/// description with many `[`.)
fn flow_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    // Where a node may start (a bracket there opens a collection), and the indentation of
    // the line that opened a block scalar still running.
    let mut node_start = true;
    let mut block: Option<usize> = None;
    let mut line_start = true;
    let space = |c: Option<&u8>| matches!(c, None | Some(b' ' | b'\t' | b'\n' | b'\r'));
    while i < bytes.len() {
        if line_start {
            line_start = false;
            let indent = bytes[i..].iter().take_while(|&&c| c == b' ').count();
            let blank = matches!(bytes.get(i + indent), None | Some(b'\n' | b'\r'));
            if let Some(parent) = block {
                if blank || indent > parent {
                    i = skip_line(bytes, i);
                    line_start = true;
                    continue;
                }
                block = None;
            }
            node_start = true;
            i += indent;
            continue;
        }
        let b = bytes[i];
        match b {
            b'\n' => line_start = true,
            b' ' | b'\t' | b'\r' => {}
            b'#' if i == 0 || space(bytes.get(i - 1)) => {
                i = skip_line(bytes, i);
                line_start = true;
                continue;
            }
            b'\'' | b'"' if node_start => {
                i = skip_quoted(bytes, i);
                node_start = false;
                continue;
            }
            b'[' | b'{' if node_start || depth > 0 => {
                depth += 1;
                max = max.max(depth);
                node_start = true;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                node_start = false;
            }
            b',' if depth > 0 => node_start = true,
            b':' | b'-' | b'?' if space(bytes.get(i + 1)) => node_start = true,
            b'|' | b'>' if node_start && depth == 0 => {
                // Its text is every following line indented more than the column of the node
                // the line starts (past `- `, `? ` and `: ` indicators), which is at least
                // the column YAML counts from: a line YAML gives back to the document is
                // never skipped here.
                let line = bytes[..i]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1);
                let mut j = line + bytes[line..].iter().take_while(|&&c| c == b' ').count();
                while matches!(bytes.get(j), Some(b'-' | b'?' | b':')) && space(bytes.get(j + 1)) {
                    j += 1;
                    j += bytes[j..].iter().take_while(|&&c| c == b' ').count();
                }
                block = Some(j - line);
                i = skip_line(bytes, i);
                line_start = true;
                continue;
            }
            _ => node_start = false,
        }
        i += 1;
    }
    max
}

/// The index just past the end of the line holding `i` (its newline included).
fn skip_line(bytes: &[u8], i: usize) -> usize {
    bytes[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(bytes.len(), |p| i + p + 1)
}

/// The index just past the quoted scalar starting at `i` (`'…'` with `''` inside, or `"…"`
/// with backslash escapes); the end of the text if it is never closed.
fn skip_quoted(bytes: &[u8], i: usize) -> usize {
    let quote = bytes[i];
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' if quote == b'"' => j += 2,
            c if c == quote => {
                if quote == b'\'' && bytes.get(j + 1) == Some(&b'\'') {
                    j += 2;
                } else {
                    return j + 1;
                }
            }
            _ => j += 1,
        }
    }
    bytes.len()
}

/// A serialization format for the typed helpers.
///
/// Known limitation: JSON has no NaN or infinity, and `serde_json` writes them as `null`, which
/// does not read back as a float. Keep non-finite floats out of JSON values (or use YAML, which
/// has `.nan` and `.inf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// Pretty-printed JSON with a trailing newline.
    Json,
    /// YAML.
    Yaml,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
        })
    }
}

impl Format {
    /// Picks the format from a path's extension: `.json` is JSON, `.yaml` and `.yml` are YAML.
    ///
    /// ```
    /// use atomic_file::Format;
    /// assert_eq!(Format::from_path("gaps.yml"), Some(Format::Yaml));
    /// assert_eq!(Format::from_path("notes.txt"), None);
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Option<Format> {
        match path.as_ref().extension()?.to_str()? {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }

    /// Encodes `value`; `path` only names the file in an error.
    ///
    /// ```
    /// use atomic_file::Format;
    /// let bytes = Format::Json.encode("x.json", &vec![1, 2])?;
    /// assert_eq!(bytes, b"[\n  1,\n  2\n]\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode<T: Serialize + ?Sized>(
        self,
        path: impl AsRef<Path>,
        value: &T,
    ) -> Result<Vec<u8>> {
        let encoded = match self {
            Format::Json => serde_json::to_vec_pretty(value)
                .map(|mut bytes| {
                    bytes.push(b'\n');
                    bytes
                })
                .map_err(|e| e.to_string()),
            Format::Yaml => serde_yaml::to_string(value)
                .map(String::into_bytes)
                .map_err(|e| e.to_string()),
        };
        encoded.map_err(|message| {
            Error::new(
                path.as_ref(),
                ErrorKind::Encode {
                    format: self,
                    message,
                },
            )
        })
    }

    /// Decodes a value from `bytes`; `path` only names the file in an error. Never panics.
    ///
    /// ```
    /// use atomic_file::Format;
    /// let n: Vec<u32> = Format::Yaml.decode("x.yaml", b"- 1\n- 2\n")?;
    /// assert_eq!(n, [1, 2]);
    /// assert!(Format::Json.decode::<Vec<u32>>("x.json", b"[1,").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode<T: DeserializeOwned>(self, path: impl AsRef<Path>, bytes: &[u8]) -> Result<T> {
        let decoded = match self {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Format::Yaml if flow_depth(bytes) > MAX_YAML_FLOW_DEPTH => Err(format!(
                "flow collections ({{ or [) are nested more than {MAX_YAML_FLOW_DEPTH} deep"
            )),
            Format::Yaml => yaml_budget::check(bytes)
                .and_then(|()| serde_yaml::from_slice(bytes).map_err(|e| e.to_string())),
        };
        decoded.map_err(|message| {
            Error::new(
                path.as_ref(),
                ErrorKind::Decode {
                    format: self,
                    message,
                },
            )
        })
    }
}

#[cfg(test)]
mod flow_depth_tests {
    use super::flow_depth;

    #[test]
    fn brackets_that_are_text_do_not_count() {
        let deep = "[".repeat(300);
        for text in [
            format!("title: a{deep}\n"),
            format!("title: '{deep}'\n"),
            format!("title: \"{deep}\"\n"),
            format!("title: x # {deep}\n"),
            format!("description: |\n  {deep}\n  more\nnext: 1\n"),
            format!("- key: >-\n    {deep}\n- b\n"),
            format!("a: ]]]]\nb: x{deep}\n"),
        ] {
            assert_eq!(flow_depth(text.as_bytes()), 0, "{text}");
        }
    }

    #[test]
    fn collections_count_wherever_yaml_opens_them() {
        let deep = "[".repeat(300);
        for text in [
            format!("{deep}\n"),
            format!("k: {deep}\n"),
            format!("- {deep}\n"),
            format!("k: [a, {deep}\n"),
            format!("k: {{a: {deep}\n"),
            // A line YAML gives back to the mapping after a block scalar.
            format!("- key: |\n    text\n  {deep}: 1\n"),
            format!("k: |\n  text\n{deep}\n"),
            // An unclosed quote stops at the end: brackets before it still count.
            format!("{deep} 'x\n"),
        ] {
            assert!(flow_depth(text.as_bytes()) >= 300, "{text}");
        }
    }
}
