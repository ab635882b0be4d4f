//! Attacks on issue 11 (shared coordination state across worktrees and clones).

use std::collections::BTreeSet;
use std::path::Path;
use std::thread;

use crate::util::{git, run_in};
use crate::worktrees::origin;

fn worktree(main: &Path, at: &Path, branch: &str) {
    git(
        main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            branch,
            at.to_str().expect("utf-8"),
        ],
    );
}

/// Several processes using an old-layout (tracked counters) registry for the first time at
/// once: every one must succeed and get a distinct id above the tracked counter.
#[test]
fn attack11_concurrent_migration_of_tracked_counters() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("r");
    std::fs::create_dir(&repo).expect("mkdir");
    run_in(&repo, &["init"], None).ok();
    run_in(&repo, &["file", "--title", "one"], None).ok();
    run_in(&repo, &["ids", "reserve", "GAP-OP", "40"], None).ok();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A", "-f", ".gapreg/ids", "."]);
    git(&repo, &["commit", "-q", "-m", "old layout"]);
    let outs: Vec<(i32, String, String)> = thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let repo = repo.clone();
                s.spawn(move || {
                    let r = run_in(&repo, &["file", "--title", &format!("t{i}")], None);
                    (r.code(), r.stdout(), r.stderr())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect()
    });
    let mut ids = BTreeSet::new();
    for (code, out, err) in &outs {
        assert_eq!(*code, 0, "a first use failed during migration: {err}");
        let n: u64 = out
            .trim()
            .rsplit('-')
            .next()
            .expect("an id")
            .parse()
            .expect("a number");
        assert!(n > 41, "counter lowered: {out}");
        assert!(ids.insert(n), "duplicate id {n}");
    }
}

/// A fresh clone whose tree holds a damaged gap file (e.g. a committed conflict) must not
/// hand out that file's id.
#[test]
fn attack11_fresh_clone_skips_damaged_gap_ids() {
    let (tmp, main) = origin(3);
    std::fs::write(
        main.join(".gapreg/gaps/GAP-OP-3.yaml"),
        "<<<<<<< ours\nnot: [yaml\n",
    )
    .expect("damage");
    git(&main, &["add", "-A"]);
    git(&main, &["commit", "-q", "-m", "damaged"]);
    let clone = tmp.path().join("clone");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            main.to_str().expect("utf-8"),
            clone.to_str().expect("utf-8"),
        ],
    );
    let r = run_in(&clone, &["ids", "reserve", "GAP-OP"], None);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_ne!(
        r.stdout().trim(),
        "GAP-OP-3",
        "the clone handed out an id its tree holds (GAP-OP-3.yaml)"
    );
}

/// A claim taken in one worktree, released by the same agent in another: `unclaim` exits 0,
/// so the claim must be gone (another agent can take it), or the unclaim must fail.
#[test]
fn attack11_unclaim_in_other_worktree_releases_shared_claim() {
    let (tmp, main) = origin(1);
    let wt = tmp.path().join("wt");
    worktree(&main, &wt, "b");
    run_in(&main, &["claim", "GAP-OP-1", "--agent", "A"], None).ok();
    let un = run_in(&wt, &["unclaim", "GAP-OP-1", "--agent", "A"], None);
    if un.code() == 0 {
        let b = run_in(&wt, &["claim", "GAP-OP-1", "--agent", "B"], None);
        assert_eq!(
            b.code(),
            0,
            "unclaim exited 0 but the shared claim is still held: {}",
            b.stderr()
        );
    }
}

/// Concurrent first use of a fresh clone: every reservation distinct and above the tree.
#[test]
fn attack11_concurrent_first_use_in_fresh_clone() {
    let (tmp, main) = origin(5);
    let clone = tmp.path().join("clone");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            main.to_str().expect("utf-8"),
            clone.to_str().expect("utf-8"),
        ],
    );
    let outs: Vec<(i32, String, String)> = thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let c = clone.clone();
                s.spawn(move || {
                    let r = run_in(&c, &["ids", "reserve", "GAP-OP"], None);
                    (r.code(), r.stdout(), r.stderr())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect()
    });
    let mut ids = BTreeSet::new();
    for (code, out, err) in &outs {
        assert_eq!(*code, 0, "{err}");
        let n: u64 = out
            .trim()
            .rsplit('-')
            .next()
            .expect("an id")
            .parse()
            .expect("a number");
        assert!(n > 5, "handed out {out}");
        assert!(ids.insert(n), "duplicate {n}");
    }
}

