//! The synchronisation primitives of this crate: `std`'s, or loom's under `--cfg loom` so the
//! model tests explore every interleaving of the in-memory store. Every lock in gapreg is
//! taken through this module (as tokio's `loom` shim does), so no code path escapes the model.

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering the data of a holder that panicked: the in-memory store's data is
/// only changed by whole assignments, so a poisoned lock holds consistent data.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
