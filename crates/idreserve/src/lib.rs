//! Collision-free, durable reservation of IDs like `SEC-20` or `GAP-OP-1091`, one at a time or
//! in batches, shared by many processes.
//!
//! **Status:** this crate is a placeholder in the workspace; its contents land with the
//! `idreserve` issue. It builds on [`leaselock`] (waiting for the counter lock) and
//! [`atomic_file`] (durable counter files).
#![deny(missing_docs)]

pub use {atomic_file, leaselock};
