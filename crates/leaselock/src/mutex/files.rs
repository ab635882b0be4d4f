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
//!
//! Every one of them is reached through an [`atomic_file::dir::Dir`]: the lock file's directory
//! is opened once (its last component must be a real directory, not a symlink), and the lock
//! file, the queue directory and the files in it are opened relative to that descriptor with
//! `O_NOFOLLOW | O_NONBLOCK` and checked with `fstat`. A symlink, FIFO, socket, device, or a
//! directory where a file belongs (and the other way round) is refused with
//! [`MutexErrorKind::Unsafe`](super::MutexErrorKind::Unsafe) naming the entry: nothing is
//! followed, so a planted link cannot make the mutex create or write a file elsewhere, and a
//! FIFO cannot hang an open. Entries of the queue directory that are not regular files are not
//! tickets: the listing skips them (and never removes them). Files the mutex creates take the
//! directory's owner when root creates them in another user's directory, so `sudo` cannot leave
//! root-owned lock or queue files that lock the owner out.
//!
//! Every lock is taken through [`atomic_file::lock`], the workspace's one module that touches
//! the operating system's locks. A lock taken there is not tied to a guard: it stays held on
//! the open file description until `unlock` or the last close (the kernel's clean-up when a
//! process dies).
//!
//! Lock order, for the whole mutex module: a waiter takes the *registration* (shared lock on
//! `waiters`), then the `seq` lock, under which it creates and locks its own ticket without
//! waiting, then releases `seq`; then it waits for the ticket ahead (shared) or, at the head,
//! for the main lock. So waits only go from a ticket to an earlier ticket or to the main lock,
//! whose holders wait for nothing in the queue; `seq` is held only across non-blocking steps;
//! the fast path's check takes `waiters` exclusively *without waiting* and drops it at once.
//! The waits-for graph is acyclic, so these locks cannot deadlock.

use crate::sync::unmodelled::OnceLock;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use atomic_file::dir::{Dir, FileKind};

use super::error::{MutexError, Step};
use super::queue::Queue;
use crate::sync::Mutex;
use atomic_file::lock::{self as os_lock, Mode, Wait};

/// The shared state of a [`FileMutex`](super::FileMutex) and its clones: paths, the lock file's
/// directory, and a cache of idle descriptors (never shared by two holders at once, since a
/// `flock` belongs to the open file description).
#[derive(Debug)]
pub(crate) struct Inner {
    /// The lock file's path, for messages (never used to reach the file).
    pub(crate) path: PathBuf,
    /// The directory opened on first use, unless the mutex was made with a [`Dir`].
    parent: PathBuf,
    /// The lock file's name in its directory (empty if the path has none: refused on use).
    name: OsString,
    /// `<name>.queue`.
    queue_name: OsString,
    /// The lock file's directory, opened once.
    dir: OnceLock<Dir>,
    /// The queue directory, opened (or created) on first use and again if it disappears.
    queue: Mutex<Option<Dir>>,
    idle_main: Mutex<Option<(File, bool)>>,
    idle_check: Mutex<Option<File>>,
    /// The lock file's identity, known once the first lock call has checked the file system
    /// and created the queue directory.
    pub(crate) key: OnceLock<Key>,
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
/// Ticket numbers from here on are not tickets (a planted `seq` or ticket name cannot make the
/// counter overflow): the listing ignores them and a counter this high counts as damaged.
const MAX_TICKET: u64 = i64::MAX as u64;
/// Bytes read from `seq` at most (it holds 21).
const SEQ_LIMIT: u64 = 64;
/// Bytes of the lock file read for the holder record at most.
const HOLDER_LIMIT: u64 = 4 * super::holder::RECORD_LEN as u64;

impl Inner {
    pub(crate) fn new(path: PathBuf) -> Inner {
        let parent = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(OsString::from).unwrap_or_default();
        Inner::build(path, parent, name, OnceLock::new())
    }

    pub(crate) fn in_dir(dir: &Dir, name: &OsStr) -> Inner {
        let opened = OnceLock::new();
        let _ = opened.set(dir.clone());
        Inner::build(
            dir.join(name),
            dir.path().to_path_buf(),
            name.to_os_string(),
            opened,
        )
    }

    fn build(path: PathBuf, parent: PathBuf, name: OsString, dir: OnceLock<Dir>) -> Inner {
        let mut queue_name = name.clone();
        queue_name.push(super::QUEUE_SUFFIX);
        Inner {
            path,
            parent,
            name,
            queue_name,
            dir,
            queue: Mutex::new(None),
            idle_main: Mutex::new(None),
            idle_check: Mutex::new(None),
            key: OnceLock::new(),
        }
    }

    pub(crate) fn err(&self, step: Step, source: io::Error) -> MutexError {
        MutexError::io(&self.path, step, source)
    }

