//! Reading and writing the files of a [`Dir`]: bounded reads, the atomic replace protocol
//! (unique `O_EXCL` temp file, locked while written, `fsync`, `renameat`, directory `fsync`) and
//! the directory's own `fsync`.

use super::*;

impl Dir {
    /// Reads the regular file `name` whole; `None` if it does not exist.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TooLarge`] if it is longer than `limit` bytes (nothing is allocated for
    /// it); [`ErrorKind::WrongType`] if it is not a regular file.
    pub fn read(&self, name: impl AsRef<OsStr>, limit: u64) -> Result<Option<Vec<u8>>> {
        let name = name.as_ref();
        let Some(file) = self.open_file(name)? else {
            return Ok(None);
        };
        read_bounded(file, &self.join(name), limit).map(Some)
    }

    /// Reads `name` like [`Dir::read`], checking and removing the checksum header when
    /// `opts` asks for one ([`Options::checksum`]).
    pub fn read_with(
        &self,
        name: impl AsRef<OsStr>,
        opts: &Options,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        let name = name.as_ref();
        let Some(mut data) = self.read(name, limit)? else {
            return Ok(None);
        };
        if opts.checksum {
            let payload_len = checksum::decode(&data)
                .map_err(|c| Error::new(self.join(name), ErrorKind::Corrupt(c)))?
                .len();
            data.drain(..data.len() - payload_len);
        }
        Ok(Some(data))
    }

    /// Atomically and durably replaces (or creates) the regular file `name` with `contents`
    /// (plus a checksum header if `opts` asks for one), by the crate's protocol: a unique temp
    /// file in this directory, written, `fsync`ed, renamed over `name` with `renameat`, and
    /// the directory descriptor `fsync`ed. The replaced file's permission bits are kept.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WrongType`] if `name` is anything but a regular file (a symlink is
    /// refused, never replaced); on any error `name` is untouched and no temp file is left.
    pub fn write(&self, name: impl AsRef<OsStr>, contents: &[u8], opts: &Options) -> Result<()> {
        let name = component(&self.path, name.as_ref())?;
        let path = self.join(name);
        let mode = match rustix::fs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                let kind = stat_kind(&stat);
                if kind != FileKind::File {
                    return Err(wrong_type(path, kind, FileKind::File));
                }
                Some(stat_mode(&stat) & 0o777)
            }
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(Error::io(path, Step::Inspect, e.into())),
        };
        let header = opts.checksum.then(|| checksum::header(contents));
        let (temp_name, file) = self.create_temp(&path, name, mode.is_some())?;
        let fail = |step: Step| {
            let path = &path;
            move |e: io::Error| Error::io(path, step, e)
        };
        let written = lock::while_writing(file, |file| -> Result<()> {
            if let Some(header) = &header {
                file.write_all(header).map_err(fail(Step::Write))?;
            }
            file.write_all(contents).map_err(fail(Step::Write))?;
            if let Some(mode) = mode {
                rustix::fs::fchmod(&*file, Mode::from_raw_mode(mode as _))
                    .map_err(|e| fail(Step::CopyPermissions)(e.into()))?;
            }
            if opts.durability == Durability::Full {
                file.sync_all().map_err(fail(Step::SyncFile))?;
            }
            rustix::fs::renameat(self.fd(), &temp_name, self.fd(), name)
                .map_err(|e| fail(Step::Rename)(e.into()))
        });
        let written = written.unwrap_or_else(|e| Err(Error::io(&path, Step::Lock, e)));
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(self.fd(), &temp_name, AtFlags::empty());
            return Err(e);
        }
        if opts.durability == Durability::Full {
            self.sync_naming(&path)?;
        }
        Ok(())
    }

    fn create_temp(&self, path: &Path, name: &OsStr, private: bool) -> Result<(OsString, File)> {
        let pid = std::process::id();
        for _ in 0..16 {
            let temp_path = temp::path_for(Path::new(""), name, pid);
            let temp_name = temp_path.into_os_string();
            let flags = base_flags() | OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
            let mode = Mode::from_raw_mode(if private { 0o600 } else { 0o666 });
            match rustix::fs::openat(self.fd(), &temp_name, flags, mode) {
                Ok(fd) => {
                    let file = File::from(fd);
                    if let Err(e) = self.adopt_owner(file.as_fd(), path) {
                        let _ = rustix::fs::unlinkat(self.fd(), &temp_name, AtFlags::empty());
                        return Err(e);
                    }
                    return Ok((temp_name, file));
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(Error::io(path, Step::CreateTemp, e.into())),
            }
        }
        Err(Error::io(
            path,
            Step::CreateTemp,
            io::ErrorKind::AlreadyExists.into(),
        ))
    }

    /// `fsync` of this directory: makes the creations, renames and removals inside it durable.
    pub fn sync(&self) -> Result<()> {
        self.sync_naming(&self.path)
    }

    /// `fsync` of this directory, a failure naming `path` (the entry whose change it makes
    /// durable): the one place a `Dir` syncs its descriptor.
    pub(super) fn sync_naming(&self, path: &Path) -> Result<()> {
        rustix::fs::fsync(self.fd()).map_err(|e| Error::io(path, Step::SyncDir, e.into()))
    }
}

/// Reads an open regular file whole, refusing one longer than `limit` before allocating.
fn read_bounded(file: File, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let len = file
        .metadata()
        .map_err(|e| Error::io(path, Step::Inspect, e))?
        .size();
    if len > limit {
        return Err(Error::new(path, ErrorKind::TooLarge { len, limit }));
    }
    let mut data = Vec::with_capacity(len as usize);
    // One byte more than the limit tells a file that grew since the `fstat`.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| Error::io(path, Step::Read, e))?;
    if data.len() as u64 > limit {
        return Err(Error::new(
            path,
            ErrorKind::TooLarge {
                len: data.len() as u64,
                limit,
            },
        ));
    }
    Ok(data)
}
