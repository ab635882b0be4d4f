//! [`Registry::doctor`]: consistency checks and safe repairs.

mod report;

use report::damaged;
pub use report::{DoctorReport, Finding, FindingKind};

use std::collections::{BTreeMap, HashMap};

use atomic_file::dir::{Dir, FileKind};

use crate::error::Result;
use crate::index;
use crate::layout::{
    CLAIMS, GAPS, GITIGNORE_FILE, IDS, INDEX, KEYS, LEASES, MAX_INDEX_BYTES, MAX_MANIFEST_BYTES,
    PENDING, STAGING,
};
use crate::registry::{Registry, SEQ_PREFIX};

impl Registry {
    /// Checks the registry under its lock: corrupt or unparseable files, file names that
    /// differ from their ids, duplicate ids, dangling references, cycles, ids above their
    /// counter, leftover temp files and a stale index. With `repair`, fixes what is safe:
    /// removes dead writers' temp files, raises counters to the highest id present and
    /// rebuilds the index. Everything else is reported for a person to fix.
    ///
    /// ```
    /// let repo = tempfile::tempdir()?;
    /// let reg = gapreg::Registry::init(repo.path(), gapreg::Config::default())?;
    /// std::fs::write(reg.dir().join("index.log"), "garbage\n")?;
    /// assert!(!reg.doctor(false)?.healthy());
    /// assert!(reg.doctor(true)?.healthy());
    /// assert!(reg.doctor(false)?.findings.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn doctor(&self, repair: bool) -> Result<DoctorReport> {
        let _guard = self.lock()?;
        let mut report = DoctorReport::default();

        // Batches cut short by a dead writer.
        let root = self.layout().root()?;
        let pending = self.dir().join(PENDING);
        let pending_kind = root.kind(PENDING)?;
        let has_pending = match pending_kind {
            None => false,
            Some(FileKind::File) => true,
            Some(kind) => {
                report.add(
                    FindingKind::Corrupt,
                    pending.display().to_string(),
                    format!("it is {kind}, not a batch manifest; remove it by hand"),
                );
                true
            }
        };
        if pending_kind == Some(FileKind::File) {
            let finished = if repair {
                self.files.finish_batch()
            } else {
                Ok(false)
            };
            let repaired = matches!(finished, Ok(true));
            if let Err(e) = finished {
                damaged(&mut report, Err(e))?;
            }
            report.findings.push(Finding {
                kind: FindingKind::IncompleteBatch,
                subject: pending.display().to_string(),
                message: "a committed batch was not moved into gaps/ completely; \
                          `gapreg doctor --repair` (or any change) finishes it"
                    .into(),
                repaired,
            });
        }
        if !has_pending {
            let staged = self.check_staging(&mut report, repair);
            damaged(&mut report, staged)?;
        }

