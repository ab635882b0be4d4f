//! The only module of [`crate::mutex`] that touches the operating system's advisory locks
//! (through `fd-lock`) or asks which file system a path is on.
//!
//! A lock taken here is *not* tied to a guard object: it stays held on the open file
//! description until [`unlock`] is called on the same `File`, or until the last descriptor of
//! that open file description is closed (which is what the kernel does when the process dies).
//! `fd-lock`'s guards borrow the lock they came from, so [`lock`] forgets the guard and
//! [`unlock`] makes the call the guard's `Drop` would have made.
//!
//! Lock order, for the whole mutex module: a waiter takes the *registration* (shared lock on
//! `waiters`), then the `seq` lock, under which it creates and locks its own ticket without
//! waiting, then releases `seq`; then it waits for the ticket ahead (shared) or, at the head,
//! for the main lock. So waits only go from a ticket to an earlier ticket or to the main lock,
//! whose holders wait for nothing in the queue; `seq` is held only across non-blocking steps;
//! the fast path's check takes `waiters` exclusively *without waiting* and drops it at once.
//! The waits-for graph is acyclic, so these locks cannot deadlock.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

/// Shared (many readers) or exclusive (one writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

/// How long a lock call may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Block in the kernel until the lock is granted (no CPU use while waiting).
    Forever,
    /// Do not wait at all.
    Never,
    /// Poll with exponential backoff and jitter until this instant.
    Until(Instant),
}

/// Longest pause between two attempts of a timed wait, early on ...
const MAX_PAUSE: Duration = Duration::from_millis(2);
/// ... and after a long wait, when the pause may grow to an eighth of the time waited so far
/// (so a waiter that has waited a second polls 8 times a second, and is late by at most 1/8).
const MAX_LONG_PAUSE: Duration = Duration::from_millis(50);

/// Locks `file` in `mode`. `Ok(true)`: the lock is held until [`unlock`] or close;
/// `Ok(false)`: another holder has it and the wait ran out (or `Wait::Never`).
pub(crate) fn lock(file: &File, mode: Mode, wait: Wait) -> io::Result<bool> {
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
/// the one call that guard's `Drop` would have made, `flock(fd, LOCK_UN)` (through rustix, as
/// `fd-lock` does).
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::Unlock).map_err(io::Error::from)
}

fn is_contended(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// The name of the network file system the open `file` is on, if it is on one whose `flock`
/// can hang or does not exclude other hosts. `Ok(None)` also on platforms where this cannot be
/// told. (`fstatfs` on the descriptor: the path is never looked up again.)
pub(crate) fn network_fs(file: &File) -> io::Result<Option<&'static str>> {
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
pub(crate) fn network_fs_name(magic: u64) -> Option<&'static str> {
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
