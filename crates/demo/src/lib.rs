//! The workload and the checker of `gapreg demo` and `gapreg demo-write`, as a library: the
//! CLI only parses their arguments, starts them and prints what they found.
//!
//! - [`agents`]: in a fresh registry, agents at once reserve ids, file gap batches under a
//!   loop, take leases on overlapping paths and claim ready gaps ([`agents::agent`], one agent
//!   process's work, and [`agents::run_agents`], which starts and collects many);
//!   [`verify`] then checks the run: ids unique, nothing lost, batches contiguous, no two
//!   conflicting leases held at once (judged by leaselock's own rule,
//!   [`Lease::conflicts_with`](gapreg::leaselock::lease::Lease::conflicts_with)), no gap
//!   claimed twice.
//! - [`file_layer`]: worker processes update one checksummed file at once, a writer is killed
//!   mid-write and a bit is flipped, and the run checks that nothing was lost or torn and
//!   that the damage is reported.
//!
//! The agents and workers are real processes: a [`Program`] names the command that runs one
//! (the CLI re-executes itself as `gapreg demo-agent` and `gapreg demo-worker`), and the work
//! of one is a plain function, so the same run also works in one process:
//!
//! ```
//! use gapreg_demo::agents;
//!
//! let repo = tempfile::tempdir()?;
//! let registry = agents::prepare(repo.path())?;
//! let reports = vec![
//!     agents::agent("CC-1", repo.path())?,
//!     agents::agent("CC-2", repo.path())?,
//! ];
//! let verification = gapreg_demo::verify(std::slice::from_ref(&registry), &reports, 2)?;
//! assert!(verification.passed(), "{:?}", verification.checks);
//! // A report crosses a pipe as one line.
//! let line = reports[0].line()?;
//! assert_eq!(agents::Report::from_line(&line)?.map(|r| r.agent), Some("CC-1".to_owned()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

pub mod agents;
mod check;
mod error;
pub mod file_layer;

pub use check::{Check, Verification, verify};
pub use error::{Error, Result};

/// The command that runs one agent or worker process: a program and its first arguments
/// (for the CLI, its own executable and `demo-agent` or `demo-worker`). Each run appends the
/// arguments its process needs (see [`agents::run_agents`] and [`file_layer::run`]).
#[derive(Debug, Clone)]
pub struct Program {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Program {
    /// The program to run, with no arguments yet.
    pub fn new(program: impl Into<PathBuf>) -> Program {
        Program {
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// Adds an argument given before the ones each run appends.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Program {
        self.args.push(arg.into());
        self
    }

    /// A [`Command`] for one process, before the run's own arguments.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        command
    }
}