        // Leftover temp files, and entries of the wrong type where directories belong.
        let mut dirs: Vec<(String, Option<Dir>)> = Vec::new();
        dirs.push((self.dir().display().to_string(), Some(root.clone())));
        for name in [GAPS, IDS, KEYS] {
            match root.open_dir(name) {
                Ok(d) => dirs.push((root.join(name).display().to_string(), d)),
                Err(e) => damaged(&mut report, Err(e.into()))?,
            }
        }
        // Shared coordination lives under the common git directory; whatever sits at its old
        // places inside the registry is never read — stale, or planted: reported, not used.
        if self.files.layout.shared() {
            for name in [IDS, LEASES, CLAIMS, KEYS] {
                let misplaced: Vec<String> = match root.kind(name)? {
                    None => Vec::new(),
                    Some(FileKind::Dir) => match root.open_dir(name) {
                        Ok(Some(d)) => d
                            .entries()?
                            .iter()
                            .map(|e| d.join(&e.name).display().to_string())
                            .collect(),
                        _ => vec![root.join(name).display().to_string()],
                    },
                    Some(_) => vec![root.join(name).display().to_string()],
                };
                for path in misplaced {
                    report.add(
                        FindingKind::Corrupt,
                        path,
                        format!(
                            "coordination state inside the registry, where gapreg does not \
                             read it (it lives in {}); stale or planted: remove it",
                            self.files.layout.coordination_path().display()
                        ),
                    );
                }
            }
        }
        match root.kind(GITIGNORE_FILE)? {
            None | Some(FileKind::File) => {}
            Some(kind) => report.add(
                FindingKind::Corrupt,
                root.join(GITIGNORE_FILE).display().to_string(),
                format!(
                    "it is {kind}, not the file gapreg writes; remove it and restore it from git"
                ),
            ),
        }
        // Idempotency keys: each a checksummed record; a damaged one fails its retries.
        if let Ok(Some(keys)) = root.open_dir(KEYS) {
            let opts = atomic_file::Options::new().checksum(true);
            for entry in keys.entries()? {
                if atomic_file::is_temp_name(&entry.name) {
                    continue;
                }
                let path = keys.join(&entry.name).display().to_string();
                if entry.kind != FileKind::File {
                    report.add(
                        FindingKind::Corrupt,
                        path,
                        format!(
                            "it is {}, not an idempotency key record; remove it",
                            entry.kind
                        ),
                    );
                    continue;
                }
                if let Err(e) = keys.read_with(&entry.name, &opts, MAX_MANIFEST_BYTES) {
                    report.add(
                        FindingKind::Corrupt,
                        path,
                        format!("{e}; a retry with this key fails until it is removed"),
                    );
                }
            }
        }
        match self.layout().loops(false) {
            Ok(d) => dirs.push((self.loops_dir().display().to_string(), d)),
            Err(e) => damaged(&mut report, Err(e))?,
        }
        for (_, dir) in dirs {
            let Some(dir) = dir else { continue };
            let rec = dir.recover(repair)?;
            for p in rec.removed {
                let message = if repair {
                    "temp file of a writer that died mid-write; removed"
                } else {
                    "temp file of a writer that died mid-write (`gapreg doctor --repair` \
                     removes it)"
                };
                report.findings.push(Finding {
                    kind: FindingKind::TempFile,
                    subject: p.display().to_string(),
                    message: message.into(),
                    repaired: repair,
                });
            }
        }

