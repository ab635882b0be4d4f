//! `gapreg git setup` and the merge driver, end to end with real git: two branches that change
//! different fields of one gap merge with no conflict, tags added on both merge, the same field
//! changed twice is a conflict git reports naming the field, a merge that closes a dependency
//! cycle is reported by `gapreg doctor`, and setup is idempotent.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::util::{Repo, git};

/// Runs `git ARGS` in `dir` like [`git`], returning the output whatever the exit status.
fn git_try(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GAPREG_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run git")
}

/// A git repository with a committed registry holding `gaps` gaps (GAP-OP-1…), set up for
/// the merge driver, on branch `main`.
fn repo_with_gaps(gaps: usize) -> Repo {
    let repo = Repo::bare();
    git(repo.path(), &["init", "-q"]);
    // Inside git, `gapreg init` runs the setup steps.
    let init = repo.run(&["init"]).ok();
    assert!(init.contains("registered the merge driver"), "{init}");
    for i in 1..=gaps {
        let title = format!("gap {i}");
        repo.run(&["file", "--title", &title, "--prefix", "OP", "--tag", "base"])
            .ok();
    }
    let setup = repo.run(&["git", "setup"]).ok();
    assert!(setup.contains("already set up"), "{setup}");
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "registry"]);
    repo
}

fn gap_file(repo: &Repo, id: &str) -> std::path::PathBuf {
    repo.registry().join("gaps").join(format!("{id}.yaml"))
}

/// Edits a gap file by hand as a person would: `change` on the text, `rev` bumped.
fn hand_edit(repo: &Repo, id: &str, change: impl Fn(&str) -> String) {
    let path = gap_file(repo, id);
    let text = std::fs::read_to_string(&path).expect("read gap");
    let mut gap = gapreg::parse_gap_yaml(change(&text).as_bytes()).expect("edited gap parses");
    gap.rev += 1;
    std::fs::write(&path, gapreg::gap_to_yaml(&gap).expect("yaml")).expect("write gap");
}

fn commit_on(repo: &Repo, branch: &str, from: &str, work: impl FnOnce()) {
    git(repo.path(), &["checkout", "-q", "-b", branch, from]);
    work();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", branch]);
}

fn show(repo: &Repo, id: &str) -> gapreg::Gap {
    let text = std::fs::read(gap_file(repo, id)).expect("read gap");
    gapreg::parse_gap_yaml(&text).expect("merged gap parses")
}

fn merge(repo: &Repo, branch: &str) -> Output {
    git_try(repo.path(), &["merge", "--no-edit", "-q", branch])
}

