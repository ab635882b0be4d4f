//! The data model: [`Gap`], [`Status`], [`Severity`], [`GapSpec`], [`GapSummary`], [`Filter`],
//! [`Blocker`] and [`Summary`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The value's name as written in files and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                let norm = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == norm)
                    .ok_or_else(|| format!(
                        "unknown {} {s:?}: use one of {}",
                        stringify!($name).to_ascii_lowercase(),
                        $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    ))
            }
        }
    };
}

string_enum! {
    /// A gap's status. Parsed case-insensitively (`in_progress` and `In Progress` work too).
    ///
    /// ```
    /// use gapreg::Status;
    /// assert_eq!("in-progress".parse::<Status>()?, Status::InProgress);
    /// assert_eq!(Status::NeedsPlan.to_string(), "needs-plan");
    /// assert!("done".parse::<Status>().is_err());
    /// # Ok::<(), String>(())
    /// ```
    Status {
        /// Newly filed.
        Open = "open",
        /// Identified, needs design work before implementation.
        NeedsPlan = "needs-plan",
        /// Has a plan; ready to start.
        Ready = "ready",
        /// Claimed and being worked on.
        InProgress = "in-progress",
        /// Waiting on something (set by hand; excluded from [`ready`](crate::Registry::ready)).
        Blocked = "blocked",
        /// Done.
        Complete = "complete",
        /// Will not be done.
        OutOfScope = "out-of-scope",
    }
}

string_enum! {
    /// How bad a gap is; ordered most severe first (`Critical < Low`).
    ///
    /// ```
    /// use gapreg::Severity;
    /// assert!(Severity::Critical < Severity::Low);
    /// assert_eq!("HIGH".parse::<Severity>()?, Severity::High);
    /// # Ok::<(), String>(())
    /// ```
    Severity {
        /// Must be fixed first.
        Critical = "critical",
        /// Important.
        High = "high",
        /// Normal.
        Medium = "medium",
        /// Nice to have.
        Low = "low",
    }
}

impl Status {
    /// `complete` or `out-of-scope`: nothing more will happen to the gap.
    pub fn is_closed(self) -> bool {
        matches!(self, Status::Complete | Status::OutOfScope)
    }
}

/// One gap, as stored in `gaps/<ID>.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Gap {
    /// The id, e.g. `GAP-OP-1091` (also the file name).
    pub id: String,
    /// Registry order: a global sequence number, contiguous within a batch.
    pub seq: u64,
    /// Starts at 1; every change adds 1. Pass it as `expected_revision` to make an update
    /// conditional.
    #[serde(alias = "revision")]
    pub rev: u64,
    /// One-line title.
    pub title: String,
    /// Free-text type, e.g. `agent-behavior` or `missing-entry`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub gap_type: String,
    /// How bad it is.
    pub severity: Severity,
    /// Where it stands.
    pub status: Status,
    /// The loop (epic) it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_loop: Option<String>,
    /// Ids of gaps or loops it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The agent working on it.
    #[serde(default, alias = "claimant", skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// When the claim was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Timestamp>,
    /// When the claim lapses (claims without a TTL never lapse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_expires_at: Option<Timestamp>,
    /// The status before the claim, restored by `unclaim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_before_claim: Option<Status>,
    /// Path of an implementation plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When it was filed.
    #[serde(alias = "created")]
    pub created_at: Timestamp,
    /// When it last changed.
    #[serde(alias = "updated")]
    pub updated_at: Timestamp,
    /// When it was last set to `complete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// Longer description (markdown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Gap {
    /// Whether a claim is in force at `now` (a claim past its expiry is not).
    pub fn claimed_at_time(&self, now: Timestamp) -> Option<&str> {
        claim_live(self.claimed_by.as_deref(), self.claim_expires_at, now)
    }

    /// The index summary of this gap.
    pub fn summary(&self) -> GapSummary {
        GapSummary {
            id: self.id.clone(),
            seq: self.seq,
            rev: self.rev,
            status: self.status,
            severity: self.severity,
            gap_type: self.gap_type.clone(),
            parent_loop: self.parent_loop.clone(),
            claimed_by: self.claimed_by.clone(),
            claim_expires_at: self.claim_expires_at,
            tags: self.tags.clone(),
            depends_on: self.depends_on.clone(),
            title: self.title.clone(),
            completed_at: self.completed_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

pub(crate) fn claim_live(
    claimed_by: Option<&str>,
    expires: Option<Timestamp>,
    now: Timestamp,
) -> Option<&str> {
    claimed_by.filter(|_| expires.is_none_or(|e| now < e))
}

/// Parses the contents of a gap file (`gaps/<ID>.yaml`). Pure; never panics (a fuzz target
/// calls it). Unknown fields are ignored.
///
/// ```
/// let gap = gapreg::parse_gap_yaml(
///     b"id: GAP-OP-1\nseq: 1\nrevision: 1\ntitle: t\nseverity: high\nstatus: open\n\
///       created: 2026-01-01T00:00:00Z\nupdated: 2026-01-01T00:00:00Z\n",
/// )?;
/// assert_eq!(gap.id, "GAP-OP-1");
/// assert!(gapreg::parse_gap_yaml(b"id: [").is_err());
/// # Ok::<(), String>(())
/// ```
pub fn parse_gap_yaml(bytes: &[u8]) -> Result<Gap, String> {
    parse_yaml(bytes)
}

/// Largest YAML document (a gap file, a loop's front matter) the registry parses.
pub(crate) const MAX_YAML_BYTES: usize = 1 << 20;

/// Parses YAML through `atomic-file`'s reader, which refuses deeply nested flow collections
/// before the (quadratic) parser sees them; oversized documents are refused too, so one hostile
/// file cannot stall every `list` or `ready`.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > MAX_YAML_BYTES {
        return Err(format!(
            "it is {} bytes, more than the {MAX_YAML_BYTES} bytes a registry file may hold",
            bytes.len()
        ));
    }
    atomic_file::Format::Yaml
        .decode("yaml", bytes)
        .map_err(|e| match e.kind() {
            atomic_file::ErrorKind::Decode { message, .. } => message.clone(),
            _ => e.to_string(),
        })
}

