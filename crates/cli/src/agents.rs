//! `gapreg demo`: the main job for a newcomer. In a fresh temporary registry, N real agent
//! processes (this binary, re-executed as `gapreg demo-agent`) at once reserve ids, file gap
//! batches under a loop, take leases on overlapping paths and claim ready gaps. Then the
//! rendered overview is printed with a verification of the run: ids unique, nothing lost, no
//! two conflicting leases held at the same time, no gap claimed twice.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gapreg::leaselock::lease::{Binding, Claim, LeaseOptions, LeaseRequest, Mode, overlaps};
use gapreg::{GapSpec, LoopSpec, Registry, Severity, Status};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::output::{eprint_escaped, escape_text, fancy_stderr, print_raw};

const LOOP_ID: &str = "LOOP-DEMO";
const BATCH: usize = 5;
const LEASES_PER_AGENT: usize = 4;
/// Paths the agents fight over: overlapping files and directory prefixes.
const SCOPES: [(&[&str], &[&str]); 5] = [
    (&["src/lib.rs"], &[]),
    (&[], &["src"]),
    (&["src/cli/main.rs"], &[]),
    (&[], &["src/cli"]),
    (&["README.md", "src/lib.rs"], &[]),
];

/// One lease an agent held: its fencing token, when it held it, and what.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    token: u64,
    start_ns: u128,
    end_ns: u128,
    shared: bool,
    files: Vec<String>,
    dirs: Vec<String>,
}

/// What one agent process reports on its stdout (one JSON line).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Report {
    agent: String,
    reserved: Vec<String>,
    filed: Vec<String>,
    leases: Vec<Held>,
    claimed: Vec<String>,
    completed: Vec<String>,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Runs the demo with `agents` processes.
