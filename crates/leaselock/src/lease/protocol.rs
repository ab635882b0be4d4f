//! The lease protocols as plain functions over a [`LeaseStore`].
//!
//! Each function must be called while the root's mutex is held; that is what makes "check,
//! then write" atomic. The same code runs over files in production, over [`MemStore`] in
//! proptest, and under loom. The clock and the holder-liveness check come in through [`Ctx`],
//! so nothing here reads the time or `/proc` by itself.
//!
//! [`MemStore`]: super::store::MemStore

use std::time::{Duration, SystemTime};

use super::error::{ConflictInfo, LeaseError, LeaseErrorKind};
use super::path::scopes_overlap;
use super::record::{HolderFacts, Lease, Mode, TakeOver};
use super::store::{CorruptEntry, Entry, LeaseStore};

pub use super::status::LeaseStatus;

/// The time and liveness judgement one protocol step uses.
pub(crate) struct Ctx<'a> {
    /// Now, by the wall clock.
    pub now: SystemTime,
    /// Others' leases count as live until `expires_at + margin`.
    pub margin: Duration,
    /// `Some(proof)` if the holder with these facts is provably dead; `None` on any doubt.
    pub holder_dead: &'a dyn Fn(&HolderFacts) -> Option<String>,
}

impl Ctx<'_> {
    pub(crate) fn judge(&self, lease: &Lease) -> LeaseStatus {
        let deadline = lease.expires_at.checked_add(self.margin);
        if deadline.is_some_and(|d| self.now > d) {
            return LeaseStatus::Expired;
        }
        if let Some(reason) = (self.holder_dead)(&lease.facts) {
            return LeaseStatus::HolderDead { reason };
        }
        if self.now >= lease.expires_at {
            return LeaseStatus::ExpiredProtected {
                protected_until: deadline.unwrap_or(lease.expires_at),
            };
        }
        LeaseStatus::Live
    }
}

/// A normalized acquire request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub holder: String,
    pub mode: Mode,
    pub files: Vec<String>,
    pub dirs: Vec<String>,
    pub task: String,
    pub ttl: Duration,
}

impl Request {
    pub(crate) fn blocked_by(&self, lease: &Lease) -> bool {
        self.mode.conflicts_with(lease.mode)
            && scopes_overlap(&self.files, &self.dirs, &lease.files, &lease.dirs)
    }
}

/// The result of a successful acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The new lease.
    pub lease: Lease,
    /// Warnings: dead leases this grant took over (also recorded in `lease.took_over`).
    pub took_over: Vec<TakeOver>,
}

/// The pure conflict check: the leases among `leases` that block a `mode` request on `files`
/// and `dirs` at `now`, judging expiry with the holder's TTL plus `margin` (holder liveness is
/// not consulted here). Paths must be normalized.
///
/// ```
/// use leaselock::lease::{Mode, find_conflicts};
/// use std::time::{Duration, SystemTime};
///
/// let none: Vec<leaselock::lease::Lease> = Vec::new();
/// let files = vec!["src/lib.rs".to_owned()];
/// assert!(find_conflicts(Mode::Exclusive, &files, &[], &none, SystemTime::now(), Duration::ZERO).is_empty());
/// ```
pub fn find_conflicts<'a>(
    mode: Mode,
    files: &[String],
    dirs: &[String],
    leases: &'a [Lease],
    now: SystemTime,
    margin: Duration,
) -> Vec<&'a Lease> {
    leases
        .iter()
        .filter(|l| mode.conflicts_with(l.mode) && scopes_overlap(files, dirs, &l.files, &l.dirs))
        .filter(|l| l.expires_at.checked_add(margin).is_none_or(|d| now <= d))
        .collect()
}

