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
//! - **Damaged state fails closed.** A lease file that fails its checksum, cannot be decoded,
//!   is inconsistent or is not a regular file is reported (path and reason) by
//!   [`Leases::list`], [`Leases::sweep`] and [`Leases::check`]; because it might describe a live
//!   lease on any path, **every acquire is refused** with [`LeaseErrorKind::Corrupt`] naming it
//!   until [`Leases::force_release`] (with its file stem as the id) or [`Leases::sweep_forced`]
//!   removes it. A plain [`Leases::sweep`] reports it and leaves it.
//! - **Fencing tokens never go back.** A missing or damaged counter, or one below a token
//!   recorded elsewhere, refuses grants until [`Leases::repair`] rebuilds it above every token
//!   recorded anywhere plus [`REPAIR_MARGIN`].
//! - **Nothing is followed.** The leases directory and every file in it are reached through an
//!   [`atomic_file::dir::Dir`]: a symlink, FIFO or entry of the wrong type is refused with
//!   [`LeaseErrorKind::Corrupt`] naming it ([`LeaseError::is_damaged`]), never followed.
//! - **An acknowledged result is the truth, a reported failure changed nothing.** Each
//!   operation is acknowledged once its lease file (or its removal) is durable; a failure
//!   before that is undone; what follows is best effort and repaired by the next reader.
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
//! One checksummed JSON file per lease, `<leases dir>/<id>.lease.json` (default leases dir:
//! `<root>/.leaselock/`, [`DEFAULT_LEASES_DIR`]), each replaced atomically and durably. `token.json` holds the
//! fencing-token counter (created with the directory); `generation` a random marker that every
//! change replaces (and the last token again); `index.json` a cache for new processes. Reads
//! are served from a cache verified against the files: when the generation is unchanged an
//! acquire reads only that small file; otherwise it lists the directory, `fstat`s each lease
//! file and re-reads only changed files. [`Leases::list`] and [`Leases::sweep`] always rescan,
//! so edits made outside this library (a damaged file) are seen there and by every new
//! process at once, and by a warm handle's acquire after the next rescan. The file layout, the
//! cache's rules and which `fsync` makes each acknowledged write durable are in the
//! `file_store` module's source docs and the crate README.

mod error;
mod file_store;

mod liveness;
mod open;
mod options;
mod path;
#[cfg(feature = "postgres")]
mod pg;
mod protocol;
mod record;
mod repair;
mod root_lock;
mod scope;
mod service;
mod status;
mod store;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

use crate::sync::unmodelled::Arc;
use crate::sync::{Mutex, MutexGuard};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub use atomic_file::Durability;
pub use error::{ConflictInfo, LeaseError, LeaseErrorKind};
pub use file_store::{GENERATION_FILE, INDEX_FILE, LOCK_FILE, TOKEN_FILE};
pub use file_store::{REPAIR_MARGIN, TokenState};
pub use options::{Binding, Clock, LeaseOptions, LeaseRequest, SystemClock};
pub use path::{Claim, normalize_path, overlaps};
#[cfg(feature = "postgres")]
pub use pg::{COMPONENT as PG_COMPONENT, MIGRATIONS as PG_MIGRATIONS, PgLeases};
pub use protocol::{Grant, LeaseStatus, Released, SweepReport, Swept, find_conflicts};
pub use record::LEASE_SUFFIX;
pub use record::{HolderFacts, Lease, Mode, TakeOver};
pub use repair::RepairReport;
pub use service::LeaseService;
pub use store::CorruptEntry;

/// The leases directory, relative to the root, when [`LeaseOptions::leases_dir`] is not set:
/// `.leaselock`. (gapreg sets its own, `.gapreg/leases`.) Everything leaselock keeps lives in
/// it: lease files ([`LEASE_SUFFIX`]), [`TOKEN_FILE`], [`GENERATION_FILE`], [`INDEX_FILE`],
/// the root mutex's [`LOCK_FILE`] and its queue, and, for an instant while the directory is
/// first created, a staging directory beside it named `.<dir>`[`STAGING_INFIX`]`<pid>-<random>`.
pub const DEFAULT_LEASES_DIR: &str = ".leaselock";

/// What the staging directory's name holds after `.<leases dir name>`: `.init-` and the
/// creator's pid and a random number. Only ever seen while a leases directory is created (or
/// left by a creator that died then).
pub const STAGING_INFIX: &str = ".init-";

use atomic_file::dir::Dir;

