//! Helpers for multi-process tests: a test binary re-executes itself as child processes.
//!
//! A child is one `#[ignore]`d test of the same binary, selected with `--exact --ignored`; the
//! parent passes its parameters in an environment variable and reads what it prints.
//!
//! ```
//! use testkit::Children;
//!
//! const CHILDREN: Children = Children::new("MY_CRATE_CHILD");
//! // In the parent: `CHILDREN.spawn("module::child_worker", "param")`.
//! // In `child_worker`: `let Some(param) = CHILDREN.param() else { return };`
//! assert!(CHILDREN.param().is_none());
//! ```
#![deny(missing_docs)]

pub mod pg;

use std::process::{Child, Command, Stdio};

/// Child processes of one test binary, told apart from the parent by the variable `env`.
#[derive(Debug, Clone, Copy)]
pub struct Children {
    env: &'static str,
}

impl Children {
    /// Children marked by the environment variable `env`.
    pub const fn new(env: &'static str) -> Children {
        Children { env }
    }

    /// The command that runs this test binary again, only the ignored test `name`, with the
    /// variable set to `param`; stdout is piped to the parent, stderr inherited. Adjust it
    /// (for example `uid`) and spawn it, or use [`Children::spawn`].
    pub fn command(&self, name: &str, param: &str) -> Command {
        let exe = std::env::current_exe().expect("current test binary");
        let mut cmd = Command::new(exe);
        cmd.args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(self.env, param)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        cmd
    }

    /// Starts the child `name` with `param` (see [`Children::command`]).
    pub fn spawn(&self, name: &str, param: &str) -> Child {
        self.command(name, param).spawn().expect("spawn child")
    }

    /// One round of a crash test: starts `processes` children `name` at once, SIGKILLs them
    /// all after a random delay in `delay_us` (microseconds), reaps them, and returns every
    /// line they printed before they died.
    pub fn kill_round(
        &self,
        name: &str,
        param: &str,
        processes: usize,
        delay_us: std::ops::Range<u64>,
    ) -> Vec<String> {
        use std::io::{BufRead, BufReader};
        let mut children: Vec<Child> = (0..processes).map(|_| self.spawn(name, param)).collect();
        std::thread::sleep(std::time::Duration::from_micros(fastrand::u64(delay_us)));
        for child in &mut children {
            child.kill().expect("SIGKILL");
        }
        let mut lines = Vec::new();
        for mut child in children {
            // Reaped, so its pid no longer exists (a zombie's would).
            child.wait().expect("reap");
            let stdout = BufReader::new(child.stdout.take().expect("stdout"));
            lines.extend(stdout.lines().map_while(Result::ok));
        }
        lines
    }

    /// The parameter passed to this process if it is a child.
    pub fn param(&self) -> Option<String> {
        std::env::var(self.env).ok()
    }
}