fn conflict_info<S: LeaseStore>(store: &S, entry: Entry) -> ConflictInfo {
    let file = store.location(entry.id());
    match entry {
        Entry::Lease(lease) => ConflictInfo {
            id: lease.id.clone(),
            file,
            lease: Some(lease),
            corrupt: None,
        },
        Entry::Corrupt(c) => ConflictInfo {
            id: c.id,
            file: c.path,
            lease: None,
            corrupt: Some(c.reason),
        },
    }
}

/// A lease id for `token` and `holder`: `<token>-<slug of holder>`, safe as a file name.
pub(crate) fn lease_id(token: u64, holder: &str) -> String {
    let slug: String = holder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{token}-{slug}")
}

/// The refusal for unreadable lease files: each might describe a live lease on any path.
fn corrupt_refusal(corrupt: &[CorruptEntry]) -> LeaseError {
    let Some(first) = corrupt.first() else {
        return LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: "no corrupt entry".to_owned(),
        });
    };
    let more = match corrupt.len() {
        1 => String::new(),
        n => format!(
            " ({} more unreadable lease files: see the lease list)",
            n - 1
        ),
    };
    LeaseError::corrupt(
        &first.path,
        format!(
            "{}; an unreadable lease file might still describe a live lease on any path, so no \
             lease is granted until it is restored or removed (a forced release of {:?}, or a \
             forced sweep){more}",
            first.reason, first.id
        ),
    )
}

/// Grants `req` if nothing live conflicts with it; otherwise names every conflict.
///
/// A conflicting lease that looks dead is read again afresh before it is disregarded (a cache
/// must never break a lease); a dead one is taken over (removed) and noted in the new lease.
/// An unreadable entry refuses the grant with [`LeaseErrorKind::Corrupt`] (fail closed).
///
/// Once the lease file is durable the grant is acknowledged: removing the taken-over leases is
/// best effort (a dead lease left behind stays dead). A failure before that leaves no lease: a
/// lease file that was renamed into place but could not be made durable is removed again.
pub(crate) fn grant<S: LeaseStore>(
    store: &mut S,
    req: &Request,
    facts: HolderFacts,
    ctx: &Ctx<'_>,
) -> Result<Grant, LeaseError> {
    let expires_at = ctx.now.checked_add(req.ttl).ok_or_else(|| {
        LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: format!("the time to live {:?} is too long", req.ttl),
        })
    })?;
    let mut blocking: Vec<Entry> = Vec::new();
    let mut suspects: Vec<String> = Vec::new();
    let mut corrupt: Vec<CorruptEntry> = Vec::new();
    for entry in store.entries()? {
        match entry {
            Entry::Corrupt(c) => corrupt.push(c.clone()),
            Entry::Lease(lease) if req.blocked_by(lease) => {
                if ctx.judge(lease).blocks_grants() {
                    blocking.push(entry.clone());
                } else {
                    suspects.push(lease.id.clone());
                }
            }
            Entry::Lease(_) => {}
        }
    }
    if !corrupt.is_empty() {
        return Err(corrupt_refusal(&corrupt));
    }
    let mut dead: Vec<TakeOver> = Vec::new();
    for id in suspects {
        match store.get(&id)? {
            None => {}
            Some(Entry::Lease(lease)) if !req.blocked_by(&lease) => {}
            Some(Entry::Lease(lease)) => match ctx.judge(&lease) {
                status if status.blocks_grants() => blocking.push(Entry::Lease(lease)),
                status => dead.push(TakeOver {
                    reason: status.reason(&lease),
                    id: lease.id,
                    holder: lease.holder,
                    token: lease.token,
                }),
            },
            Some(Entry::Corrupt(c)) => return Err(corrupt_refusal(&[c])),
        }
    }
    if !blocking.is_empty() {
        let conflicts = blocking
            .into_iter()
            .map(|e| conflict_info(store, e))
            .collect();
        return Err(LeaseError::new(LeaseErrorKind::Conflict { conflicts }));
    }
    let token = store.next_token()?;
    let lease = Lease {
        id: lease_id(token, &req.holder),
        token,
        holder: req.holder.clone(),
        mode: req.mode,
        files: req.files.clone(),
        dirs: req.dirs.clone(),
        task: req.task.clone(),
        acquired_at: ctx.now,
        renewed_at: ctx.now,
        expires_at,
        ttl: req.ttl,
        facts,
        took_over: dead.clone(),
    };
    if let Err(failed) = store.put(&lease) {
        if failed.visible {
            // Not durable: take it back, so that the failure reported changed nothing.
            let _ = store.remove(&lease.id);
            let _ = store.sync();
        }
        return Err(failed.error);
    }
    // Acknowledged. What follows is best effort: a dead lease left behind stays dead, and the
    // next grant or sweep removes it.
    let mut removed = false;
    for old in &dead {
        removed |= store.remove(&old.id).unwrap_or(false);
    }
    if removed {
        let _ = store.sync();
    }
    Ok(Grant {
        lease,
        took_over: dead,
    })
}

