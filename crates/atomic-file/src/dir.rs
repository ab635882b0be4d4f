//! [`Dir`]: a directory that may be hostile, used only through its open descriptor.
//!
//! A repository is untrusted input. Anything inside a tool's own directory (`.gapreg/`, say)
//! may have come from a stranger's `git clone`: a symlink to `~/.ssh` where a directory is
//! expected, a FIFO where a file is expected (an `open` that never returns), a directory where
//! a file is expected. The path-based helpers of this crate follow symlinks, as a user-facing
//! `write` should. [`Dir`] is for the other case, a tool's own state:
//!
//! - A `Dir` is an open directory descriptor. Every child is reached with the `*at` calls
//!   (`openat`, `mkdirat`, `renameat`, `unlinkat`, `fstatat`) relative to it, one path
//!   component at a time, so a directory swapped for a symlink after it was opened cannot
//!   redirect anything, and a name never holds a `/` or `..`.
//! - Nothing is ever followed: files and directories are opened with `O_NOFOLLOW`, files also
//!   with `O_NONBLOCK` (so a FIFO cannot hang the open), and the opened descriptor's type is
//!   checked with `fstat`. A symlink, FIFO, socket or device — or a directory where a file is
//!   expected, and the other way round — is refused with [`ErrorKind::WrongType`] naming the
//!   path and what was found there. It is never removed, replaced or written through.
//! - Reads are bounded: [`Dir::read`] refuses a file larger than the caller's limit
//!   ([`ErrorKind::TooLarge`]) before allocating for it.
//! - [`Dir::remove_file`] and [`Dir::recover`] unlink only regular files, by name, inside this
//!   directory.
//! - Files and directories created in a directory owned by another user take that
//!   directory's owner and group when this process runs as root (so `sudo gapreg list` in
//!   someone's repository cannot leave root-owned lock files that lock the owner out); a root
//!   process that cannot do so fails ([`Step::Chown`]) and removes what it created. An
//!   unprivileged process gives new entries the directory's group where it may.
//!
//! Writes ([`Dir::write`]) keep the crate's protocol: a unique `O_EXCL` temp file in the same
//! directory, locked while written, `fsync`, `renameat` over the target, `fsync` of the
//! directory descriptor. The temp file is never reached by path.
//!
//! ```
//! use atomic_file::{Options, dir::Dir};
//!
//! let tmp = tempfile::tempdir()?;
//! let root = Dir::create(tmp.path().join(".state"))?;
//! let gaps = root.create_dir("gaps")?;
//! gaps.write("GAP-1.yaml", b"title: x\n", &Options::new())?;
//! assert_eq!(gaps.read("GAP-1.yaml", 1 << 20)?.as_deref(), Some(&b"title: x\n"[..]));
//!
//! // A symlink planted where a file is expected is refused, not followed.
//! std::os::unix::fs::symlink("/etc/passwd", gaps.join("GAP-2.yaml"))?;
//! let err = gaps.read("GAP-2.yaml", 1 << 20).unwrap_err();
//! assert!(err.to_string().contains("symbolic link"), "{err}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::{Error, ErrorKind, Result, Step};
use crate::lock::{self, LockError, Wait};
use crate::recover::Recovery;
use crate::{Durability, Options, checksum, temp};

/// What kind of entry a path names, without following a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed inside a [`Dir`]).
    Symlink,
    /// A FIFO (named pipe).
    Fifo,
    /// A socket.
    Socket,
    /// A block or character device.
    Device,
    /// A regular file with more than one name (a hard link), which is never written in place.
    HardLinked,
    /// Anything else.
    Unknown,
}

impl FileKind {
    fn of(file_type: FileType) -> FileKind {
        match file_type {
            FileType::RegularFile => FileKind::File,
            FileType::Directory => FileKind::Dir,
            FileType::Symlink => FileKind::Symlink,
            FileType::Fifo => FileKind::Fifo,
            FileType::Socket => FileKind::Socket,
            FileType::CharacterDevice | FileType::BlockDevice => FileKind::Device,
            _ => FileKind::Unknown,
        }
    }

