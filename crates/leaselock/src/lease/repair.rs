//! Checking and repairing a root's coordination state: [`Leases::check`],
//! [`Leases::repair`] and their [`RepairReport`].

use super::*;

/// What [`Leases::check`] found, or what [`Leases::repair`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The fencing-token counter (`token.json`) as found.
    pub token: TokenState,
    /// The highest fencing token recorded anywhere that could be read: `token.json`, every
    /// lease file, the names of unreadable lease files, `generation`, `index.json`.
    pub highest_seen: u64,
    /// The counter [`Leases::repair`] wrote (`highest_seen + REPAIR_MARGIN`), if the counter
    /// was not sound; `None` from [`Leases::check`] or when it was sound.
    pub token_written: Option<u64>,
    /// Unreadable lease files, left in place: each blocks every grant until a forced release
    /// or [`Leases::sweep_forced`] removes it (or a person restores it).
    pub corrupt: Vec<CorruptEntry>,
    /// Leftover temp files of dead writers in the leases directory: removed by
    /// [`Leases::repair`], only listed by [`Leases::check`].
    pub temp_files: Vec<PathBuf>,
    /// Whether `index.json` and `generation` were rebuilt from the lease files (always, by
    /// [`Leases::repair`]).
    pub caches_rebuilt: bool,
}

impl RepairReport {
    /// True when nothing needs repair: the counter is sound and every lease file readable.
    pub fn is_healthy(&self) -> bool {
        self.token.is_sound() && self.corrupt.is_empty()
    }
}

impl Leases {
    /// Checks the coordination state without changing anything: the fencing-token counter
    /// against every token recorded elsewhere, every lease file, leftover temp files. For a
    /// `doctor` command; [`Leases::repair`] fixes what this reports.
    ///
    /// ```
    /// use leaselock::lease::{LeaseRequest, Leases, TokenState};
    ///
    /// let root = tempfile::tempdir()?;
    /// let leases = Leases::open(root.path())?;
    /// let lease = leases.acquire(&LeaseRequest::exclusive("a").file("f"))?.lease;
    /// leases.release(&lease)?;
    /// assert!(leases.check()?.is_healthy());
    ///
    /// // The counter is lost: grants stop rather than hand out token 1 again ...
    /// std::fs::remove_file(leases.leases_dir().join("token.json"))?;
    /// assert_eq!(leases.check()?.token, TokenState::Missing);
    /// let err = leases.acquire(&LeaseRequest::exclusive("b").file("f")).unwrap_err();
    /// assert!(err.is_damaged(), "{err}");
    ///
    /// // ... until a repair rebuilds it above every token recorded anywhere.
    /// let report = leases.repair()?;
    /// assert!(report.token_written.is_some());
    /// let next = leases.acquire(&LeaseRequest::exclusive("b").file("f"))?.lease;
    /// assert!(next.token > lease.token + leaselock::lease::REPAIR_MARGIN);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&self) -> Result<RepairReport, LeaseError> {
        self.locked(|store, _| Self::inspect(store, false))
    }

    /// Repairs the coordination state, for `gapreg doctor --repair` (under the root's mutex):
    ///
    /// - a fencing-token counter that is missing, damaged, or lower than a token recorded
    ///   elsewhere is rewritten as the highest token recorded anywhere
    ///   ([`RepairReport::highest_seen`]) plus [`REPAIR_MARGIN`], so no token is handed out
    ///   twice even if grants after the highest visible one left no trace; a sound counter is
    ///   kept;
    /// - `index.json` and `generation` are rebuilt from the lease files;
    /// - leftover temp files of dead writers are removed.
    ///
    /// Unreadable lease files are reported, not removed (they might describe live leases):
    /// see [`Leases::sweep_forced`] and [`Leases::force_release`]. Entries that are not what
    /// they must be (a symlink or a FIFO at `token.json`, say) are refused, never removed:
    /// the error names the entry for a person to remove.
    pub fn repair(&self) -> Result<RepairReport, LeaseError> {
        self.locked(|store, _| Self::inspect(store, true))
    }

    pub(super) fn inspect(store: &mut FileStore, apply: bool) -> Result<RepairReport, LeaseError> {
        let corrupt: Vec<CorruptEntry> = protocol::entries(store)?
            .into_iter()
            .filter_map(|e| match e {
                store::Entry::Corrupt(c) => Some(c),
                store::Entry::Lease(_) => None,
            })
            .collect();
        let (token, highest_seen) = store.token_state()?;
        let mut token_written = None;
        if apply {
            if !token.is_sound() {
                let last = highest_seen.checked_add(REPAIR_MARGIN).ok_or_else(|| {
                    LeaseError::corrupt(
                        store.token_path(),
                        "the highest fencing token recorded is too close to the largest \
                         possible one to rebuild the counter; remove the leases directory \
                         while no lease is held",
                    )
                })?;
                store.write_token(last)?;
                token_written = Some(last);
            }
            let last = match token {
                TokenState::Sound { last } => last,
                _ => token_written.unwrap_or(highest_seen),
            };
            store.rebuild_caches(Some(last))?;
        }
        let temp_files = store.recover_temp_files(apply)?;
        Ok(RepairReport {
            token,
            highest_seen,
            token_written,
            corrupt,
            temp_files,
            caches_rebuilt: apply,
        })
    }
}