/// Serializes a gap as the contents of its file (inverse of [`parse_gap_yaml`]).
pub fn gap_to_yaml(gap: &Gap) -> Result<String, String> {
    serde_yaml::to_string(gap).map_err(|e| e.to_string())
}

/// What to file: everything about a new gap except what the registry assigns.
///
/// ```
/// use gapreg::{GapSpec, Severity};
/// let spec = GapSpec::new("Lock contention stops every call", Severity::High)
///     .gap_type("agent-behavior")
///     .parent_loop("LOOP-GAPS-20260228");
/// assert_eq!(spec.prefix, None); // the registry's default prefix
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GapSpec {
    /// An explicit id; accepted only if the id store reserved it and no gap has it. `None`
    /// (the default) reserves the next id.
    pub id: Option<String>,
    /// The id prefix: `OP` or `GAP-OP` both give `GAP-OP-<N>`. `None`: the registry's default.
    pub prefix: Option<String>,
    /// One-line title (required).
    pub title: String,
    /// Free-text type.
    pub gap_type: String,
    /// Severity.
    pub severity: Option<Severity>,
    /// Description.
    pub description: String,
    /// Initial status (default `open`; `in-progress` is refused: claim it instead).
    pub status: Option<Status>,
    /// The loop it belongs to; must exist.
    pub parent_loop: Option<String>,
    /// Gaps or loops it waits for; each must exist. In a batch, `@N` names the N-th entry of
    /// the same batch (0-based).
    pub depends_on: Vec<String>,
    /// Plan path.
    pub plan: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
}

impl GapSpec {
    /// A spec with a title and severity; everything else default.
    pub fn new(title: impl Into<String>, severity: Severity) -> GapSpec {
        GapSpec {
            title: title.into(),
            severity: Some(severity),
            ..GapSpec::default()
        }
    }

    /// Sets the type.
    pub fn gap_type(mut self, t: impl Into<String>) -> GapSpec {
        self.gap_type = t.into();
        self
    }

    /// Sets the parent loop.
    pub fn parent_loop(mut self, id: impl Into<String>) -> GapSpec {
        self.parent_loop = Some(id.into());
        self
    }

    /// Adds a dependency.
    pub fn depends_on(mut self, id: impl Into<String>) -> GapSpec {
        self.depends_on.push(id.into());
        self
    }

    /// Sets the prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> GapSpec {
        self.prefix = Some(prefix.into());
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> GapSpec {
        self.description = text.into();
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> GapSpec {
        self.tags.push(tag.into());
        self
    }
}

/// Changes to a gap's descriptive fields ([`Registry::edit`](crate::Registry::edit)); `None`
/// leaves a field as it is. For the optional fields, `Some(None)` clears them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GapEdit {
    /// New title.
    pub title: Option<String>,
    /// New type.
    pub gap_type: Option<String>,
    /// New severity.
    pub severity: Option<Severity>,
    /// New description.
    pub description: Option<String>,
    /// New parent loop (must exist), or `Some(None)` to detach.
    pub parent_loop: Option<Option<String>>,
    /// New plan path, or `Some(None)` to clear it.
    pub plan: Option<Option<String>>,
    /// New tags (replacing the old ones).
    pub tags: Option<Vec<String>>,
}

/// A gap as kept in the index: everything but the description, the plan and the claim time. [`Registry::list`](crate::Registry::list) returns these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GapSummary {
    /// Id.
    pub id: String,
    /// Registry order.
    pub seq: u64,
    /// Revision.
    pub rev: u64,
    /// Status.
    pub status: Status,
    /// Severity.
    pub severity: Severity,
    /// Type.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub gap_type: String,
    /// Parent loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_loop: Option<String>,
    /// Claimant (even if the claim has expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// Claim expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_expires_at: Option<Timestamp>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Title.
    pub title: String,
    /// When it was completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// When it was filed.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl GapSummary {
    /// The agent holding a live claim at `now`, if any.
    pub fn claimed_at_time(&self, now: Timestamp) -> Option<&str> {
        claim_live(self.claimed_by.as_deref(), self.claim_expires_at, now)
    }
}

