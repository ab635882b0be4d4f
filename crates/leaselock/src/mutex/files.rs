//! The wait queue on disk: [`Queue`] over the lock file and the `<lock>.queue/` directory.
//!
//! Files (see the module docs of [`crate::mutex`] for the protocol):
//! - `<lock>`: the lock file; its `flock` is the mutex.
//! - `<lock>.queue/waiters`: every queued waiter holds a shared lock on it; a newcomer that can
//!   take it exclusively (and drops it at once) knows nobody is queued.
//! - `<lock>.queue/seq`: the last ticket number handed out, updated under its own short lock.
//! - `<lock>.queue/t-<n>`: waiter `n`'s ticket; its owner holds it exclusively locked for as long
//!   as it waits, so a ticket whose lock can be taken belongs to a waiter that is gone (it took
//!   the lock, gave up, or died), and whoever finds it removes it.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::PathBuf;

use super::error::{MutexError, Step};
use super::os::{self, Mode, Wait};
use super::queue::Queue;
use super::sync::Mutex;

/// The shared state of a [`FileMutex`](super::FileMutex) and its clones: paths and a cache of
/// idle descriptors (never shared by two holders at once, since a `flock` belongs to the open
/// file description).
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    queue_dir: PathBuf,
    idle_main: Mutex<Option<(File, bool)>>,
    idle_check: Mutex<Option<File>>,
    /// The lock file's identity, known once the first lock call has checked the file system
    /// and created the queue directory.
    pub(crate) key: std::sync::OnceLock<Key>,
}

/// A lock file's identity: device and inode, so that two paths to one file are one lock.
pub(crate) type Key = (u64, u64);

/// The main lock, held in `mode` on `file`'s open file description.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) file: File,
    pub(crate) mode: Mode,
    pub(crate) writable: bool,
}

const TICKET_PREFIX: &str = "t-";

impl Inner {
    pub(crate) fn new(path: PathBuf) -> Inner {
        let mut name = path
            .file_name()
            .map(OsString::from)
            .unwrap_or_else(|| OsString::from("lock"));
        name.push(".queue");
        let queue_dir = path.with_file_name(name);
        Inner {
            path,
            queue_dir,
            idle_main: Mutex::new(None),
            idle_check: Mutex::new(None),
            key: std::sync::OnceLock::new(),
        }
    }

    fn err(&self, step: Step, source: io::Error) -> MutexError {
        MutexError::io(&self.path, step, source)
    }

    /// Opens the lock file read-write, creating it; read-only if it exists but is not writable
    /// by us (a lock works on a read-only descriptor; only the holder record is skipped).
    pub(crate) fn open_main(&self) -> Result<(File, bool), MutexError> {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
        {
            Ok(file) => Ok((file, true)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => File::open(&self.path)
                .map(|f| (f, false))
                .map_err(|e| self.err(Step::OpenLock, e)),
            Err(e) => Err(self.err(Step::OpenLock, e)),
        }
    }

    fn take_main(&self) -> Result<(File, bool), MutexError> {
        let idle = self.idle_main.lock().map(|mut g| g.take()).ok().flatten();
        match idle {
            Some(idle) => Ok(idle),
            None => self.open_main(),
        }
    }

    /// Gives back an unlocked descriptor of the lock file for the next holder to reuse.
    pub(crate) fn put_main(&self, file: File, writable: bool) {
        if let Ok(mut idle) = self.idle_main.lock() {
            if idle.is_none() {
                *idle = Some((file, writable));
            }
        }
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn queue_dir(&self) -> &std::path::Path {
        &self.queue_dir
    }

    pub(crate) fn create_queue_dir(&self) -> Result<(), MutexError> {
        fs::create_dir_all(&self.queue_dir).map_err(|e| self.err(Step::OpenQueue, e))
    }

    /// Opens (creating) a file in the queue directory, recreating the directory if it is gone.
    fn open_in_queue(&self, name: &str, step: Step) -> Result<File, MutexError> {
        let path = self.queue_dir.join(name);
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
        };
        match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_queue_dir()?;
                open().map_err(|e| self.err(step, e))
            }
            other => other.map_err(|e| self.err(step, e)),
        }
    }

    fn ticket_path(&self, n: u64) -> PathBuf {
        self.queue_dir.join(format!("{TICKET_PREFIX}{n:020}"))
    }

    /// The ticket numbers now in the queue directory.
    fn tickets(&self) -> Result<Vec<u64>, MutexError> {
        let entries = match fs::read_dir(&self.queue_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(Step::ListQueue, e)),
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.err(Step::ListQueue, e))?;
            let name = entry.file_name();
            if let Some(n) = parse_ticket_name(&name) {
                numbers.push(n);
            }
        }
        Ok(numbers)
    }
}

