//! `gapreg hook pre-commit` (hidden): what the pre-commit hook that `gapreg git setup`
//! installs runs. It refuses a commit whose staged paths lie inside another holder's live
//! exclusive lease, so a lease taken with `gapreg lease acquire` guards the work tree at
//! commit time as well as between agents.
//!
//! - The staged paths are `git diff --cached --name-only -z --no-renames` (git has set
//!   `GIT_INDEX_FILE` for the commit being made; both sides of a rename count).
//! - The committer is the holder named by `GAPREG_HOLDER` (the name agents pass as `--holder`
//!   / `--agent`); unset or empty, no lease is the committer's.
//! - Only [`LeaseStatus::Live`] exclusive leases of other holders block: shared leases, the
//!   committer's own, expired ones and those whose holder is provably dead do not. The hook
//!   refuses only on a proven conflict: a lease file, a lease store or a registry that cannot
//!   be read (a repository may hold planted entries, and mending one may take a commit) is a
//!   warning naming it, and the commit goes on; grants still fail closed on them.
//! - Outside a registry it does nothing; a registry that cannot be opened (a damaged or
//!   planted document, which may take a commit to mend) is a warning, and the commit goes on.
//!   `git commit --no-verify` skips it, as every hook.
//!
//! Leases are reached through [`gapreg::Registry::leases`] only, wherever the registry keeps
//! them; paths are compared relative to the leases' root, as leases store them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use leaselock::lease::{Claim, Lease, LeaseOptions, LeaseStatus, Mode, overlaps};

use crate::exit::{CliError, Code};
use crate::output::{escape, escape_path};
use crate::{Global, Result};

/// `gapreg hook …` (internal: run by the hooks `gapreg git setup` installs).
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Refuse a commit touching a path inside another holder's live exclusive lease.
    PreCommit,
}

/// The environment variable naming the committer's holder.
pub const HOLDER_VAR: &str = "GAPREG_HOLDER";

/// Most refused paths named in the message; the rest are counted.
const MAX_SHOWN: usize = 20;

/// Runs one `gapreg hook` command.
pub fn run(global: &Global, cmd: HookCommand) -> Result {
    match cmd {
        HookCommand::PreCommit => pre_commit(global),
    }
}

fn pre_commit(global: &Global) -> Result {
    // A registry that cannot be opened (a damaged or planted document) does not stop the
    // commit: mending it may take one.
    let registry = match crate::gaps::registry(global) {
        Ok(registry) => registry,
        Err(e) if crate::exit::classify(e.as_ref()) == Code::NotFound => return Ok(()),
        Err(e) => {
            crate::output::eprint_escaped(&format!(
                "warning: gapreg pre-commit: the registry cannot be opened, so leases were not \
                 checked: {e}"
            ));
            return Ok(());
        }
    };
    let cwd = std::env::current_dir()?;
    let Some(dirs) = gapreg::gitdir::find(&cwd)? else {
        return Ok(());
    };
    let staged = staged_paths(&cwd)?;
    if staged.is_empty() {
        return Ok(());
    }
    let mut opts = LeaseOptions::new();
    if let Some(wait) = global.wait() {
        opts = opts.lock_timeout(wait);
    }
    // A lease store that cannot be opened or read fails every lease command too (and may be
    // planted): the commit goes on with a warning.
    let unchecked = |e: &dyn std::fmt::Display| {
        crate::output::eprint_escaped(&format!(
            "warning: gapreg pre-commit: the leases cannot be read, so they were not checked: \
             {e}"
        ));
    };
    let leases = match registry.lease_service(opts) {
        Ok(leases) => leases,
        Err(e) => {
            unchecked(&e);
            return Ok(());
        }
    };
    let root = std::fs::canonicalize(leases.root()).unwrap_or_else(|_| leases.root().into());
    // Staged paths are relative to the top of the work tree; leases to their root.
    let relative: Vec<String> = staged
        .iter()
        .filter_map(|p| {
            let rel = dirs.work_tree.join(p);
            let rel = rel.strip_prefix(&root).ok()?;
            Some(rel.to_string_lossy().into_owned())
        })
        .filter(|p| !p.is_empty())
        .collect();
    if relative.is_empty() {
        return Ok(());
    }
    let listing = match leases.list() {
        Ok(listing) => listing,
        Err(e) => {
            unchecked(&e);
            return Ok(());
        }
    };
    for bad in &listing.corrupt {
        crate::output::eprint_escaped(&format!(
            "warning: gapreg pre-commit: the lease file {} cannot be read ({}), so this commit \
             was not checked against it (`gapreg lease sweep --force` removes it)",
            escape_path(&bad.path),
            escape(&bad.reason)
        ));
    }
    let committer = std::env::var(HOLDER_VAR).ok().filter(|h| !h.is_empty());
    let blocking: Vec<&Lease> = listing
        .leases
        .iter()
        .filter(|(lease, status)| {
            matches!(status, LeaseStatus::Live)
                && lease.mode == Mode::Exclusive
                && committer.as_deref() != Some(lease.holder.as_str())
        })
        .map(|(lease, _)| lease)
        .collect();
    let mut refused = Vec::new();
    for path in &relative {
        if let Some(lease) = blocking.iter().find(|l| covers(l, path)) {
            refused.push(format!(
                "{}: in lease {} held by {} (exclusive) until {}",
                escape(path),
                escape(&lease.id),
                escape(&lease.holder),
                time(lease.expires_at)
            ));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    let more = refused.len().saturating_sub(MAX_SHOWN);
    refused.truncate(MAX_SHOWN);
    if more > 0 {
        refused.push(format!("… and {more} more"));
    }
    let me = match &committer {
        Some(h) => format!("you commit as {} ({HOLDER_VAR})", escape(h)),
        None => format!("{HOLDER_VAR} is not set, so no lease is yours"),
    };
    Err(refusal(format!(
        "this commit touches paths inside another holder's exclusive lease ({me}):\n  {}\n\
         wait for the lease to end or be released, commit as its holder \
         ({HOLDER_VAR}=HOLDER), or skip this check with `git commit --no-verify`",
        refused.join("\n  ")
    )))
}

/// Whether `lease` claims the file `path` (one of its files, or under one of its dirs).
fn covers(lease: &Lease, path: &str) -> bool {
    lease
        .files
        .iter()
        .any(|f| overlaps(Claim::File(path), Claim::File(f)))
        || lease
            .dirs
            .iter()
            .any(|d| overlaps(Claim::File(path), Claim::Dir(d)))
}

fn refusal(message: String) -> Box<dyn std::error::Error> {
    Box::new(CliError {
        code: Code::Failure,
        message,
    })
}

/// The staged paths of the commit being made, relative to the top of the work tree.
fn staged_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new("git")
        .args(["diff", "--cached", "--name-only", "-z", "--no-renames"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git diff --cached failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(out
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect())
}

/// A time as RFC 3339 UTC text, like every time the CLI prints.
fn time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    gapreg::Timestamp::from_unix(secs).to_string()
}
