//! Merging a loop file: its front-matter keys, and its body.

use crate::model::parse_yaml;
use serde_yaml::{Mapping, Value};

use super::*;

/// A loop file split at its front matter.
pub(super) struct LoopText<'a> {
    pub(super) open: &'a str,
    pub(super) front: &'a str,
    pub(super) close: &'a str,
    pub(super) body: &'a str,
    pub(super) map: Mapping,
}

pub(super) fn split_loop(bytes: &[u8]) -> Result<LoopText<'_>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("it is not UTF-8 text ({e})"))?;
    let first_len = text.find('\n').map_or(text.len(), |i| i + 1);
    let open = &text[..first_len];
    if open.trim_start_matches('\u{feff}').trim_end() != "---" {
        return Err("no YAML front matter: the file must start with a `---` line".into());
    }
    let mut at = first_len;
    loop {
        if at >= text.len() {
            return Err("the front matter has no closing `---` line".into());
        }
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
        let line = text[at..end].trim_end();
        if line == "---" || line == "..." {
            let front = &text[first_len..at];
            let map = match parse_yaml::<Value>(front.as_bytes()) {
                Ok(Value::Mapping(m)) => m,
                Ok(Value::Null) => Mapping::new(),
                Ok(_) => return Err("front matter is not a mapping of `key: value` lines".into()),
                Err(e) => return Err(format!("front matter is not strict YAML: {e}")),
            };
            return Ok(LoopText {
                open,
                front,
                close: &text[at..end],
                body: &text[end..],
                map,
            });
        }
        at = end;
    }
}

/// The top-level `key: ...` blocks of front matter as written (each with the continuation,
/// comment and blank lines after it), if each parses alone to one key.
pub(super) fn front_blocks(front: &str) -> Option<(String, Vec<(Value, String)>)> {
    let mut preamble = String::new();
    let mut blocks: Vec<(Value, String)> = Vec::new();
    let mut current: Option<String> = None;
    for line in front.split_inclusive('\n') {
        let starts_key = !line.starts_with([' ', '\t', '#', '-', '\r', '\n']) && !line.is_empty();
        if starts_key {
            if let Some(block) = current.take() {
                blocks.push((block_key(&block)?, block));
            }
            current = Some(line.to_owned());
        } else {
            match &mut current {
                Some(block) => block.push_str(line),
                None => preamble.push_str(line),
            }
        }
    }
    if let Some(block) = current.take() {
        blocks.push((block_key(&block)?, block));
    }
    let blocks = blocks
        .into_iter()
        .map(|(k, mut b)| {
            if !b.ends_with('\n') {
                b.push('\n');
            }
            (k, b)
        })
        .collect();
    Some((preamble, blocks))
}

pub(super) fn block_key(block: &str) -> Option<Value> {
    match parse_yaml::<Value>(block.as_bytes()) {
        Ok(Value::Mapping(m)) if m.len() == 1 => m.keys().next().cloned(),
        _ => None,
    }
}

