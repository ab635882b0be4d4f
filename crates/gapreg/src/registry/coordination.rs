//! The file coordination store: the id counters and the registry order in idreserve's store
//! (`ids/`), and the idempotency records in `keys/`. Never tracked by git.

use std::path::PathBuf;

use idreserve::Store;

use crate::error::Result;
use crate::layout::{CLAIMS, KEYS, Layout, MAX_MANIFEST_BYTES};
use crate::store::{Claim, Coordination, KeyRecord, claimed_by};
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

/// A claim without a TTL: held until released (leaselock needs a TTL; this one outlives
/// any agent).
const UNTIL_RELEASED: std::time::Duration = std::time::Duration::from_secs(50 * 365 * 86_400);

/// A lease holder's name for agent `agent`: leaselock refuses control characters, which an
/// agent name may hold, so they (and `%`) are written `%<hex>;`.
fn holder_of(agent: &str) -> String {
    let mut out = String::with_capacity(agent.len());
    for c in agent.chars() {
        if c.is_control() || c == '%' {
            out.push_str(&format!("%{:x};", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The agent whose lease holder name is `holder` (the inverse of [`holder_of`]).
fn agent_of(holder: &str) -> String {
    let mut out = String::with_capacity(holder.len());
    let mut rest = holder;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        let tail = &rest[p + 1..];
        match tail.find(';').and_then(|e| {
            let c = u32::from_str_radix(&tail[..e], 16)
                .ok()
                .and_then(char::from_u32)?;
            Some((c, e))
        }) {
            Some((c, e)) => {
                out.push(c);
                rest = &tail[e + 1..];
            }
            None => {
                out.push('%');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

fn timestamp(t: std::time::SystemTime) -> Timestamp {
    Timestamp::from_unix(
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
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
        use leaselock::lease::{Binding, LeaseRequest};
        let leases = self.claim_leases()?;
        let holder = holder_of(agent);
        let agent = holder.as_str();
        let ttl = expires.map_or(UNTIL_RELEASED, |e| {
            std::time::Duration::from_secs(e.unix().saturating_sub(now.unix()).max(1))
        });
        let listing = leases.list()?;
        if let Some((lease, _)) = listing
            .leases
            .iter()
            .find(|(l, st)| l.files == [id] && l.holder == agent && st.is_live())
        {
            leases.renew_id(&lease.id, agent, Some(ttl))?;
            return Ok(());
        }
        let request = LeaseRequest::exclusive(agent)
            .file(id)
            .ttl(ttl)
            .task(format!("claim of {id}"))
            .bind(Binding::TtlOnly);
        match leases.acquire(&request) {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => {
                let holder = e
                    .conflicts()
                    .iter()
                    .find_map(|c| c.lease.as_ref())
                    .map(|l| Claim {
                        agent: agent_of(&l.holder),
                        expires_at: (l.expires_at < std::time::UNIX_EPOCH + UNTIL_RELEASED / 2)
                            .then(|| timestamp(l.expires_at)),
                    });
                match holder {
                    Some(holder) => Err(claimed_by(id, &holder)),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn release_claim(&self, id: &str, agent: &str) -> Result<()> {
        if !self.has_claims() {
            return Ok(());
        }
        let leases = self.claim_leases()?;
        let holder = holder_of(agent);
        let agent = holder.as_str();
        for (lease, _) in leases.list()?.leases {
            if lease.files == [id] && lease.holder == agent {
                leases.release_id(&lease.id, agent)?;
            }
        }
        Ok(())
    }

    fn live_claims(&self, _now: Timestamp) -> Result<std::collections::BTreeMap<String, Claim>> {
        // Judged on leaselock's clock (this host's).
        if !self.has_claims() {
            // Nothing claimed yet; and a read-only checkout creates nothing.
            return Ok(std::collections::BTreeMap::new());
        }
        let leases = self.claim_leases()?;
        let far = std::time::UNIX_EPOCH + UNTIL_RELEASED / 2;
        Ok(leases
            .list()?
            .leases
            .into_iter()
            .filter(|(_, st)| st.blocks_grants())
            .filter_map(|(l, _)| {
                let id = l.files.first()?.clone();
                Some((
                    id,
                    Claim {
                        agent: agent_of(&l.holder),
                        expires_at: (l.expires_at < far).then(|| timestamp(l.expires_at)),
                    },
                ))
            })
            .collect())
    }

    fn key_location(&self, key: &str) -> PathBuf {
        self.layout
            .coordination_path()
            .join(KEYS)
            .join(Self::key_file(key))
    }
}

#[cfg(test)]
mod tests {
    use super::{agent_of, holder_of};

    #[test]
    fn agent_names_round_trip_through_lease_holders() {
        for agent in ["CC-3", "a%b", "x\u{1b}[2J", "%41;", "\u{9f}é%"] {
            let holder = holder_of(agent);
            assert!(!holder.chars().any(char::is_control), "{holder:?}");
            assert_eq!(agent_of(&holder), agent);
        }
    }
}
