//! The one module of this workspace that touches the operating system's advisory locks
//! (`flock` on Unix, `LockFileEx` on Windows, through `fd-lock`) or asks which file system a
//! lock file is on.
//!
//! Every other module, in this crate and in the crates above it (leaselock's `FileMutex`,
//! idreserve, gapreg), locks through the functions here. The workspace's `clippy.toml` forbids
//! the raw calls (`fd_lock::RwLock::{new, read, try_read, write, try_write}`,
//! `rustix::fs::flock`, `std::fs::File::{lock, try_lock, lock_shared, try_lock_shared,
//! unlock}`) everywhere else, as cargo does for its `util/flock.rs`; this module alone allows
//! them.
//!
//! A lock taken with [`lock`] is *not* tied to a guard object: it stays held on the open file
//! description until [`unlock`] is called on the same `File`, or until the last descriptor of
//! that open file description is closed (which is what the kernel does when the process dies).
//! `fd-lock`'s guards borrow the lock they came from, so [`lock`] forgets the guard and
//! [`unlock`] makes the call the guard's `Drop` would have made.
//!
//! Lock order inside this crate: a caller of [`crate::update`] holds the sibling lock file's
//! lock, then takes the temp file's lock inside it. Recovery takes a temp file's lock alone.
//! Nothing takes them the other way round, so no two of this crate's locks can deadlock.
//! (leaselock's mutex documents its own order, in `leaselock::mutex`.)
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

/// Shared (many holders) or exclusive (one holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

/// How long a lock call may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block in the kernel until the lock is granted (no CPU use while waiting).
    Forever,
    /// Do not wait at all.
    Never,
    /// Poll with exponential backoff and jitter until this instant.
    Until(Instant),
}

impl Wait {
    /// Wait up to `timeout` from now ([`Wait::Forever`] if that instant cannot be represented).
    pub fn within(timeout: Duration) -> Wait {
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until)
    }
}

/// Longest pause between two attempts of a timed wait, early on ...
const MAX_PAUSE: Duration = Duration::from_millis(2);
/// ... and after a long wait, when the pause may grow to an eighth of the time waited so far
/// (so a waiter that has waited a second polls 8 times a second, and is late by at most 1/8).
const MAX_LONG_PAUSE: Duration = Duration::from_millis(50);

/// Locks `file` in `mode`. `Ok(true)`: the lock is held until [`unlock`] or until the file's
/// last descriptor is closed; `Ok(false)`: another holder has it and the wait ran out (at once
/// for [`Wait::Never`]). A signal during a blocking wait retries.
///
/// ```
/// use atomic_file::lock::{self, Mode, Wait};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("x.lock");
/// let first = std::fs::File::create(&path)?;
/// let second = std::fs::File::open(&path)?;
/// assert!(lock::lock(&first, Mode::Exclusive, Wait::Never)?);
/// assert!(!lock::lock(&second, Mode::Shared, Wait::Never)?);
/// lock::unlock(&first)?;
/// assert!(lock::lock(&second, Mode::Shared, Wait::Never)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn lock(file: &File, mode: Mode, wait: Wait) -> io::Result<bool> {
    let started = Instant::now();
    let mut pause = Duration::from_micros(50);
    loop {
        let blocking = wait == Wait::Forever;
        match attempt(file, mode, blocking) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_contended(&e) => {}
            Err(e) => return Err(e),
        }
        let deadline = match wait {
            Wait::Until(deadline) => deadline,
            Wait::Forever | Wait::Never => return Ok(false),
        };
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        // Sleep a random 50–100 % of the current pause so that pollers spread out.
        let jittered = pause.mul_f64(0.5 + fastrand::f64() / 2.0);
        std::thread::sleep(jittered.min(deadline - now));
        let cap = (started.elapsed() / 8).clamp(MAX_PAUSE, MAX_LONG_PAUSE);
        pause = (pause * 2).min(cap);
    }
}

fn attempt(file: &File, mode: Mode, blocking: bool) -> io::Result<()> {
    let mut lock = fd_lock::RwLock::new(file);
    match (mode, blocking) {
        (Mode::Shared, true) => lock.read().map(std::mem::forget),
        (Mode::Shared, false) => lock.try_read().map(std::mem::forget),
        (Mode::Exclusive, true) => lock.write().map(std::mem::forget),
        (Mode::Exclusive, false) => lock.try_write().map(std::mem::forget),
    }
}

