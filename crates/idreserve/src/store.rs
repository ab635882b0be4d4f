//! The on-disk store: a directory with `config.yaml`, `counters.log` and the lock file
//! `counters.lock` (with its queue directory `counters.lock.queue/`), reached only through an
//! open directory descriptor ([`Dir`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use atomic_file::Options;
use atomic_file::dir::{Dir, FileKind};
use leaselock::mutex::{FileMutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::config;
use crate::error::{Error, ErrorKind, wrong_type};
use crate::id::{Id, check_prefix};
use crate::log::{self, Format, Record, Scan};
use crate::protocol::{self, CounterLog};
use crate::scan::Skipped;

pub(crate) const CONFIG: &str = "config.yaml";
pub(crate) const LOG: &str = "counters.log";
pub(crate) const LOCK: &str = "counters.lock";
pub(crate) const QUEUE: &str = "counters.lock.queue";
/// The files of the lock's queue that are created up front (the tickets come and go).
const QUEUE_FILES: [&str; 2] = ["waiters", "seq"];
/// Reads of the log without the lock that are retried when they find damage: a read that
/// races with a writer's `pwrite` can see a slot half old, half new.
const READ_ATTEMPTS: u32 = 4;

/// A store's settings, kept in `config.yaml` in the store's directory (format and strictness
/// rules: see the crate docs).
///
/// ```yaml
/// version: 2             # written by idreserve: the store's format
/// allow: [SEC, GAP-OP]   # optional: only these prefixes; without it, any valid prefix
/// width: {GAP-OP: 4}     # optional: zero-pad these prefixes' numbers to N digits (1-20)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// If set, the only prefixes that may be reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Zero padding per prefix (digits, 1 to [`MAX_WIDTH`](crate::MAX_WIDTH)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub width: BTreeMap<String, usize>,
}

/// A run of consecutive reserved IDs. It holds only its first number and its length, so even
/// the largest reservation costs no memory until its IDs are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    prefix: String,
    first: u64,
    count: u64,
    width: usize,
}

impl Reservation {
    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The first reserved number.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The last reserved number.
    pub fn last(&self) -> u64 {
        // Never overflows: the counter holds it.
        self.first + (self.count - 1)
    }

    /// How many IDs were reserved (at most [`MAX_COUNT`](crate::MAX_COUNT)).
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Always false: a reservation holds at least one ID.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The reserved IDs, in order, made one at a time.
    pub fn ids(&self) -> impl Iterator<Item = Id> + '_ {
        (self.first..=self.last()).map(|n| self.id(n))
    }

    fn id(&self, number: u64) -> Id {
        Id {
            prefix: self.prefix.clone(),
            number,
            width: self.width,
        }
    }
}

/// A handle on an ID store directory. Cheap to clone; safe to share between threads.
#[derive(Debug, Clone)]
pub struct Store {
    dir: Dir,
    config: Config,
    /// `config.yaml` has no `version`: a first-release store, whose log may lack a header.
    legacy: bool,
    mutex: FileMutex,
    lock_timeout: Duration,
}

/// What [`Store::init_from`] found for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The highest ID seen.
    pub highest: Id,
    /// The file it was seen in.
    pub file: PathBuf,
    /// The counter before.
    pub old_counter: u64,
    /// The counter after (unchanged if it was already higher and not forced).
    pub new_counter: u64,
}

/// What [`Store::init_from_report`] found, and what it skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Per prefix: the highest ID seen and the counter before and after.
    pub found: BTreeMap<String, Found>,
    /// Entries not read: symbolic links, FIFOs and other special files, binary files,
    /// directories nested too deep.
    pub skipped: Vec<Skipped>,
}

/// What [`Store::raise`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The counter before.
    pub before: u64,
    /// The counter after: the larger of `before` and the value asked for.
    pub after: u64,
}

impl Raised {
    /// Whether the counter moved (and a record was written).
    pub fn changed(&self) -> bool {
        self.after != self.before
    }
}

