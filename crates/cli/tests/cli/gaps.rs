//! The gap registry commands.

use serde_json::Value;

use crate::util::{Repo, run_in};

fn with_loop() -> Repo {
    let repo = Repo::new();
    repo.run(&[
        "loop",
        "new",
        "LOOP-1",
        "--objective",
        "Fix filing",
        "--priority",
        "P1",
    ])
    .ok();
    repo
}

#[test]
fn init_refuses_an_existing_registry() {
    let repo = Repo::new();
    assert!(repo.registry().join("config.yaml").exists());
    repo.run(&["init"]).fails(5, &[".gapreg", "already"]);
}

#[test]
fn file_show_list_and_json_shapes() {
    let repo = with_loop();
    let id = repo
        .run(&[
            "file",
            "--prefix",
            "OP",
            "--title",
            "Lock queuing",
            "--type",
            "agent-behavior",
            "--severity",
            "high",
            "--parent-loop",
            "LOOP-1",
            "--tag",
            "locks",
        ])
        .ok();
    assert_eq!(id, "GAP-OP-1\n");
    let gap = repo.run(&["--json", "show", "GAP-OP-1"]).json();
    for key in [
        "id",
        "title",
        "type",
        "severity",
        "status",
        "parent_loop",
        "depends_on",
        "claimed_by",
        "tags",
        "created_at",
        "updated_at",
        "rev",
    ] {
        assert!(gap.get(key).is_some(), "show lacks {key}: {gap}");
    }
    assert_eq!(gap["severity"], "high");
    assert_eq!(gap["status"], "open");
    let human = repo.run(&["show", "GAP-OP-1"]).ok();
    assert!(
        human.contains("GAP-OP-1") && human.contains("Lock queuing"),
        "{human}"
    );
    let list = repo.run(&["--json", "list", "--status", "open"]).json();
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1);
    assert!(list[0].get("created_at").is_some() && list[0].get("claimed_by").is_some());
    let table = repo.run(&["list"]).ok();
    assert!(
        table.starts_with("ID") && table.contains("GAP-OP-1"),
        "{table}"
    );
    assert_eq!(repo.run(&["next-id", "OP"]).ok(), "GAP-OP-2\n");
}

#[test]
fn batch_files_all_or_nothing_in_input_order() {
    let repo = with_loop();
    let batch = "- {prefix: OP, title: one, parent_loop: LOOP-1}\n- {prefix: OP, title: two, severity: low}\n";
    let out = repo
        .run_with_input(&["file", "--batch", "-"], batch.as_bytes())
        .ok();
    assert_eq!(out, "GAP-OP-1\nGAP-OP-2\n");
    let bad = "[{\"prefix\": \"OP\", \"title\": \"ok\"}, {\"prefix\": \"OP\", \"title\": \"x\", \"severity\": \"urgent\"}]";
    repo.run_with_input(&["file", "--batch", "-"], bad.as_bytes())
        .fails(3, &["entry 1", "urgent"]);
    let missing_loop = "- {prefix: OP, title: a, parent_loop: LOOP-9}\n- {prefix: OP, title: b, parent_loop: LOOP-1}\n";
    repo.run_with_input(&["file", "--batch", "-"], missing_loop.as_bytes())
        .fails(3, &["LOOP-9"]);
    repo.run_with_input(&["file", "--batch", "-"], b"- {title: no prefix}\n")
        .fails(3, &["prefix"]);
    let all = repo.run(&["--json", "list"]).json();
    assert_eq!(
        all.as_array().expect("array").len(),
        2,
        "failed batches wrote nothing"
    );
}

#[test]
fn unknown_loop_suggests_close_matches() {
    let repo = with_loop();
    repo.run(&[
        "file",
        "--prefix",
        "OP",
        "--title",
        "t",
        "--parent-loop",
        "LOOP-2",
    ])
    .fails(4, &["LOOP-2", "LOOP-1"]);
}

#[test]
fn claims_statuses_and_dependencies() {
    let repo = with_loop();
    repo.run(&["file", "--prefix", "OP", "--title", "base"])
        .ok();
    repo.run(&[
        "file",
        "--prefix",
        "OP",
        "--title",
        "top",
        "--depends-on",
        "GAP-OP-1",
    ])
    .ok();
    let ready = repo.run(&["--json", "ready"]).json();
    let ids: Vec<&Value> = ready
        .as_array()
        .expect("array")
        .iter()
        .map(|g| &g["id"])
        .collect();
    assert_eq!(ids, ["GAP-OP-1"], "GAP-OP-2 waits for GAP-OP-1");
    repo.run(&["claim", "GAP-OP-1", "--agent", "CC-1"]).ok();
    repo.run(&["claim", "GAP-OP-1", "--agent", "CC-2"])
        .fails(5, &["CC-1"]);
    repo.run(&["claim", "GAP-OP-1", "--agent", "CC-1"]).ok();
    repo.run(&["status", "GAP-OP-2", "complete"])
        .fails(3, &["GAP-OP-1"]);
    repo.run(&["status", "GAP-OP-1", "done"])
        .fails(3, &["done", "complete"]);
    let gap = repo
        .run(&["--json", "status", "GAP-OP-1", "complete"])
        .json();
    assert_eq!(gap["status"], "complete");
    let rev = gap["rev"].as_u64().expect("rev");
    repo.run(&[
        "status",
        "GAP-OP-2",
        "ready",
        "--rev",
        &(rev + 100).to_string(),
    ])
    .fails(5, &["GAP-OP-2"]);
    repo.run(&["unclaim", "GAP-OP-1", "--agent", "CC-2"])
        .fails(5, &["CC-1"]);
    repo.run(&["dep", "add", "GAP-OP-1", "--on", "GAP-OP-2"])
        .fails(3, &["GAP-OP-1", "GAP-OP-2", "->"]);
    repo.run(&["dep", "rm", "GAP-OP-2", "--on", "GAP-OP-1"])
        .ok();
    repo.run(&["show", "GAP-OP-99"]).fails(4, &["GAP-OP-99"]);
}

