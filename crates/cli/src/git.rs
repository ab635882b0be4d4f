//! `gapreg git setup` (make a clone merge registry documents field by field) and the hidden
//! `gapreg merge-driver` that git runs for them. The merge itself is `gapreg::merge`; this
//! module reads and writes git's files and spawns `git` for its configuration.
//!
//! `git setup` is a list of steps, each a function that checks one thing, changes it only if
//! it is not already so, and says what it did ([`Step`]): running it again changes nothing.
//! A new thing to set up is one more step in [`STEPS`]. `gapreg init` runs the same steps
//! inside a git repository ([`setup_in_git`]), and commands that write documents print a
//! one-line [`hint`] when the clone has no driver registered.
//!
//! The pre-commit hook ([`pre_commit_hook`]) goes in the clone's hooks directory (`git
//! rev-parse --git-path hooks`, which honours `core.hooksPath`) and never replaces a hook it
//! did not write: a `pre-commit` that is not gapreg's is renamed `pre-commit.gapreg-chained`
//! once, and gapreg's hook runs it first (its failure still refuses the commit), then `gapreg
//! hook pre-commit` ([`crate::hook`]). gapreg's hook is known by its marker line, so running
//! setup again rewrites only gapreg's own file (a moved binary) and never chains twice.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, Subcommand};
use gapreg::Registry;
use gapreg::merge::{self, DocumentKind, MAX_MERGE_INPUT, Merge};
use serde::Serialize;
use serde_json::json;

use crate::exit::{CliError, Code, invalid};
use crate::output::{Output, eprint_escaped, escape_path, path_json};
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
const STEPS: &[fn(&Place) -> Result<Step>] = &[gitattributes, driver_config, pre_commit_hook];

/// What the steps of `git setup` did, in the work tree `root`.
pub struct Setup {
    root: PathBuf,
    steps: Vec<Step>,
}

impl Setup {
    /// Whether any step changed anything.
    fn changed(&self) -> bool {
        self.steps.iter().any(|s| s.changed)
    }

    /// The JSON document of `git setup` (also `init`'s `git` field).
    pub fn json(&self) -> serde_json::Value {
        json!({ "root": path_json(&self.root), "changed": self.changed(), "steps": self.steps })
    }

    /// The lines `git setup` prints: what changed, or every finding and "already set up".
    pub fn lines(&self) -> Vec<String> {
        let changed = self.changed();
        let mut lines: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.changed || !changed)
            .map(|s| s.message.clone())
            .collect();
        if !changed {
            lines.push("already set up".into());
        }
        lines
    }
}

/// Runs every step of `git setup` for `registry`.
fn setup_steps(registry: &Registry) -> Result<Setup> {
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
    Ok(Setup {
        root: place.root,
        steps,
    })
}

/// `git setup` for a registry just created by `gapreg init`: `None` outside a git work tree
/// (found by reading `.git`, without spawning git), else what the steps did.
pub fn setup_in_git(registry: &Registry) -> Option<Result<Setup>> {
    match gapreg::gitdir::find(registry.dir()) {
        Ok(Some(_)) => Some(setup_steps(registry)),
        Ok(None) => None,
        Err(e) => Some(Err(e.into())),
    }
}

fn setup(global: &Global, out: Output) -> Result {
    let registry = crate::gaps::registry(global)?;
    let setup = setup_steps(&registry)?;
    Ok(out.answer(&setup.json(), |w| {
        for line in setup.lines() {
            writeln!(w, "{line}")?;
        }
        Ok(())
    })?)
}

/// The hint commands that write documents print (on stderr, one line, not with `--quiet`)
/// when the registry is in a git work tree whose clone has no merge driver registered. It
/// reads the common git directory's `config` as text (no git is spawned: this runs after
/// every write) and looks for the driver's section; silent outside git and on any doubt.
pub fn hint(global: &Global, out: Output) {
    if out.quiet {
        return;
    }
    let start = match (&global.registry, std::env::var_os("GAPREG_DIR")) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => match std::env::current_dir() {
            Ok(dir) => dir,
            Err(_) => return,
        },
    };
    let Ok(Some(dirs)) = gapreg::gitdir::find(&start) else {
        return;
    };
    if !driver_registered(&dirs.common_dir) {
        eprint_escaped(
            "hint: run `gapreg git setup` so branches merge gap files field by field \
             (no merge driver is registered in this clone)",
        );
    }
}