/// Maps an [`atomic_file::dir::Dir::open`] failure of the store directory.
fn open_error(path: &Path, e: atomic_file::Error) -> Error {
    if e.is_not_found() {
        Error::new(ErrorKind::NoStore { dir: path.into() })
    } else {
        Error::store_file(e)
    }
}

/// Checks that `name` in `dir` is a regular file or absent.
fn file_kind(dir: &Dir, name: &str) -> Result<bool, Error> {
    match dir.kind(name).map_err(Error::store_file)? {
        None => Ok(false),
        Some(FileKind::File) => Ok(true),
        Some(kind) => Err(Error::corrupt(
            dir.join(name),
            wrong_type(kind, FileKind::File),
        )),
    }
}

impl Store {
    /// Creates a store in `dir` (creating the directory and its parents) with `config`.
    ///
    /// The last component of `dir` is never followed if it is a symbolic link (that is an
    /// error). The log is written first, with its header and no record, then `config.yaml`;
    /// both atomically and durably, under the store's lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyExists`] if either file exists; [`ErrorKind::InvalidPrefix`] or
    /// [`ErrorKind::InvalidConfig`] for invalid settings.
    pub fn create(dir: impl AsRef<Path>, config: Config) -> Result<Store, Error> {
        let path = dir.as_ref();
        check_new_config(&config)?;
        let dir = Dir::create(path).map_err(|e| open_error(path, e))?;
        Store::create_in(dir, config)
    }

    /// Creates a store in the directory `name` inside `parent` (created if missing), reached
    /// through `parent`'s descriptor: nothing on the way is followed.
    pub fn create_at(parent: &Dir, name: &str, config: Config) -> Result<Store, Error> {
        check_new_config(&config)?;
        let dir = parent.create_dir(name).map_err(Error::store_file)?;
        Store::create_in(dir, config)
    }

    fn create_in(dir: Dir, config: Config) -> Result<Store, Error> {
        let mutex = FileMutex::new(dir.join(LOCK));
        let guard = lock(&dir, &mutex, Duration::from_secs(60))?;
        let has_log = file_kind(&dir, LOG)?;
        let has_config = file_kind(&dir, CONFIG)?;
        let exists = || {
            Error::new(ErrorKind::AlreadyExists {
                dir: dir.path().into(),
            })
        };
        match (has_log, has_config) {
            (false, false) => {
                let empty = log::encode(&BTreeMap::new()).map_err(too_many)?;
                dir.write(LOG, &empty, &Options::new())
                    .map_err(Error::store_file)?;
            }
            // A creation that died between the two writes: nothing can have been reserved
            // (no store opens without its config), so it is finished.
            (true, false) if header_only(&dir)? => {}
            _ => return Err(exists()),
        }
        let text = config::encode(&dir.join(CONFIG), &config)?;
        dir.write(CONFIG, &text, &Options::new())
            .map_err(Error::store_file)?;
        drop(guard);
        Store::open_in(dir)
    }

