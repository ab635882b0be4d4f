//! Id counters on the coordination server ([`PgCounters`]), shared by every machine whose
//! registry names the same namespace. Behind the `postgres` feature.
//!
//! One table (component `idreserve`, schema `gapreg`): `id_counters (ns, prefix, last)`,
//! `last` the highest number handed out. A reservation is one statement — an upsert adding
//! the count, refused past `i64::MAX` — committed synchronously before it returns, so an id
//! is never handed out twice, across server crashes included. A reservation whose connection
//! is lost during its commit is tried again: the first attempt may have committed, which
//! leaves a hole (never a duplicate), like a reservation whose caller died before printing.

use std::collections::BTreeMap;
use std::sync::Arc;

use leaselock::server::Server;
use postgres::types::{ToSql, Type};

use crate::error::{Error, ErrorKind};
use crate::id::{Id, check_prefix};
use crate::protocol::check_count;
use crate::store::{Raised, Reservation};

/// The `idreserve` component's migrations, in order.
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE gapreg.id_counters (
    ns text NOT NULL,
    prefix text NOT NULL,
    last bigint NOT NULL CHECK (last >= 0),
    PRIMARY KEY (ns, prefix)
);
"];

/// The component name of these tables in `gapreg.schema_version`.
pub const COMPONENT: &str = "idreserve";

/// The counters of one namespace on a coordination server.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use leaselock::server::Server;
///
/// let server = Arc::new(Server::connect("postgres://agent@db.example/coord", Duration::from_secs(5))?);
/// let ids = idreserve::PgCounters::open(server, "my-repo")?;
/// let batch = ids.reserve("SEC", 3)?;
/// assert_eq!(batch.len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PgCounters {
    server: Arc<Server>,
    ns: String,
}

impl PgCounters {
    /// The counters of namespace `ns` on `server`, creating or migrating the table if needed.
    ///
    /// # Errors
    ///
    /// The server's, as [`ErrorKind::Server`].
    pub fn open(server: Arc<Server>, ns: &str) -> Result<PgCounters, Error> {
        let counters = PgCounters::lazy(server, ns);
        counters.check()?;
        Ok(counters)
    }

    /// The counters of namespace `ns` on `server`, nothing asked of the server yet: the first
    /// call checks (and if needed creates or migrates) the table, as [`PgCounters::open`]
    /// does — except [`PgCounters::reserve_existing`], whose statement checks the table's
    /// version itself, so a process that only reserves asks the server one thing.
    pub fn lazy(server: Arc<Server>, ns: &str) -> PgCounters {
        server.expect(COMPONENT, MIGRATIONS);
        PgCounters {
            server,
            ns: ns.to_owned(),
        }
    }

    /// Checks the table now, creating or migrating it if needed (one query per server
    /// handle, none after it; every call but [`PgCounters::reserve_existing`] makes it).
    ///
    /// # Errors
    ///
    /// The server's, as [`ErrorKind::Server`]; a table newer than this build is refused.
    pub fn check(&self) -> Result<(), Error> {
        Ok(self.server.migrate(COMPONENT, MIGRATIONS)?)
    }

    /// The server.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// Reserves `count` consecutive ids of `prefix` (see [`crate::Store::reserve`]).
    ///
    /// # Errors
    ///
    /// As [`crate::Store::reserve`], and [`ErrorKind::Server`].
    pub fn reserve(&self, prefix: &str, count: u64) -> Result<Reservation, Error> {
        check_prefix(prefix)?;
        check_count(count)?;
        self.check()?;
        let n = i64::try_from(count).unwrap_or(i64::MAX);
        let last = self.server.run(true, |client| {
            let row = client
                .query_typed_opt(
                    "INSERT INTO gapreg.id_counters AS c (ns, prefix, last) VALUES ($1, $2, $3)
                     ON CONFLICT (ns, prefix) DO UPDATE SET last = c.last + $3
                       WHERE c.last <= 9223372036854775807 - $3
                     RETURNING last",
                    &[
                        (&self.ns, Type::TEXT),
                        (&prefix, Type::TEXT),
                        (&n, Type::INT8),
                    ],
                )
                .map_err(|e| self.server.error(e))?;
            Ok::<_, Error>(row.map(|r| r.get::<_, i64>(0)))
        })?;
        let Some(last) = last.and_then(|l| u64::try_from(l).ok()) else {
            let counter = self.counter(prefix)?;
            return Err(Error::new(ErrorKind::Overflow {
                prefix: prefix.to_owned(),
                counter,
                count,
            }));
        };
        Ok(reservation(prefix, last, count))
    }

