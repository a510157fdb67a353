//! Replaces a job's secrets (its `redactedValues`, its token and the queue's shared secret) in everything of its log before any plugin or upload sees it, secrets that span lines and batches included; never lets text through unredacted.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, BuildError, MatchKind};
use k8s_openapi::jiff::Timestamp;

use crate::k8s::logs::Line;
use crate::payload::JobPayload;

/// What stands in for a credential the payload gives no replacement for.
pub const MASK: &str = "********";

/// Why a job's secrets cannot be redacted; the job is then refused, since
/// running it would upload them.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// The matcher of the secrets could not be built (too large).
    #[error(
        "cannot redact the job's {count} secrets ({bytes} bytes in all): {source}; the job is refused rather than run with its log unredacted"
    )]
    Matcher {
        /// How many secrets.
        count: usize,
        /// Their total size.
        bytes: usize,
        /// What the matcher's builder said (it never quotes a pattern).
        #[source]
        source: BuildError,
    },
}

/// Replaces secrets with their stand-ins, the longest match first.
#[derive(Debug)]
pub struct Redactor {
    /// `None` only when there is no secret at all.
    matcher: Option<AhoCorasick>,
    replacements: Vec<String>,
    /// The secrets that span lines: a line that ends with the beginning of
    /// one waits for the next line.
    multi_line: Vec<String>,
}

/// Lines of one log entry, redacted, ready to go on.
#[derive(Debug, Default, PartialEq)]
pub struct Released {
    /// The redacted text, a line each; fewer than went in when a secret
    /// spanning lines was replaced.
    pub texts: Vec<String>,
    /// When the pod wrote each line that went in.
    pub written: Vec<Timestamp>,
}

impl Redactor {
    /// From secret → replacement; empty secrets are ignored.
    pub fn new<'a>(
        values: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Redactor, RedactError> {
        Redactor::with(values, AhoCorasick::builder())
    }

    /// Everything of `payload` that must never be uploaded: its
    /// `redactedValues`, its job token, and the queue's `shared_secret`.
    pub fn for_job(
        payload: &JobPayload,
        shared_secret: Option<&str>,
    ) -> Result<Redactor, RedactError> {
        let mut values = payload.redacted_values.clone();
        for credential in payload
            .token
            .iter()
            .map(String::as_str)
            .chain(shared_secret)
        {
            values
                .entry(credential.to_owned())
                .or_insert_with(|| MASK.to_owned());
        }
        Redactor::new(&values)
    }

