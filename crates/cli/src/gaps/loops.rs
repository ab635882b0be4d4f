//! `gapreg loop new|list|show`.

use std::path::PathBuf;

use clap::Subcommand;
use gapreg::LoopSpec;
use serde_json::Value;

use super::{joined, left_out, registry};
use crate::output::{Output, escape, escape_path, path_json, table};
use crate::{Global, Result};

/// `gapreg loop` subcommands.
#[derive(Debug, Subcommand)]
pub enum LoopCommand {
    /// Create a loop (a scope document with YAML front matter) in the loops directory.
    New {
        /// The loop id, e.g. LOOP-1 or epic-auth.
        id: String,
        /// What the loop is for.
        #[arg(long)]
        objective: String,
        /// Who owns it.
        #[arg(long, default_value = "")]
        owner: String,
        /// Its priority, e.g. P1.
        #[arg(long)]
        priority: Option<String>,
        /// What it covers.
        #[arg(long, default_value = "")]
        scope: String,
        /// A loop this one waits for (repeatable).
        #[arg(long = "depends-on", value_name = "LOOP-ID")]
        depends_on: Vec<String>,
    },
    /// List loops.
    List,
    /// Show one loop.
    Show {
        /// The loop id.
        id: String,
    },
}

/// The JSON object of a loop, its path as [`path_json`] prints it.
fn loop_json(l: &gapreg::Loop) -> Result<Value> {
    let mut pathless = l.clone();
    pathless.path = PathBuf::new();
    let mut v = serde_json::to_value(pathless)?;
    v["path"] = path_json(&l.path);
    Ok(v)
}

/// `gapreg loop …`.
pub fn loops(global: &Global, out: Output, cmd: LoopCommand) -> Result {
    let registry = registry(global)?;
    match cmd {
        LoopCommand::New {
            id,
            objective,
            owner,
            priority,
            scope,
            depends_on,
        } => {
            out.check_json_path("the loops directory", &registry.loops_dir())?;
            let l = registry.new_loop(LoopSpec {
                id,
                status: None,
                owner,
                scope,
                priority,
                objective,
                depends_on,
            })?;
            out.answer(&loop_json(&l)?, |w| {
                writeln!(
                    w,
                    "created loop {} ({})",
                    escape(&l.id),
                    escape_path(&l.path)
                )
            })?;
        }
        LoopCommand::List => {
            let checked = registry.loops_checked()?;
            let all = &checked.value;
            let doc = all.iter().map(loop_json).collect::<Result<Vec<_>>>()?;
            out.show(&doc, |w| {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|l| {
                        vec![
                            l.id.clone(),
                            l.status.clone(),
                            l.priority.clone().unwrap_or_default(),
                            l.depends_on.join(","),
                            l.objective.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(
                    w,
                    &["LOOP", "STATUS", "PRIORITY", "DEPENDS ON", "OBJECTIVE"],
                    &rows,
                )
            })?;
            left_out(&checked.damaged)?;
        }
        LoopCommand::Show { id } => {
            let l = registry.show_loop(&id)?;
            out.show(&loop_json(&l)?, |w| {
                writeln!(w, "{} [{}]", escape(&l.id), escape(&l.status))?;
                if let Some(o) = &l.objective {
                    writeln!(w, "  objective:  {}", escape(o))?;
                }
                if !l.depends_on.is_empty() {
                    writeln!(w, "  depends on: {}", joined(&l.depends_on))?;
                }
                writeln!(w, "  file:       {}", escape_path(&l.path))
            })?;
        }
    }
    Ok(())
}
