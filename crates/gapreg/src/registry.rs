//! [`Registry`]: the on-disk registry and every operation on it.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use idreserve::{Id, Store};
use leaselock::mutex::{FileMutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::error::{ConflictDetail, Error, ErrorKind, Result};
use crate::graph::{self, GapView};
use crate::index::{self, IndexLine};
use crate::loops::{self, Loop, LoopSpec};
use crate::model::{Blocker, Filter, Gap, GapEdit, GapSpec, GapSummary, Severity, Status, Summary};
use crate::time::Timestamp;

/// The registry directory's name inside a repository.
pub const REGISTRY_DIR: &str = ".gapreg";
pub(crate) const CONFIG: &str = "config.yaml";
pub(crate) const GAPS: &str = "gaps";
pub(crate) const IDS: &str = "ids";
pub(crate) const INDEX: &str = "index.log";
const LOCK: &str = "registry.lock";
/// The id-store prefix of the registry-order counter.
pub const SEQ_PREFIX: &str = "SEQ";
const GITIGNORE: &str = "# Derived or per-machine files, written by gapreg\nindex.log\n*.lock\n\
                         *.queue/\nleases/\n.*.atomic-tmp\nstaging/\nbatch.pending\n.doctor-counters.txt\n";
/// Where a batch's gap files are written before its manifest commits them.
pub(crate) const STAGING: &str = "staging";
/// The manifest of a committed batch whose files are still being moved into `gaps/`.
pub(crate) const PENDING: &str = "batch.pending";
/// Bytes read from the end of `index.log` to find the last line's stamp.
const TAIL: u64 = 64 * 1024;
/// Writers compact the index when it is longer than twice its compacted size plus this.
const COMPACT_MIN: u64 = 256 * 1024;
/// Longest title accepted.
const MAX_TITLE: usize = 300;

/// A registry's settings, kept in `.gapreg/config.yaml`. Missing fields take their defaults;
/// unknown fields are ignored.
///
/// ```yaml
/// loops_dir: ../loop-scopes   # relative to .gapreg/ (default: loops)
/// lock_timeout_secs: 120
/// default_prefix: OP          # gap ids GAP-OP-<N>
/// durable: true               # fsync gap files (false: only for tests and scratch registries)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
/// let done = reg.set_status("GAP-OP-1", Status::Complete, Some(claimed.revision))?;
/// assert_eq!(done.revision, 3);
/// assert!(reg.ready()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
    config: Config,
    ids: Store,
    mutex: FileMutex,
    opts: atomic_file::Options,
    lock_timeout: Duration,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
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
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::new(ErrorKind::AlreadyExists { path: dir }));
            }
            Err(e) => return Err(Error::io("create the registry directory", &dir, e)),
        }
        let opts = Self::options(&config);
        opts.write(dir.join(".gitignore"), GITIGNORE.as_bytes())?;
        let gaps = dir.join(GAPS);
        fs::create_dir_all(&gaps).map_err(io_err("create", &gaps))?;
        let loops = dir.join(&config.loops_dir);
        fs::create_dir_all(&loops).map_err(io_err("create", &loops))?;
        Store::create(dir.join(IDS), idreserve::Config::default())?;
        atomic_file::write_yaml(dir.join(CONFIG), &config)?;
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
        let config: Config = match atomic_file::read_yaml(dir.join(CONFIG)) {
            Ok(c) => c,
            Err(e) if e.is_not_found() => {
                return Err(Error::new(ErrorKind::NoRegistry { start: dir }));
            }
            Err(e) => return Err(e.into()),
        };
        let timeout = Duration::from_secs(config.lock_timeout_secs);
        let ids = Store::open(dir.join(IDS))?.with_lock_timeout(timeout);
        Ok(Registry {
            mutex: FileMutex::new(dir.join(LOCK)),
            opts: Self::options(&config),
            lock_timeout: timeout,
            dir,
            config,
            ids,
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
        let abs = fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
        if abs.file_name().is_some_and(|n| n == REGISTRY_DIR) && abs.join(CONFIG).is_file() {
            return Registry::open(abs);
        }
        for dir in abs.ancestors() {
            let candidate = dir.join(REGISTRY_DIR);
            if candidate.join(CONFIG).is_file() {
                return Registry::open(candidate);
            }
        }
        Err(Error::new(ErrorKind::NoRegistry {
            start: start.to_path_buf(),
        }))
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
        let root = match self.dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        leaselock::lease::Leases::open_with(root, opts.leases_dir(self.dir.join("leases")))
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
        let mut out = PathBuf::new();
        for c in self.dir.join(&self.config.loops_dir).components() {
            match c {
                std::path::Component::ParentDir
                    if matches!(
                        out.components().next_back(),
                        Some(std::path::Component::Normal(_))
                    ) =>
                {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
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
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(ErrorKind::NotFound {
                    what: "gap",
                    id: id.to_owned(),
                    suggestions: Vec::new(),
                }));
            }
            Err(e) => return Err(Error::io("read", &path, e)),
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

    fn write_gap(&self, gap: &Gap) -> Result<()> {
        let yaml = crate::model::gap_to_yaml(gap)
            .map_err(|r| Error::invalid(format!("gap {}", gap.id), r))?;
        self.opts.write(self.gap_path(&gap.id), yaml.as_bytes())?;
        Ok(())
    }

    fn gap_exists(&self, id: &str) -> bool {
        id.parse::<Id>().is_ok() && self.gap_path(id).is_file()
    }

    // ----- index -----

    fn gaps_stamp(&self) -> Result<u64> {
        let dir = self.dir.join(GAPS);
        let modified = fs::metadata(&dir)
            .and_then(|m| m.modified())
            .map_err(io_err("inspect", &dir))?;
        Ok(modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64))
    }

    /// Rebuilds `index.log` from the gap files (under the lock). Unparseable gap files are
    /// skipped (`doctor` reports them). Returns the summaries in registry order.
    pub(crate) fn rebuild_index(&self) -> Result<Vec<GapSummary>> {
        let stamp = self.gaps_stamp()?;
        let (gaps, _bad) = self.scan_gap_files()?;
        // A file whose name differs from its id is not indexed (`doctor` reports it).
        let mut summaries: Vec<GapSummary> = gaps
            .into_iter()
            .filter(|(stem, g)| *stem == g.id)
            .map(|(_, g)| g.summary())
            .collect();
        summaries.sort_by(|a, b| (a.seq, &a.id).cmp(&(b.seq, &b.id)));
        self.write_index(stamp, summaries.iter().cloned())?;
        Ok(summaries)
    }

    /// Every parseable gap file `(file stem, gap)`, and the unparseable ones `(path, reason)`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn scan_gap_files(&self) -> Result<(Vec<(String, Gap)>, Vec<(PathBuf, String)>)> {
        let dir = self.dir.join(GAPS);
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".yaml") else {
                continue;
            };
            if stem.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read", &path, e)),
            };
            match crate::model::parse_gap_yaml(&bytes) {
                Ok(g) => good.push((stem.to_owned(), g)),
                Err(reason) => bad.push((path, reason)),
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
        let tail = match fs::File::open(&path) {
            Ok(mut f) => {
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        if index::tail_stamp(&tail) != Some(self.gaps_stamp()?) {
            self.rebuild_index()?;
        }
        Ok(())
    }

    /// Under the lock, after writing gap files: appends their summaries to the index.
    fn append_index(&self, gaps: &[&Gap]) -> Result<()> {
        let stamp = self.gaps_stamp()?;
        let text: String = gaps
            .iter()
            .map(|g| {
                IndexLine {
                    stamp,
                    gap: Some(g.summary()),
                    compacted_len: None,
                }
                .encode()
            })
            .collect();
        let path = self.dir.join(INDEX);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
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
    pub(crate) fn load_index(&self) -> Result<Vec<GapSummary>> {
        self.load_index_with(None)
    }

    /// Like [`Registry::load_index`], keeping only the gaps `filter` matches (cheaper: only
    /// their lines are parsed in full).
    fn load_index_with(&self, filter: Option<&Filter>) -> Result<Vec<GapSummary>> {
        let path = self.dir.join(INDEX);
        let read = |path: &Path| match fs::read(path) {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("read", path, e)),
        };
        let scan = |data: &[u8]| match filter {
            Some(f) => index::scan_filtered(data, f),
            None => index::scan(data),
        };
        let mut found = scan(&read(&path)?);
        if found.damaged || found.last_stamp != Some(self.gaps_stamp()?) {
            let _guard = self.lock()?;
            self.finish_batch()?;
            found = scan(&read(&path)?);
            if found.damaged || found.last_stamp != Some(self.gaps_stamp()?) {
                let mut gaps = self.rebuild_index()?;
                if let Some(f) = filter {
                    gaps.retain(|g| f.matches(g));
                }
                return Ok(gaps);
            }
        }
        if found.lines > 2 * found.distinct + 64 {
            self.compact(found.last_stamp)?;
        }
        Ok(found.gaps)
    }

    /// Rewrites a long index as one line per gap, if the lock is free right now and nothing
    /// changed since the caller read stamp `stamp`.
    fn compact(&self, stamp: Option<u64>) -> Result<()> {
        let Ok(_guard) = self.mutex.try_lock() else {
            return Ok(());
        };
        let path = self.dir.join(INDEX);
        let now = index::scan(&fs::read(&path).map_err(io_err("read", &path))?);
        if now.damaged || now.last_stamp != stamp || stamp != Some(self.gaps_stamp()?) {
            return Ok(());
        }
        self.write_index(stamp.unwrap_or(0), now.gaps.into_iter())
    }

    /// Under the lock: rewrites the index as one line per gap (rebuilding it from the gap
    /// files if it is damaged or stale).
    fn compact_locked(&self) -> Result<()> {
        let path = self.dir.join(INDEX);
        let now = index::scan(&fs::read(&path).map_err(io_err("read", &path))?);
        let stamp = self.gaps_stamp()?;
        if now.damaged || now.last_stamp != Some(stamp) {
            self.rebuild_index()?;
            return Ok(());
        }
        self.write_index(stamp, now.gaps.into_iter())
    }

    /// Under the lock: replaces `index.log` with a header, one line per gap and a stamp line.
    fn write_index(&self, stamp: u64, gaps: impl Iterator<Item = GapSummary>) -> Result<()> {
        let mut body = String::new();
        for g in gaps {
            body.push_str(
                &IndexLine {
                    stamp,
                    gap: Some(g),
                    compacted_len: None,
                }
                .encode(),
            );
        }
        body.push_str(
            &IndexLine {
                stamp,
                gap: None,
                compacted_len: None,
            }
            .encode(),
        );
        let header = IndexLine {
            stamp,
            gap: None,
            compacted_len: Some(body.len() as u64),
        }
        .encode();
        // A cache: no fsync needed (a lost index is rebuilt from the gap files).
        atomic_file::Options::new()
            .durability(atomic_file::Durability::NoSync)
            .write(self.dir.join(INDEX), [header, body].concat().as_bytes())?;
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
        let dir = self.loops_dir();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((good, bad)),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".md")) else {
                continue;
            };
            if stem.starts_with('.') {
                continue;
            }
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    bad.push((path, e.to_string()));
                    continue;
                }
            };
            if !text.trim_start_matches('\u{feff}').starts_with("---") {
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
        let loops = self.load_loops().unwrap_or_default();
        Error::new(ErrorKind::NotFound {
            what,
            id: id.to_owned(),
            suggestions: loops::close_matches(id, loops.keys().map(String::as_str)),
        })
    }

    /// Every loop, ordered by id.
    pub fn loops(&self) -> Result<Vec<Loop>> {
        Ok(self.load_loops()?.into_values().collect())
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
        if all.contains_key(&spec.id) || self.gap_exists(&spec.id) {
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
        let dir = self.loops_dir();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let path = dir.join(format!("{}.md", spec.id));
        if path.exists() {
            return Err(Error::conflict(&spec.id, ConflictDetail::Exists));
        }
        let created = Timestamp::now().to_string();
        let text = loops::template(&spec, &created[..10]);
        self.opts.write(&path, text.as_bytes())?;
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
        match self.file_batch(vec![spec]) {
            Ok(mut v) => v
                .pop()
                .ok_or_else(|| Error::invalid("batch", "nothing filed")),
            Err(e) => Err(e),
        }
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
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let single = specs.len() == 1;
        let _guard = self.lock()?;
        self.ensure_index_fresh()?;
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
        let mut reserved: HashMap<String, std::vec::IntoIter<Id>> = HashMap::new();
        for (p, n) in &wanted {
            let r = self.ids.reserve(p, *n)?;
            reserved.insert(p.clone(), r.ids().collect::<Vec<_>>().into_iter());
        }
        let seq = self.ids.reserve(SEQ_PREFIX, specs.len() as u64)?.first();
        let ids: Vec<String> = specs
            .iter()
            .zip(&prefixes)
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
        for id in &ids {
            if self.gap_path(id).exists() {
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
            .map(|(i, s)| {
                let mut deps: Vec<String> = Vec::new();
                for d in s.depends_on {
                    let d = match d.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
                        Some(n) => ids[n].clone(),
                        None => d,
                    };
                    if !deps.contains(&d) {
                        deps.push(d);
                    }
                }
                let status = s.status.unwrap_or(Status::Open);
                Gap {
                    id: ids[i].clone(),
                    seq: seq + i as u64,
                    revision: 1,
                    title: s.title.trim().to_owned(),
                    gap_type: s.gap_type.trim().to_owned(),
                    severity: s.severity.unwrap_or(Severity::Medium),
                    status,
                    parent_loop: s.parent_loop,
                    depends_on: deps,
                    claimant: None,
                    claimed_at: None,
                    claim_expires_at: None,
                    status_before_claim: None,
                    plan: s.plan,
                    tags: s.tags,
                    created: now,
                    updated: now,
                    completed_at: (status == Status::Complete).then_some(now),
                    description: s.description,
                }
            })
            .collect();
        self.write_batch(&gaps)?;
        self.append_index(&gaps.iter().collect::<Vec<_>>())?;
        Ok(gaps)
    }

    /// Writes a batch's gap files all or nothing, even if this process is killed meanwhile:
    /// each file goes to `staging/` first; writing the manifest `batch.pending` commits the
    /// batch; then the files are renamed into `gaps/` and the manifest removed. A writer
    /// killed before the manifest leaves only staged files (removed later); one killed after
    /// it leaves a manifest that the next writer (or `doctor`) completes.
    fn write_batch(&self, gaps: &[Gap]) -> Result<()> {
        if let [gap] = gaps {
            return self.write_gap(gap);
        }
        let staging = self.dir.join(STAGING);
        self.clear_staging()?;
        fs::create_dir_all(&staging).map_err(io_err("create", &staging))?;
        let staged = gaps.iter().try_for_each(|gap| {
            let yaml = crate::model::gap_to_yaml(gap)
                .map_err(|r| Error::invalid(format!("gap {}", gap.id), r))?;
            self.opts
                .write(staging.join(format!("{}.yaml", gap.id)), yaml.as_bytes())?;
            Ok::<_, Error>(())
        });
        let manifest: String = gaps.iter().map(|g| format!("{}\n", g.id)).collect();
        let committed = staged.and_then(|()| {
            Ok(self
                .opts
                .write(self.dir.join(PENDING), manifest.as_bytes())?)
        });
        if let Err(e) = committed {
            let _ = self.clear_staging();
            return Err(e);
        }
        self.finish_batch()?;
        Ok(())
    }

    /// Under the lock: moves the files of a committed batch (`batch.pending`) from `staging/`
    /// into `gaps/` and removes the manifest. Returns whether there was one.
    pub(crate) fn finish_batch(&self) -> Result<bool> {
        let pending = self.dir.join(PENDING);
        let manifest = match fs::read_to_string(&pending) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("read", &pending, e)),
        };
        let staging = self.dir.join(STAGING);
        for id in manifest.lines().filter(|l| !l.is_empty()) {
            Self::check_gap_id(id).map_err(|_| {
                Error::corrupt(&pending, format!("{id:?} is not a gap id; remove the file"))
            })?;
            let from = staging.join(format!("{id}.yaml"));
            match fs::rename(&from, self.gap_path(id)) {
                Ok(()) => {}
                // Moved before the previous writer died.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("move a staged gap file", &from, e)),
            }
        }
        // Make the renames durable (directories cannot be opened for fsync on Windows).
        if self.config.durable && cfg!(unix) {
            let gaps = self.dir.join(GAPS);
            fs::File::open(&gaps)
                .and_then(|d| d.sync_all())
                .map_err(io_err("fsync", &gaps))?;
        }
        fs::remove_file(&pending).map_err(io_err("remove", &pending))?;
        Ok(true)
    }

    /// Under the lock, with no manifest: removes staged files of batches that never
    /// committed. Returns what was removed.
    pub(crate) fn clear_staging(&self) -> Result<Vec<PathBuf>> {
        let staging = self.dir.join(STAGING);
        let entries = match fs::read_dir(&staging) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &staging, e)),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_err("list", &staging))?.path();
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path, e)),
            }
        }
        removed.sort();
        Ok(removed)
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
        if spec.gap_type.contains('\n') {
            return Err(Error::invalid("type", "it must be one line"));
        }
        check_tags(&spec.tags)?;
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
            } else if !self.gap_exists(dep) && !self.find_loop(dep, loop_cache)? {
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
                    if self.gap_exists(n) {
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
                    } else if self.gap_exists(dep) {
                        self.read_gap(dep)?.status == Status::Complete
                    } else {
                        loop_cache
                            .as_ref()
                            .and_then(|c| c.get(dep))
                            .is_some_and(Loop::is_complete)
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

    /// Gaps matching `filter`, in registry order, read from the index only.
    pub fn list(&self, filter: &Filter) -> Result<Vec<GapSummary>> {
        self.load_index_with(Some(filter))
    }

    /// The work an idle agent can take now: gaps that are not complete, out of scope or
    /// `blocked`, not under a live claim, whose dependencies are complete — gaps, loops, and
    /// the loops their parent loop depends on. Most severe first, then registry order.
    /// Returns index summaries; [`Registry::show`] reads a whole gap.
    pub fn ready(&self) -> Result<Vec<GapSummary>> {
        let gaps = self.load_index()?;
        let loops = self.load_loops()?;
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
        Ok(ready)
    }

    /// Why gap `id` is not ready; empty when it is.
    pub fn blockers(&self, id: &str) -> Result<Vec<Blocker>> {
        let gap = self.read_gap(id)?;
        let loops = self.load_loops()?;
        let lookup = |dep: &str| {
            if self.gap_exists(dep) {
                self.read_gap(dep).ok().map(|g| g.status)
            } else {
                None
            }
        };
        Ok(graph::blockers(
            &GapView {
                status: gap.status,
                claimant: gap.claimant.as_deref(),
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
        Ok(Summary::of(&self.load_index()?))
    }

    /// A deterministic markdown overview (see [`crate::render`]).
    pub fn render(&self) -> Result<String> {
        let gaps = self.load_index()?;
        let loops = self.load_loops()?;
        Ok(crate::render::render(&gaps, &loops))
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
        let now = Timestamp::now();
        if change(&mut gap, now)? {
            gap.revision += 1;
            gap.updated = now;
            self.write_gap(&gap)?;
            self.append_index(&[&gap])?;
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
                return Err(Error::invalid(
                    format!("claim of {id}"),
                    format!("{id} is {}; there is nothing to claim", gap.status),
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
                    let takeover = gap.claimant.is_some() && gap.status == Status::InProgress;
                    if !takeover {
                        gap.status_before_claim = Some(gap.status);
                    }
                    gap.claimant = Some(agent.to_owned());
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
        self.update(id, |gap, _| match gap.claimant.as_deref() {
            None => Ok(false),
            Some(holder) if holder != agent => Err(Error::conflict(
                id,
                ConflictDetail::ClaimedBy {
                    agent: holder.to_owned(),
                    expires_at: gap.claim_expires_at,
                },
            )),
            Some(_) => {
                gap.claimant = None;
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
                    if self.gap_exists(dep) {
                        let s = self.read_gap(dep)?.status;
                        if s != Status::Complete {
                            open.push(format!("{dep} ({s})"));
                        }
                    } else {
                        match loops.get(dep) {
                            Some(l) if l.is_complete() => {}
                            Some(l) => open.push(format!("loop {dep} ({})", l.status)),
                            None => open.push(format!("{dep} (missing)")),
                        }
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
            if !self.gap_exists(on) && !loops.contains_key(on) {
                return Err(self.loop_not_found(on, "dependency (gap or loop)"));
            }
            let mut deps = |n: &str| -> Option<Vec<String>> {
                if self.gap_exists(n) {
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
                let unfinished = if self.gap_exists(on) {
                    let s = self.read_gap(on)?.status;
                    (s != Status::Complete).then(|| format!("{on} ({s})"))
                } else {
                    loops
                        .get(on)
                        .filter(|l| l.status != "complete")
                        .map(|l| format!("loop {on} ({})", l.status))
                };
                if let Some(what) = unfinished {
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
    /// assert_eq!((gap.title.as_str(), gap.revision), ("new title", 2));
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
        if edit.gap_type.as_deref().is_some_and(|t| t.contains('\n')) {
            return Err(Error::invalid("type", "it must be one line"));
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
        let text = fs::read_to_string(&l.path).map_err(io_err("read", &l.path))?;
        let edited = loops::set_front_matter_field(&text, "status", status)
            .ok_or_else(|| Error::corrupt(&l.path, "no front matter between `---` lines"))?;
        if edited != text {
            self.opts.write(&l.path, edited.as_bytes())?;
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

fn check_tags(tags: &[String]) -> Result<()> {
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
    if agent.trim().is_empty() || agent.contains(char::is_whitespace) {
        return Err(Error::invalid(
            format!("agent id {agent:?}"),
            "it must be non-empty and contain no whitespace, like CC-3",
        ));
    }
    Ok(())
}

fn check_revision(gap: &Gap, expected: Option<u64>) -> Result<()> {
    match expected {
        Some(e) if e != gap.revision => Err(Error::conflict(
            &gap.id,
            ConflictDetail::Revision {
                expected: e,
                actual: gap.revision,
            },
        )),
        _ => Ok(()),
    }
}

pub(crate) fn view(g: &GapSummary) -> GapView<'_> {
    GapView {
        status: g.status,
        claimant: g.claimant.as_deref(),
        claim_expires_at: g.claim_expires_at,
        parent_loop: g.parent_loop.as_deref(),
        depends_on: &g.depends_on,
    }
}
