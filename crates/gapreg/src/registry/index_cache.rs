//! Upkeep of the index cache (`index.log`, format in [`crate::index`]): when it is trusted,
//! when it is rebuilt from the gap files, appended to, and compacted. A cache of this
//! worktree's documents: it is never the only record of anything, so a failure to write it
//! is a warning, and anything that does not match the gap files is rebuilt.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::index::{self, DamagedFile, IndexLine};
use crate::layout::{INDEX, MAX_INDEX_BYTES, PENDING};
use crate::model::{Filter, Gap, GapSummary};

use super::files::Files;
use super::rules::gap_file;

/// Bytes read from the end of `index.log` to find the last line's stamp.
const TAIL: u64 = 64 * 1024;
/// Writers compact the index when it is longer than twice its compacted size plus this.
const COMPACT_MIN: u64 = 256 * 1024;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

impl Files {
    /// Rebuilds `index.log` from the gap files (under the lock). Unparseable gap files are
    /// skipped (`doctor` reports them). Returns the summaries in registry order.
    ///
    /// The index is a cache: if it cannot be written (a read-only checkout, a full disk) the
    /// summaries are still returned, with a warning.
    pub(crate) fn rebuild_index(&self) -> Result<(Vec<GapSummary>, Vec<DamagedFile>)> {
        let (summaries, bad, stamp) = self.scan_summaries()?;
        if let Err(e) = self.write_index(stamp, &summaries, &bad) {
            self.warn(&format!(
                "the index cache was not updated ({e}); it is rebuilt later"
            ));
        }
        Ok(unstamped(summaries, bad))
    }

    /// Every indexable gap's summary in registry order, the unreadable gap files, and the
    /// stamp of `gaps/` taken before the scan.
    #[allow(clippy::type_complexity)]
    fn scan_summaries(&self) -> Result<(Vec<Stamped<GapSummary>>, Vec<Stamped<DamagedFile>>, u64)> {
        let stamp = self.gaps_stamp()?;
        let (gaps, bad) = self.scan_gap_files_stamped()?;
        let mut damaged: Vec<Stamped<DamagedFile>> = bad
            .into_iter()
            .map(|(path, reason, st)| (DamagedFile::new(path.display().to_string(), reason), st))
            .collect();
        let mut summaries = Vec::with_capacity(gaps.len());
        for (stem, g, st) in gaps {
            if stem == g.id {
                summaries.push((g.summary(), st));
            } else {
                damaged.push((
                    DamagedFile::new(
                        self.gap_path(&stem).display().to_string(),
                        format!("the file of {stem} holds the id {}", g.id),
                    ),
                    st,
                ));
            }
        }
        summaries.sort_by(|a, b| (a.0.seq, &a.0.id).cmp(&(b.0.seq, &b.0.id)));
        Ok((summaries, damaged, stamp))
    }

