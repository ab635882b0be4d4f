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

    /// Starts this test binary again, running only the ignored test `name` with the variable
    /// set to `param`; stdout is piped to the parent, stderr inherited.
    pub fn spawn(&self, name: &str, param: &str) -> Child {
        let exe = std::env::current_exe().expect("current test binary");
        Command::new(exe)
            .args([
                name,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(self.env, param)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child")
    }

    /// The parameter passed to this process if it is a child.
    pub fn param(&self) -> Option<String> {
        std::env::var(self.env).ok()
    }
}
