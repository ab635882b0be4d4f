//! Hostile text from the registry never reaches a terminal raw: titles, names, descriptions,
//! objectives, ids and error messages holding escape sequences, bells or bidi overrides are
//! shown as visible `\u{…}` escapes in every human output, while `--json` keeps them exact.

use crate::util::{Repo, Run};

/// Clears the screen, sets the window title, rings the bell.
const HOSTILE: &str = "\x1b[2J\x1b]0;pwned\x07";

/// What a terminal must never receive raw from data: controls other than newline and tab
/// (C0, DEL, C1), bidi controls, line and paragraph separators.
fn unsafe_chars(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
        })
        .collect()
}

/// Asserts that neither stdout nor stderr of `run` holds an unsafe character (checked on the
/// raw bytes too: no ESC, no BEL, no C1 control), and returns stdout.
fn safe(what: &str, run: &Run) -> String {
    for (stream, bytes) in [("stdout", &run.0.stdout), ("stderr", &run.0.stderr)] {
        assert!(
            !bytes.iter().any(|&b| b == 0x1b || b == 0x07),
            "{what}: raw ESC or BEL on {stream}: {:?}",
            String::from_utf8_lossy(bytes)
        );
        let text = String::from_utf8_lossy(bytes);
        let bad = unsafe_chars(&text);
        assert!(bad.is_empty(), "{what}: {bad:?} on {stream}: {text:?}");
    }
    run.stdout()
}

/// A registry full of hostile text: a loop objective, a claimed gap (title with a right-to-left
/// override, description, tag, agent name) and a ready gap.
fn hostile_repo() -> Repo {
    let repo = Repo::new();
    repo.run(&[
        "loop",
        "new",
        "LOOP-X",
        "--objective",
        &format!("obj{HOSTILE}"),
    ])
    .ok();
    let title = format!("T{HOSTILE}\u{202e}evil");
    let description = format!("line one\n{HOSTILE}line two\r\u{9b}31m");
    repo.run(&[
        "file",
        "--prefix",
        "OP",
        "--title",
        &title,
        "--description",
        &description,
        "--tag",
        &format!("t{HOSTILE}"),
        "--parent-loop",
        "LOOP-X",
    ])
    .ok();
    repo.run(&[
        "file",
        "--prefix",
        "OP",
        "--title",
        &format!("ready{HOSTILE}\r| forged |\trow"),
    ])
    .ok();
    let claimed = repo.run(&["claim", "GAP-OP-1", "--agent", &format!("CC{HOSTILE}")]);
    assert!(safe("claim", &claimed).contains("\\u{1b}[2J"));
    repo
}

#[test]
fn human_output_escapes_terminal_sequences_from_registry_data() {
    let repo = hostile_repo();

    let list = safe("list", &repo.run(&["list"]));
    assert!(
        list.contains("T\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{202e}evil"),
        "escaped visibly: {list}"
    );
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(
        list.contains("ready\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}| forged |\\u{9}row"),
        "a carriage return or tab in a title forges no row or cell: {list}"
    );

    let show = safe("show", &repo.run(&["show", "GAP-OP-1"]));
    assert!(
        show.contains("claimed by: CC\\u{1b}[2J") && show.contains("tags:       t\\u{1b}"),
        "{show}"
    );
    assert!(
        show.contains("line one\n\\u{1b}[2J\\u{1b}]0;pwned\\u{7}line two\\u{d}\\u{9b}31m"),
        "the description keeps its newline, nothing else: {show}"
    );

    let ready = safe("ready", &repo.run(&["ready"]));
    assert!(
        ready.contains("GAP-OP-2") && ready.contains("ready\\u{1b}"),
        "{ready}"
    );

    let render = safe("render", &repo.run(&["render"]));
    assert!(
        render.contains("T\\u{1b}[2J") && render.contains("obj\\u{1b}"),
        "{render}"
    );
    safe("render --out", &repo.run(&["render", "--out", "GAPS.md"]));
    let file = std::fs::read_to_string(repo.path().join("GAPS.md")).expect("GAPS.md");
    assert!(
        unsafe_chars(&file).is_empty(),
        "the rendered file is escaped too: {file:?}"
    );
    assert_eq!(file, render, "--out writes what stdout shows");

    for args in [
        &["loop", "list"][..],
        &["loop", "show", "LOOP-X"],
        &["summary"],
        &["doctor"],
        &["unclaim", "GAP-OP-1", "--agent", &format!("CC{HOSTILE}")],
    ] {
        let run = repo.run(args);
        assert_eq!(run.code(), 0, "{args:?}: {}", run.stderr());
        safe(&format!("{args:?}"), &run);
    }
    let loops = safe("loop list", &repo.run(&["loop", "list"]));
    assert!(loops.contains("obj\\u{1b}[2J"), "{loops}");
}

#[test]
fn error_messages_escape_terminal_sequences() {
    let repo = hostile_repo();
    // Named by the library in a conflict: the hostile agent holding the claim.
    let conflict = repo.run(&["claim", "GAP-OP-1", "--agent", "CC-2"]);
    conflict.fails(5, &["CC\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"]);
    safe("claim conflict", &conflict);
    // An id echoed back in an error.
    let unknown = repo.run(&["show", &format!("GAP-OP-1{HOSTILE}")]);
    assert_eq!(unknown.code(), 3, "{}", unknown.stderr());
    safe("show unknown", &unknown);
    let status = repo.run(&["status", "GAP-OP-2", &format!("done{HOSTILE}")]);
    status.fails(3, &["done\\u{1b}"]);
    safe("status", &status);
    // A damaged gap file whose text is hostile: reported, escaped.
    std::fs::write(
        repo.registry().join("gaps/GAP-OP-2.yaml"),
        format!("id: GAP-OP-2\ntitle: [{HOSTILE}\n"),
    )
    .expect("damage");
    for args in [&["show", "GAP-OP-2"][..], &["doctor"], &["list"]] {
        let run = repo.run(args);
        assert_ne!(run.code(), 101, "{args:?} panicked: {}", run.stderr());
        safe(&format!("damaged, {args:?}"), &run);
    }
}

#[test]
fn json_output_keeps_hostile_text_exact() {
    let repo = hostile_repo();
    let gap = repo.run(&["--json", "show", "GAP-OP-1"]).json();
    assert_eq!(gap["title"], format!("T{HOSTILE}\u{202e}evil"));
    assert_eq!(gap["claimed_by"], format!("CC{HOSTILE}"));
    assert_eq!(
        gap["description"],
        format!("line one\n{HOSTILE}line two\r\u{9b}31m")
    );
    let render = repo.run(&["--json", "render"]).json();
    assert!(
        render["markdown"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("T{HOSTILE}"))),
        "{render}"
    );
}
