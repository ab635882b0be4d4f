//! The production [`LeaseStore`]: one checksummed JSON file per lease in the leases directory,
//! reached only through an [`atomic_file::dir::Dir`].
//!
//! # Layout
//!
//! | entry               | what                                                               |
//! |---------------------|--------------------------------------------------------------------|
//! | `<id>.lease.json`   | one lease (the truth), checksummed JSON, atomic + durable          |
//! | `token.json`        | `{"last": N}`, the last fencing token, checksummed, atomic + durable |
//! | `generation`        | `{"marker": R, "last": N}`: a random number replaced by every change, and the last token again; checksummed, atomic, not synced |
//! | `index.json`        | a cache of parsed leases for new processes, checksummed, not synced |
//! | `lock`, `lock.queue/` | the root's `FileMutex`                                           |
//!
//! "Checksummed" is [`atomic_file::checksum`]'s format: a header line
//! `# atomic-file v1 len=<n> crc32=<hex>` before the JSON, so truncation, zero-fill, a flipped
//! bit or a hand edit is detected (`tail -n +2 FILE` shows the JSON). The leases directory is
//! created atomically *with* `token.json` in it (a staging directory renamed into place), so a
//! leases directory without `token.json` has lost it: that is corrupt, never "start at 1".
//!
//! # Nothing is followed, nothing damaged is trusted
//!
//! Every entry is opened relative to the leases directory's descriptor with `O_NOFOLLOW |
//! O_NONBLOCK` and `fstat`-checked; a symlink, FIFO, device or directory where a file belongs is
//! refused ([`LeaseErrorKind::Corrupt`] naming it), never followed, written through or removed.
//! Reads are bounded (4 MiB per lease file, 4 KiB for the counter, 256 MiB for the index).
//!
//! - A lease file that fails its checksum, does not decode, is inconsistent (see
//!   [`Lease::from_file_bytes`]) or is not a regular file is a *corrupt entry*: it blocks every
//!   grant (fail closed) and is reported by `list`, `sweep` and `check`.
//! - The next fencing token is `token.json`'s `last + 1`; a missing or damaged `token.json`, or
//!   one below a token recorded in a lease file or in `generation` (the counter went back), is
//!   corrupt and stops grants until [`Leases::repair`](super::Leases::repair) rebuilds it from
//!   the highest token recorded anywhere plus [`REPAIR_MARGIN`].
//! - `index.json` and `generation` are caches: damage only costs a rescan, and a damaged index
//!   is rewritten. A cached lease is only used while its file's identity is unchanged, and a
//!   lease loaded from `index.json` only after the file's own checksum header matches the
//!   header of the cached record re-encoded: an index whose entry was edited (a path changed,
//!   `exclusive` made `shared`), even with a recomputed checksum, is not believed.
//!
//! # Why a cache, and why it cannot lie
//!
//! Reading and parsing every lease file on every acquire costs ~20 µs per file, 20 ms at 1,000
//! leases. So the store keeps the parsed leases in memory, keyed by each file's identity
//! (inode, size, mtime and ctime in nanoseconds, from `fstat` of the descriptor the content is
//! read from):
//!
//! 1. *Fast path.* Every step that changes entries replaces `generation` with a fresh random
//!    number before it releases the root's mutex (a grant does it before writing its lease,
//!    and fails if it cannot). If the generation is the one the cache was built at, nothing
//!    changed through this library and the acquire reads just that small file.
//! 2. *Scan.* Otherwise — another handle or process changed something, or this handle is new,
//!    or the operation is [`list`](super::Leases::list) or [`sweep`](super::Leases::sweep),
//!    which always scan — the store lists the directory, opens and `fstat`s each lease file
//!    and re-reads only the files whose identity changed. Every write replaces the file with a
//!    fresh inode (rename), and any in-place edit changes its ctime, so a changed file shows.
//!    A new handle starts from `index.json`, the same cache on disk, rewritten (without fsync)
//!    when a scan re-read many files or found the index damaged.
//!
//! What the cache can get wrong, and why that is safe: an edit made *outside* this library (a
//! hand-damaged file) is not seen by a warm handle's acquire until the next scan (the next
//! change made through the library by anyone, a `list`, a `sweep`, or any new process); until
//! then that handle judges by the lease as it was. An identity collision or a lost generation
//! bump after a renewal can only make a lease look *older* than it is, because only renewals
//! rewrite a lease file, and the protocol re-reads every lease afresh before it treats it as
//! expired. A lost bump after a release or sweep leaves a removed lease in other caches, which
//! only blocks. So the cache can delay a grant, never break a lease.
//!
//! # Durability: which sync makes what durable
//!
//! With [`Durability::Full`] every write is `atomic_file`'s protocol on the directory
//! descriptor: a unique `O_EXCL` temp file, `write`, `fsync(temp)`, `renameat` over the name,
//! `fsync(directory)`. For an acquire, in this order (`strace -f -e
//! trace=openat,write,pwrite64,fsync,fdatasync,rename,renameat2`):
//!
//! 1. `token.json`: temp, `fsync`, `renameat`, `fsync(dir)` — the token is durable before any
//!    lease can carry it;
//! 2. `generation`: temp, `renameat` (no sync: a lost bump only costs a rescan);
//! 3. the lease file: temp, `fsync`, `renameat`, `fsync(dir)` — **this directory `fsync` is the
//!    acknowledgement point**: before it returns nothing is acknowledged, and if it fails the
//!    new file is unlinked again (no half-granted lease; the burnt token is harmless);
//! 4. best effort, never turning the answer into an error: `unlinkat` of taken-over dead
//!    leases and one `fsync(dir)`; `index.json` (temp, `renameat`, no sync) if a scan asked for
//!    it.
//!
//! A renewal's acknowledgement point is the same directory `fsync` after its lease file's
//! `renameat` (on failure the previous record is written back); a release's is the
//! `fsync(dir)` after `unlinkat` (on failure the lease file is written back). The generation
//! bump after a renewal or release is best effort.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use atomic_file::dir::{Dir, FileKind};
use atomic_file::{Durability, Options, Step, checksum};
use serde::{Deserialize, Serialize};

