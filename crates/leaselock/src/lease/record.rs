//! The lease record as stored on disk, and small time helpers.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{LeaseError, LeaseErrorKind};
use super::path::normalize_path;

/// Exclusive (writers) or shared (read-only reviewers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Conflicts with every overlapping lease.
    Exclusive,
    /// Conflicts only with overlapping exclusive leases.
    Shared,
}

impl Mode {
    /// Whether two leases in these modes conflict when their paths overlap.
    pub fn conflicts_with(self, other: Mode) -> bool {
        self == Mode::Exclusive || other == Mode::Exclusive
    }

    /// The mode as one lower-case word, as stored: `exclusive` or `shared`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }
}

impl fmt::Display for Mode {
    /// `exclusive` or `shared`.
    ///
    /// ```
    /// use leaselock::lease::Mode;
    /// assert_eq!(Mode::Shared.to_string(), "shared");
    /// assert_eq!(serde_json::to_string(&Mode::Exclusive)?, "\"exclusive\"");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about the holder's process, used to prove that a holder on this host is dead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HolderFacts {
    /// Host name of the holder's machine.
    pub host: String,
    /// Linux boot id (`/proc/sys/kernel/random/boot_id`), if known.
    pub boot_id: Option<String>,
    /// Process id of the holder.
    pub pid: u32,
    /// Start time of that process in clock ticks since boot (`/proc/<pid>/stat` field 22), if
    /// known. Tells a reused pid from the holder.
    pub start_time: Option<u64>,
    /// The pid namespace (`/proc/self/ns/pid` link text), if known: pids are only compared
    /// within one namespace.
    pub pid_ns: Option<String>,
    /// The coordination server's session the lease is bound to (`<backend pid>@<start µs>`,
    /// see [`crate::server::Session`]), if any: the lease dies when that session ends. Never
    /// set by the file store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// A note, stored in the new lease, that it took over a dead lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TakeOver {
    /// The dead lease's id.
    pub id: String,
    /// The dead lease's holder.
    pub holder: String,
    /// The dead lease's fencing token.
    pub token: u64,
    /// Why it was judged dead.
    pub reason: String,
}

impl fmt::Display for TakeOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "took over lease {} (token {}) of holder {:?}: {}",
            self.id, self.token, self.holder, self.reason
        )
    }
}

/// A granted lease, exactly as stored in its JSON file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lease {
    /// Unique id within the root: `<token>-<holder slug>`; also the file stem.
    pub id: String,
    /// Fencing token: strictly increases with every grant in this root.
    pub token: u64,
    /// Who holds the lease (an agent name).
    pub holder: String,
    /// Exclusive or shared.
    pub mode: Mode,
    /// Claimed files, normalized, relative to the root.
    pub files: Vec<String>,
    /// Claimed directory prefixes, normalized, relative to the root.
    pub dirs: Vec<String>,
    /// Free-form description of the work.
    #[serde(default)]
    pub task: String,
    /// When the lease was granted.
    #[serde(with = "unix_ms")]
    pub acquired_at: SystemTime,
    /// When it was last renewed (equal to `acquired_at` until then).
    #[serde(with = "unix_ms")]
    pub renewed_at: SystemTime,
    /// When it expires unless renewed: `renewed_at + ttl`.
    #[serde(with = "unix_ms")]
    pub expires_at: SystemTime,
    /// The holder's time to live; every reader judges expiry with this, not its own.
    #[serde(with = "duration_ms")]
    pub ttl: Duration,
    /// Facts that let a process on the same host prove the holder dead.
    pub facts: HolderFacts,
    /// Dead leases this grant took over.
    #[serde(default)]
    pub took_over: Vec<TakeOver>,
}

/// The suffix of a lease file's name in the leases directory: `<id>.lease.json`.
pub const LEASE_SUFFIX: &str = ".lease.json";
/// The largest lease file read, in bytes (a request is bounded well below it).
pub(crate) const LEASE_FILE_LIMIT: u64 = 4 << 20;

