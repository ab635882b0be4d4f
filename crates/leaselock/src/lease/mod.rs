//! Leases: a named holder's time-limited claim on files and directory prefixes inside a root.
//!
//! ```
//! use leaselock::lease::{LeaseRequest, Leases};
//! use std::time::Duration;
//!
//! let root = tempfile::tempdir()?;
//! let leases = Leases::open(root.path())?;
//!
//! let grant = leases.acquire(
//!     &LeaseRequest::exclusive("integration-developer")
//!         .dir("backend/pkg/integrations/qualys/")
//!         .file("backend/go.mod")
//!         .task("Implement the Qualys client")
//!         .ttl(Duration::from_secs(3600)),
//! )?;
//! let lease = grant.lease;
//!
//! // An overlapping exclusive request is refused and names the holder.
//! let err = leases
//!     .acquire(&LeaseRequest::exclusive("backend-tester").file("backend/pkg/integrations/qualys/client_test.go"))
//!     .unwrap_err();
//! assert_eq!(err.conflicts()[0].holder(), Some("integration-developer"));
//!
//! // Writes guarded by the fencing check run only while the lease is current.
//! let written = leases.run_if_current(&lease, |_| "wrote client.go")?;
//! assert_eq!(written, "wrote client.go");
//!
//! let lease = leases.renew(&lease)?;
//! leases.release(&lease)?;
//! assert!(leases.list()?.leases.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Rules
//!
//! - **Conflicts.** An exclusive lease conflicts with every overlapping lease; shared leases
//!   conflict only with exclusive ones. Paths overlap when they are the same file, when a file
//!   lies under a directory prefix, or when one prefix contains the other (see [`overlaps`]).
//!   Paths are normalized lexically ([`normalize_path`]) and must stay inside the root.
//! - **Atomicity.** Every operation runs under the root's mutex (a `FileMutex` on
//!   `<leases dir>/lock`): it lists the leases, decides, and writes before anyone else looks.
//! - **Fencing.** Every grant gets a token strictly greater than every earlier grant's in this
//!   root, stored durably in `token.json`. [`Leases::verify`] checks a lease is still its
//!   holder's current grant; [`Leases::run_if_current`] runs a write under the root's mutex only
//!   if so. A registry that receives writes can also keep the highest token it has seen and
//!   refuse lower ones.
//! - **Death, never on doubt.** A lease is dead when `expires_at + skew margin` has passed
//!   (judged with the TTL stored in the lease, not the reader's), or when its holder is provably
//!   dead on this host: no process with its pid, a zombie, a process with its pid but another
//!   start time (pid reuse, from `/proc/<pid>/stat` field 22), or another boot id. Holders on
//!   other hosts (or other pid namespaces) die only by expiry. An acquire that overlaps a dead
//!   lease takes it over and records a [`TakeOver`] warning naming the old holder, in the
//!   [`Grant`] and in the new lease's file.
//! - **Corrupt files.** A lease file that cannot be decoded is reported (path and reason) by
//!   [`Leases::list`], [`Leases::sweep`] and in every refused acquire; because it might
//!   describe a live lease on any path, it **blocks every grant** until
//!   [`Leases::force_release`] (with its file stem as the id) or [`Leases::sweep_forced`]
//!   removes it. A plain [`Leases::sweep`] reports it and leaves it.
//!
//! # Clocks
//!
//! Expiry uses the wall clock ([`SystemTime`]), compared across processes and hosts: the
//! assumption is that clocks agree to within the skew margin
//! ([`LeaseOptions::skew_margin`], default 5 s). Others treat a lease as live until
//! `expires_at + margin`; the holder's own [`Leases::verify`] treats it as over at `expires_at`,
//! so a holder stops writing before anyone may take over. Renew well before `expires_at`.
//!
//! # Storage
//!
//! One JSON file per lease, `<leases dir>/<id>.lease.json` (default leases dir:
//! `<root>/.gapreg/leases/`), each replaced atomically and durably through [`atomic_file`].
//! `token.json` holds the fencing-token counter; `generation` holds a random number that every
//! change replaces. Reads are served from a cache: when the generation is unchanged an acquire
//! reads only that small file; otherwise it lists the directory, `stat`s each lease file and re-parses only
//! changed files (`index.json` carries the cache to new processes). [`Leases::list`] and
//! [`Leases::sweep`] always rescan, so edits made outside this library (a damaged file) are
//! seen there and by every new process at once, and by a warm handle's acquire after the next
//! rescan. See the crate README for the reasoning and measurements.