/// Merges three versions of one loop file (`<loops_dir>/<LOOP-ID>.md`): the front matter's
/// keys as the [module docs](crate::merge) say (`depends_on` and `tags` as sets), the body kept from
/// the side that changed it (a conflict if both did). Keys are written as the side whose
/// value won wrote them, so hand formatting survives. Pure; never panics.
///
/// ```
/// use gapreg::merge::{merge_loop, Merge};
/// let base = "---\nloop_id: LOOP-A\nstatus: active\nowner: \"@ana\"\n---\n# Body\n";
/// let ours = base.replace("active", "closed");
/// let theirs = base.replace("# Body", "# Body, longer");
/// let Merge::Clean(text) = merge_loop(Some(base.as_bytes()), ours.as_bytes(), theirs.as_bytes())
/// else { panic!() };
/// assert_eq!(text, "---\nloop_id: LOOP-A\nstatus: closed\nowner: \"@ana\"\n---\n# Body, longer\n");
/// ```
pub fn merge_loop(ancestor: Option<&[u8]>, ours: &[u8], theirs: &[u8]) -> Merge {
    let damaged = |side, message: String| {
        Merge::Conflict(Conflict::whole(
            ConflictKind::Damaged { side, message },
            ours,
            theirs,
        ))
    };
    let o = match split_loop(ours) {
        Ok(l) => l,
        Err(e) => return damaged(Side::Ours, e),
    };
    let t = match split_loop(theirs) {
        Ok(l) => l,
        Err(e) => return damaged(Side::Theirs, e),
    };
    let whole_text = |l: &LoopText<'_>| format!("{}{}{}{}", l.open, l.front, l.close, l.body);
    let Some(ancestor) = ancestor else {
        if ours == theirs {
            return Merge::Clean(whole_text(&o));
        }
        let title = |l: &LoopText<'_>| {
            let get = |k: &str| l.map.get(k).and_then(Value::as_str).map(str::to_owned);
            get("objective")
                .or_else(|| get("loop_id"))
                .unwrap_or_default()
        };
        let id = o
            .map
            .get("loop_id")
            .and_then(Value::as_str)
            .unwrap_or("the same loop")
            .to_owned();
        let kind = ConflictKind::AddAdd {
            id,
            ours_title: title(&o),
            theirs_title: title(&t),
        };
        return Merge::Conflict(Conflict::whole(kind, ours, theirs));
    };
    let a = match split_loop(ancestor) {
        Ok(l) => l,
        Err(e) => return damaged(Side::Ancestor, e),
    };
    if ours == ancestor {
        return Merge::Clean(whole_text(&t));
    }
    if theirs == ancestor || ours == theirs {
        return Merge::Clean(whole_text(&o));
    }
    let fields = merge_maps(&a.map, &o.map, &t.map, LOOP_LISTS, &[]);
    let body = three_way_text(a.body, o.body, t.body);
    let (preamble, ours_blocks, theirs_blocks) =
        match (front_blocks(o.front), front_blocks(t.front)) {
            (Some((p, ob)), Some((_, tb))) => (p, ob, tb),
            _ => (String::new(), Vec::new(), Vec::new()),
        };
    let mut parts = if fields.merged == o.map && fields.conflicts.is_empty() {
        vec![Part::Text(format!("{}{}", o.open, o.front))]
    } else if fields.merged == t.map && fields.conflicts.is_empty() {
        vec![Part::Text(format!("{}{}", o.open, t.front))]
    } else {
        let mut parts = vec![Part::Text(format!("{}{preamble}", o.open))];
        parts.extend(marked_parts(
            &fields.merged,
            &a.map,
            &o.map,
            &t.map,
            &fields.conflicts,
            &ours_blocks,
            &theirs_blocks,
        ));
        parts
    };
    parts.push(Part::Text(o.close.to_owned()));
    let mut conflicts = field_conflicts(&a.map, &o.map, &t.map, &fields.conflicts);
    match body {
        Some(b) => parts.push(Part::Text(b.to_owned())),
        None => {
            parts.push(Part::Both {
                label: format!("{BODY_FIELD} changed on both branches"),
                ours: o.body.to_owned(),
                ancestor: Some(a.body.to_owned()),
                theirs: t.body.to_owned(),
            });
            conflicts.push(FieldConflict {
                field: BODY_FIELD.into(),
                ancestor: None,
                ours: None,
                theirs: None,
            });
        }
    }
    let conflict = Conflict {
        kind: ConflictKind::Fields(conflicts),
        parts,
    };
    if !conflict.fields().is_empty() {
        return Merge::Conflict(conflict);
    }
    let text = conflict.render(7);
    // What was written must read back as what was merged.
    match split_loop(text.as_bytes()) {
        Ok(check) if check.map == fields.merged => Merge::Clean(text),
        Ok(_) => {
            let front = serde_yaml::to_string(&fields.merged).unwrap_or_default();
            let text = format!("{}{front}{}{}", o.open, o.close, body.unwrap_or(""));
            match split_loop(text.as_bytes()) {
                Ok(check) if check.map == fields.merged => Merge::Clean(text),
                _ => damaged(
                    Side::Merged,
                    "the merged front matter does not read back".into(),
                ),
            }
        }
        Err(e) => damaged(Side::Merged, e),
    }
}

pub(super) fn three_way_text<'s>(a: &'s str, o: &'s str, t: &'s str) -> Option<&'s str> {
    if o == t || t == a {
        Some(o)
    } else if o == a {
        Some(t)
    } else {
        None
    }
}
