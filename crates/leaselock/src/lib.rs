//! A file mutex that waits instead of failing, and expiring leases on sets of files and
//! directory prefixes, with conflict detection, liveness, renewal and fencing tokens.
//!
//! **Status:** this crate is a placeholder in the workspace; its contents land with the
//! `leaselock` issue. It builds on [`atomic_file`] for every file it persists.
#![deny(missing_docs)]

pub use atomic_file;