use super::error::{LeaseError, LeaseErrorKind, describe};
use super::record::{LEASE_FILE_LIMIT, LEASE_SUFFIX, Lease, decode_file, validate};
use super::store::{CorruptEntry, Entry, LeaseStore, WriteFailed};

/// The fencing-token counter in the leases directory (checksummed JSON `{"last": N}`; the
/// truth, never to be deleted or tracked by a version control system).
pub const TOKEN_FILE: &str = "token.json";
/// The cache of parsed leases in the leases directory (checksummed, rebuilt when damaged).
pub const INDEX_FILE: &str = "index.json";
/// The change marker in the leases directory (checksummed, a cache).
pub const GENERATION_FILE: &str = "generation";
/// The root mutex's lock file in the leases directory (its queue is `lock.queue/`, see
/// [`crate::mutex::QUEUE_SUFFIX`]).
pub const LOCK_FILE: &str = "lock";
const TOKEN_LIMIT: u64 = 4 << 10;
const GENERATION_LIMIT: u64 = 4 << 10;
const INDEX_LIMIT: u64 = 256 << 20;
/// Rewrite the on-disk index when a refresh re-parsed more files than this.
const INDEX_REWRITE_THRESHOLD: usize = 16;
/// The longest checksum header line (`# atomic-file v1 len=<20 digits> crc32=<8>\n`).
const HEADER_MAX: usize = 64;

/// How far [`Leases::repair`](super::Leases::repair) moves the fencing-token counter past the
/// highest token it can still see. Tokens handed out after that one may have left no trace
/// (their leases were released, and the counter recording them was lost); no grant rate this
/// library can reach hands out a billion tokens between two looks at a registry, so the next
/// token after a repair is above every token ever granted.
pub const REPAIR_MARGIN: u64 = 1_000_000_000;

