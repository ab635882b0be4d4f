//! The `.gitattributes` lines that route documents to the driver.

use std::path::{Component, Path};

use super::*;

/// Which merge a path inside a registry needs, from its name: `.yaml` files are gaps, `.md`
/// files loops; `None` for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocumentKind {
    /// A gap file.
    Gap,
    /// A loop file.
    Loop,
}

impl DocumentKind {
    /// The kind of the document at `path` (git's `%P`).
    pub fn of(path: &Path) -> Option<DocumentKind> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Some(DocumentKind::Gap),
            Some("md") => Some(DocumentKind::Loop),
            _ => None,
        }
    }

    /// Merges three versions of a document of this kind.
    pub fn merge(self, ancestor: Option<&[u8]>, ours: &[u8], theirs: &[u8]) -> Merge {
        match self {
            DocumentKind::Gap => merge_gap(ancestor, ours, theirs),
            DocumentKind::Loop => merge_loop(ancestor, ours, theirs),
        }
    }
}

/// The `.gitattributes` lines that send a registry's documents to the driver: gap files under
/// `registry/gaps/`, loop files under `loops` (each relative to the repository root; `None`
/// for loops outside it).
///
/// ```
/// use std::path::Path;
/// let lines = gapreg::merge::attribute_lines(Path::new(".gapreg"), Some(Path::new(".gapreg/loops")))?;
/// assert_eq!(lines, [".gapreg/gaps/*.yaml merge=gapreg", ".gapreg/loops/*.md merge=gapreg"]);
/// # Ok::<(), String>(())
/// ```
///
/// # Errors
///
/// A path with characters a `.gitattributes` pattern cannot hold unquoted (spaces, glob
/// characters, quotes) or that leaves the repository.
pub fn attribute_lines(registry: &Path, loops: Option<&Path>) -> Result<Vec<String>, String> {
    let mut lines = vec![format!(
        "{}/*.yaml merge={DRIVER_NAME}",
        pattern_path(&registry.join("gaps"))?
    )];
    if let Some(loops) = loops {
        lines.push(format!("{}/*.md merge={DRIVER_NAME}", pattern_path(loops)?));
    }
    Ok(lines)
}

pub(super) fn pattern_path(path: &Path) -> Result<String, String> {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{} is not UTF-8", path.display()))?,
            ),
            Component::CurDir => {}
            Component::ParentDir if parts.pop().is_some() => {}
            _ => return Err(format!("{} is not inside the repository", path.display())),
        }
    }
    let text = parts.join("/");
    let ok = !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'+' | b'@')
        });
    if ok {
        Ok(text)
    } else {
        Err(format!(
            "{} cannot be written as a .gitattributes pattern (use letters, digits, '.', '_', \
             '-', '+', '@')",
            path.display()
        ))
    }
}

/// `existing` (a `.gitattributes` file's text) with each of `lines` present, missing ones
/// appended under a comment; `None` if every line is already there. Other lines are kept as
/// they are.
///
/// ```
/// let lines = vec![".gapreg/gaps/*.yaml merge=gapreg".to_owned()];
/// let text = gapreg::merge::with_attribute_lines("*.png binary", &lines).expect("added");
/// assert_eq!(text, "*.png binary\n# gapreg: merge registry documents field by field (`gapreg git setup`)\n.gapreg/gaps/*.yaml merge=gapreg\n");
/// assert_eq!(gapreg::merge::with_attribute_lines(&text, &lines), None);
/// ```
pub fn with_attribute_lines(existing: &str, lines: &[String]) -> Option<String> {
    let have = |line: &str| {
        existing
            .lines()
            .any(|l| l.split_whitespace().eq(line.split_whitespace()))
    };
    let missing: Vec<&String> = lines.iter().filter(|l| !have(l)).collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = existing.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let comment = "# gapreg: merge registry documents field by field (`gapreg git setup`)";
    if !existing.lines().any(|l| l == comment) {
        out.push_str(comment);
        out.push('\n');
    }
    for line in missing {
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}
