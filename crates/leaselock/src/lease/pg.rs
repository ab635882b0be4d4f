//! Leases on the coordination server ([`PgLeases`]): the same grant protocol as the file
//! store (`protocol.rs`, run over [`LeaseStore`]), with the root's mutex replaced by a
//! transaction holding a per-namespace advisory lock, and the clock by the server's. Behind
//! the `postgres` feature.
//!
//! # Tables (component `leaselock`, schema `gapreg`)
//!
//! | table | holds |
//! |---|---|
//! | `lease_tokens (ns, last)` | each namespace's last fencing token |
//! | `leases (ns, id, token, record, session_pid, session_start)` | one row per lease; `record` is the lease's JSON, exactly as a lease file holds it (without the checksum header) and checked as strictly on every read |
//! | `lease_paths (ns, id, path, is_dir)` | the paths of each lease, indexed (`C` collation), so a grant reads only the leases that could overlap it |
//! | `lease_waiters (ns, ticket, record, session_pid, session_start)` | the queue: one row per waiting request, in arrival order (`ticket`), `record` the lease it asks for (token 0, expiring when its waiter gives up), bound to its waiter's session |
//!
//! # Why it holds
//!
//! - **One winner.** Every operation on a namespace runs in one transaction holding
//!   `pg_advisory_xact_lock(namespace)`: check and grant are atomic across every machine.
//! - **First come, first served.** A waiting request that meets a conflict takes a ticket in
//!   `lease_waiters`; no request is granted past an earlier live ticket it conflicts with, and
//!   a ticket whose waiter's session is gone holds up nobody.
//! - **One clock.** Expiry is judged at `clock_timestamp()` on the server, taken under the
//!   lock, with no skew margin: the hosts' clocks do not matter.
//! - **Fencing.** Tokens come from `lease_tokens`, raised above every token a lease row holds,
//!   in the granting transaction: strictly increasing per namespace, across server crashes
//!   (the commit is synchronous).
//! - **Session binding.** A lease granted with [`Binding::Session`] records the session the
//!   granting transaction runs in (its backend pid and start time), which holds its lock of
//!   life from then on ([`crate::server::Session`]); once no session holds that lock, the
//!   holder is dead (the server's analogue of a dead process) and the lease can be taken over.
//!   `pg_locks`, where the lock is looked for, shows every user's sessions. Otherwise the TTL
//!   decides.
//! - **Waiting, first come first served.** A refused request with a wait takes a ticket in
//!   `lease_waiters`, in the refusing transaction, and from then on every request — waiting or
//!   not, from any machine — that conflicts with an earlier live ticket is refused as if that
//!   ticket were a lease: the waiters are granted in the order they were refused, and a newcomer
//!   cannot barge past them. The waiter listens on the namespace's channel and is woken by
//!   `NOTIFY` when a lease is released or removed, a ticket leaves the queue, or the first
//!   blocker expires. A ticket lives while its waiter's session does (its lock of life), and
//!   leaves when the waiter is granted or gives up. A session's end sends nothing, so while a
//!   session-bound lease or ticket blocks it, the waiter also looks again after 50 ms, doubling
//!   up to once a second.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use postgres::Transaction;
use postgres::types::Type;

use super::error::{ConflictInfo, LeaseError, LeaseErrorKind};
use super::file_store::check_id;
use super::liveness;
use super::options::{Binding, LeaseRequest};
use super::protocol::{self, Ctx, Grant, Released, Releaser, Request, SweepReport};
use super::record::{HolderFacts, Lease, validate};
use super::scope::{Scope, ttl_ok};
use super::store::{CorruptEntry, Entry, LeaseStore, WriteFailed};
use super::{Listing, service::LeaseService};
use crate::server::{Server, ServerError, Session, live_session};