    /// Opens the store in `dir`. The last component of `dir` is never followed if it is a
    /// symbolic link; earlier components are the caller's choice.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoStore`] if neither `config.yaml` nor `counters.log` exists;
    /// [`ErrorKind::Corrupt`] if one is missing while the other exists, if either is not a
    /// regular file (a symlink, a FIFO, a directory), or if `config.yaml` is invalid. The log
    /// itself is read (and checked) by each operation, not here.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, Error> {
        let path = dir.as_ref();
        let dir = Dir::open(path).map_err(|e| open_error(path, e))?;
        Store::open_in(dir)
    }

    /// Opens the store in the directory `name` inside `parent`, through `parent`'s
    /// descriptor.
    pub fn open_at(parent: &Dir, name: &str) -> Result<Store, Error> {
        let dir = parent
            .open_dir(name)
            .map_err(Error::store_file)?
            .ok_or_else(|| {
                Error::new(ErrorKind::NoStore {
                    dir: parent.join(name),
                })
            })?;
        Store::open_in(dir)
    }

    fn open_in(dir: Dir) -> Result<Store, Error> {
        let has_log = file_kind(&dir, LOG)?;
        let has_config = file_kind(&dir, CONFIG)?;
        match (has_config, has_log) {
            (false, false) => {
                return Err(Error::new(ErrorKind::NoStore {
                    dir: dir.path().into(),
                }));
            }
            (true, false) => return Err(missing_log(&dir)),
            (false, true) => return Err(missing_config(&dir)),
            (true, true) => {}
        }
        let parsed = read_config(&dir)?;
        Ok(Store {
            mutex: FileMutex::new(dir.join(LOCK)),
            dir,
            config: parsed.config,
            legacy: parsed.legacy,
            lock_timeout: Duration::from_secs(60),
        })
    }

    /// How long a reservation waits for the store's lock before failing with a timeout that
    /// names the holder (default 60 s).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Store {
        self.lock_timeout = timeout;
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The store's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reserves `count` consecutive IDs for `prefix` under one lock acquisition. Returns only
    /// after the new counter is on disk (`fdatasync`), so no crash or power cut after it
    /// returns can hand these IDs out again.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::EmptyReservation`] or [`ErrorKind::CountTooLarge`] (more than
    /// [`MAX_COUNT`](crate::MAX_COUNT)) before anything is read or locked;
    /// [`ErrorKind::Overflow`] if the counter would pass `u64::MAX`; [`ErrorKind::Corrupt`]
    /// for a damaged store. If the record cannot be written, nothing was reserved; if it was
    /// written but its flush failed and could not be repaired, the error is returned and the
    /// IDs are never handed out (later reservations continue above them).
    pub fn reserve(&self, prefix: &str, count: u64) -> Result<Reservation, Error> {
        self.check_allowed(prefix)?;
        protocol::check_count(count)?;
        let mut log = self.locked_log()?;
        let first = protocol::reserve(&mut log, prefix, count)?;
        log.commit()?;
        Ok(Reservation {
            prefix: prefix.to_owned(),
            first,
            count,
            width: self.width(prefix),
        })
    }

    /// Raises `prefix`'s counter to at least `at_least` (it is never lowered): one durable
    /// record, or nothing at all when the counter is already there. For IDs known to be in
    /// use elsewhere (files merged from another branch, `gapreg doctor --repair`).
    pub fn raise(&self, prefix: &str, at_least: u64) -> Result<Raised, Error> {
        self.check_allowed(prefix)?;
        let mut log = self.locked_log()?;
        let before = protocol::raise(&mut log, prefix, at_least, false)?;
        log.commit()?;
        Ok(Raised {
            before,
            after: before.max(at_least),
        })
    }

    /// The next ID [`Store::reserve`] would hand out for `prefix`, reserving nothing and
    /// taking no lock (an interrupted write is ignored).
    pub fn peek(&self, prefix: &str) -> Result<Id, Error> {
        self.check_allowed(prefix)?;
        let counter = self.counters()?.get(prefix).copied().unwrap_or(0);
        let next = counter.checked_add(1).ok_or_else(|| {
            Error::new(ErrorKind::Overflow {
                prefix: prefix.to_owned(),
                counter,
                count: 1,
            })
        })?;
        Ok(self.make_id(prefix, next))
    }

    /// Every prefix's counter (the highest number reserved), read without a lock.
    pub fn counters(&self) -> Result<BTreeMap<String, u64>, Error> {
        Ok(self.read_log()?.counters)
    }

    /// Accepts `id` only if it was reserved (its number is at most its prefix's counter) and
    /// is written in the store's canonical form (zero-padded exactly when the config sets a
    /// width for its prefix; [`ErrorKind::NotCanonical`] names the form otherwise).
    pub fn validate(&self, id: &str) -> Result<Id, Error> {
        let parsed = Id::parse_lenient(id)?;
        self.check_allowed(parsed.prefix())?;
        let canonical = self.make_id(parsed.prefix(), parsed.number());
        canonical.check_canonical(id)?;
        let counter = self.counters()?.get(parsed.prefix()).copied().unwrap_or(0);
        if parsed.number() == 0 || parsed.number() > counter {
            return Err(Error::new(ErrorKind::NotReserved {
                id: canonical.to_string(),
                prefix: canonical.prefix().to_owned(),
                counter,
            }));
        }
        Ok(canonical)
    }

    /// Scans `paths` (files, and directories recursively, skipping `.git`, symbolic links,
    /// special and binary files: see [`Store::init_from_report`]) for IDs `PREFIX-NUMBER` and
    /// raises each prefix's counter to the highest number seen. Only prefixes in `only` count
    /// (else those in the allow-list, else every valid prefix seen — which may pick up words
    /// like `UTF-8`, so prefer naming them). A counter is never lowered unless `force`.
    /// Returns what was found per prefix.
    pub fn init_from(
        &self,
        paths: &[PathBuf],
        only: Option<&[String]>,
        force: bool,
    ) -> Result<BTreeMap<String, Found>, Error> {
        Ok(self.init_from_report(paths, only, force)?.found)
    }

    /// [`Store::init_from`], also returning what the scan skipped. A path given that is a
    /// symbolic link is refused ([`ErrorKind::InvalidPath`]): links are never followed, not
    /// even the ones named; name the target instead.
    pub fn init_from_report(
        &self,
        paths: &[PathBuf],
        only: Option<&[String]>,
        force: bool,
    ) -> Result<InitReport, Error> {
        let only = only.or(self.config.allow.as_deref());
        let mut highest: BTreeMap<String, (u64, PathBuf)> = BTreeMap::new();
        let skipped = crate::scan::scan_paths(paths, &mut |file, prefix, number| {
            if only.is_some_and(|only| !only.iter().any(|p| p == prefix)) {
                return;
            }
            let entry = highest.entry(prefix.to_owned()).or_insert((0, file.into()));
            if number > entry.0 {
                *entry = (number, file.into());
            }
        })?;
        for prefix in highest.keys() {
            self.check_allowed(prefix)?;
        }
        let mut log = self.locked_log()?;
        let mut found = BTreeMap::new();
        for (prefix, (number, file)) in highest {
            let old_counter = protocol::raise(&mut log, &prefix, number, force)?;
            let new_counter = if force {
                number
            } else {
                number.max(old_counter)
            };
            found.insert(
                prefix.clone(),
                Found {
                    highest: self.make_id(&prefix, number),
                    file,
                    old_counter,
                    new_counter,
                },
            );
        }
        log.commit()?;
        Ok(InitReport { found, skipped })
    }

    /// Checks every file of the store without changing anything: see [`crate::verify`].
    pub fn verify(&self) -> Result<crate::Verification, Error> {
        crate::verify::verify_dir(&self.dir)
    }

    /// Removes the temp files of writers that died while rewriting a file of the store
    /// (only those; a live writer's are left alone) and returns their paths.
    pub fn remove_temp_files(&self) -> Result<Vec<PathBuf>, Error> {
        Ok(self.dir.recover(true).map_err(Error::store_file)?.removed)
    }

    fn make_id(&self, prefix: &str, number: u64) -> Id {
        Id {
            prefix: prefix.to_owned(),
            number,
            width: self.width(prefix),
        }
    }

    fn width(&self, prefix: &str) -> usize {
        self.config.width.get(prefix).copied().unwrap_or(0)
    }

    fn check_allowed(&self, prefix: &str) -> Result<(), Error> {
        check_prefix(prefix)?;
        match &self.config.allow {
            Some(allowed) if !allowed.iter().any(|p| p == prefix) => {
                Err(Error::new(ErrorKind::UnknownPrefix {
                    prefix: prefix.to_owned(),
                    allowed: allowed.clone(),
                }))
            }
            _ => Ok(()),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG)
    }

    /// Reads the log without the lock. A damaged read is retried a few times: it may have
    /// raced with a writer's `pwrite` of one slot (a reader can see a slot half written).
    fn read_log(&self) -> Result<Scan, Error> {
        let mut attempt = 0;
        loop {
            let data = self
                .dir
                .read(LOG, log::MAX_LEN)
                .map_err(Error::store_file)?
                .ok_or_else(|| missing_log(&self.dir))?;
            match log::scan(&data, self.legacy) {
                Ok(scan) => return Ok(scan),
                Err(damage) if damage.in_next_slot && attempt + 1 < READ_ATTEMPTS => {
                    // 0.2, 1, 5 ms: a 64-byte write takes microseconds.
                    std::thread::sleep(Duration::from_micros(200 * 5u64.pow(attempt)));
                    attempt += 1;
                }
                Err(damage) => return Err(Error::corrupt(self.log_path(), damage.to_string())),
            }
        }
    }

    fn locked_log(&self) -> Result<FileLog<'_>, Error> {
        let guard = lock(&self.dir, &self.mutex, self.lock_timeout)?;
        FileLog::open(self, guard)
    }

    /// After a migrated log: adds `version: 2` to a first-release `config.yaml` (under the
    /// lock, after the log is in version 2, so a crash in between leaves a readable store).
    fn finish_migration(&self) -> Result<(), Error> {
        let path = self.dir.join(CONFIG);
        let old = self
            .dir
            .read(CONFIG, config::MAX_LEN)
            .map_err(Error::store_file)?
            .ok_or_else(|| missing_config(&self.dir))?;
        let parsed = config::parse(&path, &old)?;
        if parsed.legacy {
            let new = config::with_version(&path, &old, &parsed.config)?;
            self.dir
                .write(CONFIG, &new, &Options::new())
                .map_err(Error::store_file)?;
        }
        Ok(())
    }
}

