//! `index.log`: the derived, append-only cache that makes listing cheap.
//!
//! Each line is one compact JSON object, a tab and the CRC-32 of the JSON text (8 lower-case
//! hex digits, seeded with the format's version):
//!
//! ```text
//! {"m":1772287500123456789,"b":2048}\t3f0a9c1e
//! {"m":1772287500123456789,"g":{"id":"GAP-OP-1","seq":1,"rev":1,"status":"open",...}}\t0b6d2ef4
//! {"m":1772287500123456789,"d":{"file":"GAP-OP-8.yaml","reason":"unknown status"}}\t77d9d43f
//! {"m":1772287500223456789}\t9e01c2aa
//! ```
//!
//! The checksum makes a damaged line (a bit flip, a hand edit, a line from an older format)
//! show as damage, so a damaged index is rebuilt from the gap files rather than trusted: the
//! index is a cache and is never the only record of anything. `d` records a gap file that
//! could not be read when the index was rebuilt, so every listing can say that it is
//! incomplete and name the file. `g` is a [`GapSummary`]; the last line of an id wins. `m` is the modification time (ns) of
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
    /// A gap file that could not be read when the index was rebuilt.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<DamagedFile>,
    /// The stamp (inode, size, change time) of the gap file the line was made from, so that
    /// a file rewritten in place — which leaves `gaps/`'s own time alone — is noticed.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The text of a file's [`Stamp`](atomic_file::dir::Stamp) in an index line.
pub(crate) fn stamp_text(stamp: &atomic_file::dir::Stamp) -> String {
    format!("{:x}.{:x}.{:x}", stamp.ino, stamp.len, stamp.changed_ns)
}

/// A document that could not be read: its file and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DamagedFile {
    /// The file's path (relative to its directory in the index, full elsewhere).
    pub file: String,
    /// Why it could not be read.
    pub reason: String,
}

impl DamagedFile {
    /// A damaged file and the reason.
    pub fn new(file: impl Into<String>, reason: impl Into<String>) -> DamagedFile {
        DamagedFile {
            file: file.into(),
            reason: reason.into(),
        }
    }
}

impl IndexLine {
    /// A stamp-only line.
    pub fn stamp(stamp: u64) -> IndexLine {
        IndexLine {
            stamp,
            gap: None,
            compacted_len: None,
            damaged: None,
            file: None,
        }
    }

    /// The line's text: JSON, a tab, its CRC-32, a newline.
    pub fn encode(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{}\n", checked_index_line(&json))
    }
}

/// The format's version, folded into every line's checksum: a line written by another
/// version of the format (other field names) fails its check and the index is rebuilt, rather
/// than a filter silently missing a renamed field.
const FORMAT: &[u8] = b"gapreg-index-v2\n";

/// The checksum of one line's JSON text.
fn line_crc(json: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(FORMAT);
    h.update(json.as_bytes());
    h.finalize()
}

/// `json` as an index line (without its newline): the text, a tab and its checksum. For
/// tests and fuzzing, which must reach the parser with lines that pass the check.
///
/// ```
/// let line = gapreg::checked_index_line(r#"{"m":5}"#);
/// assert_eq!(gapreg::parse_index_line(&line)?.stamp, 5);
/// # Ok::<(), String>(())
/// ```
pub fn checked_index_line(json: &str) -> String {
    format!("{json}\t{:08x}", line_crc(json))
}

/// The JSON of one line (without its newline) whose checksum matches; `None` otherwise.
fn verified(line: &str) -> Option<&str> {
    let (json, crc) = line.rsplit_once('\t')?;
    let canonical = crc.len() == 8 && crc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (canonical && u32::from_str_radix(crc, 16).ok()? == line_crc(json)).then_some(json)
}

/// Parses one line of `index.log` (without its newline). Pure; never panics (a fuzz target
/// calls it).
///
/// ```
/// let text = gapreg::IndexLine::stamp(5).encode();
/// let line = gapreg::parse_index_line(text.trim_end())?;
/// assert_eq!((line.stamp, line.gap.is_none()), (5, true));
/// assert!(gapreg::parse_index_line("{\"m\":5}").is_err()); // no checksum
/// assert!(gapreg::parse_index_line(&text.trim_end().replace('5', "6")).is_err());
/// # Ok::<(), String>(())
/// ```
pub fn parse_index_line(line: &str) -> Result<IndexLine, String> {
    let json = verified(line).ok_or("the line's checksum is missing or does not match")?;
    serde_json::from_str(json).map_err(|e| e.to_string())
}

