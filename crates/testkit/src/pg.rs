//! A real PostgreSQL server for tests: a throwaway cluster ([`Cluster`]) for tests that crash
//! or restart one, and the shared server ([`server`], [`server_or_skip`]) for tests that only
//! need one, each isolated in its own database ([`fresh_database`]).
//!
//! ```no_run
//! use testkit::pg;
//!
//! let Some(url) = pg::server_or_skip("my_crate::my_test") else { return Ok(()) };
//! let db = pg::fresh_database(&url);
//! assert_eq!(pg::psql(&db, "SELECT 1")?, "1");
//! # Ok::<(), String>(())
//! ```
//!
//! The programs are found on `PATH` (a symlinked `initdb` is followed to its real directory,
//! whose `psql` is used rather than Debian's wrapper script), else in the highest version's
//! `/usr/lib/postgresql/*/bin`. `initdb` and the server refuse to run as root, so as root they
//! run as the `postgres` system user (`runuser`), the cluster's directory given to it;
//! otherwise as the caller. `psql` always runs as the caller, over TCP.
//!
//! A cluster listens on a free loopback port only, trusts every connection (user `gapreg`),
//! keeps `fsync` and `synchronous_commit` on (tests crash it on purpose and count on what was
//! committed) and uses the C locale. It never outlives its test process: every cluster has a
//! watchdog, a small `sh` in its own process group reading a pipe only this process holds;
//! when the process ends by any means, even `SIGKILL`, the pipe closes and the watchdog stops
//! the server (`-m immediate`) and removes the directory. `Drop` does the same at once.
//!
//! Under `CI=true` a missing PostgreSQL fails the test instead of skipping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The variable naming the shared test server (a `postgres://` URL); set by `.ci/run`.
pub const URL_ENV: &str = "GAPREG_TEST_PG_URL";

/// Settings of every cluster started here (besides port, socket directory and address).
const SETTINGS: &[&str] = &[
    "fsync=on",
    "synchronous_commit=on",
    "max_connections=200",
    "shared_buffers=32MB",
];

/// A socket path longer than this (with its `.s.PGSQL.NNNNN`) does not fit `sun_path`.
const MAX_SOCKET_PATH: usize = 100;

/// The directory of the server's programs (`initdb`, `pg_ctl`, `postgres`): the real
/// directory of an `initdb` on `PATH`, else the highest version's `/usr/lib/postgresql/*/bin`;
/// `None` when PostgreSQL is not installed.
pub fn bin_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(find_bin_dir).clone()
}

fn find_bin_dir() -> Option<PathBuf> {
    let server_programs = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find_map(|dir| {
            let initdb = std::fs::canonicalize(dir.join("initdb")).ok()?;
            let real = initdb.parent()?.to_path_buf();
            server_programs(&real).then_some(real)
        })
    });
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                server_programs(&bin).then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

/// The `psql` program: the one beside the server's programs, else `psql` on `PATH`.
pub fn psql_program() -> PathBuf {
    bin_dir()
        .map(|dir| dir.join("psql"))
        .filter(|psql| psql.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

/// Runs `sql` (one or more statements) with `psql -X -At -v ON_ERROR_STOP=1` against `url`,
/// as the caller; its output without the final newline.
///
/// # Errors
///
/// psql's error output when it cannot run, cannot connect or a statement fails.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new(psql_program());
    cmd.args([
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-c",
        sql,
    ])
    .stdin(Stdio::null());
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        cmd.env("PGCONNECT_TIMEOUT", "10");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("psql ({}): {e}", psql_program().display()))?;
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
    } else {
        Err(format!(
            "psql {sql:?} on {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process runs with effective uid 0 (read from `/proc`, no libc needed).
fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
                Some(uids.split_whitespace().nth(1)? == "0")
            })
            .unwrap_or(false)
    })
}

/// The words that run a program as the server's user: none, or `runuser -u postgres --`.
fn as_server_user_prefix() -> Vec<String> {
    if !is_root() {
        return Vec::new();
    }
    let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("runuser");
    [runuser, "-u", "postgres", "--"].map(String::from).to_vec()
}

/// `program` as the server's user, in `dir` (which that user can enter).
fn server_command(program: &Path, dir: &Path) -> Command {
    let prefix = as_server_user_prefix();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(program);
            cmd
        }
        None => Command::new(program),
    };
    cmd.current_dir(dir).stdin(Stdio::null());
    cmd
}

