//! Whole processes side by side: the release `gapreg` binary, Taskwarrior (`task`), and the
//! floors — this bench binary re-executed to do the least a durable write or a listing can do.
//! Shared by the `taskwarrior_file` and `taskwarrior_list` benches.
//!
//! Both tools get the same work: a gap and a task carry the same title or description, a
//! severity or priority, a type (gapreg only) and one tag. Taskwarrior runs on its own
//! `TASKRC` and `TASKDATA` in the scratch directory, with `confirmation=off`, `hooks=off`,
//! `verbose=nothing` and the news nag silenced, and otherwise its defaults (garbage collection
//! and recurrence on). Taskwarrior 2.6 `fdatasync`s the files it appends to (five per
//! `task import`, four per `task add`), so both sides are durable when they exit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::interleave::Series;
use crate::process::{self, env_var, run_timed, self_command};
use crate::report::{Table, at_most, ratio};
use crate::run::{self, Mode};
use crate::stats::ms;

/// The title of gap or task `i`: as long as a real one.
pub fn title(i: usize) -> String {
    format!("item {i}: a title about as long as a real one, naming a file")
}

/// The release `gapreg` binary on one registry.
#[derive(Debug, Clone)]
pub struct Gapreg {
    bin: PathBuf,
    /// The registry (`DIR/.gapreg`).
    pub registry: PathBuf,
}

impl Gapreg {
    /// `gapreg init DIR`.
    pub fn init(bin: &Path, dir: &Path) -> Gapreg {
        fs::create_dir_all(dir).expect("create the repository directory");
        let mut init = Command::new(bin);
        init.arg("init").arg(dir).arg("-q");
        run_timed(&mut init);
        Gapreg {
            bin: bin.to_path_buf(),
            registry: dir.join(".gapreg"),
        }
    }

    /// `gapreg --registry R ARGS…`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--registry").arg(&self.registry).args(args);
        cmd
    }

    /// Files gap `i` alone.
    pub fn file_one(&self, i: usize) -> Command {
        let title = title(i);
        self.cmd(&[
            "file",
            "-q",
            "--title",
            &title,
            "--severity",
            "medium",
            "--type",
            "missing-entry",
            "--tag",
            "bench",
        ])
    }

    /// Files the batch in `path` (all or nothing).
    pub fn file_batch(&self, path: &Path) -> Command {
        let mut cmd = self.cmd(&["file", "-q", "--batch"]);
        cmd.arg(path);
        cmd
    }

    /// `gapreg list --json`.
    pub fn list_json(&self) -> Command {
        self.cmd(&["--json", "list"])
    }

    /// `gapreg list` (the human table).
    pub fn list(&self) -> Command {
        self.cmd(&["list"])
    }

    /// How many gaps `gapreg list --json` prints.
    pub fn count(&self) -> usize {
        count_of(&run_timed(&mut self.list_json()).1, "\"id\":\"")
    }

    /// The registry's index cache (what a listing reads).
    pub fn index(&self) -> PathBuf {
        self.registry.join("index.log")
    }
}

/// A `gapreg file --batch` file: gaps `from..from + n` as a JSON list.
pub fn gap_batch(from: usize, n: usize) -> String {
    json_list(from..from + n, |i| {
        format!(
            r#"{{"prefix":"OP","title":"{}","severity":"medium","type":"missing-entry","tags":["bench"]}}"#,
            title(i)
        )
    })
}

/// A JSON list, one item a line.
fn json_list(items: std::ops::Range<usize>, item: impl Fn(usize) -> String) -> String {
    let lines: Vec<String> = items.map(item).collect();
    format!("[\n{}\n]\n", lines.join(",\n"))
}

/// Taskwarrior on its own configuration and data in a directory.
#[derive(Debug, Clone)]
pub struct Taskwarrior {
    bin: PathBuf,
    rc: PathBuf,
    data: PathBuf,
}

