//! `gapreg lease …`.

use crate::util::Repo;

#[test]
fn acquire_conflict_release_and_list() {
    let repo = Repo::new();
    let id = repo
        .run(&[
            "lease", "acquire", "--holder", "a1", "--dir", "src", "--ttl", "10m",
        ])
        .ok();
    let id = id.trim();
    assert!(!id.is_empty());
    repo.run(&["lease", "acquire", "--holder", "a2", "--file", "src/lib.rs"])
        .fails(5, &["a1", "src"]);
    // Shared readers do not conflict with each other.
    repo.run(&[
        "lease",
        "acquire",
        "--holder",
        "r1",
        "--file",
        "docs/x.md",
        "--shared",
    ])
    .ok();
    repo.run(&[
        "lease",
        "acquire",
        "--holder",
        "r2",
        "--file",
        "docs/x.md",
        "--shared",
    ])
    .ok();
    let list = repo.run(&["lease", "list"]).ok();
    assert!(
        list.contains("a1") && list.contains("r2") && list.contains("HOLDER"),
        "{list}"
    );
    let doc = repo.run(&["--json", "lease", "list"]).json();
    assert_eq!(doc["leases"].as_array().expect("array").len(), 3);
    repo.run(&["lease", "release", id, "--holder", "a2"])
        .fails(5, &[id]);
    repo.run(&["lease", "release", id, "--holder", "a1"]).ok();
    repo.run(&["lease", "acquire", "--holder", "a2", "--file", "src/lib.rs"])
        .ok();
}

#[test]
fn acquire_json_has_id_token_and_expiry() {
    let repo = Repo::new();
    let a = repo
        .run(&["--json", "lease", "acquire", "--holder", "a", "--file", "x"])
        .json();
    let b = repo
        .run(&["--json", "lease", "acquire", "--holder", "b", "--file", "y"])
        .json();
    assert!(a["id"].is_string() && a["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(
        b["token"].as_u64() > a["token"].as_u64(),
        "fencing tokens increase"
    );
}

#[test]
fn escaping_paths_exit_3() {
    let repo = Repo::new();
    repo.run(&["lease", "acquire", "--holder", "a", "--file", "../outside"])
        .fails(3, &["../outside"]);
    repo.run(&["lease", "release", "nope", "--holder", "a"])
        .fails(4, &["nope"]);
}

#[test]
fn a_lease_past_expires_at_shows_expired_while_still_protected() {
    let repo = Repo::new();
    let short = repo
        .run(&[
            "lease", "acquire", "--holder", "a", "--file", "x", "--ttl", "1s",
        ])
        .ok();
    let short = short.trim().to_owned();
    let long = repo
        .run(&[
            "lease", "acquire", "--holder", "b", "--file", "y", "--ttl", "1h",
        ])
        .ok();
    let long = long.trim().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1300));
    // Inside the 5 s skew margin: past expires_at, still blocking others.
    let list = repo.run(&["lease", "list"]).ok();
    let row = |id: &str| {
        list.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}: {list}"))
            .to_owned()
    };
    let expired = row(&short);
    assert!(
        expired.contains("expired (protected until 20") && !expired.contains("live"),
        "{list}"
    );
    assert!(row(&long).contains(" live "), "{list}");
    let doc = repo.run(&["--json", "lease", "list"]).json();
    let leases = doc["leases"].as_array().expect("leases");
    let a = leases.iter().find(|l| l["id"] == short).expect("lease a");
    assert_eq!(a["status"], "expired", "{doc}");
    assert_eq!(a["blocks_grants"], true, "{doc}");
    let until = a["protected_until"].as_str().expect("protected_until");
    assert!(
        until > a["expires_at"].as_str().expect("expires_at"),
        "protected after expires_at: {doc}"
    );
    assert!(
        expired.contains(until),
        "the table shows the same time: {expired}"
    );
    let b = leases.iter().find(|l| l["holder"] == "b").expect("lease b");
    assert_eq!(b["status"], "live");
    assert!(b.get("protected_until").is_none(), "{doc}");
    // Protected means protected: another holder is still refused.
    repo.run(&["lease", "acquire", "--holder", "c", "--file", "x"])
        .fails(5, &["x"]);
}

#[test]
fn renew_by_id_keeps_the_lease_and_refuses_other_holders() {
    let repo = Repo::new();
    let granted = repo
        .run(&[
            "--json", "lease", "acquire", "--holder", "a", "--dir", "src", "--ttl", "10m",
        ])
        .json();
    let id = granted["id"].as_str().expect("id");
    let renewed = repo
        .run(&[
            "--json", "lease", "renew", id, "--holder", "a", "--ttl", "1h",
        ])
        .json();
    assert_eq!(renewed["id"], granted["id"]);
    assert_eq!(renewed["token"], granted["token"]);
    assert_eq!(renewed["mode"], "exclusive");
    assert_eq!(renewed["ttl_secs"], 3600);
    let text = repo.run(&["lease", "renew", id, "--holder", "a"]).ok();
    assert!(text.starts_with(&format!("renewed {id} until ")), "{text}");
    // Another holder's lease is a conflict, like `lease release`; an unknown one not found.
    repo.run(&["lease", "renew", id, "--holder", "b"])
        .fails(5, &[id]);
    repo.run(&["lease", "renew", "9-nope", "--holder", "a"])
        .fails(4, &["9-nope"]);
    let list = repo.run(&["lease", "list"]).ok();
    assert!(
        list.contains(" exclusive ") && list.contains(" live "),
        "{list}"
    );
}
