//! Kubernetes resource quantities (`resource.Quantity`) as exact integers in the unit the scheduler and validation compare; no knowledge of pods or nodes.

// Quantities are converted to exact integers here (millicores for `cpu`,
// whole units for everything else, both rounded up as
// `Quantity.MilliValue()`/`Value()` do) rather than with `kube_quantity`:
// that crate converts between binary and decimal suffixes through `f32`, so
// `1073741824` compares below `1Gi` and sums drift, which would make exact
// fits depend on how the requests are spelled.

use serde_json::Value;

/// A quantity in the unit the scheduler compares: millicores for `cpu`
/// (`MilliValue()`), whole units for anything else (`Value()`).
pub fn resource_amount(name: &str, quantity: &Value) -> Option<i128> {
    let scale = if name == "cpu" { 3 } else { 0 };
    match quantity {
        Value::String(text) => scaled_quantity(text, scale),
        // A number is what a quantity written unquoted in YAML becomes.
        Value::Number(number) => scaled_quantity(&number.to_string(), scale),
        _ => None,
    }
}

/// Parses a Kubernetes quantity (`resource.ParseQuantity`'s grammar: an
/// optionally signed decimal number, then a binary-SI, decimal-SI or
/// `e`/`E` exponent suffix) and returns `ceil(value × 10^scale)` exactly;
/// `None` if it does not parse or does not fit an `i128`.
pub fn scaled_quantity(text: &str, scale: i32) -> Option<i128> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'+' => (false, &text[1..]),
        b'-' => (true, &text[1..]),
        _ => (false, text),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(digit - b'0'))?;
    }
    let mut exponent = scale - i32::try_from(fraction.len()).ok()?;
    let mut binary_shift = 0;
    match suffix {
        "" => {}
        "n" => exponent -= 9,
        "u" => exponent -= 6,
        "m" => exponent -= 3,
        "k" => exponent += 3,
        "M" => exponent += 6,
        "G" => exponent += 9,
        "T" => exponent += 12,
        "P" => exponent += 15,
        "E" => exponent += 18,
        "Ki" => binary_shift = 10,
        "Mi" => binary_shift = 20,
        "Gi" => binary_shift = 30,
        "Ti" => binary_shift = 40,
        "Pi" => binary_shift = 50,
        "Ei" => binary_shift = 60,
        _ => {
            let digits = suffix.strip_prefix(['e', 'E'])?;
            let unsigned_digits = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned_digits.is_empty() || !unsigned_digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            exponent = exponent.checked_add(digits.parse::<i32>().ok()?)?;
        }
    }
    let mut numerator = mantissa.checked_mul(1_i128.checked_shl(binary_shift)?)?;
    let mut denominator: i128 = 1;
    if exponent >= 0 {
        numerator = numerator.checked_mul(10_i128.checked_pow(exponent.unsigned_abs())?)?;
    } else {
        denominator = 10_i128.checked_pow(exponent.unsigned_abs())?;
    }
    let truncated = numerator / denominator;
    // Rounding up, as Quantity.Value() and MilliValue() do: away from zero
    // for a positive value, towards zero for a negative one.
    Some(if negative {
        -truncated
    } else {
        truncated + i128::from(numerator % denominator != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_convert_exactly() {
        let bytes = |s: &str| scaled_quantity(s, 0);
        let milli = |s: &str| scaled_quantity(s, 3);
        assert_eq!(bytes("1Gi"), Some(1_073_741_824));
        assert_eq!(bytes("1073741824"), bytes("1Gi"));
        assert_eq!(bytes("16393232Ki"), Some(16_786_669_568));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1.5Gi"), Some(1_610_612_736));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("2E-1"), Some(1));
        assert_eq!(bytes("+5"), Some(5));
        assert_eq!(milli("0.5"), milli("500m"));
        assert_eq!(milli("4"), Some(4000));
        assert_eq!(milli(".25"), Some(250));
        assert_eq!(milli("1."), Some(1000));
        // Rounded up, as MilliValue() and Value() do.
        assert_eq!(milli("1n"), Some(1));
        assert_eq!(milli("100u"), Some(1));
        assert_eq!(bytes("1500m"), Some(2));
        assert_eq!(bytes("-1500m"), Some(-1));
        for bad in [
            "", "abc", "1.2.3", ".", "1Q", "1e", "1e+", "1 Gi", "Gi", "1ki",
        ] {
            assert_eq!(bytes(bad), None, "{bad}");
        }
        assert_eq!(bytes("1e100"), None);
    }
}