#[test]
fn status_on_one_branch_and_a_dependency_on_the_other_merge_cleanly() {
    let repo = repo_with_gaps(2);
    let before = show(&repo, "GAP-OP-1");
    commit_on(&repo, "a", "main", || {
        repo.run(&["status", "GAP-OP-1", "blocked"]).ok();
    });
    let a = show(&repo, "GAP-OP-1");
    commit_on(&repo, "b", "main", || {
        repo.run(&["dep", "add", "GAP-OP-1", "--on", "GAP-OP-2"])
            .ok();
    });
    let b = show(&repo, "GAP-OP-1");
    git(repo.path(), &["checkout", "-q", "a"]);
    let out = merge(&repo, "b");
    assert!(
        out.status.success(),
        "merge failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = show(&repo, "GAP-OP-1");
    assert_eq!(merged.status, gapreg::Status::Blocked);
    assert_eq!(merged.depends_on, ["GAP-OP-2"]);
    assert_eq!(merged.rev, a.rev.max(b.rev) + 1);
    assert!(merged.rev > before.rev + 1);
    assert_eq!(merged.updated_at, a.updated_at.max(b.updated_at));
    // The registry reads the merged tree: the index notices and the gap shows both changes.
    let shown = repo.run(&["--json", "show", "GAP-OP-1"]).json();
    assert_eq!(shown["status"], "blocked", "{shown}");
    assert_eq!(shown["depends_on"][0], "GAP-OP-2", "{shown}");
    // Listing notices that the merge changed gaps/ and rebuilds the index (a cache).
    repo.run(&["list"]).ok();
    let doctor = repo.run(&["doctor"]);
    assert_eq!(doctor.code(), 0, "{}{}", doctor.stdout(), doctor.stderr());
}

#[test]
fn tags_added_on_both_branches_merge() {
    let repo = repo_with_gaps(1);
    commit_on(&repo, "a", "main", || {
        hand_edit(&repo, "GAP-OP-1", |t| {
            t.replace("- base\n", "- base\n- api\n")
        });
    });
    commit_on(&repo, "b", "main", || {
        hand_edit(&repo, "GAP-OP-1", |t| t.replace("- base\n", "- cli\n"));
    });
    git(repo.path(), &["checkout", "-q", "a"]);
    let out = merge(&repo, "b");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // b removed `base` (a left it alone), a added `api`, b added `cli`.
    assert_eq!(show(&repo, "GAP-OP-1").tags, ["api", "cli"]);
}

#[test]
fn the_same_field_changed_differently_is_a_conflict_naming_it() {
    let repo = repo_with_gaps(1);
    commit_on(&repo, "a", "main", || {
        hand_edit(&repo, "GAP-OP-1", |t| {
            t.replace("title: gap 1", "title: Ours")
        });
    });
    commit_on(&repo, "b", "main", || {
        hand_edit(&repo, "GAP-OP-1", |t| {
            t.replace("title: gap 1", "title: Theirs")
        });
        repo.run(&["status", "GAP-OP-1", "ready"]).ok();
    });
    git(repo.path(), &["checkout", "-q", "a"]);
    let out = merge(&repo, "b");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("CONFLICT"), "{said}");
    assert!(
        said.contains("title changed on both branches"),
        "git's output names the field: {said}"
    );
    let unmerged = git_try(repo.path(), &["diff", "--name-only", "--diff-filter=U"]);
    assert_eq!(
        String::from_utf8_lossy(&unmerged.stdout).trim(),
        ".gapreg/gaps/GAP-OP-1.yaml"
    );
    let text = std::fs::read_to_string(gap_file(&repo, "GAP-OP-1")).expect("read");
    assert!(
        text.contains("<<<<<<< ours: title changed on both branches\ntitle: Ours\n"),
        "{text}"
    );
    assert!(
        text.contains("=======\ntitle: Theirs\n>>>>>>> theirs\n"),
        "{text}"
    );
    // What did not conflict is merged: their status is there.
    assert!(text.contains("status: ready\n"), "{text}");
}

#[test]
fn a_merge_that_closes_a_dependency_cycle_is_reported_by_doctor() {
    let repo = repo_with_gaps(2);
    commit_on(&repo, "a", "main", || {
        repo.run(&["dep", "add", "GAP-OP-1", "--on", "GAP-OP-2"])
            .ok();
    });
    commit_on(&repo, "b", "main", || {
        repo.run(&["dep", "add", "GAP-OP-2", "--on", "GAP-OP-1"])
            .ok();
    });
    git(repo.path(), &["checkout", "-q", "a"]);
    let out = merge(&repo, "b");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doctor = repo.run(&["doctor"]);
    assert_eq!(doctor.code(), 6, "{}{}", doctor.stdout(), doctor.stderr());
    let said = format!("{}{}", doctor.stdout(), doctor.stderr());
    assert!(said.contains("cycle"), "{said}");
    assert!(
        said.contains("GAP-OP-1") && said.contains("GAP-OP-2"),
        "{said}"
    );
}

#[test]
fn both_branches_filing_the_same_id_is_a_conflict_naming_both_titles() {
    let repo = repo_with_gaps(0);
    commit_on(&repo, "a", "main", || {
        repo.run(&["file", "--title", "Lock contention", "--prefix", "OP"])
            .ok();
    });
    // Two clones that share no coordinator (here: the clone's shared counters removed, so
    // branch b counts from its own documents, as a separate clone would).
    std::fs::remove_dir_all(repo.path().join(".git/gapreg")).expect("forget counters");
    commit_on(&repo, "b", "main", || {
        repo.run(&["file", "--title", "No parent flag", "--prefix", "OP"])
            .ok();
    });
    git(repo.path(), &["checkout", "-q", "a"]);
    let out = merge(&repo, "b");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    for needle in [
        "both branches filed GAP-OP-1",
        "Lock contention",
        "No parent flag",
        "gapreg doctor",
    ] {
        assert!(said.contains(needle), "{needle:?} not in {said}");
    }
}

