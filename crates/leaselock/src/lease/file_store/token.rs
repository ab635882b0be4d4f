//! The fencing-token counter (`token.json`) and the change marker (`generation`): reading
//! them, bumping the generation after a change, checking and repairing the counter.

use super::*;

impl FileStore {
    /// Reads `token.json`: the last token. Missing or damaged is corrupt: fencing tokens must
    /// never go back, so no lease is granted until it is repaired.
    pub(super) fn read_token(&self) -> Result<u64, LeaseError> {
        let path = self.path_of(TOKEN_FILE);
        let advice = "fencing tokens must never go back, so no lease is granted until it is \
                      repaired (`Leases::repair`, `gapreg doctor --repair`: the counter is \
                      rebuilt above the highest token recorded anywhere)";
        match self.dir.read_with(TOKEN_FILE, &self.durable, TOKEN_LIMIT) {
            Ok(Some(payload)) => serde_json::from_slice::<TokenFile>(&payload)
                .map(|t| t.last)
                .map_err(|e| {
                    LeaseError::corrupt(path, format!("it is not a token counter ({e}); {advice}"))
                }),
            Ok(None) => Err(LeaseError::corrupt(
                path,
                format!(
                    "the fencing-token counter is missing (the leases directory is created \
                     with it, so it was removed); {advice}"
                ),
            )),
            Err(e) if e.is_damaged() => Err(LeaseError::corrupt(
                path,
                format!("{}; {advice}", describe(&e)),
            )),
            Err(e) => Err(LeaseError::file("read the token file", e)),
        }
    }

    /// The generation, `None` if missing or damaged (a damaged marker only costs a rescan); a
    /// `generation` that is not a regular file is an error.
    pub(super) fn read_generation(&self) -> Result<Option<Generation>, LeaseError> {
        match self
            .dir
            .read_with(GENERATION_FILE, &self.cache_opts, GENERATION_LIMIT)
        {
            Ok(Some(payload)) => Ok(serde_json::from_slice(&payload).ok()),
            Ok(None) => Ok(None),
            Err(e) if matches!(e.kind(), atomic_file::ErrorKind::WrongType { .. }) => {
                Err(LeaseError::file("read the generation file", e))
            }
            Err(e) if e.is_damaged() => Ok(None),
            Err(e) => Err(LeaseError::file("read the generation file", e)),
        }
    }

    /// Replaces the generation with a fresh random number (recording `last` as the last token,
    /// or keeping the recorded one), so that every other handle rescans before its next
    /// decision; keeps this handle's cache current if it was.
    pub(super) fn bump(&mut self, last: Option<u64>) -> Result<(), LeaseError> {
        let current = self.read_generation().ok().flatten();
        let fresh = self.generation.is_some() && current.map(|g| g.marker) == self.generation;
        self.generation = None;
        let next = Generation {
            marker: fastrand::u64(1..),
            last: last.or(current.and_then(|g| g.last)),
        };
        self.dir
            .write(GENERATION_FILE, &encode_json(&next), &self.cache_opts)
            .map_err(|e| LeaseError::file("write the generation file", e))?;
        self.bumped = true;
        if fresh {
            self.generation = Some(next.marker);
        }
        Ok(())
    }

    /// The highest token recorded in the cached entries, and where.
    pub(super) fn highest_cached(&self) -> Option<(u64, PathBuf)> {
        self.cache
            .iter()
            .filter_map(|(id, c)| c.entry.token().map(|t| (t, id)))
            .max()
            .map(|(t, id)| (t, self.path_of(&file_name(id))))
    }

    /// The counter's state, judged against every token recorded elsewhere (call after a full
    /// scan), and the highest token seen anywhere.
    pub(crate) fn token_state(&self) -> Result<(TokenState, u64), LeaseError> {
        let generation = self.read_generation()?;
        let mut highest: Option<(u64, PathBuf)> = self.highest_cached();
        if let Some(last) = generation.and_then(|g| g.last) {
            if highest.as_ref().is_none_or(|(t, _)| last > *t) {
                highest = Some((last, self.path_of(GENERATION_FILE)));
            }
        }
        if let Some(t) = self.index_highest {
            if highest.as_ref().is_none_or(|(h, _)| t > *h) {
                highest = Some((t, self.path_of(INDEX_FILE)));
            }
        }
        let state = match self.read_token() {
            Ok(last) => match &highest {
                Some((h, file)) if *h > last => TokenState::WentBack {
                    last,
                    highest: *h,
                    found_in: file.clone(),
                },
                _ => TokenState::Sound { last },
            },
            Err(e) => match e.kind() {
                LeaseErrorKind::Corrupt { reason, .. } => {
                    if matches!(self.dir.kind(TOKEN_FILE), Ok(None)) {
                        TokenState::Missing
                    } else {
                        TokenState::Damaged {
                            reason: reason.clone(),
                        }
                    }
                }
                _ => return Err(e),
            },
        };
        let seen = highest.map(|(h, _)| h).unwrap_or(0);
        let seen = match state {
            TokenState::Sound { last } | TokenState::WentBack { last, .. } => seen.max(last),
            _ => seen,
        };
        Ok((state, seen))
    }

    /// Writes `token.json` with `last` (durably, checksummed).
    pub(crate) fn write_token(&mut self, last: u64) -> Result<(), LeaseError> {
        self.dir
            .write(TOKEN_FILE, &token_payload(last), &self.durable)
            .map_err(|e| LeaseError::file("write the token file", e))
    }

    /// Rebuilds `index.json` from the current cache (call after a full scan) and bumps the
    /// generation, recording `last`.
    pub(crate) fn rebuild_caches(&mut self, last: Option<u64>) -> Result<(), LeaseError> {
        let entries: Vec<IndexItem> = self
            .cache
            .values()
            .filter_map(|c| match &c.entry {
                Entry::Lease(lease) => Some(IndexItem {
                    stamp: c.stamp,
                    lease: lease.clone(),
                }),
                Entry::Corrupt(_) => None,
            })
            .collect();
        let index = IndexFile {
            version: INDEX_VERSION,
            entries,
        };
        self.dir
            .write(INDEX_FILE, &encode_json(&index), &self.cache_opts)
            .map_err(|e| LeaseError::file("write the lease index", e))?;
        self.index_stale = false;
        self.bump(last)
    }
}
