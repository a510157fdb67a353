//! Replaces a job's secrets (its `redactedValues` and the queue's shared secret) in everything of its log before any plugin or upload sees it.

use aho_corasick::{AhoCorasick, MatchKind};

/// Replaces secrets with their stand-ins, the longest match first.
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    replacements: Vec<String>,
}

impl Redactor {
    /// From the payload's `redactedValues` (secret → replacement); empty
    /// secrets are ignored.
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a String, &'a String)>) -> Redactor {
        let (secrets, replacements): (Vec<&str>, Vec<String>) = values
            .into_iter()
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.as_str(), v.clone()))
            .unzip();
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&secrets)
            .ok()
            .filter(|_| !secrets.is_empty());
        Redactor {
            matcher,
            replacements,
        }
    }

    /// `text` with every secret replaced.
    pub fn apply(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) => m.replace_all(text, &self.replacements),
            None => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_longest_secret_is_replaced_first() {
        let values = BTreeMap::from([
            ("abc".to_owned(), "[short]".to_owned()),
            ("abcdef".to_owned(), "[long]".to_owned()),
            (String::new(), "[never]".to_owned()),
        ]);
        let r = Redactor::new(&values);
        assert_eq!(r.apply("x abcdef abc y"), "x [long] [short] y");
        assert_eq!(Redactor::new(&BTreeMap::new()).apply("abc"), "abc");
    }
}
