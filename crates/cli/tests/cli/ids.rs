//! `gapreg ids …`.

use crate::util::{Repo, run_in};

#[test]
fn reserve_prints_ids_one_per_line_and_as_json() {
    let repo = Repo::new();
    assert_eq!(repo.run(&["ids", "reserve", "SEC"]).ok(), "SEC-1\n");
    assert_eq!(
        repo.run(&["ids", "reserve", "GAP-OP", "3"]).ok(),
        "GAP-OP-1\nGAP-OP-2\nGAP-OP-3\n"
    );
    let doc = repo.run(&["--json", "ids", "reserve", "SEC", "2"]).json();
    assert_eq!(doc, serde_json::json!({ "ids": ["SEC-2", "SEC-3"] }));
    assert_eq!(repo.run(&["-q", "ids", "reserve", "SEC"]).ok(), "SEC-4\n");
}

#[test]
fn peek_validate_list_and_init() {
    let repo = Repo::new();
    repo.run(&["ids", "reserve", "SEC", "20"]).ok();
    assert_eq!(repo.run(&["ids", "peek", "SEC"]).ok(), "SEC-21\n");
    assert!(
        repo.run(&["ids", "validate", "SEC-20"])
            .ok()
            .contains("SEC-20")
    );
    repo.run(&["ids", "validate", "SEC-21"])
        .fails(3, &["SEC-21", "never reserved", "gapreg ids reserve SEC"]);
    repo.run(&["ids", "validate", "nonsense"])
        .fails(3, &["nonsense"]);
    std::fs::write(repo.path().join("tasks.md"), "TASK-7 and TASK-41\n").expect("doc");
    let out = repo
        .run(&["ids", "init", "tasks.md", "--prefix", "TASK"])
        .ok();
    assert!(out.contains("TASK-41") && out.contains("tasks.md"), "{out}");
    assert_eq!(repo.run(&["ids", "peek", "TASK"]).ok(), "TASK-42\n");
    let doc = repo.run(&["--json", "ids", "list"]).json();
    assert_eq!(doc, serde_json::json!({ "SEC": 20, "TASK": 41 }));
}

#[test]
fn bad_prefix_exits_3_and_missing_registry_exits_4() {
    let repo = Repo::new();
    repo.run(&["ids", "reserve", "sec"])
        .fails(3, &["\"sec\"", "upper-case"]);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    run_in(elsewhere.path(), &["ids", "reserve", "SEC"], None)
        .fails(4, &["no gap registry", "gapreg init"]);
    // --registry and GAPREG_DIR name one explicitly.
    let registry = repo.registry();
    let reg = registry.to_str().expect("utf-8 path");
    let out = run_in(
        elsewhere.path(),
        &["--registry", reg, "ids", "reserve", "SEC"],
        None,
    );
    assert_eq!(out.ok(), "SEC-1\n");
}

#[test]
fn corrupt_counter_log_exits_6() {
    let repo = Repo::new();
    repo.run(&["ids", "reserve", "SEC"]).ok();
    std::fs::write(repo.registry().join("ids/counters.log"), "SEC 5 00000000\n").expect("damage");
    repo.run(&["ids", "reserve", "SEC"])
        .fails(6, &["counters.log", "corrupt"]);
}

#[test]
fn busy_store_exits_75_naming_the_holder() {
    let repo = Repo::new();
    let mutex = leaselock::mutex::FileMutex::new(repo.registry().join("ids/counters.lock"));
    let _held = mutex.lock().expect("hold");
    repo.run(&["--wait", "100ms", "ids", "reserve", "SEC"])
        .fails(75, &["timed out", &std::process::id().to_string()]);
}

/// The options every command takes are accepted before the command's name, after it, and
/// after a nested command's name, joined when given in both places (a later value wins).
/// Commands build their arguments only when entered (`lazy` in the CLI): this pins that every
/// one of them still takes the options, and that help, completions and usage still see them.
#[test]
fn common_options_are_taken_before_and_after_the_command_name() {
    let repo = Repo::new();
    let elsewhere = Repo::new();
    let other = elsewhere.registry();
    let other = other.to_str().expect("utf-8 path");
    for args in [
        &["--json", "ids", "reserve", "SEC"][..],
        &["ids", "--json", "reserve", "SEC"],
        &["ids", "reserve", "SEC", "--json"],
        &["--quiet", "ids", "reserve", "--json", "SEC"],
    ] {
        let doc = repo.run(args).json();
        assert!(
            doc["ids"][0]
                .as_str()
                .is_some_and(|id| id.starts_with("SEC-")),
            "{args:?}: {doc}"
        );
    }
    // --registry after the name wins over the one before it.
    assert_eq!(
        repo.run(&[
            "--registry",
            "/nonexistent",
            "ids",
            "reserve",
            "OTHER",
            "--registry",
            other
        ])
        .ok(),
        "OTHER-1\n"
    );
    assert_eq!(elsewhere.run(&["ids", "peek", "OTHER"]).ok(), "OTHER-2\n");
    assert_eq!(repo.run(&["ids", "peek", "OTHER"]).ok(), "OTHER-1\n");
    // Every command, each with the common options after its name.
    for args in [
        &["summary", "--json"][..],
        &["ready", "--json"],
        &["list", "--json"],
        &["doctor", "--json"],
        &["loop", "list", "--json"],
        &["lease", "list", "--json"],
        &["coordination", "show", "--json"],
    ] {
        let run = repo.run(args);
        assert!(
            serde_json::from_str::<serde_json::Value>(&run.stdout()).is_ok(),
            "{args:?}: {}{}",
            run.stdout(),
            run.stderr()
        );
    }
    let help = repo.run(&["ids", "reserve", "--help"]).ok();
    for option in [
        "--registry <DIR>",
        "--json",
        "--quiet",
        "--wait <DURATION>",
        "<PREFIX>",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    // The help command reaches nested commands, in use and in the completions.
    assert!(
        repo.run(&["help", "ids", "reserve"])
            .ok()
            .contains("<PREFIX>")
    );
    let fish = repo.run(&["completions", "fish"]).ok();
    assert!(
        fish.contains("__fish_seen_subcommand_from ids\" -f -a \"reserve\""),
        "fish completions lack `gapreg help ids reserve`"
    );
    // A usage error is clap's: exit 2 and the usage of the command entered.
    let run = repo.run(&["ids", "reserve"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr().contains("Usage: gapreg ids reserve"),
        "{}",
        run.stderr()
    );
}
