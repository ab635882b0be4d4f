//! [`LeaseStore`] over the files: the protocol's reads and writes, each through the
//! leases directory's descriptor.

use super::*;

impl LeaseStore for FileStore {
    fn entries(&mut self) -> Result<Vec<&Entry>, LeaseError> {
        self.refresh(false)?;
        Ok(self.cache.values().map(|c| &c.entry).collect())
    }

    fn scan_entries(&mut self) -> Result<Vec<&Entry>, LeaseError> {
        self.refresh(true)?;
        Ok(self.cache.values().map(|c| &c.entry).collect())
    }

    fn get(&mut self, id: &str) -> Result<Option<Entry>, LeaseError> {
        check_id(id)?;
        match self.load(id)? {
            Some(cached) => {
                let entry = cached.entry.clone();
                self.cache.insert(id.to_owned(), cached);
                Ok(Some(entry))
            }
            None => {
                self.cache.remove(id);
                Ok(None)
            }
        }
    }

    fn put(&mut self, lease: &Lease) -> Result<(), WriteFailed> {
        check_id(&lease.id)?;
        let name = file_name(&lease.id);
        let payload = lease.to_payload()?;
        self.dirty = true;
        // Until it is written and read back, the cache must not claim to know this file.
        self.cache.remove(&lease.id);
        if let Err(e) = self.dir.write(&name, &payload, &self.durable) {
            return Err(WriteFailed {
                // Renamed into place, but the directory could not be synced.
                visible: e.step() == Some(Step::SyncDir),
                error: LeaseError::file("write the lease file", e),
            });
        }
        if let Ok(Some(file)) = self.dir.open_file(&name) {
            if let Ok(meta) = file.metadata() {
                self.cache.insert(
                    lease.id.clone(),
                    Cached::read(Stamp::of(&meta), Entry::Lease(lease.clone())),
                );
            }
        }
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<bool, LeaseError> {
        check_id(id)?;
        self.cache.remove(id);
        self.dirty = true;
        self.dir
            .remove_file(file_name(id))
            .map_err(|e| LeaseError::file("remove the lease file", e))
    }

    fn sync(&mut self) -> Result<(), LeaseError> {
        if self.durability == Durability::Full {
            self.dir
                .sync()
                .map_err(|e| LeaseError::file("fsync the leases directory", e))?;
        }
        Ok(())
    }

    fn next_token(&mut self) -> Result<u64, LeaseError> {
        let last = self.read_token()?;
        let token_path = self.path_of(TOKEN_FILE);
        let went_back = |found: u64, file: &Path| {
            LeaseError::corrupt(
                &token_path,
                format!(
                    "it records {last} as the last fencing token, but {} records {found}: the \
                     counter went back (restored from a backup, or edited), and tokens must \
                     never be handed out twice, so no lease is granted until it is repaired \
                     (`Leases::repair`, `gapreg doctor --repair`)",
                    file.display()
                ),
            )
        };
        // The protocol listed the entries just before, under the same mutex: the cache is fresh.
        if let Some((highest, file)) = self.highest_cached() {
            if highest > last {
                return Err(went_back(highest, &file));
            }
        }
        if let Some(recorded) = self.read_generation()?.and_then(|g| g.last) {
            if recorded > last {
                return Err(went_back(recorded, &self.path_of(GENERATION_FILE)));
            }
        }
        let next = last.checked_add(1).ok_or_else(|| {
            LeaseError::corrupt(
                &token_path,
                "the fencing-token counter is exhausted (it records the largest token); \
                 remove the leases directory while no lease is held",
            )
        })?;
        // Durable before any lease carries it.
        self.write_token(next)?;
        // A grant follows: make every other handle rescan before it could miss the new lease.
        self.bump(Some(next))?;
        Ok(next)
    }

    fn location(&self, id: &str) -> PathBuf {
        self.path_of(&file_name(id))
    }
}