    fn file_err(&self, step: Step) -> impl FnOnce(atomic_file::Error) -> MutexError + '_ {
        move |e| MutexError::from_file(&self.path, step, e)
    }

    /// The lock file's directory, opened on first use (`O_DIRECTORY | O_NOFOLLOW`: its last
    /// component must be a directory, not a symlink to one).
    pub(crate) fn dir(&self) -> Result<&Dir, MutexError> {
        if let Some(dir) = self.dir.get() {
            return Ok(dir);
        }
        if self.name.is_empty() {
            return Err(self.err(
                Step::OpenLock,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the lock path has no file name",
                ),
            ));
        }
        let dir = Dir::open(&self.parent).map_err(self.file_err(Step::OpenLock))?;
        let _ = self.dir.set(dir);
        self.dir
            .get()
            .ok_or_else(|| self.err(Step::OpenLock, io::ErrorKind::NotFound.into()))
    }

    /// Opens the lock file read-write, creating it; read-only (or write-only) if it exists but
    /// this user may not open it both ways (a lock works on either; the holder record needs
    /// write access and is skipped without it). The flag says whether it is writable.
    pub(crate) fn open_main(&self) -> Result<(File, bool), MutexError> {
        let file = self
            .dir()?
            .open_lock(&self.name)
            .map_err(self.file_err(Step::OpenLock))?;
        let flags = rustix::fs::fcntl_getfl(&file)
            .map_err(|e| self.err(Step::OpenLock, io::Error::from(e)))?;
        let writable = (flags & rustix::fs::OFlags::RWMODE) != rustix::fs::OFlags::RDONLY;
        Ok((file, writable))
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

    /// The queue directory's path, for tests.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn queue_dir(&self) -> PathBuf {
        self.path.with_file_name(&self.queue_name)
    }

    /// Opens (creating) the queue directory and caches it.
    pub(crate) fn create_queue_dir(&self) -> Result<Dir, MutexError> {
        let queue = self
            .dir()?
            .create_dir(&self.queue_name)
            .map_err(self.file_err(Step::OpenQueue))?;
        if let Ok(mut cached) = self.queue.lock() {
            *cached = Some(queue.clone());
        }
        Ok(queue)
    }

    /// The queue directory: the cached descriptor, or opened (created) now.
    fn queue_dir_handle(&self) -> Result<Dir, MutexError> {
        let cached = self.queue.lock().ok().and_then(|g| g.clone());
        match cached {
            Some(queue) => Ok(queue),
            None => self.create_queue_dir(),
        }
    }

    /// Opens (creating) a file in the queue directory, recreating the directory if it is gone.
    fn open_in_queue(&self, name: &str, step: Step) -> Result<(Dir, File), MutexError> {
        let queue = self.queue_dir_handle()?;
        match queue.open_lock(name) {
            Ok(file) => Ok((queue, file)),
            // The cached directory was removed: open (or create) the one there now.
            Err(e) if e.is_not_found() => {
                let queue = self.create_queue_dir()?;
                let file = queue.open_lock(name).map_err(self.file_err(step))?;
                Ok((queue, file))
            }
            Err(e) => Err(MutexError::from_file(&self.path, step, e)),
        }
    }

    /// The ticket numbers now in the queue directory (regular files named `t-<20 digits>`).
    fn tickets(&self, queue: &Dir) -> Result<Vec<u64>, MutexError> {
        let entries = match queue.entries() {
            Ok(entries) => entries,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(MutexError::from_file(&self.path, Step::ListQueue, e)),
        };
        Ok(entries
            .iter()
            .filter(|entry| entry.kind == FileKind::File)
            .filter_map(|entry| parse_ticket_name(&entry.name))
            .collect())
    }

    /// The holder the lock file names, if it names one and can be read.
    pub(crate) fn read_holder(&self) -> Option<super::Holder> {
        let file = self.dir().ok()?.open_file(&self.name).ok()??;
        let mut contents = Vec::with_capacity(super::holder::RECORD_LEN);
        file.take(HOLDER_LIMIT).read_to_end(&mut contents).ok()?;
        super::holder::parse(&contents)
    }
}

fn ticket_name(n: u64) -> String {
    format!("{TICKET_PREFIX}{n:020}")
}

/// The number in a ticket's file name (`t-<20 digits>`), or `None` for any other file.
pub(crate) fn parse_ticket_name(name: &OsStr) -> Option<u64> {
    let digits = name.to_str()?.strip_prefix(TICKET_PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n < MAX_TICKET)
}

