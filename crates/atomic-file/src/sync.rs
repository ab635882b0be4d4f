//! The synchronization primitives of this crate, in one place (as tokio's `loom` module keeps
//! them), so that code imports them only from here.
//!
//! They are std's under every configuration, `cfg(loom)` included: this crate's concurrency
//! is between processes, through the kernel (`flock`, `O_EXCL`, `rename`), which loom cannot
//! see, and its only shared in-process state is a directory descriptor behind an `Arc`, which
//! a model of the crates above (leaselock's, over in-memory stores) never reaches. A model of
//! this crate would switch these to `loom::sync` under `cfg(loom)` here and nowhere else.

#[cfg_attr(not(unix), allow(unused_imports))]
pub(crate) use std::sync::Arc;
