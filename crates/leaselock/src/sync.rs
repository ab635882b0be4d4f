//! The synchronization primitives of this crate: loom's under `cfg(loom)`, std's otherwise
//! (as tokio's `loom` module and crossbeam-utils do). Code anywhere in the crate imports them
//! only from here, so the loom models (`mutex::queue`'s and `lease::loom_tests`) check the
//! same code that runs.
//!
//! [`unmodelled`] names the few std primitives loom cannot stand in for — process-wide
//! statics, one-time initialisation, channels to helper threads that live outside any model —
//! so that every use of one is visible as such.

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// std primitives used outside any loom model, on purpose: a `static` table (loom's `Mutex`
/// has no `const fn new`), `OnceLock` caches of facts about this process and host, the
/// channel to a helper thread that is never part of a model, and the `Arc<dyn Clock>` of the
/// public `LeaseOptions` (loom's `Arc` cannot hold a trait object, and a public signature must
/// not change with `cfg(loom)`).
pub(crate) mod unmodelled {
    #[allow(unused_imports)]
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
}