/// The `leaselock` component's migrations, in order (see [`Server::migrate`]).
pub const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE gapreg.lease_tokens (
    ns text PRIMARY KEY,
    last bigint NOT NULL CHECK (last >= 0)
);
CREATE TABLE gapreg.leases (
    ns text NOT NULL,
    id text NOT NULL,
    token bigint NOT NULL CHECK (token > 0),
    record text NOT NULL,
    session_pid integer,
    session_start bigint,
    PRIMARY KEY (ns, id)
);
CREATE INDEX leases_token ON gapreg.leases (ns, token);
CREATE TABLE gapreg.lease_paths (
    ns text NOT NULL,
    id text NOT NULL,
    path text COLLATE \"C\" NOT NULL,
    is_dir boolean NOT NULL,
    FOREIGN KEY (ns, id) REFERENCES gapreg.leases (ns, id) ON DELETE CASCADE
);
CREATE INDEX lease_paths_path ON gapreg.lease_paths (ns, path);
CREATE INDEX lease_paths_id ON gapreg.lease_paths (ns, id);
",
    "
CREATE TABLE gapreg.lease_waiters (
    ns text NOT NULL,
    ticket bigserial NOT NULL,
    record text NOT NULL,
    session_pid integer NOT NULL,
    session_start bigint NOT NULL,
    PRIMARY KEY (ns, ticket)
);
",
];

/// The component name of these tables in `gapreg.schema_version`.
pub const COMPONENT: &str = "leaselock";

/// The longest namespace.
const MAX_NAMESPACE: usize = 200;

/// The leases of one namespace on a coordination server, for paths inside a local root.
#[derive(Debug, Clone)]
pub struct PgLeases {
    server: Arc<Server>,
    ns: String,
    scope: Scope,
    lock_key: i64,
    channel: String,
}

/// A 64-bit FNV-1a hash: the advisory lock key and channel of a namespace (a collision only
/// serializes two namespaces, it never mixes them).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn server_error(e: ServerError) -> LeaseError {
    LeaseError::new(LeaseErrorKind::Server { source: e })
}

