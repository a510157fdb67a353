//! Labels and annotations of an object's metadata as `k8s.io/apimachinery/pkg/api/validation` checks them, each problem worded as the API server's field error.

use crate::names::{label_value, qualified_name};

/// `TotalAnnotationSizeLimitB`: the most bytes the keys and values of one
/// object's annotations may hold together.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// `ValidateLabels`: every key a qualified name, every value a label value.
/// `field` is where the map sits, e.g. `metadata.labels`.
pub fn labels<'a>(
    field: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in labels {
        if let Err(reason) = qualified_name(key) {
            problems.push(format!("{field}: Invalid value: {key:?}: {reason}"));
        }
        if let Err(reason) = label_value(value) {
            problems.push(format!("{field}: Invalid value: {value:?}: {reason}"));
        }
    }
    problems
}

/// `ValidateAnnotations`: every key a qualified name (in any case), and at
/// most [`TOTAL_ANNOTATION_SIZE_LIMIT`] bytes of keys and values together.
/// `field` is where the map sits, e.g. `metadata.annotations`.
pub fn annotations<'a>(
    field: &str,
    annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut size = 0;
    for (key, value) in annotations {
        size += key.len() + value.len();
        if let Err(reason) = qualified_name(&key.to_lowercase()) {
            problems.push(format!("{field}: Invalid value: {key:?}: {reason}"));
        }
    }
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        problems.push(format!(
            "{field}: Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes (got {size})"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_bounded_in_total_and_keys_are_qualified_names() {
        let big = "a".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        assert_eq!(annotations("m", [("k", big.as_str())]).len(), 1);
        assert_eq!(
            annotations("metadata.annotations", [("k", big.as_str())]),
            [format!(
                "metadata.annotations: Too long: may not be more than 262144 bytes (got {})",
                TOTAL_ANNOTATION_SIZE_LIMIT + 1
            )]
        );
        assert!(annotations("m", [("Acme.com/Team", "any value: at all")]).is_empty());
        let bad = annotations("m", [("a b", "")]);
        assert!(
            bad[0].starts_with("m: Invalid value: \"a b\": name part must consist"),
            "{bad:?}"
        );
    }

    #[test]
    fn labels_check_keys_and_values() {
        assert!(labels("l", [("app", "web")]).is_empty());
        assert_eq!(labels("l", [("-a", "b c")]).len(), 2);
    }
}
