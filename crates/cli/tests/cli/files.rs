//! `write`, `verify`, `recover`, `completions`, `man`, usage errors.

use crate::util::{Repo, run_in};

#[test]
fn write_replaces_a_file_with_stdin() {
    let repo = Repo::new();
    let out = repo
        .run_with_input(&["write", "notes.txt"], b"hello\n")
        .ok();
    assert!(out.contains("wrote 6 bytes"), "{out}");
    assert_eq!(
        std::fs::read(repo.path().join("notes.txt")).expect("read"),
        b"hello\n"
    );
    let doc = repo
        .run_with_input(&["--json", "write", "notes.txt"], b"x")
        .json();
    assert_eq!(doc["bytes"], 1);
}

#[test]
fn checksummed_write_verifies_and_damage_exits_6() {
    let repo = Repo::new();
    repo.run_with_input(&["write", "--checksum", "ids.txt"], b"SEC 20\n")
        .ok();
    assert_eq!(repo.run(&["verify", "ids.txt"]).ok(), "SEC 20\n");
    let path = repo.path().join("ids.txt");
    let mut bytes = std::fs::read(&path).expect("read");
    let n = bytes.len();
    bytes[n - 2] ^= 1;
    std::fs::write(&path, &bytes).expect("damage");
    repo.run(&["verify", "ids.txt"])
        .fails(6, &["ids.txt", "corrupt", "checksum"]);
    repo.run(&["verify", "missing.txt"])
        .fails(4, &["missing.txt"]);
}

#[test]
fn write_into_a_missing_directory_names_it() {
    let repo = Repo::new();
    repo.run_with_input(&["write", "no/such/dir/f"], b"x")
        .fails(4, &["no/such/dir/f", "create a temp file"]);
}

#[test]
fn recover_lists_removed_leftovers() {
    let repo = Repo::new();
    let dead = repo.path().join(".x.4194999-00112233445566ff.atomic-tmp");
    std::fs::write(&dead, b"partial").expect("seed");
    let out = repo.run(&["recover", "."]).ok();
    assert!(
        out.contains("removed") && out.contains(".x.4194999"),
        "{out}"
    );
    assert!(!dead.exists());
    let doc = repo.run(&["--json", "recover", "."]).json();
    assert_eq!(doc["removed"], serde_json::json!([]));
}

#[test]
fn usage_errors_exit_2_and_help_lists_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = run_in(dir.path(), &["no-such-command"], None);
    assert_eq!(run.code(), 2);
    let help = run_in(dir.path(), &["--help"], None).ok();
    assert!(help.contains("Exit codes") && help.contains("75"), "{help}");
    let run = run_in(
        dir.path(),
        &["ids", "reserve", "SEC", "--wait", "soon"],
        None,
    );
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("invalid duration"),
        "{}",
        run.stderr()
    );
}

#[test]
fn completions_and_man_page_are_generated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bash = run_in(dir.path(), &["completions", "bash"], None).ok();
    assert!(
        bash.contains("gapreg") && bash.contains("complete"),
        "{bash}"
    );
    let man = run_in(dir.path(), &["man"], None).ok();
    assert!(man.contains(".TH") && man.contains("gapreg"), "{man}");
}

/// Runs `gapreg ARGS` in `dir` with stdout and stderr both pipes whose reader is already gone.
fn run_into_closed_pipes(dir: &std::path::Path, args: &[&str]) -> std::process::ExitStatus {
    // A socket pair with one end closed: every write to the other fails with EPIPE.
    let closed = || {
        let (writer, reader) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        drop(reader);
        std::process::Stdio::from(std::os::fd::OwnedFd::from(writer))
    };
    let (out_writer, err_writer) = (closed(), closed());
    std::process::Command::new(crate::util::bin())
        .args(args)
        .current_dir(dir)
        .env_remove("GAPREG_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(out_writer)
        .stderr(err_writer)
        .status()
        .expect("run gapreg")
}

#[test]
fn closed_pipes_never_make_gapreg_panic() {
    let repo = Repo::new();
    repo.run(&["file", "--prefix", "OP", "--title", "t"]).ok();
    repo.run_with_input(&["write", "--checksum", "f"], b"data\n")
        .ok();
    // (command, exit code): output to a reader that went away is not an error, and an error
    // message that cannot be shown still exits with its code.
    let cases: [(&[&str], i32); 12] = [
        (&["list"], 0),
        (&["--json", "list"], 0),
        (&["show", "GAP-OP-1"], 0),
        (&["render"], 0),
        (&["verify", "f"], 0),
        (&["completions", "bash"], 0),
        (&["man"], 0),
        (&["lease", "list"], 0),
        (&["demo-write", "--workers", "2", "--updates", "3"], 0),
        (&["show", "GAP-OP-9"], 4),
        (&["status", "GAP-OP-1", "done"], 3),
        (&["--help"], 0),
    ];
    for (args, code) in cases {
        let status = run_into_closed_pipes(repo.path(), args);
        assert_eq!(status.code(), Some(code), "{args:?}: {status}");
    }
}