/// Reads the lease `id` afresh and checks it is still `lease`'s grant (same holder and token).
pub(crate) fn current<S: LeaseStore>(
    store: &mut S,
    id: &str,
    holder: &str,
    token: Option<u64>,
) -> Result<Lease, LeaseError> {
    match store.get(id)? {
        None => Err(LeaseError::new(LeaseErrorKind::NotFound {
            id: id.to_owned(),
        })),
        Some(Entry::Corrupt(c)) => Err(LeaseError::new(LeaseErrorKind::Corrupt {
            path: c.path,
            reason: c.reason,
        })),
        Some(Entry::Lease(stored)) => {
            if stored.holder != holder || token.is_some_and(|t| t != stored.token) {
                Err(LeaseError::new(LeaseErrorKind::NotHolder {
                    id: id.to_owned(),
                    holder: stored.holder,
                    token: stored.token,
                    requested_by: holder.to_owned(),
                }))
            } else {
                Ok(stored)
            }
        }
    }
}

/// Extends the lease by its TTL (or `ttl`, which becomes its new TTL) from now; only its holder
/// (same holder name and token) may. The lease keeps the liveness binding it was granted with.
///
/// A lease whose time has passed can still be renewed as long as its file exists: nobody has
/// taken it over, so no conflicting grant exists.
pub(crate) fn renew<S: LeaseStore>(
    store: &mut S,
    lease: &Lease,
    ttl: Option<Duration>,
    ctx: &Ctx<'_>,
) -> Result<Lease, LeaseError> {
    let stored = current(store, &lease.id, &lease.holder, Some(lease.token))?;
    let mut renewed = stored.clone();
    if let Some(ttl) = ttl {
        renewed.ttl = ttl;
    }
    renewed.renewed_at = ctx.now;
    renewed.expires_at = ctx.now.checked_add(renewed.ttl).ok_or_else(|| {
        LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: format!("the time to live {:?} is too long", renewed.ttl),
        })
    })?;
    if let Err(failed) = store.put(&renewed) {
        if failed.visible {
            // Not durable: put the previous record back (best effort).
            let _ = store.put(&stored);
        }
        return Err(failed.error);
    }
    Ok(renewed)
}

/// Who asks for a release.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Releaser<'a> {
    /// Only the named holder may release (and, if given, only the grant with this token).
    Holder(&'a str, Option<u64>),
    /// Anyone: also removes an unreadable lease file.
    Force,
}

/// What a release removed.
#[allow(clippy::large_enum_variant)] // returned once per release; boxing buys nothing
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Released {
    /// A readable lease.
    Lease(Lease),
    /// An unreadable lease file (forced release only).
    Corrupt(CorruptEntry),
}

