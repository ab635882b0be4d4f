//! The synchronization primitives of this module: loom's under `cfg(loom)`, std's otherwise.
//! Code in [`crate::mutex`] imports them only from here, so the loom models check the same code.

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
