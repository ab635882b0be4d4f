//! End-to-end tests of the `gapreg` binary: every subcommand's success output and its errors'
//! exit codes and messages, over temporary directories.

mod attack;
mod attack11;
mod attack13;
mod attack2;
mod faults;
mod files;
mod gaps;
mod git;
mod hook;
mod hostile;
mod ids;
mod lease;
mod multiprocess;
mod ownership;
mod paths;
mod postgres;
mod resources;
mod util;
mod worktrees;
