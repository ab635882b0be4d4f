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
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
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
