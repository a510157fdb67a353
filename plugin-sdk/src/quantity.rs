//! Kubernetes quantities (`512Mi`, `8Gi`, `1500m`): parsed and compared as the API server reads them, from settings and from containers' resources.
//!
//! ```
//! use plugin_sdk::quantity;
//!
//! let max = quantity::parse("8Gi").unwrap();
//! assert!(quantity::parse("12Gi").unwrap() > max);
//! assert!(quantity::parse("8192Mi").unwrap() == max);
//! assert_eq!(quantity::bytes("1Ki").unwrap(), 1024);
//! assert!(quantity::parse("1500m").unwrap() > quantity::parse("1").unwrap());
//! ```

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;

use crate::Error;

/// A parsed quantity: ordered and compared by value (`1Gi == 1024Mi`),
/// with arithmetic. From the `kube_quantity` crate.
pub use kube_quantity::ParsedQuantity;

/// What a quantity looks like, for error messages.
const EXPECTED: &str = "expected a number with an optional suffix (Ki Mi Gi Ti Pi Ei, k M G T P E, or m), such as 512Mi, 8Gi or 1500m";

/// Parses a quantity as the API server does; the error names the text and
/// what was expected.
pub fn parse(text: &str) -> Result<ParsedQuantity, Error> {
    // The crate tolerates surrounding blanks and a missing number (`Gi`);
    // the API server refuses both.
    let number = text.trim_start_matches(['+', '-']);
    let starts_with_number = number.starts_with(|c: char| c.is_ascii_digit())
        || number
            .strip_prefix('.')
            .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()));
    if text.trim() != text || !starts_with_number {
        return Err(invalid(text));
    }
    ParsedQuantity::try_from(text).map_err(|_| invalid(text))
}

/// A Kubernetes [`Quantity`] (as found in the Job), parsed.
pub fn of(quantity: &Quantity) -> Result<ParsedQuantity, Error> {
    parse(&quantity.0)
}

/// A quantity of bytes as a whole number (`1Ki` → 1024, `1k` → 1000), like
/// Rego's `units.parse_bytes`; an error when it is negative, fractional or
/// beyond `u64`.
pub fn bytes(text: &str) -> Result<u64, Error> {
    let q = parse(text)?;
    q.to_bytes_f64()
        .filter(|b| *b >= 0.0 && b.fract() == 0.0)
        .and_then(|_| q.to_bytes_u64())
        .ok_or_else(|| {
            Error::new(format!(
                "{text:?} is not a whole number of bytes; expected a quantity such as 512Mi or 8Gi"
            ))
        })
}

/// The container's request of `resource` (`"memory"`, `"cpu"`,
/// `"ephemeral-storage"`...), if it sets one. An error names the container
/// when the value does not parse.
pub fn request(container: &Container, resource: &str) -> Result<Option<ParsedQuantity>, Error> {
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    read(
        container,
        "requests",
        requests.and_then(|m| m.get(resource)),
        resource,
    )
}

/// The container's limit of `resource`, if it sets one.
pub fn limit(container: &Container, resource: &str) -> Result<Option<ParsedQuantity>, Error> {
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    read(
        container,
        "limits",
        limits.and_then(|m| m.get(resource)),
        resource,
    )
}

fn read(
    container: &Container,
    kind: &str,
    value: Option<&Quantity>,
    resource: &str,
) -> Result<Option<ParsedQuantity>, Error> {
    value
        .map(|q| {
            of(q).map_err(|e| {
                Error::new(format!(
                    "container {:?}: resources.{kind}.{resource}: {e}",
                    container.name
                ))
            })
        })
        .transpose()
}

/// Reads a quantity in settings, from a string (`"8Gi"`) or a plain number
/// (`8`): `#[serde(deserialize_with = "plugin_sdk::quantity::deserialize")]`.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ParsedQuantity, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Text(String),
        Number(serde_json::Number),
    }
    let text = match Text::deserialize(d)? {
        Text::Text(t) => t,
        Text::Number(n) => n.to_string(),
    };
    parse(&text).map_err(serde::de::Error::custom)
}

fn invalid(text: &str) -> Error {
    Error::new(format!("{text:?} is not a Kubernetes quantity; {EXPECTED}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_value_across_suffixes() {
        let q = |s| parse(s).unwrap();
        assert!(q("12Gi") > q("8Gi"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert!(q("1G") < q("1Gi"));
        assert!(q("250m") < q("1"));
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(bytes("12Gi").unwrap(), 12 * 1024 * 1024 * 1024);
        assert_eq!(bytes("1e3").unwrap(), 1000);
    }

    #[test]
    fn what_the_api_server_refuses_is_an_error_naming_the_text() {
        for bad in [
            "", "12Gb", "8 Gi", " 8Gi", "Gi", "-Mi", ".Ki", "12GiB", "lots",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.message()
                    .starts_with(&format!("{bad:?} is not a Kubernetes quantity; expected")),
                "{bad:?}: {err}"
            );
        }
        assert!(
            bytes("1500m")
                .unwrap_err()
                .message()
                .contains("not a whole number of bytes")
        );
        assert!(bytes("-1Ki").is_err());
    }

    #[test]
    fn containers_requests_and_limits_are_read_and_bad_ones_name_the_container() {
        let job = crate::testing::jobs::basic();
        let setup = crate::containers::all(&job)
            .next()
            .unwrap()
            .container
            .clone();
        assert_eq!(
            request(&setup, "memory").unwrap(),
            Some(parse("12Gi").unwrap())
        );
        assert_eq!(limit(&setup, "cpu").unwrap(), None);

        let mut bad = setup.clone();
        bad.resources
            .as_mut()
            .unwrap()
            .limits
            .as_mut()
            .unwrap()
            .insert("memory".into(), Quantity("12 GB".into()));
        let err = limit(&bad, "memory").unwrap_err();
        assert!(
            err.message().starts_with(
                "container \"setup-workspace\": resources.limits.memory: \"12 GB\" is not"
            ),
            "{err}"
        );
    }

    #[test]
    fn settings_take_quantities_as_text_or_numbers() {
        #[derive(Deserialize)]
        struct S {
            #[serde(deserialize_with = "deserialize")]
            max: ParsedQuantity,
        }
        let s: S = serde_json::from_str(r#"{"max": "8Gi"}"#).unwrap();
        assert_eq!(s.max, parse("8Gi").unwrap());
        let s: S = serde_json::from_str(r#"{"max": 2}"#).unwrap();
        assert_eq!(s.max, parse("2").unwrap());
        let err = serde_json::from_str::<S>(r#"{"max": "8GB"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("\"8GB\" is not a Kubernetes quantity"),
            "{err}"
        );
    }
}
