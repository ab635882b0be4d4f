//! The production [`LeaseStore`]: one JSON file per lease in the leases directory.
//!
//! Layout of the leases directory (default `<root>/.gapreg/leases/`):
//!
//! | file                | what                                                         |
//! |---------------------|--------------------------------------------------------------|
//! | `<id>.lease.json`   | one lease, written through `atomic-file` (the truth)          |
//! | `token.json`        | `{"last": N}`: the last fencing token (durable)              |
//! | `generation`        | a random number replaced by every change made through this   |
//! |                     | library (not synced: after a crash every process starts cold) |
//! | `index.json`        | a cache of parsed leases for new processes (see below)       |
//! | `lock` (+ siblings) | the root's `FileMutex`                                       |
//!
//! **Why a cache, and why it cannot lie.** Reading and parsing every lease file on every
//! acquire costs ~20 µs per file, 20 ms at 1,000 leases. So the store keeps the parsed leases
//! in memory, keyed by each file's identity (inode, size, mtime and ctime in nanoseconds):
//!
//! 1. *Fast path.* Every step that changes entries replaces `generation` with a fresh random
//!    number before it releases the root's mutex (a grant does it before writing its lease,
//!    and fails if it cannot). If the
//!    generation is the one the cache was built at, nothing changed through this library and
//!    the acquire reads just that small file.
//! 2. *Scan.* Otherwise — another handle or process changed something, or this handle is new,
//!    or the operation is [`list`](super::Leases::list) or [`sweep`](super::Leases::sweep),
//!    which always scan — the store lists the directory, `stat`s each lease file and re-parses
//!    only the files whose identity changed. Every write goes through `atomic-file` (a fresh
//!    inode renamed into place), so a changed file shows a changed identity. A new handle starts
//!    from `index.json`, the same cache on disk, rewritten (without fsync: it is only a cache)
//!    when a scan had to re-parse many files; a missing or damaged index only costs time.
//!
//! What the cache can get wrong, and why that is safe: an edit made *outside* this library
//! (a hand-damaged file) is not seen by a warm handle's acquire until the next scan (the next
//! change made through the library by anyone, a `list`, a `sweep`, or any new process); an
//! identity collision (inode reuse within one coarse timestamp tick, same size) or a lost
//! generation bump after a renewal can only make a lease look *older* than it is, because
//! only renewals rewrite a lease file — and the protocol re-reads every lease afresh before
//! it treats it as expired. A lost bump after a release or sweep leaves a removed lease in
//! other caches, which only blocks. So the cache can delay a grant, never break a lease.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use atomic_file::{Durability, Format, Options};
use serde::{Deserialize, Serialize};

use super::error::{LeaseError, LeaseErrorKind};
use super::path::normalize_path;
use super::record::Lease;
use super::store::{CorruptEntry, Entry, LeaseStore};

const SUFFIX: &str = ".lease.json";
const TOKEN_FILE: &str = "token.json";
const INDEX_FILE: &str = "index.json";
/// Rewrite the on-disk index when a refresh re-parsed more files than this.
const INDEX_REWRITE_THRESHOLD: usize = 16;

/// A file's identity: changes whenever `atomic-file` replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    #[cfg(unix)]
    fn of(meta: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            ino: meta.ino(),
            len: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    fn of(meta: &fs::Metadata) -> Stamp {
        let nanos = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| (d.as_secs() as i64, i64::from(d.subsec_nanos())))
            .unwrap_or((0, 0));
        Stamp {
            ino: 0,
            len: meta.len(),
            mtime: nanos,
            ctime: nanos,
        }
    }
}

/// `token.json`: the fencing-token counter.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct TokenFile {
    last: u64,
}

const GENERATION_FILE: &str = "generation";

#[derive(Serialize, Deserialize)]
struct IndexItem {
    stamp: Stamp,
    lease: Lease,
}

