//! The pre-commit hook `gapreg git setup` installs, with real git: it refuses a commit
//! touching a path inside another holder's live exclusive lease (naming the path, holder,
//! lease and expiry), lets the holder itself (`GAPREG_HOLDER`), shared and expired leases
//! through, is skipped by `--no-verify`, chains a hook that was there before (which still runs
//! and still blocks), and installs once however often setup runs. Also: `gapreg init` in a git
//! repository sets up the driver and the hook, and commands that write documents hint at
//! `gapreg git setup` when the clone has no driver.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::util::{Repo, git};

/// Runs `git ARGS` in `dir` with `env` (a fixed identity, no user or system config), whatever
/// the exit status. The hook runs the binary that set it up (its absolute path).
fn git_env(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GAPREG_DIR")
        .env_remove("GAPREG_HOLDER")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run git")
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A git repository with a registry made by `gapreg init` (which runs the setup) and a
/// committed `src/a.rs` and `src/b.rs`.
fn repo() -> Repo {
    let repo = Repo::bare();
    git(repo.path(), &["init", "-q"]);
    repo.run(&["init"]).ok();
    std::fs::create_dir(repo.path().join("src")).expect("src");
    std::fs::write(repo.path().join("src/a.rs"), "a\n").expect("a.rs");
    std::fs::write(repo.path().join("src/b.rs"), "b\n").expect("b.rs");
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "base"]);
    repo
}

/// Changes `file` and stages it.
fn touch(repo: &Repo, file: &str) {
    let path = repo.path().join(file);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str("more\n");
    std::fs::write(&path, text).expect("change file");
    git(repo.path(), &["add", "--", file]);
}

fn commit(repo: &Repo, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut args = vec!["commit", "-q", "-m", "change"];
    args.extend_from_slice(extra);
    git_env(repo.path(), env, &args)
}

fn hooks(repo: &Repo) -> std::path::PathBuf {
    repo.path().join(".git/hooks")
}

