//! `gapreg lease …`: leases on files and directories of the repository (`leaselock`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use leaselock::lease::{Binding, Lease, LeaseOptions, LeaseRequest, LeaseStatus, Leases, Released};
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

/// How long after its `expires_at` a lease still blocks others (clock skew allowance). Set
/// explicitly, so `lease list` can say until when an expired lease is still protected.
const SKEW_MARGIN: Duration = Duration::from_secs(5);

fn leases(global: &Global) -> Result<Leases> {
    let mut opts = LeaseOptions::new().skew_margin(SKEW_MARGIN);
    if let Some(wait) = global.wait() {
        opts = opts.lock_timeout(wait);
    }
    Ok(crate::gaps::registry(global)?.leases(opts)?)
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

/// A lease's state as `lease list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before its `expires_at`, holder not known to be dead.
    Live,
    /// Past its `expires_at` but inside the skew margin: it still blocks overlapping grants
    /// until `until`, and its holder must not rely on it any more.
    ExpiredProtected { until: SystemTime },
    /// Past `expires_at` plus the margin: anyone may take it over.
    Expired,
    /// Its holder is provably gone.
    HolderDead { reason: String },
    /// A state this build does not know.
    Unknown(String),
}

impl State {
    /// Judges a lease from the library's status and its `expires_at` against `now`: the
    /// library calls a lease live until `expires_at + margin`, but after `expires_at` its
    /// holder's own check already fails, so it is shown as expired (and protected).
    fn of(
        status: &LeaseStatus,
        expires_at: SystemTime,
        now: SystemTime,
        margin: Duration,
    ) -> State {
        match status {
            LeaseStatus::Live if now > expires_at => State::ExpiredProtected {
                until: expires_at.checked_add(margin).unwrap_or(expires_at),
            },
            LeaseStatus::Live => State::Live,
            LeaseStatus::Expired => State::Expired,
            LeaseStatus::HolderDead { reason } => State::HolderDead {
                reason: reason.clone(),
            },
            other => State::Unknown(format!("{other:?}")),
        }
    }

    /// The `status` field of `--json`.
    fn name(&self) -> &'static str {
        match self {
            State::Live => "live",
            State::ExpiredProtected { .. } | State::Expired => "expired",
            State::HolderDead { .. } => "holder-dead",
            State::Unknown(_) => "unknown",
        }
    }

    /// The STATE column.
    fn text(&self) -> String {
        match self {
            State::ExpiredProtected { until } => {
                format!("expired (protected until {})", time(*until))
            }
            State::HolderDead { reason } => format!("holder dead: {reason}"),
            State::Unknown(what) => format!("unknown: {what}"),
            other => other.name().to_owned(),
        }
    }

    /// The JSON fields besides `status`.
    fn extend(&self, status: &LeaseStatus, v: &mut serde_json::Value) {
        v["status"] = json!(self.name());
        v["blocks_grants"] = json!(status.is_live());
        if let State::ExpiredProtected { until } = self {
            v["protected_until"] = json!(time(*until));
        }
        if let State::HolderDead { reason } = self {
            v["reason"] = json!(reason);
        }
    }
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
            out.show(&lease_json(&grant.lease), |w| {
                writeln!(w, "{}", escape(&grant.lease.id))
            })?;
        }
        LeaseCommand::Renew { id, holder, ttl } => {
            let listing = leases.list()?;
            let lease = listing
                .leases
                .into_iter()
                .map(|(lease, _)| lease)
                .find(|lease| lease.id == id && lease.holder == holder)
                .ok_or_else(|| {
                    crate::exit::not_found(format!(
                        "no lease {id:?} held by {holder:?}: see `gapreg lease list`"
                    ))
                })?;
            let lease = match ttl {
                Some(ttl) => leases.renew_for(&lease, ttl)?,
                None => leases.renew(&lease)?,
            };
            out.show(&lease_json(&lease), |w| {
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
            out.show(&json!({ "released": what }), |w| {
                writeln!(w, "released {}", escape(&id))
            })?;
        }
        LeaseCommand::List => {
            let listing = leases.list()?;
            let now = SystemTime::now();
            let states: Vec<State> = listing
                .leases
                .iter()
                .map(|(l, status)| State::of(status, l.expires_at, now, SKEW_MARGIN))
                .collect();
            let doc = json!({
                "leases": listing.leases.iter().zip(&states).map(|((l, status), state)| {
                    let mut v = lease_json(l);
                    state.extend(status, &mut v);
                    v
                }).collect::<Vec<_>>(),
                "corrupt": listing.corrupt.iter().map(|c| json!({"file": path_json(&c.path), "reason": c.reason})).collect::<Vec<_>>(),
            });
            out.show(&doc, |w| {
                let rows: Vec<Vec<String>> = listing
                    .leases
                    .iter()
                    .zip(&states)
                    .map(|((l, _), state)| {
                        let mut paths = l.files.clone();
                        paths.extend(l.dirs.iter().map(|d| format!("{d}/")));
                        vec![
                            l.id.clone(),
                            l.holder.clone(),
                            format!("{:?}", l.mode).to_lowercase(),
                            state.text(),
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
    fn states_from_status_and_expiry() {
        let expires = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let margin = Duration::from_secs(5);
        let before = expires - Duration::from_secs(1);
        let inside = expires + Duration::from_secs(2);
        let live = LeaseStatus::Live;
        assert_eq!(State::of(&live, expires, before, margin), State::Live);
        assert_eq!(State::of(&live, expires, expires, margin), State::Live);
        let protected = State::of(&live, expires, inside, margin);
        assert_eq!(
            protected,
            State::ExpiredProtected {
                until: expires + margin
            }
        );
        assert_eq!(protected.name(), "expired");
        assert_eq!(
            protected.text(),
            "expired (protected until 2027-01-15T08:00:05Z)"
        );
        let expired = State::of(&LeaseStatus::Expired, expires, inside + margin, margin);
        assert_eq!(
            (expired.name(), expired.text().as_str()),
            ("expired", "expired")
        );
        let dead = LeaseStatus::HolderDead {
            reason: "no process 7".into(),
        };
        let state = State::of(&dead, expires, before, margin);
        assert_eq!(state.name(), "holder-dead");
        assert_eq!(state.text(), "holder dead: no process 7");
        let mut v = json!({});
        state.extend(&dead, &mut v);
        assert_eq!(
            v,
            json!({"status": "holder-dead", "blocks_grants": false, "reason": "no process 7"})
        );
        let mut v = json!({});
        protected.extend(&live, &mut v);
        assert_eq!(
            v,
            json!({"status": "expired", "blocks_grants": true, "protected_until": "2027-01-15T08:00:05Z"})
        );
    }
}
