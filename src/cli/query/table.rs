//! Plain-text tables: columns padded to their widest cell, and cutting a cell to a width.

use std::fmt::Write as _;

use crate::printable::for_terminal;

/// How a column's cells sit in its width.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell (header included), two spaces apart, no trailing blanks.
/// Every cell passes through [`for_terminal`]: a name holding control characters (stored before
/// intake refused them) cannot retitle the terminal or forge a row.
pub(super) fn render_table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| for_terminal(c).into_owned()).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, ((cell, w), (_, align))) in row.iter().zip(&widths).zip(columns).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            // `{:<w$}` pads by chars, matching the char counts above.
            match align {
                Align::Left => write!(line, "{cell:<w$}"),
                Align::Right => write!(line, "{cell:>w$}"),
            }
            .ok(); // Writing to a String cannot fail.
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `s` cut to `max` chars, the last one an ellipsis when anything was cut.
pub(in crate::cli) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_reach_the_terminal_escaped_and_one_row_stays_one_line() {
        let rows = vec![vec![
            "q\u{1b}]0;PWNED\u{7}".to_string(),
            "a\r\nfake  row".to_string(),
        ]];
        let text = render_table(&[("queue", Align::Left), ("agent", Align::Left)], &rows);
        assert_eq!(text.lines().count(), 2, "{text:?}");
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && crate::printable::is_refused(c)),
            "{text:?}"
        );
        assert!(text.contains("q\\u{1b}]0;PWNED\\u{7}"), "{text:?}");
    }
}
