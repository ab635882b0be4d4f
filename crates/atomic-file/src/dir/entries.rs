//! Changing and listing the entries of a [`Dir`]: removing and renaming files and
//! directories by name, listing them with their types, and recovering leftover temp files.

use super::*;

impl Dir {
    /// Removes the regular file `name`. Returns whether it existed. Anything else at `name`
    /// (a symlink, a directory) is refused and left alone.
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = name.as_ref();
        if !self.file_exists(name)? {
            return Ok(false);
        }
        let unlinked = rustix::fs::unlinkat(self.fd(), name, AtFlags::empty());
        outcome(unlinked, || self.join(name), Step::Remove)
    }

    /// Removes the empty child directory `name` (not a symlink). Returns whether it existed.
    pub fn remove_dir(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = name.as_ref();
        if !self.dir_exists(name)? {
            return Ok(false);
        }
        let unlinked = rustix::fs::unlinkat(self.fd(), name, AtFlags::REMOVEDIR);
        outcome(unlinked, || self.join(name), Step::Remove)
    }

    /// Renames the regular file `from` in this directory to `to` in `to_dir` (which may be
    /// this directory), replacing a regular file there. Returns `false` if `from` does not
    /// exist. Both names are checked: neither may be a symlink or a directory.
    pub fn rename_file(
        &self,
        from: impl AsRef<OsStr>,
        to_dir: &Dir,
        to: impl AsRef<OsStr>,
    ) -> Result<bool> {
        self.rename_entry(from.as_ref(), to_dir, to.as_ref(), |d, n| d.file_exists(n))
    }

    /// Renames the directory `from` in this directory to `to` in `to_dir` (which may be this
    /// directory), with `renameat` on the descriptors: nothing is reached by path. `to` must
    /// be missing or an empty directory (a non-empty one fails with the OS's `EEXIST` or
    /// `ENOTEMPTY`, kept in [`Error::io_error`]). Returns `false` if `from` does not exist.
    /// Neither name may be a symlink or a file ([`ErrorKind::WrongType`]). Not synced: call
    /// [`Dir::sync`] on both directories to make the rename durable.
    ///
    /// ```
    /// use atomic_file::{Options, dir::Dir};
    ///
    /// let tmp = tempfile::tempdir()?;
    /// let root = Dir::open(tmp.path())?;
    /// root.create_dir(".state.init")?.write("counter", b"0", &Options::new())?;
    /// assert!(root.rename_dir(".state.init", &root, "state")?);
    /// root.sync()?;
    /// assert_eq!(root.open_dir("state")?.expect("moved").read("counter", 16)?.as_deref(), Some(&b"0"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rename_dir(
        &self,
        from: impl AsRef<OsStr>,
        to_dir: &Dir,
        to: impl AsRef<OsStr>,
    ) -> Result<bool> {
        self.rename_entry(from.as_ref(), to_dir, to.as_ref(), Dir::dir_exists)
    }

    /// `renameat` of `from` to `to` in `to_dir`, both checked by `exists` (which refuses an
    /// entry of the wrong type); `false` if `from` is missing.
    fn rename_entry(
        &self,
        from: &OsStr,
        to_dir: &Dir,
        to: &OsStr,
        exists: fn(&Dir, &OsStr) -> Result<bool>,
    ) -> Result<bool> {
        if !exists(self, from)? {
            return Ok(false);
        }
        exists(to_dir, to)?;
        let renamed = rustix::fs::renameat(self.fd(), from, to_dir.fd(), to);
        outcome(renamed, || self.join(from), Step::Rename)
    }

    /// Whether the child directory `name` exists; anything else at `name` (a symlink, a file)
    /// is refused ([`ErrorKind::WrongType`]).
    fn dir_exists(&self, name: &OsStr) -> Result<bool> {
        match self.kind(name)? {
            None => Ok(false),
            Some(FileKind::Dir) => Ok(true),
            Some(kind) => Err(wrong_type(self.join(name), kind, FileKind::Dir)),
        }
    }

    /// Every entry of this directory but `.` and `..`, sorted by name, with its type (never
    /// following a symlink).
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let list_err = |e: rustix::io::Errno| Error::io(&self.path, Step::ListDir, e.into());
        // A fresh descriptor: reading a directory moves its offset.
        let fd = rustix::fs::openat(self.fd(), ".", base_flags() | dir_flags(), Mode::empty())
            .map_err(list_err)?;
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => match self.kind(name)? {
                    Some(kind) => kind,
                    None => continue,
                },
                t => FileKind::of(t),
            };
            out.push(Entry {
                name: name.to_os_string(),
                kind,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The crate's leftover temp files in this directory whose writers are gone; with
    /// `remove`, removes them (otherwise only reports them, a dry run). Files of live writers
    /// and anything that is not a regular file are left alone (see [`crate::recover`]).
    pub fn recover(&self, remove: bool) -> Result<Recovery> {
        let mut report = Recovery::default();
        for entry in self.entries()? {
            let Some(pid) = temp::parse(&entry.name) else {
                continue;
            };
            if entry.kind != FileKind::File {
                continue;
            }
            let path = self.join(&entry.name);
            // Read-only, or write-only when this user may only write it (a leftover of a
            // write-only file): either is enough for the lock.
            let opened = match self.open_with(&entry.name, OFlags::RDONLY, false) {
                Err(e)
                    if e.io_error()
                        .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied) =>
                {
                    self.open_with(&entry.name, OFlags::WRONLY, false)
                }
                other => other,
            };
            let file = match opened {
                Ok(Some(file)) => file,
                Ok(None) => continue,
                Err(e)
                    if e.io_error()
                        .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied) =>
                {
                    report.skipped.push(path);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let dead = lock::with_exclusive(file, Wait::Never, |file: &mut File| {
                if !crate::recover::writer_gone(file, pid)? {
                    return Ok(false);
                }
                if remove {
                    match rustix::fs::unlinkat(self.fd(), &*entry.name, AtFlags::empty()) {
                        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                        Err(e) => return Err(io::Error::from(e)),
                    }
                }
                Ok(true)
            });
            match dead {
                Ok(Ok(true)) => report.removed.push(path),
                Ok(Ok(false)) | Err(LockError::Busy { .. }) => report.in_use.push(path),
                Ok(Err(e)) | Err(LockError::Io(e)) => {
                    return Err(Error::io(path, Step::RemoveTemp, e));
                }
            }
        }
        Ok(report)
    }
}

/// The result of an `*at` call that changes the entry at `path`: done (`true`), already gone
/// (`false`: someone else removed or renamed it meanwhile), or failed during `step`.
fn outcome(
    done: rustix::io::Result<()>,
    path: impl FnOnce() -> PathBuf,
    step: Step,
) -> Result<bool> {
    match done {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(Error::io(path(), step, e.into())),
    }
}
