//! Model-based test: random sequences of file, file_batch, claim, unclaim, set_status,
//! add/remove dependency, list and ready against a plain in-memory reference model; the
//! registry's answers and state must match the model's after every step — run over both
//! stores: the registry's files, and the engine over the in-memory stores.

use std::collections::BTreeMap;

use std::time::Duration;

use gapreg::store::{ManualClock, MemCoordination, MemDocuments};
use gapreg::{
    ConflictDetail, Engine, ErrorKind, Filter, Gap, GapSpec, GapSummary, Registry, Result,
    Severity, Status,
};
use proptest::prelude::*;

use crate::util::{scratch, write_loop};

const AGENTS: [&str; 3] = ["CC-1", "CC-2", "CC-3"];
/// LOOP-A is active, LOOP-B complete, LOOP-C active and blocked by LOOP-A.
const LOOPS: [&str; 3] = ["LOOP-A", "LOOP-B", "LOOP-C"];
const STATUSES: [Status; 7] = [
    Status::Open,
    Status::NeedsPlan,
    Status::Ready,
    Status::InProgress,
    Status::Blocked,
    Status::Complete,
    Status::OutOfScope,
];

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    valid_title: bool,
    severity: Severity,
    status: Option<Status>,
    parent: Option<usize>,
    /// Indices into the existing gaps (modulo their number).
    deps: Vec<usize>,
    loop_dep: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    File(Entry),
    Batch(Vec<Entry>),
    /// Gap, agent, and whether the claim has a zero TTL (expired at once, so others may take
    /// it over).
    Claim(usize, usize, bool),
    Unclaim(usize, usize),
    SetStatus(usize, Status, u8),
    AddDep(usize, usize),
    AddLoopDep(usize, usize),
    RemoveDep(usize, usize),
    List(Option<Status>),
    Ready,
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop::bool::weighted(0.9),
        prop::sample::select(Severity::ALL),
        prop::option::weighted(0.5, prop::sample::select(&STATUSES[..])),
        prop::option::of(0..LOOPS.len()),
        prop::collection::vec(0..64usize, 0..3),
        prop::option::weighted(0.2, 0..LOOPS.len()),
    )
        .prop_map(
            |(valid_title, severity, status, parent, deps, loop_dep)| Entry {
                valid_title,
                severity,
                status,
                parent,
                deps,
                loop_dep,
            },
        )
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let g = 0..64usize;
    prop_oneof![
        3 => entry().prop_map(Op::File),
        1 => prop::collection::vec(entry(), 2..5).prop_map(Op::Batch),
        2 => (g.clone(), 0..AGENTS.len(), prop::bool::weighted(0.3)).prop_map(|(a, b, t)| Op::Claim(a, b, t)),
        1 => (g.clone(), 0..AGENTS.len()).prop_map(|(a, b)| Op::Unclaim(a, b)),
        2 => (g.clone(), prop::sample::select(&STATUSES[..]), 0..3u8).prop_map(|(a, s, e)| Op::SetStatus(a, s, e)),
        2 => (g.clone(), g.clone()).prop_map(|(a, b)| Op::AddDep(a, b)),
        1 => (g.clone(), 0..LOOPS.len()).prop_map(|(a, b)| Op::AddLoopDep(a, b)),
        1 => (g.clone(), g.clone()).prop_map(|(a, b)| Op::RemoveDep(a, b)),
        1 => prop::option::of(prop::sample::select(&STATUSES[..])).prop_map(Op::List),
        1 => Just(Op::Ready),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct MGap {
    id: String,
    seq: u64,
    rev: u64,
    severity: Severity,
    status: Status,
    before: Option<Status>,
    claimed_by: Option<String>,
    /// The claim has lapsed (zero TTL).
    expired: bool,
    parent: Option<String>,
    deps: Vec<String>,
}

#[derive(Debug, Default)]
struct Model {
    gaps: Vec<MGap>,
    next_id: u64,
    next_seq: u64,
}

fn loop_complete(id: &str) -> bool {
    id == "LOOP-B"
}

impl Model {
    fn get(&self, id: &str) -> Option<&MGap> {
        self.gaps.iter().find(|g| g.id == id)
    }

    fn dep_complete(&self, d: &str) -> bool {
        match self.get(d) {
            Some(g) => g.status == Status::Complete,
            None => loop_complete(d),
        }
    }

    /// The spec for `e`, and whether it is valid.
    fn spec(&self, e: &Entry) -> (GapSpec, bool) {
        let mut s = GapSpec::new(if e.valid_title { "a gap" } else { " " }, e.severity);
        s.status = e.status;
        s.parent_loop = e.parent.map(|p| LOOPS[p].to_owned());
        if !self.gaps.is_empty() {
            for d in &e.deps {
                let id = self.gaps[d % self.gaps.len()].id.clone();
                if !s.depends_on.contains(&id) {
                    s.depends_on.push(id);
                }
            }
        }
        if let Some(l) = e.loop_dep {
            s.depends_on.push(LOOPS[l].to_owned());
        }
        let status_ok = match e.status {
            Some(Status::InProgress) => false,
            Some(Status::Complete) => s.depends_on.iter().all(|d| self.dep_complete(d)),
            _ => true,
        };
        (s, e.valid_title && status_ok)
    }

    fn add(&mut self, s: &GapSpec) -> MGap {
        self.next_id += 1;
        self.next_seq += 1;
        let g = MGap {
            id: format!("GAP-OP-{}", self.next_id),
            seq: self.next_seq,
            rev: 1,
            severity: s.severity.unwrap_or(Severity::Medium),
            status: s.status.unwrap_or(Status::Open),
            before: None,
            claimed_by: None,
            expired: false,
            parent: s.parent_loop.clone(),
            deps: s.depends_on.clone(),
        };
        self.gaps.push(g.clone());
        g
    }

    fn reaches(&self, from: &str, target: &str) -> bool {
        let mut stack = vec![from.to_owned()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(n) = stack.pop() {
            if n == target {
                return true;
            }
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some(g) = self.get(&n) {
                stack.extend(g.deps.iter().cloned());
            } else if n == "LOOP-C" {
                stack.push("LOOP-A".into());
            }
        }
        false
    }

    fn ready(&self) -> Vec<String> {
        let mut r: Vec<&MGap> = self
            .gaps
            .iter()
            .filter(|g| {
                !g.status.is_closed()
                    && g.status != Status::Blocked
                    && (g.claimed_by.is_none() || g.expired)
                    && g.deps.iter().all(|d| self.dep_complete(d))
                    && g.parent.as_deref() != Some("LOOP-C")
            })
            .collect();
        r.sort_by_key(|g| (g.severity, g.seq));
        r.into_iter().map(|g| g.id.clone()).collect()
    }
}

fn same(real: &Gap, m: &MGap) {
    assert_eq!(real.id, m.id);
    assert_eq!(real.seq, m.seq, "{}", m.id);
    assert_eq!(real.rev, m.rev, "{}", m.id);
    assert_eq!(real.status, m.status, "{}", m.id);
    assert_eq!(real.claimed_by, m.claimed_by, "{}", m.id);
    assert_eq!(real.depends_on, m.deps, "{}", m.id);
    assert_eq!(real.parent_loop, m.parent, "{}", m.id);
    assert_eq!(real.severity, m.severity, "{}", m.id);
}

/// What the model drives: the registry on files, or the engine over memory.
pub(crate) trait Target {
    fn file(&self, spec: GapSpec) -> Result<Gap>;
    fn file_batch(&self, specs: Vec<GapSpec>) -> Result<Vec<Gap>>;
    fn claim(&self, id: &str, agent: &str, ttl: Option<Duration>) -> Result<Gap>;
    fn unclaim(&self, id: &str, agent: &str) -> Result<Gap>;
    fn set_status(&self, id: &str, status: Status, rev: Option<u64>) -> Result<Gap>;
    fn add_dependency(&self, id: &str, on: &str) -> Result<Gap>;
    fn remove_dependency(&self, id: &str, on: &str) -> Result<Gap>;
    fn list(&self, filter: &Filter) -> Result<Vec<GapSummary>>;
    fn ready(&self) -> Result<Vec<GapSummary>>;
}

impl Target for Registry {
    fn file(&self, spec: GapSpec) -> Result<Gap> {
        Registry::file(self, spec)
    }
    fn file_batch(&self, specs: Vec<GapSpec>) -> Result<Vec<Gap>> {
        Registry::file_batch(self, specs)
    }
    fn claim(&self, id: &str, agent: &str, ttl: Option<Duration>) -> Result<Gap> {
        Registry::claim(self, id, agent, ttl)
    }
    fn unclaim(&self, id: &str, agent: &str) -> Result<Gap> {
        Registry::unclaim(self, id, agent)
    }
    fn set_status(&self, id: &str, status: Status, rev: Option<u64>) -> Result<Gap> {
        Registry::set_status(self, id, status, rev)
    }
    fn add_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        Registry::add_dependency(self, id, on)
    }
    fn remove_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        Registry::remove_dependency(self, id, on)
    }
    fn list(&self, filter: &Filter) -> Result<Vec<GapSummary>> {
        Registry::list(self, filter)
    }
    fn ready(&self) -> Result<Vec<GapSummary>> {
        Registry::ready(self)
    }
}

