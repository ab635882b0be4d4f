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
use std::path::{Component, Path};

use serde_yaml::{Mapping, Value};

use crate::model::{Gap, gap_to_yaml, parse_gap_yaml, parse_yaml};
use crate::time::Timestamp;

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

/// Merges three versions of one gap file (`gaps/<ID>.yaml`) field by field (see the
/// [module docs](self) for the rules). `ancestor` is `None` when the file has no common
/// ancestor (both branches added it). Pure; never panics.
///
/// A side that did not change (equal to the ancestor) yields the other side unchanged; a
/// merged result is written in the registry's own format ([`gap_to_yaml`]).
pub fn merge_gap(ancestor: Option<&[u8]>, ours: &[u8], theirs: &[u8]) -> Merge {
    let damaged = |side, message: String| {
        Merge::Conflict(Conflict::whole(
            ConflictKind::Damaged { side, message },
            ours,
            theirs,
        ))
    };
    let o = match parse_gap_yaml(ours) {
        Ok(g) => g,
        Err(e) => return damaged(Side::Ours, e),
    };
    let t = match parse_gap_yaml(theirs) {
        Ok(g) => g,
        Err(e) => return damaged(Side::Theirs, e),
    };
    let Some(ancestor) = ancestor else {
        if o == t {
            return clean_side(&o, ours);
        }
        let kind = ConflictKind::AddAdd {
            id: o.id.clone(),
            ours_title: o.title.clone(),
            theirs_title: t.title.clone(),
        };
        return Merge::Conflict(Conflict::whole(kind, ours, theirs));
    };
    let a = match parse_gap_yaml(ancestor) {
        Ok(g) => g,
        Err(e) => return damaged(Side::Ancestor, e),
    };
    if o == a {
        return clean_side(&t, theirs);
    }
    if t == a || o == t {
        return clean_side(&o, ours);
    }
    let (am, om, tm) = match (gap_map(&a), gap_map(&o), gap_map(&t)) {
        (Ok(am), Ok(om), Ok(tm)) => (am, om, tm),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return damaged(Side::Merged, e),
    };
    let fields = merge_maps(&am, &om, &tm, GAP_LISTS, GAP_DERIVED);
    let mut merged = fields.merged;
    let rev = o.rev.max(t.rev).saturating_add(1);
    merged.insert("rev".into(), Value::Number(rev.into()));
    let updated = o.updated_at.max(t.updated_at);
    merged.insert("updated_at".into(), timestamp_value(updated));
    if fields.conflicts.is_empty() {
        let gap = serde_yaml::from_value::<Gap>(Value::Mapping(merged))
            .map_err(|e| e.to_string())
            .and_then(|g| gap_to_yaml(&g));
        return match gap {
            Ok(text) => Merge::Clean(text),
            Err(e) => damaged(Side::Merged, e),
        };
    }
    let parts = marked_parts(&merged, &am, &om, &tm, &fields.conflicts, &[], &[]);
    Merge::Conflict(Conflict {
        kind: ConflictKind::Fields(field_conflicts(&am, &om, &tm, &fields.conflicts)),
        parts,
    })
}

fn clean_side(gap: &Gap, bytes: &[u8]) -> Merge {
    match std::str::from_utf8(bytes) {
        Ok(text) => Merge::Clean(text.to_owned()),
        Err(_) => match gap_to_yaml(gap) {
            Ok(text) => Merge::Clean(text),
            Err(e) => Merge::Conflict(Conflict::whole(
                ConflictKind::Damaged {
                    side: Side::Merged,
                    message: e,
                },
                bytes,
                bytes,
            )),
        },
    }
}

fn timestamp_value(t: Timestamp) -> Value {
    Value::String(t.to_string())
}

