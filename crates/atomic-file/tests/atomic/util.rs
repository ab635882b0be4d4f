//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Child;

/// Set in a child process; holds the role's parameters.
pub const CHILD_ENV: &str = "ATOMIC_FILE_CHILD";

/// This test binary's child processes (see `testkit`).
pub const CHILDREN: testkit::Children = testkit::Children::new(CHILD_ENV);

/// Starts this test binary again, running only the ignored test `name` with `param`.
pub fn spawn_child(name: &str, param: &str) -> Child {
    CHILDREN.spawn(name, param)
}

/// The parameter passed to this process if it is a child.
pub fn child_param() -> Option<String> {
    CHILDREN.param()
}

/// This crate's temp files in `dir`: hidden names ending in `.atomic-tmp`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".atomic-tmp"))
        })
        .collect();
    found.sort();
    found
}
