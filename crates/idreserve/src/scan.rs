//! Finding IDs (`PREFIX-NUMBER`) in existing documents.

use std::path::Path;

use crate::error::Error;
use crate::id::check_prefix;

/// Bytes inspected to decide that a file is binary (it contains a NUL byte there), as git does.
const BINARY_PROBE: usize = 8000;

/// Calls `found(file, prefix, number)` for every ID in `paths`: files, and directories walked
/// recursively (skipping `.git` directories, symlinks and binary files).
pub fn scan_paths(
    paths: &[impl AsRef<Path>],
    found: &mut dyn FnMut(&Path, &str, u64),
) -> Result<(), Error> {
    for path in paths {
        let path = path.as_ref();
        // A path the caller names is followed if it is a symlink (`docs -> ../shared/docs`);
        // symlinks met while walking are not, so nothing is scanned twice or in a loop.
        let meta = std::fs::metadata(path).map_err(|e| Error::io("inspect", path, e))?;
        if meta.is_dir() {
            walk_dir(path, found)?;
        } else if meta.is_file() {
            scan_file(path, found)?;
        }
    }
    Ok(())
}

fn walk(path: &Path, found: &mut dyn FnMut(&Path, &str, u64)) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("inspect", path, e))?;
    if meta.is_dir() {
        if path.file_name().is_some_and(|n| n == ".git") {
            return Ok(());
        }
        walk_dir(path, found)?;
    } else if meta.is_file() {
        scan_file(path, found)?;
    }
    Ok(())
}

fn walk_dir(path: &Path, found: &mut dyn FnMut(&Path, &str, u64)) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| Error::io("list", path, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::io("list", path, e))?;
    entries.sort();
    for entry in entries {
        walk(&entry, found)?;
    }
    Ok(())
}

fn scan_file(path: &Path, found: &mut dyn FnMut(&Path, &str, u64)) -> Result<(), Error> {
    let data = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    if !data[..data.len().min(BINARY_PROBE)].contains(&0) {
        find_ids(&data, &mut |prefix, number| found(path, prefix, number));
    }
    Ok(())
}

/// Calls `found(prefix, number)` for every `PREFIX-NUMBER` token in `text`: a maximal run of
/// upper-case letters, digits and dashes, not glued to other word characters, whose part after
/// the last dash is a number and whose part before it is a valid prefix.
///
/// ```
/// let mut ids = Vec::new();
/// idreserve::find_ids(b"fixes SEC-20, see GAP-OP-1091; not sec-3 or XSEC-2x", &mut |p, n| {
///     ids.push(format!("{p}-{n}"))
/// });
/// assert_eq!(ids, ["SEC-20", "GAP-OP-1091"]);
/// ```
pub fn find_ids(text: &[u8], found: &mut dyn FnMut(&str, u64)) {
    let is_token = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-';
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut i = 0;
    while i < text.len() {
        if !is_token(text[i]) || (i > 0 && is_word(text[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && is_token(text[i]) {
            i += 1;
        }
        if i < text.len() && is_word(text[i]) {
            // Glued to lower-case letters or underscores: part of another word.
            continue;
        }
        // Trailing dashes (e.g. "SEC-20-") are punctuation, not part of the ID.
        let mut end = i;
        while end > start && text[end - 1] == b'-' {
            end -= 1;
        }
        let Ok(token) = std::str::from_utf8(&text[start..end]) else {
            continue;
        };
        if let Some((prefix, digits)) = token.rsplit_once('-') {
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                if let (Ok(number), Ok(())) = (digits.parse(), check_prefix(prefix)) {
                    found(prefix, number);
                }
            }
        }
    }
}