mod error;
mod file_store;
mod liveness;
mod path;
mod protocol;
mod record;
mod root_lock;
mod store;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

pub use atomic_file::Durability;
pub use error::{ConflictInfo, LeaseError, LeaseErrorKind};
pub use path::{Claim, normalize_path, overlaps};
pub use protocol::{Grant, LeaseStatus, Released, SweepReport, Swept, find_conflicts};
pub use record::{HolderFacts, Lease, Mode, TakeOver};
pub use store::CorruptEntry;

use crate::mutex::FileMutex;
use file_store::FileStore;
use protocol::{Ctx, Releaser, Request};
use record::trunc_ms;

/// A source of wall-clock time; inject one to test expiry without waiting.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Settings for [`Leases::open_with`].
///
/// ```
/// use leaselock::lease::{Durability, LeaseOptions, Leases};
/// use std::time::Duration;
///
/// let root = tempfile::tempdir()?;
/// let opts = LeaseOptions::new()
///     .leases_dir(root.path().join("locks"))
///     .skew_margin(Duration::from_secs(2))
///     .durability(Durability::NoSync);
/// let leases = Leases::open_with(root.path(), opts)?;
/// assert_eq!(leases.leases_dir(), root.path().join("locks"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    leases_dir: Option<PathBuf>,
    skew_margin: Duration,
    lock_timeout: Duration,
    liveness: bool,
    durability: Durability,
    clock: Arc<dyn Clock>,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions::new()
    }
}

impl LeaseOptions {
    /// Defaults: leases in `<root>/.gapreg/leases/`, 5 s skew margin, 30 s mutex timeout,
    /// liveness checks on, full durability, the system clock.
    pub fn new() -> LeaseOptions {
        LeaseOptions {
            leases_dir: None,
            skew_margin: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(30),
            liveness: true,
            durability: Durability::Full,
            clock: Arc::new(SystemClock),
        }
    }

    /// Where lease files live (absolute, or relative to the root).
    pub fn leases_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.leases_dir = Some(dir.into());
        self
    }

    /// How long after `expires_at` others still treat a lease as live (clock skew allowance).
    pub fn skew_margin(mut self, margin: Duration) -> Self {
        self.skew_margin = margin;
        self
    }

    /// How long an operation waits for the root's mutex before [`LeaseErrorKind::Timeout`].
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Whether a holder proven dead on this host loses its lease before expiry (default on).
    pub fn liveness(mut self, enabled: bool) -> Self {
        self.liveness = enabled;
        self
    }

    /// How lease and token files are synced (default [`Durability::Full`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The wall clock used for grant times and expiry.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Which process a lease's life is tied to, besides its time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Binding {
    /// The process taking the lease (the default): once it is provably dead on this host, so
    /// is the lease.
    #[default]
    ThisProcess,
    /// Another, longer-lived process on this host (an agent, a shell), by pid: its start time
    /// is recorded, so a reused pid does not keep the lease alive.
    Process(u32),
    /// No process: the lease lives until it expires (or is released). For short-lived callers
    /// such as a command-line tool.
    TtlOnly,
}

/// What to acquire: built with [`LeaseRequest::exclusive`] or [`LeaseRequest::shared`].
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    holder: String,
    mode: Mode,
    files: Vec<String>,
    dirs: Vec<String>,
    task: String,
    ttl: Duration,
    wait: Option<Duration>,
    binding: Binding,
}

