//! The store's lock: the lock file `counters.lock` and its queue directory, checked before
//! [`FileMutex`] opens them by name.
//!
//! **Lock order.** The store's lock is the innermost lock of the crates above (gapreg takes
//! its `registry.lock` first, then this one, never the other way round); nothing here takes
//! another lock while holding it. Every change of `counters.log` and of `config.yaml` after
//! creation happens under it; reads (`peek`, `counters`, `validate`, `verify`) take no lock.

use std::time::Duration;

use atomic_file::dir::{Dir, FileKind};
use leaselock::mutex::{FileMutex, MutexGuard};

use super::files::file_kind;
use crate::error::{Error, wrong_type};
use crate::files::{LOCK_FILE, QUEUE_DIR};

/// The files of the lock's queue that are created up front (the tickets come and go).
const QUEUE_FILES: [&str; 2] = ["waiters", "seq"];

/// Checks the lock file and its queue directory (regular files and a directory, never
/// symlinks or FIFOs), creates the missing ones through `dir` (so they take the directory's
/// owner when root runs in someone else's store), then takes the lock.
///
/// The lock itself is [`FileMutex`], which opens these paths by name: the check closes the
/// planted-link holes of a cloned repository, but not a race against another local user
/// swapping entries while the lock is taken.
pub(crate) fn lock(dir: &Dir, mutex: &FileMutex, timeout: Duration) -> Result<MutexGuard, Error> {
    check_lock_files(dir, true)?;
    Ok(mutex.lock_for(timeout)?)
}

/// Checks the lock files (see [`lock`]); with `create`, creates the missing ones.
pub(crate) fn check_lock_files(dir: &Dir, create: bool) -> Result<(), Error> {
    if !file_kind(dir, LOCK_FILE)? && create {
        dir.open_lock(LOCK_FILE).map_err(Error::store_file)?;
    }
    let queue = match dir.kind(QUEUE_DIR).map_err(Error::store_file)? {
        None if !create => return Ok(()),
        None => dir.create_dir(QUEUE_DIR).map_err(Error::store_file)?,
        Some(FileKind::Dir) => dir
            .open_dir(QUEUE_DIR)
            .map_err(Error::store_file)?
            .ok_or_else(|| Error::corrupt(dir.join(QUEUE_DIR), "it vanished while opened"))?,
        Some(kind) => {
            return Err(Error::corrupt(
                dir.join(QUEUE_DIR),
                wrong_type(kind, FileKind::Dir),
            ));
        }
    };
    let mut present = [false; QUEUE_FILES.len()];
    for entry in queue.entries().map_err(Error::store_file)? {
        if entry.kind != FileKind::File {
            return Err(Error::corrupt(
                queue.join(&entry.name),
                wrong_type(entry.kind, FileKind::File),
            ));
        }
        if let Some(i) = QUEUE_FILES.iter().position(|&n| entry.name == n) {
            present[i] = true;
        }
    }
    if create {
        for (name, present) in QUEUE_FILES.iter().zip(present) {
            if !present {
                queue.open_lock(name).map_err(Error::store_file)?;
            }
        }
    }
    Ok(())
}
