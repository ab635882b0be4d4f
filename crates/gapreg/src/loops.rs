//! Loops (epics): markdown files with YAML front matter, kept as people wrote them.
//!
//! ```text
//! ---
//! loop_id: LOOP-GAPS-FILE-BATCH-20260228
//! created: 2026-02-28
//! status: active
//! owner: "@ronny"
//! scope: gaps
//! priority: medium
//! objective: Eliminate agent friction in gaps.file
//! depends_on: [LOOP-LOCKS-20260201]
//! ---
//! # Loop Scope: ...
//! ```
//!
//! The front matter is parsed tolerantly: unknown fields are ignored, scalar values of any
//! type are read as text, `depends_on` may be one id or a list. This crate never rewrites a
//! loop file; it only creates new ones from a template ([`Registry::new_loop`]).
//!
//! [`Registry::new_loop`]: crate::Registry::new_loop

use std::path::PathBuf;

use serde::Serialize;

/// Largest loop file read, in bytes.
pub(crate) const MAX_LOOP_BYTES: u64 = 4 << 20;

/// A loop's front matter, and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Loop {
    /// `loop_id` (or, if absent, the file name without `.md`).
    pub id: String,
    /// `created`, as written.
    pub created: Option<String>,
    /// `status`, as written (`active`, `closed`, `complete`, ...).
    pub status: String,
    /// `owner`.
    pub owner: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `priority`.
    pub priority: Option<String>,
    /// `objective`.
    pub objective: Option<String>,
    /// `depends_on`: loops that block this one.
    pub depends_on: Vec<String>,
    /// The file (empty when parsed from a string).
    pub path: PathBuf,
}

impl Loop {
    /// A loop is complete when its status is `complete`, `completed`, `closed` or `done`
    /// (case-insensitive).
    pub fn is_complete(&self) -> bool {
        is_complete_status(&self.status)
    }
}

pub(crate) fn is_complete_status(status: &str) -> bool {
    matches!(
        status.trim().to_ascii_lowercase().as_str(),
        "complete" | "completed" | "closed" | "done"
    )
}

/// What [`Registry::new_loop`](crate::Registry::new_loop) writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoopSpec {
    /// The loop id, e.g. `LOOP-GAPS-BATCH-20260228` (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// Status (default `active`).
    pub status: Option<String>,
    /// Owner.
    pub owner: String,
    /// Scope.
    pub scope: String,
    /// Priority (default `medium`).
    pub priority: Option<String>,
    /// Objective (one line).
    pub objective: String,
    /// Loops that block this one; each must exist.
    pub depends_on: Vec<String>,
}

/// Parses a loop file: YAML front matter between `---` lines at the top. Pure; never panics
/// (a fuzz target calls it). The returned loop's `path` is empty.
///
/// ```
/// let l = gapreg::parse_loop("---\nloop_id: LOOP-A\nstatus: active\nextra: [1]\n---\n# A\n")?;
/// assert_eq!((l.id.as_str(), l.status.as_str()), ("LOOP-A", "active"));
/// assert!(gapreg::parse_loop("# no front matter\n").is_err());
/// # Ok::<(), String>(())
/// ```
pub fn parse_loop(text: &str) -> Result<Loop, String> {
    parse_loop_named(text, None)
}