impl LeaseRequest {
    /// The default time to live, one hour.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    fn new(holder: &str, mode: Mode) -> LeaseRequest {
        LeaseRequest {
            holder: holder.to_owned(),
            mode,
            files: Vec::new(),
            dirs: Vec::new(),
            task: String::new(),
            ttl: Self::DEFAULT_TTL,
            wait: None,
            binding: Binding::ThisProcess,
        }
    }

    /// Ties the lease's life to a process (default: the one taking it); see [`Binding`].
    pub fn bind(mut self, binding: Binding) -> Self {
        self.binding = binding;
        self
    }

    /// An exclusive (writer's) request by `holder`.
    pub fn exclusive(holder: &str) -> LeaseRequest {
        LeaseRequest::new(holder, Mode::Exclusive)
    }

    /// A shared (read-only reviewer's) request by `holder`.
    pub fn shared(holder: &str) -> LeaseRequest {
        LeaseRequest::new(holder, Mode::Shared)
    }

    /// Claims one file.
    pub fn file(mut self, path: impl Into<String>) -> Self {
        self.files.push(path.into());
        self
    }

    /// Claims several files.
    pub fn files<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.files.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Claims a directory prefix (the directory and everything under it).
    pub fn dir(mut self, path: impl Into<String>) -> Self {
        self.dirs.push(path.into());
        self
    }

    /// Claims several directory prefixes.
    pub fn dirs<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.dirs.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Describes the work, for people reading conflicts.
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.task = task.into();
        self
    }

    /// Sets the time to live (default [`LeaseRequest::DEFAULT_TTL`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// On conflict, retry with backoff for up to `wait` before returning the conflict.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }
}

/// Every lease in the root, with each one's status as others judge it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Listing {
    /// Readable leases, ordered by id.
    pub leases: Vec<(Lease, LeaseStatus)>,
    /// Unreadable lease files; each blocks every grant.
    pub corrupt: Vec<CorruptEntry>,
}

/// The leases of one root directory.
///
/// Cheap to share between threads (`&Leases` is enough); every operation takes the root's
/// mutex, so several `Leases` in several processes may work on the same root.
#[derive(Debug)]
pub struct Leases {
    root: PathBuf,
    root_canonical: PathBuf,
    dir: PathBuf,
    mutex: FileMutex,
    opts: LeaseOptions,
    me: HolderFacts,
    store: Mutex<FileStore>,
}

fn holder_ok(holder: &str) -> Result<(), LeaseError> {
    if holder.is_empty() || holder.len() > 200 || holder.chars().any(char::is_control) {
        return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: format!(
                "holder name {holder:?} must be 1 to 200 bytes without control characters"
            ),
        }));
    }
    Ok(())
}

impl Leases {
    /// Opens the leases of `root` (an existing directory) with default [`LeaseOptions`],
    /// creating the leases directory if needed.
    pub fn open(root: impl AsRef<Path>) -> Result<Leases, LeaseError> {
        Leases::open_with(root, LeaseOptions::new())
    }

    /// Opens the leases of `root` with `opts`.
    pub fn open_with(root: impl AsRef<Path>, opts: LeaseOptions) -> Result<Leases, LeaseError> {
        let root = root.as_ref();
        let root_canonical = std::fs::canonicalize(root)
            .map_err(|e| LeaseError::io(root, "open the lease root", e))?;
        let root = std::path::absolute(root)
            .map_err(|e| LeaseError::io(root, "resolve the lease root", e))?;
        let dir = match &opts.leases_dir {
            Some(dir) => root.join(dir),
            None => root.join(".gapreg").join("leases"),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| LeaseError::io(&dir, "create the leases directory", e))?;
        Ok(Leases {
            mutex: FileMutex::new(dir.join("lock")),
            store: Mutex::new(FileStore::new(dir.clone(), opts.durability)),
            me: liveness::current_facts(),
            root,
            root_canonical,
            dir,
            opts,
        })
    }

    /// The root directory, absolute.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding the lease files.
    pub fn leases_dir(&self) -> &Path {
        &self.dir
    }

    /// This process's liveness facts, as recorded in the leases it takes.
    pub fn holder_facts(&self) -> &HolderFacts {
        &self.me
    }

    /// The liveness facts a grant with `binding` records.
    fn facts_for(&self, binding: Binding) -> Result<HolderFacts, LeaseError> {
        match binding {
            Binding::ThisProcess => Ok(self.me.clone()),
            Binding::Process(pid) => liveness::facts_of(pid, &self.me).ok_or_else(|| {
                LeaseError::new(LeaseErrorKind::InvalidRequest {
                    reason: format!(
                        "no process {pid} is running on this host to tie the lease to; give \
                         the pid of the agent or shell that does the work"
                    ),
                })
            }),
            Binding::TtlOnly => Ok(liveness::ttl_only(&self.me)),
        }
    }