fn check_new_config(config: &Config) -> Result<(), Error> {
    for prefix in config.allow.iter().flatten().chain(config.width.keys()) {
        check_prefix(prefix)?;
    }
    config::check(config).map_err(|reason| Error::new(ErrorKind::InvalidConfig { reason }))
}

fn too_many(e: log::EncodeError) -> Error {
    match e {
        log::EncodeError::TooManyPrefixes(count) => Error::new(ErrorKind::TooManyPrefixes {
            count,
            max: log::MAX_PREFIXES,
        }),
        // Every prefix of a store was checked before it was recorded.
        log::EncodeError::InvalidPrefix(prefix) => Error::new(ErrorKind::InvalidPrefix {
            prefix,
            reason: "it cannot be recorded",
        }),
    }
}

pub(crate) fn missing_log(dir: &Dir) -> Error {
    Error::corrupt(
        dir.join(LOG),
        "it is missing while the store's config.yaml exists (a store's log is written \
         before its config, so it was removed): the counters are lost and are never \
         restarted from zero, which would hand out every ID again",
    )
}

pub(crate) fn missing_config(dir: &Dir) -> Error {
    Error::corrupt(
        dir.join(CONFIG),
        "it is missing while the store's counters.log exists; write it again (`version: 2`, \
         and the store's `allow` and `width` if it had them): defaults are never assumed",
    )
}