/// A file's identity: changes whenever the file is replaced or edited in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            len: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// For an entry that is not a regular file: never equal to a real file's stamp, so it is
    /// looked at again on every scan.
    const NONE: Stamp = Stamp {
        ino: 0,
        len: u64::MAX,
        mtime: (i64::MIN, -1),
        ctime: (i64::MIN, -1),
    };
}

/// `token.json`: the fencing-token counter.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    last: u64,
}

/// `generation`: the change marker, and a second record of the last token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generation {
    marker: u64,
    last: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    version: u32,
    entries: Vec<IndexItem>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexItem {
    stamp: Stamp,
    lease: Lease,
}

const INDEX_VERSION: u32 = 1;

/// How far a cached entry is trusted.
#[derive(Debug, Clone)]
enum Trust {
    /// Read and checked from the file with this stamp by this handle.
    Read,
    /// Loaded from `index.json`: trusted once the file's checksum header is this one.
    Header(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Cached {
    stamp: Stamp,
    entry: Entry,
    trust: Trust,
}

/// The state of the fencing-token counter, as [`Leases::check`](super::Leases::check) found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenState {
    /// `token.json` is intact and at least every token recorded elsewhere.
    Sound {
        /// The last token handed out.
        last: u64,
    },
    /// `token.json` is gone (the leases directory is created with it, so it was removed).
    Missing,
    /// `token.json` cannot be trusted (checksum, decoding, wrong type).
    Damaged {
        /// Why.
        reason: String,
    },
    /// `token.json` is intact but lower than a token recorded elsewhere: the counter went back
    /// (restored from a backup, or edited).
    WentBack {
        /// What `token.json` says.
        last: u64,
        /// The higher token found elsewhere.
        highest: u64,
        /// Where it was found.
        found_in: PathBuf,
    },
}

impl TokenState {
    /// True for [`TokenState::Sound`].
    pub fn is_sound(&self) -> bool {
        matches!(self, TokenState::Sound { .. })
    }
}

/// One lease file per lease, with a validated in-memory cache.
#[derive(Debug)]
pub(crate) struct FileStore {
    dir: Dir,
    /// The leases directory as the caller spelled it, for messages.
    path: PathBuf,
    /// Lease and token files: checksummed, synced as configured.
    durable: Options,
    /// Caches (`generation`, `index.json`): checksummed, never synced.
    cache_opts: Options,
    durability: Durability,
    cache: BTreeMap<String, Cached>,
    index_loaded: bool,
    /// The on-disk index was missing entries, damaged or refused: rewrite it after a scan.
    index_stale: bool,
    /// The highest token the index recorded (for repair).
    index_highest: Option<u64>,
    /// The generation the cache reflects; `None` until a full scan.
    generation: Option<u64>,
    /// Entries were written or removed in this step.
    dirty: bool,
    /// The generation was bumped in this step.
    bumped: bool,
}

/// Validates a lease id given by a caller before it becomes a file name.
pub(crate) fn check_id(id: &str) -> Result<(), LeaseError> {
    let ok = !id.is_empty()
        && id.len() + LEASE_SUFFIX.len() <= 255
        && !id.starts_with('.')
        && !id.contains(['/', '\0']);
    if ok {
        Ok(())
    } else {
        Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: format!("{id:?} is not a lease id"),
        }))
    }
}

fn file_name(id: &str) -> String {
    format!("{id}{LEASE_SUFFIX}")
}

/// Reads an open regular file whole, at most `limit` bytes; `Err(reason)` if it is longer.
fn read_limited(
    file: &File,
    len: u64,
    limit: u64,
) -> Result<Result<Vec<u8>, String>, std::io::Error> {
    if len > limit {
        return Ok(Err(format!(
            "it is {len} bytes, more than the {limit} bytes allowed; it was not read"
        )));
    }
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Ok(Err(format!(
            "it grew past the {limit} bytes allowed while read"
        )));
    }
    Ok(Ok(data))
}