/// One lease file per lease, with a validated in-memory cache.
#[derive(Debug)]
pub(crate) struct FileStore {
    dir: PathBuf,
    opts: Options,
    durability: Durability,
    cache: BTreeMap<String, (Stamp, Entry)>,
    index_loaded: bool,
    /// The generation the cache reflects; `None` until a full scan.
    generation: Option<u64>,
    /// Entries were written or removed in this step.
    dirty: bool,
    /// The generation was bumped in this step.
    bumped: bool,
}

fn io_err(path: &Path, step: &'static str, e: io::Error) -> LeaseError {
    LeaseError::io(path, step, e)
}

/// Validates a lease id given by a caller before it becomes a file name.
pub(crate) fn check_id(id: &str) -> Result<(), LeaseError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && !id.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: format!("{id:?} is not a lease id"),
        }))
    }
}

impl FileStore {
    pub(crate) fn new(dir: PathBuf, durability: Durability) -> FileStore {
        FileStore {
            dir,
            opts: Options::new().durability(durability),
            durability,
            cache: BTreeMap::new(),
            index_loaded: false,
            generation: None,
            dirty: false,
            bumped: false,
        }
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    /// Reads and validates one lease file; `None` if it does not exist.
    fn load(&self, id: &str) -> Result<Option<(Stamp, Entry)>, LeaseError> {
        let path = self.path_of(id);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, "inspect the lease file", e)),
        };
        let stamp = Stamp::of(&meta);
        let corrupt = |reason: String| {
            Ok(Some((
                stamp,
                Entry::Corrupt(CorruptEntry {
                    id: id.to_owned(),
                    path: path.clone(),
                    reason,
                }),
            )))
        };
        let lease: Lease = match self.opts.read_value(&path, Format::Json) {
            Ok(lease) => lease,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => match e.kind() {
                atomic_file::ErrorKind::Io { .. } => {
                    return Err(io_err(&path, "read the lease file", io::Error::from(e)));
                }
                atomic_file::ErrorKind::Decode { message, .. } => {
                    return corrupt(format!("not a valid lease record: {message}"));
                }
                _ => return corrupt(e.to_string()),
            },
        };
        if let Err(reason) = validate(&lease, id) {
            return corrupt(reason);
        }
        Ok(Some((stamp, Entry::Lease(lease))))
    }

    /// Reads `token.json`; `Ok(None)` if it does not exist, `Err` (`Corrupt` or `Io`) otherwise.
    fn read_state(&self) -> Result<Option<TokenFile>, LeaseError> {
        let path = self.dir.join(TOKEN_FILE);
        match self.opts.read_value::<TokenFile>(&path, Format::Json) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => match e.kind() {
                atomic_file::ErrorKind::Io { .. } => {
                    Err(io_err(&path, "read the token file", io::Error::from(e)))
                }
                _ => Err(LeaseError::new(LeaseErrorKind::Corrupt {
                    reason: format!(
                        "{e}; fencing tokens must never go back, so no lease is granted \
                         until it is repaired (write {{\"last\": N}} with N at least the \
                         highest token ever granted)"
                    ),
                    path,
                })),
            },
        }
    }

    /// The current generation, or `None` if there is none or it cannot be read. A missing
    /// file is not "generation 0": were it deleted by hand, a cache built before it existed
    /// must not look current. `None` always means a full scan.
    fn read_generation(&self) -> Option<u64> {
        let text = fs::read_to_string(self.dir.join(GENERATION_FILE)).ok()?;
        text.trim().parse().ok()
    }

    /// Brings the cache up to date. Fast path (`full == false`): if the generation is the one
    /// the cache reflects, nothing changed through this library since, and the directory is
    /// not listed. Otherwise (or with `full`) list and `stat` every lease file and re-parse the
    /// changed ones.
    fn refresh(&mut self, full: bool) -> Result<(), LeaseError> {
        let generation = self.read_generation();
        if !full && generation.is_some() && generation == self.generation {
            return Ok(());
        }
        self.generation = None;
        self.scan()?;
        self.generation = generation;
        Ok(())
    }

    fn scan(&mut self) -> Result<(), LeaseError> {
        if !self.index_loaded {
            self.index_loaded = true;
            self.load_index();
        }
        let listing = match fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.cache.clear();
                return Ok(());
            }
            Err(e) => return Err(io_err(&self.dir, "list the leases directory", e)),
        };
        let mut seen = BTreeSet::new();
        let mut reparsed = 0;
        for item in listing {
            let item = item.map_err(|e| io_err(&self.dir, "list the leases directory", e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let Some(id) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            let meta = match item.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&item.path(), "inspect the lease file", e)),
            };
            seen.insert(id.to_owned());
            if self
                .cache
                .get(id)
                .is_some_and(|(stamp, _)| *stamp == Stamp::of(&meta))
            {
                continue;
            }
            reparsed += 1;
            match self.load(id)? {
                Some(loaded) => {
                    self.cache.insert(id.to_owned(), loaded);
                }
                None => {
                    seen.remove(id);
                }
            }
        }
        let before = self.cache.len();
        self.cache.retain(|id, _| seen.contains(id));
        reparsed += before - self.cache.len();
        if reparsed > INDEX_REWRITE_THRESHOLD {
            self.write_index();
        }
        Ok(())
    }

    /// Seeds the cache from `index.json`; any problem just means starting cold.
    fn load_index(&mut self) {
        let path = self.dir.join(INDEX_FILE);
        let Ok(bytes) = fs::read(&path) else { return };
        let Ok(items) = serde_json::from_slice::<Vec<IndexItem>>(&bytes) else {
            return;
        };
        for item in items {
            if validate(&item.lease, &item.lease.id).is_ok() {
                self.cache.insert(
                    item.lease.id.clone(),
                    (item.stamp, Entry::Lease(item.lease)),
                );
            }
        }
    }

    /// Writes the cache to `index.json` without fsync. Failure is harmless (the index is only
    /// a cache, validated entry by entry on use), so it is not reported.
    fn write_index(&self) {
        let items: Vec<IndexItem> = self
            .cache
            .values()
            .filter_map(|(stamp, entry)| match entry {
                Entry::Lease(lease) => Some(IndexItem {
                    stamp: *stamp,
                    lease: lease.clone(),
                }),
                Entry::Corrupt(_) => None,
            })
            .collect();
        if let Ok(bytes) = serde_json::to_vec(&items) {
            let _ = Options::new()
                .durability(Durability::NoSync)
                .write(self.dir.join(INDEX_FILE), &bytes);
        }
    }

    /// Replaces the generation with a fresh random number, so that every other handle
    /// rescans before its next decision; keeps this handle's cache current if it was.
    fn bump(&mut self) -> Result<(), LeaseError> {
        let fresh = self.generation.is_some() && self.read_generation() == self.generation;
        self.generation = None;
        let next = fastrand::u64(1..);
        let path = self.dir.join(GENERATION_FILE);
        Options::new()
            .durability(Durability::NoSync)
            .write(&path, format!("{next}\n").as_bytes())
            .map_err(|e| io_err(&path, "write the generation file", io::Error::from(e)))?;
        self.bumped = true;
        if fresh {
            self.generation = Some(next);
        }
        Ok(())
    }

    /// Ends a protocol step, before the root's mutex is released: if entries changed and the
    /// generation was not bumped yet, bumps it.
    ///
    /// Only a grant *must* bump, and it does so in [`LeaseStore::next_token`], before its lease
    /// is written, failing the grant if it cannot. After a renewal, release or sweep a missed
    /// bump is safe: other caches then still show a removed lease (which only blocks) or an
    /// older `expires_at` (re-read before it is trusted). So a failure here is not reported;
    /// this handle just rescans next time.
    pub(crate) fn finish(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        if dirty && !self.bumped && self.bump().is_err() {
            self.generation = None;
        }
        self.bumped = false;
    }

    fn sync_dir(&self) -> Result<(), LeaseError> {
        if self.durability == Durability::Full {
            #[cfg(unix)]
            fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err(&self.dir, "fsync the leases directory", e))?;
        }
        Ok(())
    }
}

