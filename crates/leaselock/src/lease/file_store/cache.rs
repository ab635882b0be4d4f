//! The cache of parsed leases: the scan of the leases directory (stamps, headers, which
//! files to read again), `index.json` loaded and rewritten, one lease file read and checked.
//! The rules are in the parent module's docs.

use super::*;

impl FileStore {
    /// Brings the cache up to date. Fast path (`full == false`): if the generation is the one
    /// the cache reflects, nothing changed through this library since, and the directory is
    /// not listed. Otherwise (or with `full`) list every lease file and re-read the changed
    /// ones.
    pub(super) fn refresh(&mut self, full: bool) -> Result<(), LeaseError> {
        let generation = self.read_generation()?.map(|g| g.marker);
        if !full && generation.is_some() && generation == self.generation {
            return Ok(());
        }
        self.generation = None;
        self.scan()?;
        self.generation = generation;
        Ok(())
    }

    pub(super) fn scan(&mut self) -> Result<(), LeaseError> {
        if !self.index_loaded {
            self.load_index()?;
            self.index_loaded = true;
        }
        let listing = self
            .dir
            .entries()
            .map_err(|e| LeaseError::file("list the leases directory", e))?;
        let mut seen = BTreeSet::new();
        let mut reparsed = 0;
        for item in listing {
            let name = item.name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let Some(id) = name.strip_suffix(LEASE_SUFFIX) else {
                continue;
            };
            if id.is_empty() {
                continue;
            }
            let id = id.to_owned();
            if item.name.to_str().is_none() {
                // Not ours (every id is UTF-8), but it may be a damaged lease: fail closed.
                let entry = Entry::Corrupt(CorruptEntry {
                    id: id.clone(),
                    path: self.path.join(&item.name),
                    reason: "its name is not UTF-8, so it is no lease file this library wrote; \
                             remove it by hand"
                        .to_owned(),
                });
                seen.insert(id.clone());
                self.cache.insert(id, Cached::unstamped(entry));
                continue;
            }
            seen.insert(id.clone());
            if item.kind != FileKind::File {
                let reason = format!(
                    "it is {}, not a regular file; it was not followed, opened or changed (a \
                     repository can hold planted entries): remove it by hand",
                    item.kind
                );
                let entry = self.corrupt_entry(&id, reason);
                self.cache.insert(id, Cached::unstamped(entry));
                continue;
            }
            let file = match self.open_lease(&id)? {
                None => {
                    seen.remove(&id);
                    continue;
                }
                Some(Err(entry)) => {
                    self.cache.insert(id, Cached::unstamped(entry));
                    continue;
                }
                Some(Ok(file)) => file,
            };
            let stamp = self.stamp(&id, &file)?;
            if let Some(cached) = self.cache.get_mut(&id) {
                if cached.stamp == stamp {
                    match &cached.trust {
                        Trust::Read => continue,
                        Trust::Header(expected) if Self::header_matches(&file, expected) => {
                            cached.trust = Trust::Read;
                            continue;
                        }
                        // The index does not describe this file: it is stale or was edited.
                        Trust::Header(_) => self.index_stale = true,
                    }
                }
            }
            reparsed += 1;
            let fresh = self.read_lease(&id, &file, stamp)?;
            self.cache.insert(id, fresh);
        }
        let before = self.cache.len();
        self.cache.retain(|id, _| seen.contains(id));
        reparsed += before - self.cache.len();
        if reparsed > INDEX_REWRITE_THRESHOLD || (self.index_stale && reparsed > 0) {
            self.write_index();
        }
        Ok(())
    }

