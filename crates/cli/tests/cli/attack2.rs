//! Second round of attacks on the issue-10 fixes (idempotency keys and the index cache) that
//! still get through on HEAD. Each test asserts what the issue demands.

use crate::util::Repo;

/// CRC-32 (IEEE), as atomic-file's checksummed header uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A payload in atomic-file's checksummed format (`# atomic-file v1 len=N crc32=X`).
fn checksummed(payload: &str) -> String {
    format!(
        "# atomic-file v1 len={} crc32={:08x}\n{payload}",
        payload.len(),
        crc32(payload.as_bytes())
    )
}

/// The `request` field of a key record the tool wrote itself.
fn key_request(repo: &Repo, key: &str) -> String {
    let text = std::fs::read_to_string(repo.registry().join(format!("keys/{key}.json")))
        .expect("attack setup: key record");
    let body = text.split_once('\n').expect("attack setup: header").1;
    let v: serde_json::Value = serde_json::from_str(body).expect("attack setup: key json");
    v["request"]
        .as_str()
        .expect("attack setup: request")
        .to_owned()
}

/// Plants `keys/KEY.json` with a valid checksum.
fn plant_key(repo: &Repo, key: &str, request: &str, ids: &[&str], seq: u64) {
    let payload = serde_json::json!({ "request": request, "ids": ids, "seq": seq }).to_string();
    let dir = repo.registry().join("keys");
    std::fs::create_dir_all(&dir).expect("attack setup");
    std::fs::write(dir.join(format!("{key}.json")), checksummed(&payload)).expect("attack setup");
}

/// `keys/` is git-ignored (local) while `gaps/` is committed. An agent files "mine" with key
/// K (GAP-OP-1, not yet pushed), then `git reset --hard origin` + pull brings a teammate's
/// GAP-OP-1 "other"; the local key record survives. The agent's retry with K now prints
/// GAP-OP-1 — someone else's gap — with exit 0 as if it had filed it. The retry path
/// (registry.rs `file_batch_keyed`, the `filed.len() == record.ids.len()` return) never
/// checks that the gaps it returns are the ones this request filed.
#[test]
fn attack2_a_stale_key_record_never_returns_another_agents_gap() {
    let mine = Repo::new();
    assert_eq!(
        mine.run(&["file", "--title", "mine", "--idempotency-key", "K"])
            .ok()
            .trim(),
        "GAP-OP-1"
    );
    let record = std::fs::read(mine.registry().join("keys/K.json")).expect("attack setup");
    // The same registry after `git reset --hard` + pull: the teammate's GAP-OP-1.
    let repo = Repo::new();
    repo.run(&["file", "--title", "other"]).ok();
    std::fs::create_dir_all(repo.registry().join("keys")).expect("attack setup");
    std::fs::write(repo.registry().join("keys/K.json"), record).expect("attack setup");
    let retry = repo.run(&[
        "file",
        "--title",
        "mine",
        "--idempotency-key",
        "K",
        "--json",
    ]);
    let titles = repo.run(&["list", "--json"]).stdout();
    assert!(
        retry.code() != 0 || retry.stdout().contains("\"mine\""),
        "retry of `file --title mine --idempotency-key K` answered exit 0 with another \
         agent's gap: {} (registry: {titles})",
        retry.stdout()
    );
}

