//! Properties of the checksummed format: every byte string round-trips; every truncation and
//! every single-bit flip of a checksummed file is detected.

use atomic_file::checksum::{decode, encode};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // Fixed case counts keep CI time predictable; shrinking stays on for readable failures.
    ProptestConfig::with_cases(256)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let file = encode(&payload);
        prop_assert_eq!(decode(&file), Ok(&payload[..]));
    }

    #[test]
    fn every_truncation_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let file = encode(&payload);
        for cut in 0..file.len() {
            prop_assert!(decode(&file[..cut]).is_err(), "truncation to {} bytes accepted", cut);
        }
    }

    #[test]
    fn every_bit_flip_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut file = encode(&payload);
        for bit in 0..file.len() * 8 {
            file[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&file).is_err(), "flip of bit {} accepted", bit);
            file[bit / 8] ^= 1 << (bit % 8);
        }
    }

    #[test]
    fn appended_bytes_are_detected(
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        extra in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let mut file = encode(&payload);
        file.extend_from_slice(&extra);
        prop_assert!(decode(&file).is_err());
    }

    #[test]
    fn text_payload_stays_readable(text in "[ -~\n]{0,200}") {
        let file = encode(text.as_bytes());
        let shown = String::from_utf8(file).expect("text stays text");
        let (header, body) = shown.split_once('\n').expect("header line");
        prop_assert!(header.starts_with("# atomic-file v1 len="));
        prop_assert_eq!(body, text);
    }
}