#[test]
fn claiming_a_closed_gap_is_a_conflict() {
    // What an agent sees when another one completed the gap between its `ready` and `claim`.
    let repo = with_loop();
    repo.run(&["file", "--prefix", "OP", "--title", "done soon"])
        .ok();
    repo.run(&["file", "--prefix", "OP", "--title", "dropped"])
        .ok();
    let ready = repo.run(&["--json", "ready"]).json();
    assert_eq!(ready.as_array().map(Vec::len), Some(2));
    repo.run(&["claim", "GAP-OP-1", "--agent", "CC-1"]).ok();
    repo.run(&["status", "GAP-OP-1", "complete"]).ok();
    repo.run(&["status", "GAP-OP-2", "out-of-scope"]).ok();
    repo.run(&["claim", "GAP-OP-1", "--agent", "CC-2"]).fails(
        5,
        &["GAP-OP-1 is complete", "nothing to claim", "gapreg ready"],
    );
    repo.run(&["claim", "GAP-OP-2", "--agent", "CC-2"])
        .fails(5, &["GAP-OP-2 is out-of-scope"]);
    // Still invalid input, whatever the gap's state: a bad agent name.
    repo.run(&["claim", "GAP-OP-1", "--agent", ""])
        .fails(3, &["agent"]);
    let gap = repo.run(&["--json", "show", "GAP-OP-1"]).json();
    assert_eq!(
        gap["status"], "complete",
        "the refused claim changed nothing"
    );
}

#[test]
fn summary_render_and_doctor() {
    let repo = with_loop();
    repo.run(&[
        "file",
        "--prefix",
        "OP",
        "--title",
        "a",
        "--parent-loop",
        "LOOP-1",
    ])
    .ok();
    let summary = repo.run(&["--json", "summary"]).json();
    assert_eq!(summary["total"], 1);
    assert!(repo.run(&["summary"]).ok().contains("STATUS"));
    let first = repo.run(&["render"]).ok();
    assert_eq!(first, repo.run(&["render"]).ok(), "render is deterministic");
    assert!(
        first.contains("LOOP-1") && first.contains("GAP-OP-1"),
        "{first}"
    );
    repo.run(&["render", "--out", "GAPS.md"]).ok();
    assert_eq!(
        std::fs::read_to_string(repo.path().join("GAPS.md")).expect("out"),
        first
    );
    assert!(repo.run(&["doctor"]).ok().contains("healthy"));
    std::fs::write(repo.registry().join("gaps/GAP-OP-1.yaml"), "id: [unclosed").expect("damage");
    repo.run(&["doctor"]).fails(6, &["unhealthy"]);
}

#[test]
fn loops_list_and_show() {
    let repo = with_loop();
    let list = repo.run(&["loop", "list"]).ok();
    assert!(list.contains("LOOP-1") && list.contains("P1"), "{list}");
    let l = repo.run(&["--json", "loop", "show", "LOOP-1"]).json();
    assert_eq!(l["id"], "LOOP-1");
    repo.run(&["loop", "show", "LOOP-7"]).fails(4, &["LOOP-7"]);
}

#[test]
fn registry_is_found_from_a_subdirectory_and_by_env() {
    let repo = Repo::new();
    let sub = repo.path().join("deep/er");
    std::fs::create_dir_all(&sub).expect("mkdir");
    run_in(
        &sub,
        &["file", "--prefix", "OP", "--title", "from below"],
        None,
    )
    .ok();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(crate::util::bin())
        .args(["next-id", "OP"])
        .current_dir(elsewhere.path())
        .env("GAPREG_DIR", repo.registry())
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "GAP-OP-2\n");
}

/// Runs `gapreg demo` `runs` times in a row; every run must pass its verification.
fn demo_runs(runs: usize, agents: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    for run in 1..=runs {
        let out = run_in(dir.path(), &["demo", "--agents", agents], None);
        assert_eq!(
            out.code(),
            0,
            "run {run} of {runs} failed: {}\n{}",
            out.stderr(),
            out.stdout()
        );
        let text = out.stdout();
        assert!(text.contains("## Verification"), "run {run}: {text}");
        assert!(
            !text.contains("- [ ]"),
            "run {run}: a verification failed: {text}"
        );
    }
    eprintln!(
        "{runs} demo runs with {agents} agents in {:.1?}",
        started.elapsed()
    );
}

/// Slow tier (`.ci/run`): about one run in thirty used to fail when an agent lost a claim race.
#[test]
#[ignore = "slow: cargo test --workspace --test cli -- --ignored demo_"]
fn demo_30_runs_in_a_row() {
    demo_runs(30, "8");
}

/// Slow tier: with 24 agents a lost claim race happens in most runs, so ten runs find a
/// regression that the 8-agent runs would catch only now and then.
#[test]
#[ignore = "slow: cargo test --workspace --test cli -- --ignored demo_"]
fn demo_crowded_runs() {
    demo_runs(10, "24");
}

#[test]
fn demo_runs_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["demo", "--agents", "3"], None).ok();
    assert!(out.contains("## Verification"), "{out}");
    assert!(!out.contains("- [ ]"), "a verification failed: {out}");
}
