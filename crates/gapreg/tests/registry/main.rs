//! Integration tests of `gapreg`: the API and its errors, a model-based property test, 40
//! concurrent filing processes, 64-way claim races (threads and processes), filers killed with
//! SIGKILL, parser properties (no panics, round trips), and a rough release-mode measurement
//! (ignored by default).
//!
//! Child processes re-execute this test binary, running one `#[ignore]`d `child_*` test with
//! `--exact --ignored`, parameters in `GAPREG_CHILD`.

mod adversarial;
mod api;
mod attack13;
mod claims;
mod crash;
mod damage;
mod gitdir;
mod merge;
mod model;
mod multiprocess;
mod parsers;
mod perf;
#[cfg(feature = "postgres")]
mod pg;
mod util;
