//! A file mutex that waits instead of failing, and expiring leases on sets of files and
//! directory prefixes, with conflict detection, liveness, renewal and fencing tokens.
//!
//! - [`mutex`]: `FileMutex`, an exclusive/shared advisory lock on a lock-file path with
//!   first-come-first-served waiting and timeouts.
//! - [`lease`] holds leases: named holders' time-limited claims on files and directory
//!   prefixes, exclusive or shared, granted under the root's `FileMutex` only when nothing live
//!   conflicts, with fencing tokens, renewal, liveness-based take-over of dead holders, and one
//!   checksummed JSON file per lease written through [`atomic_file`]. Start at
//!   [`lease::Leases`].
//!
//! Features: `postgres` adds `server` (a PostgreSQL coordination server's connection, shared
//! schema and migrations) and `lease::PgLeases` (the same leases, on a server shared by many
//! machines, waiters granted first come, first served); `tls` adds TLS to that server
//! (`sslmode=require`, `verify-ca`, `verify-full`, `sslrootcert`) through the system's OpenSSL.
//!
//! Both treat their directories as untrusted (a repository's `.gapreg/` may come from a
//! stranger's `git clone`): every file is reached through an [`atomic_file::dir::Dir`], never
//! by following a symlink, and every file whose damage could grant a conflicting lease or reuse
//! a fencing token is verified before it is trusted. Unix only (the `*at` calls and `flock`).
#![deny(missing_docs)]

#[cfg(not(unix))]
compile_error!(
    "leaselock needs a Unix system: it reaches its files only through directory descriptors \
     (atomic_file::dir::Dir) and locks them with flock"
);

pub mod lease;
pub mod mutex;
#[cfg(feature = "postgres")]
pub mod server;
mod sync;
pub mod time;

/// The class of an error (what an exit code or a retry loop needs), shared by every crate of
/// this workspace; see [`mutex::MutexError::class`] and [`lease::LeaseError::class`].
pub use atomic_file::ErrorClass;