/// Whether the clone's config (in `common_dir`) names the driver's section; a config that
/// cannot be read counts as registered (no hint on doubt).
fn driver_registered(common_dir: &Path) -> bool {
    use std::io::Read;
    let section = format!("[merge \"{}\"]", merge::DRIVER_NAME);
    let Ok(file) = std::fs::File::open(common_dir.join("config")) else {
        return true;
    };
    let mut text = Vec::new();
    if file.take(MAX_MERGE_INPUT).read_to_end(&mut text).is_err() {
        return true;
    }
    String::from_utf8_lossy(&text).contains(&section)
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
    let exe = current_exe_text()?;
    let wanted = [
        (
            format!("merge.{}.name", merge::DRIVER_NAME),
            "gapreg: field-by-field merge of registry documents".to_owned(),
        ),
        (
            format!("merge.{}.driver", merge::DRIVER_NAME),
            format!(
                "{} merge-driver --ancestor %O --ours %A --theirs %B --path %P --marker-size %L",
                shell_quote(&exe)
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

/// The line that marks a `pre-commit` hook as gapreg's own.
const HOOK_MARKER: &str = "# gapreg pre-commit hook, installed by `gapreg git setup`";

/// The name an existing `pre-commit` hook that is not gapreg's is kept under, and run from.
const CHAINED: &str = "pre-commit.gapreg-chained";

/// The text of gapreg's `pre-commit` hook, running `exe` for the registry at `registry`
/// (relative to the top of the work tree, where git runs hooks).
fn hook_text(exe: &str, registry: &Path) -> Result<String> {
    let registry = registry.to_str().ok_or_else(|| {
        invalid(format!(
            "the registry path {} is not UTF-8",
            escape_path(registry)
        ))
    })?;
    let registry = if registry.is_empty() { "." } else { registry };
    Ok(format!(
        "#!/bin/sh
{HOOK_MARKER} (run it again to update this file).
# Refuses a commit that touches a path inside another holder's live exclusive lease; the
# committer is the holder named by GAPREG_HOLDER. `git commit --no-verify` skips it.
# A pre-commit hook that was here before is kept as {CHAINED} and runs first.
chained=\"$(dirname \"$0\")/{CHAINED}\"
if [ -x \"$chained\" ]; then
    \"$chained\" \"$@\" || exit $?
fi
gapreg={exe}
if [ ! -x \"$gapreg\" ]; then
    gapreg=$(command -v gapreg) || {{
        echo \"gapreg pre-commit: {exe_shown} is gone and no gapreg is on PATH; leases were not checked (run \\`gapreg git setup\\` again)\" >&2
        exit 0
    }}
fi
exec \"$gapreg\" --registry {registry} hook pre-commit
",
        exe = shell_quote(exe),
        exe_shown = exe.replace(['"', '\\', '$', '`'], "?"),
        registry = shell_quote(registry),
    ))
}

/// The pre-commit hook in the clone's hooks directory, chained with any hook already there.
fn pre_commit_hook(place: &Place) -> Result<Step> {
    use std::os::unix::fs::PermissionsExt;
    let hooks = PathBuf::from(git_text(
        &place.root,
        &["rev-parse", "--git-path", "hooks"],
    )?);
    let hooks = place.root.join(hooks);
    std::fs::create_dir_all(&hooks)?;
    let dir = atomic_file::dir::Dir::open(&hooks)?;
    let exe = current_exe_text()?;
    let wanted = hook_text(&exe, &place.registry)?;
    let path = hooks.join("pre-commit");
    let mut done = Vec::new();
    let existing = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_file() => dir.read("pre-commit", MAX_MERGE_INPUT)?,
        Ok(_) => Some(Vec::new()), // a symlink or another kind: not ours, so chained as is
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let ours = existing
        .as_deref()
        .is_some_and(|text| String::from_utf8_lossy(text).contains(HOOK_MARKER));
    if existing.is_some() && !ours {
        let chained = hooks.join(CHAINED);
        if std::fs::symlink_metadata(&chained).is_ok() {
            return Err(Box::new(CliError {
                code: Code::Conflict,
                message: format!(
                    "{} is not gapreg's hook, and {} already exists, so it cannot be chained \
                     without replacing one of them: merge them into {} by hand, then run \
                     `gapreg git setup` again",
                    escape_path(&path),
                    escape_path(&chained),
                    escape_path(&chained),
                ),
            }));
        }
        // A rename keeps the hook exactly as it was (a symlink stays a symlink).
        std::fs::rename(&path, &chained)?;
        done.push(format!(
            "kept the existing hook as {} (it runs first)",
            escape_path(&chained)
        ));
    }
    let current = if ours { existing.as_deref() } else { None };
    if current != Some(wanted.as_bytes()) {
        dir.write(
            "pre-commit",
            wanted.as_bytes(),
            &atomic_file::Options::new(),
        )?;
    }
    let mode = std::fs::metadata(&path)?.permissions().mode();
    if current != Some(wanted.as_bytes()) || mode & 0o111 != 0o111 {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o755))?;
        let verb = if ours { "updated" } else { "installed" };
        done.insert(
            0,
            format!(
                "{verb} the pre-commit hook {} (refuses commits touching paths inside another \
                 holder's exclusive lease; the committer is GAPREG_HOLDER)",
                escape_path(&path)
            ),
        );
    }
    Ok(if done.is_empty() {
        Step {
            step: "pre-commit-hook",
            changed: false,
            message: format!("the pre-commit hook {} is installed", escape_path(&path)),
        }
    } else {
        Step {
            step: "pre-commit-hook",
            changed: true,
            message: done.join("; "),
        }
    })
}

/// This binary's path as UTF-8 text (for the driver and the hook to run it).
fn current_exe_text() -> Result<String> {
    let exe = std::env::current_exe()?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    exe.to_str().map(str::to_owned).ok_or_else(|| {
        invalid(format!(
            "the gapreg binary's path {} is not UTF-8",
            escape_path(&exe)
        ))
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
