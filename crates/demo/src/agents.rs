//! The workload of `gapreg demo`: in a fresh registry ([`prepare`]), agent processes
//! ([`run_agents`], each running [`agent`]) at once reserve ids, file gap batches under a
//! loop, take leases on overlapping paths and claim ready gaps. Each reports what it did as
//! one [`Report`] line on its stdout; [`verify`](crate::verify) checks the reports against
//! the registry.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gapreg::leaselock::lease::{Binding, Lease, LeaseOptions, LeaseRequest};
use gapreg::{GapSpec, LoopSpec, Registry, Severity, Status};
use serde::{Deserialize, Serialize};

use crate::{Error, Program, Result};

/// The loop every demo gap is filed under.
pub const LOOP_ID: &str = "LOOP-DEMO";
/// Ids each agent reserves, and gaps it files in one batch.
pub const BATCH: usize = 5;
/// Leases each agent takes, one after the other.
pub const LEASES_PER_AGENT: usize = 4;
/// Gaps an agent claims: the first it completes, the second it keeps.
pub const CLAIMS_PER_AGENT: usize = 2;
/// Claims an agent tries before it gives up looking (every one lost to another agent).
const MAX_CLAIM_ATTEMPTS: usize = 12;
/// Paths the agents fight over: overlapping files and directory prefixes.
const SCOPES: [(&[&str], &[&str]); 5] = [
    (&["src/lib.rs"], &[]),
    (&[], &["src"]),
    (&["src/cli/main.rs"], &[]),
    (&[], &["src/cli"]),
    (&["README.md", "src/lib.rs"], &[]),
];
/// What starts a report line on an agent's stdout.
const REPORT_PREFIX: &str = "REPORT ";

/// One lease an agent held, and when (nanoseconds since the Unix epoch, from just after the
/// grant to just before the release).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Held {
    /// The lease as granted.
    pub lease: Lease,
    /// When the agent had it.
    pub start_ns: u128,
    /// When the agent was about to release it.
    pub end_ns: u128,
}

/// What one agent did, as it reports it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// The agent's name (`CC-1`, …).
    pub agent: String,
    /// The ids it reserved with `ids reserve`.
    pub reserved: Vec<String>,
    /// The ids of the gaps it filed, in batch order.
    pub filed: Vec<String>,
    /// The leases it held.
    pub leases: Vec<Held>,
    /// The gaps it claimed.
    pub claimed: Vec<String>,
    /// The claimed gaps it then completed.
    pub completed: Vec<String>,
}

impl Report {
    /// The report as one line for the agent's stdout (without the newline).
    pub fn line(&self) -> Result<String> {
        Ok(format!("{REPORT_PREFIX}{}", serde_json::to_string(self)?))
    }

    /// The report in a line of an agent's stdout, if the line is one ([`Report::line`]).
    pub fn from_line(line: &str) -> Result<Option<Report>> {
        line.strip_prefix(REPORT_PREFIX)
            .map(serde_json::from_str)
            .transpose()
            .map_err(Error::from)
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Creates the demo's registry in `repo` (which must not have one) and its loop.
pub fn prepare(repo: &Path) -> Result<Registry> {
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
    Ok(registry)
}

/// Creates the demo's registry with its coordination state on the server at `url`, in two
/// git clones of one repository under `base` (`a`, and `b` cloned from it), as two machines
/// would have: the registry and its loop are made and committed in `a`, `b` is a `git clone`,
/// and each clone is given the server (`coordination.url`, as `gapreg coordination set`).
/// Returns both clones' registries.
#[cfg(feature = "postgres")]
pub fn prepare_clones(base: &Path, url: &str) -> Result<Vec<Registry>> {
    let a = base.join("a");
    let b = base.join("b");
    std::fs::create_dir_all(&a).map_err(Error::io("create the demo repository"))?;
    git(base, &["init", "-q", "a"])?;
    let registry = prepare(&a)?;
    registry.set_coordination_url(url)?;
    let registry = registry.switch_coordination(gapreg::Backend::Postgres)?;
    git(&a, &["add", "-A"])?;
    git(
        &a,
        &[
            "-c",
            "user.name=demo",
            "-c",
            "user.email=demo@localhost",
            "commit",
            "-qm",
            "demo registry",
        ],
    )?;
    git(base, &["clone", "-q", "a", "b"])?;
    let clone = Registry::open(b.join(gapreg::REGISTRY_DIR))?;
    clone.set_coordination_url(url)?;
    Ok(vec![
        registry,
        Registry::open(b.join(gapreg::REGISTRY_DIR))?,
    ])
}

/// Runs `git args` in `dir`.
#[cfg(feature = "postgres")]
fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .status()
        .map_err(Error::io("run git (the two-clone demo needs it)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::AgentsFailed {
            total: 1,
            failed: vec![format!("git {}: {status}", args.join(" "))],
        })
    }
}

