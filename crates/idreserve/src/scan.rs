//! Finding IDs (`PREFIX-NUMBER`) in existing documents, which may come from a stranger's
//! repository.
//!
//! The walk never follows a symbolic link and never opens anything but a regular file or a
//! directory: directories are opened with [`Dir`] (`O_DIRECTORY | O_NOFOLLOW`) and walked
//! through their descriptors, files are opened `O_NOFOLLOW | O_NONBLOCK` and checked with
//! `fstat` (so a FIFO cannot hang the scan and a device is never read). Symbolic links,
//! FIFOs, sockets, devices, binary files and directories nested deeper than [`MAX_DEPTH`] are
//! skipped and reported ([`Skipped`]). Files are read in chunks of 64 KiB, so memory stays
//! bounded whatever their size.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use atomic_file::dir::{Dir, FileKind};

use crate::error::{Error, ErrorKind};
use crate::id::{MAX_WIDTH, check_prefix};

/// Bytes inspected to decide that a file is binary (it contains a NUL byte there), as git does.
const BINARY_PROBE: usize = 8000;
/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;
/// Longest run of word characters kept across chunks; an ID (a prefix of at most 32 bytes, a
/// dash, at most 20 digits) is far shorter, so a longer run is skipped.
const MAX_WORD: usize = 4096;
/// Deepest directory nesting walked below a path given; deeper directories are skipped (a
/// hostile tree could otherwise exhaust descriptors or the stack).
pub const MAX_DEPTH: usize = 64;

/// Something a scan did not read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why a scan skipped a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// A symbolic link: never followed.
    Symlink,
    /// A FIFO, socket or device: never opened.
    Special,
    /// A file with a NUL byte in its first 8000 bytes.
    Binary,
    /// A directory nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::Symlink => "a symbolic link (never followed)",
            SkipReason::Special => "not a regular file or directory (never opened)",
            SkipReason::Binary => "a binary file",
            SkipReason::TooDeep => "nested too deep",
        })
    }
}

/// Calls `found(file, prefix, number)` for every ID in `paths`: files, and directories walked
/// recursively (skipping `.git` directories); returns what was skipped. A path given that is a
/// symbolic link, or neither a file nor a directory, is refused
/// ([`ErrorKind::InvalidPath`]); name the link's target instead.
pub fn scan_paths(
    paths: &[impl AsRef<Path>],
    found: &mut dyn FnMut(&Path, &str, u64),
) -> Result<Vec<Skipped>, Error> {
    let mut skipped = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let refuse = |reason: String| {
            Error::new(ErrorKind::InvalidPath {
                path: path.to_path_buf(),
                reason,
            })
        };
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("inspect", path, e))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(refuse(
                "it is a symbolic link, which is never followed; name its target instead".into(),
            ));
        }
        if kind.is_dir() {
            let dir = Dir::open(path).map_err(scan_error)?;
            walk_dir(&dir, 0, found, &mut skipped)?;
        } else if kind.is_file() {
            let (parent, name) = split(path).ok_or_else(|| refuse("it has no file name".into()))?;
            let dir = Dir::open(parent).map_err(scan_error)?;
            scan_entry_file(&dir, name, found, &mut skipped)?;
        } else {
            return Err(refuse(
                "it is not a regular file or a directory (a FIFO, socket or device is never \
                 opened)"
                    .into(),
            ));
        }
    }
    Ok(skipped)
}

/// `path`'s directory (`.` for a bare name) and file name.
fn split(path: &Path) -> Option<(&Path, &OsStr)> {
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some((parent, name))
}

/// An error of a path being scanned: wrong types are refusals of input, not store damage.
fn scan_error(e: atomic_file::Error) -> Error {
    match e.kind() {
        atomic_file::ErrorKind::WrongType { found, expected } => {
            Error::new(ErrorKind::InvalidPath {
                path: e.path().to_path_buf(),
                reason: format!("it is {found}, not {expected}"),
            })
        }
        _ => Error::new(ErrorKind::File(e)),
    }
}

fn walk_dir(
    dir: &Dir,
    depth: usize,
    found: &mut dyn FnMut(&Path, &str, u64),
    skipped: &mut Vec<Skipped>,
) -> Result<(), Error> {
    for entry in dir.entries().map_err(scan_error)? {
        let path = dir.join(&entry.name);
        match entry.kind {
            FileKind::Dir => {
                if entry.name == ".git" {
                    continue;
                }
                if depth + 1 > MAX_DEPTH {
                    skipped.push(Skipped {
                        path,
                        reason: SkipReason::TooDeep,
                    });
                    continue;
                }
                match dir.open_dir(&entry.name) {
                    Ok(Some(child)) => walk_dir(&child, depth + 1, found, skipped)?,
                    Ok(None) => {} // removed meanwhile
                    Err(e) => match skip_reason(&e) {
                        Some(reason) => skipped.push(Skipped { path, reason }),
                        None => return Err(scan_error(e)),
                    },
                }
            }
            FileKind::File => scan_entry_file(dir, &entry.name, found, skipped)?,
            FileKind::Symlink => skipped.push(Skipped {
                path,
                reason: SkipReason::Symlink,
            }),
            _ => skipped.push(Skipped {
                path,
                reason: SkipReason::Special,
            }),
        }
    }
    Ok(())
}

