use plugin_sdk::{Error, LogContext, LogFilter, LogRecord, NoSettings, Plugin};

pub struct NoColour;

impl Plugin for NoColour {
    type Settings = NoSettings;
    fn init(_: NoSettings) -> Result<Self, Error> {
        Ok(NoColour)
    }
}

impl LogFilter for NoColour {
    fn filter(&mut self, _ctx: &LogContext, records: Vec<LogRecord>) -> Result<Vec<LogRecord>, Error> {
        Ok(records
            .into_iter()
            .map(|mut r| {
                r.text = strip_sgr(&r.text);
                r
            })
            .collect())
    }
}

/// `text` without `ESC [ ... m` sequences.
fn strip_sgr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        match tail.find(|c: char| !(c.is_ascii_digit() || c == ';')) {
            Some(j) if tail[j..].starts_with('m') => rest = &tail[j + 1..],
            _ => {
                out.push_str("\x1b[");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{Harness, log_context};

    #[test]
    fn colours_are_stripped_and_streams_kept() {
        // Settings as the executor passes them when none are configured.
        let mut h = Harness::<NoColour>::from_json("null").unwrap();
        // Lines as stdout, the common case:
        assert_eq!(h.filter_lines(&["\x1b[32mok\x1b[0m", "plain"]).unwrap(), ["ok", "plain"]);
        // Whole records, to check the stream and the context:
        let kept = h.filter(&log_context(), vec![LogRecord::stderr("\x1b[1;31merror\x1b[0m")]).unwrap();
        assert_eq!(kept, [LogRecord::stderr("error")]);
    }
}
