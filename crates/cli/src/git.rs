//! `gapreg git setup` (make a clone merge registry documents field by field) and the hidden
//! `gapreg merge-driver` that git runs for them. The merge itself is `gapreg::merge`; this
//! module reads and writes git's files and spawns `git` for its configuration.
//!
//! `git setup` is a list of steps, each a function that checks one thing, changes it only if
//! it is not already so, and says what it did ([`Step`]): running it again changes nothing.
//! A new thing to set up (a pre-commit hook) is one more step in [`STEPS`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, Subcommand};
use gapreg::merge::{self, DocumentKind, MAX_MERGE_INPUT, Merge};
use serde::Serialize;
use serde_json::json;

use crate::exit::{CliError, Code, invalid};
use crate::output::{Output, escape_path, path_json};
use crate::{Global, Result};

/// `gapreg git ...`.
#[derive(Debug, Subcommand)]
pub enum GitCommand {
    /// Make this clone merge registry documents field by field: `.gitattributes` lines for gap
    /// and loop files and the merge driver in the clone's git config. Safe to run again.
    Setup,
}

/// The arguments git passes to a merge driver (`merge.gapreg.driver`).
#[derive(Debug, Args)]
pub struct MergeDriverArgs {
    /// The common ancestor's version (git's %O; empty when both branches added the file).
    #[arg(long)]
    ancestor: PathBuf,
    /// Our version (git's %A); the result is written here.
    #[arg(long)]
    ours: PathBuf,
    /// Their version (git's %B).
    #[arg(long)]
    theirs: PathBuf,
    /// The path of the merged file in the repository (git's %P).
    #[arg(long)]
    path: Option<PathBuf>,
    /// The length of conflict markers (git's %L).
    #[arg(long, default_value_t = 7)]
    marker_size: usize,
}

/// Runs a `git` subcommand.
pub fn run(global: &Global, out: Output, cmd: GitCommand) -> Result {
    match cmd {
        GitCommand::Setup => setup(global, out),
    }
}

/// What one step of `git setup` did.
#[derive(Debug, Serialize)]
struct Step {
    /// The step's name.
    step: &'static str,
    /// Whether it changed anything.
    changed: bool,
    /// What it did, or what it found.
    message: String,
}

/// Where `git setup` works.
struct Place {
    /// The top of the work tree.
    root: PathBuf,
    /// The registry directory, relative to `root`.
    registry: PathBuf,
    /// The loops directory relative to `root`, if it is inside it.
    loops: Option<PathBuf>,
}

/// Each thing `git setup` sets up, in order.
const STEPS: &[fn(&Place) -> Result<Step>] = &[gitattributes, driver_config];

fn setup(global: &Global, out: Output) -> Result {
    let registry = crate::gaps::registry(global)?;
    let dir = std::fs::canonicalize(registry.dir())?;
    let parent = dir.parent().unwrap_or(&dir);
    let root = std::fs::canonicalize(git_text(parent, &["rev-parse", "--show-toplevel"])?)?;
    let rel = dir.strip_prefix(&root).map_err(|_| {
        invalid(format!(
            "the registry {} is not inside the git work tree {}",
            escape_path(&dir),
            escape_path(&root)
        ))
    })?;
    let loops_dir = registry.loops_dir();
    let loops_abs = std::fs::canonicalize(&loops_dir).unwrap_or(loops_dir);
    let place = Place {
        registry: rel.to_path_buf(),
        loops: loops_abs.strip_prefix(&root).ok().map(Path::to_path_buf),
        root,
    };
    let mut steps = Vec::new();
    for step in STEPS {
        steps.push(step(&place)?);
    }
    let changed = steps.iter().any(|s| s.changed);
    let doc = json!({ "root": path_json(&place.root), "changed": changed, "steps": steps });
    Ok(out.answer(&doc, |w| {
        for s in &steps {
            if s.changed || !changed {
                writeln!(w, "{}", s.message)?;
            }
        }
        if !changed {
            writeln!(w, "already set up")?;
        }
        Ok(())
    })?)
}

/// `.gitattributes` at the top of the work tree routes gap and loop files to the driver.
fn gitattributes(place: &Place) -> Result<Step> {
    let lines = merge::attribute_lines(&place.registry, place.loops.as_deref()).map_err(invalid)?;
    let root = atomic_file::dir::Dir::open(&place.root)?;
    let existing = root.read(".gitattributes", MAX_MERGE_INPUT)?;
    let text = match &existing {
        Some(bytes) => std::str::from_utf8(bytes)
            .map_err(|_| invalid(".gitattributes is not UTF-8 text; edit it by hand"))?,
        None => "",
    };
    let path = place.root.join(".gitattributes");
    let mut message = match merge::with_attribute_lines(text, &lines) {
        None => format!(
            "{} already routes registry documents to the merge driver",
            escape_path(&path)
        ),
        Some(updated) => {
            root.write(
                ".gitattributes",
                updated.as_bytes(),
                &atomic_file::Options::new(),
            )?;
            let verb = if existing.is_some() {
                "updated"
            } else {
                "created"
            };
            let step = Step {
                step: "gitattributes",
                changed: true,
                message: format!(
                    "{verb} {} ({}); commit it",
                    escape_path(&path),
                    lines.join(", ")
                ),
            };
            return Ok(loops_note(place, step));
        }
    };
    if place.loops.is_none() {
        message.push_str(" (the loops directory is outside the work tree: not routed)");
    }
    Ok(Step {
        step: "gitattributes",
        changed: false,
        message,
    })
}

