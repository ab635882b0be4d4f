//! The checksummed file format.
//!
//! A checksummed file is one header line followed by the payload, byte for byte:
//!
//! ```text
//! # atomic-file v1 len=<payload length in decimal> crc32=<CRC-32 of the payload, 8 lowercase hex digits>
//! <payload>
//! ```
//!
//! For example, the payload `hello\n` is stored as
//!
//! ```text
//! # atomic-file v1 len=6 crc32=363a3020
//! hello
//! ```
//!
//! Why this shape:
//! - The checksum lives in the same file and reaches the disk through the same rename as the
//!   payload, so a crash can never leave the two out of step (a sidecar `.sha256` file can).
//! - A person can still read a text payload: `tail -n +2 FILE` prints it unchanged. The header
//!   starts with `#`, so a checksummed YAML file is still valid YAML for other tools.
//! - The length is in the *header*, so every truncation is detected, even one that ends exactly
//!   where an embedded checksummed document ends (a trailer could not tell that prefix apart).
//! - The header is canonical: a reader re-renders it from the parsed numbers and compares bytes,
//!   so `len=06`, `CRC32=`, upper-case hex or extra spaces are all rejected.
//! - CRC-32 (IEEE) detects every single-bit flip and every burst of up to 32 bits in the
//!   payload; a flip in the header breaks its canonical form, its length or its checksum. It is
//!   a check against accidents (torn writes, bit rot, hand edits), not against an attacker.

use std::fmt;

const MAGIC: &[u8] = b"# atomic-file ";
const V1: &[u8] = b"# atomic-file v1 len=";
const CRC_FIELD: &[u8] = b" crc32=";
/// The longest v1 header: prefix, 20 length digits, checksum field, 8 hex digits, newline.
const MAX_HEADER: usize = V1.len() + 20 + CRC_FIELD.len() + 8 + 1;

/// Why a checksummed file was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The file does not start with the `# atomic-file` header (it is empty, or it was written
    /// without a checksum).
    MissingHeader,
    /// The header is cut off before its end of line.
    TruncatedHeader,
    /// The header names a format version this crate does not read.
    UnsupportedVersion,
    /// The header line is not in its canonical form.
    MalformedHeader,
    /// The payload is shorter or longer than the header says.
    LengthMismatch {
        /// Payload bytes the header announces.
        expected: u64,
        /// Payload bytes the file holds.
        actual: u64,
    },
    /// The payload's CRC-32 differs from the header's.
    ChecksumMismatch {
        /// The checksum recorded in the header.
        expected: u32,
        /// The checksum of the bytes found.
        actual: u32,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::MissingHeader => f.write_str(
                "it does not start with an `# atomic-file v1` checksum header (empty, or not \
                 written by the checksummed writer)",
            ),
            Corruption::TruncatedHeader => f.write_str("its checksum header is cut off"),
            Corruption::UnsupportedVersion => {
                f.write_str("its checksum header has a format version this reader does not know")
            }
            Corruption::MalformedHeader => f.write_str("its checksum header is malformed"),
            Corruption::LengthMismatch { expected, actual } if actual < expected => write!(
                f,
                "it is truncated: the header announces {expected} payload bytes but only {actual} are present"
            ),
            Corruption::LengthMismatch { expected, actual } => write!(
                f,
                "the header announces {expected} payload bytes but {actual} are present"
            ),
            Corruption::ChecksumMismatch { expected, actual } => write!(
                f,
                "checksum mismatch: the header records crc32={expected:08x} but the payload has crc32={actual:08x}"
            ),
        }
    }
}

impl std::error::Error for Corruption {}

/// Renders the header line for `payload`.
pub fn header(payload: &[u8]) -> Vec<u8> {
    render_header(payload.len() as u64, crc32fast::hash(payload))
}

fn render_header(len: u64, crc: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(MAX_HEADER);
    h.extend_from_slice(V1);
    h.extend_from_slice(len.to_string().as_bytes());
    h.extend_from_slice(CRC_FIELD);
    h.extend_from_slice(format!("{crc:08x}").as_bytes());
    h.push(b'\n');
    h
}

/// Encodes `payload` in the checksummed format (header line, then the payload).
///
/// ```
/// let file = atomic_file::checksum::encode(b"hello\n");
/// assert_eq!(file, b"# atomic-file v1 len=6 crc32=363a3020\nhello\n");
/// assert_eq!(atomic_file::checksum::decode(&file)?, b"hello\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = header(payload);
    out.extend_from_slice(payload);
    out
}

