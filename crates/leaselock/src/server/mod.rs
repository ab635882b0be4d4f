//! The coordination server: one PostgreSQL connection that many machines' processes share
//! state through (leases here, id counters and claims in the crates above). Behind the
//! `postgres` feature.
//!
//! - **Addresses** are libpq-style URLs, `postgres://user@host:port/database`. The database
//!   must exist; the tool makes its own schema (`gapreg`) in it ([`Server::migrate`]). A
//!   password comes from the URL only when the caller got the URL from the environment; else
//!   from `PGPASSWORD` or the password file (`PGPASSFILE`, `~/.pgpass`). It is never printed:
//!   [`Server::name`] is `user@host:port/database`.
//! - **Durability.** Every session runs with `synchronous_commit=on`, whatever the server's
//!   default: a commit that returns is on the server's disk.
//! - **Waiting.** A call waits at most [`Server::wait`]: connecting (retried while the server
//!   is down or starting), and for locks on the server (`lock_timeout`). Past it the call
//!   fails with [`ServerErrorKind::Unreachable`] or [`ServerErrorKind::Timeout`]
//!   ([`crate::ErrorClass::Busy`]), never hangs, and never falls back to local state.
//! - **Faults.** A transaction whose connection is lost before its commit was sent was rolled
//!   back by the server: it is run again on a new connection, within the wait. A connection
//!   lost *during* the commit leaves the outcome unknown: [`ServerErrorKind::Outcome`], unless
//!   the caller said a retry is safe (an id reservation: a retry can leave a hole, never a
//!   duplicate).
//!
//! ```no_run
//! use leaselock::server::Server;
//! use std::time::Duration;
//!
//! let server = Server::connect("postgres://agent@db.example:5432/coord", Duration::from_secs(5))?;
//! let n: i64 = server.transaction(false, |tx| {
//!     Ok::<_, leaselock::server::ServerError>(tx.query_one("SELECT 1::int8", &[]).map_err(|e| server.error(e))?.get(0))
//! })?;
//! assert_eq!(n, 1);
//! # Ok::<(), leaselock::server::ServerError>(())
//! ```

mod error;
mod password;
mod schema;
mod tls;

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, NoTls, Transaction};

pub use error::{ServerError, ServerErrorKind};
pub use schema::{SCHEMA, SchemaGuard, SchemaState};

/// The PostgreSQL session a connection is: its backend's pid and start time (a pid alone can
/// be reused by a later session).
///
/// A session that something is bound to holds a session-level advisory lock on the key
/// [`Session::lock_key`] (the two-`int4` form, which no other lock of the tool uses) from the
/// moment it is first asked for until it ends. That lock is its proof of life to every other
/// session: `pg_locks` shows every session's locks to every user, where `pg_stat_activity`
/// hides other users' start times, so the test of life is that lock's presence there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// `pg_backend_pid()`.
    pub pid: i32,
    /// The backend's start, in microseconds since the Unix epoch.
    pub started_us: i64,
}

impl Session {
    /// The session as text, `<pid>@<start µs>`, as recorded in leases bound to it.
    pub fn key(&self) -> String {
        format!("{}@{}", self.pid, self.started_us)
    }

    /// The session parsed back from [`Session::key`].
    pub fn parse(key: &str) -> Option<Session> {
        let (pid, start) = key.split_once('@')?;
        Some(Session {
            pid: pid.parse().ok()?,
            started_us: start.parse().ok()?,
        })
    }

    /// The advisory lock the session holds while it lives: the start time's high and low
    /// 32 bits (as `pg_advisory_lock(int4, int4)` takes them).
    pub fn lock_key(&self) -> (i32, i32) {
        let [a, b, c, d, e, f, g, h] = self.started_us.to_be_bytes();
        (
            i32::from_be_bytes([a, b, c, d]),
            i32::from_be_bytes([e, f, g, h]),
        )
    }
}

