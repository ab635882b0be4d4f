//! Unix: `rename(2)` replaces atomically; a directory `fsync` makes the rename durable.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `path` exclusively. Mode `0o666` is narrowed by the umask, which gives a new target
/// exactly `0o666 & !umask`; an existing target's mode is copied by [`copy_metadata`].
pub fn create_temp(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(path)
}

/// Gives the temp file the replaced file's owner (where this process may) and permission bits.
/// Called before any content is written, so the new contents are never more exposed than the
/// old ones were.
pub fn copy_metadata(temp: &File, target: &Metadata) -> io::Result<()> {
    let (uid, gid) = (target.uid(), target.gid());
    if uid != rustix::process::geteuid().as_raw() || gid != rustix::process::getegid().as_raw() {
        // Changing the owner needs privilege; changing the group needs membership. Try both,
        // then the group alone, and keep whatever the process may not change.
        if let Err(e) = std::os::unix::fs::fchown(temp, Some(uid), Some(gid)) {
            if e.kind() != io::ErrorKind::PermissionDenied {
                return Err(e);
            }
            match std::os::unix::fs::fchown(temp, None, Some(gid)) {
                Err(e) if e.kind() != io::ErrorKind::PermissionDenied => return Err(e),
                _ => {}
            }
        }
    }
    // After fchown, which clears set-user-ID bits.
    temp.set_permissions(fs::Permissions::from_mode(target.mode() & 0o7777))
}

/// Renames `temp` over `target`, atomically.
pub fn replace(temp: &Path, target: &Path, _target_exists: bool) -> io::Result<()> {
    fs::rename(temp, target)
}

/// `fsync` of a directory, which makes a rename inside it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether a process with this pid exists on this host (a zombie counts as existing).
pub fn process_alive(pid: u32) -> bool {
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
