//! `coordination: postgres`: the coordination state on a PostgreSQL server shared by every
//! machine — id counters and the registry order ([`idreserve::PgCounters`]), claims and
//! leases ([`leaselock::lease::PgLeases`], namespaces `<ns>/claims` and `<ns>/leases`), and
//! idempotency records (here, table `gapreg.idempotency_keys`). Behind the `postgres`
//! feature.
//!
//! The address comes from `GAPREG_COORDINATION_URL`, else from the clone's own, never-tracked
//! `coordination.url` (`gapreg coordination set URL`), never from a tracked file; with
//! neither, the registry refuses to work rather than fall back to local counters (that would
//! fork them). The handle connects on first use, and on that first use of a namespace (no
//! counter yet) raises its counters above every id and position the documents hold.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use idreserve::PgCounters;
use leaselock::lease::PgLeases;
use leaselock::server::Server;
use postgres::types::Type;

use crate::error::{Error, Result};
use crate::layout::{Layout, URL_FILE};
use crate::store::{Claim, Coordination, KeyRecord};
use crate::time::Timestamp;

use super::claims;
use super::files::Files;

/// The environment variable holding the coordination server's address.
pub const URL_ENV: &str = "GAPREG_COORDINATION_URL";

/// The `gapreg` component's migrations (its own tables; see [`Server::migrate`]).
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE gapreg.idempotency_keys (
    ns text NOT NULL,
    key text NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (ns, key)
);
"];

/// The component name of gapreg's tables in `gapreg.schema_version`.
pub const COMPONENT: &str = "gapreg";

/// How long a call waits for the server unless told otherwise (`--wait`).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The largest `coordination.url` read.
const MAX_URL_FILE: u64 = 8 * 1024;

/// Where the address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    /// `GAPREG_COORDINATION_URL`.
    Environment,
    /// The clone's `coordination.url`.
    Clone,
}

/// The coordination server's address for the registry at `layout`, and where it came from.
pub(crate) fn resolve_url(layout: &Layout) -> Result<(String, UrlSource)> {
    if let Some(url) = std::env::var_os(URL_ENV) {
        let url = url
            .into_string()
            .map_err(|_| Error::invalid(URL_ENV, "it is not UTF-8"))?;
        if !url.trim().is_empty() {
            return Ok((url.trim().to_owned(), UrlSource::Environment));
        }
    }
    if let Some(dir) = layout.coordination(false)? {
        if let Some(bytes) = dir.read(URL_FILE, MAX_URL_FILE)? {
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::corrupt(dir.join(URL_FILE), "it is not UTF-8"))?;
            let url = text.trim();
            if !url.is_empty() {
                return Ok((url.to_owned(), UrlSource::Clone));
            }
        }
    }
    Err(Error::invalid(
        "coordination server",
        format!(
            "this registry keeps its coordination state on a PostgreSQL server \
             (coordination: postgres), and no address is set: export {URL_ENV}=postgres://\
             user@host:5432/database, or run `gapreg coordination set URL` once in this clone"
        ),
    ))
}

/// Reaches the server a registry about to be made at `layout` will use, within `wait`, and
/// makes the schema current: a registry is created only once its server answers.
pub(crate) fn reach(layout: &Layout, wait: Duration) -> Result<()> {
    let url = match std::env::var_os(URL_ENV) {
        // The address the registry would use (this clone's setting included)...
        Some(_) => resolve_url(layout)?.0,
        None => match resolve_url(layout) {
            Ok((url, _)) => url,
            // ... and without one, what to do before `init` (`coordination set` needs the
            // registry).
            Err(_) => {
                return Err(Error::invalid(
                    "coordination server",
                    format!(
                        "a registry with coordination: postgres needs its server's address: \
                         export {URL_ENV}=postgres://user@host:5432/database and run init \
                         again (nothing was created)"
                    ),
                ));
            }
        },
    };
    let server = Server::new(&url, wait)?;
    // Every component a registry uses: a server that one of them cannot be used on is refused
    // before anything is created.
    server.migrate(COMPONENT, MIGRATIONS)?;
    server.migrate(idreserve::PG_COMPONENT, idreserve::PG_MIGRATIONS)?;
    server.migrate(
        leaselock::lease::PG_COMPONENT,
        leaselock::lease::PG_MIGRATIONS,
    )?;
    Ok(())
}

