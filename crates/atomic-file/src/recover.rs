//! Finding and removing temp files left by writers that died mid-write.

#[cfg(not(unix))]
use std::fs::{self, File};
#[cfg(not(unix))]
use std::io;
use std::path::{Path, PathBuf};

use crate::error::Result;
#[cfg(not(unix))]
use crate::error::{Error, Step};
#[cfg(not(unix))]
use crate::lock::{self, LockError, Wait};
#[cfg(not(unix))]
use crate::{imp, temp};

/// What [`recover`] (or [`recover_dry_run`]) found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Leftover temp files of dead writers: removed by [`recover`], to be removed by
    /// [`recover_dry_run`].
    pub removed: Vec<PathBuf>,
    /// Temp files of writers that are still running, left alone.
    pub in_use: Vec<PathBuf>,
    /// Temp-named entries that could not be inspected (permission denied), left alone.
    pub skipped: Vec<PathBuf>,
}

/// Removes this crate's leftover temp files from `dir` and reports them.
///
/// A file is touched only if its name is one of this crate's temp names
/// (`.NAME.PID-RANDOM.atomic-tmp`). It is removed only when both
/// - no writer holds its lock (a writer locks its temp file from just after creating it until
///   after the rename; the kernel drops that lock when the writer dies), and
/// - the writer's process, named by the pid in the file name, no longer exists on this host,
///   or (Linux) the process now holding that pid started after the file was created, so it
///   merely reuses a dead writer's pid. (This check covers the moment between a writer
///   creating the file and locking it.)
///
/// Every other file, including lock files and the temp files of live writers, is left alone;
/// so are entries that are not regular files (a fifo or directory with a temp-like name is not
/// this crate's). Subdirectories are not searched. On Unix no symlink on the way to `dir` is
/// followed (see [`Dir::open_beneath`](crate::dir::Dir::open_beneath); the error is
/// [`ErrorKind::WrongType`](crate::ErrorKind::WrongType)): a planted link must not lead the
/// removal elsewhere.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// atomic_file::write(dir.path().join("state.json"), b"{}")?;
/// let report = atomic_file::recover(dir.path())?;
/// assert!(report.removed.is_empty() && report.in_use.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recover(dir: impl AsRef<Path>) -> Result<Recovery> {
    recover_in(dir.as_ref(), true)
}

/// What [`recover`] would do in `dir`, without removing anything: the same checks (a temp
/// name, a regular file, no writer holding its lock, the writer's process gone), the leftovers
/// of dead writers listed in [`Recovery::removed`]. For a `doctor` that reports before it
/// repairs. (A writer may die or finish between this report and a later [`recover`], so the
/// two lists can differ.)
///
/// ```
/// let dir = tempfile::tempdir()?;
/// // A temp file of a writer that cannot exist (a pid above Linux's limit).
/// let leftover = dir.path().join(".state.json.4194999-00112233445566ff.atomic-tmp");
/// std::fs::write(&leftover, b"half")?;
/// let report = atomic_file::recover_dry_run(dir.path())?;
/// assert_eq!(report.removed, [leftover.clone()]);
/// assert!(leftover.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recover_dry_run(dir: impl AsRef<Path>) -> Result<Recovery> {
    recover_in(dir.as_ref(), false)
}

/// Unix: through a [`Dir`](crate::dir::Dir), so a directory that is a symlink is refused
/// ([`ErrorKind::WrongType`](crate::ErrorKind::WrongType)) rather than followed, and every
/// removal is an `unlinkat` inside the opened directory.
#[cfg(unix)]
fn recover_in(dir: &Path, remove: bool) -> Result<Recovery> {
    let mut report = crate::dir::Dir::open_beneath(dir)?.recover(remove)?;
    report.removed.sort();
    report.in_use.sort();
    report.skipped.sort();
    Ok(report)
}

#[cfg(not(unix))]
fn recover_in(dir: &Path, remove: bool) -> Result<Recovery> {
    let mut report = Recovery::default();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, Step::ListDir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, Step::ListDir, e))?;
        let Some(pid) = temp::parse(&entry.file_name()) else {
            continue;
        };
        // The entry's own type, without following a symlink.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        match remove_if_dead(&path, pid, remove) {
            Ok(true) => report.removed.push(path),
            Ok(false) => report.in_use.push(path),
            // Renamed into place or removed by someone else meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => report.skipped.push(path),
            Err(e) => return Err(Error::io(path, Step::RemoveTemp, e)),
        }
    }
    report.removed.sort();
    report.in_use.sort();
    report.skipped.sort();
    Ok(report)
}

/// Whether the temp file at `path` belongs to a dead writer, removing it if `remove`.
#[cfg(not(unix))]
fn remove_if_dead(path: &Path, pid: u32, remove: bool) -> io::Result<bool> {
    let file = imp::open_for_lock(path)?;
    let removed = lock::with_exclusive(file, Wait::Never, |file: &mut File| {
        if !writer_gone(file, pid)? {
            return Ok(false);
        }
        if remove {
            fs::remove_file(path)?;
        }
        Ok(true)
    });
    match removed {
        Ok(result) => result,
        Err(LockError::Busy { .. }) => Ok(false),
        Err(LockError::Io(e)) => Err(e),
    }
}

/// Whether the writer `pid` of the locked temp file `file` is gone: no such process, or one
/// that started after the file was created (the earlier of its birth time, where the file
/// system records it, and its last write) and so merely reuses a dead writer's pid.
pub(crate) fn writer_gone(file: &std::fs::File, pid: u32) -> std::io::Result<bool> {
    let meta = file.metadata()?;
    let created = match (meta.created(), meta.modified()) {
        (Ok(born), Ok(written)) => Some(born.min(written)),
        (born, written) => born.or(written).ok(),
    };
    Ok(!crate::imp::writer_alive(pid, created))
}
