//! The store's `config.yaml`, parsed strictly.
//!
//! ```yaml
//! version: 2             # required: the store's format (absent only in first-release stores)
//! allow: [SEC, GAP-OP]   # optional: only these prefixes; without it, any valid prefix
//! width: {GAP-OP: 4}     # optional: zero-pad these prefixes' numbers to N digits (1-20)
//! ```
//!
//! Unknown keys (a typo such as `alow:`), a key without a value (`allow:` alone would silently
//! drop the allow-list), an empty file, an empty allow-list, an invalid prefix, a duplicate
//! and a width outside 1–20 are errors naming the key (and, from the YAML reader, the line),
//! never defaults. `version` absent means the store was created by the first release, whose
//! log has no header; the first writer migrates such a store and then adds `version: 2`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, ErrorKind};
use crate::id::{MAX_WIDTH, check_prefix};

/// A store's settings, kept in `config.yaml` in the store's directory (format and strictness
/// rules: see the crate docs).
///
/// ```yaml
/// version: 2             # written by idreserve: the store's format
/// allow: [SEC, GAP-OP]   # optional: only these prefixes; without it, any valid prefix
/// width: {GAP-OP: 4}     # optional: zero-pad these prefixes' numbers to N digits (1-20)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// If set, the only prefixes that may be reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Zero padding per prefix (digits, 1 to [`MAX_WIDTH`](crate::MAX_WIDTH)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub width: BTreeMap<String, usize>,
}

/// The store format this release writes.
pub(crate) const VERSION: u32 = 2;
/// Largest `config.yaml` read.
pub(crate) const MAX_LEN: u64 = 64 * 1024;
/// Most prefixes in an allow-list or width map.
const MAX_ENTRIES: usize = 4096;

/// `config.yaml` as it is on disk.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(
        default,
        deserialize_with = "present_version",
        skip_serializing_if = "Option::is_none"
    )]
    version: Option<u32>,
    #[serde(
        default,
        deserialize_with = "present_allow",
        skip_serializing_if = "Option::is_none"
    )]
    allow: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "present_width",
        skip_serializing_if = "Option::is_none"
    )]
    width: Option<BTreeMap<String, usize>>,
}

/// A key that is present must have a value: `allow:` alone (YAML null) is an error, not
/// "no allow-list".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    key: &str,
) -> Result<Option<T>, D::Error> {
    match Option::<T>::deserialize(d)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom(format!(
            "`{key}` has no value (give it one, or remove the key)"
        ))),
    }
}

fn present_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    present(d, "version")
}

fn present_allow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    present(d, "allow")
}

fn present_width<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, usize>>, D::Error> {
    present(d, "width")
}

/// The YAML reader's message, with the line of a key without a value (which it does not
/// locate) and without this module's type names.
fn decode_message(text: &str, message: &str) -> String {
    let mut message = message.replace("struct ConfigFile", "a mapping of settings");
    for key in KEYS {
        if message.starts_with(&format!("`{key}` has no value")) {
            let line = text.lines().position(|l| {
                l.trim_start()
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            });
            if let Some(line) = line {
                message.push_str(&format!(" at line {}", line + 1));
            }
        }
    }
    message
}

const KEYS: [&str; 3] = ["version", "allow", "width"];

/// A parsed `config.yaml`: the settings, and whether it is a first-release file (no
/// `version`).
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) config: Config,
    pub(crate) legacy: bool,
}

/// Whether `text` holds nothing but whitespace and comments.
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#') || line == "---" || line == "...")
}

/// Parses `bytes`, the contents of `path`.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, Error> {
    let bad = |reason: String| Error::corrupt(path, reason);
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("it is not UTF-8 ({e})")))?;
    if is_blank(text) {
        return Err(bad(format!(
            "it is empty; an ID store's config.yaml holds at least `version: {VERSION}` (an \
             empty file is never read as the defaults)"
        )));
    }
    let file: ConfigFile =
        atomic_file::Format::Yaml
            .decode(path, bytes)
            .map_err(|e| match e.kind() {
                atomic_file::ErrorKind::Decode { message, .. } => {
                    bad(decode_message(text, message))
                }
                _ => Error::store_file(e),
            })?;
    let legacy = match file.version {
        None => true,
        Some(VERSION) => false,
        Some(v) => {
            return Err(bad(format!(
                "`version: {v}`: this release reads version {VERSION} (written by a newer \
                 idreserve?)"
            )));
        }
    };
    let config = Config {
        allow: file.allow,
        width: file.width.unwrap_or_default(),
    };
    check(&config).map_err(bad)?;
    Ok(Parsed { config, legacy })
}

/// Checks the settings given to [`Store::create`](crate::Store::create): every prefix, then
/// the rules of [`check`], as [`ErrorKind::InvalidPrefix`] or [`ErrorKind::InvalidConfig`].
pub(crate) fn check_new(config: &Config) -> Result<(), Error> {
    for prefix in config.allow.iter().flatten().chain(config.width.keys()) {
        check_prefix(prefix)?;
    }
    check(config).map_err(|reason| Error::new(ErrorKind::InvalidConfig { reason }))
}

