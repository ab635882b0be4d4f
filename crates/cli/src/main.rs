//! `gapreg`: argument parsing, output and exit codes only; every rule lives in the library
//! crates (`gapreg`, `idreserve`, `leaselock`, `atomic-file`), the demos' workloads and checks
//! in `gapreg-demo`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

mod coordination;
mod demo;
mod duration;
mod exit;
mod gaps;
mod git;
mod hook;
mod ids;
mod lazy;
mod lease;
mod output;

use lazy::Lazy;
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

/// Options every command takes, before its name (`gapreg --json list`) or after it (`gapreg
/// list --json`): [`lazy`] gives every command its own copy, [`Global::or`] joins the two.
#[derive(Debug, Default, Args)]
pub struct Global {
    /// The registry directory (`.gapreg`). Default: `$GAPREG_DIR`, else the nearest `.gapreg/`
    /// in the current directory or a parent.
    #[arg(long, value_name = "DIR")]
    pub registry: Option<PathBuf>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Print nothing but errors (and the data a command exists to print).
    #[arg(long, short)]
    quiet: bool,
    /// How long to wait for a busy lock, e.g. 500ms, 30s, 1h.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    wait: Option<Duration>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a registry, DIR/.gapreg (default: the current directory).
    Init(Lazy<InitArgs>),
    /// Where this registry's coordination state lives: show it, set this clone's server, or
    /// switch backends (carrying the counters over).
    #[command(subcommand)]
    Coordination(Lazy<coordination::CoordinationCommand>),
    /// Create, list and show loops (scoped pieces of work, also called epics).
    #[command(subcommand)]
    Loop(Lazy<gaps::LoopCommand>),
    /// File a gap (prints its id), or a batch of gaps with --batch (all or nothing).
    File(Lazy<gaps::FileArgs>),
    /// Print the next gap id for PREFIX without reserving it.
    NextId(Lazy<NextIdArgs>),
    /// Show one gap.
    Show(Lazy<ShowArgs>),
    /// List gaps in registry order.
    List(Lazy<gaps::ListArgs>),
    /// List the gaps an idle agent can take now, most severe first.
    Ready(Lazy<NoArgs>),
    /// Claim a gap for an agent (exactly one of many concurrent claimers wins).
    Claim(Lazy<ClaimArgs>),
    /// Release an agent's claim.
    Unclaim(Lazy<UnclaimArgs>),
    /// Set a gap's status (open, needs-plan, ready, in-progress, blocked, complete, out-of-scope).
    Status(Lazy<StatusArgs>),
    /// Add or remove a dependency.
    #[command(subcommand)]
    Dep(Lazy<gaps::DepCommand>),
    /// Counts by status, severity and loop.
    Summary(Lazy<NoArgs>),
    /// Render the registry as a markdown overview.
    Render(Lazy<RenderArgs>),
    /// Check the registry; with --repair, fix what is safe to fix. Exits 6 if unhealthy.
    Doctor(Lazy<DoctorArgs>),
    /// Make git merge registry documents field by field (`git setup`).
    #[command(subcommand)]
    Git(Lazy<git::GitCommand>),
    /// git's merge driver for registry documents (internal; `gapreg git setup` registers it).
    #[command(hide = true)]
    MergeDriver(Lazy<git::MergeDriverArgs>),
    /// What the hooks `gapreg git setup` installs run (internal).
    #[command(subcommand, hide = true)]
    Hook(Lazy<hook::HookCommand>),
    /// Reserve, inspect and check IDs like SEC-20 or GAP-OP-1091.
    #[command(subcommand)]
    Ids(Lazy<ids::IdsCommand>),
    /// Take, renew, release and list leases on files and directories.
    #[command(subcommand)]
    Lease(Lazy<lease::LeaseCommand>),
    /// Atomically and durably replace FILE with standard input.
    Write(Lazy<WriteArgs>),
    /// Print FILE's contents after checking its checksum header.
    Verify(Lazy<VerifyArgs>),
    /// Remove temp files left in DIR by writers that died mid-write, listing them.
    Recover(Lazy<RecoverArgs>),
    /// The main job: N agent processes share a fresh registry; prints the overview and a
    /// verification of the run.
    Demo(Lazy<DemoArgs>),
    /// An agent process of `demo` (internal).
    #[command(hide = true)]
    DemoAgent(Lazy<DemoAgentArgs>),
    /// Demonstrate the file layer: concurrent processes, a killed writer, a damaged file.
    DemoWrite(Lazy<DemoWriteArgs>),
    /// A worker process of `demo-write` (internal).
    #[command(hide = true)]
    DemoWorker(Lazy<DemoWorkerArgs>),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions(Lazy<CompletionsArgs>),
    /// Print the man page (roff) on stdout.
    Man(Lazy<NoArgs>),
}

