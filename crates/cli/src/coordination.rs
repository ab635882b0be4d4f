//! `gapreg coordination …`: where the registry's counters, claims and leases live.

use clap::Subcommand;
use serde_json::json;

use crate::output::{Output, escape, escape_path, path_json};
use crate::{Global, Result};

/// `gapreg coordination` subcommands.
#[derive(Debug, Subcommand)]
pub enum CoordinationCommand {
    /// Show the backend, the namespace and the server (never its password).
    Show,
    /// Record this clone's coordination server (never tracked; GAPREG_COORDINATION_URL wins).
    /// The password belongs in PGPASSWORD or ~/.pgpass, never in the address.
    Set {
        /// The server, e.g. postgres://agent@db.example:5432/coord.
        url: String,
    },
    /// Move the coordination state to BACKEND (`files` or `postgres`), carrying every
    /// counter over (never lowering one), then record it in the tracked config: commit
    /// `.gapreg/config.yaml` so every clone follows. Release live claims and leases first.
    Switch {
        /// `files` or `postgres`.
        #[arg(value_parser = parse_backend)]
        backend: gapreg::Backend,
    },
}

/// Parses a backend name.
pub fn parse_backend(text: &str) -> std::result::Result<gapreg::Backend, String> {
    match text {
        "files" => Ok(gapreg::Backend::Files),
        "postgres" => Ok(gapreg::Backend::Postgres),
        other => Err(format!(
            "{other:?} is not a backend: give files or postgres"
        )),
    }
}

fn name(backend: gapreg::Backend) -> &'static str {
    match backend {
        gapreg::Backend::Postgres => "postgres",
        _ => "files",
    }
}

/// Runs one `gapreg coordination` command.
pub fn run(global: &Global, out: Output, cmd: CoordinationCommand) -> Result {
    let registry = crate::gaps::registry(global)?;
    match cmd {
        CoordinationCommand::Show => {
            let (url, from_env) = match registry.coordination_url()? {
                Some((url, env)) => (Some(url), env),
                None => (None, false),
            };
            let doc = json!({
                "coordination": name(registry.backend()),
                "namespace": registry.config().namespace,
                "server": url,
                "server_from": url.as_ref().map(|_| if from_env { "environment" } else { "clone" }),
            });
            out.show(&doc, |w| {
                writeln!(w, "coordination: {}", name(registry.backend()))?;
                if let Some(ns) = &registry.config().namespace {
                    writeln!(w, "namespace: {}", escape(ns))?;
                }
                if let Some(url) = &url {
                    let from = if from_env {
                        "GAPREG_COORDINATION_URL"
                    } else {
                        "this clone's setting"
                    };
                    writeln!(w, "server: {} (from {from})", escape(url))?;
                }
                Ok(())
            })?;
        }
        CoordinationCommand::Set { url } => {
            let file = registry.set_coordination_url(&url)?;
            let shown = leaselock::server::redact(&url);
            out.answer(&json!({ "server": shown, "file": path_json(&file) }), |w| {
                writeln!(
                    w,
                    "this clone's coordination server is {} (in {})",
                    escape(&shown),
                    escape_path(&file)
                )
            })?;
        }
        CoordinationCommand::Switch { backend } => {
            let switched = registry.switch_coordination(backend)?;
            let doc = json!({
                "coordination": name(switched.backend()),
                "namespace": switched.config().namespace,
            });
            out.answer(&doc, |w| {
                writeln!(
                    w,
                    "coordination: {} (counters carried over); commit .gapreg/config.yaml so \
                     every clone follows",
                    name(switched.backend())
                )
            })?;
        }
    }
    Ok(())
}