/// A registration: a shared lock on `waiters`, released by closing.
pub(crate) struct Registration(#[allow(dead_code)] File);

/// A ticket: an exclusive lock on `t-<n>` in the queue directory `Dir`, released by closing.
pub(crate) struct Ticket(File, Dir);

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
            None => inner.open_in_queue("waiters", Step::Register)?.1,
        };
        let free = os_lock::lock(&file, Mode::Exclusive, Wait::Never)
            .map_err(|e| inner.err(Step::Register, e))?;
        if free {
            os_lock::unlock(&file).map_err(|e| inner.err(Step::Register, e))?;
        }
        if let Ok(mut idle) = inner.idle_check.lock() {
            *idle = Some(file);
        }
        Ok(!free)
    }

    fn lock_main(&self, mode: Mode, wait: Wait) -> Result<Option<Held>, MutexError> {
        let inner = self.0;
        let (file, writable) = inner.take_main()?;
        match os_lock::lock(&file, mode, wait) {
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
        let (_, file) = inner.open_in_queue("waiters", Step::Register)?;
        // Only a newcomer's momentary exclusive check can be in the way.
        let locked =
            os_lock::lock(&file, Mode::Shared, wait).map_err(|e| inner.err(Step::Register, e))?;
        Ok(locked.then_some(Registration(file)))
    }

    fn take_ticket(&self) -> Result<(u64, Ticket), MutexError> {
        let inner = self.0;
        let err = |e| inner.err(Step::TakeTicket, e);
        let (queue, seq) = inner.open_in_queue("seq", Step::TakeTicket)?;
        os_lock::lock(&seq, Mode::Exclusive, Wait::Forever).map_err(err)?;
        let mut text = Vec::new();
        (&seq).take(SEQ_LIMIT).read_to_end(&mut text).map_err(err)?;
        let counted = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|&last| last < MAX_TICKET - 1);
        let mut n = match counted {
            Some(last) => last + 1,
            // A lost or damaged counter: continue after every ticket still in the queue.
            None => inner.tickets(&queue)?.into_iter().max().unwrap_or(0) + 1,
        };
        loop {
            if n >= MAX_TICKET {
                return Err(err(io::Error::other(
                    "the wait queue's ticket numbers are exhausted; remove the queue directory \
                     while no one waits",
                )));
            }
            let created = queue
                .create_new(ticket_name(n), 0o666)
                .map_err(inner.file_err(Step::TakeTicket))?;
            match created {
                // Locked before `seq` is released: the only waiters that ever look at ticket
                // `n` are numbered after it, so they take their numbers after this lock.
                Some(file) => {
                    if os_lock::lock(&file, Mode::Exclusive, Wait::Never).map_err(err)? {
                        write_counter(&seq, n).map_err(err)?;
                        // Closing `seq` releases its lock.
                        return Ok((n, Ticket(file, queue)));
                    }
                    // Only a waiter left over from before a lost counter could hold a lock
                    // on it; leave the (unlocked, so dead-looking) file and move on.
                    n += 1;
                }
                // The name exists (a ticket, or anything else: never opened here).
                None => n += 1,
            }
        }
    }

    fn predecessor(&self, n: u64) -> Result<Option<u64>, MutexError> {
        let queue = self.0.queue_dir_handle()?;
        Ok(self.0.tickets(&queue)?.into_iter().filter(|&t| t < n).max())
    }

    fn wait_for(&self, p: u64, wait: Wait) -> Result<bool, MutexError> {
        let inner = self.0;
        let queue = inner.queue_dir_handle()?;
        let name = ticket_name(p);
        let file = match queue.open_file(&name) {
            Ok(Some(file)) => file,
            // Already gone: it took the lock, or gave up.
            Ok(None) => return Ok(true),
            Err(e) => return Err(MutexError::from_file(&inner.path, Step::WaitTurn, e)),
        };
        // Its owner holds it exclusively while it waits; shared, so that several waiters (ours
        // and any that re-target after a timeout) can wait on the same ticket.
        if !os_lock::lock(&file, Mode::Shared, wait).map_err(|e| inner.err(Step::WaitTurn, e))? {
            return Ok(false);
        }
        // Its owner is gone: it took the main lock (and left its name for us), or gave up (and
        // removed its name first), or died. A name still there is removed for everyone.
        queue
            .remove_file(&name)
            .map_err(inner.file_err(Step::WaitTurn))?;
        Ok(true)
    }

    fn leave(&self, n: u64, ticket: Ticket, acquired: bool) {
        let Ticket(file, queue) = ticket;
        if !acquired {
            // Name first, then the lock: whoever gets the lock sees the name gone.
            let _ = queue.remove_file(ticket_name(n));
        }
        drop(file);
    }
}

fn write_counter(seq: &File, n: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    // Fixed width, one positional write: a reader sees the old or the new number.
    let text = format!("{n:020}\n");
    seq.write_all_at(text.as_bytes(), 0)
}

/// Writes this process's holder record into the lock file (best effort, see
/// [`super::holder`]).
pub(crate) fn write_holder(file: &File, mode: Mode) {
    use std::os::unix::fs::FileExt;
    let record = super::holder::record(mode);
    let _ = file.write_all_at(&record, 0);
}
