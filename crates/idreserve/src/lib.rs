//! Collision-free, durable reservation of IDs like `SEC-20` or `GAP-OP-1091`, one at a time or
//! in batches, shared by many processes.
//!
//! "Read the highest ID and add one" hands the same ID to two agents that do it at once. A
//! [`Store`] instead keeps one counter per prefix in a directory and changes it only under a
//! [`leaselock`] mutex (waiting first-come-first-served, with a timeout that names the holder;
//! never broken by age — the kernel releases it when its holder dies). [`Store::reserve`]
//! returns only after the new counter is on disk, so no crash or power cut can hand out the
//! same IDs again.
//!
//! ```
//! use idreserve::{Config, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(dir.path().join("ids"), Config::default())?;
//! let one = store.reserve("SEC", 1)?;
//! let batch = store.reserve("GAP-OP", 3)?;
//! assert_eq!(one.ids().map(|id| id.to_string()).collect::<Vec<_>>(), ["SEC-1"]);
//! assert_eq!(
//!     batch.ids().map(|id| id.to_string()).collect::<Vec<_>>(),
//!     ["GAP-OP-1", "GAP-OP-2", "GAP-OP-3"]
//! );
//! assert_eq!(store.peek("SEC")?.to_string(), "SEC-2");
//! assert!(store.validate("GAP-OP-3").is_ok());
//! assert!(store.validate("GAP-OP-4").is_err()); // never reserved
//! assert!(store.validate("GAP-OP-03").is_err()); // not canonical: GAP-OP-3
//! assert_eq!(store.raise("SEC", 100)?.after, 100); // IDs used elsewhere: never lowered
//! assert!(store.verify()?.is_healthy());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! A store directory holds `config.yaml` (format version, optional allow-list and zero
//! padding, see [`Config`]), `counters.log` (format in the [`log`] module), and the lock file
//! `counters.lock` with its queue directory `counters.lock.queue/`. Their names are exported
//! ([`CONFIG_FILE`], [`LOG_FILE`], [`LOCK_FILE`], [`QUEUE_DIR`], and the table [`FILES`]
//! saying which belong in version control), so that no other crate spells them. Prefixes are
//! upper-case letters, digits and dashes, starting with a letter (`GAP-OP` gives
//! `GAP-OP-1091`).
//!
//! Every [`Error`] states its [`ErrorClass`] ([`Error::class`]: not found, conflict, damaged,
//! busy, invalid, failure), the classes every crate of this workspace shares.
//!
//! # A store may come from a stranger
//!
//! A store is committed to version control, so every file in it may come from a hostile
//! repository. So:
//!
//! - Every file is reached through the store directory's descriptor
//!   ([`atomic_file::dir::Dir`]): nothing is followed, a FIFO cannot hang an open, and a
//!   symbolic link, FIFO, socket, device or directory where a file of the store belongs (or a
//!   link as the store directory) is refused with [`ErrorKind::Corrupt`] naming the path. It is
//!   never written through, removed or replaced. Reads are bounded (the log by its largest
//!   valid size, the config to 64 KiB) before anything is allocated.
//! - Every byte of the log is verified before it is trusted (see [`log`]): a missing header,
//!   a flipped bit, zeros, truncation, extension or garbage is [`ErrorKind::Corrupt`], never
//!   "an empty log, counters restart". The one tolerated defect is an interrupted write of a
//!   record that was never acknowledged.
//! - `config.yaml` is parsed strictly: unknown keys, keys without values, an empty file, an
//!   empty allow-list, invalid prefixes and widths are errors naming the key, never defaults.
//! - A store whose config exists but whose log is missing, or the other way round, is
//!   [`ErrorKind::Corrupt`]: creation writes the log (with its header) before the config, so
//!   no crash leaves a config without a log, and counters are never restarted from zero.
//! - Untrusted numbers size nothing: one reservation is at most [`MAX_COUNT`] IDs (checked
//!   before the lock is taken); a [`Reservation`] holds two numbers and lists its IDs lazily;
//!   widths are at most [`MAX_WIDTH`]; counters stop at `u64::MAX` with
//!   [`ErrorKind::Overflow`].
//! - [`Store::init_from`] reads documents without following any symbolic link (not even a
//!   path given, which is refused), never opens FIFOs or devices, and streams files in
//!   bounded chunks.
//! - IDs have one canonical text: `SEC-0001` is not `SEC-1` ([`ErrorKind::NotCanonical`]), so
//!   two spellings of one ID cannot both be in use.
//!
//! [`verify`] checks all of this without changing anything, for `gapreg doctor`.
//!
//! # Durability and failures
//!
//! A reservation writes its record into the log's first free slot (one 64-byte `pwrite`),
//! releases the lock and `fdatasync`s; it returns only after the flush. The rules:
//!
//! - **Acknowledged means durable.** `reserve`, `raise` and `init_from` return `Ok` only after
//!   every record they wrote was flushed (or the log was rewritten with `fsync`s).
//! - **A failure before the write changes nothing.** If the record cannot be written, the
//!   error is returned; at most an interrupted write is left, which counts for nothing.
//! - **A failure after the write never rolls back.** If the record was written but its flush
//!   failed, the record is already visible to every reader (a concurrent `validate` may have
//!   accepted the IDs, and a later reservation continues above them), so it is never removed:
//!   the writer takes the lock again and rewrites the whole log into new blocks with a full
//!   `fsync` and at least its values; if that succeeds the reservation returns `Ok` (it is
//!   durable), otherwise it returns the flush error and its IDs are skipped, never handed
//!   out. The next reservation never hands out an ID below a value a failed call may have
//!   made visible, because it reads the log under the lock, including records whose flush
//!   failed.
//!
//! The system calls of one reservation (`examples/reserve.rs` under `strace -f -y -e
//! trace=openat,write,pwrite64,fsync,fdatasync,rename,renameat,renameat2,flock`; the lock's
//! queue files and the config read at open left out; checked by a test, `faults.rs`):
//!
//! ```text
//! openat(AT_FDCWD, "/tmp/sids/counters.lock", O_RDWR|O_CREAT|O_CLOEXEC, 0666) = 4
//! flock(4, LOCK_EX|LOCK_NB) = 0
//! pwrite64(4, "{\"pid\":4658,\"host\":\"vm\",\"since_m"..., 256, 0) = 256     holder record
//! openat(3</tmp/sids>, "counters.log", O_RDONLY|O_NOCTTY|O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC) = 6
//! openat(3</tmp/sids>, "counters.log", O_RDWR|O_CREAT|O_NOCTTY|O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC, 0666) = 7
//! pwrite64(7, "SEC 64 b28fd830                 "..., 64, 4096) = 64          the record
//! flock(4, LOCK_UN) = 0                                                     unlock
//! fdatasync(7) = 0                                                          flush, then return
//! ```
//!
//! (The lock file is opened by path by [`leaselock`], after the store checked that it is a
//! regular file.) When no slot is free, the writer rewrites the log instead, still under the
//! lock:
//!
//! ```text
//! openat(3</tmp/sids>, ".counters.log.5187-0dc0cd4888d99486.atomic-tmp", O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|…, 0600) = 6
//! write(6, "# idreserve counters v2 slots=65"..., 4224) = 4224
//! fsync(6) = 0
//! renameat(3</tmp/sids>, ".counters.log.5187-0dc0cd4888d99486.atomic-tmp", 3</tmp/sids>, "counters.log") = 0
//! fsync(3</tmp/sids>) = 0
//! flock(4, LOCK_UN) = 0
//! ```
#![deny(missing_docs)]

mod config;
mod error;
mod files;
mod id;
pub mod log;
#[cfg(feature = "postgres")]
mod pg;
mod protocol;
mod scan;
mod store;
mod sync;
mod verify;

pub use atomic_file::ErrorClass;
pub use config::Config;
pub use error::{Error, ErrorKind};
pub use files::{CONFIG_FILE, FILES, LOCK_FILE, LOG_FILE, QUEUE_DIR, StoreFile};
pub use id::{Id, MAX_PREFIX_LEN, MAX_WIDTH, check_prefix};
#[cfg(feature = "postgres")]
pub use pg::{COMPONENT as PG_COMPONENT, MIGRATIONS as PG_MIGRATIONS, PgCounters};
pub use protocol::MAX_COUNT;
pub use scan::{MAX_DEPTH, SkipReason, Skipped, find_ids};
pub use store::{Found, InitReport, Raised, Reservation, Store};
pub use verify::{Finding, FindingKind, Verification, verify, verify_at};
