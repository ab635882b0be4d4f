//! Other platforms: `std` only, conservative answers.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `path` exclusively.
pub fn create_temp(path: &Path, _private: bool) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Copies the read-only flag, the only permission `std` knows here.
pub fn copy_metadata(temp: &File, target: &Metadata, _target_path: &Path) -> io::Result<()> {
    temp.set_permissions(target.permissions())
}

/// Renames `temp` over `target`.
pub fn replace(temp: &Path, target: &Path, _target_exists: bool) -> io::Result<()> {
    fs::rename(temp, target)
}

/// Not available here; a no-op.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Unknown here: every process counts as running, so recovery removes nothing it cannot lock.
fn process_alive(_pid: u32) -> bool {
    true
}

/// Whether the writer `pid` may still be running (its start time is not checked here).
pub fn writer_alive(pid: u32, _created: Option<std::time::SystemTime>) -> bool {
    process_alive(pid)
}

/// Not needed here: lock files carry no owner of their own to fix.
pub fn share_lock_file(_lock: &File, _target: &Metadata) {}

/// Opens an existing file for locking, read-only.
pub fn open_for_lock(path: &Path) -> io::Result<File> {
    File::open(path)
}
