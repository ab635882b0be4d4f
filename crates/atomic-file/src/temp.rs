//! Names of this crate's temp files.
//!
//! A temp file for target `dir/NAME` is `dir/.NAME.PID-RANDOM.atomic-tmp`, where `PID` is the
//! writer's process id and `RANDOM` 16 hex digits. It is created with `O_EXCL`, so two writers
//! (threads or processes) never share one, and the `.atomic-tmp` suffix lets [`crate::recover`]
//! tell this crate's leftovers from every other file.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Suffix of every temp file this crate creates.
pub const SUFFIX: &str = ".atomic-tmp";
/// Longest part of the target's name kept in a temp name, in bytes, so that the temp name stays
/// within the 255-byte limit of common file systems.
const MAX_STEM: usize = 100;

/// Longest file name common file systems accept, in bytes.
const NAME_MAX: usize = 255;

/// `name` cut to at most `MAX_STEM` bytes on a character boundary (lossily, if not UTF-8).
fn stem(name: &OsStr) -> String {
    let stem = name.to_string_lossy();
    let mut cut = stem.len().min(MAX_STEM);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    stem[..cut].to_owned()
}

/// A fresh temp path next to `target` (in `dir`), owned by process `pid`.
pub fn path_for(dir: &Path, target_name: &OsStr, pid: u32) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(stem(target_name));
    name.push(format!(".{pid}-{:016x}{SUFFIX}", fastrand::u64(..)));
    dir.join(name)
}

/// The name of the lock file guarding updates of `target_name`: `.NAME.lock`, or, when that
/// would exceed the file-name limit, `.SHORTENED~CRC32.lock` (the checksum of the whole name
/// keeps different long names apart; a collision would only make two files share a lock).
pub fn lock_name(target_name: &OsStr) -> OsString {
    let mut name = OsString::from(".");
    if target_name.len() + ".".len() + ".lock".len() <= NAME_MAX {
        name.push(target_name);
    } else {
        let crc = crc32fast::hash(target_name.as_encoded_bytes());
        name.push(format!("{}~{crc:08x}", stem(target_name)));
    }
    name.push(".lock");
    name
}

/// The writer pid recorded in a temp file's name, if `name` is one of this crate's temp names.
pub fn parse(name: &OsStr) -> Option<u32> {
    // `path_for` always makes UTF-8 names (a non-UTF-8 target name is converted lossily).
    let name = name.to_str()?;
    let rest = name.strip_prefix('.')?.strip_suffix(SUFFIX)?;
    let (_, tag) = rest.rsplit_once('.')?;
    let (pid, random) = tag.split_once('-')?;
    let hex = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    if hex && digits {
        pid.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_hidden_and_parseable() {
        let dir = Path::new("/d");
        let a = path_for(dir, OsStr::new("reg.json"), 42);
        let b = path_for(dir, OsStr::new("reg.json"), 42);
        assert_ne!(a, b);
        let name = a.file_name().expect("name");
        assert!(name.to_string_lossy().starts_with(".reg.json.42-"), "{a:?}");
        assert_eq!(parse(name), Some(42));
    }

    #[test]
    fn long_and_multibyte_names_are_cut_on_a_char_boundary() {
        let long = "é".repeat(300);
        let p = path_for(Path::new("."), OsStr::new(&long), 7);
        let name = p.file_name().expect("name");
        assert!(name.len() < 200, "{} bytes", name.len());
        assert_eq!(parse(name), Some(7));
    }

    #[test]
    fn lock_names_fit_the_name_limit() {
        assert_eq!(lock_name(OsStr::new("reg.json")), ".reg.json.lock");
        let long_a = "a".repeat(250);
        let long_b = format!("{}b", "a".repeat(249));
        let (a, b) = (
            lock_name(OsStr::new(&long_a)),
            lock_name(OsStr::new(&long_b)),
        );
        assert!(a.len() <= NAME_MAX && b.len() <= NAME_MAX);
        assert_ne!(a, b);
    }

    #[test]
    fn other_files_are_not_temp_files() {
        for other in [
            "reg.json",
            ".reg.json.lock",
            ".reg.json.tmp",
            "reg.json.42-0123456789abcdef.atomic-tmp",
            ".reg.json.x42-0123456789abcdef.atomic-tmp",
            ".reg.json.42-0123456789abcdeg.atomic-tmp",
            ".reg.json.42-0123456789abcde.atomic-tmp",
            ".42-0123456789abcdef.atomic-tmp",
        ] {
            assert_eq!(parse(OsStr::new(other)), None, "{other}");
        }
        assert_eq!(
            parse(OsStr::new("..42-0123456789abcdef.atomic-tmp")),
            Some(42)
        );
    }
}
