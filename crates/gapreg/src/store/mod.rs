//! The storage seam: what the registry's operations need of the places state lives.
//!
//! The operations ([`crate::Engine`]) are written once, over three small traits:
//!
//! | trait | holds | tracked by git | production | tests and models |
//! |---|---|---|---|---|
//! | [`Documents`] | gap files, loop files, the registry's write lock | yes (the documents) | the registry directory ([`crate::Registry`]) | [`MemDocuments`] |
//! | [`Coordination`] | id counters, the registry order (`SEQ`), idempotency records | no | the id store and `keys/` | [`MemCoordination`] |
//! | [`Clock`] | the time | — | [`SystemClock`] | [`ManualClock`] |
//!
//! Documents travel by merge; coordination state is never tracked and is shared by every
//! writer that must not hand out an id twice. A new place for either (the shared directory of
//! every worktree of a clone, a database shared by every machine) is a new implementation of
//! a trait, not an edit of the operations.
//!
//! # Contract
//!
//! - Every change ([`Documents::write_gap`], [`Documents::write_batch`],
//!   [`Coordination::reserve`], [`Coordination::write_key`]) is made while the caller holds
//!   the guard of [`Documents::lock`], and is durable and visible to every later reader when
//!   it returns `Ok`. An `Err` means nothing visible changed — except a reservation, whose
//!   numbers are then never handed out again (a hole, never a duplicate).
//! - [`Documents::write_batch`] is all or nothing, even if the process dies inside it.
//! - Reads never repair or reset: damage is an error naming the document, or, for listings,
//!   an entry in [`Checked::damaged`](crate::Checked).

mod mem;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use mem::{ManualClock, MemCoordination, MemDocuments};

use crate::error::ConflictDetail;

use crate::Checked;
use crate::error::{Error, Result};
use crate::loops::Loop;
use crate::model::{Filter, Gap, GapSummary};
use crate::time::Timestamp;

/// Where the documents are: gap files and loop files, and the lock every change holds.
pub trait Documents {
    /// Proof that the registry's write lock is held; dropping it releases the lock.
    type Guard<'g>
    where
        Self: 'g;

    /// Takes the registry's write lock (waiting as the store's timeout allows), and brings
    /// the store to a state a change may start from (a batch committed by a writer that died
    /// is finished first).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Timeout`] when the wait runs out.
    fn lock(&self) -> Result<Self::Guard<'_>>;

    /// Gap `id` (a canonical gap id).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::NotFound`] if it has no document, [`crate::ErrorKind::Corrupt`]
    /// if its document cannot be read.
    fn read_gap(&self, id: &str) -> Result<Gap>;

    /// Whether gap `id` has a document (damaged or not). `false` for a string that is not a
    /// gap id.
    fn gap_exists(&self, id: &str) -> Result<bool>;

    /// Checks, before any id is reserved, that a batch of `len` gaps could be written: so a
    /// refusal moves no counter. `next` are the ids the counters will give.
    fn prepare(&self, len: usize, next: &[String]) -> Result<()>;

    /// Writes one gap's document; `old` is what it replaces (put back if the write fails
    /// after the new document became visible).
    fn write_gap(&self, gap: &Gap, old: Option<&Gap>) -> Result<()>;

    /// Writes new gaps' documents, all or nothing.
    fn write_batch(&self, gaps: &[Gap]) -> Result<()>;

    /// The summaries of the gaps `filter` matches (all with `None`), in registry order, with
    /// the documents that could not be read.
    fn summaries(&self, filter: Option<&Filter>) -> Result<Checked<Vec<GapSummary>>>;

    /// [`Documents::summaries`] for a caller holding the lock (`held` proves it): never
    /// waits for the lock itself, so a change can judge the other gaps under its own lock.
    fn summaries_held(
        &self,
        held: &Self::Guard<'_>,
        filter: Option<&Filter>,
    ) -> Result<Checked<Vec<GapSummary>>>;

    /// The highest number of every id prefix among the gap documents (a readdir of names,
    /// no parsing): what the counters must stand above.
    fn highest_numbers(&self) -> Result<BTreeMap<String, u64>>;

    /// Every loop by id, with the loop documents that could not be read.
    fn loops(&self) -> Result<Checked<BTreeMap<String, Loop>>>;

    /// The error for a loop (or dependency) `id` that is not among [`Documents::loops`]:
    /// damaged if its document is there but unreadable, else not found with close matches.
    fn loop_not_found(&self, id: &str, what: &'static str) -> Error;
}

/// The state every writer shares and git never tracks: id counters (the registry order is
/// the counter [`crate::SEQ_PREFIX`]) and idempotency records.
pub trait Coordination {
    /// The number the next reservation of `prefix` would get.
    fn peek(&self, prefix: &str) -> Result<u64>;

    /// Reserves `n` consecutive numbers of `prefix` and returns the first. Durable before it
    /// returns; never hands a number out twice.
    fn reserve(&self, prefix: &str, n: u64) -> Result<u64>;

    /// Raises `prefix`'s counter so that the next number is above `at_least` (never lowers).
    fn raise(&self, prefix: &str, at_least: u64) -> Result<()>;

    /// `Ok` if `id` (`PREFIX-N`) was handed out by this store; an error naming it otherwise.
    fn validate(&self, id: &str) -> Result<()>;

    /// The record of idempotency key `key`, if any. A damaged record is an error.
    fn read_key(&self, key: &str) -> Result<Option<KeyRecord>>;

    /// Records what key `key` filed, durably.
    fn write_key(&self, key: &str, record: &KeyRecord) -> Result<()>;

    /// Where key `key`'s record is, for messages.
    fn key_location(&self, key: &str) -> PathBuf;

    /// Takes the claim on gap `id` for `agent` until `expires` (`None`: until released), or
    /// renews it when `agent` holds it already, judged at `now`. The claim is coordination
    /// state: one taken in one worktree (or, with a shared server, on one machine) is seen by
    /// every other at once.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Conflict`] ([`crate::ConflictDetail::ClaimedBy`]) naming the
    /// holder while another agent's claim is live.
    fn take_claim(
        &self,
        id: &str,
        agent: &str,
        expires: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<()>;

    /// Releases `agent`'s claim on gap `id`, if it holds one.
    fn release_claim(&self, id: &str, agent: &str) -> Result<()>;

    /// Every live claim at `now`: gap id → (agent, expiry).
    fn live_claims(&self, now: Timestamp) -> Result<BTreeMap<String, Claim>>;
}

/// A live claim in the coordination store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Who holds it.
    pub agent: String,
    /// When it lapses; `None`: when released.
    pub expires_at: Option<Timestamp>,
}

/// The time, for claims' expiry and documents' timestamps.
pub trait Clock {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The conflict of a claim another agent holds.
pub(crate) fn claimed_by(id: &str, holder: &Claim) -> Error {
    Error::conflict(
        id,
        ConflictDetail::ClaimedBy {
            agent: holder.agent.clone(),
            expires_at: holder.expires_at,
        },
    )
}

/// What an idempotency key filed: a checksum of the request (so a key reused for another
/// request is refused), the ids it filed in order, and the registry position of the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// A checksum of the request.
    pub request: String,
    /// The ids filed, in order.
    pub ids: Vec<String>,
    /// The registry position of the first gap.
    pub seq: u64,
}