/// The fields of an index line that [`Filter`] looks at, borrowed from the line.
#[derive(Deserialize)]
struct LineRef<'a> {
    #[serde(rename = "m")]
    stamp: u64,
    #[serde(rename = "g", default, borrow)]
    gap: Option<SummaryRef<'a>>,
    #[serde(rename = "d", default)]
    damaged: Option<DamagedFile>,
    #[serde(rename = "f", default, borrow)]
    file: Option<Cow<'a, str>>,
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
    #[serde(default, borrow)]
    parent_loop: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    claimed_by: Option<Cow<'a, str>>,
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
            && f.claimed_by
                .as_deref()
                .is_none_or(|c| self.claimed_by.as_deref() == Some(c))
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
    /// Gap files the last rebuild could not read.
    pub bad_files: Vec<DamagedFile>,
    /// The file name (in `gaps/`) and recorded stamp behind every current line: the last
    /// line of each gap and each damaged file. `None`: the line has no stamp (stale).
    pub files: Vec<(String, Option<String>)>,
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

/// Above this many lines, an index is parsed on several threads.
const PARALLEL_LINES: usize = 4096;
/// At most this many threads parse one index.
const MAX_THREADS: usize = 4;

/// `f` of every item, in order; on up to [`MAX_THREADS`] threads when there are more than
/// [`PARALLEL_LINES`] items (parsing is most of a large listing, and each line is independent:
/// every line carries its own checksum).
fn par_map<I: Sync, T: Send>(items: &[I], f: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    if items.len() <= PARALLEL_LINES || threads < 2 {
        return items.iter().map(f).collect();
    }
    let f = &f;
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<T>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for (h, part) in handles.into_iter().zip(items.chunks(chunk)) {
            match h.join() {
                Ok(done) => out.extend(done),
                // A parser that panicked (it never should: the fuzz target checks): parse that
                // part here, so the panic is this thread's.
                Err(_) => out.extend(part.iter().map(f)),
            }
        }
        out
    })
}

/// The index's lines, each verified against its checksum: the JSON, or `None` for a damaged
/// line.
fn verified_lines(text: &str) -> Vec<Option<&str>> {
    let lines: Vec<&str> = text.lines().collect();
    par_map(&lines, |line| verified(line))
}

