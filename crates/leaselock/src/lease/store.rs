//! The storage the grant protocol runs over: a trait, and an in-memory implementation used by
//! the unit tests, proptest and loom. The file implementation is in `file_store`.
//!
//! A store is only ever used while the caller holds the root's mutex (the `FileMutex` in
//! production, a `loom::sync::Mutex` in the loom models), so its methods need no locking.

#[cfg(test)]
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::LeaseError;
use super::record::Lease;

/// An unreadable lease file. It is reported, never ignored: it blocks every grant until a
/// forced release or a forced sweep removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorruptEntry {
    /// The file stem, usable as the id in a forced release.
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

/// One entry of the leases directory.
#[allow(clippy::large_enum_variant)] // nearly every entry is a lease; boxing would only add allocations
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Lease(Lease),
    Corrupt(CorruptEntry),
}

impl Entry {
    pub(crate) fn id(&self) -> &str {
        match self {
            Entry::Lease(l) => &l.id,
            Entry::Corrupt(c) => &c.id,
        }
    }

    /// The fencing token this entry records: the lease's, or for an unreadable file the number
    /// its name starts with (lease ids are `<token>-<holder>`), if any.
    pub(crate) fn token(&self) -> Option<u64> {
        match self {
            Entry::Lease(l) => Some(l.token),
            Entry::Corrupt(c) => token_of_id(&c.id),
        }
    }
}

/// The token a lease id starts with (`<token>-...`).
pub(crate) fn token_of_id(id: &str) -> Option<u64> {
    let (digits, _) = id.split_once('-')?;
    digits.parse().ok()
}

/// A write that failed. `visible`: the new record may already be in place for readers (it was
/// renamed over the old one but could not be made durable), so the caller must undo it to keep
/// "a reported failure changed nothing".
#[derive(Debug)]
pub(crate) struct WriteFailed {
    pub error: LeaseError,
    pub visible: bool,
}

impl From<LeaseError> for WriteFailed {
    fn from(error: LeaseError) -> WriteFailed {
        WriteFailed {
            error,
            visible: false,
        }
    }
}

/// What the grant protocol needs from storage.
pub(crate) trait LeaseStore {
    /// Every entry, including unreadable ones. May serve from a cache validated against the
    /// storage; [`LeaseStore::get`] always reads afresh.
    fn entries(&mut self) -> Result<Vec<&Entry>, LeaseError>;
    /// Like [`LeaseStore::entries`], but revalidating every entry against storage (for
    /// inspection and sweeping, which must see out-of-band changes such as a damaged file).
    fn scan_entries(&mut self) -> Result<Vec<&Entry>, LeaseError> {
        self.entries()
    }
    /// One entry, read afresh from storage.
    fn get(&mut self, id: &str) -> Result<Option<Entry>, LeaseError>;
    /// Creates or replaces the lease with `lease.id`, durably: `Ok` only once it survives a
    /// crash. On error, see [`WriteFailed::visible`].
    fn put(&mut self, lease: &Lease) -> Result<(), WriteFailed>;
    /// Removes the entry `id`; `false` if it did not exist. Visible at once, durable only after
    /// [`LeaseStore::sync`].
    fn remove(&mut self, id: &str) -> Result<bool, LeaseError>;
    /// Makes the removals made so far durable.
    fn sync(&mut self) -> Result<(), LeaseError>;
    /// Durably reserves and returns the next fencing token: strictly greater than any before,
    /// and than every token recorded in storage. Fails (corrupt) rather than guess when the
    /// counter is missing or damaged.
    fn next_token(&mut self) -> Result<u64, LeaseError>;
    /// Where entry `id` lives, for messages.
    fn location(&self, id: &str) -> PathBuf;
}

/// An in-memory store: the reference storage for tests and loom models.
#[cfg(test)]
#[derive(Debug, Default, Clone)]
pub(crate) struct MemStore {
    pub(crate) entries: BTreeMap<String, Entry>,
    pub(crate) last_token: u64,
}

#[cfg(test)]
impl LeaseStore for MemStore {
    fn entries(&mut self) -> Result<Vec<&Entry>, LeaseError> {
        Ok(self.entries.values().collect())
    }

    fn get(&mut self, id: &str) -> Result<Option<Entry>, LeaseError> {
        Ok(self.entries.get(id).cloned())
    }

    fn put(&mut self, lease: &Lease) -> Result<(), WriteFailed> {
        self.entries
            .insert(lease.id.clone(), Entry::Lease(lease.clone()));
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<bool, LeaseError> {
        Ok(self.entries.remove(id).is_some())
    }

    fn sync(&mut self) -> Result<(), LeaseError> {
        Ok(())
    }

    fn next_token(&mut self) -> Result<u64, LeaseError> {
        self.last_token += 1;
        Ok(self.last_token)
    }

    fn location(&self, id: &str) -> PathBuf {
        PathBuf::from(format!("memory:{id}"))
    }
}
