//! What `doctor` reports: findings, their kinds, and the report.

use std::fmt;

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// What kind of problem a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A gap file, loop file or the id counter log cannot be parsed, or an entry of the
    /// registry is of the wrong type (a symlink, FIFO or directory where a file belongs): it
    /// is never followed, opened or removed. Not repaired.
    Corrupt,
    /// A gap file's name differs from the id inside it. Not repaired.
    IdMismatch,
    /// Two gap files hold the same id (`GAP-OP-7` and `GAP-OP-007`), or two loop files the
    /// same loop id. Not repaired.
    DuplicateId,
    /// A parent loop or dependency names nothing that exists. Not repaired.
    DanglingReference,
    /// A dependency cycle among gaps and loops. Not repaired.
    Cycle,
    /// A complete gap depends on a gap or loop that is not complete (after a merge). Not
    /// repaired.
    UnfinishedDependency,
    /// Two gaps hold the same registry position (`seq`), as after merging branches that both
    /// filed gaps. Not repaired.
    DuplicatePosition,
    /// A gap id (or registry position) above its prefix's counter: the counter would hand it
    /// out again. Repaired by raising the counter.
    IdAboveCounter,
    /// A temp file left by a writer that died mid-write. Repaired by removing it.
    TempFile,
    /// The leases' fencing-token counter is missing, damaged or lower than a token recorded
    /// in a lease: it could hand a token out twice. Repaired by setting it above every token
    /// recorded anywhere (leaselock's `Leases::repair`).
    FencingToken,
    /// `index.log` disagrees with the gap files. Repaired by rebuilding it.
    StaleIndex,
    /// A batch writer died mid-way: a committed batch not yet moved into `gaps/` (repaired by
    /// finishing it), or staged files of a batch that never committed (repaired by removing
    /// them).
    IncompleteBatch,
    /// The coordination server's tables are missing, older or newer than this build knows.
    ServerSchema,
}

/// One problem `doctor` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// The file or id it is about.
    pub subject: String,
    /// What is wrong, and what to do.
    pub message: String,
    /// Whether `doctor(true)` repaired it.
    pub repaired: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}: {}",
            self.subject,
            if self.repaired { " (repaired)" } else { "" },
            self.message
        )
    }
}

/// What [`Registry::doctor`](crate::Registry::doctor) found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DoctorReport {
    /// Every problem, in a stable order.
    pub findings: Vec<Finding>,
    /// Gap files read.
    pub gaps: usize,
    /// Loop files read.
    pub loops: usize,
}

impl DoctorReport {
    /// True when nothing is wrong, or everything wrong was repaired.
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.repaired)
    }

    pub(super) fn add(
        &mut self,
        kind: FindingKind,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.findings.push(Finding {
            kind,
            subject: subject.into(),
            message: message.into(),
            repaired: false,
        });
    }
}

/// The error of a damaged or unsafe entry as a finding (the rest is propagated).
pub(super) fn damaged(report: &mut DoctorReport, result: Result<()>) -> Result<()> {
    match result {
        Err(e) if is_damage(&e) => {
            let subject = match e.kind() {
                ErrorKind::File(f) => f.path().display().to_string(),
                ErrorKind::Corrupt { path, .. } => path.display().to_string(),
                _ => String::from("registry"),
            };
            report.add(FindingKind::Corrupt, subject, e.to_string());
            Ok(())
        }
        other => other,
    }
}

fn is_damage(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::File(f) => f.is_damaged(),
        ErrorKind::Corrupt { .. } => true,
        ErrorKind::Ids(i) => i.is_corrupt(),
        _ => false,
    }
}
