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
//! let store = Store::create(dir.path(), Config::default())?;
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
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout and durability
//!
//! A store directory holds `config.yaml` (optional allow-list and zero padding, see
//! [`Config`]), `counters.log` and the lock file `counters.lock` (with its queue directory).
//! The log is append-only text, one checksummed record per line (format in the `log` module
//! docs): a reservation costs one small `write` and one `fdatasync`, where a rename-based
//! update would cost three or four syncs. A writer that dies mid-append leaves a torn last
//! line, which readers ignore and the next writer cuts off; any other damage is reported as
//! [`ErrorKind::Corrupt`] and never "repaired" by resetting a counter. After 64 records a
//! writer compacts the log to one record per prefix through [`atomic_file`].
//!
//! Prefixes: upper-case letters, digits and dashes, starting with a letter; a prefix may
//! contain dashes (`GAP-OP` gives `GAP-OP-1091`).
#![deny(missing_docs)]

mod error;
mod id;
mod log;
mod protocol;
mod scan;
mod store;

pub use error::{Error, ErrorKind};
pub use id::{Id, MAX_PREFIX_LEN, check_prefix};
pub use scan::find_ids;
pub use store::{Config, Found, Reservation, Store};
