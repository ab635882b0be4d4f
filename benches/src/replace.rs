//! The durable-replace competitors: payload sizes, deterministic payload bytes, each
//! competitor's own directory ([`Slot`]) and the [`Competitor`]s themselves (used by
//! `benches/atomic_replace.rs` and by the interleaved runner `examples/replace_interleaved.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use atomicwrites::{AtomicFile, OverwriteBehavior};
use tempfile::NamedTempFile;

/// One KiB.
pub const KIB: usize = 1024;
/// One MiB.
pub const MIB: usize = 1024 * KIB;

/// The file sizes the replace benchmarks run at: a small config file, a medium state file and
/// a large blob.
pub const REPLACE_SIZES: [usize; 3] = [KIB, 64 * KIB, 4 * MIB];

/// A short human label for a byte count: `1KiB`, `64KiB`, `4MiB`, or `N B` when the count is
/// not a whole number of KiB.
pub fn size_label(len: usize) -> String {
    if len >= MIB && len % MIB == 0 {
        format!("{}MiB", len / MIB)
    } else if len >= KIB && len % KIB == 0 {
        format!("{}KiB", len / KIB)
    } else {
        format!("{len}B")
    }
}

/// `len` deterministic, incompressible-looking bytes (an xorshift stream with a fixed seed), so
/// every competitor writes exactly the same contents and no file system can shortcut them.
pub fn payload(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A competitor's own directory inside a benchmark's scratch directory, holding the target file
/// it replaces on every iteration.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The competitor's directory (its own, so no competitor's leftovers or directory size
    /// affect another's directory `fsync`).
    pub dir: PathBuf,
    /// The file replaced on every iteration.
    pub target: PathBuf,
}

impl Slot {
    /// Creates `scratch/name/` and in it a target file `state.bin` holding `initial`, so that
    /// the first timed write already replaces an existing file. The initial contents are synced,
    /// so the write-back of the setup does not land in the first samples.
    pub fn create(scratch: &Path, name: &str, initial: &[u8]) -> io::Result<Slot> {
        let dir = scratch.join(name);
        fs::create_dir_all(&dir)?;
        let target = dir.join("state.bin");
        fs::write(&target, initial)?;
        fs::File::open(&target)?.sync_all()?;
        fs::File::open(&dir)?.sync_all()?;
        Ok(Slot { dir, target })
    }
}

/// One way of durably replacing an existing file: the file's new contents are synced before
/// the rename and the directory after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Competitor {
    /// `atomic_file::write` with its default (full) durability.
    AtomicFile,
    /// `atomic_file::write_checksummed`: the same plus a CRC-32 header line.
    AtomicFileChecksummed,
    /// The `atomicwrites` crate: `AtomicFile::new(path, AllowOverwrite).write(..)`, which
    /// writes in a fresh temp subdirectory and `fsync`s the file and both directories.
    Atomicwrites,
    /// The `tempfile` crate's recipe: `NamedTempFile::new_in(dir)`, `write_all`, `sync_all`,
    /// `persist`, then an `fsync` of the directory.
    Tempfile,
    /// The raw syscalls with no checks: open a fixed temp name (create, truncate), `write_all`,
    /// `fdatasync`, rename over the target, open the directory and `fsync` it. The least a
    /// durable replace can do.
    Floor,
    /// [`Competitor::Floor`] with `fsync` instead of `fdatasync`, as `atomic-file` syncs (so
    /// that the permission bits it copies onto the temp file are durable too).
    FloorFsync,
}

impl Competitor {
    /// Every competitor, in the order the benchmarks report them.
    pub const ALL: [Competitor; 6] = [
        Competitor::AtomicFile,
        Competitor::AtomicFileChecksummed,
        Competitor::Atomicwrites,
        Competitor::Tempfile,
        Competitor::Floor,
        Competitor::FloorFsync,
    ];

    /// The name used for benchmark ids and directories.
    pub fn name(self) -> &'static str {
        match self {
            Competitor::AtomicFile => "atomic-file",
            Competitor::AtomicFileChecksummed => "atomic-file-checksummed",
            Competitor::Atomicwrites => "atomicwrites",
            Competitor::Tempfile => "tempfile",
            Competitor::Floor => "floor",
            Competitor::FloorFsync => "floor-fsync",
        }
    }

    /// Durably replaces `slot`'s target with `data`.
    pub fn replace(self, slot: &Slot, data: &[u8]) -> io::Result<()> {
        match self {
            Competitor::AtomicFile => Ok(atomic_file::write(&slot.target, data)?),
            Competitor::AtomicFileChecksummed => {
                Ok(atomic_file::write_checksummed(&slot.target, data)?)
            }
            Competitor::Atomicwrites => {
                AtomicFile::new(&slot.target, OverwriteBehavior::AllowOverwrite)
                    .write(|file| file.write_all(data))?;
                Ok(())
            }
            Competitor::Tempfile => {
                let mut temp = NamedTempFile::new_in(&slot.dir)?;
                temp.write_all(data)?;
                temp.as_file().sync_all()?;
                temp.persist(&slot.target).map_err(|e| e.error)?;
                File::open(&slot.dir)?.sync_all()
            }
            Competitor::Floor | Competitor::FloorFsync => {
                let temp = slot.dir.join("state.bin.tmp");
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&temp)?;
                file.write_all(data)?;
                if self == Competitor::Floor {
                    file.sync_data()?;
                } else {
                    file.sync_all()?;
                }
                fs::rename(&temp, &slot.target)?;
                drop(file);
                File::open(&slot.dir)?.sync_all()
            }
        }
    }

    /// Reads `slot`'s target back and fails unless it holds exactly `data` (checksummed
    /// competitors: a valid header and `data` after it), so that every competitor is known to
    /// have written the bytes it was timed for.
    pub fn check(self, slot: &Slot, data: &[u8]) -> io::Result<()> {
        let found = match self {
            Competitor::AtomicFileChecksummed => atomic_file::read_checksummed(&slot.target)?,
            _ => fs::read(&slot.target)?,
        };
        if found == data {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} left wrong contents in {}",
                self.name(),
                slot.target.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(size_label(KIB), "1KiB");
        assert_eq!(size_label(64 * KIB), "64KiB");
        assert_eq!(size_label(4 * MIB), "4MiB");
        assert_eq!(size_label(1000), "1000B");
        assert_eq!(size_label(1536), "1536B");
    }

    #[test]
    fn payload_is_deterministic_and_exact() {
        for len in [0, 1, 7, 8, 9, KIB, 64 * KIB + 3] {
            let a = payload(len);
            assert_eq!(a.len(), len);
            assert_eq!(a, payload(len));
        }
        assert_ne!(payload(64)[..32], payload(64)[32..]);
    }

    #[test]
    fn every_competitor_replaces_an_existing_file() -> io::Result<()> {
        let scratch = tempfile::tempdir()?;
        let old = payload(100);
        let new = payload(5000);
        for competitor in Competitor::ALL {
            let slot = Slot::create(scratch.path(), competitor.name(), &old)?;
            for _ in 0..2 {
                competitor.replace(&slot, &new)?;
                competitor.check(&slot, &new)?;
            }
            let names = fs::read_dir(&slot.dir)?.count();
            assert_eq!(names, 1, "{} left files behind", competitor.name());
        }
        Ok(())
    }
}