/// Checks a decoded lease for internal consistency; `Err(reason)` makes it a corrupt entry.
fn validate(lease: &Lease, id: &str) -> Result<(), String> {
    if lease.id != id {
        return Err(format!(
            "its id {:?} does not match its file name",
            lease.id
        ));
    }
    if lease.files.is_empty() && lease.dirs.is_empty() {
        return Err("it claims no paths".to_owned());
    }
    for p in lease.files.iter().chain(&lease.dirs) {
        match normalize_path(Path::new("/"), p) {
            Ok(n) if n == *p && !Path::new(p).is_absolute() => {}
            _ => return Err(format!("it claims a path that is not normalized: {p:?}")),
        }
    }
    if lease.holder.is_empty() {
        return Err("it has no holder".to_owned());
    }
    Ok(())
}

impl LeaseStore for FileStore {
    fn entries(&mut self) -> Result<Vec<&Entry>, LeaseError> {
        self.refresh(false)?;
        Ok(self.cache.values().map(|(_, e)| e).collect())
    }

    fn scan_entries(&mut self) -> Result<Vec<&Entry>, LeaseError> {
        self.refresh(true)?;
        Ok(self.cache.values().map(|(_, e)| e).collect())
    }

    fn get(&mut self, id: &str) -> Result<Option<Entry>, LeaseError> {
        check_id(id)?;
        match self.load(id)? {
            Some((stamp, entry)) => {
                self.cache.insert(id.to_owned(), (stamp, entry.clone()));
                Ok(Some(entry))
            }
            None => {
                self.cache.remove(id);
                Ok(None)
            }
        }
    }

