//! Attacks on issue 13 (the storage seam, the batch fast path, the file table), through the
//! real binary, with real child processes, strace fault/signal injection and real git.
//!
//! Each test states the promise it checks; a failing test is a bug found.

use std::path::Path;
use std::process::Command;

use crate::util::{Repo, strace_works, traced};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The batch fault matrix (faults.rs) judges a batch by `list`, which finishes a committed
/// batch before answering. `show` does not: after `file --batch` exits 0 and prints three ids
/// (the fault hit the first rename out of `staging/`, after the manifest committed the
/// batch), `gapreg show` of each printed id says "does not exist" (exit 4) until some other
/// command happens to finish the batch, and `doctor` (no --repair) counts 1 gap and calls the
/// registry unhealthy. The promise "exit 0 of a batch means visible" — and the warning
/// printed, "the next gapreg command finishes moving them" — do not hold for `show`.
#[test]
fn attack13_batch_exit_0_after_a_rename_fault_is_visible_to_show() {
    if !strace_works() {
        return;
    }
    let repo = Repo::new();
    repo.run(&["file", "--title", "filed before", "--severity", "low"])
        .ok();
    std::fs::write(
        repo.path().join("b.yaml"),
        "- {prefix: OP, title: one}\n- {prefix: OP, title: two, depends_on: [\"@0\"]}\n- {prefix: OP, title: three}\n",
    )
    .expect("batch file");
    // renameat #1 puts the manifest in place (the batch is committed); #2 is the first move
    // out of staging/.
    let run = traced(
        repo.path(),
        "renameat",
        "error=EIO:when=2",
        &["file", "--batch", "b.yaml"],
    );
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr());
    let printed: Vec<String> = run.stdout().lines().map(str::to_owned).collect();
    assert_eq!(printed, ["GAP-OP-2", "GAP-OP-3", "GAP-OP-4"]);
    // Readers only, in the order an agent would use them: look each printed gap up.
    let mut violations = Vec::new();
    for id in &printed {
        let show = repo.run(&["show", id, "--json"]);
        if show.code() != 0 {
            violations.push(format!(
                "`show {id}` exits {} after the batch exited 0 and printed it: {}",
                show.code(),
                show.stderr().trim()
            ));
        }
    }
    let doctor = repo.run(&["doctor"]);
    if doctor.code() != 0 {
        violations.push(format!(
            "`doctor` exits {} right after the batch exited 0: {}",
            doctor.code(),
            doctor.stdout().trim()
        ));
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

/// The same window reached by a writer killed (SIGKILL) right after its manifest committed
/// the batch: `list` shows the three gaps (it finishes the batch), but `show` of one of them,
/// asked first, says it does not exist. Two readers disagree about whether a gap exists.
#[test]
fn attack13_show_and_list_agree_after_a_batch_writer_is_killed_after_its_commit() {
    if !strace_works() {
        return;
    }
    let repo = Repo::new();
    std::fs::write(
        repo.path().join("b.yaml"),
        "- {prefix: OP, title: one}\n- {prefix: OP, title: two}\n",
    )
    .expect("batch file");
    let run = traced(
        repo.path(),
        "renameat",
        "signal=KILL:when=2",
        &["file", "--batch", "b.yaml"],
    );
    assert_ne!(run.0.status.code(), Some(0), "the writer was not killed");
    assert!(
        repo.registry().join("batch.pending").exists(),
        "the kill did not land after the commit"
    );
    let show = repo.run(&["show", "GAP-OP-1", "--json"]);
    let list = repo.run(&["list", "--json"]).json();
    let listed: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|g| g["id"].as_str())
        .collect();
    assert_eq!(listed, ["GAP-OP-1", "GAP-OP-2"]);
    assert_eq!(
        show.code(),
        0,
        "`show GAP-OP-1` (asked before `list`) says: {}",
        show.stderr().trim()
    );
}

/// The file table (layout.rs) promises every file under `.gapreg/` is named, and that after
/// any kind of write git sees only the documents. A `lease acquire` killed (SIGKILL) while it
/// creates the leases directory leaves leaselock's staging directory
/// `.gapreg/.leases.init-<pid>-<random>/token.json` (leaselock exports its name,
/// `STAGING_INFIX`, but gapreg's `.gitignore` does not cite it): `git status` shows it
/// untracked, `git add -A` would commit it, later lease commands leave it, and
/// `doctor --repair` calls the registry healthy and leaves it too.
#[test]
fn attack13_a_killed_first_lease_leaves_nothing_git_would_commit() {
    if !strace_works() {
        return;
    }
    let repo = Repo::bare();
    git(repo.path(), &["init", "-q", "."]);
    repo.run(&["init"]).ok();
    std::fs::create_dir(repo.path().join("src")).expect("src");
    std::fs::write(repo.path().join("src/a.rs"), "fn main() {}\n").expect("a.rs");
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "init"]);
    // renameat #1: token.json into the staging directory; #2: the staging directory onto
    // `leases`.
    let run = traced(
        repo.path(),
        "renameat",
        "signal=KILL:when=2",
        &["lease", "acquire", "--holder", "H", "--file", "src/a.rs"],
    );
    assert_ne!(
        run.0.status.code(),
        Some(0),
        "the lease writer was not killed"
    );
    repo.run(&["lease", "acquire", "--holder", "H", "--file", "src/a.rs"])
        .ok();
    let doctor = repo.run(&["doctor", "--repair"]);
    let status = git(
        repo.path(),
        &["status", "--porcelain", "--untracked-files=all"],
    );
    assert!(
        status.trim().is_empty(),
        "git sees files gapreg wrote (doctor --repair exit {}: {}):\n{status}",
        doctor.code(),
        doctor.stdout().trim()
    );
}

/// Leases refuse a zero time to live (exit 3, "the time to live is zero"); a claim accepts
/// `--ttl 0`, answers "claimed" with exit 0, and the claim has already lapsed: a second agent
/// claims the same gap at once, also with exit 0. Two agents were each told they hold it.
#[test]
fn attack13_a_zero_ttl_claim_is_refused_not_granted_already_lapsed() {
    let repo = Repo::new();
    repo.run(&["file", "--title", "t", "--severity", "low"])
        .ok();
    let a = repo.run(&["claim", "GAP-OP-1", "--agent", "A", "--ttl", "0"]);
    let b = repo.run(&["claim", "GAP-OP-1", "--agent", "B"]);
    assert!(
        a.code() == 3 || b.code() == 5,
        "A's `claim --ttl 0` exits {} ({}) and then B's claim exits {} ({}): both were \
         granted",
        a.code(),
        a.stdout().trim(),
        b.code(),
        b.stdout().trim()
    );
}