    fn with<'a>(
        values: impl IntoIterator<Item = (&'a String, &'a String)>,
        mut builder: AhoCorasickBuilder,
    ) -> Result<Redactor, RedactError> {
        // Lines arrive without their line breaks, so a secret that begins or
        // ends with one (a file read whole) is matched without them.
        let needles: BTreeMap<&str, &str> = values
            .into_iter()
            .map(|(k, v)| (k.trim_matches(['\n', '\r']), v.as_str()))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        let (secrets, replacements): (Vec<&str>, Vec<String>) =
            needles.iter().map(|(k, v)| (*k, (*v).to_owned())).unzip();
        let multi_line = secrets
            .iter()
            .filter(|s| s.contains('\n'))
            .map(|s| (*s).to_owned())
            .collect();
        let matcher = if secrets.is_empty() {
            None
        } else {
            let matcher = builder
                .match_kind(MatchKind::LeftmostLongest)
                .build(&secrets)
                .map_err(|source| RedactError::Matcher {
                    count: secrets.len(),
                    bytes: secrets.iter().map(|s| s.len()).sum(),
                    source,
                })?;
            Some(matcher)
        };
        Ok(Redactor {
            matcher,
            replacements,
            multi_line,
        })
    }

    /// `text` with every secret replaced.
    pub fn apply(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) => m.replace_all(text, &self.replacements),
            None => text.to_owned(),
        }
    }

    /// Redacts the lines of one entry: those `held` back from earlier
    /// batches, then `lines`, as one text, so that a secret spanning lines
    /// is found even when its lines came in different batches. Lines that
    /// may begin such a secret are held back (in `held`) until the next
    /// lines show whether they do, unless this is the entry's `last` call.
    pub fn lines(&self, held: &mut Vec<Line>, lines: Vec<Line>, last: bool) -> Released {
        let mut all = std::mem::take(held);
        all.extend(lines);
        if all.is_empty() {
            return Released::default();
        }
        let text = all
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let mut starts = Vec::with_capacity(all.len());
        let mut at = 0;
        for line in &all {
            starts.push(at);
            at += line.text.len() + 1;
        }
        // The line (by index) that holds byte `offset` of `text`.
        let line_of = |offset: usize| starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let matches: Vec<(usize, usize, usize)> = self
            .matcher
            .iter()
            .flat_map(|m| m.find_iter(&text))
            .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
            .collect();
        // Lines from `keep` on wait; a match is never cut in two.
        let mut keep = all.len();
        if !last && let Some(start) = self.unfinished(&text) {
            keep = line_of(start);
        }
        for &(start, end, _) in matches.iter().rev() {
            if keep < all.len() && start < starts[keep] && end > starts[keep] {
                keep = line_of(start);
            }
        }
        let released_end = if keep < all.len() {
            starts[keep].saturating_sub(1)
        } else {
            text.len()
        };
        *held = all.split_off(keep);
        if all.is_empty() {
            return Released::default();
        }
        let mut out = String::with_capacity(released_end);
        let mut copied = 0;
        for (start, end, pattern) in matches.into_iter().filter(|m| m.1 <= released_end) {
            out.push_str(&text[copied..start]);
            out.push_str(self.replacements.get(pattern).map_or(MASK, String::as_str));
            copied = end;
        }
        out.push_str(&text[copied..released_end]);
        Released {
            texts: out.split('\n').map(str::to_owned).collect(),
            written: all.iter().map(|l| l.at).collect(),
        }
    }

    /// Where the earliest secret that spans lines may begin in `text` and
    /// continue after it (the next line follows a line break).
    fn unfinished(&self, text: &str) -> Option<usize> {
        self.multi_line
            .iter()
            .flat_map(|secret| {
                secret
                    .match_indices('\n')
                    .map(|(i, _)| &secret[..i])
                    .filter(|head| text.ends_with(head))
                    .map(|head| text.len() - head.len())
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Line {
            at: Timestamp::UNIX_EPOCH,
            text: text.to_owned(),
        }
    }

    fn lines(texts: &[&str]) -> Vec<Line> {
        texts.iter().map(|t| line(t)).collect()
    }

    fn redactor(values: &[(&str, &str)]) -> Redactor {
        let values: BTreeMap<String, String> = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Redactor::new(&values).unwrap()
    }

    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQyNTUxOQAAACBz\n-----END OPENSSH PRIVATE KEY-----\n";

    #[test]
    fn the_longest_secret_is_replaced_first() {
        let values = BTreeMap::from([
            ("abc".to_owned(), "[short]".to_owned()),
            ("abcdef".to_owned(), "[long]".to_owned()),
            (String::new(), "[never]".to_owned()),
        ]);
        let r = Redactor::new(&values).unwrap();
        assert_eq!(r.apply("x abcdef abc y"), "x [long] [short] y");
        assert_eq!(Redactor::new(&BTreeMap::new()).unwrap().apply("abc"), "abc");
    }

    #[test]
    fn a_secret_of_several_lines_is_redacted_from_the_lines_that_print_it() {
        let r = redactor(&[(KEY, "[ssh key]")]);
        let mut held = Vec::new();
        let mut log: Vec<&str> = vec!["cat ~/.ssh/id_ed25519:"];
        log.extend(KEY.lines().map(|l| {
            if l.starts_with("-----BEGIN") {
                "key: -----BEGIN OPENSSH PRIVATE KEY-----"
            } else {
                l
            }
        }));
        log.push("done");
        let out = r.lines(&mut held, lines(&log), true);
        assert_eq!(
            out.texts,
            ["cat ~/.ssh/id_ed25519:", "key: [ssh key]", "done"],
            "the private key reaches the uploaded log"
        );
        assert_eq!(out.written.len(), log.len());
        assert!(held.is_empty());
    }

    #[test]
    fn a_secret_split_across_batches_is_held_back_until_it_is_whole() {
        let r = redactor(&[(KEY, "[ssh key]"), ("hunter2", "[pw]")]);
        let key: Vec<&str> = KEY.lines().collect();
        let mut held = Vec::new();
        let first = r.lines(&mut held, lines(&["hunter2 ok", key[0], key[1]]), false);
        assert_eq!(first.texts, ["[pw] ok"], "the key's first lines wait");
        assert_eq!(held.len(), 2);
        let second = r.lines(&mut held, lines(&[key[2], key[3], "after"]), false);
        assert_eq!(second.texts, ["[ssh key]", "after"]);
        assert_eq!(
            second.written.len(),
            5,
            "the held lines went out with the rest"
        );
        assert!(held.is_empty());

        // A line that only looks like the start is let go by the next one,
        // and by the entry's end.
        let third = r.lines(&mut held, lines(&[key[0]]), false);
        assert!(third.texts.is_empty());
        let fourth = r.lines(&mut held, lines(&["not a key"]), false);
        assert_eq!(fourth.texts, [key[0], "not a key"]);
        r.lines(&mut held, lines(&[key[0], key[1]]), false);
        let last = r.lines(&mut held, Vec::new(), true);
        assert_eq!(last.texts, [key[0], key[1]]);
        assert!(held.is_empty());
    }

    #[test]
    fn the_job_token_and_the_shared_secret_are_redacted() {
        let payload = JobPayload::parse(
            r#"{"id": 1, "token": "tok-0123456789", "redactedValues": {"ghp_x": "[gh]"}}"#,
        )
        .unwrap();
        let r = Redactor::for_job(&payload, Some("shared-hunter2")).unwrap();
        assert_eq!(
            r.apply("git -c http.extraHeader='Authorization: Bearer tok-0123456789' ghp_x shared-hunter2"),
            "git -c http.extraHeader='Authorization: Bearer ********' [gh] ********"
        );
    }

    #[test]
    fn secrets_that_cannot_be_matched_refuse_the_job_instead_of_passing_through() {
        // A DFA of this many states (anchored and not, 256 transitions
        // each) overflows its state ids before allocating them: the
        // cheapest way to make the builder fail.
        let mut builder = AhoCorasick::builder();
        builder
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .start_kind(aho_corasick::StartKind::Both)
            .byte_classes(false);
        let values = BTreeMap::from([("a".repeat((1 << 22) + 16), "[x]".to_owned())]);
        let err = Redactor::with(&values, builder).unwrap_err().to_string();
        assert!(err.contains("the job is refused"), "{err}");
    }
}
