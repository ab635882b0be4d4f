//! What every lease store checks of a request before it looks at any lease: the holder, the
//! time to live, the bounds, and each path normalized inside the root without following a
//! link. One [`Scope`] per root, shared by the file store ([`super::Leases`]) and the
//! server's ([`super::PgLeases`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{LeaseError, LeaseErrorKind};
use super::liveness;
use super::options::{Binding, LeaseRequest};
use super::path::{self, normalize_path};
use super::protocol::Request;
use super::record::HolderFacts;

/// The most paths one request may claim.
pub(crate) const MAX_PATHS: usize = 10_000;
/// The most bytes of paths and task one request may carry (a lease file stays far below the
/// readers' limit).
pub(crate) const MAX_REQUEST_BYTES: usize = 1 << 20;
/// The longest time to live: 100 years.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The root leases are taken in, and this process's liveness facts.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// The root, absolute.
    pub(crate) root: PathBuf,
    /// The root, canonical (links resolved), where links are refused.
    pub(crate) root_canonical: PathBuf,
    /// This process's facts.
    pub(crate) me: HolderFacts,
}

pub(crate) fn holder_ok(holder: &str) -> Result<(), LeaseError> {
    if holder.is_empty() || holder.len() > 200 || holder.chars().any(char::is_control) {
        return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: format!(
                "holder name {holder:?} must be 1 to 200 bytes without control characters"
            ),
        }));
    }
    Ok(())
}

impl Scope {
    /// The scope of `root` (an existing directory).
    pub(crate) fn open(root: &Path) -> Result<Scope, LeaseError> {
        let root_canonical = std::fs::canonicalize(root)
            .map_err(|e| LeaseError::io(root, "open the lease root", e))?;
        let root = std::path::absolute(root)
            .map_err(|e| LeaseError::io(root, "resolve the lease root", e))?;
        Ok(Scope {
            root,
            root_canonical,
            me: liveness::current_facts(),
        })
    }

    /// The liveness facts a grant with `binding` records.
    pub(crate) fn facts_for(
        &self,
        binding: Binding,
        session: Option<&str>,
    ) -> Result<HolderFacts, LeaseError> {
        match binding {
            Binding::ThisProcess => Ok(self.me.clone()),
            Binding::Process(pid) => liveness::facts_of(pid, &self.me).ok_or_else(|| {
                LeaseError::new(LeaseErrorKind::InvalidRequest {
                    reason: format!(
                        "no process {pid} is running on this host to tie the lease to; give \
                         the pid of the agent or shell that does the work"
                    ),
                })
            }),
            Binding::TtlOnly => Ok(liveness::ttl_only(&self.me)),
            Binding::Session => match session {
                Some(key) => Ok(HolderFacts {
                    session: Some(key.to_owned()),
                    ..liveness::ttl_only(&self.me)
                }),
                None => Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
                    reason: "a lease can be bound to a session only on a coordination server"
                        .to_owned(),
                })),
            },
        }
    }

    fn normalize(&self, path: &str) -> Result<String, LeaseError> {
        let normalized = normalize_path(&self.root, path).or_else(|e| {
            if Path::new(path).is_absolute() {
                normalize_path(&self.root_canonical, path).map_err(|_| e)
            } else {
                Err(e)
            }
        })?;
        path::refuse_links(&self.root_canonical, &normalized)?;
        Ok(normalized)
    }

    /// `req` checked (bounds, holder, TTL) with its paths normalized, sorted and deduplicated.
    pub(crate) fn request(&self, req: &LeaseRequest) -> Result<Request, LeaseError> {
        holder_ok(&req.holder)?;
        let ttl = ttl_ok(req.ttl)?;
        if req.files.is_empty() && req.dirs.is_empty() {
            return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: "the request claims no files and no directories".to_owned(),
            }));
        }
        let count = req.files.len() + req.dirs.len();
        let bytes: usize = req
            .files
            .iter()
            .chain(&req.dirs)
            .map(String::len)
            .sum::<usize>()
            + req.task.len();
        if count > MAX_PATHS || bytes > MAX_REQUEST_BYTES {
            return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
                reason: format!(
                    "the request claims {count} paths in {bytes} bytes (with its task); at \
                     most {MAX_PATHS} paths and {MAX_REQUEST_BYTES} bytes are allowed"
                ),
            }));
        }
        let norm = |paths: &[String]| -> Result<Vec<String>, LeaseError> {
            let mut out = paths
                .iter()
                .map(|p| self.normalize(p))
                .collect::<Result<Vec<_>, _>>()?;
            out.sort();
            out.dedup();
            Ok(out)
        };
        Ok(Request {
            holder: req.holder.clone(),
            mode: req.mode,
            files: norm(&req.files)?,
            dirs: norm(&req.dirs)?,
            task: req.task.clone(),
            ttl,
        })
    }
}

/// Checks a time to live and truncates it to the stored precision (whole milliseconds).
pub(crate) fn ttl_ok(ttl: Duration) -> Result<Duration, LeaseError> {
    let ms = Duration::from_millis(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    if ms.is_zero() {
        return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: "the time to live is zero (it is stored in whole milliseconds)".to_owned(),
        }));
    }
    if ms > MAX_TTL {
        return Err(LeaseError::new(LeaseErrorKind::InvalidRequest {
            reason: format!("the time to live {ttl:?} is longer than 100 years"),
        }));
    }
    Ok(ms)
}