/// The in-memory stores, and a clock that never moves (a zero TTL has lapsed at once).
#[derive(Default)]
struct Mem {
    docs: MemDocuments,
    coord: MemCoordination,
    clock: ManualClock,
}

impl Mem {
    fn engine(&self) -> Engine<'_, MemDocuments, MemCoordination, ManualClock> {
        Engine::new(&self.docs, &self.coord, &self.clock, "OP")
    }
}

impl Target for Mem {
    fn file(&self, spec: GapSpec) -> Result<Gap> {
        self.engine().file(spec)
    }
    fn file_batch(&self, specs: Vec<GapSpec>) -> Result<Vec<Gap>> {
        self.engine().file_batch(specs, None)
    }
    fn claim(&self, id: &str, agent: &str, ttl: Option<Duration>) -> Result<Gap> {
        self.engine().claim(id, agent, ttl)
    }
    fn unclaim(&self, id: &str, agent: &str) -> Result<Gap> {
        self.engine().unclaim(id, agent)
    }
    fn set_status(&self, id: &str, status: Status, rev: Option<u64>) -> Result<Gap> {
        self.engine().set_status(id, status, rev)
    }
    fn add_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        self.engine().add_dependency(id, on)
    }
    fn remove_dependency(&self, id: &str, on: &str) -> Result<Gap> {
        self.engine().remove_dependency(id, on)
    }
    fn list(&self, filter: &Filter) -> Result<Vec<GapSummary>> {
        Ok(self.engine().list(filter)?.value)
    }
    fn ready(&self) -> Result<Vec<GapSummary>> {
        Ok(self.engine().ready()?.value)
    }
}

