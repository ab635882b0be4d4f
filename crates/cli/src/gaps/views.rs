//! The listings: `list`, `ready`, `summary`, `render` and `doctor`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use gapreg::{Checked, Filter, GapSummary};
use serde_json::json;

use super::{SummaryJson, left_out, parse, registry};
use crate::output::{Output, escape, escape_path, escape_text, path_json, table};
use crate::{Global, Result, exit};

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
    show_gaps(out, registry(global)?.list_checked(&filter)?)
}

/// `gapreg ready`.
pub fn ready(global: &Global, out: Output) -> Result {
    show_gaps(out, registry(global)?.ready_checked()?)
}

/// Prints the gaps of a listing as a table (or a JSON array), then fails naming what it had
/// to leave out.
fn show_gaps(out: Output, checked: Checked<Vec<GapSummary>>) -> Result {
    let gaps = &checked.value;
    let doc: Vec<SummaryJson<'_>> = gaps.iter().map(SummaryJson::from).collect();
    out.show(&doc, |w| table(w, &GAP_HEADER, &gap_rows(gaps)))?;
    left_out(&checked.damaged)
}

/// `gapreg summary`.
pub fn summary(global: &Global, out: Output) -> Result {
    let checked = registry(global)?.summary_checked()?;
    let s = &checked.value;
    out.show(s, |w| {
        writeln!(w, "{} gaps", s.total)?;
        table(w, &["STATUS", "GAPS"], &count_rows(&s.by_status))?;
        writeln!(w)?;
        table(w, &["SEVERITY", "GAPS"], &count_rows(&s.by_severity))?;
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

/// One table row per key of a count: the key and its count.
fn count_rows<K: std::fmt::Display>(counts: &BTreeMap<K, usize>) -> Vec<Vec<String>> {
    counts
        .iter()
        .map(|(k, v)| vec![k.to_string(), v.to_string()])
        .collect()
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