impl PgLeases {
    /// The leases of namespace `ns` on `server`, for paths inside `root` (an existing local
    /// directory: paths are normalized against it and links under it refused). Creates or
    /// migrates the tables when needed.
    ///
    /// # Errors
    ///
    /// [`LeaseErrorKind::Server`] when the server cannot be used, [`LeaseErrorKind::InvalidRequest`]
    /// for an empty or overlong namespace.
    pub fn open(
        server: Arc<Server>,
        ns: &str,
        root: impl AsRef<Path>,
    ) -> Result<PgLeases, LeaseError> {
        if ns.is_empty() || ns.len() > MAX_NAMESPACE || ns.chars().any(char::is_control) {
            return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: format!(
                    "namespace {ns:?} must be 1 to {MAX_NAMESPACE} bytes without control characters"
                ),
            }));
        }
        server
            .migrate(COMPONENT, MIGRATIONS)
            .map_err(server_error)?;
        let hash = fnv(&format!("leaselock:{ns}"));
        Ok(PgLeases {
            scope: Scope::open(root.as_ref())?,
            lock_key: i64::from_ne_bytes(hash.to_ne_bytes()),
            channel: format!("gapreg_leases_{hash:016x}"),
            ns: ns.to_owned(),
            server,
        })
    }

    /// The server.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Runs `step` in one transaction under the namespace's advisory lock, with the server's
    /// clock; `scope` limits what a grant reads to the leases that could overlap it.
    fn locked<T>(
        &self,
        scope: Option<&Request>,
        mut step: impl FnMut(&mut PgStore<'_, '_>, &Ctx<'_>) -> Result<T, LeaseError>,
    ) -> Result<T, LeaseError> {
        self.server
            .transaction(false, |tx| self.under_lock(tx, scope, &mut step))
    }

    /// The body of [`PgLeases::locked`], in the transaction `tx`.
    fn under_lock<T>(
        &self,
        tx: &mut Transaction<'_>,
        scope: Option<&Request>,
        step: &mut impl FnMut(&mut PgStore<'_, '_>, &Ctx<'_>) -> Result<T, LeaseError>,
    ) -> Result<T, LeaseError> {
        let server = &*self.server;
        // The lock first (the subquery), then the clock: one round trip.
        let ms: i64 = tx
            .query_typed_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8
                   FROM (SELECT pg_advisory_xact_lock($1)::text) AS locked",
                &[(&self.lock_key, Type::INT8)],
            )
            .map_err(|e| server_error(server.error(e)))?
            .get(0);
        let now = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        let dead = RefCell::new(BTreeSet::new());
        let me = &self.scope.me;
        let holder_dead = |facts: &HolderFacts| match &facts.session {
            Some(key) => dead
                .borrow()
                .contains(key)
                .then(|| format!("its server session {key} has ended")),
            None => liveness::holder_dead(facts, me),
        };
        let ctx = Ctx {
            now,
            margin: Duration::ZERO,
            holder_dead: &holder_dead,
        };
        let mut store = PgStore {
            tx,
            leases: self,
            scope,
            loaded: None,
            dead: &dead,
        };
        let value = step(&mut store, &ctx)?;
        Ok(value)
    }

    /// Grants the request if no live lease conflicts with it (see [`super::Leases::acquire`]);
    /// with a [`LeaseRequest::wait`], waits for a release or an expiry, woken by the server.
    ///
    /// # Errors
    ///
    /// As [`super::Leases::acquire`], and [`LeaseErrorKind::Server`].
    pub fn acquire(&self, req: &LeaseRequest) -> Result<Grant, LeaseError> {
        let request = self.scope.request(req)?;
        let start = Instant::now();
        // This request's place in the queue, once it has waited.
        let mut ticket: Option<i64> = None;
        // While only leases bound to sessions block the request, nothing tells the waiter when
        // such a session ends: it looks again after this long, doubling up to a second.
        let mut session_poll = Duration::from_millis(50);
        loop {
            // Read before the look: a notification after it counts.
            let seen = self.server.notified(&self.channel);
            let mut server_now = None;
            let left = req.wait.map(|w| w.saturating_sub(start.elapsed()));
            let mut attempt = |store: &mut PgStore<'_, '_>,
                               ctx: &Ctx<'_>,
                               session: Option<Session>|
             -> Result<Result<Grant, LeaseError>, LeaseError> {
                server_now = Some(ctx.now);
                let key = session.map(|s| s.key());
                let session_key = match req.binding {
                    Binding::Session => key.as_deref(),
                    _ => None,
                };
                let facts = self.scope.facts_for(req.binding, session_key)?;
                let queue = store.queue()?;
                // A ticket stands while its waiter's session lives and its deadline (the
                // ticket's expiry, on the server's clock) has not passed: a waiter that gave
                // up without leaving the queue, or froze, holds up nobody past it.
                let stands =
                    |w: &Waiter| w.live && w.lease.as_ref().is_none_or(|l| l.expires_at > ctx.now);
                let mine = ticket.filter(|t| queue.iter().any(|w| w.ticket == *t && stands(w)));
                let ahead: Vec<ConflictInfo> = queue
                    .iter()
                    .filter(|w| stands(w) && mine.is_none_or(|m| w.ticket < m))
                    .filter_map(|w| w.lease.as_ref().map(|l| (w.ticket, l)))
                    .filter(|(_, l)| request.blocked_by(l))
                    .map(|(t, l)| ConflictInfo {
                        id: l.id.clone(),
                        file: self.location_of(&format!("queue/{t}")),
                        lease: Some(l.clone()),
                        corrupt: None,
                    })
                    .collect();
                let gone: Vec<i64> = queue
                    .iter()
                    .filter(|w| !stands(w))
                    .map(|w| w.ticket)
                    .collect();
                store.dequeue(&gone)?;
                let result = if ahead.is_empty() {
                    protocol::grant(store, &request, facts.clone(), ctx)
                } else {
                    Err(LeaseError::new(LeaseErrorKind::Conflict {
                        conflicts: ahead,
                    }))
                };
                match result {
                    Ok(grant) => {
                        store.dequeue(&mine.into_iter().collect::<Vec<_>>())?;
                        Ok(Ok(grant))
                    }
                    Err(e) if e.is_conflict() => {
                        ticket = mine;
                        if let (None, Some(left), Some(key)) = (mine, left, &key) {
                            if !left.is_zero() {
                                let waiting = Lease {
                                    id: String::new(),
                                    token: 0,
                                    holder: request.holder.clone(),
                                    mode: request.mode,
                                    files: request.files.clone(),
                                    dirs: request.dirs.clone(),
                                    task: request.task.clone(),
                                    acquired_at: ctx.now,
                                    renewed_at: ctx.now,
                                    expires_at: ctx
                                        .now
                                        .checked_add(left.min(Duration::from_secs(366 * 86_400)))
                                        .unwrap_or(ctx.now),
                                    ttl: request.ttl,
                                    facts: HolderFacts {
                                        session: Some(key.clone()),
                                        ..facts
                                    },
                                    took_over: Vec::new(),
                                };
                                ticket = Some(store.enqueue(&waiting, session)?);
                            }
                        }
                        // Committed: the ticket (and the removal of dead ones) stands.
                        Ok(Err(e))
                    }
                    Err(e) => Err(e),
                }
            };
            // A waiting request's ticket, and a session lease, are bound to the session the
            // transaction runs in, whichever that is after a reconnection.
            let result = if matches!(req.binding, Binding::Session) || req.wait.is_some() {
                // A waiting request waits for the server only as long as it has left.
                let within = left.unwrap_or(Duration::MAX);
                self.server
                    .session_transaction_within(within, false, |tx, session| {
                        self.under_lock(tx, Some(&request), &mut |store, ctx| {
                            attempt(store, ctx, Some(session))
                        })
                    })
            } else {
                self.locked(Some(&request), |store, ctx| attempt(store, ctx, None))
            }
            .and_then(|r| r);
            let Some(wait) = req.wait else {
                return result;
            };
            let err = match result {
                Err(e) if e.is_conflict() && start.elapsed() < wait => e,
                other => {
                    if other.is_err() {
                        self.leave_queue(ticket);
                    }
                    return other;
                }
            };
            // Listening since before the look (on this connection), the waiter can wait;
            // listening only now (the first refusal, or a new connection), it looks again
            // first: a release between the look and the LISTEN would otherwise be missed.
            match self.server.listen(&self.channel) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    self.leave_queue(ticket);
                    return Err(server_error(e));
                }
            }
            let left = wait.saturating_sub(start.elapsed());
            let blockers = || err.conflicts().iter().filter_map(|c| c.lease.as_ref());
            let first_expiry = blockers().map(|l| l.expires_at).min();
            let until_expiry = match (first_expiry, server_now) {
                (Some(e), Some(now)) => e
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO)
                    .saturating_add(Duration::from_millis(5)),
                _ => left,
            };
            let mut slice = left.min(until_expiry);
            // A blocker whose death no notification announces — bound to a session, or to a
            // process on this host (which this waiter can judge) — is looked at again soon.
            let silent_death = |l: &Lease| {
                l.facts.session.is_some()
                    || (l.facts.pid != 0 && l.facts.host == self.scope.me.host)
            };
            if blockers().any(silent_death) {
                slice = slice.min(session_poll);
                session_poll = (session_poll * 2).min(Duration::from_secs(1));
            }
            if let Err(e) = self.server.wait_notification(&self.channel, seen, slice) {
                self.leave_queue(ticket);
                return Err(server_error(e));
            }
        }
    }

    /// Takes the request with `ticket` out of the queue, waking those behind it. Best effort:
    /// a ticket left behind goes when its session does.
    fn leave_queue(&self, ticket: Option<i64>) {
        // One try, no waiting for the server: a ticket left behind dies with its session or
        // at its deadline, whichever comes first.
        if let Some(t) = ticket {
            let _ = self.server.transaction_within(Duration::ZERO, false, |tx| {
                self.under_lock(tx, None, &mut |store, _| store.dequeue(&[t]))
            });
        }
    }

    /// Renews the lease `id` held by `holder` (see [`super::Leases::renew_id`]).
    ///
    /// # Errors
    ///
    /// As [`super::Leases::renew_id`], and [`LeaseErrorKind::Server`].
    pub fn renew_id(
        &self,
        id: &str,
        holder: &str,
        ttl: Option<Duration>,
    ) -> Result<Lease, LeaseError> {
        check_id(id)?;
        let ttl = ttl.map(ttl_ok).transpose()?;
        self.locked(None, |store, ctx| {
            let lease = protocol::current(store, id, holder, None)?;
            protocol::renew(store, &lease, ttl, ctx)
        })
    }

    /// Renews `lease` by its TTL (see [`super::Leases::renew`]).
    ///
    /// # Errors
    ///
    /// As [`super::Leases::renew`], and [`LeaseErrorKind::Server`].
    pub fn renew(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.locked(None, |store, ctx| protocol::renew(store, lease, None, ctx))
    }

    /// Releases `lease`, which must still be its holder's grant.
    ///
    /// # Errors
    ///
    /// As [`super::Leases::release`], and [`LeaseErrorKind::Server`].
    pub fn release(&self, lease: &Lease) -> Result<Released, LeaseError> {
        self.locked(None, |store, _| {
            protocol::release(
                store,
                &lease.id,
                Releaser::Holder(&lease.holder, Some(lease.token)),
            )
        })
    }

    /// Releases the lease `id` on behalf of `holder`.
    ///
    /// # Errors
    ///
    /// As [`super::Leases::release_id`], and [`LeaseErrorKind::Server`].
    pub fn release_id(&self, id: &str, holder: &str) -> Result<Released, LeaseError> {
        check_id(id)?;
        self.locked(None, |store, _| {
            protocol::release(store, id, Releaser::Holder(holder, None))
        })
    }

    /// Removes the lease `id` whoever holds it, an unreadable one included.
    ///
    /// # Errors
    ///
    /// As [`super::Leases::force_release`], and [`LeaseErrorKind::Server`].
    pub fn force_release(&self, id: &str) -> Result<Released, LeaseError> {
        check_id(id)?;
        self.locked(None, |store, _| {
            protocol::release(store, id, Releaser::Force)
        })
    }

    /// Every lease with its status (judged on the server's clock), and every unreadable row.
    ///
    /// # Errors
    ///
    /// [`LeaseErrorKind::Server`].
    pub fn list(&self) -> Result<Listing, LeaseError> {
        self.locked(None, |store, ctx| {
            let mut listing = Listing::default();
            for entry in protocol::entries(store)? {
                match entry {
                    Entry::Lease(lease) => {
                        let status = ctx.judge(&lease);
                        listing.leases.push((lease, status));
                    }
                    Entry::Corrupt(c) => listing.corrupt.push(c),
                }
            }
            Ok(listing)
        })
    }

    /// Removes every dead lease (see [`super::Leases::sweep`]).
    ///
    /// # Errors
    ///
    /// [`LeaseErrorKind::Server`].
    pub fn sweep(&self) -> Result<SweepReport, LeaseError> {
        self.locked(None, |store, ctx| protocol::sweep(store, ctx, false))
    }

    /// Like [`PgLeases::sweep`], also removing unreadable rows.
    ///
    /// # Errors
    ///
    /// [`LeaseErrorKind::Server`].
    pub fn sweep_forced(&self) -> Result<SweepReport, LeaseError> {
        self.locked(None, |store, ctx| protocol::sweep(store, ctx, true))
    }

    /// Checks that `lease` is still current (see [`super::Leases::verify`]).
    ///
    /// # Errors
    ///
    /// As [`super::Leases::verify`], and [`LeaseErrorKind::Server`].
    pub fn verify(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.locked(None, |store, ctx| protocol::verify(store, lease, ctx.now))
    }

    fn location_of(&self, id: &str) -> PathBuf {
        PathBuf::from(format!(
            "postgres {} lease {}/{id}",
            self.server.name(),
            self.ns
        ))
    }
}