impl Lease {
    /// The bytes of this lease's file, exactly as the store writes it: pretty JSON with a
    /// trailing newline, in [`atomic_file`]'s checksummed format (one
    /// `# atomic-file v1 len=<n> crc32=<hex>` header line, then the JSON).
    ///
    /// ```
    /// # use leaselock::lease::{LeaseRequest, Leases};
    /// # let root = tempfile::tempdir()?;
    /// # let leases = Leases::open(root.path())?;
    /// let lease = leases.acquire(&LeaseRequest::exclusive("a").file("f"))?.lease;
    /// let bytes = lease.to_file_bytes()?;
    /// assert!(bytes.starts_with(b"# atomic-file v1 len="));
    /// assert_eq!(leaselock::lease::Lease::from_file_bytes(&lease.id, &bytes)?, lease);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_file_bytes(&self) -> Result<Vec<u8>, LeaseError> {
        Ok(atomic_file::checksum::encode(&self.to_payload()?))
    }

    /// The JSON payload of this lease's file (without the checksum header).
    pub(crate) fn to_payload(&self) -> Result<Vec<u8>, LeaseError> {
        let mut payload = serde_json::to_vec_pretty(self).map_err(|e| {
            LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: format!("the lease cannot be encoded: {e}"),
            })
        })?;
        payload.push(b'\n');
        Ok(payload)
    }

    /// Decodes and checks the bytes of the lease file whose name is `<id>.lease.json`, exactly
    /// as the store does before it trusts a lease: the checksum header must match, the JSON
    /// must decode, and the record must be consistent (its id is the file's, starts with its
    /// token, its paths are normalized, `expires_at` is `renewed_at + ttl`, it has a holder).
    ///
    /// # Errors
    ///
    /// [`LeaseErrorKind::Corrupt`] naming `<id>.lease.json` and saying what is wrong.
    pub fn from_file_bytes(id: &str, bytes: &[u8]) -> Result<Lease, LeaseError> {
        let name = format!("{id}{LEASE_SUFFIX}");
        decode_file(id, bytes).map_err(|reason| LeaseError::corrupt(name, reason))
    }

    /// Whether this lease's paths overlap `other`'s (modes ignored).
    pub fn overlaps(&self, other: &Lease) -> bool {
        super::path::scopes_overlap(&self.files, &self.dirs, &other.files, &other.dirs)
    }

    /// Whether this lease and `other` conflict: overlapping paths and at least one exclusive.
    pub fn conflicts_with(&self, other: &Lease) -> bool {
        self.mode.conflicts_with(other.mode) && self.overlaps(other)
    }
}

/// Decodes a lease file's bytes; `Err(reason)` if it cannot be trusted.
pub(crate) fn decode_file(id: &str, bytes: &[u8]) -> Result<Lease, String> {
    if bytes.len() as u64 > LEASE_FILE_LIMIT {
        return Err(format!(
            "it is {} bytes, more than the {LEASE_FILE_LIMIT} bytes a lease file may have",
            bytes.len()
        ));
    }
    let payload = atomic_file::checksum::decode(bytes).map_err(|c| c.to_string())?;
    let lease: Lease = serde_json::from_slice(payload)
        .map_err(|e| format!("it is not a valid lease record: {e}"))?;
    validate(&lease, id)?;
    Ok(lease)
}

/// Checks a decoded lease for internal consistency; `Err(reason)` makes it a corrupt entry.
pub(crate) fn validate(lease: &Lease, id: &str) -> Result<(), String> {
    if lease.id != id {
        return Err(format!(
            "its id {:?} does not match its file name",
            lease.id
        ));
    }
    if !id
        .strip_prefix(&lease.token.to_string())
        .is_some_and(|rest| rest.starts_with('-'))
    {
        return Err(format!(
            "its id {:?} does not start with its fencing token {}",
            lease.id, lease.token
        ));
    }
    if lease.files.is_empty() && lease.dirs.is_empty() {
        return Err("it claims no paths".to_owned());
    }
    for p in lease.files.iter().chain(&lease.dirs) {
        match normalize_path(std::path::Path::new("/"), p) {
            Ok(n) if n == *p && !std::path::Path::new(p).is_absolute() => {}
            _ => return Err(format!("it claims a path that is not normalized: {p:?}")),
        }
    }
    if lease.holder.is_empty() {
        return Err("it has no holder".to_owned());
    }
    if lease.renewed_at.checked_add(lease.ttl) != Some(lease.expires_at) {
        return Err("its expires_at is not renewed_at plus its ttl".to_owned());
    }
    Ok(())
}

/// Truncates a time to whole milliseconds since the epoch, the stored precision.
pub(crate) fn trunc_ms(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(to_ms(t))
}

pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `SystemTime` as integer milliseconds since the Unix epoch.
mod unix_ms {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(to_ms(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = u64::deserialize(d)?;
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| serde::de::Error::custom("time out of range"))
    }
}

/// `Duration` as integer milliseconds.
mod duration_ms {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Formats a time as RFC 3339 UTC with milliseconds, e.g. `2026-01-17T15:30:00.000Z`.
pub(crate) fn fmt_time(t: SystemTime) -> String {
    crate::time::rfc3339_millis(t)
}
