//! Parsers for the forms configuration values take (lists, maps, quantities, durations, strict Kubernetes JSON); each returns the expected form on failure.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube_quantity::ParsedQuantity;
use serde::de::DeserializeOwned;

/// A comma-separated list; whitespace around items is ignored, empty items dropped.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `key=value` pairs separated by commas (a node selector).
pub fn key_values(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for item in list(value) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "{item:?} is not key=value; expected a comma-separated list such as foo=bar,app=my-app"
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        if k8s_rules::names::qualified_name(k).is_err() {
            return Err(format!(
                "{k:?} is not a valid label key; expected an optional DNS prefix and '/', then at most 63 characters of [A-Za-z0-9._-]"
            ));
        }
        if k8s_rules::names::label_value(v).is_err() {
            return Err(format!(
                "{v:?} (for {k}) is not a valid label value; expected at most 63 characters of [A-Za-z0-9._-], starting and ending with a letter or digit"
            ));
        }
        map.insert(k.to_owned(), v.to_owned());
    }
    Ok(map)
}

/// A Kubernetes quantity (`500m`, `12Gi`, `1e3`), checked by a real quantity parser.
pub fn quantity(value: &str) -> Result<(Quantity, ParsedQuantity), String> {
    let q = Quantity(value.trim().to_owned());
    match ParsedQuantity::try_from(&q) {
        Ok(parsed) if !value.trim().starts_with('-') => Ok((q, parsed)),
        _ => Err(format!(
            "{value:?} is not a Kubernetes quantity; expected e.g. 500m, 2, 12Gi or 1.5G"
        )),
    }
}

/// A duration as Go writes them (`1s`, `30m`, `1h30m`, `250ms`).
pub fn duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .map_err(|e| format!("{value:?} is not a duration ({e}); expected e.g. 1s, 30m or 1h30m"))
}

/// Bounds the durations' ranges are written with.
pub const MILLIS_10: Duration = Duration::from_millis(10);
/// One second.
pub const SECOND: Duration = Duration::from_secs(1);
/// One hour.
pub const HOUR: Duration = Duration::from_secs(3600);
/// One day.
pub const DAY: Duration = Duration::from_secs(86_400);
/// One week.
pub const WEEK: Duration = Duration::from_secs(7 * 86_400);
/// 365 days.
pub const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// A duration within `range`: timers built from one outside it would
/// busy-loop (zero) or overflow the clock (years).
pub fn duration_in(
    value: &str,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let d = duration(value)?;
    if range.contains(&d) {
        return Ok(d);
    }
    Err(format!(
        "{value:?} is out of range; expected a duration from {} to {}",
        humantime::format_duration(*range.start()),
        humantime::format_duration(*range.end())
    ))
}

/// A boolean as Go's `strconv.ParseBool` reads it.
pub fn boolean(value: &str) -> Result<bool, String> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!(
            "{other:?} is not a boolean; expected true or false"
        )),
    }
}

/// A whole number within `range`.
pub fn integer(value: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    match value.trim().parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "{value:?} is out of range; expected a whole number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

/// JSON read strictly into a Kubernetes type: syntax errors, type errors and
/// unknown fields are all errors, each with the path where it happened.
pub fn strict_json<T: DeserializeOwned>(value: &str, expected: &str) -> Result<T, String> {
    // Tracking the path of every value costs as much as the parse itself
    // (it checks each plugin's Job on the admission path): parse without it,
    // and again with it only to say where a document that fails went wrong.
    let mut unknown = false;
    let mut json = serde_json::Deserializer::from_str(value);
    let mut note = |_: serde_ignored::Path<'_>| unknown = true;
    let parsed = T::deserialize(serde_ignored::Deserializer::new(&mut json, &mut note));
    if let Ok(parsed) = parsed
        && json.end().is_ok()
        && !unknown
    {
        return Ok(parsed);
    }
    let mut unknown = Vec::new();
    let mut json = serde_json::Deserializer::from_str(value);
    let mut record =
        |path: serde_ignored::Path<'_>| unknown.push(k8s_rules::field_path::dotted(&path));
    let ignoring = serde_ignored::Deserializer::new(&mut json, &mut record);
    let parsed: T = serde_path_to_error::deserialize(ignoring).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            String::new()
        } else {
            format!(" at {at}")
        };
        format!("is not {expected}{at}: {}", e.inner())
    })?;
    json.end().map_err(|e| format!("is not {expected}: {e}"))?;
    if !unknown.is_empty() {
        return Err(format!(
            "has unknown field(s) {}; expected {expected}",
            unknown.join(", ")
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorRequirement;

    #[test]
    fn lists_and_maps_tolerate_whitespace() {
        assert_eq!(list(" a, b ,,c "), ["a", "b", "c"]);
        let m = key_values(" foo = bar , app=my-app,").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["foo"], "bar");
        assert!(
            key_values("foo")
                .unwrap_err()
                .contains("\"foo\" is not key=value")
        );
        assert!(
            key_values("a=b c")
                .unwrap_err()
                .contains("not a valid label value")
        );
    }

    #[test]
    fn quantities_durations_booleans_integers() {
        assert!(quantity("12Gi").is_ok() && quantity("500m").is_ok() && quantity("1.5").is_ok());
        assert!(
            quantity("12GB")
                .unwrap_err()
                .contains("not a Kubernetes quantity")
        );
        assert!(quantity("-1").is_err());
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(duration("soon").is_err());
        let day = Duration::from_secs(86_400);
        assert_eq!(
            duration_in("1h", Duration::ZERO..=day).unwrap(),
            Duration::from_secs(3600)
        );
        let err = duration_in("500000000000y", Duration::ZERO..=day).unwrap_err();
        assert!(
            err.contains("out of range") && err.contains("1day"),
            "{err}"
        );
        assert!(duration_in("0s", Duration::from_millis(10)..=day).is_err());
        assert!(boolean("True").unwrap() && !boolean("0").unwrap() && boolean("yes").is_err());
        assert_eq!(integer("1200", 1..=i64::MAX).unwrap(), 1200);
        assert!(integer("0", 1..=10).unwrap_err().contains("from 1 to 10"));
    }

    #[test]
    fn strict_json_names_the_path_of_every_problem() {
        let ok: Vec<NodeSelectorRequirement> = strict_json(
            r#"[{"key": "foo", "operator": "In", "values": ["bar"]}]"#,
            "a list",
        )
        .unwrap();
        assert_eq!(ok[0].key, "foo");
        // k8s-openapi defaults missing required fields; the misspelt one is reported.
        let err = strict_json::<Vec<NodeSelectorRequirement>>(
            r#"[{"key": "foo", "operater": "In"}]"#,
            "a list",
        )
        .unwrap_err();
        assert!(err.contains("unknown field(s) [0].operater"), "{err}");
        let err =
            strict_json::<Vec<NodeSelectorRequirement>>(r#"[{"key": 3}]"#, "a list").unwrap_err();
        assert!(err.contains("at [0].key: invalid type"), "{err}");
        let err = strict_json::<Vec<NodeSelectorRequirement>>(
            r#"[{"key": "foo", "operator": "In", "valuez": []}]"#,
            "a list",
        )
        .unwrap_err();
        assert!(err.contains("unknown field(s) [0].valuez"), "{err}");
        let err = strict_json::<Vec<NodeSelectorRequirement>>("[{", "a list").unwrap_err();
        assert!(err.starts_with("is not a list"), "{err}");
        let err = strict_json::<Vec<NodeSelectorRequirement>>("[] []", "a list").unwrap_err();
        assert!(err.contains("trailing characters"), "{err}");
    }
}