/// Reads a whole index, keeping only the gaps `filter` matches. A missing trailing newline (a
/// torn append) or any line that fails its checksum or does not parse marks it damaged.
///
/// Every line is first parsed into borrowed fields (no allocation), the last line of each id
/// is found, and only the matching lines are parsed in full (each line's checksum is verified
/// once). A filter that keeps everything skips the first pass: that is [`scan`].
pub(crate) fn scan_filtered(data: &[u8], filter: &Filter) -> IndexScan {
    if *filter == Filter::default() {
        return scan(data);
    }
    let mut out = IndexScan::default();
    let Some(text) = index_text(data, &mut out) else {
        return out;
    };
    let jsons = verified_lines(text);
    let parsed = par_map(&jsons, |json| {
        json.and_then(|j| Some((j, serde_json::from_str::<LineRef<'_>>(j).ok()?)))
    });
    // (seq, id, matches, json, file stamp)
    #[allow(clippy::type_complexity)]
    let mut refs: Vec<(u64, Cow<'_, str>, bool, &str, Option<Cow<'_, str>>)> = Vec::new();
    for line in parsed {
        match line {
            Some((json, l)) => {
                out.lines += 1;
                out.last_stamp = Some(l.stamp);
                if let Some(g) = l.gap {
                    let keep = g.matches(filter);
                    refs.push((g.seq, g.id, keep, json, l.file));
                } else if let Some(d) = l.damaged {
                    out.files
                        .push((file_name(&d.file), l.file.map(Cow::into_owned)));
                    out.bad_files.push(d);
                }
            }
            None => out.damaged = true,
        }
    }
    refs.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    #[allow(clippy::type_complexity)]
    let mut last: Vec<(Cow<'_, str>, bool, &str, Option<Cow<'_, str>>)> =
        Vec::with_capacity(refs.len());
    for (_, id, keep, json, file) in refs {
        match last.last_mut() {
            Some(prev) if prev.0 == id => *prev = (id, keep, json, file),
            _ => last.push((id, keep, json, file)),
        }
    }
    out.distinct = last.len();
    let mut kept = Vec::new();
    for (id, keep, json, file) in last {
        out.files
            .push((format!("{id}.yaml"), file.map(Cow::into_owned)));
        if keep {
            kept.push(json);
        }
    }
    for gap in par_map(&kept, |json| {
        serde_json::from_str::<IndexLine>(json).ok()?.gap
    }) {
        match gap {
            Some(g) => out.gaps.push(g),
            None => out.damaged = true,
        }
    }
    out
}

/// Reads a whole index. A missing trailing newline (a torn append) or any line that fails its
/// checksum or does not parse marks it damaged.
pub(crate) fn scan(data: &[u8]) -> IndexScan {
    let mut out = IndexScan::default();
    let Some(text) = index_text(data, &mut out) else {
        return out;
    };
    let jsons = verified_lines(text);
    let parsed = par_map(&jsons, |json| {
        json.and_then(|j| serde_json::from_str::<IndexLine>(j).ok())
    });
    let mut gaps: Vec<(GapSummary, Option<String>)> = Vec::new();
    for line in parsed {
        match line {
            Some(l) => {
                out.lines += 1;
                out.last_stamp = Some(l.stamp);
                if let Some(g) = l.gap {
                    gaps.push((g, l.file));
                } else if let Some(d) = l.damaged {
                    out.files.push((file_name(&d.file), l.file));
                    out.bad_files.push(d);
                }
            }
            None => out.damaged = true,
        }
    }
    // Last line of each id wins. A gap's `seq` never changes, so all lines of one id are
    // adjacent after a stable sort by (seq, id), the newest last: keep the last of each run.
    gaps.sort_by(|a, b| (a.0.seq, &a.0.id).cmp(&(b.0.seq, &b.0.id)));
    let mut kept: Vec<(GapSummary, Option<String>)> = Vec::with_capacity(gaps.len());
    for g in gaps {
        match kept.last_mut() {
            Some(last) if last.0.id == g.0.id => *last = g,
            _ => kept.push(g),
        }
    }
    out.files.reserve(kept.len());
    out.gaps.reserve(kept.len());
    for (g, file) in kept {
        out.files.push((format!("{}.yaml", g.id), file));
        out.gaps.push(g);
    }
    out.distinct = out.gaps.len();
    out
}

/// The last path component of a damaged file's recorded path.
fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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
        let a = IndexLine::stamp(7).encode();
        let s = scan(a.as_bytes());
        assert!(!s.damaged && s.last_stamp == Some(7) && s.lines == 1);
        assert!(scan(format!("{a}{{\"m\":8").as_bytes()).damaged);
        assert!(scan(format!("garbage\n{a}").as_bytes()).damaged);
        assert_eq!(tail_stamp(format!("x\n{a}").as_bytes()), Some(7));
        assert_eq!(tail_stamp(format!("{a}{{\"m\"").as_bytes()), None);
        assert_eq!(tail_stamp(b""), None);
        // Valid JSON with a wrong checksum, or none, is damage too.
        assert!(scan(b"{\"m\":7}\n").damaged);
        assert!(scan(a.replace('7', "8").as_bytes()).damaged);
        let filter = Filter::default();
        assert!(scan_filtered(a.replace('7', "8").as_bytes(), &filter).damaged);
        assert!(!scan_filtered(a.as_bytes(), &filter).damaged);
    }

    #[test]
    fn a_large_index_is_parsed_in_order_and_every_line_verified() {
        let n = 3 * PARALLEL_LINES;
        let lines: Vec<String> = (0..n as u64)
            .map(|m| IndexLine::stamp(m).encode())
            .collect();
        let whole = lines.concat();
        let open = Filter {
            status: Some(Status::Open),
            ..Filter::default()
        };
        for filter in [Filter::default(), open] {
            let s = scan_filtered(whole.as_bytes(), &filter);
            assert!(!s.damaged && s.lines == n && s.last_stamp == Some(n as u64 - 1));
            // One damaged line anywhere is found.
            let mut bad = lines.clone();
            bad[n / 2 + 1] = bad[n / 2 + 1].replace('}', "} ");
            assert!(scan_filtered(bad.concat().as_bytes(), &filter).damaged);
        }
        assert_eq!(par_map(&[1, 2, 3], |x| x * 2), [2, 4, 6]);
        let many: Vec<usize> = (0..n).collect();
        assert_eq!(par_map(&many, |x| x + 1), (1..=n).collect::<Vec<_>>());
    }
}
