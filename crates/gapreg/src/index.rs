//! `index.log`: the derived, append-only cache that makes listing cheap.
//!
//! Each line is one compact JSON object:
//!
//! ```text
//! {"m":1772287500123456789,"b":2048}
//! {"m":1772287500123456789,"g":{"id":"GAP-OP-1","seq":1,"rev":1,"status":"open",...}}
//! {"m":1772287500223456789}
//! ```
//!
//! `g` is a [`GapSummary`]; the last line of an id wins. `m` is the modification time (ns) of
//! the `gaps/` directory right after the write the line records. Every write of a gap file
//! renames a file into `gaps/`, which changes that time; so when the last line's `m` equals the
//! directory's current time, the index reflects every gap file. Anything else (a writer killed
//! between its gap file and its index line, a torn last line, a `git checkout`, a file added or
//! removed by hand) shows as a mismatch, and the index is rebuilt from the gap files under the
//! registry lock. A line without `g` only carries the stamp (written after a rebuild); the
//! first line of a rebuilt or compacted index also records in `b` how many bytes followed it.
//!
//! The index only grows by appends, so it is compacted (rewritten through `atomic_file` with
//! one line per gap) by a writer once it is more than twice as long as after the last
//! compaction, and by a reader that finds more than twice as many lines as gaps.
//!
//! Limits: editing a gap file *in place* (without creating or renaming a file) does not change
//! the directory's time, and a file added within the file system's timestamp granularity of
//! the last write may go unnoticed; `gapreg doctor` compares the index with every gap file and
//! `--repair` rebuilds it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::model::{Filter, GapSummary, Severity, Status};

/// One line of `index.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IndexLine {
    /// The `gaps/` directory's modification time (ns since the epoch) after the write.
    #[serde(rename = "m")]
    pub stamp: u64,
    /// The gap's summary; absent on a stamp-only line.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<GapSummary>,
    /// On the header line of a rebuilt or compacted index: the size in bytes of the lines
    /// after it at that time. Writers compact the index when it has grown past twice that.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub compacted_len: Option<u64>,
}

impl IndexLine {
    /// The line's text, newline included.
    pub fn encode(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Parses one line of `index.log` (without its newline). Pure; never panics (a fuzz target
/// calls it).
///
/// ```
/// let line = gapreg::parse_index_line(r#"{"m":5}"#)?;
/// assert_eq!((line.stamp, line.gap.is_none()), (5, true));
/// assert!(gapreg::parse_index_line("{\"m\":").is_err());
/// # Ok::<(), String>(())
/// ```
pub fn parse_index_line(line: &str) -> Result<IndexLine, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}

/// The fields of an index line that [`Filter`] looks at, borrowed from the line.
#[derive(Deserialize)]
struct LineRef<'a> {
    #[serde(rename = "m")]
    stamp: u64,
    #[serde(rename = "g", default, borrow)]
    gap: Option<SummaryRef<'a>>,
}

#[derive(Deserialize)]
struct SummaryRef<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    seq: u64,
    status: Status,
    severity: Severity,
    #[serde(rename = "type", default, borrow)]
    gap_type: Cow<'a, str>,
    #[serde(rename = "loop", default, borrow)]
    parent_loop: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    claimant: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tags: Vec<Cow<'a, str>>,
}

impl SummaryRef<'_> {
    fn matches(&self, f: &Filter) -> bool {
        f.status.is_none_or(|s| s == self.status)
            && f.severity.is_none_or(|s| s == self.severity)
            && f.parent_loop
                .as_deref()
                .is_none_or(|l| self.parent_loop.as_deref() == Some(l))
            && f.gap_type.as_deref().is_none_or(|t| self.gap_type == t)
            && f.claimant
                .as_deref()
                .is_none_or(|c| self.claimant.as_deref() == Some(c))
            && f.tag
                .as_deref()
                .is_none_or(|t| self.tags.iter().any(|x| x == t))
    }
}

/// What a whole `index.log` holds.
#[derive(Debug, Default)]
pub(crate) struct IndexScan {
    /// The last summary of each id, in registry order (`seq`, then id).
    pub gaps: Vec<GapSummary>,
    /// Complete, valid lines.
    pub lines: usize,
    /// Distinct gaps (before filtering).
    pub distinct: usize,
    /// The last valid line's stamp.
    pub last_stamp: Option<u64>,
    /// A damaged complete line, or a torn last line: the index cannot be trusted.
    pub damaged: bool,
}