fn gap_map(gap: &Gap) -> Result<Mapping, String> {
    match serde_yaml::to_value(gap) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(_) => Err("a gap is not a mapping".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The result of merging two field maps against their ancestor.
struct Fields {
    /// Every field merged; a conflicting one holds ours' value.
    merged: Mapping,
    /// The keys changed to different values on both sides, in `merged`'s order.
    conflicts: Vec<Value>,
}

/// Merges field maps: keys in ours' order, then theirs' new keys. `lists` are merged as sets
/// (when no side holds something other than a list there); `skip` keys take ours' value and
/// are the caller's to set.
fn merge_maps(a: &Mapping, o: &Mapping, t: &Mapping, lists: &[&str], skip: &[&str]) -> Fields {
    let mut merged = Mapping::new();
    let mut conflicts = Vec::new();
    let keys = o.keys().chain(t.keys().filter(|k| !o.contains_key(*k)));
    for key in keys {
        let name = key.as_str().unwrap_or("");
        let (av, ov, tv) = (a.get(key), o.get(key), t.get(key));
        if skip.contains(&name) {
            if let Some(v) = ov.or(tv) {
                merged.insert(key.clone(), v.clone());
            }
            continue;
        }
        if lists.contains(&name) {
            if let (Some(al), Some(ol), Some(tl)) = (as_list(av), as_list(ov), as_list(tv)) {
                let list = merge_sets(&al, &ol, &tl);
                if !list.is_empty() || ov.is_some() {
                    merged.insert(key.clone(), Value::Sequence(list));
                }
                continue;
            }
        }
        match three_way(av, ov, tv) {
            Ok(Some(v)) => {
                merged.insert(key.clone(), v.clone());
            }
            Ok(None) => {}
            Err(()) => {
                if let Some(v) = ov {
                    merged.insert(key.clone(), v.clone());
                }
                conflicts.push(key.clone());
            }
        }
    }
    Fields { merged, conflicts }
}

/// One value merged three ways: `Ok(None)` for absent, `Err` for a conflict.
fn three_way<'v>(
    a: Option<&'v Value>,
    o: Option<&'v Value>,
    t: Option<&'v Value>,
) -> Result<Option<&'v Value>, ()> {
    if o == t || t == a {
        Ok(o)
    } else if o == a {
        Ok(t)
    } else {
        Err(())
    }
}

/// A list field's elements (absent or null: none); `None` if it holds something else.
fn as_list(v: Option<&Value>) -> Option<Vec<Value>> {
    match v {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Sequence(items)) => Some(items.clone()),
        Some(_) => None,
    }
}

/// Set merge: ours' elements that theirs did not remove, in ours' order, then theirs'
/// additions; each element once.
fn merge_sets(a: &[Value], o: &[Value], t: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let removed_by_theirs = |x: &Value| a.contains(x) && !t.contains(x);
    let removed_by_ours = |x: &Value| a.contains(x) && !o.contains(x);
    for x in o {
        if !removed_by_theirs(x) && !out.contains(x) {
            out.push(x.clone());
        }
    }
    for x in t {
        if !removed_by_ours(x) && !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

fn value_json(v: Option<&Value>) -> Option<String> {
    v.map(|v| serde_json::to_string(v).unwrap_or_else(|_| "(unprintable)".into()))
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => value_json(Some(other)).unwrap_or_default(),
    }
}

fn field_conflicts(a: &Mapping, o: &Mapping, t: &Mapping, keys: &[Value]) -> Vec<FieldConflict> {
    keys.iter()
        .map(|k| FieldConflict {
            field: key_name(k),
            ancestor: value_json(a.get(k)),
            ours: value_json(o.get(k)),
            theirs: value_json(t.get(k)),
        })
        .collect()
}

/// `key: value` as YAML lines.
fn entry_text(key: &Value, value: Option<&Value>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let mut m = Mapping::new();
    m.insert(key.clone(), value.clone());
    serde_yaml::to_string(&m)
        .unwrap_or_else(|e| format!("# {}: unprintable ({e})\n", key_name(key)))
}

/// The merged map as YAML parts, each conflicting key as ours/ancestor/theirs. Keys that have
/// an original block on a side (`ours_blocks`, `theirs_blocks`, loops only) are written as
/// that side wrote them when the merged value is that side's.
fn marked_parts(
    merged: &Mapping,
    a: &Mapping,
    o: &Mapping,
    t: &Mapping,
    conflicts: &[Value],
    ours_blocks: &[(Value, String)],
    theirs_blocks: &[(Value, String)],
) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    for (key, value) in merged {
        if conflicts.contains(key) {
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Both {
                label: format!("{} changed on both branches", key_name(key)),
                ours: entry_text(key, o.get(key)),
                ancestor: Some(entry_text(key, a.get(key))),
                theirs: entry_text(key, t.get(key)),
            });
        } else {
            text.push_str(&written_as(key, value, o, ours_blocks, t, theirs_blocks));
        }
    }
    // Conflicting keys ours removed (theirs changed them) are not in `merged`.
    for key in conflicts.iter().filter(|k| !merged.contains_key(*k)) {
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(Part::Both {
            label: format!("{} changed on both branches", key_name(key)),
            ours: String::new(),
            ancestor: Some(entry_text(key, a.get(key))),
            theirs: entry_text(key, t.get(key)),
        });
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

fn written_as(
    key: &Value,
    value: &Value,
    o: &Mapping,
    ours_blocks: &[(Value, String)],
    t: &Mapping,
    theirs_blocks: &[(Value, String)],
) -> String {
    let block = |map: &Mapping, blocks: &[(Value, String)]| {
        (map.get(key) == Some(value))
            .then(|| {
                blocks
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, b)| b.clone())
            })
            .flatten()
    };
    block(o, ours_blocks)
        .or_else(|| block(t, theirs_blocks))
        .unwrap_or_else(|| entry_text(key, Some(value)))
}

