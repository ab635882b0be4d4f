//! Crash-safe, durable replacement of small files.
//!
//! Writing a file in place (`File::create` then `write`) leaves it empty or half-written if the
//! process dies or the power fails in between; two writers doing "read, change, write back" at
//! once lose one of the changes. This crate makes each of those impossible:
//!
//! - [`write`](fn@write) replaces a file **atomically and durably**: it creates a uniquely named temp file
//!   in the target's own directory (`O_EXCL`, random name), writes it, `fsync`s it, renames it
//!   over the target and `fsync`s the directory. A reader sees the complete old contents or the
//!   complete new ones; once `write` returns, the new contents survive a power cut. The
//!   replaced file's permission bits (and owner, where the process may set it) are kept; a new
//!   file gets `0o666 & !umask`. A symlink is followed: the file it points to is replaced and
//!   the link stays. On any error the target is untouched, the temp file is removed and the
//!   [`Error`] names the path and the [`Step`] that failed.
//! - [`write_checksummed`] / [`read_checksummed`] store a CRC-32 and the length in a header line
//!   of the same file (format in [`checksum`]), so a truncated, bit-flipped or hand-damaged file
//!   reads as [`ErrorKind::Corrupt`], never as garbage.
//! - [`write_json`], [`read_json`], [`write_yaml`], [`read_yaml`] (and [`Options::write_value`]
//!   / [`Options::read_value`] with a checksum) do the same for any `serde` value.
//! - [`update`] is a locked read-modify-write: it takes an exclusive advisory lock on a stable
//!   sibling lock file `.NAME.lock` (never on the data file, whose inode each rename replaces),
//!   reads, calls your closure, writes atomically and unlocks. Concurrent updaters in different
//!   processes never lose an update; waiting has a timeout that is its own error kind.
//! - [`recover`] removes the temp files of writers that were killed mid-write, and only those;
//!   [`recover_dry_run`] reports what it would remove.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("counters.json");
//!
//! atomic_file::write_json(&path, &BTreeMap::from([("SEC", 19)]))?;
//! atomic_file::update_json(&path, |old: Option<BTreeMap<String, u64>>| {
//!     let mut counters = old.unwrap_or_default();
//!     *counters.entry("SEC".into()).or_default() += 1;
//!     Ok::<_, atomic_file::Error>(counters)
//! })?;
//! let counters: BTreeMap<String, u64> = atomic_file::read_json(&path)?;
//! assert_eq!(counters["SEC"], 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Durability
//!
//! With [`Durability::Full`] (the default) a write is acknowledged only after, in this order:
//! `fsync` of the temp file (its data, size and copied mode reach the disk), `rename`, and `fsync` of the
//! directory (the new directory entry reaches the disk). A power cut before the directory
//! `fsync` leaves the old or the new file, both complete. [`Durability::NoSync`] skips both
//! syncs: still atomic against a crashing *process*, not against a crashing *machine* — for
//! caches and tests. If the directory `fsync` itself fails ([`Step::SyncDir`]), the new contents
//! are already in place but their durability is not confirmed.
//!
//! # Platforms
//!
//! Linux is first-class and tested. Other Unix systems use the same calls. On Windows an
//! existing file is replaced with `ReplaceFileW` and a new one created with `MoveFileExW`
//! (`MOVEFILE_WRITE_THROUGH`); that code compiles but is not tested by this project's CI.
//!
//! # YAML
//!
//! YAML support uses [`yaml_serde`](https://crates.io/crates/yaml_serde), the YAML
//! organization's maintained drop-in fork of the archived, unmaintained `serde_yaml`
//! (RUSTSEC-2024-0320). Serde does not keep comments; do not use these helpers to rewrite YAML
//! that people edit by hand.
#![deny(missing_docs)]

pub mod checksum;
#[cfg(unix)]
pub mod dir;
mod error;
mod imp;
pub mod lock;
pub mod process;
mod recover;
mod replace;
mod sync;
mod temp;
#[cfg(test)]
mod tests;
mod typed;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use checksum::Corruption;
pub use error::{Error, ErrorClass, ErrorKind, Result, Step};
pub use recover::{Recovery, recover, recover_dry_run};
pub use typed::Format;