/// The arguments of `gapreg init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The repository directory.
    pub dir: Option<PathBuf>,
    /// Where counters, claims and leases live: `files` (this clone, shared by its
    /// worktrees) or `postgres` (a server shared by every machine; its address from
    /// GAPREG_COORDINATION_URL or `gapreg coordination set URL`).
    #[arg(long, value_name = "BACKEND", default_value = "files", value_parser = coordination::parse_backend)]
    pub coordination: gapreg::Backend,
}

/// The arguments of `gapreg next-id`.
#[derive(Debug, Args)]
pub struct NextIdArgs {
    /// The prefix, e.g. OP for GAP-OP-1, GAP-OP-2, …
    pub prefix: String,
}

/// The arguments of `gapreg show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The gap id.
    pub id: String,
}

/// The arguments of `gapreg claim`.
#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The gap id (or --next).
    #[arg(required_unless_present = "next", conflicts_with = "next")]
    pub id: Option<String>,
    /// The agent, e.g. CC-3.
    #[arg(long)]
    pub agent: String,
    /// Let the claim lapse after this long unless renewed by claiming again.
    #[arg(long, value_parser = duration::parse)]
    pub ttl: Option<Duration>,
    /// Claim the most severe ready gap and print its id (exit 4 when nothing is ready).
    #[arg(long)]
    pub next: bool,
    /// With --next: only gaps of this loop.
    #[arg(long = "loop", requires = "next")]
    pub parent_loop: Option<String>,
    /// The heartbeat: renew a claim this agent holds (refused if it holds none).
    #[arg(long, conflicts_with = "next")]
    pub renew: bool,
}

/// The arguments of `gapreg unclaim`.
#[derive(Debug, Args)]
pub struct UnclaimArgs {
    /// The gap id.
    pub id: String,
    /// The agent holding the claim.
    #[arg(long)]
    pub agent: String,
}

/// The arguments of `gapreg status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The gap id.
    pub id: String,
    /// The new status.
    pub status: String,
    /// Only if the gap is still at this revision (what you last read).
    #[arg(long)]
    pub rev: Option<u64>,
}

/// The arguments of `gapreg render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Write it (atomically) to FILE instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The arguments of `gapreg doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Remove leftovers, rebuild the index, raise counters.
    #[arg(long)]
    pub repair: bool,
}

/// The arguments of `gapreg write`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The file to replace (created if missing; a symlink is followed).
    pub file: PathBuf,
    /// Store a checksum header in the file (see the atomic-file crate's docs).
    #[arg(long)]
    pub checksum: bool,
}

/// The arguments of `gapreg verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A file written with `gapreg write --checksum`.
    pub file: PathBuf,
}

/// The arguments of `gapreg recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The directory to clean.
    pub dir: PathBuf,
}

/// The arguments of `gapreg demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of concurrent agent processes.
    #[arg(long, default_value_t = 8)]
    pub agents: u32,
    /// Run the agents from two git clones, as two machines, sharing this PostgreSQL
    /// server (postgres://user@host:port/database; the password from PGPASSWORD or
    /// ~/.pgpass), and verify across both.
    #[arg(long, value_name = "URL")]
    pub coordination: Option<String>,
}

/// The arguments of `gapreg demo-agent`.
#[derive(Debug, Args)]
pub struct DemoAgentArgs {
    pub name: String,
    pub repo: PathBuf,
}

/// The arguments of `gapreg demo-write`.
#[derive(Debug, Args)]
pub struct DemoWriteArgs {
    /// Number of concurrent worker processes.
    #[arg(long, default_value_t = 8)]
    pub workers: u32,
    /// Locked updates per worker.
    #[arg(long, default_value_t = 100)]
    pub updates: u32,
}

/// The arguments of `gapreg demo-worker`.
#[derive(Debug, Args)]
pub struct DemoWorkerArgs {
    pub role: String,
    pub path: PathBuf,
    #[arg(default_value_t = 0)]
    pub count: u32,
}

/// The arguments of `gapreg completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// A command without arguments of its own.
#[derive(Debug, Args)]
pub struct NoArgs {}

