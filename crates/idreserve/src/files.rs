//! The names of the files a store keeps in its directory: the one place this crate spells
//! them, exported so that a tool laying out a larger directory (gapreg's `layout` module, a
//! `.gitignore`) cites them instead of spelling them again.
//!
//! The table is [`FILES`]; the names are re-exported at the crate root.

/// The store's settings, `config.yaml`: written once at creation (after the log), read at
/// every open. Belongs in version control.
pub const CONFIG_FILE: &str = "config.yaml";
/// The counters, `counters.log`. Belongs in version control: it is what keeps IDs from
/// being handed out twice.
pub const LOG_FILE: &str = "counters.log";
/// The store's lock file, `counters.lock`: local state, not for version control.
pub const LOCK_FILE: &str = "counters.lock";
/// The lock's queue directory, `counters.lock.queue` (the lock file's name and
/// [`leaselock::mutex::QUEUE_SUFFIX`]): local state, not for version control.
pub const QUEUE_DIR: &str = "counters.lock.queue";

/// One entry of a store directory, as listed in [`FILES`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFile {
    /// Its name inside the store directory.
    pub name: &'static str,
    /// Whether it is a directory (else a regular file).
    pub is_dir: bool,
    /// Whether it is part of the store's state that travels with a repository (committed to
    /// version control), as opposed to local coordination state of the processes using it.
    pub committed: bool,
    /// What it is for.
    pub purpose: &'static str,
}

/// Every entry a store creates in its directory (leftover temp files of dead writers aside).
///
/// | name | kind | belongs in version control | what it is |
/// |------|------|----------------------------|------------|
/// | [`CONFIG_FILE`] `config.yaml` | file | yes | the store's format version, allow-list and widths ([`Config`](crate::Config)) |
/// | [`LOG_FILE`] `counters.log` | file | yes | every prefix's counter (format in [`log`](crate::log)) |
/// | [`LOCK_FILE`] `counters.lock` | file | no | the lock every change of the log holds ([`leaselock::mutex::FileMutex`]) |
/// | [`QUEUE_DIR`] `counters.lock.queue/` | directory | no | that lock's first-come-first-served queue (leaselock's files inside) |
///
/// A writer that rewrites `counters.log` or `config.yaml` leaves, if it dies, a temp file
/// named by atomic-file (ending in [`atomic_file::TEMP_SUFFIX`]);
/// [`Store::remove_temp_files`](crate::Store::remove_temp_files) removes those. No other
/// entry is created.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let store = idreserve::Store::create(dir.path().join("ids"), idreserve::Config::default())?;
/// store.reserve("SEC", 1)?;
/// let mut names: Vec<String> = std::fs::read_dir(store.dir())?
///     .map(|e| Ok::<_, std::io::Error>(e?.file_name().to_string_lossy().into_owned()))
///     .collect::<Result<_, _>>()?;
/// names.sort();
/// let mut listed: Vec<&str> = idreserve::FILES.iter().map(|f| f.name).collect();
/// listed.sort();
/// assert_eq!(names, listed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const FILES: &[StoreFile] = &[
    StoreFile {
        name: CONFIG_FILE,
        is_dir: false,
        committed: true,
        purpose: "the store's format version, prefix allow-list and zero padding",
    },
    StoreFile {
        name: LOG_FILE,
        is_dir: false,
        committed: true,
        purpose: "every prefix's counter, in checksummed 64-byte slots",
    },
    StoreFile {
        name: LOCK_FILE,
        is_dir: false,
        committed: false,
        purpose: "the lock every change of the counters holds",
    },
    StoreFile {
        name: QUEUE_DIR,
        is_dir: true,
        committed: false,
        purpose: "the first-come-first-served queue of the lock's waiters",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_dir_is_what_the_mutex_uses() {
        assert_eq!(
            QUEUE_DIR,
            format!("{LOCK_FILE}{}", leaselock::mutex::QUEUE_SUFFIX)
        );
    }

    #[test]
    fn names_are_distinct_plain_components() {
        for (i, f) in FILES.iter().enumerate() {
            assert!(!f.name.contains('/') && !f.name.starts_with('.'), "{f:?}");
            assert!(FILES[..i].iter().all(|g| g.name != f.name), "{f:?}");
        }
    }
}
