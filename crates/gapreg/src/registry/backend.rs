//! The registry's coordination store, whichever backend its config names: the clone's files
//! ([`FileCoordination`]) or a PostgreSQL server (`PgCoordination`, with the `postgres`
//! feature). [`Ids`] is the id counters of either, for callers that reserve ids directly.

use std::collections::BTreeMap;
use std::path::PathBuf;

use idreserve::{Id, Raised, Reservation, Store};

use crate::error::Result;
use crate::store::{Claim, Coordination, KeyRecord};
use crate::time::Timestamp;

use super::coordination::FileCoordination;
#[cfg(feature = "postgres")]
use super::server::PgCoordination;

/// One of the coordination stores.
#[derive(Debug, Clone)]
pub(crate) enum Coord {
    Files(FileCoordination),
    #[cfg(feature = "postgres")]
    Postgres(PgCoordination),
}

/// Runs `$body` with `$c` bound to the store behind `$self`.
macro_rules! each {
    ($self:expr, $c:ident => $body:expr) => {
        match $self {
            Coord::Files($c) => $body,
            #[cfg(feature = "postgres")]
            Coord::Postgres($c) => $body,
        }
    };
}

impl Coordination for Coord {
    fn peek(&self, prefix: &str) -> Result<u64> {
        each!(self, c => c.peek(prefix))
    }
    fn reserve(&self, prefix: &str, n: u64) -> Result<u64> {
        each!(self, c => c.reserve(prefix, n))
    }
    fn raise(&self, prefix: &str, at_least: u64) -> Result<()> {
        each!(self, c => c.raise(prefix, at_least))
    }
    fn validate(&self, id: &str) -> Result<()> {
        each!(self, c => c.validate(id))
    }
    fn read_key(&self, key: &str) -> Result<Option<KeyRecord>> {
        each!(self, c => c.read_key(key))
    }
    fn write_key(&self, key: &str, record: &KeyRecord) -> Result<()> {
        each!(self, c => c.write_key(key, record))
    }
    fn key_location(&self, key: &str) -> PathBuf {
        each!(self, c => c.key_location(key))
    }
    fn take_claim(
        &self,
        id: &str,
        agent: &str,
        expires: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<()> {
        each!(self, c => c.take_claim(id, agent, expires, now))
    }
    fn release_claim(&self, id: &str, agent: &str) -> Result<()> {
        each!(self, c => c.release_claim(id, agent))
    }
    fn live_claims(&self, now: Timestamp) -> Result<BTreeMap<String, Claim>> {
        each!(self, c => c.live_claims(now))
    }
}

/// A registry's id counters, wherever they live: [`crate::Registry::ids`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Ids<'a> {
    /// The clone's id store.
    Files(&'a Store),
    /// The coordination server's counters.
    #[cfg(feature = "postgres")]
    Postgres(PgIds<'a>),
}

/// The counters of a registry whose coordination state is on a server: a namespace's first
/// use starts them above the ids its documents hold.
#[cfg(feature = "postgres")]
#[derive(Debug, Clone, Copy)]
pub struct PgIds<'a>(pub(crate) &'a super::server::PgCoordination);

#[cfg(feature = "postgres")]
impl PgIds<'_> {
    fn reserve(&self, prefix: &str, count: u64) -> Result<Reservation> {
        self.0.reserve_ids(prefix, count)
    }
    fn peek(&self, prefix: &str) -> Result<Id> {
        Ok(self.0.ids()?.peek(prefix)?)
    }
    fn validate(&self, id: &str) -> Result<Id> {
        Ok(self.0.ids()?.validate(id)?)
    }
    fn counters(&self) -> Result<BTreeMap<String, u64>> {
        Ok(self.0.ids()?.counters()?)
    }
    fn raise(&self, prefix: &str, at_least: u64) -> Result<Raised> {
        Ok(self.0.ids()?.raise(prefix, at_least)?)
    }
}

macro_rules! ids {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            Ids::Files($s) => Ok($body?),
            #[cfg(feature = "postgres")]
            Ids::Postgres($s) => Ok($body?),
        }
    };
}

impl Ids<'_> {
    /// Reserves `count` consecutive ids of `prefix` ([`Store::reserve`]).
    ///
    /// # Errors
    ///
    /// As [`Store::reserve`], and the server's.
    pub fn reserve(&self, prefix: &str, count: u64) -> Result<Reservation> {
        ids!(self, s => s.reserve(prefix, count))
    }

    /// The next id of `prefix`, reserving nothing.
    ///
    /// # Errors
    ///
    /// As [`Store::peek`], and the server's.
    pub fn peek(&self, prefix: &str) -> Result<Id> {
        ids!(self, s => s.peek(prefix))
    }

    /// `id`, if it was handed out.
    ///
    /// # Errors
    ///
    /// As [`Store::validate`], and the server's.
    pub fn validate(&self, id: &str) -> Result<Id> {
        ids!(self, s => s.validate(id))
    }

    /// Every prefix's counter.
    ///
    /// # Errors
    ///
    /// As [`Store::counters`], and the server's.
    pub fn counters(&self) -> Result<BTreeMap<String, u64>> {
        ids!(self, s => s.counters())
    }

    /// Raises `prefix`'s counter to at least `at_least`.
    ///
    /// # Errors
    ///
    /// As [`Store::raise`], and the server's.
    pub fn raise(&self, prefix: &str, at_least: u64) -> Result<Raised> {
        ids!(self, s => s.raise(prefix, at_least))
    }
}
