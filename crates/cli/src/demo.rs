//! `gapreg demo` and `gapreg demo-write`: their scratch directory, their child processes
//! (this binary, re-executed as `gapreg demo-agent` and `gapreg demo-worker`) and what they
//! print. The workloads and the checks are the `gapreg-demo` crate's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gapreg_demo::{Program, agents, file_layer};

use crate::Result;
use crate::output::{
    eprint_escaped, escape, escape_path, escape_text, fancy_stderr, print_line, print_raw,
};

/// A fresh scratch directory for one run.
fn scratch_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("gapreg-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// This binary, running the hidden subcommand `sub`.
fn this_program(sub: &str) -> Result<Program> {
    Ok(Program::new(std::env::current_exe()?).arg(sub))
}

/// `gapreg demo --agents N`: the registry is removed after a run that passed, and kept for
/// inspection otherwise.
pub fn run(agents: u32, coordination: Option<&str>) -> Result {
    let dir = scratch_dir()?;
    let outcome = run_agents_in(&dir, agents, coordination);
    match &outcome {
        Ok(()) => std::fs::remove_dir_all(&dir)?,
        Err(_) => eprint_escaped(&format!(
            "gapreg: the demo registry is kept for inspection in {}",
            dir.display()
        )),
    }
    outcome
}

fn run_agents_in(repo: &Path, agents: u32, coordination: Option<&str>) -> Result {
    let registries = match coordination {
        #[cfg(feature = "postgres")]
        Some(url) => agents::prepare_clones(repo, url)?,
        #[cfg(not(feature = "postgres"))]
        Some(_) => return Err("this build has no PostgreSQL backend (feature `postgres`)".into()),
        None => vec![agents::prepare(repo)?],
    };
    let registry = &registries[0];
    let repos: Vec<PathBuf> = registries
        .iter()
        .map(|r| {
            r.dir()
                .parent()
                .map_or_else(|| repo.to_path_buf(), Path::to_path_buf)
        })
        .collect();
    let repos: Vec<&Path> = repos.iter().map(PathBuf::as_path).collect();
    eprint_escaped(&format!(
        "gapreg: demo registry {}; starting {agents} agent processes{}",
        registry.dir().display(),
        match coordination {
            Some(url) => format!(
                " from {} clones sharing the coordination server {}",
                repos.len(),
                gapreg::leaselock::server::redact(url)
            ),
            None => String::new(),
        }
    ));
    let fancy = fancy_stderr();
    let started = Instant::now();
    let reports = agents::run_agents(&this_program("demo-agent")?, &repos, agents, |done| {
        if fancy {
            // Progress only; a failure to show it is no failure of the demo.
            let _ = write!(
                std::io::stderr(),
                "\r\x1b[2Kgapreg: agents finished {done}/{agents}"
            );
        }
    });
    if fancy {
        let _ = writeln!(std::io::stderr());
    }
    let reports = reports?;
    let elapsed = started.elapsed();

    let mut text = escape_text(&registry.render()?).into_owned();
    let verification = gapreg_demo::verify(&registries, &reports, agents)?;
    text.push_str(&format!(
        "\n## Verification ({agents} agents, {elapsed:.1?})\n\n"
    ));
    for check in &verification.checks {
        let mark = if check.passed { "x" } else { " " };
        text.push_str(&format!("- [{mark}] {}\n", check.what));
    }
    print_raw(text.as_bytes())?;
    if !verification.passed() {
        return Err("the demo's verification failed (see above)".into());
    }
    Ok(())
}

/// `gapreg demo-agent NAME REPO`: one agent's work, its report as one line to the parent.
pub fn agent(name: &str, repo: &Path) -> Result {
    let report = agents::agent(name, repo)?;
    // To the parent, through a pipe: an error here (the parent is gone) fails the agent.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", report.line()?)?;
    stdout.flush()?;
    Ok(())
}

/// `gapreg demo-write`: the file layer's demo in a scratch directory, removed afterwards.
pub fn write(workers: u32, updates: u32) -> Result {
    let dir = scratch_dir()?;
    let outcome = write_in(&dir, workers, updates);
    std::fs::remove_dir_all(&dir)?;
    outcome
}

fn write_in(dir: &Path, workers: u32, updates: u32) -> Result {
    eprint_escaped(&format!(
        "gapreg: {workers} processes x {updates} locked updates of {}",
        file_layer::counter_path(dir).display()
    ));
    let report = file_layer::run(dir, &this_program("demo-worker")?, workers, updates)?;
    print_line(&format!(
        "updates: {} of {} counted in {:.2?} ({})",
        report.counted,
        report.expected,
        report.elapsed,
        if report.counted == report.expected {
            "none lost"
        } else {
            "LOST UPDATES"
        }
    ))?;
    print_line(&format!(
        "kill -9 mid-write: {} left {}; recovery removed {} leftover temp file(s)",
        escape_path(&report.churned),
        if report.intact {
            "one complete version"
        } else {
            "a damaged file"
        },
        report.removed
    ))?;
    match &report.damage {
        Some(message) => print_line(&format!("bit flip detected: {}", escape(message)))?,
        None => print_line("a bit flip went UNNOTICED")?,
    }
    if !report.passed() {
        return Err("verification failed".into());
    }
    print_line("verified: no update lost, no torn file, damage reported")?;
    Ok(())
}

/// `gapreg demo-worker ROLE PATH [COUNT]`: one worker process of `demo-write`.
pub fn worker(role: &str, path: &Path, count: u32) -> Result {
    match role {
        "count" => Ok(file_layer::count(path, count)?),
        "churn" => Ok(file_layer::churn(path)?),
        other => Err(format!("unknown demo worker role {other:?}").into()),
    }
}
