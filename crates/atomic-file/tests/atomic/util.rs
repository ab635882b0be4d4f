//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Set in a child process; holds the role's parameters.
pub const CHILD_ENV: &str = "ATOMIC_FILE_CHILD";

/// Starts this test binary again, running only the ignored test `name`, with `CHILD_ENV` set to
/// `param`.
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
