//! Opening (or creating) a root's leases directory without following a planted link, and
//! creating it atomically together with its fencing-token counter.

use super::*;

/// Removes `.` and `..` components lexically.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Opens the leases directory `dir` (absolute): inside `root`, component by component from the
/// canonical root without following a symlink, creating what is missing; outside `root`, its
/// parent as given and its last component without following. A missing leases directory is
/// created with its token counter (see [`create_leases_dir`]).
pub(super) fn open_leases_dir(
    root: &Path,
    root_canonical: &Path,
    dir: &Path,
    durability: Durability,
) -> Result<Dir, LeaseError> {
    let step = "open the leases directory";
    let dir = lexical(dir);
    let (mut at, rest): (Dir, Vec<std::ffi::OsString>) = match dir.strip_prefix(lexical(root)) {
        Ok(rest) => (
            Dir::open(root_canonical).map_err(|e| LeaseError::file(step, e))?,
            rest.iter().map(ToOwned::to_owned).collect(),
        ),
        Err(_) => {
            let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
                return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
                    reason: format!("{} cannot be a leases directory", dir.display()),
                }));
            };
            (
                Dir::create(parent).map_err(|e| LeaseError::file(step, e))?,
                vec![name.to_owned()],
            )
        }
    };
    let Some((last, parents)) = rest.split_last() else {
        return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: "the leases directory cannot be the lease root itself".to_owned(),
        }));
    };
    for name in parents {
        at = at.create_dir(name).map_err(|e| LeaseError::file(step, e))?;
    }
    create_leases_dir(&at, last, durability)
}

/// Opens `parent/name`, or creates it atomically with a `token.json` of 0 in it: a staging
/// directory `.<name>.init-<pid>-<random>` is created, the counter written (durably) into it,
/// and the staging directory renamed to `name`, so a leases directory never exists without its
/// counter, and one that has lost it is corrupt, not new.
fn create_leases_dir(
    parent: &Dir,
    name: &OsStr,
    durability: Durability,
) -> Result<Dir, LeaseError> {
    let step = "create the leases directory";
    if let Some(dir) = parent
        .open_dir(name)
        .map_err(|e| LeaseError::file(step, e))?
    {
        return Ok(dir);
    }
    let mut staging_name = std::ffi::OsString::from(".");
    staging_name.push(name);
    staging_name.push(format!(
        "{STAGING_INFIX}{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let staging = parent
        .create_dir(&staging_name)
        .map_err(|e| LeaseError::file(step, e))?;
    let opts = atomic_file::Options::new()
        .checksum(true)
        .durability(durability);
    let cleanup = || {
        let _ = staging.remove_file(file_store::TOKEN_FILE);
        let _ = parent.remove_dir(&staging_name);
    };
    if let Err(e) = staging.write(file_store::TOKEN_FILE, &file_store::token_payload(0), &opts) {
        cleanup();
        return Err(LeaseError::file(step, e));
    }
    // `renameat` on the descriptor: it only ever moves our own, uniquely named staging
    // directory, and never onto anything but a missing or empty directory.
    match parent.rename_dir(&staging_name, parent, name) {
        Ok(_) => {
            if durability == Durability::Full {
                parent.sync().map_err(|e| LeaseError::file(step, e))?;
            }
        }
        // Created by someone else meanwhile (rename onto a non-empty directory fails).
        Err(e)
            if e.io_error()
                .and_then(std::io::Error::raw_os_error)
                .is_some_and(|code| {
                    code == rustix::io::Errno::EXIST.raw_os_error()
                        || code == rustix::io::Errno::NOTEMPTY.raw_os_error()
                }) =>
        {
            cleanup();
        }
        Err(e) => {
            cleanup();
            return Err(LeaseError::file(step, e));
        }
    }
    parent
        .open_dir(name)
        .map_err(|e| LeaseError::file(step, e))?
        .ok_or_else(|| LeaseError::io(parent.join(name), step, std::io::ErrorKind::NotFound.into()))
}