pub(crate) fn read_config(dir: &Dir) -> Result<config::Parsed, Error> {
    let data = dir
        .read(CONFIG, config::MAX_LEN)
        .map_err(Error::store_file)?
        .ok_or_else(|| missing_config(dir))?;
    config::parse(&dir.join(CONFIG), &data)
}

/// Whether the log of `dir` is a valid version-2 log without a record.
fn header_only(dir: &Dir) -> Result<bool, Error> {
    let Some(data) = dir.read(LOG, log::MAX_LEN).map_err(Error::store_file)? else {
        return Ok(false);
    };
    Ok(log::scan(&data, false).is_ok_and(|s| s.records == 0 && !s.interrupted))
}

/// Checks the lock file and its queue directory (regular files and a directory, never
/// symlinks or FIFOs), creates the missing ones through `dir` (so they take the directory's
/// owner when root runs in someone else's store), then takes the lock.
///
/// The lock itself is [`FileMutex`], which opens these paths by name: the check closes the
/// planted-link holes of a cloned repository, but not a race against another local user
/// swapping entries while the lock is taken.
pub(crate) fn lock(dir: &Dir, mutex: &FileMutex, timeout: Duration) -> Result<MutexGuard, Error> {
    check_lock_files(dir, true)?;
    Ok(mutex.lock_for(timeout)?)
}

