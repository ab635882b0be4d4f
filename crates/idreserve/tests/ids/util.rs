//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

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

/// What a tree holds, without following links: per relative path, the entry's type and
/// contents (file bytes, link target), mode and modification time.
pub type Snapshot = BTreeMap<PathBuf, (String, Vec<u8>, u32, i64, i64)>;

/// A [`Snapshot`] of everything under `root`.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let rel = path.strip_prefix(root).expect("inside").to_path_buf();
        let ft = meta.file_type();
        let (kind, data) = if ft.is_symlink() {
            let target = fs::read_link(&path).expect("readlink");
            ("link", target.into_os_string().into_encoded_bytes())
        } else if ft.is_dir() {
            for e in fs::read_dir(&path).expect("list") {
                stack.push(e.expect("entry").path());
            }
            ("dir", Vec::new())
        } else if ft.is_file() {
            ("file", fs::read(&path).expect("read"))
        } else {
            ("special", Vec::new())
        };
        // A directory's mtime changes when entries come and go; so does a file's when written.
        out.insert(
            rel,
            (
                kind.to_owned(),
                data,
                meta.mode(),
                meta.mtime(),
                meta.mtime_nsec(),
            ),
        );
    }
    out
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (a call that
/// blocks forever, on a FIFO say, must not hang the suite).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(_) => panic!("{what} did not return within {limit:?} (started {start:?})"),
    }
}

/// Creates a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}
