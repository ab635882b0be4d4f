//! Opening and creating the entries of a [`Dir`]: child directories, files to read, append
//! to or lock, and new files, each one component, `O_NOFOLLOW` and an `fstat` check away.

use super::*;

impl Dir {
    /// Opens the child directory `name`; `None` if it does not exist.
    pub fn open_dir(&self, name: impl AsRef<OsStr>) -> Result<Option<Dir>> {
        let name = component(&self.path, name.as_ref())?;
        let path = self.join(name);
        match rustix::fs::openat(self.fd(), name, base_flags() | dir_flags(), Mode::empty()) {
            Ok(fd) => Dir::from_fd(fd, path).map(Some),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(open_dir_error(&path, e, || {
                rustix::fs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW).ok()
            })),
        }
    }

    /// Opens the child directory `name`, creating it (mode `0o777 & !umask`) if missing; a
    /// new directory's entry is made durable (`fsync` of this directory) before it is used.
    pub fn create_dir(&self, name: impl AsRef<OsStr>) -> Result<Dir> {
        let name = name.as_ref();
        if let Some(dir) = self.open_dir(name)? {
            return Ok(dir);
        }
        let path = self.join(name);
        match rustix::fs::mkdirat(self.fd(), name, Mode::from_raw_mode(0o777)) {
            Ok(()) => {
                let mut dir = self
                    .open_dir(name)?
                    .ok_or_else(|| Error::io(&path, Step::Open, io::ErrorKind::NotFound.into()))?;
                if let Err(e) = self.adopt_owner(dir.fd(), &path) {
                    let _ = rustix::fs::unlinkat(self.fd(), name, AtFlags::REMOVEDIR);
                    return Err(e);
                }
                // What is created inside takes the owner the directory has now.
                if let Ok(stat) = rustix::fs::fstat(dir.fd()) {
                    dir.owner = (stat.st_uid, stat.st_gid);
                }
                // The new entry must survive a power cut before anything durable is put in
                // the new directory.
                if let Err(e) = self.sync_naming(&path) {
                    // Not known to be durable: take it back, so a failure leaves nothing.
                    drop(dir);
                    let _ = rustix::fs::unlinkat(self.fd(), name, AtFlags::REMOVEDIR);
                    return Err(e);
                }
                Ok(dir)
            }
            Err(rustix::io::Errno::EXIST) => self
                .open_dir(name)?
                .ok_or_else(|| Error::io(&path, Step::Open, io::ErrorKind::NotFound.into())),
            Err(e) => Err(Error::io(path, Step::CreateDir, e.into())),
        }
    }

    /// Opens the regular file `name` for reading without following a symlink or blocking on
    /// a FIFO; `None` if it does not exist.
    pub fn open_file(&self, name: impl AsRef<OsStr>) -> Result<Option<File>> {
        self.open_with(name.as_ref(), OFlags::RDONLY, false)
    }

    /// Opens the regular file `name` for appending, creating it (`0o666 & !umask`) if
    /// missing. Reads are allowed too (`O_RDWR | O_APPEND`).
    pub fn open_append(&self, name: impl AsRef<OsStr>) -> Result<File> {
        let name = name.as_ref();
        let file = self.open_with(name, OFlags::RDWR | OFlags::APPEND, true)?;
        file.ok_or_else(|| Error::io(self.join(name), Step::Open, io::ErrorKind::NotFound.into()))
    }

    /// Opens the regular file `name` read-write, creating it if missing (for lock files:
    /// nothing is truncated). Falls back to read-only, then write-only, when this user may
    /// not open it both ways (a lock file made by another user still locks).
    pub fn open_lock(&self, name: impl AsRef<OsStr>) -> Result<File> {
        let name = name.as_ref();
        let mut last = None;
        for access in [OFlags::RDWR, OFlags::RDONLY, OFlags::WRONLY] {
            match self.open_with(name, access, access == OFlags::RDWR) {
                Ok(Some(file)) => return Ok(file),
                Ok(None) => {}
                Err(e)
                    if e.io_error()
                        .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied) =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::io(self.join(name), Step::Open, io::ErrorKind::NotFound.into())
        }))
    }

    /// Creates the regular file `name`, which must not exist (`O_EXCL`), with `mode` narrowed
    /// by the umask. `None` if it exists already.
    pub fn create_new(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<Option<File>> {
        let name = component(&self.path, name.as_ref())?;
        let flags = base_flags() | OFlags::RDWR | OFlags::CREATE | OFlags::EXCL;
        match rustix::fs::openat(self.fd(), name, flags, Mode::from_raw_mode(mode as _)) {
            Ok(fd) => {
                let file = File::from(fd);
                if let Err(e) = self.adopt_owner(file.as_fd(), &self.join(name)) {
                    let _ = rustix::fs::unlinkat(self.fd(), name, AtFlags::empty());
                    return Err(e);
                }
                Ok(Some(file))
            }
            Err(rustix::io::Errno::EXIST) => Ok(None),
            Err(e) => Err(Error::io(self.join(name), Step::Open, e.into())),
        }
    }

    pub(super) fn open_with(
        &self,
        name: &OsStr,
        access: OFlags,
        create: bool,
    ) -> Result<Option<File>> {
        let name = component(&self.path, name)?;
        let path = self.join(name);
        let mut flags = base_flags() | OFlags::NONBLOCK | access;
        if create {
            flags |= OFlags::CREATE;
        }
        let fd = match rustix::fs::openat(self.fd(), name, flags, Mode::from_raw_mode(0o666)) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            // O_NOFOLLOW on a symlink: ELOOP (Linux) or EMLINK/EFTYPE (BSDs).
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::MLINK) => {
                return Err(wrong_type(path, FileKind::Symlink, FileKind::File));
            }
            Err(rustix::io::Errno::ISDIR) => {
                return Err(wrong_type(path, FileKind::Dir, FileKind::File));
            }
            // O_NONBLOCK write-open of a FIFO without a reader.
            Err(rustix::io::Errno::NXIO) => {
                return Err(wrong_type(path, FileKind::Fifo, FileKind::File));
            }
            Err(e) => return Err(Error::io(path, Step::Open, e.into())),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| Error::io(&path, Step::Inspect, e.into()))?;
        let kind = stat_kind(&stat);
        if kind != FileKind::File {
            return Err(wrong_type(path, kind, FileKind::File));
        }
        // A file opened for writing in place (a lock file, a log) must not be a hard link:
        // its other name may be anywhere on the file system (someone else's file), and a
        // write would change it there. Files replaced by rename are not written in place.
        if access != OFlags::RDONLY && stat.st_nlink > 1 {
            return Err(wrong_type(path, FileKind::HardLinked, FileKind::File));
        }
        // A regular file: blocking I/O from here on.
        let flags =
            rustix::fs::fcntl_getfl(&fd).map_err(|e| Error::io(&path, Step::Open, e.into()))?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)
            .map_err(|e| Error::io(&path, Step::Open, e.into()))?;
        let file = File::from(fd);
        if create && stat.st_uid as u32 == rustix::process::geteuid().as_raw() {
            // Possibly just created by this process: give it the directory's owner.
            self.adopt_owner(file.as_fd(), &path)?;
        }
        Ok(Some(file))
    }
}
