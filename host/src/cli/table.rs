//! Plain-text tables for the user commands: each column as wide as its widest cell, header included, so rows line up whatever their contents.

/// Where a column's cells sit in its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Right,
}

/// `rows` under `header`, two spaces between columns, the last column
/// unpadded (it holds free text such as messages); a line each.
pub(super) fn render(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|(h, _)| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let names: Vec<String> = header.iter().map(|(h, _)| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&names).chain(rows) {
        let mut line = String::new();
        for (i, ((cell, w), (_, align))) in row.iter().zip(&widths).zip(header).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(w.saturating_sub(width(cell)));
            let last = i + 1 == header.len();
            match align {
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
                Align::Left if last => line.push_str(cell),
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Columns a cell takes: its characters (the cells are ASCII but for
/// messages, which end the line).
fn width(cell: &str) -> usize {
    cell.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_as_wide_as_its_widest_cell_so_rows_line_up() {
        let text = render(
            &[
                ("ID", Align::Right),
                ("STATE", Align::Left),
                ("CREATED", Align::Left),
                ("MESSAGE", Align::Left),
            ],
            &[
                vec![
                    "7".into(),
                    "processing (cancel requested)".into(),
                    "2026-11-29T19:57:42.123Z".into(),
                    String::new(),
                ],
                vec![
                    "12".into(),
                    "queued".into(),
                    "2026-11-29T19:58:00Z".into(),
                    "waiting".into(),
                ],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let column = |needle: &str| lines.iter().find_map(|l| l.find(needle));
        assert_eq!(column("STATE"), column("processing"), "{text}");
        assert_eq!(column("STATE"), column("queued"), "{text}");
        assert_eq!(column("CREATED"), column("2026-11-29T19:57"), "{text}");
        assert_eq!(column("CREATED"), column("2026-11-29T19:58"), "{text}");
        assert_eq!(column("MESSAGE"), column("waiting"), "{text}");
        assert!(
            lines[0].ends_with("MESSAGE") && lines[1].ends_with(".123Z"),
            "{text}"
        );
        assert_eq!(
            lines[1].find('7'),
            lines[2].find("12").map(|i| i + 1),
            "ids align right: {text}"
        );
    }
}
