//! kill -9 of a lease holder: on the same host its lease is taken over at once (liveness);
//! with liveness disabled, only once its TTL (plus the skew margin) has passed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leaselock::lease::{Clock, Durability, LeaseOptions, LeaseRequest, Leases};

const CHILD_ENV: &str = "LEASELOCK_KILL_CHILD";
type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The child: takes an exclusive lease on `x` (TTL 60 s), says so, and waits to be killed.
#[test]
fn kill_child() -> Result {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let (root, marker) = spec.split_once('|').ok_or("bad spec")?;
    let leases = Leases::open(root)?;
    let grant = leases.acquire(
        &LeaseRequest::exclusive("doomed")
            .file("x")
            .ttl(Duration::from_secs(60)),
    )?;
    std::fs::write(format!("{marker}.tmp"), &grant.lease.id)?;
    std::fs::rename(format!("{marker}.tmp"), marker)?;
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}

/// Starts a child holding a lease on `x` and waits until it holds it.
fn holder(root: &Path) -> Result<Child> {
    let marker = root.join("held");
    let child = Command::new(std::env::current_exe()?)
        .args(["--exact", "kill_child", "--test-threads=1", "--quiet"])
        .env(
            CHILD_ENV,
            format!("{}|{}", root.display(), marker.display()),
        )
        .stdout(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the child never took its lease");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(child)
}

fn kill(mut child: Child) -> Result {
    child.kill()?; // SIGKILL on Unix
    child.wait()?;
    Ok(())
}

#[test]
fn killed_holder_is_taken_over_at_once_on_the_same_host() -> Result {
    if std::env::var(CHILD_ENV).is_ok() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let child = holder(root.path())?;
    let leases = Leases::open(root.path())?;
    let req = LeaseRequest::exclusive("heir").file("x");
    // While the holder lives, its lease holds.
    let err = leases.acquire(&req).expect_err("holder alive");
    assert_eq!(err.conflicts()[0].holder(), Some("doomed"));
    kill(child)?;
    // Dead holder on this host: taken over at once, with a warning naming it.
    let grant = leases.acquire(&req)?;
    assert_eq!(grant.took_over.len(), 1);
    assert_eq!(grant.took_over[0].holder, "doomed");
    assert!(
        grant.took_over[0].reason.contains("holder is dead"),
        "{}",
        grant.took_over[0]
    );
    assert_eq!(
        grant.lease.took_over, grant.took_over,
        "the warning is recorded in the lease"
    );
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
fn without_liveness_a_killed_holder_keeps_its_lease_until_expiry() -> Result {
    if std::env::var(CHILD_ENV).is_ok() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let child = holder(root.path())?;
    kill(child)?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let clock = Arc::new(ManualClock(AtomicU64::new(u64::try_from(now_ms)?)));
    let opts = LeaseOptions::new()
        .liveness(false)
        .durability(Durability::NoSync)
        .skew_margin(Duration::from_secs(5))
        .clock(clock.clone());
    let leases = Leases::open_with(root.path(), opts)?;
    let req = LeaseRequest::exclusive("heir").file("x");
    let err = leases.acquire(&req).expect_err("not expired yet");
    assert_eq!(err.conflicts()[0].holder(), Some("doomed"));
    // TTL 60 s has passed, but not the skew margin: still refused.
    clock.0.fetch_add(61_000, Ordering::SeqCst);
    assert!(leases.acquire(&req).is_err());
    clock.0.fetch_add(5_000, Ordering::SeqCst);
    let grant = leases.acquire(&req)?;
    assert_eq!(grant.took_over[0].holder, "doomed");
    assert!(
        grant.took_over[0].reason.contains("expired"),
        "{}",
        grant.took_over[0]
    );
    Ok(())
}

/// Bindings: a lease tied to another process dies with that process (pid reuse is told apart
/// by start time); a TTL-only lease outlives the process that took it.
#[test]
fn bound_leases_die_with_their_process_and_ttl_only_leases_do_not() -> Result {
    use leaselock::lease::Binding;
    let root = tempfile::tempdir()?;
    let leases = Leases::open(root.path())?;
    let mut agent = Command::new("sleep").arg("600").spawn()?;
    let bound = leases.acquire(
        &LeaseRequest::exclusive("agent")
            .file("a")
            .bind(Binding::Process(agent.id())),
    )?;
    assert_eq!(bound.lease.facts.pid, agent.id());
    let ttl_only = leases.acquire(
        &LeaseRequest::exclusive("cli")
            .file("b")
            .bind(Binding::TtlOnly),
    )?;
    // Both hold while the agent lives.
    for path in ["a", "b"] {
        let err = leases
            .acquire(&LeaseRequest::exclusive("other").file(path))
            .expect_err("held");
        assert!(err.is_conflict(), "{err}");
    }
    agent.kill()?;
    agent.wait()?;
    let taken = leases.acquire(&LeaseRequest::exclusive("other").file("a"))?;
    assert_eq!(
        taken.took_over.len(),
        1,
        "the dead agent's lease is taken over"
    );
    let err = leases
        .acquire(&LeaseRequest::exclusive("other").file("b"))
        .expect_err("a TTL-only lease lives until it expires");
    assert!(err.is_conflict());
    // Renewing keeps the binding (a short-lived renewer does not tie the lease to itself).
    let renewed = leases.renew_for(&ttl_only.lease, Duration::from_secs(120))?;
    assert_eq!(renewed.facts, ttl_only.lease.facts);
    assert_eq!(renewed.ttl, Duration::from_secs(120));
    // No such process: refused with a clear error.
    let err = leases
        .acquire(
            &LeaseRequest::exclusive("x")
                .file("c")
                .bind(Binding::Process(4_194_999)),
        )
        .expect_err("no such pid");
    assert!(err.to_string().contains("4194999"), "{err}");
    Ok(())
}
