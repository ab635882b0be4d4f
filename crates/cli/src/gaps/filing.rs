//! `gapreg file`: one gap from its options, or a `--batch` file of them (all or nothing).

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use gapreg::{GapSpec, Severity};
use serde::Deserialize;
use serde_json::Value;

use super::{gap_json, parse, registry};
use crate::output::{Output, escape, escape_path};
use crate::{Global, Result, exit};

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

/// A batch is YAML, of which JSON is a subset.
fn serde_yaml_or_json(text: &[u8]) -> std::result::Result<Vec<BatchEntry>, String> {
    gapreg::atomic_file::Format::Yaml
        .decode("batch", text)
        .map_err(|e| match e.kind() {
            gapreg::atomic_file::ErrorKind::Decode { message, .. } => message.clone(),
            _ => e.to_string(),
        })
}
