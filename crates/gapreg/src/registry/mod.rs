//! [`Registry`]: a registry directory and every operation on it — the engine
//! ([`ops::Engine`]) over the file document store ([`files`]) and the file coordination
//! store ([`coordination`]).
//!
//! | module | concern |
//! |---|---|
//! | `mod.rs` | the handle: opening, settings, paths |
//! | [`config`] | `config.yaml`, and where a registry may be |
//! | [`rules`] | pure validation: limits, ids, keys, one dependency rule |
//! | [`ops`] | the operations, once, over [`crate::store`]'s traits |
//! | [`files`] | gap files and the lock: the production [`crate::store::Documents`] |
//! | [`index_cache`] | the index cache's upkeep |
//! | [`loop_files`] | loop files |
//! | [`batch`] | all-or-nothing batches |
//! | [`coordination`] | counters and idempotency records: the production [`crate::store::Coordination`] |

mod backend;
mod batch;
mod claims;
pub(crate) mod config;
mod coordination;
pub(crate) mod files;
mod index_cache;
mod loop_files;
pub(crate) mod ops;
pub(crate) mod rules;
#[cfg(feature = "postgres")]
pub(crate) mod server;
mod shared;
mod switch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use atomic_file::dir::Dir;
use idreserve::{Id, Store};
use leaselock::mutex::{FileMutex, MutexGuard};

use crate::error::{Error, ErrorKind, Result};
use crate::layout::{
    CONFIG, GAPS, GITIGNORE_FILE, IDS, LEASES, LOCK, Layout, MAX_CONFIG_BYTES, REGISTRY_DIR,
    gitignore,
};
use crate::model::{Blocker, Filter, Gap, GapEdit, GapSpec, GapSummary, Status, Summary};
use crate::store::SystemClock;

pub use backend::Ids;
pub(crate) use batch::is_staged_name;
pub use config::{Backend, Config};
pub use rules::{MAX_BATCH, MAX_DESCRIPTION, SEQ_PREFIX, gap_prefix};

use backend::Coord;
use config::{check_not_nested, has_registry, parse_config};
use coordination::FileCoordination;
use files::{Files, Warner};
use ops::Engine;

