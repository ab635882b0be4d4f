//! `coordination: postgres` end to end: real git repositories and real `git clone`s as
//! machines (each its own host name when `unshare -u` works here), real `gapreg` processes
//! racing from every clone, a real PostgreSQL server (the shared test server, a fresh database
//! per test) and, for the faults, a throwaway cluster of the test's own that is crashed and
//! restarted under the processes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use testkit::pg;

use crate::util::bin;

/// The variable holding the server's address.
const URL_ENV: &str = "GAPREG_COORDINATION_URL";

/// A process still running after this long is killed and the test fails: nothing may hang.
const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Machines: clones, each with its own host name, environment and home.

/// Whether `unshare -u` gives a child its own host name here (root, or user namespaces).
fn own_host_names() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        let works = Command::new("unshare")
            .args(["-u", "sh", "-c"])
            .arg(
                "echo gapreg-probe > /proc/sys/kernel/hostname && \
                 test \"$(cat /proc/sys/kernel/hostname)\" = gapreg-probe",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            eprintln!(
                "note: `unshare -u` does not work here: the clones share this host's name \
                 (they are still distinct clones with distinct agents)"
            );
        }
        works
    })
}

/// One machine: a clone (work tree `dir`), its host name, its home, and the address its
/// processes get in the environment (if any).
#[derive(Debug, Clone)]
struct Machine {
    host: String,
    dir: PathBuf,
    home: PathBuf,
    env_url: Option<String>,
}

/// How one process ended.
#[derive(Debug)]
struct Ran {
    /// `None` when killed by a signal or for running past [`DEADLINE`].
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
    /// When it ended.
    ended: Instant,
}

impl Ran {
    /// Asserts exit 0; its stdout.
    #[track_caller]
    fn ok(&self) -> String {
        assert_eq!(self.code, Some(0), "{self:?}");
        self.stdout.clone()
    }