/// Checks the lock files (see [`lock`]); with `create`, creates the missing ones.
pub(crate) fn check_lock_files(dir: &Dir, create: bool) -> Result<(), Error> {
    if !file_kind(dir, LOCK)? && create {
        dir.open_lock(LOCK).map_err(Error::store_file)?;
    }
    let queue = match dir.kind(QUEUE).map_err(Error::store_file)? {
        None if !create => return Ok(()),
        None => dir.create_dir(QUEUE).map_err(Error::store_file)?,
        Some(FileKind::Dir) => dir
            .open_dir(QUEUE)
            .map_err(Error::store_file)?
            .ok_or_else(|| Error::corrupt(dir.join(QUEUE), "it vanished while opened"))?,
        Some(kind) => {
            return Err(Error::corrupt(
                dir.join(QUEUE),
                wrong_type(kind, FileKind::Dir),
            ));
        }
    };
    let mut present = [false; QUEUE_FILES.len()];
    for entry in queue.entries().map_err(Error::store_file)? {
        if entry.kind != FileKind::File {
            return Err(Error::corrupt(
                queue.join(&entry.name),
                wrong_type(entry.kind, FileKind::File),
            ));
        }
        if let Some(i) = QUEUE_FILES.iter().position(|&n| entry.name == n) {
            present[i] = true;
        }
    }
    if create {
        for (name, present) in QUEUE_FILES.iter().zip(present) {
            if !present {
                queue.open_lock(name).map_err(Error::store_file)?;
            }
        }
    }
    Ok(())
}

/// The counter log file, opened under the store's lock.
struct FileLog<'a> {
    store: &'a Store,
    path: PathBuf,
    file: File,
    /// The log as it is now, with this step's records.
    scan: Scan,
    /// Whether the log is rewritten at commit (no free slot left, or a legacy log).
    rewrite: bool,
    /// Records written into slots, not yet flushed.
    written: Vec<Record>,
    guard: MutexGuard,
}