impl LeaseService for PgLeases {
    fn acquire(&self, req: &LeaseRequest) -> Result<Grant, LeaseError> {
        PgLeases::acquire(self, req)
    }
    fn renew_id(&self, id: &str, holder: &str, ttl: Option<Duration>) -> Result<Lease, LeaseError> {
        PgLeases::renew_id(self, id, holder, ttl)
    }
    fn release_id(&self, id: &str, holder: &str) -> Result<Released, LeaseError> {
        PgLeases::release_id(self, id, holder)
    }
    fn force_release(&self, id: &str) -> Result<Released, LeaseError> {
        PgLeases::force_release(self, id)
    }
    fn list(&self) -> Result<Listing, LeaseError> {
        PgLeases::list(self)
    }
    fn sweep(&self) -> Result<SweepReport, LeaseError> {
        PgLeases::sweep(self)
    }
    fn sweep_forced(&self) -> Result<SweepReport, LeaseError> {
        PgLeases::sweep_forced(self)
    }
    fn verify(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        PgLeases::verify(self, lease)
    }
    fn location(&self) -> String {
        format!("postgres {} namespace {}", self.server.name(), self.ns)
    }
    fn root(&self) -> &Path {
        &self.scope.root
    }
}

/// The store of one transaction: rows of one namespace.
pub(crate) struct PgStore<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    leases: &'t PgLeases,
    /// A grant's request: only leases whose paths could overlap it are read.
    scope: Option<&'t Request>,
    loaded: Option<Vec<Entry>>,
    /// Sessions found ended while reading (the keys of [`HolderFacts::session`]).
    dead: &'t RefCell<BTreeSet<String>>,
}