/// Which gaps [`Registry::list`](crate::Registry::list) returns: every set field must match.
///
/// ```
/// use gapreg::{Filter, Status};
/// let open_in_loop = Filter { status: Some(Status::Open), parent_loop: Some("LOOP-A".into()), ..Filter::default() };
/// # let _ = open_in_loop;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only gaps of this loop.
    pub parent_loop: Option<String>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this type.
    pub gap_type: Option<String>,
    /// Only gaps claimed by this agent (expired claims included).
    pub claimed_by: Option<String>,
    /// Only gaps with this tag.
    pub tag: Option<String>,
}

impl Filter {
    /// Whether `gap` passes the filter.
    pub fn matches(&self, gap: &GapSummary) -> bool {
        self.status.is_none_or(|s| s == gap.status)
            && self
                .parent_loop
                .as_ref()
                .is_none_or(|l| gap.parent_loop.as_ref() == Some(l))
            && self.severity.is_none_or(|s| s == gap.severity)
            && self.gap_type.as_ref().is_none_or(|t| &gap.gap_type == t)
            && self
                .claimed_by
                .as_ref()
                .is_none_or(|c| gap.claimed_by.as_ref() == Some(c))
            && self.tag.as_ref().is_none_or(|t| gap.tags.contains(t))
    }
}

/// One reason a gap is not ready ([`Registry::blockers`](crate::Registry::blockers)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Blocker {
    /// The gap's own status keeps it out (`complete`, `out-of-scope` or `blocked`).
    Status {
        /// The status.
        status: Status,
    },
    /// Someone holds a live claim.
    Claimed {
        /// The agent holding the claim.
        agent: String,
        /// When the claim lapses.
        expires_at: Option<Timestamp>,
    },
    /// A gap it depends on is not complete.
    Gap {
        /// The dependency.
        id: String,
        /// Its status.
        status: Status,
    },
    /// A loop it depends on (directly, or through its parent loop's `depends_on`) is not
    /// complete.
    Loop {
        /// The loop.
        id: String,
        /// Its front-matter status.
        status: String,
        /// The parent loop whose `depends_on` names it, if it is not a direct dependency.
        via: Option<String>,
    },
    /// A dependency names nothing that exists.
    Missing {
        /// The dangling id.
        id: String,
    },
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::Status { status } => write!(f, "its status is {status}"),
            Blocker::Claimed { agent, expires_at } => {
                write!(f, "claimed by {agent}")?;
                match expires_at {
                    Some(t) => write!(f, " until {t}"),
                    None => Ok(()),
                }
            }
            Blocker::Gap { id, status } => write!(f, "depends on {id}, which is {status}"),
            Blocker::Loop { id, status, via } => {
                write!(f, "depends on loop {id}, which is {status}")?;
                match via {
                    Some(parent) => write!(f, " (via its loop {parent})"),
                    None => Ok(()),
                }
            }
            Blocker::Missing { id } => write!(f, "depends on {id}, which does not exist"),
        }
    }
}

/// Counts for one loop in a [`Summary`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LoopCount {
    /// Gaps in the loop.
    pub total: usize,
    /// Of which complete.
    pub complete: usize,
    /// Of which neither complete nor out of scope.
    pub remaining: usize,
}

/// Counts by status, severity and loop ([`Registry::summary`](crate::Registry::summary)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// All gaps.
    pub total: usize,
    /// Gaps per status (every status present, zeros included).
    pub by_status: BTreeMap<Status, usize>,
    /// Gaps per severity (every severity present).
    pub by_severity: BTreeMap<Severity, usize>,
    /// Gaps per loop id; gaps without a loop are counted under `(none)`.
    pub by_loop: BTreeMap<String, LoopCount>,
}

impl Summary {
    /// Counts `gaps`.
    pub fn of<'a>(gaps: impl IntoIterator<Item = &'a GapSummary>) -> Summary {
        let mut s = Summary {
            by_status: Status::ALL.iter().map(|&k| (k, 0)).collect(),
            by_severity: Severity::ALL.iter().map(|&k| (k, 0)).collect(),
            ..Summary::default()
        };
        for g in gaps {
            s.total += 1;
            *s.by_status.entry(g.status).or_default() += 1;
            *s.by_severity.entry(g.severity).or_default() += 1;
            let l = s
                .by_loop
                .entry(g.parent_loop.clone().unwrap_or_else(|| "(none)".into()))
                .or_default();
            l.total += 1;
            l.complete += usize::from(g.status == Status::Complete);
            l.remaining += usize::from(!g.status.is_closed());
        }
        s
    }
}
