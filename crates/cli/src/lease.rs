//! `gapreg lease …`: leases on files and directories of the repository (`leaselock`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use leaselock::lease::{
    Binding, Lease, LeaseOptions, LeaseRequest, LeaseService, LeaseStatus, Released,
};
use serde_json::json;

use crate::output::{Output, escape, escape_path, path_json, table};
use crate::{Global, Result, duration};

/// `gapreg lease` subcommands.
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Take a lease on files and directories; prints the lease id.
    Acquire {
        /// Who holds it (an agent name).
        #[arg(long)]
        holder: String,
        /// A file, relative to the repository root (repeatable).
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<String>,
        /// A directory prefix, relative to the repository root (repeatable).
        #[arg(long = "dir", value_name = "PATH")]
        dirs: Vec<String>,
        /// A shared (read-only) lease: conflicts only with exclusive ones.
        #[arg(long)]
        shared: bool,
        /// How long the lease lives unless renewed.
        #[arg(long, default_value = "1h", value_parser = duration::parse)]
        ttl: Duration,
        /// What the holder is doing.
        #[arg(long, default_value = "")]
        task: String,
        /// Also end the lease when this process (an agent, a shell) on this host is gone.
        /// Without it the lease lives by its TTL: `gapreg` itself exits at once.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Extend a lease by its TTL (or a new one) from now.
    Renew {
        /// The lease id.
        id: String,
        /// Its holder.
        #[arg(long)]
        holder: String,
        /// A new time to live, kept from now on.
        #[arg(long, value_parser = duration::parse)]
        ttl: Option<Duration>,
    },
    /// Release a lease.
    Release {
        /// The lease id.
        id: String,
        /// Its holder.
        #[arg(long, required_unless_present = "force", conflicts_with = "force")]
        holder: Option<String>,
        /// Release it whoever holds it (also removes an unreadable lease file).
        #[arg(long)]
        force: bool,
    },
    /// List leases with their state.
    List,
    /// Remove dead leases (expired, or holder gone), listing each.
    Sweep {
        /// Also remove unreadable lease files.
        #[arg(long)]
        force: bool,
    },
}

fn leases(global: &Global) -> Result<Box<dyn LeaseService>> {
    let mut opts = LeaseOptions::new();
    if let Some(wait) = global.wait() {
        opts = opts.lock_timeout(wait);
    }
    Ok(crate::gaps::registry(global)?.lease_service(opts)?)
}

/// A time as RFC 3339 UTC text, like the gap commands print.
fn time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    gapreg::Timestamp::from_unix(secs).to_string()
}

fn lease_json(lease: &Lease) -> serde_json::Value {
    json!({
        "id": lease.id,
        "token": lease.token,
        "holder": lease.holder,
        "mode": lease.mode,
        "files": lease.files,
        "dirs": lease.dirs,
        "task": lease.task,
        "acquired_at": time(lease.acquired_at),
        "renewed_at": time(lease.renewed_at),
        "expires_at": time(lease.expires_at),
        "ttl_secs": lease.ttl.as_secs(),
    })
}

/// The STATE column: leaselock's `Display` of [`LeaseStatus`] (`live`, `expired`,
/// `holder-dead (reason)`), with the time of `expired (protected until T)` to the second like
/// every other time the CLI prints.
fn status_text(status: &LeaseStatus) -> String {
    match status.protected_until() {
        Some(until) => format!("{} (protected until {})", status.name(), time(until)),
        None => status.to_string(),
    }
}

/// The state fields of a lease in `lease list --json`: leaselock's serde form of
/// [`LeaseStatus`] — `status` (`live`, `expired` — also while still protected — or
/// `holder-dead`), `blocks_grants`, `reason` (a dead holder) — with `protected_until` (an
/// expired lease inside the skew margin) as RFC 3339 text like every other time.
fn status_json(status: &LeaseStatus, v: &mut serde_json::Value) -> Result {
    if let serde_json::Value::Object(fields) = serde_json::to_value(status)? {
        for (key, field) in fields {
            v[key.as_str()] = field;
        }
    }
    if let Some(until) = status.protected_until() {
        v["protected_until"] = json!(time(until));
    }
    Ok(())
}