/// Every ancestor directory of `path` (`a/b/c`: `a/b`, `a`), and `path` itself.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| p.rfind('/').map(|i| &p[..i]))
}

/// The columns of a lease row, with whether its session (if it has one) lives.
static SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT l.id, l.record, l.session_pid IS NULL OR {} FROM gapreg.leases l",
        live_session("l.session_pid", "l.session_start")
    )
});

impl PgStore<'_, '_> {
    fn err(&self, e: postgres::Error) -> LeaseError {
        server_error(self.leases.server.error(e))
    }

    fn entry(&self, row: &postgres::Row) -> Entry {
        let id: String = row.get(0);
        let record: String = row.get(1);
        let alive: bool = row.get(2);
        let decoded = serde_json::from_str::<Lease>(&record)
            .map_err(|e| format!("it is not a valid lease record: {e}"))
            .and_then(|lease| validate(&lease, &id).map(|()| lease));
        match decoded {
            Ok(lease) => {
                if let (Some(key), false) = (&lease.facts.session, alive) {
                    self.dead.borrow_mut().insert(key.clone());
                }
                Entry::Lease(lease)
            }
            Err(reason) => Entry::Corrupt(CorruptEntry {
                path: self.leases.location_of(&id),
                id,
                reason,
            }),
        }
    }