    /// Whether every current index line's file stamp matches its gap file now (a file
    /// rewritten in place leaves `gaps/`'s time alone but not its own).
    fn files_unchanged(&self, files: &[(String, Option<String>)]) -> Result<bool> {
        if files.is_empty() {
            return Ok(true);
        }
        let Some(gaps) = self.gaps_dir(false)? else {
            return Ok(false);
        };
        let check = |files: &[(String, Option<String>)]| -> Result<bool> {
            for (name, recorded) in files {
                let Some(recorded) = recorded else {
                    return Ok(false);
                };
                let now = match gaps.stamp(name) {
                    Ok(s) => s,
                    Err(e) if e.is_damaged() => return Ok(false),
                    Err(e) => return Err(e.into()),
                };
                if now.map(|s| index::stamp_text(&s)).as_deref() != Some(recorded.as_str()) {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        // One `fstatat` per gap: on a large registry the stats dominate a listing, and they
        // run in parallel well (the directory descriptor is shared).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        if files.len() < 4096 || threads < 2 {
            return check(files);
        }
        let chunk = files.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|part| scope.spawn(move || check(part)))
                .collect();
            let mut all = true;
            for h in handles {
                match h.join() {
                    Ok(Ok(ok)) => all &= ok,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        return Err(Error::invalid("index check", "a checking thread panicked"));
                    }
                }
            }
            Ok(all)
        })
    }

    /// Under the lock: rebuilds the index unless its last line's stamp matches `gaps/`.
    pub(crate) fn ensure_index_fresh(&self) -> Result<()> {
        // A batch committed by a writer that died before finishing it: finish it first (this
        // changes gaps/, so the index is rebuilt below).
        self.finish_batch()?;
        let path = self.dir.join(INDEX);
        let tail = match self.layout.root()?.open_file(INDEX) {
            Ok(Some(mut f)) => {
                let len = f.metadata().map_err(io_err("inspect", &path))?.len();
                let mut start = len.saturating_sub(TAIL);
                let mut buf = Vec::new();
                f.seek(SeekFrom::Start(start))
                    .and_then(|_| f.read_to_end(&mut buf))
                    .map_err(io_err("read", &path))?;
                // A last line longer than the tail: read the whole file instead.
                let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
                if start > 0 && !body.contains(&b'\n') {
                    start = 0;
                    buf.clear();
                    f.seek(SeekFrom::Start(start))
                        .and_then(|_| f.read_to_end(&mut buf))
                        .map_err(io_err("read", &path))?;
                }
                buf
            }
            Ok(None) => Vec::new(),
            // A damaged cache (a FIFO or a directory where it belongs) is not fatal here:
            // rebuilding it below fails with the error naming it.
            Err(e) if e.is_damaged() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if index::tail_stamp(&tail) != Some(self.gaps_stamp()?) {
            self.rebuild_index()?;
        }
        Ok(())
    }

    /// Under the lock, after gap files were made durable: appends their summaries to the
    /// index. The index is a cache, so a failure here cannot undo the change: it is a warning,
    /// and the next reader finds the index stale (its last stamp no longer matches `gaps/`)
    /// and rebuilds it.
    pub(crate) fn append_index(&self, gaps: &[&Gap]) {
        if let Err(e) = self.try_append_index(gaps) {
            self.warn(&format!(
                "the change is saved, but the index cache was not updated ({e}); it is \
                 rebuilt on the next read"
            ));
        }
    }

    fn try_append_index(&self, gaps: &[&Gap]) -> Result<()> {
        let stamp = self.gaps_stamp()?;
        let files = self.gaps_dir(false)?;
        let mut text = String::new();
        for g in gaps {
            let file = match &files {
                Some(dir) => dir.stamp(gap_file(&g.id))?.map(|s| index::stamp_text(&s)),
                None => None,
            };
            text.push_str(
                &IndexLine {
                    gap: Some(g.summary()),
                    file,
                    ..IndexLine::stamp(stamp)
                }
                .encode(),
            );
        }
        let path = self.dir.join(INDEX);
        let mut file = self.layout.root()?.open_append(INDEX)?;
        file.write_all(text.as_bytes())
            .map_err(io_err("append to", &path))?;
        // Compact once the index has grown past twice its size at the last compaction.
        let len = file.metadata().map_err(io_err("inspect", &path))?.len();
        if len > COMPACT_MIN {
            let mut head = Vec::with_capacity(256);
            file.seek(SeekFrom::Start(0))
                .and_then(|_| (&mut file).take(256).read_to_end(&mut head))
                .map_err(io_err("read", &path))?;
            let first = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
            let compacted = std::str::from_utf8(first)
                .ok()
                .and_then(|l| index::parse_index_line(l).ok())
                .and_then(|l| l.compacted_len)
                .unwrap_or(0);
            if len > 2 * compacted + COMPACT_MIN {
                self.compact_locked()?;
            }
        }
        Ok(())
    }

    /// Every gap's summary in registry order, from the index (rebuilt under the lock first if
    /// it is stale).
    pub(crate) fn load_index(&self) -> Result<(Vec<GapSummary>, Vec<DamagedFile>)> {
        self.load_index_with(None)
    }

    /// Like [`Registry::load_index`], keeping only the gaps `filter` matches (cheaper: only
    /// their lines are parsed in full).
    ///
    /// Also returns the gap files that could not be read, so that no listing is silently
    /// shorter. A read-only checkout (the lock cannot be taken, the index cannot be written)
    /// is served from the gap files directly.
    pub(crate) fn load_index_with(
        &self,
        filter: Option<&Filter>,
    ) -> Result<(Vec<GapSummary>, Vec<DamagedFile>)> {
        let mut found = self.scan_index(filter)?;
        // A committed batch whose files a writer could not finish moving is filed already:
        // finish it (under the lock) before answering, or the answer misses it.
        if found.damaged
            || self.layout.root()?.kind(PENDING)?.is_some()
            || !self.index_current(&found)?
        {
            let _guard = match self.lock_only() {
                Ok(guard) => guard,
                Err(e) if e.is_contended() => return Err(e),
                // No lock to be had (a read-only checkout, another user's registry): read
                // the gap files themselves, write nothing.
                Err(_) => {
                    let (gaps, bad, _) = self.scan_summaries()?;
                    return Ok(filtered(unstamped(gaps, bad), filter));
                }
            };
            self.finish_batch()?;
            found = self.scan_index(filter)?;
            if found.damaged || !self.index_current(&found)? {
                return Ok(filtered(self.rebuild_index()?, filter));
            }
        }
        if found.lines > 2 * found.distinct + 64 {
            if let Err(e) = self.compact(found.last_stamp) {
                self.warn(&format!("the index cache was not compacted ({e})"));
            }
        }
        Ok((found.gaps, found.bad_files))
    }

    /// Like [`Files::load_index_with`], for a caller that holds the lock (so it never waits
    /// for it): an index that does not match the gap files is rebuilt at once.
    pub(crate) fn load_index_held(
        &self,
        filter: Option<&Filter>,
    ) -> Result<(Vec<GapSummary>, Vec<DamagedFile>)> {
        self.finish_batch()?;
        let found = self.scan_index(filter)?;
        if found.damaged || !self.index_current(&found)? {
            return Ok(filtered(self.rebuild_index()?, filter));
        }
        Ok((found.gaps, found.bad_files))
    }

    /// `index.log` read and scanned (only `filter`'s gaps parsed in full); a damaged cache
    /// reads as damaged, never trusted.
    fn scan_index(&self, filter: Option<&Filter>) -> Result<index::IndexScan> {
        let data = match self.layout.root()?.read(INDEX, MAX_INDEX_BYTES) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) if e.is_damaged() => b"damaged".to_vec(),
            Err(e) => return Err(e.into()),
        };
        Ok(match filter {
            Some(f) => index::scan_filtered(&data, f),
            None => index::scan(&data),
        })
    }

    /// Whether a scan of the index matches `gaps/` now: its last stamp and every gap file's.
    fn index_current(&self, found: &index::IndexScan) -> Result<bool> {
        Ok(found.last_stamp == Some(self.gaps_stamp()?) && self.files_unchanged(&found.files)?)
    }

    /// Rewrites a long index as one line per gap, if the lock is free right now and nothing
    /// changed since the caller read stamp `stamp`.
    fn compact(&self, stamp: Option<u64>) -> Result<()> {
        let Ok(_guard) = self.mutex.try_lock() else {
            return Ok(());
        };
        let data = self.layout.root()?.read(INDEX, MAX_INDEX_BYTES)?;
        let now = index::scan(&data.unwrap_or_default());
        if now.damaged || now.last_stamp != stamp || stamp != Some(self.gaps_stamp()?) {
            return Ok(());
        }
        self.write_compacted(stamp.unwrap_or(0), now)
    }

    /// Rewrites a verified scan as one line per gap, keeping each line's file stamp.
    fn write_compacted(&self, stamp: u64, scan: index::IndexScan) -> Result<()> {
        let mut by_name: HashMap<String, Option<String>> = scan.files.into_iter().collect();
        let mut take = |name: String| by_name.remove(&name).flatten();
        let gaps: Vec<Stamped<GapSummary>> = scan
            .gaps
            .into_iter()
            .map(|g| {
                let f = take(gap_file(&g.id));
                (g, f)
            })
            .collect();
        let bad: Vec<Stamped<DamagedFile>> = scan
            .bad_files
            .into_iter()
            .map(|d| {
                let name = Path::new(&d.file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let f = take(name);
                (d, f)
            })
            .collect();
        self.write_index(stamp, &gaps, &bad)
    }

    /// Under the lock: rewrites the index as one line per gap (rebuilding it from the gap
    /// files if it is damaged or stale).
    fn compact_locked(&self) -> Result<()> {
        let data = self.layout.root()?.read(INDEX, MAX_INDEX_BYTES)?;
        let now = index::scan(&data.unwrap_or_default());
        let stamp = self.gaps_stamp()?;
        if now.damaged || now.last_stamp != Some(stamp) || !self.files_unchanged(&now.files)? {
            self.rebuild_index()?;
            return Ok(());
        }
        self.write_compacted(stamp, now)
    }

    /// Under the lock: replaces `index.log` with a header, one line per gap and a stamp line.
    fn write_index(
        &self,
        stamp: u64,
        gaps: &[Stamped<GapSummary>],
        bad: &[Stamped<DamagedFile>],
    ) -> Result<()> {
        let mut body = String::new();
        let lines = gaps
            .iter()
            .map(|(g, file)| (Some(g.clone()), None, file))
            .chain(bad.iter().map(|(d, file)| (None, Some(d.clone()), file)));
        for (gap, damaged, file) in lines {
            let line = IndexLine {
                gap,
                damaged,
                file: file.clone(),
                ..IndexLine::stamp(stamp)
            };
            body.push_str(&line.encode());
        }
        body.push_str(&IndexLine::stamp(stamp).encode());
        let header = IndexLine {
            compacted_len: Some(body.len() as u64),
            ..IndexLine::stamp(stamp)
        }
        .encode();
        // A cache: no fsync needed (a lost index is rebuilt from the gap files).
        let opts = atomic_file::Options::new().durability(atomic_file::Durability::NoSync);
        self.layout
            .root()?
            .write(INDEX, [header, body].concat().as_bytes(), &opts)?;
        Ok(())
    }
}

/// A summary or damaged file with the stamp of the file it was read from.
type Stamped<T> = (T, Option<String>);

/// `gaps` with only those `filter` matches (all with `None`).
fn filtered(
    (mut gaps, bad): (Vec<GapSummary>, Vec<DamagedFile>),
    filter: Option<&Filter>,
) -> (Vec<GapSummary>, Vec<DamagedFile>) {
    if let Some(f) = filter {
        gaps.retain(|g| f.matches(g));
    }
    (gaps, bad)
}

fn unstamped(
    gaps: Vec<Stamped<GapSummary>>,
    bad: Vec<Stamped<DamagedFile>>,
) -> (Vec<GapSummary>, Vec<DamagedFile>) {
    (
        gaps.into_iter().map(|(g, _)| g).collect(),
        bad.into_iter().map(|(d, _)| d).collect(),
    )
}
