//! Other platforms: `std` only, conservative answers.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `path` exclusively.
pub fn create_temp(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Copies the read-only flag, the only permission `std` knows here.
pub fn copy_metadata(temp: &File, target: &Metadata) -> io::Result<()> {
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
pub fn process_alive(_pid: u32) -> bool {
    true
}
