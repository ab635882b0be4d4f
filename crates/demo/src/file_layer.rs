//! The workload of `gapreg demo-write`, the file layer on its own: worker processes make
//! locked updates of one checksummed counter file at once ([`count`]), a writer is killed
//! mid-write ([`churn`]) and leftovers are recovered, and a copy of the counter with one bit
//! flipped is read back. [`run`] does all three and returns a [`FileLayerReport`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gapreg::atomic_file::{self, Format, Options};
use serde::{Deserialize, Serialize};

use crate::{Error, Program, Result};

/// The counter file the workers share, in the run's directory.
pub const COUNTER_FILE: &str = "counter.json";
/// The file whose writer is killed mid-write.
pub const CHURN_FILE: &str = "big.bin";
/// The copy of the counter file with one bit flipped.
pub const DAMAGED_FILE: &str = "damaged.json";
/// How long the writer of [`CHURN_FILE`] runs before it is killed.
const CHURN_FOR: Duration = Duration::from_millis(150);

/// The counter file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    value: u64,
}

fn opts() -> Options {
    Options::new().checksum(true)
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileLayerReport {
    /// Updates made: workers × updates each.
    pub expected: u64,
    /// The counter's final value.
    pub counted: u64,
    /// How long the workers took.
    pub elapsed: Duration,
    /// The file whose writer was killed.
    pub churned: PathBuf,
    /// Whether that file still held one complete, verified version.
    pub intact: bool,
    /// How many leftover temp files recovery removed after the kill.
    pub removed: usize,
    /// The error reading the damaged copy reported, or `None` if the damage went unnoticed.
    pub damage: Option<String>,
}

impl FileLayerReport {
    /// Whether no update was lost, the killed writer left no torn file and the damage was
    /// reported.
    pub fn passed(&self) -> bool {
        self.counted == self.expected && self.intact && self.damage.is_some()
    }
}

/// The counter file of a run in `dir`.
pub fn counter_path(dir: &Path) -> PathBuf {
    dir.join(COUNTER_FILE)
}

/// Runs the file-layer demo in `dir` (an empty scratch directory): `workers` processes at
/// once, each `program` followed by `count`, the counter file and `updates`, which must call
/// [`count`]; then one `program churn FILE`, which must call [`churn`], killed after a moment.
///
/// # Errors
///
/// [`Error::WorkerFailed`] if a counting worker failed; [`Error::Io`] and [`Error::File`]
/// for the operations of the run itself.
pub fn run(dir: &Path, program: &Program, workers: u32, updates: u32) -> Result<FileLayerReport> {
    let counter = counter_path(dir);
    let started = Instant::now();
    let children = (0..workers)
        .map(|_| {
            program
                .command()
                .arg("count")
                .arg(&counter)
                .arg(updates.to_string())
                .stdin(Stdio::null())
                .spawn()
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(Error::io("start a worker process"))?;
    // Every worker is waited for before a failure is reported, so none is left running.
    let mut failed = None;
    for mut child in children {
        let status = child.wait().map_err(Error::io("wait for a worker"))?;
        if !status.success() {
            failed.get_or_insert(status);
        }
    }
    if let Some(status) = failed {
        return Err(Error::WorkerFailed { status });
    }
    let elapsed = started.elapsed();
    let total: Counter = opts().read_value(&counter, Format::Json)?;

    let churned = dir.join(CHURN_FILE);
    let mut writer = program
        .command()
        .arg("churn")
        .arg(&churned)
        .stdin(Stdio::null())
        .spawn()
        .map_err(Error::io("start the writer to kill"))?;
    std::thread::sleep(CHURN_FOR);
    writer.kill().map_err(Error::io("kill the writer"))?;
    writer
        .wait()
        .map_err(Error::io("wait for the killed writer"))?;
    let intact = opts().read(&churned).is_ok();
    let recovered = atomic_file::recover(dir)?;

    let damaged = dir.join(DAMAGED_FILE);
    let mut bytes = std::fs::read(&counter).map_err(Error::io("read the counter file"))?;
    let Some(last) = bytes.len().checked_sub(2) else {
        return Err(Error::TooShort { path: counter });
    };
    bytes[last] ^= 0x01;
    std::fs::write(&damaged, &bytes).map_err(Error::io("write the damaged copy"))?;
    let damage = match opts().read(&damaged) {
        Err(e) if e.is_corrupt() => Some(e.to_string()),
        Err(e) => return Err(e.into()),
        Ok(_) => None,
    };
    Ok(FileLayerReport {
        expected: u64::from(workers) * u64::from(updates),
        counted: total.value,
        elapsed,
        churned,
        intact,
        removed: recovered.removed.len(),
        damage,
    })
}

/// The work of one counting worker: `updates` locked read-modify-writes of the counter file
/// at `path`, each adding one.
pub fn count(path: &Path, updates: u32) -> Result<()> {
    for _ in 0..updates {
        opts().update_value(path, Format::Json, |old: Option<Counter>| {
            let mut c = old.unwrap_or_default();
            c.value += 1;
            Ok::<_, atomic_file::Error>(c)
        })?;
    }
    Ok(())
}

/// The work of the writer that is killed: replaces the 1 MiB file at `path` again and again,
/// until it is killed. Returns only with the error of a failed write.
pub fn churn(path: &Path) -> Result<()> {
    let mut data = vec![0u8; 1 << 20];
    let mut version = 0u8;
    loop {
        version = version.wrapping_add(1);
        data.fill(version);
        opts().write(path, &data)?;
    }
}