/// The payload of a checksummed JSON record, and the record.
fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain records into memory cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The bytes written to `token.json` for `last` (the payload; the header is added on write).
pub(crate) fn token_payload(last: u64) -> Vec<u8> {
    let mut bytes = encode_json(&TokenFile { last });
    bytes.push(b'\n');
    bytes
}

impl FileStore {
    pub(crate) fn new(dir: Dir, path: PathBuf, durability: Durability) -> FileStore {
        FileStore {
            dir,
            path,
            durable: Options::new().checksum(true).durability(durability),
            cache_opts: Options::new().checksum(true).durability(Durability::NoSync),
            durability,
            cache: BTreeMap::new(),
            index_loaded: false,
            index_stale: false,
            index_highest: None,
            generation: None,
            dirty: false,
            bumped: false,
        }
    }

    /// Where `token.json` is, for messages.
    pub(crate) fn token_path(&self) -> PathBuf {
        self.path_of(TOKEN_FILE)
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn corrupt_entry(&self, id: &str, reason: String) -> Entry {
        Entry::Corrupt(CorruptEntry {
            id: id.to_owned(),
            path: self.path_of(&file_name(id)),
            reason,
        })
    }

    /// Opens lease file `id`: `Ok(None)` if it does not exist; a refused entry (symlink, FIFO,
    /// directory) is a corrupt entry.
    fn open_lease(&self, id: &str) -> Result<Option<Result<File, Entry>>, LeaseError> {
        match self.dir.open_file(file_name(id)) {
            Ok(Some(file)) => Ok(Some(Ok(file))),
            Ok(None) => Ok(None),
            Err(e) if e.is_damaged() => Ok(Some(Err(self.corrupt_entry(id, describe(&e))))),
            Err(e) => Err(LeaseError::file("open the lease file", e)),
        }
    }

    /// Reads and checks lease file `id` from its open descriptor.
    fn read_lease(&self, id: &str, file: &File, stamp: Stamp) -> Result<Cached, LeaseError> {
        let path = self.path_of(&file_name(id));
        let entry = match read_limited(file, stamp.len, LEASE_FILE_LIMIT)
            .map_err(|e| LeaseError::io(&path, "read the lease file", e))?
        {
            Err(reason) => self.corrupt_entry(id, reason),
            Ok(bytes) => match decode_file(id, &bytes) {
                Ok(lease) => Entry::Lease(lease),
                Err(reason) => self.corrupt_entry(id, reason),
            },
        };
        Ok(Cached {
            stamp,
            entry,
            trust: Trust::Read,
        })
    }

    /// Reads lease file `id` afresh; `None` if it does not exist.
    fn load(&self, id: &str) -> Result<Option<Cached>, LeaseError> {
        let file = match self.open_lease(id)? {
            None => return Ok(None),
            Some(Err(entry)) => {
                return Ok(Some(Cached {
                    stamp: Stamp::NONE,
                    entry,
                    trust: Trust::Read,
                }));
            }
            Some(Ok(file)) => file,
        };
        let stamp = self.stamp(id, &file)?;
        self.read_lease(id, &file, stamp).map(Some)
    }

    fn stamp(&self, id: &str, file: &File) -> Result<Stamp, LeaseError> {
        file.metadata()
            .map(|m| Stamp::of(&m))
            .map_err(|e| LeaseError::io(self.path_of(&file_name(id)), "inspect the lease file", e))
    }

    /// Whether the file's checksum header is `expected` (read with one `pread`).
    fn header_matches(file: &File, expected: &[u8]) -> bool {
        let mut buf = [0u8; HEADER_MAX];
        let Ok(n) = file.read_at(&mut buf, 0) else {
            return false;
        };
        buf[..n].starts_with(expected)
    }

    /// Reads `token.json`: the last token. Missing or damaged is corrupt: fencing tokens must
    /// never go back, so no lease is granted until it is repaired.
    fn read_token(&self) -> Result<u64, LeaseError> {
        let path = self.path_of(TOKEN_FILE);
        let advice = "fencing tokens must never go back, so no lease is granted until it is \
                      repaired (`Leases::repair`, `gapreg doctor --repair`: the counter is \
                      rebuilt above the highest token recorded anywhere)";
        match self.dir.read_with(TOKEN_FILE, &self.durable, TOKEN_LIMIT) {
            Ok(Some(payload)) => serde_json::from_slice::<TokenFile>(&payload)
                .map(|t| t.last)
                .map_err(|e| {
                    LeaseError::corrupt(path, format!("it is not a token counter ({e}); {advice}"))
                }),
            Ok(None) => Err(LeaseError::corrupt(
                path,
                format!(
                    "the fencing-token counter is missing (the leases directory is created \
                     with it, so it was removed); {advice}"
                ),
            )),
            Err(e) if e.is_damaged() => Err(LeaseError::corrupt(
                path,
                format!("{}; {advice}", describe(&e)),
            )),
            Err(e) => Err(LeaseError::file("read the token file", e)),
        }
    }

    /// The generation, `None` if missing or damaged (a damaged marker only costs a rescan); a
    /// `generation` that is not a regular file is an error.
    fn read_generation(&self) -> Result<Option<Generation>, LeaseError> {
        match self
            .dir
            .read_with(GENERATION_FILE, &self.cache_opts, GENERATION_LIMIT)
        {
            Ok(Some(payload)) => Ok(serde_json::from_slice(&payload).ok()),
            Ok(None) => Ok(None),
            Err(e) if matches!(e.kind(), atomic_file::ErrorKind::WrongType { .. }) => {
                Err(LeaseError::file("read the generation file", e))
            }
            Err(e) if e.is_damaged() => Ok(None),
            Err(e) => Err(LeaseError::file("read the generation file", e)),
        }
    }

    /// Brings the cache up to date. Fast path (`full == false`): if the generation is the one
    /// the cache reflects, nothing changed through this library since, and the directory is
    /// not listed. Otherwise (or with `full`) list every lease file and re-read the changed
    /// ones.
    fn refresh(&mut self, full: bool) -> Result<(), LeaseError> {
        let generation = self.read_generation()?.map(|g| g.marker);
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
            self.load_index()?;
            self.index_loaded = true;
        }
        let listing = self
            .dir
            .entries()
            .map_err(|e| LeaseError::file("list the leases directory", e))?;
        let mut seen = BTreeSet::new();
        let mut reparsed = 0;
        for item in listing {
            let name = item.name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let Some(id) = name.strip_suffix(LEASE_SUFFIX) else {
                continue;
            };
            if id.is_empty() {
                continue;
            }
            let id = id.to_owned();
            if item.name.to_str().is_none() {
                // Not ours (every id is UTF-8), but it may be a damaged lease: fail closed.
                let entry = Entry::Corrupt(CorruptEntry {
                    id: id.clone(),
                    path: self.path.join(&item.name),
                    reason: "its name is not UTF-8, so it is no lease file this library wrote; \
                             remove it by hand"
                        .to_owned(),
                });
                seen.insert(id.clone());
                self.cache.insert(
                    id,
                    Cached {
                        stamp: Stamp::NONE,
                        entry,
                        trust: Trust::Read,
                    },
                );
                continue;
            }
            seen.insert(id.clone());
            if item.kind != FileKind::File {
                let reason = format!(
                    "it is {}, not a regular file; it was not followed, opened or changed (a \
                     repository can hold planted entries): remove it by hand",
                    item.kind
                );
                let entry = self.corrupt_entry(&id, reason);
                self.cache.insert(
                    id,
                    Cached {
                        stamp: Stamp::NONE,
                        entry,
                        trust: Trust::Read,
                    },
                );
                continue;
            }
            let file = match self.open_lease(&id)? {
                None => {
                    seen.remove(&id);
                    continue;
                }
                Some(Err(entry)) => {
                    self.cache.insert(
                        id,
                        Cached {
                            stamp: Stamp::NONE,
                            entry,
                            trust: Trust::Read,
                        },
                    );
                    continue;
                }
                Some(Ok(file)) => file,
            };
            let stamp = self.stamp(&id, &file)?;
            if let Some(cached) = self.cache.get_mut(&id) {
                if cached.stamp == stamp {
                    match &cached.trust {
                        Trust::Read => continue,
                        Trust::Header(expected) if Self::header_matches(&file, expected) => {
                            cached.trust = Trust::Read;
                            continue;
                        }
                        // The index does not describe this file: it is stale or was edited.
                        Trust::Header(_) => self.index_stale = true,
                    }
                }
            }
            reparsed += 1;
            let fresh = self.read_lease(&id, &file, stamp)?;
            self.cache.insert(id, fresh);
        }
        let before = self.cache.len();
        self.cache.retain(|id, _| seen.contains(id));
        reparsed += before - self.cache.len();
        if reparsed > INDEX_REWRITE_THRESHOLD || (self.index_stale && reparsed > 0) {
            self.write_index();
        }
        Ok(())
    }