    fn of_mode(mode: u32) -> FileKind {
        FileKind::of(FileType::from_raw_mode(mode as _))
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::File => "a regular file",
            FileKind::Dir => "a directory",
            FileKind::Symlink => "a symbolic link",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::Socket => "a socket",
            FileKind::Device => "a device",
            FileKind::HardLinked => {
                "a regular file with other hard links (possibly outside this directory)"
            }
            FileKind::Unknown => "an entry of unknown type",
        })
    }
}

/// What identifies one version of a file: its inode, size and status-change time (`ctime`,
/// which every write, rename, `chmod` and `touch` moves and no unprivileged call can set
/// back). Two stamps differ whenever the file was replaced or written in between (within the
/// file system's timestamp granularity, nanoseconds on ext4, xfs and btrfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// The inode number.
    pub ino: u64,
    /// The size in bytes.
    pub len: u64,
    /// The status-change time, in nanoseconds since the epoch.
    pub changed_ns: u64,
}

impl Stamp {
    // The field types differ between platforms.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn of(stat: &rustix::fs::Stat) -> Stamp {
        let secs = u64::try_from(stat.st_ctime).unwrap_or(0);
        let nanos = u64::try_from(stat.st_ctime_nsec).unwrap_or(0);
        Stamp {
            ino: stat.st_ino as u64,
            len: u64::try_from(stat.st_size).unwrap_or(0),
            changed_ns: secs.saturating_mul(1_000_000_000).saturating_add(nanos),
        }
    }
}

/// One entry of a [`Dir`] listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name (one path component).
    pub name: OsString,
    /// Its type, without following a symlink.
    pub kind: FileKind,
}

/// An open directory whose children are reached only through its descriptor, never by
/// following a symlink (see the [module docs](self)). Cheap to clone; the clones share one
/// descriptor.
#[derive(Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    /// The directory's owner and group, given to what root creates in it.
    owner: (u32, u32),
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dir").field("path", &self.path).finish()
    }
}

/// Flags of every open: no symlink at the last component, no controlling terminal, closed on
/// exec.
fn base_flags() -> OFlags {
    OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY
}

/// Checks that `name` is one normal path component.
fn component<'a>(dir: &Path, name: &'a OsStr) -> Result<&'a OsStr> {
    let bytes = name.as_bytes();
    let reason = if bytes.is_empty() {
        Some("the name is empty")
    } else if bytes.contains(&b'/') {
        Some("the name contains a `/`; only a single path component is allowed")
    } else if bytes == b"." || bytes == b".." {
        Some("`.` and `..` are not allowed")
    } else if bytes.contains(&0) {
        Some("the name contains a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::new(
            dir.join(name),
            ErrorKind::InvalidPath { reason },
        )),
        None => Ok(name),
    }
}

