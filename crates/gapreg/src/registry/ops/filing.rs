//! Filing: one gap or a batch, optionally under an idempotency key.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{ConflictDetail, Error, ErrorKind, Result};
use crate::graph;
use crate::loops::{self, Loop};
use crate::model::{Gap, GapSpec, Status};
use crate::registry::rules::{
    self, MAX_BATCH, SEQ_PREFIX, check_explicit_id, check_key, check_spec_fields, filed_from,
    new_gap,
};
use crate::store::{Clock, Coordination, Documents, KeyRecord};

use super::Engine;

/// The loops, read once per call the first time a check needs them.
type LoopCache = Option<BTreeMap<String, Loop>>;

/// What checking one entry needs to know of its batch.
struct Batch<'s> {
    /// Every entry.
    all: &'s [GapSpec],
    /// The entries with an explicit id, by id.
    explicit: HashMap<String, usize>,
    loops: LoopCache,
}

impl<D: Documents, C: Coordination, K: Clock> Engine<'_, D, C, K> {
    /// Files one gap: see [`crate::Registry::file`].
    pub fn file(&self, spec: GapSpec) -> Result<Gap> {
        self.file_batch(vec![spec], None)?
            .pop()
            .ok_or_else(|| Error::invalid("batch", "nothing filed"))
    }

    /// Files gaps all or nothing, under idempotency key `key` if given: see
    /// [`crate::Registry::file_batch`] and [`crate::Registry::file_idempotent`].
    pub fn file_batch(&self, specs: Vec<GapSpec>, key: Option<&str>) -> Result<Vec<Gap>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        if specs.len() > MAX_BATCH {
            return Err(Error::invalid(
                "batch",
                format!(
                    "it has {} entries, more than the {MAX_BATCH} one batch may file; split it",
                    specs.len()
                ),
            ));
        }
        let request = match key {
            Some(key) => {
                check_key(key)?;
                Some(format!(
                    "{:08x}",
                    crc32fast::hash(format!("{specs:?}").as_bytes())
                ))
            }
            None => None,
        };
        let _guard = self.docs.lock()?;
        // A retried request: return what it filed, or finish filing it with the ids it holds.
        let mut reuse: Option<KeyRecord> = None;
        if let (Some(key), Some(request)) = (key, &request) {
            if let Some(record) = self.coord.read_key(key)? {
                if let Some(filed) = self.retried(key, request, &record, &specs)? {
                    return Ok(filed);
                }
                reuse = Some(record);
            }
        }
        let prefixes = self.check_batch(&specs)?;
        // Reserve: ids per prefix (consecutive), then contiguous registry positions.
        let mut wanted: Vec<(String, u64)> = Vec::new();
        for p in prefixes.iter().flatten() {
            match wanted.iter_mut().find(|(q, _)| q == p) {
                Some(w) => w.1 += 1,
                None => wanted.push((p.clone(), 1)),
            }
        }
        // Everything that can refuse the batch is checked before an id is reserved, so a
        // refusal moves no counter: the store's own preparation, and the documents of the
        // ids the counters will give next.
        let next_ids = |this: &Self| -> Result<Vec<String>> {
            let mut next = Vec::new();
            for (prefix, n) in &wanted {
                let first = this.coord.peek(prefix)?;
                next.extend((0..*n).map(|k| format!("{prefix}-{}", first.saturating_add(k))));
            }
            Ok(next)
        };
        let mut next = if reuse.is_none() {
            next_ids(self)?
        } else {
            Vec::new()
        };
        // A counter behind the documents (a merge brought in gaps another clone filed):
        // raised to the highest id the tree holds, never lowered, before anything is taken.
        let mut behind = false;
        for id in &next {
            behind |= self.docs.gap_exists(id)?;
        }
        if behind {
            let highest = self.docs.highest_numbers()?;
            for (prefix, _) in &wanted {
                if let Some(h) = highest.get(prefix) {
                    self.coord.raise(prefix, *h)?;
                }
            }
            next = next_ids(self)?;
        }
        self.docs.prepare(specs.len(), &next)?;
        for id in &next {
            self.refuse_existing(id, "next id")?;
        }
        let (ids, seq) = match reuse {
            Some(record) => (record.ids, record.seq),
            None => {
                let (ids, seq) = self.reserve_for(&specs, &prefixes, &wanted)?;
                if let (Some(key), Some(request)) = (key, request) {
                    // Durable before any document: a retry after a crash past this point
                    // files the same ids.
                    let record = KeyRecord { request, ids, seq };
                    self.coord.write_key(key, &record)?;
                    (record.ids, record.seq)
                } else {
                    (ids, seq)
                }
            }
        };
        for id in &ids {
            self.refuse_existing(id, "reserved id")?;
        }
        let now = self.clock.now();
        let gaps: Vec<Gap> = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| new_gap(s, ids[i].clone(), seq + i as u64, now, |n| ids[n].clone()))
            .collect();
        self.docs.write_batch(&gaps)?;
        Ok(gaps)
    }

    /// A document already at an id the counters give: the counter is behind the documents.
    fn refuse_existing(&self, id: &str, what: &str) -> Result<()> {
        if self.docs.gap_exists(id)? {
            return Err(Error::invalid(
                format!("{what} {id}"),
                format!(
                    "a gap file for {id} already exists, so the id counter is behind the gap \
                     files (after a merge?); run `gapreg doctor --repair` to raise it and file \
                     again"
                ),
            ));
        }
        Ok(())
    }

    /// A request retried under `key` whose record is `record`: what it filed if all of it
    /// exists (`None`: file it again with the same ids).
    fn retried(
        &self,
        key: &str,
        request: &str,
        record: &KeyRecord,
        specs: &[GapSpec],
    ) -> Result<Option<Vec<Gap>>> {
        let reused = || {
            Error::conflict(
                format!("idempotency key {key}"),
                ConflictDetail::KeyReused {
                    ids: record.ids.clone(),
                },
            )
        };
        if record.request != request || record.ids.len() != specs.len() {
            return Err(reused());
        }
        self.check_key_record(key, record, specs)?;
        let mut filed = Vec::with_capacity(record.ids.len());
        for (id, spec) in record.ids.iter().zip(specs) {
            if self.docs.gap_exists(id)? {
                let gap = self.docs.read_gap(id)?;
                // The record is coordination state, the gaps are documents: after a checkout
                // the id may hold someone else's gap. Only this request's own gap answers it.
                if !filed_from(&gap, spec) {
                    return Err(reused());
                }
                filed.push(gap);
            }
        }
        if filed.len() == record.ids.len() {
            return Ok(Some(filed));
        }
        if !filed.is_empty() {
            return Err(Error::corrupt(
                self.coord.key_location(key),
                "only some of the gaps it filed exist (removed by hand?); file again with a \
                 new key",
            ));
        }
        Ok(None)
    }

    /// Checks every entry; returns each one's id prefix (`None` for an explicit id), or every
    /// invalid entry at once.
    fn check_batch(&self, specs: &[GapSpec]) -> Result<Vec<Option<String>>> {
        let mut errors: Vec<(usize, Error)> = Vec::new();
        let mut prefixes = Vec::with_capacity(specs.len());
        let mut batch = Batch {
            all: specs,
            explicit: specs
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.id.clone().map(|id| (id, i)))
                .collect(),
            loops: None,
        };
        // batch-internal edges for the cycle check
        let mut internal: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, spec) in specs.iter().enumerate() {
            match self.check_spec(i, spec, &mut batch) {
                Ok((prefix, edges)) => {
                    prefixes.push(prefix);
                    internal.insert(format!("@{i}"), edges);
                }
                Err(e) => {
                    prefixes.push(None);
                    errors.push((i, e));
                }
            }
        }
        // A cycle the batch would close — among its entries, or through the registry's
        // gaps and loops — is reported together with every other invalid entry (the invalid
        // ones have no edges here, so they cannot take part).
        if let Some(cycle) = self.batch_cycle(internal, &mut batch)? {
            let first = cycle
                .first()
                .and_then(|c| c.strip_prefix('@'))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let named: Vec<String> = cycle.iter().map(|n| batch_name(n, specs)).collect();
            errors.push((first, rules::cycle(named)));
            errors.sort_by_key(|(i, _)| *i);
        }
        if errors.is_empty() {
            return Ok(prefixes);
        }
        if specs.len() == 1 {
            return Err(errors.remove(0).1);
        }
        Err(Error::new(ErrorKind::BatchInvalid {
            errors: errors
                .into_iter()
                .map(|(i, e)| (i, e.to_string()))
                .collect(),
        }))
    }

    /// The first cycle through an entry of the batch, in the graph of its entries (`@N`, an
    /// entry's explicit id standing for it) and of every existing gap and loop they reach.
    fn batch_cycle(
        &self,
        mut graph: BTreeMap<String, Vec<String>>,
        batch: &mut Batch<'_>,
    ) -> Result<Option<Vec<String>>> {
        let entries: Vec<String> = graph.keys().cloned().collect();
        let mut todo: Vec<String> = Vec::new();
        for (node, edges) in graph.iter_mut() {
            let Some(spec) = node[1..]
                .parse::<usize>()
                .ok()
                .and_then(|i| batch.all.get(i))
            else {
                continue;
            };
            for dep in &spec.depends_on {
                if !dep.starts_with('@') && !batch.explicit.contains_key(dep) {
                    edges.push(dep.clone());
                    todo.push(dep.clone());
                }
            }
        }
        if !todo.is_empty() && batch.loops.is_none() {
            batch.loops = Some(self.docs.loops()?.value);
        }
        let empty = BTreeMap::new();
        let loops = batch.loops.as_ref().unwrap_or(&empty);
        while let Some(node) = todo.pop() {
            if graph.contains_key(&node) {
                continue;
            }
            let edges: Vec<String> = self
                .edges(&node, loops)
                .unwrap_or_default()
                .into_iter()
                .map(|d| match batch.explicit.get(&d) {
                    Some(j) => format!("@{j}"),
                    None => d,
                })
                .collect();
            todo.extend(edges.iter().filter(|d| !d.starts_with('@')).cloned());
            graph.insert(node, edges);
        }
        let mut deps = |n: &str| graph.get(n).cloned();
        for entry in &entries {
            for next in graph.get(entry).cloned().unwrap_or_default() {
                if let Some(cycle) = graph::cycle_through(entry, &next, &mut deps) {
                    return Ok(Some(cycle));
                }
            }
        }
        Ok(None)
    }

    /// Reserves the ids of a checked batch (per prefix, consecutive) and its contiguous
    /// registry positions; returns every entry's id and the first position.
    fn reserve_for(
        &self,
        specs: &[GapSpec],
        prefixes: &[Option<String>],
        wanted: &[(String, u64)],
    ) -> Result<(Vec<String>, u64)> {
        let mut reserved: HashMap<&str, (u64, u64)> = HashMap::new();
        for (p, n) in wanted {
            let first = self.coord.reserve(p, *n)?;
            reserved.insert(p.as_str(), (first, first + n));
        }
        let seq = self.coord.reserve(SEQ_PREFIX, specs.len() as u64)?;
        let ids = specs
            .iter()
            .zip(prefixes)
            .map(|(s, p)| match (&s.id, p) {
                (Some(id), _) => Ok(id.clone()),
                (None, Some(p)) => match reserved.get_mut(p.as_str()) {
                    Some((next, end)) if *next < *end => {
                        *next += 1;
                        Ok(format!("{p}-{}", *next - 1))
                    }
                    _ => Err(Error::invalid("batch", "ran out of reserved ids")),
                },
                (None, None) => Err(Error::invalid("batch", "entry without a prefix")),
            })
            .collect::<Result<_>>()?;
        Ok((ids, seq))
    }

    /// A key record read back is verified before its ids are used again: one canonical,
    /// reserved id per entry (explicit ids as the spec gives them), all distinct, and
    /// registry positions already reserved — so a stale or planted record can neither file
    /// over ids the counters would hand out again nor duplicate an id.
    fn check_key_record(&self, key: &str, record: &KeyRecord, specs: &[GapSpec]) -> Result<()> {
        let path = self.coord.key_location(key);
        let bad = |reason: String| Error::corrupt(&path, format!("{reason}; remove the file"));
        let mut seen = HashSet::new();
        for (id, spec) in record.ids.iter().zip(specs) {
            rules::check_gap_id(id).map_err(|e| bad(e.to_string()))?;
            if !seen.insert(id.as_str()) {
                return Err(bad(format!("it names {id} twice")));
            }
            if spec.id.as_ref().is_some_and(|explicit| explicit != id) {
                return Err(bad(format!(
                    "it names {id} where the request gives its own id"
                )));
            }
            self.coord.validate(id).map_err(|e| bad(e.to_string()))?;
        }
        let last_seq = record
            .seq
            .checked_add(record.ids.len() as u64 - 1)
            .filter(|_| record.seq > 0 && !record.ids.is_empty())
            .ok_or_else(|| bad(format!("registry position {} is invalid", record.seq)))?;
        self.coord
            .validate(&format!("{SEQ_PREFIX}-{last_seq}"))
            .map_err(|e| bad(e.to_string()))?;
        Ok(())
    }

    fn find_loop(&self, id: &str, cache: &mut LoopCache) -> Result<bool> {
        if loops::check_loop_id(id).is_err() {
            return Ok(false);
        }
        if cache.is_none() {
            *cache = Some(self.docs.loops()?.value);
        }
        Ok(cache.as_ref().is_some_and(|c| c.contains_key(id)))
    }

    /// Checks one batch entry; returns its id-store prefix (`None` for an explicit id) and
    /// its edges to other entries of the batch.
    fn check_spec(
        &self,
        i: usize,
        spec: &GapSpec,
        batch: &mut Batch<'_>,
    ) -> Result<(Option<String>, Vec<String>)> {
        check_spec_fields(spec, self.clock.now())?;
        let prefix = match &spec.id {
            Some(id) => {
                check_explicit_id(id)?;
                if batch.explicit.get(id) != Some(&i) {
                    return Err(Error::invalid(
                        format!("id {id}"),
                        "it appears twice in this batch",
                    ));
                }
                self.coord.validate(id)?;
                if self.docs.gap_exists(id)? {
                    return Err(Error::conflict(id, ConflictDetail::Exists));
                }
                None
            }
            None => {
                let p = rules::check_prefix(spec.prefix.as_deref().unwrap_or(self.default_prefix))?;
                if p == SEQ_PREFIX {
                    return Err(Error::invalid("prefix", "SEQ is reserved"));
                }
                Some(p)
            }
        };
        if let Some(parent) = &spec.parent_loop {
            if !self.find_loop(parent, &mut batch.loops)? {
                return Err(self.docs.loop_not_found(parent, "parent loop"));
            }
        }
        let edges = self.check_deps(i, spec, batch)?;
        if spec.status == Some(Status::Complete) {
            self.check_complete_deps(spec, batch)?;
        }
        Ok((prefix, edges))
    }

    /// An entry's dependencies exist (or are entries of the batch) and close no cycle through
    /// an explicit id; returns its edges to other entries.
    fn check_deps(&self, i: usize, spec: &GapSpec, batch: &mut Batch<'_>) -> Result<Vec<String>> {
        let (all, explicit) = (batch.all, &batch.explicit);
        let loop_cache = &mut batch.loops;
        let mut edges = Vec::new();
        for dep in &spec.depends_on {
            if let Some(n) = dep.strip_prefix('@') {
                match n.parse::<usize>() {
                    Ok(n) if n < all.len() && n != i => edges.push(format!("@{n}")),
                    Ok(n) if n == i => {
                        return Err(rules::cycle(vec![
                            format!("entry {i}"),
                            format!("entry {i}"),
                        ]));
                    }
                    _ => {
                        return Err(Error::invalid(
                            format!("dependency {dep}"),
                            format!(
                                "@N must name another entry of this batch (0..{})",
                                all.len()
                            ),
                        ));
                    }
                }
            } else if let Some(&j) = explicit.get(dep) {
                if j == i {
                    return Err(rules::cycle(vec![dep.clone(), dep.clone()]));
                }
                edges.push(format!("@{j}"));
            } else if !self.docs.gap_exists(dep)? && !self.find_loop(dep, loop_cache)? {
                return Err(self.docs.loop_not_found(dep, "dependency (gap or loop)"));
            }
        }
        Ok(edges)
    }

    /// An entry filed as complete depends only on finished gaps and loops (entries of the
    /// batch: filed complete too).
    fn check_complete_deps(&self, spec: &GapSpec, batch: &mut Batch<'_>) -> Result<()> {
        let (all, explicit) = (batch.all, &batch.explicit);
        let loop_cache = &mut batch.loops;
        let mut open = Vec::new();
        for dep in &spec.depends_on {
            let entry = match dep.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => Some(n),
                None => explicit.get(dep).copied(),
            };
            let done = match entry {
                Some(n) => all[n].status == Some(Status::Complete),
                None => {
                    if loop_cache.is_none() {
                        *loop_cache = Some(self.docs.loops()?.value);
                    }
                    let status = self.statuses(std::slice::from_ref(dep))?;
                    let empty = BTreeMap::new();
                    let loops = loop_cache.as_ref().unwrap_or(&empty);
                    rules::unfinished_note(dep, &|d| status.get(d).copied(), loops).is_none()
                }
            };
            if !done {
                open.push(dep.clone());
            }
        }
        if !open.is_empty() {
            return Err(Error::invalid(
                "status complete",
                format!("it depends on {} which are not complete", open.join(", ")),
            ));
        }
        Ok(())
    }
}

/// An entry's name in a message: its explicit id, or `entry N`.
fn batch_name(node: &str, specs: &[GapSpec]) -> String {
    match node.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
        Some(i) => specs
            .get(i)
            .and_then(|s| s.id.clone())
            .unwrap_or_else(|| format!("entry {i}")),
        None => node.to_owned(),
    }
}