    fn load(&mut self) -> Result<(), LeaseError> {
        if self.loaded.is_some() {
            return Ok(());
        }
        let ns = &self.leases.ns;
        let rows = match self.scope.filter(|r| !r.dirs.iter().any(String::is_empty)) {
            None => self.tx.query_typed(
                &format!("{} WHERE l.ns = $1 ORDER BY l.id", *SELECT),
                &[(ns, Type::TEXT)],
            ),
            Some(req) => {
                let paths: Vec<&str> = req.files.iter().chain(&req.dirs).map(String::as_str).collect();
                let mut above: Vec<&str> = paths.iter().flat_map(|p| ancestors(p)).collect();
                above.push("");
                above.sort_unstable();
                above.dedup();
                let under: Vec<String> = req.dirs.iter().map(|d| format!("{d}/")).collect();
                // A lease overlaps the request when one of its paths is one of the request's,
                // a directory above one of them, or lies under one of the request's
                // directories: `path` in [d/, d0) is everything under d/ ('0' follows '/').
                self.tx.query_typed(
                    &format!(
                        "{} WHERE l.ns = $1 AND l.id IN (
                            SELECT p.id FROM gapreg.lease_paths p
                             WHERE p.ns = $1 AND (p.path = ANY($2) OR (p.is_dir AND p.path = ANY($3)))
                            UNION
                            SELECT p.id FROM gapreg.lease_paths p, unnest($4::text[]) d
                             WHERE p.ns = $1 AND p.path >= d
                               AND p.path < left(d, -1) || '0'
                        ) ORDER BY l.id",
                        *SELECT
                    ),
                    &[
                        (ns, Type::TEXT),
                        (&paths, Type::TEXT_ARRAY),
                        (&above, Type::TEXT_ARRAY),
                        (&under, Type::TEXT_ARRAY),
                    ],
                )
            }
        }
        .map_err(|e| self.err(e))?;
        let entries = rows.iter().map(|r| self.entry(r)).collect();
        self.loaded = Some(entries);
        Ok(())
    }
}

