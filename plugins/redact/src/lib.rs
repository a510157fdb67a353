//! Log plugin that masks secrets in log lines (cloud keys, tokens, JWTs, private-key blocks, `password=`-style pairs, configured literals and patterns) and drops lines matching configured patterns.

use std::borrow::Cow;
use std::collections::HashMap;

use plugin_sdk::{Error, LogBatch, LogContext, LogEdit, LogFilter, LogRecord, Plugin};
use regex::{Regex, RegexSet};
use serde::Deserialize;

/// The built-in detectors, by name. Word boundaries are ASCII (`(?-u:\b)`) so
/// the regex engine's DFA can scan lines with non-ASCII text at full speed.
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "aws-access-key",
        r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}(?-u:\b)",
    ),
    (
        "github-token",
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)",
    ),
    (
        "gitlab-token",
        r"(?-u:\b)gl(?:pat|ptt|dt|rt|cbt|oas)-[A-Za-z0-9_\-]{20,}",
    ),
    (
        "jwt",
        r"(?-u:\b)eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}",
    ),
    (
        "private-key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----",
    ),
    (
        "url-credentials",
        r"(?i)(?-u:\b)[a-z][a-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@",
    ),
    (
        "password-pair",
        r#"(?i)(?-u:\b)(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret|auth[_-]?token)[a-z0-9_\-]*["']?\s*[:=]\s*(?:"[^"]+"|'[^']+'|[^\s"',;]+)"#,
    ),
];

const END_KEY: &str = r"-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----";

/// The plugin's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Built-in detectors to use, by name, or `["all"]` (the default) or `[]`.
    #[serde(default = "all")]
    pub builtins: Vec<String>,
    /// Exact values to mask (e.g. a known token).
    #[serde(default)]
    pub literals: Vec<String>,
    /// Regular expressions (Rust `regex` syntax) whose matches are masked.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// What a secret is replaced by.
    #[serde(default = "mask")]
    pub replacement: String,
    /// Regular expressions; a line matching any is dropped.
    #[serde(default)]
    pub drop_lines: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            builtins: all(),
            literals: vec![],
            patterns: vec![],
            replacement: mask(),
            drop_lines: vec![],
        }
    }
}

fn all() -> Vec<String> {
    vec!["all".into()]
}

fn mask() -> String {
    "[REDACTED]".into()
}

/// How a detector's match is masked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The whole match.
    Whole,
    /// Keep `key=` (up to and including the separator), mask the value.
    Pair,
    /// Keep the scheme and user, mask the password before `@`.
    Url,
    /// The start of a private-key block: mask from here to the end of the line,
    /// and every line after until the block ends.
    KeyBlock,
}

/// The redaction engine, usable natively (see the benchmarks) and in the component.
pub struct Redactor {
    set: RegexSet,
    detectors: Vec<(Regex, Kind)>,
    drop: Option<RegexSet>,
    replacement: String,
    key_end: Regex,
    /// Log entries currently inside a private-key block.
    in_key: HashMap<String, bool>,
}

fn compile(at: &str, pattern: &str) -> Result<Regex, Error> {
    Regex::new(pattern).map_err(|e| {
        Error::new(format!(
            "{at}: {pattern:?} is not a valid regular expression: {e}"
        ))
    })
}