/// A key record whose ids were never reserved here (a stale record, or one carried over from
/// another clone): the retry files them with exit 0 without raising the id counters, so the
/// very next plain `gapreg file` fails (exit 3, "the id counter is behind the gap files") and
/// `doctor` says UNHEALTHY. The reuse path skips `reserve_for` (registry.rs, `Some(record) =>
/// (record.ids, record.seq)`). An acknowledged result must leave a healthy registry.
#[test]
fn attack2_a_key_retry_leaves_the_counters_behind_its_gaps() {
    let src = Repo::new();
    src.run(&["file", "--title", "mine", "--idempotency-key", "K"])
        .ok();
    let request = key_request(&src, "K");
    let repo = Repo::new();
    plant_key(&repo, "K", &request, &["GAP-OP-1"], 1);
    let retry = repo.run(&["file", "--title", "mine", "--idempotency-key", "K"]);
    // Either the record is refused as damaged (exit 6, naming it) and nothing is filed, or
    // the retry succeeds and leaves a healthy registry.
    if retry.code() == 6 {
        assert!(retry.stderr().contains("K.json"), "{}", retry.stderr());
        let list = repo.run(&["list", "--json"]);
        assert_eq!(
            list.stdout().trim(),
            "[]",
            "a refused retry filed something"
        );
        return;
    }
    assert_eq!(retry.code(), 0, "{}", retry.stderr());
    let next = repo.run(&["file", "--title", "next"]);
    let doctor = repo.run(&["doctor"]);
    assert!(
        next.code() == 0 && doctor.code() == 0,
        "after an exit-0 keyed retry: next `file` exit {} ({}), doctor exit {} ({})",
        next.code(),
        next.stderr().trim(),
        doctor.code(),
        doctor.stdout().trim()
    );
}

/// A key record's ids are not validated: duplicate ids in a batch record make the retry
/// print GAP-OP-7 twice with exit 0 while only one gap file exists — the first entry of an
/// acknowledged batch is silently lost (the second staged file overwrites the first).
#[test]
fn attack2_a_key_record_with_duplicate_ids_never_loses_an_acknowledged_gap() {
    let batch = "- {prefix: OP, title: a}\n- {prefix: OP, title: b}\n";
    let src = Repo::new();
    std::fs::write(src.path().join("b.yaml"), batch).expect("attack setup");
    src.run(&["file", "--batch", "b.yaml", "--idempotency-key", "KB"])
        .ok();
    let request = key_request(&src, "KB");
    let repo = Repo::new();
    std::fs::write(repo.path().join("b.yaml"), batch).expect("attack setup");
    plant_key(&repo, "KB", &request, &["GAP-OP-7", "GAP-OP-7"], 1);
    let retry = repo.run(&["file", "--batch", "b.yaml", "--idempotency-key", "KB"]);
    let list = repo.run(&["list", "--json"]).stdout();
    let titles: Vec<String> = serde_json::from_str::<serde_json::Value>(&list)
        .ok()
        .and_then(|v| {
            let arr = v
                .as_array()
                .cloned()
                .or_else(|| v["gaps"].as_array().cloned())?;
            Some(
                arr.iter()
                    .filter_map(|g| g["title"].as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .unwrap_or_default();
    assert!(
        retry.code() != 0 || (titles.contains(&"a".into()) && titles.contains(&"b".into())),
        "keyed batch retry exit 0 printing {:?}, but the registry holds only {titles:?}",
        retry.stdout()
    );
}

/// A key record's ids are filed as they are: an id of a prefix outside the allow-list
/// (GAP-XX-1) or an id numbered 0 (GAP-OP-0) is written with exit 0 — the batch checks
/// (`check_spec`, the prefix allow-list) never see them.
#[test]
fn attack2_a_key_record_cannot_file_ids_the_registry_would_refuse() {
    for id in ["GAP-XX-1", "GAP-OP-0"] {
        let src = Repo::new();
        src.run(&["file", "--title", "mine", "--idempotency-key", "K"])
            .ok();
        let request = key_request(&src, "K");
        let repo = Repo::new();
        plant_key(&repo, "K", &request, &[id], 1);
        let retry = repo.run(&["file", "--title", "mine", "--idempotency-key", "K"]);
        assert!(
            retry.code() != 0 || !repo.registry().join(format!("gaps/{id}.yaml")).exists(),
            "a planted key record filed {id} with exit 0: {}",
            retry.stdout()
        );
        let plain = Repo::new();
        let direct = plain.run(&["file", "--title", "t", "--id", id]);
        assert_ne!(
            direct.code(),
            0,
            "sanity: `file --id {id}` is refused directly"
        );
    }
}
