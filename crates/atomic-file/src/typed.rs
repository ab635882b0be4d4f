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

/// An upper bound of the flow-collection nesting depth of YAML text (brackets inside quoted
/// strings are counted too, which can only over-estimate).
fn flow_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for &b in bytes {
        match b {
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
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
            Format::Yaml => serde_yaml::from_slice(bytes).map_err(|e| e.to_string()),
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
