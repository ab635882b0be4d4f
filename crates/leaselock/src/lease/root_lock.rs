//! The root's mutex, held around every protocol step: a [`FileMutex`] on `<leases dir>/lock`.
//!
//! Lock order: the root's `FileMutex` first, then the in-process store cache (a `std` mutex,
//! held only for the step). Nothing takes them the other way round. A step never takes the
//! root's mutex again (the `FileMutex` would answer `WouldDeadlock` rather than hang), which is
//! why a `run_if_current` closure must not call back into the same root.

use std::time::Duration;

use crate::mutex::{FileMutex, MutexError, MutexErrorKind, MutexGuard};

use super::error::{LeaseError, LeaseErrorKind};

/// Takes the root's mutex, waiting up to `timeout` (first come, first served).
pub(crate) fn lock_root(mutex: &FileMutex, timeout: Duration) -> Result<MutexGuard, LeaseError> {
    mutex.lock_for(timeout).map_err(|e| map(mutex, e))
}

fn map(mutex: &FileMutex, e: MutexError) -> LeaseError {
    let lock_path = mutex.path().to_owned();
    match e.kind() {
        MutexErrorKind::Busy => LeaseError::new(LeaseErrorKind::Busy { lock_path }),
        MutexErrorKind::Timeout { waited, holder } => LeaseError::new(LeaseErrorKind::Timeout {
            lock_path,
            waited: *waited,
            holder: holder.as_ref().map(ToString::to_string),
        }),
        // A planted lock file or queue entry: corrupt or unsafe data, naming the entry.
        MutexErrorKind::Unsafe { source } => {
            LeaseError::corrupt(source.path(), super::error::describe(source))
        }
        _ => LeaseError::new(LeaseErrorKind::Mutex { source: e }),
    }
}
