//! Pure rules: the limits on every field, what a valid gap id, key or agent is, how a new gap
//! is made from its spec and how its document is bounded. No I/O; the operations
//! ([`super::ops`]) apply them before anything is reserved or written.

use std::collections::BTreeMap;

use idreserve::Id;

use crate::error::{ConflictDetail, Error, ErrorKind, Result};
use crate::graph::{self, GapView};
use crate::loops::Loop;
use crate::model::{Blocker, Gap, GapSpec, GapSummary, Severity, Status};
use crate::time::Timestamp;

/// The id-store prefix of the registry-order counter.
pub const SEQ_PREFIX: &str = "SEQ";
/// Longest title accepted, in characters.
const MAX_TITLE: usize = 300;
/// Longest description accepted, in bytes (the whole gap file must stay within 1 MiB, which
/// every reader enforces).
pub const MAX_DESCRIPTION: usize = 256 * 1024;
/// Longest plan, type, tag or agent name accepted, in bytes.
pub(crate) const MAX_FIELD: usize = 16 * 1024;
/// Most tags, and most dependencies, of one gap.
pub(crate) const MAX_LIST: usize = 256;
/// Most entries of one batch.
pub const MAX_BATCH: usize = 10_000;
/// Longest idempotency key (and agent name) accepted.
const MAX_KEY: usize = 128;

/// `OP` and `GAP-OP` both name the id prefix `GAP-OP`.
pub fn gap_prefix(prefix: &str) -> String {
    if prefix.starts_with("GAP-") || prefix == "GAP" {
        prefix.to_owned()
    } else {
        format!("GAP-{prefix}")
    }
}

/// A gap id, parsed.
pub(crate) fn check_gap_id(id: &str) -> Result<Id> {
    id.parse::<Id>()
        .map_err(|e| Error::invalid(format!("gap id {id:?}"), e.to_string()))
}

/// An id prefix for gaps (`OP` or `GAP-OP`), checked and spelled in full.
pub(crate) fn check_prefix(prefix: &str) -> Result<String> {
    let p = gap_prefix(prefix);
    idreserve::check_prefix(&p).map_err(|e| Error::invalid("prefix", e.to_string()))?;
    Ok(p)
}

/// When a claim taken at `now` for `ttl` lapses. The clock's whole seconds are rounded down
/// (the claim was taken up to a second after `now`), so one second more makes the claim
/// last at least its whole TTL, never less.
pub(crate) fn claim_expiry(now: Timestamp, ttl: std::time::Duration) -> Timestamp {
    now.after(ttl).after(std::time::Duration::from_secs(1))
}

/// The file name of gap `id` inside `gaps/` (and `staging/`).
pub(crate) fn gap_file(id: &str) -> String {
    format!("{id}.yaml")
}

