//! Why a label or field selector is rejected, worded as the API server words it.

/// Why a label or field selector was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The `labelSelector` string does not follow the selector grammar.
    #[error("unable to parse label selector {selector:?}: found '{found}', expected: {expected}")]
    LabelSyntax {
        /// The whole selector string as given.
        selector: String,
        /// The token that was found where something else was expected.
        found: String,
        /// What the grammar allows at that position.
        expected: String,
    },
    /// A requirement key is not a valid qualified label name.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidLabelKey {
        /// The rejected key.
        key: String,
        /// What a valid key looks like.
        reason: String,
    },
    /// A requirement value is not a valid label value.
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidLabelValue {
        /// The key the value belongs to.
        key: String,
        /// The rejected value.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
    /// The number or form of values does not suit the operator.
    #[error("invalid values {values:?} for key {key:?} with operator '{operator}': {reason}")]
    InvalidRequirementValues {
        /// The key of the requirement.
        key: String,
        /// The operator, spelled as in the selector syntax.
        operator: String,
        /// The values that were given.
        values: Vec<String>,
        /// What the operator requires.
        reason: String,
    },
    /// A `matchExpressions` entry names an operator a `LabelSelector` does not have.
    #[error(
        "{operator:?} is not a valid label selector operator for key {key:?}; expected one of In, NotIn, Exists, DoesNotExist"
    )]
    InvalidSelectorOperator {
        /// The key of the expression.
        key: String,
        /// The rejected operator.
        operator: String,
    },
    /// A `LabelSelector` object has a member of the wrong JSON type.
    #[error("invalid label selector object: {path} is {found}, expected {expected}")]
    MalformedSelectorObject {
        /// JSON path of the offending member, e.g. `matchExpressions[0].values`.
        path: String,
        /// A short description of what was found there.
        found: String,
        /// What the member must be.
        expected: String,
    },
    /// A field selector term names a field the resource does not support.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
    /// A field selector term has no recognised operator.
    #[error(
        "invalid field selector {selector:?}: can't understand {term:?}; expected <field>=<value>, <field>==<value> or <field>!=<value>"
    )]
    FieldSyntax {
        /// The whole selector string as given.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A field selector value contains a backslash escape other than `\\`, `\,` or `\=`.
    #[error(
        "invalid field selector: invalid escape sequence {sequence:?} in value {value:?}; expected one of \\\\, \\, or \\="
    )]
    InvalidEscape {
        /// The raw (still escaped) value.
        value: String,
        /// The unrecognised escape sequence.
        sequence: String,
    },
    /// A field selector value contains a bare `,` or `=`.
    #[error(
        "invalid field selector: unescaped character '{character}' in value {value:?}; expected it escaped as '\\{character}'"
    )]
    UnescapedCharacter {
        /// The raw (still escaped) value.
        value: String,
        /// The character that must be escaped.
        character: char,
    },
}
