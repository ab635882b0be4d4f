//! Leases: see the crate docs. (Being written.)