    /// Seeds the cache from `index.json`. A damaged index is ignored (and rewritten after the
    /// scan); an `index.json` that is not a regular file is an error.
    fn load_index(&mut self) -> Result<(), LeaseError> {
        let payload = match self
            .dir
            .read_with(INDEX_FILE, &self.cache_opts, INDEX_LIMIT)
        {
            Ok(Some(payload)) => payload,
            Ok(None) => return Ok(()),
            Err(e) if matches!(e.kind(), atomic_file::ErrorKind::WrongType { .. }) => {
                return Err(LeaseError::file("read the lease index", e));
            }
            Err(e) => {
                // Damaged (checksum, size) or unreadable: start cold and rebuild it.
                self.index_stale = e.is_damaged();
                return Ok(());
            }
        };
        let Ok(index) = serde_json::from_slice::<IndexFile>(&payload) else {
            self.index_stale = true;
            return Ok(());
        };
        if index.version != INDEX_VERSION {
            self.index_stale = true;
            return Ok(());
        }
        for item in index.entries {
            let id = item.lease.id.clone();
            let header = item.lease.to_payload().map(|p| checksum::header(&p));
            match header {
                Ok(header) if check_id(&id).is_ok() && validate(&item.lease, &id).is_ok() => {
                    self.index_highest = self.index_highest.max(Some(item.lease.token));
                    self.cache.insert(
                        id,
                        Cached {
                            stamp: item.stamp,
                            entry: Entry::Lease(item.lease),
                            trust: Trust::Header(header),
                        },
                    );
                }
                _ => self.index_stale = true,
            }
        }
        Ok(())
    }

