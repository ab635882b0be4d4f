//! Three-way merges of the registry's documents — gap files and loop files — field by field,
//! for git's merge driver (`gapreg merge-driver`, registered by `gapreg git setup`).
//!
//! Git merges text line by line, so two branches that changed *different* fields of one gap
//! (one set the status, the other added a dependency) always conflict: both rewrote `rev` and
//! `updated_at`. These functions merge the documents as what they are, a map of fields:
//!
//! | field | merged as |
//! |---|---|
//! | changed on one side only | that side's value |
//! | changed to the same value on both | that value |
//! | changed to two different values | a **conflict** naming the field |
//! | `tags`, `depends_on` (lists) | sets: an element added on either side is added, one removed on one side and untouched on the other is removed; ours' order, then theirs' additions |
//! | `rev` (gaps) | one more than the larger side |
//! | `updated_at` (gaps) | the later side |
//! | a loop file's body (below the front matter) | the changed side's, if only one side changed it; else a conflict |
//!
//! Nothing is ever picked silently: a side that cannot be parsed, a file both branches added
//! with no common ancestor (two clones filed the same id), or a merged gap that is not a valid
//! gap is a conflict too. A [`Conflict`] says why ([`ConflictKind`]) and renders the file to
//! leave in the work tree ([`Conflict::render`]): merged wherever it could be, git-style
//! conflict markers around each conflicting field, so the person resolving it sees exactly
//! which field to choose.
//!
//! What the merge cannot see — a dependency cycle or a complete gap with an unfinished
//! dependency that only the *combination* of two branches creates — is reported by
//! [`Registry::doctor`](crate::Registry::doctor) after the merge.
//!
//! ```
//! use gapreg::merge::{merge_gap, Merge};
//!
//! let base = "id: GAP-OP-1\nseq: 1\nrev: 1\ntitle: t\nseverity: high\nstatus: open\n\
//!             tags: [a]\ncreated_at: 2026-01-01T00:00:00Z\nupdated_at: 2026-01-01T00:00:00Z\n";
//! let ours = base.replace("rev: 1", "rev: 2").replace("status: open", "status: ready")
//!     .replace("updated_at: 2026-01-01T00:00:00Z", "updated_at: 2026-01-02T00:00:00Z");
//! let theirs = base.replace("rev: 1", "rev: 2").replace("tags: [a]", "tags: [a, b]");
//! let Merge::Clean(text) = merge_gap(Some(base.as_bytes()), ours.as_bytes(), theirs.as_bytes())
//! else { panic!("different fields merge cleanly") };
//! let gap = gapreg::parse_gap_yaml(text.as_bytes())?;
//! assert_eq!((gap.status, gap.rev, gap.tags), (gapreg::Status::Ready, 3, vec!["a".into(), "b".into()]));
//! assert_eq!(gap.updated_at.to_string(), "2026-01-02T00:00:00Z");
//!
//! // The same field changed to two different values is a conflict naming it.
//! let other = base.replace("rev: 1", "rev: 2").replace("status: open", "status: blocked");
//! let Merge::Conflict(c) = merge_gap(Some(base.as_bytes()), ours.as_bytes(), other.as_bytes())
//! else { panic!("status changed on both sides") };
//! assert!(c.to_string().contains("status"));
//! assert!(c.render(7).contains("<<<<<<< ours: status changed on both branches"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

mod attributes;
mod fields;
mod gap;
mod loop_file;

pub use attributes::{DocumentKind, attribute_lines, with_attribute_lines};
use fields::*;
pub use gap::merge_gap;
pub use loop_file::merge_loop;

/// The name of the merge driver in git's configuration (`merge.gapreg.driver`) and in
/// `.gitattributes` (`merge=gapreg`).
pub const DRIVER_NAME: &str = "gapreg";

/// The largest document the merge driver reads, per side.
pub const MAX_MERGE_INPUT: u64 = 1 << 20;

/// Gap fields merged as sets.
const GAP_LISTS: &[&str] = &["tags", "depends_on"];
/// Loop front-matter keys merged as sets (when every side holds a list).
const LOOP_LISTS: &[&str] = &["depends_on", "tags"];
/// Gap fields merged by their own rule, not three-way.
const GAP_DERIVED: &[&str] = &["rev", "updated_at"];
/// The pseudo-field naming a loop file's body in conflicts.
pub const BODY_FIELD: &str = "(body)";

/// The outcome of merging one document.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Merge {
    /// Merged: the merged file's contents.
    Clean(String),
    /// Not merged: why, and the file to leave for a person.
    Conflict(Conflict),
}

