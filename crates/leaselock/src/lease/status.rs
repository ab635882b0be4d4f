//! [`LeaseStatus`]: a lease's state as others judge it, with its one-word name, its text and
//! its serde form.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::record::{Lease, fmt_time, to_ms};

/// A lease's state as judged by someone other than its holder, at one instant.
///
/// [`Display`](fmt::Display) gives one lower-case word with details in parentheses (`live`,
/// `expired (protected until 2026-01-17T15:30:05.000Z)`, `expired`, `holder-dead (no process
/// 4242)`); [`LeaseStatus::name`] gives the word alone. Serialized (serde) as an object:
/// `{"status": "live" | "expired" | "holder-dead", "blocks_grants": bool}` plus
/// `"protected_until"` (milliseconds since the Unix epoch) while an expired lease is still
/// protected, and `"reason"` for a dead holder.
///
/// ```
/// use leaselock::lease::LeaseStatus;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let until = UNIX_EPOCH + Duration::from_millis(1_768_663_805_000);
/// let status = LeaseStatus::ExpiredProtected { protected_until: until };
/// assert_eq!(status.to_string(), "expired (protected until 2026-01-17T15:30:05.000Z)");
/// assert_eq!(status.name(), "expired");
/// assert!(status.blocks_grants() && !status.is_live());
/// assert_eq!(
///     serde_json::to_string(&status)?,
///     r#"{"status":"expired","blocks_grants":true,"protected_until":1768663805000}"#
/// );
/// assert_eq!(LeaseStatus::Live.to_string(), "live");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StatusRepr", try_from = "StatusRepr")]
#[non_exhaustive]
pub enum LeaseStatus {
    /// Before its `expires_at`, and the holder is not provably dead: it blocks overlapping
    /// grants.
    Live,
    /// Past its `expires_at` but inside the skew margin: the holder's own
    /// [`verify`](super::Leases::verify) already fails, but others still respect it (it blocks
    /// overlapping grants) until `protected_until` (`expires_at` plus the margin).
    ExpiredProtected {
        /// Until when it still blocks others.
        protected_until: SystemTime,
    },
    /// `expires_at` plus the skew margin has passed: it no longer blocks; the next overlapping
    /// grant or a sweep removes it.
    Expired,
    /// The holder's process is provably gone (same host only): it no longer blocks.
    HolderDead {
        /// The proof, in words.
        reason: String,
    },
}

impl LeaseStatus {
    /// True for [`LeaseStatus::Live`] only.
    pub fn is_live(&self) -> bool {
        matches!(self, LeaseStatus::Live)
    }

    /// Whether the lease still blocks overlapping grants: [`LeaseStatus::Live`] and
    /// [`LeaseStatus::ExpiredProtected`].
    pub fn blocks_grants(&self) -> bool {
        matches!(
            self,
            LeaseStatus::Live | LeaseStatus::ExpiredProtected { .. }
        )
    }

    /// One lower-case word: `live`, `expired` (also while still protected) or `holder-dead`.
    pub fn name(&self) -> &'static str {
        match self {
            LeaseStatus::Live => "live",
            LeaseStatus::ExpiredProtected { .. } | LeaseStatus::Expired => "expired",
            LeaseStatus::HolderDead { .. } => "holder-dead",
        }
    }

    /// Until when an expired lease still blocks others, if it is inside the skew margin.
    pub fn protected_until(&self) -> Option<SystemTime> {
        match self {
            LeaseStatus::ExpiredProtected { protected_until } => Some(*protected_until),
            _ => None,
        }
    }

    pub(crate) fn reason(&self, lease: &Lease) -> String {
        match self {
            LeaseStatus::Live | LeaseStatus::ExpiredProtected { .. } => self.to_string(),
            LeaseStatus::Expired => format!(
                "expired at {} (ttl {:?})",
                fmt_time(lease.expires_at),
                lease.ttl
            ),
            LeaseStatus::HolderDead { reason } => format!("holder is dead: {reason}"),
        }
    }
}

impl fmt::Display for LeaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseStatus::ExpiredProtected { protected_until } => {
                write!(
                    f,
                    "expired (protected until {})",
                    fmt_time(*protected_until)
                )
            }
            LeaseStatus::HolderDead { reason } => write!(f, "holder-dead ({reason})"),
            other => f.write_str(other.name()),
        }
    }
}

/// The serde form of [`LeaseStatus`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRepr {
    status: String,
    #[serde(default)]
    blocks_grants: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protected_until: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<LeaseStatus> for StatusRepr {
    fn from(status: LeaseStatus) -> StatusRepr {
        StatusRepr {
            status: status.name().to_owned(),
            blocks_grants: status.blocks_grants(),
            protected_until: status.protected_until().map(to_ms),
            reason: match status {
                LeaseStatus::HolderDead { reason } => Some(reason),
                _ => None,
            },
        }
    }
}

impl TryFrom<StatusRepr> for LeaseStatus {
    type Error = String;

    fn try_from(repr: StatusRepr) -> Result<LeaseStatus, String> {
        Ok(match (repr.status.as_str(), repr.protected_until) {
            ("live", None) => LeaseStatus::Live,
            ("expired", None) => LeaseStatus::Expired,
            ("expired", Some(ms)) => LeaseStatus::ExpiredProtected {
                protected_until: UNIX_EPOCH
                    .checked_add(Duration::from_millis(ms))
                    .ok_or("protected_until is out of range")?,
            },
            ("holder-dead", None) => LeaseStatus::HolderDead {
                reason: repr.reason.unwrap_or_default(),
            },
            (other, _) => return Err(format!("unknown lease status {other:?}")),
        })
    }
}
