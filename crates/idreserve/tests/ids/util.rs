//! Helpers shared by the integration tests.

use std::process::{Child, Command, Stdio};

/// Set in a child process; holds the role's parameters.
pub const CHILD_ENV: &str = "IDRESERVE_CHILD";

/// Starts this test binary again, running only the ignored test `name`.
pub fn spawn_child(name: &str, param: &str) -> Child {
    let exe = std::env::current_exe().expect("current test binary");
    Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, param)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

/// The parameter passed to this process if it is a child.
pub fn child_param() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// The IDs a child printed: lines of the form `ID <id>` (libtest may glue its own text in
/// front of the first one).
pub fn printed_ids(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| line.split_once("ID ").map(|(_, id)| id.trim().to_owned()))
        .filter(|id| !id.is_empty())
        .collect()
}
