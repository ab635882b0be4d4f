//! Writing results: JSON documents or concise human text on stdout, messages on stderr.

use std::io::{self, IsTerminal, Write};

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
    /// Prints `value` as one JSON document (with `--json`) or runs `human` to print text.
    pub fn show<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut out = io::stdout().lock();
        let written = if self.json {
            serde_json::to_writer(&mut out, value)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(out))
        } else if self.quiet {
            Ok(())
        } else {
            human(&mut out)
        };
        ignore_closed_pipe(written.and_then(|()| out.flush()))
    }

    /// A note for people on stderr (not with `--quiet` or `--json`).
    pub fn note(&self, message: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            eprintln!("gapreg: {message}");
        }
    }
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

/// Renders rows as a left-aligned text table with a header.
pub fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
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
    for row in rows {
        line(out, row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}
