//! Opening the coordination state: inside git it lives under the clone's common git
//! directory (`.git/gapreg/`), so every worktree of the clone shares one set of counters,
//! leases and idempotency records; outside git it stays in `.gapreg/`.
//!
//! A fresh clone or worktree has no coordination state yet: it is created on first use, its
//! counters raised (never lowered) to the highest id and registry position of the documents
//! the tree holds, so it can never hand out an id the tree already has. A registry whose
//! counters are still tracked in `.gapreg/ids` (the layout before this one) is migrated: the
//! shared counters are raised to at least the tracked ones, and the tracked files are removed
//! from the tree with a notice. Creation happens under a mutex in the coordination directory,
//! and the store is moved into place only once raised, so no process sees it half-made.

use std::collections::BTreeMap;
use std::time::Duration;

use atomic_file::dir::Dir;
use idreserve::Store;
use leaselock::mutex::FileMutex;

use crate::error::{Error, Result};
use crate::layout::{IDS, Layout};

use super::files::Files;
use super::rules::SEQ_PREFIX;

/// The mutex taken to create the shared id store.
const INIT_LOCK: &str = "init.lock";
/// The name a new id store is made under before it is moved into place.
const STAGED_IDS: &str = ".ids.init";
/// Written once the shared store is in place: from then on a missing store is damage, not a
/// fresh clone.
const CREATED: &str = "ids.created";

