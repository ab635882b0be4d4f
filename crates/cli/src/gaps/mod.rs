//! The gap registry commands: `init`, `next-id`, `show`, `claim`, `unclaim`, `status` and
//! `dep` here, with what they share (opening the registry, a gap's JSON and text); `loop` in
//! [`loops`], `file` in [`filing`], the listings (`list`, `ready`, `summary`, `render`,
//! `doctor`) in [`views`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use gapreg::{Gap, GapSummary, Registry, Severity, Status, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

use crate::output::{Output, escape, escape_path, escape_text, path_json};
use crate::{Global, Result, exit};

mod filing;
mod loops;
mod views;

pub use filing::{FileArgs, file};
pub use loops::{LoopCommand, loops};
pub use views::{ListArgs, doctor, list, ready, render, summary};

/// `gapreg dep` subcommands.
#[derive(Debug, Subcommand)]
pub enum DepCommand {
    /// Make ID wait for another gap or loop.
    Add {
        /// The waiting gap.
        id: String,
        /// What it waits for.
        #[arg(long)]
        on: String,
    },
    /// Remove a dependency.
    Rm {
        /// The waiting gap.
        id: String,
        /// What it waited for.
        #[arg(long)]
        on: String,
    },
}

fn parse<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(exit::invalid)
}

/// Opens the registry named by the global options.
pub fn registry(global: &Global) -> Result<Registry> {
    let mut registry = match (&global.registry, std::env::var_os("GAPREG_DIR")) {
        (Some(dir), _) => Registry::open(dir)?,
        (None, Some(dir)) => Registry::open(dir)?,
        (None, None) => Registry::discover(std::env::current_dir()?)?,
    }
    // Problems after a change was made durable: the change stands, the user is told.
    .with_warnings(|message| crate::output::eprint_escaped(&format!("warning: {message}")));
    if let Some(wait) = global.wait() {
        registry = registry.with_lock_timeout(wait);
    }
    Ok(registry)
}

/// The JSON object of one gap: the listed fields plus those only `show` reads.
pub fn gap_json(gap: &Gap) -> Value {
    let mut v = summary_json(&gap.summary());
    v["claimed_at"] = json!(gap.claimed_at.map(|t| t.to_string()));
    v["plan"] = json!(gap.plan);
    v["description"] = json!(gap.description);
    v
}

/// The JSON object of a gap as listed (from the registry's index), borrowed from its
/// summary and written straight out: a listing of 10,000 gaps builds no tree of values.
/// Fields in alphabetical order, as a JSON map of them is written.
#[derive(Serialize)]
pub struct SummaryJson<'a> {
    claim_expires_at: Option<Timestamp>,
    claimed_by: &'a Option<String>,
    created_at: Timestamp,
    depends_on: &'a [String],
    id: &'a str,
    parent_loop: &'a Option<String>,
    rev: u64,
    seq: u64,
    severity: Severity,
    status: Status,
    tags: &'a [String],
    title: &'a str,
    #[serde(rename = "type")]
    gap_type: &'a str,
    updated_at: Timestamp,
}

impl<'a> From<&'a GapSummary> for SummaryJson<'a> {
    fn from(gap: &'a GapSummary) -> SummaryJson<'a> {
        SummaryJson {
            claim_expires_at: gap.claim_expires_at,
            claimed_by: &gap.claimed_by,
            created_at: gap.created_at,
            depends_on: &gap.depends_on,
            id: &gap.id,
            parent_loop: &gap.parent_loop,
            rev: gap.rev,
            seq: gap.seq,
            severity: gap.severity,
            status: gap.status,
            tags: &gap.tags,
            title: &gap.title,
            gap_type: &gap.gap_type,
            updated_at: gap.updated_at,
        }
    }
}

/// [`SummaryJson`] as a value, for documents that add fields to it.
pub fn summary_json(gap: &GapSummary) -> Value {
    serde_json::to_value(SummaryJson::from(gap)).unwrap_or(Value::Null)
}

/// A list of ids or tags for one line of human text.
fn joined(items: &[String]) -> String {
    escape(&items.join(", ")).into_owned()
}

fn show_gap(out: Output, gap: &Gap, verb: &str) -> Result {
    let out = Output {
        quiet: false,
        ..out
    };
    // A verb: the answer of a change (claim, status, dep); none: `show`, a read.
    let print = |value: &Value, human: &dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()>| {
        if verb.is_empty() {
            out.show(value, human)
        } else {
            out.answer(value, human)
        }
    };
    Ok(print(&gap_json(gap), &|w| {
        if verb.is_empty() {
            writeln!(
                w,
                "{} [{}, {}] {}",
                escape(&gap.id),
                gap.status,
                gap.severity,
                escape(&gap.title)
            )?;
            if let Some(l) = &gap.parent_loop {
                writeln!(w, "  loop:       {}", escape(l))?;
            }
            if !gap.depends_on.is_empty() {
                writeln!(w, "  depends on: {}", joined(&gap.depends_on))?;
            }
            if let Some(c) = &gap.claimed_by {
                writeln!(w, "  claimed by: {}", escape(c))?;
            }
            if !gap.tags.is_empty() {
                writeln!(w, "  tags:       {}", joined(&gap.tags))?;
            }
            writeln!(w, "  revision:   {}", gap.rev)?;
            if !gap.description.is_empty() {
                // The one field printed over several lines on purpose.
                writeln!(w, "\n{}", escape_text(&gap.description))?;
            }
            Ok(())
        } else {
            writeln!(
                w,
                "{} {} (now {}, revision {})",
                escape(verb),
                escape(&gap.id),
                gap.status,
                gap.rev
            )
        }
    })?)
}

