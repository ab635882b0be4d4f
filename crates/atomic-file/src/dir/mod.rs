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

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::{Error, ErrorKind, Result, Step};
use crate::lock::{self, LockError, Wait};
use crate::recover::Recovery;
use crate::sync::Arc;
use crate::{Durability, Options, checksum, temp};

mod entries;
mod flush;
mod open;
mod read_write;

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
