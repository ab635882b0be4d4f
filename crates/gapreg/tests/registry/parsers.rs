//! The pure parsers a fuzz target calls never panic, and what the registry writes parses back
//! to the same value.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = gapreg::parse_gap_yaml(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = gapreg::parse_loop(&text);
        let _ = gapreg::parse_index_line(&text);
        let _ = text.parse::<gapreg::Timestamp>();
    }

    #[test]
    fn loop_front_matter_never_panics(
        lines in prop::collection::vec("[a-z_]{1,8}: ?[ -~]{0,20}", 0..8),
        body in "[ -~\n]{0,40}",
    ) {
        let text = format!("---\n{}\n---\n{body}", lines.join("\n"));
        let _ = gapreg::parse_loop(&text);
    }

    #[test]
    fn timestamps_round_trip(secs in 0u64..10_000_000_000) {
        let t = gapreg::Timestamp::from_unix(secs);
        prop_assert_eq!(t.to_string().parse::<gapreg::Timestamp>(), Ok(t));
    }

    #[test]
    fn filed_gaps_round_trip(title in "[ -~]{1,60}", desc in "[ -~\n]{0,80}", tag in "[a-z]{1,8}") {
        prop_assume!(!title.trim().is_empty());
        let (_dir, reg) = crate::util::scratch();
        let gap = reg
            .file(gapreg::GapSpec::new(title, gapreg::Severity::Low).description(desc).tag(tag))
            .expect("file");
        let text = std::fs::read(reg.gap_path(&gap.id)).expect("read");
        prop_assert_eq!(gapreg::parse_gap_yaml(&text).expect("parse"), gap.clone());
        let line = std::fs::read_to_string(reg.dir().join("index.log")).expect("index");
        let last = line.lines().last().expect("a line");
        let parsed = gapreg::parse_index_line(last).expect("index line");
        prop_assert_eq!(parsed.gap, Some(gap.summary()));
    }
}
