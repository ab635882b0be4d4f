//! Checking a store without changing anything, for `gapreg doctor`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use atomic_file::dir::{Dir, FileKind};

use crate::error::{Error, ErrorKind, wrong_type};
use crate::files::{CONFIG_FILE, LOG_FILE};
use crate::log::{self, Format};
use crate::store;

/// What [`verify`] found in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The counters, if the log could be read.
    pub counters: Option<BTreeMap<String, u64>>,
    /// Every problem found, most serious first per file.
    pub findings: Vec<Finding>,
}

impl Verification {
    /// Whether the store can be trusted: no [`FindingKind::Corrupt`] finding (the others are
    /// notes that the next writer or a clean-up resolves).
    pub fn is_healthy(&self) -> bool {
        !self.findings.iter().any(|f| f.kind == FindingKind::Corrupt)
    }
}

/// One problem of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How serious it is.
    pub kind: FindingKind,
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// What is wrong, and what to do.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// The class of a [`Finding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// Damaged, missing, or not a regular file / directory: every operation that needs it
    /// fails with [`ErrorKind::Corrupt`] until it is restored by hand.
    Corrupt,
    /// A first-release store (no header in the log, or no `version` in the config): read as
    /// it is, and migrated by the next reservation.
    Legacy,
    /// A write of a record was interrupted (a crash); it counts for nothing and the next
    /// reservation overwrites it.
    InterruptedWrite,
    /// A temp file left by a writer that died while rewriting a file;
    /// [`Store::remove_temp_files`](crate::Store::remove_temp_files) removes it.
    LeftoverTemp,
}

/// Checks the store in `dir` without changing, creating or locking anything: the types of
/// its entries (no symlink, FIFO or directory where a file belongs, no link as the store
/// directory), its `config.yaml`, every slot of its log, its lock files, and leftover temp
/// files. Damage is reported as findings, not as an error. Leftover temp files are found
/// with the same writer-liveness check that [`Store::remove_temp_files`] uses, but none is
/// removed.
///
/// ```
/// use idreserve::{Config, ErrorClass, Store};
///
/// let dir = tempfile::tempdir()?;
/// let ids = dir.path().join("ids");
/// assert_eq!(idreserve::verify(&ids).unwrap_err().class(), ErrorClass::NotFound);
/// Store::create(&ids, Config::default())?.reserve("SEC", 5)?;
/// let report = idreserve::verify(&ids)?;
/// assert!(report.is_healthy());
/// assert_eq!(report.counters.map(|c| c["SEC"]), Some(5));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`Store::remove_temp_files`]: crate::Store::remove_temp_files
///
/// # Errors
///
/// [`ErrorKind::NoStore`] if there is no store at `dir`; an I/O error if a check could not be
/// made (permission denied, say).
pub fn verify(dir: impl AsRef<Path>) -> Result<Verification, Error> {
    let path = dir.as_ref();
    match Dir::open(path) {
        Ok(dir) => verify_dir(&dir),
        Err(e) if e.is_not_found() => Err(Error::new(ErrorKind::NoStore { dir: path.into() })),
        Err(e) => corrupt_only(Error::store_file(e)),
    }
}

/// [`verify`] of the store directory `name` inside `parent`, reached through its descriptor.
pub fn verify_at(parent: &Dir, name: &str) -> Result<Verification, Error> {
    match parent.open_dir(name) {
        Ok(Some(dir)) => verify_dir(&dir),
        Ok(None) => Err(Error::new(ErrorKind::NoStore {
            dir: parent.join(name),
        })),
        Err(e) => corrupt_only(Error::store_file(e)),
    }
}

/// A verification that consists of one corrupt finding, or the error if it is not damage.
fn corrupt_only(e: Error) -> Result<Verification, Error> {
    let mut findings = Vec::new();
    note(&mut findings, Err::<(), _>(e))?;
    Ok(Verification {
        counters: None,
        findings,
    })
}

