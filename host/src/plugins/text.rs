//! Text that comes from a plugin (deny messages, warnings, errors, `log` messages, printed output), bounded before the host keeps or prints it; knows nothing of where it goes.

/// Longest text kept from one message of a plugin, in bytes: a `log` call, a
/// line it printed, a deny message, a warning, an error.
pub(crate) const MAX_TEXT: usize = 4096;

/// Most messages kept from one call into a plugin: `log` calls, and warnings
/// of one admission answer. The rest are counted, not kept.
pub(crate) const MAX_MESSAGES: usize = 100;

/// `text` cut to [`MAX_TEXT`] bytes (on a character boundary), saying how
/// much was cut, so that a plugin cannot make the host keep or print more.
pub(crate) fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let end = text.floor_char_boundary(MAX_TEXT);
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

/// At most [`MAX_MESSAGES`] of `messages`, each [`bounded`]; when some were
/// dropped, a last one says how many.
pub(crate) fn bounded_list(messages: Vec<String>) -> Vec<String> {
    let dropped = messages.len().saturating_sub(MAX_MESSAGES);
    let mut kept: Vec<String> = messages
        .iter()
        .take(MAX_MESSAGES)
        .map(|m| bounded(m))
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
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_TEXT);
        let cut = bounded(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_TEXT / 2)));
        assert!(
            cut.ends_with(&format!("… ({} more bytes)", MAX_TEXT)),
            "{cut}"
        );
    }

    #[test]
    fn lists_keep_the_first_messages_and_count_the_rest() {
        let many = vec!["w".to_owned(); MAX_MESSAGES + 5];
        let kept = bounded_list(many);
        assert_eq!(kept.len(), MAX_MESSAGES + 1);
        assert_eq!(kept[MAX_MESSAGES], "(5 more messages dropped)");
    }
}
