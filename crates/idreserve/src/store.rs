//! The on-disk store: a directory with `config.yaml`, `counters.log` and `counters.lock`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use leaselock::mutex::{FileMutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::id::{Id, check_prefix};
use crate::log::{self, Record, Scan};
use crate::protocol::{self, CounterLog};

const CONFIG: &str = "config.yaml";
const LOG: &str = "counters.log";
const LOCK: &str = "counters.lock";
/// Records after which a writer compacts the log to one record per prefix. Every reservation
/// reads the whole log, so it is kept short; a compaction costs two flushes, once per 64
/// reservations.
const COMPACT_AFTER: usize = 64;

/// A store's settings, kept in `config.yaml` in the store's directory.
///
/// ```yaml
/// allow: [SEC, GAP-OP]   # optional: only these prefixes; without it, any valid prefix
/// width: {GAP-OP: 4}     # optional: zero-pad these prefixes' numbers to N digits
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// If set, the only prefixes that may be reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Zero padding per prefix (digits).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub width: BTreeMap<String, usize>,
}

/// A run of consecutive reserved IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    prefix: String,
    first: u64,
    count: u64,
    width: usize,
}

impl Reservation {
    /// The first reserved number.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// How many IDs were reserved.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Always false: a reservation holds at least one ID.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The reserved IDs, in order.
    pub fn ids(&self) -> impl Iterator<Item = Id> + '_ {
        // `first + count - 1` never overflows: the counter holds it.
        (self.first..=self.first + (self.count - 1)).map(|n| self.id(n))
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
    dir: PathBuf,
    config: Config,
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

impl Store {
    /// Creates a store in `dir` (creating the directory) with `config`.
    pub fn create(dir: impl AsRef<Path>, config: Config) -> Result<Store, Error> {
        let dir = dir.as_ref();
        if dir.join(LOG).exists() {
            return Err(Error::new(ErrorKind::AlreadyExists { dir: dir.into() }));
        }
        for prefix in config.allow.iter().flatten().chain(config.width.keys()) {
            check_prefix(prefix)?;
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        atomic_file::write_yaml(dir.join(CONFIG), &config)?;
        // Create the log only if no concurrent `create` did: never truncate a live log.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(LOG))
        {
            Ok(file) => file
                .sync_all()
                .map_err(|e| Error::io("sync", dir.join(LOG), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::new(ErrorKind::AlreadyExists { dir: dir.into() }));
            }
            Err(e) => return Err(Error::io("create", dir.join(LOG), e)),
        }
        Store::open(dir)
    }

    /// Opens the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, Error> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.join(LOG).is_file() {
            return Err(Error::new(ErrorKind::NoStore { dir }));
        }
        let config = match atomic_file::read_yaml::<Config>(dir.join(CONFIG)) {
            Ok(config) => config,
            Err(e) if e.is_not_found() => Config::default(),
            Err(e) => return Err(e.into()),
        };
        for prefix in config.allow.iter().flatten().chain(config.width.keys()) {
            check_prefix(prefix)?;
        }
        Ok(Store {
            mutex: FileMutex::new(dir.join(LOCK)),
            dir,
            config,
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
        &self.dir
    }

    /// The store's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reserves `count` consecutive IDs for `prefix` under one lock acquisition. Returns only
    /// after the new counter is on disk (`fdatasync`), so no crash or power cut after it
    /// returns can hand these IDs out again.
    pub fn reserve(&self, prefix: &str, count: u64) -> Result<Reservation, Error> {
        self.check_allowed(prefix)?;
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

    /// The next ID [`Store::reserve`] would hand out for `prefix`, reserving nothing and
    /// taking no lock (a half-written record is ignored).
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
        let path = self.dir.join(LOG);
        let data = std::fs::read(&path).map_err(|e| self.read_error(&path, e))?;
        Ok(self.scan(&path, &data)?.counters)
    }

    /// Accepts `id` only if it was reserved: its number is at most its prefix's counter.
    pub fn validate(&self, id: &str) -> Result<Id, Error> {
        let id: Id = id.parse()?;
        self.check_allowed(id.prefix())?;
        let counter = self.counters()?.get(id.prefix()).copied().unwrap_or(0);
        if id.number() == 0 || id.number() > counter {
            return Err(Error::new(ErrorKind::NotReserved {
                id: id.to_string(),
                prefix: id.prefix().to_owned(),
                counter,
            }));
        }
        Ok(id)
    }

    /// Scans `paths` (files, and directories recursively, skipping `.git` and binary files)
    /// for IDs `PREFIX-NUMBER` and raises each prefix's counter to the highest number seen.
    /// Only prefixes in `only` count (else those in the allow-list, else every valid prefix
    /// seen — which may pick up words like `UTF-8`, so prefer naming them). A counter is never
    /// lowered unless `force`. Returns what was found per prefix.
    pub fn init_from(
        &self,
        paths: &[PathBuf],
        only: Option<&[String]>,
        force: bool,
    ) -> Result<BTreeMap<String, Found>, Error> {
        let only = only.or(self.config.allow.as_deref());
        let mut highest: BTreeMap<String, (u64, PathBuf)> = BTreeMap::new();
        crate::scan::scan_paths(paths, &mut |file, prefix, number| {
            if only.is_some_and(|only| !only.iter().any(|p| p == prefix)) {
                return;
            }
            let entry = highest.entry(prefix.to_owned()).or_insert((0, file.into()));
            if number > entry.0 {
                *entry = (number, file.into());
            }
        })?;
        let mut log = self.locked_log()?;
        let mut report = BTreeMap::new();
        for (prefix, (number, file)) in highest {
            let old_counter = protocol::raise(&mut log, &prefix, number, force)?;
            let new_counter = if force {
                number
            } else {
                number.max(old_counter)
            };
            report.insert(
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
        Ok(report)
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

    fn read_error(&self, path: &Path, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::new(ErrorKind::NoStore {
                dir: self.dir.clone(),
            })
        } else {
            Error::io("read", path, e)
        }
    }

    fn scan(&self, path: &Path, data: &[u8]) -> Result<Scan, Error> {
        log::scan(data).map_err(|damage| {
            Error::new(ErrorKind::Corrupt {
                path: path.into(),
                reason: damage.to_string(),
            })
        })
    }

    fn locked_log(&self) -> Result<FileLog<'_>, Error> {
        let guard = self.mutex.lock_for(self.lock_timeout)?;
        let path = self.dir.join(LOG);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| self.read_error(&path, e))?;
        Ok(FileLog {
            store: self,
            path,
            file,
            records: 0,
            counters: BTreeMap::new(),
            unsynced: false,
            missing_newline: false,
            guard,
        })
    }
}

/// The counter log file, opened under the store's lock.
struct FileLog<'a> {
    store: &'a Store,
    path: PathBuf,
    file: File,
    records: usize,
    counters: BTreeMap<String, u64>,
    /// Whether records were appended that are not yet flushed.
    unsynced: bool,
    /// Whether the log's last record lacks its newline.
    missing_newline: bool,
    guard: MutexGuard,
}

impl CounterLog for FileLog<'_> {
    fn load(&mut self) -> Result<Scan, Error> {
        let mut data = Vec::new();
        // From the start every time: appends leave the offset at the end.
        (&self.file)
            .rewind()
            .and_then(|()| (&self.file).read_to_end(&mut data))
            .map_err(|e| Error::io("read", &self.path, e))?;
        let scan = self.store.scan(&self.path, &data)?;
        if scan.torn_tail {
            // Left by a writer that died mid-append, before its reservation returned: cut it
            // off so the next record starts on a line of its own.
            self.file
                .set_len(scan.valid_len as u64)
                .map_err(|e| Error::io("cut the torn tail of", &self.path, e))?;
        }
        self.missing_newline = scan.missing_newline;
        self.records = scan.records;
        self.counters = scan.counters.clone();
        Ok(scan)
    }

