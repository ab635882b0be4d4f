//! Choosing where a registry's coordination state lives: [`Registry::switch_coordination`]
//! carries the counters over (never lowering one) and then records the choice in the
//! tracked config; [`Registry::set_coordination_url`] records this clone's server address.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::layout::CONFIG;

use super::config::{Backend, new_namespace};
use super::{Registry, shared};

impl Registry {
    /// Moves the coordination state to `to`: under the registry lock, every counter of the
    /// current store and every id and position the documents hold is raised (never lowered)
    /// in the new store, and only then is `coordination` (and, for `postgres`, a new
    /// `namespace` if there is none) written to the tracked config. Commit that change so
    /// every clone follows. Live claims and leases are not carried over: release them first.
    ///
    /// # Errors
    ///
    /// The stores' errors; nothing is written to the config unless every counter was raised.
    pub fn switch_coordination(&self, to: Backend) -> Result<Registry> {
        if self.config.coordination == to {
            return Registry::open(self.dir());
        }
        let _guard = self.lock()?;
        let mut counters: BTreeMap<String, u64> = self.ids()?.counters()?;
        for (prefix, n) in shared::highest_in_documents(&self.files)? {
            let c = counters.entry(prefix).or_default();
            *c = (*c).max(n);
        }
        let mut config = self.config.clone();
        config.coordination = to;
        if to == Backend::Postgres && config.namespace.is_none() {
            config.namespace = Some(new_namespace()?);
        }
        let target = Registry::with_config(self.dir(), config.clone())?
            .with_lock_timeout(self.lock_timeout());
        let ids = target.ids()?;
        for (prefix, n) in &counters {
            ids.raise(prefix, *n)?;
        }
        let yaml = atomic_file::Format::Yaml.encode(self.dir().join(CONFIG), &config)?;
        self.layout()
            .root()?
            .write(CONFIG, &yaml, &atomic_file::Options::new())?;
        Registry::open(self.dir())
    }

    /// Records `url` as this clone's coordination server (`coordination.url` in the clone's
    /// coordination directory, never tracked), for `coordination: postgres`. The environment's
    /// `GAPREG_COORDINATION_URL` still wins. Returns the file written.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] for an unusable address or one holding a password.
    #[cfg(feature = "postgres")]
    pub fn set_coordination_url(&self, url: &str) -> Result<PathBuf> {
        super::server::set_url(self.layout(), url)
    }

    /// The coordination server's address (without a password) and whether it came from the
    /// environment; `None` with files.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Invalid`] when the registry needs a server and none is set.
    #[cfg(feature = "postgres")]
    pub fn coordination_url(&self) -> Result<Option<(String, bool)>> {
        if self.config.coordination != Backend::Postgres {
            return Ok(None);
        }
        let (url, source) = super::server::resolve_url(self.layout())?;
        Ok(Some((
            leaselock::server::redact(&url),
            source == super::server::UrlSource::Environment,
        )))
    }
}

#[cfg(not(feature = "postgres"))]
#[allow(dead_code)]
fn unused(_: PathBuf) {}
