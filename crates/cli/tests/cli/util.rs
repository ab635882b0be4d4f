//! Running the real binary.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary repository with a registry made by `gapreg init`.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo { dir };
        repo.run(&["init"]).ok();
        repo
    }

    /// A temporary directory without a registry.
    pub fn bare() -> Repo {
        Repo {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn registry(&self) -> PathBuf {
        self.dir.path().join(".gapreg")
    }

    /// Runs `gapreg ARGS` in the repository.
    pub fn run(&self, args: &[&str]) -> Run {
        run_in(self.path(), args, None)
    }

    /// Runs `gapreg ARGS` with `stdin` as standard input.
    pub fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Run {
        run_in(self.path(), args, Some(stdin))
    }

    /// Runs `gapreg ARGS` with arguments that need not be UTF-8, and optional standard input.
    pub fn run_os(&self, args: &[&OsStr], stdin: Option<&[u8]>) -> Run {
        run_in(self.path(), args, stdin)
    }
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gapreg")
}

/// Runs the binary in `dir`.
pub fn run_in<S: AsRef<OsStr>>(dir: &Path, args: &[S], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("GAPREG_DIR")
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gapreg");
    if let Some(input) = stdin {
        // A command may refuse (and exit) before it reads its input: a closed pipe is its
        // answer, not the test's failure.
        match child.stdin.take().expect("stdin").write_all(input) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
            _ => {}
        }
    }
    Run(child.wait_with_output().expect("wait"))
}

/// A finished run.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().expect("exit code")
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> String {
        assert_eq!(self.code(), 0, "stderr: {}", self.stderr());
        self.stdout()
    }

    /// Asserts exit `code` and an `error: ` line on stderr containing every `needle`.
    pub fn fails(&self, code: i32, needles: &[&str]) {
        let err = self.stderr();
        assert_eq!(self.code(), code, "stdout: {} stderr: {err}", self.stdout());
        assert!(err.starts_with("error: "), "{err}");
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }

    /// Parses stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok()).expect("stdout is one JSON document")
    }
}

/// How [`run_guarded`] runs the binary: a deadline, a home directory, an address-space cap.
pub struct Guard<'a> {
    /// The working directory.
    pub dir: &'a Path,
    /// `HOME` for the child (and `XDG_*` removed, so every default lands there).
    pub home: &'a Path,
    /// Killed (and reported as timed out) after this long.
    pub timeout: std::time::Duration,
    /// `RLIMIT_AS` in bytes (through `prlimit`), so an unbounded allocation fails.
    pub address_space: Option<u64>,
    /// Standard input (else `/dev/null`).
    pub stdin: Option<&'a [u8]>,
    /// Sample the child's peak resident set (`VmHWM`) while it runs.
    pub watch_memory: bool,
}

/// The outcome of [`run_guarded`].
pub struct Guarded {
    /// `None` if killed on timeout.
    pub status: Option<std::process::ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: std::time::Duration,
    /// The largest `VmHWM` seen, in KiB, when [`Guard::watch_memory`] was set.
    pub peak_kib: Option<u64>,
}

impl Guarded {
    /// The exit code, or a description of how the process ended without one.
    pub fn code(&self) -> Result<i32, String> {
        use std::os::unix::process::ExitStatusExt;
        match self.status {
            _ if self.timed_out => Err(format!("timed out after {:?} (killed)", self.elapsed)),
            None => Err("no exit status".into()),
            Some(s) => s
                .code()
                .ok_or_else(|| format!("killed by signal {:?}", s.signal())),
        }
    }
}