pub fn run(agents: u32) -> Result {
    let dir = std::env::temp_dir().join(format!("gapreg-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let outcome = run_in(&dir, agents);
    match &outcome {
        Ok(()) => std::fs::remove_dir_all(&dir)?,
        Err(_) => eprint_escaped(&format!(
            "gapreg: the demo registry is kept for inspection in {}",
            dir.display()
        )),
    }
    outcome
}

fn run_in(repo: &Path, agents: u32) -> Result {
    let registry = Registry::init(repo, gapreg::Config::default())?;
    registry.new_loop(LoopSpec {
        id: LOOP_ID.into(),
        status: None,
        owner: "demo".into(),
        scope: "the demo's gaps".into(),
        priority: Some("P1".into()),
        objective: "Show many agents sharing one registry".into(),
        depends_on: Vec::new(),
    })?;
    eprint_escaped(&format!(
        "gapreg: demo registry {}; starting {agents} agent processes",
        registry.dir().display()
    ));
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let children = (0..agents)
        .map(|i| {
            Command::new(&exe)
                .args(["demo-agent", &format!("CC-{}", i + 1)])
                .arg(repo)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let fancy = fancy_stderr();
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    // Every agent is waited for, even after one failed, so none is left running.
    for (done, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            failures.push(out.status.to_string());
        }
        for line in BufReader::new(&out.stdout[..]).lines() {
            let line = line?;
            if let Some(json) = line.strip_prefix("REPORT ") {
                reports.push(serde_json::from_str::<Report>(json)?);
            }
        }
        if fancy {
            // Progress only; a failure to show it is no failure of the demo.
            let _ = write!(
                std::io::stderr(),
                "\r\x1b[2Kgapreg: agents finished {}/{agents}",
                done + 1
            );
        }
    }
    if fancy {
        let _ = writeln!(std::io::stderr());
    }
    if !failures.is_empty() {
        return Err(format!(
            "{} of {agents} agent processes failed ({})",
            failures.len(),
            failures.join(", ")
        )
        .into());
    }
    let elapsed = started.elapsed();

    let mut text = escape_text(&registry.render()?).into_owned();
    let checks = verify(&registry, &reports, agents)?;
    text.push_str(&format!(
        "\n## Verification ({agents} agents, {elapsed:.1?})\n\n"
    ));
    let mut failed = false;
    for (ok, check) in &checks {
        failed |= !ok;
        text.push_str(&format!("- [{}] {check}\n", if *ok { "x" } else { " " }));
    }
    print_raw(text.as_bytes())?;
    if failed {
        return Err("the demo's verification failed (see above)".into());
    }
    Ok(())
}

/// Checks the run; each entry is (passed, what was checked).
fn verify(registry: &Registry, reports: &[Report], agents: u32) -> Result<Vec<(bool, String)>> {
    let mut checks = Vec::new();
    let reserved: Vec<&String> = reports.iter().flat_map(|r| &r.reserved).collect();
    let distinct: BTreeSet<&String> = reserved.iter().copied().collect();
    let expected = agents as usize * BATCH;
    checks.push((
        distinct.len() == reserved.len() && reserved.len() == expected,
        format!(
            "{} ids reserved by `ids reserve`, all distinct",
            reserved.len()
        ),
    ));

    let filed: Vec<&String> = reports.iter().flat_map(|r| &r.filed).collect();
    let listed = registry.list(&gapreg::Filter::default())?;
    let present: BTreeSet<&str> = listed.iter().map(|g| g.id.as_str()).collect();
    let all_present = filed.iter().all(|id| present.contains(id.as_str()));
    let filed_set: BTreeSet<&String> = filed.iter().copied().collect();
    checks.push((
        all_present && filed_set.len() == filed.len() && listed.len() == filed.len(),
        format!(
            "{} gaps filed in batches of {BATCH}, every one present exactly once ({} in the registry)",
            filed.len(),
            listed.len()
        ),
    ));
    let seq_of: BTreeMap<&str, u64> = listed.iter().map(|g| (g.id.as_str(), g.seq)).collect();
    let contiguous = reports.iter().all(|r| {
        let seqs: Vec<u64> = r
            .filed
            .iter()
            .filter_map(|id| seq_of.get(id.as_str()).copied())
            .collect();
        seqs.windows(2).all(|w| w[1] == w[0] + 1)
    });
    checks.push((
        contiguous,
        "every batch contiguous in registry order".into(),
    ));

    let held: Vec<&Held> = reports.iter().flat_map(|r| &r.leases).collect();
    let mut clashes = 0;
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            let at_once = a.start_ns < b.end_ns && b.start_ns < a.end_ns;
            if at_once && conflict(a, b) {
                clashes += 1;
            }
        }
    }
    let tokens: BTreeSet<u64> = held.iter().map(|h| h.token).collect();
    checks.push((
        clashes == 0 && tokens.len() == held.len(),
        format!(
            "{} leases on overlapping paths: no two conflicting ones held at once, fencing tokens unique",
            held.len()
        ),
    ));

    let mut claimers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in reports {
        for id in &r.claimed {
            claimers.entry(id).or_default().push(&r.agent);
        }
    }
    let single = claimers.values().all(|agents| agents.len() == 1);
    let consistent = claimers.iter().all(|(id, agents)| {
        registry
            .show(id)
            .map(|g| g.claimed_by.as_deref() == Some(agents[0]) || g.status == Status::Complete)
            .unwrap_or(false)
    });
    checks.push((
        single && consistent,
        format!(
            "{} gaps claimed from `ready`, none by two agents",
            claimers.len()
        ),
    ));
    Ok(checks)
}

fn as_claim((dir, path): &(bool, String)) -> Claim<'_> {
    if *dir {
        Claim::Dir(path)
    } else {
        Claim::File(path)
    }
}

fn conflict(a: &Held, b: &Held) -> bool {
    if a.shared && b.shared {
        return false;
    }
    let claims = |h: &Held| -> Vec<(bool, String)> {
        let files = h.files.iter().map(|f| (false, f.clone()));
        files
            .chain(h.dirs.iter().map(|d| (true, d.clone())))
            .collect()
    };
    let (ca, cb) = (claims(a), claims(b));
    ca.iter()
        .any(|x| cb.iter().any(|y| overlaps(as_claim(x), as_claim(y))))
}

