//! `atomic_file::checksum::decode` on arbitrary bytes.
//!
//! Asserts, beyond "never panics":
//! - decode is the exact inverse of encode: `decode(data) == Ok(p)` implies `encode(p) == data`
//!   (the header is canonical, so exactly one file encodes each payload);
//! - `decode(encode(data)) == Ok(data)` for the raw input used as a payload, and the envelope
//!   nests (`decode(encode(encode(data))) == Ok(encode(data))`);
//! - every single-bit flip, every strict prefix and every extension of a valid file is rejected
//!   (one flip position and one cut point per input, chosen from the input bytes);
//! - each `Corruption` is consistent with the bytes it describes.
#![no_main]

use atomic_file::checksum::{Corruption, decode, encode, header};
use libfuzzer_sys::fuzz_target;

const MAGIC: &[u8] = b"# atomic-file ";

fuzz_target!(|data: &[u8]| {
    // 1. The input as a (probably damaged) checksummed file.
    match decode(data) {
        Ok(payload) => {
            assert_eq!(
                encode(payload),
                data,
                "decode accepted a non-canonical file"
            );
            assert_valid_file_is_fragile(data, selector(data));
        }
        Err(corruption) => check_corruption(data, &corruption),
    }

    // 2. The input as a payload.
    let file = encode(data);
    assert_eq!(decode(&file), Ok(data), "encode/decode round trip");
    assert_eq!(file.len(), header(data).len() + data.len());
    assert_valid_file_is_fragile(&file, selector(data));
    let nested = encode(&file);
    assert_eq!(decode(&nested), Ok(&file[..]), "nested envelope round trip");
});

/// A number derived from the input, used to pick the flip position and the cut point.
fn selector(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// `file` decodes; damaging it in any of these ways must make it fail to decode.
fn assert_valid_file_is_fragile(file: &[u8], sel: u64) {
    assert!(decode(file).is_ok());
    let bits = file.len() as u64 * 8;
    // A single-bit flip anywhere (header or payload): CRC-32 catches every single-bit error in
    // the payload, and a flip in the header breaks its canonical form, its length or its CRC.
    let bit = sel % bits;
    let mut flipped = file.to_vec();
    flipped[(bit / 8) as usize] ^= 1 << (bit % 8);
    assert!(
        decode(&flipped).is_err(),
        "single-bit flip at bit {bit} was accepted: {:?}",
        String::from_utf8_lossy(&flipped)
    );
    // A strict prefix: the length is in the header, so every truncation is detected.
    let cut = ((sel >> 32) % file.len() as u64) as usize;
    assert!(
        decode(&file[..cut]).is_err(),
        "prefix of {cut} bytes was accepted"
    );
    // An extension.
    let mut longer = file.to_vec();
    longer.push((sel >> 24) as u8);
    assert!(
        matches!(decode(&longer), Err(Corruption::LengthMismatch { .. })),
        "extended file: {:?}",
        decode(&longer)
    );
}

/// The error describes the bytes.
fn check_corruption(data: &[u8], corruption: &Corruption) {
    let message = corruption.to_string();
    assert!(!message.is_empty());
    match *corruption {
        Corruption::MissingHeader => {
            assert!(
                !data.starts_with(MAGIC),
                "MissingHeader for a file starting with the magic"
            );
        }
        Corruption::TruncatedHeader => {
            assert!(
                !data.contains(&b'\n'),
                "TruncatedHeader for a file with a newline"
            );
            assert!(!data.is_empty());
        }
        Corruption::UnsupportedVersion => assert!(data.starts_with(MAGIC)),
        Corruption::MalformedHeader => {}
        Corruption::LengthMismatch { expected, actual } => {
            assert_ne!(expected, actual);
            let nl = data
                .iter()
                .position(|&b| b == b'\n')
                .expect("a header line");
            assert_eq!(actual, (data.len() - nl - 1) as u64);
        }
        Corruption::ChecksumMismatch { expected, actual } => {
            assert_ne!(expected, actual);
            let nl = data
                .iter()
                .position(|&b| b == b'\n')
                .expect("a header line");
            let payload = &data[nl + 1..];
            let rendered = header(payload);
            assert!(
                rendered.ends_with(format!("crc32={actual:08x}\n").as_bytes()),
                "ChecksumMismatch reports the wrong actual CRC"
            );
        }
        _ => {}
    }
}
