//! Markdown tables for the summaries the benches print.

use std::fmt;

/// A markdown table built row by row.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    align: String,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with `header`; the first column is left-aligned, the others right-aligned
    /// (numbers), except those whose header starts with `<` (which is dropped).
    pub fn new(header: &[&str]) -> Table {
        let mut align = String::from("|");
        let header = header
            .iter()
            .enumerate()
            .map(|(i, h)| match h.strip_prefix('<') {
                Some(h) => {
                    align.push_str("---|");
                    h.to_owned()
                }
                None => {
                    align.push_str(if i == 0 { "---|" } else { "---:|" });
                    (*h).to_owned()
                }
            })
            .collect();
        Table {
            header,
            align,
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row<S: ToString>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Table {
        self.rows
            .push(cells.into_iter().map(|c| c.to_string()).collect());
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| {} |", self.header.join(" | "))?;
        writeln!(f, "{}", self.align)?;
        for row in &self.rows {
            writeln!(f, "| {} |", row.join(" | "))?;
        }
        Ok(())
    }
}

/// `0.23×`, or `–` for a ratio that could not be computed.
pub fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
}

/// `met` or `MISSED`.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// The verdict of a ratio against an upper bound (`–` when unknown).
pub fn at_most(r: Option<f64>, target: f64) -> &'static str {
    r.map_or("–", |r| verdict(r <= target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_cells() {
        let mut t = Table::new(&["what", "ms", "<note"]);
        t.row(["a", "1.0", "x"]);
        assert_eq!(
            t.to_string(),
            "| what | ms | note |\n|---|---:|---|\n| a | 1.0 | x |\n"
        );
        assert_eq!(ratio(Some(0.234)), "0.23×");
        assert_eq!(ratio(None), "–");
        assert_eq!(
            (at_most(Some(1.0), 2.0), at_most(Some(3.0), 2.0)),
            ("met", "MISSED")
        );
    }
}
