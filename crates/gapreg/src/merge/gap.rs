//! Merging a gap file: field by field over its YAML map.

use crate::model::{Gap, gap_to_yaml, parse_gap_yaml};
use crate::time::Timestamp;
use serde_yaml::{Mapping, Value};

use super::*;

/// Merges three versions of one gap file (`gaps/<ID>.yaml`) field by field (see the
/// [module docs](crate::merge) for the rules). `ancestor` is `None` when the file has no common
/// ancestor (both branches added it). Pure; never panics.
///
/// A side that did not change (equal to the ancestor) yields the other side unchanged; a
/// merged result is written in the registry's own format ([`gap_to_yaml`]).
pub fn merge_gap(ancestor: Option<&[u8]>, ours: &[u8], theirs: &[u8]) -> Merge {
    let damaged = |side, message: String| {
        Merge::Conflict(Conflict::whole(
            ConflictKind::Damaged { side, message },
            ours,
            theirs,
        ))
    };
    let o = match parse_gap_yaml(ours) {
        Ok(g) => g,
        Err(e) => return damaged(Side::Ours, e),
    };
    let t = match parse_gap_yaml(theirs) {
        Ok(g) => g,
        Err(e) => return damaged(Side::Theirs, e),
    };
    let Some(ancestor) = ancestor else {
        if o == t {
            return clean_side(&o, ours);
        }
        let kind = ConflictKind::AddAdd {
            id: o.id.clone(),
            ours_title: o.title.clone(),
            theirs_title: t.title.clone(),
        };
        return Merge::Conflict(Conflict::whole(kind, ours, theirs));
    };
    let a = match parse_gap_yaml(ancestor) {
        Ok(g) => g,
        Err(e) => return damaged(Side::Ancestor, e),
    };
    if o == a {
        return clean_side(&t, theirs);
    }
    if t == a || o == t {
        return clean_side(&o, ours);
    }
    let (am, om, tm) = match (gap_map(&a), gap_map(&o), gap_map(&t)) {
        (Ok(am), Ok(om), Ok(tm)) => (am, om, tm),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return damaged(Side::Merged, e),
    };
    let fields = merge_maps(&am, &om, &tm, GAP_LISTS, GAP_DERIVED);
    let mut merged = fields.merged;
    let rev = o.rev.max(t.rev).saturating_add(1);
    merged.insert("rev".into(), Value::Number(rev.into()));
    let updated = o.updated_at.max(t.updated_at);
    merged.insert("updated_at".into(), timestamp_value(updated));
    if fields.conflicts.is_empty() {
        let gap = serde_yaml::from_value::<Gap>(Value::Mapping(merged))
            .map_err(|e| e.to_string())
            .and_then(|g| gap_to_yaml(&g));
        return match gap {
            Ok(text) => Merge::Clean(text),
            Err(e) => damaged(Side::Merged, e),
        };
    }
    let parts = marked_parts(&merged, &am, &om, &tm, &fields.conflicts, &[], &[]);
    Merge::Conflict(Conflict {
        kind: ConflictKind::Fields(field_conflicts(&am, &om, &tm, &fields.conflicts)),
        parts,
    })
}

pub(super) fn clean_side(gap: &Gap, bytes: &[u8]) -> Merge {
    match std::str::from_utf8(bytes) {
        Ok(text) => Merge::Clean(text.to_owned()),
        Err(_) => match gap_to_yaml(gap) {
            Ok(text) => Merge::Clean(text),
            Err(e) => Merge::Conflict(Conflict::whole(
                ConflictKind::Damaged {
                    side: Side::Merged,
                    message: e,
                },
                bytes,
                bytes,
            )),
        },
    }
}

pub(super) fn timestamp_value(t: Timestamp) -> Value {
    Value::String(t.to_string())
}

pub(super) fn gap_map(gap: &Gap) -> Result<Mapping, String> {
    match serde_yaml::to_value(gap) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(_) => Err("a gap is not a mapping".into()),
        Err(e) => Err(e.to_string()),
    }
}
