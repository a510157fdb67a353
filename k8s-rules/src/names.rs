//! Names, label keys and label values as `k8s.io/apimachinery/pkg/util/validation` checks them; each check returns the API server's reason when it fails.

const DNS1123_LABEL_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const QUALIFIED_NAME_CHARSET_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`: one DNS-1123 label's characters,
/// whatever its length.
pub fn is_dns1123_label_shape(s: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && s.bytes().all(|b| alnum(&b) || b == b'-')
        }
        _ => false,
    }
}

/// Dot-separated DNS-1123 labels, whatever the whole name's length.
pub fn is_dns1123_subdomain_shape(s: &str) -> bool {
    s.split('.').all(is_dns1123_label_shape)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: a label key's name part, or a
/// non-empty label value, whatever its length.
fn is_qualified_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn verdict(reasons: Vec<String>) -> Result<(), String> {
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("; "))
    }
}

/// `IsDNS1123Label`: what namespace, Job and container names must be.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    let mut reasons = Vec::new();
    if s.len() > DNS1123_LABEL_MAX_LENGTH {
        reasons.push(format!(
            "must be no more than {DNS1123_LABEL_MAX_LENGTH} characters"
        ));
    }
    if !is_dns1123_label_shape(s) {
        reasons.push(DNS1123_LABEL_MESSAGE.to_owned());
    }
    verdict(reasons)
}

/// `IsDNS1123Subdomain`: what Secret names and label-key prefixes must be;
/// as on the API server, only the whole name's length is bounded.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    let mut reasons = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        reasons.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX_LENGTH} characters"
        ));
    }
    if !is_dns1123_subdomain_shape(s) {
        reasons.push(DNS1123_SUBDOMAIN_MESSAGE.to_owned());
    }
    verdict(reasons)
}

/// `IsQualifiedName`: what label and annotation keys must be, an optional
/// DNS-1123 subdomain prefix and `/`, then a name of at most 63 characters.
pub fn qualified_name(key: &str) -> Result<(), String> {
    let mut reasons = Vec::new();
    let name = match key.split('/').collect::<Vec<_>>().as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                reasons.push("prefix part must be non-empty".to_owned());
            } else {
                if prefix.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
                    reasons.push(format!(
                        "prefix part must be no more than {DNS1123_SUBDOMAIN_MAX_LENGTH} characters"
                    ));
                }
                if !is_dns1123_subdomain_shape(prefix) {
                    reasons.push(format!("prefix part {DNS1123_SUBDOMAIN_MESSAGE}"));
                }
            }
            *name
        }
        _ => {
            return Err(format!(
                "a qualified name {QUALIFIED_NAME_CHARSET_MESSAGE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
        }
    };
    if name.is_empty() {
        reasons.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        reasons.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX_LENGTH} characters"
        ));
    }
    if !is_qualified_name_part(name) {
        reasons.push(format!("name part {QUALIFIED_NAME_CHARSET_MESSAGE}"));
    }
    verdict(reasons)
}

/// `IsValidLabelValue`: empty, or at most 63 characters of the
/// qualified-name shape.
pub fn label_value(value: &str) -> Result<(), String> {
    let mut reasons = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        reasons.push(format!(
            "must be no more than {LABEL_VALUE_MAX_LENGTH} characters"
        ));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        reasons.push(format!(
            "a valid label must be an empty string or {QUALIFIED_NAME_CHARSET_MESSAGE}"
        ));
    }
    verdict(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_api_servers_rules() {
        assert!(dns1123_label("step-0").is_ok() && dns1123_label("a.b").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err_and(|e| e.contains("no more than 63")));
        assert!(dns1123_subdomain("ghcr-pull").is_ok() && dns1123_subdomain("a.b-c").is_ok());
        assert!(dns1123_subdomain("Bad_Name").is_err() && dns1123_subdomain("").is_err());
        assert!(dns1123_subdomain(&format!("{}.b", "a".repeat(252))).is_err());
    }

    #[test]
    fn label_keys_name_the_part_that_is_wrong() {
        assert!(qualified_name("acme.com/team").is_ok() && qualified_name("app").is_ok());
        assert!(qualified_name("-bad").is_err_and(|e| e.starts_with("name part must consist")));
        assert!(
            qualified_name("Acme.com/x").is_err_and(|e| e.starts_with("prefix part a lowercase"))
        );
        assert!(qualified_name("/x").is_err_and(|e| e == "prefix part must be non-empty"));
        assert!(qualified_name("a/b/c").is_err_and(|e| e.starts_with("a qualified name")));
        assert!(qualified_name(&"a".repeat(64)).is_err_and(|e| e.contains("no more than 63")));
    }

    #[test]
    fn label_values_may_be_empty_but_not_malformed() {
        assert!(label_value("").is_ok() && label_value("v1.2_x").is_ok());
        assert!(label_value("a/b").is_err() && label_value("-a").is_err());
        assert!(label_value(&"a".repeat(64)).is_err_and(|e| e.contains("no more than 63")));
    }
}
