//! Unix: `rename(2)` replaces atomically; a directory `fsync` makes the rename durable.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::SystemTime;

/// Creates `path` exclusively. A temp file that will replace an existing (`private`) file is
/// created `0o600`, so nobody else can open it while it is written, whatever the old file's
/// mode; [`copy_metadata`] gives it the old file's mode after the last write. Otherwise mode
/// `0o666` is narrowed by the umask, which gives a new target exactly `0o666 & !umask`.
pub fn create_temp(path: &Path, private: bool) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o666 })
        .open(path)
}

/// Gives the temp file the replaced file's owner (where this process may) and permission bits.
///
/// Called after the last write: the kernel clears set-user-ID and set-group-ID bits when an
/// unprivileged process writes a file or changes its owner, so the mode must come last. Until
/// then the file is `0o600` (see [`create_temp`]). A set-user-ID (set-group-ID) bit is dropped
/// when the owner (group) could not be kept, so that no file becomes set-ID for someone else.
pub fn copy_metadata(temp: &File, target: &Metadata, target_path: &Path) -> io::Result<()> {
    let (uid, gid) = (target.uid(), target.gid());
    let mut mode = target.mode() & 0o7777;
    let (euid, egid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    if uid != euid || gid != egid {
        // Changing the owner needs privilege; changing the group needs membership. Try both,
        // then the group alone, and keep whatever the process may not change.
        if let Err(e) = std::os::unix::fs::fchown(temp, Some(uid), Some(gid)) {
            if e.kind() != io::ErrorKind::PermissionDenied {
                return Err(e);
            }
            if uid != euid {
                mode &= !0o4000;
            }
            match std::os::unix::fs::fchown(temp, None, Some(gid)) {
                Err(e) if e.kind() != io::ErrorKind::PermissionDenied => return Err(e),
                Err(_) if gid != egid => mode &= !0o2000,
                _ => {}
            }
        }
    }
    temp.set_permissions(fs::Permissions::from_mode(mode))?;
    copy_xattrs(temp, target_path)
}

/// Copies the replaced file's extended attributes — POSIX ACLs (`system.posix_acl_access`)
/// among them — to the temp file, after its mode, so that a file readable by one user only
/// does not become readable by others when it is replaced. An ACL or `user.` attribute that
/// cannot be copied fails the write (the target stays as it was); `security.` and `trusted.`
/// attributes that this process may not set are left to the system (SELinux labels a new
/// file itself). A file system without extended attributes has none to copy.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn copy_xattrs(temp: &File, target: &Path) -> io::Result<()> {
    use rustix::io::Errno;
    // Both sizes are asked first, then read; a list that changed meanwhile is read again.
    let names = loop {
        let len = match rustix::fs::llistxattr_query(target) {
            Ok(0) => return Ok(()),
            Ok(len) => len,
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut names = vec![0u8; len];
        match rustix::fs::llistxattr(target, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break names;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let value = loop {
            let len = match rustix::fs::lgetxattr_query(target, name) {
                Ok(len) => len,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            };
            let mut value = vec![0u8; len];
            match rustix::fs::lgetxattr(target, name, &mut value[..]) {
                Ok(n) => {
                    value.truncate(n);
                    break Some(value);
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        let Some(value) = value else { continue };
        let optional =
            name.as_bytes().starts_with(b"security.") || name.as_bytes().starts_with(b"trusted.");
        match rustix::fs::fsetxattr(temp, name, &value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::ACCESS | Errno::NOTSUP) if optional => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn copy_xattrs(_temp: &File, _target: &Path) -> io::Result<()> {
    Ok(())
}

/// Gives a newly created lock file the data file's owner and group, so that a lock file made
/// by one run as root does not lock the data file's owner out. Best effort.
pub fn share_lock_file(lock: &File, target: &Metadata) {
    let _ = std::os::unix::fs::fchown(lock, Some(target.uid()), Some(target.gid()));
}

/// Renames `temp` over `target`, atomically.
pub fn replace(temp: &Path, target: &Path, _target_exists: bool) -> io::Result<()> {
    fs::rename(temp, target)
}

/// `fsync` of a directory, which makes a rename inside it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether the writer `pid` that created a file at `created` may still be running: a process
/// with that pid exists, and (where [`crate::process`] tells) it started before the file was created —
/// a process that started later merely reuses the pid of a dead writer.
pub fn writer_alive(pid: u32, created: Option<SystemTime>) -> bool {
    if !process_alive(pid) {
        return false;
    }
    match (created, crate::process::start_time(pid)) {
        // Start times are rounded down, so "after" is never claimed wrongly.
        (Some(created), Some(started)) => started <= created,
        _ => true,
    }
}

/// Whether a process with this pid exists on this host (a zombie counts as existing).
fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match rustix::process::Pid::from_raw(raw) {
        // EPERM means it exists but belongs to someone else.
        Some(pid) => !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}