/// An SQL condition that is true while the session recorded as `$pid` (an `int4` expression)
/// and `$start` (its start, an `int8` expression) lives: it holds its
/// [`Session::lock_key`]. Substitute both before use; see [`live_session`].
const LIVE_SESSION: &str = "EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' \
     AND k.objsubid = 2 AND k.granted AND k.pid = $pid \
     AND k.classid = (($start >> 32) & 4294967295)::oid \
     AND k.objid = ($start & 4294967295)::oid)";

/// An SQL condition true while the session recorded in the columns (or expressions) `pid` and
/// `start` lives (see [`Session`]). Readable by every user of the database.
pub fn live_session(pid: &str, start: &str) -> String {
    LIVE_SESSION.replace("$pid", pid).replace("$start", start)
}

/// How one attempt at a transaction ended.
enum Attempt<T, E> {
    Done(T),
    /// Failed before `step` ran (or setting it up).
    Before(postgres::Error),
    /// `step` failed.
    Step(E),
    /// The commit failed.
    Commit(postgres::Error),
}

/// One open connection and what is known about it.
struct Conn {
    client: Client,
    /// Its session, once something asked for it (and it took its lock of life).
    session: Option<Session>,
    listening: BTreeSet<String>,
}

impl Conn {
    /// The connection's session, learnt (and its lock of life taken) on first use.
    fn session(&mut self) -> Result<Session, postgres::Error> {
        if let Some(s) = self.session {
            return Ok(s);
        }
        // The lock is session-level: it outlives this statement and any transaction, and
        // goes when the session does.
        let row = self.client.query_typed_one(
            "SELECT pid, started, pg_advisory_lock((started >> 32)::bit(32)::int4,
                    started::bit(32)::int4)::text
               FROM (SELECT pg_backend_pid() AS pid,
                            (extract(epoch FROM backend_start) * 1e6)::int8 AS started
                       FROM pg_stat_activity WHERE pid = pg_backend_pid()) me",
            &[],
        )?;
        let session = Session {
            pid: row.get(0),
            started_us: row.get(1),
        };
        self.session = Some(session);
        Ok(session)
    }
}

/// A connection to the coordination server, opened lazily and again after a loss. Cheap to
/// share behind an `Arc`; one call at a time uses the connection.
pub struct Server {
    config: postgres::Config,
    name: String,
    wait: Duration,
    conn: Mutex<Option<Conn>>,
    /// Every component's schema version, once read (see [`Server::schema_state`]).
    versions: Mutex<Option<std::collections::BTreeMap<String, i32>>>,
    /// The versions this handle's users need (see [`Server::expect`]).
    expected: Mutex<std::collections::BTreeMap<String, i32>>,
    /// Notifications received, per channel (see [`Server::notified`]).
    notified: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Whether the address asks for TLS.
    tls: bool,
    /// The TLS connector, when it does.
    #[cfg(feature = "tls")]
    connector: Option<postgres_openssl::MakeTlsConnector>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// The longest a URL may be.
const MAX_URL: usize = 4096;

/// How the client library's TLS failures begin (its `Kind::Tls`, which it does not expose).
const TLS_ERROR: &str = "error performing TLS handshake";

impl Server {
    /// The server at `url`, connected within `wait` (retried while it is down).
    ///
    /// # Errors
    ///
    /// [`ServerErrorKind::BadUrl`] for an unusable address, [`ServerErrorKind::Unreachable`],
    /// [`ServerErrorKind::Auth`], [`ServerErrorKind::NoDatabase`].
    pub fn connect(url: &str, wait: Duration) -> Result<Server, ServerError> {
        let server = Server::new(url, wait)?;
        let start = Instant::now();
        drop(server.conn(start)?);
        Ok(server)
    }

