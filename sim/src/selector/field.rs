//! Field selectors (`k8s.io/apimachinery/pkg/fields`): `field=value` and `field!=value` terms with their escapes, over the fields a resource supports.

use std::fmt;

use serde_json::Value;

use super::error::SelectorError;

/// One `field=value` or `field!=value` term of a [`FieldSelector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    field: String,
    value: String,
    negated: bool,
}

impl FieldRequirement {
    /// The dotted field path, e.g. `status.phase`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The value, unescaped.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the term is `!=` rather than `=`/`==`.
    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// Whether the object satisfies this term.
    pub fn matches(&self, object: &Value) -> bool {
        (field_value(object, &self.field) == self.value) != self.negated
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = if self.negated { "!=" } else { "=" };
        write!(
            f,
            "{}{operator}{}",
            self.field,
            escape_field_value(&self.value)
        )
    }
}

/// A conjunction of field terms from a `fieldSelector` query parameter.
///
/// The default selector has no terms and selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that selects every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Whether this selector selects every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, in the sorted order Kubernetes keeps them in.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Parses a `fieldSelector` query parameter as `fields.ParseSelector`
    /// does, then rejects fields outside `allowed` as the resource's field
    /// label conversion does.
    ///
    /// Neither fields nor values are trimmed: as in Kubernetes,
    /// `metadata.name = x` names the field `"metadata.name "`.
    pub fn parse(s: &str, allowed: &[&str]) -> Result<FieldSelector, SelectorError> {
        let mut terms = split_field_terms(s);
        // Kubernetes sorts the raw terms before parsing, which decides which
        // error is reported when several terms are bad.
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, negated, raw_value)) = split_field_term(term) else {
                return Err(SelectorError::FieldSyntax {
                    selector: s.to_owned(),
                    term: term.to_owned(),
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                value: unescape_field_value(raw_value)?,
                negated,
            });
        }
        // Syntax errors win over unsupported fields because the API server
        // only converts field labels of a selector that parsed.
        if let Some(unsupported) = requirements
            .iter()
            .find(|r| !allowed.contains(&r.field.as_str()))
        {
            return Err(SelectorError::UnsupportedField(unsupported.field.clone()));
        }
        Ok(Self { requirements })
    }

    /// Whether the object satisfies every term; a field absent from the
    /// object compares as the empty string.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(object))
    }

    /// The value `field` must equal for this selector to match, if a `=` term
    /// pins it (like `fields.Selector.RequiresExactMatch`).
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| !r.negated && r.field == field)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&texts.join(","))
    }
}

/// Splits on commas not preceded by a backslash, keeping escapes in place for
/// `unescape_field_value` to resolve.
fn split_field_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_escape = false;
    for (i, c) in s.char_indices() {
        if in_escape {
            in_escape = false;
        } else if c == '\\' {
            in_escape = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator; the field part cannot be escaped, so the
/// first `!=`, `==` or `=` is the split point (`==` before `=` so the value
/// does not keep a leading `=`).
fn split_field_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(value) = rest.strip_prefix("!=") {
            return Some((&term[..i], true, value));
        }
        if let Some(value) = rest.strip_prefix("==") {
            return Some((&term[..i], false, value));
        }
        if let Some(value) = rest.strip_prefix('=') {
            return Some((&term[..i], false, value));
        }
    }
    None
}

fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut in_escape = false;
    for c in raw.chars() {
        if in_escape {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscape {
                    value: raw.to_owned(),
                    sequence: format!("\\{c}"),
                });
            }
            value.push(c);
            in_escape = false;
            continue;
        }
        match c {
            '\\' => in_escape = true,
            ',' | '=' => {
                return Err(SelectorError::UnescapedCharacter {
                    value: raw.to_owned(),
                    character: c,
                });
            }
            _ => value.push(c),
        }
    }
    if in_escape {
        return Err(SelectorError::InvalidEscape {
            value: raw.to_owned(),
            sequence: "\\".to_owned(),
        });
    }
    Ok(value)
}

fn escape_field_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The string a field selector compares against: strings as they are,
/// booleans and numbers in their JSON spelling, anything else (absent, null,
/// arrays, objects) as the empty string.
pub(crate) fn field_value(object: &Value, path: &str) -> String {
    let mut current = object;
    for segment in path.split('.') {
        match current.get(segment) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => String::new(),
    }
}
