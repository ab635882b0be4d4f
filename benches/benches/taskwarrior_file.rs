//! Filing against Taskwarrior, whole processes, interleaved, at 10,000 gaps and tasks (issue
//! 13): (a) one gap, `gapreg file`, against `task add` (target ≤ 0.25×); (b) a durable batch
//! of 1,000, `gapreg file --batch FILE`, against `task import FILE` of 1,000 (target ≤ 2×).
//! Listing is `taskwarrior_list.rs`; the tools' setup is `gapreg_benches::whole`.
//!
//! Both tools are seeded to 10,000 (`gapreg file --batch` and `task import`, 1,000 at a
//! time). Then (a) 30 rounds and (b) 10 rounds, each after 2 warm-up rounds; in a round every
//! competitor runs once, the order rotated every round, each a whole process timed from spawn
//! to exit. The floors are this binary re-executed: `floor-file-one` writes one gap-sized file
//! durably (temp, `fdatasync`, rename, directory `fsync`); `floor-batch-one-file` the 1,000
//! as one file the same way; `floor-batch-files` 1,000 files, all written, then each
//! `fdatasync`ed, each renamed, one directory `fsync`; `floor-batch-syncfs` the same with one
//! `syncfs` instead of the 1,000 `fdatasync`s (the shape of gapreg's batch writer). Batch files are written before the
//! timed spawn. Both tools grow while measured (reported); at the end each must hold exactly
//! what it was given.
//!
//! Needs the release binary (`cargo build --release -p gapreg-cli`, or `GAPREG_BIN`) and
//! `task`; without either it prints why and exits. `cargo bench -p gapreg-benches --bench
//! taskwarrior_file` (about a minute). Under `cargo test --benches`: 200 items, one round.

use std::fs;

use gapreg_benches::interleave;
use gapreg_benches::process::run_timed;
use gapreg_benches::run::count_label;
use gapreg_benches::whole::{self, Floor, gap_batch, ratio_table, target_table, task_batch};

/// Issue 13's targets.
const TARGET_ONE: f64 = 0.25;
const TARGET_BATCH: f64 = 2.0;

fn main() {
    let names = &["taskwarrior_file/one", "taskwarrior_file/batch"];
    let tmp = env!("CARGO_TARGET_TMPDIR");
    let Some((mode, scratch, gapreg, task)) = whole::start("taskwarrior_file", names, tmp) else {
        return;
    };
    let dir = scratch.path();
    let n = mode.pick(10_000, 200);
    let batch = mode.pick(1000, 50);
    let (warm_up, rounds_one, rounds_batch) = mode.pick((2, 30, 10), (0, 1, 1));
    whole::seed(&gapreg, Some(&task), n, batch, dir);

    // Item numbers: every competitor files new ones.
    let mut next = [n; 5];
    let floor_dir = dir.join("floor");
    let take = |next: &mut [usize; 5], i: usize, k: usize| {
        let from = next[i];
        next[i] += k;
        from
    };

    let one = interleave::run(
        &["gapreg file", "task add", Floor::FileOne.name()],
        warm_up,
        rounds_one,
        |i, _| {
            let item = take(&mut next, i, 1);
            let mut cmd = match i {
                0 => gapreg.file_one(item),
                1 => task.add(item),
                _ => Floor::FileOne.command(&floor_dir, item, 1),
            };
            vec![run_timed(&mut cmd).0]
        },
    );
    let (gaps_one, tasks_one) = (next[0], next[1]);

    let names = [
        "gapreg file --batch",
        "task import",
        Floor::BatchOneFile.name(),
        Floor::BatchFiles.name(),
        Floor::BatchSyncfs.name(),
    ];
    let file = dir.join("batch.json");
    let many = interleave::run(&names, warm_up, rounds_batch, |i, _| {
        let from = take(&mut next, i, batch);
        let mut cmd = match i {
            0 => {
                fs::write(&file, gap_batch(from, batch)).expect("write the batch");
                gapreg.file_batch(&file)
            }
            1 => {
                fs::write(&file, task_batch(from, batch)).expect("write the import");
                task.import(&file)
            }
            2 => Floor::BatchOneFile.command(&floor_dir.join("one-file"), from, batch),
            3 => Floor::BatchFiles.command(&floor_dir.join("files"), from, batch),
            _ => Floor::BatchSyncfs.command(&floor_dir.join("syncfs"), from, batch),
        };
        vec![run_timed(&mut cmd).0]
    });

    assert_eq!(
        gapreg.count(),
        next[0],
        "gapreg: every filed gap is listed once"
    );
    assert_eq!(
        task.count(),
        next[1],
        "taskwarrior: every task is exported once"
    );

    let targets = target_table(&[
        (
            format!("`gapreg file` ≤ {TARGET_ONE} × `task add`"),
            &one[0],
            &one[1],
            TARGET_ONE,
        ),
        (
            format!("`gapreg file --batch` of {batch} ≤ {TARGET_BATCH} × `task import`"),
            &many[0],
            &many[1],
            TARGET_BATCH,
        ),
    ]);
    mode.note();
    println!(
        "\n### One item ({} → {} gaps, {} → {} tasks; {} rounds)\n\n{}\n\
         ### A batch of {batch} ({} → {} gaps, {} → {} tasks; {} rounds)\n\n{}\n\
         ### Targets (issue 13)\n\n{targets}\nTaskwarrior {}.",
        count_label(n),
        gaps_one,
        count_label(n),
        tasks_one,
        rounds_one,
        ratio_table(&one, 1, 2),
        gaps_one,
        next[0],
        tasks_one,
        next[1],
        rounds_batch,
        ratio_table(&many, 1, 2),
        task.version(),
    );
}