/// Removes lease `id`. Acknowledged once the removal is durable; if the directory cannot be
/// synced after the removal, a readable lease is written back and the error returned.
pub(crate) fn release<S: LeaseStore>(
    store: &mut S,
    id: &str,
    by: Releaser<'_>,
) -> Result<Released, LeaseError> {
    let released = match by {
        Releaser::Holder(holder, token) => Released::Lease(current(store, id, holder, token)?),
        Releaser::Force => match store.get(id)? {
            None => {
                return Err(LeaseError::new(LeaseErrorKind::NotFound {
                    id: id.to_owned(),
                }));
            }
            Some(Entry::Lease(l)) => Released::Lease(l),
            Some(Entry::Corrupt(c)) => Released::Corrupt(c),
        },
    };
    if store.remove(id)? {
        if let Err(e) = store.sync() {
            if let Released::Lease(lease) = &released {
                let _ = store.put(lease);
            }
            return Err(e);
        }
    }
    Ok(released)
}

/// Whether `lease` is still its holder's current grant: its file exists with the same holder
/// and fencing token, and its own `expires_at` (no margin: the holder must stop first) has not
/// passed.
pub(crate) fn verify<S: LeaseStore>(
    store: &mut S,
    lease: &Lease,
    now: SystemTime,
) -> Result<Lease, LeaseError> {
    let stored = current(store, &lease.id, &lease.holder, Some(lease.token))?;
    if now >= stored.expires_at {
        return Err(LeaseError::new(LeaseErrorKind::Expired {
            id: stored.id,
            expires_at: stored.expires_at,
        }));
    }
    Ok(stored)
}

/// One dead lease a sweep removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Swept {
    /// The removed lease.
    pub lease: Lease,
    /// Why it was dead.
    pub reason: String,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Dead leases removed, each with the reason.
    pub removed: Vec<Swept>,
    /// Unreadable lease files removed (forced sweep only).
    pub corrupt_removed: Vec<CorruptEntry>,
    /// Unreadable lease files left in place (sweep without force); they still block grants.
    pub corrupt_kept: Vec<CorruptEntry>,
}

/// Removes every dead lease; unreadable files are removed only with `force_corrupt` (and only
/// regular files: a symlink or a directory in the way is reported as kept, for a person to
/// remove). The removals are made durable with one directory sync at the end.
pub(crate) fn sweep<S: LeaseStore>(
    store: &mut S,
    ctx: &Ctx<'_>,
    force_corrupt: bool,
) -> Result<SweepReport, LeaseError> {
    let mut suspects = Vec::new();
    let mut corrupt = Vec::new();
    for entry in store.scan_entries()? {
        match entry {
            Entry::Lease(l) if !ctx.judge(l).blocks_grants() => suspects.push(l.id.clone()),
            Entry::Lease(_) => {}
            Entry::Corrupt(c) => corrupt.push(c.clone()),
        }
    }
    let mut report = SweepReport::default();
    let mut removed = false;
    for id in suspects {
        match store.get(&id)? {
            Some(Entry::Lease(lease)) => {
                let status = ctx.judge(&lease);
                if !status.blocks_grants() {
                    removed |= store.remove(&id)?;
                    report.removed.push(Swept {
                        reason: status.reason(&lease),
                        lease,
                    });
                }
            }
            Some(Entry::Corrupt(c)) => corrupt.push(c),
            None => {}
        }
    }
    for c in corrupt {
        if !force_corrupt {
            report.corrupt_kept.push(c);
            continue;
        }
        match store.remove(&c.id) {
            Ok(true) => {
                removed = true;
                report.corrupt_removed.push(c);
            }
            // Not under its id (a name that is not UTF-8), or not a regular file: a person
            // must remove it.
            Ok(false) => report.corrupt_kept.push(c),
            Err(e) if e.is_damaged() => report.corrupt_kept.push(c),
            Err(e) => return Err(e),
        }
    }
    if removed {
        store.sync()?;
    }
    Ok(report)
}

/// Every entry, owned.
pub(crate) fn entries<S: LeaseStore>(store: &mut S) -> Result<Vec<Entry>, LeaseError> {
    Ok(store.scan_entries()?.into_iter().cloned().collect())
}
