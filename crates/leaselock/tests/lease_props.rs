//! Property tests: path normalization, the overlap relation, and a model-based test of the
//! whole lease protocol over real files against a small reference model.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leaselock::lease::{
    Claim, Clock, Durability, Lease, LeaseOptions, LeaseRequest, Leases, normalize_path, overlaps,
};
use proptest::prelude::*;

fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "src", "srcx", ".", "..", "", "x.rs"])
}

/// Reference normalization: a stack of components; `None` when it climbs out or ends empty.
fn reference_normalize(path: &str) -> Option<String> {
    let mut stack = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                stack.pop()?;
            }
            p => stack.push(p),
        }
    }
    (!stack.is_empty()).then(|| stack.join("/"))
}

fn components(p: &str) -> Vec<&str> {
    p.split('/').collect()
}

/// Reference overlap over component lists.
fn reference_overlap(a: (bool, &str), b: (bool, &str)) -> bool {
    let (ad, ap) = a;
    let (bd, bp) = b;
    let (ac, bc) = (components(ap), components(bp));
    let a_under_b = ac.len() >= bc.len() && ac[..bc.len()] == bc[..];
    let b_under_a = bc.len() >= ac.len() && bc[..ac.len()] == ac[..];
    match (ad, bd) {
        (false, false) => ac == bc,
        (false, true) => a_under_b,
        (true, false) => b_under_a,
        (true, true) => a_under_b || b_under_a,
    }
}

fn claim(is_dir: bool, p: &str) -> Claim<'_> {
    if is_dir {
        Claim::Dir(p)
    } else {
        Claim::File(p)
    }
}

fn norm_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "src", "srcx", "x.rs"]),
        1..5,
    )
    .prop_map(|v| v.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn normalization_matches_the_reference(segs in prop::collection::vec(segment(), 0..8)) {
        let path = segs.join("/");
        let got = normalize_path(Path::new("/root"), &path).ok();
        if path.starts_with('/') {
            // Absolute, and never under `/root`: refused.
            prop_assert_eq!(got, None);
            return Ok(());
        }
        prop_assert_eq!(&got, &reference_normalize(&path));
        if let Some(n) = got {
            prop_assert!(n.split('/').all(|c| !matches!(c, "" | "." | "..")));
            let again = normalize_path(Path::new("/root"), &n).ok();
            prop_assert_eq!(again.as_deref(), Some(n.as_str()));
            let absolute = format!("/root/{path}");
            let via_root = normalize_path(Path::new("/root"), &absolute).ok();
            prop_assert_eq!(via_root.as_deref(), Some(n.as_str()));
        }
    }

    #[test]
    fn escaping_paths_are_refused(p in norm_path(), ups in 1usize..3) {
        let depth = p.split('/').count();
        let escaping = format!("{}{}", "../".repeat(depth + ups), p);
        prop_assert!(normalize_path(Path::new("/root"), &escaping).is_err());
        for bad in [format!("../{p}"), format!("/elsewhere/{p}"), format!("/rootx/{p}")] {
            prop_assert!(normalize_path(Path::new("/root"), &bad).is_err(), "{} accepted", bad);
        }
    }

    #[test]
    fn overlap_matches_the_reference_and_is_symmetric(
        a in norm_path(), b in norm_path(), ad in any::<bool>(), bd in any::<bool>()
    ) {
        let got = overlaps(claim(ad, &a), claim(bd, &b));
        prop_assert_eq!(got, overlaps(claim(bd, &b), claim(ad, &a)));
        prop_assert_eq!(got, reference_overlap((ad, &a), (bd, &b)));
    }

    #[test]
    fn overlap_is_reflexive_and_respects_components(p in norm_path(), rest in norm_path(), d in any::<bool>()) {
        prop_assert!(overlaps(claim(d, &p), claim(d, &p)));
        let under = format!("{p}/{rest}");
        prop_assert!(overlaps(Claim::File(&under), Claim::Dir(&p)));
        prop_assert!(overlaps(Claim::Dir(&under), Claim::Dir(&p)));
        let sibling = format!("{p}x");
        prop_assert!(!overlaps(Claim::Dir(&p), Claim::Dir(&sibling)));
        prop_assert!(!overlaps(Claim::Dir(&p), Claim::File(&sibling)));
        prop_assert!(!overlaps(Claim::File(&p), Claim::File(&under)));
    }
}