/// Checks a checksummed file's bytes and returns its payload.
///
/// Never panics; every malformed input is a [`Corruption`].
///
/// ```
/// use atomic_file::checksum::{decode, encode, Corruption};
/// let mut file = encode(b"{\"next\": 20}\n");
/// file.truncate(file.len() - 3);
/// assert!(matches!(decode(&file), Err(Corruption::LengthMismatch { .. })));
/// ```
pub fn decode(data: &[u8]) -> Result<&[u8], Corruption> {
    let window = &data[..data.len().min(MAX_HEADER)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return Err(classify_headless(window, data.len() < MAX_HEADER));
    };
    let line = &window[..nl];
    if !line.starts_with(V1) {
        return Err(classify_headless(line, false));
    }
    let fields = &line[V1.len()..];
    let digits = fields.iter().take_while(|b| b.is_ascii_digit()).count();
    let (len_text, rest) = fields.split_at(digits);
    let Some(crc_text) = rest.strip_prefix(CRC_FIELD) else {
        return Err(Corruption::MalformedHeader);
    };
    let (Some(len), Some(crc)) = (parse_dec(len_text), parse_hex8(crc_text)) else {
        return Err(Corruption::MalformedHeader);
    };
    if render_header(len, crc) != window[..=nl] {
        return Err(Corruption::MalformedHeader);
    }
    let payload = &data[nl + 1..];
    if payload.len() as u64 != len {
        return Err(Corruption::LengthMismatch {
            expected: len,
            actual: payload.len() as u64,
        });
    }
    let actual = crc32fast::hash(payload);
    if actual != crc {
        return Err(Corruption::ChecksumMismatch {
            expected: crc,
            actual,
        });
    }
    Ok(payload)
}

/// Explains a first line that is not a complete v1 header. `ended` is true when the line was
/// cut off by the end of the file (no newline within the longest possible header).
fn classify_headless(line: &[u8], ended: bool) -> Corruption {
    let prefix_of = |full: &[u8]| line.starts_with(full) || full.starts_with(line);
    if line.is_empty() || !prefix_of(MAGIC) {
        Corruption::MissingHeader
    } else if prefix_of(V1) || line.len() < MAGIC.len() {
        if ended {
            Corruption::TruncatedHeader
        } else {
            Corruption::MalformedHeader
        }
    } else if line[MAGIC.len()] == b'v' {
        Corruption::UnsupportedVersion
    } else {
        Corruption::MalformedHeader
    }
}

fn parse_dec(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)?
            .checked_add(u64::from(b.checked_sub(b'0')?))
    })
}

fn parse_hex8(text: &[u8]) -> Option<u32> {
    if text.len() != 8 {
        return None;
    }
    text.iter().try_fold(0u32, |acc, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(acc << 4 | digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_empty_and_text() {
        for payload in [&b""[..], b"x", b"hello\n", b"no newline", b"\n\n"] {
            assert_eq!(decode(&encode(payload)), Ok(payload));
        }
    }

    #[test]
    fn header_is_readable_and_canonical() {
        assert_eq!(encode(b""), b"# atomic-file v1 len=0 crc32=00000000\n");
        let good = encode(b"abc");
        let text = String::from_utf8(good.clone()).expect("ascii");
        for bad in [
            text.replace("len=3", "len=03"),
            text.replace("crc32=", "CRC32="),
            text.replace("len=3 ", "len=3  "),
            text.to_uppercase(),
            text.replace("# atomic", "#atomic"),
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn classifies_damage() {
        assert_eq!(decode(b""), Err(Corruption::MissingHeader));
        assert_eq!(decode(b"{\"a\":1}\n"), Err(Corruption::MissingHeader));
        assert_eq!(decode(b"# atomic-fi"), Err(Corruption::TruncatedHeader));
        assert_eq!(
            decode(b"# atomic-file v1 len=3 cr"),
            Err(Corruption::TruncatedHeader)
        );
        assert_eq!(
            decode(b"# atomic-file v2 len=0 crc32=00000000\n"),
            Err(Corruption::UnsupportedVersion)
        );
        assert_eq!(
            decode(b"# atomic-file v1 len=x crc32=00000000\n"),
            Err(Corruption::MalformedHeader)
        );
        assert_eq!(
            decode(b"# atomic-file v1 len=99999999999999999999 crc32=00000000\n"),
            Err(Corruption::MalformedHeader)
        );
        let mut file = encode(b"abcdef");
        file.truncate(file.len() - 2);
        assert_eq!(
            decode(&file),
            Err(Corruption::LengthMismatch {
                expected: 6,
                actual: 4
            })
        );
        let mut file = encode(b"abcdef");
        let last = file.len() - 1;
        file[last] ^= 1;
        assert!(matches!(
            decode(&file),
            Err(Corruption::ChecksumMismatch { .. })
        ));
        file.push(b'x');
        assert!(matches!(
            decode(&file),
            Err(Corruption::LengthMismatch {
                expected: 6,
                actual: 7
            })
        ));
    }

    #[test]
    fn nested_envelope_prefix_is_not_accepted() {
        let inner = encode(b"payload");
        let outer = encode(&inner);
        for cut in 0..outer.len() {
            assert!(
                decode(&outer[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        assert_eq!(decode(&outer), Ok(&inner[..]));
    }

    #[test]
    fn messages_name_the_problem() {
        let msg = Corruption::LengthMismatch {
            expected: 10,
            actual: 4,
        }
        .to_string();
        assert!(
            msg.contains("truncated") && msg.contains("10") && msg.contains('4'),
            "{msg}"
        );
        let msg = Corruption::ChecksumMismatch {
            expected: 0xdead_beef,
            actual: 1,
        }
        .to_string();
        assert!(
            msg.contains("deadbeef") && msg.contains("00000001"),
            "{msg}"
        );
    }
}
