//! Changes to one gap: claims, status, dependencies, edits — each a locked
//! read-modify-write.

use std::time::Duration;

use crate::error::{ConflictDetail, Error, Result};
use crate::graph;
use crate::model::{Filter, Gap, GapEdit, Status};
use crate::registry::rules::{
    self, MAX_DESCRIPTION, MAX_FIELD, check_agent, check_revision, check_tags, check_text,
    check_title, check_type,
};
use crate::store::{Clock, Coordination, Documents};
use crate::time::Timestamp;

use super::Engine;

impl<D: Documents, C: Coordination, K: Clock> Engine<'_, D, C, K> {
    /// Locked read-modify-write of one gap: `change` returns `Ok(true)` to write (one more
    /// revision), `Ok(false)` to leave it as it is.
    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut Gap, Timestamp, &D::Guard<'_>) -> Result<bool>,
    ) -> Result<Gap> {
        rules::check_gap_id(id)?;
        let guard = self.docs.lock()?;
        let mut gap = self.docs.read_gap(id)?;
        let before = gap.clone();
        let now = self.clock.now();
        if change(&mut gap, now, &guard)? {
            gap.rev += 1;
            gap.updated_at = now;
            self.docs.write_gap(&gap, Some(&before))?;
        }
        Ok(gap)
    }

    /// Claims gap `id` for `agent`: see [`crate::Registry::claim`].
    pub fn claim(&self, id: &str, agent: &str, ttl: Option<Duration>) -> Result<Gap> {
        check_agent(agent)?;
        if ttl.is_some_and(|t| t.is_zero()) {
            // It would lapse as it is granted: the agent would be told it holds a gap anyone
            // may take.
            return Err(Error::invalid(
                "claim ttl",
                "the time to live is zero; give a positive TTL, or none for a claim held \
                 until it is released",
            ));
        }
        rules::check_gap_id(id)?;
        let _guard = self.docs.lock()?;
        let mut gap = self.docs.read_gap(id)?;
        let before = gap.clone();
        let now = self.clock.now();
        if gap.status.is_closed() {
            // Most often a lost race: another agent finished it between `ready` and `claim`.
            // A conflict, so the caller moves on to the next ready gap.
            return Err(Error::conflict(
                id,
                ConflictDetail::Closed { status: gap.status },
            ));
        }
        // The document's record of a live claim by another agent refuses (a claim from
        // before claims were shared, or this worktree's own); the shared store decides the
        // rest — a claim taken in another worktree is not in this document.
        if let Some(holder) = gap.claimed_at_time(now) {
            if holder != agent {
                return Err(Error::conflict(
                    id,
                    ConflictDetail::ClaimedBy {
                        agent: holder.to_owned(),
                        expires_at: gap.claim_expires_at,
                    },
                ));
            }
        }
        let expires = ttl.map(|t| rules::claim_expiry(now, t));
        let renewal = gap.claimed_at_time(now) == Some(agent);
        self.coord.take_claim(id, agent, expires, now)?;
        if renewal {
            if ttl.is_none() {
                return Ok(gap);
            }
            gap.claim_expires_at = expires;
        } else {
            let takeover = gap.claimed_by.is_some() && gap.status == Status::InProgress;
            if !takeover {
                gap.status_before_claim = Some(gap.status);
            }
            gap.claimed_by = Some(agent.to_owned());
            gap.claimed_at = Some(now);
            gap.claim_expires_at = expires;
            gap.status = Status::InProgress;
        }
        gap.rev += 1;
        gap.updated_at = now;
        if let Err(e) = self.docs.write_gap(&gap, Some(&before)) {
            if !renewal {
                // Nothing changed visibly: the claim goes too.
                let _ = self.coord.release_claim(id, agent);
            }
            return Err(e);
        }
        Ok(gap)
    }

    /// Claims the most severe ready gap (of loop `parent_loop`, if given) for `agent`: tries
    /// the ready gaps in order until one claim wins. `None` when nothing is ready (or every
    /// ready gap was taken meanwhile by others).
    pub fn claim_next(
        &self,
        agent: &str,
        ttl: Option<Duration>,
        parent_loop: Option<&str>,
    ) -> Result<Option<Gap>> {
        check_agent(agent)?;
        let ready = self.ready()?.value;
        for g in ready
            .iter()
            .filter(|g| parent_loop.is_none_or(|l| g.parent_loop.as_deref() == Some(l)))
        {
            match self.claim(&g.id, agent, ttl) {
                Ok(gap) => return Ok(Some(gap)),
                Err(e) if e.is_lost_race() => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Releases `agent`'s claim: see [`crate::Registry::unclaim`].
    pub fn unclaim(&self, id: &str, agent: &str) -> Result<Gap> {
        check_agent(agent)?;
        self.update(id, |gap, now, _| {
            // The shared claim first: taken in another worktree, it is in no document here.
            if let Some(shared) = self.coord.live_claims(now)?.remove(id) {
                if shared.agent != agent {
                    return Err(crate::store::claimed_by(id, &shared));
                }
                self.coord.release_claim(id, agent)?;
            }
            self.unclaim_document(id, agent, gap)
        })
    }

    /// Releases `agent`'s claim as the document records it.
    fn unclaim_document(&self, id: &str, agent: &str, gap: &mut Gap) -> Result<bool> {
        match gap.claimed_by.as_deref() {
            None => Ok(false),
            Some(holder) if holder != agent => Err(Error::conflict(
                id,
                ConflictDetail::ClaimedBy {
                    agent: holder.to_owned(),
                    expires_at: gap.claim_expires_at,
                },
            )),
            Some(_) => {
                self.coord.release_claim(id, agent)?;
                gap.claimed_by = None;
                gap.claimed_at = None;
                gap.claim_expires_at = None;
                if gap.status == Status::InProgress {
                    gap.status = gap.status_before_claim.unwrap_or(Status::Open);
                }
                gap.status_before_claim = None;
                Ok(true)
            }
        }
    }

    /// Sets gap `id`'s status: see [`crate::Registry::set_status`].
    pub fn set_status(&self, id: &str, status: Status, expected_rev: Option<u64>) -> Result<Gap> {
        self.update(id, |gap, now, held| {
            check_revision(gap, expected_rev)?;
            if gap.status == status {
                return Ok(false);
            }
            if gap.status == Status::Complete {
                // Its complete dependents would wait for something unfinished.
                let complete = Filter {
                    status: Some(Status::Complete),
                    ..Filter::default()
                };
                let waiting: Vec<String> = self
                    .docs
                    .summaries_held(held, Some(&complete))?
                    .value
                    .into_iter()
                    .filter(|g| g.depends_on.iter().any(|d| d == id))
                    .map(|g| g.id)
                    .collect();
                if let Some(first) = waiting.first() {
                    return Err(Error::invalid(
                        format!("transition of {id} to {status}"),
                        format!(
                            "{} {} complete and depend{} on it; reopen {} first \
                             (`gapreg status {first} open`)",
                            waiting.join(", "),
                            if waiting.len() == 1 { "is" } else { "are" },
                            if waiting.len() == 1 { "s" } else { "" },
                            if waiting.len() == 1 { "it" } else { "them" },
                        ),
                    ));
                }
            }
            if status == Status::Complete {
                let loops = self.docs.loops()?.value;
                let statuses = self.statuses(&gap.depends_on)?;
                let open: Vec<String> = gap
                    .depends_on
                    .iter()
                    .filter_map(|d| {
                        rules::unfinished_note(d, &|x| statuses.get(x).copied(), &loops)
                    })
                    .collect();
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
            if status.is_closed() {
                // A finished gap holds no one's claim: let the shared one go with it.
                if let Some(holder) = gap.claimed_by.as_deref() {
                    self.coord.release_claim(id, holder)?;
                }
            }
            gap.status = status;
            Ok(true)
        })
    }

    /// Makes gap `id` depend on `on`: see [`crate::Registry::add_dependency`].
    pub fn add_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        self.update(id, |gap, _, _| {
            if gap.depends_on.iter().any(|d| d == on) {
                return Ok(false);
            }
            let loops = self.docs.loops()?.value;
            if !self.docs.gap_exists(on)? && !loops.contains_key(on) {
                return Err(self.docs.loop_not_found(on, "dependency (gap or loop)"));
            }
            let mut deps = |n: &str| self.edges(n, &loops);
            if let Some(path) = graph::cycle_through(id, on, &mut deps) {
                return Err(rules::cycle(path));
            }
            if gap.status == Status::Complete {
                // A complete gap may not wait for something unfinished (as in `set_status`).
                let statuses = self.statuses(&[on.to_owned()])?;
                if let Some(what) =
                    rules::unfinished_note(on, &|x| statuses.get(x).copied(), &loops)
                {
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

    /// Removes the dependency of gap `id` on `on`: see [`crate::Registry::remove_dependency`].
    pub fn remove_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        self.update(id, |gap, _, _| {
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

    /// Edits gap `id`'s descriptive fields: see [`crate::Registry::edit`].
    pub fn edit(&self, id: &str, edit: GapEdit, expected_rev: Option<u64>) -> Result<Gap> {
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
            if !self.docs.loops()?.value.contains_key(parent) {
                return Err(self.docs.loop_not_found(parent, "parent loop"));
            }
        }
        self.update(id, |gap, _, _| {
            check_revision(gap, expected_rev)?;
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
}
