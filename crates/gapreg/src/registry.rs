//! [`Registry`]: the on-disk registry and every operation on it.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use atomic_file::dir::{Dir, FileKind};

use idreserve::{Id, Store};
use leaselock::mutex::{FileMutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::error::{ConflictDetail, Error, ErrorKind, Result};
use crate::graph::{self, GapView};
use crate::index::{self, DamagedFile, IndexLine};
use crate::layout::{
    CONFIG, GAPS, GITIGNORE, GITIGNORE_FILE, IDS, INDEX, KEYS, LEASES, LOCK, Layout,
    MAX_CONFIG_BYTES, MAX_INDEX_BYTES, MAX_MANIFEST_BYTES, PENDING, REGISTRY_DIR, STAGING,
};
use crate::loops::{self, Loop, LoopSpec};
use crate::model::{Blocker, Filter, Gap, GapEdit, GapSpec, GapSummary, Severity, Status, Summary};
use crate::time::Timestamp;

/// The id-store prefix of the registry-order counter.
pub const SEQ_PREFIX: &str = "SEQ";
/// Bytes read from the end of `index.log` to find the last line's stamp.
const TAIL: u64 = 64 * 1024;
/// Writers compact the index when it is longer than twice its compacted size plus this.
const COMPACT_MIN: u64 = 256 * 1024;
/// Longest title accepted, in characters.
const MAX_TITLE: usize = 300;
/// Longest description accepted, in bytes (the whole gap file must stay within
/// 1 MiB, which every reader enforces).
pub const MAX_DESCRIPTION: usize = 256 * 1024;
/// Longest plan, type, tag or agent name accepted, in bytes.
const MAX_FIELD: usize = 16 * 1024;
/// Most tags, and most dependencies, of one gap.
const MAX_LIST: usize = 256;
/// Most entries of one batch.
pub const MAX_BATCH: usize = 10_000;
/// Longest idempotency key accepted.
const MAX_KEY: usize = 128;

/// A registry's settings, kept in `.gapreg/config.yaml`. Parsed strictly: every field is
/// required and an unknown one is an error naming it and its line, so a typo never falls back
/// to a default silently (a registry's gaps filed under the wrong prefix).
///
/// ```yaml
/// loops_dir: ../loop-scopes   # relative to .gapreg/ (default: loops)
/// lock_timeout_secs: 120
/// default_prefix: OP          # gap ids GAP-OP-<N>
/// durable: true               # fsync gap files (false: only for tests and scratch registries)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where loop files live, relative to the registry directory (or absolute).
    pub loops_dir: PathBuf,
    /// How long a mutation waits for the registry lock before failing with
    /// [`ErrorKind::Timeout`].
    pub lock_timeout_secs: u64,
    /// The prefix of automatic ids: `OP` gives `GAP-OP-<N>`.
    pub default_prefix: String,
    /// Whether gap files are fsynced before a call returns (the id counters always are).
    pub durable: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            loops_dir: PathBuf::from("loops"),
            lock_timeout_secs: 120,
            default_prefix: "OP".into(),
            durable: true,
        }
    }
}

/// `OP` and `GAP-OP` both name the id prefix `GAP-OP`.
pub fn gap_prefix(prefix: &str) -> String {
    if prefix.starts_with("GAP-") || prefix == "GAP" {
        prefix.to_owned()
    } else {
        format!("GAP-{prefix}")
    }
}

/// A read's result with the documents it had to leave out because they could not be read
/// (damaged, of the wrong type, too large): a listing is never silently shorter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checked<T> {
    /// What was read.
    pub value: T,
    /// The files left out, and why.
    pub damaged: Vec<DamagedFile>,
}

impl<T> Checked<T> {
    /// True when nothing was left out.
    pub fn is_complete(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// A handle on one registry directory. Cheap to clone; safe to share between threads; any
/// number of processes may use the same directory at once.
///
/// ```
/// use gapreg::{Config, GapSpec, Registry, Severity, Status};
///
/// let repo = tempfile::tempdir()?;
/// let reg = Registry::init(repo.path(), Config::default())?;
/// let gap = reg.file(GapSpec::new("No --parent-loop flag", Severity::High))?;
/// assert_eq!(gap.id, "GAP-OP-1");
/// let claimed = reg.claim("GAP-OP-1", "CC-3", None)?;
/// assert_eq!(claimed.status, Status::InProgress);
/// let done = reg.set_status("GAP-OP-1", Status::Complete, Some(claimed.rev))?;
/// assert_eq!(done.rev, 3);
/// assert!(reg.ready()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
    layout: Layout,
    config: Config,
    ids: Store,
    mutex: FileMutex,
    opts: atomic_file::Options,
    lock_timeout: Duration,
    warn: Warner,
}

/// Where warnings go: problems after a change was made durable, which must not turn its
/// success into a failure (a cache not updated, a committed batch not yet moved).
#[derive(Clone, Default)]
struct Warner(Option<Arc<WarnFn>>);

type WarnFn = dyn Fn(&str) + Send + Sync;

impl std::fmt::Debug for Warner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Warner(set)"
        } else {
            "Warner(none)"
        })
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

/// What an idempotency key filed (`keys/<KEY>.json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    /// A checksum of the request, so a key reused for another request is refused.
    request: String,
    /// The ids it filed, in order.
    ids: Vec<String>,
    /// The registry position of its first gap.
    seq: u64,
}

impl Registry {
    /// Creates a registry in `repo_dir/.gapreg` with `config`: `config.yaml`, `.gitignore`,
    /// the id store `ids/`, `gaps/`, the loops directory (if missing) and an empty index.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyExists`] if `repo_dir/.gapreg` exists; [`ErrorKind::Invalid`] for a
    /// bad default prefix.
    pub fn init(repo_dir: &Path, config: Config) -> Result<Registry> {
        let prefix = gap_prefix(&config.default_prefix);
        idreserve::check_prefix(&prefix)
            .map_err(|e| Error::invalid("default_prefix", e.to_string()))?;
        let dir = repo_dir.join(REGISTRY_DIR);
        let layout = Layout::new(dir.clone(), &config.loops_dir)?;
        match std::fs::symlink_metadata(&dir) {
            Ok(_) => return Err(Error::new(ErrorKind::AlreadyExists { path: dir })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("inspect", &dir, e)),
        }
        check_not_nested(repo_dir)?;
        let root = Dir::open(repo_dir)?.create_dir(REGISTRY_DIR)?;
        let opts = Self::options(&config);
        root.write(GITIGNORE_FILE, GITIGNORE.as_bytes(), &opts)?;
        root.create_dir(GAPS)?;
        layout.loops(true)?;
        Store::create_at(&root, IDS, idreserve::Config::default())?;
        let yaml = atomic_file::Format::Yaml.encode(dir.join(CONFIG), &config)?;
        root.write(CONFIG, &yaml, &atomic_file::Options::new())?;
        let reg = Registry::open(&dir)?;
        let _guard = reg.lock()?;
        reg.rebuild_index()?;
        Ok(reg)
    }

