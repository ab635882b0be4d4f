//! Integration tests of `idreserve`: the store's API and errors, a model-based property test,
//! 50 concurrent processes, reservers killed with SIGKILL, the damage suite (every file of the
//! store truncated, zeroed, bit-flipped, replaced and removed), hostile paths (links, FIFOs,
//! wrong types at every path), faults injected with strace, bounded resources, and stores of
//! the first release.
//!
//! Child processes re-execute this test binary, running one `#[ignore]`d `child_*` test with
//! `--exact --ignored`, parameters in `IDRESERVE_CHILD`.

mod adversarial;
mod api;
mod crash;
mod damage;
mod faults;
mod hostile;
mod migration;
mod model;
mod multiprocess;
mod resource;
mod util;