fn main() -> ExitCode {
    let (command, global) = parse();
    let out = Output {
        json: global.json,
        quiet: global.quiet,
    };
    let writes_documents = writes_documents(&command);
    match run(&global, out, command) {
        Ok(()) => {
            if writes_documents {
                git::hint(&global, out);
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

/// The command line: the command, and the options every command takes joined from before
/// and after its name. Help, a version or a usage error is printed, and the process exits,
/// as clap does.
fn parse() -> (Command, Global) {
    let exit = |e: clap::Error| -> ! { e.format(&mut Cli::command()).exit() };
    let mut cli = Cli::command();
    let matches = cli.get_matches_mut();
    let Cli { global, command } = Cli::from_arg_matches(&matches).unwrap_or_else(|e| exit(e));
    let later = match matches.subcommand() {
        Some((_, sub)) => Global::from_arg_matches(sub).unwrap_or_else(|e| exit(e)),
        None => Global::default(),
    };
    // Freeing the command tree and the matches would cost the process a tenth of its
    // instructions, for memory its exit returns anyway.
    std::mem::forget((cli, matches));
    (command, global.or(later))
}

/// Whether `command` writes documents (gap or loop files, which travel by merge): after it,
/// a clone without the merge driver gets a hint ([`git::hint`]).
fn writes_documents(command: &Command) -> bool {
    matches!(
        command,
        Command::File(_)
            | Command::Claim(Lazy(ClaimArgs { .. }))
            | Command::Unclaim(Lazy(UnclaimArgs { .. }))
            | Command::Status(Lazy(StatusArgs { .. }))
            | Command::Dep(_)
            | Command::Loop(Lazy(gaps::LoopCommand::New { .. }))
    )
}

fn run(global: &Global, out: Output, command: Command) -> Result {
    match command {
        Command::Init(Lazy(InitArgs { dir, coordination })) => {
            gaps::init(global, out, dir, coordination)
        }
        Command::Coordination(Lazy(cmd)) => coordination::run(global, out, cmd),
        Command::Loop(Lazy(cmd)) => gaps::loops(global, out, cmd),
        Command::File(Lazy(args)) => gaps::file(global, out, args),
        Command::NextId(Lazy(NextIdArgs { prefix })) => gaps::next_id(global, out, &prefix),
        Command::Show(Lazy(ShowArgs { id })) => gaps::show(global, out, &id),
        Command::List(Lazy(args)) => gaps::list(global, out, args),
        Command::Ready(_) => gaps::ready(global, out),
        Command::Claim(Lazy(ClaimArgs {
            id,
            agent,
            ttl,
            next,
            parent_loop,
            renew,
        })) => match id {
            Some(id) if !next => gaps::claim(global, out, &id, &agent, ttl, renew),
            _ => gaps::claim_next(global, out, &agent, ttl, parent_loop.as_deref()),
        },
        Command::Unclaim(Lazy(UnclaimArgs { id, agent })) => {
            gaps::unclaim(global, out, &id, &agent)
        }
        Command::Status(Lazy(StatusArgs { id, status, rev })) => {
            gaps::status(global, out, &id, &status, rev)
        }
        Command::Dep(Lazy(cmd)) => gaps::dep(global, out, cmd),
        Command::Summary(_) => gaps::summary(global, out),
        Command::Render(Lazy(RenderArgs { out: file })) => gaps::render(global, out, file),
        Command::Doctor(Lazy(DoctorArgs { repair })) => gaps::doctor(global, out, repair),
        Command::Git(Lazy(cmd)) => git::run(global, out, cmd),
        Command::MergeDriver(Lazy(args)) => git::merge_driver(args),
        Command::Hook(Lazy(cmd)) => hook::run(global, cmd),
        Command::Ids(Lazy(cmd)) => ids::run(global, out, cmd),
        Command::Lease(Lazy(cmd)) => lease::run(global, out, cmd),
        Command::Write(Lazy(WriteArgs { file, checksum })) => {
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
        Command::Verify(Lazy(VerifyArgs { file })) => {
            // The file's contents are the data this command exists to print (like `cat`):
            // written as they are, not escaped.
            let payload = atomic_file::read_checksummed(&file)?;
            Ok(output::print_raw(&payload)?)
        }
        Command::Recover(Lazy(RecoverArgs { dir })) => {
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
        Command::Demo(Lazy(DemoArgs {
            agents,
            coordination,
        })) => demo::run(agents, coordination.as_deref()),
        Command::DemoAgent(Lazy(DemoAgentArgs { name, repo })) => demo::agent(&name, &repo),
        Command::DemoWrite(Lazy(DemoWriteArgs { workers, updates })) => {
            demo::write(workers, updates)
        }
        Command::DemoWorker(Lazy(DemoWorkerArgs { role, path, count })) => {
            demo::worker(&role, &path, count)
        }
        Command::Completions(Lazy(CompletionsArgs { shell })) => {
            // Generated into memory: clap_complete panics on a failed write (a closed pipe).
            let mut script = Vec::new();
            lazy::eager();
            clap_complete::generate(shell, &mut Cli::command(), "gapreg", &mut script);
            Ok(output::print_raw(&script)?)
        }
        Command::Man(_) => {
            let mut page = Vec::new();
            lazy::eager();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            Ok(output::print_raw(&page)?)
        }
    }
}

impl Global {
    /// These options joined with `later` (given after the command's name): a flag set in
    /// either is set, a value given later wins.
    pub fn or(self, later: Global) -> Global {
        Global {
            registry: later.registry.or(self.registry),
            json: self.json || later.json,
            quiet: self.quiet || later.quiet,
            wait: later.wait.or(self.wait),
        }
    }

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
