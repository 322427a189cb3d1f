//! Plain-text tables for the terminal, aligned by display width rather than by `char` count:
//! a CJK character or an emoji takes two columns, a combining mark (an NFD name's accents)
//! none, so padding by chars or bytes misaligns every row after such a name.

use std::io::{self, Write};

use unicode_width::UnicodeWidthStr;

/// Columns `text` takes on a terminal.
pub fn display_width(text: &str) -> usize {
    text.width()
}

/// Write `headers` and `rows` as left-aligned columns two spaces apart; the last column is not
/// padded, so no line ends in spaces.
pub fn write<const N: usize>(
    out: &mut impl Write,
    headers: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut widths = headers.map(display_width);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(display_width(cell));
        }
    }
    let mut line = |cells: [&str; N]| -> io::Result<()> {
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                writeln!(out, "{cell}")?;
            } else {
                // Not `{:pad$}`: a format width above u16::MAX panics, and a cell can be as
                // long as a name in a legacy registry.
                let pad = widths[i].saturating_sub(display_width(cell));
                write!(out, "{cell}{}  ", " ".repeat(pad))?;
            }
        }
        Ok(())
    };
    line(headers)?;
    for row in rows {
        line(row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(headers: [&str; 2], rows: &[[&str; 2]]) -> String {
        let rows: Vec<[String; 2]> = rows.iter().map(|r| r.map(String::from)).collect();
        let mut out = Vec::new();
        write(&mut out, headers, &rows).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The column where the second cell of each line starts, in terminal columns.
    fn second_column_starts(table: &str) -> Vec<usize> {
        table
            .lines()
            .map(|line| {
                let (first, _) = line.split_once("  ").unwrap();
                let gap = line[first.len()..]
                    .chars()
                    .take_while(|c| *c == ' ')
                    .count();
                display_width(first) + gap
            })
            .collect()
    }

    #[test]
    fn wide_and_combining_characters_align_by_terminal_columns() {
        let nfd_cafe = "cafe\u{301}.md"; // 7 columns, 8 chars
        let table = render(
            ["NAME", "STATUS"],
            &[
                ["報告書.pdf", "compiled"], // 10 columns, 7 chars
                [nfd_cafe, "pending"],
                ["📄.md", "failed"], // 5 columns, 4 chars
                ["plain.txt", "pending"],
            ],
        );
        let starts = second_column_starts(&table);
        assert_eq!(starts, vec![12; 5], "{table}");
        assert!(table.lines().all(|l| !l.ends_with(' ')), "{table:?}");
    }

    #[test]
    fn widths_of_known_characters() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("日本"), 4);
        assert_eq!(display_width("e\u{301}"), 1);
        assert_eq!(display_width(""), 0);
    }
}
