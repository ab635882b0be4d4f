//! The replace protocol: resolve, create temp, lock it, copy metadata, write, fsync, rename,
//! fsync the directory.

use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result, Step};
use crate::lock;
use crate::{Durability, imp, temp};

/// Symlink hops followed before giving up, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;
/// Attempts at a fresh temp name before reporting the collision.
const TEMP_ATTEMPTS: usize = 16;

/// The file a write to a path really replaces.
pub(crate) struct Target {
    /// The path after following symlinks.
    pub path: PathBuf,
    /// Its metadata, if it exists.
    pub meta: Option<Metadata>,
}

impl Target {
    /// Follows symlinks from `path` to the file they name (which need not exist yet).
    pub fn resolve(path: &Path) -> Result<Target> {
        let invalid = |reason| Error::new(path, ErrorKind::InvalidPath { reason });
        let mut current = path.to_path_buf();
        for _ in 0..MAX_SYMLINKS {
            if current.file_name().is_none() {
                return Err(invalid("the path does not end in a file name"));
            }
            let meta = match fs::symlink_metadata(&current) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(Target {
                        path: current,
                        meta: None,
                    });
                }
                Err(e) => return Err(Error::io(path, Step::Inspect, e)),
            };
            let kind = meta.file_type();
            if kind.is_file() {
                return Ok(Target {
                    path: current,
                    meta: Some(meta),
                });
            } else if kind.is_dir() {
                return Err(invalid("it is a directory, not a file"));
            } else if !kind.is_symlink() {
                return Err(invalid(
                    "it is not a regular file (a device, socket or fifo)",
                ));
            }
            let link = fs::read_link(&current).map_err(|e| Error::io(path, Step::Inspect, e))?;
            current = dir_of(&current).join(link);
        }
        Err(invalid("too many levels of symbolic links"))
    }

    /// The directory holding the target.
    pub fn dir(&self) -> &Path {
        dir_of(&self.path)
    }

    /// The sibling lock file guarding read-modify-write of the target: `dir/.NAME.lock`, or
    /// for a name too long for that, `dir/.SHORTENED~CRC32.lock`.
    pub fn lock_path(&self) -> PathBuf {
        let file_name = self.path.file_name().unwrap_or_default();
        self.dir().join(temp::lock_name(file_name))
    }
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Atomically replaces the file at `path` with the concatenation of `parts`.
pub(crate) fn replace(path: &Path, parts: &[&[u8]], durability: Durability) -> Result<()> {
    let target = Target::resolve(path)?;
    let dir = target.dir();
    let name = target.path.file_name().unwrap_or_default();
    let (temp_path, file) = create_temp(path, dir, name, target.meta.is_some())?;

    let written = lock::while_writing(file, |file| -> Result<()> {
        let fail = |step| move |e| Error::io(path, step, e);
        for part in parts {
            fault::check(Step::Write)
                .and_then(|()| file.write_all(part))
                .map_err(fail(Step::Write))?;
        }
        if let Some(meta) = &target.meta {
            // After the last write, which would clear set-ID bits (see `copy_metadata`).
            fault::check(Step::CopyPermissions)
                .and_then(|()| imp::copy_metadata(file, meta, &target.path))
                .map_err(fail(Step::CopyPermissions))?;
        }
        if durability == Durability::Full {
            // fsync, not fdatasync: the copied mode and owner must reach the disk too.
            fault::check(Step::SyncFile)
                .and_then(|()| file.sync_all())
                .map_err(fail(Step::SyncFile))?;
        }
        fault::check(Step::Rename)
            .and_then(|()| imp::replace(&temp_path, &target.path, target.meta.is_some()))
            .map_err(fail(Step::Rename))
    });
    let written = written.unwrap_or_else(|e| Err(Error::io(path, Step::Lock, e)));
    if let Err(e) = written {
        // The rename did not happen, so the target is untouched; the temp file must go too.
        // The original error is the one worth reporting.
        let _ = fs::remove_file(&temp_path);
        return Err(e);
    }
    if durability == Durability::Full {
        fault::check(Step::SyncDir)
            .and_then(|()| imp::sync_dir(dir))
            .map_err(|e| Error::io(path, Step::SyncDir, e))?;
    }
    Ok(())
}

fn create_temp(
    path: &Path,
    dir: &Path,
    name: &std::ffi::OsStr,
    private: bool,
) -> Result<(PathBuf, fs::File)> {
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let temp_path = temp::path_for(dir, name, pid);
        match fault::check(Step::CreateTemp).and_then(|()| imp::create_temp(&temp_path, private)) {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(Error::io(path, Step::CreateTemp, e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(Error::io(path, Step::CreateTemp, e))
}

/// Fault injection for the error-path tests: a test names a step, and the next write on that
/// thread fails there with an injected I/O error, exactly as if the system call had failed.
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;
    use std::io;

    use crate::Step;

    thread_local! {
        static FAIL_AT: Cell<Option<Step>> = const { Cell::new(None) };
    }

    /// Makes the next `check(step)` on this thread fail.
    pub fn inject(step: Step) {
        FAIL_AT.with(|f| f.set(Some(step)));
    }

    /// Fails if a fault was injected at `step`, consuming it.
    pub fn check(step: Step) -> io::Result<()> {
        if FAIL_AT.with(|f| f.get()) == Some(step) {
            FAIL_AT.with(|f| f.set(None));
            return Err(io::Error::other(format!("injected fault at {step}")));
        }
        Ok(())
    }
}

#[cfg(not(test))]
mod fault {
    use crate::Step;

    #[inline(always)]
    pub fn check(_: Step) -> std::io::Result<()> {
        Ok(())
    }
}
