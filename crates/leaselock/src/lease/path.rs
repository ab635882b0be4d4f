//! Lexical path normalization and the overlap relation between claims.
//!
//! Everything here is pure string work: no file system access, so a path that does not exist
//! yet can be claimed, and symlinks are not followed (a claim is on a *name* inside the root).

use std::path::{Component, Path};

use super::error::{LeaseError, LeaseErrorKind};

/// One claimed path: a single file, or a directory prefix covering everything under it.
///
/// Both hold a normalized relative path (see [`normalize_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim<'a> {
    /// Exactly this file.
    File(&'a str),
    /// This directory and everything under it.
    Dir(&'a str),
}

/// True when `inner` lies strictly under directory `outer` (component-wise: `src/a` is under
/// `src`, `srcx/a` is not).
fn strictly_under(inner: &str, outer: &str) -> bool {
    inner.len() > outer.len() && inner.starts_with(outer) && inner.as_bytes()[outer.len()] == b'/'
}

/// Whether two claims overlap.
///
/// - two files overlap when they are the same file;
/// - a file and a directory overlap when the file is the directory itself or lies under it;
/// - two directories overlap when one contains the other (or they are equal).
///
/// The relation is symmetric and reflexive. Paths must already be normalized.
///
/// ```
/// use leaselock::lease::{Claim, overlaps};
/// assert!(overlaps(Claim::File("src/a.rs"), Claim::Dir("src")));
/// assert!(overlaps(Claim::Dir("src"), Claim::Dir("src/deep/er")));
/// assert!(!overlaps(Claim::Dir("src"), Claim::Dir("srcx")));
/// assert!(!overlaps(Claim::File("src"), Claim::File("src/a.rs")));
/// ```
pub fn overlaps(a: Claim<'_>, b: Claim<'_>) -> bool {
    match (a, b) {
        (Claim::File(x), Claim::File(y)) => x == y,
        (Claim::File(f), Claim::Dir(d)) | (Claim::Dir(d), Claim::File(f)) => {
            f == d || strictly_under(f, d)
        }
        (Claim::Dir(x), Claim::Dir(y)) => x == y || strictly_under(x, y) || strictly_under(y, x),
    }
}

/// Refuses a normalized path that goes through a symbolic link inside `root` (or is one): two
/// names for one file (`alias/a.rs` for `src/a.rs` when `alias -> src`) would let two
/// exclusive leases cover it, and a repository may hold such links. Components that do not
/// exist yet end the check (nothing beyond them can be a link).
pub(crate) fn refuse_links(root: &Path, normalized: &str) -> Result<(), LeaseError> {
    let mut at = root.to_path_buf();
    for part in normalized.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&at)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                return Err(invalid(
                    normalized,
                    &format!(
                        "{} is a symbolic link (to {target}); one file must have one name for \
                         leases to exclude each other: lease the path it points to",
                        at.display()
                    ),
                ));
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Whether two sets of claims (files and directory prefixes) share any path.
///
/// Plain nested loops over the slices: this runs once per existing lease on every acquire.
pub(crate) fn scopes_overlap(
    a_files: &[String],
    a_dirs: &[String],
    b_files: &[String],
    b_dirs: &[String],
) -> bool {
    let file_in_dirs =
        |f: &str, dirs: &[String]| dirs.iter().any(|d| f == d.as_str() || strictly_under(f, d));
    a_files
        .iter()
        .any(|f| b_files.contains(f) || file_in_dirs(f, b_dirs))
        || b_files.iter().any(|f| file_in_dirs(f, a_dirs))
        || a_dirs.iter().any(|x| {
            b_dirs
                .iter()
                .any(|y| x == y || strictly_under(x, y) || strictly_under(y, x))
        })
}

fn invalid(path: &str, reason: &str) -> LeaseError {
    LeaseError::new(LeaseErrorKind::InvalidPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Normalizes `path` lexically to a relative path inside `root`, as leases store it.
///
/// `.` components, repeated and trailing `/` are dropped and `a/../b` becomes `b`. An absolute
/// path is accepted only if it lies inside `root` (compared lexically after normalizing both;
/// symlinks are not resolved, so give `root` the way you spell the paths). Refused, with an
/// [`LeaseErrorKind::InvalidPath`] error saying why: the empty path and any path naming the root
/// itself, a path that climbs out of the root (`../x`, `a/../../x`), an absolute path outside
/// `root`, and a path containing a NUL byte.
///
/// ```
/// use leaselock::lease::normalize_path;
/// use std::path::Path;
///
/// let root = Path::new("/repo");
/// assert_eq!(normalize_path(root, "./src//lib.rs")?, "src/lib.rs");
/// assert_eq!(normalize_path(root, "src/../docs/")?, "docs");
/// assert_eq!(normalize_path(root, "/repo/src/main.rs")?, "src/main.rs");
/// assert!(normalize_path(root, "../elsewhere").is_err());
/// assert!(normalize_path(root, "/etc/passwd").is_err());
/// assert!(normalize_path(root, "").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn normalize_path(root: &Path, path: &str) -> Result<String, LeaseError> {
    if path.is_empty() {
        return Err(invalid(path, "the path is empty"));
    }
    if path.contains('\0') {
        return Err(invalid(path, "the path contains a NUL byte"));
    }
    let relative: String = if Path::new(path).is_absolute() {
        let root_norm = lexical_absolute(root).ok_or_else(|| {
            invalid(
                path,
                "the path is absolute but the lease root is not an absolute path",
            )
        })?;
        let path_norm = lexical_absolute(Path::new(path))
            .ok_or_else(|| invalid(path, "the path climbs above the file system root"))?;
        let rest = if root_norm.is_empty() {
            Some(path_norm.as_str())
        } else if path_norm == root_norm {
            Some("")
        } else if strictly_under(&path_norm, &root_norm) {
            Some(&path_norm[root_norm.len() + 1..])
        } else {
            None
        };
        match rest {
            Some(rest) => rest.to_owned(),
            None => {
                return Err(invalid(
                    path,
                    "the absolute path lies outside the lease root",
                ));
            }
        }
    } else {
        path.to_owned()
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(invalid(
                        path,
                        "the path climbs out of the lease root with `..`",
                    ));
                }
            }
            name => parts.push(name),
        }
    }
    if parts.is_empty() {
        return Err(invalid(
            path,
            "the path names the lease root itself; claim files or directories inside it",
        ));
    }
    Ok(parts.join("/"))
}

/// An absolute path normalized lexically to `a/b/c` (no leading `/`); `None` if it climbs
/// above `/` or is not absolute.
fn lexical_absolute(path: &Path) -> Option<String> {
    if !path.is_absolute() {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
        }
    }
    Some(parts.join("/"))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses() {
        let root = Path::new("/r");
        for (input, want) in [
            ("a", "a"),
            ("./a", "a"),
            ("a//b/", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("/r/a/b", "a/b"),
            ("/r/./a/../c", "c"),
        ] {
            assert_eq!(
                normalize_path(root, input).ok().as_deref(),
                Some(want),
                "{input}"
            );
        }
        for bad in [
            "",
            ".",
            "./",
            "..",
            "../x",
            "a/../../x",
            "/etc",
            "/r",
            "/rx/a",
            "a\0b",
        ] {
            assert!(normalize_path(root, bad).is_err(), "{bad:?} accepted");
        }
    }
}
