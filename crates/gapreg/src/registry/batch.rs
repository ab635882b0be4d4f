//! Batches: a batch's gap files are written all or nothing, even if the writer is killed
//! meanwhile. Each file goes to `staging/` first; the checksummed manifest `batch.pending`
//! commits the batch; then the files are renamed into `gaps/` and the manifest removed. A
//! writer killed before the manifest leaves only staged files (removed later); one killed
//! after it leaves a manifest that the next writer, reader or `doctor` completes.

use std::path::PathBuf;

use atomic_file::dir::FileKind;
use idreserve::Id;

use crate::error::{Error, ErrorKind, Result};
use crate::layout::{MAX_MANIFEST_BYTES, PENDING, STAGING};
use crate::model::Gap;

use super::files::Files;
use super::rules::{check_gap_id, encode_gap, gap_file};

impl Files {
    /// Before any id of a batch of `len` is reserved: the directories it needs exist (a
    /// planted link there is refused now), and what an earlier batch left in `staging/` at
    /// the `next` ids is a regular file (removed when the batch is written).
    pub(crate) fn prepare_batch(&self, len: usize, next: &[String]) -> Result<()> {
        let root = self.layout.root()?;
        self.gaps_dir(true)?;
        if len > 1 {
            self.clear_staging()?;
            let staging = root.create_dir(STAGING)?;
            for id in next {
                staging.file_exists(gap_file(id))?;
            }
        }
        Ok(())
    }

    /// Writes a batch's gap files all or nothing, even if this process is killed meanwhile:
    /// each file goes to `staging/` first; writing the manifest `batch.pending` commits the
    /// batch; then the files are renamed into `gaps/` and the manifest removed. A writer
    /// killed before the manifest leaves only staged files (removed later); one killed after
    /// it leaves a manifest that the next writer (or `doctor`) completes.
    ///
    /// Returns whether the batch is finished (its files all in `gaps/`, the manifest gone):
    /// only then may the index be told of it, so that a reader finding the index stale takes
    /// the lock and finishes the batch.
    pub(crate) fn write_gaps(&self, gaps: &[Gap]) -> Result<bool> {
        if let [gap] = gaps {
            self.write_gap_file(gap, None)?;
            return Ok(true);
        }
        let root = self.layout.root()?;
        self.clear_staging()?;
        // gaps/ must exist before the batch commits: finishing it only renames.
        self.gaps_dir(true)?;
        let staging = root.create_dir(STAGING)?;
        let staged = self.stage(&staging, gaps);
        let manifest: String = gaps.iter().map(|g| format!("{}\n", g.id)).collect();
        let checksummed = self.opts.clone().checksum(true);
        let committed =
            staged.and_then(|()| Ok(root.write(PENDING, manifest.as_bytes(), &checksummed)?));
        match committed {
            Ok(()) => {}
            // The manifest is in place but its durability is unconfirmed: take it back.
            Err(e) if is_sync_dir(&e) => {
                let _ = root.remove_file(PENDING);
                let _ = self.clear_staging();
                return Err(e);
            }
            Err(e) => {
                let _ = self.clear_staging();
                return Err(e);
            }
        }
        // Committed: the batch is filed. Moving the files is finished by the next writer or
        // reader if it fails here, so it cannot turn the answer into an error.
        if let Err(e) = self.finish_batch() {
            self.warn(&format!(
                "the batch is filed, but its files are not all in gaps/ yet ({e}); the next \
                 gapreg command finishes moving them"
            ));
            return Ok(false);
        }
        Ok(true)
    }