pub(crate) fn parse_loop_named(text: &str, file_stem: Option<&str>) -> Result<Loop, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "---" {
        return Err("no YAML front matter: the file must start with a `---` line".into());
    }
    let mut front = String::new();
    let mut closed = false;
    for line in lines {
        let t = line.trim_end();
        if t == "---" || t == "..." {
            closed = true;
            break;
        }
        front.push_str(line);
    }
    if !closed {
        return Err("the front matter has no closing `---` line".into());
    }
    let map = match crate::model::parse_yaml::<serde_yaml::Value>(front.as_bytes()) {
        Ok(serde_yaml::Value::Mapping(m)) => m,
        Ok(serde_yaml::Value::Null) => serde_yaml::Mapping::new(),
        Ok(_) => return Err("front matter is not a mapping of `key: value` lines".into()),
        // Hand-written front matter is often not strict YAML (`objective: a: b`): read it as
        // plain `key: value` lines instead.
        Err(e) => lenient_front_matter(&front)
            .ok_or_else(|| format!("front matter is neither YAML nor `key: value` lines: {e}"))?,
    };
    let get = |key: &str| map.get(key).and_then(scalar_text);
    let id = match get("loop_id").or_else(|| get("id")) {
        Some(id) => id,
        None => match file_stem {
            Some(stem) => stem.to_owned(),
            None => return Err("front matter has no `loop_id`".into()),
        },
    };
    check_loop_id(&id)?;
    let depends_on = match map.get("depends_on") {
        None | Some(serde_yaml::Value::Null) => Vec::new(),
        Some(serde_yaml::Value::Sequence(items)) => items.iter().filter_map(scalar_text).collect(),
        Some(other) => scalar_text(other)
            .map(|s| {
                s.split([',', ' '])
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok(Loop {
        id,
        created: get("created"),
        status: get("status").unwrap_or_else(|| "active".into()),
        owner: get("owner"),
        scope: get("scope"),
        priority: get("priority"),
        objective: get("objective"),
        depends_on,
        path: PathBuf::new(),
    })
}

/// Reads front matter as top-level `key: value` lines (the value is everything after the first
/// `: `; surrounding quotes are dropped; `[a, b]` is a list). `None` if a top-level line is not
/// of that form.
fn lenient_front_matter(front: &str) -> Option<serde_yaml::Mapping> {
    let mut map = serde_yaml::Mapping::new();
    for line in front.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t', '-']) {
            continue; // continuation of a block value: ignored
        }
        let (key, value) = match line.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains(' ') => (k.trim(), v.trim()),
            _ => return None,
        };
        let unquoted = |v: &str| -> String {
            let v = v.trim();
            for q in ['"', '\''] {
                if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
                    return v[1..v.len() - 1].to_owned();
                }
            }
            v.to_owned()
        };
        let value = if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            serde_yaml::Value::Sequence(
                inner
                    .split(',')
                    .map(unquoted)
                    .filter(|s| !s.is_empty())
                    .map(serde_yaml::Value::String)
                    .collect(),
            )
        } else if value.is_empty() {
            serde_yaml::Value::Null
        } else {
            serde_yaml::Value::String(unquoted(value))
        };
        map.insert(serde_yaml::Value::String(key.to_owned()), value);
    }
    Some(map)
}

fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Tagged(t) => scalar_text(&t.value),
        _ => None,
    }
}

/// `text` with the top-level front-matter line `key: ...` replaced by `key: value` (or added
/// before the closing `---` if there is none); every other byte is kept. `None` without front
/// matter. `value` must be a plain YAML scalar (the caller checks).
pub(crate) fn set_front_matter_field(text: &str, key: &str, value: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + value.len());
    let mut lines = text.split_inclusive('\n');
    let first = lines.next()?;
    if first.trim_start_matches('\u{feff}').trim_end() != "---" {
        return None;
    }
    out.push_str(first);
    let prefix = format!("{key}:");
    let mut done = false;
    let mut closed = false;
    for line in lines.by_ref() {
        let t = line.trim_end();
        if t == "---" || t == "..." {
            if !done {
                out.push_str(&format!("{key}: {value}\n"));
            }
            out.push_str(line);
            closed = true;
            break;
        }
        if !done && line.starts_with(&prefix) {
            let ending = &line[line.trim_end_matches(['\r', '\n']).len()..];
            out.push_str(&format!("{key}: {value}{ending}"));
            done = true;
        } else {
            out.push_str(line);
        }
    }
    if !closed {
        return None;
    }
    for line in lines {
        out.push_str(line);
    }
    Some(out)
}

/// Checks a loop id: 1–128 letters, digits, `-`, `_` or `.`, not starting with `.`.
pub(crate) fn check_loop_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid loop id {id:?}: use 1-128 letters, digits, '-', '_' or '.', not starting \
             with '.', like LOOP-GAPS-BATCH-20260228"
        ))
    }
}

