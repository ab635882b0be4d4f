//! Loop files: scanning the loops directory (a damaged loop is reported, never skipped as
//! missing), creating a loop from the template, and editing its front-matter status in place.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::Checked;
use crate::error::{ConflictDetail, Error, ErrorKind, Result};
use crate::graph;
use crate::index::DamagedFile;
use crate::loops::{self, Loop, LoopSpec};
use crate::time::Timestamp;

use super::Registry;
use super::files::Files;

impl Files {
    /// Every loop in the loops directory, by id. Files without front matter (a README) are
    /// skipped; unparseable ones are skipped here and reported by `doctor`.
    pub(crate) fn load_loops(&self) -> Result<BTreeMap<String, Loop>> {
        Ok(self
            .scan_loop_files()?
            .0
            .into_iter()
            .map(|l| (l.id.clone(), l))
            .collect())
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn scan_loop_files(&self) -> Result<(Vec<Loop>, Vec<(PathBuf, String)>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let Some(dir) = self.layout.loops(false)? else {
            return Ok((good, bad));
        };
        for entry in dir.entries()? {
            let path = dir.join(&entry.name);
            let Some(stem) = entry.name.to_str().and_then(|n| n.strip_suffix(".md")) else {
                continue;
            };
            if stem.starts_with('.') {
                continue;
            }
            let text = match dir.read(&entry.name, loops::MAX_LOOP_BYTES) {
                Ok(Some(bytes)) => match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(_) => {
                        bad.push((path, "it is not UTF-8 text".to_owned()));
                        continue;
                    }
                },
                Ok(None) => continue,
                Err(e) if e.is_damaged() => {
                    bad.push((path, e.to_string()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            // A markdown file without front matter (a README) is not a loop. A loop id in
            // the name with no front matter is a damaged loop (a zeroed or emptied file),
            // not a file to skip.
            if !text.trim_start_matches('\u{feff}').starts_with("---") {
                // Markdown without front matter (a README) is not a loop; an empty or zeroed
                // file, or one named like a loop, is a loop that was damaged.
                let blank = text.trim().is_empty() || text.contains('\0');
                if blank || (loops::check_loop_id(stem).is_ok() && stem.starts_with("LOOP-")) {
                    bad.push((
                        path,
                        "it has no front matter (`---` lines); restore it".into(),
                    ));
                }
                continue;
            }
            match loops::parse_loop_named(&text, Some(stem)) {
                Ok(mut l) => {
                    l.path = path;
                    good.push(l);
                }
                Err(reason) => bad.push((path, reason)),
            }
        }
        good.sort_by(|a, b| (&a.id, &a.path).cmp(&(&b.id, &b.path)));
        Ok((good, bad))
    }

    pub(crate) fn loop_not_found(&self, id: &str, what: &'static str) -> Error {
        // One scan: a loop whose file is there but cannot be read is damaged, not missing;
        // otherwise the readable loops give the suggestions.
        let (good, bad) = self.scan_loop_files().unwrap_or_default();
        let file = format!("{id}.md");
        if let Some((path, reason)) = bad
            .into_iter()
            .find(|(p, _)| p.file_name().is_some_and(|n| n == file.as_str()))
        {
            return Error::corrupt(path, reason);
        }
        Error::new(ErrorKind::NotFound {
            what,
            id: id.to_owned(),
            suggestions: loops::close_matches(id, good.iter().map(|l| l.id.as_str())),
        })
    }

    /// Every loop by id, and the loop files that could not be read.
    pub(crate) fn load_loops_checked(&self) -> Result<(BTreeMap<String, Loop>, Vec<DamagedFile>)> {
        let (good, bad) = self.scan_loop_files()?;
        let damaged = bad
            .into_iter()
            .map(|(path, reason)| DamagedFile::new(path.display().to_string(), reason))
            .collect();
        Ok((
            good.into_iter().map(|l| (l.id.clone(), l)).collect(),
            damaged,
        ))
    }
}

impl Registry {
    /// Every loop, ordered by id.
    pub fn loops(&self) -> Result<Vec<Loop>> {
        Ok(self.loops_checked()?.value)
    }

    /// [`Registry::loops`], with the loop files that could not be read.
    pub fn loops_checked(&self) -> Result<Checked<Vec<Loop>>> {
        let (loops, damaged) = self.files.load_loops_checked()?;
        Ok(Checked {
            value: loops.into_values().collect(),
            damaged,
        })
    }

    /// One loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] listing loops with similar ids.
    pub fn show_loop(&self, id: &str) -> Result<Loop> {
        self.files
            .load_loops()?
            .remove(id)
            .ok_or_else(|| self.files.loop_not_found(id, "loop"))
    }

    /// Creates `loops/<ID>.md` from the seed-format template (front matter plus section
    /// headings). Its `depends_on` loops must exist and may not close a cycle.
    ///
    /// ```
    /// use gapreg::{Config, LoopSpec, Registry};
    /// let repo = tempfile::tempdir()?;
    /// let reg = Registry::init(repo.path(), Config::default())?;
    /// let spec = LoopSpec { id: "LOOP-A".into(), objective: "Batch filing".into(), ..LoopSpec::default() };
    /// let l = reg.new_loop(spec)?;
    /// assert_eq!((l.id.as_str(), l.status.as_str()), ("LOOP-A", "active"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_loop(&self, spec: LoopSpec) -> Result<Loop> {
        loops::check_loop_id(&spec.id).map_err(|r| Error::invalid("loop id", r))?;
        if spec.objective.contains('\n') {
            return Err(Error::invalid("objective", "it must be one line"));
        }
        let _guard = self.files.lock_only()?;
        let all = self.files.load_loops()?;
        if all.contains_key(&spec.id) || self.files.gap_exists(&spec.id)? {
            return Err(Error::conflict(&spec.id, ConflictDetail::Exists));
        }
        for dep in &spec.depends_on {
            if !all.contains_key(dep) {
                return Err(self.files.loop_not_found(dep, "loop"));
            }
            let mut deps = |n: &str| all.get(n).map(|l| l.depends_on.clone());
            if let Some(path) = graph::cycle_through(&spec.id, dep, &mut deps) {
                return Err(Error::new(ErrorKind::Cycle { path }));
            }
        }
        let dir = self
            .files
            .layout
            .loops(true)?
            .ok_or_else(|| Error::invalid("loops_dir", "cannot be created"))?;
        let name = format!("{}.md", spec.id);
        let path = dir.join(&name);
        // A link or FIFO there is refused (exit 6), a file that is not a readable loop is
        // damaged: neither is "already exists".
        if dir.file_exists(&name)? {
            let damaged = self.files.loop_not_found(&spec.id, "loop");
            return Err(match damaged.kind() {
                ErrorKind::Corrupt { .. } => damaged,
                _ => Error::conflict(&spec.id, ConflictDetail::Exists),
            });
        }
        let created = Timestamp::now().to_string();
        let text = loops::template(&spec, &created[..10]);
        dir.write(&name, text.as_bytes(), &self.files.opts)?;
        let mut l = loops::parse_loop_named(&text, None).map_err(|r| Error::corrupt(&path, r))?;
        l.path = path;
        Ok(l)
    }

    /// Sets a loop's front-matter `status` (e.g. `closed` or `complete`, which complete it for
    /// [`Registry::ready`]), editing that one line in place: the rest of the person's file is
    /// kept byte for byte.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] listing similar loop ids; [`ErrorKind::Invalid`] for a status
    /// that is not a single word; [`ErrorKind::Corrupt`] if the front matter cannot be found.
    pub fn set_loop_status(&self, id: &str, status: &str) -> Result<Loop> {
        if status.is_empty()
            || !status
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(Error::invalid(
                format!("loop status {status:?}"),
                "use one word such as active, blocked, complete or closed",
            ));
        }
        let _guard = self.files.lock_only()?;
        let l = self
            .files
            .load_loops()?
            .remove(id)
            .ok_or_else(|| self.files.loop_not_found(id, "loop"))?;
        let dir = self
            .files
            .layout
            .loops(false)?
            .ok_or_else(|| self.files.loop_not_found(id, "loop"))?;
        let name = l
            .path
            .file_name()
            .ok_or_else(|| Error::corrupt(&l.path, "no file name"))?
            .to_os_string();
        let bytes = dir
            .read(&name, loops::MAX_LOOP_BYTES)?
            .ok_or_else(|| self.files.loop_not_found(id, "loop"))?;
        let text = String::from_utf8(bytes).map_err(|_| Error::corrupt(&l.path, "not UTF-8"))?;
        let edited = loops::set_front_matter_field(&text, "status", status)
            .ok_or_else(|| Error::corrupt(&l.path, "no front matter between `---` lines"))?;
        if edited != text {
            dir.write(&name, edited.as_bytes(), &self.files.opts)?;
        }
        let mut out =
            loops::parse_loop_named(&edited, None).map_err(|r| Error::corrupt(&l.path, r))?;
        out.path = l.path;
        Ok(out)
    }
}
