//! The three-way rules over YAML maps: one-sided changes, sets, conflicts, markers.

use serde_yaml::{Mapping, Value};

use super::*;

/// The result of merging two field maps against their ancestor.
pub(super) struct Fields {
    /// Every field merged; a conflicting one holds ours' value.
    pub(super) merged: Mapping,
    /// The keys changed to different values on both sides, in `merged`'s order.
    pub(super) conflicts: Vec<Value>,
}

/// Merges field maps: keys in ours' order, then theirs' new keys. `lists` are merged as sets
/// (when no side holds something other than a list there); `skip` keys take ours' value and
/// are the caller's to set.
pub(super) fn merge_maps(
    a: &Mapping,
    o: &Mapping,
    t: &Mapping,
    lists: &[&str],
    skip: &[&str],
) -> Fields {
    let mut merged = Mapping::new();
    let mut conflicts = Vec::new();
    let keys = o.keys().chain(t.keys().filter(|k| !o.contains_key(*k)));
    for key in keys {
        let name = key.as_str().unwrap_or("");
        let (av, ov, tv) = (a.get(key), o.get(key), t.get(key));
        if skip.contains(&name) {
            if let Some(v) = ov.or(tv) {
                merged.insert(key.clone(), v.clone());
            }
            continue;
        }
        if lists.contains(&name) {
            if let (Some(al), Some(ol), Some(tl)) = (as_list(av), as_list(ov), as_list(tv)) {
                let list = merge_sets(&al, &ol, &tl);
                if !list.is_empty() || ov.is_some() {
                    merged.insert(key.clone(), Value::Sequence(list));
                }
                continue;
            }
        }
        match three_way(av, ov, tv) {
            Ok(Some(v)) => {
                merged.insert(key.clone(), v.clone());
            }
            Ok(None) => {}
            Err(()) => {
                if let Some(v) = ov {
                    merged.insert(key.clone(), v.clone());
                }
                conflicts.push(key.clone());
            }
        }
    }
    Fields { merged, conflicts }
}

/// One value merged three ways: `Ok(None)` for absent, `Err` for a conflict.
pub(super) fn three_way<'v>(
    a: Option<&'v Value>,
    o: Option<&'v Value>,
    t: Option<&'v Value>,
) -> Result<Option<&'v Value>, ()> {
    if o == t || t == a {
        Ok(o)
    } else if o == a {
        Ok(t)
    } else {
        Err(())
    }
}

/// A list field's elements (absent or null: none); `None` if it holds something else.
pub(super) fn as_list(v: Option<&Value>) -> Option<Vec<Value>> {
    match v {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Sequence(items)) => Some(items.clone()),
        Some(_) => None,
    }
}

/// Set merge: ours' elements that theirs did not remove, in ours' order, then theirs'
/// additions; each element once.
pub(super) fn merge_sets(a: &[Value], o: &[Value], t: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let removed_by_theirs = |x: &Value| a.contains(x) && !t.contains(x);
    let removed_by_ours = |x: &Value| a.contains(x) && !o.contains(x);
    for x in o {
        if !removed_by_theirs(x) && !out.contains(x) {
            out.push(x.clone());
        }
    }
    for x in t {
        if !removed_by_ours(x) && !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

pub(super) fn value_json(v: Option<&Value>) -> Option<String> {
    v.map(|v| serde_json::to_string(v).unwrap_or_else(|_| "(unprintable)".into()))
}

pub(super) fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => value_json(Some(other)).unwrap_or_default(),
    }
}

pub(super) fn field_conflicts(
    a: &Mapping,
    o: &Mapping,
    t: &Mapping,
    keys: &[Value],
) -> Vec<FieldConflict> {
    keys.iter()
        .map(|k| FieldConflict {
            field: key_name(k),
            ancestor: value_json(a.get(k)),
            ours: value_json(o.get(k)),
            theirs: value_json(t.get(k)),
        })
        .collect()
}

/// `key: value` as YAML lines.
pub(super) fn entry_text(key: &Value, value: Option<&Value>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let mut m = Mapping::new();
    m.insert(key.clone(), value.clone());
    serde_yaml::to_string(&m)
        .unwrap_or_else(|e| format!("# {}: unprintable ({e})\n", key_name(key)))
}

/// The merged map as YAML parts, each conflicting key as ours/ancestor/theirs. Keys that have
/// an original block on a side (`ours_blocks`, `theirs_blocks`, loops only) are written as
/// that side wrote them when the merged value is that side's.
pub(super) fn marked_parts(
    merged: &Mapping,
    a: &Mapping,
    o: &Mapping,
    t: &Mapping,
    conflicts: &[Value],
    ours_blocks: &[(Value, String)],
    theirs_blocks: &[(Value, String)],
) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    for (key, value) in merged {
        if conflicts.contains(key) {
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Both {
                label: format!("{} changed on both branches", key_name(key)),
                ours: entry_text(key, o.get(key)),
                ancestor: Some(entry_text(key, a.get(key))),
                theirs: entry_text(key, t.get(key)),
            });
        } else {
            text.push_str(&written_as(key, value, o, ours_blocks, t, theirs_blocks));
        }
    }
    // Conflicting keys ours removed (theirs changed them) are not in `merged`.
    for key in conflicts.iter().filter(|k| !merged.contains_key(*k)) {
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(Part::Both {
            label: format!("{} changed on both branches", key_name(key)),
            ours: String::new(),
            ancestor: Some(entry_text(key, a.get(key))),
            theirs: entry_text(key, t.get(key)),
        });
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

pub(super) fn written_as(
    key: &Value,
    value: &Value,
    o: &Mapping,
    ours_blocks: &[(Value, String)],
    t: &Mapping,
    theirs_blocks: &[(Value, String)],
) -> String {
    let block = |map: &Mapping, blocks: &[(Value, String)]| {
        (map.get(key) == Some(value))
            .then(|| {
                blocks
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, b)| b.clone())
            })
            .flatten()
    };
    block(o, ours_blocks)
        .or_else(|| block(t, theirs_blocks))
        .unwrap_or_else(|| entry_text(key, Some(value)))
}