impl Dir {
    /// Opens the existing directory `path`. Its last component must be a directory, not a
    /// symlink to one; earlier components are resolved as usual (they are the caller's
    /// choice, such as the repository the user named).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WrongType`] if `path` is a symlink or not a directory; an I/O error
    /// ([`Step::Open`]) if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Dir> {
        let path = path.as_ref();
        let fd = rustix::fs::open(path, base_flags() | dir_flags(), Mode::empty())
            .map_err(|e| open_dir_error(path, e, || rustix::fs::lstat(path).ok()))?;
        Dir::from_fd(fd, path.to_path_buf())
    }

    /// Opens the directory `path` without following a symlink anywhere on the way: a relative
    /// path is walked from the current directory one component at a time (`..` included, as
    /// written), an absolute one from its last component only (the system's own links, such
    /// as a `/home` that points elsewhere, are the administrator's, not a repository's).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WrongType`] naming the first component that is not a directory.
    pub fn open_beneath(path: impl AsRef<Path>) -> Result<Dir> {
        let path = path.as_ref();
        if path.is_absolute() || path.as_os_str().is_empty() {
            return Dir::open(path);
        }
        let mut dir = Dir::open(".")?;
        let mut shown = PathBuf::new();
        for c in path.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    shown.push("..");
                    let fd = rustix::fs::openat(
                        dir.fd(),
                        "..",
                        base_flags() | dir_flags(),
                        Mode::empty(),
                    )
                    .map_err(|e| Error::io(&shown, Step::Open, e.into()))?;
                    dir = Dir::from_fd(fd, shown.clone())?;
                }
                std::path::Component::Normal(name) => {
                    shown.push(name);
                    dir = dir.open_dir(name)?.ok_or_else(|| {
                        Error::io(&shown, Step::Open, io::ErrorKind::NotFound.into())
                    })?;
                    dir.path = shown.clone();
                }
                _ => return Dir::open(path),
            }
        }
        Ok(dir)
    }

    /// Opens the directory `path`, creating it (and, as `mkdir -p` does, its missing parents)
    /// first if it does not exist. The last component is never followed.
    pub fn create(path: impl AsRef<Path>) -> Result<Dir> {
        let path = path.as_ref();
        match Dir::open(path) {
            Err(e) if e.is_not_found() => {}
            other => return other,
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, Step::CreateDir, e))?;
        }
        match std::fs::create_dir(path) {
            Ok(()) => {
                // Make the new entry durable in its parent.
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                crate::sync_dir(parent)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(path, Step::CreateDir, e)),
        }
        Dir::open(path)
    }

    fn from_fd(fd: OwnedFd, path: PathBuf) -> Result<Dir> {
        let stat = rustix::fs::fstat(&fd).map_err(|e| Error::io(&path, Step::Inspect, e.into()))?;
        let kind = stat_kind(&stat);
        if kind != FileKind::Dir {
            return Err(wrong_type(path, kind, FileKind::Dir));
        }
        Ok(Dir {
            fd: Arc::new(fd),
            owner: (stat.st_uid as u32, stat.st_gid as u32),
            path,
        })
    }

    /// The path this directory was opened at (for messages; never used to reach children).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path()` joined with `name`, for messages.
    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// When this directory was last changed (an entry created, renamed or removed), from
    /// `fstat` on its descriptor.
    pub fn modified(&self) -> Result<std::time::SystemTime> {
        let stat = rustix::fs::fstat(self.fd())
            .map_err(|e| Error::io(&self.path, Step::Inspect, e.into()))?;
        let secs = u64::try_from(stat.st_mtime).unwrap_or(0);
        let nanos = u32::try_from(stat.st_mtime_nsec)
            .unwrap_or(0)
            .min(999_999_999);
        Ok(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
    }

    /// The identity and last change of the entry `name` (not followed if a symlink), for
    /// caches that must notice a file rewritten in place: `None` if it does not exist.
    pub fn stamp(&self, name: impl AsRef<OsStr>) -> Result<Option<Stamp>> {
        let name = component(&self.path, name.as_ref())?;
        match rustix::fs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Stamp::of(&stat))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io(self.join(name), Step::Inspect, e.into())),
        }
    }

    /// What `name` is, without following a symlink; `None` if it does not exist.
    pub fn kind(&self, name: impl AsRef<OsStr>) -> Result<Option<FileKind>> {
        let name = component(&self.path, name.as_ref())?;
        match rustix::fs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat_kind(&stat))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io(self.join(name), Step::Inspect, e.into())),
        }
    }

    /// Whether `name` exists as a regular file. Anything else there (a symlink, a directory)
    /// is an error, not `false`.
    pub fn file_exists(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = name.as_ref();
        match self.kind(name)? {
            None => Ok(false),
            Some(FileKind::File) => Ok(true),
            Some(kind) => Err(wrong_type(self.join(name), kind, FileKind::File)),
        }
    }

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

    fn open_with(&self, name: &OsStr, access: OFlags, create: bool) -> Result<Option<File>> {
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
    fn sync_naming(&self, path: &Path) -> Result<()> {
        rustix::fs::fsync(self.fd()).map_err(|e| Error::io(path, Step::SyncDir, e.into()))
    }

    /// Removes the regular file `name`. Returns whether it existed. Anything else at `name`
    /// (a symlink, a directory) is refused and left alone.
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = name.as_ref();
        if !self.file_exists(name)? {
            return Ok(false);
        }
        match rustix::fs::unlinkat(self.fd(), name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io(self.join(name), Step::Remove, e.into())),
        }
    }

    /// Removes the empty child directory `name` (not a symlink). Returns whether it existed.
    pub fn remove_dir(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = name.as_ref();
        match self.kind(name)? {
            None => return Ok(false),
            Some(FileKind::Dir) => {}
            Some(kind) => return Err(wrong_type(self.join(name), kind, FileKind::Dir)),
        }
        match rustix::fs::unlinkat(self.fd(), name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io(self.join(name), Step::Remove, e.into())),
        }
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
        let (from, to) = (from.as_ref(), to.as_ref());
        if !self.file_exists(from)? {
            return Ok(false);
        }
        to_dir.file_exists(to)?;
        match rustix::fs::renameat(self.fd(), from, to_dir.fd(), to) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io(self.join(from), Step::Rename, e.into())),
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

    /// Gives a descriptor this process created the directory's owner and group: required when
    /// running as root in another user's directory, best effort (the group) otherwise.
    fn adopt_owner(&self, fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
        let (uid, gid) = self.owner;
        let euid = rustix::process::geteuid().as_raw();
        if euid == 0 && uid != 0 {
            let owner = rustix::process::Uid::from_raw(uid);
            let group = rustix::process::Gid::from_raw(gid);
            return rustix::fs::fchown(fd, Some(owner), Some(group))
                .map_err(|e| Error::io(path, Step::Chown, e.into()));
        }
        if euid != 0 && rustix::process::getegid().as_raw() != gid {
            let _ = rustix::fs::fchown(fd, None, Some(rustix::process::Gid::from_raw(gid)));
        }
        Ok(())
    }
}