/// Checks settings (from a file or from a caller creating a store); the reason names the key.
pub(crate) fn check(config: &Config) -> Result<(), String> {
    if let Some(allow) = &config.allow {
        if allow.is_empty() {
            return Err(
                "`allow` is empty, which would allow no prefix; remove the key to allow every \
                 prefix"
                    .into(),
            );
        }
        if allow.len() > MAX_ENTRIES {
            return Err(format!("`allow` lists more than {MAX_ENTRIES} prefixes"));
        }
        let mut seen = BTreeSet::new();
        for prefix in allow {
            check_prefix(prefix).map_err(|e| format!("`allow`: {e}"))?;
            if !seen.insert(prefix) {
                return Err(format!("`allow` lists {prefix:?} twice"));
            }
        }
    }
    if config.width.len() > MAX_ENTRIES {
        return Err(format!("`width` has more than {MAX_ENTRIES} entries"));
    }
    for (prefix, &width) in &config.width {
        check_prefix(prefix).map_err(|e| format!("`width`: {e}"))?;
        if !(1..=MAX_WIDTH).contains(&width) {
            return Err(format!(
                "`width` of {prefix} is {width}: it must be 1 to {MAX_WIDTH} digits (remove \
                 the entry for no padding)"
            ));
        }
    }
    Ok(())
}

/// The text of a new `config.yaml` for `config`.
pub(crate) fn encode(path: &Path, config: &Config) -> Result<Vec<u8>, Error> {
    let file = ConfigFile {
        version: Some(VERSION),
        allow: config.allow.clone(),
        width: (!config.width.is_empty()).then(|| config.width.clone()),
    };
    atomic_file::Format::Yaml
        .encode(path, &file)
        .map_err(Error::store_file)
}

/// The text of a first-release `config.yaml` (`old`) with `version: 2` added: the line is put
/// in front of the old text when that keeps every other setting (and the comments); otherwise
/// the settings are written out again.
pub(crate) fn with_version(path: &Path, old: &[u8], config: &Config) -> Result<Vec<u8>, Error> {
    let mut text = format!("version: {VERSION}\n").into_bytes();
    text.extend_from_slice(old);
    match parse(path, &text) {
        Ok(parsed) if !parsed.legacy && parsed.config == *config => Ok(text),
        _ => encode(path, config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Parsed, String> {
        parse(Path::new("ids/config.yaml"), text.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn valid_configs() {
        let p = parse_str("version: 2\n").expect("minimal");
        assert!(!p.legacy && p.config == Config::default());
        let p = parse_str("version: 2\nallow: [SEC, GAP-OP]\nwidth: {GAP-OP: 4}\n").expect("full");
        assert_eq!(
            p.config.allow.as_deref(),
            Some(&["SEC".to_owned(), "GAP-OP".to_owned()][..])
        );
        assert_eq!(p.config.width["GAP-OP"], 4);
        // The first release wrote `{}`.
        assert!(parse_str("{}\n").expect("first release").legacy);
        let round = encode(Path::new("c"), &p.config).expect("encode");
        assert_eq!(
            parse(Path::new("c"), &round).expect("round trip").config,
            p.config
        );
    }

    #[test]
    fn strict_errors_name_the_key() {
        for (text, needle) in [
            ("", "empty"),
            ("\n# only a comment\n", "empty"),
            ("version: 2\nalow: [SEC]\n", "alow"),
            (
                "version: 2\nallow:\n",
                "`allow` has no value (give it one, or remove the key) at line 2",
            ),
            ("version: 2\nallow: []\n", "allow"),
            ("version: 2\nallow: [sec]\n", "allow"),
            ("version: 2\nallow: [SEC, SEC]\n", "twice"),
            ("version: 2\nwidth: {SEC: 0}\n", "width"),
            ("version: 2\nwidth: {SEC: 100000000000}\n", "width"),
            ("version: 2\nwidth:\n", "`width` has no value"),
            ("version: 3\n", "version 2"),
            ("version:\n", "`version` has no value"),
            (
                "version: 2\nalow: [SEC]\n",
                "unknown field `alow`, expected one of `version`, `allow`, `width` at line 2",
            ),
            ("~\n", "expected a mapping of settings"),
            ("- SEC\n", "expected a mapping of settings"),
            ("\u{0}garbage{{", ""),
        ] {
            let err = parse_str(text).expect_err(text);
            assert!(
                err.contains("config.yaml") && err.contains(needle),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn version_is_added_keeping_comments() {
        let old = b"# who may reserve\nallow: [SEC]\n";
        let parsed = parse(Path::new("c"), old).expect("legacy");
        let new = with_version(Path::new("c"), old, &parsed.config).expect("with version");
        assert_eq!(new, b"version: 2\n# who may reserve\nallow: [SEC]\n");
        let new = with_version(Path::new("c"), b"{}\n", &Config::default()).expect("flow");
        assert!(!parse(Path::new("c"), &new).expect("parse").legacy);
    }
}
