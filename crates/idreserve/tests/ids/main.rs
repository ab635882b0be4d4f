//! Integration tests of `idreserve`: the store's API and errors, a model-based property test,
//! 50 concurrent processes, and reservers killed with SIGKILL.
//!
//! Child processes re-execute this test binary, running one `#[ignore]`d `child_*` test with
//! `--exact --ignored`, parameters in `IDRESERVE_CHILD`.

mod adversarial;
mod api;
mod crash;
mod model;
mod multiprocess;
mod util;