/// The number in a ticket's file name (`t-<20 digits>`), or `None` for any other file.
pub(crate) fn parse_ticket_name(name: &std::ffi::OsStr) -> Option<u64> {
    let digits = name.to_str()?.strip_prefix(TICKET_PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A registration: a shared lock on `waiters`, released by closing.
pub(crate) struct Registration(#[allow(dead_code)] File);

/// A ticket: an exclusive lock on `t-<n>`, released by closing.
pub(crate) struct Ticket(File);

/// The [`Queue`] of one [`Inner`] on disk.
pub(crate) struct Files<'a>(pub(crate) &'a Inner);

impl Queue for Files<'_> {
    type Held = Held;
    type Ticket = Ticket;
    type Registration = Registration;
    type Error = MutexError;

    fn has_waiters(&self) -> Result<bool, MutexError> {
        let inner = self.0;
        let idle = inner.idle_check.lock().map(|mut g| g.take()).ok().flatten();
        let file = match idle {
            Some(file) => file,
            None => inner.open_in_queue("waiters", Step::Register)?,
        };
        let free = os::lock(&file, Mode::Exclusive, Wait::Never)
            .map_err(|e| inner.err(Step::Register, e))?;
        if free {
            if !os::CAN_UNLOCK {
                // Closing releases it.
                return Ok(false);
            }
            os::unlock(&file).map_err(|e| inner.err(Step::Register, e))?;
        }
        if let Ok(mut idle) = inner.idle_check.lock() {
            *idle = Some(file);
        }
        Ok(!free)
    }

    fn lock_main(&self, mode: Mode, wait: Wait) -> Result<Option<Held>, MutexError> {
        let inner = self.0;
        let (file, writable) = inner.take_main()?;
        match os::lock(&file, mode, wait) {
            Ok(true) => Ok(Some(Held {
                file,
                mode,
                writable,
            })),
            Ok(false) => {
                inner.put_main(file, writable);
                Ok(None)
            }
            Err(e) => Err(inner.err(Step::Lock, e)),
        }
    }

    fn register(&self, wait: Wait) -> Result<Option<Registration>, MutexError> {
        let inner = self.0;
        let file = inner.open_in_queue("waiters", Step::Register)?;
        // Only a newcomer's momentary exclusive check can be in the way.
        let locked =
            os::lock(&file, Mode::Shared, wait).map_err(|e| inner.err(Step::Register, e))?;
        Ok(locked.then_some(Registration(file)))
    }

    fn take_ticket(&self) -> Result<(u64, Ticket), MutexError> {
        let inner = self.0;
        let err = |e| inner.err(Step::TakeTicket, e);
        let seq = inner.open_in_queue("seq", Step::TakeTicket)?;
        os::lock(&seq, Mode::Exclusive, Wait::Forever).map_err(err)?;
        let mut text = String::new();
        (&seq).read_to_string(&mut text).map_err(err)?;
        let mut n = match text.trim().parse::<u64>() {
            Ok(last) => last.saturating_add(1),
            // A lost or damaged counter: continue after every ticket still in the queue.
            Err(_) => inner.tickets()?.into_iter().max().unwrap_or(0) + 1,
        };
        loop {
            let created = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(inner.ticket_path(n));
            match created {
                // Locked before `seq` is released: the only waiters that ever look at ticket
                // `n` are numbered after it, so they take their numbers after this lock.
                Ok(file) => {
                    if os::lock(&file, Mode::Exclusive, Wait::Never).map_err(err)? {
                        write_counter(&seq, n).map_err(err)?;
                        // Closing `seq` releases its lock.
                        return Ok((n, Ticket(file)));
                    }
                    // Only a waiter left over from before a lost counter could hold a lock
                    // on it; leave the (unlocked, so dead-looking) file and move on.
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(err(e)),
            }
        }
    }

    fn predecessor(&self, n: u64) -> Result<Option<u64>, MutexError> {
        Ok(self.0.tickets()?.into_iter().filter(|&t| t < n).max())
    }

    fn wait_for(&self, p: u64, wait: Wait) -> Result<bool, MutexError> {
        let inner = self.0;
        let path = inner.ticket_path(p);
        let file = match File::open(&path) {
            Ok(file) => file,
            // Already gone: it took the lock, or gave up.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(inner.err(Step::WaitTurn, e)),
        };
        // Its owner holds it exclusively while it waits; shared, so that several waiters (ours
        // and any that re-target after a timeout) can wait on the same ticket.
        if !os::lock(&file, Mode::Shared, wait).map_err(|e| inner.err(Step::WaitTurn, e))? {
            return Ok(false);
        }
        // Its owner is gone: it took the main lock (and left its name for us), or gave up (and
        // removed its name first), or died. A name still there is removed for everyone.
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(inner.err(Step::WaitTurn, e)),
        }
        Ok(true)
    }

    fn leave(&self, n: u64, ticket: Ticket, acquired: bool) {
        if !acquired {
            // Name first, then the lock: whoever gets the lock sees the name gone.
            let _ = fs::remove_file(self.0.ticket_path(n));
        }
        drop(ticket.0);
    }
}

fn write_counter(seq: &File, n: u64) -> io::Result<()> {
    // Fixed width, one positional write: a reader sees the old or the new number.
    let text = format!("{n:020}\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        seq.write_all_at(text.as_bytes(), 0)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut seq = seq;
        seq.seek(SeekFrom::Start(0))?;
        seq.write_all(text.as_bytes())
    }
}

/// Writes this process's holder record into the lock file (best effort, see
/// [`super::holder`]).
pub(crate) fn write_holder(file: &File, mode: Mode) {
    let record = super::holder::record(mode);
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        let _ = file.write_all_at(&record, 0);
    }
    #[cfg(not(unix))]
    {
        let _ = (file, record);
    }
}
