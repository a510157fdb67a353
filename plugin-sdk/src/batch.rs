//! `LogBatch`: a batch of log records as the host sends it (one text, a line per record), read line by line without copying.

use crate::{LogRecord, Stream};

/// A batch of consecutive records of one log entry, borrowed from what the
/// host sent: one text with a line per record, and each record's stream.
/// Reading it copies nothing; [`LogBatch::to_records`] makes owned records
/// for code that wants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBatch<'a> {
    text: &'a str,
    streams: &'a [Stream],
}

/// One record of a [`LogBatch`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// The stream the line was written to.
    pub stream: Stream,
    /// The line's text, without its terminator.
    pub text: &'a str,
}

impl<'a> LogBatch<'a> {
    /// A batch of `streams.len()` records whose texts are the lines of
    /// `text` (split on `'\n'`), as the contract's `log-batch` carries them.
    pub fn new(text: &'a str, streams: &'a [Stream]) -> Self {
        LogBatch { text, streams }
    }

    /// How many records the batch has.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The records' texts joined by `'\n'`: for a filter that scans the whole
    /// batch at once (e.g. one regex search) before it looks at lines.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The records in order, each with its index in the batch: the index an
    /// edit names.
    pub fn lines(&self) -> impl Iterator<Item = (u32, LogLine<'a>)> + 'a {
        let text = self.text;
        let mut start = 0;
        // memchr's search uses WebAssembly SIMD; `str::split` looks at a word
        // at a time, which was a tenth of `redact`'s time in the guest.
        let ends = memchr::memchr_iter(b'\n', text.as_bytes()).chain([text.len()]);
        let texts = ends.map(move |end| {
            // Both ends are at a '\n' or the text's end: char boundaries.
            let line = text.get(start..end).unwrap_or_default();
            start = end + 1;
            line
        });
        // The contract guarantees a line per stream; `zip` stops at the
        // shorter side either way, so a malformed batch cannot index past it.
        self.streams
            .iter()
            .zip(texts)
            .zip(0u32..)
            .map(|((&stream, text), i)| (i, LogLine { stream, text }))
    }

    /// The records as owned [`LogRecord`]s.
    pub fn to_records(&self) -> Vec<LogRecord> {
        self.lines().map(|(_, line)| line.to_record()).collect()
    }
}

impl LogLine<'_> {
    /// The line as an owned record.
    pub fn to_record(&self) -> LogRecord {
        LogRecord {
            stream: self.stream,
            text: self.text.to_owned(),
        }
    }
}

impl PartialEq<LogRecord> for LogLine<'_> {
    fn eq(&self, other: &LogRecord) -> bool {
        self.stream == other.stream && self.text == other.text
    }
}

/// A batch in the contract's form, owned: what the test harness sends a
/// filter, as the host would.
#[derive(Debug, Clone, Default)]
pub(crate) struct Joined {
    text: String,
    streams: Vec<Stream>,
}

impl Joined {
    /// `records` joined, or the index of the first record that holds a line
    /// break (the host never sends one).
    pub(crate) fn new(records: &[LogRecord]) -> Result<Self, usize> {
        let mut joined = Joined::default();
        for (i, record) in records.iter().enumerate() {
            if record.text.contains('\n') {
                return Err(i);
            }
            if i > 0 {
                joined.text.push('\n');
            }
            joined.text.push_str(&record.text);
            joined.streams.push(record.stream);
        }
        Ok(joined)
    }

    /// The batch, borrowed.
    pub(crate) fn batch(&self) -> LogBatch<'_> {
        LogBatch::new(&self.text, &self.streams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_a_record_per_stream_including_empty_ones() {
        let streams = [Stream::Stdout, Stream::Stderr, Stream::Stdout];
        let batch = LogBatch::new("a\n\nc", &streams);
        let lines: Vec<_> = batch.lines().collect();
        assert_eq!(
            lines,
            [
                (
                    0,
                    LogLine {
                        stream: Stream::Stdout,
                        text: "a"
                    }
                ),
                (
                    1,
                    LogLine {
                        stream: Stream::Stderr,
                        text: ""
                    }
                ),
                (
                    2,
                    LogLine {
                        stream: Stream::Stdout,
                        text: "c"
                    }
                ),
            ]
        );
        assert_eq!(LogBatch::new("", &[]).lines().count(), 0);
        assert_eq!(
            LogBatch::new("", &[Stream::Stdout]).to_records(),
            [LogRecord::stdout("")]
        );
    }

    #[test]
    fn records_join_into_the_batch_they_came_from_unless_one_has_a_line_break() {
        let records = vec![
            LogRecord::stdout("one"),
            LogRecord::stderr(""),
            LogRecord::stdout(""),
        ];
        let joined = Joined::new(&records).unwrap();
        assert_eq!(joined.batch().text(), "one\n\n");
        assert_eq!(joined.batch().to_records(), records);
        let two_lines = [LogRecord::stdout("ok"), LogRecord::stdout("a\nb")];
        assert_eq!(Joined::new(&two_lines).unwrap_err(), 1);
    }
}
