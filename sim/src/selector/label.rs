//! Label selectors (`k8s.io/apimachinery/pkg/labels`): requirements, their operators and matching, and the `LabelSelector` object form; the string grammar is in `parser`.

use std::fmt;

use serde_json::{Map, Value};

use super::error::SelectorError;

/// The operator of one label requirement.
///
/// `Equals` and `DoubleEquals` (and `In` with one value) match the same labels;
/// they are kept apart only so that a parsed selector prints back as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelOperator {
    /// `key in (a,b)`: the label is present and has one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key=value`.
    Equals,
    /// `key==value`.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>n`: the label is present, an integer, and greater than `n`.
    GreaterThan,
    /// `key<n`: the label is present, an integer, and less than `n`.
    LessThan,
}

impl LabelOperator {
    /// The spelling Kubernetes uses for this operator (`selection.Operator`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::NotIn => "notin",
            Self::Equals => "=",
            Self::DoubleEquals => "==",
            Self::NotEquals => "!=",
            Self::Exists => "exists",
            Self::DoesNotExist => "!",
            Self::GreaterThan => "gt",
            Self::LessThan => "lt",
        }
    }
}

impl fmt::Display for LabelOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated requirement of a [`LabelSelector`]; all requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    pub(super) key: String,
    pub(super) operator: LabelOperator,
    // Sorted and deduplicated: Kubernetes keeps set-based values in a set and
    // prints them sorted, and membership is all matching needs.
    pub(super) values: Vec<String>,
}