    /// Opens the registry directory `gapreg_dir` (the `.gapreg` directory itself).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRegistry`] if it holds no registry.
    pub fn open(gapreg_dir: impl AsRef<Path>) -> Result<Registry> {
        let dir = gapreg_dir.as_ref().to_path_buf();
        let root = match Dir::open(&dir) {
            Ok(root) => root,
            Err(e) if e.is_not_found() => {
                return Err(Error::new(ErrorKind::NoRegistry { start: dir }));
            }
            Err(e) => return Err(e.into()),
        };
        let path = dir.join(CONFIG);
        let Some(bytes) = root.read(CONFIG, MAX_CONFIG_BYTES)? else {
            return Err(Error::new(ErrorKind::NoRegistry { start: dir }));
        };
        let config = parse_config(&path, &bytes)?;
        let layout = Layout::new(dir.clone(), &config.loops_dir)?;
        check_not_nested(layout.repo())?;
        let timeout = Duration::from_secs(config.lock_timeout_secs);
        let ids = match Store::open_at(&root, IDS) {
            Ok(store) => store.with_lock_timeout(timeout),
            // Gap files without their counters: zero would hand out their ids again.
            Err(e) if e.is_not_found() => {
                return Err(Error::corrupt(
                    dir.join(IDS),
                    "the id store is missing, so the registry cannot know which ids were \
                     handed out; restore .gapreg/ids from git or a backup, or recreate it \
                     from the ids in use with `gapreg ids init` (see `gapreg ids --help`)",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        // One spelling per gap: `GAP-OP-0001` beside `GAP-OP-1` would be two files for one
        // number, so gap ids and registry positions are never zero-padded.
        if let Some((prefix, width)) = ids
            .config()
            .width
            .iter()
            .find(|(p, w)| **w > 1 && (p.starts_with("GAP") || p.as_str() == SEQ_PREFIX))
        {
            return Err(Error::corrupt(
                dir.join(IDS).join(CONFIG),
                format!(
                    "it zero-pads {prefix} to {width} digits, but gap ids have one spelling \
                     without padding; remove {prefix} from `width`"
                ),
            ));
        }
        Ok(Registry {
            mutex: FileMutex::new(dir.join(LOCK)),
            opts: Self::options(&config),
            lock_timeout: timeout,
            layout,
            dir,
            config,
            ids,
            warn: Warner::default(),
        })
    }

    /// Opens the nearest registry: `start_dir/.gapreg`, else that of its parent, and so on.
    /// `start_dir` may also be a `.gapreg` directory itself.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRegistry`] naming `start_dir` if none is found up to the root.
    pub fn discover(start_dir: impl AsRef<Path>) -> Result<Registry> {
        let start = start_dir.as_ref();
        let abs = std::fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
        if abs.file_name().is_some_and(|n| n == REGISTRY_DIR) && has_registry(&abs) {
            return Registry::open(abs);
        }
        for dir in abs.ancestors() {
            let candidate = dir.join(REGISTRY_DIR);
            // A `.gapreg` that is a symlink or not a directory is opened (and refused with
            // an error naming it) rather than skipped for a registry further up.
            if std::fs::symlink_metadata(&candidate).is_ok() {
                return Registry::open(candidate);
            }
        }
        Err(Error::new(ErrorKind::NoRegistry {
            start: start.to_path_buf(),
        }))
    }

    /// This handle, passing warnings to `warn`: problems met after a change was made
    /// durable (the index cache could not be updated, a committed batch could not be moved
    /// into `gaps/` yet). They never turn a durable change into an error; the next reader or
    /// writer repairs them.
    pub fn with_warnings(mut self, warn: impl Fn(&str) + Send + Sync + 'static) -> Registry {
        self.warn = Warner(Some(Arc::new(warn)));
        self
    }

    fn warn(&self, message: &str) {
        if let Some(w) = &self.warn.0 {
            w(message);
        }
    }

    fn options(config: &Config) -> atomic_file::Options {
        let durability = if config.durable {
            atomic_file::Durability::Full
        } else {
            atomic_file::Durability::NoSync
        };
        atomic_file::Options::new().durability(durability)
    }

    /// This handle with another lock timeout (instead of `lock_timeout_secs` from the
    /// config) for the registry lock and the id store's lock.
    ///
    /// ```
    /// # let repo = tempfile::tempdir()?;
    /// # gapreg::Registry::init(repo.path(), gapreg::Config::default())?;
    /// use std::time::Duration;
    /// let reg = gapreg::Registry::discover(repo.path())?.with_lock_timeout(Duration::from_secs(5));
    /// assert_eq!(reg.lock_timeout(), Duration::from_secs(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Registry {
        self.lock_timeout = timeout;
        self.ids = self.ids.with_lock_timeout(timeout);
        self
    }

    /// How long a mutation waits for the registry lock.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// The registry directory (`.../.gapreg`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The leases on the repository's files: the lease root is the directory holding the
    /// registry, the lease files live in the registry's `leases/` (`opts`' own leases dir is
    /// replaced).
    pub fn leases(
        &self,
        opts: leaselock::lease::LeaseOptions,
    ) -> Result<leaselock::lease::Leases, leaselock::lease::LeaseError> {
        leaselock::lease::Leases::open_with(
            self.layout.repo(),
            opts.leases_dir(self.dir.join(LEASES)),
        )
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The id store (`ids/`).
    pub fn id_store(&self) -> &Store {
        &self.ids
    }

    /// The directory of loop files (`..` resolved lexically: `.gapreg/../loop-scopes` is
    /// `loop-scopes` beside `.gapreg`).
    pub fn loops_dir(&self) -> PathBuf {
        self.layout.loops_path()
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The file of gap `id` (which need not exist).
    pub fn gap_path(&self, id: &str) -> PathBuf {
        self.dir.join(GAPS).join(format!("{id}.yaml"))
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard> {
        Ok(self.mutex.lock_for(self.lock_timeout)?)
    }

    // ----- gap files -----

    fn check_gap_id(id: &str) -> Result<Id> {
        id.parse::<Id>()
            .map_err(|e| Error::invalid(format!("gap id {id:?}"), e.to_string()))
    }

    /// Reads gap `id` from its file.
    pub(crate) fn read_gap(&self, id: &str) -> Result<Gap> {
        Self::check_gap_id(id)?;
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
    fn gaps_dir(&self, create: bool) -> Result<Option<Dir>> {
        self.layout.sub(GAPS, create)
    }

    /// Writes gap `gap`'s file. If the write fails after its rename (the directory `fsync`),
    /// the file is put back as it was (`old`, or removed), so that a reported failure changed
    /// nothing visible.
    fn write_gap(&self, gap: &Gap, old: Option<&[u8]>) -> Result<()> {
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
    fn gap_exists(&self, id: &str) -> Result<bool> {
        if id.parse::<Id>().is_err() {
            return Ok(false);
        }
        match self.gaps_dir(false)? {
            Some(gaps) => Ok(gaps.file_exists(gap_file(id))?),
            None => Ok(false),
        }
    }

    // ----- index -----

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
    fn scan_gap_files_stamped(
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
            if let Err(e) = Self::check_gap_id(stem) {
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

    /// Under the lock: rebuilds the index unless its last line's stamp matches `gaps/`.
    fn ensure_index_fresh(&self) -> Result<()> {
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
    fn append_index(&self, gaps: &[&Gap]) {
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
    fn load_index_with(
        &self,
        filter: Option<&Filter>,
    ) -> Result<(Vec<GapSummary>, Vec<DamagedFile>)> {
        let read = || -> Result<Vec<u8>> {
            match self.layout.root()?.read(INDEX, MAX_INDEX_BYTES) {
                Ok(d) => Ok(d.unwrap_or_default()),
                // A damaged cache is rebuilt, never trusted.
                Err(e) if e.is_damaged() => Ok(b"damaged".to_vec()),
                Err(e) => Err(e.into()),
            }
        };
        let scan = |data: &[u8]| match filter {
            Some(f) => index::scan_filtered(data, f),
            None => index::scan(data),
        };
        let filtered = |(mut gaps, bad): (Vec<GapSummary>, Vec<DamagedFile>)| {
            if let Some(f) = filter {
                gaps.retain(|g| f.matches(g));
            }
            (gaps, bad)
        };
        let mut found = scan(&read()?);
        if found.damaged
            || found.last_stamp != Some(self.gaps_stamp()?)
            || !self.files_unchanged(&found.files)?
        {
            let _guard = match self.lock() {
                Ok(guard) => guard,
                Err(e) if e.is_contended() => return Err(e),
                // No lock to be had (a read-only checkout, another user's registry): read
                // the gap files themselves, write nothing.
                Err(_) => {
                    let (gaps, bad, _) = self.scan_summaries()?;
                    return Ok(filtered(unstamped(gaps, bad)));
                }
            };
            self.finish_batch()?;
            found = scan(&read()?);
            if found.damaged
                || found.last_stamp != Some(self.gaps_stamp()?)
                || !self.files_unchanged(&found.files)?
            {
                return Ok(filtered(self.rebuild_index()?));
            }
        }
        if found.lines > 2 * found.distinct + 64 {
            if let Err(e) = self.compact(found.last_stamp) {
                self.warn(&format!("the index cache was not compacted ({e})"));
            }
        }
        Ok((found.gaps, found.bad_files))
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
        for (g, file) in gaps {
            body.push_str(
                &IndexLine {
                    gap: Some(g.clone()),
                    file: file.clone(),
                    ..IndexLine::stamp(stamp)
                }
                .encode(),
            );
        }
        for (d, file) in bad {
            body.push_str(
                &IndexLine {
                    damaged: Some(d.clone()),
                    file: file.clone(),
                    ..IndexLine::stamp(stamp)
                }
                .encode(),
            );
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

    // ----- loops -----

    /// Every loop in the loops directory, by id. Files without front matter (a README) are
    /// skipped; unparseable ones are skipped here and reported by `doctor`.
    pub(crate) fn load_loops(&self) -> Result<BTreeMap<String, Loop>> {
        Ok(self
            .scan_loop_files()?
            .0
            .into_iter()
            .map(|l| (l.id.clone(), l))
            .collect())
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn scan_loop_files(&self) -> Result<(Vec<Loop>, Vec<(PathBuf, String)>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let Some(dir) = self.layout.loops(false)? else {
            return Ok((good, bad));
        };
        for entry in dir.entries()? {
            let path = dir.join(&entry.name);
            let Some(stem) = entry.name.to_str().and_then(|n| n.strip_suffix(".md")) else {
                continue;
            };
            if stem.starts_with('.') {
                continue;
            }
            let text = match dir.read(&entry.name, loops::MAX_LOOP_BYTES) {
                Ok(Some(bytes)) => match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(_) => {
                        bad.push((path, "it is not UTF-8 text".to_owned()));
                        continue;
                    }
                },
                Ok(None) => continue,
                Err(e) if e.is_damaged() => {
                    bad.push((path, e.to_string()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            // A markdown file without front matter (a README) is not a loop. A loop id in
            // the name with no front matter is a damaged loop (a zeroed or emptied file),
            // not a file to skip.
            if !text.trim_start_matches('\u{feff}').starts_with("---") {
                // Markdown without front matter (a README) is not a loop; an empty or zeroed
                // file, or one named like a loop, is a loop that was damaged.
                let blank = text.trim().is_empty() || text.contains('\0');
                if blank || (loops::check_loop_id(stem).is_ok() && stem.starts_with("LOOP-")) {
                    bad.push((
                        path,
                        "it has no front matter (`---` lines); restore it".into(),
                    ));
                }
                continue;
            }
            match loops::parse_loop_named(&text, Some(stem)) {
                Ok(mut l) => {
                    l.path = path;
                    good.push(l);
                }
                Err(reason) => bad.push((path, reason)),
            }
        }
        good.sort_by(|a, b| (&a.id, &a.path).cmp(&(&b.id, &b.path)));
        Ok((good, bad))
    }

    fn loop_not_found(&self, id: &str, what: &'static str) -> Error {
        // One scan: a loop whose file is there but cannot be read is damaged, not missing;
        // otherwise the readable loops give the suggestions.
        let (good, bad) = self.scan_loop_files().unwrap_or_default();
        let file = format!("{id}.md");
        if let Some((path, reason)) = bad
            .into_iter()
            .find(|(p, _)| p.file_name().is_some_and(|n| n == file.as_str()))
        {
            return Error::corrupt(path, reason);
        }
        Error::new(ErrorKind::NotFound {
            what,
            id: id.to_owned(),
            suggestions: loops::close_matches(id, good.iter().map(|l| l.id.as_str())),
        })
    }

    /// Every loop, ordered by id.
    pub fn loops(&self) -> Result<Vec<Loop>> {
        Ok(self.loops_checked()?.value)
    }

    /// [`Registry::loops`], with the loop files that could not be read.
    pub fn loops_checked(&self) -> Result<Checked<Vec<Loop>>> {
        let (loops, damaged) = self.load_loops_checked()?;
        Ok(Checked {
            value: loops.into_values().collect(),
            damaged,
        })
    }

    /// Every loop by id, and the loop files that could not be read.
    fn load_loops_checked(&self) -> Result<(BTreeMap<String, Loop>, Vec<DamagedFile>)> {
        let (good, bad) = self.scan_loop_files()?;
        let damaged = bad
            .into_iter()
            .map(|(path, reason)| DamagedFile::new(path.display().to_string(), reason))
            .collect();
        Ok((
            good.into_iter().map(|l| (l.id.clone(), l)).collect(),
            damaged,
        ))
    }

    /// One loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] listing loops with similar ids.
    pub fn show_loop(&self, id: &str) -> Result<Loop> {
        self.load_loops()?
            .remove(id)
            .ok_or_else(|| self.loop_not_found(id, "loop"))
    }

    /// Creates `loops/<ID>.md` from the seed-format template (front matter plus section
    /// headings). Its `depends_on` loops must exist and may not close a cycle.
    ///
    /// ```
    /// use gapreg::{Config, LoopSpec, Registry};
    /// let repo = tempfile::tempdir()?;
    /// let reg = Registry::init(repo.path(), Config::default())?;
    /// let spec = LoopSpec { id: "LOOP-A".into(), objective: "Batch filing".into(), ..LoopSpec::default() };
    /// let l = reg.new_loop(spec)?;
    /// assert_eq!((l.id.as_str(), l.status.as_str()), ("LOOP-A", "active"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_loop(&self, spec: LoopSpec) -> Result<Loop> {
        loops::check_loop_id(&spec.id).map_err(|r| Error::invalid("loop id", r))?;
        if spec.objective.contains('\n') {
            return Err(Error::invalid("objective", "it must be one line"));
        }
        let _guard = self.lock()?;
        let all = self.load_loops()?;
        if all.contains_key(&spec.id) || self.gap_exists(&spec.id)? {
            return Err(Error::conflict(&spec.id, ConflictDetail::Exists));
        }
        for dep in &spec.depends_on {
            if !all.contains_key(dep) {
                return Err(self.loop_not_found(dep, "loop"));
            }
            let mut deps = |n: &str| all.get(n).map(|l| l.depends_on.clone());
            if let Some(path) = graph::cycle_through(&spec.id, dep, &mut deps) {
                return Err(Error::new(ErrorKind::Cycle { path }));
            }
        }
        let dir = self
            .layout
            .loops(true)?
            .ok_or_else(|| Error::invalid("loops_dir", "cannot be created"))?;
        let name = format!("{}.md", spec.id);
        let path = dir.join(&name);
        // A link or FIFO there is refused (exit 6), a file that is not a readable loop is
        // damaged: neither is "already exists".
        if dir.file_exists(&name)? {
            let damaged = self.loop_not_found(&spec.id, "loop");
            return Err(match damaged.kind() {
                ErrorKind::Corrupt { .. } => damaged,
                _ => Error::conflict(&spec.id, ConflictDetail::Exists),
            });
        }
        let created = Timestamp::now().to_string();
        let text = loops::template(&spec, &created[..10]);
        dir.write(&name, text.as_bytes(), &self.opts)?;
        let mut l = loops::parse_loop_named(&text, None).map_err(|r| Error::corrupt(&path, r))?;
        l.path = path;
        Ok(l)
    }

    fn find_loop(&self, id: &str, cache: &mut Option<BTreeMap<String, Loop>>) -> Result<bool> {
        if loops::check_loop_id(id).is_err() {
            return Ok(false);
        }
        if cache.is_none() {
            *cache = Some(self.load_loops()?);
        }
        Ok(cache.as_ref().is_some_and(|c| c.contains_key(id)))
    }

    // ----- filing -----

    /// The next id [`Registry::file`] would give for `prefix` (`OP` or `GAP-OP`), reserving
    /// nothing.
    pub fn next_id(&self, prefix: &str) -> Result<Id> {
        let prefix = self.check_prefix(prefix)?;
        Ok(self.ids.peek(&prefix)?)
    }

    fn check_prefix(&self, prefix: &str) -> Result<String> {
        let p = gap_prefix(prefix);
        idreserve::check_prefix(&p).map_err(|e| Error::invalid("prefix", e.to_string()))?;
        Ok(p)
    }

    /// Files one gap: reserves its id and registry position, checks its loop and dependencies,
    /// writes `gaps/<ID>.yaml` and indexes it. Cost does not grow with the registry's size.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Invalid`] for a bad field, [`ErrorKind::NotFound`] (with close matches)
    /// for a missing parent loop or dependency, [`ErrorKind::Cycle`], [`ErrorKind::Timeout`].
    pub fn file(&self, spec: GapSpec) -> Result<Gap> {
        self.file_keyed(spec, None)
    }

    /// Like [`Registry::file`], safe to retry: the first call with `key` files the gap, and
    /// every later call with the same key and the same spec returns that gap (as it is now)
    /// instead of filing it again — for an agent that lost the answer (a crash, a timeout, a
    /// broken pipe) and cannot tell whether the gap was filed. A key used for a different
    /// spec is a [`ErrorKind::Conflict`]. Keys are 1–128 characters of `A-Z a-z 0-9 . _ : -`.
    ///
    /// ```
    /// use gapreg::{Config, GapSpec, Registry, Severity};
    /// let repo = tempfile::tempdir()?;
    /// let reg = Registry::init(repo.path(), Config::default())?;
    /// let spec = GapSpec::new("Lock contention", Severity::High);
    /// let first = reg.file_idempotent(spec.clone(), "agent-7:task-31")?;
    /// let again = reg.file_idempotent(spec, "agent-7:task-31")?;
    /// assert_eq!((first.id.as_str(), again.id.as_str()), ("GAP-OP-1", "GAP-OP-1"));
    /// assert_eq!(reg.list(&Default::default())?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file_idempotent(&self, spec: GapSpec, key: &str) -> Result<Gap> {
        self.file_keyed(spec, Some(key))
    }

    fn file_keyed(&self, spec: GapSpec, key: Option<&str>) -> Result<Gap> {
        self.file_batch_keyed(vec![spec], key)?
            .pop()
            .ok_or_else(|| Error::invalid("batch", "nothing filed"))
    }

    /// [`Registry::file_batch`], safe to retry with the same `key` (see
    /// [`Registry::file_idempotent`]).
    pub fn file_batch_idempotent(&self, specs: Vec<GapSpec>, key: &str) -> Result<Vec<Gap>> {
        self.file_batch_keyed(specs, Some(key))
    }

    /// Files many gaps under one lock: ids consecutive per prefix, registry positions
    /// contiguous (no other writer's gaps in between), all or nothing. Every entry is checked
    /// before anything is reserved or written; if any is invalid, nothing is written and
    /// [`ErrorKind::BatchInvalid`] lists every invalid entry with its index. A dependency
    /// `@N` names the N-th entry of the same batch.
    ///
    /// ```
    /// use gapreg::{Config, GapSpec, Registry, Severity};
    /// let repo = tempfile::tempdir()?;
    /// let reg = Registry::init(repo.path(), Config::default())?;
    /// let gaps = reg.file_batch(vec![
    ///     GapSpec::new("first", Severity::High),
    ///     GapSpec::new("second", Severity::Low).depends_on("@0"),
    /// ])?;
    /// assert_eq!(gaps[1].depends_on, ["GAP-OP-1"]);
    /// let err = reg.file_batch(vec![GapSpec::new("", Severity::Low), GapSpec::new("ok", Severity::Low).parent_loop("NOPE")]).unwrap_err();
    /// assert!(matches!(err.kind(), gapreg::ErrorKind::BatchInvalid { errors } if errors.len() == 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file_batch(&self, specs: Vec<GapSpec>) -> Result<Vec<Gap>> {
        self.file_batch_keyed(specs, None)
    }

    fn file_batch_keyed(&self, specs: Vec<GapSpec>, key: Option<&str>) -> Result<Vec<Gap>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        if specs.len() > MAX_BATCH {
            return Err(Error::invalid(
                "batch",
                format!(
                    "it has {} entries, more than the {MAX_BATCH} one batch may file; split it",
                    specs.len()
                ),
            ));
        }
        let request = match key {
            Some(key) => {
                check_key(key)?;
                Some(format!(
                    "{:08x}",
                    crc32fast::hash(format!("{specs:?}").as_bytes())
                ))
            }
            None => None,
        };
        let single = specs.len() == 1;
        let _guard = self.lock()?;
        self.ensure_index_fresh()?;
        // A retried request: return what it filed, or finish filing it with the ids it holds.
        let mut reuse: Option<KeyRecord> = None;
        if let (Some(key), Some(request)) = (key, &request) {
            if let Some(record) = self.read_key(key)? {
                if record.request != *request || record.ids.len() != specs.len() {
                    return Err(Error::conflict(
                        format!("idempotency key {key}"),
                        ConflictDetail::KeyReused { ids: record.ids },
                    ));
                }
                self.check_key_record(key, &record, &specs)?;
                let mut filed = Vec::with_capacity(record.ids.len());
                for (id, spec) in record.ids.iter().zip(&specs) {
                    if self.gap_exists(id)? {
                        let gap = self.read_gap(id)?;
                        // The record is coordination state, the gaps are documents: after a
                        // checkout the id may hold someone else's gap. Only this request's
                        // own gap is an answer to its retry.
                        if !filed_from(&gap, spec) {
                            return Err(Error::conflict(
                                format!("idempotency key {key}"),
                                ConflictDetail::KeyReused { ids: record.ids },
                            ));
                        }
                        filed.push(gap);
                    }
                }
                if filed.len() == record.ids.len() {
                    return Ok(filed);
                }
                if !filed.is_empty() {
                    return Err(Error::corrupt(
                        self.dir.join(KEYS).join(format!("{key}.json")),
                        "only some of the gaps it filed exist (removed by hand?); file again \
                         with a new key",
                    ));
                }
                reuse = Some(record);
            }
        }
        let mut loop_cache = None;
        let mut errors: Vec<(usize, Error)> = Vec::new();
        let mut prefixes: Vec<Option<String>> = Vec::with_capacity(specs.len());
        let explicit: HashMap<String, usize> = specs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.id.clone().map(|id| (id, i)))
            .collect();
        // batch-internal edges for the cycle check
        let mut internal: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, spec) in specs.iter().enumerate() {
            match self.check_spec(i, spec, &specs, &explicit, &mut loop_cache) {
                Ok((prefix, edges)) => {
                    prefixes.push(prefix);
                    internal.insert(format!("@{i}"), edges);
                }
                Err(e) => {
                    prefixes.push(None);
                    errors.push((i, e));
                }
            }
        }
        // Cycles among the valid entries are reported together with every other invalid
        // entry (the invalid ones have no edges here, so they cannot take part).
        if let Some(cycle) = graph::find_cycles(&internal).into_iter().next() {
            let first = cycle
                .first()
                .and_then(|c| c.strip_prefix('@'))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let named: Vec<String> = cycle.iter().map(|n| self.batch_name(n, &specs)).collect();
            errors.push((first, Error::new(ErrorKind::Cycle { path: named })));
            errors.sort_by_key(|(i, _)| *i);
        }
        if !errors.is_empty() {
            if single {
                return Err(errors.remove(0).1);
            }
            return Err(Error::new(ErrorKind::BatchInvalid {
                errors: errors
                    .into_iter()
                    .map(|(i, e)| (i, e.to_string()))
                    .collect(),
            }));
        }

        // Reserve: ids per prefix (consecutive), then contiguous registry positions.
        let mut wanted: Vec<(String, u64)> = Vec::new();
        for p in prefixes.iter().flatten() {
            match wanted.iter_mut().find(|(q, _)| q == p) {
                Some(w) => w.1 += 1,
                None => wanted.push((p.clone(), 1)),
            }
        }
        // Everything that can refuse the batch is checked before an id is reserved, so a
        // refusal moves no counter: the directories it needs (a planted link there is
        // refused now), and the files of the ids the counters will give next.
        let root = self.layout.root()?;
        self.gaps_dir(true)?;
        let staging = if specs.len() > 1 {
            self.clear_staging()?;
            Some(root.create_dir(STAGING)?)
        } else {
            None
        };
        if reuse.is_none() {
            for (prefix, n) in &wanted {
                let next = self.ids.peek(prefix)?.number();
                for k in 0..*n {
                    let id = format!("{prefix}-{}", next.saturating_add(k));
                    // What `clear_staging` left there is not a regular file: refused here.
                    if let Some(staging) = &staging {
                        staging.file_exists(gap_file(&id))?;
                    }
                    if self.gap_exists(&id)? {
                        return Err(Error::invalid(
                            format!("next id {id}"),
                            format!(
                                "a gap file for {id} already exists, so the id counter is \
                                 behind the gap files (after a merge?); run `gapreg doctor \
                                 --repair` to raise it and file again"
                            ),
                        ));
                    }
                }
            }
        }
        let (ids, seq) = match reuse {
            Some(record) => (record.ids, record.seq),
            None => {
                let (ids, seq) = self.reserve_for(&specs, &prefixes, &wanted)?;
                if let (Some(key), Some(request)) = (key, request) {
                    // Durable before any gap file: a retry after a crash past this point
                    // files the same ids.
                    let record = KeyRecord { request, ids, seq };
                    self.write_key(key, &record)?;
                    (record.ids, record.seq)
                } else {
                    (ids, seq)
                }
            }
        };
        for id in &ids {
            if self.gap_exists(id)? {
                return Err(Error::invalid(
                    format!("reserved id {id}"),
                    format!(
                        "a gap file for {id} already exists, so the id counter is behind the \
                         gap files (after a merge?); run `gapreg doctor --repair` to raise it \
                         and file again"
                    ),
                ));
            }
        }
        let now = Timestamp::now();
        let gaps: Vec<Gap> = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| new_gap(s, ids[i].clone(), seq + i as u64, now, |n| ids[n].clone()))
            .collect();
        self.write_batch(&gaps)?;
        self.append_index(&gaps.iter().collect::<Vec<_>>());
        Ok(gaps)
    }

    /// Reserves the ids of a checked batch (per prefix, consecutive) and its contiguous
    /// registry positions; returns every entry's id and the first position.
    fn reserve_for(
        &self,
        specs: &[GapSpec],
        prefixes: &[Option<String>],
        wanted: &[(String, u64)],
    ) -> Result<(Vec<String>, u64)> {
        let mut reserved: HashMap<String, std::vec::IntoIter<Id>> = HashMap::new();
        for (p, n) in wanted {
            let r = self.ids.reserve(p, *n)?;
            reserved.insert(p.clone(), r.ids().collect::<Vec<_>>().into_iter());
        }
        let seq = self.ids.reserve(SEQ_PREFIX, specs.len() as u64)?.first();
        let ids = specs
            .iter()
            .zip(prefixes)
            .map(|(s, p)| match (&s.id, p) {
                (Some(id), _) => Ok(id.clone()),
                (None, Some(p)) => reserved
                    .get_mut(p)
                    .and_then(Iterator::next)
                    .map(|id| id.to_string())
                    .ok_or_else(|| Error::invalid("batch", "ran out of reserved ids")),
                (None, None) => Err(Error::invalid("batch", "entry without a prefix")),
            })
            .collect::<Result<_>>()?;
        Ok((ids, seq))
    }

    /// A key record read back is verified before its ids are used again: one canonical,
    /// reserved id per entry (explicit ids as the spec gives them), all distinct, and
    /// registry positions already reserved — so a stale or planted record can neither file
    /// over ids the counters would hand out again nor duplicate an id.
    fn check_key_record(&self, key: &str, record: &KeyRecord, specs: &[GapSpec]) -> Result<()> {
        let path = self.dir.join(KEYS).join(format!("{key}.json"));
        let bad = |reason: String| Error::corrupt(&path, format!("{reason}; remove the file"));
        let mut seen = std::collections::HashSet::new();
        for (id, spec) in record.ids.iter().zip(specs) {
            Self::check_gap_id(id).map_err(|e| bad(e.to_string()))?;
            if !seen.insert(id.as_str()) {
                return Err(bad(format!("it names {id} twice")));
            }
            if spec.id.as_ref().is_some_and(|explicit| explicit != id) {
                return Err(bad(format!(
                    "it names {id} where the request gives its own id"
                )));
            }
            self.ids.validate(id).map_err(|e| bad(e.to_string()))?;
        }
        let last_seq = record
            .seq
            .checked_add(record.ids.len() as u64 - 1)
            .filter(|_| record.seq > 0 && !record.ids.is_empty())
            .ok_or_else(|| bad(format!("registry position {} is invalid", record.seq)))?;
        self.ids
            .validate(&format!("{SEQ_PREFIX}-{last_seq}"))
            .map_err(|e| bad(e.to_string()))?;
        Ok(())
    }

    fn read_key(&self, key: &str) -> Result<Option<KeyRecord>> {
        let Some(keys) = self.layout.sub(KEYS, false)? else {
            return Ok(None);
        };
        let name = format!("{key}.json");
        let opts = atomic_file::Options::new().checksum(true);
        match keys.read_with(&name, &opts, MAX_MANIFEST_BYTES)? {
            Some(bytes) => Ok(Some(
                atomic_file::Format::Json.decode(keys.join(&name), &bytes)?,
            )),
            None => Ok(None),
        }
    }

    fn write_key(&self, key: &str, record: &KeyRecord) -> Result<()> {
        let keys = self.layout.root()?.create_dir(KEYS)?;
        let name = format!("{key}.json");
        let bytes = atomic_file::Format::Json.encode(keys.join(&name), record)?;
        // Always durable: a key lost in a power cut would let a retry file twice.
        keys.write(&name, &bytes, &atomic_file::Options::new().checksum(true))?;
        Ok(())
    }

    /// Writes a batch's gap files all or nothing, even if this process is killed meanwhile:
    /// each file goes to `staging/` first; writing the manifest `batch.pending` commits the
    /// batch; then the files are renamed into `gaps/` and the manifest removed. A writer
    /// killed before the manifest leaves only staged files (removed later); one killed after
    /// it leaves a manifest that the next writer (or `doctor`) completes.
    fn write_batch(&self, gaps: &[Gap]) -> Result<()> {
        if let [gap] = gaps {
            return self.write_gap(gap, None);
        }
        let root = self.layout.root()?;
        self.clear_staging()?;
        // gaps/ must exist before the batch commits: finishing it only renames.
        self.gaps_dir(true)?;
        let staging = root.create_dir(STAGING)?;
        let staged = gaps.iter().try_for_each(|gap| {
            let yaml = encode_gap(gap)?;
            staging.write(gap_file(&gap.id), yaml.as_bytes(), &self.opts)?;
            Ok::<_, Error>(())
        });
        let manifest: String = gaps.iter().map(|g| format!("{}\n", g.id)).collect();
        let checksummed = self.opts.clone().checksum(true);
        let committed =
            staged.and_then(|()| Ok(root.write(PENDING, manifest.as_bytes(), &checksummed)?));
        match committed {
            Ok(()) => {}
            // The manifest is in place but its durability is unconfirmed: take it back.
            Err(e) if is_sync_dir(&e) => {
                let _ = root.remove_file(PENDING);
                let _ = self.clear_staging();
                return Err(e);
            }
            Err(e) => {
                let _ = self.clear_staging();
                return Err(e);
            }
        }
        // Committed: the batch is filed. Moving the files is finished by the next writer or
        // reader if it fails here, so it cannot turn the answer into an error.
        if let Err(e) = self.finish_batch() {
            self.warn(&format!(
                "the batch is filed, but its files are not all in gaps/ yet ({e}); the next \
                 gapreg command finishes moving them"
            ));
        }
        Ok(())
    }

    /// Under the lock: moves the files of a committed batch (`batch.pending`) from `staging/`
    /// into `gaps/` and removes the manifest. Returns whether there was one.
    pub(crate) fn finish_batch(&self) -> Result<bool> {
        let pending = self.dir.join(PENDING);
        let root = self.layout.root()?;
        let checksummed = atomic_file::Options::new().checksum(true);
        let Some(manifest) = root.read_with(PENDING, &checksummed, MAX_MANIFEST_BYTES)? else {
            return Ok(false);
        };
        let manifest = String::from_utf8(manifest)
            .map_err(|_| Error::corrupt(&pending, "the manifest is not UTF-8"))?;
        let ids: Vec<&str> = manifest.lines().filter(|l| !l.is_empty()).collect();
        for id in &ids {
            Self::check_gap_id(id).map_err(|_| {
                Error::corrupt(&pending, format!("{id:?} is not a gap id; remove the file"))
            })?;
        }
        let gaps = self
            .gaps_dir(true)?
            .ok_or_else(|| Error::invalid("gaps", "missing"))?;
        if let Some(staging) = root.open_dir(STAGING)? {
            for id in &ids {
                // `false`: moved before the previous writer died.
                staging.rename_file(gap_file(id), &gaps, gap_file(id))?;
            }
        }
        // Make the renames durable before the manifest goes.
        if self.config.durable {
            gaps.sync()?;
        }
        root.remove_file(PENDING)?;
        Ok(true)
    }

    /// Under the lock, with no manifest: removes staged files of batches that never
    /// committed. Returns what was removed.
    ///
    /// Only regular files named like a staged gap (`<ID>.yaml`) or a dead writer's temp file
    /// are removed, by name inside `staging/` itself; anything else there is left alone and
    /// reported by `doctor`.
    pub(crate) fn clear_staging(&self) -> Result<Vec<PathBuf>> {
        let Some(staging) = self.layout.sub(STAGING, false)? else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for entry in staging.entries()? {
            if entry.kind != FileKind::File || !is_staged_name(&entry.name) {
                continue;
            }
            if staging.remove_file(&entry.name)? {
                removed.push(staging.join(&entry.name));
            }
        }
        removed.extend(staging.recover(true)?.removed);
        removed.sort();
        Ok(removed)
    }

    /// The one rule of "is this dependency finished": a gap when it is `complete`, a loop
    /// when [`Loop::is_complete`]. `None` when finished; otherwise what to tell the user
    /// (`GAP-OP-3 (open)`, `loop LOOP-A (active)`, `X (missing)`).
    fn unfinished_dep(&self, dep: &str, loops: &BTreeMap<String, Loop>) -> Result<Option<String>> {
        if self.gap_exists(dep)? {
            let s = self.read_gap(dep)?.status;
            return Ok((s != Status::Complete).then(|| format!("{dep} ({s})")));
        }
        Ok(match loops.get(dep) {
            Some(l) if l.is_complete() => None,
            Some(l) => Some(format!("loop {dep} ({})", l.status)),
            None => Some(format!("{dep} (missing)")),
        })
    }

    fn batch_name(&self, node: &str, specs: &[GapSpec]) -> String {
        match node.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
            Some(i) => specs
                .get(i)
                .and_then(|s| s.id.clone())
                .unwrap_or_else(|| format!("entry {i}")),
            None => node.to_owned(),
        }
    }

    /// Checks one batch entry; returns its id-store prefix (`None` for an explicit id) and
    /// its edges to other entries of the batch.
    fn check_spec(
        &self,
        i: usize,
        spec: &GapSpec,
        all: &[GapSpec],
        explicit: &HashMap<String, usize>,
        loop_cache: &mut Option<BTreeMap<String, Loop>>,
    ) -> Result<(Option<String>, Vec<String>)> {
        check_title(&spec.title)?;
        check_type(&spec.gap_type)?;
        check_tags(&spec.tags)?;
        check_text("description", &spec.description, MAX_DESCRIPTION)?;
        if let Some(plan) = &spec.plan {
            check_text("plan", plan, MAX_FIELD)?;
        }
        if spec.depends_on.len() > MAX_LIST {
            return Err(Error::invalid(
                "dependencies",
                format!("a gap may have at most {MAX_LIST}"),
            ));
        }
        // The whole file must fit what readers accept; checked now, with the longest id and
        // position it could get, so that it is refused before any id is reserved.
        let longest = format!("GAP-{}-{}", "X".repeat(64), u64::MAX);
        encode_gap(&new_gap(
            spec.clone(),
            longest.clone(),
            u64::MAX,
            Timestamp::now(),
            |_| longest.clone(),
        ))?;
        let status = spec.status.unwrap_or(Status::Open);
        if status == Status::InProgress {
            return Err(Error::invalid(
                "status",
                "a gap cannot be filed as in-progress; file it, then claim it (`gapreg claim`)",
            ));
        }
        let prefix = match &spec.id {
            Some(id) => {
                let parsed = Self::check_gap_id(id)?;
                let canonical = format!("{}-{}", parsed.prefix(), parsed.number());
                if *id != canonical {
                    // `GAP-OP-01` would be a second file for gap number 1 of GAP-OP.
                    return Err(Error::invalid(
                        format!("id {id}"),
                        format!("write it without zero padding, as {canonical}"),
                    ));
                }
                if parsed.prefix() == SEQ_PREFIX {
                    return Err(Error::invalid(
                        format!("id {id}"),
                        "the SEQ prefix is reserved for the registry order",
                    ));
                }
                if explicit.get(id) != Some(&i) {
                    return Err(Error::invalid(
                        format!("id {id}"),
                        "it appears twice in this batch",
                    ));
                }
                self.ids.validate(id)?;
                if self.gap_path(id).exists() {
                    return Err(Error::conflict(id, ConflictDetail::Exists));
                }
                None
            }
            None => {
                let p = self.check_prefix(
                    spec.prefix
                        .as_deref()
                        .unwrap_or(&self.config.default_prefix),
                )?;
                if p == SEQ_PREFIX {
                    return Err(Error::invalid("prefix", "SEQ is reserved"));
                }
                Some(p)
            }
        };
        if let Some(parent) = &spec.parent_loop {
            if !self.find_loop(parent, loop_cache)? {
                return Err(self.loop_not_found(parent, "parent loop"));
            }
        }
        let mut edges = Vec::new();
        for dep in &spec.depends_on {
            if let Some(n) = dep.strip_prefix('@') {
                match n.parse::<usize>() {
                    Ok(n) if n < all.len() && n != i => edges.push(format!("@{n}")),
                    Ok(n) if n == i => {
                        return Err(Error::new(ErrorKind::Cycle {
                            path: vec![format!("entry {i}"), format!("entry {i}")],
                        }));
                    }
                    _ => {
                        return Err(Error::invalid(
                            format!("dependency {dep}"),
                            format!(
                                "@N must name another entry of this batch (0..{})",
                                all.len()
                            ),
                        ));
                    }
                }
            } else if let Some(&j) = explicit.get(dep) {
                if j == i {
                    return Err(Error::new(ErrorKind::Cycle {
                        path: vec![dep.clone(), dep.clone()],
                    }));
                }
                edges.push(format!("@{j}"));
            } else if !self.gap_exists(dep)? && !self.find_loop(dep, loop_cache)? {
                return Err(self.loop_not_found(dep, "dependency (gap or loop)"));
            }
        }
        if let Some(id) = &spec.id {
            // An explicit id may already be referenced by existing gaps (re-filing a gap whose
            // file was removed): its dependencies must not lead back to it.
            for dep in &spec.depends_on {
                if dep.starts_with('@') || explicit.contains_key(dep) {
                    continue;
                }
                let cache = &*loop_cache;
                let mut deps = |n: &str| -> Option<Vec<String>> {
                    if matches!(self.gap_exists(n), Ok(true)) {
                        self.read_gap(n).ok().map(|g| g.depends_on)
                    } else {
                        cache
                            .as_ref()
                            .and_then(|c| c.get(n))
                            .map(|l| l.depends_on.clone())
                    }
                };
                if let Some(path) = graph::cycle_through(id, dep, &mut deps) {
                    return Err(Error::new(ErrorKind::Cycle { path }));
                }
            }
        }
        if status == Status::Complete {
            let mut open = Vec::new();
            for dep in &spec.depends_on {
                let done =
                    if let Some(n) = dep.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
                        all[n].status == Some(Status::Complete)
                    } else if let Some(&j) = explicit.get(dep) {
                        all[j].status == Some(Status::Complete)
                    } else {
                        let loops = match loop_cache {
                            Some(c) => &*c,
                            None => loop_cache.insert(self.load_loops()?),
                        };
                        self.unfinished_dep(dep, loops)?.is_none()
                    };
                if !done {
                    open.push(dep.clone());
                }
            }
            if !open.is_empty() {
                return Err(Error::invalid(
                    "status complete",
                    format!("it depends on {} which are not complete", open.join(", ")),
                ));
            }
        }
        Ok((prefix, edges))
    }

    // ----- reading -----

    /// One gap, read from its file.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], or [`ErrorKind::Corrupt`] if the file is damaged.
    pub fn show(&self, id: &str) -> Result<Gap> {
        self.read_gap(id)
    }

    /// Gaps matching `filter`, in registry order, read from the index only. Gap files that
    /// cannot be read are left out: [`Registry::list_checked`] names them.
    pub fn list(&self, filter: &Filter) -> Result<Vec<GapSummary>> {
        Ok(self.list_checked(filter)?.value)
    }

    /// [`Registry::list`], with the gap files that could not be read (so that a shorter list
    /// is never mistaken for a complete one).
    pub fn list_checked(&self, filter: &Filter) -> Result<Checked<Vec<GapSummary>>> {
        let (value, damaged) = self.load_index_with(Some(filter))?;
        Ok(Checked { value, damaged })
    }

    /// The work an idle agent can take now: gaps that are not complete, out of scope or
    /// `blocked`, not under a live claim, whose dependencies are complete — gaps, loops, and
    /// the loops their parent loop depends on. Most severe first, then registry order.
    /// Returns index summaries; [`Registry::show`] reads a whole gap.
    /// [`Registry::ready_checked`] also names the gap and loop files that could not be read.
    pub fn ready(&self) -> Result<Vec<GapSummary>> {
        Ok(self.ready_checked()?.value)
    }

    /// [`Registry::ready`], with the gap and loop files that could not be read.
    pub fn ready_checked(&self) -> Result<Checked<Vec<GapSummary>>> {
        let (gaps, mut damaged) = self.load_index()?;
        let (loops, bad_loops) = self.load_loops_checked()?;
        damaged.extend(bad_loops);
        let status: HashMap<&str, Status> =
            gaps.iter().map(|g| (g.id.as_str(), g.status)).collect();
        let lookup = |id: &str| status.get(id).copied();
        let now = Timestamp::now();
        let mut ready: Vec<GapSummary> = gaps
            .iter()
            .filter(|g| graph::blockers(&view(g), now, &lookup, &loops).is_empty())
            .cloned()
            .collect();
        ready.sort_by_key(|g| (g.severity, g.seq));
        Ok(Checked {
            value: ready,
            damaged,
        })
    }

    /// Why gap `id` is not ready; empty when it is.
    pub fn blockers(&self, id: &str) -> Result<Vec<Blocker>> {
        let gap = self.read_gap(id)?;
        let loops = self.load_loops()?;
        let lookup = |dep: &str| {
            if matches!(self.gap_exists(dep), Ok(true)) {
                self.read_gap(dep).ok().map(|g| g.status)
            } else {
                None
            }
        };
        Ok(graph::blockers(
            &GapView {
                status: gap.status,
                claimed_by: gap.claimed_by.as_deref(),
                claim_expires_at: gap.claim_expires_at,
                parent_loop: gap.parent_loop.as_deref(),
                depends_on: &gap.depends_on,
            },
            Timestamp::now(),
            &lookup,
            &loops,
        ))
    }

    /// Counts by status, severity and loop, from the index.
    pub fn summary(&self) -> Result<Summary> {
        Ok(self.summary_checked()?.value)
    }

    /// [`Registry::summary`], with the gap files that could not be read.
    pub fn summary_checked(&self) -> Result<Checked<Summary>> {
        let (gaps, damaged) = self.load_index()?;
        Ok(Checked {
            value: Summary::of(&gaps),
            damaged,
        })
    }

    /// A deterministic markdown overview (see [`crate::render`]).
    pub fn render(&self) -> Result<String> {
        Ok(self.render_checked()?.value)
    }

    /// [`Registry::render`], with the gap and loop files that could not be read.
    pub fn render_checked(&self) -> Result<Checked<String>> {
        let (gaps, mut damaged) = self.load_index()?;
        let (loops, bad_loops) = self.load_loops_checked()?;
        damaged.extend(bad_loops);
        Ok(Checked {
            value: crate::render::render(&gaps, &loops),
            damaged,
        })
    }

    // ----- updates -----

    /// Locked read-modify-write of one gap: `change` returns `Ok(true)` to write, `Ok(false)`
    /// to leave it as it is.
    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut Gap, Timestamp) -> Result<bool>,
    ) -> Result<Gap> {
        let _guard = self.lock()?;
        self.ensure_index_fresh()?;
        let mut gap = self.read_gap(id)?;
        let before = encode_gap(&gap)?;
        let now = Timestamp::now();
        if change(&mut gap, now)? {
            gap.rev += 1;
            gap.updated_at = now;
            self.write_gap(&gap, Some(before.as_bytes()))?;
            self.append_index(&[&gap]);
        }
        Ok(gap)
    }

    /// Claims gap `id` for `agent` (compare-and-swap under the lock) and sets it
    /// `in-progress`. With `ttl`, the claim lapses after it and another agent may take the gap
    /// over. Claiming again as the same agent succeeds (and renews a TTL).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`] naming the winner if another agent holds a live claim;
    /// [`ErrorKind::Invalid`] for a complete or out-of-scope gap.
    pub fn claim(&self, id: &str, agent: &str, ttl: Option<Duration>) -> Result<Gap> {
        check_agent(agent)?;
        self.update(id, |gap, now| {
            if gap.status.is_closed() {
                // Most often a lost race: another agent finished it between `ready` and
                // `claim`. A conflict, so the caller moves on to the next ready gap.
                return Err(Error::conflict(
                    id,
                    ConflictDetail::Closed { status: gap.status },
                ));
            }
            match gap.claimed_at_time(now) {
                Some(holder) if holder != agent => Err(Error::conflict(
                    id,
                    ConflictDetail::ClaimedBy {
                        agent: holder.to_owned(),
                        expires_at: gap.claim_expires_at,
                    },
                )),
                Some(_) => match ttl {
                    Some(ttl) => {
                        gap.claim_expires_at = Some(now.after(ttl));
                        Ok(true)
                    }
                    None => Ok(false),
                },
                None => {
                    let takeover = gap.claimed_by.is_some() && gap.status == Status::InProgress;
                    if !takeover {
                        gap.status_before_claim = Some(gap.status);
                    }
                    gap.claimed_by = Some(agent.to_owned());
                    gap.claimed_at = Some(now);
                    gap.claim_expires_at = ttl.map(|t| now.after(t));
                    gap.status = Status::InProgress;
                    Ok(true)
                }
            }
        })
    }

    /// Releases `agent`'s claim and restores the status from before the claim (if the gap is
    /// still in progress). Unclaiming an unclaimed gap changes nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`] if another agent holds the claim (even an expired one).
    pub fn unclaim(&self, id: &str, agent: &str) -> Result<Gap> {
        check_agent(agent)?;
        self.update(id, |gap, _| match gap.claimed_by.as_deref() {
            None => Ok(false),
            Some(holder) if holder != agent => Err(Error::conflict(
                id,
                ConflictDetail::ClaimedBy {
                    agent: holder.to_owned(),
                    expires_at: gap.claim_expires_at,
                },
            )),
            Some(_) => {
                gap.claimed_by = None;
                gap.claimed_at = None;
                gap.claim_expires_at = None;
                if gap.status == Status::InProgress {
                    gap.status = gap.status_before_claim.unwrap_or(Status::Open);
                }
                gap.status_before_claim = None;
                Ok(true)
            }
        })
    }

    /// Sets gap `id`'s status, if its revision is still `expected_revision` (when given).
    /// `complete` requires every dependency to be complete (a loop dependency: its front
    /// matter status). Setting the status it already has changes nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`] on a revision mismatch; [`ErrorKind::Invalid`] naming the
    /// incomplete dependencies.
    pub fn set_status(
        &self,
        id: &str,
        status: Status,
        expected_revision: Option<u64>,
    ) -> Result<Gap> {
        self.update(id, |gap, now| {
            check_revision(gap, expected_revision)?;
            if gap.status == status {
                return Ok(false);
            }
            if status == Status::Complete {
                let loops = self.load_loops()?;
                let mut open = Vec::new();
                for dep in &gap.depends_on {
                    if let Some(what) = self.unfinished_dep(dep, &loops)? {
                        open.push(what);
                    }
                }
                if !open.is_empty() {
                    return Err(Error::invalid(
                        format!("transition of {id} to complete"),
                        format!(
                            "it depends on {}; complete those first (or remove the dependency)",
                            open.join(", ")
                        ),
                    ));
                }
                gap.completed_at = Some(now);
            }
            if gap.status == Status::InProgress || status.is_closed() {
                gap.status_before_claim = None;
            }
            gap.status = status;
            Ok(true)
        })
    }

    /// Makes gap `id` depend on `on` (a gap or a loop), unless that closes a cycle. Adding an
    /// existing dependency changes nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Cycle`] spelling the cycle out (`GAP-OP-3 -> GAP-OP-1 -> GAP-OP-3`);
    /// [`ErrorKind::NotFound`] if `on` does not exist.
    pub fn add_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        self.update(id, |gap, _| {
            if gap.depends_on.iter().any(|d| d == on) {
                return Ok(false);
            }
            let loops = self.load_loops()?;
            if !self.gap_exists(on)? && !loops.contains_key(on) {
                return Err(self.loop_not_found(on, "dependency (gap or loop)"));
            }
            let mut deps = |n: &str| -> Option<Vec<String>> {
                if matches!(self.gap_exists(n), Ok(true)) {
                    self.read_gap(n).ok().map(|g| g.depends_on)
                } else {
                    loops.get(n).map(|l| l.depends_on.clone())
                }
            };
            if let Some(path) = graph::cycle_through(id, on, &mut deps) {
                return Err(Error::new(ErrorKind::Cycle { path }));
            }
            if gap.status == Status::Complete {
                // A complete gap may not wait for something unfinished (as in `set_status`).
                if let Some(what) = self.unfinished_dep(on, &loops)? {
                    return Err(Error::invalid(
                        format!("dependency of {id}"),
                        format!(
                            "{id} is complete and cannot depend on {what}; reopen it first \
                             (`gapreg status {id} open`)"
                        ),
                    ));
                }
            }
            gap.depends_on.push(on.to_owned());
            Ok(true)
        })
    }

    /// Removes the dependency of gap `id` on `on`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Invalid`] if `id` does not depend on `on`.
    pub fn remove_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        self.update(id, |gap, _| {
            let before = gap.depends_on.len();
            gap.depends_on.retain(|d| d != on);
            if gap.depends_on.len() == before {
                return Err(Error::invalid(
                    format!("dependency {on}"),
                    format!(
                        "{id} does not depend on {on}; it depends on [{}]",
                        gap.depends_on.join(", ")
                    ),
                ));
            }
            Ok(true)
        })
    }

    /// Edits gap `id`'s descriptive fields (set fields only), if its revision is still
    /// `expected_revision` (when given). A new parent loop must exist. An edit that changes
    /// nothing writes nothing.
    ///
    /// ```
    /// use gapreg::{Config, GapEdit, GapSpec, Registry, Severity};
    /// let repo = tempfile::tempdir()?;
    /// let reg = Registry::init(repo.path(), Config::default())?;
    /// reg.file(GapSpec::new("old title", Severity::Low))?;
    /// let edit = GapEdit { title: Some("new title".into()), severity: Some(Severity::High), ..GapEdit::default() };
    /// let gap = reg.edit("GAP-OP-1", edit, Some(1))?;
    /// assert_eq!((gap.title.as_str(), gap.rev), ("new title", 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`] on a revision mismatch, [`ErrorKind::Invalid`] for a bad field,
    /// [`ErrorKind::NotFound`] for a missing parent loop.
    pub fn edit(&self, id: &str, edit: GapEdit, expected_revision: Option<u64>) -> Result<Gap> {
        if let Some(title) = &edit.title {
            check_title(title)?;
        }
        if let Some(t) = &edit.gap_type {
            check_type(t)?;
        }
        if let Some(d) = &edit.description {
            check_text("description", d, MAX_DESCRIPTION)?;
        }
        if let Some(Some(plan)) = &edit.plan {
            check_text("plan", plan, MAX_FIELD)?;
        }
        if let Some(tags) = &edit.tags {
            check_tags(tags)?;
        }
        if let Some(Some(parent)) = &edit.parent_loop {
            if !self.load_loops()?.contains_key(parent) {
                return Err(self.loop_not_found(parent, "parent loop"));
            }
        }
        self.update(id, |gap, _| {
            check_revision(gap, expected_revision)?;
            let before = gap.clone();
            if let Some(t) = edit.title {
                gap.title = t.trim().to_owned();
            }
            if let Some(t) = edit.gap_type {
                gap.gap_type = t.trim().to_owned();
            }
            if let Some(s) = edit.severity {
                gap.severity = s;
            }
            if let Some(d) = edit.description {
                gap.description = d;
            }
            if let Some(p) = edit.parent_loop {
                gap.parent_loop = p;
            }
            if let Some(p) = edit.plan {
                gap.plan = p;
            }
            if let Some(t) = edit.tags {
                gap.tags = t;
            }
            Ok(*gap != before)
        })
    }

    /// Sets a loop's front-matter `status` (e.g. `closed` or `complete`, which complete it for
    /// [`Registry::ready`]), editing that one line in place: the rest of the person's file is
    /// kept byte for byte.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] listing similar loop ids; [`ErrorKind::Invalid`] for a status
    /// that is not a single word; [`ErrorKind::Corrupt`] if the front matter cannot be found.
    pub fn set_loop_status(&self, id: &str, status: &str) -> Result<Loop> {
        if status.is_empty()
            || !status
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(Error::invalid(
                format!("loop status {status:?}"),
                "use one word such as active, blocked, complete or closed",
            ));
        }
        let _guard = self.lock()?;
        let l = self
            .load_loops()?
            .remove(id)
            .ok_or_else(|| self.loop_not_found(id, "loop"))?;
        let dir = self
            .layout
            .loops(false)?
            .ok_or_else(|| self.loop_not_found(id, "loop"))?;
        let name = l
            .path
            .file_name()
            .ok_or_else(|| Error::corrupt(&l.path, "no file name"))?
            .to_os_string();
        let bytes = dir
            .read(&name, loops::MAX_LOOP_BYTES)?
            .ok_or_else(|| self.loop_not_found(id, "loop"))?;
        let text = String::from_utf8(bytes).map_err(|_| Error::corrupt(&l.path, "not UTF-8"))?;
        let edited = loops::set_front_matter_field(&text, "status", status)
            .ok_or_else(|| Error::corrupt(&l.path, "no front matter between `---` lines"))?;
        if edited != text {
            dir.write(&name, edited.as_bytes(), &self.opts)?;
        }
        let mut out =
            loops::parse_loop_named(&edited, None).map_err(|r| Error::corrupt(&l.path, r))?;
        out.path = l.path;
        Ok(out)
    }
}

fn check_title(title: &str) -> Result<()> {
    let title = title.trim();
    if title.is_empty() {
        return Err(Error::invalid(
            "title",
            "it is empty; give the gap a one-line title",
        ));
    }
    if title.contains('\n') || title.chars().count() > MAX_TITLE {
        return Err(Error::invalid(
            "title",
            format!(
                "it must be one line of at most {MAX_TITLE} characters; put details in the \
                 description"
            ),
        ));
    }
    Ok(())
}

fn check_type(gap_type: &str) -> Result<()> {
    if gap_type.contains('\n') {
        return Err(Error::invalid("type", "it must be one line"));
    }
    check_text("type", gap_type, MAX_FIELD)
}

/// Refuses a text field longer than `max` bytes.
fn check_text(what: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        return Err(Error::invalid(
            what,
            format!(
                "it is {} bytes, more than the {max} allowed; put long text in a document and \
                 link to it",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// An idempotency key: 1–128 characters of `A-Z a-z 0-9 . _ : -`, so it is a safe file name.
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("idempotency key {key:?}"),
            format!(
                "use 1 to {MAX_KEY} characters of A-Z, a-z, 0-9, `.`, `_`, `:` and `-`, not \
                 starting with `.` (for example agent-7:task-31)"
            ),
        ))
    }
}

fn check_tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_LIST {
        return Err(Error::invalid(
            "tags",
            format!("a gap may have at most {MAX_LIST}"),
        ));
    }
    if let Some(tag) = tags.iter().find(|t| t.len() > MAX_FIELD) {
        return check_text("tag", tag, MAX_FIELD);
    }
    match tags
        .iter()
        .find(|t| t.trim().is_empty() || t.contains(char::is_whitespace))
    {
        Some(tag) => Err(Error::invalid(
            format!("tag {tag:?}"),
            "tags must be non-empty and contain no whitespace",
        )),
        None => Ok(()),
    }
}

fn check_agent(agent: &str) -> Result<()> {
    if agent.trim().is_empty() || agent.contains(char::is_whitespace) || agent.len() > MAX_KEY {
        return Err(Error::invalid(
            format!("agent id {agent:?}"),
            format!("it must be 1 to {MAX_KEY} bytes without whitespace, like CC-3"),
        ));
    }
    Ok(())
}

fn check_revision(gap: &Gap, expected: Option<u64>) -> Result<()> {
    match expected {
        Some(e) if e != gap.rev => Err(Error::conflict(
            &gap.id,
            ConflictDetail::Revision {
                expected: e,
                actual: gap.rev,
            },
        )),
        _ => Ok(()),
    }
}

pub(crate) fn view(g: &GapSummary) -> GapView<'_> {
    GapView {
        status: g.status,
        claimed_by: g.claimed_by.as_deref(),
        claim_expires_at: g.claim_expires_at,
        parent_loop: g.parent_loop.as_deref(),
        depends_on: &g.depends_on,
    }
}

/// The file name of gap `id` inside `gaps/` (and `staging/`).
fn gap_file(id: &str) -> String {
    format!("{id}.yaml")
}

/// A gap's file contents, refused if larger than any reader accepts.
fn encode_gap(gap: &Gap) -> Result<String> {
    let yaml =
        crate::model::gap_to_yaml(gap).map_err(|r| Error::invalid(format!("gap {}", gap.id), r))?;
    if yaml.len() > crate::model::MAX_YAML_BYTES {
        return Err(Error::invalid(
            format!("gap {}", gap.id),
            format!(
                "its file would be {} bytes, more than the {} bytes a gap file may hold; \
                 shorten the description or plan (or link to a document)",
                yaml.len(),
                crate::model::MAX_YAML_BYTES
            ),
        ));
    }
    Ok(yaml)
}

/// Whether `e` is a write that failed at its last step: the directory `fsync` after the
/// rename, when the new file is in place but not known to be durable.
fn is_sync_dir(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::File(f) if f.step() == Some(atomic_file::Step::SyncDir))
}

/// Names `clear_staging` may remove: a staged gap file or one of atomic-file's temp files.
pub(crate) fn is_staged_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_suffix(".yaml"))
        .is_some_and(|stem| stem.parse::<Id>().is_ok())
}