    /// Writes the cache to `index.json` (checksummed, no fsync). Failure is harmless (the
    /// index is only a cache, verified entry by entry on use), so it is not reported.
    fn write_index(&mut self) {
        let entries: Vec<IndexItem> = self
            .cache
            .values()
            .filter_map(|c| match (&c.entry, &c.trust) {
                (Entry::Lease(lease), Trust::Read) => Some(IndexItem {
                    stamp: c.stamp,
                    lease: lease.clone(),
                }),
                _ => None,
            })
            .collect();
        let index = IndexFile {
            version: INDEX_VERSION,
            entries,
        };
        let bytes = encode_json(&index);
        if self.dir.write(INDEX_FILE, &bytes, &self.cache_opts).is_ok() {
            self.index_stale = false;
        }
    }

    /// Replaces the generation with a fresh random number (recording `last` as the last token,
    /// or keeping the recorded one), so that every other handle rescans before its next
    /// decision; keeps this handle's cache current if it was.
    fn bump(&mut self, last: Option<u64>) -> Result<(), LeaseError> {
        let current = self.read_generation().ok().flatten();
        let fresh = self.generation.is_some() && current.map(|g| g.marker) == self.generation;
        self.generation = None;
        let next = Generation {
            marker: fastrand::u64(1..),
            last: last.or(current.and_then(|g| g.last)),
        };
        self.dir
            .write(GENERATION_FILE, &encode_json(&next), &self.cache_opts)
            .map_err(|e| LeaseError::file("write the generation file", e))?;
        self.bumped = true;
        if fresh {
            self.generation = Some(next.marker);
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
        if dirty && !self.bumped && self.bump(None).is_err() {
            self.generation = None;
        }
        self.bumped = false;
    }

    /// The highest token recorded in the cached entries, and where.
    fn highest_cached(&self) -> Option<(u64, PathBuf)> {
        self.cache
            .iter()
            .filter_map(|(id, c)| c.entry.token().map(|t| (t, id)))
            .max()
            .map(|(t, id)| (t, self.path_of(&file_name(id))))
    }

    /// The counter's state, judged against every token recorded elsewhere (call after a full
    /// scan), and the highest token seen anywhere.
    pub(crate) fn token_state(&self) -> Result<(TokenState, u64), LeaseError> {
        let generation = self.read_generation()?;
        let mut highest: Option<(u64, PathBuf)> = self.highest_cached();
        if let Some(last) = generation.and_then(|g| g.last) {
            if highest.as_ref().is_none_or(|(t, _)| last > *t) {
                highest = Some((last, self.path_of(GENERATION_FILE)));
            }
        }
        if let Some(t) = self.index_highest {
            if highest.as_ref().is_none_or(|(h, _)| t > *h) {
                highest = Some((t, self.path_of(INDEX_FILE)));
            }
        }
        let state = match self.read_token() {
            Ok(last) => match &highest {
                Some((h, file)) if *h > last => TokenState::WentBack {
                    last,
                    highest: *h,
                    found_in: file.clone(),
                },
                _ => TokenState::Sound { last },
            },
            Err(e) => match e.kind() {
                LeaseErrorKind::Corrupt { reason, .. } => {
                    if matches!(self.dir.kind(TOKEN_FILE), Ok(None)) {
                        TokenState::Missing
                    } else {
                        TokenState::Damaged {
                            reason: reason.clone(),
                        }
                    }
                }
                _ => return Err(e),
            },
        };
        let seen = highest.map(|(h, _)| h).unwrap_or(0);
        let seen = match state {
            TokenState::Sound { last } | TokenState::WentBack { last, .. } => seen.max(last),
            _ => seen,
        };
        Ok((state, seen))
    }

    /// Writes `token.json` with `last` (durably, checksummed).
    pub(crate) fn write_token(&mut self, last: u64) -> Result<(), LeaseError> {
        self.dir
            .write(TOKEN_FILE, &token_payload(last), &self.durable)
            .map_err(|e| LeaseError::file("write the token file", e))
    }

    /// Rebuilds `index.json` from the current cache (call after a full scan) and bumps the
    /// generation, recording `last`.
    pub(crate) fn rebuild_caches(&mut self, last: Option<u64>) -> Result<(), LeaseError> {
        let entries: Vec<IndexItem> = self
            .cache
            .values()
            .filter_map(|c| match &c.entry {
                Entry::Lease(lease) => Some(IndexItem {
                    stamp: c.stamp,
                    lease: lease.clone(),
                }),
                Entry::Corrupt(_) => None,
            })
            .collect();
        let index = IndexFile {
            version: INDEX_VERSION,
            entries,
        };
        self.dir
            .write(INDEX_FILE, &encode_json(&index), &self.cache_opts)
            .map_err(|e| LeaseError::file("write the lease index", e))?;
        self.index_stale = false;
        self.bump(last)
    }

    /// Removes the leftover temp files of dead writers (or only lists them).
    pub(crate) fn recover_temp_files(&self, remove: bool) -> Result<Vec<PathBuf>, LeaseError> {
        self.dir
            .recover(remove)
            .map(|r| r.removed)
            .map_err(|e| LeaseError::file("remove leftover temp files", e))
    }
}

impl LeaseStore for FileStore {
    fn entries(&mut self) -> Result<Vec<&Entry>, LeaseError> {
        self.refresh(false)?;
        Ok(self.cache.values().map(|c| &c.entry).collect())
    }

