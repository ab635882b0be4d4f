//! A real PostgreSQL server for tests: a throwaway cluster ([`Cluster`]), and the shared one
//! a test run uses ([`server_or_skip`]).
//!
//! `initdb` refuses to run as root, so as root the server runs as the `postgres` system user
//! (`runuser`); otherwise as the caller. Clusters listen on a free loopback port, keep `fsync`
//! on (tests crash them on purpose) and trust local connections.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory of the server's programs: the highest version under
/// `/usr/lib/postgresql/*/bin`, else a `PATH` directory holding `initdb`, `pg_ctl` and `psql`.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| {
        ["initdb", "pg_ctl", "psql"]
            .iter()
            .all(|p| dir.join(p).is_file())
    })
}

/// The `psql` program (the real one, not Debian's wrapper script).
pub fn psql_program() -> PathBuf {
    bin_dir().map_or_else(|| PathBuf::from("psql"), |b| b.join("psql"))
}

fn is_root() -> bool {
    // SAFETY-free: the effective uid from /proc (no libc dependency).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `program` run as the server's user.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// A throwaway cluster: its own data directory, port and database `gapreg`; stopped and
/// removed on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    /// Creates and starts a cluster (about a second).
    ///
    /// # Errors
    ///
    /// When PostgreSQL is not installed or the cluster does not start (with the server's log).
    pub fn start() -> Result<Cluster, String> {
        let bin = bin_dir().ok_or("PostgreSQL is not installed (no initdb)")?;
        let dir = std::env::temp_dir().join(format!("gapreg-pg-{}", unique()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !ok.success() {
                return Err(format!("chown postgres {} failed", dir.display()));
            }
        }
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "gapreg",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut last = String::new();
        for _ in 0..5 {
            let mut cluster = Cluster {
                dir: dir.clone(),
                bin: bin.clone(),
                port: free_port()?,
            };
            match cluster.start_server() {
                Ok(()) => {
                    cluster.psql_db("postgres", "CREATE DATABASE gapreg")?;
                    return Ok(cluster);
                }
                Err(e) => {
                    last = e;
                    // Not started: nothing to stop; keep the data directory for the retry.
                    cluster.dir = PathBuf::new();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last)
    }

    fn start_server(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 \
             -c shared_buffers=32MB",
            self.port,
            self.dir.display()
        );
        let out = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "30", "-o", &opts, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            Err(format!(
                "the server did not start: {}; log: {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let out = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The URL of its database `gapreg`.
    pub fn url(&self) -> String {
        format!("postgres://gapreg@127.0.0.1:{}/gapreg", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Crashes it: `pg_ctl stop -m immediate` (no checkpoint; recovery at the next start).
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails.
    pub fn stop_immediate(&self) -> Result<(), String> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"])
    }

    /// Stops it cleanly.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails.
    pub fn stop_fast(&self) -> Result<(), String> {
        self.pg_ctl(&["stop", "-m", "fast", "-w"])
    }

    /// Starts it again on its port, waiting until it accepts connections.
    ///
    /// # Errors
    ///
    /// When it does not start.
    pub fn start_again(&self) -> Result<(), String> {
        self.start_server()
    }

    /// Runs `sql` with `psql -Atc` on database `gapreg`; its output.
    ///
    /// # Errors
    ///
    /// psql's error output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_db("gapreg", sql)
    }

    fn psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        psql(
            &format!("postgres://gapreg@127.0.0.1:{}/{db}", self.port),
            sql,
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `sql` with the real `psql -Atc` against `url`; its output.
///
/// # Errors
///
/// psql's error output.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(psql_program())
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-d",
            url,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The shared test server's URL: `GAPREG_TEST_PG_URL`, else one cluster started for this
/// test process (stopped by a watchdog once the process is gone); `None` when there is no
/// PostgreSQL, after printing a one-line reason for `test` — except under `CI=true`, where a
/// missing server fails the test.
pub fn server_or_skip(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var("GAPREG_TEST_PG_URL") {
        if !url.is_empty() {
            return Some(url);
        }
    }
    static SHARED: OnceLock<Result<String, String>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| {
        let cluster = Cluster::start()?;
        let url = cluster.url();
        // The cluster outlives this function: a watchdog stops it once this process exits.
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {ctl} stop -m immediate -D {data}; rm -rf {dir}",
            pid = std::process::id(),
            ctl = if is_root() {
                format!("runuser -u postgres -- {}", cluster.bin.join("pg_ctl").display())
            } else {
                cluster.bin.join("pg_ctl").display().to_string()
            },
            data = cluster.data_dir().display(),
            dir = cluster.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("watchdog: {e}"))?;
        std::mem::forget(cluster);
        Ok(url)
    });
    match shared {
        Ok(url) => Some(url.clone()),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: PostgreSQL is required under CI and none could be started: {e}")
        }
        Err(e) => {
            eprintln!(
                "skipped: {test}: no PostgreSQL ({e}; set GAPREG_TEST_PG_URL or install postgresql)"
            );
            None
        }
    }
}

/// A new, empty database on the server at `url`; its URL.
///
/// # Panics
///
/// When the database cannot be created.
pub fn fresh_database(url: &str) -> String {
    let name = format!("t_{}", unique().replace('-', "_"));
    psql(url, &format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create a test database on {url}: {e}"));
    match url.rsplit_once('/') {
        Some((base, db)) if !base.ends_with('/') => {
            let query = db
                .split_once('?')
                .map(|(_, q)| format!("?{q}"))
                .unwrap_or_default();
            format!("{base}/{name}{query}")
        }
        _ => format!("{url}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_crashes_and_comes_back() {
        let Some(_) = bin_dir() else {
            eprintln!("skipped: no PostgreSQL");
            return;
        };
        let cluster = Cluster::start().expect("start");
        assert_eq!(cluster.psql("SELECT 1").expect("query"), "1");
        cluster.stop_immediate().expect("crash");
        assert!(
            cluster.psql("SELECT 1").is_err(),
            "a stopped server answered"
        );
        cluster.start_again().expect("restart");
        assert_eq!(cluster.psql("SELECT 2").expect("query"), "2");
        let a = fresh_database(&cluster.url());
        let b = fresh_database(&cluster.url());
        assert_ne!(a, b);
        psql(&a, "CREATE TABLE t (x int)").expect("table in a");
        psql(&b, "CREATE TABLE t (x int)").expect("table in b: databases are distinct");
    }
}
