//! `gapreg ids …`: the `idreserve` store of the registry.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use crate::output::{Output, escape, path_json, table};
use crate::{Global, Result};

/// `gapreg ids` subcommands.
#[derive(Debug, Subcommand)]
pub enum IdsCommand {
    /// Reserve N consecutive IDs (default 1) and print them, one per line.
    Reserve {
        /// The prefix, e.g. SEC or GAP-OP.
        prefix: String,
        /// How many.
        #[arg(default_value_t = 1)]
        count: u64,
    },
    /// Print the next ID that would be reserved, reserving nothing.
    Peek {
        /// The prefix.
        prefix: String,
    },
    /// Raise counters past the IDs found in existing files and directories.
    Init {
        /// Files or directories to scan (recursively; .git and binary files are skipped).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Only count these prefixes (repeatable). Default: the store's allow-list, or all.
        #[arg(long = "prefix")]
        prefixes: Vec<String>,
        /// Also lower counters that are above the highest ID found.
        #[arg(long)]
        force: bool,
    },
    /// Check that an ID was reserved.
    Validate {
        /// The ID, e.g. SEC-20.
        id: String,
    },
    /// List every prefix's counter.
    List,
}

/// Runs one `gapreg ids` command.
pub fn run(global: &Global, out: Output, cmd: IdsCommand) -> Result {
    let registry = crate::gaps::registry(global)?;
    let store = registry.ids()?;
    match cmd {
        IdsCommand::Reserve { prefix, count } => {
            let ids: Vec<String> = store
                .reserve(&prefix, count)?
                .ids()
                .map(|id| id.to_string())
                .collect();
            // The ids are the data of this command: printed even with --quiet. Ids that could
            // not be printed are a hole, never handed out again, so that is a failure (the
            // caller holds nothing), unlike the answer of a change that stands.
            let out = Output {
                quiet: false,
                ..out
            };
            out.show(&json!({ "ids": ids }), |w| {
                ids.iter().try_for_each(|id| writeln!(w, "{}", escape(id)))
            })?;
        }
        IdsCommand::Peek { prefix } => {
            let id = store.peek(&prefix)?.to_string();
            let out = Output {
                quiet: false,
                ..out
            };
            out.show(&json!({ "next": id }), |w| writeln!(w, "{}", escape(&id)))?;
        }
        IdsCommand::Init {
            paths,
            prefixes,
            force,
        } => {
            let only = (!prefixes.is_empty()).then_some(prefixes.as_slice());
            let Some(store) = registry.id_store() else {
                return Err(crate::exit::invalid(
                    "`ids init` scans files into the clone's id store; this registry's \
                     counters are on a server (coordination: postgres): raise them with \
                     `gapreg doctor --repair`, which raises every counter above the ids in use",
                ));
            };
            let found = store.init_from(&paths, only, force)?;
            let doc: serde_json::Map<String, serde_json::Value> = found
                .iter()
                .map(|(prefix, f)| {
                    let v = json!({
                        "highest": f.highest.to_string(),
                        "file": path_json(&f.file),
                        "old_counter": f.old_counter,
                        "new_counter": f.new_counter,
                    });
                    (prefix.clone(), v)
                })
                .collect();
            out.show(&doc, |w| {
                let rows: Vec<Vec<String>> = found
                    .iter()
                    .map(|(prefix, f)| {
                        vec![
                            prefix.clone(),
                            f.highest.to_string(),
                            f.file.display().to_string(),
                            format!("{} -> {}", f.old_counter, f.new_counter),
                        ]
                    })
                    .collect();
                table(w, &["PREFIX", "HIGHEST", "FOUND IN", "COUNTER"], &rows)
            })?;
        }
        IdsCommand::Validate { id } => {
            let id = store.validate(&id)?.to_string();
            out.show(&json!({ "id": id, "reserved": true }), |w| {
                writeln!(w, "{} was reserved", escape(&id))
            })?;
        }
        IdsCommand::List => {
            let counters = store.counters()?;
            out.show(&counters, |w| {
                let rows: Vec<Vec<String>> = counters
                    .iter()
                    .map(|(p, n)| vec![p.clone(), n.to_string()])
                    .collect();
                table(w, &["PREFIX", "COUNTER"], &rows)
            })?;
        }
    }
    Ok(())
}