// ---------------------------------------------------------------------------------------------
// Model-based test.

#[derive(Debug)]
struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

const FILES: &[&str] = &["a", "a/b", "a/b/c", "ab", "b/x", "b"];
const DIRS: &[&str] = &["a", "a/b", "b", "ab"];
const HOLDERS: &[&str] = &["h0", "h1", "h2"];
const MARGIN_MS: u64 = 1000;

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        holder: usize,
        exclusive: bool,
        files: Vec<usize>,
        dirs: Vec<usize>,
        ttl_s: u64,
    },
    Renew(usize),
    Release(usize),
    ReleaseAsOther(usize),
    Advance(u64),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            0..HOLDERS.len(),
            any::<bool>(),
            prop::collection::vec(0..FILES.len(), 0..3),
            prop::collection::vec(0..DIRS.len(), 0..2),
            1u64..20,
        )
            .prop_filter("claims something", |(_, _, f, d, _)| !f.is_empty() || !d.is_empty())
            .prop_map(|(holder, exclusive, files, dirs, ttl_s)| Op::Acquire { holder, exclusive, files, dirs, ttl_s }),
        1 => any::<usize>().prop_map(Op::Renew),
        2 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::ReleaseAsOther),
        2 => (0u64..15_000).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
    ]
}

#[derive(Debug, Clone)]
struct ModelLease {
    exclusive: bool,
    files: Vec<String>,
    dirs: Vec<String>,
    expires_ms: u64,
    ttl_ms: u64,
}

impl ModelLease {
    fn live(&self, now: u64) -> bool {
        now <= self.expires_ms + MARGIN_MS
    }

    fn conflicts(&self, exclusive: bool, files: &[String], dirs: &[String]) -> bool {
        if !self.exclusive && !exclusive {
            return false;
        }
        let mine = self
            .files
            .iter()
            .map(|f| (false, f))
            .chain(self.dirs.iter().map(|d| (true, d)));
        let mine: Vec<_> = mine.collect();
        files
            .iter()
            .map(|f| (false, f))
            .chain(dirs.iter().map(|d| (true, d)))
            .any(|(bd, b)| {
                mine.iter()
                    .any(|(ad, a)| reference_overlap((*ad, a), (bd, b)))
            })
    }
}

