//! `IntOrString` values as the apps controllers read them: `maxSurge` and `maxUnavailable` as counts or percentages of the desired replicas, rounded as the real deployment controller rounds them.

use serde_json::Value;

/// Why an `IntOrString` cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IntStrError {
    /// Neither an integer nor `<n>%`.
    #[error("invalid value for IntOrString: invalid type: string is not a percentage")]
    NotPercent,
}

/// `value` scaled against `total`: an integer as it is, a percentage of
/// `total` rounded up or down (`GetScaledValueFromIntOrPercent`).
pub fn scaled(value: &Value, total: i64, round_up: bool) -> Result<i64, IntStrError> {
    if let Some(n) = value.as_i64() {
        return Ok(n);
    }
    let s = value.as_str().ok_or(IntStrError::NotPercent)?;
    let percent: i64 = s
        .strip_suffix('%')
        .and_then(|p| p.parse().ok())
        .ok_or(IntStrError::NotPercent)?;
    let product = percent * total;
    Ok(if round_up {
        (product + 99).div_euclid(100)
    } else {
        product.div_euclid(100)
    })
}

/// A Deployment's `maxSurge` (rounded up) and `maxUnavailable` (rounded
/// down) for `replicas`; when both come to 0, `maxUnavailable` is 1, as in
/// the real `ResolveFenceposts`.
pub fn fenceposts(rolling: &Value, replicas: i64) -> (i64, i64) {
    let surge = scaled(&rolling["maxSurge"], replicas, true).unwrap_or(0);
    let unavailable = scaled(&rolling["maxUnavailable"], replicas, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        let rolling = json!({"maxSurge": "25%", "maxUnavailable": "25%"});
        assert_eq!(fenceposts(&rolling, 2), (1, 0));
        assert_eq!(fenceposts(&rolling, 10), (3, 2));
    }

    #[test]
    fn zero_surge_and_zero_unavailable_allow_one_unavailable() {
        assert_eq!(
            fenceposts(&json!({"maxSurge": 0, "maxUnavailable": "0%"}), 3),
            (0, 1)
        );
    }

    #[test]
    fn a_string_without_percent_sign_is_refused() {
        assert_eq!(scaled(&json!("3"), 10, true), Err(IntStrError::NotPercent));
    }
}