fn yaml_scalar(s: &str) -> String {
    // JSON strings are valid YAML scalars and need no further escaping rules.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The contents of a new loop file in the seed's format.
pub(crate) fn template(spec: &LoopSpec, created: &str) -> String {
    let deps = spec
        .depends_on
        .iter()
        .map(|d| yaml_scalar(d))
        .collect::<Vec<_>>()
        .join(", ");
    let objective = spec.objective.trim();
    format!(
        "---\nloop_id: {id}\ncreated: {created}\nstatus: {status}\nowner: {owner}\nscope: \
         {scope}\npriority: {priority}\nobjective: {obj}\ndepends_on: [{deps}]\n---\n\n\
         # Loop Scope: {id}\n\n## Objective\n\n{objective}\n\n## Steps\n\n### Step 1: ...\n\n\
         ## Linked Gaps\n\nGaps name this loop in their `parent_loop`; `gapreg list --loop {id}` \
         lists them.\n\n## Success Criteria\n\n- ...\n\n## Definition Of Done\n\n- Loop status \
         can be moved to closed\n",
        id = spec.id,
        status = yaml_scalar(spec.status.as_deref().unwrap_or("active")),
        owner = yaml_scalar(&spec.owner),
        scope = yaml_scalar(&spec.scope),
        priority = yaml_scalar(spec.priority.as_deref().unwrap_or("medium")),
        obj = yaml_scalar(objective),
    )
}

/// Up to five of `candidates` that look like `wanted` (small edit distance, a shared prefix or
/// containment), closest first.
pub(crate) fn close_matches<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let w = wanted.to_ascii_lowercase();
    let mut scored: Vec<(usize, String)> = candidates
        .into_iter()
        .filter_map(|c| {
            let cl = c.to_ascii_lowercase();
            let dist = edit_distance(&w, &cl);
            let common = w
                .bytes()
                .zip(cl.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            let close = dist <= (w.len().max(cl.len()) / 4).max(2)
                || common >= 8.min(w.len())
                || (w.len() >= 4 && (cl.contains(&w) || w.contains(&cl)));
            close.then(|| (dist, c.to_owned()))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, c)| c).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "---\nloop_id: LOOP-GAPS-FILE-BATCH-AND-LOCK-IMPROVEMENT-20260228\n\
        created: 2026-02-28\nstatus: active\nowner: \"@ronny\"\nscope: gaps\npriority: medium\n\
        objective: Eliminate agent friction in gaps.file: add --parent-loop flag\n---\n\n# Loop\n";

    #[test]
    fn parses_the_seed() {
        let l = parse_loop(SEED).expect("seed parses");
        assert_eq!(l.id, "LOOP-GAPS-FILE-BATCH-AND-LOCK-IMPROVEMENT-20260228");
        assert_eq!(l.created.as_deref(), Some("2026-02-28"));
        assert_eq!(l.owner.as_deref(), Some("@ronny"));
        assert!(!l.is_complete());
        assert!(l.depends_on.is_empty());
        assert_eq!(
            l.objective.as_deref(),
            Some("Eliminate agent friction in gaps.file: add --parent-loop flag")
        );
    }

    #[test]
    fn template_round_trips() {
        let spec = LoopSpec {
            id: "LOOP-B".into(),
            owner: "@me".into(),
            scope: "x: y".into(),
            objective: "Do it: now # really".into(),
            depends_on: vec!["LOOP-A".into()],
            ..LoopSpec::default()
        };
        let l = parse_loop(&template(&spec, "2026-01-01")).expect("template parses");
        assert_eq!(l.id, "LOOP-B");
        assert_eq!(l.objective.as_deref(), Some("Do it: now # really"));
        assert_eq!(l.scope.as_deref(), Some("x: y"));
        assert_eq!(l.depends_on, ["LOOP-A"]);
        assert_eq!(l.status, "active");
    }

    #[test]
    fn front_matter_fields_are_edited_in_place() {
        let edited = set_front_matter_field(SEED, "status", "closed").expect("edit");
        assert_eq!(edited, SEED.replace("status: active", "status: closed"));
        let bare = "---\nloop_id: A\r\n---\nbody: x\n";
        assert_eq!(
            set_front_matter_field(bare, "status", "done").as_deref(),
            Some("---\nloop_id: A\r\nstatus: done\n---\nbody: x\n")
        );
        assert_eq!(
            set_front_matter_field("no front matter", "status", "x"),
            None
        );
    }

    #[test]
    fn close_matches_find_typos_and_prefixes() {
        let loops = ["LOOP-GAPS-20260228", "LOOP-NET-20260228", "OTHER"];
        assert_eq!(
            close_matches("LOOP-GAPS-20260227", loops),
            ["LOOP-GAPS-20260228"]
        );
        assert!(close_matches("ZZZZZZZZZZZZ", loops).is_empty());
    }
}