/// One of the three versions a merge reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Side {
    /// The common ancestor (git's `%O`).
    Ancestor,
    /// The branch being merged into (git's `%A`).
    Ours,
    /// The branch being merged (git's `%B`).
    Theirs,
    /// The result of combining them.
    Merged,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Ancestor => "common ancestor",
            Side::Ours => "ours",
            Side::Theirs => "theirs",
            Side::Merged => "merged",
        })
    }
}

/// A field both branches changed to different values. Values are shown as compact JSON;
/// `None` means the field is absent in that version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldConflict {
    /// The field's name (`title`, `status`, … or [`BODY_FIELD`] for a loop's body).
    pub field: String,
    /// Its value in the common ancestor.
    pub ancestor: Option<String>,
    /// Its value on our side.
    pub ours: Option<String>,
    /// Its value on their side.
    pub theirs: Option<String>,
}

impl fmt::Display for FieldConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        write!(
            f,
            "{} changed on both branches (was {}, ours {}, theirs {})",
            self.field,
            show(&self.ancestor),
            show(&self.ours),
            show(&self.theirs)
        )
    }
}

/// Why a merge did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConflictKind {
    /// Fields changed to different values on the two branches.
    #[error("{}; choose one value for each and `git add` the file", fields_text(.0))]
    Fields(Vec<FieldConflict>),
    /// Both branches added the file and there is no common ancestor: two clones filed the
    /// same id while apart.
    #[error(
        "both branches filed {id}: ours is {ours_title:?}, theirs is {theirs_title:?}; keep one \
         file, re-file the other gap (it gets a new id), fix references to it and run `gapreg \
         doctor` (a coordination store shared by every clone prevents this)"
    )]
    AddAdd {
        /// The id both filed.
        id: String,
        /// Our gap's title (a loop's objective, or its id).
        ours_title: String,
        /// Their gap's title.
        theirs_title: String,
    },
    /// A version could not be read as a registry document, so no field can be trusted.
    #[error("the {side} version cannot be merged field by field: {message}; merge it by hand")]
    Damaged {
        /// Which version.
        side: Side,
        /// What is wrong with it.
        message: String,
    },
}

fn fields_text(fields: &[FieldConflict]) -> String {
    fields
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A merge that needs a person: why, and the file to leave in the work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Conflict {
    /// Why.
    pub kind: ConflictKind,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Both {
        label: String,
        ours: String,
        ancestor: Option<String>,
        theirs: String,
    },
}

impl Conflict {
    /// The names of the conflicting fields (empty unless [`ConflictKind::Fields`]).
    pub fn fields(&self) -> Vec<&str> {
        match &self.kind {
            ConflictKind::Fields(f) => f.iter().map(|c| c.field.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// The file to leave in the work tree: everything that merged, and git-style conflict
    /// markers `marker_size` characters long (git's `%L`, usually 7) around each part that did
    /// not, the opening marker naming the field.
    ///
    /// ```
    /// use gapreg::merge::{merge_gap, Merge};
    /// let Merge::Conflict(c) = merge_gap(None, b"id: [", b"id: x") else { panic!() };
    /// let text = c.render(7);
    /// assert!(text.starts_with("<<<<<<< ours: the ours version cannot be merged"));
    /// assert!(text.contains("\n=======\nid: x\n>>>>>>> theirs\n"));
    /// ```
    pub fn render(&self, marker_size: usize) -> String {
        let m = marker_size.clamp(1, 64);
        let mark = |c: char| c.to_string().repeat(m);
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Both {
                    label,
                    ours,
                    ancestor,
                    theirs,
                } => {
                    out.push_str(&format!("{} ours: {label}\n", mark('<')));
                    push_line(&mut out, ours);
                    if let Some(a) = ancestor {
                        out.push_str(&format!("{} common ancestor\n", mark('|')));
                        push_line(&mut out, a);
                    }
                    out.push_str(&format!("{}\n", mark('=')));
                    push_line(&mut out, theirs);
                    out.push_str(&format!("{} theirs\n", mark('>')));
                }
            }
        }
        out
    }

    fn whole(kind: ConflictKind, ours: &[u8], theirs: &[u8]) -> Conflict {
        let label = one_line(&kind.to_string());
        Conflict {
            kind,
            parts: vec![Part::Both {
                label,
                ours: String::from_utf8_lossy(ours).into_owned(),
                ancestor: None,
                theirs: String::from_utf8_lossy(theirs).into_owned(),
            }],
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Conflict {}

fn push_line(out: &mut String, text: &str) {
    out.push_str(text);
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}