/// Runs `cmd`; `Err` with its name and error output unless it exits 0.
fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        Err(format!("{what} failed ({}): {text}", out.status))
    }
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}_{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// `s` quoted for `sh` (pg_ctl hands its `-o` options to `/bin/sh`).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether `CI=true`.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `None` after a one-line reason on stderr, or a panic under `CI=true`.
fn skip<T>(test: &str) -> Option<T> {
    assert!(
        !under_ci(),
        "{test}: PostgreSQL is required under CI=true: set {URL_ENV} or install postgresql"
    );
    eprintln!("skipped: {test}: no PostgreSQL (set {URL_ENV} or install postgresql)");
    None
}

/// A throwaway cluster: its own directory, loopback port and database `gapreg`. Dropping it
/// stops the server (`-m immediate`) and removes the directory; a watchdog does the same if
/// the process dies first.
///
/// ```no_run
/// use testkit::pg::Cluster;
///
/// let Some(cluster) = Cluster::start_or_skip("my_crate::crash_test") else { return Ok(()) };
/// cluster.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")?;
/// cluster.stop_immediate()?; // a crash
/// cluster.start_again()?; // recovery
/// assert_eq!(cluster.psql("SELECT x FROM t")?, "1");
/// # Ok::<(), String>(())
/// ```
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    watchdog: Mutex<Option<Child>>,
}