fn dir_flags() -> OFlags {
    OFlags::DIRECTORY | OFlags::RDONLY
}

/// The error for a failed `open(O_DIRECTORY | O_NOFOLLOW)`, naming what is there instead.
fn open_dir_error(
    path: &Path,
    errno: rustix::io::Errno,
    lstat: impl FnOnce() -> Option<rustix::fs::Stat>,
) -> Error {
    if matches!(
        errno,
        rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP | rustix::io::Errno::MLINK
    ) {
        if let Some(stat) = lstat() {
            let kind = stat_kind(&stat);
            if kind != FileKind::Dir {
                return wrong_type(path.to_path_buf(), kind, FileKind::Dir);
            }
        }
    }
    Error::io(path, Step::Open, errno.into())
}

/// The permission and type bits of a `stat` (`st_mode` is not `u32` on every platform).
#[allow(clippy::unnecessary_cast)]
fn stat_mode(stat: &rustix::fs::Stat) -> u32 {
    stat.st_mode as u32
}

fn stat_kind(stat: &rustix::fs::Stat) -> FileKind {
    FileKind::of_mode(stat_mode(stat))
}

fn wrong_type(path: PathBuf, found: FileKind, expected: FileKind) -> Error {
    Error::new(path, ErrorKind::WrongType { found, expected })
}

/// Reads an open regular file whole, refusing one longer than `limit` before allocating.
pub(crate) fn read_bounded(file: File, path: &Path, limit: u64) -> Result<Vec<u8>> {
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
