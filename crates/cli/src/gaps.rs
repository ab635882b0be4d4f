//! The gap registry commands: `init`, `loop`, `file`, `next-id`, `show`, `list`, `ready`,
//! `claim`, `unclaim`, `status`, `dep`, `summary`, `render`, `doctor`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use gapreg::{Filter, Gap, GapSpec, GapSummary, LoopSpec, Registry, Severity, Status};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::output::{Output, escape, escape_path, escape_text, path_json, table};
use crate::{Global, Result, exit};

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

/// Options of `gapreg file`.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// A YAML or JSON list of gap specs (`-` for standard input); all or nothing.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["title", "id"])]
    batch: Option<PathBuf>,
    /// Makes the call safe to retry: a later call with the same key and the same gap (or
    /// batch) prints what the first one filed instead of filing it again. 1–128 characters of
    /// A-Z a-z 0-9 . _ : -, e.g. agent-7:task-31.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// The id prefix: OP gives GAP-OP-1, GAP-OP-2, … Default: the registry's default prefix.
    #[arg(long)]
    prefix: Option<String>,
    /// The gap's title.
    #[arg(long, required_unless_present = "batch")]
    title: Option<String>,
    /// Free-text type, e.g. agent-behavior or missing-entry.
    #[arg(long = "type", default_value = "")]
    gap_type: String,
    /// critical, high, medium or low.
    #[arg(long, default_value = "medium")]
    severity: String,
    /// The loop (epic) the gap belongs to.
    #[arg(long)]
    parent_loop: Option<String>,
    /// A longer description.
    #[arg(long, default_value = "")]
    description: String,
    /// A gap or loop this gap waits for (repeatable).
    #[arg(long = "depends-on", value_name = "ID")]
    depends_on: Vec<String>,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// `auto` (default) or an id reserved earlier with `gapreg ids reserve`.
    #[arg(long, default_value = "auto")]
    id: String,
}

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

/// Filters of `gapreg list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only gaps with this status.
    #[arg(long)]
    status: Option<String>,
    /// Only gaps of this loop.
    #[arg(long)]
    parent_loop: Option<String>,
    /// Only gaps of this severity.
    #[arg(long)]
    severity: Option<String>,
    /// Only gaps of this type.
    #[arg(long = "type")]
    gap_type: Option<String>,
    /// Only gaps claimed by this agent.
    #[arg(long)]
    claimed_by: Option<String>,
    /// Only gaps with this tag.
    #[arg(long)]
    tag: Option<String>,
}

/// One gap spec of a `--batch` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchEntry {
    prefix: String,
    title: String,
    #[serde(rename = "type", default)]
    gap_type: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    parent_loop: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    id: Option<String>,
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

/// The JSON object of a gap as listed (from the registry's index).
pub fn summary_json(gap: &GapSummary) -> Value {
    json!({
        "id": gap.id,
        "seq": gap.seq,
        "rev": gap.rev,
        "title": gap.title,
        "type": gap.gap_type,
        "severity": gap.severity,
        "status": gap.status,
        "parent_loop": gap.parent_loop,
        "depends_on": gap.depends_on,
        "claimed_by": gap.claimed_by,
        "claim_expires_at": gap.claim_expires_at.map(|t| t.to_string()),
        "tags": gap.tags,
        "created_at": gap.created_at.to_string(),
        "updated_at": gap.updated_at.to_string(),
    })
}

fn gap_rows(gaps: &[GapSummary]) -> Vec<Vec<String>> {
    gaps.iter()
        .map(|g| {
            vec![
                g.id.clone(),
                g.status.to_string(),
                g.severity.to_string(),
                g.parent_loop.clone().unwrap_or_default(),
                g.claimed_by.clone().unwrap_or_default(),
                g.title.clone(),
            ]
        })
        .collect()
}

const GAP_HEADER: [&str; 6] = ["ID", "STATUS", "SEVERITY", "LOOP", "CLAIMED BY", "TITLE"];

/// A list of ids or tags for one line of human text.
fn joined(items: &[String]) -> String {
    escape(&items.join(", ")).into_owned()
}