#[test]
fn git_setup_is_idempotent_and_keeps_existing_attributes() {
    let repo = Repo::bare();
    // The registry first, so that `init` does not run the setup itself.
    repo.run(&["init"]).ok();
    git(repo.path(), &["init", "-q"]);
    std::fs::write(repo.path().join(".gitattributes"), "*.png binary\n").expect("write");
    let first = repo.run(&["git", "setup"]).ok();
    assert!(first.contains("updated"), "{first}");
    assert!(first.contains("registered the merge driver"), "{first}");
    let attrs = std::fs::read_to_string(repo.path().join(".gitattributes")).expect("read");
    assert!(attrs.starts_with("*.png binary\n"), "{attrs}");
    assert!(
        attrs.contains(".gapreg/gaps/*.yaml merge=gapreg\n"),
        "{attrs}"
    );
    assert!(
        attrs.contains(".gapreg/loops/*.md merge=gapreg\n"),
        "{attrs}"
    );
    let driver = git_try(
        repo.path(),
        &["config", "--local", "--get", "merge.gapreg.driver"],
    );
    let driver = String::from_utf8_lossy(&driver.stdout).into_owned();
    assert!(
        driver.contains("merge-driver --ancestor %O --ours %A --theirs %B --path %P"),
        "{driver}"
    );
    let check = git_try(
        repo.path(),
        &["check-attr", "merge", ".gapreg/gaps/GAP-OP-9.yaml"],
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("merge: gapreg"));

    let second = repo.run(&["git", "setup"]).ok();
    assert!(second.contains("already set up"), "{second}");
    assert_eq!(
        std::fs::read_to_string(repo.path().join(".gitattributes")).expect("read"),
        attrs
    );
    let json = repo.run(&["--json", "git", "setup"]).json();
    assert_eq!(json["changed"], false, "{json}");
    assert_eq!(json["steps"].as_array().map(Vec::len), Some(3), "{json}");
}

#[test]
fn git_setup_outside_git_fails_and_the_driver_refuses_symlinks() {
    let repo = Repo::new();
    let out = repo.run(&["git", "setup"]);
    assert_ne!(out.code(), 0);
    assert!(out.stderr().contains("git"), "{}", out.stderr());

    // The driver never reads through a symlink.
    let gap = std::fs::read(gap_path_of_first(&repo)).expect("read");
    std::fs::write(repo.path().join("o"), &gap).expect("write");
    std::fs::write(repo.path().join("t"), &gap).expect("write");
    std::os::unix::fs::symlink("o", repo.path().join("a")).expect("symlink");
    let out = repo.run(&[
        "merge-driver",
        "--ancestor",
        "a",
        "--ours",
        "o",
        "--theirs",
        "t",
    ]);
    assert_eq!(out.code(), 6, "{}", out.stderr());
    // A side larger than 1 MiB is refused, not read.
    std::fs::write(repo.path().join("big"), vec![b'#'; (1 << 20) + 1]).expect("write");
    let out = repo.run(&[
        "merge-driver",
        "--ancestor",
        "big",
        "--ours",
        "o",
        "--theirs",
        "t",
    ]);
    assert_ne!(out.code(), 0, "{}", out.stderr());
    assert_eq!(std::fs::read(repo.path().join("o")).expect("read"), gap);
}

fn gap_path_of_first(repo: &Repo) -> std::path::PathBuf {
    repo.run(&["file", "--title", "x"]).ok();
    let dir = repo.registry().join("gaps");
    let entry = std::fs::read_dir(&dir)
        .expect("gaps dir")
        .next()
        .expect("a gap")
        .expect("entry");
    entry.path()
}

#[test]
fn a_loop_changed_in_its_front_matter_and_its_body_merges_cleanly() {
    let repo = Repo::bare();
    git(repo.path(), &["init", "-q"]);
    repo.run(&["init"]).ok();
    repo.run(&["loop", "new", "LOOP-A", "--objective", "Ship it"])
        .ok();
    repo.run(&["git", "setup"]).ok();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "loop"]);
    let path = repo.registry().join("loops").join("LOOP-A.md");
    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&path).expect("read loop");
        assert!(text.contains(from), "{text}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write loop");
    };
    commit_on(&repo, "a", "main", || {
        edit("status: \"active\"", "status: closed")
    });
    // The next line too: a line-by-line merge would conflict here.
    commit_on(&repo, "b", "main", || {
        edit("owner: \"\"", "owner: \"@ana\"");
        edit("### Step 1: ...", "### Step 1: write the merge driver");
    });
    git(repo.path(), &["checkout", "-q", "a"]);
    let out = merge(&repo, "b");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("read loop");
    assert!(text.contains("status: closed\nowner: \"@ana\"\n"), "{text}");
    assert!(
        text.contains("### Step 1: write the merge driver"),
        "{text}"
    );
    let shown = repo.run(&["--json", "loop", "show", "LOOP-A"]).json();
    assert_eq!(shown["status"], "closed", "{shown}");
}