    fn put(&mut self, lease: &Lease) -> Result<(), LeaseError> {
        check_id(&lease.id)?;
        let path = self.path_of(&lease.id);
        self.dirty = true;
        self.opts
            .write_value(&path, Format::Json, lease)
            .map_err(|e| io_err(&path, "write the lease file", io::Error::from(e)))?;
        match fs::symlink_metadata(&path) {
            Ok(meta) => {
                self.cache.insert(
                    lease.id.clone(),
                    (Stamp::of(&meta), Entry::Lease(lease.clone())),
                );
            }
            Err(_) => {
                self.cache.remove(&lease.id);
            }
        }
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<bool, LeaseError> {
        check_id(id)?;
        let path = self.path_of(id);
        self.cache.remove(id);
        self.dirty = true;
        match fs::remove_file(&path) {
            Ok(()) => {
                self.sync_dir()?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path, "remove the lease file", e)),
        }
    }

    fn next_token(&mut self) -> Result<u64, LeaseError> {
        let state = self.read_state()?.unwrap_or_default();
        // The protocol listed the entries just before, under the same mutex: the cache is fresh.
        let highest = self
            .cache
            .values()
            .filter_map(|(_, e)| match e {
                Entry::Lease(l) => Some(l.token),
                Entry::Corrupt(_) => None,
            })
            .max()
            .unwrap_or(0);
        let next = state.last.max(highest) + 1;
        // A grant follows: make every other handle rescan before it could miss the new lease.
        self.bump()?;
        let path = self.dir.join(TOKEN_FILE);
        self.opts
            .write_value(&path, Format::Json, &TokenFile { last: next })
            .map_err(|e| io_err(&path, "write the token file", io::Error::from(e)))?;
        Ok(next)
    }

    fn location(&self, id: &str) -> PathBuf {
        self.path_of(id)
    }
}