#[test]
fn a_commit_inside_another_holders_exclusive_lease_is_refused_naming_it() {
    let repo = repo();
    let id = repo
        .run(&["lease", "acquire", "--holder", "B", "--file", "src/a.rs"])
        .ok();
    let id = id.trim();
    let expires = repo.run(&["--json", "lease", "list"]).json()["leases"][0]["expires_at"]
        .as_str()
        .expect("expires_at")
        .to_owned();
    touch(&repo, "src/a.rs");
    let out = commit(&repo, &[], &[]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for needle in [
        "src/a.rs",
        " B ",
        id,
        &expires,
        "--no-verify",
        "GAPREG_HOLDER",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    // Another holder is still refused; the holder itself commits.
    let out = commit(&repo, &[("GAPREG_HOLDER", "C")], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let out = commit(&repo, &[("GAPREG_HOLDER", "B")], &[]);
    assert!(out.status.success(), "{}", said(&out));
    // A path outside the lease is not refused.
    touch(&repo, "src/b.rs");
    let out = commit(&repo, &[], &[]);
    assert!(out.status.success(), "{}", said(&out));
}

#[test]
fn a_directory_lease_covers_paths_under_it_and_no_verify_bypasses() {
    let repo = repo();
    repo.run(&["lease", "acquire", "--holder", "B", "--dir", "src"])
        .ok();
    touch(&repo, "src/b.rs");
    let out = commit(&repo, &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("src/b.rs"), "{}", said(&out));
    let out = commit(&repo, &[], &["--no-verify"]);
    assert!(out.status.success(), "{}", said(&out));
    // A file beside the directory (`srcx`) is not under it; removing a leased file is
    // touching it.
    std::fs::write(repo.path().join("srcx"), "x\n").expect("srcx");
    git(repo.path(), &["add", "srcx"]);
    assert!(commit(&repo, &[], &[]).status.success());
    git(repo.path(), &["rm", "-q", "src/a.rs"]);
    let out = commit(&repo, &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("src/a.rs"), "{}", said(&out));
}

#[test]
fn shared_and_expired_leases_do_not_block() {
    let repo = repo();
    repo.run(&[
        "lease", "acquire", "--holder", "B", "--file", "src/a.rs", "--shared",
    ])
    .ok();
    touch(&repo, "src/a.rs");
    let out = commit(&repo, &[], &[]);
    assert!(out.status.success(), "shared lease blocked: {}", said(&out));

    repo.run(&[
        "lease", "acquire", "--holder", "C", "--file", "src/b.rs", "--ttl", "1s",
    ])
    .ok();
    touch(&repo, "src/b.rs");
    assert_eq!(commit(&repo, &[], &[]).status.code(), Some(1));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = commit(&repo, &[], &[]);
    assert!(
        out.status.success(),
        "expired lease blocked: {}",
        said(&out)
    );
}

#[test]
fn an_existing_hook_is_chained_and_its_failure_still_blocks() {
    let repo = Repo::bare();
    git(repo.path(), &["init", "-q"]);
    let user_hook =
        "#!/bin/sh\necho user hook ran >&2\ntest ! -e \"$(git rev-parse --show-toplevel)/block\"\n";
    let hook = hooks(&repo).join("pre-commit");
    std::fs::create_dir_all(hooks(&repo)).expect("hooks dir");
    std::fs::write(&hook, user_hook).expect("user hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let init = repo.run(&["init"]).ok();
    assert!(init.contains("installed the pre-commit hook"), "{init}");
    assert!(init.contains("pre-commit.gapreg-chained"), "{init}");
    let chained = hooks(&repo).join("pre-commit.gapreg-chained");
    assert_eq!(
        std::fs::read_to_string(&chained).expect("chained"),
        user_hook
    );
    let ours = std::fs::read_to_string(&hook).expect("our hook");
    assert!(ours.contains("hook pre-commit"), "{ours}");

    // Twice more: nothing changes, nothing is chained twice.
    let again = repo.run(&["git", "setup"]).ok();
    assert!(again.contains("already set up"), "{again}");
    let json = repo.run(&["--json", "git", "setup"]).json();
    assert_eq!(json["changed"], false, "{json}");
    assert_eq!(std::fs::read_to_string(&hook).expect("hook"), ours);
    assert_eq!(
        std::fs::read_to_string(&chained).expect("chained"),
        user_hook
    );
    let names: Vec<String> = std::fs::read_dir(hooks(&repo))
        .expect("hooks")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pre-commit") && !n.ends_with(".sample"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // The user's hook runs on every commit, and its failure refuses the commit.
    std::fs::write(repo.path().join("f"), "f\n").expect("f");
    git(repo.path(), &["add", "f"]);
    let out = commit(&repo, &[], &[]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("user hook ran"), "{}", said(&out));
    std::fs::write(repo.path().join("block"), "").expect("block");
    touch(&repo, "f");
    let out = commit(&repo, &[], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", said(&out));
    assert!(said(&out).contains("user hook ran"), "{}", said(&out));
}

#[test]
fn a_hook_replaced_after_setup_cannot_be_chained_twice() {
    let repo = repo();
    let hook = hooks(&repo).join("pre-commit");
    std::fs::write(
        hooks(&repo).join("pre-commit.gapreg-chained"),
        "#!/bin/sh\n",
    )
    .expect("c");
    std::fs::write(&hook, "#!/bin/sh\necho another tool\n").expect("replaced hook");
    let out = repo.run(&["git", "setup"]);
    out.fails(5, &["pre-commit", "pre-commit.gapreg-chained", "by hand"]);
    assert_eq!(
        std::fs::read_to_string(&hook).expect("hook"),
        "#!/bin/sh\necho another tool\n"
    );
}

#[test]
fn core_hooks_path_is_honoured() {
    let repo = Repo::bare();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["config", "core.hooksPath", "my-hooks"]);
    repo.run(&["init"]).ok();
    let hook = repo.path().join("my-hooks/pre-commit");
    assert!(
        std::fs::read_to_string(&hook)
            .expect("hook in core.hooksPath")
            .contains("hook pre-commit")
    );
    assert!(!hooks(&repo).join("pre-commit").exists());
    repo.run(&["lease", "acquire", "--holder", "B", "--file", "x"])
        .ok();
    std::fs::write(repo.path().join("x"), "x\n").expect("x");
    git(repo.path(), &["add", "x"]);
    let out = commit(&repo, &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
}

#[test]
fn init_in_a_git_repository_sets_up_the_driver_and_the_hook() {
    let repo = Repo::bare();
    git(repo.path(), &["init", "-q"]);
    let json = repo.run(&["--json", "init"]).json();
    assert_eq!(json["git"]["changed"], true, "{json}");
    let steps: Vec<&str> = json["git"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("step"))
        .collect();
    assert_eq!(
        steps,
        ["gitattributes", "merge-driver", "pre-commit-hook"],
        "{json}"
    );
    assert!(repo.path().join(".gitattributes").is_file());
    assert!(hooks(&repo).join("pre-commit").is_file());
    let driver = git_env(
        repo.path(),
        &[],
        &["config", "--local", "--get", "merge.gapreg.driver"],
    );
    assert!(
        String::from_utf8_lossy(&driver.stdout).contains("merge-driver"),
        "{}",
        said(&driver)
    );
    assert!(repo.run(&["git", "setup"]).ok().contains("already set up"));

    // Outside git: no setup, no `git` field.
    let plain = Repo::bare();
    let json = plain.run(&["--json", "init"]).json();
    assert!(json.get("git").is_none(), "{json}");
    assert!(!plain.path().join(".gitattributes").exists());
}

#[test]
fn writing_without_a_driver_hints_at_git_setup_once() {
    const HINT: &str = "hint: run `gapreg git setup`";
    // The registry before git, so `init` sets nothing up.
    let repo = Repo::new();
    git(repo.path(), &["init", "-q"]);
    let filed = repo.run(&["file", "--title", "one", "--prefix", "OP"]);
    filed.ok();
    assert_eq!(
        filed.stderr().matches(HINT).count(),
        1,
        "{}",
        filed.stderr()
    );
    let hints = filed
        .stderr()
        .lines()
        .filter(|l| l.starts_with("hint:"))
        .count();
    assert_eq!(hints, 1, "one line: {}", filed.stderr());
    for args in [
        &["status", "GAP-OP-1", "ready"][..],
        &["--json", "claim", "GAP-OP-1", "--agent", "A"],
        &["loop", "new", "LOOP-1", "--objective", "o"],
    ] {
        let run = repo.run(args);
        run.ok();
        assert_eq!(
            run.stderr().matches(HINT).count(),
            1,
            "{args:?}: {}",
            run.stderr()
        );
    }
    // Reads, --quiet and failures do not hint.
    assert!(!repo.run(&["list"]).stderr().contains(HINT));
    let quiet = repo.run(&["--quiet", "status", "GAP-OP-1", "blocked"]);
    quiet.ok();
    assert!(!quiet.stderr().contains(HINT), "{}", quiet.stderr());
    assert!(!repo.run(&["show", "GAP-OP-9"]).stderr().contains(HINT));

    repo.run(&["git", "setup"]).ok();
    let after = repo.run(&["status", "GAP-OP-1", "ready"]);
    after.ok();
    assert!(!after.stderr().contains(HINT), "{}", after.stderr());

    // Outside git: never.
    let plain = Repo::new();
    let run = plain.run(&["file", "--title", "x"]);
    run.ok();
    assert!(!run.stderr().contains(HINT), "{}", run.stderr());
}

#[test]
fn outside_a_registry_the_hook_does_nothing() {
    let repo = Repo::bare();
    git(repo.path(), &["init", "-q"]);
    let run = repo.run(&["hook", "pre-commit"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    // A registry whose hook lives on after the registry is gone.
    let repo = repo_without_registry_after_setup();
    std::fs::write(repo.path().join("f"), "f\n").expect("f");
    git(repo.path(), &["add", "f"]);
    let out = commit(&repo, &[], &[]);
    assert!(out.status.success(), "{}", said(&out));
}

fn repo_without_registry_after_setup() -> Repo {
    let repo = Repo::bare();
    git(repo.path(), &["init", "-q"]);
    repo.run(&["init"]).ok();
    std::fs::remove_dir_all(repo.registry()).expect("remove registry");
    assert!(hooks(&repo).join("pre-commit").is_file());
    repo
}