use lock::{LockError, Wait};
use replace::Target;

/// How hard a write works to survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `fsync` the temp file before the rename and the directory after it. Once the
    /// call returns, the new contents survive a power cut.
    #[default]
    Full,
    /// No syncs: atomic against a crashing process, but a power cut may lose the write (or, on
    /// some file systems, leave an empty file). For caches and tests.
    NoSync,
}

/// Settings for reads and writes; the free functions use [`Options::new`].
///
/// ```
/// use atomic_file::{Durability, Options};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let opts = Options::new().checksum(true).lock_timeout(Duration::from_secs(5));
/// opts.write(dir.path().join("a.txt"), b"hello\n")?;
/// assert_eq!(opts.read(dir.path().join("a.txt"))?, b"hello\n");
///
/// let fast = Options::new().durability(Durability::NoSync);
/// fast.write(dir.path().join("cache.bin"), b"\x00\x01")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    durability: Durability,
    checksum: bool,
    lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// Full durability, no checksum, a 30 s lock timeout.
    pub fn new() -> Options {
        Options {
            durability: Durability::Full,
            checksum: false,
            lock_timeout: Duration::from_secs(30),
        }
    }

    /// Sets how writes are synced to disk.
    pub fn durability(mut self, durability: Durability) -> Options {
        self.durability = durability;
        self
    }

    /// Stores (on write) and requires (on read) the checksum header of [`checksum`].
    pub fn checksum(mut self, enabled: bool) -> Options {
        self.checksum = enabled;
        self
    }

    /// How long [`Options::update`] waits for another updater before failing with
    /// [`ErrorKind::LockTimeout`].
    pub fn lock_timeout(mut self, timeout: Duration) -> Options {
        self.lock_timeout = timeout;
        self
    }

    /// Atomically replaces (or creates) the file at `path` with `contents`.
    pub fn write(&self, path: impl AsRef<Path>, contents: &[u8]) -> Result<()> {
        let path = path.as_ref();
        if self.checksum {
            let header = checksum::header(contents);
            replace::replace(path, &[&header, contents], self.durability)
        } else {
            replace::replace(path, &[contents], self.durability)
        }
    }

    /// Reads the file at `path`, checking and removing the checksum header if enabled.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let path = path.as_ref();
        let mut data = std::fs::read(path).map_err(|e| Error::io(path, Step::Read, e))?;
        if self.checksum {
            let payload_len = checksum::decode(&data)
                .map_err(|c| Error::new(path, ErrorKind::Corrupt(c)))?
                .len();
            data.drain(..data.len() - payload_len);
        }
        Ok(data)
    }

    /// Encodes `value` as `format` and writes it like [`Options::write`].
    pub fn write_value<T: Serialize + ?Sized>(
        &self,
        path: impl AsRef<Path>,
        format: Format,
        value: &T,
    ) -> Result<()> {
        let path = path.as_ref();
        self.write(path, &format.encode(path, value)?)
    }

    /// Reads the file like [`Options::read`] and decodes it as `format`.
    pub fn read_value<T: DeserializeOwned>(
        &self,
        path: impl AsRef<Path>,
        format: Format,
    ) -> Result<T> {
        let path = path.as_ref();
        format.decode(path, &self.read(path)?)
    }

    /// Locked read-modify-write of raw bytes.
    ///
    /// Takes an exclusive lock on the sibling lock file `.NAME.lock` (waiting up to the lock
    /// timeout), reads the current contents (`None` if the file does not exist), calls `change`
    /// and atomically writes what it returns. If `change` fails, nothing is written and its
    /// error is returned. A corrupt file is an error, never treated as missing.
    ///
    /// `E` is your error type; it only needs `From<atomic_file::Error>`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("log.txt");
    /// let opts = atomic_file::Options::new();
    /// for line in ["one\n", "two\n"] {
    ///     opts.update(&path, |old| {
    ///         let mut data = old.unwrap_or_default();
    ///         data.extend_from_slice(line.as_bytes());
    ///         Ok::<_, atomic_file::Error>(data)
    ///     })?;
    /// }
    /// assert_eq!(std::fs::read(&path)?, b"one\ntwo\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn update<E>(
        &self,
        path: impl AsRef<Path>,
        change: impl FnOnce(Option<Vec<u8>>) -> std::result::Result<Vec<u8>, E>,
    ) -> std::result::Result<(), E>
    where
        E: From<Error>,
    {
        self.locked(path.as_ref(), |old| Ok((change(old)?, ())))
    }

    /// Locked read-modify-write of a typed value: like [`Options::update`], decoding the old
    /// contents as `format` and encoding the new value. Returns the value written.
    pub fn update_value<T, E>(
        &self,
        path: impl AsRef<Path>,
        format: Format,
        change: impl FnOnce(Option<T>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
    {
        let path = path.as_ref();
        self.locked(path, |old| {
            let old = old.map(|bytes| format.decode(path, &bytes)).transpose()?;
            let new = change(old)?;
            Ok((format.encode(path, &new)?, new))
        })
    }

    /// The read-modify-write protocol behind [`Options::update`] and
    /// [`Options::update_value`]: `change` returns the bytes to write and a result to pass on.
    fn locked<R, E: From<Error>>(
        &self,
        path: &Path,
        change: impl FnOnce(Option<Vec<u8>>) -> std::result::Result<(Vec<u8>, R), E>,
    ) -> std::result::Result<R, E> {
        let target = Target::resolve(path)?;
        let lock_path = target.lock_path();
        let lock_file = open_lock_file(&lock_path, &target)?;
        let locked = lock::with_exclusive(lock_file, Wait::within(self.lock_timeout), |_| {
            let old = match self.read(&target.path) {
                Ok(data) => Some(data),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(E::from(e)),
            };
            let (new, result) = change(old)?;
            self.write(&target.path, &new)?;
            Ok(result)
        });
        match locked {
            Ok(result) => result,
            Err(LockError::Busy { waited }) => Err(E::from(Error::new(
                path,
                ErrorKind::LockTimeout { lock_path, waited },
            ))),
            Err(LockError::Io(e)) => Err(E::from(Error::io(&lock_path, Step::Lock, e))),
        }
    }
}

/// Opens the update lock file (read-only is enough for `flock`, so a lock file made by another
/// user still works), creating it if it is missing.
fn open_lock_file(lock_path: &Path, target: &Target) -> Result<std::fs::File> {
    let fail = |e| Error::io(lock_path, Step::OpenLock, e);
    match std::fs::File::open(lock_path) {
        Ok(file) => return Ok(file),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        Err(_) => {}
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)
        .map_err(fail)?;
    if let Some(meta) = &target.meta {
        imp::share_lock_file(&file, meta);
    }
    Ok(file)
}

/// The suffix of every temp file this crate creates: `.NAME.PID-RANDOM.atomic-tmp` (so a
/// `.gitignore` line `.*.atomic-tmp` covers them; [`is_temp_name`] tells them exactly).
pub const TEMP_SUFFIX: &str = temp::SUFFIX;

/// The name of the sibling lock file that [`update`] creates beside the file named
/// `target_name`: `.NAME.lock` (shortened, with a checksum of the whole name, when that would
/// be longer than 255 bytes).
///
/// ```
/// assert_eq!(atomic_file::lock_file_name("ids.json".as_ref()), ".ids.json.lock");
/// ```
pub fn lock_file_name(target_name: &std::ffi::OsStr) -> std::ffi::OsString {
    temp::lock_name(target_name)
}

/// Whether `name` is one of this crate's temp file names (`.NAME.PID-RANDOM.atomic-tmp`), so
/// that other crates never match them by hand.
///
/// ```
/// assert!(atomic_file::is_temp_name(".a.json.42-0123456789abcdef.atomic-tmp".as_ref()));
/// assert!(!atomic_file::is_temp_name("a.json".as_ref()));
/// ```
pub fn is_temp_name(name: &std::ffi::OsStr) -> bool {
    temp::parse(name).is_some()
}

/// `fsync` of the directory at `path`: makes the creations, renames and removals inside it
/// durable. The one directory sync of the path API (every write here ends with it); inside a
/// [`dir::Dir`] use [`dir::Dir::sync`], which syncs the descriptor already open. A failure is
/// [`Step::SyncDir`] naming the directory.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::rename(
///     atomic_file::write(dir.path().join("a"), b"1").map(|()| dir.path().join("a"))?,
///     dir.path().join("b"),
/// )?;
/// atomic_file::sync_dir(dir.path())?; // the rename is durable now
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sync_dir(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    imp::sync_dir(path).map_err(|e| Error::io(path, Step::SyncDir, e))
}

/// Atomically and durably replaces (or creates) the file at `path` with `contents`.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("settings.json");
/// atomic_file::write(&path, b"{\"a\": 1}\n")?;
/// assert_eq!(std::fs::read(&path)?, b"{\"a\": 1}\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write(path: impl AsRef<Path>, contents: &[u8]) -> Result<()> {
    Options::new().write(path, contents)
}

