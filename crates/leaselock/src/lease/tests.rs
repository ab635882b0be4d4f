//! Unit tests of the protocol over the in-memory store.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::protocol::{self, Ctx, Releaser, Request};
use super::record::{HolderFacts, Lease, Mode};
use super::store::{CorruptEntry, Entry, MemStore};
use super::{LeaseErrorKind, Released};

fn facts() -> HolderFacts {
    HolderFacts {
        host: "h".into(),
        boot_id: None,
        pid: 1,
        start_time: None,
        pid_ns: None,
    }
}

fn req(holder: &str, mode: Mode, files: &[&str], dirs: &[&str]) -> Request {
    Request {
        holder: holder.into(),
        mode,
        files: files.iter().map(|s| s.to_string()).collect(),
        dirs: dirs.iter().map(|s| s.to_string()).collect(),
        task: String::new(),
        ttl: Duration::from_secs(10),
    }
}

fn alive(_: &HolderFacts) -> Option<String> {
    None
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn ctx(secs: u64) -> Ctx<'static> {
    Ctx {
        now: at(secs),
        margin: Duration::from_secs(1),
        holder_dead: &alive,
    }
}

fn grant(store: &mut MemStore, r: &Request, secs: u64) -> Result<Lease, super::LeaseError> {
    protocol::grant(store, r, facts(), &ctx(secs)).map(|g| g.lease)
}

#[test]
fn conflicts_name_every_blocker_and_tokens_increase() -> Result<(), super::LeaseError> {
    let mut s = MemStore::default();
    let a = grant(&mut s, &req("a", Mode::Exclusive, &["src/a.rs"], &[]), 0)?;
    let b = grant(&mut s, &req("b", Mode::Shared, &[], &["docs"]), 0)?;
    let c = grant(&mut s, &req("c", Mode::Shared, &["docs/x.md"], &[]), 0)?;
    assert!(a.token < b.token && b.token < c.token);
    assert!(grant(&mut s, &req("d", Mode::Exclusive, &["srcx/a.rs"], &[]), 0).is_ok());
    let err = grant(
        &mut s,
        &req("e", Mode::Exclusive, &[], &["src", "docs/x.md"]),
        0,
    )
    .expect_err("conflicts");
    let mut holders: Vec<_> = err.conflicts().iter().filter_map(|c| c.holder()).collect();
    holders.sort();
    assert_eq!(holders, ["a", "b", "c"]);
    assert!(err.to_string().contains("src/a.rs"), "{err}");
    Ok(())
}

#[test]
fn expired_lease_is_taken_over_only_after_the_margin() -> Result<(), super::LeaseError> {
    let mut s = MemStore::default();
    let old = grant(&mut s, &req("old", Mode::Exclusive, &["f"], &[]), 0)?;
    // expires at 10 s, margin 1 s: still live at 11 s.
    assert!(grant(&mut s, &req("new", Mode::Exclusive, &["f"], &[]), 11).is_err());
    let g = protocol::grant(
        &mut s,
        &req("new", Mode::Exclusive, &["f"], &[]),
        facts(),
        &ctx(12),
    )?;
    assert_eq!(g.took_over.len(), 1);
    assert_eq!(g.took_over[0].holder, "old");
    assert_eq!(g.lease.took_over, g.took_over);
    assert!(!s.entries.contains_key(&old.id));
    // The old holder's lease is gone: renew, verify and release say so.
    let err = protocol::renew(&mut s, &old, None, &ctx(12)).expect_err("gone");
    assert!(matches!(err.kind(), LeaseErrorKind::NotFound { .. }));
    Ok(())
}

#[test]
fn dead_holder_is_taken_over_at_once() -> Result<(), super::LeaseError> {
    let mut s = MemStore::default();
    grant(&mut s, &req("old", Mode::Exclusive, &[], &["d"]), 0)?;
    let dead = |_: &HolderFacts| Some("no such process".to_owned());
    let c = Ctx {
        now: at(1),
        margin: Duration::ZERO,
        holder_dead: &dead,
    };
    let g = protocol::grant(
        &mut s,
        &req("new", Mode::Exclusive, &["d/x"], &[]),
        facts(),
        &c,
    )?;
    assert!(g.took_over[0].reason.contains("no such process"));
    Ok(())
}

#[test]
fn corrupt_entries_block_everything_until_forced_out() -> Result<(), super::LeaseError> {
    let mut s = MemStore::default();
    s.entries.insert(
        "7-x".into(),
        Entry::Corrupt(CorruptEntry {
            id: "7-x".into(),
            path: PathBuf::from("7-x.lease.json"),
            reason: "bad".into(),
        }),
    );
    let err = grant(&mut s, &req("a", Mode::Shared, &["anything"], &[]), 0).expect_err("blocked");
    assert!(err.is_damaged(), "{err}");
    match err.kind() {
        LeaseErrorKind::Corrupt { path, reason } => {
            assert_eq!(path, &PathBuf::from("7-x.lease.json"));
            assert!(reason.starts_with("bad; ") && reason.contains("forced release of \"7-x\""));
        }
        other => panic!("unexpected {other}"),
    }
    let report = protocol::sweep(&mut s, &ctx(100), false)?;
    assert_eq!(report.corrupt_kept.len(), 1);
    assert!(grant(&mut s, &req("a", Mode::Shared, &["anything"], &[]), 0).is_err());
    let err = protocol::release(&mut s, "7-x", Releaser::Holder("a", None)).expect_err("corrupt");
    assert!(matches!(err.kind(), LeaseErrorKind::Corrupt { .. }));
    let released = protocol::release(&mut s, "7-x", Releaser::Force)?;
    assert!(matches!(released, Released::Corrupt(_)));
    grant(&mut s, &req("a", Mode::Shared, &["anything"], &[]), 0)?;
    Ok(())
}

#[test]
fn renew_release_verify_check_the_holder() -> Result<(), super::LeaseError> {
    let mut s = MemStore::default();
    let a = grant(&mut s, &req("a", Mode::Exclusive, &["f"], &[]), 0)?;
    let renewed = protocol::renew(&mut s, &a, None, &ctx(5))?;
    assert_eq!(renewed.expires_at, at(15));
    assert_eq!(renewed.token, a.token);
    assert!(protocol::verify(&mut s, &renewed, at(14)).is_ok());
    let err = protocol::verify(&mut s, &renewed, at(15)).expect_err("own expiry");
    assert!(matches!(err.kind(), LeaseErrorKind::Expired { .. }));
    let err = protocol::release(&mut s, &a.id, Releaser::Holder("b", None)).expect_err("not b");
    assert!(matches!(err.kind(), LeaseErrorKind::NotHolder { .. }));
    protocol::release(&mut s, &a.id, Releaser::Holder("a", Some(a.token)))?;
    let report = protocol::sweep(&mut s, &ctx(100), false)?;
    assert!(report.removed.is_empty());
    Ok(())
}

#[test]
fn sweep_reports_each_dead_lease() -> Result<(), super::LeaseError> {
    let mut s = MemStore::default();
    grant(&mut s, &req("a", Mode::Exclusive, &["f"], &[]), 0)?;
    grant(&mut s, &req("b", Mode::Exclusive, &["g"], &[]), 50)?;
    let report = protocol::sweep(&mut s, &ctx(20), false)?;
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.removed[0].lease.holder, "a");
    assert!(report.removed[0].reason.contains("expired"));
    assert_eq!(s.entries.len(), 1);
    Ok(())
}
