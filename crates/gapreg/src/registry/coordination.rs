//! The file coordination store: the id counters and the registry order in idreserve's store
//! (`ids/`), and the idempotency records in `keys/`. Never tracked by git.

use std::path::PathBuf;

use idreserve::Store;

use crate::error::Result;
use crate::layout::{CLAIMS, KEYS, Layout, MAX_MANIFEST_BYTES};
use crate::store::{Claim, Coordination, KeyRecord};

use super::claims;
use crate::time::Timestamp;

/// The coordination state of one registry directory.
#[derive(Debug, Clone)]
pub(crate) struct FileCoordination {
    pub(crate) ids: Store,
    pub(crate) layout: Layout,
    /// The claims: leaselock leases of their own (`claims/` beside `leases/`), one exclusive
    /// lease per claimed gap on the path named by its id, opened on first use.
    pub(crate) claims: std::sync::Arc<std::sync::OnceLock<leaselock::lease::Leases>>,
}

impl FileCoordination {
    /// Whether any claim was ever taken here (the claims' lease store exists).
    fn has_claims(&self) -> bool {
        self.claims.get().is_some()
            || std::fs::symlink_metadata(self.layout.coordination_path().join(CLAIMS)).is_ok()
    }

    /// The claims' lease store.
    fn claim_leases(&self) -> Result<&leaselock::lease::Leases> {
        if let Some(l) = self.claims.get() {
            return Ok(l);
        }
        // One host's clock judges every claim in this directory (its worktrees share it), so
        // a claim lapses exactly at its expiry: no skew margin, as the document's own rule.
        let opts = leaselock::lease::LeaseOptions::new()
            .leases_dir(self.layout.coordination_path().join(CLAIMS))
            .skew_margin(std::time::Duration::ZERO);
        let leases = leaselock::lease::Leases::open_with(self.layout.repo(), opts)?;
        Ok(self.claims.get_or_init(|| leases))
    }

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

    fn raise(&self, prefix: &str, at_least: u64) -> Result<()> {
        self.ids.raise(prefix, at_least)?;
        Ok(())
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

    fn take_claim(
        &self,
        id: &str,
        agent: &str,
        expires: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<()> {
        claims::take(self.claim_leases()?, id, agent, expires, now)
    }

    fn release_claim(&self, id: &str, agent: &str) -> Result<()> {
        if !self.has_claims() {
            return Ok(());
        }
        claims::release(self.claim_leases()?, id, agent)
    }

    fn live_claims(&self, _now: Timestamp) -> Result<std::collections::BTreeMap<String, Claim>> {
        // Judged on leaselock's clock (this host's).
        if !self.has_claims() {
            // Nothing claimed yet; and a read-only checkout creates nothing.
            return Ok(std::collections::BTreeMap::new());
        }
        claims::live(self.claim_leases()?)
    }

    fn key_location(&self, key: &str) -> PathBuf {
        self.layout
            .coordination_path()
            .join(KEYS)
            .join(Self::key_file(key))
    }
}
