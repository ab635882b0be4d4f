//! `leaselock::lease::Lease::from_file_bytes` (the check every lease file passes before it is
//! trusted) on arbitrary bytes, and `LeaseStatus`'s serde form.
//!
//! Asserts, beyond "never panics":
//! - a lease file that is accepted re-encodes (`to_file_bytes`) to a file that is accepted as an
//!   equal lease, and re-encoding is a fixed point;
//! - an accepted lease is consistent: its id is the one asked for and starts with its token,
//!   its paths are normalized and relative, `expires_at == renewed_at + ttl`;
//! - for every accepted file, one single-bit flip (anywhere, header or JSON) and one strict
//!   prefix (positions chosen from the input) are refused: damage never yields a lease;
//! - the input wrapped as a checksummed payload goes through the same checks (so JSON decoding
//!   is reached on every input);
//! - a `LeaseStatus` that decodes from the input encodes and decodes back to itself.
#![no_main]

use gapreg::leaselock::lease::{Lease, LeaseStatus, normalize_path};
use libfuzzer_sys::fuzz_target;

fn id_of(data: &[u8]) -> String {
    // The id the bytes claim, if they hold one; the file name must match it.
    let payload = atomic_file::checksum::decode(data).unwrap_or(data);
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "1-fuzz".to_owned())
}

fn check_accepted(id: &str, file: &[u8], lease: &Lease, pick: usize) {
    assert_eq!(lease.id, id);
    assert!(id.starts_with(&format!("{}-", lease.token)), "{id} vs {}", lease.token);
    for p in lease.files.iter().chain(&lease.dirs) {
        let n = normalize_path(std::path::Path::new("/"), p).expect("normalized");
        assert_eq!(&n, p);
    }
    assert_eq!(lease.renewed_at.checked_add(lease.ttl), Some(lease.expires_at));
    let again = lease.to_file_bytes().expect("encode");
    let back = Lease::from_file_bytes(id, &again).expect("re-encoded file accepted");
    assert_eq!(&back, lease);
    assert_eq!(back.to_file_bytes().expect("encode"), again, "fixed point");
    for bytes in [file, &again[..]] {
        let bit = pick % (bytes.len() * 8);
        let mut flipped = bytes.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            Lease::from_file_bytes(id, &flipped).is_err(),
            "a bit flip at {bit} was accepted"
        );
        let cut = pick % bytes.len();
        assert!(
            Lease::from_file_bytes(id, &bytes[..cut]).is_err(),
            "a prefix of {cut} bytes was accepted"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let pick = data.iter().fold(7usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
    // 1. The input as a lease file.
    let id = id_of(data);
    if let Ok(lease) = Lease::from_file_bytes(&id, data) {
        check_accepted(&id, data, &lease, pick);
    }
    // 2. The input as the JSON inside a lease file.
    let wrapped = atomic_file::checksum::encode(data);
    let id = id_of(&wrapped);
    if let Ok(lease) = Lease::from_file_bytes(&id, &wrapped) {
        check_accepted(&id, &wrapped, &lease, pick);
    }
    // 3. A lease status.
    if let Ok(status) = serde_json::from_slice::<LeaseStatus>(data) {
        let text = serde_json::to_string(&status).expect("encode status");
        let back: LeaseStatus = serde_json::from_str(&text).expect("decode status");
        assert_eq!(back, status);
        assert!(!status.to_string().is_empty());
    }
});
