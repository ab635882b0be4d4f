//! One registry for every worktree of a clone (issue 11): the coordination state lives
//! under the clone's common git directory. Real git, real worktrees, the real binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;

use crate::util::{git, run_in, strace_works, traced};

/// A git repository with a committed registry holding `gaps` gaps, and its temp dir.
pub fn origin(gaps: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let main = tmp.path().join("main");
    std::fs::create_dir(&main).expect("mkdir");
    git(&main, &["init", "-q"]);
    run_in(&main, &["init"], None).ok();
    for i in 0..gaps {
        run_in(&main, &["file", "--title", &format!("seed {i}")], None).ok();
    }
    git(&main, &["add", "-A"]);
    git(&main, &["commit", "-q", "-m", "registry"]);
    (tmp, main)
}

fn numbers(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.trim().rsplit('-').next()?.parse().ok())
        .collect()
}

/// Three worktrees of one clone, four processes in each filing and reserving at once:
/// every gap id and every reserved id is distinct across the worktrees.
#[test]
fn three_worktrees_share_one_set_of_counters() {
    let (tmp, main) = origin(2);
    let mut trees = vec![main.clone()];
    for n in 1..3 {
        let wt = tmp.path().join(format!("wt{n}"));
        git(
            &main,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                &format!("b{n}"),
                wt.to_str().expect("utf-8"),
            ],
        );
        trees.push(wt);
    }
    let outs: Vec<(String, String, String)> = thread::scope(|s| {
        let handles: Vec<_> = trees
            .iter()
            .flat_map(|t| (0..4).map(move |p| (t.clone(), p)))
            .map(|(t, p)| {
                s.spawn(move || {
                    let mut filed = String::new();
                    let mut reserved = String::new();
                    let mut claimed = String::new();
                    let agent = format!("{}-p{p}", t.display());
                    for k in 0..3 {
                        let title = format!("{} p{p} k{k}", t.display());
                        filed.push_str(&run_in(&t, &["file", "--title", &title], None).ok());
                        reserved.push_str(&run_in(&t, &["ids", "reserve", "SEC"], None).ok());
                    }
                    let next = run_in(&t, &["claim", "--next", "--agent", &agent], None);
                    if next.code() == 0 {
                        claimed = next.stdout();
                    }
                    (filed, reserved, claimed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let filed: Vec<u64> = outs.iter().flat_map(|(f, _, _)| numbers(f)).collect();
    let reserved: Vec<u64> = outs.iter().flat_map(|(_, r, _)| numbers(r)).collect();
    let claimed: Vec<&str> = outs
        .iter()
        .map(|(_, _, c)| c.trim())
        .filter(|c| !c.is_empty())
        .collect();
    // Each worktree sees its own documents; a claim is shared: no gap claimed twice.
    assert_eq!(
        claimed.iter().collect::<BTreeSet<_>>().len(),
        claimed.len(),
        "{claimed:?}"
    );
    assert_eq!(filed.len(), 36);
    assert_eq!(filed.iter().collect::<BTreeSet<_>>().len(), 36, "{filed:?}");
    assert!(
        filed.iter().all(|n| *n > 2),
        "ids of the committed gaps reissued: {filed:?}"
    );
    assert_eq!(
        reserved.iter().collect::<BTreeSet<_>>().len(),
        36,
        "{reserved:?}"
    );
    for t in &trees {
        let doctor = run_in(t, &["doctor"], None);
        assert_eq!(doctor.code(), 0, "{}: {}", t.display(), doctor.stdout());
        git(t, &["add", "-A"]);
        git(t, &["commit", "-q", "-m", "work"]);
    }
    // The branches merge into main with no conflict, and main then holds every gap once.
    run_in(&main, &["git", "setup"], None).ok();
    git(&main, &["merge", "-q", "--no-edit", "b1", "b2"]);
    let listed = run_in(&main, &["--json", "list"], None).json();
    let ids: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|g| g["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 38, "{ids:?}");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 38);
    let doctor = run_in(&main, &["doctor"], None);
    assert_eq!(doctor.code(), 0, "{}", doctor.stdout());
}

/// A lease taken in one worktree refuses an overlapping one in another.
#[test]
fn a_lease_in_one_worktree_refuses_an_overlap_in_another() {
    let (tmp, main) = origin(0);
    let wt = tmp.path().join("wt");
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "b",
            wt.to_str().expect("utf-8"),
        ],
    );
    run_in(
        &main,
        &["lease", "acquire", "--holder", "A", "--dir", "src"],
        None,
    )
    .ok();
    let other = run_in(
        &wt,
        &["lease", "acquire", "--holder", "B", "--file", "src/a.rs"],
        None,
    );
    other.fails(5, &["A"]);
}

/// A fresh clone of a repository with a committed registry works at once, and its first
/// reservation is above every id its documents hold.
#[test]
fn a_fresh_clone_works_at_once_above_every_id_it_holds() {
    let (tmp, main) = origin(3);
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
    assert_eq!(run_in(&clone, &["list"], None).code(), 0);
    assert_eq!(run_in(&clone, &["ready"], None).code(), 0);
    let id = run_in(&clone, &["file", "--title", "from the clone"], None).ok();
    assert_eq!(id.trim(), "GAP-OP-4");
    let next = run_in(&clone, &["ids", "reserve", "GAP-OP"], None).ok();
    assert_eq!(next.trim(), "GAP-OP-5");
}

/// A registry whose counters are tracked in `.gapreg/ids` (the old layout) is migrated on
/// first use: the shared counters carry them over, never lower, and the tracked files leave
/// the tree with a notice.
#[test]
fn tracked_counters_are_migrated_never_lowered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("r");
    std::fs::create_dir(&repo).expect("mkdir");
    // The old layout: a registry made outside git (counters in .gapreg/ids), then committed.
    run_in(&repo, &["init"], None).ok();
    run_in(&repo, &["file", "--title", "one"], None).ok();
    run_in(&repo, &["ids", "reserve", "GAP-OP", "40"], None).ok();
    run_in(&repo, &["ids", "reserve", "SEC", "7"], None).ok();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A", "-f", ".gapreg/ids", "."]);
    git(&repo, &["commit", "-q", "-m", "old layout"]);
    let first = run_in(&repo, &["file", "--title", "two"], None);
    assert_eq!(first.code(), 0, "{}", first.stderr());
    assert_eq!(first.stdout().trim(), "GAP-OP-42", "counters lowered");
    assert!(
        first.stderr().contains("moved the id counters"),
        "{}",
        first.stderr()
    );
    assert_eq!(
        run_in(&repo, &["ids", "reserve", "SEC"], None).ok().trim(),
        "SEC-8"
    );
    assert!(!repo.join(".gapreg/ids/counters.log").exists());
    assert!(shared(&repo).join("ids").is_dir());
}

fn shared(repo: &Path) -> PathBuf {
    repo.join(".git/gapreg")
}

/// A claim taken in one worktree is seen at once in another: `ready` leaves the gap out and
/// a second claim is refused naming the holder; released, it is free again.
#[test]
fn a_claim_in_one_worktree_is_seen_in_another() {
    let (tmp, main) = origin(1);
    let wt = tmp.path().join("wt");
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "b",
            wt.to_str().expect("utf-8"),
        ],
    );
    run_in(&main, &["claim", "GAP-OP-1", "--agent", "A"], None).ok();
    let ready = run_in(&wt, &["--json", "ready"], None).json();
    assert_eq!(ready.as_array().map(Vec::len), Some(0), "{ready}");
    run_in(&wt, &["claim", "GAP-OP-1", "--agent", "B"], None).fails(5, &["A"]);
    // `list` and `show` in the other worktree name the holder too.
    let listed = run_in(&wt, &["--json", "list"], None).json();
    assert_eq!(listed[0]["claimed_by"], "A", "{listed}");
    let mine = run_in(&wt, &["--json", "list", "--claimed-by", "A"], None).json();
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    let shown = run_in(&wt, &["--json", "show", "GAP-OP-1"], None).json();
    assert_eq!(shown["claimed_by"], "A", "{shown}");
    run_in(&wt, &["claim", "--next", "--agent", "B"], None).fails(4, &["nothing"]);
    run_in(&main, &["unclaim", "GAP-OP-1", "--agent", "A"], None).ok();
    assert_eq!(
        run_in(&wt, &["claim", "--next", "--agent", "B"], None)
            .ok()
            .trim(),
        "GAP-OP-1"
    );
}

/// `claim --next` from 32 processes over 20 ready gaps: 20 distinct winners, 12 told nothing
/// is ready (exit 4), and every gap claimed once.
#[test]
fn claim_next_from_32_processes_over_20_gaps() {
    let (_tmp, main) = origin(20);
    let runs: Vec<(i32, String)> = thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|p| {
                let main = main.clone();
                s.spawn(move || {
                    let agent = format!("A{p}");
                    let r = run_in(&main, &["claim", "--next", "--agent", &agent], None);
                    (r.code(), r.stdout())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let won: Vec<&str> = runs
        .iter()
        .filter(|(c, _)| *c == 0)
        .map(|(_, out)| out.trim())
        .collect();
    let nothing = runs.iter().filter(|(c, _)| *c == 4).count();
    assert_eq!(won.len(), 20, "{runs:?}");
    assert_eq!(nothing, 12, "{runs:?}");
    assert_eq!(won.iter().collect::<BTreeSet<_>>().len(), 20, "{won:?}");
    let listed = run_in(&main, &["--json", "list"], None).json();
    let claimed: BTreeSet<String> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|g| g["claimed_by"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(claimed.len(), 20, "{listed}");
}

/// A merge can make what no command allows: a complete gap waiting for a gap another branch
/// reopened. `doctor` reports it (exit 6), naming both.
#[test]
fn a_merge_that_leaves_a_complete_gap_waiting_is_reported() {
    let (_tmp, main) = origin(2);
    run_in(&main, &["dep", "add", "GAP-OP-1", "--on", "GAP-OP-2"], None).ok();
    run_in(&main, &["status", "GAP-OP-2", "complete"], None).ok();
    git(&main, &["add", "-A"]);
    git(&main, &["commit", "-q", "-m", "deps"]);
    git(&main, &["checkout", "-q", "-b", "a"]);
    run_in(&main, &["status", "GAP-OP-1", "complete"], None).ok();
    git(&main, &["commit", "-q", "-am", "a"]);
    git(&main, &["checkout", "-q", "-b", "b", "HEAD~1"]);
    run_in(&main, &["status", "GAP-OP-2", "open"], None).ok();
    git(&main, &["commit", "-q", "-am", "b"]);
    git(&main, &["merge", "-q", "--no-edit", "a"]);
    let doctor = run_in(&main, &["doctor"], None);
    assert_eq!(doctor.code(), 6, "{}", doctor.stdout());
    let said = doctor.stdout();
    assert!(
        said.contains("GAP-OP-1") && said.contains("GAP-OP-2"),
        "{said}"
    );
    assert!(said.contains("complete"), "{said}");
}

/// A fresh clone's first use killed (SIGKILL) at each rename it makes — the staged store
/// moved into place, the marker, the files after — leaves a clone whose next use works and
/// hands out ids above every id its documents hold, each once.
#[test]
fn a_first_use_killed_at_any_rename_hands_out_no_held_id() {
    if !strace_works() {
        return;
    }
    let (tmp, main) = origin(3);
    let mut kills = 0;
    for n in 1..=6 {
        let clone = tmp.path().join(format!("clone{n}"));
        git(
            tmp.path(),
            &[
                "clone",
                "-q",
                main.to_str().expect("utf-8"),
                clone.to_str().expect("utf-8"),
            ],
        );
        let killed = traced(
            &clone,
            "rename,renameat,renameat2",
            &format!("signal=KILL:when={n}"),
            &["ids", "reserve", "GAP-OP"],
        );
        kills += usize::from(killed.0.status.code().is_none());
        let first: Vec<u64> = if killed.0.status.code() == Some(0) {
            numbers(&killed.stdout())
        } else {
            Vec::new()
        };
        let next = run_in(&clone, &["ids", "reserve", "GAP-OP", "2"], None);
        assert_eq!(
            next.code(),
            0,
            "after a kill at rename {n}: {}",
            next.stderr()
        );
        let mut all = first.clone();
        all.extend(numbers(&next.stdout()));
        assert!(
            all.iter().all(|x| *x > 3),
            "rename {n}: an id the clone holds: {all:?}"
        );
        assert_eq!(
            all.iter().collect::<BTreeSet<_>>().len(),
            all.len(),
            "rename {n}: {all:?}"
        );
        let filed = run_in(&clone, &["file", "--title", "after"], None).ok();
        assert!(numbers(&filed)[0] > 3, "rename {n}: filed {filed}");
    }
    assert!(
        kills >= 3,
        "only {kills} of the runs were killed: the renames moved"
    );
}
