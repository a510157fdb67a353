//! A request's query parameters, decoded once with the `form_urlencoded` crate; the names the handlers ask for.

/// Query parameters, decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes a query string as `application/x-www-form-urlencoded`, as Go's
    /// `url.ParseQuery` does for the real server: `+` is a space, `%XX` a
    /// byte, and an escape that is not two hex digits stays as written.
    pub fn parse(query: &str) -> Query {
        Query(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is `true` or `1`.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }

    pub(super) fn strict(&self) -> bool {
        self.get("fieldValidation") == Some("Strict")
    }

    pub(super) fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn plus_is_a_space_and_percent_escapes_are_bytes() {
        let q = Query::parse("labelSelector=app%3Din+%28a%2Cb%29&watch=1&&empty&x=a=b");
        assert_eq!(q.get("labelSelector"), Some("app=in (a,b)"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("x"), Some("a=b"));
    }

    #[test]
    fn an_invalid_escape_stays_as_written_and_bad_utf8_is_replaced() {
        let q = Query::parse("a=100%&b=%zz&c=%4&d=%C3%A9&e=%ff");
        assert_eq!(q.get("a"), Some("100%"));
        assert_eq!(q.get("b"), Some("%zz"));
        assert_eq!(q.get("c"), Some("%4"));
        assert_eq!(q.get("d"), Some("é"));
        assert_eq!(q.get("e"), Some("\u{fffd}"));
    }
}