impl Redactor {
    /// Builds the detectors from settings.
    pub fn new(settings: Settings) -> Result<Redactor, Error> {
        let wanted: Vec<&str> = if settings.builtins.iter().any(|b| b == "all") {
            BUILTINS.iter().map(|(n, _)| *n).collect()
        } else {
            settings.builtins.iter().map(String::as_str).collect()
        };
        let mut sources = Vec::new();
        let mut detectors = Vec::new();
        // Literals first: a configured secret is masked whole before any
        // pattern could mask only part of it.
        if !settings.literals.is_empty() {
            if let Some(i) = settings.literals.iter().position(String::is_empty) {
                return Err(Error::new(format!(
                    "literals[{i}]: empty; an empty literal would mask nothing useful"
                )));
            }
            let mut literals = settings.literals.clone();
            literals.sort_by_key(|l| std::cmp::Reverse(l.len()));
            let alternation = literals
                .iter()
                .map(|l| regex::escape(l))
                .collect::<Vec<_>>()
                .join("|");
            sources.push(alternation.clone());
            detectors.push((compile("literals", &alternation)?, Kind::Whole));
        }
        for name in wanted {
            let Some((_, pattern)) = BUILTINS.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
                return Err(Error::new(format!(
                    "builtins: {name:?} is not a built-in detector; expected \"all\" or any of {}",
                    names.join(", ")
                )));
            };
            let kind = match name {
                "password-pair" => Kind::Pair,
                "url-credentials" => Kind::Url,
                "private-key" => Kind::KeyBlock,
                _ => Kind::Whole,
            };
            sources.push((*pattern).to_owned());
            detectors.push((compile(name, pattern)?, kind));
        }
        for (i, p) in settings.patterns.iter().enumerate() {
            sources.push(p.clone());
            detectors.push((compile(&format!("patterns[{i}]"), p)?, Kind::Whole));
        }
        let set = RegexSet::new(&sources).map_err(|e| Error::new(format!("patterns: {e}")))?;
        let drop = if settings.drop_lines.is_empty() {
            None
        } else {
            for (i, p) in settings.drop_lines.iter().enumerate() {
                compile(&format!("dropLines[{i}]"), p)?;
            }
            Some(
                RegexSet::new(&settings.drop_lines)
                    .map_err(|e| Error::new(format!("dropLines: {e}")))?,
            )
        };
        Ok(Redactor {
            set,
            detectors,
            drop,
            replacement: settings.replacement,
            key_end: compile("private-key", END_KEY)?,
            in_key: HashMap::new(),
        })
    }

    /// What becomes of one line of `entry`: `None` to drop it, else its
    /// text, borrowed when it holds nothing to mask.
    pub fn judge<'t>(&mut self, entry: &str, text: &'t str) -> Option<Cow<'t, str>> {
        if let Some(drop) = &self.drop
            && drop.is_match(text)
        {
            return None;
        }
        if self.in_key.get(entry).copied().unwrap_or(false) {
            if let Some(m) = self.key_end.find(text) {
                self.in_key.insert(entry.to_owned(), false);
                return Some(Cow::Owned(format!(
                    "{}{}",
                    self.replacement,
                    &text[m.end()..]
                )));
            }
            return Some(Cow::Owned(self.replacement.clone()));
        }
        // Most lines hold no secret: a search that may stop at the first
        // match is much cheaper than asking which detectors match.
        if !self.set.is_match(text) {
            return Some(Cow::Borrowed(text));
        }
        let matched = self.set.matches(text);
        let mut out = text.to_owned();
        let mut opened = false;
        for i in matched.iter() {
            let (re, kind) = &self.detectors[i];
            let (masked, opens) = self.apply(re, *kind, &out);
            out = masked;
            opened |= opens;
        }
        if opened {
            self.in_key.insert(entry.to_owned(), true);
        }
        Some(Cow::Owned(out))
    }

    /// One line of `entry` masked, or `None` to drop it.
    pub fn line(&mut self, entry: &str, text: String) -> Option<String> {
        let masked = match self.judge(entry, &text)? {
            Cow::Borrowed(_) => None,
            Cow::Owned(masked) => Some(masked),
        };
        Some(masked.unwrap_or(text))
    }

    /// Masks `text` with one detector; the flag says a key block stays open.
    fn apply(&self, re: &Regex, kind: Kind, text: &str) -> (String, bool) {
        let r = self.replacement.as_str();
        let masked = match kind {
            Kind::Whole => re.replace_all(text, r).into_owned(),
            Kind::Pair => re
                .replace_all(text, |c: &regex::Captures<'_>| {
                    let m = &c[0];
                    let sep = m.find([':', '=']).map_or(0, |i| i + 1);
                    let (key, value) = m.split_at(sep);
                    let ws = value.len() - value.trim_start().len();
                    format!("{key}{}{r}", &value[..ws])
                })
                .into_owned(),
            Kind::Url => re
                .replace_all(text, |c: &regex::Captures<'_>| {
                    let m = &c[0];
                    let user_end = m.rfind(':').unwrap_or(0);
                    format!("{}:{r}@", &m[..user_end])
                })
                .into_owned(),
            Kind::KeyBlock => {
                let Some(start) = re.find(text) else {
                    return (text.to_owned(), false);
                };
                let rest = &text[start.end()..];
                return match self.key_end.find(rest) {
                    Some(end) => (
                        format!("{}{r}{}", &text[..start.start()], &rest[end.end()..]),
                        false,
                    ),
                    None => (format!("{}{r}", &text[..start.start()]), true),
                };
            }
        };
        (masked, false)
    }

    /// Masks a batch of records of one entry, dropping lines as configured.
    pub fn records(&mut self, entry: &str, records: Vec<LogRecord>) -> Vec<LogRecord> {
        records
            .into_iter()
            .filter_map(|r| {
                self.line(entry, r.text).map(|text| LogRecord {
                    stream: r.stream,
                    text,
                })
            })
            .collect()
    }
}

impl Plugin for Redactor {
    type Settings = Settings;

    fn init(settings: Settings) -> Result<Self, Error> {
        Redactor::new(settings)
    }
}

impl LogFilter for Redactor {
    fn filter(
        &mut self,
        ctx: &LogContext,
        records: Vec<LogRecord>,
    ) -> Result<Vec<LogRecord>, Error> {
        Ok(self.records(&ctx.entry, records))
    }