/// Records a damage error as a finding; passes any other error on.
fn note<T>(findings: &mut Vec<Finding>, result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) => match e.kind() {
            ErrorKind::Corrupt { path, reason } => {
                findings.push(Finding {
                    kind: FindingKind::Corrupt,
                    path: path.clone(),
                    message: reason.clone(),
                });
                Ok(None)
            }
            _ => Err(e),
        },
    }
}

fn kind_of(dir: &Dir, name: &str) -> Result<Option<FileKind>, Error> {
    dir.kind(name).map_err(Error::store_file)
}

pub(crate) fn verify_dir(dir: &Dir) -> Result<Verification, Error> {
    let mut findings = Vec::new();
    let config_kind = kind_of(dir, CONFIG_FILE)?;
    let log_kind = kind_of(dir, LOG_FILE)?;
    if config_kind.is_none() && log_kind.is_none() {
        return Err(Error::new(ErrorKind::NoStore {
            dir: dir.path().into(),
        }));
    }
    let wrong = |name: &str, kind: Option<FileKind>, findings: &mut Vec<Finding>| match kind {
        Some(kind) if kind != FileKind::File => {
            findings.push(Finding {
                kind: FindingKind::Corrupt,
                path: dir.join(name),
                message: wrong_type(kind, FileKind::File),
            });
            true
        }
        _ => false,
    };
    let config_wrong = wrong(CONFIG_FILE, config_kind, &mut findings);
    let log_wrong = wrong(LOG_FILE, log_kind, &mut findings);

    // The config: its format version decides how the log is read.
    let mut legacy = false;
    if config_kind.is_none() {
        note(&mut findings, Err::<(), _>(store::missing_config(dir)))?;
    } else if !config_wrong {
        if let Some(parsed) = note(&mut findings, store::read_config(dir))? {
            legacy = parsed.legacy;
            if legacy {
                findings.push(Finding {
                    kind: FindingKind::Legacy,
                    path: dir.join(CONFIG_FILE),
                    message: "it has no `version` (a store created by the first release); \
                              the next reservation adds `version: 2`"
                        .into(),
                });
            }
        }
    }

    // The log, slot by slot.
    let mut counters = None;
    if log_kind.is_none() {
        note(&mut findings, Err::<(), _>(store::missing_log(dir)))?;
    } else if !log_wrong {
        let data = dir.read(LOG_FILE, log::MAX_LEN).map_err(Error::store_file);
        if let Some(Some(data)) = note(&mut findings, data)? {
            match log::scan(&data, legacy) {
                Ok(scan) => {
                    if scan.format == Format::Legacy {
                        findings.push(Finding {
                            kind: FindingKind::Legacy,
                            path: dir.join(LOG_FILE),
                            message: "it is in the first release's format (no header); the \
                                      next reservation rewrites it in version 2, counters \
                                      unchanged"
                                .into(),
                        });
                    }
                    if scan.interrupted {
                        findings.push(Finding {
                            kind: FindingKind::InterruptedWrite,
                            path: dir.join(LOG_FILE),
                            message: format!(
                                "line {} holds a write that was interrupted (a crash during \
                                 a reservation that never returned); it counts for nothing \
                                 and the next reservation overwrites it",
                                scan.records + 2
                            ),
                        });
                    }
                    counters = Some(scan.counters);
                }
                Err(damage) => findings.push(Finding {
                    kind: FindingKind::Corrupt,
                    path: dir.join(LOG_FILE),
                    message: damage.to_string(),
                }),
            }
        }
    }

    note(&mut findings, store::check_lock_files(dir, false))?;

    let recovery = note(&mut findings, dir.recover(false).map_err(Error::store_file))?;
    for path in recovery.map(|r| r.removed).unwrap_or_default() {
        findings.push(Finding {
            kind: FindingKind::LeftoverTemp,
            path,
            message: "a temp file left by a writer that died while rewriting a file of the \
                      store; removing it is safe"
                .into(),
        });
    }
    Ok(Verification { counters, findings })
}
