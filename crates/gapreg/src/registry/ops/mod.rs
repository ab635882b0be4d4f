//! The registry's operations, written once over the storage seam ([`crate::store`]): the
//! files in production ([`crate::Registry`] is this engine over its directory), memory under
//! proptest and loom.
//!
//! # Invariants
//!
//! - Every change happens under [`Documents::lock`]: a read-check-write (a claim, a status
//!   change) sees no other writer between its read and its write, so of any number of
//!   claimers exactly one wins.
//! - Ids and registry positions come only from [`Coordination::reserve`], after every check
//!   that can refuse the change (a refusal moves no counter); a batch reserves each prefix's
//!   ids, then its positions, in one call each, so they are consecutive and contiguous.
//! - A document is written only after its ids are reserved, and an idempotency record only
//!   before its documents: a retry after a crash files the same ids, never new ones.

mod filing;
mod updates;

use std::collections::{BTreeMap, HashMap};

use crate::Checked;
use crate::error::Result;
use crate::graph;
use crate::loops::Loop;
use crate::model::{Blocker, Filter, GapSummary, Status};
use crate::store::{Clock, Coordination, Documents};

use super::rules::view;

/// The registry's operations over a document store `D`, a coordination store `C` and a clock
/// `K`. Cheap to make: it only borrows them.
///
/// ```
/// use gapreg::store::{ManualClock, MemCoordination, MemDocuments};
/// use gapreg::{Engine, GapSpec, Severity, Status};
///
/// let (docs, coord, clock) = (MemDocuments::new(), MemCoordination::new(), ManualClock::default());
/// let engine = Engine::new(&docs, &coord, &clock, "OP");
/// engine.file(GapSpec::new("Flaky lock test", Severity::High))?;
/// let claimed = engine.claim("GAP-OP-1", "CC-3", None)?;
/// assert_eq!(claimed.status, Status::InProgress);
/// assert!(engine.claim("GAP-OP-1", "CC-4", None).is_err());
/// # Ok::<(), gapreg::Error>(())
/// ```
#[derive(Debug)]
pub struct Engine<'a, D, C, K> {
    docs: &'a D,
    coord: &'a C,
    clock: &'a K,
    default_prefix: &'a str,
}

impl<D, C, K> Clone for Engine<'_, D, C, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D, C, K> Copy for Engine<'_, D, C, K> {}

impl<'a, D: Documents, C: Coordination, K: Clock> Engine<'a, D, C, K> {
    /// The operations over `docs`, `coord` and `clock`; automatic ids get `default_prefix`
    /// (`OP` gives `GAP-OP-<N>`).
    pub fn new(docs: &'a D, coord: &'a C, clock: &'a K, default_prefix: &'a str) -> Self {
        Engine {
            docs,
            coord,
            clock,
            default_prefix,
        }
    }

    /// Gaps matching `filter`, in registry order, with the documents left out. A gap's
    /// claim is the shared one where there is one (taken in another worktree, it is in no
    /// document here).
    pub fn list(&self, filter: &Filter) -> Result<Checked<Vec<GapSummary>>> {
        // `claimed_by` is judged after the shared claims are laid over the documents.
        let mut by_documents = filter.clone();
        let holder = by_documents.claimed_by.take();
        let mut listed = self.docs.summaries(Some(&by_documents))?;
        let claims = self.coord.live_claims(self.clock.now())?;
        for g in &mut listed.value {
            if let Some(c) = claims.get(&g.id) {
                g.claimed_by = Some(c.agent.clone());
                g.claim_expires_at = c.expires_at;
            }
        }
        if let Some(holder) = holder {
            listed
                .value
                .retain(|g| g.claimed_by.as_ref() == Some(&holder));
        }
        Ok(listed)
    }

    /// Gap `id`, its claim the shared one where there is one.
    pub fn show(&self, id: &str) -> Result<crate::model::Gap> {
        super::rules::check_gap_id(id)?;
        let mut gap = self.docs.read_gap(id)?;
        if let Some(c) = self.coord.live_claims(self.clock.now())?.remove(id) {
            gap.claimed_by = Some(c.agent);
            gap.claim_expires_at = c.expires_at;
        }
        Ok(gap)
    }

    /// The work an idle agent can take now: gaps that are not closed or `blocked`, not under
    /// a live claim, whose dependencies are finished — most severe first, then registry
    /// order — with the gap and loop documents left out.
    pub fn ready(&self) -> Result<Checked<Vec<GapSummary>>> {
        let Checked {
            value: gaps,
            mut damaged,
        } = self.docs.summaries(None)?;
        let loops = self.docs.loops()?;
        damaged.extend(loops.damaged);
        let status: HashMap<&str, Status> =
            gaps.iter().map(|g| (g.id.as_str(), g.status)).collect();
        let lookup = |id: &str| status.get(id).copied();
        let now = self.clock.now();
        // Claims are shared: one taken in another worktree is in no document here.
        let claimed = self.coord.live_claims(now)?;
        let mut ready: Vec<GapSummary> = gaps
            .iter()
            .filter(|g| !claimed.contains_key(&g.id))
            .filter(|g| graph::blockers(&view(g), now, &lookup, &loops.value).is_empty())
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
        super::rules::check_gap_id(id)?;
        let gap = self.docs.read_gap(id)?;
        let loops = self.docs.loops()?.value;
        let status = self.statuses(&gap.depends_on)?;
        Ok(graph::blockers(
            &view(&gap.summary()),
            self.clock.now(),
            &|dep| status.get(dep).copied(),
            &loops,
        ))
    }

    /// The status of each of `ids` that is a gap (a damaged one is an error).
    fn statuses(&self, ids: &[String]) -> Result<HashMap<String, Status>> {
        let mut out = HashMap::new();
        for id in ids {
            if self.docs.gap_exists(id)? {
                out.insert(id.clone(), self.docs.read_gap(id)?.status);
            }
        }
        Ok(out)
    }

    /// The outgoing edges of `node` (a gap or a loop) for the cycle checks.
    fn edges(&self, node: &str, loops: &BTreeMap<String, Loop>) -> Option<Vec<String>> {
        if matches!(self.docs.gap_exists(node), Ok(true)) {
            self.docs.read_gap(node).ok().map(|g| g.depends_on)
        } else {
            loops.get(node).map(|l| l.depends_on.clone())
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
