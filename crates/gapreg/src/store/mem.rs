//! The in-memory stores: the same contract as the files, in a process's memory, for the
//! model tests (proptest against a reference model, loom over every interleaving).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use idreserve::Id;

use super::{Claim, Clock, Coordination, Documents, KeyRecord, claimed_by};
use crate::Checked;
use crate::error::{Error, ErrorKind, Result};
use crate::loops::{self, Loop};
use crate::model::{Filter, Gap, GapSummary};
use crate::sync::{Mutex, MutexGuard, lock};
use crate::time::Timestamp;

/// Documents held in memory. Writes are atomic per call; the lock is a mutex.
///
/// ```
/// use gapreg::store::{ManualClock, MemCoordination, MemDocuments};
/// use gapreg::{Engine, GapSpec, Severity};
///
/// let (docs, coord, clock) = (MemDocuments::new(), MemCoordination::new(), ManualClock::default());
/// let engine = Engine::new(&docs, &coord, &clock, "OP");
/// let gap = engine.file(GapSpec::new("In memory", Severity::High))?;
/// assert_eq!(gap.id, "GAP-OP-1");
/// assert_eq!(docs.gaps().len(), 1);
/// # Ok::<(), gapreg::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemDocuments {
    lock: Mutex<()>,
    gaps: Mutex<BTreeMap<String, Gap>>,
    loops: Mutex<BTreeMap<String, Loop>>,
}

impl MemDocuments {
    /// An empty store.
    pub fn new() -> MemDocuments {
        MemDocuments::default()
    }

    /// Adds (or replaces) a loop, as a person writing its file would.
    pub fn put_loop(&self, l: Loop) {
        lock(&self.loops).insert(l.id.clone(), l);
    }

    /// Every gap document, by id.
    pub fn gaps(&self) -> BTreeMap<String, Gap> {
        lock(&self.gaps).clone()
    }
}

impl Documents for MemDocuments {
    type Guard<'g> = MutexGuard<'g, ()>;

    fn lock(&self) -> Result<MutexGuard<'_, ()>> {
        Ok(lock(&self.lock))
    }

    fn read_gap(&self, id: &str) -> Result<Gap> {
        lock(&self.gaps).get(id).cloned().ok_or_else(|| {
            Error::new(ErrorKind::NotFound {
                what: "gap",
                id: id.to_owned(),
                suggestions: Vec::new(),
            })
        })
    }

    fn gap_exists(&self, id: &str) -> Result<bool> {
        Ok(lock(&self.gaps).contains_key(id))
    }

    fn prepare(&self, _len: usize, _next: &[String]) -> Result<()> {
        Ok(())
    }

    fn write_gap(&self, gap: &Gap, _old: Option<&Gap>) -> Result<()> {
        lock(&self.gaps).insert(gap.id.clone(), gap.clone());
        Ok(())
    }

    fn write_batch(&self, gaps: &[Gap]) -> Result<()> {
        let mut all = lock(&self.gaps);
        for g in gaps {
            all.insert(g.id.clone(), g.clone());
        }
        Ok(())
    }

    fn summaries(&self, filter: Option<&Filter>) -> Result<Checked<Vec<GapSummary>>> {
        let mut value: Vec<GapSummary> = lock(&self.gaps)
            .values()
            .map(Gap::summary)
            .filter(|g| filter.is_none_or(|f| f.matches(g)))
            .collect();
        value.sort_by(|a, b| (a.seq, &a.id).cmp(&(b.seq, &b.id)));
        Ok(Checked {
            value,
            damaged: Vec::new(),
        })
    }

    fn summaries_held(
        &self,
        _held: &MutexGuard<'_, ()>,
        filter: Option<&Filter>,
    ) -> Result<Checked<Vec<GapSummary>>> {
        self.summaries(filter)
    }

    fn highest_numbers(&self) -> Result<BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for id in lock(&self.gaps).keys() {
            if let Ok(id) = id.parse::<Id>() {
                let h = out.entry(id.prefix().to_owned()).or_default();
                *h = (*h).max(id.number());
            }
        }
        Ok(out)
    }

    fn loops(&self) -> Result<Checked<BTreeMap<String, Loop>>> {
        Ok(Checked {
            value: lock(&self.loops).clone(),
            damaged: Vec::new(),
        })
    }

    fn loop_not_found(&self, id: &str, what: &'static str) -> Error {
        let loops = lock(&self.loops);
        Error::new(ErrorKind::NotFound {
            what,
            id: id.to_owned(),
            suggestions: loops::close_matches(id, loops.keys().map(String::as_str)),
        })
    }
}