    /// Writes every gap's file into `staging/`, then makes them durable together: one
    /// `syncfs` on Linux (one journal commit and one device flush for the whole batch,
    /// where an `fsync` per file costs one each), else an `fsync` per file and one of
    /// `staging/`. Nothing is visible in `gaps/` yet: the manifest written after this
    /// commits the batch.
    fn stage(&self, staging: &atomic_file::dir::Dir, gaps: &[Gap]) -> Result<()> {
        let mut files = Vec::with_capacity(gaps.len());
        for gap in gaps {
            let yaml = encode_gap(gap)?;
            let name = gap_file(&gap.id);
            let path = staging.join(&name);
            // `clear_staging` removed what an earlier batch left, so the name is free.
            let mut file = staging
                .create_new(&name, 0o666)?
                .ok_or_else(|| Error::corrupt(&path, "a staged file appeared meanwhile"))?;
            std::io::Write::write_all(&mut file, yaml.as_bytes())
                .map_err(|e| Error::io("write", &path, e))?;
            files.push((file, path));
        }
        if !self.durable {
            return Ok(());
        }
        if cfg!(target_os = "linux") {
            return Ok(staging.sync_filesystem()?);
        }
        for (file, path) in &files {
            file.sync_all().map_err(|e| Error::io("sync", path, e))?;
        }
        Ok(staging.sync()?)
    }

    /// For a reader outside the lock: if a committed batch is still in flight (its writer
    /// could not finish moving it, or died), finishes it under the lock first, so that every
    /// gap of a batch that was answered with success is there to read. A read-only checkout
    /// (no lock to be had) reads what is there.
    pub(crate) fn settle(&self) -> Result<()> {
        if self.layout.root()?.kind(PENDING)?.is_none() {
            return Ok(());
        }
        match self.lock_only() {
            Ok(_guard) => {
                self.finish_batch()?;
                Ok(())
            }
            Err(e) if e.is_contended() => Err(e),
            Err(_) => Ok(()),
        }
    }

    /// Under the lock: moves the files of a committed batch (`batch.pending`) from `staging/`
    /// into `gaps/` and removes the manifest. Returns whether there was one.
    pub(crate) fn finish_batch(&self) -> Result<bool> {
        let pending = self.dir.join(PENDING);
        let root = self.layout.root()?;
        let checksummed = atomic_file::Options::new().checksum(true);
        let Some(manifest) = root.read_with(PENDING, &checksummed, MAX_MANIFEST_BYTES)? else {
            return Ok(false);
        };
        let manifest = String::from_utf8(manifest)
            .map_err(|_| Error::corrupt(&pending, "the manifest is not UTF-8"))?;
        let ids: Vec<&str> = manifest.lines().filter(|l| !l.is_empty()).collect();
        for id in &ids {
            check_gap_id(id).map_err(|_| {
                Error::corrupt(&pending, format!("{id:?} is not a gap id; remove the file"))
            })?;
        }
        let gaps = self
            .gaps_dir(true)?
            .ok_or_else(|| Error::invalid("gaps", "missing"))?;
        if let Some(staging) = root.open_dir(STAGING)? {
            for id in &ids {
                // `false`: moved before the previous writer died.
                staging.rename_file(gap_file(id), &gaps, gap_file(id))?;
            }
        }
        // Make the renames durable before the manifest goes.
        if self.durable {
            gaps.sync()?;
        }
        root.remove_file(PENDING)?;
        Ok(true)
    }

    /// Under the lock, with no manifest: removes staged files of batches that never
    /// committed. Returns what was removed.
    ///
    /// Only regular files named like a staged gap (`<ID>.yaml`) or a dead writer's temp file
    /// are removed, by name inside `staging/` itself; anything else there is left alone and
    /// reported by `doctor`.
    pub(crate) fn clear_staging(&self) -> Result<Vec<PathBuf>> {
        let Some(staging) = self.layout.sub(STAGING, false)? else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for entry in staging.entries()? {
            if entry.kind != FileKind::File || !is_staged_name(&entry.name) {
                continue;
            }
            if staging.remove_file(&entry.name)? {
                removed.push(staging.join(&entry.name));
            }
        }
        removed.extend(staging.recover(true)?.removed);
        removed.sort();
        Ok(removed)
    }
}

/// Whether `e` is a write that failed at its last step: the directory `fsync` after the
/// rename, when the new file is in place but not known to be durable.
pub(crate) fn is_sync_dir(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::File(f) if f.step() == Some(atomic_file::Step::SyncDir))
}

/// Names `clear_staging` may remove: a staged gap file or one of atomic-file's temp files.
pub(crate) fn is_staged_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_suffix(".yaml"))
        .is_some_and(|stem| stem.parse::<Id>().is_ok())
}