/// The index as text; marks `out` damaged if it is not UTF-8 (then `None`) or lacks its
/// trailing newline (a torn append).
fn index_text<'a>(data: &'a [u8], out: &mut IndexScan) -> Option<&'a str> {
    let Ok(text) = std::str::from_utf8(data) else {
        out.damaged = true;
        return None;
    };
    if !text.is_empty() && !text.ends_with('\n') {
        out.damaged = true;
    }
    Some(text)
}

/// Reads a whole index, keeping only the gaps `filter` matches. A missing trailing newline (a
/// torn append) or any unparseable line marks it damaged.
///
/// With a filter, every line is first parsed into borrowed fields (no allocation), the last
/// line of each id is found, and only matching lines are parsed in full.
pub(crate) fn scan_filtered(data: &[u8], filter: &Filter) -> IndexScan {
    let mut out = IndexScan::default();
    let Some(text) = index_text(data, &mut out) else {
        return out;
    };
    // (seq, id, matches, line)
    let mut refs: Vec<(u64, Cow<'_, str>, bool, &str)> = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<LineRef<'_>>(line) {
            Ok(l) => {
                out.lines += 1;
                out.last_stamp = Some(l.stamp);
                if let Some(g) = l.gap {
                    let keep = g.matches(filter);
                    refs.push((g.seq, g.id, keep, line));
                }
            }
            Err(_) => out.damaged = true,
        }
    }
    refs.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut last: Vec<(Cow<'_, str>, bool, &str)> = Vec::with_capacity(refs.len());
    for (_, id, keep, line) in refs {
        match last.last_mut() {
            Some(prev) if prev.0 == id => *prev = (id, keep, line),
            _ => last.push((id, keep, line)),
        }
    }
    out.distinct = last.len();
    for (_, keep, line) in last {
        if keep {
            match parse_index_line(line) {
                Ok(IndexLine { gap: Some(g), .. }) => out.gaps.push(g),
                _ => out.damaged = true,
            }
        }
    }
    out
}

/// Reads a whole index. A missing trailing newline (a torn append) or any unparseable line
/// marks it damaged.
pub(crate) fn scan(data: &[u8]) -> IndexScan {
    let mut out = IndexScan::default();
    let Some(text) = index_text(data, &mut out) else {
        return out;
    };
    for line in text.lines() {
        match parse_index_line(line) {
            Ok(l) => {
                out.lines += 1;
                out.last_stamp = Some(l.stamp);
                if let Some(g) = l.gap {
                    out.gaps.push(g);
                }
            }
            Err(_) => out.damaged = true,
        }
    }
    // Last line of each id wins. A gap's `seq` never changes, so all lines of one id are
    // adjacent after a stable sort by (seq, id), the newest last: keep the last of each run.
    out.gaps.sort_by(|a, b| (a.seq, &a.id).cmp(&(b.seq, &b.id)));
    let mut kept: Vec<GapSummary> = Vec::with_capacity(out.gaps.len());
    for g in out.gaps.drain(..) {
        match kept.last_mut() {
            Some(last) if last.id == g.id => *last = g,
            _ => kept.push(g),
        }
    }
    out.gaps = kept;
    out.distinct = out.gaps.len();
    out
}

/// The last complete line's stamp, from the file's tail; `None` when the tail is torn or
/// damaged or the file is empty.
pub(crate) fn tail_stamp(tail: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(tail).ok()?;
    let body = text.strip_suffix('\n')?;
    let last = body.rsplit('\n').next()?;
    parse_index_line(last).ok().map(|l| l.stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_damaged_lines_are_detected() {
        let a = IndexLine {
            stamp: 7,
            gap: None,
            compacted_len: None,
        }
        .encode();
        let s = scan(a.as_bytes());
        assert!(!s.damaged && s.last_stamp == Some(7) && s.lines == 1);
        assert!(scan(format!("{a}{{\"m\":8").as_bytes()).damaged);
        assert!(scan(format!("garbage\n{a}").as_bytes()).damaged);
        assert_eq!(tail_stamp(format!("x\n{a}").as_bytes()), Some(7));
        assert_eq!(tail_stamp(format!("{a}{{\"m\"").as_bytes()), None);
        assert_eq!(tail_stamp(b""), None);
    }
}