/// The JSON object of a loop, its path as [`path_json`] prints it.
fn loop_json(l: &gapreg::Loop) -> Result<Value> {
    let mut pathless = l.clone();
    pathless.path = PathBuf::new();
    let mut v = serde_json::to_value(pathless)?;
    v["path"] = path_json(&l.path);
    Ok(v)
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
pub fn init(out: Output, dir: Option<PathBuf>) -> Result {
    let dir = match dir {
        Some(dir) => dir,
        None => std::env::current_dir()?,
    };
    out.check_json_path("the directory", &dir)?;
    let registry = Registry::init(&dir, gapreg::Config::default())?;
    let doc = json!({ "registry": path_json(registry.dir()) });
    Ok(out.answer(&doc, |w| {
        writeln!(w, "created {}", escape_path(registry.dir()))
    })?)
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

/// `gapreg file …`.
pub fn file(global: &Global, out: Output, args: FileArgs) -> Result {
    let registry = registry(global)?;
    let out = Output {
        quiet: false,
        ..out
    };
    if let Some(batch) = args.batch {
        let text = read_batch(&batch)?;
        let entries: Vec<BatchEntry> = serde_yaml_or_json(&text).map_err(|e| {
            exit::invalid(format!(
                "the batch is not a YAML or JSON list of gap specs: {e}; each entry needs \
                 `prefix` and `title`, and may have type, severity, parent_loop, description, \
                 depends_on, tags, id"
            ))
        })?;
        let mut specs = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            let severity = match e
                .severity
                .as_deref()
                .map(str::parse::<Severity>)
                .transpose()
            {
                Ok(s) => s,
                Err(reason) => {
                    bad.push(format!("entry {i}: {reason}"));
                    continue;
                }
            };
            specs.push(GapSpec {
                id: e.id,
                prefix: Some(e.prefix),
                title: e.title,
                gap_type: e.gap_type,
                severity,
                description: e.description,
                parent_loop: e.parent_loop,
                depends_on: e.depends_on,
                tags: e.tags,
                ..GapSpec::default()
            });
        }
        if !bad.is_empty() {
            return Err(exit::invalid(format!(
                "the batch has invalid entries; nothing was filed:\n  {}",
                bad.join("\n  ")
            )));
        }
        let gaps = match &args.idempotency_key {
            Some(key) => registry.file_batch_idempotent(specs, key)?,
            None => registry.file_batch(specs)?,
        };
        let doc: Vec<Value> = gaps.iter().map(gap_json).collect();
        out.answer(&doc, |w| {
            gaps.iter()
                .try_for_each(|g| writeln!(w, "{}", escape(&g.id)))
        })?;
        return Ok(());
    }
    let spec = GapSpec {
        id: (args.id != "auto").then_some(args.id),
        prefix: args.prefix,
        title: args.title.unwrap_or_default(),
        gap_type: args.gap_type,
        severity: Some(parse(&args.severity)?),
        description: args.description,
        parent_loop: args.parent_loop,
        depends_on: args.depends_on,
        tags: args.tags,
        ..GapSpec::default()
    };
    let gap = match &args.idempotency_key {
        Some(key) => registry.file_idempotent(spec, key)?,
        None => registry.file(spec)?,
    };
    out.answer(&gap_json(&gap), |w| writeln!(w, "{}", escape(&gap.id)))?;
    Ok(())
}

/// Largest batch file read: well above `MAX_BATCH` entries of ordinary size.
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// Reads a batch file (or standard input for `-`), refusing more than [`MAX_BATCH_BYTES`]
/// before allocating for it.
fn read_batch(batch: &Path) -> Result<Vec<u8>> {
    let too_large = || {
        exit::invalid(format!(
            "the batch {} is larger than {} MiB; split it into several batches",
            escape_path(batch),
            MAX_BATCH_BYTES >> 20
        ))
    };
    let mut text = Vec::new();
    if batch.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_BATCH_BYTES + 1)
            .read_to_end(&mut text)?;
    } else {
        let file = std::fs::File::open(batch).map_err(|e| {
            exit::not_found(format!(
                "cannot read batch file {}: {e}",
                escape_path(batch)
            ))
        })?;
        if file.metadata()?.len() > MAX_BATCH_BYTES {
            return Err(too_large());
        }
        file.take(MAX_BATCH_BYTES + 1).read_to_end(&mut text)?;
    }
    if text.len() as u64 > MAX_BATCH_BYTES {
        return Err(too_large());
    }
    Ok(text)
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