/// Starts `agents` processes at once, `program` followed by the agent's name (`CC-1`, …)
/// and its repository (the agents take `repos` in turn: one clone per machine), each of which must run [`agent`] and print its [`Report::line`] on stdout.
/// Waits for every one (even after one failed, so none is left running), calling `finished`
/// with the number done so far, and returns their reports.
///
/// # Errors
///
/// [`Error::AgentsFailed`] if any agent exited unsuccessfully; [`Error::Io`] if one could not
/// be started or waited for; [`Error::Report`] for a report line that is not valid.
pub fn run_agents(
    program: &Program,
    repos: &[&Path],
    agents: u32,
    mut finished: impl FnMut(usize),
) -> Result<Vec<Report>> {
    let children = (0..agents)
        .map(|i| {
            program
                .command()
                .arg(format!("CC-{}", i + 1))
                .arg(repos[i as usize % repos.len().max(1)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(Error::io("start an agent process"))?;
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for (done, child) in children.into_iter().enumerate() {
        let out = child
            .wait_with_output()
            .map_err(Error::io("wait for an agent process"))?;
        if !out.status.success() {
            failed.push(out.status.to_string());
        }
        for line in BufReader::new(&out.stdout[..]).lines() {
            let line = line.map_err(Error::io("read an agent's report"))?;
            reports.extend(Report::from_line(&line)?);
        }
        finished(done + 1);
    }
    if !failed.is_empty() {
        return Err(Error::AgentsFailed {
            total: agents,
            failed,
        });
    }
    Ok(reports)
}

/// The work of one agent, `name`, in the registry of `repo` ([`prepare`]d): reserves
/// [`BATCH`] ids, files a batch of [`BATCH`] gaps, takes [`LEASES_PER_AGENT`] leases on
/// overlapping paths (one in three shared) and claims up to [`CLAIMS_PER_AGENT`] ready gaps,
/// completing the first. Leases are bound to this process.
pub fn agent(name: &str, repo: &Path) -> Result<Report> {
    let registry = Registry::open(repo.join(gapreg::REGISTRY_DIR))?;
    let mut report = Report {
        agent: name.to_owned(),
        ..Report::default()
    };
    report.reserved = registry
        .ids()?
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

    let leases = registry.lease_service(LeaseOptions::new())?;
    for k in 0..LEASES_PER_AGENT {
        let (files, dirs) = SCOPES[fastrand::usize(..SCOPES.len())];
        let req = if k % 3 == 2 {
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
        leases.release_id(&grant.lease.id, name)?;
        report.leases.push(Held {
            lease: grant.lease,
            start_ns,
            end_ns,
        });
    }

    claim_ready_gaps(&registry, name, &mut report)?;
    Ok(report)
}

/// Claims up to [`CLAIMS_PER_AGENT`] ready gaps. A claim that lost a race (another agent
/// claimed or completed the gap between `ready` and `claim`) is a conflict, not a failure:
/// the agent reads `ready` again and tries the next gap it has not tried yet.
fn claim_ready_gaps(registry: &Registry, name: &str, report: &mut Report) -> Result<()> {
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
            Err(e) if e.is_lost_race() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
