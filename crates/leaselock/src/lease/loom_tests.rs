//! loom models of the grant protocol over the in-memory store.
//!
//! The root's `FileMutex` is modelled by a `loom::sync::Mutex` around the store: exactly what
//! the production code relies on (every protocol step runs with the root's mutex held). loom
//! cannot see the file system; the multi-process test `tests/lease_stress.rs` covers that.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//! cargo test -p leaselock --release --lib lease`

use std::time::{Duration, UNIX_EPOCH};

use crate::sync::{Arc, Mutex};
use loom::thread;

use super::protocol::{self, Ctx, Releaser, Request};
use super::record::{HolderFacts, Lease, Mode};
use super::store::{LeaseStore, MemStore};

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

fn alive(_: &HolderFacts) -> Option<String> {
    None
}

fn ctx() -> Ctx<'static> {
    Ctx {
        now: UNIX_EPOCH + Duration::from_secs(1_000),
        margin: Duration::ZERO,
        holder_dead: &alive,
    }
}

fn req(holder: &str, mode: Mode, files: &[&str], dirs: &[&str]) -> Request {
    Request {
        holder: holder.into(),
        mode,
        files: files.iter().map(|s| s.to_string()).collect(),
        dirs: dirs.iter().map(|s| s.to_string()).collect(),
        task: String::new(),
        ttl: Duration::from_secs(60),
    }
}

/// The shared state of one model run.
struct World {
    /// The root: the store behind its mutex, plus the tokens in grant order.
    root: Mutex<(MemStore, Vec<u64>)>,
    /// Leases whose holders are "working" right now (outside the root's mutex).
    working: Mutex<Vec<Lease>>,
}

/// While holding a lease, no conflicting lease may be held by anyone else.
fn work(world: &World, lease: &Lease) {
    {
        let mut working = world.working.lock().expect("not poisoned");
        for other in working.iter() {
            assert!(
                !lease.conflicts_with(other),
                "conflicting live grants: {lease:?} and {other:?}"
            );
        }
        working.push(lease.clone());
    }
    thread::yield_now();
    world
        .working
        .lock()
        .expect("not poisoned")
        .retain(|l| l.id != lease.id);
}

/// The real protocol: check and write in one critical section.
fn correct_client(world: &World, r: &Request) {
    let granted = {
        let mut root = world.root.lock().expect("not poisoned");
        let result = protocol::grant(&mut root.0, r, facts(), &ctx());
        if let Ok(g) = &result {
            root.1.push(g.lease.token);
        }
        result.ok().map(|g| g.lease)
    };
    if let Some(lease) = granted {
        work(world, &lease);
        let mut root = world.root.lock().expect("not poisoned");
        let released = protocol::release(
            &mut root.0,
            &lease.id,
            Releaser::Holder(&lease.holder, Some(lease.token)),
        );
        assert!(released.is_ok());
    }
}

fn check(requests: Vec<Request>, client: fn(&World, &Request)) {
    loom::model(move || {
        let world = Arc::new(World {
            root: Mutex::new((MemStore::default(), Vec::new())),
            working: Mutex::new(Vec::new()),
        });
        let handles: Vec<_> = requests
            .iter()
            .cloned()
            .map(|r| {
                let world = world.clone();
                thread::spawn(move || client(&world, &r))
            })
            .collect();
        for h in handles {
            h.join().expect("thread ok");
        }
        let root = world.root.lock().expect("not poisoned");
        assert!(
            root.1.windows(2).all(|w| w[0] < w[1]),
            "tokens {:?}",
            root.1
        );
        assert!(root.0.entries.is_empty(), "every grant was released");
    });
}

#[test]
fn two_exclusive_overlapping_never_both_live() {
    check(
        vec![
            req("a", Mode::Exclusive, &[], &["src"]),
            req("b", Mode::Exclusive, &["src/lib.rs"], &[]),
        ],
        correct_client,
    );
}

#[test]
fn three_mixed_clients() {
    check(
        vec![
            req("a", Mode::Shared, &["src/lib.rs"], &[]),
            req("b", Mode::Shared, &[], &["src"]),
            req("c", Mode::Exclusive, &["src/lib.rs"], &[]),
        ],
        correct_client,
    );
}

/// A broken variant, checking in one critical section and writing in another, is caught:
/// this shows the model can see the race the real protocol closes.
fn check_then_write_client(world: &World, r: &Request) {
    let decided = {
        let root = world.root.lock().expect("not poisoned");
        let mut snapshot = root.0.clone();
        protocol::grant(&mut snapshot, r, facts(), &ctx()).ok()
    };
    if let Some(grant) = decided {
        {
            let mut root = world.root.lock().expect("not poisoned");
            let token = root.0.next_token().expect("memory");
            let lease = Lease {
                token,
                ..grant.lease
            };
            root.0.put(&lease).expect("memory");
            root.1.push(token);
            drop(root);
            work(world, &lease);
            let mut root = world.root.lock().expect("not poisoned");
            root.0.remove(&lease.id).expect("memory");
        }
    }
}

#[test]
#[should_panic(expected = "conflicting live grants")]
fn split_check_and_write_is_caught() {
    check(
        vec![
            req("a", Mode::Exclusive, &["f"], &[]),
            req("b", Mode::Exclusive, &["f"], &[]),
        ],
        check_then_write_client,
    );
}