impl<'a> FileLog<'a> {
    fn open(store: &'a Store, guard: MutexGuard) -> Result<FileLog<'a>, Error> {
        let dir = &store.dir;
        let path = store.log_path();
        // Opened without following anything; then again for writing (the directory API opens
        // read-write only with O_CREAT), checked to be the same file.
        let checked = dir
            .open_file(LOG)
            .map_err(Error::store_file)?
            .ok_or_else(|| missing_log(dir))?;
        let file = dir.open_lock(LOG).map_err(Error::store_file)?;
        let same = |a: &File, b: &File| -> std::io::Result<bool> {
            let (a, b) = (a.metadata()?, b.metadata()?);
            Ok(a.dev() == b.dev() && a.ino() == b.ino())
        };
        if !same(&checked, &file).map_err(|e| Error::io("inspect", &path, e))? {
            return Err(Error::io(
                "open",
                &path,
                std::io::Error::other("the file was replaced while it was opened; retry"),
            ));
        }
        drop(checked);
        let data = read_bounded(&file, &path)?;
        let scan = log::scan(&data, store.legacy)
            .map_err(|damage| Error::corrupt(&path, damage.to_string()))?;
        Ok(FileLog {
            store,
            path,
            file,
            rewrite: scan.format == Format::Legacy,
            scan,
            written: Vec::new(),
            guard,
        })
    }

    /// Ends the locked step and makes every record durable before the caller may hand out its
    /// IDs.
    ///
    /// - A log without a free slot (or in the first release's format) is rewritten whole,
    ///   atomically and durably, still under the lock.
    /// - Otherwise the lock is released first and the records are flushed (`fdatasync`)
    ///   after: the next reservation can write while this flush runs, and one flush covers
    ///   every earlier write to the file, so concurrent reservations share flushes. Nothing is
    ///   handed out before its own record is flushed: if the power fails first, the
    ///   reservation never returned. A later writer that read this record from the page cache
    ///   and wrote above it returns only after its own flush.
    /// - If the flush fails, the records stay (they are visible to every reader, and no later
    ///   reservation goes below them) and the log is rewritten under the lock into new blocks
    ///   with a full `fsync`; only if that fails too is the error returned.
    fn commit(self) -> Result<(), Error> {
        if self.rewrite {
            let bytes = log::encode(&self.scan.counters).map_err(too_many)?;
            self.store
                .dir
                .write(LOG, &bytes, &Options::new())
                .map_err(Error::store_file)?;
            if self.store.legacy {
                self.store.finish_migration()?;
            }
            return Ok(());
        }
        if self.store.legacy {
            // A log already in version 2 with a first-release config: a migration that died
            // between its two writes.
            self.store.finish_migration()?;
        }
        let FileLog {
            store,
            path,
            file,
            written,
            guard,
            ..
        } = self;
        drop(guard);
        if written.is_empty() {
            return Ok(());
        }
        let Err(flush) = file.sync_data() else {
            return Ok(());
        };
        drop(file);
        // The kernel may have dropped the pages it could not write: rewrite from what the log
        // holds now, with our records' values at least.
        let repaired = store.locked_log().and_then(|mut log| {
            for record in &written {
                let counter = log.scan.counters.entry(record.prefix.clone()).or_insert(0);
                *counter = (*counter).max(record.value);
            }
            log.rewrite = true;
            log.commit()
        });
        match repaired {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::io(
                "flush (fdatasync) the record written to",
                path,
                flush,
            )),
        }
    }
}

impl CounterLog for FileLog<'_> {
    fn counter(&mut self, prefix: &str) -> Result<u64, Error> {
        Ok(self.scan.counters.get(prefix).copied().unwrap_or(0))
    }

    fn append(&mut self, record: &Record) -> Result<(), Error> {
        let slot = if self.rewrite {
            None
        } else {
            self.scan.write_next(record)
        };
        match slot {
            Some((offset, bytes)) => {
                // One 64-byte write into blocks that exist: the file's length never changes.
                // (A log this fills up is rewritten by the next writer.)
                self.file
                    .write_all_at(&bytes, offset)
                    .map_err(|e| Error::io("write a record to", &self.path, e))?;
                self.written.push(record.clone());
            }
            None => {
                self.scan
                    .counters
                    .insert(record.prefix.clone(), record.value);
                self.rewrite = true;
            }
        }
        Ok(())
    }
}

/// Reads an open log whole, refusing one longer than any valid log before allocating.
fn read_bounded(file: &File, path: &Path) -> Result<Vec<u8>, Error> {
    let len = file
        .metadata()
        .map_err(|e| Error::io("inspect", path, e))?
        .len();
    let too_large = |len: u64| {
        Error::corrupt(
            path,
            format!(
                "it is {len} bytes, more than the {} bytes of the largest valid log; it was \
                 not read",
                log::MAX_LEN
            ),
        )
    };
    if len > log::MAX_LEN {
        return Err(too_large(len));
    }
    let mut data = Vec::with_capacity(len as usize);
    file.take(log::MAX_LEN + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::io("read", path, e))?;
    if data.len() as u64 > log::MAX_LEN {
        return Err(too_large(data.len() as u64));
    }
    Ok(data)
}
