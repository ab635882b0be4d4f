//! Listing against Taskwarrior, whole processes, interleaved, at 10,000 gaps and tasks (issue
//! 13): `gapreg list --json` against `task export` (both print every item as JSON; target
//! ≤ 0.4×). Filing is `taskwarrior_file.rs`; the tools' setup is `gapreg_benches::whole`.
//!
//! Both tools are seeded to exactly 10,000 (`gapreg file --batch` and `task import`, 1,000 at
//! a time) and nothing changes while measuring. 20 rounds after 2 warm-up rounds; in a round
//! every competitor runs once, the order rotated every round, each timed from spawn to exit
//! with its whole standard output read through a pipe:
//!
//! - `gapreg list --json` and `gapreg list` (the human table, for context);
//! - `task export`;
//! - `floor-read`: this binary re-executed to read gapreg's `index.log` and write it to
//!   standard output — the least a listing from that cache can do;
//! - `library list` (in this process, not a process): `Registry::open` and `list_checked`
//!   of every gap, to tell the library's share from the CLI's.
//!
//! Every output is checked (10,000 gaps or tasks) outside the timing. `cargo bench -p
//! gapreg-benches --bench taskwarrior_list` (about 30 s). Under `cargo test --benches`: 200
//! items, one round.

use std::fs;
use std::time::Instant;

use gapreg::{Filter, Registry};
use gapreg_benches::interleave;
use gapreg_benches::process::run_timed;
use gapreg_benches::run::count_label;
use gapreg_benches::whole::{self, Floor, count_of, ratio_table, target_table};

/// Issue 13's target.
const TARGET_LIST: f64 = 0.4;

fn main() {
    let names = &["taskwarrior_list/export"];
    let tmp = env!("CARGO_TARGET_TMPDIR");
    let Some((mode, scratch, gapreg, task)) = whole::start("taskwarrior_list", names, tmp) else {
        return;
    };
    let dir = scratch.path();
    let n = mode.pick(10_000, 200);
    let (warm_up, rounds) = mode.pick((2, 20), (0, 1));
    whole::seed(&gapreg, Some(&task), n, mode.pick(1000, 50), dir);
    let index = gapreg.index();
    let index_len = fs::metadata(&index).expect("stat index.log").len() as usize;

    let names = [
        "gapreg list --json",
        "gapreg list",
        "task export",
        Floor::Read.name(),
        "library list",
    ];
    let series = interleave::run(&names, warm_up, rounds, |i, _| {
        if i == 4 {
            let start = Instant::now();
            let reg = Registry::open(&gapreg.registry).expect("open the registry");
            let listed = reg.list_checked(&Filter::default()).expect("list");
            let took = start.elapsed();
            assert_eq!(listed.value.len(), n, "library list");
            return vec![took];
        }
        let mut cmd = match i {
            0 => gapreg.list_json(),
            1 => gapreg.list(),
            2 => task.export(),
            _ => Floor::Read.command(&index, 0, 0),
        };
        let (took, out) = run_timed(&mut cmd);
        let found = match i {
            0 => count_of(&out, "\"id\":\""),
            1 => out.iter().filter(|&&b| b == b'\n').count() - 1,
            2 => count_of(&out, "\"uuid\":\""),
            _ => n * (out.len() == index_len) as usize,
        };
        assert_eq!(found, n, "{} printed {found} items", names[i]);
        vec![took]
    });

    let targets = target_table(&[(
        format!("`gapreg list --json` ≤ {TARGET_LIST} × `task export`"),
        &series[0],
        &series[2],
        TARGET_LIST,
    )]);
    mode.note();
    println!(
        "\n### Listing {} gaps and tasks ({rounds} rounds; index.log {} KiB)\n\n{}\n\
         ### Target (issue 13)\n\n{targets}\nTaskwarrior {}.",
        count_label(n),
        index_len / 1024,
        ratio_table(&series, 2, 3),
        task.version(),
    );
}