fn loops_note(place: &Place, mut step: Step) -> Step {
    if place.loops.is_none() {
        step.message
            .push_str(" (the loops directory is outside the work tree: not routed)");
    }
    step
}

/// `merge.gapreg.name` and `merge.gapreg.driver` in the clone's own git config.
fn driver_config(place: &Place) -> Result<Step> {
    let exe = std::env::current_exe()?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let exe = exe.to_str().ok_or_else(|| {
        invalid(format!(
            "the gapreg binary's path {} is not UTF-8",
            escape_path(&exe)
        ))
    })?;
    let wanted = [
        (
            format!("merge.{}.name", merge::DRIVER_NAME),
            "gapreg: field-by-field merge of registry documents".to_owned(),
        ),
        (
            format!("merge.{}.driver", merge::DRIVER_NAME),
            format!(
                "{} merge-driver --ancestor %O --ours %A --theirs %B --path %P --marker-size %L",
                shell_quote(exe)
            ),
        ),
    ];
    let mut set = Vec::new();
    for (key, value) in &wanted {
        let current = git_output(&place.root, &["config", "--local", "--get", key])?;
        if current.as_deref() != Some(value.as_str()) {
            git_text(&place.root, &["config", "--local", key, value])?;
            set.push(key.as_str());
        }
    }
    Ok(if set.is_empty() {
        Step {
            step: "merge-driver",
            changed: false,
            message: "the merge driver is registered in the clone's git config".into(),
        }
    } else {
        Step {
            step: "merge-driver",
            changed: true,
            message: format!(
                "registered the merge driver in the clone's git config ({})",
                set.join(", ")
            ),
        }
    })
}

/// `text` as one word for the shell git runs the driver with.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs `git -C dir ARGS`; its standard output without the final newline, or `None` if it
/// exited 1 (what `git config --get` does for a missing key).
fn git_output(dir: &Path, args: &[&str]) -> Result<Option<String>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    match out.status.code() {
        Some(0) => {
            let text =
                String::from_utf8(out.stdout).map_err(|_| "git printed a non-UTF-8 answer")?;
            Ok(Some(text.strip_suffix('\n').unwrap_or(&text).to_owned()))
        }
        Some(1) if out.stderr.is_empty() => Ok(None),
        _ => Err(Box::new(CliError {
            code: Code::Failure,
            message: format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })),
    }
}

fn git_text(dir: &Path, args: &[&str]) -> Result<String> {
    git_output(dir, args)?.ok_or_else(|| format!("git {} failed", args.join(" ")).into())
}

/// Reads one of git's temp files: a regular file (never through a symlink), at most
/// [`MAX_MERGE_INPUT`] bytes.
fn read_side(path: &Path) -> Result<Vec<u8>> {
    let (dir, name) = split(path)?;
    atomic_file::dir::Dir::open(dir)?
        .read(name, MAX_MERGE_INPUT)?
        .ok_or_else(|| crate::exit::not_found(format!("{} does not exist", escape_path(path))))
}

fn split(path: &Path) -> Result<(&Path, &std::ffi::OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| invalid(format!("{} does not name a file", escape_path(path))))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// git's merge driver: merges the three versions, writes the result (or the file with
/// conflict markers) over `--ours`, and fails (exit 1) naming what conflicts.
pub fn merge_driver(args: MergeDriverArgs) -> Result {
    let ancestor = read_side(&args.ancestor)?;
    let ours = read_side(&args.ours)?;
    let theirs = read_side(&args.theirs)?;
    let shown = args.path.as_deref().unwrap_or(&args.ours);
    let kind =
        args.path
            .as_deref()
            .and_then(DocumentKind::of)
            .unwrap_or(if ours.starts_with(b"---") {
                DocumentKind::Loop
            } else {
                DocumentKind::Gap
            });
    let base = (!ancestor.is_empty()).then_some(&ancestor[..]);
    let (text, conflict) = match kind.merge(base, &ours, &theirs) {
        Merge::Clean(text) => (text, None),
        Merge::Conflict(c) => (c.render(args.marker_size), Some(c)),
    };
    let (dir, name) = split(&args.ours)?;
    atomic_file::dir::Dir::open(dir)?.write(name, text.as_bytes(), &atomic_file::Options::new())?;
    match conflict {
        None => Ok(()),
        Some(c) => Err(Box::new(CliError {
            code: Code::Failure,
            message: format!("merge conflict in {}: {c}", escape_path(shown)),
        })),
    }
}