/// The model's three loops: LOOP-A active, LOOP-B complete, LOOP-C active after LOOP-A.
pub(crate) const LOOP_FILES: [(&str, &str, &[&str]); 3] = [
    ("LOOP-A", "active", &[]),
    ("LOOP-B", "complete", &[]),
    ("LOOP-C", "active", &["LOOP-A"]),
];

pub(crate) fn drive(target: &impl Target, ops: &[Op]) {
    let mut m = Model::default();
    for (step, op) in ops.iter().enumerate() {
        apply(target, &mut m, op, step);
        check_all(target, &m, step);
    }
}

fn run(ops: Vec<Op>) {
    let (_dir, reg) = scratch();
    for (id, status, deps) in LOOP_FILES {
        write_loop(&reg, id, status, deps);
    }
    drive(&reg, &ops);
    let report = reg.doctor(false).expect("doctor");
    assert!(report.healthy(), "{:#?}", report.findings);

    let mem = Mem::default();
    for (id, status, deps) in LOOP_FILES {
        let text = crate::util::loop_text(id, status, deps);
        mem.docs.put_loop(gapreg::parse_loop(&text).expect("loop"));
    }
    drive(&mem, &ops);
    // Both stores hold the same gaps, field for field but the times.
    let files = reg.list(&Filter::default()).expect("list");
    let memory = Target::list(&mem, &Filter::default()).expect("list");
    let key = |g: &GapSummary| {
        (
            g.id.clone(),
            g.seq,
            g.rev,
            g.status,
            g.claimed_by.clone(),
            g.depends_on.clone(),
        )
    };
    assert_eq!(
        files.iter().map(key).collect::<Vec<_>>(),
        memory.iter().map(key).collect::<Vec<_>>()
    );
}

fn pick(m: &Model, i: usize) -> Option<String> {
    (!m.gaps.is_empty()).then(|| m.gaps[i % m.gaps.len()].id.clone())
}

