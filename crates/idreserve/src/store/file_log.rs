//! The counter log opened for writing under the store's lock: the file behind the
//! [`CounterLog`] the [`protocol`](crate::protocol) functions run over in production.
//!
//! **What makes a record durable.** A record is one 64-byte `pwrite` into the first free
//! slot, inside blocks that exist (the file's length never changes); the lock is released and
//! the file `fdatasync`ed before the caller may hand out its IDs ([`FileLog::commit`]). A log
//! with no free slot, or in the first release's format, is instead rewritten whole by
//! [`Dir::write`](atomic_file::dir::Dir::write) (temp file, `fsync`, rename, directory
//! `fsync`) under the lock. A record whose flush failed is never taken back: it is visible to
//! every reader, so the log is rewritten with at least its value.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use atomic_file::Options;
use leaselock::mutex::MutexGuard;

use super::Store;
use super::files::{missing_log, too_many};
use super::lock::lock;
use crate::error::Error;
use crate::files::LOG_FILE;
use crate::log::{self, Format, Record, Scan};
use crate::protocol::CounterLog;

impl Store {
    /// Takes the store's lock and opens its log for writing.
    pub(super) fn locked_log(&self) -> Result<FileLog<'_>, Error> {
        let guard = lock(&self.dir, &self.mutex, self.lock_timeout)?;
        FileLog::open(self, guard)
    }
}

/// The counter log file, opened under the store's lock.
pub(super) struct FileLog<'a> {
    store: &'a Store,
    path: PathBuf,
    file: File,
    /// The log as it is now, with this step's records.
    scan: Scan,
    /// Whether the log is rewritten at commit (no free slot left, or a legacy log).
    rewrite: bool,
    /// Records written into slots, not yet flushed.
    written: Vec<Record>,
    guard: MutexGuard,
}

impl<'a> FileLog<'a> {
    fn open(store: &'a Store, guard: MutexGuard) -> Result<FileLog<'a>, Error> {
        let dir = &store.dir;
        let path = store.log_path();
        // Opened without following anything; then again for writing, checked to be the same
        // file. Two opens because `Dir` opens read-write only with `O_CREAT` (`open_lock`),
        // which would create a log that was removed; a `Dir::open_rw` (read-write, never
        // creating, with the same checks) would make this one open.
        let checked = dir
            .open_file(LOG_FILE)
            .map_err(Error::store_file)?
            .ok_or_else(|| missing_log(dir))?;
        let file = dir.open_lock(LOG_FILE).map_err(Error::store_file)?;
        let same = |a: &File, b: &File| -> std::io::Result<bool> {
            let (a, b) = (a.metadata()?, b.metadata()?);
            Ok(a.dev() == b.dev() && a.ino() == b.ino())
        };
        if !same(&checked, &file).map_err(|e| Error::io("inspect", &path, e))? {
            return Err(Error::io(
                "open",
                &path,
                std::io::Error::other("the file was replaced while it was opened; retry"),
            ));
        }
        drop(checked);
        let data = read_bounded(&file, &path)?;
        let scan = log::scan(&data, store.legacy)
            .map_err(|damage| Error::corrupt(&path, damage.to_string()))?;
        Ok(FileLog {
            store,
            path,
            file,
            rewrite: scan.format == Format::Legacy,
            scan,
            written: Vec::new(),
            guard,
        })
    }

    /// Ends the locked step and makes every record durable before the caller may hand out its
    /// IDs.
    ///
    /// - A log without a free slot (or in the first release's format) is rewritten whole,
    ///   atomically and durably, still under the lock.
    /// - Otherwise the lock is released first and the records are flushed (`fdatasync`)
    ///   after: the next reservation can write while this flush runs, and one flush covers
    ///   every earlier write to the file, so concurrent reservations share flushes. Nothing is
    ///   handed out before its own record is flushed: if the power fails first, the
    ///   reservation never returned. A later writer that read this record from the page cache
    ///   and wrote above it returns only after its own flush.
    /// - If the flush fails, the records stay (they are visible to every reader, and no later
    ///   reservation goes below them) and the log is rewritten under the lock into new blocks
    ///   with a full `fsync`; only if that fails too is the error returned.
    pub(super) fn commit(self) -> Result<(), Error> {
        if self.rewrite {
            let bytes = log::encode(&self.scan.counters).map_err(too_many)?;
            self.store
                .dir
                .write(LOG_FILE, &bytes, &Options::new())
                .map_err(Error::store_file)?;
            if self.store.legacy {
                self.store.finish_migration()?;
            }
            return Ok(());
        }
        if self.store.legacy {
            // A log already in version 2 with a first-release config: a migration that died
            // between its two writes.
            self.store.finish_migration()?;
        }
        let FileLog {
            store,
            path,
            file,
            written,
            guard,
            ..
        } = self;
        drop(guard);
        if written.is_empty() {
            return Ok(());
        }
        let Err(flush) = file.sync_data() else {
            return Ok(());
        };
        drop(file);
        // The kernel may have dropped the pages it could not write: rewrite from what the log
        // holds now, with our records' values at least.
        let repaired = store.locked_log().and_then(|mut log| {
            for record in &written {
                let counter = log.scan.counters.entry(record.prefix.clone()).or_insert(0);
                *counter = (*counter).max(record.value);
            }
            log.rewrite = true;
            log.commit()
        });
        match repaired {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::io(
                "flush (fdatasync) the record written to",
                path,
                flush,
            )),
        }
    }
}

impl CounterLog for FileLog<'_> {
    fn counter(&mut self, prefix: &str) -> Result<u64, Error> {
        Ok(self.scan.counters.get(prefix).copied().unwrap_or(0))
    }

    fn append(&mut self, record: &Record) -> Result<(), Error> {
        let slot = if self.rewrite {
            None
        } else {
            self.scan.write_next(record)
        };
        match slot {
            Some((offset, bytes)) => {
                // One 64-byte write into blocks that exist: the file's length never changes.
                // (A log this fills up is rewritten by the next writer.)
                self.file
                    .write_all_at(&bytes, offset)
                    .map_err(|e| Error::io("write a record to", &self.path, e))?;
                self.written.push(record.clone());
            }
            None => {
                self.scan
                    .counters
                    .insert(record.prefix.clone(), record.value);
                self.rewrite = true;
            }
        }
        Ok(())
    }
}

/// Reads an open log whole, refusing one longer than any valid log before allocating.
fn read_bounded(file: &File, path: &Path) -> Result<Vec<u8>, Error> {
    let len = file
        .metadata()
        .map_err(|e| Error::io("inspect", path, e))?
        .len();
    let too_large = |len: u64| {
        Error::corrupt(
            path,
            format!(
                "it is {len} bytes, more than the {} bytes of the largest valid log; it was \
                 not read",
                log::MAX_LEN
            ),
        )
    };
    if len > log::MAX_LEN {
        return Err(too_large(len));
    }
    let mut data = Vec::with_capacity(len as usize);
    file.take(log::MAX_LEN + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::io("read", path, e))?;
    if data.len() as u64 > log::MAX_LEN {
        return Err(too_large(data.len() as u64));
    }
    Ok(data)
}