    /// Like [`PgCounters::reserve`], but only from a counter that exists and has room for
    /// `count` more, and only while every component the server handle expects (this one's
    /// table, and whatever its owner recorded with [`Server::expect`]) is at the version this
    /// build knows: `None` (nothing changed) otherwise, and the caller takes the full way.
    /// One statement, which checks the versions itself (so it needs no
    /// [`PgCounters::open`] check first) and never inserts: for a caller that must do
    /// something first when a counter is new.
    ///
    /// # Errors
    ///
    /// As [`PgCounters::reserve`].
    pub fn reserve_existing(&self, prefix: &str, count: u64) -> Result<Option<Reservation>, Error> {
        check_prefix(prefix)?;
        check_count(count)?;
        let n = i64::try_from(count).unwrap_or(i64::MAX);
        let guard = self.server.schema_guard();
        let sql = format!(
            "UPDATE gapreg.id_counters SET last = last + $3
              WHERE ns = $1 AND prefix = $2 AND last <= 9223372036854775807 - $3 AND {}
              RETURNING last",
            guard.condition(4)
        );
        let last = self.server.run(true, |client| {
            let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
                (&self.ns, Type::TEXT),
                (&prefix, Type::TEXT),
                (&n, Type::INT8),
            ];
            params.extend(guard.params());
            let row = client.query_typed_opt(&sql, &params);
            match row {
                Ok(row) => Ok(row.map(|r| r.get::<_, i64>(0))),
                // No tables yet: the full way creates them.
                Err(e) if Server::is_missing_table(&e) => Ok(None),
                Err(e) => Err(Error::from(self.server.error(e))),
            }
        })?;
        Ok(last
            .and_then(|l| u64::try_from(l).ok())
            .map(|last| reservation(prefix, last, count)))
    }

    /// Raises the namespace's counters to `counters` (a prefix's highest number in use), all
    /// at once and only if the namespace has no counter yet — its first use, or one whose
    /// counters were lost — so that no number already in use is handed out. One transaction
    /// under the namespace's seeding lock: two first users seed once, and a counter that
    /// exists proves the whole seed committed. Whether it seeded.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidPrefix`], [`ErrorKind::Overflow`] past `i64::MAX`,
    /// [`ErrorKind::Server`].
    pub fn seed(&self, counters: &BTreeMap<String, u64>) -> Result<bool, Error> {
        let mut prefixes = Vec::with_capacity(counters.len());
        let mut lasts = Vec::with_capacity(counters.len());
        for (prefix, &n) in counters {
            lasts.push(stored(prefix, n)?);
            prefixes.push(prefix.clone());
        }
        self.check()?;
        self.server.transaction(false, |tx| {
            tx.execute_typed(
                "SELECT pg_advisory_xact_lock(hashtextextended('idreserve seed ' || $1, 0))::text",
                &[(&self.ns, Type::TEXT)],
            )
            .map_err(|e| self.server.error(e))?;
            // A statement of its own, so that its snapshot is taken once the lock is held and
            // sees what an earlier seeder committed.
            let seeded: bool = tx
                .query_typed_one(
                    "SELECT NOT EXISTS (SELECT 1 FROM gapreg.id_counters WHERE ns = $1)",
                    &[(&self.ns, Type::TEXT)],
                )
                .map_err(|e| self.server.error(e))?
                .get(0);
            if seeded {
                tx.execute_typed(
                    "INSERT INTO gapreg.id_counters AS c (ns, prefix, last)
                     SELECT $1, p, n FROM unnest($2::text[], $3::int8[]) AS t(p, n) WHERE n > 0
                     ON CONFLICT (ns, prefix) DO UPDATE SET last = greatest(c.last, excluded.last)",
                    &[
                        (&self.ns, Type::TEXT),
                        (&prefixes, Type::TEXT_ARRAY),
                        (&lasts, Type::INT8_ARRAY),
                    ],
                )
                .map_err(|e| self.server.error(e))?;
            }
            Ok::<_, Error>(seeded)
        })
    }

    /// Raises `prefix`'s counter to at least `at_least` (never lowers it).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidPrefix`], [`ErrorKind::Server`].
    pub fn raise(&self, prefix: &str, at_least: u64) -> Result<Raised, Error> {
        let value = stored(prefix, at_least)?;
        self.check()?;
        let before = self.server.transaction(false, |tx| {
            let before: i64 = tx
                .query_typed_opt(
                    "SELECT last FROM gapreg.id_counters WHERE ns = $1 AND prefix = $2 FOR UPDATE",
                    &[(&self.ns, Type::TEXT), (&prefix, Type::TEXT)],
                )
                .map_err(|e| self.server.error(e))?
                .map_or(0, |r| r.get(0));
            if value > before {
                tx.execute_typed(
                    "INSERT INTO gapreg.id_counters AS c (ns, prefix, last) VALUES ($1, $2, $3)
                     ON CONFLICT (ns, prefix) DO UPDATE SET last = greatest(c.last, $3)",
                    &[
                        (&self.ns, Type::TEXT),
                        (&prefix, Type::TEXT),
                        (&value, Type::INT8),
                    ],
                )
                .map_err(|e| self.server.error(e))?;
            }
            Ok::<_, Error>(before)
        })?;
        let before = u64::try_from(before).unwrap_or(0);
        Ok(Raised {
            before,
            after: before.max(at_least),
        })
    }

    /// The next id [`PgCounters::reserve`] would hand out for `prefix`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidPrefix`], [`ErrorKind::Server`].
    pub fn peek(&self, prefix: &str) -> Result<Id, Error> {
        check_prefix(prefix)?;
        let counter = self.counter(prefix)?;
        Id::new(prefix, counter.saturating_add(1))
    }

    /// Accepts `id` only if it was handed out here (see [`crate::Store::validate`]; ids on a
    /// server are never zero-padded).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotReserved`], [`ErrorKind::NotCanonical`], [`ErrorKind::Server`].
    pub fn validate(&self, id: &str) -> Result<Id, Error> {
        let parsed = Id::parse_lenient(id)?;
        let canonical = Id::new(parsed.prefix(), parsed.number())?;
        canonical.check_canonical(id)?;
        let counter = self.counter(parsed.prefix())?;
        if parsed.number() == 0 || parsed.number() > counter {
            return Err(Error::new(ErrorKind::NotReserved {
                id: canonical.to_string(),
                prefix: canonical.prefix().to_owned(),
                counter,
            }));
        }
        Ok(canonical)
    }

    /// `prefix`'s counter (0 if it has none).
    fn counter(&self, prefix: &str) -> Result<u64, Error> {
        Ok(self
            .counters_where(Some(prefix))?
            .remove(prefix)
            .unwrap_or(0))
    }

    /// Every prefix's counter (the highest number handed out).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Server`].
    pub fn counters(&self) -> Result<BTreeMap<String, u64>, Error> {
        self.counters_where(None)
    }

    fn counters_where(&self, prefix: Option<&str>) -> Result<BTreeMap<String, u64>, Error> {
        self.check()?;
        self.server.run(true, |client| {
            let rows = client
                .query_typed(
                    "SELECT prefix, last FROM gapreg.id_counters
                     WHERE ns = $1 AND ($2::text IS NULL OR prefix = $2)",
                    &[(&self.ns, Type::TEXT), (&prefix, Type::TEXT)],
                )
                .map_err(|e| self.server.error(e))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let last: i64 = r.get(1);
                    (r.get::<_, String>(0), u64::try_from(last).unwrap_or(0))
                })
                .collect())
        })
    }
}

/// `n`, a counter of `prefix` to store, as the table's `bigint` (the prefix checked).
fn stored(prefix: &str, n: u64) -> Result<i64, Error> {
    check_prefix(prefix)?;
    i64::try_from(n).map_err(|_| {
        Error::new(ErrorKind::Overflow {
            prefix: prefix.to_owned(),
            counter: n,
            count: 0,
        })
    })
}

/// The reservation of the `count` ids of `prefix` ending at `last`.
fn reservation(prefix: &str, last: u64, count: u64) -> Reservation {
    Reservation {
        prefix: prefix.to_owned(),
        first: last - (count - 1),
        count,
        width: 0,
    }
}