/// Counters and idempotency records held in memory.
#[derive(Debug, Default)]
pub struct MemCoordination {
    /// The next number of each prefix.
    next: Mutex<HashMap<String, u64>>,
    keys: Mutex<HashMap<String, KeyRecord>>,
    claims: Mutex<BTreeMap<String, Claim>>,
}

impl MemCoordination {
    /// Empty counters: every prefix starts at 1.
    pub fn new() -> MemCoordination {
        MemCoordination::default()
    }
}

impl Coordination for MemCoordination {
    fn peek(&self, prefix: &str) -> Result<u64> {
        Ok(lock(&self.next).get(prefix).copied().unwrap_or(1))
    }

    fn reserve(&self, prefix: &str, n: u64) -> Result<u64> {
        let mut next = lock(&self.next);
        let first = next.get(prefix).copied().unwrap_or(1);
        let end = first.checked_add(n).filter(|_| n > 0).ok_or_else(|| {
            Error::invalid(format!("reservation of {n} {prefix} ids"), "out of range")
        })?;
        next.insert(prefix.to_owned(), end);
        Ok(first)
    }

    fn raise(&self, prefix: &str, at_least: u64) -> Result<()> {
        let mut next = lock(&self.next);
        let n = next.entry(prefix.to_owned()).or_insert(1);
        *n = (*n).max(at_least.saturating_add(1));
        Ok(())
    }

    fn validate(&self, id: &str) -> Result<()> {
        let parsed: Id = id
            .parse()
            .map_err(|e: idreserve::Error| Error::invalid(format!("id {id:?}"), e.to_string()))?;
        if parsed.number() < self.peek(parsed.prefix())? {
            Ok(())
        } else {
            Err(Error::invalid(
                format!("id {id}"),
                "it was never reserved; reserve ids with `gapreg ids reserve`",
            ))
        }
    }

    fn read_key(&self, key: &str) -> Result<Option<KeyRecord>> {
        Ok(lock(&self.keys).get(key).cloned())
    }

    fn write_key(&self, key: &str, record: &KeyRecord) -> Result<()> {
        lock(&self.keys).insert(key.to_owned(), record.clone());
        Ok(())
    }

    fn key_location(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("memory:keys/{key}"))
    }

    fn take_claim(
        &self,
        id: &str,
        agent: &str,
        expires: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<()> {
        let mut claims = lock(&self.claims);
        if let Some(held) = claims.get(id) {
            if held.agent != agent && held.expires_at.is_none_or(|e| now < e) {
                return Err(claimed_by(id, held));
            }
        }
        claims.insert(
            id.to_owned(),
            Claim {
                agent: agent.to_owned(),
                expires_at: expires,
            },
        );
        Ok(())
    }

    fn release_claim(&self, id: &str, agent: &str) -> Result<()> {
        let mut claims = lock(&self.claims);
        if claims.get(id).is_some_and(|c| c.agent == agent) {
            claims.remove(id);
        }
        Ok(())
    }

    fn live_claims(&self, now: Timestamp) -> Result<BTreeMap<String, Claim>> {
        Ok(lock(&self.claims)
            .iter()
            .filter(|(_, c)| c.expires_at.is_none_or(|e| now < e))
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect())
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl Default for ManualClock {
    /// 2026-01-01T00:00:00Z.
    fn default() -> ManualClock {
        ManualClock::new(Timestamp::from_unix(1_767_225_600))
    }
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> ManualClock {
        ManualClock(Mutex::new(at))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut t = lock(&self.0);
        *t = t.after(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *lock(&self.0)
    }
}
