//! The lease API over real files: storage, corrupt files, fencing, waiting, threads.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leaselock::lease::{
    Clock, Durability, LeaseErrorKind, LeaseOptions, LeaseRequest, Leases, Released,
};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn fast(dir: &std::path::Path) -> Result<Leases> {
    Ok(Leases::open_with(
        dir,
        LeaseOptions::new().durability(Durability::NoSync),
    )?)
}

#[test]
fn layout_is_one_json_file_per_lease_and_a_token_file() -> Result {
    let root = tempfile::tempdir()?;
    let leases = Leases::open(root.path())?;
    let grant = leases.acquire(
        &LeaseRequest::exclusive("agent one")
            .file("./src//a.rs")
            .task("t"),
    )?;
    let dir = root.path().join(leaselock::lease::DEFAULT_LEASES_DIR);
    assert_eq!(leases.leases_dir(), dir);
    let file = dir.join(format!("{}.lease.json", grant.lease.id));
    let bytes = fs::read(&file)?;
    assert!(bytes.starts_with(b"# atomic-file v1 len="), "checksummed");
    let json: serde_json::Value = serde_json::from_slice(atomic_file::checksum::decode(&bytes)?)?;
    assert_eq!(json["holder"], "agent one");
    assert_eq!(json["files"][0], "src/a.rs");
    assert_eq!(json["mode"], "exclusive");
    assert_eq!(json["ttl"], 3_600_000);
    assert_eq!(json["facts"]["pid"], std::process::id());
    let token = fs::read(dir.join("token.json"))?;
    let token: serde_json::Value = serde_json::from_slice(atomic_file::checksum::decode(&token)?)?;
    assert_eq!(token["last"], grant.lease.token);
    leases.release(&grant.lease)?;
    assert!(!file.exists());
    Ok(())
}

#[test]
fn tokens_keep_increasing_across_handles_and_releases() -> Result {
    let root = tempfile::tempdir()?;
    let mut last = 0;
    for _ in 0..3 {
        let leases = fast(root.path())?;
        let g = leases.acquire(&LeaseRequest::exclusive("a").file("f"))?;
        assert!(g.lease.token > last);
        last = g.lease.token;
        leases.release(&g.lease)?;
    }
    Ok(())
}

