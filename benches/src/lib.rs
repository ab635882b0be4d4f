//! What the benchmarks in `benches/benches/` share.
//!
//! The benchmarks compare the gapreg crates with their peers and with the raw syscall floor,
//! one bench file per question. The harness lives here, once:
//!
//! - [`stats`]: medians, percentiles, timing calls;
//! - [`interleave`]: running competitors alternately and pairing their rounds;
//! - [`process`]: re-executing the bench binary in a role, starting children together, timing
//!   whole commands, finding the release `gapreg` binary;
//! - [`run`]: benchmarking or smoke test, scratch directories, numbers from the environment;
//! - [`report`]: the markdown tables the benches print;
//! - [`pg`]: the PostgreSQL bench's statement and session options, which its floor process
//!   (`src/bin/pg-reserve.rs`) shares;
//!
//! and the competitors more than one bench or example uses: [`replace`] (durable replace of a
//! file), [`reserve`] (a SQLite counter and the floors of an ID reservation) and [`whole`]
//! (the `gapreg` and Taskwarrior processes and their floors).

pub mod interleave;
pub mod pg;
pub mod process;
pub mod replace;
pub mod report;
pub mod reserve;
pub mod run;
pub mod stats;
pub mod whole;

pub use replace::{Competitor, KIB, MIB, REPLACE_SIZES, Slot, payload, size_label};