fn run_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let start_ms = 1_800_000_000_000;
    let clock = Arc::new(ManualClock(AtomicU64::new(start_ms)));
    let opts = LeaseOptions::new()
        .durability(Durability::NoSync)
        .liveness(false)
        .skew_margin(Duration::from_millis(MARGIN_MS))
        .clock(clock.clone());
    // Two handles on one root, used alternately: each one's cache must see the other's changes.
    let handles = [
        Leases::open_with(dir.path(), opts.clone())
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
        Leases::open_with(dir.path(), opts).map_err(|e| TestCaseError::fail(e.to_string()))?,
    ];
    let mut model: BTreeMap<String, ModelLease> = BTreeMap::new();
    // Every lease object the test has been handed, live or not, so ops can use stale ones.
    let mut handed: Vec<Lease> = Vec::new();
    let mut last_token = 0;
    for (step, op) in ops.into_iter().enumerate() {
        let leases = &handles[step % 2];
        let now = clock.0.load(Ordering::SeqCst);
        match op {
            Op::Acquire {
                holder,
                exclusive,
                files,
                dirs,
                ttl_s,
            } => {
                let files: Vec<String> = files.iter().map(|&i| FILES[i].to_owned()).collect();
                let dirs: Vec<String> = dirs.iter().map(|&i| DIRS[i].to_owned()).collect();
                let mut req = if exclusive {
                    LeaseRequest::exclusive(HOLDERS[holder])
                } else {
                    LeaseRequest::shared(HOLDERS[holder])
                };
                req = req
                    .files(files.clone())
                    .dirs(dirs.clone())
                    .ttl(Duration::from_secs(ttl_s));
                let mut expected_conflicts: Vec<String> = model
                    .iter()
                    .filter(|(_, m)| m.live(now) && m.conflicts(exclusive, &files, &dirs))
                    .map(|(id, _)| id.clone())
                    .collect();
                expected_conflicts.sort();
                match leases.acquire(&req) {
                    Ok(grant) => {
                        prop_assert!(
                            expected_conflicts.is_empty(),
                            "granted despite {expected_conflicts:?}"
                        );
                        prop_assert!(grant.lease.token > last_token);
                        last_token = grant.lease.token;
                        let mut taken: Vec<String> =
                            grant.took_over.iter().map(|t| t.id.clone()).collect();
                        taken.sort();
                        let mut expected_taken: Vec<String> = model
                            .iter()
                            .filter(|(_, m)| !m.live(now) && m.conflicts(exclusive, &files, &dirs))
                            .map(|(id, _)| id.clone())
                            .collect();
                        expected_taken.sort();
                        prop_assert_eq!(&taken, &expected_taken);
                        for id in taken {
                            model.remove(&id);
                        }
                        model.insert(
                            grant.lease.id.clone(),
                            ModelLease {
                                exclusive,
                                files,
                                dirs,
                                expires_ms: now + ttl_s * 1000,
                                ttl_ms: ttl_s * 1000,
                            },
                        );
                        handed.push(grant.lease);
                    }
                    Err(err) => {
                        let mut got: Vec<String> =
                            err.conflicts().iter().map(|c| c.id.clone()).collect();
                        got.sort();
                        prop_assert!(err.is_conflict(), "{err}");
                        prop_assert_eq!(&got, &expected_conflicts);
                    }
                }
            }
            Op::Renew(i) if !handed.is_empty() => {
                let lease = handed[i % handed.len()].clone();
                let result = leases.renew(&lease);
                match model.get_mut(&lease.id) {
                    Some(m) => {
                        let renewed = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        m.expires_ms = now + m.ttl_ms;
                        prop_assert_eq!(renewed.token, lease.token);
                        handed.push(renewed);
                    }
                    None => prop_assert!(result.is_err()),
                }
            }
            Op::Release(i) if !handed.is_empty() => {
                let lease = &handed[i % handed.len()];
                let result = leases.release(lease);
                prop_assert_eq!(result.is_ok(), model.remove(&lease.id).is_some());
            }
            Op::ReleaseAsOther(i) if !handed.is_empty() => {
                let lease = &handed[i % handed.len()];
                prop_assert!(leases.release_id(&lease.id, "intruder").is_err());
            }
            Op::Advance(ms) => {
                clock.0.fetch_add(ms, Ordering::SeqCst);
            }
            Op::Sweep => {
                let report = leases
                    .sweep()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let mut got: Vec<String> =
                    report.removed.iter().map(|s| s.lease.id.clone()).collect();
                got.sort();
                let expected: Vec<String> = model
                    .iter()
                    .filter(|(_, m)| !m.live(now))
                    .map(|(id, _)| id.clone())
                    .collect();
                prop_assert_eq!(&got, &expected);
                model.retain(|_, m| m.live(now));
            }
            _ => {}
        }
        let listed: Vec<String> = leases
            .list()
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .leases
            .into_iter()
            .map(|(l, _)| l.id)
            .collect();
        let expected: Vec<String> = model.keys().cloned().collect();
        prop_assert_eq!(listed, expected);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn protocol_matches_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        run_model(ops)?;
    }
}