/// `gapreg init [DIR]`.
pub fn init(
    global: &Global,
    out: Output,
    dir: Option<PathBuf>,
    coordination: gapreg::Backend,
) -> Result {
    let dir = match dir {
        Some(dir) => dir,
        None => std::env::current_dir()?,
    };
    out.check_json_path("the directory", &dir)?;
    let config = gapreg::Config {
        coordination,
        ..gapreg::Config::default()
    };
    // With a server, it is reached first: a wrong address or a server that is down is found
    // at init, and nothing is created.
    let mut registry = Registry::init_reached(&dir, config, global.wait())?;
    if let Some(wait) = global.wait() {
        registry = registry.with_lock_timeout(wait);
    }
    let mut doc = json!({ "registry": path_json(registry.dir()) });
    // Inside git, `git setup` too; the registry stands whatever it does.
    let setup = match crate::git::setup_in_git(&registry) {
        Some(Ok(setup)) => Some(setup),
        Some(Err(e)) => {
            crate::output::eprint_escaped(&format!(
                "warning: the registry is created, but `gapreg git setup` failed ({e}); run it \
                 again once that is fixed"
            ));
            None
        }
        None => None,
    };
    if let Some(setup) = &setup {
        doc["git"] = setup.json();
    }
    Ok(out.answer(&doc, |w| {
        writeln!(w, "created {}", escape_path(registry.dir()))?;
        for line in setup.iter().flat_map(crate::git::Setup::lines) {
            writeln!(w, "{line}")?;
        }
        Ok(())
    })?)
}

/// After the good rows were printed: the documents a read had to leave out, as an error
/// (exit 6) naming each, so that a shorter listing is never taken for a complete one.
fn left_out(damaged: &[gapreg::DamagedFile]) -> Result {
    if damaged.is_empty() {
        return Ok(());
    }
    let files: Vec<String> = damaged
        .iter()
        .map(|d| format!("{}: {}", d.file, d.reason))
        .collect();
    Err(exit::corrupt(format!(
        "{} file(s) could not be read and were left out of the output:\n  {}\nfix or restore \
         them (`gapreg doctor` lists every problem)",
        damaged.len(),
        files.join("\n  ")
    )))
}

/// `gapreg next-id PREFIX`.
pub fn next_id(global: &Global, out: Output, prefix: &str) -> Result {
    let id = registry(global)?.next_id(prefix)?.to_string();
    let out = Output {
        quiet: false,
        ..out
    };
    Ok(out.show(&json!({ "next": id }), |w| writeln!(w, "{}", escape(&id)))?)
}

/// `gapreg show ID`.
pub fn show(global: &Global, out: Output, id: &str) -> Result {
    show_gap(out, &registry(global)?.show(id)?, "")
}

/// `gapreg claim ID --agent A [--ttl D]`.
pub fn claim(
    global: &Global,
    out: Output,
    id: &str,
    agent: &str,
    ttl: Option<Duration>,
    renew: bool,
) -> Result {
    let registry = registry(global)?;
    if renew {
        let gap = registry.show(id)?;
        if gap.claimed_by.as_deref() != Some(agent) {
            return Err(exit::conflict(format!(
                "{agent} holds no claim on {id} to renew (claimed by {}); claim it first",
                gap.claimed_by.as_deref().unwrap_or("nobody")
            )));
        }
    }
    let gap = registry.claim(id, agent, ttl)?;
    show_gap(out, &gap, &format!("{agent} claimed"))
}

/// `gapreg claim --next --agent A [--loop L]`: the most severe ready gap, claimed; its id
/// printed. Exit 4 when nothing is ready.
pub fn claim_next(
    global: &Global,
    out: Output,
    agent: &str,
    ttl: Option<Duration>,
    parent_loop: Option<&str>,
) -> Result {
    match registry(global)?.claim_next(agent, ttl, parent_loop)? {
        Some(gap) => Ok(out.answer(&json!({ "id": gap.id, "rev": gap.rev }), |w| {
            writeln!(w, "{}", escape(&gap.id))
        })?),
        None => Err(exit::not_found(match parent_loop {
            Some(l) => format!("nothing in loop {l} is ready to claim"),
            None => "nothing is ready to claim".to_owned(),
        })),
    }
}

/// `gapreg unclaim ID --agent A`.
pub fn unclaim(global: &Global, out: Output, id: &str, agent: &str) -> Result {
    let gap = registry(global)?.unclaim(id, agent)?;
    show_gap(out, &gap, &format!("{agent} released"))
}

/// `gapreg status ID STATUS [--rev N]`.
pub fn status(global: &Global, out: Output, id: &str, status: &str, rev: Option<u64>) -> Result {
    let status: Status = parse(status)?;
    let gap = registry(global)?.set_status(id, status, rev)?;
    show_gap(out, &gap, "updated")
}

/// `gapreg dep add|rm`.
pub fn dep(global: &Global, out: Output, cmd: DepCommand) -> Result {
    let registry = registry(global)?;
    let gap = match cmd {
        DepCommand::Add { id, on } => registry.add_dependency(&id, &on)?,
        DepCommand::Rm { id, on } => registry.remove_dependency(&id, &on)?,
    };
    show_gap(out, &gap, "updated")
}