impl Cluster {
    /// Creates and starts a cluster (`initdb`, `pg_ctl start -w`, `CREATE DATABASE gapreg`;
    /// about a second), in a new directory under [`std::env::temp_dir`]. A start that fails is
    /// tried again on another free port, up to four times.
    ///
    /// # Errors
    ///
    /// When PostgreSQL is not installed, or `initdb` or the server fails (with the end of the
    /// server's log).
    pub fn start() -> Result<Cluster, String> {
        let bin = bin_dir().ok_or(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin)",
        )?;
        let dir = std::env::temp_dir().join(format!("gapreg-pg-{}", unique()));
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // From here on the directory is the cluster's: dropping it cleans up.
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            watchdog: Mutex::new(None),
        };
        cluster.spawn_watchdog()?;
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(&cluster.dir);
            run(
                chown,
                "chown postgres (the server runs as `postgres` when we are root)",
            )?;
        }
        let mut initdb = server_command(&cluster.bin.join("initdb"), &cluster.dir);
        initdb
            .arg("-D")
            .arg(cluster.data_dir())
            .args(["-U", "gapreg", "-A", "trust", "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-instructions"]);
        run(initdb, "initdb")?;
        let mut failures = Vec::new();
        for _ in 0..4 {
            cluster.port = free_port()?;
            match cluster.start_again() {
                Ok(()) => {
                    cluster.psql_on("postgres", "CREATE DATABASE gapreg")?;
                    return Ok(cluster);
                }
                Err(e) => failures.push(e),
            }
        }
        Err(failures.join("\n"))
    }

    /// A started cluster, or `None` after a one-line reason on stderr when PostgreSQL is not
    /// installed (a panic under `CI=true`).
    ///
    /// # Panics
    ///
    /// When PostgreSQL is installed but the cluster does not start.
    pub fn start_or_skip(test: &str) -> Option<Cluster> {
        if bin_dir().is_none() {
            return skip(test);
        }
        Some(Cluster::start().unwrap_or_else(|e| panic!("{test}: {e}")))
    }

    /// Starts the server again on its port, waiting until it accepts connections (after a
    /// crash, once recovery is done).
    ///
    /// # Errors
    ///
    /// When it does not start, with the end of its log.
    pub fn start_again(&self) -> Result<(), String> {
        let socket_dir = self.dir.to_string_lossy();
        let socket_dir = if socket_dir.len() + 16 <= MAX_SOCKET_PATH {
            sh_quote(&socket_dir)
        } else {
            "''".to_owned() // No Unix socket then: TCP only.
        };
        let mut opts = format!(
            "-p {} -k {socket_dir} -c listen_addresses=127.0.0.1",
            self.port
        );
        for setting in SETTINGS {
            opts.push_str(" -c ");
            opts.push_str(setting);
        }
        let mut pg_ctl = server_command(&self.bin.join("pg_ctl"), &self.dir);
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-o", &opts, "start"]);
        run(pg_ctl, &format!("pg_ctl start (port {})", self.port))
            .map_err(|e| format!("{e}\nend of the server's log:\n{}", self.log_tail(15)))
    }

    /// Crashes the server: `pg_ctl stop -m immediate` (no checkpoint; the next start
    /// recovers from the WAL). Connections are cut.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails (for example the server is not running).
    pub fn stop_immediate(&self) -> Result<(), String> {
        self.pg_ctl_stop("immediate")
    }

    /// Stops the server cleanly: `pg_ctl stop -m fast` (sessions ended, then a checkpoint).
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails (for example the server is not running).
    pub fn stop_fast(&self) -> Result<(), String> {
        self.pg_ctl_stop("fast")
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        let mut pg_ctl = server_command(&self.bin.join("pg_ctl"), &self.dir);
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        run(pg_ctl, &format!("pg_ctl stop -m {mode}"))
    }

    /// The URL of its database `gapreg`: `postgres://gapreg@127.0.0.1:PORT/gapreg`.
    pub fn url(&self) -> String {
        self.url_of("gapreg")
    }

    fn url_of(&self, db: &str) -> String {
        format!("postgres://gapreg@127.0.0.1:{}/{db}", self.port)
    }

    /// Its loopback TCP port (the same after [`Cluster::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory (`PGDATA`), owned by the server's user.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Runs `sql` with [`psql`] on its database `gapreg` (for a test to inspect the server or
    /// cut sessions, as `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ...`).
    ///
    /// # Errors
    ///
    /// psql's error output (as when the server is stopped).
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        psql(&self.url(), sql)
    }

    fn psql_on(&self, db: &str, sql: &str) -> Result<String, String> {
        psql(&self.url_of(db), sql)
    }

    /// Starts the watchdog: once this process's end of its stdin closes, it stops the server
    /// and removes the directory.
    fn spawn_watchdog(&mut self) -> Result<(), String> {
        const SCRIPT: &str = r#"dir=$1; shift
read -r _ || :
"$@" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || :
rm -rf "$dir""#;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", SCRIPT, "gapreg-pg-watchdog"])
            .arg(&self.dir)
            .args(as_server_user_prefix())
            .arg(self.bin.join("pg_ctl"))
            // std opens the pipe close-on-exec, so no other child holds its write end.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: a Ctrl-C to the test's group leaves it to clean up.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| format!("sh (the watchdog): {e}"))?;
        *self.watchdog.get_mut().expect("watchdog lock") = Some(child);
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self
            .watchdog
            .get_mut()
            .map_or_else(|poisoned| poisoned.into_inner().take(), Option::take)
        {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.stop_immediate();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The URL of the shared test server: `GAPREG_TEST_PG_URL` when set, else one [`Cluster`]
/// started on first use for this whole test process (stopped by its watchdog when the process
/// ends); `None` when neither exists.
///
/// # Panics
///
/// Under `CI=true` when there is no server; when PostgreSQL is installed but the cluster does
/// not start.
pub fn server() -> Option<String> {
    if let Some(url) = std::env::var(URL_ENV).ok().filter(|url| !url.is_empty()) {
        return Some(url);
    }
    if bin_dir().is_none() {
        assert!(
            !under_ci(),
            "PostgreSQL is required under CI=true: set {URL_ENV} or install postgresql"
        );
        return None;
    }
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match SHARED.get_or_init(Cluster::start) {
        Ok(cluster) => Some(cluster.url()),
        Err(e) => panic!("PostgreSQL is installed but the test server did not start: {e}"),
    }
}

/// [`server`], or `None` after printing `skipped: <test>: no PostgreSQL (...)` on stderr.
///
/// # Panics
///
/// As [`server`].
pub fn server_or_skip(test: &str) -> Option<String> {
    server().or_else(|| skip(test))
}

/// Creates a new, empty database with a unique name (`t_...`) on the server at `url` and
/// returns its URL (`url` with the database replaced), so each test has its own.
///
/// # Panics
///
/// When `url` is not a `postgres://` URL or the database cannot be created.
pub fn fresh_database(url: &str) -> String {
    let name = format!("t_{}", unique());
    let fresh = with_database(url, &name)
        .unwrap_or_else(|| panic!("not a postgres:// or postgresql:// URL: {url}"));
    psql(url, &format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    fresh
}

/// `url` naming database `db` instead, its query kept.
fn with_database(url: &str, db: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let scheme = &url[..url.len() - rest.len()];
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query
        .split_once('/')
        .map_or(before_query, |(a, _)| a);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Some(format!("{scheme}{authority}/{db}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    /// What follows `marker` in the first line of a child's stdout that holds it (the test
    /// harness prints `test NAME ... ` before it on the same line).
    fn marked_line(child: &mut Child, marker: &str) -> Option<String> {
        let stdout = child.stdout.as_mut().expect("piped stdout");
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.split_once(marker).map(|(_, rest)| rest.to_owned()))
    }

    const CHILDREN: crate::Children = crate::Children::new("TESTKIT_PG_CHILD");

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_crashed_cluster_restarts_with_what_was_committed() {
        let Some(cluster) = Cluster::start_or_skip("pg::a_crashed_cluster_restarts") else {
            return;
        };
        assert_eq!(cluster.psql("SELECT 1").expect("query"), "1");
        assert_eq!(
            cluster.psql("SELECT current_database(), current_user, current_setting('fsync')"),
            Ok("gapreg|gapreg|on".to_owned())
        );
        cluster
            .psql("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
            .expect("committed row");
        let port = cluster.port();
        cluster.stop_immediate().expect("crash");
        let down = cluster.psql("SELECT 1");
        assert!(down.is_err(), "a crashed server answered: {down:?}");
        assert!(cluster.stop_immediate().is_err(), "stopped twice");
        cluster.start_again().expect("restart");
        assert_eq!(cluster.port(), port);
        assert_eq!(cluster.psql("SELECT x FROM t"), Ok("7".to_owned()));
        cluster.stop_fast().expect("clean stop");
        assert!(cluster.psql("SELECT 1").is_err());
        cluster.start_again().expect("second restart");
        assert_eq!(cluster.psql("SELECT count(*) FROM t"), Ok("1".to_owned()));
    }

    #[test]
    fn psql_can_cut_a_session() {
        let Some(cluster) = Cluster::start_or_skip("pg::psql_can_cut_a_session") else {
            return;
        };
        let mut session = Command::new(psql_program())
            .args(["-X", "-q", "-At", "-d", &cluster.url()])
            .args(["-c", "SELECT pg_sleep(60)"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn psql");
        let cut = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                   WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()";
        wait_for("the session's sleep", || {
            cluster.psql(cut).expect("terminate") == "1"
        });
        let start = Instant::now();
        let status = session.wait().expect("reap psql");
        assert!(!status.success(), "a cut session succeeded");
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn dropping_a_cluster_stops_it_and_removes_its_directory() {
        let Some(cluster) = Cluster::start_or_skip("pg::dropping_a_cluster") else {
            return;
        };
        let (dir, url) = (cluster.dir.clone(), cluster.url());
        assert!(cluster.data_dir().join("PG_VERSION").is_file());
        assert!(dir.starts_with(std::env::temp_dir()));
        drop(cluster);
        assert!(!dir.exists(), "{} is left", dir.display());
        assert!(psql(&url, "SELECT 1").is_err(), "the server still answers");
    }

    /// Started by `a_killed_process_leaves_no_server_behind`: starts a cluster, prints its
    /// directory and URL, and waits to be killed.
    #[test]
    #[ignore = "a child of a_killed_process_leaves_no_server_behind"]
    fn child_holding_a_cluster() {
        let Some(_) = CHILDREN.param() else { return };
        let cluster = Cluster::start().expect("start in the child");
        println!("cluster\t{}\t{}", cluster.dir.display(), cluster.url());
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn a_killed_process_leaves_no_server_behind() {
        if bin_dir().is_none() {
            let _: Option<()> = skip("pg::a_killed_process_leaves_no_server_behind");
            return;
        }
        /// Kills and reaps the child however the test ends.
        struct Killed(Child);
        impl Drop for Killed {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Killed(CHILDREN.spawn("pg::tests::child_holding_a_cluster", "1"));
        let line = marked_line(&mut child.0, "cluster\t").expect("the child's cluster");
        let (dir, url) = line.split_once('\t').expect("dir\\turl from the child");
        assert_eq!(psql(url, "SELECT 1"), Ok("1".to_owned()));
        drop(child); // SIGKILL: no destructor runs in the child.
        wait_for("the watchdog's cleanup", || !Path::new(dir).exists());
        assert!(
            psql(url, "SELECT 1").is_err(),
            "the server outlived its process"
        );
    }

    #[test]
    fn fresh_databases_are_distinct() {
        let Some(url) = server_or_skip("pg::fresh_databases_are_distinct") else {
            return;
        };
        assert_eq!(server().as_deref(), Some(url.as_str()), "one shared server");
        let a = fresh_database(&url);
        let b = fresh_database(&url);
        assert_ne!(a, b);
        let name = |u: &str| u.rsplit('/').next().expect("a database").to_owned();
        assert_eq!(psql(&a, "SELECT current_database()"), Ok(name(&a)));
        assert_eq!(psql(&b, "SELECT current_database()"), Ok(name(&b)));
        psql(&a, "CREATE TABLE only_in_a (x int)").expect("table in a");
        assert_eq!(
            psql(
                &b,
                "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"
            ),
            Ok("0".to_owned())
        );
        psql(&b, "CREATE TABLE only_in_a (x int)").expect("the same name in b");
    }

    #[test]
    fn a_url_names_another_database() {
        let cases = [
            (
                "postgres://gapreg@127.0.0.1:5432/gapreg",
                "postgres://gapreg@127.0.0.1:5432/t_1",
            ),
            (
                "postgres://u:p@h:1/db?sslmode=disable",
                "postgres://u:p@h:1/t_1?sslmode=disable",
            ),
            ("postgresql://h", "postgresql://h/t_1"),
            ("postgres://h/", "postgres://h/t_1"),
            (
                "postgres://h?connect_timeout=5",
                "postgres://h/t_1?connect_timeout=5",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(with_database(url, "t_1").as_deref(), Some(want), "{url}");
        }
        assert_eq!(with_database("host=h dbname=x", "t_1"), None);
    }
}