impl LabelRequirement {
    /// Validates a requirement the way `labels.NewRequirement` does.
    pub fn new(
        key: &str,
        operator: LabelOperator,
        values: Vec<String>,
    ) -> Result<Self, SelectorError> {
        validate_label_key(key)?;
        let values_error = |reason: &str| SelectorError::InvalidRequirementValues {
            key: key.to_owned(),
            operator: operator.as_str().to_owned(),
            values: values.clone(),
            reason: reason.to_owned(),
        };
        match operator {
            LabelOperator::In | LabelOperator::NotIn => {
                if values.is_empty() {
                    return Err(values_error(
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
            }
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::NotEquals => {
                if values.len() != 1 {
                    return Err(values_error(
                        "exact-match compatibility requires one single value",
                    ));
                }
            }
            LabelOperator::Exists | LabelOperator::DoesNotExist => {
                if !values.is_empty() {
                    return Err(values_error(
                        "values set must be empty for exists and does not exist",
                    ));
                }
            }
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                if values.len() != 1 {
                    return Err(values_error(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                if values.iter().any(|v| v.parse::<i64>().is_err()) {
                    return Err(values_error(
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        for value in &values {
            validate_label_value(key, value)?;
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Self {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// The label key this requirement constrains.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator of this requirement.
    pub fn operator(&self) -> LabelOperator {
        self.operator
    }

    /// The values, sorted and without duplicates.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether the labels satisfy this requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let label = labels.get(&self.key);
        // A non-string label value cannot come from a valid object; treat it as
        // present but equal to nothing, so it never satisfies a value test.
        let has_value = || {
            label
                .and_then(Value::as_str)
                .is_some_and(|v| self.values.iter().any(|w| w == v))
        };
        match self.operator {
            LabelOperator::In | LabelOperator::Equals | LabelOperator::DoubleEquals => {
                label.is_some() && has_value()
            }
            LabelOperator::NotIn | LabelOperator::NotEquals => label.is_none() || !has_value(),
            LabelOperator::Exists => label.is_some(),
            LabelOperator::DoesNotExist => label.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let actual = label
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse::<i64>().ok());
                let wanted = self.values.first().and_then(|v| v.parse::<i64>().ok());
                match (actual, wanted) {
                    (Some(actual), Some(wanted)) => {
                        if self.operator == LabelOperator::GreaterThan {
                            actual > wanted
                        } else {
                            actual < wanted
                        }
                    }
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.operator {
            LabelOperator::In => write!(f, "{} in ({values})", self.key),
            LabelOperator::NotIn => write!(f, "{} notin ({values})", self.key),
            LabelOperator::Equals => write!(f, "{}={values}", self.key),
            LabelOperator::DoubleEquals => write!(f, "{}=={values}", self.key),
            LabelOperator::NotEquals => write!(f, "{}!={values}", self.key),
            LabelOperator::Exists => write!(f, "{}", self.key),
            LabelOperator::DoesNotExist => write!(f, "!{}", self.key),
            LabelOperator::GreaterThan => write!(f, "{}>{values}", self.key),
            LabelOperator::LessThan => write!(f, "{}<{values}", self.key),
        }
    }
}

/// A conjunction of label requirements, from a `labelSelector` query
/// parameter or a `LabelSelector` object.
///
/// The default selector has no requirements and selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub(super) requirements: Vec<LabelRequirement>,
    // Only a null `LabelSelector` object produces this; the string syntax has
    // no way to say "nothing".
    pub(super) nothing: bool,
}

impl LabelSelector {
    /// The selector that selects every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that selects no object, as a null `LabelSelector` does.
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Whether this selector selects every object.
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this selector selects no object at all.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key as Kubernetes sorts them.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Converts a `LabelSelector` object (`matchLabels` and `matchExpressions`)
    /// as `metav1.LabelSelectorAsSelector` does, after the API server's
    /// validation of it.
    ///
    /// `{}` selects everything; `null` selects nothing.
    pub fn from_label_selector_object(v: &Value) -> Result<LabelSelector, SelectorError> {
        let object = match v {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(object) => object,
            other => return Err(malformed("labelSelector", other, "an object or null")),
        };
        let mut requirements = Vec::new();
        match object.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(match_labels)) => {
                for (key, value) in match_labels {
                    let Some(value) = value.as_str() else {
                        return Err(malformed(
                            &format!("matchLabels[{key:?}]"),
                            value,
                            "a string",
                        ));
                    };
                    requirements.push(LabelRequirement::new(
                        key,
                        LabelOperator::Equals,
                        vec![value.to_owned()],
                    )?);
                }
            }
            Some(other) => return Err(malformed("matchLabels", other, "an object")),
        }
        match object.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(expressions)) => {
                for (index, expression) in expressions.iter().enumerate() {
                    requirements.push(expression_requirement(index, expression)?);
                }
            }
            Some(other) => return Err(malformed("matchExpressions", other, "an array")),
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Whether the labels (a JSON object of strings) satisfy every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the object's `metadata.labels` satisfy every requirement; an
    /// object without labels is matched as having none.
    pub fn matches_object(&self, object: &Value) -> bool {
        let empty = Map::new();
        let labels = object
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        self.matches(labels)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&texts.join(","))
    }
}

fn expression_requirement(
    index: usize,
    expression: &Value,
) -> Result<LabelRequirement, SelectorError> {
    let path = format!("matchExpressions[{index}]");
    let Some(expression) = expression.as_object() else {
        return Err(malformed(&path, expression, "an object"));
    };
    let key = match expression.get("key") {
        Some(Value::String(key)) => key.as_str(),
        // A missing key is validated as the empty key, as Go's zero value is.
        None | Some(Value::Null) => "",
        Some(other) => return Err(malformed(&format!("{path}.key"), other, "a string")),
    };
    let operator = match expression.get("operator") {
        Some(Value::String(operator)) => operator.as_str(),
        None | Some(Value::Null) => "",
        Some(other) => {
            return Err(malformed(&format!("{path}.operator"), other, "a string"));
        }
    };
    let values = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => {
            let mut strings = Vec::with_capacity(values.len());
            for (i, value) in values.iter().enumerate() {
                let Some(value) = value.as_str() else {
                    return Err(malformed(&format!("{path}.values[{i}]"), value, "a string"));
                };
                strings.push(value.to_owned());
            }
            strings
        }
        Some(other) => return Err(malformed(&format!("{path}.values"), other, "an array")),
    };
    let operator = match operator {
        "In" => LabelOperator::In,
        "NotIn" => LabelOperator::NotIn,
        "Exists" => LabelOperator::Exists,
        "DoesNotExist" => LabelOperator::DoesNotExist,
        other => {
            return Err(SelectorError::InvalidSelectorOperator {
                key: key.to_owned(),
                operator: other.to_owned(),
            });
        }
    };
    // The object form words these checks as API validation does, which is
    // stricter in spirit than NewRequirement: values are "required"/"forbidden".
    let reason = match operator {
        LabelOperator::In | LabelOperator::NotIn if values.is_empty() => {
            Some("values must be specified when `operator` is 'In' or 'NotIn'")
        }
        LabelOperator::Exists | LabelOperator::DoesNotExist if !values.is_empty() => {
            Some("values may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        }
        _ => None,
    };
    if let Some(reason) = reason {
        return Err(SelectorError::InvalidRequirementValues {
            key: key.to_owned(),
            operator: operator.as_str().to_owned(),
            values,
            reason: reason.to_owned(),
        });
    }
    LabelRequirement::new(key, operator, values)
}

fn malformed(path: &str, found: &Value, expected: &str) -> SelectorError {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    SelectorError::MalformedSelectorObject {
        path: path.to_owned(),
        found: found.to_owned(),
        expected: expected.to_owned(),
    }
}

/// `validation.IsQualifiedName` on a label key, as a selector error.
pub(crate) fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    k8s_rules::names::qualified_name(key).map_err(|reason| SelectorError::InvalidLabelKey {
        key: key.to_owned(),
        reason,
    })
}

/// `validation.IsValidLabelValue` on the value of label `key`, as a selector error.
pub(crate) fn validate_label_value(key: &str, value: &str) -> Result<(), SelectorError> {
    k8s_rules::names::label_value(value).map_err(|reason| SelectorError::InvalidLabelValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    })
}