/// The id store of `files`' registry, and the notices a person should see (a migration).
pub(crate) fn open_ids(files: &Files, timeout: Duration) -> Result<(Store, Vec<String>)> {
    let layout = &files.layout;
    if !layout.shared() {
        return Ok((open_local(layout, timeout)?, Vec::new()));
    }
    let existed = layout.coordination(false)?.is_some();
    let coord = layout
        .coordination(true)?
        .ok_or_else(|| Error::invalid("coordination directory", "cannot be created"))?;
    let mut notices = Vec::new();
    // Fast path: the shared store is there and nothing is left to migrate.
    let tracked_left = match layout.root()?.open_dir(IDS)? {
        Some(dir) => dir.file_exists(idreserve::LOG_FILE)?,
        None => false,
    };
    if !tracked_left {
        match Store::open_at(&coord, IDS) {
            Ok(store) => return Ok((store.with_lock_timeout(timeout), notices)),
            Err(e) if e.is_not_found() => {
                if existed && coord.file_exists(CREATED)? {
                    // An earlier first use made the store: its counters are gone.
                    return Err(missing(layout));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    // First use, or a migration: one process at a time, each looking again under the mutex
    // (another may have just done it).
    let mutex = FileMutex::in_dir(&coord, INIT_LOCK);
    let _guard = mutex.lock_for(timeout)?;
    let tracked = tracked_counters(layout)?;
    let store = match Store::open_at(&coord, IDS) {
        Ok(store) => store.with_lock_timeout(timeout),
        Err(e) if e.is_not_found() => {
            if coord.file_exists(CREATED)? {
                return Err(missing(layout));
            }
            create(files, &coord, tracked.as_ref(), timeout)?.with_lock_timeout(timeout)
        }
        Err(e) => return Err(e.into()),
    };
    if let Some((old, counters)) = tracked {
        for (prefix, last) in &counters {
            store.raise(prefix, *last)?;
        }
        drop(old);
        let root = layout.root()?;
        if let Some(dir) = root.open_dir(IDS)? {
            // The log first: a store left with its config alone is not taken for one to
            // migrate.
            for name in [idreserve::LOG_FILE, idreserve::CONFIG_FILE] {
                dir.remove_file(name)?;
            }
        }
        notices.push(format!(
            "moved the id counters from {} (tracked by git) to {}, shared by every worktree \
             of this clone; commit the removal of .gapreg/ids",
            layout.dir.join(IDS).display(),
            layout.coordination_path().join(IDS).display()
        ));
    }
    Ok((store, notices))
}

/// Outside git: the store in `.gapreg/ids`, which must exist.
fn open_local(layout: &Layout, timeout: Duration) -> Result<Store> {
    match Store::open_at(&layout.root()?, IDS) {
        Ok(store) => Ok(store.with_lock_timeout(timeout)),
        Err(e) if e.is_not_found() => Err(missing(layout)),
        Err(e) => Err(e.into()),
    }
}

/// Gap files without their counters: zero would hand out their ids again.
fn missing(layout: &Layout) -> Error {
    Error::corrupt(
        layout.coordination_path().join(IDS),
        "the id store is missing, so the registry cannot know which ids were handed out; \
         restore it from a backup, or recreate it from the ids in use with `gapreg ids init` \
         (see `gapreg ids --help`)",
    )
}

/// The counters still tracked in `.gapreg/ids` (the layout before the shared one).
fn tracked_counters(layout: &Layout) -> Result<Option<(Store, BTreeMap<String, u64>)>> {
    let root = layout.root()?;
    if root
        .open_dir(IDS)?
        .is_none_or(|d| !d.file_exists(idreserve::LOG_FILE).unwrap_or(false))
    {
        return Ok(None);
    }
    let old = Store::open_at(&root, IDS)?;
    let counters = old.counters()?;
    Ok(Some((old, counters)))
}

/// Under the init mutex: a new store, its counters raised to the tracked ones and to every
/// id and position in the documents, moved into place only then.
fn create(
    files: &Files,
    coord: &Dir,
    tracked: Option<&(Store, BTreeMap<String, u64>)>,
    timeout: Duration,
) -> Result<Store> {
    let config = match tracked {
        Some((old, _)) => old.config().clone(),
        None => idreserve::Config::default(),
    };
    if coord.kind(STAGED_IDS)?.is_some() {
        // A creator killed before the move: its store never served anyone.
        let stale = coord
            .open_dir(STAGED_IDS)?
            .ok_or_else(|| Error::invalid("coordination directory", "cannot be read"))?;
        remove_tree(&stale, 2)?;
        coord.remove_dir(STAGED_IDS)?;
    }
    let staged = Store::create_at(coord, STAGED_IDS, config)?.with_lock_timeout(timeout);
    let mut highest = highest_in_documents(files)?;
    if let Some((_, counters)) = tracked {
        for (prefix, last) in counters {
            let h = highest.entry(prefix.clone()).or_default();
            *h = (*h).max(*last);
        }
    }
    for (prefix, last) in &highest {
        staged.raise(prefix, *last)?;
    }
    drop(staged);
    coord.rename_dir(STAGED_IDS, coord, IDS)?;
    coord.sync()?;
    coord.write(CREATED, b"", &atomic_file::Options::new())?;
    Ok(Store::open_at(coord, IDS)?)
}

/// Removes what is in `dir`, `depth` levels of directories deep (a staged store: its files
/// and its lock's queue directory).
fn remove_tree(dir: &Dir, depth: usize) -> Result<()> {
    for entry in dir.entries()? {
        if entry.kind == atomic_file::dir::FileKind::Dir && depth > 0 {
            if let Some(sub) = dir.open_dir(&entry.name)? {
                remove_tree(&sub, depth - 1)?;
            }
            dir.remove_dir(&entry.name)?;
        } else {
            dir.remove_file(&entry.name)?;
        }
    }
    Ok(())
}

/// The highest number of every id prefix among the gap files — by name, so a damaged file
/// still holds its id — and the highest registry position (`SEQ`) of the readable ones.
pub(crate) fn highest_in_documents(files: &Files) -> Result<BTreeMap<String, u64>> {
    use crate::store::Documents;
    let mut highest = files.highest_numbers()?;
    let (gaps, _) = files.scan_gap_files()?;
    for (_, gap) in &gaps {
        let s = highest.entry(SEQ_PREFIX.to_owned()).or_default();
        *s = (*s).max(gap.seq);
    }
    Ok(highest)
}
