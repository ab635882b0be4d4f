//! The synchronization primitives of this crate: loom's under `cfg(loom)`, std's otherwise
//! (as tokio's `loom` module and crossbeam-utils do). Code anywhere in the crate imports them
//! only from here, so that the loom model (`protocol`'s, over an in-memory [`CounterLog`])
//! checks the same primitives the code uses.
//!
//! This crate's concurrency is between processes, through the kernel (the store's `flock`,
//! `pwrite` into distinct slots, `rename`), which loom cannot see: the model stands in for
//! the flock'd log with a [`Mutex`] over its records. [`unmodelled`] names what is used
//! outside any model on purpose, so every such use is visible as one.
//!
//! [`CounterLog`]: crate::protocol::CounterLog

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// Threads: loom's model threads under `cfg(loom)`, std's otherwise.
pub(crate) mod thread {
    #[cfg(loom)]
    #[allow(unused_imports)]
    pub(crate) use loom::thread::{spawn, yield_now};

    #[cfg(not(loom))]
    #[allow(unused_imports)]
    pub(crate) use std::thread::{spawn, yield_now};
}

/// std primitives used outside any loom model, on purpose: the short sleep between retries
/// of an unlocked log read that may have raced with a writer's `pwrite` (a wait for another
/// process, which no model of this crate contains).
pub(crate) mod unmodelled {
    pub(crate) use std::thread::sleep;
}
