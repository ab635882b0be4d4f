//! Where a working tree's git repository keeps its state: the work tree, its own git
//! directory, and the **common** git directory every worktree of one clone shares — found
//! by reading `.git` files, without spawning `git` (a command runs on every call).
//!
//! | in the work tree | git directory | common directory |
//! |---|---|---|
//! | `.git/` (a directory: the main worktree) | `.git/` | `.git/` |
//! | `.git` (a file `gitdir: PATH`: a linked worktree or a submodule) | `PATH` | `PATH/commondir` (relative to `PATH`) if present, else `PATH` |
//!
//! `GIT_DIR` and `GIT_COMMON_DIR` override the search, as they do for git itself (git sets
//! them when it runs hooks and merge drivers).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Longest `.git` or `commondir` file read: a line holding a path.
const MAX_POINTER: u64 = 4096;

/// A work tree's git directories.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GitDirs {
    /// The top of the work tree (the directory holding `.git`).
    pub work_tree: PathBuf,
    /// This worktree's own git directory (`HEAD`, its index).
    pub git_dir: PathBuf,
    /// The directory every worktree of the clone shares (objects, refs, config).
    pub common_dir: PathBuf,
}

/// The git directories of the work tree holding `start` (the nearest `.git` at or above it),
/// or `None` outside git.
///
/// ```
/// # let repo = tempfile::tempdir()?;
/// # std::fs::create_dir_all(repo.path().join(".git"))?;
/// let dirs = gapreg::gitdir::find(repo.path())?.expect("a git work tree");
/// assert_eq!(dirs.common_dir, dirs.git_dir);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`crate::ErrorKind::Corrupt`] for a `.git` file or `commondir` that does not hold a path,
/// or names a directory that does not exist.
pub fn find(start: &Path) -> Result<Option<GitDirs>> {
    let start = std::fs::canonicalize(start).map_err(|e| Error::io("resolve", start, e))?;
    if let Some(git_dir) = std::env::var_os("GIT_DIR").map(PathBuf::from) {
        let git_dir = absolute(&start, &git_dir);
        let common_dir = match std::env::var_os("GIT_COMMON_DIR") {
            Some(c) => absolute(&start, Path::new(&c)),
            None => common_of(&git_dir)?,
        };
        let work_tree = match std::env::var_os("GIT_WORK_TREE") {
            Some(w) => absolute(&start, Path::new(&w)),
            None => work_tree_of(&start).unwrap_or_else(|| start.clone()),
        };
        return Ok(Some(GitDirs {
            work_tree,
            git_dir,
            common_dir,
        }));
    }
    for dir in start.ancestors() {
        let dot_git = dir.join(".git");
        let Ok(meta) = std::fs::metadata(&dot_git) else {
            continue;
        };
        let git_dir = if meta.is_dir() {
            dot_git.clone()
        } else {
            let text = read_pointer(&dot_git)?;
            let target = text
                .strip_prefix("gitdir:")
                .map(str::trim)
                .ok_or_else(|| Error::corrupt(&dot_git, "it is a file, but not `gitdir: PATH`"))?;
            absolute(dir, Path::new(target))
        };
        if !git_dir.is_dir() {
            return Err(Error::corrupt(
                &dot_git,
                format!(
                    "it points to {}, which is not a directory (a moved or deleted worktree? \
                     `git worktree repair` fixes it)",
                    git_dir.display()
                ),
            ));
        }
        let common_dir = common_of(&git_dir)?;
        return Ok(Some(GitDirs {
            work_tree: dir.to_path_buf(),
            git_dir,
            common_dir,
        }));
    }
    Ok(None)
}

/// The common directory of git directory `git_dir`: what its `commondir` file names, else
/// itself.
fn common_of(git_dir: &Path) -> Result<PathBuf> {
    let file = git_dir.join("commondir");
    if !file.is_file() {
        return Ok(git_dir.to_path_buf());
    }
    let text = read_pointer(&file)?;
    let common = absolute(git_dir, Path::new(text.trim()));
    if !common.is_dir() {
        return Err(Error::corrupt(
            &file,
            format!("it names {}, which is not a directory", common.display()),
        ));
    }
    Ok(normalize(&common))
}

/// The work tree holding `start` (the nearest directory with a `.git`).
fn work_tree_of(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// A `.git` or `commondir` file's text: one bounded line.
fn read_pointer(path: &Path) -> Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut text = String::new();
    file.take(MAX_POINTER)
        .read_to_string(&mut text)
        .map_err(|e| Error::io("read", path, e))?;
    let line = text.lines().next().unwrap_or("").trim().to_owned();
    if line.is_empty() {
        return Err(Error::corrupt(path, "it is empty; it must hold a path"));
    }
    Ok(line)
}

/// `path`, relative to `base` unless absolute, with `.` and `..` resolved lexically.
fn absolute(base: &Path, path: &Path) -> PathBuf {
    normalize(&base.join(path))
}

fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