/// Releases the lock `file` holds, keeping the descriptor open for reuse.
///
/// `fd-lock`'s guards borrow the lock they came from, so [`lock`] forgot its guard; this makes
/// the one call that guard's `Drop` would have made: `flock(fd, LOCK_UN)` on Unix (through
/// rustix, as `fd-lock` does), `UnlockFile` of the byte `fd-lock` locks on Windows.
pub fn unlock(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        rustix::fs::flock(file, rustix::fs::FlockOperation::Unlock).map_err(io::Error::from)
    }
    #[cfg(windows)]
    {
        windows_unlock(file)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = file;
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(windows)]
#[allow(unsafe_code)]
fn windows_unlock(file: &File) -> io::Result<()> {
    use std::os::windows::io::AsRawHandle;
    // SAFETY: the handle is open for as long as `file` is borrowed; the range is the one byte
    // at offset 0 that fd-lock's `LockFileEx` locks.
    let ok = unsafe {
        windows_sys::Win32::Storage::FileSystem::UnlockFile(file.as_raw_handle(), 0, 0, 1, 0)
    };
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn is_contended(e: &io::Error) -> bool {
    // Windows reports ERROR_LOCK_VIOLATION (33) rather than WouldBlock.
    e.kind() == io::ErrorKind::WouldBlock || (cfg!(windows) && e.raw_os_error() == Some(33))
}

/// Why [`with_exclusive`] did not run its closure.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another holder has the lock and the wait ran out.
    Busy {
        /// How long this call waited.
        waited: Duration,
    },
    /// The lock call itself failed.
    Io(io::Error),
}

/// Runs `f` with `file` exclusively locked; the lock is released when `f` returns (and by the
/// kernel if this process dies first).
pub(crate) fn with_exclusive<T>(
    mut file: File,
    wait: Wait,
    f: impl FnOnce(&mut File) -> T,
) -> Result<T, LockError> {
    let started = Instant::now();
    match lock(&file, Mode::Exclusive, wait) {
        Ok(true) => {}
        Ok(false) => {
            return Err(LockError::Busy {
                waited: started.elapsed(),
            });
        }
        Err(e) => return Err(LockError::Io(e)),
    }
    let result = f(&mut file);
    // Closing `file` just below releases the lock too, so a failed unlock loses nothing.
    let _ = unlock(&file);
    Ok(result)
}

/// Runs `f` while holding the writer's lock on its own temp file, which tells
/// [`crate::recover`] that the file is in use. On Windows byte-range locks are mandatory and
/// would get in the way of `ReplaceFileW`, so there the pid in the temp name alone marks it.
pub(crate) fn while_writing<T>(file: File, f: impl FnOnce(&mut File) -> T) -> io::Result<T> {
    #[cfg(not(windows))]
    {
        with_exclusive(file, Wait::Forever, f).map_err(|e| match e {
            LockError::Io(e) => e,
            // Waiting forever never gives up.
            LockError::Busy { .. } => io::ErrorKind::WouldBlock.into(),
        })
    }
    #[cfg(windows)]
    {
        let mut file = file;
        Ok(f(&mut file))
    }
}

/// The name of the network file system the open `file` is on, if it is on one whose `flock`
/// can hang or does not exclude other hosts. `Ok(None)` also on platforms where this cannot be
/// told. (`fstatfs` on the descriptor: the path is never looked up again.)
pub fn network_fs(file: &File) -> io::Result<Option<&'static str>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let stat = rustix::fs::fstatfs(file)?;
        // The magic numbers are 32 bits; `f_type` is a signed word on some targets.
        #[allow(clippy::unnecessary_cast)]
        let magic = (stat.f_type as u64) & 0xFFFF_FFFF;
        Ok(network_fs_name(magic))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = file;
        Ok(None)
    }
}

/// Maps a Linux `statfs` `f_type` magic number to the name of a network file system on which
/// `flock` is unsafe to rely on (it can block past any timeout when the server is unreachable,
/// or it only excludes processes on the same client), or `None` for any other file system.
pub fn network_fs_name(magic: u64) -> Option<&'static str> {
    Some(match magic {
        0x6969 => "NFS",
        0x517B => "SMB",
        0xFF53_4D42 => "CIFS",
        0xFE53_4D42 => "SMB2",
        0x7375_7245 => "Coda",
        0x5346_414F | 0x6B41_4653 => "AFS",
        0x564C => "NCP",
        0x00C3_6400 => "CephFS",
        0x0BD0_0BD0 => "Lustre",
        0x0102_1997 => "9P",
        _ => return None,
    })
}