        // Gap files.
        let (gaps, bad) = self.files.scan_gap_files()?;
        report.gaps = gaps.len() + bad.len();
        let mut max_number: BTreeMap<String, u64> = BTreeMap::new();
        let mut note_max = |name: &str| {
            // Padded spellings (`GAP-OP-0007`) count with their number.
            if let Ok(id) = idreserve::Id::parse_lenient(name) {
                let m = max_number.entry(id.prefix().to_owned()).or_default();
                *m = (*m).max(id.number());
            }
        };
        for (stem, _) in &gaps {
            note_max(stem);
        }
        for (path, _) in &bad {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                note_max(stem);
            }
        }
        for (path, reason) in bad {
            report.add(
                FindingKind::Corrupt,
                path.display().to_string(),
                format!("unparseable gap file: {reason}; fix it by hand or restore it from git"),
            );
        }
        let mut by_number: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
        let mut max_seq = 0;
        for (stem, g) in &gaps {
            if *stem != g.id {
                report.add(
                    FindingKind::IdMismatch,
                    self.gap_path(stem).display().to_string(),
                    format!(
                        "the file is named {stem} but holds {}; rename the file or fix the id",
                        g.id
                    ),
                );
            }
            max_seq = max_seq.max(g.seq);
            match idreserve::Id::parse_lenient(&g.id) {
                Ok(id) => {
                    by_number
                        .entry((id.prefix().to_owned(), id.number()))
                        .or_default()
                        .push(stem.clone());
                    let m = max_number.entry(id.prefix().to_owned()).or_default();
                    *m = (*m).max(id.number());
                }
                Err(e) => report.add(
                    FindingKind::Corrupt,
                    self.gap_path(stem).display().to_string(),
                    format!("invalid id {:?}: {e}", g.id),
                ),
            }
        }
        // Two gaps at one registry position: batches filed on two branches and merged. Their
        // order falls back to the id, which can interleave the batches.
        let mut by_seq: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for (stem, g) in &gaps {
            by_seq.entry(g.seq).or_default().push(stem);
        }
        for (seq, ids) in by_seq.iter().filter(|(_, ids)| ids.len() > 1) {
            report.add(
                FindingKind::DuplicatePosition,
                ids.join(", "),
                format!(
                    "these gaps share registry position {seq} (batches filed on two branches \
                     and merged); they are listed by id, so batches may interleave. Not \
                     repaired: refile one side's gaps if their order matters"
                ),
            );
        }
        for ((prefix, n), files) in &by_number {
            if files.len() > 1 {
                report.add(
                    FindingKind::DuplicateId,
                    format!("{prefix}-{n}"),
                    format!(
                        "the same id is held by {}; give all but one a new id \
                         (`gapreg next-id`) and update references",
                        files.join(", ")
                    ),
                );
            }
        }

        // Loops.
        let (loops, bad_loops) = self.files.scan_loop_files()?;
        report.loops = loops.len() + bad_loops.len();
        for (path, reason) in bad_loops {
            report.add(
                FindingKind::Corrupt,
                path.display().to_string(),
                format!("unparseable loop front matter: {reason}"),
            );
        }
        let mut loop_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut loop_files: HashMap<String, Vec<String>> = HashMap::new();
        for l in &loops {
            loop_map.insert(l.id.clone(), l.depends_on.clone());
            loop_files
                .entry(l.id.clone())
                .or_default()
                .push(l.path.display().to_string());
        }
        let mut dup_loops: Vec<_> = loop_files
            .into_iter()
            .filter(|(_, f)| f.len() > 1)
            .collect();
        dup_loops.sort();
        for (id, files) in dup_loops {
            report.add(
                FindingKind::DuplicateId,
                id,
                format!(
                    "the loop id appears in {}; rename one of them",
                    files.join(", ")
                ),
            );
        }

        // Dangling references.
        let gap_ids: HashMap<&str, &crate::model::Gap> =
            gaps.iter().map(|(_, g)| (g.id.as_str(), g)).collect();
        for (_, g) in &gaps {
            if let Some(p) = &g.parent_loop {
                if !loop_map.contains_key(p) {
                    report.add(
                        FindingKind::DanglingReference,
                        g.id.clone(),
                        format!(
                            "its parent loop {p} does not exist; create the loop or fix the field"
                        ),
                    );
                }
            }
            for d in &g.depends_on {
                if !gap_ids.contains_key(d.as_str()) && !loop_map.contains_key(d) {
                    report.add(
                        FindingKind::DanglingReference,
                        g.id.clone(),
                        format!("it depends on {d}, which does not exist; remove the dependency (`gapreg dep rm`)"),
                    );
                }
            }
        }
        // A complete gap waiting for something unfinished: a state no command makes, but a
        // merge can (one branch completes a gap, the other reopens its dependency).
        let loop_by_id: BTreeMap<String, crate::loops::Loop> =
            loops.iter().map(|l| (l.id.clone(), l.clone())).collect();
        let status_of = |x: &str| gap_ids.get(x).map(|g| g.status);
        for (_, g) in gaps
            .iter()
            .filter(|(_, g)| g.status == crate::model::Status::Complete)
        {
            for d in &g.depends_on {
                match crate::graph::unfinished_dep(d, &status_of, &loop_by_id) {
                    None | Some(crate::model::Blocker::Missing { .. }) => {}
                    Some(why) => report.add(
                        FindingKind::UnfinishedDependency,
                        g.id.clone(),
                        format!(
                            "it is complete but {why}; complete that first, or reopen {} \
                             (`gapreg status {} open`)",
                            g.id, g.id
                        ),
                    ),
                }
            }
        }
        for l in &loops {
            for d in &l.depends_on {
                if !loop_map.contains_key(d) {
                    report.add(
                        FindingKind::DanglingReference,
                        l.id.clone(),
                        format!("loop depends_on {d}, which is not a loop; fix its front matter"),
                    );
                }
            }
        }

        // Cycles.
        let mut graph: BTreeMap<String, Vec<String>> = loop_map.clone();
        for (stem, g) in &gaps {
            if *stem == g.id {
                graph.insert(g.id.clone(), g.depends_on.clone());
            }
        }
        for cycle in crate::graph::find_cycles(&graph) {
            report.add(
                FindingKind::Cycle,
                cycle[0].clone(),
                format!(
                    "dependency cycle {}; remove one of its dependencies",
                    cycle.join(" -> ")
                ),
            );
        }

        // Counters: the id store's own check first (header, checksums, file types).
        let verified = match self.id_store() {
            Some(store) => store.verify()?.findings,
            None => Vec::new(),
        };
        #[cfg(feature = "postgres")]
        self.check_server_schema(&mut report)?;
        for f in verified {
            if f.kind == idreserve::FindingKind::Corrupt {
                report.add(
                    FindingKind::Corrupt,
                    f.path.display().to_string(),
                    f.message,
                );
            }
        }
        match self.ids().and_then(|ids| ids.counters()) {
            Ok(counters) => {
                max_number.insert(SEQ_PREFIX.to_owned(), max_seq);
                let behind: Vec<(String, u64, u64)> = max_number
                    .iter()
                    .filter_map(|(p, &m)| {
                        let c = counters.get(p).copied().unwrap_or(0);
                        (m > c).then(|| (p.clone(), m, c))
                    })
                    .collect();
                let raised = repair && !behind.is_empty() && self.raise_counters(&behind).is_ok();
                for (p, m, c) in behind {
                    report.findings.push(Finding {
                        kind: FindingKind::IdAboveCounter,
                        subject: format!("{p}-{m}"),
                        message: format!(
                            "the counter for {p} is at {c}, below the highest id present ({m}), \
                             so it would hand out ids again (after merging counters.log?); \
                             `gapreg doctor --repair` raises it"
                        ),
                        repaired: raised,
                    });
                }
            }
            Err(e) => report.add(
                FindingKind::Corrupt,
                self.dir().join(IDS).display().to_string(),
                e.to_string(),
            ),
        }

        // Leases (coordination state of leaselock, checked and repaired by it).
        if root.kind(LEASES)? == Some(FileKind::Dir) {
            let leases = self.leases(leaselock::lease::LeaseOptions::new())?;
            let found = if repair {
                leases.repair()?
            } else {
                leases.check()?
            };
            if !found.token.is_sound() {
                report.findings.push(Finding {
                    kind: FindingKind::FencingToken,
                    subject: leases
                        .leases_dir()
                        .join(leaselock::lease::TOKEN_FILE)
                        .display()
                        .to_string(),
                    message: format!(
                        "the fencing-token counter is {:?}; the highest token recorded is {}; \
                         `gapreg doctor --repair` sets it above every recorded token",
                        found.token, found.highest_seen
                    ),
                    repaired: found.token_written.is_some(),
                });
            }
            for c in found.corrupt {
                report.add(
                    FindingKind::Corrupt,
                    c.path.display().to_string(),
                    format!(
                        "unreadable lease file ({}); it blocks every grant until it is restored \
                         or force-released (`gapreg lease release --force {}`)",
                        c.reason, c.id
                    ),
                );
            }
            for p in found.temp_files {
                report.findings.push(Finding {
                    kind: FindingKind::TempFile,
                    subject: p.display().to_string(),
                    message: "temp file of a writer that died mid-write".into(),
                    repaired: repair,
                });
            }
        }

        // Index.
        let path = self.dir().join(INDEX);
        let data = match root.read(INDEX, MAX_INDEX_BYTES) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) if e.is_damaged() => {
                report.add(
                    FindingKind::Corrupt,
                    path.display().to_string(),
                    e.to_string(),
                );
                b"damaged".to_vec()
            }
            Err(e) => return Err(e.into()),
        };
        let scan = index::scan(&data);
        let expected: HashMap<String, crate::model::GapSummary> = gaps
            .iter()
            .filter(|(stem, g)| *stem == g.id)
            .map(|(_, g)| (g.id.clone(), g.summary()))
            .collect();
        let stamp_ok = self.files.gaps_stamp().ok() == scan.last_stamp;
        let indexed: HashMap<String, crate::model::GapSummary> = scan
            .gaps
            .iter()
            .map(|g| (g.id.clone(), g.clone()))
            .collect();
        let agrees = indexed.len() == scan.gaps.len() && indexed == expected;
        let is_file = root.kind(INDEX)?.is_none_or(|k| k == FileKind::File);
        if !scan.damaged && !stamp_ok && is_file {
            // Merely behind the gap files (changed outside gapreg, a writer died, a merge):
            // every reader rebuilds it, and so does doctor — cache upkeep, not a repair.
            let _ = self.files.rebuild_index()?;
            if !agrees {
                report.findings.push(Finding {
                    kind: FindingKind::StaleIndex,
                    subject: path.display().to_string(),
                    message: "the index was behind the gap files (files changed outside \
                              gapreg, or a writer died); rebuilt, as any reader would"
                        .into(),
                    repaired: true,
                });
            }
        } else if scan.damaged || !stamp_ok || !agrees {
            // Rebuilding cannot fail on a damaged index file of the wrong type (a FIFO, a
            // directory): that is reported above and left to a person.
            let repaired = repair && is_file && {
                let _ = self.files.rebuild_index()?;
                root.read(INDEX, MAX_INDEX_BYTES).is_ok()
            };
            report.findings.push(Finding {
                kind: FindingKind::StaleIndex,
                subject: path.display().to_string(),
                message: "the index disagrees with the gap files though it claims to be up to \
                          date (damaged, or edited by hand); it is a cache: `gapreg doctor \
                          --repair` rebuilds it"
                    .into(),
                repaired,
            });
        }
        Ok(report)
    }

    /// Raises each `(prefix, highest, counter)` counter to `highest` through the id store.
    fn raise_counters(&self, behind: &[(String, u64, u64)]) -> Result<()> {
        for (prefix, highest, _) in behind {
            self.ids()?.raise(prefix, *highest)?;
        }
        Ok(())
    }

    /// With `coordination: postgres`: every component's tables on the server at the version
    /// this build knows (opening the registry's counters created or migrated them).
    #[cfg(feature = "postgres")]
    fn check_server_schema(&self, report: &mut DoctorReport) -> Result<()> {
        let Some(server) = self.server()? else {
            return Ok(());
        };
        let components = [
            (
                leaselock::lease::PG_COMPONENT,
                leaselock::lease::PG_MIGRATIONS.len(),
            ),
            (idreserve::PG_COMPONENT, idreserve::PG_MIGRATIONS.len()),
            (
                crate::registry::server::COMPONENT,
                crate::registry::server::MIGRATIONS.len(),
            ),
        ];
        for (component, known) in components {
            let state = server.schema_state(component, known)?;
            if !matches!(state, leaselock::server::SchemaState::Current { .. }) {
                report.add(
                    FindingKind::ServerSchema,
                    format!(
                        "{} {}.{component}",
                        server.name(),
                        leaselock::server::SCHEMA
                    ),
                    format!(
                        "the tables of {component} are {state:?}; the next use of gapreg \
                         creates or migrates them (a newer schema needs a newer gapreg)"
                    ),
                );
            }
        }
        Ok(())
    }

    /// Staged files of a batch that never committed: removed with `repair`, else reported.
    /// Anything in `staging/` that is not a staged gap or temp file is reported and left.
    fn check_staging(&self, report: &mut DoctorReport, repair: bool) -> Result<()> {
        let Some(staging) = self.layout().sub(STAGING, false)? else {
            return Ok(());
        };
        if repair {
            for p in self.files.clear_staging()? {
                report.findings.push(Finding {
                    kind: FindingKind::IncompleteBatch,
                    subject: p.display().to_string(),
                    message: "staged file of a batch that never committed; removed".into(),
                    repaired: true,
                });
            }
        }
        for entry in staging.entries()? {
            let path = staging.join(&entry.name).display().to_string();
            if entry.kind != FileKind::File {
                report.add(
                    FindingKind::Corrupt,
                    path,
                    format!(
                        "it is {}, which gapreg never writes here; remove it by hand",
                        entry.kind
                    ),
                );
            } else if crate::registry::is_staged_name(&entry.name) {
                report.add(
                    FindingKind::IncompleteBatch,
                    path,
                    "staged file of a batch that never committed (its writer died); \
                     `gapreg doctor --repair` removes it",
                );
            } else if !atomic_file::is_temp_name(&entry.name) {
                report.add(
                    FindingKind::Corrupt,
                    path,
                    "a file gapreg does not write in staging/; left alone: remove it by hand",
                );
            }
        }
        Ok(())
    }
}
