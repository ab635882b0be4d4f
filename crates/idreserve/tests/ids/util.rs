//! Helpers shared by the integration tests.

use std::process::Child;

/// This test binary's child processes (see `testkit`).
pub const CHILDREN: testkit::Children = testkit::Children::new("IDRESERVE_CHILD");

/// Starts this test binary again, running only the ignored test `name` with `param`.
pub fn spawn_child(name: &str, param: &str) -> Child {
    CHILDREN.spawn(name, param)
}

/// The parameter passed to this process if it is a child.
pub fn child_param() -> Option<String> {
    CHILDREN.param()
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
