//! Durable replacement of an existing file: `atomic-file` against its peers and the syscall
//! floor.
//!
//! One criterion group per file size (`replace/1KiB`, `replace/64KiB`, `replace/4MiB`); in each,
//! every [`Competitor`] replaces its own existing file with the same bytes, durably (file synced
//! before the rename, directory synced after it):
//!
//! - `atomic-file`: `atomic_file::write` (full durability, the default).
//! - `atomic-file-checksummed`: `atomic_file::write_checksummed`, to show the checksum's cost.
//! - `atomicwrites`: `AtomicFile::new(path, AllowOverwrite).write(..)` (fsyncs file and dirs).
//! - `tempfile`: `NamedTempFile::new_in`, `write_all`, `sync_all`, `persist`, directory `fsync`.
//! - `floor`: the raw syscalls with no checks: open a fixed temp name (create, truncate),
//!   `write_all`, `fdatasync` (the least a durable replace needs), rename, open the directory
//!   and `fsync` it.
//! - `floor-fsync`: the same with `fsync` instead of `fdatasync` (what `atomic-file` does, so
//!   that the permission bits it copies onto the temp file are durable too).
//!
//! Each iteration takes milliseconds (the disk's flush latency), so the groups use few samples
//! and short times; run with `cargo bench -p gapreg-benches --bench atomic_replace`. Criterion
//! runs the competitors one after another, so on a machine where other processes write to the
//! same disk the comparison drifts with their load; `examples/replace_interleaved.rs` times the
//! same competitors round-robin instead.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use gapreg_benches::{Competitor, REPLACE_SIZES, Slot, payload, size_label};

fn replace(c: &mut Criterion) {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).expect("create CARGO_TARGET_TMPDIR");

    for len in REPLACE_SIZES {
        let data = payload(len);
        let scratch = tempfile::Builder::new()
            .prefix("atomic_replace-")
            .tempdir_in(base)
            .expect("create a scratch dir under CARGO_TARGET_TMPDIR");

        let mut group = c.benchmark_group(format!("replace/{}", size_label(len)));
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Bytes(len as u64));

        for competitor in Competitor::ALL {
            let name = competitor.name();
            let slot = Slot::create(scratch.path(), name, &data)
                .expect("create a competitor's target file");
            group.bench_function(name, |b| {
                b.iter(|| {
                    competitor
                        .replace(&slot, black_box(&data))
                        .unwrap_or_else(|e| panic!("{name}: durable replace failed: {e}"))
                });
                // Untimed, and only for benchmarks that a command-line filter did not skip.
                competitor
                    .check(&slot, &data)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            });
        }

        group.finish();
    }
}

criterion_group!(benches, replace);
criterion_main!(benches);