/// Why an entry that changed type between listing and opening is skipped.
fn skip_reason(e: &atomic_file::Error) -> Option<SkipReason> {
    match e.kind() {
        atomic_file::ErrorKind::WrongType {
            found: FileKind::Symlink,
            ..
        } => Some(SkipReason::Symlink),
        atomic_file::ErrorKind::WrongType { .. } => Some(SkipReason::Special),
        _ => None,
    }
}

fn scan_entry_file(
    dir: &Dir,
    name: &OsStr,
    found: &mut dyn FnMut(&Path, &str, u64),
    skipped: &mut Vec<Skipped>,
) -> Result<(), Error> {
    let path = dir.join(name);
    let file = match dir.open_file(name) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(()),
        Err(e) => match skip_reason(&e) {
            Some(reason) => {
                skipped.push(Skipped { path, reason });
                return Ok(());
            }
            None => return Err(scan_error(e)),
        },
    };
    if !scan_file(file, &path, &mut |prefix, number| {
        found(&path, prefix, number)
    })? {
        skipped.push(Skipped {
            path,
            reason: SkipReason::Binary,
        });
    }
    Ok(())
}

/// Streams `file` through [`find_ids`]; returns false (having reported nothing) for a binary
/// file.
fn scan_file(mut file: File, path: &Path, found: &mut dyn FnMut(&str, u64)) -> Result<bool, Error> {
    let read_err = |e| Error::io("read", path, e);
    let mut buf = Vec::with_capacity(CHUNK + MAX_WORD);
    // The first bytes decide whether the file is binary.
    (&mut file)
        .take(BINARY_PROBE as u64)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.contains(&0) {
        return Ok(false);
    }
    let mut chunk = vec![0; CHUNK];
    let mut skipping_word = false;
    loop {
        // Everything up to the last byte that cannot be part of a word is complete: no ID
        // spans it. The rest (word bytes) is carried to the next round.
        let cut = buf.iter().rposition(|&b| !is_word(b)).map_or(0, |i| i + 1);
        if cut > 0 {
            let start = if skipping_word {
                // The carried run was too long to be an ID: skip to its end.
                buf.iter().position(|&b| !is_word(b)).unwrap_or(cut)
            } else {
                0
            };
            find_ids(&buf[start..cut], found);
            buf.drain(..cut);
            skipping_word = false;
        }
        if buf.len() > MAX_WORD {
            buf.clear();
            skipping_word = true;
        }
        let n = loop {
            match file.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            }
        };
        if n == 0 {
            if !skipping_word {
                find_ids(&buf, found);
            }
            return Ok(true);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Calls `found(prefix, number)` for every `PREFIX-NUMBER` token in `text`: a maximal run of
/// upper-case letters, digits and dashes, not glued to other word characters, whose part after
/// the last dash is a number (zero padding allowed, at most 20 digits) and whose part before
/// it is a valid prefix.
///
/// ```
/// let mut ids = Vec::new();
/// idreserve::find_ids(b"fixes SEC-20, see GAP-OP-1091; not sec-3 or XSEC-2x", &mut |p, n| {
///     ids.push(format!("{p}-{n}"))
/// });
/// assert_eq!(ids, ["SEC-20", "GAP-OP-1091"]);
/// ```
pub fn find_ids(text: &[u8], found: &mut dyn FnMut(&str, u64)) {
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
            if !digits.is_empty()
                && digits.len() <= MAX_WIDTH
                && digits.bytes().all(|b| b.is_ascii_digit())
            {
                if let (Ok(number), Ok(())) = (digits.parse(), check_prefix(prefix)) {
                    found(prefix, number);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        find_ids(text, &mut |p, n| out.push(format!("{p}-{n}")));
        out
    }

    #[test]
    fn streaming_finds_what_one_pass_finds() {
        let tmp = tempfile::tempdir().expect("tmp");
        // IDs placed across every chunk boundary, and an over-long word in between.
        let mut text = Vec::new();
        let mut expected = Vec::new();
        for i in 0..200u64 {
            text.extend(std::iter::repeat_n(b'x', CHUNK / 7));
            text.extend_from_slice(format!(" SEC-{i} ").as_bytes());
            expected.push(format!("SEC-{i}"));
        }
        text.extend(std::iter::repeat_n(b'A', 3 * MAX_WORD));
        text.extend_from_slice(b"-7 GAP-OP-9");
        expected.push("GAP-OP-9".into());
        assert_eq!(all(&text), expected);
        let path = tmp.path().join("big.md");
        std::fs::write(&path, &text).expect("write");
        let mut got = Vec::new();
        let file = File::open(&path).expect("open");
        assert!(scan_file(file, &path, &mut |p, n| got.push(format!("{p}-{n}"))).expect("scan"));
        assert_eq!(got, expected);
    }
}
