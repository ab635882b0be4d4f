//! A file mutex that waits instead of failing, and expiring leases on sets of files and
//! directory prefixes, with conflict detection, liveness, renewal and fencing tokens.
//!
//! - [`mutex`]: `FileMutex`, an exclusive/shared advisory lock on a lock-file path with
//!   first-come-first-served waiting and timeouts.
//! - [`lease`]: leases (named holders' time-limited claims on files and directory prefixes)
//!   granted under the root's `FileMutex`, persisted through [`atomic_file`].
#![deny(missing_docs)]

pub mod lease;
pub mod mutex;
