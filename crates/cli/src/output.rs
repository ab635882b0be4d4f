//! Writing results: JSON documents or concise human text on stdout, messages on stderr.
//!
//! # Terminal safety
//!
//! Titles, ids, agent names, descriptions, paths and error messages can come from files a
//! stranger committed, so human text never reaches a terminal raw: every character that could
//! move the cursor, change colours or the window title, ring the bell or reorder the text
//! (controls, bidi overrides and isolates, line and paragraph separators) is shown as a visible
//! escape such as `\u{1b}`. The rule is [`is_unsafe`]; [`escape`] applies it to one-line fields
//! (newlines and tabs escaped too, so a field cannot forge extra lines or table cells) and
//! [`escape_text`] to deliberately multi-line text (newlines and tabs kept). Everything a human
//! closure of [`Output::show`] writes, every [`Output::note`] and every error message
//! ([`eprint_escaped`]) passes through [`escape_text`] as a last line of defence. JSON output
//! is exact: `serde_json` escapes what JSON requires.
//!
//! # Paths in JSON
//!
//! JSON strings are UTF-8, so a path that is not cannot be printed exactly. A path known before
//! a command changes anything (an argument, the registry directory) is checked with
//! [`Output::check_json_path`], which refuses it (exit 3) before the change; a path found while
//! the command runs (a removed temp file, a damaged lease file) is printed by [`path_json`]
//! with U+FFFD in place of the bytes that are not UTF-8, so an acknowledged change is never
//! turned into an error.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::Path;

use serde::Serialize;

/// How results are shown.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// One JSON document per command on stdout.
    pub json: bool,
    /// No human text except errors.
    pub quiet: bool,
}

impl Output {
    /// Prints `value` as one JSON document (with `--json`) or runs `human` to print text. The
    /// JSON document is built completely before the first byte is written, so a failure leaves
    /// no half document on stdout; human text is escaped ([`escape_text`]).
    pub fn show<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let bytes = if self.json {
            let mut doc = serde_json::to_vec(value).map_err(io::Error::other)?;
            doc.push(b'\n');
            doc
        } else if self.quiet {
            return Ok(());
        } else {
            let mut text = Vec::new();
            human(&mut text)?;
            escape_text(&String::from_utf8_lossy(&text))
                .into_owned()
                .into_bytes()
        };
        let mut out = io::stdout().lock();
        ignore_closed_pipe(out.write_all(&bytes).and_then(|()| out.flush()))
    }

    /// Like [`Output::show`], for the answer of a command that has already made its change
    /// durable: a failure to print it (a full disk behind a redirected stdout, an I/O error)
    /// cannot undo the change, so it is a warning on stderr and the command still exits 0 —
    /// exit 0 means the change is durable and visible, a failure means nothing changed.
    /// (`--idempotency-key` lets a caller that lost the answer get it again.)
    pub fn answer<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        if let Err(e) = self.show(value, human) {
            eprint_escaped(&format!(
                "warning: the change is saved, but its answer could not be printed ({e}); \
                 `gapreg list`, `show` or `lease list` shows it"
            ));
        }
        Ok(())
    }

    /// A note for people on stderr (not with `--quiet` or `--json`), escaped.
    pub fn note(&self, message: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            eprint_escaped(&format!("gapreg: {message}"));
        }
    }

    /// With `--json`, refuses (exit 3) a path that JSON cannot carry exactly (not UTF-8). Call
    /// it before the command changes anything.
    pub fn check_json_path(&self, what: &str, path: &Path) -> crate::Result {
        if self.json && path.to_str().is_none() {
            return Err(crate::exit::invalid(format!(
                "{what} {} is not valid UTF-8, so --json cannot print it exactly; nothing was \
                 changed: rename it, or run without --json",
                escape(&path.display().to_string())
            )));
        }
        Ok(())
    }
}

/// A path as a JSON string: exact when it is UTF-8, otherwise with U+FFFD in place of the
/// bytes that are not (see the module docs).
pub fn path_json(path: &Path) -> serde_json::Value {
    serde_json::Value::String(path.to_string_lossy().into_owned())
}

/// Paths as a JSON array of [`path_json`] strings.
pub fn paths_json<P: AsRef<Path>>(paths: &[P]) -> serde_json::Value {
    paths.iter().map(|p| path_json(p.as_ref())).collect()
}

