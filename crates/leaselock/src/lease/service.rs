//! [`LeaseService`]: the lease operations a caller needs, whichever store holds the leases
//! (the files of a root, [`super::Leases`], or a coordination server, `PgLeases`).

use std::time::Duration;

use super::Listing;
use super::error::LeaseError;
use super::options::LeaseRequest;
use super::protocol::{Grant, Released, SweepReport};
use super::record::Lease;

/// Leases, wherever they are kept. Every method is the one of [`super::Leases`] by the same
/// name, with the same rules.
pub trait LeaseService: std::fmt::Debug + Send + Sync {
    /// See [`super::Leases::acquire`].
    fn acquire(&self, req: &LeaseRequest) -> Result<Grant, LeaseError>;
    /// See [`super::Leases::renew_id`].
    fn renew_id(&self, id: &str, holder: &str, ttl: Option<Duration>) -> Result<Lease, LeaseError>;
    /// See [`super::Leases::release_id`].
    fn release_id(&self, id: &str, holder: &str) -> Result<Released, LeaseError>;
    /// See [`super::Leases::force_release`].
    fn force_release(&self, id: &str) -> Result<Released, LeaseError>;
    /// See [`super::Leases::list`].
    fn list(&self) -> Result<Listing, LeaseError>;
    /// See [`super::Leases::sweep`].
    fn sweep(&self) -> Result<SweepReport, LeaseError>;
    /// See [`super::Leases::sweep_forced`].
    fn sweep_forced(&self) -> Result<SweepReport, LeaseError>;
    /// See [`super::Leases::verify`].
    fn verify(&self, lease: &Lease) -> Result<Lease, LeaseError>;
    /// Where the leases are kept, for messages.
    fn location(&self) -> String;
    /// The root the leased paths are relative to, absolute.
    fn root(&self) -> &std::path::Path;
}

impl LeaseService for super::Leases {
    fn acquire(&self, req: &LeaseRequest) -> Result<Grant, LeaseError> {
        super::Leases::acquire(self, req)
    }
    fn renew_id(&self, id: &str, holder: &str, ttl: Option<Duration>) -> Result<Lease, LeaseError> {
        super::Leases::renew_id(self, id, holder, ttl)
    }
    fn release_id(&self, id: &str, holder: &str) -> Result<Released, LeaseError> {
        super::Leases::release_id(self, id, holder)
    }
    fn force_release(&self, id: &str) -> Result<Released, LeaseError> {
        super::Leases::force_release(self, id)
    }
    fn list(&self) -> Result<Listing, LeaseError> {
        super::Leases::list(self)
    }
    fn sweep(&self) -> Result<SweepReport, LeaseError> {
        super::Leases::sweep(self)
    }
    fn sweep_forced(&self) -> Result<SweepReport, LeaseError> {
        super::Leases::sweep_forced(self)
    }
    fn verify(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        super::Leases::verify(self, lease)
    }
    fn location(&self) -> String {
        self.leases_dir().display().to_string()
    }
    fn root(&self) -> &std::path::Path {
        super::Leases::root(self)
    }
}