/// Records `url` as this clone's coordination server (never tracked). A password in it is
/// refused: it belongs in `PGPASSWORD` or `~/.pgpass`.
pub(crate) fn set_url(layout: &Layout, url: &str) -> Result<PathBuf> {
    // Checked as the server would check it, so a bad address is refused now.
    Server::new(url, DEFAULT_WAIT)?;
    if has_password(url) {
        return Err(Error::invalid(
            "coordination server address",
            "it holds a password, which is never written to a file: give the address \
             without it, and the password in PGPASSWORD or ~/.pgpass",
        ));
    }
    let dir = layout
        .coordination(true)?
        .ok_or_else(|| Error::invalid("coordination directory", "cannot be created"))?;
    let mut text = url.to_owned();
    text.push('\n');
    dir.write(URL_FILE, text.as_bytes(), &atomic_file::Options::new())?;
    Ok(dir.join(URL_FILE))
}

/// Whether `url` carries a password (`user:pw@` or `password=`).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    authority
        .rsplit_once('@')
        .is_some_and(|(u, _)| u.contains(':'))
        || url.contains("password=")
}

/// The server's handle: made on first use, nothing asked of the server yet.
#[derive(Debug)]
struct Connected {
    server: Arc<Server>,
    /// The counters. Until [`PgCoordination::checked`], only their
    /// [`PgCounters::reserve_existing`] is used, whose statement checks its table itself:
    /// `gapreg ids reserve` asks the server one thing.
    ids: PgCounters,
    checked: OnceLock<Checked>,
}

/// What is known once every component's tables are checked (created or migrated if needed).
#[derive(Debug)]
struct Checked {
    claims: PgLeases,
    /// Set once the namespace is known to be seeded (see [`PgCoordination::ids`]).
    seeded: OnceLock<()>,
}

/// The coordination state of a registry on a server.
#[derive(Debug, Clone)]
pub(crate) struct PgCoordination {
    pub(crate) ns: String,
    wait: Duration,
    layout: Layout,
    /// The documents, to raise a new namespace's counters above them.
    files: Files,
    conn: Arc<OnceLock<Connected>>,
}

impl PgCoordination {
    /// Not connected yet.
    /// Not connected yet, and the address not looked up yet: a clone can be opened to set
    /// it (`gapreg coordination set`).
    pub(crate) fn new(layout: &Layout, ns: &str, files: &Files) -> Result<PgCoordination> {
        Ok(PgCoordination {
            ns: ns.to_owned(),
            wait: DEFAULT_WAIT,
            layout: layout.clone(),
            files: files.clone(),
            conn: Arc::default(),
        })
    }

    /// This handle waiting `wait` for the server.
    pub(crate) fn with_wait(mut self, wait: Duration) -> PgCoordination {
        if self.conn.get().is_none() {
            self.wait = wait;
            self.conn = Arc::default();
        }
        self
    }

    /// The server, with every component's tables current.
    pub(crate) fn server(&self) -> Result<&Arc<Server>> {
        self.checked()?;
        Ok(&self.connected()?.server)
    }

    /// The server's handle, its address resolved; connecting is left to the first call.
    fn connected(&self) -> Result<&Connected> {
        if let Some(c) = self.conn.get() {
            return Ok(c);
        }
        let (url, _) = resolve_url(&self.layout)?;
        let server = Arc::new(Server::new(&url, self.wait)?);
        // Every component this registry uses: the one-statement reservation runs only while
        // all of them are at this build's versions.
        server.expect(COMPONENT, MIGRATIONS);
        server.expect(
            leaselock::lease::PG_COMPONENT,
            leaselock::lease::PG_MIGRATIONS,
        );
        let ids = PgCounters::lazy(server.clone(), &self.ns);
        Ok(self.conn.get_or_init(|| Connected {
            server,
            ids,
            checked: OnceLock::new(),
        }))
    }

    /// Every component's tables checked: one query on a handle's first call, none after it.
    fn checked(&self) -> Result<&Checked> {
        let connected = self.connected()?;
        if let Some(c) = connected.checked.get() {
            return Ok(c);
        }
        let server = &connected.server;
        server.migrate(COMPONENT, MIGRATIONS)?;
        connected.ids.check()?;
        let claims = PgLeases::open(
            server.clone(),
            &format!("{}/claims", self.ns),
            self.layout.repo(),
        )?;
        Ok(connected.checked.get_or_init(|| Checked {
            claims,
            seeded: OnceLock::new(),
        }))
    }