impl Taskwarrior {
    /// `task` on `PATH` set up in `dir`; `None` when Taskwarrior is not installed.
    pub fn setup(dir: &Path) -> Option<Taskwarrior> {
        let bin = process::which("task")?;
        let data = dir.join("data");
        fs::create_dir_all(&data).expect("create TASKDATA");
        let rc = dir.join("taskrc");
        let text = format!(
            "data.location={}\nconfirmation=off\nhooks=off\nverbose=nothing\nnews.version=9.9.9\n",
            data.display()
        );
        fs::write(&rc, text).expect("write the taskrc");
        Some(Taskwarrior { bin, rc, data })
    }

    /// `task ARGS…` on this configuration and data.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("TASKRC", &self.rc)
            .env("TASKDATA", &self.data)
            .args(args);
        cmd
    }

    /// `task add` of task `i`.
    pub fn add(&self, i: usize) -> Command {
        let title = title(i);
        self.cmd(&["add", &title, "priority:M", "+bench"])
    }

    /// `task import FILE`.
    pub fn import(&self, path: &Path) -> Command {
        let mut cmd = self.cmd(&["import"]);
        cmd.arg(path);
        cmd
    }

    /// `task export` (every task, as JSON).
    pub fn export(&self) -> Command {
        self.cmd(&["export"])
    }

    /// How many tasks `task export` prints.
    pub fn count(&self) -> usize {
        count_of(&run_timed(&mut self.export()).1, "\"uuid\":\"")
    }

    /// `task --version`.
    pub fn version(&self) -> String {
        let out = run_timed(&mut self.cmd(&["--version"])).1;
        String::from_utf8_lossy(&out).trim().to_owned()
    }
}

/// A `task import` file: tasks `from..from + n` as a JSON list, each with its own UUID.
pub fn task_batch(from: usize, n: usize) -> String {
    json_list(from..from + n, |i| {
        format!(
            r#"{{"uuid":"00000000-0000-4000-8000-{i:012x}","description":"{}","status":"pending","entry":"20261202T120000Z","priority":"M","tags":["bench"]}}"#,
            title(i)
        )
    })
}

/// Non-overlapping occurrences of `needle` in `haystack`.
pub fn count_of(haystack: &[u8], needle: &str) -> usize {
    let needle = needle.as_bytes();
    let mut count = 0;
    let mut rest = haystack;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        count += 1;
        rest = &rest[at + needle.len()..];
    }
    count
}

/// Brings both tools to `n` items, in batches of `chunk` (`gapreg file --batch`, durable;
/// `task import`). Item numbers `0..n` are used.
pub fn seed(gapreg: &Gapreg, task: Option<&Taskwarrior>, n: usize, chunk: usize, scratch: &Path) {
    let started = std::time::Instant::now();
    let mut i = 0;
    while i < n {
        let k = chunk.min(n - i);
        let gaps = scratch.join("seed-gaps.json");
        fs::write(&gaps, gap_batch(i, k)).expect("write a seed batch");
        run_timed(&mut gapreg.file_batch(&gaps));
        if let Some(task) = task {
            let tasks = scratch.join("seed-tasks.json");
            fs::write(&tasks, task_batch(i, k)).expect("write a seed import");
            run_timed(&mut task.import(&tasks));
        }
        i += k;
    }
    assert_eq!(gapreg.count(), n, "gapreg: seeded gap count");
    if let Some(task) = task {
        assert_eq!(task.count(), n, "taskwarrior: seeded task count");
    }
    eprintln!("seeded {n} gaps and tasks in {:.1?}", started.elapsed());
}

/// The two tools side by side in `scratch`: a fresh registry (`repo/.gapreg`) and a fresh
/// Taskwarrior (`taskwarrior/`). `Err`: why the bench cannot run here (no `gapreg` binary, no
/// `task`), as one line.
pub fn side_by_side(scratch: &Path) -> Result<(Gapreg, Taskwarrior), String> {
    let bin = process::gapreg_binary()?;
    let task = Taskwarrior::setup(&scratch.join("taskwarrior")).ok_or(
        "`task` (Taskwarrior) is not on PATH; `apt-get install taskwarrior` to compare with it",
    )?;
    Ok((Gapreg::init(&bin, &scratch.join("repo")), task))
}