fn apply(reg: &impl Target, m: &mut Model, op: &Op, step: usize) {
    let ctx = format!("step {step}: {op:?}");
    match op {
        Op::File(e) => {
            let (spec, valid) = m.spec(e);
            match reg.file(spec.clone()) {
                Ok(g) => {
                    assert!(valid, "{ctx}: accepted an invalid gap");
                    let mg = m.add(&spec);
                    same(&g, &mg);
                }
                Err(err) => assert!(!valid, "{ctx}: {err}"),
            }
        }
        Op::Batch(entries) => {
            let specs: Vec<(GapSpec, bool)> = entries.iter().map(|e| m.spec(e)).collect();
            let invalid: Vec<usize> = specs
                .iter()
                .enumerate()
                .filter(|(_, (_, v))| !v)
                .map(|(i, _)| i)
                .collect();
            match reg.file_batch(specs.iter().map(|(s, _)| s.clone()).collect()) {
                Ok(gaps) => {
                    assert!(
                        invalid.is_empty(),
                        "{ctx}: accepted invalid entries {invalid:?}"
                    );
                    for (g, (s, _)) in gaps.iter().zip(&specs) {
                        let mg = m.add(s);
                        same(g, &mg);
                    }
                }
                Err(err) => match err.kind() {
                    ErrorKind::BatchInvalid { errors } => {
                        let got: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
                        assert_eq!(got, invalid, "{ctx}: {err}");
                    }
                    other => panic!("{ctx}: {other}"),
                },
            }
        }
        Op::Claim(g, a, ttl0) => {
            let Some(id) = pick(m, *g) else { return };
            let agent = AGENTS[*a];
            let ttl = ttl0.then_some(Duration::ZERO);
            let result = reg.claim(&id, agent, ttl);
            let mg = m.gaps.iter_mut().find(|x| x.id == id).expect("model gap");
            if *ttl0 {
                // A claim that would lapse as it is granted is refused, changing nothing.
                let err = result.expect_err(&ctx);
                assert!(
                    matches!(err.kind(), ErrorKind::Invalid { .. }),
                    "{ctx}: {err}"
                );
                return;
            }
            if mg.status.is_closed() {
                assert!(
                    matches!(result.map_err(|e| e.to_string()), Err(ref e) if e.contains("nothing to claim")),
                    "{ctx}"
                );
                return;
            }
            let live = mg.claimed_by.clone().filter(|_| !mg.expired);
            match live {
                Some(holder) if holder != agent => {
                    let err = result.expect_err(&ctx);
                    match err.kind() {
                        ErrorKind::Conflict {
                            detail: ConflictDetail::ClaimedBy { agent: w, .. },
                            ..
                        } => {
                            assert_eq!(*w, holder, "{ctx}")
                        }
                        other => panic!("{ctx}: {other}"),
                    }
                }
                Some(_) => same(&result.expect(&ctx), mg),
                None => {
                    let takeover = mg.claimed_by.is_some() && mg.status == Status::InProgress;
                    if !takeover {
                        mg.before = Some(mg.status);
                    }
                    mg.status = Status::InProgress;
                    mg.claimed_by = Some(agent.to_owned());
                    mg.expired = false;
                    mg.rev += 1;
                    same(&result.expect(&ctx), mg);
                }
            }
        }
        Op::Unclaim(g, a) => {
            let Some(id) = pick(m, *g) else { return };
            let agent = AGENTS[*a];
            let result = reg.unclaim(&id, agent);
            let mg = m.gaps.iter_mut().find(|x| x.id == id).expect("model gap");
            match mg.claimed_by.clone() {
                None => same(&result.expect(&ctx), mg),
                Some(holder) if holder != agent => {
                    assert!(
                        result.expect_err(&ctx).to_string().contains(&holder),
                        "{ctx}"
                    )
                }
                Some(_) => {
                    mg.claimed_by = None;
                    mg.expired = false;
                    if mg.status == Status::InProgress {
                        mg.status = mg.before.unwrap_or(Status::Open);
                    }
                    mg.before = None;
                    mg.rev += 1;
                    same(&result.expect(&ctx), mg);
                }
            }
        }
        Op::SetStatus(g, st, e) => {
            let Some(id) = pick(m, *g) else { return };
            let rev = m.get(&id).expect("model gap").rev;
            let expected = match e {
                0 => None,
                1 => Some(rev),
                _ => Some(rev + 1),
            };
            let deps_done = m
                .get(&id)
                .expect("model gap")
                .deps
                .iter()
                .all(|d| m.dep_complete(d));
            // A complete gap may not wait for something unfinished: reopening its
            // dependency is refused while it is complete.
            let reopens_under_dependents = m.get(&id).expect("model gap").status
                == Status::Complete
                && m.gaps
                    .iter()
                    .any(|g| g.status == Status::Complete && g.deps.contains(&id));
            let result = reg.set_status(&id, *st, expected);
            let mg = m.gaps.iter_mut().find(|x| x.id == id).expect("model gap");
            if expected.is_some_and(|x| x != rev) {
                assert!(
                    matches!(
                        result.as_ref().map_err(|e| e.kind()),
                        Err(ErrorKind::Conflict {
                            detail: ConflictDetail::Revision { .. },
                            ..
                        })
                    ),
                    "{ctx}: {result:?}"
                );
            } else if mg.status == *st {
                same(&result.expect(&ctx), mg);
            } else if reopens_under_dependents || (*st == Status::Complete && !deps_done) {
                assert!(
                    matches!(
                        result.as_ref().map_err(|e| e.kind()),
                        Err(ErrorKind::Invalid { .. })
                    ),
                    "{ctx}: {result:?}"
                );
            } else {
                if mg.status == Status::InProgress || st.is_closed() {
                    mg.before = None;
                }
                mg.status = *st;
                mg.rev += 1;
                same(&result.expect(&ctx), mg);
            }
        }
        Op::AddDep(a, b) | Op::AddLoopDep(a, b) => {
            let Some(id) = pick(m, *a) else { return };
            let on = match op {
                Op::AddLoopDep(..) => LOOPS[*b].to_owned(),
                _ => pick(m, *b).expect("non-empty"),
            };
            let result = reg.add_dependency(&id, &on);
            let cyclic = on == id || m.reaches(&on, &id);
            let mg = m
                .gaps
                .iter()
                .find(|x| x.id == id)
                .expect("model gap")
                .clone();
            if mg.deps.contains(&on) {
                same(&result.expect(&ctx), &mg);
            } else if cyclic {
                match result.as_ref().map_err(|e| e.kind()) {
                    Err(ErrorKind::Cycle { path }) => {
                        assert_eq!(path.first(), Some(&id), "{ctx}");
                        assert_eq!(path.last(), Some(&id), "{ctx}");
                        assert_eq!(path.get(1), Some(&on), "{ctx}");
                    }
                    other => panic!("{ctx}: {other:?}"),
                }
            } else if mg.status == Status::Complete && !m.dep_complete(&on) {
                // A complete gap may not gain an unfinished dependency.
                assert!(
                    matches!(
                        result.as_ref().map_err(|e| e.kind()),
                        Err(ErrorKind::Invalid { .. })
                    ),
                    "{ctx}: {result:?}"
                );
            } else {
                let mg = m.gaps.iter_mut().find(|x| x.id == id).expect("model gap");
                mg.deps.push(on);
                mg.rev += 1;
                same(&result.expect(&ctx), mg);
            }
        }
        Op::RemoveDep(a, b) => {
            let Some(id) = pick(m, *a) else { return };
            let on = pick(m, *b).expect("non-empty");
            let result = reg.remove_dependency(&id, &on);
            let mg = m.gaps.iter_mut().find(|x| x.id == id).expect("model gap");
            if mg.deps.contains(&on) {
                mg.deps.retain(|d| *d != on);
                mg.rev += 1;
                same(&result.expect(&ctx), mg);
            } else {
                assert!(result.is_err(), "{ctx}");
            }
        }
        Op::List(status) => {
            let got: Vec<String> = reg
                .list(&Filter {
                    status: *status,
                    ..Filter::default()
                })
                .expect("list")
                .into_iter()
                .map(|g| g.id)
                .collect();
            let want: Vec<String> = m
                .gaps
                .iter()
                .filter(|g| status.is_none_or(|s| s == g.status))
                .map(|g| g.id.clone())
                .collect();
            assert_eq!(got, want, "{ctx}");
        }
        Op::Ready => {
            let got: Vec<String> = reg
                .ready()
                .expect("ready")
                .into_iter()
                .map(|g| g.id)
                .collect();
            assert_eq!(got, m.ready(), "{ctx}");
        }
    }
}

fn check_all(reg: &impl Target, m: &Model, step: usize) {
    let listed = reg.list(&Filter::default()).expect("list");
    let by_id: BTreeMap<&str, &gapreg::GapSummary> =
        listed.iter().map(|g| (g.id.as_str(), g)).collect();
    assert_eq!(listed.len(), m.gaps.len(), "step {step}: gap count");
    for (g, mg) in listed.iter().zip(&m.gaps) {
        assert_eq!(g.id, mg.id, "step {step}: registry order");
        assert_eq!(
            (g.rev, g.status, &g.claimed_by, &g.depends_on),
            (mg.rev, mg.status, &mg.claimed_by, &mg.deps),
            "step {step}: {}",
            mg.id
        );
    }
    assert_eq!(by_id.len(), m.gaps.len());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn registry_matches_the_model(ops in prop::collection::vec(op(), 1..30)) {
        run(ops);
    }
}