/// A loop file split at its front matter.
struct LoopText<'a> {
    open: &'a str,
    front: &'a str,
    close: &'a str,
    body: &'a str,
    map: Mapping,
}

fn split_loop(bytes: &[u8]) -> Result<LoopText<'_>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("it is not UTF-8 text ({e})"))?;
    let first_len = text.find('\n').map_or(text.len(), |i| i + 1);
    let open = &text[..first_len];
    if open.trim_start_matches('\u{feff}').trim_end() != "---" {
        return Err("no YAML front matter: the file must start with a `---` line".into());
    }
    let mut at = first_len;
    loop {
        if at >= text.len() {
            return Err("the front matter has no closing `---` line".into());
        }
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
        let line = text[at..end].trim_end();
        if line == "---" || line == "..." {
            let front = &text[first_len..at];
            let map = match parse_yaml::<Value>(front.as_bytes()) {
                Ok(Value::Mapping(m)) => m,
                Ok(Value::Null) => Mapping::new(),
                Ok(_) => return Err("front matter is not a mapping of `key: value` lines".into()),
                Err(e) => return Err(format!("front matter is not strict YAML: {e}")),
            };
            return Ok(LoopText {
                open,
                front,
                close: &text[at..end],
                body: &text[end..],
                map,
            });
        }
        at = end;
    }
}

/// The top-level `key: ...` blocks of front matter as written (each with the continuation,
/// comment and blank lines after it), if each parses alone to one key.
fn front_blocks(front: &str) -> Option<(String, Vec<(Value, String)>)> {
    let mut preamble = String::new();
    let mut blocks: Vec<(Value, String)> = Vec::new();
    let mut current: Option<String> = None;
    for line in front.split_inclusive('\n') {
        let starts_key = !line.starts_with([' ', '\t', '#', '-', '\r', '\n']) && !line.is_empty();
        if starts_key {
            if let Some(block) = current.take() {
                blocks.push((block_key(&block)?, block));
            }
            current = Some(line.to_owned());
        } else {
            match &mut current {
                Some(block) => block.push_str(line),
                None => preamble.push_str(line),
            }
        }
    }
    if let Some(block) = current.take() {
        blocks.push((block_key(&block)?, block));
    }
    let blocks = blocks
        .into_iter()
        .map(|(k, mut b)| {
            if !b.ends_with('\n') {
                b.push('\n');
            }
            (k, b)
        })
        .collect();
    Some((preamble, blocks))
}

fn block_key(block: &str) -> Option<Value> {
    match parse_yaml::<Value>(block.as_bytes()) {
        Ok(Value::Mapping(m)) if m.len() == 1 => m.keys().next().cloned(),
        _ => None,
    }
}

