//! `gapreg::gitdir` against real git: the main worktree, linked worktrees (also from a
//! subdirectory) and a submodule resolve to what `git rev-parse` says.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_COMMON_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn real(p: &str, base: &Path) -> PathBuf {
    std::fs::canonicalize(base.join(p)).expect("canonical")
}

fn git_available() -> bool {
    Command::new("git").arg("--version").output().is_ok()
}

/// What git itself says of `dir`: (top level, git dir, common dir).
fn rev_parse(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        real(&git(dir, &["rev-parse", "--show-toplevel"]), dir),
        real(&git(dir, &["rev-parse", "--git-dir"]), dir),
        real(&git(dir, &["rev-parse", "--git-common-dir"]), dir),
    )
}

#[test]
fn worktrees_of_one_clone_share_the_common_dir_git_reports() {
    if !git_available() {
        eprintln!("skipped: no git");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let main = tmp.path().join("main");
    std::fs::create_dir(&main).expect("mkdir");
    git(&main, &["init", "-q"]);
    git(
        &main,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
    );
    git(&main, &["worktree", "add", "-q", "../wt1"]);
    git(
        &main,
        &["worktree", "add", "-q", "-b", "b2", "../nested/wt2"],
    );
    let sub = tmp.path().join("nested/wt2/src/deep");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let mut commons = Vec::new();
    for dir in [main.clone(), tmp.path().join("wt1"), sub] {
        let found = gapreg::gitdir::find(&dir).expect("find").expect("in git");
        let (top, git_dir, common) = rev_parse(&dir);
        assert_eq!(found.work_tree, top, "{}", dir.display());
        assert_eq!(found.git_dir, git_dir, "{}", dir.display());
        assert_eq!(found.common_dir, common, "{}", dir.display());
        commons.push(found.common_dir);
    }
    assert!(commons.windows(2).all(|w| w[0] == w[1]), "{commons:?}");
}

#[test]
fn outside_git_there_is_none_and_a_broken_pointer_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A temp dir may sit inside a git work tree on a developer's machine: only assert what
    // is under our control.
    let dir = tmp.path().join("w");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join(".git"), "gitdir: /nonexistent/worktrees/w\n").expect("write");
    let err = gapreg::gitdir::find(&dir).expect_err("dangling");
    assert!(
        err.to_string().contains("/nonexistent/worktrees/w"),
        "{err}"
    );
    std::fs::write(dir.join(".git"), "not a pointer\n").expect("write");
    let err = gapreg::gitdir::find(&dir).expect_err("garbage");
    assert!(err.to_string().contains("gitdir: PATH"), "{err}");
}
