//! A file mutex that waits instead of failing, and expiring leases on sets of files and
//! directory prefixes, with conflict detection, liveness, renewal and fencing tokens.
//!
//! - [`mutex`]: `FileMutex`, an exclusive/shared advisory lock on a lock-file path with
//!   first-come-first-served waiting and timeouts.
//! - [`lease`] holds leases: named holders' time-limited claims on files and directory
//!   prefixes, exclusive or shared, granted under the root's `FileMutex` only when nothing live
//!   conflicts, with fencing tokens, renewal, liveness-based take-over of dead holders, and one
//!   JSON file per lease written through [`atomic_file`]. Start at [`lease::Leases`].
#![deny(missing_docs)]

pub mod lease;
pub mod mutex;