    /// Reads the lines where the host put them; only the lines masked or
    /// dropped go back.
    fn edits(&mut self, ctx: &LogContext, batch: &LogBatch<'_>) -> Result<Vec<LogEdit>, Error> {
        let mut edits = Vec::new();
        for (i, line) in batch.lines() {
            match self.judge(&ctx.entry, line.text) {
                None => edits.push(LogEdit::Drop(i)),
                Some(Cow::Borrowed(_)) => {}
                Some(Cow::Owned(text)) => edits.push(LogEdit::Replace(
                    i,
                    LogRecord {
                        stream: line.stream,
                        text,
                    },
                )),
            }
        }
        Ok(edits)
    }
}

plugin_sdk::export_plugin!(Redactor: logs);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::Harness;
    use serde_json::json;

    fn run(settings: serde_json::Value, lines: &[&str]) -> Vec<String> {
        Harness::<Redactor>::new(settings)
            .unwrap()
            .filter_lines(lines)
            .unwrap()
    }

    #[test]
    fn builtin_detectors_mask_known_secret_shapes() {
        let out = run(
            json!({}),
            &[
                "aws key AKIAIOSFODNN7EXAMPLE in use",
                "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok",
                "gitlab glpat-abcdefghij0123456789 ok",
                "auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U done",
                "git clone https://deploy:s3cr3tpass@git.example.com/repo.git",
                "password=hunter2 user=bob",
                "API_KEY: \"abc def\"",
                "nothing to see here",
            ],
        );
        assert_eq!(
            out,
            [
                "aws key [REDACTED] in use",
                "token [REDACTED] ok",
                "gitlab [REDACTED] ok",
                "auth [REDACTED] done",
                "git clone https://deploy:[REDACTED]@git.example.com/repo.git",
                "password=[REDACTED] user=bob",
                "API_KEY: [REDACTED]",
                "nothing to see here",
            ]
        );
    }

    #[test]
    fn private_key_blocks_are_masked_across_lines_and_batches() {
        let mut h = Harness::<Redactor>::new(json!({})).unwrap();
        let first = h
            .filter_lines(&[
                "before",
                "-----BEGIN RSA PRIVATE KEY-----",
                "MIIEpAIBAAKCAQEA",
            ])
            .unwrap();
        let second = h
            .filter_lines(&["QWERTYUIOP", "-----END RSA PRIVATE KEY-----", "after"])
            .unwrap();
        assert_eq!(first, ["before", "[REDACTED]", "[REDACTED]"]);
        assert_eq!(second, ["[REDACTED]", "[REDACTED]", "after"]);
        let one_line = h
            .filter_lines(&["k=-----BEGIN PRIVATE KEY-----abc-----END PRIVATE KEY----- end"])
            .unwrap();
        assert_eq!(one_line, ["k=[REDACTED] end"]);
    }

    #[test]
    fn literals_patterns_replacement_and_dropped_lines() {
        let out = run(
            json!({"builtins": [], "literals": ["s3cr3t", "s3cr3t-longer"], "patterns": ["id-[0-9]{4}"],
                   "replacement": "***", "dropLines": ["^DEBUG "]}),
            &[
                "use s3cr3t-longer and s3cr3t",
                "DEBUG noisy",
                "user id-1234",
                "password=kept-because-builtins-off",
            ],
        );
        assert_eq!(
            out,
            [
                "use *** and ***",
                "user ***",
                "password=kept-because-builtins-off"
            ]
        );
    }

    #[test]
    fn bad_settings_name_the_setting() {
        for (settings, needle) in [
            (
                json!({"builtins": ["aws"]}),
                "builtins: \"aws\" is not a built-in detector",
            ),
            (json!({"patterns": ["("]}), "patterns[0]"),
            (json!({"dropLines": ["[z-a]"]}), "dropLines[0]"),
            (json!({"literals": [""]}), "literals[0]: empty"),
        ] {
            let err = Harness::<Redactor>::new(settings).err().unwrap();
            assert!(err.message().contains(needle), "{err} lacks {needle}");
        }
    }

    /// The component sends edits (`LogFilter::edits`, which the harness
    /// runs); the bench and the native path filter whole batches. Both must
    /// upload the same lines.
    #[test]
    fn the_edits_the_host_gets_match_the_filtered_batch() {
        let settings = json!({"literals": ["hunter2"], "dropLines": ["^TRACE "]});
        let batch = [
            "plain line",
            "login with hunter2",
            "TRACE noise",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXktdjEAAAAA",
            "-----END OPENSSH PRIVATE KEY----- after",
            "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
            "last",
        ];
        let through_edits = run(settings.clone(), &batch);
        let mut native = Redactor::new(serde_json::from_value(settings).unwrap()).unwrap();
        let whole: Vec<String> = native
            .records(
                "step.0",
                batch.iter().map(|l| LogRecord::stdout(*l)).collect(),
            )
            .into_iter()
            .map(|r| r.text)
            .collect();
        assert_eq!(through_edits, whole);
        assert_eq!(through_edits.len(), batch.len() - 1, "{through_edits:?}");
        assert!(
            through_edits
                .iter()
                .all(|l| !l.contains("hunter2") && !l.contains("AKIA"))
        );
    }
}