/// A waiting request, as the queue holds it.
struct Waiter {
    ticket: i64,
    /// The lease it asks for; `None` if the row is unreadable (it then blocks nobody, and
    /// goes with its session).
    lease: Option<Lease>,
    /// Whether its waiter's session lives.
    live: bool,
}

impl PgStore<'_, '_> {
    /// The namespace's queue, in arrival order.
    fn queue(&mut self) -> Result<Vec<Waiter>, LeaseError> {
        let rows = self
            .tx
            .query_typed(
                &format!(
                    "SELECT w.ticket, w.record, {} FROM gapreg.lease_waiters w
                      WHERE w.ns = $1 ORDER BY w.ticket",
                    live_session("w.session_pid", "w.session_start")
                ),
                &[(&self.leases.ns, Type::TEXT)],
            )
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let ticket: i64 = r.get(0);
                let record: String = r.get(1);
                let lease = serde_json::from_str::<Lease>(&record)
                    .ok()
                    .filter(|l| l.facts.session.is_some())
                    .map(|l| Lease {
                        id: format!("waiting-{ticket}"),
                        ..l
                    });
                Waiter {
                    ticket,
                    lease,
                    live: r.get(2),
                }
            })
            .collect())
    }

    /// Puts `waiting` (the lease a refused request waits for) at the end of the queue, bound
    /// to `session`; its ticket.
    fn enqueue(&mut self, waiting: &Lease, session: Option<Session>) -> Result<i64, LeaseError> {
        let Some(session) = session else {
            return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: "a waiting request needs its session".to_owned(),
            }));
        };
        let record = serde_json::to_string(waiting).map_err(|e| {
            LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: format!("the request cannot be encoded: {e}"),
            })
        })?;
        Ok(self
            .tx
            .query_typed_one(
                "INSERT INTO gapreg.lease_waiters (ns, record, session_pid, session_start)
                 VALUES ($1, $2, $3, $4) RETURNING ticket",
                &[
                    (&self.leases.ns, Type::TEXT),
                    (&record, Type::TEXT),
                    (&session.pid, Type::INT4),
                    (&session.started_us, Type::INT8),
                ],
            )
            .map_err(|e| self.err(e))?
            .get(0))
    }

    /// Takes `tickets` out of the queue (waking the waiters, who may now be first).
    fn dequeue(&mut self, tickets: &[i64]) -> Result<(), LeaseError> {
        if tickets.is_empty() {
            return Ok(());
        }
        self.tx
            .query_typed(
                "DELETE FROM gapreg.lease_waiters WHERE ns = $1 AND ticket = ANY($2)
                 RETURNING pg_notify($3, '')::text",
                &[
                    (&self.leases.ns, Type::TEXT),
                    (&tickets, Type::INT8_ARRAY),
                    (&self.leases.channel, Type::TEXT),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

impl LeaseStore for PgStore<'_, '_> {
    fn entries(&mut self) -> Result<Vec<&Entry>, LeaseError> {
        self.load()?;
        Ok(self.loaded.iter().flatten().collect())
    }

    fn get(&mut self, id: &str) -> Result<Option<Entry>, LeaseError> {
        let row = self
            .tx
            .query_typed_opt(
                &format!("{} WHERE l.ns = $1 AND l.id = $2", *SELECT),
                &[(&self.leases.ns, Type::TEXT), (&id, Type::TEXT)],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| self.entry(&r)))
    }

    fn put(&mut self, lease: &Lease) -> Result<(), WriteFailed> {
        let record = String::from_utf8(lease.to_payload()?).map_err(|e| {
            LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: format!("the lease cannot be encoded: {e}"),
            })
        })?;
        let session = lease.facts.session.as_deref().and_then(Session::parse);
        let (pid, start) = (session.map(|s| s.pid), session.map(|s| s.started_us));
        let token = i64::try_from(lease.token).unwrap_or(i64::MAX);
        let paths: Vec<&str> = lease
            .files
            .iter()
            .chain(&lease.dirs)
            .map(String::as_str)
            .collect();
        let dirs: Vec<bool> = lease
            .files
            .iter()
            .map(|_| false)
            .chain(lease.dirs.iter().map(|_| true))
            .collect();
        // The row and, for a new lease, its paths: one statement (a renewal keeps the paths).
        self.tx
            .execute_typed(
                "WITH lease AS (
                     INSERT INTO gapreg.leases (ns, id, token, record, session_pid, session_start)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (ns, id) DO UPDATE SET record = $4, token = $3
                     RETURNING xmax = 0 AS inserted)
                 INSERT INTO gapreg.lease_paths (ns, id, path, is_dir)
                 SELECT $1, $2, p, d FROM lease, unnest($7::text[], $8::bool[]) AS t(p, d)
                  WHERE lease.inserted",
                &[
                    (&self.leases.ns, Type::TEXT),
                    (&lease.id, Type::TEXT),
                    (&token, Type::INT8),
                    (&record, Type::TEXT),
                    (&pid, Type::INT4),
                    (&start, Type::INT8),
                    (&paths, Type::TEXT_ARRAY),
                    (&dirs, Type::BOOL_ARRAY),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<bool, LeaseError> {
        let n = self
            .tx
            .query_typed(
                "DELETE FROM gapreg.leases WHERE ns = $1 AND id = $2
                 RETURNING pg_notify($3, '')::text",
                &[
                    (&self.leases.ns, Type::TEXT),
                    (&id, Type::TEXT),
                    (&self.leases.channel, Type::TEXT),
                ],
            )
            .map_err(|e| self.err(e))?
            .len();
        // Waiters are woken at commit (NOTIFY is transactional).
        Ok(n > 0)
    }

    fn sync(&mut self) -> Result<(), LeaseError> {
        // Durable at commit (synchronous).
        Ok(())
    }

    fn next_token(&mut self) -> Result<u64, LeaseError> {
        let last: i64 = self
            .tx
            .query_typed_one(
                "INSERT INTO gapreg.lease_tokens AS t (ns, last)
                 VALUES ($1, 1 + coalesce((SELECT max(token) FROM gapreg.leases WHERE ns = $1), 0))
                 ON CONFLICT (ns) DO UPDATE SET last = 1 + greatest(t.last,
                     coalesce((SELECT max(token) FROM gapreg.leases WHERE ns = $1), 0))
                 RETURNING last",
                &[(&self.leases.ns, Type::TEXT)],
            )
            .map_err(|e| self.err(e))?
            .get(0);
        u64::try_from(last).map_err(|_| {
            LeaseError::corrupt(
                self.leases.location_of("lease_tokens"),
                format!("the fencing-token counter is {last}"),
            )
        })
    }

    fn location(&self, id: &str) -> PathBuf {
        self.leases.location_of(id)
    }
}
