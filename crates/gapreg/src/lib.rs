//! The gap registry: gaps, loops, statuses, claims, dependencies and ready work, shared by any
//! number of concurrent writers — agents, scripts, people — without loss or duplication.
//!
//! A **gap** is something missing in a repository (`GAP-OP-1091`: title, type, severity,
//! status, parent loop, dependencies, claimed_by, plan, tags). A **loop** (an epic) is a markdown
//! scope document with YAML front matter; loops can block other loops. A [`Registry`] files
//! gaps one at a time or in all-or-nothing batches, lists and filters them in registry order,
//! hands out claims with compare-and-swap semantics, checks status transitions and dependency
//! cycles, answers "what can I work on now" ([`Registry::ready`]) and "why not"
//! ([`Registry::blockers`]), counts ([`Registry::summary`]), renders a markdown overview
//! ([`Registry::render`]) and checks and repairs itself ([`Registry::doctor`]).
//!
//! ```
//! use gapreg::{Config, Filter, GapSpec, LoopSpec, Registry, Severity, Status};
//!
//! let repo = tempfile::tempdir()?;
//! let reg = Registry::init(repo.path(), Config::default())?;
//! reg.new_loop(LoopSpec { id: "LOOP-GAPS".into(), objective: "Batch filing".into(), ..LoopSpec::default() })?;
//! let batch = reg.file_batch(vec![
//!     GapSpec::new("Lock contention stops every call", Severity::High).parent_loop("LOOP-GAPS"),
//!     GapSpec::new("No --parent-loop flag", Severity::High).parent_loop("LOOP-GAPS").depends_on("@0"),
//! ])?;
//! assert_eq!(batch[0].id, "GAP-OP-1");
//! assert_eq!(batch[1].depends_on, ["GAP-OP-1"]);
//!
//! // Only GAP-OP-1 is ready: GAP-OP-2 waits for it.
//! let ready: Vec<_> = reg.ready()?.into_iter().map(|g| g.id).collect();
//! assert_eq!(ready, ["GAP-OP-1"]);
//!
//! // 64 agents may race for it; exactly one wins, the others get a Conflict naming the winner.
//! reg.claim("GAP-OP-1", "CC-3", None)?;
//! let err = reg.claim("GAP-OP-1", "CC-7", None).unwrap_err();
//! assert!(err.to_string().contains("claimed by CC-3"));
//!
//! // A dependency that would close a cycle is refused, with the cycle spelled out.
//! let err = reg.add_dependency("GAP-OP-1", "GAP-OP-2").unwrap_err();
//! assert!(err.to_string().contains("GAP-OP-1 -> GAP-OP-2 -> GAP-OP-1"));
//!
//! let open = reg.list(&Filter { status: Some(Status::Open), ..Filter::default() })?;
//! assert_eq!(open.len(), 1);
//! assert!(reg.doctor(false)?.healthy());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! A registry is a directory, `.gapreg/` at the top of a repository by default. Every file
//! in it, its owner, whether git tracks it and why, is listed in one place: the [`layout`]
//! module. In short: `config.yaml`, `gaps/<ID>.yaml` and the loops directory are the
//! documents (tracked); `ids/`, `index.log`, `registry.lock`, `leases/`, `staging/`,
//! `batch.pending` and `keys/` are coordination state and caches (git-ignored).
//!
//! # A hostile repository
//!
//! A registry is committed to git, so everything in it may come from a stranger. Nothing is
//! ever reached through a symlink, a FIFO is never opened, and an entry of the wrong type is
//! refused with an error naming it ([`layout`]); every file that could hand out an id twice,
//! grant a conflicting lease or lose a gap is verified (checksums, headers) before it is
//! trusted, and a cache that disagrees with what it caches is rebuilt. Reads that had to leave
//! a damaged document out say so: [`Registry::list_checked`] and the other `*_checked` reads
//! return the files they skipped ([`Checked`]). `config.yaml` is parsed strictly. Inputs are
//! bounded: [`MAX_BATCH`] entries per batch, [`MAX_DESCRIPTION`] bytes of description, a
//! 1 MiB gap file, and YAML alias expansion (see `atomic_file`'s typed helpers).
//!
//! An acknowledged result is the truth and a reported failure changed nothing: once a gap
//! file (or a batch's manifest) is durable, the index append cannot turn the answer into an
//! error ([`Registry::with_warnings`] hears about it); a write whose final directory `fsync`
//! fails is taken back. [`Registry::file_idempotent`] makes filing safe to retry.
//!
//! [`Registry::list`] and [`Registry::ready`] return [`GapSummary`] values from the index (all
//! fields but the description, plan and creation/update times); [`Registry::show`] reads a
//! whole [`Gap`].
//!
//! Every mutation is: take `registry.lock` (waiting first-come-first-served up to
//! `lock_timeout_secs`, default 120 s, then [`ErrorKind::Timeout`] naming the holder), check
//! the index is current, read the gap file, change it, write it atomically and durably, append
//! one index line, unlock. Filing reserves the id and the registry position (`SEQ`) in the id
//! store (each one durable append), stats the parent loop and dependencies, writes one gap file
//! and appends index lines: its cost does not depend on how many gaps exist. Listing, `ready`,
//! `summary` and `render` read `index.log` only (plus the loop files).
//!
//! **Lock order:** `registry.lock`, then the id store's `counters.lock` (inside
//! [`idreserve::Store::reserve`]). Nothing takes them the other way round.
//!
//! # Crashes
//!
//! A writer killed at any moment leaves every gap file complete (old or new contents; temp
//! files are removed by `doctor --repair`), and the gap it was filing is either fully there or
//! not there. A batch is all or nothing too: its files are written to `staging/`, the
//! manifest `batch.pending` (written atomically) commits them, and only then are they renamed
//! into `gaps/`; the next writer (or `doctor --repair`) finishes a committed batch whose
//! writer died, and staged files without a manifest are never filed. An id reserved for a gap that never got written is skipped, which is fine. The
//! index may miss the last change or end in a torn line; the next reader or writer notices
//! (see [`index`]) and rebuilds it under the lock.
//!
//! # Git and merges
//!
//! Gap files are one per gap, so two branches that filed *different* gaps merge without
//! textual conflicts in `gaps/`; two branches that changed *different fields* of one gap
//! merge through the driver `gapreg git setup` registers ([`merge`]: field by field
//! against the common ancestor, lists as sets, the same field changed two ways a conflict
//! naming it). Two things need care:
//!
//! - **`ids/counters.log` conflicts** when both branches reserved ids. It is a checksummed
//!   binary-safe log with a header (see `idreserve`), so a textual merge of it is corrupt, not
//!   silently lower: keep either side's file, then run `gapreg doctor --repair`, which raises
//!   every counter to the highest id (and `SEQ` to the highest position) present in `gaps/`.
//! - **The same id filed on both branches**: ids come from a counter in the working copy, so
//!   two branches that each filed from counter N both created `GAP-OP-<N+1>` — an add/add
//!   conflict in `gaps/`. Keep one file, re-file the other gap (it gets a new id) and fix
//!   references; `doctor` reports duplicate ids and dangling references. Agents that share one
//!   checkout (the common case) never hit this; long-lived branches that file gaps should use
//!   their own prefix (`GapSpec::prefix`).
//! - **Registry positions** (`seq`) also come from the working copy, so gaps filed on two
//!   branches can share positions after a merge; they are then listed by id, and two batches
//!   may interleave. `doctor` reports each shared position (`DuplicatePosition`); it does not
//!   renumber them.
//!
//! After a merge, a checkout or hand edits, the index notices that `gaps/` changed and rebuilds
//! itself; `doctor --repair` does it explicitly.
//!
//! # Fuzzing
//!
//! The file parsers are pure functions over bytes or text that never panic:
//! [`parse_gap_yaml`], [`parse_loop`] and [`parse_index_line`].
#![deny(missing_docs)]

mod doctor;
mod error;
pub mod gitdir;
mod graph;
pub mod index;
pub mod layout;
pub mod loops;
pub mod merge;
mod model;
mod registry;
pub mod render;
pub mod store;
mod sync;
mod time;

pub use doctor::{DoctorReport, Finding, FindingKind};
pub use error::{ConflictDetail, Error, ErrorClass, ErrorKind, Result};
pub use index::{DamagedFile, IndexLine, checked_index_line, parse_index_line};
pub use layout::REGISTRY_DIR;
pub use loops::{Loop, LoopSpec, parse_loop};
pub use model::{
    Blocker, Filter, Gap, GapEdit, GapSpec, GapSummary, LoopCount, Severity, Status, Summary,
    gap_to_yaml, parse_gap_yaml,
};
pub use registry::ops::Engine;
#[cfg(feature = "postgres")]
pub use registry::server::{DEFAULT_WAIT as SERVER_WAIT, URL_ENV};
pub use registry::{
    Backend, Checked, Config, Ids, MAX_BATCH, MAX_DESCRIPTION, Registry, SEQ_PREFIX, gap_prefix,
};
pub use time::Timestamp;
pub use {atomic_file, idreserve, leaselock};
