//! `gapreg::parse_loop` on arbitrary UTF-8: the reader of loop files (markdown with YAML front
//! matter, written by hand, parsed as strict YAML first and as lenient `key: value` lines when
//! that fails).
//!
//! Asserts, beyond "never panics":
//! - a parsed loop has a valid id (1-128 ASCII letters, digits, `-`, `_`, `.`, not starting
//!   with `.`) and an empty `path`;
//! - one leading byte-order mark is ignored: `parse_loop("\u{feff}" + text)` gives the same
//!   result as `parse_loop(text)` when `text` does not already start with one;
//! - the body after the closing `---` does not matter: appending a line to a parsed file gives
//!   the same loop.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn valid_loop_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = gapreg::parse_loop(text);
    if let Ok(l) = &parsed {
        assert!(
            valid_loop_id(&l.id),
            "parse_loop accepted loop id {:?}",
            l.id
        );
        assert!(l.path.as_os_str().is_empty(), "path set: {:?}", l.path);
        let longer = format!("{text}\n# appended body line\n");
        assert_eq!(
            gapreg::parse_loop(&longer).as_ref(),
            Ok(l),
            "appending a body line changed the loop"
        );
    }
    if !text.starts_with('\u{feff}') {
        let with_bom = format!("\u{feff}{text}");
        assert_eq!(
            gapreg::parse_loop(&with_bom).is_ok(),
            parsed.is_ok(),
            "a leading BOM changed whether the loop parses"
        );
        if let (Ok(a), Ok(b)) = (&parsed, gapreg::parse_loop(&with_bom)) {
            assert_eq!(a, &b, "a leading BOM changed the loop");
        }
    }
});
