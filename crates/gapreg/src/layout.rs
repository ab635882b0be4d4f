//! Every file and directory of a registry, and how each is reached: the one place gapreg
//! names them. Names that belong to a lower crate come from that crate's exports
//! ([`idreserve::FILES`], [`leaselock::lease`]'s and [`leaselock::mutex`]'s
//! constants, [`atomic_file::TEMP_SUFFIX`]), so no crate spells another's files.
//!
//! Two kinds of state, kept apart. **Documents** live in `.gapreg/` and are tracked by git:
//! they travel by merge. **Coordination state** is never tracked: inside a git work tree it
//! lives under the clone's common git directory, in `<git common dir>/gapreg/` (`.git/gapreg/`
//! for the main worktree, found by reading `.git` files, see [`crate::gitdir`]), so every
//! worktree of the clone shares one set of counters, claims, leases and idempotency records;
//! outside git it stays in `.gapreg/` (git-ignored there). The index is a cache of one
//! worktree's documents and stays with them.
//!
//! | path | owner | kind | tracked by git | why |
//! |------|-------|------|----------------|-----|
//! | `.gapreg/config.yaml` | gapreg ([`crate::Config`]) | document | yes | the registry's settings travel with the repository |
//! | `.gapreg/gaps/<ID>.yaml` | gapreg ([`crate::store::Documents`]) | document | yes | one file per gap, merged field by field by the driver ([`crate::merge`]) |
//! | `<loops_dir>/<LOOP-ID>.md` | gapreg ([`crate::loops`]) | document | yes | loop scopes, written by people |
//! | `.gapreg/.gitignore` | gapreg (`gitignore()` below) | document | yes | keeps every untracked file of the registry out of commits |
//! | `.gapreg/index.log` | gapreg ([`crate::index`]) | cache of this worktree's documents | no | checksummed gap summaries, rebuilt from `gaps/` whenever they disagree |
//! | `.gapreg/registry.lock`, `.gapreg/registry.lock.queue/` | leaselock ([`leaselock::mutex::FileMutex`]) | this worktree's mutex | no | the mutex every change of this worktree's documents holds, and its FIFO queue |
//! | `.gapreg/staging/`, `.gapreg/batch.pending` | gapreg (batches) | in-flight documents | no | a batch's files before and while it is committed |
//! | `C/ids/` | idreserve ([`idreserve::Store`]) | coordination | no | id counters and the registry order (`SEQ`); with its own lock and queue |
//! | `C/ids.created`, `C/init.lock`, `C/.ids.init/` | gapreg (`registry/shared.rs`) | coordination | no | the shared store's first creation: made under the mutex, raised from the documents, moved into place |
//! | `C/keys/<KEY>.json` | gapreg ([`crate::store::Coordination`]) | coordination | no | idempotency keys of `file`: what a retried call already filed |
//! | `C/claims/` | leaselock (a lease store of its own) | coordination | no | one exclusive lease per claimed gap, on the path named by its id: the claim every worktree sees |
//! | `C/leases/` | leaselock ([`leaselock::lease::Leases`]) | coordination | no | leases on the repository's files: lease files, the fencing-token counter, caches, a lock |
//! | `C/coordination.url` | gapreg (`registry/server.rs`) | per-clone setting | no | the coordination server's address for `coordination: postgres` (`gapreg coordination set URL`), without a password |
//! | `C/.leases.init-<pid>-<n>/` | leaselock | coordination, in flight | no | `leases/` while it is first created (left only by a creator killed then) |
//! | `.*.atomic-tmp` anywhere | atomic-file | in flight | no | a replacement being written; removed by `recover` once its writer is gone |
//!
//! `C` is `<git common dir>/gapreg` inside git, `.gapreg` outside it. A registry whose
//! counters are still tracked in `.gapreg/ids` (the layout before this one) is migrated on
//! first use: counters carried over, never lowered, the tracked files removed with a notice;
//! `doctor` reports anything left (or planted) at the old places.
//!
//! # Hostile repositories
//!
//! A registry is committed to git, so everything here may come from a stranger's repository.
//! Every file and directory is reached through an [`atomic_file::dir::Dir`] opened on the
//! registry directory, one component at a time, never following a symlink: a link, FIFO,
//! device or a directory where a file belongs (and the other way round) is refused with an
//! error naming it ([`crate::ErrorKind::File`] of kind `WrongType`, exit 6 in the CLI), and
//! nothing is read, written or removed through it. The registry directory itself may not be
//! a symlink. The loops directory is configurable (`loops_dir`), so it is checked to stay
//! inside the repository (`..` may lead from `.gapreg/` to the repository, no further;
//! absolute paths are refused) and is reached the same way from the repository directory.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use atomic_file::dir::Dir;

