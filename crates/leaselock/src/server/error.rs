//! What can go wrong talking to the coordination server, each case naming the server and
//! saying what to do.

use std::time::Duration;

use crate::ErrorClass;

/// An error from the coordination server. Match on [`ServerError::kind`].
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ServerError {
    kind: Box<ServerErrorKind>,
}

/// What went wrong with the coordination server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerErrorKind {
    /// The address is not a usable `postgres://` URL.
    #[error("the coordination server address {url:?} is not usable: {reason}")]
    BadUrl {
        /// The address, with any password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached (or was starting, stopping or crashed) for as long as
    /// the call may wait. Nothing was changed.
    #[error(
        "the coordination server {server} cannot be reached (tried for {waited:?}): {reason}; \
         check that PostgreSQL is running there and accepts connections, or wait longer \
         with --wait"
    )]
    Unreachable {
        /// The server, as `user@host:port/database`.
        server: String,
        /// How long this call tried.
        waited: Duration,
        /// The last failure.
        reason: String,
    },
    /// The server refused the credentials.
    #[error(
        "the coordination server {server} refused user {user:?}: {reason}; give the password \
         in PGPASSWORD or in ~/.pgpass (never in a tracked file)"
    )]
    Auth {
        /// The server.
        server: String,
        /// The user.
        user: String,
        /// The server's message.
        reason: String,
    },
    /// The TLS handshake failed: the server offers no TLS, or its certificate or name did not
    /// verify.
    #[error(
        "the coordination server {server} failed the TLS handshake: {reason}; check that it \
         has ssl=on, and give the certificate authority that signed its certificate with \
         sslrootcert=PATH in the address (verify-ca skips the name check)"
    )]
    Tls {
        /// The server.
        server: String,
        /// What failed.
        reason: String,
    },
    /// The database named in the address does not exist.
    #[error(
        "the database {database:?} does not exist on the coordination server {server}; create \
         it (createdb {database}) or fix the address"
    )]
    NoDatabase {
        /// The server.
        server: String,
        /// The database.
        database: String,
    },
    /// A lock on the server was not granted within the wait.
    #[error("timed out after {waited:?} waiting for a lock on the coordination server {server}")]
    Timeout {
        /// The server.
        server: String,
        /// How long this call waited.
        waited: Duration,
    },
    /// The connection was lost while a commit was under way: the change may or may not have
    /// been made.
    #[error(
        "the connection to the coordination server {server} was lost while committing: the \
         change may or may not have been made ({reason}); look before retrying"
    )]
    Outcome {
        /// The server.
        server: String,
        /// The failure.
        reason: String,
    },
    /// The schema on the server cannot be used by this build.
    #[error("the coordination schema on {server} cannot be used: {reason}")]
    Schema {
        /// The server.
        server: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A statement failed otherwise (the server's own message shown: the client's error
    /// alone says only "db error").
    #[error("the coordination server {server} failed: {}", super::describe(.source))]
    Sql {
        /// The server.
        server: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
}

impl ServerError {
    pub(crate) fn new(kind: ServerErrorKind) -> ServerError {
        ServerError {
            kind: Box::new(kind),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ServerErrorKind {
        &self.kind
    }

    /// The class of this error: an unreachable server, a lock wait that ran out or an
    /// unknown outcome is [`ErrorClass::Busy`] (try again later); a bad address, refused
    /// credentials, a failed TLS handshake or a missing database [`ErrorClass::Invalid`]; an unusable schema
    /// [`ErrorClass::Damaged`]; anything else [`ErrorClass::Failure`].
    pub fn class(&self) -> ErrorClass {
        use ServerErrorKind as K;
        match &*self.kind {
            K::Unreachable { .. } | K::Timeout { .. } | K::Outcome { .. } => ErrorClass::Busy,
            K::BadUrl { .. } | K::Auth { .. } | K::Tls { .. } | K::NoDatabase { .. } => {
                ErrorClass::Invalid
            }
            K::Schema { .. } => ErrorClass::Damaged,
            K::Sql { .. } => ErrorClass::Failure,
        }
    }
}
