//! The file document store: gap files in `gaps/`, loop files in the loops directory, and the
//! registry lock, all reached through [`Dir`] handles that never follow a link (see
//! [`crate::layout`]). The index cache ([`super::index_cache`]), batches ([`super::batch`])
//! and loop files ([`super::loop_files`]) extend it in their own modules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use atomic_file::dir::{Dir, FileKind};
use idreserve::Id;
use leaselock::mutex::{FileMutex, MutexGuard};

use crate::Checked;
use crate::error::{Error, ErrorKind, Result};
use crate::index;
use crate::layout::{GAPS, Layout};
use crate::loops::Loop;
use crate::model::{Filter, Gap, GapSummary};
use crate::store::Documents;

use super::rules::{check_gap_id, encode_gap, gap_file};

/// Where warnings go: problems after a change was made durable, which must not turn its
/// success into a failure (a cache not updated, a committed batch not yet moved).
#[derive(Clone, Default)]
pub(crate) struct Warner(pub(crate) Option<Arc<WarnFn>>);

pub(crate) type WarnFn = dyn Fn(&str) + Send + Sync;

impl std::fmt::Debug for Warner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Warner(set)"
        } else {
            "Warner(none)"
        })
    }
}

/// The documents of one registry directory.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    pub(crate) dir: PathBuf,
    pub(crate) layout: Layout,
    /// Whether gap files are fsynced (`durable` in the config).
    pub(crate) durable: bool,
    pub(crate) opts: atomic_file::Options,
    pub(crate) mutex: FileMutex,
    pub(crate) lock_timeout: Duration,
    pub(crate) warn: Warner,
}

impl Files {
    pub(crate) fn warn(&self, message: &str) {
        if let Some(w) = &self.warn.0 {
            w(message);
        }
    }

    /// The registry lock, nothing else (loop edits take it without the index upkeep).
    pub(crate) fn lock_only(&self) -> Result<MutexGuard> {
        Ok(self.mutex.lock_for(self.lock_timeout)?)
    }

    /// The file of gap `id` (which need not exist).
    pub(crate) fn gap_path(&self, id: &str) -> PathBuf {
        self.dir.join(GAPS).join(gap_file(id))
    }

    /// Reads gap `id` from its file.
    pub(crate) fn read_gap(&self, id: &str) -> Result<Gap> {
        check_gap_id(id)?;
        let path = self.gap_path(id);
        let bytes = match self.gaps_dir(false)? {
            Some(gaps) => gaps.read(gap_file(id), crate::model::MAX_YAML_BYTES as u64)?,
            None => None,
        };
        let Some(bytes) = bytes else {
            return Err(Error::new(ErrorKind::NotFound {
                what: "gap",
                id: id.to_owned(),
                suggestions: Vec::new(),
            }));
        };
        let gap = crate::model::parse_gap_yaml(&bytes).map_err(|r| Error::corrupt(&path, r))?;
        if gap.id != id {
            return Err(Error::corrupt(
                &path,
                format!("the file of {id} holds the id {}", gap.id),
            ));
        }
        Ok(gap)
    }

    /// The `gaps/` directory; `None` if it does not exist (a fresh clone: git keeps no
    /// empty directories) and `create` is false.
    pub(crate) fn gaps_dir(&self, create: bool) -> Result<Option<Dir>> {
        self.layout.sub(GAPS, create)
    }

    /// Writes gap `gap`'s file. If the write fails after its rename (the directory `fsync`),
    /// the file is put back as it was (`old`, or removed), so that a reported failure changed
    /// nothing visible.
    pub(crate) fn write_gap_file(&self, gap: &Gap, old: Option<&[u8]>) -> Result<()> {
        let yaml = encode_gap(gap)?;
        let gaps = self
            .gaps_dir(true)?
            .ok_or_else(|| Error::invalid("gaps", "missing"))?;
        let name = gap_file(&gap.id);
        match gaps.write(&name, yaml.as_bytes(), &self.opts) {
            Err(e) if e.step() == Some(atomic_file::Step::SyncDir) => {
                let _ = match old {
                    Some(old) => gaps.write(&name, old, &self.opts),
                    None => gaps.remove_file(&name).map(|_| ()),
                };
                Err(e.into())
            }
            other => Ok(other?),
        }
    }

    /// Whether gap `id` has a file. Anything but a regular file there is an error.
    pub(crate) fn gap_exists(&self, id: &str) -> Result<bool> {
        if id.parse::<Id>().is_err() {
            return Ok(false);
        }
        match self.gaps_dir(false)? {
            Some(gaps) => Ok(gaps.file_exists(gap_file(id))?),
            None => Ok(false),
        }
    }

