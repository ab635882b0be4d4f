//! The only module that touches the OS's advisory locks (through `fd-lock`).
//!
//! Lock order: a caller of [`crate::update`] holds the sibling lock file's lock, then takes the
//! temp file's lock inside it. Recovery takes a temp file's lock alone. Nothing takes them the
//! other way round, so no two of this crate's locks can deadlock.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

/// How long to wait for a lock.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Block until the lock is free.
    #[cfg_attr(windows, allow(dead_code))]
    Forever,
    /// Do not wait at all.
    Never,
    /// Wait up to this long, sleeping with exponential backoff and jitter between attempts.
    Up(Duration),
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another holder has it and the wait ran out.
    Busy {
        /// How long this call waited.
        waited: Duration,
    },
    /// The lock call itself failed.
    Io(io::Error),
}

/// Runs `f` with `file` exclusively locked; the lock is released when `f` returns (and by the
/// kernel if this process dies first).
pub fn with_exclusive<T>(
    file: File,
    wait: Wait,
    f: impl FnOnce(&mut File) -> T,
) -> Result<T, LockError> {
    let mut lock = fd_lock::RwLock::new(file);
    let started = Instant::now();
    let mut pause = Duration::from_micros(50);
    loop {
        let attempt = match wait {
            Wait::Forever => lock.write(),
            Wait::Never | Wait::Up(_) => lock.try_write(),
        };
        match attempt {
            Ok(mut guard) => return Ok(f(&mut guard)),
            Err(e) if !is_contended(&e) => return Err(LockError::Io(e)),
            Err(_) => {}
        }
        let waited = started.elapsed();
        let limit = match wait {
            Wait::Up(limit) if waited < limit => limit,
            _ => return Err(LockError::Busy { waited }),
        };
        // Sleep a random 50–100 % of the current pause so that waiters spread out.
        let jittered = pause.mul_f64(0.5 + fastrand::f64() / 2.0);
        std::thread::sleep(jittered.min(limit - waited));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Runs `f` while holding the writer's lock on its own temp file, which tells
/// [`crate::recover`] that the file is in use. On Windows byte-range locks are mandatory and
/// would get in the way of `ReplaceFileW`, so there the pid in the temp name alone marks it.
pub fn while_writing<T>(file: File, f: impl FnOnce(&mut File) -> T) -> io::Result<T> {
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

fn is_contended(e: &io::Error) -> bool {
    // Windows reports ERROR_LOCK_VIOLATION (33) rather than WouldBlock.
    e.kind() == io::ErrorKind::WouldBlock || (cfg!(windows) && e.raw_os_error() == Some(33))
}
