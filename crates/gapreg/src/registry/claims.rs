//! Claims as leases: one exclusive lease per claimed gap, on the path named by its id, in a
//! lease store of their own — the clone's files or the coordination server — so a claim taken
//! in one worktree or on one machine is seen by every other at once. Written once over
//! [`LeaseService`].

use std::collections::BTreeMap;

use leaselock::lease::{Binding, LeaseRequest, LeaseService};

use crate::error::Result;
use crate::store::{Claim, claimed_by};
use crate::time::Timestamp;

/// A claim without a TTL: held until released (leaselock needs a TTL; this one outlives
/// any agent).
pub(crate) const UNTIL_RELEASED: std::time::Duration =
    std::time::Duration::from_secs(50 * 365 * 86_400);

/// A lease holder's name for agent `agent`: leaselock refuses control characters, which an
/// agent name may hold, so they (and `%`) are written `%<hex>;`.
fn holder_of(agent: &str) -> String {
    let mut out = String::with_capacity(agent.len());
    for c in agent.chars() {
        if c.is_control() || c == '%' {
            out.push_str(&format!("%{:x};", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The agent whose lease holder name is `holder` (the inverse of [`holder_of`]).
fn agent_of(holder: &str) -> String {
    let mut out = String::with_capacity(holder.len());
    let mut rest = holder;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        let tail = &rest[p + 1..];
        match tail.find(';').and_then(|e| {
            let c = u32::from_str_radix(&tail[..e], 16)
                .ok()
                .and_then(char::from_u32)?;
            Some((c, e))
        }) {
            Some((c, e)) => {
                out.push(c);
                rest = &tail[e + 1..];
            }
            None => {
                out.push('%');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

fn timestamp(t: std::time::SystemTime) -> Timestamp {
    Timestamp::from_unix(
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// The claim as a lease's holder sees it: `None` expiry for a claim until released.
fn claim_of(lease: &leaselock::lease::Lease) -> Claim {
    let far = std::time::UNIX_EPOCH + UNTIL_RELEASED / 2;
    Claim {
        agent: agent_of(&lease.holder),
        expires_at: (lease.expires_at < far).then(|| timestamp(lease.expires_at)),
    }
}

/// Takes the claim on gap `id` for `agent` (see [`crate::store::Coordination::take_claim`]).
pub(crate) fn take(
    leases: &dyn LeaseService,
    id: &str,
    agent: &str,
    expires: Option<Timestamp>,
    now: Timestamp,
) -> Result<()> {
    let holder = holder_of(agent);
    let agent = holder.as_str();
    let ttl = expires.map_or(UNTIL_RELEASED, |e| {
        std::time::Duration::from_secs(e.unix().saturating_sub(now.unix()).max(1))
    });
    let listing = leases.list()?;
    if let Some((lease, _)) = listing
        .leases
        .iter()
        .find(|(l, st)| l.files == [id] && l.holder == agent && st.is_live())
    {
        leases.renew_id(&lease.id, agent, Some(ttl))?;
        return Ok(());
    }
    let request = LeaseRequest::exclusive(agent)
        .file(id)
        .ttl(ttl)
        .task(format!("claim of {id}"))
        .bind(Binding::TtlOnly);
    match leases.acquire(&request) {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => match e.conflicts().iter().find_map(|c| c.lease.as_ref()) {
            Some(l) => Err(claimed_by(id, &claim_of(l))),
            None => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Releases `agent`'s claim on gap `id`, if it holds one.
pub(crate) fn release(leases: &dyn LeaseService, id: &str, agent: &str) -> Result<()> {
    let holder = holder_of(agent);
    let agent = holder.as_str();
    for (lease, _) in leases.list()?.leases {
        if lease.files == [id] && lease.holder == agent {
            leases.release_id(&lease.id, agent)?;
        }
    }
    Ok(())
}

/// Every live claim: gap id → holder and expiry.
pub(crate) fn live(leases: &dyn LeaseService) -> Result<BTreeMap<String, Claim>> {
    Ok(leases
        .list()?
        .leases
        .into_iter()
        .filter(|(_, st)| st.blocks_grants())
        .filter_map(|(l, _)| Some((l.files.first()?.clone(), claim_of(&l))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::{agent_of, holder_of};

    #[test]
    fn agent_names_round_trip_through_lease_holders() {
        for agent in ["CC-3", "a%b", "x\u{1b}[2J", "%41;", "\u{9f}é%"] {
            let holder = holder_of(agent);
            assert!(!holder.chars().any(char::is_control), "{holder:?}");
            assert_eq!(agent_of(&holder), agent);
        }
    }
}
