//! The bytes every slot is made of: the padding, the free slot, the header and the checksum
//! chain. Reader and writer both build on these, so that what one writes is what the other
//! accepts (the header is checked by rendering it again and comparing byte for byte).

use super::SLOT_LEN;

/// The version-2 header's text before its slot count.
pub(super) const HEADER_V2: &str = "# idreserve counters v2 slots=";
/// The byte a free slot is filled with.
pub(super) const FREE: u8 = b'.';

/// The checksum of a version-2 record `body` after the checksum `chain`: the CRC-32 of
/// `chain` in hex, a space, and `body`.
pub(super) fn chained(chain: u32, body: &str) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(format!("{chain:08x} ").as_bytes());
    hasher.update(body.as_bytes());
    hasher.finalize()
}

/// `text` followed by `fill` up to 63 bytes, and a newline. `text` must be shorter.
pub(super) fn padded(text: &[u8], fill: u8) -> [u8; SLOT_LEN] {
    let mut slot = [fill; SLOT_LEN];
    slot[..text.len()].copy_from_slice(text);
    slot[SLOT_LEN - 1] = b'\n';
    slot
}

/// The header slot of a log with `slots` slots after it, and its checksum (the first
/// record's chain).
pub(super) fn header(slots: usize) -> ([u8; SLOT_LEN], u32) {
    let body = format!("{HEADER_V2}{slots}");
    let crc = crc32fast::hash(body.as_bytes());
    (
        padded(format!("{body} crc32={crc:08x}").as_bytes(), b' '),
        crc,
    )
}
