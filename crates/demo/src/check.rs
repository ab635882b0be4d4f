//! The checker of `gapreg demo`: the agents' [`Report`]s against the registry they shared.

use std::collections::{BTreeMap, BTreeSet};

use gapreg::{Registry, Status};

use crate::Result;
use crate::agents::{BATCH, Held, Report};

/// One check of a run: whether it passed, and what was checked (one line of text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Whether it passed.
    pub passed: bool,
    /// What was checked, with the numbers seen.
    pub what: String,
}

/// The checks of one run, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Every check.
    pub checks: Vec<Check>,
}

impl Verification {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

fn check(passed: bool, what: impl Into<String>) -> Check {
    Check {
        passed,
        what: what.into(),
    }
}

/// Checks a run of `agents` agents from their `reports` and the `registry` they shared: the
/// ids reserved are all distinct and as many as asked for; every gap filed is in the registry
/// exactly once and nothing else is; every batch is contiguous in registry order; no two
/// conflicting leases (by [`Lease::conflicts_with`](gapreg::leaselock::lease::Lease::conflicts_with))
/// were held at the same time, and fencing tokens are unique; no gap was claimed by two
/// agents, and each claimed gap is still held by its claimer or complete.
///
/// With several clones (`registries`, one per machine sharing a coordination server), the
/// gaps are those of every clone together: an id filed in two clones is a duplicate.
pub fn verify(registries: &[Registry], reports: &[Report], agents: u32) -> Result<Verification> {
    let mut checks = Vec::new();
    let reserved: Vec<&String> = reports.iter().flat_map(|r| &r.reserved).collect();
    let distinct: BTreeSet<&String> = reserved.iter().copied().collect();
    let expected = agents as usize * BATCH;
    checks.push(check(
        distinct.len() == reserved.len() && reserved.len() == expected,
        format!(
            "{} ids reserved by `ids reserve`, all distinct",
            reserved.len()
        ),
    ));

    let filed: Vec<&String> = reports.iter().flat_map(|r| &r.filed).collect();
    let mut listed = Vec::new();
    for registry in registries {
        listed.extend(registry.list(&gapreg::Filter::default())?);
    }
    let present: BTreeSet<&str> = listed.iter().map(|g| g.id.as_str()).collect();
    let all_present = filed.iter().all(|id| present.contains(id.as_str()));
    let filed_set: BTreeSet<&String> = filed.iter().copied().collect();
    checks.push(check(
        all_present && filed_set.len() == filed.len() && listed.len() == filed.len(),
        format!(
            "{} gaps filed in batches of {BATCH}, every one present exactly once ({} in the registry)",
            filed.len(),
            listed.len()
        ),
    ));
    let seq_of: BTreeMap<&str, u64> = listed.iter().map(|g| (g.id.as_str(), g.seq)).collect();
    let contiguous = reports.iter().all(|r| {
        let seqs: Vec<u64> = r
            .filed
            .iter()
            .filter_map(|id| seq_of.get(id.as_str()).copied())
            .collect();
        seqs.windows(2).all(|w| w[1] == w[0] + 1)
    });
    checks.push(check(
        contiguous,
        "every batch contiguous in registry order",
    ));

    let held: Vec<&Held> = reports.iter().flat_map(|r| &r.leases).collect();
    let tokens: BTreeSet<u64> = held.iter().map(|h| h.lease.token).collect();
    checks.push(check(
        clashes(&held) == 0 && tokens.len() == held.len(),
        format!(
            "{} leases on overlapping paths: no two conflicting ones held at once, fencing tokens unique",
            held.len()
        ),
    ));

    let mut claimers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in reports {
        for id in &r.claimed {
            claimers.entry(id).or_default().push(&r.agent);
        }
    }
    let single = claimers.values().all(|agents| agents.len() == 1);
    let consistent = claimers.iter().all(|(id, agents)| {
        registries.iter().any(|registry| {
            registry
                .show(id)
                .map(|g| g.claimed_by.as_deref() == Some(agents[0]) || g.status == Status::Complete)
                .unwrap_or(false)
        })
    });
    checks.push(check(
        single && consistent,
        format!(
            "{} gaps claimed from `ready`, none by two agents",
            claimers.len()
        ),
    ));
    Ok(Verification { checks })
}

/// How many pairs of leases were held at the same time although they conflict.
fn clashes(held: &[&Held]) -> usize {
    let mut clashes = 0;
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            let at_once = a.start_ns < b.end_ns && b.start_ns < a.end_ns;
            if at_once && a.lease.conflicts_with(&b.lease) {
                clashes += 1;
            }
        }
    }
    clashes
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gapreg::leaselock::lease::{LeaseRequest, Leases};

    use super::*;

    /// A lease granted in its own root, so that two conflicting ones can exist at once.
    fn granted(req: LeaseRequest) -> gapreg::leaselock::lease::Lease {
        let root = tempfile::tempdir().expect("tempdir");
        let leases = Leases::open(root.path()).expect("open leases");
        leases
            .acquire(&req.ttl(Duration::from_secs(60)))
            .expect("acquire")
            .lease
    }

    fn held(lease: gapreg::leaselock::lease::Lease, start_ns: u128, end_ns: u128) -> Held {
        Held {
            lease,
            start_ns,
            end_ns,
        }
    }

    #[test]
    fn conflicting_leases_clash_only_when_held_at_once() {
        let a = granted(LeaseRequest::exclusive("a").dir("src"));
        let b = granted(LeaseRequest::exclusive("b").file("src/lib.rs"));
        let (early, overlapping, late) = (
            held(a.clone(), 0, 10),
            held(b.clone(), 5, 15),
            held(b, 10, 20),
        );
        assert_eq!(clashes(&[&early, &overlapping]), 1);
        assert_eq!(clashes(&[&early, &late]), 0, "one after the other");
    }

    #[test]
    fn shared_leases_and_disjoint_paths_do_not_clash() {
        let shared = |holder| granted(LeaseRequest::shared(holder).file("README.md"));
        let (a, b) = (held(shared("a"), 0, 10), held(shared("b"), 0, 10));
        assert_eq!(clashes(&[&a, &b]), 0, "two shared leases");
        let exclusive = held(granted(LeaseRequest::exclusive("c").dir("src")), 0, 10);
        assert_eq!(clashes(&[&a, &exclusive]), 0, "README.md is not under src/");
        let writer = held(
            granted(LeaseRequest::exclusive("d").file("README.md")),
            0,
            10,
        );
        assert_eq!(clashes(&[&a, &writer]), 1, "shared against exclusive");
    }
}