use crate::error::{Error, Result};

/// The registry directory's name inside a repository.
pub const REGISTRY_DIR: &str = ".gapreg";
pub(crate) const CONFIG: &str = "config.yaml";
pub(crate) const GAPS: &str = "gaps";
pub(crate) const IDS: &str = "ids";
pub(crate) const INDEX: &str = "index.log";
pub(crate) const LOCK: &str = "registry.lock";
pub(crate) const LEASES: &str = "leases";
/// Claims: leaselock leases of their own, one per claimed gap.
pub(crate) const CLAIMS: &str = "claims";
/// Where a batch's gap files are written before its manifest commits them.
pub(crate) const STAGING: &str = "staging";
/// The manifest of a committed batch whose files are still being moved into `gaps/`.
pub(crate) const PENDING: &str = "batch.pending";
/// Idempotency keys of `file`.
pub(crate) const KEYS: &str = "keys";
/// The coordination server's address, per clone (never tracked).
pub const URL_FILE: &str = "coordination.url";
pub(crate) const GITIGNORE_FILE: &str = ".gitignore";

/// The `.gitignore` gapreg writes in the registry directory: every file of the table above
/// that git must not track, spelled from its owner's names.
pub(crate) fn gitignore() -> String {
    use leaselock::mutex::QUEUE_SUFFIX;
    let lines = [
        INDEX.to_owned(),
        LOCK.to_owned(),
        format!("{LOCK}{QUEUE_SUFFIX}/"),
        // Coordination state, when it is kept here (outside git; inside git it lives under
        // the common git directory and a tracked copy is migrated there).
        format!("{IDS}/"),
        format!("{LEASES}/"),
        format!("{CLAIMS}/"),
        // leaselock's directory being created, left by a creator killed at that instant.
        format!(".{LEASES}{}*/", leaselock::lease::STAGING_INFIX),
        format!(".*{}", atomic_file::TEMP_SUFFIX),
        format!("{STAGING}/"),
        PENDING.to_owned(),
        format!("{KEYS}/"),
        URL_FILE.to_owned(),
    ];
    let mut text = String::from("# Derived or per-machine files, written by gapreg\n");
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Largest `config.yaml` read.
pub(crate) const MAX_CONFIG_BYTES: u64 = 64 * 1024;
/// Largest `index.log` read (about a million gaps' summaries).
pub(crate) const MAX_INDEX_BYTES: u64 = 1 << 30;
/// Largest batch manifest or key record read.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The directory under a clone's common git directory that holds the coordination state
/// of its registry, shared by every worktree of the clone.
pub(crate) const COORDINATION_DIR: &str = "gapreg";

/// Where a registry's files are, and how to open them without following links.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The registry directory (`.../.gapreg`).
    pub dir: PathBuf,
    /// The loops directory as components below the repository (`up == 1`) or the registry
    /// directory (`up == 0`).
    loops: (usize, Vec<OsString>),
    /// Inside git: the clone's common git directory, under which [`COORDINATION_DIR`] holds
    /// the coordination state. Outside git: `None`, and it stays in the registry directory.
    common: Option<PathBuf>,
}

impl Layout {
    /// The layout of the registry directory `dir` with the configured `loops_dir`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] if `loops_dir` is absolute or leads outside the
    /// repository.
    pub fn new(dir: PathBuf, loops_dir: &Path) -> Result<Layout> {
        let loops = confine(loops_dir)?;
        let mut layout = Layout {
            loops,
            dir,
            common: None,
        };
        // Only a registry at the top of its work tree shares the clone's coordination state:
        // every worktree's `.gapreg` is then the same registry on another branch.
        if let Some(git) = crate::gitdir::find(layout.repo())? {
            let repo = std::fs::canonicalize(layout.repo())
                .map_err(|e| Error::io("resolve", layout.repo(), e))?;
            if git.work_tree == repo {
                layout.common = Some(git.common_dir);
            }
        }
        Ok(layout)
    }

