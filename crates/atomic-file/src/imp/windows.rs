//! Windows: `ReplaceFileW` replaces an existing file, `MoveFileExW` with write-through creates a
//! new one. Compiles but is not tested on this project's CI (Linux only).
#![allow(unsafe_code)]

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;

use windows_sys::Win32::Foundation::{CloseHandle, GetLastError};
use windows_sys::Win32::Storage::FileSystem::{
    MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH, MoveFileExW,
    REPLACEFILE_IGNORE_MERGE_ERRORS, ReplaceFileW,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
};

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

/// Creates `path` exclusively.
pub fn create_temp(path: &Path, _private: bool) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// `ReplaceFileW` keeps the replaced file's attributes and ACLs itself.
pub fn copy_metadata(_temp: &File, _target: &Metadata, _target_path: &Path) -> io::Result<()> {
    Ok(())
}

/// Replaces `target` with `temp`.
pub fn replace(temp: &Path, target: &Path, target_exists: bool) -> io::Result<()> {
    let (replaced, replacement) = (wide(target), wide(temp));
    // SAFETY: both buffers are NUL-terminated UTF-16 strings that live across the call; the
    // optional arguments are null, as the API allows.
    let ok = unsafe {
        if target_exists {
            ReplaceFileW(
                replaced.as_ptr(),
                replacement.as_ptr(),
                std::ptr::null(),
                REPLACEFILE_IGNORE_MERGE_ERRORS,
                std::ptr::null(),
                std::ptr::null(),
            )
        } else {
            MoveFileExW(
                replacement.as_ptr(),
                replaced.as_ptr(),
                MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
            )
        }
    };
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Directory entries are made durable by the replace calls themselves on NTFS.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Whether a process with this pid is running; unknown answers count as running.
fn process_alive(pid: u32) -> bool {
    const STILL_ACTIVE: u32 = 259;
    const ERROR_INVALID_PARAMETER: u32 = 87;
    // SAFETY: plain calls with a valid out-pointer; the handle is closed before returning.
    unsafe {
        let handle = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if handle.is_null() {
            return GetLastError() != ERROR_INVALID_PARAMETER;
        }
        let mut code = 0u32;
        let ok = GetExitCodeProcess(handle, &mut code);
        CloseHandle(handle);
        ok == 0 || code == STILL_ACTIVE
    }
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