    /// Seeds the cache from `index.json`. A damaged index is ignored (and rewritten after the
    /// scan); an `index.json` that is not a regular file is an error.
    pub(super) fn load_index(&mut self) -> Result<(), LeaseError> {
        let payload = match self
            .dir
            .read_with(INDEX_FILE, &self.cache_opts, INDEX_LIMIT)
        {
            Ok(Some(payload)) => payload,
            Ok(None) => return Ok(()),
            Err(e) if matches!(e.kind(), atomic_file::ErrorKind::WrongType { .. }) => {
                return Err(LeaseError::file("read the lease index", e));
            }
            Err(e) => {
                // Damaged (checksum, size) or unreadable: start cold and rebuild it.
                self.index_stale = e.is_damaged();
                return Ok(());
            }
        };
        let Ok(index) = serde_json::from_slice::<IndexFile>(&payload) else {
            self.index_stale = true;
            return Ok(());
        };
        if index.version != INDEX_VERSION {
            self.index_stale = true;
            return Ok(());
        }
        for item in index.entries {
            let id = item.lease.id.clone();
            let header = item.lease.to_payload().map(|p| checksum::header(&p));
            match header {
                Ok(header) if check_id(&id).is_ok() && validate(&item.lease, &id).is_ok() => {
                    self.index_highest = self.index_highest.max(Some(item.lease.token));
                    self.cache.insert(
                        id,
                        Cached {
                            stamp: item.stamp,
                            entry: Entry::Lease(item.lease),
                            trust: Trust::Header(header),
                        },
                    );
                }
                _ => self.index_stale = true,
            }
        }
        Ok(())
    }

    /// Writes the cache to `index.json` (checksummed, no fsync). Failure is harmless (the
    /// index is only a cache, verified entry by entry on use), so it is not reported.
    pub(super) fn write_index(&mut self) {
        let entries: Vec<IndexItem> = self
            .cache
            .values()
            .filter_map(|c| match (&c.entry, &c.trust) {
                (Entry::Lease(lease), Trust::Read) => Some(IndexItem {
                    stamp: c.stamp,
                    lease: lease.clone(),
                }),
                _ => None,
            })
            .collect();
        let index = IndexFile {
            version: INDEX_VERSION,
            entries,
        };
        let bytes = encode_json(&index);
        if self.dir.write(INDEX_FILE, &bytes, &self.cache_opts).is_ok() {
            self.index_stale = false;
        }
    }

    /// Reads lease file `id` afresh; `None` if it does not exist.
    pub(super) fn load(&self, id: &str) -> Result<Option<Cached>, LeaseError> {
        let file = match self.open_lease(id)? {
            None => return Ok(None),
            Some(Err(entry)) => {
                return Ok(Some(Cached::unstamped(entry)));
            }
            Some(Ok(file)) => file,
        };
        let stamp = self.stamp(id, &file)?;
        self.read_lease(id, &file, stamp).map(Some)
    }

    /// Reads and checks lease file `id` from its open descriptor.
    pub(super) fn read_lease(
        &self,
        id: &str,
        file: &File,
        stamp: Stamp,
    ) -> Result<Cached, LeaseError> {
        let path = self.path_of(&file_name(id));
        let entry = match read_limited(file, stamp.len, LEASE_FILE_LIMIT)
            .map_err(|e| LeaseError::io(&path, "read the lease file", e))?
        {
            Err(reason) => self.corrupt_entry(id, reason),
            Ok(bytes) => match decode_file(id, &bytes) {
                Ok(lease) => Entry::Lease(lease),
                Err(reason) => self.corrupt_entry(id, reason),
            },
        };
        Ok(Cached::read(stamp, entry))
    }

    pub(super) fn stamp(&self, id: &str, file: &File) -> Result<Stamp, LeaseError> {
        file.metadata()
            .map(|m| Stamp::of(&m))
            .map_err(|e| LeaseError::io(self.path_of(&file_name(id)), "inspect the lease file", e))
    }

    /// Whether the file's checksum header is `expected` (read with one `pread`).
    pub(super) fn header_matches(file: &File, expected: &[u8]) -> bool {
        let mut buf = [0u8; HEADER_MAX];
        let Ok(n) = file.read_at(&mut buf, 0) else {
            return false;
        };
        buf[..n].starts_with(expected)
    }

    /// Opens lease file `id`: `Ok(None)` if it does not exist; a refused entry (symlink, FIFO,
    /// directory) is a corrupt entry.
    pub(super) fn open_lease(&self, id: &str) -> Result<Option<Result<File, Entry>>, LeaseError> {
        match self.dir.open_file(file_name(id)) {
            Ok(Some(file)) => Ok(Some(Ok(file))),
            Ok(None) => Ok(None),
            Err(e) if e.is_damaged() => Ok(Some(Err(self.corrupt_entry(id, describe(&e))))),
            Err(e) => Err(LeaseError::file("open the lease file", e)),
        }
    }
}