    /// The counters, their table checked and the namespace seeded.
    pub(crate) fn ids(&self) -> Result<&PgCounters> {
        let checked = self.checked()?;
        let ids = &self.connected()?.ids;
        if checked.seeded.get().is_none() {
            // A namespace's first use (or one whose counters were lost): its counters start
            // above every id and position the documents hold, so no id they have is handed
            // out again. All of them in one transaction, only if the namespace has none, so a
            // counter that exists proves them all raised.
            ids.seed(&super::shared::highest_in_documents(&self.files)?)?;
            let _ = checked.seeded.set(());
        }
        Ok(ids)
    }

    /// Reserves `n` ids of `prefix`. A counter that exists proves the namespace seeded: one
    /// statement. Else (a new prefix, a new namespace, a counter at its end, tables not at
    /// this build's version) the full way.
    pub(crate) fn reserve_ids(&self, prefix: &str, n: u64) -> Result<idreserve::Reservation> {
        if let Some(r) = self.connected()?.ids.reserve_existing(prefix, n)? {
            return Ok(r);
        }
        Ok(self.ids()?.reserve(prefix, n)?)
    }

    /// The leases on the repository's files.
    pub(crate) fn leases(&self) -> Result<PgLeases> {
        let server = self.server()?.clone();
        Ok(PgLeases::open(
            server,
            &format!("{}/leases", self.ns),
            self.layout.repo(),
        )?)
    }

    fn key_error(&self, key: &str, reason: String) -> Error {
        Error::corrupt(self.key_location(key), reason)
    }
}

impl Coordination for PgCoordination {
    fn peek(&self, prefix: &str) -> Result<u64> {
        Ok(self.ids()?.peek(prefix)?.number())
    }

    fn reserve(&self, prefix: &str, n: u64) -> Result<u64> {
        Ok(self.reserve_ids(prefix, n)?.first())
    }

    fn raise(&self, prefix: &str, at_least: u64) -> Result<()> {
        self.ids()?.raise(prefix, at_least)?;
        Ok(())
    }

    fn validate(&self, id: &str) -> Result<()> {
        self.ids()?.validate(id)?;
        Ok(())
    }

    fn read_key(&self, key: &str) -> Result<Option<KeyRecord>> {
        let server = self.server()?;
        let record: Option<String> = server.run(true, |client| {
            let row = client
                .query_typed_opt(
                    "SELECT record FROM gapreg.idempotency_keys WHERE ns = $1 AND key = $2",
                    &[(&self.ns, Type::TEXT), (&key, Type::TEXT)],
                )
                .map_err(|e| server.error(e))?;
            Ok::<_, Error>(row.map(|r| r.get(0)))
        })?;
        record
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| self.key_error(key, format!("it is not a key record: {e}")))
            })
            .transpose()
    }

    fn write_key(&self, key: &str, record: &KeyRecord) -> Result<()> {
        let server = self.server()?;
        let text = serde_json::to_string(record)
            .map_err(|e| self.key_error(key, format!("it cannot be encoded: {e}")))?;
        // Repeating it is harmless: the same record.
        server.run(true, |client| {
            client
                .execute_typed(
                    "INSERT INTO gapreg.idempotency_keys (ns, key, record) VALUES ($1, $2, $3)
                     ON CONFLICT (ns, key) DO UPDATE SET record = $3",
                    &[
                        (&self.ns, Type::TEXT),
                        (&key, Type::TEXT),
                        (&text, Type::TEXT),
                    ],
                )
                .map_err(|e| server.error(e))?;
            Ok::<_, Error>(())
        })
    }

    fn key_location(&self, key: &str) -> PathBuf {
        let server = self
            .conn
            .get()
            .map_or("(not connected)", |c| c.server.name());
        PathBuf::from(format!("postgres {server} key {}/{key}", self.ns))
    }

    fn take_claim(
        &self,
        id: &str,
        agent: &str,
        expires: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<()> {
        claims::take(&self.checked()?.claims, id, agent, expires, now)
    }

    fn release_claim(&self, id: &str, agent: &str) -> Result<()> {
        claims::release(&self.checked()?.claims, id, agent)
    }

    fn live_claims(&self, _now: Timestamp) -> Result<BTreeMap<String, Claim>> {
        // Judged on the server's clock.
        claims::live(&self.checked()?.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::has_password;

    #[test]
    fn passwords_in_addresses_are_recognised() {
        assert!(has_password("postgres://me:pw@h/db"));
        assert!(has_password("postgres://me@h/db?password=x"));
        assert!(!has_password("postgres://me@h:5432/db"));
        assert!(!has_password("postgres://h/db"));
    }
}