/// The start of a side-by-side bench named `bench` (its benchmarks `names` for `--list`),
/// scratch space under `tmp` (`env!("CARGO_TARGET_TMPDIR")`): the mode, the scratch directory
/// (removed when dropped), the registry and Taskwarrior. `None`: nothing to measure —
/// this process was a floor's child and did its work, `--list` was asked, or the bench cannot
/// run here (it printed the one-line reason).
pub fn start(
    bench: &str,
    names: &[&str],
    tmp: &str,
) -> Option<(Mode, TempDir, Gapreg, Taskwarrior)> {
    if let Some(role) = process::role() {
        assert!(Floor::serve(&role), "unknown role {role:?}");
        return None;
    }
    let mode = Mode::from_args();
    if mode.listed(names) {
        return None;
    }
    let scratch = run::scratch(tmp, &format!("{bench}-"));
    match side_by_side(scratch.path()) {
        Ok((gapreg, task)) => Some((mode, scratch, gapreg, task)),
        Err(why) => {
            println!("{bench}: skipped: {why}");
            None
        }
    }
}

/// A table of targets: per row a label, our series, the peer's, and the bound on the paired
/// ratio.
pub fn target_table(rows: &[(String, &Series, &Series, f64)]) -> Table {
    let mut t = Table::new(&["target", "paired", "pooled", "<verdict"]);
    for (label, ours, peer, target) in rows {
        let paired = ours.paired(peer);
        t.row([
            label.clone(),
            ratio(paired),
            ratio(ours.pooled(peer)),
            at_most(paired, *target).to_owned(),
        ]);
    }
    t
}

/// One row per series: its median and p99 in ms, its paired ratio (median over rounds of the
/// same-round ratio) to the series `peer` and to the series `floor`, and in how many rounds it
/// was slower than `peer`.
pub fn ratio_table(series: &[Series], peer: usize, floor: usize) -> Table {
    let (p, f) = (&series[peer], &series[floor]);
    let mut t = Table::new(&[
        "competitor",
        "median ms",
        "p99 ms",
        &format!("× {} (paired)", p.name),
        &format!("× {} (paired)", f.name),
        &format!("rounds slower than {}", p.name),
    ]);
    for s in series {
        let Some(st) = s.stats() else { continue };
        t.row([
            format!("`{}`", s.name),
            format!("{:.2}", ms(st.median)),
            format!("{:.2}", ms(st.p99)),
            ratio(s.paired(p)),
            ratio(s.paired(f)),
            format!("{}/{}", s.slower_rounds(p), s.rounds.len()),
        ]);
    }
    t
}

// ---------------------------------------------------------------------------------------------
// The floors: this bench binary re-executed in a role
// ---------------------------------------------------------------------------------------------

/// The floors' directory, first item number and count.
const DIR_ENV: &str = "GAPREG_BENCH_FLOOR_DIR";
const FROM_ENV: &str = "GAPREG_BENCH_FLOOR_FROM";
const COUNT_ENV: &str = "GAPREG_BENCH_FLOOR_COUNT";
/// The file `floor-read` prints.
const READ_ENV: &str = "GAPREG_BENCH_FLOOR_READ";

/// The least a process can do for one of the measured commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// One gap: write a temp file, `fdatasync`, rename it into place, `fsync` the directory.
    FileOne,
    /// A batch as one file: all of it in one temp file, `fdatasync`, rename, directory `fsync`.
    BatchOneFile,
    /// A batch as one file per gap: write every temp file, then `fdatasync` each, rename each
    /// into place, one directory `fsync`.
    BatchFiles,
    /// A batch as one file per gap made durable together: write every temp file, one
    /// `syncfs` (the shape of gapreg's batch writer), rename each into place, one directory
    /// `fsync`.
    BatchSyncfs,
    /// A listing: read the index file and write it to standard output.
    Read,
}

impl Floor {
    const ALL: [Floor; 5] = [
        Floor::FileOne,
        Floor::BatchOneFile,
        Floor::BatchFiles,
        Floor::BatchSyncfs,
        Floor::Read,
    ];