/// A read's result with the documents it had to leave out because they could not be read
/// (damaged, of the wrong type, too large): a listing is never silently shorter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checked<T> {
    /// What was read.
    pub value: T,
    /// The files left out, and why.
    pub damaged: Vec<crate::index::DamagedFile>,
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
    pub(crate) files: Files,
    coord: Coord,
    config: Config,
    /// What opening it did that a person should hear of (a migration), passed to the
    /// warnings callback when one is set.
    notices: Vec<String>,
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
        Registry::create(repo_dir, config, None)
    }

    /// Like [`Registry::init`]; with `coordination: postgres`, the server is first reached
    /// (within `wait`, or the default wait) and its schema made current, *before* anything is
    /// created: a missing address or an unreachable server leaves nothing behind. (Without
    /// the check, as [`Registry::init`], the address may be set after.)
    ///
    /// # Errors
    ///
    /// As [`Registry::init`], and the server's errors (nothing created).
    pub fn init_reached(
        repo_dir: &Path,
        config: Config,
        wait: Option<std::time::Duration>,
    ) -> Result<Registry> {
        Registry::create(repo_dir, config, Some(wait))
    }

    /// [`Registry::init`]; reaching the server first when `reach` is given.
    fn create(
        repo_dir: &Path,
        mut config: Config,
        reach: Option<Option<std::time::Duration>>,
    ) -> Result<Registry> {
        if config.coordination == Backend::Postgres && config.namespace.is_none() {
            config.namespace = Some(config::new_namespace()?);
        }
        if let Some(ns) = &config.namespace {
            config::check_namespace(ns).map_err(|e| Error::invalid("namespace", e))?;
        }
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
        #[cfg(feature = "postgres")]
        if let (Backend::Postgres, Some(wait)) = (config.coordination, reach) {
            server::reach(&layout, wait.unwrap_or(server::DEFAULT_WAIT))?;
        }
        #[cfg(not(feature = "postgres"))]
        let _ = reach;
        let root = Dir::open(repo_dir)?.create_dir(REGISTRY_DIR)?;
        let opts = Self::options(&config);
        root.write(GITIGNORE_FILE, gitignore().as_bytes(), &opts)?;
        root.create_dir(GAPS)?;
        layout.loops(true)?;
        if !layout.shared() && config.coordination == Backend::Files {
            Store::create_at(&root, IDS, idreserve::Config::default())?;
        }
        let yaml = atomic_file::Format::Yaml.encode(dir.join(CONFIG), &config)?;
        root.write(CONFIG, &yaml, &atomic_file::Options::new())?;
        let reg = Registry::open(&dir)?;
        let _guard = reg.lock()?;
        reg.files.rebuild_index()?;
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
        Registry::with_config(&dir, config)
    }

    /// The registry directory `dir` with `config` (as read from its `config.yaml`, or about
    /// to be written there).
    fn with_config(dir: &Path, config: Config) -> Result<Registry> {
        let dir = dir.to_path_buf();
        let layout = Layout::new(dir.clone(), &config.loops_dir)?;
        check_not_nested(layout.repo())?;
        let timeout = Duration::from_secs(config.lock_timeout_secs);
        let files = Files {
            mutex: FileMutex::new(dir.join(LOCK)),
            opts: Self::options(&config),
            durable: config.durable,
            lock_timeout: timeout,
            layout: layout.clone(),
            dir: dir.clone(),
            warn: Warner::default(),
        };
        let (coord, notices) = match config.coordination {
            config::Backend::Files => {
                let (ids, notices) = shared::open_ids(&files, timeout)?;
                (
                    Coord::Files(Self::file_coordination(ids, layout, &dir)?),
                    notices,
                )
            }
            #[cfg(feature = "postgres")]
            config::Backend::Postgres => {
                let ns = config.namespace.as_deref().unwrap_or_default();
                (
                    Coord::Postgres(server::PgCoordination::new(&layout, ns, &files)?),
                    Vec::new(),
                )
            }
            #[cfg(not(feature = "postgres"))]
            config::Backend::Postgres => {
                return Err(Error::invalid(
                    "coordination: postgres",
                    "this build of gapreg has no PostgreSQL backend (the `postgres` feature)",
                ));
            }
        };
        Ok(Registry {
            files,
            coord,
            config,
            notices,
        })
    }

    /// The file coordination store over the id store `ids`.
    fn file_coordination(ids: Store, layout: Layout, dir: &Path) -> Result<FileCoordination> {
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
        Ok(FileCoordination {
            ids,
            layout,
            claims: std::sync::Arc::default(),
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
        for notice in self.notices.drain(..) {
            warn(&notice);
        }
        self.files.warn = Warner(Some(Arc::new(warn)));
        self
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
        self.files.lock_timeout = timeout;
        self.coord = match self.coord {
            Coord::Files(mut c) => {
                c.ids = c.ids.with_lock_timeout(timeout);
                Coord::Files(c)
            }
            #[cfg(feature = "postgres")]
            Coord::Postgres(c) => Coord::Postgres(c.with_wait(timeout)),
        };
        self
    }

    /// How long a mutation waits for the registry lock.
    pub fn lock_timeout(&self) -> Duration {
        self.files.lock_timeout
    }

    /// The registry directory (`.../.gapreg`).
    pub fn dir(&self) -> &Path {
        &self.files.dir
    }

    /// The leases on the repository's files: the lease root is the directory holding the
    /// registry, the lease files live in the registry's `leases/` (`opts`' own leases dir is
    /// replaced).
    pub fn leases(
        &self,
        opts: leaselock::lease::LeaseOptions,
    ) -> Result<leaselock::lease::Leases, leaselock::lease::LeaseError> {
        leaselock::lease::Leases::open_with(
            self.files.layout.repo(),
            opts.leases_dir(self.files.layout.coordination_path().join(LEASES)),
        )
    }

    /// The leases on the repository's files, wherever the registry keeps its coordination
    /// state: [`Registry::leases`] with files, the server's with `coordination: postgres`.
    pub fn lease_service(
        &self,
        opts: leaselock::lease::LeaseOptions,
    ) -> Result<Box<dyn leaselock::lease::LeaseService>> {
        match &self.coord {
            Coord::Files(_) => Ok(Box::new(self.leases(opts)?)),
            #[cfg(feature = "postgres")]
            Coord::Postgres(c) => Ok(Box::new(c.leases()?)),
        }
    }

    /// The id counters, wherever they live (on a server, each call asks it in turn).
    ///
    /// # Errors
    ///
    /// None yet: a store that must be opened first would report it here.
    pub fn ids(&self) -> Result<Ids<'_>> {
        match &self.coord {
            Coord::Files(c) => Ok(Ids::Files(&c.ids)),
            #[cfg(feature = "postgres")]
            Coord::Postgres(c) => Ok(Ids::Postgres(backend::PgIds(c))),
        }
    }

    /// The coordination server, connected (its tables current), with `coordination:
    /// postgres`; `None` with files.
    ///
    /// # Errors
    ///
    /// The server's, when it cannot be reached.
    #[cfg(feature = "postgres")]
    pub fn server(&self) -> Result<Option<&std::sync::Arc<leaselock::server::Server>>> {
        match &self.coord {
            Coord::Files(_) => Ok(None),
            Coord::Postgres(c) => Ok(Some(c.server()?)),
        }
    }

    /// Where the coordination state lives.
    pub fn backend(&self) -> Backend {
        self.config.coordination
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clone's id store (`ids/`); `None` when the counters are on a server (see
    /// [`Registry::ids`]).
    pub fn id_store(&self) -> Option<&Store> {
        match &self.coord {
            Coord::Files(c) => Some(&c.ids),
            #[cfg(feature = "postgres")]
            Coord::Postgres(_) => None,
        }
    }

    /// The directory of loop files (`..` resolved lexically: `.gapreg/../loop-scopes` is
    /// `loop-scopes` beside `.gapreg`).
    pub fn loops_dir(&self) -> PathBuf {
        self.files.layout.loops_path()
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.files.layout
    }

    /// The file of gap `id` (which need not exist).
    pub fn gap_path(&self, id: &str) -> PathBuf {
        self.files.gap_path(id)
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard> {
        self.files.lock_only()
    }

    /// The operations over this registry's files.
    fn engine(&self) -> Engine<'_, Files, Coord, SystemClock> {
        Engine::new(
            &self.files,
            &self.coord,
            &SystemClock,
            &self.config.default_prefix,
        )
    }

    /// The next id [`Registry::file`] would give for `prefix` (`OP` or `GAP-OP`), reserving
    /// nothing.
    pub fn next_id(&self, prefix: &str) -> Result<Id> {
        let prefix = rules::check_prefix(prefix)?;
        self.ids()?.peek(&prefix)
    }

    /// Files one gap: reserves its id and registry position, checks its loop and dependencies,
    /// writes `gaps/<ID>.yaml` and indexes it. Cost does not grow with the registry's size.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Invalid`] for a bad field, [`ErrorKind::NotFound`] (with close matches)
    /// for a missing parent loop or dependency, [`ErrorKind::Cycle`], [`ErrorKind::Timeout`].
    pub fn file(&self, spec: GapSpec) -> Result<Gap> {
        self.engine().file(spec)
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
        self.engine()
            .file_batch(vec![spec], Some(key))?
            .pop()
            .ok_or_else(|| Error::invalid("batch", "nothing filed"))
    }

    /// [`Registry::file_batch`], safe to retry with the same `key` (see
    /// [`Registry::file_idempotent`]).
    pub fn file_batch_idempotent(&self, specs: Vec<GapSpec>, key: &str) -> Result<Vec<Gap>> {
        self.engine().file_batch(specs, Some(key))
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
        self.engine().file_batch(specs, None)
    }

    /// One gap, read from its file.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], or [`ErrorKind::Corrupt`] if the file is damaged.
    pub fn show(&self, id: &str) -> Result<Gap> {
        self.files.settle()?;
        self.engine().show(id)
    }

    /// Gaps matching `filter`, in registry order, read from the index only. Gap files that
    /// cannot be read are left out: [`Registry::list_checked`] names them.
    pub fn list(&self, filter: &Filter) -> Result<Vec<GapSummary>> {
        Ok(self.list_checked(filter)?.value)
    }

    /// [`Registry::list`], with the gap files that could not be read (so that a shorter list
    /// is never mistaken for a complete one).
    pub fn list_checked(&self, filter: &Filter) -> Result<Checked<Vec<GapSummary>>> {
        self.engine().list(filter)
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
        self.engine().ready()
    }

    /// Why gap `id` is not ready; empty when it is.
    pub fn blockers(&self, id: &str) -> Result<Vec<Blocker>> {
        self.files.settle()?;
        self.engine().blockers(id)
    }

    /// Counts by status, severity and loop, from the index.
    pub fn summary(&self) -> Result<Summary> {
        Ok(self.summary_checked()?.value)
    }

    /// [`Registry::summary`], with the gap files that could not be read.
    pub fn summary_checked(&self) -> Result<Checked<Summary>> {
        let (gaps, damaged) = self.files.load_index()?;
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
        let (gaps, mut damaged) = self.files.load_index()?;
        let (loops, bad_loops) = self.files.load_loops_checked()?;
        damaged.extend(bad_loops);
        Ok(Checked {
            value: crate::render::render(&gaps, &loops),
            damaged,
        })
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
        self.engine().claim(id, agent, ttl)
    }

    /// Claims the most severe ready gap (of loop `parent_loop`, if given) for `agent`, so
    /// agents stop racing `ready` against `claim`: the ready gaps are tried in order until
    /// one claim wins. `None` when nothing is ready.
    ///
    /// ```
    /// use gapreg::{Config, GapSpec, Registry, Severity};
    /// let repo = tempfile::tempdir()?;
    /// let reg = Registry::init(repo.path(), Config::default())?;
    /// reg.file(GapSpec::new("minor", Severity::Low))?;
    /// reg.file(GapSpec::new("urgent", Severity::Critical))?;
    /// let gap = reg.claim_next("CC-1", None, None)?.expect("a ready gap");
    /// assert_eq!(gap.title, "urgent");
    /// assert_eq!(reg.claim_next("CC-2", None, None)?.expect("the other").title, "minor");
    /// assert!(reg.claim_next("CC-3", None, None)?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn claim_next(
        &self,
        agent: &str,
        ttl: Option<Duration>,
        parent_loop: Option<&str>,
    ) -> Result<Option<Gap>> {
        self.engine().claim_next(agent, ttl, parent_loop)
    }

    /// Releases `agent`'s claim and restores the status from before the claim (if the gap is
    /// still in progress). Unclaiming an unclaimed gap changes nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`] if another agent holds the claim (even an expired one).
    pub fn unclaim(&self, id: &str, agent: &str) -> Result<Gap> {
        self.engine().unclaim(id, agent)
    }

    /// Sets gap `id`'s status, if its revision is still `expected_revision` (when given).
    /// `complete` requires every dependency to be complete (a loop dependency: its front
    /// matter status); leaving `complete` requires that no complete gap depends on it (reopen
    /// those first). Setting the status it already has changes nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`] on a revision mismatch; [`ErrorKind::Invalid`] naming the
    /// incomplete dependencies, or the complete gaps that depend on it.
    pub fn set_status(
        &self,
        id: &str,
        status: Status,
        expected_revision: Option<u64>,
    ) -> Result<Gap> {
        self.engine().set_status(id, status, expected_revision)
    }

    /// Makes gap `id` depend on `on` (a gap or a loop), unless that closes a cycle. Adding an
    /// existing dependency changes nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Cycle`] spelling the cycle out (`GAP-OP-3 -> GAP-OP-1 -> GAP-OP-3`);
    /// [`ErrorKind::NotFound`] if `on` does not exist.
    pub fn add_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        self.engine().add_dependency(id, on)
    }

    /// Removes the dependency of gap `id` on `on`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Invalid`] if `id` does not depend on `on`.
    pub fn remove_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        self.engine().remove_dependency(id, on)
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
        self.engine().edit(id, edit, expected_revision)
    }
}
