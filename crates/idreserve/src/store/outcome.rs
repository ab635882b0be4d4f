//! What the store's operations hand back: a [`Reservation`], and what
//! [`Store::raise`](crate::Store::raise) and
//! [`Store::init_from_report`](crate::Store::init_from_report) did. Plain values, holding no
//! file and no lock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::id::Id;
use crate::scan::Skipped;

/// A run of consecutive reserved IDs. It holds only its first number and its length, so even
/// the largest reservation costs no memory until its IDs are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub(crate) prefix: String,
    pub(crate) first: u64,
    pub(crate) count: u64,
    pub(crate) width: usize,
}

impl Reservation {
    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The first reserved number.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The last reserved number.
    pub fn last(&self) -> u64 {
        // Never overflows: the counter holds it.
        self.first + (self.count - 1)
    }

    /// How many IDs were reserved (at most [`MAX_COUNT`](crate::MAX_COUNT)).
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Always false: a reservation holds at least one ID.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The reserved IDs, in order, made one at a time.
    pub fn ids(&self) -> impl Iterator<Item = Id> + '_ {
        (self.first..=self.last()).map(|n| self.id(n))
    }

    fn id(&self, number: u64) -> Id {
        Id {
            prefix: self.prefix.clone(),
            number,
            width: self.width,
        }
    }
}

/// What [`Store::init_from`](crate::Store::init_from) found for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The highest ID seen.
    pub highest: Id,
    /// The file it was seen in.
    pub file: PathBuf,
    /// The counter before.
    pub old_counter: u64,
    /// The counter after (unchanged if it was already higher and not forced).
    pub new_counter: u64,
}

/// What [`Store::init_from_report`](crate::Store::init_from_report) found, and what it
/// skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Per prefix: the highest ID seen and the counter before and after.
    pub found: BTreeMap<String, Found>,
    /// Entries not read: symbolic links, FIFOs and other special files, binary files,
    /// directories nested too deep.
    pub skipped: Vec<Skipped>,
}

/// What [`Store::raise`](crate::Store::raise) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The counter before.
    pub before: u64,
    /// The counter after: the larger of `before` and the value asked for.
    pub after: u64,
}

impl Raised {
    /// Whether the counter moved (and a record was written).
    pub fn changed(&self) -> bool {
        self.after != self.before
    }
}