pub(crate) fn check_title(title: &str) -> Result<()> {
    let title = title.trim();
    if title.is_empty() {
        return Err(Error::invalid(
            "title",
            "it is empty; give the gap a one-line title",
        ));
    }
    if title.contains('\n') || title.chars().count() > MAX_TITLE {
        return Err(Error::invalid(
            "title",
            format!(
                "it must be one line of at most {MAX_TITLE} characters; put details in the \
                 description"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_type(gap_type: &str) -> Result<()> {
    if gap_type.contains('\n') {
        return Err(Error::invalid("type", "it must be one line"));
    }
    check_text("type", gap_type, MAX_FIELD)
}

/// Refuses a text field longer than `max` bytes.
pub(crate) fn check_text(what: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        return Err(Error::invalid(
            what,
            format!(
                "it is {} bytes, more than the {max} allowed; put long text in a document and \
                 link to it",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// An idempotency key: 1–128 characters of `A-Z a-z 0-9 . _ : -`, so it is a safe file name.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("idempotency key {key:?}"),
            format!(
                "use 1 to {MAX_KEY} characters of A-Z, a-z, 0-9, `.`, `_`, `:` and `-`, not \
                 starting with `.` (for example agent-7:task-31)"
            ),
        ))
    }
}

pub(crate) fn check_tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_LIST {
        return Err(Error::invalid(
            "tags",
            format!("a gap may have at most {MAX_LIST}"),
        ));
    }
    if let Some(tag) = tags.iter().find(|t| t.len() > MAX_FIELD) {
        return check_text("tag", tag, MAX_FIELD);
    }
    match tags
        .iter()
        .find(|t| t.trim().is_empty() || t.contains(char::is_whitespace))
    {
        Some(tag) => Err(Error::invalid(
            format!("tag {tag:?}"),
            "tags must be non-empty and contain no whitespace",
        )),
        None => Ok(()),
    }
}

pub(crate) fn check_agent(agent: &str) -> Result<()> {
    if agent.trim().is_empty() || agent.contains(char::is_whitespace) || agent.len() > MAX_KEY {
        return Err(Error::invalid(
            format!("agent id {agent:?}"),
            format!("it must be 1 to {MAX_KEY} bytes without whitespace, like CC-3"),
        ));
    }
    Ok(())
}

pub(crate) fn check_revision(gap: &Gap, expected: Option<u64>) -> Result<()> {
    match expected {
        Some(e) if e != gap.rev => Err(Error::conflict(
            &gap.id,
            ConflictDetail::Revision {
                expected: e,
                actual: gap.rev,
            },
        )),
        _ => Ok(()),
    }
}

/// An explicit gap id: canonical (no zero padding) and not in the registry order's prefix.
pub(crate) fn check_explicit_id(id: &str) -> Result<()> {
    let parsed = check_gap_id(id)?;
    let canonical = format!("{}-{}", parsed.prefix(), parsed.number());
    if *id != canonical {
        // `GAP-OP-01` would be a second file for gap number 1 of GAP-OP.
        return Err(Error::invalid(
            format!("id {id}"),
            format!("write it without zero padding, as {canonical}"),
        ));
    }
    if parsed.prefix() == SEQ_PREFIX {
        return Err(Error::invalid(
            format!("id {id}"),
            "the SEQ prefix is reserved for the registry order",
        ));
    }
    Ok(())
}

/// The short note for an unfinished dependency in an error message: `GAP-OP-3 (open)`,
/// `loop LOOP-A (active)`, `X (missing)`. `None` when `dep` is finished (the rule is
/// [`graph::unfinished_dep`]).
pub(crate) fn unfinished_note(
    dep: &str,
    gap_status: &dyn Fn(&str) -> Option<Status>,
    loops: &BTreeMap<String, Loop>,
) -> Option<String> {
    graph::unfinished_dep(dep, gap_status, loops).map(|b| match b {
        Blocker::Gap { id, status } => format!("{id} ({status})"),
        Blocker::Loop { id, status, .. } => format!("loop {id} ({status})"),
        _ => format!("{dep} (missing)"),
    })
}

/// A gap's file contents, refused if larger than any reader accepts.
pub(crate) fn encode_gap(gap: &Gap) -> Result<String> {
    let yaml =
        crate::model::gap_to_yaml(gap).map_err(|r| Error::invalid(format!("gap {}", gap.id), r))?;
    if yaml.len() > crate::model::MAX_YAML_BYTES {
        return Err(Error::invalid(
            format!("gap {}", gap.id),
            format!(
                "its file would be {} bytes, more than the {} bytes a gap file may hold; \
                 shorten the description or plan (or link to a document)",
                yaml.len(),
                crate::model::MAX_YAML_BYTES
            ),
        ));
    }
    Ok(yaml)
}

/// Checks a spec's own fields (not its references): lengths, counts, status, and that the
/// whole document would fit what readers accept with the longest id and position it could
/// get — so it is refused before any id is reserved.
pub(crate) fn check_spec_fields(spec: &GapSpec, now: Timestamp) -> Result<()> {
    check_title(&spec.title)?;
    check_type(&spec.gap_type)?;
    check_tags(&spec.tags)?;
    check_text("description", &spec.description, MAX_DESCRIPTION)?;
    if let Some(plan) = &spec.plan {
        check_text("plan", plan, MAX_FIELD)?;
    }
    if spec.depends_on.len() > MAX_LIST {
        return Err(Error::invalid(
            "dependencies",
            format!("a gap may have at most {MAX_LIST}"),
        ));
    }
    let longest = format!("GAP-{}-{}", "X".repeat(64), u64::MAX);
    encode_gap(&new_gap(
        spec.clone(),
        longest.clone(),
        u64::MAX,
        now,
        |_| longest.clone(),
    ))?;
    if spec.status == Some(Status::InProgress) {
        return Err(Error::invalid(
            "status",
            "a gap cannot be filed as in-progress; file it, then claim it (`gapreg claim`)",
        ));
    }
    Ok(())
}

/// A dependency cycle error spelling the cycle out.
pub(crate) fn cycle(path: Vec<String>) -> Error {
    Error::new(ErrorKind::Cycle { path })
}

/// The readiness view of a summary.
pub(crate) fn view(g: &GapSummary) -> GapView<'_> {
    GapView {
        status: g.status,
        claimed_by: g.claimed_by.as_deref(),
        claim_expires_at: g.claim_expires_at,
        parent_loop: g.parent_loop.as_deref(),
        depends_on: &g.depends_on,
    }
}

/// A new gap from its spec: `@N` dependencies named by `batch_id(N)`, duplicates dropped.
pub(crate) fn new_gap(
    s: GapSpec,
    id: String,
    seq: u64,
    now: Timestamp,
    batch_id: impl Fn(usize) -> String,
) -> Gap {
    let mut deps: Vec<String> = Vec::new();
    for d in s.depends_on {
        let d = match d.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => batch_id(n),
            None => d,
        };
        if !deps.contains(&d) {
            deps.push(d);
        }
    }
    let status = s.status.unwrap_or(Status::Open);
    Gap {
        id,
        seq,
        rev: 1,
        title: s.title.trim().to_owned(),
        gap_type: s.gap_type.trim().to_owned(),
        severity: s.severity.unwrap_or(Severity::Medium),
        status,
        parent_loop: s.parent_loop,
        depends_on: deps,
        claimed_by: None,
        claimed_at: None,
        claim_expires_at: None,
        status_before_claim: None,
        plan: s.plan,
        tags: s.tags,
        created_at: now,
        updated_at: now,
        completed_at: (status == Status::Complete).then_some(now),
        description: s.description,
    }
}

/// Whether `gap` is what `spec` filed (its own fields, as filing stores them).
pub(crate) fn filed_from(gap: &Gap, spec: &GapSpec) -> bool {
    gap.title == spec.title.trim()
        && gap.gap_type == spec.gap_type.trim()
        && gap.description == spec.description
        && gap.parent_loop == spec.parent_loop
        && gap.tags == spec.tags
        && spec.severity.is_none_or(|s| s == gap.severity)
}