    fn normalize(&self, path: &str) -> Result<String, LeaseError> {
        normalize_path(&self.root, path).or_else(|e| {
            if Path::new(path).is_absolute() {
                normalize_path(&self.root_canonical, path).map_err(|_| e)
            } else {
                Err(e)
            }
        })
    }

    fn request(&self, req: &LeaseRequest) -> Result<Request, LeaseError> {
        holder_ok(&req.holder)?;
        if req.ttl.is_zero() {
            return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: "the time to live is zero".to_owned(),
            }));
        }
        if req.files.is_empty() && req.dirs.is_empty() {
            return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: "the request claims no files and no directories".to_owned(),
            }));
        }
        let norm = |paths: &[String]| -> Result<Vec<String>, LeaseError> {
            let mut out = paths
                .iter()
                .map(|p| self.normalize(p))
                .collect::<Result<Vec<_>, _>>()?;
            out.sort();
            out.dedup();
            Ok(out)
        };
        Ok(Request {
            holder: req.holder.clone(),
            mode: req.mode,
            files: norm(&req.files)?,
            dirs: norm(&req.dirs)?,
            task: req.task.clone(),
            ttl: req.ttl,
        })
    }

    /// Runs `step` with the root's mutex held and the store and a context at hand.
    fn locked<T>(
        &self,
        step: impl FnOnce(&mut FileStore, &Ctx<'_>) -> Result<T, LeaseError>,
    ) -> Result<T, LeaseError> {
        let _guard = root_lock::lock_root(&self.mutex, self.opts.lock_timeout)?;
        let mut store = self.store();
        let holder_dead = |facts: &HolderFacts| {
            if self.opts.liveness {
                liveness::holder_dead(facts, &self.me)
            } else {
                None
            }
        };
        let ctx = Ctx {
            now: trunc_ms(self.opts.clock.now()),
            margin: self.opts.skew_margin,
            holder_dead: &holder_dead,
        };
        let result = step(&mut store, &ctx);
        store.finish();
        result
    }

    fn store(&self) -> MutexGuard<'_, FileStore> {
        // A panic while the store was borrowed cannot leave it inconsistent with the files:
        // every cached entry is revalidated against its file's identity on use.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Grants the request if no live lease conflicts with it.
    ///
    /// On conflict returns [`LeaseErrorKind::Conflict`] listing every blocking lease, unless
    /// the request has a [`LeaseRequest::wait`]: then it retries with backoff until the wait
    /// runs out and returns the last conflict. Dead overlapping leases are taken over
    /// ([`Grant::took_over`]).
    pub fn acquire(&self, req: &LeaseRequest) -> Result<Grant, LeaseError> {
        let request = self.request(req)?;
        let start = Instant::now();
        let mut backoff = Duration::from_millis(2);
        loop {
            let facts = self.facts_for(req.binding)?;
            let result =
                self.locked(|store, ctx| protocol::grant(store, &request, facts.clone(), ctx));
            match (result, req.wait) {
                (Err(e), Some(wait)) if e.is_conflict() && start.elapsed() < wait => {
                    let left = wait.saturating_sub(start.elapsed());
                    let jitter = fastrand::u64(0..=u64::try_from(backoff.as_millis()).unwrap_or(1));
                    std::thread::sleep((backoff + Duration::from_millis(jitter)).min(left));
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                }
                (result, _) => return result,
            }
        }
    }

    /// Extends `lease` by its TTL from now. Only the holder's current grant (same holder name
    /// and token) can be renewed; the returned lease has the new `expires_at` and keeps the
    /// liveness binding it was granted with (see [`Binding`]). A lease past its `expires_at` can still be renewed while its
    /// file exists (nobody took it over, so nothing conflicting was granted).
    pub fn renew(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.locked(|store, ctx| protocol::renew(store, lease, None, ctx))
    }

    /// Like [`Leases::renew`], with a new time to live that the lease keeps from now on.
    pub fn renew_for(&self, lease: &Lease, ttl: Duration) -> Result<Lease, LeaseError> {
        if ttl.is_zero() {
            return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: "the time to live is zero".to_owned(),
            }));
        }
        self.locked(|store, ctx| protocol::renew(store, lease, Some(ttl), ctx))
    }

    /// Releases `lease`; it must still be its holder's grant (same holder and token), else
    /// [`LeaseErrorKind::NotHolder`] or [`LeaseErrorKind::NotFound`].
    pub fn release(&self, lease: &Lease) -> Result<Released, LeaseError> {
        self.locked(|store, _| {
            protocol::release(
                store,
                &lease.id,
                Releaser::Holder(&lease.holder, Some(lease.token)),
            )
        })
    }

    /// Releases the lease `id` on behalf of `holder` (for callers that kept only the id).
    pub fn release_id(&self, id: &str, holder: &str) -> Result<Released, LeaseError> {
        file_store::check_id(id)?;
        self.locked(|store, _| protocol::release(store, id, Releaser::Holder(holder, None)))
    }

    /// Removes the lease file `id` whoever holds it, including an unreadable one (its file
    /// stem is its id, as shown in [`CorruptEntry::id`]).
    pub fn force_release(&self, id: &str) -> Result<Released, LeaseError> {
        file_store::check_id(id)?;
        self.locked(|store, _| protocol::release(store, id, Releaser::Force))
    }

    /// Every lease, with its status, and every unreadable lease file.
    pub fn list(&self) -> Result<Listing, LeaseError> {
        self.locked(|store, ctx| {
            let mut listing = Listing::default();
            for entry in protocol::entries(store)? {
                match entry {
                    store::Entry::Lease(lease) => {
                        let status = ctx.judge(&lease);
                        listing.leases.push((lease, status));
                    }
                    store::Entry::Corrupt(c) => listing.corrupt.push(c),
                }
            }
            Ok(listing)
        })
    }

    /// Removes every dead lease and reports each with the reason. Unreadable lease files are
    /// reported in [`SweepReport::corrupt_kept`] and left in place (they might be live); use
    /// [`Leases::sweep_forced`] to remove them too.
    ///
    /// ```
    /// use leaselock::lease::{LeaseRequest, Leases};
    ///
    /// let root = tempfile::tempdir()?;
    /// let leases = Leases::open(root.path())?;
    /// // A damaged lease file blocks every grant, and says so.
    /// std::fs::write(leases.leases_dir().join("7-agent.lease.json"), "{ truncated")?;
    /// let err = leases.acquire(&LeaseRequest::exclusive("me").file("a.txt")).unwrap_err();
    /// assert!(err.conflicts()[0].corrupt.is_some());
    ///
    /// let report = leases.sweep()?; // reported, kept
    /// assert_eq!(report.corrupt_kept[0].id, "7-agent");
    /// let report = leases.sweep_forced()?; // removed
    /// assert_eq!(report.corrupt_removed.len(), 1);
    /// leases.acquire(&LeaseRequest::exclusive("me").file("a.txt"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sweep(&self) -> Result<SweepReport, LeaseError> {
        self.locked(|store, ctx| protocol::sweep(store, ctx, false))
    }

    /// Like [`Leases::sweep`], and also removes unreadable lease files
    /// ([`SweepReport::corrupt_removed`]).
    pub fn sweep_forced(&self) -> Result<SweepReport, LeaseError> {
        self.locked(|store, ctx| protocol::sweep(store, ctx, true))
    }

    /// Checks that `lease` is still current: its file exists with the same holder and fencing
    /// token and its `expires_at` has not passed. Returns the stored lease.
    pub fn verify(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.locked(|store, ctx| protocol::verify(store, lease, ctx.now))
    }

    /// Runs `write` only if `lease` is current (see [`Leases::verify`]), holding the root's
    /// mutex throughout so no one can take the lease over in between. Keep `write` short: every
    /// lease operation in the root waits for it. `write` must not call this `Leases` (that
    /// would wait for the mutex it is holding).
    pub fn run_if_current<T>(
        &self,
        lease: &Lease,
        write: impl FnOnce(&Lease) -> T,
    ) -> Result<T, LeaseError> {
        self.locked(|store, ctx| {
            let current = protocol::verify(store, lease, ctx.now)?;
            Ok(write(&current))
        })
    }
}