/// Like [`write`](fn@write), storing a checksum header in the same file (see [`checksum`]).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("ids.txt");
/// atomic_file::write_checksummed(&path, b"SEC 20\n")?;
/// assert_eq!(std::fs::read_to_string(&path)?, "# atomic-file v1 len=7 crc32=77d9d43f\nSEC 20\n");
/// assert_eq!(atomic_file::read_checksummed(&path)?, b"SEC 20\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_checksummed(path: impl AsRef<Path>, contents: &[u8]) -> Result<()> {
    Options::new().checksum(true).write(path, contents)
}

/// Reads a file written by [`write_checksummed`], returning its payload, or
/// [`ErrorKind::Corrupt`] if it was truncated, altered or never checksummed.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("ids.txt");
/// atomic_file::write_checksummed(&path, b"SEC 20\n")?;
/// std::fs::write(&path, b"# atomic-file v1 len=7 crc32=77d9d43f\nSEC 21\n")?; // a hand edit
/// let err = atomic_file::read_checksummed(&path).unwrap_err();
/// assert!(err.is_corrupt(), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_checksummed(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    Options::new().checksum(true).read(path)
}

/// Writes `value` as pretty JSON, atomically and durably.
pub fn write_json<T: Serialize + ?Sized>(path: impl AsRef<Path>, value: &T) -> Result<()> {
    Options::new().write_value(path, Format::Json, value)
}

