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

mod cache;
mod lease_store;
mod token;

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

/// One cache entry: what the file with `stamp` holds, and how far that is trusted.
#[derive(Debug, Clone)]
struct Cached {
    stamp: Stamp,
    entry: Entry,
    trust: Trust,
}

impl Cached {
    /// Read and checked by this handle from the file with `stamp`.
    fn read(stamp: Stamp, entry: Entry) -> Cached {
        Cached {
            stamp,
            entry,
            trust: Trust::Read,
        }
    }

    /// An entry known without a stamp (one that is not a regular file, or whose name is not
    /// ours): it matches no file's stamp, so every scan judges it again.
    fn unstamped(entry: Entry) -> Cached {
        Cached::read(Stamp::NONE, entry)
    }
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

    /// Removes the leftover temp files of dead writers (or only lists them).
    pub(crate) fn recover_temp_files(&self, remove: bool) -> Result<Vec<PathBuf>, LeaseError> {
        self.dir
            .recover(remove)
            .map(|r| r.removed)
            .map_err(|e| LeaseError::file("remove leftover temp files", e))
    }
}