    /// The server at `url`, not connected yet (the first call connects).
    ///
    /// # Errors
    ///
    /// [`ServerErrorKind::BadUrl`] for an unusable address.
    pub fn new(url: &str, wait: Duration) -> Result<Server, ServerError> {
        let (config, name, tls) = parse(url)?;
        #[cfg(feature = "tls")]
        let connector = tls::connector(&tls).map_err(|reason| {
            ServerError::new(ServerErrorKind::BadUrl {
                url: redact(url),
                reason,
            })
        })?;
        Ok(Server {
            config,
            name,
            wait,
            conn: Mutex::new(None),
            versions: Mutex::new(None),
            expected: Mutex::default(),
            notified: Mutex::default(),
            tls: tls != tls::Tls::Off,
            #[cfg(feature = "tls")]
            connector,
        })
    }

    /// A new connection with `config`, over TLS if the address asks for it.
    fn open(&self, config: &postgres::Config) -> Result<Client, postgres::Error> {
        #[cfg(feature = "tls")]
        if let Some(connector) = &self.connector {
            return config.connect(connector.clone());
        }
        config.connect(NoTls)
    }

    /// The same server with another wait.
    pub fn with_wait(mut self, wait: Duration) -> Server {
        self.wait = wait;
        self
    }

    /// The server as `user@host:port/database`, for messages (never with a password).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long a call may wait for the server.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// This connection's session (connecting if needed), which from now on holds its lock of
    /// life (see [`Session`]). Something bound to it dies with it. The connection may be lost
    /// and replaced before the next call: bind within [`Server::session_transaction`].
    ///
    /// # Errors
    ///
    /// As [`Server::connect`].
    pub fn session(&self) -> Result<Session, ServerError> {
        let start = Instant::now();
        loop {
            let mut guard = self.conn(start)?;
            let Some(conn) = guard.as_mut() else {
                continue;
            };
            match conn.session() {
                Ok(s) => return Ok(s),
                Err(_) if conn.client.is_closed() && start.elapsed() < self.wait => {
                    *guard = None;
                }
                Err(e) => return Err(self.classify(e, start.elapsed())),
            }
        }
    }

    /// `e`, classified, naming this server.
    pub fn error(&self, e: postgres::Error) -> ServerError {
        self.classify(e, Duration::ZERO)
    }

    fn classify(&self, e: postgres::Error, waited: Duration) -> ServerError {
        let server = self.name.clone();
        let code = e.code().cloned();
        let reason = describe(&e);
        if self.tls && code.is_none() && e.to_string().starts_with(TLS_ERROR) {
            return ServerError::new(ServerErrorKind::Tls { server, reason });
        }
        match code {
            Some(c)
                if c == SqlState::INVALID_PASSWORD
                    || c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                ServerError::new(ServerErrorKind::Auth {
                    server,
                    user: self.config.get_user().unwrap_or_default().to_owned(),
                    reason,
                })
            }
            Some(c) if c == SqlState::INVALID_CATALOG_NAME => {
                ServerError::new(ServerErrorKind::NoDatabase {
                    server,
                    database: self.config.get_dbname().unwrap_or_default().to_owned(),
                })
            }
            Some(c) if c == SqlState::LOCK_NOT_AVAILABLE || c == SqlState::QUERY_CANCELED => {
                ServerError::new(ServerErrorKind::Timeout {
                    server,
                    waited: waited.max(self.wait),
                })
            }
            Some(c) if is_unavailable(&c) => ServerError::new(ServerErrorKind::Unreachable {
                server,
                waited,
                reason,
            }),
            None if e.is_closed() || e.as_db_error().is_none() && is_io(&e) => {
                ServerError::new(ServerErrorKind::Unreachable {
                    server,
                    waited,
                    reason,
                })
            }
            _ => ServerError::new(ServerErrorKind::Sql { server, source: e }),
        }
    }

