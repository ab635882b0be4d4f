//! Many processes updating one file at once never lose an update, and readers never see a torn
//! file.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use atomic_file::{Error, Format, Options};
use serde::{Deserialize, Serialize};

use crate::util::{child_param, spawn_child, temp_files};

const WRITERS: usize = 8;
const UPDATES_PER_WRITER: u64 = 250;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    value: u64,
    /// Grows with every update so files differ in length and a torn read would show.
    history: Vec<u32>,
}

fn opts() -> Options {
    Options::new().checksum(true)
}

#[test]
fn concurrent_updaters_in_processes_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("counter.json");
    let children: Vec<_> = (0..WRITERS)
        .map(|i| {
            spawn_child(
                "multiprocess::child_updater",
                &format!("{}|{i}", path.display()),
            )
        })
        .collect();

    // Meanwhile this process reads the file as fast as it can: every read must be a complete,
    // checksum-valid version, and the values a reader sees never go backwards.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut reads, mut last) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                match opts().read_value::<Counter>(&path, Format::Json) {
                    Ok(c) => {
                        assert!(
                            c.value >= last,
                            "counter went back from {last} to {}",
                            c.value
                        );
                        assert_eq!(c.history.len() as u64, c.value, "inconsistent version");
                        last = c.value;
                        reads += 1;
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => panic!("reader saw a broken file: {e}"),
                }
            }
            reads
        })
    };

    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "updater failed: {:?}", out.status);
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader thread");
    let counter: Counter = opts().read_value(&path, Format::Json).expect("final read");
    assert_eq!(
        counter.value,
        WRITERS as u64 * UPDATES_PER_WRITER,
        "updates were lost"
    );
    assert_eq!(counter.history.len() as u64, counter.value);
    for writer in 0..WRITERS as u32 {
        let n = counter.history.iter().filter(|&&w| w == writer).count() as u64;
        assert_eq!(n, UPDATES_PER_WRITER, "writer {writer} lost updates");
    }
    assert!(reads > 0, "the reader never saw the file");
    assert!(temp_files(dir.path()).is_empty(), "temp files left behind");
}

#[test]
#[ignore = "child process of concurrent_updaters_in_processes_lose_nothing"]
fn child_updater() {
    let Some(param) = child_param() else { return };
    let (path, id) = param.rsplit_once('|').expect("path|id");
    let (path, id): (PathBuf, u32) = (path.into(), id.parse().expect("id"));
    for _ in 0..UPDATES_PER_WRITER {
        opts()
            .update_value(&path, Format::Json, |old: Option<Counter>| {
                let mut c = old.unwrap_or_default();
                c.value += 1;
                c.history.push(id);
                Ok::<_, Error>(c)
            })
            .expect("update");
    }
}