    /// The modification time (ns) of `gaps/`, 0 if it does not exist.
    pub(crate) fn gaps_stamp(&self) -> Result<u64> {
        let Some(gaps) = self.gaps_dir(false)? else {
            return Ok(0);
        };
        Ok(gaps
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64))
    }

    /// Every parseable gap file `(file stem, gap)`, and the unparseable ones `(path, reason)`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn scan_gap_files(&self) -> Result<(Vec<(String, Gap)>, Vec<(PathBuf, String)>)> {
        let (good, bad) = self.scan_gap_files_stamped()?;
        Ok((
            good.into_iter().map(|(s, g, _)| (s, g)).collect(),
            bad.into_iter().map(|(p, r, _)| (p, r)).collect(),
        ))
    }

    /// [`Registry::scan_gap_files`], with each file's stamp taken before it was read (so a
    /// change after the read shows as a mismatch later, never the other way round).
    #[allow(clippy::type_complexity)]
    pub(crate) fn scan_gap_files_stamped(
        &self,
    ) -> Result<(
        Vec<(String, Gap, Option<String>)>,
        Vec<(PathBuf, String, Option<String>)>,
    )> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let Some(dir) = self.gaps_dir(false)? else {
            return Ok((good, bad));
        };
        for entry in dir.entries()? {
            let path = dir.join(&entry.name);
            let Some(name) = entry.name.to_str() else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".yaml") else {
                continue;
            };
            if stem.starts_with('.') {
                continue;
            }
            let stamp = dir.stamp(&entry.name)?.map(|s| index::stamp_text(&s));
            // Only a canonical id names a gap file: `GAP-OP-01.yaml` beside `GAP-OP-1.yaml`
            // would be a second gap with the same number.
            if let Err(e) = check_gap_id(stem) {
                bad.push((
                    path,
                    format!("{e}; rename the file to its canonical id"),
                    stamp,
                ));
                continue;
            }
            let bytes = match dir.read(&entry.name, crate::model::MAX_YAML_BYTES as u64) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) if e.is_damaged() => {
                    bad.push((path, e.to_string(), stamp));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match crate::model::parse_gap_yaml(&bytes) {
                Ok(g) => good.push((stem.to_owned(), g, stamp)),
                Err(reason) => bad.push((path, reason, stamp)),
            }
        }
        good.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((good, bad))
    }
}

impl Documents for Files {
    type Guard<'g> = MutexGuard;

    fn lock(&self) -> Result<MutexGuard> {
        let guard = self.lock_only()?;
        // A batch committed by a writer that died is finished, and a stale index rebuilt,
        // before a change appends to it.
        self.ensure_index_fresh()?;
        Ok(guard)
    }

    fn read_gap(&self, id: &str) -> Result<Gap> {
        Files::read_gap(self, id)
    }

    fn gap_exists(&self, id: &str) -> Result<bool> {
        Files::gap_exists(self, id)
    }

    fn prepare(&self, len: usize, next: &[String]) -> Result<()> {
        self.prepare_batch(len, next)
    }

    fn write_gap(&self, gap: &Gap, old: Option<&Gap>) -> Result<()> {
        let old = old.map(encode_gap).transpose()?;
        self.write_gap_file(gap, old.as_deref().map(str::as_bytes))?;
        self.append_index(&[gap]);
        Ok(())
    }

    fn write_batch(&self, gaps: &[Gap]) -> Result<()> {
        // An unfinished batch is left out of the index, so the next reader finishes it.
        if self.write_gaps(gaps)? {
            self.append_index(&gaps.iter().collect::<Vec<_>>());
        }
        Ok(())
    }

    fn summaries(&self, filter: Option<&Filter>) -> Result<Checked<Vec<GapSummary>>> {
        let (value, damaged) = self.load_index_with(filter)?;
        Ok(Checked { value, damaged })
    }

    fn summaries_held(
        &self,
        _held: &MutexGuard,
        filter: Option<&Filter>,
    ) -> Result<Checked<Vec<GapSummary>>> {
        let (value, damaged) = self.load_index_held(filter)?;
        Ok(Checked { value, damaged })
    }

    fn highest_numbers(&self) -> Result<BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        let Some(dir) = self.gaps_dir(false)? else {
            return Ok(out);
        };
        // Regular files only: a link or a directory under a gap's name is no gap (it is
        // refused wherever it is read); a damaged file still holds its id.
        for entry in dir
            .entries()?
            .into_iter()
            .filter(|e| e.kind == FileKind::File)
        {
            let id = entry
                .name
                .to_str()
                .and_then(|n| n.strip_suffix(".yaml"))
                .and_then(|stem| stem.parse::<Id>().ok());
            if let Some(id) = id {
                let h = out.entry(id.prefix().to_owned()).or_default();
                *h = (*h).max(id.number());
            }
        }
        Ok(out)
    }

    fn loops(&self) -> Result<Checked<BTreeMap<String, Loop>>> {
        let (value, damaged) = self.load_loops_checked()?;
        Ok(Checked { value, damaged })
    }

    fn loop_not_found(&self, id: &str, what: &'static str) -> Error {
        Files::loop_not_found(self, id, what)
    }
}
