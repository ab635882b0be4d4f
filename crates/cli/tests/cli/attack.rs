//! Attacks on the issue-10 fixes that still get through on HEAD (each test asserts what the
//! issue demands).

use crate::util::Repo;

/// A lock file under `.gapreg/` that is a hard link to a file outside the repository must not
/// be written through: `open_lock` only checks `O_NOFOLLOW` and the type, not `st_nlink`, and
/// the mutex then `pwrite`s its holder record at offset 0 of the victim.
#[test]
fn attack_a_hard_linked_lock_file_is_never_written_through() {
    for site in ["registry.lock", "ids/counters.lock", "leases/lock"] {
        let repo = Repo::new();
        repo.run(&["file", "--title", "a"]).ok();
        repo.run(&["lease", "acquire", "--file", "a", "--holder", "h"])
            .ok();
        let outside = tempfile::tempdir().expect("attack setup");
        let victim = outside.path().join("victim");
        let secret = b"secret contents of a file outside the repository\n";
        std::fs::write(&victim, secret).expect("attack setup");
        let at = repo.registry().join(site);
        std::fs::remove_file(&at).expect("attack setup");
        std::fs::hard_link(&victim, &at).expect("attack setup");
        for args in [
            &["file", "--title", "b"][..],
            &["ids", "reserve", "SEC", "1"][..],
            &["lease", "acquire", "--file", "b", "--holder", "h"][..],
            &["doctor", "--repair"][..],
        ] {
            let run = repo.run(args);
            assert_eq!(
                String::from_utf8_lossy(&std::fs::read(&victim).expect("attack setup")).trim_end(),
                String::from_utf8_lossy(secret).trim_end(),
                "{site} hard-linked to {}: `gapreg {}` (exit {}) wrote through it; stderr: {}",
                victim.display(),
                args.join(" "),
                run.code(),
                run.stderr()
            );
        }
    }
}

/// A symlinked directory inside the (stranger's) repository names the same file under a
/// second path; leases compare paths lexically, so two exclusive leases cover one file.
#[test]
fn attack_a_symlinked_directory_cannot_alias_an_exclusive_lease() {
    let repo = Repo::new();
    std::fs::create_dir(repo.path().join("src")).expect("attack setup");
    std::fs::write(repo.path().join("src/a.rs"), "fn main() {}\n").expect("attack setup");
    std::os::unix::fs::symlink("src", repo.path().join("alias")).expect("attack setup");
    repo.run(&["lease", "acquire", "--file", "src/a.rs", "--holder", "one"])
        .ok();
    let second = repo.run(&[
        "lease",
        "acquire",
        "--file",
        "alias/a.rs",
        "--holder",
        "two",
    ]);
    assert_ne!(
        second.code(),
        0,
        "two exclusive leases on src/a.rs (one as alias/a.rs, alias -> src): {}",
        second.stdout()
    );
    // The same through a directory lease on the alias.
    let third = repo.run(&["lease", "acquire", "--dir", "alias", "--holder", "three"]);
    assert_ne!(
        third.code(),
        0,
        "an exclusive lease on dir alias/ (-> src) granted over src/a.rs: {}",
        third.stdout()
    );
}

fn plant_padded_twin(repo: &Repo) {
    let gaps = repo.registry().join("gaps");
    let text = std::fs::read_to_string(gaps.join("GAP-OP-1.yaml")).expect("attack setup");
    std::fs::write(
        gaps.join("GAP-OP-01.yaml"),
        text.replace("GAP-OP-1", "GAP-OP-01"),
    )
    .expect("attack setup");
}

/// A hand-written gap file with a zero-padded id (`GAP-OP-01` next to `GAP-OP-1`): `doctor`
/// calls its id invalid and `show`/`claim` refuse it, yet `list`, `ready`, `summary` and
/// `render` print it as a normal gap with exit 0 (so an agent picks it from `ready` and its
/// claim fails with exit 3).
#[test]
fn attack_a_zero_padded_gap_id_is_reported_not_listed_with_exit_0() {
    let repo = Repo::new();
    repo.run(&["file", "--title", "a"]).ok();
    plant_padded_twin(&repo);
    assert_eq!(repo.run(&["doctor"]).code(), 6);
    assert_eq!(repo.run(&["claim", "GAP-OP-01", "--agent", "x"]).code(), 3);
    for cmd in [&["ready"][..], &["list"], &["summary"], &["render"]] {
        let run = repo.run(cmd);
        assert_eq!(
            run.code(),
            6,
            "`gapreg {}` with a planted GAP-OP-01.yaml: stdout {} stderr {}",
            cmd.join(" "),
            run.stdout(),
            run.stderr()
        );
        assert!(run.stderr().contains("GAP-OP-01"), "{}", run.stderr());
    }
}
