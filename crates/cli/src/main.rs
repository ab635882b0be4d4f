//! `gapreg`: argument parsing, output and exit codes only; every rule lives in the library
//! crates (`gapreg`, `idreserve`, `leaselock`, `atomic-file`), the demos' workloads and checks
//! in `gapreg-demo`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

mod coordination;
mod demo;
mod duration;
mod exit;
mod gaps;
mod git;
mod hook;
mod ids;
mod lease;
mod output;

use output::Output;

/// The result of a command: any library error, classified into an exit code by `exit`.
pub type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// Share one repository's state between many agents without losing or duplicating it.
#[derive(Debug, Parser)]
#[command(name = "gapreg", version, about, after_long_help = exit::HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The registry directory (`.gapreg`). Default: `$GAPREG_DIR`, else the nearest `.gapreg/`
    /// in the current directory or a parent.
    #[arg(long, global = true, value_name = "DIR")]
    pub registry: Option<PathBuf>,
    /// Print one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but errors (and the data a command exists to print).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// How long to wait for a busy lock, e.g. 500ms, 30s, 1h.
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration::parse)]
    wait: Option<Duration>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a registry, DIR/.gapreg (default: the current directory).
    Init {
        /// The repository directory.
        dir: Option<PathBuf>,
        /// Where counters, claims and leases live: `files` (this clone, shared by its
        /// worktrees) or `postgres` (a server shared by every machine; its address from
        /// GAPREG_COORDINATION_URL or `gapreg coordination set URL`).
        #[arg(long, value_name = "BACKEND", default_value = "files", value_parser = coordination::parse_backend)]
        coordination: gapreg::Backend,
    },
    /// Where this registry's coordination state lives: show it, set this clone's server, or
    /// switch backends (carrying the counters over).
    #[command(subcommand)]
    Coordination(coordination::CoordinationCommand),
    /// Create, list and show loops (scoped pieces of work, also called epics).
    #[command(subcommand)]
    Loop(gaps::LoopCommand),
    /// File a gap (prints its id), or a batch of gaps with --batch (all or nothing).
    File(gaps::FileArgs),
    /// Print the next gap id for PREFIX without reserving it.
    NextId {
        /// The prefix, e.g. OP for GAP-OP-1, GAP-OP-2, …
        prefix: String,
    },
    /// Show one gap.
    Show {
        /// The gap id.
        id: String,
    },
    /// List gaps in registry order.
    List(gaps::ListArgs),
    /// List the gaps an idle agent can take now, most severe first.
    Ready,
    /// Claim a gap for an agent (exactly one of many concurrent claimers wins).
    Claim {
        /// The gap id (or --next).
        #[arg(required_unless_present = "next", conflicts_with = "next")]
        id: Option<String>,
        /// The agent, e.g. CC-3.
        #[arg(long)]
        agent: String,
        /// Let the claim lapse after this long unless renewed by claiming again.
        #[arg(long, value_parser = duration::parse)]
        ttl: Option<Duration>,
        /// Claim the most severe ready gap and print its id (exit 4 when nothing is ready).
        #[arg(long)]
        next: bool,
        /// With --next: only gaps of this loop.
        #[arg(long = "loop", requires = "next")]
        parent_loop: Option<String>,
        /// The heartbeat: renew a claim this agent holds (refused if it holds none).
        #[arg(long, conflicts_with = "next")]
        renew: bool,
    },
    /// Release an agent's claim.
    Unclaim {
        /// The gap id.
        id: String,
        /// The agent holding the claim.
        #[arg(long)]
        agent: String,
    },
    /// Set a gap's status (open, needs-plan, ready, in-progress, blocked, complete, out-of-scope).
    Status {
        /// The gap id.
        id: String,
        /// The new status.
        status: String,
        /// Only if the gap is still at this revision (what you last read).
        #[arg(long)]
        rev: Option<u64>,
    },
    /// Add or remove a dependency.
    #[command(subcommand)]
    Dep(gaps::DepCommand),
    /// Counts by status, severity and loop.
    Summary,
    /// Render the registry as a markdown overview.
    Render {
        /// Write it (atomically) to FILE instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check the registry; with --repair, fix what is safe to fix. Exits 6 if unhealthy.
    Doctor {
        /// Remove leftovers, rebuild the index, raise counters.
        #[arg(long)]
        repair: bool,
    },
    /// Make git merge registry documents field by field (`git setup`).
    #[command(subcommand)]
    Git(git::GitCommand),
    /// git's merge driver for registry documents (internal; `gapreg git setup` registers it).
    #[command(hide = true)]
    MergeDriver(git::MergeDriverArgs),
    /// What the hooks `gapreg git setup` installs run (internal).
    #[command(subcommand, hide = true)]
    Hook(hook::HookCommand),
    /// Reserve, inspect and check IDs like SEC-20 or GAP-OP-1091.
    #[command(subcommand)]
    Ids(ids::IdsCommand),
    /// Take, renew, release and list leases on files and directories.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Atomically and durably replace FILE with standard input.
    Write {
        /// The file to replace (created if missing; a symlink is followed).
        file: PathBuf,
        /// Store a checksum header in the file (see the atomic-file crate's docs).
        #[arg(long)]
        checksum: bool,
    },
    /// Print FILE's contents after checking its checksum header.
    Verify {
        /// A file written with `gapreg write --checksum`.
        file: PathBuf,
    },
    /// Remove temp files left in DIR by writers that died mid-write, listing them.
    Recover {
        /// The directory to clean.
        dir: PathBuf,
    },
    /// The main job: N agent processes share a fresh registry; prints the overview and a
    /// verification of the run.
    Demo {
        /// Number of concurrent agent processes.
        #[arg(long, default_value_t = 8)]
        agents: u32,
        /// Run the agents from two git clones, as two machines, sharing this PostgreSQL
        /// server (postgres://user@host:port/database; the password from PGPASSWORD or
        /// ~/.pgpass), and verify across both.
        #[arg(long, value_name = "URL")]
        coordination: Option<String>,
    },
    /// An agent process of `demo` (internal).
    #[command(hide = true)]
    DemoAgent { name: String, repo: PathBuf },
    /// Demonstrate the file layer: concurrent processes, a killed writer, a damaged file.
    DemoWrite {
        /// Number of concurrent worker processes.
        #[arg(long, default_value_t = 8)]
        workers: u32,
        /// Locked updates per worker.
        #[arg(long, default_value_t = 100)]
        updates: u32,
    },
    /// A worker process of `demo-write` (internal).
    #[command(hide = true)]
    DemoWorker {
        role: String,
        path: PathBuf,
        #[arg(default_value_t = 0)]
        count: u32,
    },
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output {
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    let writes_documents = writes_documents(&cli.command);
    match run(&cli.global, out, cli.command) {
        Ok(()) => {
            if writes_documents {
                git::hint(&cli.global, out);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = exit::classify(e.as_ref());
            let mut message = format!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(&format!("\n  caused by: {text}"));
                }
                source = cause.source();
            }
            output::eprint_escaped(&message);
            ExitCode::from(code as u8)
        }
    }
}

