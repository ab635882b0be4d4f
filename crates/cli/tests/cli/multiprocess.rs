//! 20 `gapreg file --batch` processes and 20 `gapreg ids reserve` processes at once on one
//! registry.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use crate::util::{Repo, bin};

#[test]
fn concurrent_cli_processes_lose_and_duplicate_nothing() {
    let repo = Repo::new();
    let batch: String = (0..10)
        .map(|i| format!("- {{prefix: OP, title: \"entry {i}\"}}\n"))
        .collect();
    let batch_file = repo.path().join("batch.yaml");
    std::fs::write(&batch_file, batch).expect("batch");
    let spawn = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .current_dir(repo.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let batches: Vec<_> = (0..20)
        .map(|_| spawn(&["file", "--batch", "batch.yaml"]))
        .collect();
    let reservers: Vec<_> = (0..20)
        .map(|_| spawn(&["ids", "reserve", "SEC", "5"]))
        .collect();
    let mut filed = Vec::new();
    for child in batches {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(ids.len(), 10);
        let numbers: Vec<u64> = ids
            .iter()
            .map(|id| {
                id.strip_prefix("GAP-OP-")
                    .expect("GAP-OP id")
                    .parse()
                    .expect("n")
            })
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "batch not consecutive: {ids:?}"
        );
        filed.extend(ids);
    }
    let mut reserved = BTreeSet::new();
    for child in reservers {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            assert!(reserved.insert(id.to_owned()), "{id} reserved twice");
        }
    }
    assert_eq!(reserved.len(), 100);
    let expected: BTreeSet<String> = (1..=100).map(|n| format!("SEC-{n}")).collect();
    assert_eq!(reserved, expected);
    let distinct: BTreeSet<&String> = filed.iter().collect();
    assert_eq!(distinct.len(), 200, "duplicate gap ids");
    // Every batch is contiguous in registry order.
    let listed = repo.run(&["--json", "list"]).json();
    let order: Vec<String> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|g| g["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(order.len(), 200);
    for chunk in filed.chunks(10) {
        let start = order
            .iter()
            .position(|id| id == &chunk[0])
            .expect("present");
        assert_eq!(
            &order[start..start + 10],
            chunk,
            "batch interleaved with another"
        );
    }
}