    /// The role's (and the competitor's) name.
    pub fn name(self) -> &'static str {
        match self {
            Floor::FileOne => "floor-file-one",
            Floor::BatchOneFile => "floor-batch-one-file",
            Floor::BatchFiles => "floor-batch-files",
            Floor::BatchSyncfs => "floor-batch-syncfs",
            Floor::Read => "floor-read",
        }
    }

    /// A command that writes items `from..from + count` into `dir` (`Read`: prints `dir`, a
    /// file).
    pub fn command(self, dir: &Path, from: usize, count: usize) -> Command {
        let mut cmd = self_command(self.name());
        let var = if self == Floor::Read {
            READ_ENV
        } else {
            DIR_ENV
        };
        cmd.env(var, dir)
            .env(FROM_ENV, from.to_string())
            .env(COUNT_ENV, count.to_string());
        cmd
    }

    /// In a re-executed child: does the work of the floor named `role`; false if `role` is
    /// not a floor's.
    pub fn serve(role: &str) -> bool {
        let Some(floor) = Floor::ALL.into_iter().find(|f| f.name() == role) else {
            return false;
        };
        floor.work().unwrap_or_else(|e| panic!("{role}: {e}"));
        true
    }

    fn work(self) -> io::Result<()> {
        if self == Floor::Read {
            let data = fs::read(env_var(READ_ENV))?;
            let mut out = io::stdout().lock();
            return out.write_all(&data).and_then(|()| out.flush());
        }
        let dir = PathBuf::from(env_var(DIR_ENV));
        let number = |name: &str| env_var(name).parse::<usize>().expect("a number");
        let (from, count) = (number(FROM_ENV), number(COUNT_ENV));
        fs::create_dir_all(&dir)?;
        let items = from..from + count;
        match self {
            Floor::FileOne | Floor::BatchOneFile => {
                let text: String = items.clone().map(gap_text).collect();
                let temp = dir.join(format!(".{from}.tmp"));
                let mut f = File::create(&temp)?;
                f.write_all(text.as_bytes())?;
                f.sync_data()?;
                fs::rename(&temp, dir.join(format!("{from}.yaml")))?;
            }
            Floor::BatchFiles | Floor::BatchSyncfs => {
                let mut files = Vec::with_capacity(count);
                for i in items.clone() {
                    let temp = dir.join(format!(".{i}.tmp"));
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&temp)?;
                    f.write_all(gap_text(i).as_bytes())?;
                    files.push((f, temp, dir.join(format!("{i}.yaml"))));
                }
                if self == Floor::BatchSyncfs {
                    atomic_file::dir::Dir::open(&dir)
                        .and_then(|d| d.sync_filesystem())
                        .map_err(io::Error::other)?;
                } else {
                    for (f, _, _) in &files {
                        f.sync_data()?;
                    }
                }
                for (_, temp, target) in &files {
                    fs::rename(temp, target)?;
                }
            }
            Floor::Read => unreachable!(),
        }
        File::open(&dir)?.sync_all()
    }
}

/// What a floor writes for item `i`: about as long as a gap file.
fn gap_text(i: usize) -> String {
    format!(
        "id: GAP-OP-{i}\nseq: {i}\nrev: 1\ntitle: {}\ntype: missing-entry\nseverity: medium\n\
         status: open\ntags:\n- bench\ncreated_at: 2026-12-02T12:00:00Z\nupdated_at: 2026-12-02T12:00:00Z\n",
        title(i)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_counts() {
        let gaps = gap_batch(3, 2);
        assert_eq!(count_of(gaps.as_bytes(), "\"prefix\""), 2);
        assert!(gaps.trim_end().ends_with("]") && !gaps.contains("},\n]"));
        let tasks = task_batch(0, 3);
        assert_eq!(count_of(tasks.as_bytes(), "\"uuid\":\""), 3);
        assert!(tasks.contains("00000000-0000-4000-8000-000000000002"));
        assert_eq!(count_of(b"aaaa", "aa"), 2);
    }
}