/// Whether `command` writes documents (gap or loop files, which travel by merge): after it,
/// a clone without the merge driver gets a hint ([`git::hint`]).
fn writes_documents(command: &Command) -> bool {
    matches!(
        command,
        Command::File(_)
            | Command::Claim { .. }
            | Command::Unclaim { .. }
            | Command::Status { .. }
            | Command::Dep(_)
            | Command::Loop(gaps::LoopCommand::New { .. })
    )
}

fn run(global: &Global, out: Output, command: Command) -> Result {
    match command {
        Command::Init { dir, coordination } => gaps::init(global, out, dir, coordination),
        Command::Coordination(cmd) => coordination::run(global, out, cmd),
        Command::Loop(cmd) => gaps::loops(global, out, cmd),
        Command::File(args) => gaps::file(global, out, args),
        Command::NextId { prefix } => gaps::next_id(global, out, &prefix),
        Command::Show { id } => gaps::show(global, out, &id),
        Command::List(args) => gaps::list(global, out, args),
        Command::Ready => gaps::ready(global, out),
        Command::Claim {
            id,
            agent,
            ttl,
            next,
            parent_loop,
            renew,
        } => match id {
            Some(id) if !next => gaps::claim(global, out, &id, &agent, ttl, renew),
            _ => gaps::claim_next(global, out, &agent, ttl, parent_loop.as_deref()),
        },
        Command::Unclaim { id, agent } => gaps::unclaim(global, out, &id, &agent),
        Command::Status { id, status, rev } => gaps::status(global, out, &id, &status, rev),
        Command::Dep(cmd) => gaps::dep(global, out, cmd),
        Command::Summary => gaps::summary(global, out),
        Command::Render { out: file } => gaps::render(global, out, file),
        Command::Doctor { repair } => gaps::doctor(global, out, repair),
        Command::Git(cmd) => git::run(global, out, cmd),
        Command::MergeDriver(args) => git::merge_driver(args),
        Command::Hook(cmd) => hook::run(global, cmd),
        Command::Ids(cmd) => ids::run(global, out, cmd),
        Command::Lease(cmd) => lease::run(global, out, cmd),
        Command::Write { file, checksum } => {
            out.check_json_path("the file", &file)?;
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input)?;
            atomic_file::Options::new()
                .checksum(checksum)
                .write(&file, &input)?;
            let doc = serde_json::json!({ "path": output::path_json(&file), "bytes": input.len() });
            Ok(out.answer(&doc, |w| {
                writeln!(
                    w,
                    "wrote {} bytes to {}",
                    input.len(),
                    output::escape_path(&file)
                )
            })?)
        }
        Command::Verify { file } => {
            // The file's contents are the data this command exists to print (like `cat`):
            // written as they are, not escaped.
            let payload = atomic_file::read_checksummed(&file)?;
            Ok(output::print_raw(&payload)?)
        }
        Command::Recover { dir } => {
            out.check_json_path("the directory", &dir)?;
            let report = atomic_file::recover(&dir)?;
            let doc = serde_json::json!({
                "removed": output::paths_json(&report.removed),
                "in_use": output::paths_json(&report.in_use),
                "skipped": output::paths_json(&report.skipped),
            });
            Ok(out.answer(&doc, |w| {
                for path in &report.removed {
                    writeln!(w, "removed {}", output::escape_path(path))?;
                }
                for path in &report.in_use {
                    writeln!(
                        w,
                        "kept {} (its writer is still running)",
                        output::escape_path(path)
                    )?;
                }
                for path in &report.skipped {
                    writeln!(
                        w,
                        "skipped {} (it could not be inspected)",
                        output::escape_path(path)
                    )?;
                }
                Ok(())
            })?)
        }
        Command::Demo {
            agents,
            coordination,
        } => demo::run(agents, coordination.as_deref()),
        Command::DemoAgent { name, repo } => demo::agent(&name, &repo),
        Command::DemoWrite { workers, updates } => demo::write(workers, updates),
        Command::DemoWorker { role, path, count } => demo::worker(&role, &path, count),
        Command::Completions { shell } => {
            // Generated into memory: clap_complete panics on a failed write (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "gapreg", &mut script);
            Ok(output::print_raw(&script)?)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            Ok(output::print_raw(&page)?)
        }
    }
}

impl Global {
    /// The lock wait given with `--wait`.
    pub fn wait(&self) -> Option<Duration> {
        self.wait
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