    /// Asserts exit `code` with an `error: ` line naming every needle, and no panic.
    #[track_caller]
    fn fails(&self, code: i32, needles: &[&str]) {
        assert_eq!(self.code, Some(code), "{self:?}");
        assert!(self.stderr.starts_with("error: "), "{self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        for needle in needles {
            assert!(self.stderr.contains(needle), "{needle:?} not in {self:?}");
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

impl Machine {
    fn new(base: &Path, host: &str, env_url: Option<&str>) -> Machine {
        let home = base.join(format!("home-{host}"));
        std::fs::create_dir_all(&home).expect("home");
        Machine {
            host: host.to_owned(),
            dir: base.join(host),
            home,
            env_url: env_url.map(str::to_owned),
        }
    }

    /// `gapreg ARGS` on this machine with its own environment.
    fn gapreg(&self, args: &[&str]) -> Ran {
        self.gapreg_with(self.env_url.as_deref(), args)
    }

    /// `gapreg ARGS` on this machine with `url` (or nothing) in `GAPREG_COORDINATION_URL`.
    fn gapreg_with(&self, url: Option<&str>, args: &[&str]) -> Ran {
        let mut cmd = if own_host_names() {
            let mut cmd = Command::new("unshare");
            cmd.args(["-u", "sh", "-c"])
                .arg(r#"echo "$1" > /proc/sys/kernel/hostname && shift && exec "$@""#)
                .args(["sh", &self.host, bin()]);
            cmd
        } else {
            Command::new(bin())
        };
        cmd.args(args).current_dir(&self.dir);
        self.environment(&mut cmd, url);
        timed(cmd)
    }

    /// A clean environment: no address but `url`, no password, own home, this host's name.
    fn environment(&self, cmd: &mut Command, url: Option<&str>) {
        for var in [
            URL_ENV,
            "GAPREG_DIR",
            "GAPREG_HOLDER",
            "PGPASSWORD",
            "PGPASSFILE",
            "PGUSER",
            "PGSERVICE",
            "XDG_CONFIG_HOME",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", &self.home)
            .env("HOSTNAME", &self.host)
            .env("NO_COLOR", "1");
        if let Some(url) = url {
            cmd.env(URL_ENV, url);
        }
    }

    /// `git ARGS` in this clone (its environment, a fixed identity), asserting success.
    fn git(&self, args: &[&str]) {
        let mut cmd = Command::new("git");
        cmd.args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(["-c", "init.defaultBranch=main", "-c", "pull.rebase=false"])
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        self.environment(&mut cmd, self.env_url.as_deref());
        let ran = timed(cmd);
        assert_eq!(ran.code, Some(0), "git {args:?} on {}: {ran:?}", self.host);
    }

    /// The number of gap documents in this clone.
    fn gap_files(&self) -> usize {
        std::fs::read_dir(self.dir.join(".gapreg/gaps"))
            .expect("gaps dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            })
            .count()
    }

    /// The gaps of `--json list`.
    fn listed(&self) -> Vec<serde_json::Value> {
        self.gapreg(&["--json", "list"])
            .json()
            .as_array()
            .expect("a list")
            .clone()
    }
}

/// Runs `cmd` with stdout and stderr in temp files (no pipe can fill), killing it past
/// [`DEADLINE`].
fn timed(mut cmd: Command) -> Ran {
    use std::io::{Read, Seek};
    let out = tempfile::tempfile().expect("stdout file");
    let err = tempfile::tempfile().expect("stderr file");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(err.try_clone().expect("clone"));
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            // Our own child, by its pid.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(3));
    };
    let took = start.elapsed();
    let read = |mut f: std::fs::File| {
        let mut bytes = Vec::new();
        f.rewind().expect("rewind");
        f.read_to_end(&mut bytes).expect("read");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ran {
        code: status.and_then(|s| s.code()),
        stdout: read(out),
        stderr: read(err),
        took,
        ended: Instant::now(),
    }
}

/// Machine `machine-a`: a git repository with `gapreg init --coordination postgres` (its
/// address in the environment) and `seeds` gaps, committed; then `clones` more machines
/// (`machine-b`, …), each a `git clone` of it given the server with `gapreg coordination set`
/// (nothing in their environment).
fn machines(url: &str, clones: usize, seeds: usize) -> (tempfile::TempDir, Vec<Machine>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Machine::new(tmp.path(), "machine-a", Some(url));
    std::fs::create_dir(&a.dir).expect("mkdir");
    a.git(&["init", "-q"]);
    a.gapreg(&["init", "--coordination", "postgres"]).ok();
    for i in 0..seeds {
        a.gapreg(&["file", "--title", &format!("seed {i}")]).ok();
    }
    a.git(&["add", "-A"]);
    a.git(&["commit", "-q", "-m", "registry"]);
    let mut all = vec![a];
    for n in 0..clones {
        let host = format!(
            "machine-{}",
            char::from(b'b' + u8::try_from(n).expect("few"))
        );
        let m = Machine::new(tmp.path(), &host, None);
        let ran = timed({
            let mut c = Command::new("git");
            c.args(["clone", "-q", "machine-a", &host])
                .current_dir(tmp.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null");
            c
        });
        assert_eq!(ran.code, Some(0), "git clone: {ran:?}");
        m.gapreg(&["coordination", "set", url]).ok();
        all.push(m);
    }
    (tmp, all)
}

/// The numbers of the ids `PREFIX-N` printed one a line (any other line fails the test).
#[track_caller]
fn numbers(out: &str, prefix: &str) -> Vec<u64> {
    out.lines()
        .map(|line| {
            line.strip_prefix(prefix)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a {prefix}N line: {line:?} in {out:?}"))
        })
        .collect()
}

/// The shared server with a fresh database for this test, or `None` (skipped).
fn database(test: &str) -> Option<String> {
    pg::server_or_skip(test).map(|url| pg::fresh_database(&url))
}

/// A throwaway cluster of this test's own and a fresh database on it, or `None` (skipped).
fn own_cluster(test: &str) -> Option<(pg::Cluster, String)> {
    let cluster = pg::Cluster::start_or_skip(test)?;
    let url = pg::fresh_database(&cluster.url());
    Some((cluster, url))
}

/// Every file below `root` whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// A loopback port nobody listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `user@host:port` of a `postgres://user@host:port/db` URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    rest.split('/').next().expect("authority").to_owned()
}

// ---------------------------------------------------------------------------------------------
// 1. Three machines racing.

/// Three clones (three host names) reserve, file, claim and lease at once on one server: every
/// id is handed out once across the machines, each batch contiguous; each gap has exactly one
/// winner; of overlapping exclusive lease requests exactly one is granted at a time, with
/// increasing fencing tokens.
#[test]
fn three_machines_share_ids_claims_and_leases() {
    let Some(url) = database("postgres::three_machines_share_ids_claims_and_leases") else {
        return;
    };
    let (_tmp, ms) = machines(&url, 2, 3);

    // Ids and gap ids, from two processes at a time on every machine.
    const PER_MACHINE: usize = 2;
    const ROUNDS: usize = 5;
    let barrier = Barrier::new(ms.len() * PER_MACHINE);
    let work: Vec<(Vec<Vec<u64>>, Vec<u64>)> = thread::scope(|s| {
        let handles: Vec<_> = ms
            .iter()
            .flat_map(|m| (0..PER_MACHINE).map(move |t| (m, t)))
            .map(|(m, t)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let mut batches = Vec::new();
                    let mut filed = Vec::new();
                    for k in 0..ROUNDS {
                        let out = m.gapreg(&["ids", "reserve", "SEC", "3"]).ok();
                        batches.push(numbers(&out, "SEC-"));
                        let title = format!("{} t{t} k{k}", m.host);
                        let out = m.gapreg(&["file", "--title", &title]).ok();
                        filed.extend(numbers(&out, "GAP-OP-"));
                    }
                    (batches, filed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let batches: Vec<&Vec<u64>> = work.iter().flat_map(|(b, _)| b).collect();
    for batch in &batches {
        assert_eq!(batch.len(), 3, "{batch:?}");
        assert!(
            batch.windows(2).all(|w| w[1] == w[0] + 1),
            "a batch is not contiguous: {batch:?}"
        );
    }
    let reserved: Vec<u64> = batches.iter().flat_map(|b| b.iter().copied()).collect();
    let total = ms.len() * PER_MACHINE * ROUNDS * 3;
    let distinct: BTreeSet<u64> = reserved.iter().copied().collect();
    assert_eq!(distinct.len(), reserved.len(), "an id handed out twice");
    assert_eq!(
        distinct,
        (1..=u64::try_from(total).expect("small")).collect(),
        "ids skipped without a fault"
    );
    let filed: Vec<u64> = work.iter().flat_map(|(_, f)| f.iter().copied()).collect();
    let filed_set: BTreeSet<u64> = filed.iter().copied().collect();
    assert_eq!(
        filed_set.len(),
        filed.len(),
        "a gap id filed twice: {filed:?}"
    );
    let gaps = 3 + ms.len() * PER_MACHINE * ROUNDS;
    assert_eq!(
        filed_set,
        (4..=u64::try_from(gaps).expect("small")).collect(),
        "gap ids: the committed seeds' reissued, or skipped"
    );

    // Every clone gets every gap: commit everywhere, merge into a, pull back.
    for m in &ms {
        m.git(&["add", "-A"]);
        m.git(&["commit", "-q", "-m", &format!("gaps of {}", m.host)]);
    }
    let a = &ms[0];
    for m in &ms[1..] {
        let dir = m.dir.to_str().expect("utf-8");
        a.git(&["pull", "-q", "--no-edit", dir, "main"]);
    }
    for m in &ms[1..] {
        m.git(&["pull", "-q", "--no-edit", "origin", "main"]);
    }
    let all_ids: BTreeSet<String> = (1..=gaps).map(|n| format!("GAP-OP-{n}")).collect();
    for m in &ms {
        let ids: BTreeSet<String> = m
            .listed()
            .iter()
            .map(|g| g["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids, all_ids, "{}", m.host);
    }

    // One gap, every agent of every machine: exactly one winner, the others refused (5).
    const AGENTS: usize = 3;
    let agents: Vec<(&Machine, String)> = ms
        .iter()
        .flat_map(|m| (0..AGENTS).map(move |j| (m, format!("{}-agent{j}", m.host))))
        .collect();
    let barrier = Barrier::new(agents.len());
    let contested: Vec<(String, Ran)> = thread::scope(|s| {
        let handles: Vec<_> = agents
            .iter()
            .map(|(m, agent)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let ran = m.gapreg(&["claim", "GAP-OP-1", "--agent", agent]);
                    (agent.clone(), ran)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("claimer"))
            .collect()
    });
    let winners: Vec<&String> = contested
        .iter()
        .filter(|(_, r)| r.code == Some(0))
        .map(|(a, _)| a)
        .collect();
    assert_eq!(winners.len(), 1, "{contested:#?}");
    for (_, ran) in contested.iter().filter(|(_, r)| r.code != Some(0)) {
        ran.fails(5, &["GAP-OP-1"]);
    }
    let mut winner_of: BTreeMap<String, String> = BTreeMap::new();
    winner_of.insert("GAP-OP-1".into(), winners[0].clone());

    // The rest by `claim --next` from every agent at once until nothing is ready: each gap
    // goes to exactly one agent; a loser gets another gap or exit 4.
    let barrier = Barrier::new(agents.len());
    let taken: Vec<(String, Vec<String>)> = thread::scope(|s| {
        let handles: Vec<_> = agents
            .iter()
            .map(|(m, agent)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let mut got = Vec::new();
                    for _ in 0..=gaps {
                        let ran = m.gapreg(&["claim", "--next", "--agent", agent]);
                        match ran.code {
                            Some(0) => got.push(ran.stdout.trim().to_owned()),
                            Some(4) => {
                                ran.fails(4, &["nothing is ready"]);
                                return (agent.clone(), got);
                            }
                            _ => panic!("claim --next by {agent}: {ran:?}"),
                        }
                    }
                    panic!("{agent} claimed more gaps than there are: {got:?}")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("claimer"))
            .collect()
    });
    for (agent, ids) in &taken {
        for id in ids {
            if let Some(first) = winner_of.insert(id.clone(), agent.clone()) {
                panic!("{id} claimed by {first} and by {agent}: {taken:#?}");
            }
        }
    }
    assert_eq!(
        winner_of.keys().cloned().collect::<BTreeSet<_>>(),
        all_ids,
        "gaps never claimed: {taken:#?}"
    );
    // Every clone sees every claim (on the server), whichever clone made it.
    for m in &ms {
        let ready = m.gapreg(&["--json", "ready"]).json();
        assert_eq!(ready, serde_json::json!([]), "{}", m.host);
        for g in m.listed() {
            let id = g["id"].as_str().expect("id");
            assert_eq!(
                g["claimed_by"].as_str(),
                Some(winner_of[id].as_str()),
                "{id} seen from {}",
                m.host
            );
        }
    }
    // Each claim on the server names the machine its agent ran on (which machines win is
    // the race's business: a clone walking the same ready list behind a faster one may lose
    // every one, and then exits 4 correctly).
    let rows = pg::psql(
        &url,
        "SELECT record::json->>'holder', record::json->'facts'->>'host' FROM gapreg.leases \
         WHERE ns LIKE '%/claims' ORDER BY 1",
    )
    .expect("claims on the server");
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), gaps, "{rows:?}");
    if own_host_names() {
        for row in &rows {
            let (holder, host) = row.split_once('|').expect("holder|host");
            assert!(holder.starts_with(&format!("{host}-agent")), "{row}");
        }
    }

    // Leases: each round every machine asks for src/x.rs and for src/ at once (all
    // overlapping, exclusive), and one for docs/y.md (overlapping none of them): exactly one
    // of the overlapping is granted, the others refused (5); then another machine releases
    // the winner's lease by its holder.
    let mut last_token = 0;
    for round in 0..5 {
        let mut requests: Vec<(&Machine, String, Vec<&str>)> = Vec::new();
        for m in &ms {
            requests.push((
                m,
                format!("{}-r{round}-file", m.host),
                vec!["--file", "src/x.rs"],
            ));
            requests.push((m, format!("{}-r{round}-dir", m.host), vec!["--dir", "src"]));
        }
        let lone = (
            &ms[round % ms.len()],
            format!("docs-r{round}"),
            vec!["--file", "docs/y.md"],
        );
        requests.push(lone);
        let barrier = Barrier::new(requests.len());
        let results: Vec<(String, Ran)> = thread::scope(|s| {
            let handles: Vec<_> = requests
                .iter()
                .map(|(m, holder, what)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        let mut args = vec!["--json", "lease", "acquire", "--holder", holder];
                        args.extend(what.iter().copied());
                        args.extend(["--ttl", "30s"]);
                        barrier.wait();
                        (holder.clone(), m.gapreg(&args))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("leaser"))
                .collect()
        });
        let (lone, overlapping): (Vec<_>, Vec<_>) =
            results.iter().partition(|(h, _)| h.starts_with("docs-"));
        let granted: Vec<&(String, Ran)> = overlapping
            .iter()
            .copied()
            .filter(|(_, r)| r.code == Some(0))
            .collect();
        assert_eq!(granted.len(), 1, "round {round}: {overlapping:#?}");
        for (_, ran) in overlapping.iter().filter(|(_, r)| r.code != Some(0)) {
            ran.fails(5, &["lease refused", &granted[0].0]);
        }
        let mut tokens = Vec::new();
        for (holder, ran) in granted.iter().copied().chain(lone.iter().copied()) {
            let lease = ran.json();
            let token = lease["token"].as_u64().expect("a token");
            assert!(
                token > last_token,
                "round {round}: token {token} after {last_token}"
            );
            tokens.push(token);
            let id = lease["id"].as_str().expect("an id");
            // Released from another machine than the one that took it.
            let other = ms
                .iter()
                .find(|m| !holder.starts_with(&m.host))
                .expect("another machine");
            other
                .gapreg(&["lease", "release", id, "--holder", holder])
                .ok();
        }
        assert_ne!(tokens[0], tokens[1], "round {round}: one token twice");
        last_token = tokens.into_iter().max().expect("tokens");
    }
    for m in &ms {
        let listed = m.gapreg(&["--json", "lease", "list"]).json();
        assert_eq!(listed["leases"], serde_json::json!([]), "{}", m.host);
        let doctor = m.gapreg(&["doctor"]);
        assert_eq!(doctor.code, Some(0), "{}: {doctor:?}", m.host);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A clone without an address.

/// A clone with neither `GAPREG_COORDINATION_URL` nor a setting refuses every coordinated
/// command with an error that says how to give the address, and never falls back to counters,
/// claims or leases of its own.
#[test]
fn a_clone_without_an_address_refuses_and_keeps_nothing_locally() {
    let Some(url) = database("postgres::a_clone_without_an_address") else {
        return;
    };
    let (tmp, ms) = machines(&url, 0, 2);
    let b = Machine::new(tmp.path(), "machine-b", None);
    let ran = timed({
        let mut c = Command::new("git");
        c.args(["clone", "-q", "machine-a", "machine-b"])
            .current_dir(tmp.path());
        c
    });
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let gaps_before = b.gap_files();
    for args in [
        &["ids", "reserve", "SEC"][..],
        &["ids", "reserve", "SEC", "3"],
        &["ids", "peek", "SEC"],
        &["next-id", "OP"],
        &["file", "--title", "no server"],
        &["claim", "--next", "--agent", "B"],
        &["claim", "GAP-OP-1", "--agent", "B"],
        &[
            "lease", "acquire", "--holder", "B", "--file", "src/x.rs", "--ttl", "30s",
        ],
        &["lease", "list"],
    ] {
        let ran = b.gapreg(args);
        ran.fails(
            3,
            &[
                "GAPREG_COORDINATION_URL",
                "gapreg coordination set",
                "postgres",
            ],
        );
        assert!(ran.stdout.is_empty(), "{args:?}: {ran:?}");
    }
    // No local fallback: no counters, claims or leases made in the clone, no gap written.
    for local in [
        ".git/gapreg/ids",
        ".gapreg/ids",
        ".git/gapreg/claims",
        ".git/gapreg/leases",
    ] {
        assert!(!b.dir.join(local).exists(), "{local} was created");
    }
    assert_eq!(
        b.gap_files(),
        gaps_before,
        "a gap was filed without a server"
    );
    // Given the address, the same clone works, on the shared counters.
    assert_eq!(ms[0].gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-1\n");
    assert_eq!(
        b.gapreg_with(Some(&url), &["ids", "reserve", "SEC"]).ok(),
        "SEC-2\n"
    );
    assert!(!b.dir.join(".git/gapreg/ids").exists());
}

/// `gapreg init --coordination postgres` with no address, or with a server that cannot be
/// reached, either makes the registry (exit 0, so `gapreg coordination set` or a retry of the
/// failing command can follow) or refuses and leaves nothing behind: never an error exit with
/// a registry created behind it (running `init` again then fails with "already exists", and
/// `git setup` was skipped).
#[test]
fn init_without_a_reachable_server_is_all_or_nothing() {
    let Some(url) = database("postgres::init_without_a_reachable_server") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let down = format!("postgres://gapreg@127.0.0.1:{}/db", free_port());
    let mut broken = Vec::new();
    for (name, env, code, needle) in [
        ("no-address", None, 3, "GAPREG_COORDINATION_URL"),
        ("unreachable", Some(down.as_str()), 75, "cannot be reached"),
    ] {
        let a = Machine::new(tmp.path(), name, None);
        std::fs::create_dir(&a.dir).expect("mkdir");
        a.git(&["init", "-q"]);
        let ran = a.gapreg_with(env, &["--wait", "1s", "init", "--coordination", "postgres"]);
        assert!(!ran.stderr.contains("panicked"), "{ran:?}");
        if ran.code == Some(0) {
            a.gapreg(&["coordination", "set", &url]).ok();
            assert_eq!(a.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-1\n");
            continue;
        }
        ran.fails(code, &[needle]);
        if a.dir.join(".gapreg").exists() {
            let again = a.gapreg_with(Some(&url), &["init", "--coordination", "postgres"]);
            broken.push(format!(
                "{name}: init exited {:?} ({}) but left {:?} behind; init again with the \
                 address: exit {:?} ({})",
                ran.code,
                ran.stderr.trim(),
                std::fs::read_dir(a.dir.join(".gapreg"))
                    .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
                again.code,
                again.stderr.trim()
            ));
        } else {
            // Nothing half-made: it can simply be run again with the address.
            a.gapreg_with(Some(&url), &["init", "--coordination", "postgres"])
                .ok();
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

// ---------------------------------------------------------------------------------------------
// 3. Addresses and passwords.

/// A password in `gapreg coordination set` is refused and written nowhere; a good address is
/// kept per clone (untracked) and used without the environment; `coordination show` and
/// every error never print a password, even one in `GAPREG_COORDINATION_URL`.
#[test]
fn passwords_are_refused_in_settings_and_never_shown() {
    let Some(url) = database("postgres::passwords_are_refused") else {
        return;
    };
    let (tmp, ms) = machines(&url, 0, 1);
    let b = Machine::new(tmp.path(), "machine-b", None);
    let ran = timed({
        let mut c = Command::new("git");
        c.args(["clone", "-q", "machine-a", "machine-b"])
            .current_dir(tmp.path());
        c
    });
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let auth = authority(&url);
    let (user, hostport) = auth.split_once('@').expect("user@host");
    let db = url.rsplit('/').next().expect("db");
    const SECRET: &str = "S3cretPw-zq81";
    for bad in [
        format!("postgres://{user}:{SECRET}@{hostport}/{db}"),
        format!("postgres://{user}@{hostport}/{db}?password={SECRET}"),
        format!("postgres://{user}:{SECRET}@db.example/{db}"),
    ] {
        for json in [false, true] {
            let mut args = vec!["coordination", "set", bad.as_str()];
            if json {
                args.insert(0, "--json");
            }
            let ran = b.gapreg(&args);
            ran.fails(3, &["password", "PGPASSWORD"]);
            assert!(
                !ran.stdout.contains(SECRET) && !ran.stderr.contains(SECRET),
                "the password was printed: {ran:?}"
            );
        }
    }
    for dir in [".git", ".gapreg"] {
        let found = files_containing(&b.dir.join(dir), SECRET);
        assert!(found.is_empty(), "the password was written to {found:?}");
    }
    assert!(!b.dir.join(".git/gapreg/coordination.url").exists());
    b.gapreg(&["ids", "reserve", "SEC"])
        .fails(3, &["GAPREG_COORDINATION_URL"]);

    // A good address: kept in the clone's git directory, untracked, used without the
    // environment, on the same counters as machine a.
    let set = b.gapreg(&["coordination", "set", &url]).ok();
    assert!(set.contains(&auth), "{set}");
    let status = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(&b.dir)
        .output()
        .expect("git status");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "",
        "the setting is tracked"
    );
    assert_eq!(ms[0].gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-1\n");
    assert_eq!(b.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-2\n");
    let show = b.gapreg(&["coordination", "show"]).ok();
    assert!(show.contains("coordination: postgres"), "{show}");
    assert!(show.contains(&auth), "{show}");
    assert!(show.contains("this clone's setting"), "{show}");
    // A refused address leaves the setting as it was.
    let refused = format!("postgres://{user}:{SECRET}@{hostport}/{db}");
    b.gapreg(&["coordination", "set", &refused])
        .fails(3, &["password"]);
    assert_eq!(b.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-3\n");
    assert!(files_containing(&b.dir, SECRET).is_empty());

    // A password in the environment is used (the environment wins) but never printed.
    const ENV_PW: &str = "EnvPw-77qx";
    let with_pw = format!("postgres://{user}:{ENV_PW}@{hostport}/{db}");
    for args in [
        &["coordination", "show"][..],
        &["--json", "coordination", "show"],
    ] {
        let ran = b.gapreg_with(Some(&with_pw), args);
        let out = ran.ok();
        assert!(
            !out.contains(ENV_PW) && !ran.stderr.contains(ENV_PW),
            "{ran:?}"
        );
        assert!(out.contains(&auth), "{out}");
        assert!(
            out.contains("GAPREG_COORDINATION_URL") || out.contains("environment"),
            "{out}"
        );
    }
    assert_eq!(
        b.gapreg_with(Some(&with_pw), &["ids", "reserve", "SEC"])
            .ok(),
        "SEC-4\n"
    );
    // Nor in errors: a server that is not there, a database that is not there.
    let port = free_port();
    let host = hostport.split(':').next().expect("host");
    for (env, code) in [
        (
            format!("postgres://{user}:{ENV_PW}@127.0.0.1:{port}/{db}"),
            75,
        ),
        (
            format!("postgres://{user}:{ENV_PW}@{hostport}/no_such_db_{port}"),
            3,
        ),
        (
            format!("postgres://{user}:{ENV_PW}@{host}:{port}/{db}?sslmode=require"),
            // Refused as an address without TLS; with it, the port nobody listens on.
            if cfg!(feature = "tls") { 75 } else { 3 },
        ),
    ] {
        let ran = b.gapreg_with(Some(&env), &["--wait", "1s", "ids", "reserve", "SEC"]);
        ran.fails(code, &[]);
        assert!(!ran.stderr.contains(ENV_PW), "{ran:?}");
        let ran = b.gapreg_with(Some(&env), &["--json", "coordination", "show"]);
        assert!(
            !ran.stdout.contains(ENV_PW) && !ran.stderr.contains(ENV_PW),
            "{ran:?}"
        );
    }
    for dir in [".git", ".gapreg"] {
        assert!(files_containing(&b.dir.join(dir), ENV_PW).is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Switching backends.

/// `coordination switch postgres` on a files registry carries every counter (gap ids and
/// reserved ids) to the server, never lowering one, and records the choice with a namespace;
/// switching back to files carries the server's counters back; without an address the switch
/// is refused and nothing changes.
#[test]
fn switching_backends_carries_every_counter_both_ways() {
    let Some(url) = database("postgres::switching_backends") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut a = Machine::new(tmp.path(), "machine-a", None);
    std::fs::create_dir(&a.dir).expect("mkdir");
    a.git(&["init", "-q"]);
    a.gapreg(&["init"]).ok();
    for i in 1..=5 {
        assert_eq!(
            a.gapreg(&["file", "--title", &format!("g{i}")]).ok(),
            format!("GAP-OP-{i}\n")
        );
    }
    let out = a.gapreg(&["ids", "reserve", "SEC", "7"]).ok();
    assert_eq!(numbers(&out, "SEC-"), (1..=7).collect::<Vec<_>>());
    let config = || std::fs::read_to_string(a.dir.join(".gapreg/config.yaml")).expect("config");

    // No address: refused, nothing changed.
    let before = config();
    a.gapreg(&["coordination", "switch", "postgres"])
        .fails(3, &["GAPREG_COORDINATION_URL"]);
    assert_eq!(config(), before);
    assert_eq!(a.gapreg(&["ids", "peek", "SEC"]).ok(), "SEC-8\n");

    a.env_url = Some(url.clone());
    a.gapreg(&["coordination", "switch", "postgres"]).ok();
    let switched = config();
    assert!(switched.contains("coordination: postgres"), "{switched}");
    let ns = switched
        .lines()
        .find_map(|l| l.strip_prefix("namespace: "))
        .unwrap_or_else(|| panic!("no namespace: {switched}"))
        .trim()
        .to_owned();
    assert!(!ns.is_empty());
    let show = a.gapreg(&["coordination", "show"]).ok();
    assert!(show.contains(&ns), "{show}");
    assert_eq!(a.gapreg(&["next-id", "OP"]).ok(), "GAP-OP-6\n");
    assert_eq!(a.gapreg(&["ids", "peek", "SEC"]).ok(), "SEC-8\n");
    assert_eq!(a.gapreg(&["file", "--title", "g6"]).ok(), "GAP-OP-6\n");
    assert_eq!(a.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-8\n");
    // On the server: a clone of the switched repository continues the same counters.
    a.git(&["add", "-A"]);
    a.git(&["commit", "-q", "-m", "coordination: postgres"]);
    let b = Machine::new(tmp.path(), "machine-b", None);
    let ran = timed({
        let mut c = Command::new("git");
        c.args(["clone", "-q", "machine-a", "machine-b"])
            .current_dir(tmp.path());
        c
    });
    assert_eq!(ran.code, Some(0), "{ran:?}");
    b.gapreg(&["coordination", "set", &url]).ok();
    assert_eq!(b.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-9\n");
    assert_eq!(b.gapreg(&["file", "--title", "g7"]).ok(), "GAP-OP-7\n");

    // Back to files: the server's counters (raised by b too) come back.
    a.gapreg(&["coordination", "switch", "files"]).ok();
    let back = config();
    assert!(!back.contains("coordination: postgres"), "{back}");
    assert!(back.contains(&format!("namespace: {ns}")), "{back}");
    let show = a.gapreg(&["coordination", "show"]).ok();
    assert!(show.starts_with("coordination: files\n"), "{show}");
    assert_eq!(a.gapreg(&["ids", "peek", "SEC"]).ok(), "SEC-10\n");
    assert_eq!(a.gapreg(&["next-id", "OP"]).ok(), "GAP-OP-8\n");
    let out = a.gapreg(&["ids", "reserve", "SEC", "5"]).ok();
    assert_eq!(numbers(&out, "SEC-"), (10..=14).collect::<Vec<_>>());
    assert_eq!(a.gapreg(&["file", "--title", "g8"]).ok(), "GAP-OP-8\n");

    // And to the server again (its namespace kept): its counters are raised, never lowered.
    a.gapreg(&["coordination", "switch", "postgres"]).ok();
    let again = config();
    assert!(again.contains(&format!("namespace: {ns}")), "{again}");
    assert_eq!(a.gapreg(&["ids", "peek", "SEC"]).ok(), "SEC-15\n");
    assert_eq!(a.gapreg(&["next-id", "OP"]).ok(), "GAP-OP-9\n");
    let doctor = a.gapreg(&["doctor"]);
    assert_eq!(doctor.code, Some(0), "{doctor:?}");
}

// ---------------------------------------------------------------------------------------------
// 5. Faults.

/// While the server is down every call fails within its `--wait` with exit 75 and a message
/// naming the server and what to do, none hangs and none writes anything; once it is back the
/// next reservation is above every id acknowledged before the crash.
#[test]
fn a_stopped_server_is_busy_within_the_wait_and_loses_nothing() {
    let Some((cluster, url)) = own_cluster("postgres::a_stopped_server_is_busy") else {
        return;
    };
    let (_tmp, ms) = machines(&url, 0, 2);
    let a = &ms[0];
    let mut acknowledged = numbers(&a.gapreg(&["ids", "reserve", "SEC", "5"]).ok(), "SEC-");
    acknowledged.extend(numbers(&a.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-"));
    let gaps = a.gap_files();
    cluster.stop_immediate().expect("crash the server");

    let server = format!("127.0.0.1:{}", cluster.port());
    let calls: [&[&str]; 5] = [
        &["--wait", "2s", "ids", "reserve", "SEC"],
        &["--wait", "2s", "file", "--title", "while down"],
        &["--wait", "2s", "claim", "--next", "--agent", "A"],
        &[
            "--wait", "2s", "lease", "acquire", "--holder", "A", "--file", "src/x.rs",
        ],
        &["--wait", "2s", "ids", "reserve", "SEC", "3"],
    ];
    let down = Instant::now();
    let mut n = 0;
    while down.elapsed() < Duration::from_secs(10) {
        let args = calls[n % calls.len()];
        n += 1;
        let ran = a.gapreg(args);
        ran.fails(
            75,
            &[
                &server,
                "cannot be reached",
                "PostgreSQL is running",
                "--wait",
            ],
        );
        assert!(
            ran.took >= Duration::from_millis(1900) && ran.took <= Duration::from_secs(5),
            "{args:?} took {:?}",
            ran.took
        );
    }
    assert!(n >= 4, "only {n} calls in 10 s");
    assert_eq!(
        a.gap_files(),
        gaps,
        "a gap was filed while the server was down"
    );

    cluster.start_again().expect("restart the server");
    let next = numbers(&a.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-");
    let highest = *acknowledged.iter().max().expect("ids");
    assert!(
        next[0] > highest,
        "SEC-{} reissued (acknowledged up to SEC-{highest})",
        next[0]
    );
    assert_eq!(a.gapreg(&["file", "--title", "after"]).ok(), "GAP-OP-3\n");
}

/// Reservations and filings from several processes while the server is crashed and restarted
/// under them: every id printed by a process that exited 0 is distinct from every other, the
/// counter afterwards is above all of them, and a failure is exit 75, never anything else.
#[test]
fn a_crash_under_concurrent_reservations_loses_and_reissues_nothing() {
    let Some((cluster, url)) = own_cluster("postgres::a_crash_under_concurrent_reservations")
    else {
        return;
    };
    let (_tmp, ms) = machines(&url, 1, 0);
    let stop = AtomicBool::new(false);
    // When the server was down (stop_immediate returned) and when it was back.
    let crashed: OnceLock<Instant> = OnceLock::new();
    let restarted: OnceLock<Instant> = OnceLock::new();
    // Two reserving processes at a time per machine, and one filing on machine a.
    let jobs: Vec<(&Machine, bool)> = ms
        .iter()
        .flat_map(|m| [(m, false), (m, false)])
        .chain([(&ms[0], true)])
        .collect();
    let runs: Vec<(bool, Ran)> = thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|&(m, files)| {
                let stop = &stop;
                s.spawn(move || {
                    let mut runs = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let ran = if files {
                            m.gapreg(&["--wait", "8s", "file", "--title", "during"])
                        } else {
                            m.gapreg(&["--wait", "8s", "ids", "reserve", "SEC", "2"])
                        };
                        runs.push((files, ran));
                    }
                    runs
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(1500));
        cluster.stop_immediate().expect("crash the server");
        // Every process under way now met the crash.
        crashed.set(Instant::now()).expect("once");
        thread::sleep(Duration::from_millis(1500));
        cluster.start_again().expect("restart the server");
        restarted.set(Instant::now()).expect("once");
        thread::sleep(Duration::from_millis(2500));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let crashed = *crashed.get().expect("crashed");
    let restarted = *restarted.get().expect("restarted");
    let mut ids = Vec::new();
    let mut gap_ids = Vec::new();
    let (mut ok, mut busy, mut after, mut through) = (0, 0, 0, 0);
    for (files, ran) in &runs {
        match ran.code {
            Some(0) => {
                ok += 1;
                if ran.ended > restarted {
                    after += 1;
                    if ran.ended - ran.took < crashed {
                        through += 1;
                    }
                }
                if *files {
                    gap_ids.extend(numbers(&ran.stdout, "GAP-OP-"));
                } else {
                    let batch = numbers(&ran.stdout, "SEC-");
                    assert!(
                        batch.len() == 2 && batch[1] == batch[0] + 1,
                        "not one contiguous batch: {ran:?}"
                    );
                    ids.extend(batch);
                }
            }
            Some(75) => {
                busy += 1;
                ran.fails(75, &["coordination server"]);
            }
            _ => panic!("neither success nor busy: {ran:?}"),
        }
    }
    eprintln!(
        "crash test: {ok} succeeded ({after} after the restart, {through} of them under way \
         at the crash), {busy} busy"
    );
    assert!(after > 0, "nothing succeeded after the restart");
    assert!(
        through > 0,
        "no process was under way through the crash and restart"
    );
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "an acknowledged id was reissued: {ids:?}"
    );
    let gap_set: BTreeSet<u64> = gap_ids.iter().copied().collect();
    assert_eq!(
        gap_set.len(),
        gap_ids.len(),
        "a gap id filed twice: {gap_ids:?}"
    );
    for n in &gap_ids {
        let path = ms[0].dir.join(format!(".gapreg/gaps/GAP-OP-{n}.yaml"));
        assert!(
            path.is_file(),
            "GAP-OP-{n} was acknowledged but is not filed"
        );
    }
    for m in &ms {
        let peek = numbers(&m.gapreg(&["ids", "peek", "SEC"]).ok(), "SEC-");
        let highest = ids.iter().max().copied().unwrap_or(0);
        assert!(
            peek[0] > highest,
            "{}: next SEC-{} ≤ SEC-{highest}",
            m.host,
            peek[0]
        );
        let next = numbers(&m.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-");
        assert!(!distinct.contains(&next[0]), "SEC-{} reissued", next[0]);
    }
    let next_gap = numbers(&ms[1].gapreg(&["next-id", "OP"]).ok(), "GAP-OP-");
    assert!(
        gap_ids.iter().all(|n| *n < next_gap[0]),
        "next gap GAP-OP-{} not above {gap_ids:?}",
        next_gap[0]
    );
}

/// A wrong address says what is wrong: a port nobody listens on (busy, 75), a database that
/// does not exist and an unknown user (invalid, 3), an address that is not one (3); never a
/// panic, never a hang.
#[test]
fn wrong_addresses_say_what_is_wrong() {
    let Some(url) = database("postgres::wrong_addresses_say_what_is_wrong") else {
        return;
    };
    let (_tmp, ms) = machines(&url, 0, 1);
    let a = &ms[0];
    let auth = authority(&url);
    let (user, hostport) = auth.split_once('@').expect("user@host");
    let host = hostport.split(':').next().expect("host");
    let db = url.rsplit('/').next().expect("db");
    let port = free_port();
    let cases: Vec<(String, i32, Vec<String>)> = vec![
        (
            format!("postgres://{user}@127.0.0.1:{port}/{db}"),
            75,
            vec![
                format!("{user}@127.0.0.1:{port}/{db}"),
                "cannot be reached".into(),
                "--wait".into(),
            ],
        ),
        (
            format!("postgres://{user}@{hostport}/no_such_db_{port}"),
            3,
            vec![
                format!("no_such_db_{port}"),
                "does not exist".into(),
                "createdb".into(),
            ],
        ),
        (
            format!("postgres://no_such_user_{port}@{hostport}/{db}"),
            3,
            vec![format!("no_such_user_{port}"), hostport.to_owned()],
        ),
        (
            format!("mysql://{user}@{hostport}/{db}"),
            3,
            vec!["postgres://user@host:5432/database".into()],
        ),
        (
            format!("postgres://{user}@{hostport}"),
            3,
            vec!["names no database".into()],
        ),
        (
            format!("postgres://{user}@{host}:99999/{db}"),
            3,
            vec!["not usable".into()],
        ),
        (
            format!("postgres://{user}@{hostport}/{db}?sslmode=require"),
            3,
            vec!["TLS".into()],
        ),
    ];
    for (bad, code, needles) in &cases {
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        for args in [
            &["--wait", "1s", "ids", "reserve", "SEC"][..],
            &["--wait", "1s", "file", "--title", "x"],
            &["--wait", "1s", "lease", "list"],
        ] {
            let ran = a.gapreg_with(Some(bad), args);
            ran.fails(*code, &needles);
            assert!(ran.took < Duration::from_secs(5), "{bad}: {ran:?}");
        }
        // `coordination set` refuses what cannot be an address at once, and writes nothing
        // (an address asking for TLS is one, in a build with TLS: its server is not).
        let tls_address = cfg!(feature = "tls") && bad.contains("sslmode=require");
        if *code == 3 && !bad.contains("no_such") && !tls_address {
            let b = Machine {
                env_url: None,
                ..a.clone()
            };
            let before = std::fs::read(a.dir.join(".git/gapreg/coordination.url")).ok();
            b.gapreg(&["coordination", "set", bad]).fails(3, &needles);
            let after = std::fs::read(a.dir.join(".git/gapreg/coordination.url")).ok();
            assert_eq!(before, after, "{bad}");
        }
    }
    // A host that does not resolve: named, busy or invalid, within the wait.
    let ran = a.gapreg_with(
        Some(&format!("postgres://{user}@no-such-host.invalid:5432/{db}")),
        &["--wait", "1s", "ids", "reserve", "SEC"],
    );
    assert!(matches!(ran.code, Some(3 | 75)), "{ran:?}");
    ran.fails(ran.code.unwrap_or(0), &["no-such-host.invalid"]);
    assert!(ran.took < Duration::from_secs(5), "{ran:?}");
    // The right address still works: none of this reserved anything.
    assert_eq!(a.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-1\n");
}

// ---------------------------------------------------------------------------------------------
// 6. Doctor and leases across clones.

/// `doctor` is healthy on a postgres registry in every clone, and `lease list --json` in one
/// clone shows the leases taken from another (and refuses an overlap with them).
#[test]
fn doctor_is_healthy_and_leases_show_across_clones() {
    let Some(url) = database("postgres::doctor_is_healthy_and_leases_show") else {
        return;
    };
    let (_tmp, ms) = machines(&url, 1, 2);
    let (a, b) = (&ms[0], &ms[1]);
    let x = a
        .gapreg(&[
            "--json", "lease", "acquire", "--holder", "A1", "--file", "src/a.rs", "--ttl", "60s",
            "--task", "edit a",
        ])
        .json();
    let y = a
        .gapreg(&[
            "--json", "lease", "acquire", "--holder", "A2", "--dir", "docs", "--shared",
        ])
        .json();
    a.gapreg(&["claim", "GAP-OP-1", "--agent", "A1"]).ok();
    let listed = b.gapreg(&["--json", "lease", "list"]).json();
    let leases = listed["leases"].as_array().expect("leases");
    assert_eq!(leases.len(), 2, "{listed}");
    for (want, holder, mode) in [(&x, "A1", "exclusive"), (&y, "A2", "shared")] {
        let got = leases
            .iter()
            .find(|l| l["id"] == want["id"])
            .unwrap_or_else(|| panic!("{} not listed from b: {listed}", want["id"]));
        assert_eq!(got["holder"], holder);
        assert_eq!(got["mode"], mode);
        assert_eq!(got["token"], want["token"]);
        assert_eq!(got["files"], want["files"]);
        assert_eq!(got["dirs"], want["dirs"]);
        assert_eq!(got["status"], "live", "{got}");
    }
    assert!(x["token"].as_u64() < y["token"].as_u64());
    let text = b.gapreg(&["lease", "list"]).ok();
    assert!(text.contains("A1") && text.contains("src/a.rs"), "{text}");
    b.gapreg(&["lease", "acquire", "--holder", "B1", "--file", "src/a.rs"])
        .fails(5, &["A1"]);
    b.gapreg(&[
        "lease",
        "acquire",
        "--holder",
        "B1",
        "--file",
        "docs/r.md",
        "--shared",
    ])
    .ok();
    b.gapreg(&["claim", "GAP-OP-1", "--agent", "B1"])
        .fails(5, &["GAP-OP-1"]);
    for m in &ms {
        let doctor = m.gapreg(&["doctor"]);
        assert_eq!(doctor.code, Some(0), "{}: {doctor:?}", m.host);
        assert!(doctor.stdout.contains("healthy"), "{doctor:?}");
    }
    if own_host_names() {
        let hosts = pg::psql(
            &url,
            "SELECT string_agg(record::json->>'holder' || '@' || \
             (record::json->'facts'->>'host'), ',' ORDER BY record::json->>'holder') \
             FROM gapreg.leases WHERE ns LIKE '%/leases'",
        )
        .expect("leases on the server");
        assert_eq!(hosts, "A1@machine-a,A2@machine-a,B1@machine-b");
    }
}

/// A lease bound to a process on machine a whose process died: machine a proves the holder
/// dead and takes it over, machine b (another host) cannot judge a's processes and refuses.
#[test]
fn a_dead_holder_is_judged_only_on_its_own_machine() {
    if !own_host_names() {
        eprintln!(
            "skipped: postgres::a_dead_holder_is_judged_only_on_its_own_machine needs unshare -u"
        );
        return;
    }
    let Some(url) = database("postgres::a_dead_holder_is_judged_only_on_its_own_machine") else {
        return;
    };
    let (_tmp, ms) = machines(&url, 1, 0);
    let (a, b) = (&ms[0], &ms[1]);
    let mut holder = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let pid = holder.id().to_string();
    a.gapreg(&[
        "lease", "acquire", "--holder", "P", "--file", "src/p.rs", "--pid", &pid,
    ])
    .ok();
    // Our own child, by its pid; reaped so the pid is gone.
    holder.kill().expect("kill");
    holder.wait().expect("reap");
    b.gapreg(&["lease", "acquire", "--holder", "Q", "--file", "src/p.rs"])
        .fails(5, &["P"]);
    let took = a.gapreg(&["lease", "acquire", "--holder", "R", "--file", "src/p.rs"]);
    took.ok();
    assert!(took.stderr.contains("took over dead lease"), "{took:?}");
}

/// A server whose tables a newer build has migrated is refused by every call, the one-statement
/// reservation included, before anything changes; back at this build's version, the counter
/// goes on where it was.
#[test]
fn a_schema_newer_than_this_build_is_refused_before_anything_changes() {
    let Some(url) = database("postgres::a_schema_newer_than_this_build_is_refused") else {
        return;
    };
    let (_tmp, ms) = machines(&url, 0, 1);
    let a = &ms[0];
    let first = numbers(&a.gapreg(&["ids", "reserve", "SEC", "2"]).ok(), "SEC-");
    let counter = || {
        pg::psql(
            &url,
            "SELECT string_agg(prefix || '=' || last, ',' ORDER BY prefix) FROM gapreg.id_counters",
        )
        .expect("the counters")
    };
    let before = counter();
    for (component, bump) in [("idreserve", 1), ("gapreg", 1), ("leaselock", 1)] {
        pg::psql(
            &url,
            &format!(
                "UPDATE gapreg.schema_version SET version = version + {bump} \
                 WHERE component = '{component}'"
            ),
        )
        .expect("bump the version");
        for args in [
            &["ids", "reserve", "SEC"][..],
            &["ids", "reserve", "NEW"][..],
            &["file", "--title", "refused"][..],
        ] {
            a.gapreg(args)
                .fails(6, &[component, "newer than this build", "upgrade gapreg"]);
        }
        assert_eq!(counter(), before, "a refused call changed a counter");
        pg::psql(
            &url,
            &format!(
                "UPDATE gapreg.schema_version SET version = version - {bump} \
                 WHERE component = '{component}'"
            ),
        )
        .expect("restore the version");
    }
    let next = numbers(&a.gapreg(&["ids", "reserve", "SEC"]).ok(), "SEC-");
    assert_eq!(next, [first[1] + 1], "{first:?} then {next:?}");
}

// ---------------------------------------------------------------------------------------------
// Attack: seeding a namespace's counters from the documents is not atomic.

/// The namespace recorded in a clone's `config.yaml`.
fn namespace_of(m: &Machine) -> String {
    let config = std::fs::read_to_string(m.dir.join(".gapreg/config.yaml")).expect("config");
    config
        .lines()
        .find_map(|l| l.strip_prefix("namespace: "))
        .expect("a namespace")
        .trim()
        .to_owned()
}

/// A psql session kept open (stdin piped) to hold an uncommitted row: it stands for a slow
/// or descheduled first user, nothing more.
struct HeldSession(Option<std::process::Child>);

impl HeldSession {
    fn start(url: &str, sql: &str) -> HeldSession {
        use std::io::Write;
        let mut child = Command::new(pg::psql_program())
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql");
        let stdin = child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{sql}").expect("write");
        stdin.flush().expect("flush");
        HeldSession(Some(child))
    }

    fn end(&mut self) {
        if let Some(mut c) = self.0.take() {
            use std::io::Write;
            if let Some(stdin) = c.stdin.as_mut() {
                let _ = writeln!(stdin, "ROLLBACK;");
            }
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The documents hold GAP-A-1..3, GAP-OP-1..3, GAP-Z-1..3 (registry positions 1..9) and the
/// server has lost the namespace's counters (a restored or replaced server: the first use
/// seeds them from the documents). A first user whose seeding is interrupted — killed while
/// held up — leaves nothing (the seed is one transaction: were it one per prefix, every later
/// process would take "a counter exists" as "the namespace is seeded", hand out GAP-Z-1 again
/// and file a new gap at registry position 1, GAP-A-1's; a helper's attack showed that).
#[test]
fn an_interrupted_seeding_leaves_nothing_and_later_reservations_reissue_no_document_id() {
    let Some(url) = database("postgres::an_interrupted_seeding_makes_later_reservations_reissue")
    else {
        return;
    };
    let (_tmp, ms) = machines(&url, 0, 0);
    let a = &ms[0];
    for p in ["A", "OP", "Z"] {
        for i in 1..=3 {
            assert_eq!(
                a.gapreg(&["file", "--prefix", p, "--title", &format!("{p} {i}")])
                    .ok(),
                format!("GAP-{p}-{i}\n")
            );
        }
    }
    let ns = namespace_of(a);
    // The server loses the namespace's counters (restored from an old backup).
    pg::psql(&url, "DELETE FROM gapreg.id_counters").expect("lose the counters");

    // The first user (P1) starts seeding: GAP-A, then GAP-OP (held up here by an uncommitted
    // row standing for a slow first user), then GAP-Z and SEQ. It is killed while held up.
    let mut held = HeldSession::start(
        &url,
        &format!("BEGIN; INSERT INTO gapreg.id_counters VALUES ('{ns}', 'GAP-OP', 0);"),
    );
    thread::sleep(Duration::from_millis(500));
    let mut p1 = {
        let mut cmd = Command::new(bin());
        cmd.args(["--wait", "20s", "ids", "reserve", "SEC"])
            .current_dir(&a.dir);
        a.environment(&mut cmd, a.env_url.as_deref());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().expect("spawn P1")
    };
    // P1 is held up once one of this database's sessions waits for a lock.
    let held_up = (0..200).any(|_| {
        thread::sleep(Duration::from_millis(50));
        pg::psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND datname = current_database()",
        )
        .as_deref()
            == Ok("1")
    });
    assert!(held_up, "P1 never waited on the held row");
    // Our own child, by its handle.
    p1.kill().expect("kill P1");
    p1.wait().expect("reap P1");
    held.end();
    // Nothing of the interrupted seed is visible: it was one transaction.
    let left = pg::psql(
        &url,
        &format!("SELECT count(*) FROM gapreg.id_counters WHERE ns = '{ns}'"),
    )
    .expect("counters");
    assert_eq!(left, "0", "a part of the interrupted seed was committed");

    // Every later process, one at a time.
    let out = a.gapreg(&["ids", "reserve", "GAP-Z"]).ok();
    let z = numbers(&out, "GAP-Z-");
    let filed = a
        .gapreg(&["file", "--prefix", "OP", "--title", "after"])
        .ok();
    let listed = a.listed();
    let seq_of = |id: &str| {
        listed
            .iter()
            .find(|g| g["id"] == id)
            .and_then(|g| g["seq"].as_u64())
            .unwrap_or_else(|| panic!("{id} not listed: {listed:?}"))
    };
    let new_seq = seq_of(filed.trim());
    let counters = pg::psql(
        &url,
        "SELECT string_agg(prefix || '=' || last, ',' ORDER BY prefix) FROM gapreg.id_counters",
    )
    .expect("counters");
    assert!(
        z[0] > 3,
        "`gapreg ids reserve GAP-Z` printed GAP-Z-{}, an id the documents already hold \
         (GAP-Z-1..3): reissued (counters now {counters})",
        z[0]
    );
    assert!(
        new_seq > 9,
        "{} was filed at registry position {new_seq}, a position the documents already hold \
         (1..9) (counters now {counters})",
        filed.trim()
    );
}

/// The same without any help: several processes make the first use of a namespace at once
/// (a replaced server), the documents holding ids of many prefixes. A process that looks at
/// the counters after another process seeded the first prefix but before it seeded the rest
/// skips the seeding and reserves from 1.
#[test]
fn concurrent_first_users_of_a_namespace_never_reissue_document_ids() {
    let Some(url) = database("postgres::concurrent_first_users_of_a_namespace_never_reissue")
    else {
        return;
    };
    let (_tmp, ms) = machines(&url, 0, 0);
    let a = &ms[0];
    // 40 prefixes, 1 gap each: seeding takes 40 transactions.
    let prefixes: Vec<String> = (0..40).map(|i| format!("P{i:02}")).collect();
    for p in &prefixes {
        a.gapreg(&["file", "--prefix", p, "--title", p]).ok();
    }
    let mut reissued = Vec::new();
    for round in 0..6 {
        pg::psql(&url, "DELETE FROM gapreg.id_counters").expect("lose the counters");
        // Each process reserves one id of the last prefix (sorted last, seeded last).
        let barrier = Barrier::new(6);
        let outs: Vec<Ran> = thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        a.gapreg(&["ids", "reserve", "GAP-P39"])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        for ran in outs {
            for n in numbers(&ran.ok(), "GAP-P39-") {
                if n <= 1 {
                    reissued.push(format!("round {round}: GAP-P39-{n}"));
                }
            }
        }
    }
    assert!(
        reissued.is_empty(),
        "ids the documents hold (GAP-P39-1) were handed out again by concurrent first users: \
         {reissued:?}"
    );
}

/// `init --coordination postgres` reaches the server and "makes the schema current" before
/// creating anything — but only for the `gapreg` and `idreserve` components: against a
/// server whose lease tables a newer build has migrated, it exits 0 and leaves a registry
/// every later call refuses (all-or-nothing broken; the newer schema not refused).
#[test]
fn init_refuses_a_server_whose_lease_tables_are_newer_and_creates_nothing() {
    let Some(url) = database("postgres::init_refuses_a_server_whose_lease_tables_are_newer") else {
        return;
    };
    // Some earlier registry made every component's tables.
    let (tmp, _ms) = machines(&url, 0, 1);
    pg::psql(
        &url,
        "UPDATE gapreg.schema_version SET version = version + 1 WHERE component = 'leaselock'",
    )
    .expect("a newer build migrated the lease tables");
    let b = Machine::new(tmp.path(), "machine-new", Some(&url));
    std::fs::create_dir(&b.dir).expect("mkdir");
    b.git(&["init", "-q"]);
    let ran = b.gapreg(&["init", "--coordination", "postgres"]);
    let after = b.gapreg(&["file", "--title", "first"]);
    assert!(
        ran.code != Some(0) && !b.dir.join(".gapreg").exists(),
        "init exited {:?} and left {:?} against a server whose leaselock tables are newer than \
         this build; the first command on it then: exit {:?} ({})",
        ran.code,
        b.dir.join(".gapreg").exists(),
        after.code,
        after.stderr.trim()
    );
    ran.fails(6, &["leaselock", "newer than this build"]);
}

/// A damaged schema (a table dropped by hand, a version row deleted) is a clear error naming
/// what is wrong — not "the coordination server … failed: db error".
#[test]
fn a_damaged_schema_is_a_clear_error() {
    let Some(url) = database("postgres::a_damaged_schema_is_a_clear_error") else {
        return;
    };
    let (_tmp, ms) = machines(&url, 0, 1);
    let a = &ms[0];
    a.gapreg(&["ids", "reserve", "SEC"]).ok();
    pg::psql(&url, "DROP TABLE gapreg.id_counters").expect("drop the counters");
    let dropped = a.gapreg(&["ids", "reserve", "SEC"]);
    pg::psql(
        &url,
        "CREATE TABLE gapreg.id_counters (ns text NOT NULL, prefix text NOT NULL, \
         last bigint NOT NULL CHECK (last >= 0), PRIMARY KEY (ns, prefix)); \
         DELETE FROM gapreg.schema_version WHERE component = 'idreserve'",
    )
    .expect("recreate, lose the version row");
    let unversioned = a.gapreg(&["ids", "reserve", "SEC"]);
    let mut vague = Vec::new();
    for (what, ran, needle) in [
        ("id_counters dropped", &dropped, "id_counters"),
        (
            "idreserve's version row deleted",
            &unversioned,
            "id_counters",
        ),
    ] {
        assert_ne!(ran.code, Some(0), "{what}: {ran:?}");
        assert!(!ran.stderr.contains("panicked"), "{what}: {ran:?}");
        if !ran.stderr.contains(needle) {
            vague.push(format!(
                "{what}: exit {:?}: {}",
                ran.code,
                ran.stderr.trim()
            ));
        }
    }
    assert!(
        vague.is_empty(),
        "errors that do not say what is wrong: {vague:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Attack 2: a namespace whose counters exist but are behind the documents.

/// The server is restored from a backup taken after the registry's first filing (a
/// point-in-time restore, a replica promoted while it lagged): the namespace's counters exist
/// but are behind the documents (GAP-A-1..3 at positions 1..3; the server remembers GAP-A = 1,
/// SEQ = 1). The seed runs only for a namespace with no counter at all, so nothing raises
/// them: the next filing takes registry position 2, GAP-A-2's, and `ids reserve GAP-A` hands
/// out GAP-A-2 — ids and positions the documents already hold.
#[test]
#[ignore = "open bug: counters that exist but are behind the documents (a server restored \
            from an older backup, a lagging replica promoted) are trusted: the one-statement \
            reservation and seeding (only when a namespace has no counter) never raise them, \
            and filing checks a new gap's id, not its registry position"]
fn counters_behind_the_documents_reissue_nothing() {
    let Some(url) = database("postgres::attack2_counters_behind_the_documents") else {
        return;
    };
    let (_tmp, ms) = machines(&url, 0, 0);
    let a = &ms[0];
    for i in 1..=3 {
        assert_eq!(
            a.gapreg(&["file", "--prefix", "A", "--title", &format!("a {i}")])
                .ok(),
            format!("GAP-A-{i}\n")
        );
    }
    // The restored server: every counter as it was after the first filing.
    pg::psql(&url, "UPDATE gapreg.id_counters SET last = 1").expect("restore");
    let filed = a
        .gapreg(&["file", "--prefix", "B", "--title", "after the restore"])
        .ok();
    let listed = a.listed();
    let seqs: Vec<(String, u64)> = listed
        .iter()
        .map(|g| {
            (
                g["id"].as_str().unwrap_or_default().to_owned(),
                g["seq"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let new_seq = seqs
        .iter()
        .find(|(id, _)| id == filed.trim())
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("{} not listed: {seqs:?}", filed.trim()));
    let reserved = a.gapreg(&["ids", "reserve", "GAP-A"]).ok();
    let n = numbers(&reserved, "GAP-A-");
    assert!(
        new_seq > 3,
        "{} was filed at registry position {new_seq}, which a document already holds \
         (positions {seqs:?})",
        filed.trim()
    );
    assert!(
        n[0] > 3,
        "`gapreg ids reserve GAP-A` printed GAP-A-{}, an id the documents hold (GAP-A-1..3)",
        n[0]
    );
}

/// `gapreg --wait 3s lease acquire` on a file someone holds, the server crashing a second into
/// the wait: the call fails busy (75) within about its 3 s — not after the wait once more for
/// the reconnection and once more for leaving the queue.
#[test]
fn a_lease_wait_never_outlasts_its_wait_when_the_server_crashes() {
    let Some((cluster, url)) = own_cluster("postgres::attack2_a_lease_wait_never_outlasts") else {
        return;
    };
    let (_tmp, ms) = machines(&url, 0, 0);
    let a = &ms[0];
    a.gapreg(&[
        "lease", "acquire", "--holder", "H", "--file", "src/x.rs", "--ttl", "5m",
    ])
    .ok();
    let waiter = thread::scope(|s| {
        let w = s.spawn(|| {
            a.gapreg(&[
                "--wait", "3s", "lease", "acquire", "--holder", "W", "--file", "src/x.rs",
            ])
        });
        thread::sleep(Duration::from_millis(1000));
        cluster.stop_immediate().expect("crash the server");
        w.join().expect("waiter thread")
    });
    assert_eq!(waiter.code, Some(75), "{waiter:?}");
    assert!(
        waiter.took < Duration::from_millis(4500),
        "`gapreg --wait 3s lease acquire` took {:?} to give up once the server crashed under \
         it: {waiter:?}",
        waiter.took
    );
}
