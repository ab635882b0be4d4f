//! Child processes: the bench binary re-executed in a role, started together, and whole
//! commands (the release `gapreg` binary, its peers) timed from spawn to exit.
//!
//! A role is a name in [`ROLE_ENV`]; a bench's `main` first asks [`role`] and, when it is set,
//! does that role's work instead of benchmarking. Workers that must start together use the
//! handshake: the child prints `ready` once it has opened what it needs ([`child_ready`]) and
//! waits for `go` on standard input; the parent starts every child ([`spawn_ready`]) and then
//! says go to all of them ([`go`]).

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Set, to the role's name, in a re-executed bench binary.
pub const ROLE_ENV: &str = "GAPREG_BENCH_ROLE";

/// The release `gapreg` binary to measure, when not the workspace's own.
pub const GAPREG_BIN_ENV: &str = "GAPREG_BIN";

/// The role this process was started in, if it is a re-executed child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// A command that re-executes this bench binary in `role`.
pub fn self_command(role: &str) -> Command {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let mut cmd = Command::new(exe);
    cmd.env(ROLE_ENV, role);
    cmd
}

/// In a child: the environment variable `name`, which the parent must have set.
pub fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Spawns `cmd` with piped standard input and output and waits for its `ready` line.
pub fn spawn_ready(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a child");
    let stdout = child.stdout.take().expect("the child's stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the child's ready line");
    assert_eq!(line.trim(), "ready", "a child did not get ready");
    child
}

/// Tells every ready child to go; returns when the last was told.
pub fn go(children: &mut [Child]) -> Instant {
    let start = Instant::now();
    for child in children.iter_mut() {
        let mut stdin = child.stdin.take().expect("the child's stdin");
        stdin.write_all(b"go\n").expect("tell a child to go");
    }
    start
}

/// Waits for every child; panics unless all succeeded.
pub fn wait_all(children: &mut [Child]) {
    for child in children {
        let status = child.wait().expect("wait for a child");
        assert!(status.success(), "a child failed: {status}");
    }
}

/// In a child: says `ready` and waits for `go`.
pub fn child_ready() {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "ready")
        .and_then(|()| stdout.flush())
        .expect("report ready");
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("wait for go");
    assert_eq!(line.trim(), "go", "the parent did not say go");
}

/// Runs `cmd` to its end with its standard output captured (read completely, as a consumer
/// would) and standard input closed; returns the time from spawn to exit and the output.
/// Panics, showing standard error, unless it exits 0.
pub fn run_timed(cmd: &mut Command) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("the child's stdout")
        .read_to_end(&mut out)
        .expect("read the child's stdout");
    let mut err = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut err);
    }
    let status = child.wait().expect("wait for the child");
    let took = start.elapsed();
    assert!(
        status.success(),
        "{cmd:?} failed ({status}): {}",
        String::from_utf8_lossy(&err)
    );
    (took, out)
}

/// The first `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The release `gapreg` binary: `$GAPREG_BIN`, else `gapreg` beside this bench's own build
/// (`target/release/gapreg`). `Err` says how to get one. (A bench cannot build it: the cargo
/// running the bench holds the build directory's lock.) Warns on stderr when a source file of
/// the workspace's crates is newer than the binary.
pub fn gapreg_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os(GAPREG_BIN_ENV) {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/release/deps/<bench> → target/release/gapreg
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|release| release.join("gapreg"))
        .ok_or("no directory above the bench binary")?;
    if !bin.is_file() {
        return Err(format!(
            "{} is missing: run `cargo build --release -p gapreg-cli` first (or set {GAPREG_BIN_ENV})",
            bin.display()
        ));
    }
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let built = fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if newest(&crates)
        .zip(built)
        .is_some_and(|(src, built)| src > built)
    {
        eprintln!(
            "warning: a source file under crates/ is newer than {}; rebuild it with \
             `cargo build --release -p gapreg-cli` to measure the current code",
            bin.display()
        );
    }
    Ok(bin)
}

/// The newest modification time of a `.rs` file under `dir`.
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut best = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let t = if meta.is_dir() {
            newest(&path)
        } else if path.extension() == Some(OsStr::new("rs")) {
            meta.modified().ok()
        } else {
            None
        };
        best = best.max(t);
    }
    best
}