    fn scan_entries(&mut self) -> Result<Vec<&Entry>, LeaseError> {
        self.refresh(true)?;
        Ok(self.cache.values().map(|c| &c.entry).collect())
    }

    fn get(&mut self, id: &str) -> Result<Option<Entry>, LeaseError> {
        check_id(id)?;
        match self.load(id)? {
            Some(cached) => {
                let entry = cached.entry.clone();
                self.cache.insert(id.to_owned(), cached);
                Ok(Some(entry))
            }
            None => {
                self.cache.remove(id);
                Ok(None)
            }
        }
    }

    fn put(&mut self, lease: &Lease) -> Result<(), WriteFailed> {
        check_id(&lease.id)?;
        let name = file_name(&lease.id);
        let payload = lease.to_payload()?;
        self.dirty = true;
        // Until it is written and read back, the cache must not claim to know this file.
        self.cache.remove(&lease.id);
        if let Err(e) = self.dir.write(&name, &payload, &self.durable) {
            return Err(WriteFailed {
                // Renamed into place, but the directory could not be synced.
                visible: e.step() == Some(Step::SyncDir),
                error: LeaseError::file("write the lease file", e),
            });
        }
        if let Ok(Some(file)) = self.dir.open_file(&name) {
            if let Ok(meta) = file.metadata() {
                self.cache.insert(
                    lease.id.clone(),
                    Cached {
                        stamp: Stamp::of(&meta),
                        entry: Entry::Lease(lease.clone()),
                        trust: Trust::Read,
                    },
                );
            }
        }
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<bool, LeaseError> {
        check_id(id)?;
        self.cache.remove(id);
        self.dirty = true;
        self.dir
            .remove_file(file_name(id))
            .map_err(|e| LeaseError::file("remove the lease file", e))
    }

    fn sync(&mut self) -> Result<(), LeaseError> {
        if self.durability == Durability::Full {
            self.dir
                .sync()
                .map_err(|e| LeaseError::file("fsync the leases directory", e))?;
        }
        Ok(())
    }

    fn next_token(&mut self) -> Result<u64, LeaseError> {
        let last = self.read_token()?;
        let token_path = self.path_of(TOKEN_FILE);
        let went_back = |found: u64, file: &Path| {
            LeaseError::corrupt(
                &token_path,
                format!(
                    "it records {last} as the last fencing token, but {} records {found}: the \
                     counter went back (restored from a backup, or edited), and tokens must \
                     never be handed out twice, so no lease is granted until it is repaired \
                     (`Leases::repair`, `gapreg doctor --repair`)",
                    file.display()
                ),
            )
        };
        // The protocol listed the entries just before, under the same mutex: the cache is fresh.
        if let Some((highest, file)) = self.highest_cached() {
            if highest > last {
                return Err(went_back(highest, &file));
            }
        }
        if let Some(recorded) = self.read_generation()?.and_then(|g| g.last) {
            if recorded > last {
                return Err(went_back(recorded, &self.path_of(GENERATION_FILE)));
            }
        }
        let next = last.checked_add(1).ok_or_else(|| {
            LeaseError::corrupt(
                &token_path,
                "the fencing-token counter is exhausted (it records the largest token); \
                 remove the leases directory while no lease is held",
            )
        })?;
        // Durable before any lease carries it.
        self.write_token(next)?;
        // A grant follows: make every other handle rescan before it could miss the new lease.
        self.bump(Some(next))?;
        Ok(next)
    }

    fn location(&self, id: &str) -> PathBuf {
        self.path_of(&file_name(id))
    }
}