/// Runs one `gapreg lease` command.
pub fn run(global: &Global, out: Output, cmd: LeaseCommand) -> Result {
    let leases = leases(global)?;
    match cmd {
        LeaseCommand::Acquire {
            holder,
            files,
            dirs,
            shared,
            ttl,
            task,
            pid,
        } => {
            let mut req = if shared {
                LeaseRequest::shared(&holder)
            } else {
                LeaseRequest::exclusive(&holder)
            };
            let binding = pid.map_or(Binding::TtlOnly, Binding::Process);
            req = req
                .files(files)
                .dirs(dirs)
                .task(task)
                .ttl(ttl)
                .bind(binding);
            if let Some(wait) = global.wait() {
                req = req.wait(wait);
            }
            let grant = leases.acquire(&req)?;
            for t in &grant.took_over {
                out.note(format!(
                    "warning: took over dead lease {} of {} ({})",
                    escape(&t.id),
                    escape(&t.holder),
                    escape(&t.reason)
                ));
            }
            let out = Output {
                quiet: false,
                ..out
            };
            out.answer(&lease_json(&grant.lease), |w| {
                writeln!(w, "{}", escape(&grant.lease.id))
            })?;
        }
        LeaseCommand::Renew { id, holder, ttl } => {
            let lease = leases.renew_id(&id, &holder, ttl)?;
            out.answer(&lease_json(&lease), |w| {
                writeln!(
                    w,
                    "renewed {} until {}",
                    escape(&lease.id),
                    time(lease.expires_at)
                )
            })?;
        }
        LeaseCommand::Release { id, holder, force } => {
            let released = match (force, holder) {
                (true, _) => leases.force_release(&id)?,
                (false, Some(holder)) => leases.release_id(&id, &holder)?,
                (false, None) => return Err(crate::exit::invalid("give --holder NAME or --force")),
            };
            let what = match &released {
                Released::Lease(lease) => lease_json(lease),
                Released::Corrupt(entry) => json!({ "id": id, "corrupt": entry.reason }),
                _ => json!({ "id": id }),
            };
            out.answer(&json!({ "released": what }), |w| {
                writeln!(w, "released {}", escape(&id))
            })?;
        }
        LeaseCommand::List => {
            let listing = leases.list()?;
            let doc = json!({
                "leases": listing.leases.iter().map(|(l, status)| {
                    let mut v = lease_json(l);
                    status_json(status, &mut v)?;
                    Ok(v)
                }).collect::<Result<Vec<_>>>()?,
                "corrupt": listing.corrupt.iter().map(|c| json!({"file": path_json(&c.path), "reason": c.reason})).collect::<Vec<_>>(),
            });
            out.show(&doc, |w| {
                let rows: Vec<Vec<String>> = listing
                    .leases
                    .iter()
                    .map(|(l, status)| {
                        let mut paths = l.files.clone();
                        paths.extend(l.dirs.iter().map(|d| format!("{d}/")));
                        vec![
                            l.id.clone(),
                            l.holder.clone(),
                            l.mode.to_string(),
                            status_text(status),
                            l.token.to_string(),
                            paths.join(" "),
                        ]
                    })
                    .collect();
                table(
                    w,
                    &["ID", "HOLDER", "MODE", "STATE", "TOKEN", "PATHS"],
                    &rows,
                )?;
                for c in &listing.corrupt {
                    writeln!(
                        w,
                        "corrupt: {} ({})",
                        escape_path(&c.path),
                        escape(&c.reason)
                    )?;
                }
                Ok(())
            })?;
        }
        LeaseCommand::Sweep { force } => {
            let report = if force {
                leases.sweep_forced()?
            } else {
                leases.sweep()?
            };
            let doc = json!({
                "removed": report.removed.iter().map(|s| json!({"lease": lease_json(&s.lease), "reason": s.reason})).collect::<Vec<_>>(),
                "corrupt_removed": report.corrupt_removed.iter().map(|c| path_json(&c.path)).collect::<Vec<_>>(),
                "corrupt_kept": report.corrupt_kept.iter().map(|c| path_json(&c.path)).collect::<Vec<_>>(),
            });
            out.show(&doc, |w| {
                for s in &report.removed {
                    writeln!(
                        w,
                        "removed {} of {}: {}",
                        escape(&s.lease.id),
                        escape(&s.lease.holder),
                        escape(&s.reason)
                    )?;
                }
                for c in &report.corrupt_kept {
                    writeln!(
                        w,
                        "kept unreadable {} (use --force to remove)",
                        escape_path(&c.path)
                    )?;
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_fields_of_every_status() {
        let until = UNIX_EPOCH + Duration::from_secs(1_800_000_005);
        let fields = |status: LeaseStatus| {
            let mut v = json!({});
            status_json(&status, &mut v).expect("a status serializes");
            v
        };
        assert_eq!(
            fields(LeaseStatus::Live),
            json!({"status": "live", "blocks_grants": true})
        );
        assert_eq!(
            fields(LeaseStatus::ExpiredProtected {
                protected_until: until
            }),
            json!({"status": "expired", "blocks_grants": true, "protected_until": "2027-01-15T08:00:05Z"})
        );
        assert_eq!(
            fields(LeaseStatus::Expired),
            json!({"status": "expired", "blocks_grants": false})
        );
        assert_eq!(
            fields(LeaseStatus::HolderDead {
                reason: "no process 7".into()
            }),
            json!({"status": "holder-dead", "blocks_grants": false, "reason": "no process 7"})
        );
        let text = |status: LeaseStatus| status_text(&status);
        assert_eq!(
            text(LeaseStatus::ExpiredProtected {
                protected_until: until + Duration::from_millis(250)
            }),
            "expired (protected until 2027-01-15T08:00:05Z)"
        );
        assert_eq!(text(LeaseStatus::Live), "live");
        assert_eq!(text(LeaseStatus::Expired), "expired");
        assert_eq!(
            text(LeaseStatus::HolderDead {
                reason: "no process 7".into()
            }),
            "holder-dead (no process 7)"
        );
    }
}