/// Reads a JSON file into a `T`; malformed JSON is [`ErrorKind::Decode`].
pub fn read_json<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
    Options::new().read_value(path, Format::Json)
}

/// Writes `value` as YAML, atomically and durably.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("config.yaml");
/// atomic_file::write_yaml(&path, &vec!["SEC", "GAP-OP"])?;
/// assert_eq!(atomic_file::read_yaml::<Vec<String>>(&path)?, ["SEC", "GAP-OP"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_yaml<T: Serialize + ?Sized>(path: impl AsRef<Path>, value: &T) -> Result<()> {
    Options::new().write_value(path, Format::Yaml, value)
}

/// Reads a YAML file into a `T`; malformed YAML is [`ErrorKind::Decode`].
pub fn read_yaml<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
    Options::new().read_value(path, Format::Yaml)
}

/// Locked read-modify-write of raw bytes with default [`Options`]; see [`Options::update`].
pub fn update<E: From<Error>>(
    path: impl AsRef<Path>,
    change: impl FnOnce(Option<Vec<u8>>) -> std::result::Result<Vec<u8>, E>,
) -> std::result::Result<(), E> {
    Options::new().update(path, change)
}

/// Locked read-modify-write of a JSON value with default [`Options`]; see
/// [`Options::update_value`].
pub fn update_json<T, E>(
    path: impl AsRef<Path>,
    change: impl FnOnce(Option<T>) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    T: Serialize + DeserializeOwned,
    E: From<Error>,
{
    Options::new().update_value(path, Format::Json, change)
}