/// Merges three versions of one loop file (`<loops_dir>/<LOOP-ID>.md`): the front matter's
/// keys as the [module docs](self) say (`depends_on` and `tags` as sets), the body kept from
/// the side that changed it (a conflict if both did). Keys are written as the side whose
/// value won wrote them, so hand formatting survives. Pure; never panics.
///
/// ```
/// use gapreg::merge::{merge_loop, Merge};
/// let base = "---\nloop_id: LOOP-A\nstatus: active\nowner: \"@ana\"\n---\n# Body\n";
/// let ours = base.replace("active", "closed");
/// let theirs = base.replace("# Body", "# Body, longer");
/// let Merge::Clean(text) = merge_loop(Some(base.as_bytes()), ours.as_bytes(), theirs.as_bytes())
/// else { panic!() };
/// assert_eq!(text, "---\nloop_id: LOOP-A\nstatus: closed\nowner: \"@ana\"\n---\n# Body, longer\n");
/// ```
pub fn merge_loop(ancestor: Option<&[u8]>, ours: &[u8], theirs: &[u8]) -> Merge {
    let damaged = |side, message: String| {
        Merge::Conflict(Conflict::whole(
            ConflictKind::Damaged { side, message },
            ours,
            theirs,
        ))
    };
    let o = match split_loop(ours) {
        Ok(l) => l,
        Err(e) => return damaged(Side::Ours, e),
    };
    let t = match split_loop(theirs) {
        Ok(l) => l,
        Err(e) => return damaged(Side::Theirs, e),
    };
    let whole_text = |l: &LoopText<'_>| format!("{}{}{}{}", l.open, l.front, l.close, l.body);
    let Some(ancestor) = ancestor else {
        if ours == theirs {
            return Merge::Clean(whole_text(&o));
        }
        let title = |l: &LoopText<'_>| {
            let get = |k: &str| l.map.get(k).and_then(Value::as_str).map(str::to_owned);
            get("objective")
                .or_else(|| get("loop_id"))
                .unwrap_or_default()
        };
        let id = o
            .map
            .get("loop_id")
            .and_then(Value::as_str)
            .unwrap_or("the same loop")
            .to_owned();
        let kind = ConflictKind::AddAdd {
            id,
            ours_title: title(&o),
            theirs_title: title(&t),
        };
        return Merge::Conflict(Conflict::whole(kind, ours, theirs));
    };
    let a = match split_loop(ancestor) {
        Ok(l) => l,
        Err(e) => return damaged(Side::Ancestor, e),
    };
    if ours == ancestor {
        return Merge::Clean(whole_text(&t));
    }
    if theirs == ancestor || ours == theirs {
        return Merge::Clean(whole_text(&o));
    }
    let fields = merge_maps(&a.map, &o.map, &t.map, LOOP_LISTS, &[]);
    let body = three_way_text(a.body, o.body, t.body);
    let (preamble, ours_blocks, theirs_blocks) =
        match (front_blocks(o.front), front_blocks(t.front)) {
            (Some((p, ob)), Some((_, tb))) => (p, ob, tb),
            _ => (String::new(), Vec::new(), Vec::new()),
        };
    let mut parts = if fields.merged == o.map && fields.conflicts.is_empty() {
        vec![Part::Text(format!("{}{}", o.open, o.front))]
    } else if fields.merged == t.map && fields.conflicts.is_empty() {
        vec![Part::Text(format!("{}{}", o.open, t.front))]
    } else {
        let mut parts = vec![Part::Text(format!("{}{preamble}", o.open))];
        parts.extend(marked_parts(
            &fields.merged,
            &a.map,
            &o.map,
            &t.map,
            &fields.conflicts,
            &ours_blocks,
            &theirs_blocks,
        ));
        parts
    };
    parts.push(Part::Text(o.close.to_owned()));
    let mut conflicts = field_conflicts(&a.map, &o.map, &t.map, &fields.conflicts);
    match body {
        Some(b) => parts.push(Part::Text(b.to_owned())),
        None => {
            parts.push(Part::Both {
                label: format!("{BODY_FIELD} changed on both branches"),
                ours: o.body.to_owned(),
                ancestor: Some(a.body.to_owned()),
                theirs: t.body.to_owned(),
            });
            conflicts.push(FieldConflict {
                field: BODY_FIELD.into(),
                ancestor: None,
                ours: None,
                theirs: None,
            });
        }
    }
    let conflict = Conflict {
        kind: ConflictKind::Fields(conflicts),
        parts,
    };
    if !conflict.fields().is_empty() {
        return Merge::Conflict(conflict);
    }
    let text = conflict.render(7);
    // What was written must read back as what was merged.
    match split_loop(text.as_bytes()) {
        Ok(check) if check.map == fields.merged => Merge::Clean(text),
        Ok(_) => {
            let front = serde_yaml::to_string(&fields.merged).unwrap_or_default();
            let text = format!("{}{front}{}{}", o.open, o.close, body.unwrap_or(""));
            match split_loop(text.as_bytes()) {
                Ok(check) if check.map == fields.merged => Merge::Clean(text),
                _ => damaged(
                    Side::Merged,
                    "the merged front matter does not read back".into(),
                ),
            }
        }
        Err(e) => damaged(Side::Merged, e),
    }
}

fn three_way_text<'s>(a: &'s str, o: &'s str, t: &'s str) -> Option<&'s str> {
    if o == t || t == a {
        Some(o)
    } else if o == a {
        Some(t)
    } else {
        None
    }
}

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

fn pattern_path(path: &Path) -> Result<String, String> {
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
