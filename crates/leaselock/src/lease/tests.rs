//! Unit tests of the protocol over the in-memory store.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::protocol::{self, Ctx, Releaser, Request};
use super::record::{HolderFacts, Lease, Mode};
use super::store::{CorruptEntry, Entry, LeaseStore, MemStore, WriteFailed};
use super::{LeaseErrorKind, Released};

fn facts() -> HolderFacts {
    HolderFacts {
        host: "h".into(),
        boot_id: None,
        pid: 1,
        start_time: None,
        pid_ns: None,
        session: None,
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

/// A store that fails on command, to check "an acknowledged result is the truth, and a
/// reported failure changed nothing" in the protocol itself.
#[derive(Default)]
struct Faulty {
    inner: MemStore,
    /// Fail the next put; `Some(true)`: after the record became visible (rename done, sync
    /// failed), `Some(false)`: before.
    fail_put: Option<bool>,
    fail_sync: bool,
    fail_remove: bool,
    fail_token: bool,
}

fn io_error() -> super::LeaseError {
    super::LeaseError::io("memory", "inject", std::io::Error::other("injected"))
}

impl LeaseStore for Faulty {
    fn entries(&mut self) -> Result<Vec<&Entry>, super::LeaseError> {
        self.inner.entries()
    }
    fn get(&mut self, id: &str) -> Result<Option<Entry>, super::LeaseError> {
        self.inner.get(id)
    }
    fn put(&mut self, lease: &Lease) -> Result<(), WriteFailed> {
        match self.fail_put.take() {
            None => self.inner.put(lease),
            Some(visible) => {
                if visible {
                    self.inner.put(lease)?;
                }
                Err(WriteFailed {
                    error: io_error(),
                    visible,
                })
            }
        }
    }
    fn remove(&mut self, id: &str) -> Result<bool, super::LeaseError> {
        if self.fail_remove {
            return Err(io_error());
        }
        self.inner.remove(id)
    }
    fn sync(&mut self) -> Result<(), super::LeaseError> {
        if std::mem::take(&mut self.fail_sync) {
            return Err(io_error());
        }
        Ok(())
    }
    fn next_token(&mut self) -> Result<u64, super::LeaseError> {
        if self.fail_token {
            return Err(io_error());
        }
        self.inner.next_token()
    }
    fn location(&self, id: &str) -> PathBuf {
        self.inner.location(id)
    }
}

#[test]
fn a_failed_grant_leaves_no_lease_and_an_acknowledged_one_stays() -> Result<(), super::LeaseError> {
    let r = req("a", Mode::Exclusive, &["f"], &[]);
    for visible in [false, true] {
        let mut s = Faulty {
            fail_put: Some(visible),
            ..Faulty::default()
        };
        protocol::grant(&mut s, &r, facts(), &ctx(0)).expect_err("injected");
        assert!(
            s.inner.entries.is_empty(),
            "half-granted (visible {visible})"
        );
        // The retry is granted, with a fresh token.
        let g = protocol::grant(&mut s, &r, facts(), &ctx(0))?;
        assert!(g.lease.token >= 2);
    }
    let mut s = Faulty {
        fail_token: true,
        ..Faulty::default()
    };
    protocol::grant(&mut s, &r, facts(), &ctx(0)).expect_err("no token");
    assert!(s.inner.entries.is_empty());
    // Once the lease is durable, failing to remove the dead leases it took over (or to sync
    // that removal) does not turn the grant into an error.
    let mut s = Faulty::default();
    protocol::grant(
        &mut s,
        &req("old", Mode::Exclusive, &["f"], &[]),
        facts(),
        &ctx(0),
    )?;
    s.fail_remove = true;
    s.fail_sync = true;
    let g = protocol::grant(&mut s, &r, facts(), &ctx(100))?;
    assert_eq!(g.took_over.len(), 1);
    assert!(s.inner.entries.contains_key(&g.lease.id));
    Ok(())
}

#[test]
fn a_failed_renewal_or_release_changes_nothing() -> Result<(), super::LeaseError> {
    let mut s = Faulty::default();
    let a = protocol::grant(
        &mut s,
        &req("a", Mode::Exclusive, &["f"], &[]),
        facts(),
        &ctx(0),
    )?
    .lease;
    for visible in [false, true] {
        s.fail_put = Some(visible);
        protocol::renew(&mut s, &a, Some(Duration::from_secs(99)), &ctx(5)).expect_err("inj");
        assert_eq!(
            s.inner.entries.get(&a.id),
            Some(&Entry::Lease(a.clone())),
            "renewal half-applied (visible {visible})"
        );
    }
    s.fail_sync = true;
    protocol::release(&mut s, &a.id, Releaser::Holder("a", Some(a.token))).expect_err("inj");
    assert_eq!(s.inner.entries.get(&a.id), Some(&Entry::Lease(a.clone())));
    s.fail_remove = true;
    protocol::release(&mut s, &a.id, Releaser::Holder("a", Some(a.token))).expect_err("inj");
    assert!(s.inner.entries.contains_key(&a.id));
    s.fail_remove = false;
    protocol::release(&mut s, &a.id, Releaser::Holder("a", Some(a.token)))?;
    assert!(s.inner.entries.is_empty());
    Ok(())
}

#[test]
fn expired_inside_the_margin_is_expired_but_protected() -> Result<(), super::LeaseError> {
    let mut s = MemStore::default();
    let a = grant(&mut s, &req("a", Mode::Exclusive, &["f"], &[]), 0)?;
    // TTL 10 s, margin 1 s.
    assert_eq!(ctx(9).judge(&a), super::LeaseStatus::Live);
    let protected = ctx(10).judge(&a);
    assert_eq!(
        protected,
        super::LeaseStatus::ExpiredProtected {
            protected_until: at(11)
        }
    );
    assert!(protected.blocks_grants() && !protected.is_live());
    assert_eq!(protected.name(), "expired");
    assert!(
        protected
            .to_string()
            .starts_with("expired (protected until ")
    );
    assert_eq!(ctx(11).judge(&a).protected_until(), Some(at(11)));
    assert_eq!(ctx(12).judge(&a), super::LeaseStatus::Expired);
    assert!(!ctx(12).judge(&a).blocks_grants());
    // Protected means protected.
    assert!(grant(&mut s, &req("b", Mode::Exclusive, &["f"], &[]), 11).is_err());
    Ok(())
}

#[test]
fn statuses_display_and_round_trip_through_serde() {
    let cases = [
        (
            super::LeaseStatus::Live,
            "live",
            r#"{"status":"live","blocks_grants":true}"#,
        ),
        (
            super::LeaseStatus::Expired,
            "expired",
            r#"{"status":"expired","blocks_grants":false}"#,
        ),
        (
            super::LeaseStatus::ExpiredProtected {
                protected_until: UNIX_EPOCH + Duration::from_millis(1_768_663_805_123),
            },
            "expired (protected until 2026-01-17T15:30:05.123Z)",
            r#"{"status":"expired","blocks_grants":true,"protected_until":1768663805123}"#,
        ),
        (
            super::LeaseStatus::HolderDead {
                reason: "no process 7".into(),
            },
            "holder-dead (no process 7)",
            r#"{"status":"holder-dead","blocks_grants":false,"reason":"no process 7"}"#,
        ),
    ];
    for (status, shown, json) in cases {
        assert_eq!(status.to_string(), shown);
        assert_eq!(serde_json::to_string(&status).expect("encode"), json);
        let back: super::LeaseStatus = serde_json::from_str(json).expect("decode");
        assert_eq!(back, status);
    }
    assert!(serde_json::from_str::<super::LeaseStatus>(r#"{"status":"zombie"}"#).is_err());
    assert_eq!(Mode::Exclusive.to_string(), "exclusive");
    assert_eq!(
        serde_json::to_string(&Mode::Shared).expect("mode"),
        "\"shared\""
    );
}