    fn append(&mut self, record: &Record) -> Result<(), Error> {
        let mut line = record.encode();
        if std::mem::take(&mut self.missing_newline) {
            line.insert(0, '\n');
        }
        // One write of a whole record (O_APPEND); `commit` flushes it.
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io("append to", &self.path, e))?;
        self.unsynced = true;
        self.records += 1;
        self.counters.insert(record.prefix.clone(), record.value);
        Ok(())
    }
}

impl FileLog<'_> {
    /// Ends the locked step: compacts a long log, releases the lock, then makes the appended
    /// records durable (`fdatasync`) before the caller may hand out its IDs.
    ///
    /// Flushing after the unlock lets the next reservation append while this one's flush runs,
    /// and one flush covers every earlier write to the file, so concurrent reservations share
    /// flushes. It is safe because nothing is handed out before its own record is flushed: if
    /// the power fails first, the reservation never returned. A later writer that read this
    /// record from the page cache and appended above it returns only after its own flush,
    /// which covers this record too.
    fn commit(mut self) -> Result<(), Error> {
        if self.records > COMPACT_AFTER {
            // Atomic and durable (still under the lock): readers without the lock see the old
            // or the new file, both complete; the new one already holds every counter.
            atomic_file::write(&self.path, log::compacted(&self.counters).as_bytes())?;
            self.unsynced = false;
        }
        let FileLog {
            file,
            path,
            unsynced,
            guard,
            ..
        } = self;
        drop(guard);
        if unsynced {
            file.sync_data().map_err(|e| Error::io("flush", &path, e))?;
        }
        Ok(())
    }
}
