//! `gapreg demo-write`: the main job until the registry lands. Real processes update one
//! checksummed file at once, a writer is killed mid-write, and the results are verified.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atomic_file::{Format, Options};

use crate::output::{eprint_escaped, escape, escape_path, print_line};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The counter file the workers share.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    value: u64,
}

fn opts() -> Options {
    Options::new().checksum(true)
}

/// Runs the demo with `workers` processes doing `updates` each.
pub fn run(workers: u32, updates: u32) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("gapreg-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let outcome = run_in(&dir, workers, updates);
    std::fs::remove_dir_all(&dir)?;
    outcome
}

fn run_in(dir: &Path, workers: u32, updates: u32) -> Result<()> {
    let exe = std::env::current_exe()?;
    let counter = dir.join("counter.json");
    eprint_escaped(&format!(
        "gapreg: {workers} processes x {updates} locked updates of {}",
        counter.display()
    ));
    let started = Instant::now();
    let children = (0..workers)
        .map(|_| {
            Command::new(&exe)
                .args(["demo-worker", "count"])
                .arg(&counter)
                .arg(updates.to_string())
                .stdin(Stdio::null())
                .spawn()
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a worker failed: {status}").into());
        }
    }
    let total: Counter = opts().read_value(&counter, Format::Json)?;
    let expected = u64::from(workers) * u64::from(updates);
    print_line(&format!(
        "updates: {} of {expected} counted in {:.2?} ({})",
        total.value,
        started.elapsed(),
        if total.value == expected {
            "none lost"
        } else {
            "LOST UPDATES"
        }
    ))?;

    let big = dir.join("big.bin");
    let mut writer = Command::new(&exe)
        .args(["demo-worker", "churn"])
        .arg(&big)
        .stdin(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(150));
    writer.kill()?;
    writer.wait()?;
    let intact = opts().read(&big).map(|_| "one complete version");
    let report = atomic_file::recover(dir)?;
    print_line(&format!(
        "kill -9 mid-write: {} left {}; recovery removed {} leftover temp file(s)",
        escape_path(&big),
        intact.as_ref().map_or("a damaged file", |s| s),
        report.removed.len()
    ))?;

    let damaged = dir.join("damaged.json");
    let mut bytes = std::fs::read(&counter)?;
    let Some(last) = bytes.len().checked_sub(2) else {
        return Err(format!("{} is too short to damage", escape_path(&counter)).into());
    };
    bytes[last] ^= 0x01;
    std::fs::write(&damaged, &bytes)?;
    match opts().read(&damaged) {
        Err(e) if e.is_corrupt() => {
            print_line(&format!("bit flip detected: {}", escape(&e.to_string())))?
        }
        other => return Err(format!("a bit flip went unnoticed: {other:?}").into()),
    }
    if total.value != expected || intact.is_err() {
        return Err("verification failed".into());
    }
    print_line("verified: no update lost, no torn file, damage reported")?;
    Ok(())
}

/// A worker process of the demo.
pub fn worker(role: &str, path: &Path, count: u32) -> Result<()> {
    match role {
        "count" => {
            for _ in 0..count {
                opts().update_value(path, Format::Json, |old: Option<Counter>| {
                    let mut c = old.unwrap_or_default();
                    c.value += 1;
                    Ok::<_, atomic_file::Error>(c)
                })?;
            }
            Ok(())
        }
        "churn" => {
            let mut data = vec![0u8; 1 << 20];
            for v in 0u8.. {
                data.fill(v);
                opts().write(path, &data)?;
            }
            Ok(())
        }
        other => Err(format!("unknown demo worker role {other:?}").into()),
    }
}