/// One agent process of the demo.
pub fn agent(name: &str, repo: &Path) -> Result {
    let registry = Registry::open(repo.join(gapreg::REGISTRY_DIR))?;
    let mut report = Report {
        agent: name.to_owned(),
        ..Report::default()
    };
    report.reserved = registry
        .id_store()
        .reserve("DEMO", BATCH as u64)?
        .ids()
        .map(|id| id.to_string())
        .collect();
    let specs = (0..BATCH)
        .map(|i| {
            let severity = [
                Severity::Critical,
                Severity::High,
                Severity::Medium,
                Severity::Low,
            ][i % 4];
            GapSpec::new(format!("{name}: gap {} of its batch", i + 1), severity)
                .prefix("OP")
                .parent_loop(LOOP_ID)
                .gap_type("demo")
                .tag(name)
        })
        .collect();
    report.filed = registry
        .file_batch(specs)?
        .into_iter()
        .map(|g| g.id)
        .collect();

    let leases = registry.leases(LeaseOptions::new())?;
    for k in 0..LEASES_PER_AGENT {
        let (files, dirs) = SCOPES[fastrand::usize(..SCOPES.len())];
        let shared = k % 3 == 2;
        let req = if shared {
            LeaseRequest::shared(name)
        } else {
            LeaseRequest::exclusive(name)
        };
        let req = req
            .files(files.iter().copied())
            .dirs(dirs.iter().copied())
            .task("demo edit")
            .ttl(Duration::from_secs(60))
            .wait(Duration::from_secs(60))
            .bind(Binding::ThisProcess);
        let grant = leases.acquire(&req)?;
        let start_ns = now_ns();
        std::thread::sleep(Duration::from_millis(fastrand::u64(2..8)));
        let end_ns = now_ns();
        leases.release(&grant.lease)?;
        report.leases.push(Held {
            token: grant.lease.token,
            start_ns,
            end_ns,
            shared: grant.lease.mode == Mode::Shared,
            files: grant.lease.files.clone(),
            dirs: grant.lease.dirs.clone(),
        });
    }

    claim_ready_gaps(&registry, name, &mut report)?;
    // To the parent, through a pipe: an error here (the parent is gone) fails the agent.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "REPORT {}", serde_json::to_string(&report)?)?;
    stdout.flush()?;
    Ok(())
}

/// Gaps an agent claims: the first it completes, the second it keeps.
const CLAIMS_PER_AGENT: usize = 2;
/// Claims an agent tries before it gives up looking (every one lost to another agent).
const MAX_CLAIM_ATTEMPTS: usize = 12;

/// Claims up to [`CLAIMS_PER_AGENT`] ready gaps. A claim that lost a race (another agent
/// claimed or completed the gap between `ready` and `claim`) is a conflict, not a failure:
/// the agent reads `ready` again and tries the next gap it has not tried yet.
fn claim_ready_gaps(registry: &Registry, name: &str, report: &mut Report) -> Result {
    let mut tried = BTreeSet::new();
    while report.claimed.len() < CLAIMS_PER_AGENT && tried.len() < MAX_CLAIM_ATTEMPTS {
        let next = registry
            .ready()?
            .into_iter()
            .find(|gap| !tried.contains(&gap.id));
        let Some(gap) = next else {
            break;
        };
        tried.insert(gap.id.clone());
        match registry.claim(&gap.id, name, Some(Duration::from_secs(600))) {
            Ok(_) => {
                report.claimed.push(gap.id.clone());
                if report.claimed.len() == 1 {
                    registry.set_status(&gap.id, Status::Complete, None)?;
                    report.completed.push(gap.id);
                }
            }
            Err(e) if crate::gaps::lost_race(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
