//! Integration tests of `atomic-file`: real child processes, SIGKILL at random moments, and
//! property tests of the checksummed format.
//!
//! Child processes re-execute this test binary, selecting one `#[ignore]`d `child_*` test with
//! `--exact --ignored`; the parent passes parameters through environment variables and checks
//! outcomes. The `child_*` tests do nothing unless `ATOMIC_FILE_CHILD` is set, so running the
//! ignored tests by hand is harmless.

mod adversarial;
mod crash;
#[cfg(unix)]
mod hostile_dir;
mod multiprocess;
mod props;
mod util;
