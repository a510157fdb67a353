//! Text that comes from a plugin (deny messages, warnings, errors, `log` messages, printed output), bounded and made printable before the host keeps or prints it; knows nothing of where it goes.

use std::fmt::Write;

/// Longest text kept from one message of a plugin, in bytes: a `log` call, a
/// line it printed, a deny message, a warning, an error.
pub(crate) const MAX_TEXT: usize = 4096;

/// Most messages kept from one call into a plugin: `log` calls, and warnings
/// of one admission answer. The rest are counted, not kept.
pub(crate) const MAX_MESSAGES: usize = 100;

/// `text` with its control characters escaped visibly (`\n`, `\x1b`), cut
/// to [`MAX_TEXT`] bytes, saying how much was cut. Printed raw, a newline
/// would let a plugin forge a line of the job's log ("…: the job
/// succeeded"), and an escape sequence would drive the reader's terminal
/// (clear it, retitle the window).
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT));
    for (at, c) in text.char_indices() {
        let before = out.len();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if reorders(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
        if out.len() > MAX_TEXT {
            out.truncate(before);
            let _ = write!(out, "… ({} more bytes)", text.len() - at);
            break;
        }
    }
    out
}

/// Characters that move or reorder the text around them when displayed
/// (bidirectional overrides and isolates, line and paragraph separators),
/// with which printed text can be made to read as something else.
fn reorders(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// At most [`MAX_MESSAGES`] of `messages`, each [`printable`]; when some were
/// dropped, a last one says how many.
pub(crate) fn printable_list(messages: Vec<String>) -> Vec<String> {
    let dropped = messages.len().saturating_sub(MAX_MESSAGES);
    let mut kept: Vec<String> = messages
        .iter()
        .take(MAX_MESSAGES)
        .map(|m| printable(m))
        .collect();
    if dropped > 0 {
        kept.push(format!("({dropped} more messages dropped)"));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_how_much() {
        assert_eq!(printable("short"), "short");
        let long = "é".repeat(MAX_TEXT);
        let cut = printable(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_TEXT / 2)));
        assert!(
            cut.ends_with(&format!("… ({} more bytes)", MAX_TEXT)),
            "{cut}"
        );
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(
            printable("a\nb\r\t\u{1b}[2J\u{7}\u{9b}\u{202e}é"),
            r"a\nb\r\t\x1b[2J\x07\x9b\u{202e}é"
        );
        let escapes = printable(&"\u{1b}".repeat(MAX_TEXT));
        assert!(escapes.len() <= MAX_TEXT + 30, "{}", escapes.len());
        assert!(escapes.ends_with(&format!("… ({} more bytes)", MAX_TEXT - MAX_TEXT / 4)));
    }

    #[test]
    fn lists_keep_the_first_messages_and_count_the_rest() {
        let many = vec!["w".to_owned(); MAX_MESSAGES + 5];
        let kept = printable_list(many);
        assert_eq!(kept.len(), MAX_MESSAGES + 1);
        assert_eq!(kept[MAX_MESSAGES], "(5 more messages dropped)");
    }
}