/// Parses `config.yaml` strictly: unknown and missing keys are errors naming them.
fn parse_config(path: &Path, bytes: &[u8]) -> Result<Config> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::corrupt(
            path,
            "it is empty; it must set loops_dir, lock_timeout_secs, default_prefix and \
             durable (restore it from git)",
        ));
    }
    let config: Config =
        atomic_file::Format::Yaml
            .decode(path, bytes)
            .map_err(|e| match e.kind() {
                atomic_file::ErrorKind::Decode { message, .. } => {
                    Error::corrupt(path, message.clone())
                }
                _ => Error::from(e),
            })?;
    idreserve::check_prefix(&gap_prefix(&config.default_prefix))
        .map_err(|e| Error::corrupt(path, format!("default_prefix: {e}")))?;
    Ok(config)
}

/// Whether `dir` (a `.gapreg` directory, not followed if a symlink) holds a registry.
fn has_registry(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        && std::fs::symlink_metadata(dir.join(CONFIG)).is_ok_and(|m| m.is_file())
}

/// Refuses a registry in `repo` when a directory above it holds one too: the two would keep
/// separate leases on the same files (the outer one's `sub/x` is the inner one's `x`), so two
/// exclusive leases could cover one file.
fn check_not_nested(repo: &Path) -> Result<()> {
    let abs = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
    for outer in abs.ancestors().skip(1) {
        let candidate = outer.join(REGISTRY_DIR);
        if has_registry(&candidate) {
            return Err(Error::invalid(
                format!("registry in {}", abs.display()),
                format!(
                    "it is nested inside the registry {}: their leases on the same files \
                     would not see each other; use the outer registry (remove {}), or move \
                     the repository out of {}",
                    candidate.display(),
                    abs.join(REGISTRY_DIR).display(),
                    outer.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A summary or damaged file with the stamp of the file it was read from.
type Stamped<T> = (T, Option<String>);

fn unstamped(
    gaps: Vec<Stamped<GapSummary>>,
    bad: Vec<Stamped<DamagedFile>>,
) -> (Vec<GapSummary>, Vec<DamagedFile>) {
    (
        gaps.into_iter().map(|(g, _)| g).collect(),
        bad.into_iter().map(|(d, _)| d).collect(),
    )
}

/// A new gap from its spec: `@N` dependencies named by `batch_id(N)`, duplicates dropped.
fn new_gap(
    s: GapSpec,
    id: String,
    seq: u64,
    now: Timestamp,
    batch_id: impl Fn(usize) -> String,
) -> Gap {
    let mut deps: Vec<String> = Vec::new();
    for d in s.depends_on {
        let d = match d.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => batch_id(n),
            None => d,
        };
        if !deps.contains(&d) {
            deps.push(d);
        }
    }
    let status = s.status.unwrap_or(Status::Open);
    Gap {
        id,
        seq,
        rev: 1,
        title: s.title.trim().to_owned(),
        gap_type: s.gap_type.trim().to_owned(),
        severity: s.severity.unwrap_or(Severity::Medium),
        status,
        parent_loop: s.parent_loop,
        depends_on: deps,
        claimed_by: None,
        claimed_at: None,
        claim_expires_at: None,
        status_before_claim: None,
        plan: s.plan,
        tags: s.tags,
        created_at: now,
        updated_at: now,
        completed_at: (status == Status::Complete).then_some(now),
        description: s.description,
    }
}

/// Whether `gap` is what `spec` filed (its own fields, as filing stores them).
fn filed_from(gap: &Gap, spec: &GapSpec) -> bool {
    gap.title == spec.title.trim()
        && gap.gap_type == spec.gap_type.trim()
        && gap.description == spec.description
        && gap.parent_loop == spec.parent_loop
        && gap.tags == spec.tags
        && spec.severity.is_none_or(|s| s == gap.severity)
}
