//! Who holds the lock: the record a holder writes into the lock file after taking the lock.
//!
//! The record is one JSON line padded with spaces to [`RECORD_LEN`] bytes and written with a
//! single positional write at offset 0, so a reader that does not hold the lock sees either the
//! old record or the new one (a torn read just fails to parse and names no holder). Writing it
//! is best effort: a read-only lock file or a full disk never fails a lock that was taken.

use crate::sync::unmodelled::OnceLock;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use atomic_file::lock::Mode;

/// Bytes of a holder record, padding included.
pub(crate) const RECORD_LEN: usize = 256;

/// A holder of a [`FileMutex`](super::FileMutex), as the lock file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The holder's process id.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// When the holder took the lock (its wall clock).
    pub since: SystemTime,
    /// Whether it holds the lock shared (other shared holders may exist) or exclusively.
    pub shared: bool,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self
            .since
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let ago = SystemTime::now()
            .duration_since(self.since)
            .map(|d| format!(", {}s ago", d.as_secs()))
            .unwrap_or_default();
        write!(
            f,
            "pid {} on {} ({}) since unix time {since}{ago}",
            self.pid,
            self.host,
            if self.shared { "shared" } else { "exclusive" }
        )
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct Record {
    pub(crate) pid: u32,
    pub(crate) host: String,
    pub(crate) since_ms: u64,
    pub(crate) mode: String,
}

/// This process's holder record for `mode`, taken now, padded to [`RECORD_LEN`] bytes. (Built
/// by hand from a per-process prefix: it is written on every acquisition, so it must be cheap;
/// `record_is_the_serde_form` in the tests checks that it parses as a [`Record`].)
pub(crate) fn record(mode: Mode) -> Vec<u8> {
    static PREFIX: OnceLock<String> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let host = serde_json::to_string(host_name()).unwrap_or_else(|_| "\"?\"".to_owned());
        format!(
            "{{\"pid\":{},\"host\":{host},\"since_ms\":",
            std::process::id()
        )
    });
    let since_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mode = match mode {
        Mode::Shared => "shared",
        Mode::Exclusive => "exclusive",
    };
    let mut bytes = Vec::with_capacity(RECORD_LEN);
    bytes.extend_from_slice(prefix.as_bytes());
    bytes.extend_from_slice(format!("{since_ms},\"mode\":\"{mode}\"}}\n").as_bytes());
    if bytes.len() < RECORD_LEN {
        bytes.resize(RECORD_LEN, b' ');
    }
    bytes
}

/// Parses the first line of a lock file's contents as a holder record.
pub(crate) fn parse(contents: &[u8]) -> Option<Holder> {
    let line = contents.split(|&b| b == b'\n').next()?;
    let record: Record = serde_json::from_slice(line).ok()?;
    Some(Holder {
        pid: record.pid,
        host: record.host,
        since: UNIX_EPOCH + Duration::from_millis(record.since_ms),
        shared: record.mode == "shared",
    })
}

/// This machine's host name (read once), as holder records and leases name it: the kernel's
/// ([`atomic_file::process::host_name`]), else `$HOSTNAME`, else `unknown-host`.
pub(crate) fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        atomic_file::process::host_name()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned())
    })
}
