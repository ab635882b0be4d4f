//! Someone else's registry: root running a command in another user's repository leaves
//! nothing the owner cannot use, and a read-only checkout can still be read.
//!
//! The tests run as root (as in CI); they give the repository to `nobody` (uid 65534) and run
//! the binary as root or as `nobody`.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::util::{Repo, bin};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    rustix_euid() == 0
}

fn rustix_euid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn chown_tree(dir: &Path, uid: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(dir)
        .status()
        .expect("chown");
    assert!(status.success());
}

/// Every entry under `dir` whose owner is not `uid`.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list").flatten() {
            let meta = std::fs::symlink_metadata(e.path()).expect("lstat");
            if meta.uid() != uid || meta.gid() != uid {
                out.push(format!(
                    "{} ({}:{})",
                    e.path().display(),
                    meta.uid(),
                    meta.gid()
                ));
            }
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn run_as(uid: Option<u32>, dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(dir).env_remove("GAPREG_DIR");
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    cmd.output().expect("run gapreg")
}

#[test]
fn root_in_another_users_registry_leaves_only_files_the_owner_owns() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let repo = Repo::new();
    repo.run(&["file", "--title", "first", "--severity", "high"])
        .ok();
    chown_tree(repo.path(), NOBODY);
    // Root reads (stale index: rebuilt), files, claims, leases and checks.
    std::fs::remove_file(repo.registry().join("index.log")).expect("stale index");
    for args in [
        &["list"][..],
        &["file", "--title", "by root", "--severity", "low"],
        &["claim", "GAP-OP-1", "--agent", "root"],
        &["lease", "acquire", "--holder", "root", "--file", "src/a.rs"],
        &["ids", "reserve", "SEC"],
        &["file", "--batch", "-"],
        &["doctor", "--repair"],
    ] {
        let out = if args == ["file", "--batch", "-"] {
            let mut child = Command::new(bin())
                .args(args)
                .current_dir(repo.path())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"- {prefix: OP, title: a}\n- {prefix: OP, title: b}\n")
                .expect("batch");
            child.wait_with_output().expect("wait")
        } else {
            run_as(None, repo.path(), args)
        };
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let wrong = not_owned_by(&repo.registry(), NOBODY);
    assert!(
        wrong.is_empty(),
        "root left files the owner does not own: {wrong:#?}"
    );
    // And the owner can go on writing.
    for args in [
        &["file", "--title", "by the owner", "--severity", "low"][..],
        &[
            "lease", "acquire", "--holder", "owner", "--file", "src/b.rs",
        ],
        &["ids", "reserve", "SEC"],
    ] {
        let out = run_as(Some(NOBODY), repo.path(), args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_read_only_checkout_can_be_listed_with_a_stale_index() {
    if !is_root() {
        eprintln!("skipped: needs root to run as another user");
        return;
    }
    let repo = Repo::new();
    for t in ["one", "two"] {
        repo.run(&["file", "--title", t, "--severity", "high"]).ok();
    }
    // The index is stale (as after a checkout) and nobody but root may write anything.
    std::fs::remove_file(repo.registry().join("index.log")).expect("stale index");
    let status = Command::new("chmod")
        .args(["-R", "a-w,a+rX"])
        .arg(repo.path())
        .status()
        .expect("chmod");
    assert!(status.success());
    for args in [
        &["list"][..],
        &["ready"],
        &["summary"],
        &["show", "GAP-OP-2"],
        &["render"],
    ] {
        let out = run_as(Some(NOBODY), repo.path(), args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?} in a read-only checkout: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if args == ["list"] {
            assert!(
                stdout.contains("GAP-OP-1") && stdout.contains("GAP-OP-2"),
                "{stdout}"
            );
        }
    }
    assert!(
        !repo.registry().join("index.log").exists(),
        "nothing was written"
    );
}
