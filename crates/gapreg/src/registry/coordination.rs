//! The file coordination store: the id counters and the registry order in idreserve's store
//! (`ids/`), and the idempotency records in `keys/`. Never tracked by git.

use std::path::PathBuf;

use idreserve::Store;

use crate::error::Result;
use crate::layout::{KEYS, Layout, MAX_MANIFEST_BYTES};
use crate::store::{Coordination, KeyRecord};

/// The coordination state of one registry directory.
#[derive(Debug, Clone)]
pub(crate) struct FileCoordination {
    pub(crate) ids: Store,
    pub(crate) layout: Layout,
}

impl FileCoordination {
    fn key_file(key: &str) -> String {
        format!("{key}.json")
    }

    /// `keys/` in the coordination directory; `None` if it does not exist and `create` is
    /// false.
    fn keys(&self, create: bool) -> Result<Option<atomic_file::dir::Dir>> {
        let Some(coord) = self.layout.coordination(create)? else {
            return Ok(None);
        };
        if create {
            Ok(Some(coord.create_dir(KEYS)?))
        } else {
            Ok(coord.open_dir(KEYS)?)
        }
    }
}

impl Coordination for FileCoordination {
    fn peek(&self, prefix: &str) -> Result<u64> {
        Ok(self.ids.peek(prefix)?.number())
    }

    fn reserve(&self, prefix: &str, n: u64) -> Result<u64> {
        Ok(self.ids.reserve(prefix, n)?.first())
    }

    fn validate(&self, id: &str) -> Result<()> {
        self.ids.validate(id)?;
        Ok(())
    }

    fn read_key(&self, key: &str) -> Result<Option<KeyRecord>> {
        let Some(keys) = self.keys(false)? else {
            return Ok(None);
        };
        let name = Self::key_file(key);
        let opts = atomic_file::Options::new().checksum(true);
        match keys.read_with(&name, &opts, MAX_MANIFEST_BYTES)? {
            Some(bytes) => Ok(Some(
                atomic_file::Format::Json.decode(keys.join(&name), &bytes)?,
            )),
            None => Ok(None),
        }
    }

    fn write_key(&self, key: &str, record: &KeyRecord) -> Result<()> {
        let keys = self
            .keys(true)?
            .ok_or_else(|| crate::error::Error::invalid("keys", "cannot be created"))?;
        let name = Self::key_file(key);
        let bytes = atomic_file::Format::Json.encode(keys.join(&name), record)?;
        // Always durable: a key lost in a power cut would let a retry file twice.
        keys.write(&name, &bytes, &atomic_file::Options::new().checksum(true))?;
        Ok(())
    }

    fn key_location(&self, key: &str) -> PathBuf {
        self.layout
            .coordination_path()
            .join(KEYS)
            .join(Self::key_file(key))
    }
}