/// Prints `message` and a newline on stderr, escaped ([`escape_text`]). A failure to write is
/// ignored: there is nowhere left to report it (and `eprintln!` would panic).
pub fn eprint_escaped(message: &str) {
    let _ = writeln!(io::stderr().lock(), "{}", escape_text(message));
}

/// Prints `text` and a newline on stdout, escaped ([`escape_text`]); a closed pipe is not an
/// error (unlike `println!`, which panics).
pub fn print_line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    ignore_closed_pipe(writeln!(out, "{}", escape_text(text)).and_then(|()| out.flush()))
}

/// Writes `bytes` to stdout as they are (generated text, not data from disk); a closed pipe
/// is not an error.
pub fn print_raw(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    ignore_closed_pipe(out.write_all(bytes).and_then(|()| out.flush()))
}

/// Whether `c` must not reach a terminal raw: control characters (C0, DEL, C1), the bidi
/// controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) and the line and paragraph
/// separators U+2028 and U+2029. With `multiline`, newline and tab are allowed.
pub fn is_unsafe(c: char, multiline: bool) -> bool {
    match c {
        '\n' | '\t' => !multiline,
        '\u{061C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{2028}'
        | '\u{2029}' => true,
        c => c.is_control(),
    }
}

fn escape_with(text: &str, multiline: bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c, multiline)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c, multiline) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A one-line field for a terminal: every unsafe character ([`is_unsafe`]), newline and tab
/// included, shown as `\u{…}`.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_with(text, false)
}

/// Multi-line text for a terminal: like [`escape`] but newlines and tabs are kept.
pub fn escape_text(text: &str) -> Cow<'_, str> {
    escape_with(text, true)
}

/// A path for a terminal: [`Path::display`], escaped as one line.
pub fn escape_path(path: &Path) -> String {
    escape(&path.display().to_string()).into_owned()
}

/// A reader that went away (`gapreg list | head`) is not an error.
pub fn ignore_closed_pipe(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Whether stderr may show colour and progress: a terminal, not CI, `TERM` not dumb, no
/// `NO_COLOR`.
pub fn fancy_stderr() -> bool {
    io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var_os("CI").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Renders rows as a left-aligned text table with a header; every cell is escaped as one line
/// ([`escape`]) before the columns are measured.
pub fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| escape(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: Vec<&str>| -> io::Result<()> {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                write!(out, "{cell}")?;
            } else {
                write!(out, "{cell:<w$}  ")?;
            }
        }
        writeln!(out)
    };
    line(out, header.to_vec())?;
    for row in &rows {
        line(out, row.iter().map(|c| c.as_ref()).collect())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_separators_are_escaped_visibly() {
        let hostile = "a\x1b[2J\x1b]0;pwned\x07b\u{202e}c\u{2066}d\u{9b}e\x7ff\rg\u{2028}h";
        let escaped = escape(hostile);
        assert_eq!(
            escaped,
            "a\\u{1b}[2J\\u{1b}]0;pwned\\u{7}b\\u{202e}c\\u{2066}d\\u{9b}e\\u{7f}f\\u{d}g\\u{2028}h"
        );
        assert!(!escaped.chars().any(|c| is_unsafe(c, false)));
        assert_eq!(escape_text(hostile), escaped, "no newline or tab to keep");
    }

    #[test]
    fn newlines_and_tabs_are_kept_only_in_multiline_text() {
        assert_eq!(escape("one\ntwo\tx"), "one\\u{a}two\\u{9}x");
        assert_eq!(escape_text("one\ntwo\tx\r\n"), "one\ntwo\tx\\u{d}\n");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["GAP-OP-1", "Grüße, 日本語, emoji 👩‍💻", "C:\\path\\x", ""] {
            assert!(
                matches!(escape(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }

    #[test]
    fn table_cells_are_escaped_and_aligned() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["x\x1b".to_owned(), "y".to_owned()],
            vec!["long\ncell".to_owned(), "z".to_owned()],
        ];
        table(&mut out, &["A", "B"], &rows).expect("table");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "A              B\nx\\u{1b}        y\nlong\\u{a}cell  z\n"
        );
    }
}