use crate::mutex::FileMutex;
use file_store::FileStore;
use open::open_leases_dir;
use protocol::{Ctx, Releaser};
use record::trunc_ms;
use scope::{Scope, ttl_ok};

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
    scope: Scope,
    dir: PathBuf,
    mutex: FileMutex,
    opts: LeaseOptions,
    store: Mutex<FileStore>,
}

impl Leases {
    /// Opens the leases of `root` (an existing directory) with default [`LeaseOptions`],
    /// creating the leases directory if needed.
    pub fn open(root: impl AsRef<Path>) -> Result<Leases, LeaseError> {
        Leases::open_with(root, LeaseOptions::new())
    }

    /// Opens the leases of `root` with `opts`.
    ///
    /// The leases directory is reached from `root` (canonicalized: the caller's choice) one
    /// component at a time without following a symlink, so a leases directory (or any
    /// directory on its way, such as `.gapreg` of `.gapreg/leases`) planted as a link to elsewhere is refused ([`LeaseErrorKind::Corrupt`]) instead of
    /// followed. (A configured leases directory outside `root` is the caller's choice too:
    /// only its last component is checked.) A missing leases directory is created atomically
    /// together with its fencing-token counter: made under a temporary name, `token.json`
    /// written into it, renamed into place.
    pub fn open_with(root: impl AsRef<Path>, opts: LeaseOptions) -> Result<Leases, LeaseError> {
        let scope = Scope::open(root.as_ref())?;
        let root = &scope.root;
        let dir = match &opts.leases_dir {
            Some(dir) => root.join(dir),
            None => root.join(DEFAULT_LEASES_DIR),
        };
        let leases_dir = open_leases_dir(root, &scope.root_canonical, &dir, opts.durability)?;
        Ok(Leases {
            mutex: FileMutex::in_dir(&leases_dir, file_store::LOCK_FILE),
            store: Mutex::new(FileStore::new(leases_dir, dir.clone(), opts.durability)),
            scope,
            dir,
            opts,
        })
    }

    /// The root directory, absolute.
    pub fn root(&self) -> &Path {
        &self.scope.root
    }

    /// The directory holding the lease files.
    pub fn leases_dir(&self) -> &Path {
        &self.dir
    }

    /// This process's liveness facts, as recorded in the leases it takes.
    pub fn holder_facts(&self) -> &HolderFacts {
        &self.scope.me
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
                liveness::holder_dead(facts, &self.scope.me)
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
        let request = self.scope.request(req)?;
        let start = Instant::now();
        let mut backoff = Duration::from_millis(2);
        loop {
            let facts = self.scope.facts_for(req.binding, None)?;
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
        let ttl = ttl_ok(ttl)?;
        self.locked(|store, ctx| protocol::renew(store, lease, Some(ttl), ctx))
    }

    /// Renews the lease `id` held by `holder`, for callers that kept only the id (a command
    /// line): by its own TTL from now, or by `ttl`, which it keeps from then on. Like
    /// [`Leases::renew`] but without the token check: any current grant of `holder` under
    /// that id.
    ///
    /// ```
    /// # use leaselock::lease::{LeaseRequest, Leases};
    /// # use std::time::Duration;
    /// # let root = tempfile::tempdir()?;
    /// let leases = Leases::open(root.path())?;
    /// let id = leases.acquire(&LeaseRequest::exclusive("a").file("f"))?.lease.id;
    /// let renewed = leases.renew_id(&id, "a", Some(Duration::from_secs(60)))?;
    /// assert_eq!(renewed.ttl, Duration::from_secs(60));
    /// assert!(leases.renew_id(&id, "b", None).is_err()); // not b's
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn renew_id(
        &self,
        id: &str,
        holder: &str,
        ttl: Option<Duration>,
    ) -> Result<Lease, LeaseError> {
        file_store::check_id(id)?;
        let ttl = ttl.map(ttl_ok).transpose()?;
        self.locked(|store, ctx| {
            let lease = protocol::current(store, id, holder, None)?;
            protocol::renew(store, &lease, ttl, ctx)
        })
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
    /// // A damaged lease file blocks every grant (fail closed), and says so.
    /// std::fs::write(leases.leases_dir().join("7-agent.lease.json"), "{ truncated")?;
    /// let err = leases.acquire(&LeaseRequest::exclusive("me").file("a.txt")).unwrap_err();
    /// assert!(err.is_damaged() && err.to_string().contains("7-agent.lease.json"), "{err}");
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