/// A lease taken in the main worktree must guard a commit made in a linked worktree (the
/// leases are shared by every worktree of the clone).
#[test]
fn attack11_hook_guards_commits_in_a_linked_worktree() {
    let (tmp, main) = origin(0);
    std::fs::create_dir(main.join("src")).expect("src");
    std::fs::write(main.join("src/a.rs"), "a\n").expect("a");
    git(&main, &["add", "-A"]);
    git(&main, &["commit", "-q", "-m", "src"]);
    let wt = tmp.path().join("wt");
    worktree(&main, &wt, "b");
    run_in(
        &main,
        &["lease", "acquire", "--holder", "B", "--file", "src/a.rs"],
        None,
    )
    .ok();
    std::fs::write(wt.join("src/a.rs"), "changed\n").expect("change");
    git(&wt, &["add", "src/a.rs"]);
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["commit", "-q", "-m", "x"])
        .current_dir(&wt)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GAPREG_DIR")
        .env("GAPREG_HOLDER", "C")
        .output()
        .expect("git");
    assert_eq!(
        out.status.code(),
        Some(1),
        "commit in the linked worktree inside B's lease was not refused: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A claim with a TTL lapses; another agent takes it in another worktree; a third agent in
/// the first worktree must then be refused and `ready` there must leave it out.
#[test]
fn attack11_takeover_after_ttl_is_seen_everywhere() {
    let (tmp, main) = origin(1);
    let wt = tmp.path().join("wt");
    worktree(&main, &wt, "b");
    run_in(
        &main,
        &["claim", "GAP-OP-1", "--agent", "A", "--ttl", "1s"],
        None,
    )
    .ok();
    std::thread::sleep(std::time::Duration::from_millis(2200));
    run_in(&wt, &["claim", "GAP-OP-1", "--agent", "B"], None).ok();
    let ready = run_in(&main, &["--json", "ready"], None).json();
    assert_eq!(ready.as_array().map(Vec::len), Some(0), "{ready}");
    let c = run_in(&main, &["claim", "GAP-OP-1", "--agent", "C"], None);
    assert_eq!(c.code(), 5, "granted twice: {}{}", c.stdout(), c.stderr());
    let a = run_in(
        &main,
        &["claim", "GAP-OP-1", "--agent", "A", "--renew"],
        None,
    );
    assert_ne!(a.code(), 0, "A renewed a claim B took over: {}", a.stdout());
}

/// Many first uses of an old-layout registry at once, mixing commands.
#[test]
fn attack11_concurrent_migration_mixed_commands() {
    for round in 0..3 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("r");
        std::fs::create_dir(&repo).expect("mkdir");
        run_in(&repo, &["init"], None).ok();
        run_in(&repo, &["ids", "reserve", "SEC", "9"], None).ok();
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "-A", "-f", ".gapreg/ids", "."]);
        git(&repo, &["commit", "-q", "-m", "old layout"]);
        let outs: Vec<(i32, String, String)> = thread::scope(|s| {
            let hs: Vec<_> = (0..10)
                .map(|_| {
                    let repo = repo.clone();
                    s.spawn(move || {
                        let r = run_in(&repo, &["ids", "reserve", "SEC"], None);
                        (r.code(), r.stdout(), r.stderr())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("join")).collect()
        });
        let mut ids = BTreeSet::new();
        for (code, out, err) in &outs {
            assert_eq!(
                *code, 0,
                "round {round}: first use failed during migration: {err}"
            );
            let n: u64 = out
                .trim()
                .rsplit('-')
                .next()
                .expect("an id")
                .parse()
                .expect("a number");
            assert!(n > 9, "round {round}: counter lowered: {out}");
            assert!(ids.insert(n), "round {round}: duplicate id {n}");
        }
    }
}
