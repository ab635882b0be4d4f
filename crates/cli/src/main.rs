//! `gapreg`: parsing, output and exit codes only; every rule lives in the library crates.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;

/// Share one repository's state between many agents without losing or duplicating it.
#[derive(Debug, Parser)]
#[command(name = "gapreg", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gapreg: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Write { file, checksum } => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input)?;
            atomic_file::Options::new()
                .checksum(checksum)
                .write(&file, &input)?;
        }
        Command::Verify { file } => {
            use std::io::Write;
            let payload = atomic_file::read_checksummed(&file)?;
            let mut out = std::io::stdout().lock();
            match out.write_all(&payload).and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
        }
        Command::DemoWrite { workers, updates } => demo::run(workers, updates)?,
        Command::DemoWorker { role, path, count } => demo::worker(&role, &path, count)?,
        Command::Recover { dir } => {
            let report = atomic_file::recover(&dir)?;
            for path in &report.removed {
                println!("removed {}", path.display());
            }
            for path in &report.in_use {
                eprintln!(
                    "gapreg: kept {} (its writer is still running)",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