/// Runs `gapreg ARGS` under `guard`: stdout and stderr go to temp files (no pipe can fill),
/// the child is polled until it exits or the deadline passes (then killed by its pid).
pub fn run_guarded<S: AsRef<OsStr>>(guard: &Guard<'_>, args: &[S]) -> Guarded {
    use std::io::{Read, Seek};
    let out = tempfile::tempfile().expect("stdout temp file");
    let err = tempfile::tempfile().expect("stderr temp file");
    let mut cmd = match guard.address_space {
        Some(bytes) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--as={bytes}")).arg("--").arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    cmd.args(args)
        .current_dir(guard.dir)
        .env_remove("GAPREG_DIR")
        .env("HOME", guard.home)
        .env("NO_COLOR", "1")
        .stdout(Stdio::from(out.try_clone().expect("clone stdout")))
        .stderr(Stdio::from(err.try_clone().expect("clone stderr")));
    for var in [
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
        "XDG_RUNTIME_DIR",
    ] {
        cmd.env_remove(var);
    }
    match guard.stdin {
        Some(bytes) => {
            let mut input = tempfile::tempfile().expect("stdin temp file");
            input.write_all(bytes).expect("write stdin");
            input.rewind().expect("rewind stdin");
            cmd.stdin(Stdio::from(input));
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let start = std::time::Instant::now();
    let mut child = cmd.spawn().expect("spawn gapreg");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = None;
    let mut nap = std::time::Duration::from_micros(200);
    let (status, timed_out) = loop {
        if guard.watch_memory {
            if let Some(kib) = vm_hwm_kib(&status_file) {
                peak = Some(peak.map_or(kib, |p: u64| p.max(kib)));
            }
        }
        if let Some(status) = child.try_wait().expect("wait for gapreg") {
            break (Some(status), false);
        }
        if start.elapsed() > guard.timeout {
            // Our own child, by its pid.
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(std::time::Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let read = |mut f: std::fs::File| {
        let mut bytes = Vec::new();
        f.rewind().expect("rewind output");
        f.read_to_end(&mut bytes).expect("read output");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Guarded {
        status,
        timed_out,
        stdout: read(out),
        stderr: read(err),
        elapsed,
        peak_kib: peak,
    }
}

/// `VmHWM` (peak resident set, KiB) from a `/proc/PID/status` file, while the process lives.
fn vm_hwm_kib(status_file: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status_file).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Every entry below some roots, never following a link: type, mode, inode, size, times and
/// a hash of the contents (files) or the target (links), keyed by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub std::collections::BTreeMap<PathBuf, String>);

/// Takes a [`Snapshot`] of `roots` (each included itself; a missing root is recorded as
/// missing).
pub fn snapshot(roots: &[&Path]) -> Snapshot {
    let mut map = std::collections::BTreeMap::new();
    for root in roots {
        walk(root, &mut map);
    }
    Snapshot(map)
}

fn walk(path: &Path, map: &mut std::collections::BTreeMap<PathBuf, String>) {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        map.insert(path.to_path_buf(), "missing".into());
        return;
    };
    let t = meta.file_type();
    let stamp = format!(
        "mode {:o} ino {} size {} mtime {}.{} ctime {}.{}",
        meta.mode(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let text = if t.is_symlink() {
        let target = std::fs::read_link(path).expect("read link");
        format!("link -> {} {stamp}", target.display())
    } else if t.is_file() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(path).expect("read file").hash(&mut h);
        format!("file {:016x} {stamp}", h.finish())
    } else if t.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .expect("read dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        names.sort();
        for child in &names {
            walk(child, map);
        }
        format!("dir {stamp}")
    } else if t.is_fifo() {
        format!("fifo {stamp}")
    } else {
        format!("other {stamp}")
    };
    map.insert(path.to_path_buf(), text);
}

impl Snapshot {
    /// What changed from `self` to `after`, one line per entry.
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (path, was) in &self.0 {
            match after.0.get(path) {
                None => out.push(format!("removed {}", path.display())),
                Some(now) if now != was => {
                    out.push(format!("changed {}: {was} -> {now}", path.display()));
                }
                Some(_) => {}
            }
        }
        for path in after.0.keys().filter(|p| !self.0.contains_key(*p)) {
            out.push(format!("created {}: {}", path.display(), after.0[path]));
        }
        out
    }
}

/// Runs `git ARGS` in `dir` (quietly, with a fixed identity), asserting success.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "init.defaultBranch=main", "-c", "core.symlinks=true"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether strace can trace here (installed, and ptrace allowed). CI installs it (`.ci/run`).
pub fn strace_works() -> bool {
    let works = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!("skipped: strace is not installed or cannot trace here");
    }
    works
}

/// `strace -f -qq -o /dev/null -e trace=CALL -e inject=CALL:INJECT -- gapreg ARGS` in `dir`.
pub fn traced(dir: &Path, call: &str, inject: &str, args: &[&str]) -> Run {
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null"])
        .arg(format!("-etrace={call}"))
        .arg(format!("-einject={call}:{inject}"))
        .arg("--")
        .arg(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("GAPREG_DIR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run strace");
    Run(out)
}
