//! The counter log `counters.log`: its on-disk format (version 2), the reader of the first
//! release's format, and the rules that decide what damage is.
//!
//! Public so that tools and the fuzz targets can check a log without a store; a store reads
//! and writes it only through [`Store`](crate::Store).
//!
//! # Format (version 2)
//!
//! The file is a sequence of **slots** of exactly [`SLOT_LEN`] = 64 bytes, each one text line
//! (63 bytes and a `\n`). The first slot is the header, every other slot a record or free:
//!
//! ```text
//! # idreserve counters v2 slots=64 crc32=bfcffa1f      header: 64 slots follow
//! SEC 24 3c3487e1                                      record: SEC is at 24
//! GAP-OP 1091 8c887d3b                                 record: GAP-OP is at 1091
//! ...............................................................
//! ...............................................................
//! ```
//!
//! (Every line is padded with spaces to 63 bytes; a free slot is 63 dots.)
//!
//! - **Header**: `# idreserve counters v2 slots=N crc32=C`, padded with spaces; `C` is the
//!   CRC-32 (8 lower-case hex digits) of the text before ` crc32=`. `N` (1 to [`MAX_SLOTS`])
//!   is the number of slots after the header, so the file is exactly `64 × (N + 1)` bytes.
//!   The header is canonical: it is rendered again from `N` and compared byte for byte.
//! - **Record**: `PREFIX NUMBER CRC`, padded with spaces: the prefix's counter (the highest
//!   number reserved) is `NUMBER` (decimal, no leading zeros), and `CRC` is the CRC-32 of the
//!   previous record's `CRC` (the header's for the first record) in hex, a space, and
//!   `PREFIX NUMBER`. The checksums form a chain, so a record moved, copied over another or
//!   pasted from another log is damage too. A prefix (at most 32 bytes) and a `u64` fit with
//!   room to spare. The last record of a prefix wins.
//! - **Free**: 63 dots. The file is records first, then free slots.
//!
//! A reservation overwrites the first free slot with its record (one 64-byte `pwrite` inside
//! blocks that already exist, so the file's length never changes) and `fdatasync`s it before
//! it returns. When no slot is free, the writer rewrites the whole file atomically
//! ([`atomic_file::dir::Dir::write`]: temp file, `fsync`, rename, directory `fsync`) with one
//! record per prefix and [`FREE_SLOTS`] free slots. A store is created the same way, with no
//! record, so an ID store's log is never empty.
//!
//! # What is damage
//!
//! Anything but the above is damage ([`Damage`], reported as
//! [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt) naming the file), with one exception,
//! the **interrupted write**: the first slot after the records may hold the beginning of a
//! record (bytes of the record alphabet, starting with a letter) followed by dots up to its
//! newline, when the rest of the file is free. A writer that dies or loses power during its
//! `pwrite` can leave that, and so can a reader without the lock that reads while a writer
//! writes. It is ignored (it counts for nothing) and the next writer overwrites it.
//!
//! Why this never hands out an acknowledged ID again: a record is acknowledged (its
//! reservation returns) only after its whole slot was written and `fdatasync` returned, and
//! it is never written over afterwards except by the atomic rewrite, which carries every
//! counter. So an acknowledged record can only disappear through damage, and every single
//! damage of a log is detected: a truncation or an extension changes the length the header
//! announces; zeros (blocks lost in a power cut) are never valid anywhere; a flipped bit
//! breaks a checksum, the canonical header, a padding byte, a dot or a newline (none of
//! these single flips turns a valid file into another valid one, nor a record into an
//! interrupted write, whose dots are at least 3 bits away from a space); garbage has no
//! header; slots swapped, duplicated or spliced in from another log break the checksum
//! chain. The interrupted write cannot hide an acknowledged record: it needs dots where a
//! complete record has its checksum, padding and newline.
//!
//! An append-only log cannot promise this: cutting its last records off at a line boundary
//! leaves a valid, shorter log, and cutting inside the last line looks exactly like a torn
//! append, so the counter would silently step back. Fixed slots keep the length constant.
//!
//! # The first release's format
//!
//! The first release wrote one `PREFIX NUMBER CRC` line per record, with no header and no
//! padding ([`scan_legacy`]). Such a log is read only if **every** line is a valid record (the
//! last may lack its newline); anything else is damage. A writer rewrites it atomically in
//! version 2 under the lock, counters unchanged. An empty legacy log is a first-release store
//! in which nothing was reserved; in version 2 an empty file is damage. Which format a store
//! uses is recorded in its `config.yaml` (`version: 2`), so a version-2 store whose log was
//! emptied or replaced is never mistaken for an unused first-release store.

//!
//! # Modules
//!
//! The format's building blocks (padding, header, checksum chain) are in `slot`, one
//! record's text in `record`, the reader and the rules of damage in `read`, what writers
//! write in `write`. Reader and writer share the building blocks, so a log a writer writes
//! is by construction one the reader accepts (and the tests check every slot of it).

mod read;
mod record;
mod slot;
mod write;

pub use read::{Damage, Format, Scan, scan, scan_legacy};
pub use record::Record;
pub use write::{EncodeError, encode, slot_offset};

/// Bytes per slot, newline included.
pub const SLOT_LEN: usize = 64;
/// Free slots a rewritten (or new) log gets: a writer rewrites the log once per this many
/// records.
pub const FREE_SLOTS: usize = 64;
/// Most slots a log may have after its header (so a log is at most about 1 MiB, and a reader
/// refuses anything longer before reading it).
pub const MAX_SLOTS: usize = 16_384;
/// Most distinct prefixes a store holds: a rewritten log keeps [`FREE_SLOTS`] free.
pub const MAX_PREFIXES: usize = MAX_SLOTS - FREE_SLOTS;
/// The longest valid log, in bytes.
pub const MAX_LEN: u64 = (SLOT_LEN * (MAX_SLOTS + 1)) as u64;
/// What every version-2 (and later) log starts with.
pub const MAGIC: &[u8] = b"# idreserve counters ";

#[cfg(test)]
mod tests;
