//! The Kubernetes name rules plugins check settings against: DNS-1123 names, label keys and label values.

/// Lowercase letters, digits and '-', alphanumeric at both ends.
fn label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain: what Secret names and label-key
/// prefixes must be (at most 253 characters, dot-separated labels).
pub fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(label_chars)
}

/// Whether `s` is a label value, or the name part of a label key: at most 63
/// characters of `[A-Za-z0-9._-]`, alphanumeric at both ends (empty is not).
pub fn label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Whether `s` is a label or annotation key: an optional DNS-subdomain
/// prefix and `/`, then a [`label_name`].
pub fn label_key(s: &str) -> bool {
    match s.rsplit_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && label_name(name),
        None => label_name(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_api_servers_rules() {
        assert!(
            dns_subdomain("ghcr-pull")
                && dns_subdomain("a.b-c")
                && !dns_subdomain("Bad_Name")
                && !dns_subdomain("")
        );
        assert!(
            label_key("acme.com/team")
                && label_key("app")
                && !label_key("-bad")
                && !label_key("Acme.com/x")
        );
        assert!(label_name("v1.2_x") && !label_name("a/b") && !label_name(&"a".repeat(64)));
    }
}
