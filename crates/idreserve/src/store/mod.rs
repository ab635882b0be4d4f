//! The on-disk store: a directory with `config.yaml`, `counters.log` and the lock file
//! `counters.lock` (with its queue directory `counters.lock.queue/`; names in
//! [`crate::FILES`]), reached only through an open directory descriptor ([`Dir`]).
//!
//! [`Store`] is the handle and its operations; the rest is split by concern:
//!
//! - `outcome`: the values operations return ([`Reservation`], [`Raised`], [`Found`],
//!   [`InitReport`]).
//! - `files`: the two files as directory entries (wrong types, a missing half), the config
//!   read, the unlocked log read and the migration of a first-release config.
//! - `lock`: the lock file and its queue, checked before the mutex opens them; the lock order.
//! - `file_log`: the log opened for writing under the lock, the [`CounterLog`] the
//!   [`protocol`] runs over, and what makes a record durable.
//!
//! # Invariants
//!
//! - **The log is written before the config**, both atomically and durably, under the lock:
//!   a store that opens (both files present) always has a log with its header, and a config
//!   without a log is damage, never "no counters yet".
//! - **Every change is made under the lock, by the protocol**: a counter only moves up
//!   (`raise` never lowers it, `reserve` adds to it; only `init_from` with `force` may set it
//!   lower, on the caller's word), and each change is one record of the log.
//! - **Acknowledged means durable**: an operation returns `Ok` only after every record it
//!   wrote was flushed, or the log was rewritten with `fsync`s (see `file_log`).
//! - **Reads take no lock** and retry a read that may have raced with a writer's `pwrite`
//!   before calling it damage; a reader never writes.
//!
//! [`CounterLog`]: crate::protocol::CounterLog
//! [`protocol`]: crate::protocol

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atomic_file::Options;
use atomic_file::dir::Dir;
use leaselock::mutex::FileMutex;

use crate::config::{self, Config};
use crate::error::{Error, ErrorKind};
use crate::files::{CONFIG_FILE, LOCK_FILE, LOG_FILE};
use crate::id::{Id, check_prefix};
use crate::log;
use crate::protocol;

mod file_log;
mod files;
mod lock;
mod outcome;

pub(crate) use files::{missing_config, missing_log, read_config};
pub(crate) use lock::check_lock_files;
pub use outcome::{Found, InitReport, Raised, Reservation};

use files::{file_kind, header_only, open_error, too_many};
use lock::lock;

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
        config::check_new(&config)?;
        let dir = Dir::create(path).map_err(|e| open_error(path, e))?;
        Store::create_in(dir, config)
    }

    /// Creates a store in the directory `name` inside `parent` (created if missing), reached
    /// through `parent`'s descriptor: nothing on the way is followed.
    pub fn create_at(parent: &Dir, name: &str, config: Config) -> Result<Store, Error> {
        config::check_new(&config)?;
        let dir = parent.create_dir(name).map_err(Error::store_file)?;
        Store::create_in(dir, config)
    }

    fn create_in(dir: Dir, config: Config) -> Result<Store, Error> {
        let mutex = FileMutex::new(dir.join(LOCK_FILE));
        let guard = lock(&dir, &mutex, Duration::from_secs(60))?;
        let has_log = file_kind(&dir, LOG_FILE)?;
        let has_config = file_kind(&dir, CONFIG_FILE)?;
        let exists = || {
            Error::new(ErrorKind::AlreadyExists {
                dir: dir.path().into(),
            })
        };
        match (has_log, has_config) {
            (false, false) => {
                let empty = log::encode(&BTreeMap::new()).map_err(too_many)?;
                dir.write(LOG_FILE, &empty, &Options::new())
                    .map_err(Error::store_file)?;
            }
            // A creation that died between the two writes: nothing can have been reserved
            // (no store opens without its config), so it is finished.
            (true, false) if header_only(&dir)? => {}
            _ => return Err(exists()),
        }
        let text = config::encode(&dir.join(CONFIG_FILE), &config)?;
        dir.write(CONFIG_FILE, &text, &Options::new())
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
        let has_log = file_kind(&dir, LOG_FILE)?;
        let has_config = file_kind(&dir, CONFIG_FILE)?;
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
            mutex: FileMutex::new(dir.join(LOCK_FILE)),
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
    /// use elsewhere (files merged from another branch, `gapreg doctor --repair`): after it
    /// returns, [`Store::reserve`] hands out only numbers above `at_least`, and every ID up to
    /// it passes [`Store::validate`].
    ///
    /// Takes the store's lock and, like a reservation, returns only after the record is on
    /// disk; [`Raised::changed`] tells whether one was written.
    ///
    /// ```
    /// use idreserve::{Config, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create(dir.path().join("ids"), Config::default())?;
    /// store.reserve("GAP-OP", 3)?;
    /// // GAP-OP-1091 was found in a file merged from another branch.
    /// let raised = store.raise("GAP-OP", 1091)?;
    /// assert_eq!((raised.before, raised.after, raised.changed()), (3, 1091, true));
    /// assert_eq!(store.reserve("GAP-OP", 1)?.first(), 1092);
    /// // Never lowered: asking for less changes nothing.
    /// let again = store.raise("GAP-OP", 10)?;
    /// assert_eq!((again.before, again.after, again.changed()), (1092, 1092, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidPrefix`] or [`ErrorKind::UnknownPrefix`] before the lock is
    /// taken; a lock timeout ([`ErrorKind::Lock`], naming the holder); [`ErrorKind::Corrupt`]
    /// for a damaged store (nothing is written then); [`ErrorKind::TooManyPrefixes`] if the
    /// log cannot hold one more prefix. A failed flush is handled as for
    /// [`Store::reserve`].
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

    /// Checks every file of the store without changing, creating or locking anything (a dry
    /// run of what the next writer would find): see [`crate::verify`]. Damage is reported as
    /// [`Finding`](crate::Finding)s, not as an error, so a doctor lists every problem at once.
    ///
    /// ```
    /// use idreserve::{Config, FindingKind, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create(dir.path().join("ids"), Config::default())?;
    /// store.reserve("SEC", 2)?;
    /// let report = store.verify()?;
    /// assert!(report.is_healthy() && report.findings.is_empty());
    /// assert_eq!(report.counters.as_ref().map(|c| c["SEC"]), Some(2));
    ///
    /// // One flipped byte in the log: reported, and nothing is changed or reset.
    /// let log = store.dir().join(idreserve::LOG_FILE);
    /// let mut bytes = std::fs::read(&log)?;
    /// bytes[64] ^= 1;
    /// std::fs::write(&log, &bytes)?;
    /// let report = store.verify()?;
    /// assert!(!report.is_healthy());
    /// assert_eq!(report.findings[0].kind, FindingKind::Corrupt);
    /// assert_eq!(std::fs::read(&log)?, bytes);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// An I/O error if a check could not be made (permission denied, say); damage is never
    /// an error here.
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
}