/// A batch is YAML, of which JSON is a subset.
fn serde_yaml_or_json(text: &[u8]) -> std::result::Result<Vec<BatchEntry>, String> {
    gapreg::atomic_file::Format::Yaml
        .decode("batch", text)
        .map_err(|e| match e.kind() {
            gapreg::atomic_file::ErrorKind::Decode { message, .. } => message.clone(),
            _ => e.to_string(),
        })
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

/// `gapreg list …`.
pub fn list(global: &Global, out: Output, args: ListArgs) -> Result {
    let filter = Filter {
        status: args.status.as_deref().map(parse).transpose()?,
        parent_loop: args.parent_loop,
        severity: args.severity.as_deref().map(parse).transpose()?,
        gap_type: args.gap_type,
        claimed_by: args.claimed_by,
        tag: args.tag,
    };
    let checked = registry(global)?.list_checked(&filter)?;
    let gaps = &checked.value;
    let doc: Vec<Value> = gaps.iter().map(summary_json).collect();
    out.show(&doc, |w| table(w, &GAP_HEADER, &gap_rows(gaps)))?;
    left_out(&checked.damaged)
}

/// `gapreg ready`.
pub fn ready(global: &Global, out: Output) -> Result {
    let checked = registry(global)?.ready_checked()?;
    let gaps = &checked.value;
    let doc: Vec<Value> = gaps.iter().map(summary_json).collect();
    out.show(&doc, |w| table(w, &GAP_HEADER, &gap_rows(gaps)))?;
    left_out(&checked.damaged)
}

/// `gapreg claim ID --agent A [--ttl D]`.
pub fn claim(global: &Global, out: Output, id: &str, agent: &str, ttl: Option<Duration>) -> Result {
    let gap = registry(global)?.claim(id, agent, ttl)?;
    show_gap(out, &gap, &format!("{agent} claimed"))
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

/// `gapreg summary`.
pub fn summary(global: &Global, out: Output) -> Result {
    let checked = registry(global)?.summary_checked()?;
    let s = &checked.value;
    out.show(s, |w| {
        writeln!(w, "{} gaps", s.total)?;
        let rows: Vec<Vec<String>> = s
            .by_status
            .iter()
            .map(|(k, v)| vec![k.to_string(), v.to_string()])
            .collect();
        table(w, &["STATUS", "GAPS"], &rows)?;
        writeln!(w)?;
        let rows: Vec<Vec<String>> = s
            .by_severity
            .iter()
            .map(|(k, v)| vec![k.to_string(), v.to_string()])
            .collect();
        table(w, &["SEVERITY", "GAPS"], &rows)?;
        writeln!(w)?;
        let rows: Vec<Vec<String>> = s
            .by_loop
            .iter()
            .map(|(k, c)| {
                vec![
                    k.clone(),
                    c.total.to_string(),
                    c.complete.to_string(),
                    c.remaining.to_string(),
                ]
            })
            .collect();
        table(w, &["LOOP", "GAPS", "COMPLETE", "REMAINING"], &rows)
    })?;
    left_out(&checked.damaged)
}

/// `gapreg render [--out FILE]`.
///
/// The markdown is text for people, in a terminal or in a file someone will `cat` or `git
/// diff`: unsafe characters are escaped ([`escape_text`]) in both, so `--out` writes exactly
/// what standard output shows. `--json` carries the library's text exactly.
pub fn render(global: &Global, out: Output, file: Option<PathBuf>) -> Result {
    if let Some(file) = &file {
        out.check_json_path("the output file", file)?;
    }
    let checked = registry(global)?.render_checked()?;
    let text = checked.value;
    match file {
        Some(file) => {
            let text = escape_text(&text);
            gapreg::atomic_file::write(&file, text.as_bytes())?;
            let doc = json!({ "path": path_json(&file), "bytes": text.len() });
            out.answer(&doc, |w| writeln!(w, "wrote {}", escape_path(&file)))?;
        }
        None => {
            out.show(&json!({ "markdown": text }), |w| {
                w.write_all(text.as_bytes())
            })?;
        }
    }
    left_out(&checked.damaged)
}

/// `gapreg doctor [--repair]`: exits 6 when the registry is unhealthy.
pub fn doctor(global: &Global, out: Output, repair: bool) -> Result {
    let report = registry(global)?.doctor(repair)?;
    let out_all = Output {
        quiet: false,
        ..out
    };
    out_all.show(&report, |w| {
        for f in &report.findings {
            writeln!(w, "{}", escape(&f.to_string()))?;
        }
        writeln!(
            w,
            "{} gaps, {} loops: {}",
            report.gaps,
            report.loops,
            if report.healthy() {
                "healthy"
            } else {
                "UNHEALTHY"
            }
        )
    })?;
    if report.healthy() {
        Ok(())
    } else {
        Err(Box::new(exit::CliError {
            code: exit::Code::Corrupt,
            message: "the registry is unhealthy (see above); `gapreg doctor --repair` fixes \
                      what is safe to fix"
                .into(),
        }))
    }
}