    /// Where the coordination state lives: `<common git dir>/gapreg` inside git, the
    /// registry directory outside it.
    pub fn coordination_path(&self) -> PathBuf {
        match &self.common {
            Some(common) => common.join(COORDINATION_DIR),
            None => self.dir.clone(),
        }
    }

    /// Whether the coordination state is shared through the clone's git directory.
    pub fn shared(&self) -> bool {
        self.common.is_some()
    }

    /// The coordination directory, opened (never through a symlink); created if `create`,
    /// else `None` when it does not exist yet.
    pub fn coordination(&self, create: bool) -> Result<Option<Dir>> {
        let Some(common) = &self.common else {
            return Ok(Some(self.root()?));
        };
        let parent = Dir::open(common)?;
        if create {
            Ok(Some(parent.create_dir(COORDINATION_DIR)?))
        } else {
            Ok(parent.open_dir(COORDINATION_DIR)?)
        }
    }

    /// The repository directory holding the registry.
    pub fn repo(&self) -> &Path {
        match self.dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    }

    /// The registry directory, opened (never through a symlink).
    pub fn root(&self) -> Result<Dir> {
        Ok(Dir::open(&self.dir)?)
    }

    /// The child directory `name` of the registry; `None` if it does not exist (and
    /// `create` is false).
    pub fn sub(&self, name: &str, create: bool) -> Result<Option<Dir>> {
        let root = self.root()?;
        if create {
            Ok(Some(root.create_dir(name)?))
        } else {
            Ok(root.open_dir(name)?)
        }
    }

    /// The loops directory; `None` if it does not exist (and `create` is false).
    pub fn loops(&self, create: bool) -> Result<Option<Dir>> {
        let (up, parts) = &self.loops;
        let mut dir = if *up == 0 {
            self.root()?
        } else {
            Dir::open(self.repo())?
        };
        for part in parts {
            dir = if create {
                dir.create_dir(part)?
            } else {
                match dir.open_dir(part)? {
                    Some(d) => d,
                    None => return Ok(None),
                }
            };
        }
        Ok(Some(dir))
    }

    /// The loops directory's path, for messages and [`crate::Loop::path`].
    pub fn loops_path(&self) -> PathBuf {
        let (up, parts) = &self.loops;
        let mut out = if *up == 0 {
            self.dir.clone()
        } else {
            self.repo().to_path_buf()
        };
        out.extend(parts);
        out
    }
}

/// Checks that `loops_dir` (relative to the registry directory) stays inside the repository;
/// returns how many levels it goes up (0 or 1) and the components below that.
fn confine(loops_dir: &Path) -> Result<(usize, Vec<OsString>)> {
    let invalid = |reason: &str| {
        Error::invalid(
            format!(
                "loops_dir {:?} in config.yaml",
                loops_dir.display().to_string()
            ),
            format!(
                "{reason}; use a path relative to .gapreg/ that stays inside the repository, \
                 such as `loops` or `../loop-scopes`"
            ),
        )
    };
    // Components relative to the repository: `.gapreg` first.
    let mut stack: Vec<OsString> = vec![OsString::from(REGISTRY_DIR)];
    for c in loops_dir.components() {
        match c {
            Component::Normal(part) => stack.push(part.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                if stack.pop().is_none() {
                    return Err(invalid("it leads outside the repository"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid("it is absolute"));
            }
        }
    }
    if stack.is_empty() {
        return Err(invalid("it names the repository itself"));
    }
    if stack.len() == 1 && stack[0] == REGISTRY_DIR {
        return Err(invalid("it names the registry directory itself"));
    }
    if stack[0] == REGISTRY_DIR {
        Ok((0, stack.split_off(1)))
    } else {
        Ok((1, stack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_dirs_must_stay_inside_the_repository() {
        let ok = |p: &str| confine(Path::new(p)).expect(p);
        assert_eq!(ok("loops"), (0, vec!["loops".into()]));
        assert_eq!(ok("./a/b"), (0, vec!["a".into(), "b".into()]));
        assert_eq!(ok("../loop-scopes"), (1, vec!["loop-scopes".into()]));
        assert_eq!(
            ok("x/../../docs/loops"),
            (1, vec!["docs".into(), "loops".into()])
        );
        for bad in ["../../outside", "/etc", "..", ".", "../..", "a/../../../x"] {
            let err = confine(Path::new(bad)).expect_err(bad);
            assert!(err.to_string().contains("loops_dir"), "{err}");
        }
    }
}