    /// The open connection, connecting (retried until the wait from `start` runs out) if
    /// there is none or it was lost.
    fn conn(&self, start: Instant) -> Result<MutexGuard<'_, Option<Conn>>, ServerError> {
        self.conn_within(start, self.wait)
    }

    /// [`Server::conn`], connecting for at most `wait` from `start`.
    fn conn_within(
        &self,
        start: Instant,
        wait: Duration,
    ) -> Result<MutexGuard<'_, Option<Conn>>, ServerError> {
        // A panic while the connection was in use leaves at worst a broken connection, which
        // is checked below.
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_some_and(|c| c.client.is_closed()) {
            *guard = None;
        }
        if guard.is_some() {
            return Ok(guard);
        }
        let mut backoff = Duration::from_millis(20);
        loop {
            let left = wait.saturating_sub(start.elapsed());
            let mut config = self.config.clone();
            config.connect_timeout(left.max(Duration::from_millis(200)));
            // Locks on the server wait at most the handle's wait (whole milliseconds, at
            // least one: zero would mean "wait forever").
            let lock_ms = u64::try_from(self.wait.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            // A session that stops in the middle of a transaction — its process frozen or
            // swapped out — would hold its namespace's lock for good: the server ends it once
            // it has idled in a transaction for half that wait (0.5–5 s; this tool's
            // transactions send their statements back to back), rolling it back.
            let idle_ms = (lock_ms / 2).clamp(500, 5000);
            let options = format!(
                "{} -c lock_timeout={lock_ms} -c idle_in_transaction_session_timeout={idle_ms}",
                self.config.get_options().unwrap_or_default()
            );
            config.options(&options);
            let err = match self.open(&config) {
                Ok(client) => {
                    *guard = Some(Conn {
                        client,
                        session: None,
                        listening: BTreeSet::new(),
                    });
                    return Ok(guard);
                }
                Err(e) => self.classify(e, start.elapsed()),
            };
            let retry = matches!(err.kind(), ServerErrorKind::Unreachable { .. });
            let left = wait.saturating_sub(start.elapsed());
            if !retry || left.is_zero() {
                return Err(match err.kind() {
                    ServerErrorKind::Unreachable { reason, .. } => {
                        ServerError::new(ServerErrorKind::Unreachable {
                            server: self.name.clone(),
                            waited: start.elapsed(),
                            reason: reason.clone(),
                        })
                    }
                    _ => err,
                });
            }
            std::thread::sleep(backoff.min(left));
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// Runs `step` in one transaction and commits it, waiting for the server as
    /// [`Server::wait`] allows. `step` may run more than once: again on a new connection when
    /// the connection was lost before the commit was sent (the server rolled it back), and —
    /// only if `retry_unknown` — when it was lost during the commit (the first attempt may
    /// have committed too: only for changes whose repetition is harmless, such as reserving
    /// fresh ids). Locks taken in `step` wait at most the handle's wait (`lock_timeout`).
    ///
    /// # Errors
    ///
    /// `step`'s error (the transaction is rolled back), or the server's, converted.
    pub fn transaction<T, E: From<ServerError>>(
        &self,
        retry_unknown: bool,
        mut step: impl FnMut(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.attempts(retry_unknown, false, self.wait, |tx, _| step(tx))
    }

    /// Like [`Server::transaction`], waiting for the server at most `wait` (for a caller
    /// whose own deadline is nearer than the handle's wait).
    ///
    /// # Errors
    ///
    /// As [`Server::transaction`].
    pub fn transaction_within<T, E: From<ServerError>>(
        &self,
        wait: Duration,
        retry_unknown: bool,
        mut step: impl FnMut(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.attempts(retry_unknown, false, wait.min(self.wait), |tx, _| step(tx))
    }

    /// Like [`Server::transaction`], with the session the transaction runs in (see
    /// [`Server::session`]) — on a new connection after a loss, the new session — for binding
    /// what the transaction writes to it.
    ///
    /// # Errors
    ///
    /// As [`Server::transaction`].
    pub fn session_transaction<T, E: From<ServerError>>(
        &self,
        retry_unknown: bool,
        step: impl FnMut(&mut Transaction<'_>, Session) -> Result<T, E>,
    ) -> Result<T, E> {
        self.session_transaction_within(self.wait, retry_unknown, step)
    }

    /// Like [`Server::session_transaction`], waiting for the server at most `wait`.
    ///
    /// # Errors
    ///
    /// As [`Server::transaction`].
    pub fn session_transaction_within<T, E: From<ServerError>>(
        &self,
        wait: Duration,
        retry_unknown: bool,
        mut step: impl FnMut(&mut Transaction<'_>, Session) -> Result<T, E>,
    ) -> Result<T, E> {
        self.attempts(
            retry_unknown,
            true,
            wait.min(self.wait),
            |tx, session| match session {
                Some(s) => step(tx, s),
                None => Err(ServerError::new(ServerErrorKind::Outcome {
                    server: self.name.clone(),
                    reason: "the session was not known".to_owned(),
                })
                .into()),
            },
        )
    }

    fn attempts<T, E: From<ServerError>>(
        &self,
        retry_unknown: bool,
        bind: bool,
        wait: Duration,
        mut step: impl FnMut(&mut Transaction<'_>, Option<Session>) -> Result<T, E>,
    ) -> Result<T, E> {
        let start = Instant::now();
        loop {
            let mut guard = self.conn_within(start, wait)?;
            let Some(conn) = guard.as_mut() else {
                continue;
            };
            let session = if bind {
                conn.session().map(Some)
            } else {
                Ok(None)
            };
            let attempt = match session.and_then(|s| Ok((s, conn.client.transaction()?))) {
                Err(e) => Attempt::Before(e),
                Ok((session, mut tx)) => match step(&mut tx, session) {
                    // Dropping `tx` rolls it back.
                    Err(e) => Attempt::Step(e),
                    Ok(value) => match tx.commit() {
                        Ok(()) => Attempt::Done(value),
                        Err(e) => Attempt::Commit(e),
                    },
                },
            };
            let lost = conn.client.is_closed();
            let time_left = start.elapsed() < wait;
            match attempt {
                Attempt::Done(value) => return Ok(value),
                // Lost before the commit was sent: the server rolled it back.
                Attempt::Before(_) | Attempt::Step(_) if lost && time_left => {
                    *guard = None;
                }
                Attempt::Step(e) => return Err(e),
                Attempt::Before(e) => return Err(self.classify(e, start.elapsed()).into()),
                Attempt::Commit(_) if lost && retry_unknown && time_left => {
                    *guard = None;
                }
                Attempt::Commit(e) if lost => {
                    *guard = None;
                    return Err(ServerError::new(ServerErrorKind::Outcome {
                        server: self.name.clone(),
                        reason: describe(&e),
                    })
                    .into());
                }
                Attempt::Commit(e) => return Err(self.classify(e, start.elapsed()).into()),
            }
        }
    }

    /// Runs `step` on the connection outside a transaction (each statement commits by
    /// itself), with the same waiting and reconnecting as [`Server::transaction`]: `step` runs
    /// again on a new connection when the connection was lost, but only if `retry_unknown`
    /// (the lost statement may have committed). For one-statement changes, which cost one
    /// round trip this way instead of three.
    ///
    /// # Errors
    ///
    /// `step`'s error, or [`ServerErrorKind::Outcome`] when the connection was lost under a
    /// step that may not be repeated.
    pub fn run<T, E: From<ServerError>>(
        &self,
        retry_unknown: bool,
        mut step: impl FnMut(&mut Client) -> Result<T, E>,
    ) -> Result<T, E> {
        let start = Instant::now();
        loop {
            let mut guard = self.conn(start)?;
            let Some(conn) = guard.as_mut() else {
                continue;
            };
            match step(&mut conn.client) {
                Ok(value) => return Ok(value),
                Err(e) if conn.client.is_closed() => {
                    *guard = None;
                    if !(retry_unknown && start.elapsed() < self.wait) {
                        let _ = e;
                        return Err(ServerError::new(ServerErrorKind::Outcome {
                            server: self.name.clone(),
                            reason: "the connection closed".to_owned(),
                        })
                        .into());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts listening on `channel` on the current connection (connecting if there is none).
    /// `true` if it already was: a caller that looked before this call can then wait, since
    /// a notification after its look will reach it; `false` if it only starts now (a first
    /// call, or a new connection after one was lost), and the caller must look again first.
    ///
    /// # Errors
    ///
    /// As [`Server::connect`].
    pub fn listen(&self, channel: &str) -> Result<bool, ServerError> {
        let mut guard = self.conn(Instant::now())?;
        let Some(conn) = guard.as_mut() else {
            return Ok(false);
        };
        if conn.listening.contains(channel) {
            return Ok(true);
        }
        conn.client
            .simple_query(&format!("LISTEN {}", quote_ident(channel)))
            .map_err(|e| self.error(e))?;
        conn.listening.insert(channel.to_owned());
        Ok(false)
    }

    /// How many notifications on `channel` this handle has received so far (read before a
    /// look, then given to [`Server::wait_notification`]). Asks the server nothing.
    pub fn notified(&self, channel: &str) -> u64 {
        self.notified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .copied()
            .unwrap_or(0)
    }

    /// Waits up to `timeout` until a notification on `channel` comes after the `seen`-th
    /// ([`Server::notified`]); `true` if one did — or if the connection was lost or replaced
    /// (no longer listening on `channel`), so the caller listens and looks again.
    ///
    /// Every notification read counts for its own channel, whichever waiter reads it: many
    /// waiters on one handle, on one channel or on several, each see theirs. The wait is cut
    /// into slices of at most [`NOTIFY_SLICE`], between which the connection is free: other
    /// calls on this handle — the release a waiter waits for, among them — run meanwhile, and
    /// notifications that arrive during them are read in the next slice.
    ///
    /// # Errors
    ///
    /// As [`Server::connect`].
    pub fn wait_notification(
        &self,
        channel: &str,
        seen: u64,
        timeout: Duration,
    ) -> Result<bool, ServerError> {
        let start = Instant::now();
        loop {
            if self.notified(channel) > seen {
                return Ok(true);
            }
            let left = timeout.saturating_sub(start.elapsed());
            let mut guard = self.conn(start)?;
            let Some(conn) = guard.as_mut() else {
                return Ok(true);
            };
            if !conn.listening.contains(channel) {
                return Ok(true);
            }
            let got = {
                let mut notes = conn.client.notifications();
                let mut iter = notes.timeout_iter(left.min(NOTIFY_SLICE));
                fallible_iterator::FallibleIterator::next(&mut iter)
                    .map(|n| n.map(|n| n.channel().to_owned()))
            };
            match got {
                Ok(Some(first)) => {
                    // Count it, and what else is queued, each for its channel.
                    let mut channels = vec![first];
                    let mut notes = conn.client.notifications();
                    let mut rest = notes.iter();
                    while let Ok(Some(n)) = fallible_iterator::FallibleIterator::next(&mut rest) {
                        channels.push(n.channel().to_owned());
                    }
                    let mut notified = self.notified.lock().unwrap_or_else(|e| e.into_inner());
                    for c in channels {
                        *notified.entry(c).or_default() += 1;
                    }
                }
                Ok(None) if start.elapsed() >= timeout => return Ok(false),
                Ok(None) => {
                    drop(guard);
                    // Let a caller blocked on the connection take it (the mutex is not fair;
                    // notifications meanwhile wait in the socket for the next slice).
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => {
                    *guard = None;
                    return Ok(true);
                }
            }
        }
    }
}

/// The longest [`Server::wait_notification`] holds the connection at a time.
pub const NOTIFY_SLICE: Duration = Duration::from_millis(50);

/// Whether `code` means the server is not available (starting, stopping, crashed, or the
/// connection is gone): worth trying again.
fn is_unavailable(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
}

/// Whether `e` comes from the network (refused, reset, timed out) rather than the server.
fn is_io(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    e.to_string().contains("timed out") || e.to_string().contains("connection")
}

/// `e` with its causes, in one line.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The client configuration and the display name of `url`.
fn parse(url: &str) -> Result<(postgres::Config, String, tls::Tls), ServerError> {
    let bad = |reason: &str| {
        ServerError::new(ServerErrorKind::BadUrl {
            url: redact(url),
            reason: reason.to_owned(),
        })
    };
    if url.len() > MAX_URL || url.chars().any(char::is_control) {
        return Err(bad(
            "it is longer than 4096 bytes or holds control characters",
        ));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad(
            "it must be a URL like postgres://user@host:5432/database",
        ));
    }
    let (rest, tls) = tls::split(url).map_err(|reason| bad(&reason))?;
    let mut config: postgres::Config = rest
        .parse()
        .map_err(|e: postgres::Error| bad(&e.to_string()))?;
    if config.get_hosts().is_empty() {
        return Err(bad("it names no host"));
    }
    let Some(db) = config.get_dbname().map(str::to_owned) else {
        return Err(bad(
            "it names no database (postgres://user@host:5432/database)",
        ));
    };
    let user = match config.get_user() {
        Some(u) => u.to_owned(),
        None => {
            let u = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .map_err(|_| bad("it names no user, and neither PGUSER nor USER is set"))?;
            config.user(&u);
            u
        }
    };
    match tls {
        tls::Tls::Off => config.ssl_mode(postgres::config::SslMode::Disable),
        #[cfg(feature = "tls")]
        tls::Tls::Verified { .. } => config.ssl_mode(postgres::config::SslMode::Require),
        #[cfg(not(feature = "tls"))]
        tls::Tls::Verified { .. } => {
            return Err(bad(
                "it asks for TLS (sslmode=require, verify-ca or verify-full), which this build \
                 does not have: build gapreg with the `tls` feature, or use a server on a \
                 private network or loopback",
            ));
        }
    };
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(h) => h.clone(),
        postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    if config.get_password().is_none() {
        if let Some(pw) = password::lookup(&host, port, &db, &user) {
            config.password(pw);
        }
    }
    let options = match config.get_options() {
        Some(o) => format!("{o} -c synchronous_commit=on"),
        None => "-c synchronous_commit=on".to_owned(),
    };
    // The lock wait is added at each connect (it is the handle's wait).
    config.options(&options);
    if config.get_application_name().is_none() {
        config.application_name("gapreg");
    }
    config.keepalives_idle(Duration::from_secs(30));
    let name = format!("{user}@{host}:{port}/{db}");
    Ok((config, name, tls))
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let tail = redact_query(tail);
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{}", redact_query(tail)),
    }
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***".to_owned()
            } else {
                kv.to_owned()
            }
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        let (_, name, _) = parse("postgres://me:secret@db.example:6543/coord").expect("parses");
        assert_eq!(name, "me@db.example:6543/coord");
        assert_eq!(
            redact("postgres://me:secret@db.example/coord?password=x&a=b"),
            "postgres://me@db.example/coord?password=***&a=b"
        );
        let mut bads = vec!["mysql://me@h/db", "postgres://me@h", "host=h dbname=d"];
        if cfg!(not(feature = "tls")) {
            bads.push("postgres://me@h/db?sslmode=require");
        }
        for bad in bads {
            let e = parse(bad).expect_err(bad);
            assert!(
                matches!(e.kind(), ServerErrorKind::BadUrl { .. }),
                "{bad}: {e}"
            );
        }
        let e = parse("postgres://me:secret@h/db?sslmode=always").expect_err("no such mode");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn a_server_that_is_not_there_fails_within_the_wait_as_busy() {
        // A loopback port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let start = Instant::now();
        let e = Server::connect(
            &format!("postgres://me@127.0.0.1:{port}/db"),
            Duration::from_millis(600),
        )
        .expect_err("nobody listens");
        let took = start.elapsed();
        assert_eq!(e.class(), crate::ErrorClass::Busy, "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(took >= Duration::from_millis(300), "gave up after {took:?}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
}
