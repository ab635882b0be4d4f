//! The store's two files as entries of its directory: what each wrong or missing entry
//! means, reading `config.yaml`, the unlocked read of `counters.log`, and the migration of a
//! first-release config.
//!
//! The pairing rule: creation writes the log (with its header) before the config, so a
//! config without a log was damaged (the counters are lost and never restarted from zero),
//! and a log without a config is either a creation that died between the two writes (a log
//! holding only its header, finished by the next `create`) or damage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use atomic_file::Options;
use atomic_file::dir::{Dir, FileKind};

use super::Store;
use crate::config;
use crate::error::{Error, ErrorKind, wrong_type};
use crate::files::{CONFIG_FILE, LOG_FILE};
use crate::log::{self, Scan};
use crate::sync::unmodelled::sleep;

/// Reads of the log without the lock that are retried when they find damage: a read that
/// races with a writer's `pwrite` can see a slot half old, half new.
const READ_ATTEMPTS: u32 = 4;

/// Maps an [`atomic_file::dir::Dir::open`] failure of the store directory.
pub(super) fn open_error(path: &Path, e: atomic_file::Error) -> Error {
    if e.is_not_found() {
        Error::new(ErrorKind::NoStore { dir: path.into() })
    } else {
        Error::store_file(e)
    }
}

/// Checks that `name` in `dir` is a regular file or absent.
pub(super) fn file_kind(dir: &Dir, name: &str) -> Result<bool, Error> {
    match dir.kind(name).map_err(Error::store_file)? {
        None => Ok(false),
        Some(FileKind::File) => Ok(true),
        Some(kind) => Err(Error::corrupt(
            dir.join(name),
            wrong_type(kind, FileKind::File),
        )),
    }
}

pub(super) fn too_many(e: log::EncodeError) -> Error {
    match e {
        log::EncodeError::TooManyPrefixes(count) => Error::new(ErrorKind::TooManyPrefixes {
            count,
            max: log::MAX_PREFIXES,
        }),
        // Every prefix of a store was checked before it was recorded.
        log::EncodeError::InvalidPrefix(prefix) => Error::new(ErrorKind::InvalidPrefix {
            prefix,
            reason: "it cannot be recorded",
        }),
    }
}

pub(crate) fn missing_log(dir: &Dir) -> Error {
    Error::corrupt(
        dir.join(LOG_FILE),
        "it is missing while the store's config.yaml exists (a store's log is written \
         before its config, so it was removed): the counters are lost and are never \
         restarted from zero, which would hand out every ID again",
    )
}

pub(crate) fn missing_config(dir: &Dir) -> Error {
    Error::corrupt(
        dir.join(CONFIG_FILE),
        "it is missing while the store's counters.log exists; write it again (`version: 2`, \
         and the store's `allow` and `width` if it had them): defaults are never assumed",
    )
}

pub(crate) fn read_config(dir: &Dir) -> Result<config::Parsed, Error> {
    let data = dir
        .read(CONFIG_FILE, config::MAX_LEN)
        .map_err(Error::store_file)?
        .ok_or_else(|| missing_config(dir))?;
    config::parse(&dir.join(CONFIG_FILE), &data)
}

/// Whether the log of `dir` is a valid version-2 log without a record.
pub(super) fn header_only(dir: &Dir) -> Result<bool, Error> {
    let Some(data) = dir
        .read(LOG_FILE, log::MAX_LEN)
        .map_err(Error::store_file)?
    else {
        return Ok(false);
    };
    Ok(log::scan(&data, false).is_ok_and(|s| s.records == 0 && !s.interrupted))
}

impl Store {
    pub(super) fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// Reads the log without the lock. A damaged read is retried a few times: it may have
    /// raced with a writer's `pwrite` of one slot (a reader can see a slot half written).
    pub(super) fn read_log(&self) -> Result<Scan, Error> {
        let mut attempt = 0;
        loop {
            let data = self
                .dir
                .read(LOG_FILE, log::MAX_LEN)
                .map_err(Error::store_file)?
                .ok_or_else(|| missing_log(&self.dir))?;
            match log::scan(&data, self.legacy) {
                Ok(scan) => return Ok(scan),
                Err(damage) if damage.in_next_slot && attempt + 1 < READ_ATTEMPTS => {
                    // 0.2, 1, 5 ms: a 64-byte write takes microseconds.
                    sleep(Duration::from_micros(200 * 5u64.pow(attempt)));
                    attempt += 1;
                }
                Err(damage) => return Err(Error::corrupt(self.log_path(), damage.to_string())),
            }
        }
    }

    /// After a migrated log: adds `version: 2` to a first-release `config.yaml` (under the
    /// lock, after the log is in version 2, so a crash in between leaves a readable store).
    pub(super) fn finish_migration(&self) -> Result<(), Error> {
        let path = self.dir.join(CONFIG_FILE);
        let old = self
            .dir
            .read(CONFIG_FILE, config::MAX_LEN)
            .map_err(Error::store_file)?
            .ok_or_else(|| missing_config(&self.dir))?;
        let parsed = config::parse(&path, &old)?;
        if parsed.legacy {
            let new = config::with_version(&path, &old, &parsed.config)?;
            self.dir
                .write(CONFIG_FILE, &new, &Options::new())
                .map_err(Error::store_file)?;
        }
        Ok(())
    }
}