#[test]
fn invalid_requests_are_refused_with_reasons() -> Result {
    let root = tempfile::tempdir()?;
    let leases = fast(root.path())?;
    let outside = "/definitely/not/inside".to_owned();
    let inside = root.path().join("src/x.rs").to_string_lossy().into_owned();
    for (req, what) in [
        (LeaseRequest::exclusive("a").file("../x"), "climbs"),
        (LeaseRequest::exclusive("a").file(outside), "outside"),
        (LeaseRequest::exclusive("a").file(""), "empty"),
        (LeaseRequest::exclusive("a").dir("."), "root itself"),
    ] {
        let err = leases.acquire(&req).expect_err(what);
        assert!(
            matches!(err.kind(), LeaseErrorKind::InvalidPath { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(what), "{err}");
    }
    let err = leases
        .acquire(&LeaseRequest::exclusive("a"))
        .expect_err("no paths");
    assert!(matches!(err.kind(), LeaseErrorKind::InvalidRequest { .. }));
    let err = leases
        .acquire(&LeaseRequest::exclusive("").file("f"))
        .expect_err("no holder");
    assert!(matches!(err.kind(), LeaseErrorKind::InvalidRequest { .. }));
    let g = leases.acquire(&LeaseRequest::exclusive("a").file(inside))?;
    assert_eq!(g.lease.files, ["src/x.rs"]);
    Ok(())
}

#[test]
fn corrupt_lease_file_is_reported_blocks_and_needs_force() -> Result {
    let root = tempfile::tempdir()?;
    let leases = fast(root.path())?;
    let held = leases.acquire(&LeaseRequest::exclusive("a").file("held"))?;
    let bad = leases.leases_dir().join("99-mangled.lease.json");
    fs::write(&bad, b"{\"id\": \"99-mang")?;
    // Reported by list, never a panic, never ignored.
    let listing = leases.list()?;
    assert_eq!(listing.corrupt.len(), 1);
    assert_eq!(listing.corrupt[0].path, bad);
    assert_eq!(listing.leases.len(), 1);
    // Blocks even unrelated paths (fail closed), and the refusal says which file and why.
    let err = leases
        .acquire(&LeaseRequest::shared("b").file("unrelated"))
        .expect_err("blocked");
    assert!(err.is_damaged(), "{err}");
    match err.kind() {
        LeaseErrorKind::Corrupt { path, .. } => assert_eq!(path, &bad),
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("99-mangled"), "{err}");
    // A plain sweep keeps it; a holder can't release it; force does.
    assert_eq!(leases.sweep()?.corrupt_kept.len(), 1);
    assert!(bad.exists());
    assert!(leases.release_id("99-mangled", "b").is_err());
    assert!(matches!(
        leases.force_release("99-mangled")?,
        Released::Corrupt(_)
    ));
    leases.acquire(&LeaseRequest::shared("b").file("unrelated"))?;
    // A well-formed file whose id does not match its name is corrupt too.
    let mut forged = held.lease.clone();
    forged.id = "elsewhere".into();
    fs::write(
        leases.leases_dir().join("5-x.lease.json"),
        atomic_file::checksum::encode(&serde_json::to_vec(&forged)?),
    )?;
    assert_eq!(leases.list()?.corrupt.len(), 1);
    assert_eq!(leases.sweep_forced()?.corrupt_removed.len(), 1);
    assert!(leases.list()?.corrupt.is_empty());
    Ok(())
}

#[test]
fn a_damaged_token_file_stops_grants_rather_than_reuse_tokens() -> Result {
    let root = tempfile::tempdir()?;
    let leases = fast(root.path())?;
    leases.acquire(&LeaseRequest::exclusive("a").file("f"))?;
    fs::write(leases.leases_dir().join("token.json"), b"garbage")?;
    let err = leases
        .acquire(&LeaseRequest::exclusive("a").file("g"))
        .expect_err("corrupt");
    assert!(
        matches!(err.kind(), LeaseErrorKind::Corrupt { .. }),
        "{err}"
    );
    Ok(())
}

#[test]
fn changes_by_another_handle_are_seen_through_the_cache() -> Result {
    let root = tempfile::tempdir()?;
    let one = fast(root.path())?;
    let two = fast(root.path())?;
    let mut held = Vec::new();
    for i in 0..40 {
        held.push(
            one.acquire(&LeaseRequest::exclusive("one").file(format!("f{i}")))?
                .lease,
        );
    }
    // `two` starts from the index and the directory, and sees every lease.
    assert!(
        two.acquire(&LeaseRequest::exclusive("two").file("f7"))
            .is_err()
    );
    assert_eq!(two.list()?.leases.len(), 40);
    one.release(&held[7])?;
    two.acquire(&LeaseRequest::exclusive("two").file("f7"))?;
    // A renewal made by `one` is seen by `two`'s next judgement.
    let renewed = one.renew(&held[8])?;
    let listed = two.list()?;
    let seen = listed
        .leases
        .iter()
        .find(|(l, _)| l.id == renewed.id)
        .expect("listed");
    assert_eq!(seen.0.expires_at, renewed.expires_at);
    // A third handle starting cold agrees.
    assert_eq!(fast(root.path())?.list()?.leases.len(), 40);
    Ok(())
}

#[derive(Debug)]
struct ManualClock(AtomicU64);
impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

#[test]
fn fencing_verify_and_run_if_current() -> Result {
    let root = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock(AtomicU64::new(1_800_000_000_000)));
    let opts = LeaseOptions::new()
        .durability(Durability::NoSync)
        .skew_margin(Duration::from_secs(2))
        .clock(clock.clone());
    let leases = Leases::open_with(root.path(), opts)?;
    let lease = leases
        .acquire(
            &LeaseRequest::exclusive("w")
                .dir("reg")
                .ttl(Duration::from_secs(10)),
        )?
        .lease;
    assert_eq!(leases.run_if_current(&lease, |l| l.token)?, lease.token);
    clock.0.fetch_add(10_000, Ordering::SeqCst);
    // At expires_at the holder must stop (no margin for itself) ...
    let err = leases
        .run_if_current(&lease, |_| unreachable!("must not run"))
        .expect_err("expired");
    assert!(matches!(err.kind(), LeaseErrorKind::Expired { .. }));
    // ... while others still respect it until the margin has passed.
    assert!(
        leases
            .acquire(&LeaseRequest::exclusive("x").file("reg/a"))
            .is_err()
    );
    clock.0.fetch_add(2_001, Ordering::SeqCst);
    let next = leases.acquire(&LeaseRequest::exclusive("x").file("reg/a"))?;
    assert_eq!(next.took_over.len(), 1);
    assert_eq!(next.took_over[0].holder, "w");
    assert!(next.lease.token > lease.token);
    let err = leases.verify(&lease).expect_err("taken over");
    assert!(matches!(err.kind(), LeaseErrorKind::NotFound { .. }));
    assert!(leases.renew(&lease).is_err());
    Ok(())
}

#[test]
fn waiting_acquire_gets_the_lease_once_released() -> Result {
    let root = tempfile::tempdir()?;
    let leases = Arc::new(fast(root.path())?);
    let first = leases
        .acquire(&LeaseRequest::exclusive("first").file("f"))?
        .lease;
    let waiter = {
        let leases = leases.clone();
        std::thread::spawn(move || {
            leases.acquire(
                &LeaseRequest::exclusive("second")
                    .file("f")
                    .wait(Duration::from_secs(60)),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    leases.release(&first)?;
    let second = waiter.join().map_err(|_| "waiter panicked")??;
    assert_eq!(second.lease.holder, "second");
    // A wait that runs out returns the conflict.
    let err = leases
        .acquire(
            &LeaseRequest::exclusive("third")
                .file("f")
                .wait(Duration::from_millis(30)),
        )
        .expect_err("still held");
    assert_eq!(err.conflicts()[0].holder(), Some("second"));
    Ok(())
}

#[test]
fn threads_sharing_one_handle_never_get_conflicting_grants() -> Result {
    let root = tempfile::tempdir()?;
    let leases = Arc::new(fast(root.path())?);
    let granted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (leases, granted) = (leases.clone(), granted.clone());
            std::thread::spawn(move || -> std::result::Result<(), String> {
                for _ in 0..25 {
                    let req = LeaseRequest::exclusive(&format!("t{t}"))
                        .dir("shared")
                        .wait(Duration::from_secs(60));
                    let g = leases.acquire(&req).map_err(|e| e.to_string())?;
                    let n = granted.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(n % 2, 0, "another thread holds the lease");
                    granted.fetch_add(1, Ordering::SeqCst);
                    leases.release(&g.lease).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "thread panicked")??;
    }
    assert_eq!(granted.load(Ordering::SeqCst), 200);
    Ok(())
}

#[test]
fn shared_leases_coexist_and_block_writers() -> Result {
    let root = tempfile::tempdir()?;
    let leases = fast(root.path())?;
    leases.acquire(&LeaseRequest::shared("reviewer-1").dir("src"))?;
    leases.acquire(&LeaseRequest::shared("reviewer-2").file("src/lib.rs"))?;
    let err = leases
        .acquire(&LeaseRequest::exclusive("writer").file("src/lib.rs"))
        .expect_err("readers");
    assert_eq!(err.conflicts().len(), 2);
    leases.acquire(&LeaseRequest::exclusive("writer").dir("srcx"))?;
    Ok(())
}

#[test]
fn calling_back_into_the_root_from_run_if_current_is_an_error_not_a_hang() -> Result {
    let root = tempfile::tempdir()?;
    let leases = fast(root.path())?;
    let lease = leases
        .acquire(&LeaseRequest::exclusive("w").file("f"))?
        .lease;
    let inner = leases.run_if_current(&lease, |_| leases.list())?;
    let err = inner.expect_err("re-entrant call");
    assert!(matches!(err.kind(), LeaseErrorKind::Mutex { .. }), "{err}");
    Ok(())
}

#[test]
fn a_warm_handle_sees_grants_made_elsewhere_at_once() -> Result {
    let root = tempfile::tempdir()?;
    let one = fast(root.path())?;
    let two = fast(root.path())?;
    for i in 0..20 {
        // Alternate: each handle's cache is warm when the other has just granted.
        let (a, b) = if i % 2 == 0 {
            (&one, &two)
        } else {
            (&two, &one)
        };
        let path = format!("p{i}");
        a.acquire(&LeaseRequest::exclusive("a").file(&path))?;
        let err = b
            .acquire(&LeaseRequest::exclusive("b").file(&path))
            .expect_err("seen");
        assert_eq!(err.conflicts().len(), 1);
    }
    Ok(())
}

#[test]
fn a_hand_damaged_file_blocks_a_new_process_and_is_reported_by_list() -> Result {
    let root = tempfile::tempdir()?;
    let warm = fast(root.path())?;
    let lease = warm.acquire(&LeaseRequest::exclusive("a").file("f"))?.lease;
    let file = warm.leases_dir().join(format!("{}.lease.json", lease.id));
    fs::write(&file, b"{ damaged by hand")?;
    // A new handle (a new CLI process) scans the directory and is blocked everywhere.
    let cold = fast(root.path())?;
    let err = cold
        .acquire(&LeaseRequest::exclusive("b").file("elsewhere"))
        .expect_err("blocked");
    match err.kind() {
        LeaseErrorKind::Corrupt { path, .. } => assert_eq!(path, &file),
        other => panic!("unexpected {other}"),
    }
    // The warm handle reports it on list and from then on is blocked too.
    assert_eq!(warm.list()?.corrupt.len(), 1);
    assert!(
        warm.acquire(&LeaseRequest::exclusive("b").file("elsewhere"))
            .is_err()
    );
    Ok(())
}

#[test]
fn deleting_the_generation_file_only_costs_a_rescan() -> Result {
    let root = tempfile::tempdir()?;
    let one = fast(root.path())?;
    let two = fast(root.path())?;
    two.list()?; // `two` has scanned
    one.acquire(&LeaseRequest::exclusive("a").file("f"))?;
    fs::remove_file(one.leases_dir().join("generation"))?;
    let err = two
        .acquire(&LeaseRequest::exclusive("b").file("f"))
        .expect_err("seen");
    assert_eq!(err.conflicts()[0].holder(), Some("a"));
    Ok(())
}
