//! The gap registry: gaps, loops, statuses, claims, dependencies and ready work, shared by many
//! concurrent writers without loss.
//!
//! **Status:** this crate is a placeholder in the workspace; its contents land with the
//! `gapreg` issue. It builds on [`idreserve`], [`leaselock`] and [`atomic_file`].
#![deny(missing_docs)]

pub use {atomic_file, idreserve, leaselock};
