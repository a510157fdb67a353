//! Label and field selectors as the Kubernetes API server parses and matches them.

use std::fmt;

use serde_json::{Map, Value};

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
    key: String,
    operator: LabelOperator,
    // Sorted and deduplicated: Kubernetes keeps set-based values in a set and
    // prints them sorted, and membership is all matching needs.
    values: Vec<String>,
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
    requirements: Vec<LabelRequirement>,
    // Only a null `LabelSelector` object produces this; the string syntax has
    // no way to say "nothing".
    nothing: bool,
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

    /// Parses a `labelSelector` query parameter with the grammar of
    /// `k8s.io/apimachinery/pkg/labels.Parse`.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut parser = Parser {
            selector: s,
            tokens: lex(s),
            position: 0,
        };
        let mut requirements = parser.parse()?;
        // Stable, so repeated keys keep their written order when printed.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
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
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: TokenKind,
    text: &'a str,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a label selector into tokens, always ending with an `End` token.
///
/// Mirrors the Go lexer: identifiers run until whitespace or a special symbol,
/// so `in`/`notin` are keywords only when they stand alone, and symbols are
/// matched greedily (`!=` and `==` before `!` and `=`).
fn lex(input: &str) -> Vec<Token<'_>> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while bytes.get(pos).copied().is_some_and(is_whitespace) {
            pos += 1;
        }
        let Some(&first) = bytes.get(pos) else {
            tokens.push(Token {
                kind: TokenKind::End,
                text: "",
            });
            return tokens;
        };
        let start = pos;
        let kind = if is_special_symbol(first) {
            let second = bytes.get(pos + 1).copied();
            pos += 1;
            match (first, second) {
                (b'=', Some(b'=')) => {
                    pos += 1;
                    TokenKind::DoubleEquals
                }
                (b'!', Some(b'=')) => {
                    pos += 1;
                    TokenKind::NotEquals
                }
                (b'=', _) => TokenKind::Equals,
                (b'!', _) => TokenKind::DoesNotExist,
                (b'(', _) => TokenKind::OpenPar,
                (b')', _) => TokenKind::ClosedPar,
                (b',', _) => TokenKind::Comma,
                (b'>', _) => TokenKind::GreaterThan,
                _ => TokenKind::LessThan,
            }
        } else {
            while bytes
                .get(pos)
                .is_some_and(|&b| !is_special_symbol(b) && !is_whitespace(b))
            {
                pos += 1;
            }
            match &input[start..pos] {
                "in" => TokenKind::In,
                "notin" => TokenKind::NotIn,
                _ => TokenKind::Identifier,
            }
        };
        // Token boundaries fall on ASCII bytes, so these are char boundaries.
        tokens.push(Token {
            kind,
            text: &input[start..pos],
        });
    }
}

/// Where the parser is: keys and values may be spelled `in`/`notin`, but an
/// operator position must see them as keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    selector: &'a str,
    tokens: Vec<Token<'a>>,
    position: usize,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl<'a> Parser<'a> {
    fn token_at(&self, position: usize, context: Context) -> Token<'a> {
        let token = self.tokens.get(position).copied().unwrap_or(Token {
            kind: TokenKind::End,
            text: "",
        });
        match token.kind {
            TokenKind::In | TokenKind::NotIn if context == Context::Values => Token {
                kind: TokenKind::Identifier,
                ..token
            },
            _ => token,
        }
    }

    fn lookahead(&self, context: Context) -> Token<'a> {
        self.token_at(self.position, context)
    }

    fn consume(&mut self, context: Context) -> Token<'a> {
        let token = self.token_at(self.position, context);
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn syntax_error(&self, found: &str, expected: &str) -> SelectorError {
        SelectorError::LabelSyntax {
            selector: self.selector.to_owned(),
            found: found.to_owned(),
            expected: expected.to_owned(),
        }
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let token = self.lookahead(Context::Values);
            match token.kind {
                TokenKind::Identifier | TokenKind::DoesNotExist => {
                    requirements.push(self.parse_requirement()?);
                    let next = self.consume(Context::Values);
                    match next.kind {
                        TokenKind::End => return Ok(requirements),
                        TokenKind::Comma => {
                            let after = self.lookahead(Context::Values);
                            if !matches!(
                                after.kind,
                                TokenKind::Identifier | TokenKind::DoesNotExist
                            ) {
                                return Err(self.syntax_error(after.text, "identifier after ','"));
                            }
                        }
                        _ => return Err(self.syntax_error(next.text, "',' or 'end of string'")),
                    }
                }
                TokenKind::End => return Ok(requirements),
                _ => {
                    return Err(self.syntax_error(token.text, "!, identifier, or 'end of string'"));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        let (key, unary) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = unary {
            return LabelRequirement::new(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.parse_values()?,
            _ => vec![self.parse_exact_value()?],
        };
        LabelRequirement::new(key, operator, values)
    }

    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(&'a str, Option<LabelOperator>), SelectorError> {
        let mut token = self.consume(Context::Values);
        let mut operator = None;
        if token.kind == TokenKind::DoesNotExist {
            operator = Some(LabelOperator::DoesNotExist);
            token = self.consume(Context::Values);
        }
        if token.kind != TokenKind::Identifier {
            return Err(self.syntax_error(token.text, "identifier"));
        }
        validate_label_key(token.text)?;
        let next = self.lookahead(Context::Values).kind;
        if operator.is_none() && matches!(next, TokenKind::End | TokenKind::Comma) {
            operator = Some(LabelOperator::Exists);
        }
        Ok((token.text, operator))
    }

    fn parse_operator(&mut self) -> Result<LabelOperator, SelectorError> {
        let token = self.consume(Context::KeyAndOperator);
        match token.kind {
            TokenKind::In => Ok(LabelOperator::In),
            TokenKind::NotIn => Ok(LabelOperator::NotIn),
            TokenKind::Equals => Ok(LabelOperator::Equals),
            TokenKind::DoubleEquals => Ok(LabelOperator::DoubleEquals),
            TokenKind::NotEquals => Ok(LabelOperator::NotEquals),
            TokenKind::GreaterThan => Ok(LabelOperator::GreaterThan),
            TokenKind::LessThan => Ok(LabelOperator::LessThan),
            _ => Err(self.syntax_error(token.text, BINARY_OPERATORS)),
        }
    }

    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let open = self.consume(Context::Values);
        if open.kind != TokenKind::OpenPar {
            return Err(self.syntax_error(open.text, "'('"));
        }
        let first = self.lookahead(Context::Values);
        match first.kind {
            TokenKind::Identifier | TokenKind::Comma => {
                let values = self.parse_identifiers_list()?;
                let close = self.consume(Context::Values);
                if close.kind != TokenKind::ClosedPar {
                    return Err(self.syntax_error(close.text, "')'"));
                }
                Ok(values)
            }
            // `()` is accepted and means the single empty value.
            TokenKind::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(self.syntax_error(first.text, "',', ')' or identifier")),
        }
    }

    /// Reads `a,b,c` up to (not including) `)`; empty slots such as `(,a)`,
    /// `(a,,b)` or `(a,)` stand for the empty value, as in Kubernetes.
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let token = self.consume(Context::Values);
            match token.kind {
                TokenKind::Identifier => {
                    values.push(token.text.to_owned());
                    let next = self.lookahead(Context::Values);
                    match next.kind {
                        TokenKind::Comma => {}
                        TokenKind::ClosedPar => return Ok(values),
                        _ => return Err(self.syntax_error(next.text, "',' or ')'")),
                    }
                }
                TokenKind::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.lookahead(Context::Values).kind {
                        TokenKind::ClosedPar => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        TokenKind::Comma => {
                            self.consume(Context::Values);
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(self.syntax_error(token.text, "',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<String, SelectorError> {
        let next = self.lookahead(Context::Values);
        if matches!(next.kind, TokenKind::End | TokenKind::Comma) {
            return Ok(String::new());
        }
        let token = self.consume(Context::Values);
        if token.kind == TokenKind::Identifier {
            Ok(token.text.to_owned())
        } else {
            Err(self.syntax_error(token.text, "identifier"))
        }
    }
}

const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
const QUALIFIED_NAME_CHARSET_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the shape shared by label
/// names and non-empty label values.
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

/// Dot-separated `[a-z0-9]([-a-z0-9]*[a-z0-9])?` labels, i.e. RFC 1123.
pub(crate) fn is_dns1123_subdomain_shape(s: &str) -> bool {
    s.split('.').all(|label| {
        let bytes = label.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
            }
            _ => false,
        }
    })
}

/// `validation.IsQualifiedName`: an optional DNS-1123 subdomain prefix and `/`,
/// then a name of at most 63 characters.
pub(crate) fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let mut reasons: Vec<String> = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
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
                    reasons.push(
                        "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                            .to_owned(),
                    );
                }
            }
            *name
        }
        _ => {
            return Err(SelectorError::InvalidLabelKey {
                key: key.to_owned(),
                reason: format!(
                    "a qualified name {QUALIFIED_NAME_CHARSET_MESSAGE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
                ),
            });
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
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::InvalidLabelKey {
            key: key.to_owned(),
            reason: reasons.join("; "),
        })
    }
}

/// `validation.IsValidLabelValue`: empty, or at most 63 characters of the
/// qualified-name shape.
pub(crate) fn validate_label_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let mut reasons: Vec<String> = Vec::new();
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
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::InvalidLabelValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reasons.join("; "),
        })
    }
}

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
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => panic!("test labels must be an object"),
        }
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn matches(selector: &str, l: Value) -> bool {
        sel(selector).matches(&labels(l))
    }

    fn parse_err(s: &str) -> SelectorError {
        match LabelSelector::parse(s) {
            Ok(parsed) => panic!("{s:?} should not parse, got {parsed:?}"),
            Err(e) => e,
        }
    }

    const POD_FIELDS: &[&str] = &[
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "status.phase",
    ];

    // ---- label selector string: operators ----

    #[test]
    fn empty_and_blank_selectors_select_everything() {
        for s in ["", " ", "\t\r\n "] {
            let selector = sel(s);
            assert!(selector.is_everything(), "{s:?}");
            assert!(selector.matches(&Map::new()));
            assert!(selector.matches(&labels(json!({"a": "b"}))));
        }
    }

    #[test]
    fn equals_and_double_equals() {
        assert!(matches("app=web", json!({"app": "web"})));
        assert!(!matches("app=web", json!({"app": "db"})));
        assert!(!matches("app=web", json!({})));
        assert!(matches("app==web", json!({"app": "web", "x": "y"})));
        assert!(!matches("app==web", json!({"app": "webx"})));
    }

    #[test]
    fn not_equals_matches_absent_key() {
        assert!(matches("app!=web", json!({})));
        assert!(matches("app!=web", json!({"app": "db"})));
        assert!(!matches("app!=web", json!({"app": "web"})));
    }

    #[test]
    fn in_with_multiple_values() {
        let s = "env in (prod, staging,dev)";
        assert!(matches(s, json!({"env": "prod"})));
        assert!(matches(s, json!({"env": "staging"})));
        assert!(matches(s, json!({"env": "dev"})));
        assert!(!matches(s, json!({"env": "qa"})));
        assert!(!matches(s, json!({})));
        assert_eq!(
            sel(s).requirements()[0].values(),
            ["dev", "prod", "staging"]
        );
    }

    #[test]
    fn notin_matches_absent_key() {
        let s = "env notin (prod,staging)";
        assert!(matches(s, json!({})));
        assert!(matches(s, json!({"env": "dev"})));
        assert!(!matches(s, json!({"env": "prod"})));
        assert!(!matches(s, json!({"env": "staging"})));
    }

    #[test]
    fn exists_and_does_not_exist() {
        assert!(matches("canary", json!({"canary": ""})));
        assert!(matches("canary", json!({"canary": "true"})));
        assert!(!matches("canary", json!({})));
        assert!(matches("!canary", json!({})));
        assert!(!matches("!canary", json!({"canary": ""})));
        assert!(matches("! canary", json!({"other": "x"})));
        assert_eq!(
            sel("!canary").requirements()[0].operator(),
            LabelOperator::DoesNotExist
        );
        assert_eq!(
            sel("canary").requirements()[0].operator(),
            LabelOperator::Exists
        );
    }

    #[test]
    fn greater_and_less_than() {
        assert!(matches("replicas>2", json!({"replicas": "3"})));
        assert!(!matches("replicas>2", json!({"replicas": "2"})));
        assert!(!matches("replicas>2", json!({"replicas": "many"})));
        assert!(!matches("replicas>2", json!({})));
        assert!(matches("replicas<2", json!({"replicas": "1"})));
        assert!(!matches("replicas<2", json!({"replicas": "2"})));
        assert!(matches!(
            parse_err("replicas>two"),
            SelectorError::InvalidRequirementValues { .. }
        ));
    }

    #[test]
    fn combination_of_requirements() {
        let s = "app=web,tier notin (db),!canary";
        assert!(matches(s, json!({"app": "web"})));
        assert!(matches(s, json!({"app": "web", "tier": "frontend"})));
        assert!(!matches(s, json!({"app": "web", "tier": "db"})));
        assert!(!matches(s, json!({"app": "web", "canary": "true"})));
        assert!(!matches(s, json!({"app": "api"})));
        assert_eq!(sel(s).requirements().len(), 3);
    }

    #[test]
    fn everything_combined() {
        let s = "a=1,b==2,c!=3,d in (4,5),e notin (6),f,!g,h>7,i<8";
        let l =
            json!({"a": "1", "b": "2", "c": "0", "d": "5", "e": "0", "f": "", "h": "9", "i": "0"});
        assert!(matches(s, l.clone()));
        let mut l = labels(l);
        l.insert("g".into(), json!("x"));
        assert!(!sel(s).matches(&l));
    }

    #[test]
    fn whitespace_around_tokens_is_tolerated() {
        let s = "  app  =  web ,\ttier in ( a , b ) ,\n! canary , env notin(x)  ";
        let selector = sel(s);
        assert_eq!(selector.requirements().len(), 4);
        assert!(selector.matches(&labels(json!({"app": "web", "tier": "b"}))));
        assert!(!selector.matches(&labels(json!({"app": "web", "tier": "c"}))));
        assert!(matches("a in(b)", json!({"a": "b"})));
        assert!(matches("a!=b", json!({"a": "c"})));
        assert!(matches("a != b", json!({"a": "c"})));
    }

    #[test]
    fn empty_values() {
        assert!(matches("a=", json!({"a": ""})));
        assert!(!matches("a=", json!({"a": "x"})));
        assert!(!matches("a=", json!({})));
        assert!(matches("a==,b", json!({"a": "", "b": "x"})));
        assert!(matches("a!=", json!({"a": "x"})));
        assert!(matches("a in ()", json!({"a": ""})));
        assert_eq!(sel("a in ()").requirements()[0].values(), [""]);
        assert_eq!(sel("a in (,b)").requirements()[0].values(), ["", "b"]);
        assert_eq!(sel("a in (b,)").requirements()[0].values(), ["", "b"]);
        assert_eq!(
            sel("a in (b,,c)").requirements()[0].values(),
            ["", "b", "c"]
        );
        assert_eq!(sel("a in (b,b)").requirements()[0].values(), ["b"]);
    }

    #[test]
    fn keywords_as_keys_and_values() {
        assert!(matches("in in (in, notin)", json!({"in": "notin"})));
        assert!(matches("notin=in", json!({"notin": "in"})));
        assert!(matches("!in", json!({})));
        assert!(matches("in", json!({"in": "x"})));
        assert!(matches("inx in (y)", json!({"inx": "y"})));
    }

    #[test]
    fn prefixed_keys() {
        let s = "app.kubernetes.io/name=web,example.com/tier in (a)";
        assert!(matches(
            s,
            json!({"app.kubernetes.io/name": "web", "example.com/tier": "a"})
        ));
        let long_prefix = format!("{}.com/a", "x".repeat(249));
        assert_eq!(long_prefix.len() - 2, 253);
        assert!(LabelSelector::parse(&long_prefix).is_ok());
    }

    #[test]
    fn requirements_are_sorted_and_displayed_like_kubernetes() {
        let selector = sel("z=1, a in (c,b), !m, k, x!=y, n notin (q), g==h");
        assert_eq!(
            selector.to_string(),
            "a in (b,c),g==h,k,!m,n notin (q),x!=y,z=1"
        );
        assert_eq!(sel(&selector.to_string()), selector);
    }

    // ---- label selector string: errors ----

    #[test]
    fn syntax_errors_name_the_offending_token() {
        let cases = [
            ("a b", "b", BINARY_OPERATORS),
            ("a=b c", "c", "',' or 'end of string'"),
            ("a=b,", "", "identifier after ','"),
            ("a=b,,c", ",", "identifier after ','"),
            (",a", ",", "!, identifier, or 'end of string'"),
            ("=a", "=", "!, identifier, or 'end of string'"),
            ("!=a", "!=", "!, identifier, or 'end of string'"),
            ("a in b", "b", "'('"),
            ("a in (b", "", "',' or ')'"),
            ("a in (b c)", "c", "',' or ')'"),
            ("a in (=)", "=", "',', ')' or identifier"),
            ("a notin", "", "'('"),
            ("!", "", "identifier"),
            ("!!a", "!", "identifier"),
            ("!a=b", "=", "',' or 'end of string'"),
            ("a=b=c", "=", "',' or 'end of string'"),
            ("a===b", "=", "identifier"),
            ("a=(b)", "(", "identifier"),
            ("a!b", "!", BINARY_OPERATORS),
            ("a<=1", "=", "identifier"),
            ("a in (b,=)", "=", "',', or identifier"),
        ];
        for (input, found, expected) in cases {
            assert_eq!(
                parse_err(input),
                SelectorError::LabelSyntax {
                    selector: input.to_owned(),
                    found: found.to_owned(),
                    expected: expected.to_owned(),
                },
                "{input:?}"
            );
        }
        let message = parse_err("a b").to_string();
        assert!(
            message.contains("\"a b\"") && message.contains("'b'"),
            "{message}"
        );
    }

    #[test]
    fn invalid_keys_are_rejected() {
        let long_name = "a".repeat(64);
        let long_prefix = format!("{}/a", "a".repeat(254));
        let bad = [
            "-a",
            "a-",
            "_a",
            "a.",
            "a$b",
            "/a",
            "a/",
            "a/b/c",
            "Example.com/a",
            "ex_ample.com/a",
            "a..b/c",
            "-a.com/b",
            "é",
            long_name.as_str(),
            long_prefix.as_str(),
        ];
        for key in bad {
            for selector in [
                key.to_owned(),
                format!("!{key}"),
                format!("{key}=v"),
                format!("{key} in (v)"),
            ] {
                match parse_err(&selector) {
                    SelectorError::InvalidLabelKey { key: k, reason } => {
                        assert_eq!(k, key);
                        assert!(!reason.is_empty());
                    }
                    other => panic!("{selector:?}: unexpected {other:?}"),
                }
            }
        }
        let ok_name = "a".repeat(63);
        for key in [
            ok_name.as_str(),
            "A",
            "a.b_c-D",
            "1",
            "k8s.io/x",
            "a-b.c1/Z_z",
        ] {
            assert!(LabelSelector::parse(key).is_ok(), "{key:?}");
        }
        let message = parse_err("a/b/c").to_string();
        assert!(message.contains("\"a/b/c\""), "{message}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        let long_value = "v".repeat(64);
        for value in ["-v", "v-", ".v", "v$", "v/w", "é", long_value.as_str()] {
            for selector in [
                format!("k={value}"),
                format!("k!={value}"),
                format!("k in (ok,{value})"),
                format!("k notin ({value})"),
            ] {
                match parse_err(&selector) {
                    SelectorError::InvalidLabelValue { key, value: v, .. } => {
                        assert_eq!(key, "k");
                        assert_eq!(v, value);
                    }
                    other => panic!("{selector:?}: unexpected {other:?}"),
                }
            }
        }
        let ok_value = "v".repeat(63);
        assert!(LabelSelector::parse(&format!("k={ok_value}")).is_ok());
        assert!(LabelSelector::parse("k=A.b_c-1").is_ok());
    }

    #[test]
    fn non_string_label_values_never_match_a_value() {
        let l = labels(json!({"a": 1}));
        assert!(!sel("a=1").matches(&l));
        assert!(sel("a!=1").matches(&l));
        assert!(sel("a").matches(&l));
    }

    #[test]
    fn matches_object_reads_metadata_labels() {
        let selector = sel("app=web");
        assert!(selector.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!selector.matches_object(&json!({"metadata": {"name": "x"}})));
        assert!(sel("app!=web").matches_object(&json!({"metadata": {}})));
        assert!(sel("!app").matches_object(&json!({})));
    }

    // ---- LabelSelector objects ----

    fn from_object(v: Value) -> Result<LabelSelector, SelectorError> {
        LabelSelector::from_label_selector_object(&v)
    }

    #[test]
    fn empty_object_selects_everything_and_null_nothing() {
        let everything = from_object(json!({})).unwrap();
        assert!(everything.is_everything());
        assert!(everything.matches(&Map::new()));
        let everything = from_object(json!({"matchLabels": {}, "matchExpressions": []})).unwrap();
        assert!(everything.matches(&labels(json!({"a": "b"}))));
        let everything = from_object(json!({"matchLabels": null})).unwrap();
        assert!(everything.is_everything());

        let nothing = from_object(Value::Null).unwrap();
        assert!(nothing.is_nothing());
        assert!(!nothing.is_everything());
        assert!(!nothing.matches(&Map::new()));
        assert!(!nothing.matches(&labels(json!({"a": "b"}))));
    }

    #[test]
    fn match_labels_and_expressions() {
        let selector = from_object(json!({
            "matchLabels": {"app": "web", "tier": "frontend"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "zone", "operator": "NotIn", "values": ["us-east-1a"]},
                {"key": "team", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist", "values": []},
            ]
        }))
        .unwrap();
        assert_eq!(selector.requirements().len(), 6);
        let good = json!({"app": "web", "tier": "frontend", "env": "prod", "team": "a"});
        assert!(selector.matches(&labels(good.clone())));
        let mut l = labels(good.clone());
        l.insert("zone".into(), json!("us-east-1b"));
        assert!(selector.matches(&l));
        l.insert("zone".into(), json!("us-east-1a"));
        assert!(!selector.matches(&l));
        let mut l = labels(good.clone());
        l.insert("canary".into(), json!("1"));
        assert!(!selector.matches(&l));
        let mut l = labels(good.clone());
        l.remove("team");
        assert!(!selector.matches(&l));
        let mut l = labels(good);
        l.insert("env".into(), json!("dev"));
        assert!(!selector.matches(&l));
        assert_eq!(
            selector.to_string(),
            "app=web,!canary,env in (prod,staging),team,tier=frontend,zone notin (us-east-1a)"
        );
    }

    #[test]
    fn object_form_equals_string_form() {
        let from_obj = from_object(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
        }))
        .unwrap();
        assert_eq!(from_obj, sel("tier notin (db), app=web"));
    }

    #[test]
    fn object_form_validation() {
        let in_without_values = from_object(json!({
            "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
        }));
        assert!(matches!(
            in_without_values,
            Err(SelectorError::InvalidRequirementValues { ref key, .. }) if key == "a"
        ));
        let notin_missing_values = from_object(json!({
            "matchExpressions": [{"key": "a", "operator": "NotIn"}]
        }));
        assert!(matches!(
            notin_missing_values,
            Err(SelectorError::InvalidRequirementValues { .. })
        ));
        for op in ["Exists", "DoesNotExist"] {
            let with_values = from_object(json!({
                "matchExpressions": [{"key": "a", "operator": op, "values": ["x"]}]
            }));
            assert!(
                matches!(
                    with_values,
                    Err(SelectorError::InvalidRequirementValues { ref values, .. }) if values == &["x"]
                ),
                "{op}: {with_values:?}"
            );
        }
        for op in ["in", "Gt", "Lt", "", "Equals"] {
            let bad_op = from_object(json!({
                "matchExpressions": [{"key": "a", "operator": op, "values": ["1"]}]
            }));
            assert_eq!(
                bad_op,
                Err(SelectorError::InvalidSelectorOperator {
                    key: "a".into(),
                    operator: op.into()
                })
            );
        }
        assert!(matches!(
            from_object(json!({"matchLabels": {"-a": "b"}})),
            Err(SelectorError::InvalidLabelKey { .. })
        ));
        assert!(matches!(
            from_object(json!({"matchLabels": {"a": "b c"}})),
            Err(SelectorError::InvalidLabelValue { .. })
        ));
        assert!(matches!(
            from_object(json!({"matchExpressions": [{"key": "a/b/c", "operator": "Exists"}]})),
            Err(SelectorError::InvalidLabelKey { .. })
        ));
        assert!(matches!(
            from_object(json!({"matchExpressions": [{"operator": "Exists"}]})),
            Err(SelectorError::InvalidLabelKey { ref key, .. }) if key.is_empty()
        ));
        assert!(matches!(
            from_object(json!({
                "matchExpressions": [{"key": "a", "operator": "In", "values": ["ok", "-bad"]}]
            })),
            Err(SelectorError::InvalidLabelValue { ref value, .. }) if value == "-bad"
        ));
    }

    #[test]
    fn object_form_type_errors_name_the_path() {
        let cases = [
            (json!("app=web"), "labelSelector"),
            (json!({"matchLabels": []}), "matchLabels"),
            (json!({"matchLabels": {"a": 1}}), "matchLabels[\"a\"]"),
            (json!({"matchExpressions": {}}), "matchExpressions"),
            (json!({"matchExpressions": ["a"]}), "matchExpressions[0]"),
            (
                json!({"matchExpressions": [{"key": 1, "operator": "Exists"}]}),
                "matchExpressions[0].key",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": true}]}),
                "matchExpressions[0].operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}),
                "matchExpressions[0].values",
            ),
            (
                json!({"matchExpressions": [
                    {"key": "a", "operator": "Exists"},
                    {"key": "a", "operator": "In", "values": ["x", 2]}
                ]}),
                "matchExpressions[1].values[1]",
            ),
        ];
        for (input, expected_path) in cases {
            match from_object(input.clone()) {
                Err(SelectorError::MalformedSelectorObject { path, .. }) => {
                    assert_eq!(path, expected_path, "{input}");
                }
                other => panic!("{input}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn requirement_new_validates_like_kubernetes() {
        assert!(LabelRequirement::new("a", LabelOperator::Equals, vec![]).is_err());
        assert!(
            LabelRequirement::new("a", LabelOperator::Equals, vec!["x".into(), "y".into()])
                .is_err()
        );
        assert!(LabelRequirement::new("a", LabelOperator::In, vec![]).is_err());
        assert!(LabelRequirement::new("a", LabelOperator::Exists, vec!["x".into()]).is_err());
        assert!(LabelRequirement::new("a", LabelOperator::GreaterThan, vec!["1".into()]).is_ok());
        assert!(
            LabelRequirement::new("a", LabelOperator::LessThan, vec!["1".into(), "2".into()])
                .is_err()
        );
        let r =
            LabelRequirement::new("a", LabelOperator::NotIn, vec!["y".into(), "x".into()]).unwrap();
        assert_eq!(r.key(), "a");
        assert_eq!(r.values(), ["x", "y"]);
        assert_eq!(r.to_string(), "a notin (x,y)");
    }

    // ---- field selectors ----

    fn field_sel(s: &str) -> FieldSelector {
        FieldSelector::parse(s, POD_FIELDS).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-a", "hostNetwork": true},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn field_selector_operators() {
        let p = pod();
        assert!(field_sel("metadata.name=web-1").matches(&p));
        assert!(field_sel("metadata.name==web-1").matches(&p));
        assert!(!field_sel("metadata.name=web-2").matches(&p));
        assert!(field_sel("metadata.name!=web-2").matches(&p));
        assert!(!field_sel("metadata.name!=web-1").matches(&p));
        assert!(field_sel("status.phase=Running,spec.nodeName=node-a").matches(&p));
        assert!(!field_sel("status.phase=Running,spec.nodeName!=node-a").matches(&p));
        assert!(field_sel("metadata.namespace=default").matches(&p));
    }

    #[test]
    fn empty_field_selector_selects_everything() {
        for s in ["", ",", ",,"] {
            let selector = field_sel(s);
            assert!(selector.is_everything(), "{s:?}");
            assert!(selector.matches(&json!({})));
        }
        assert_eq!(field_sel("status.phase=Running,").requirements().len(), 1);
    }

    #[test]
    fn absent_field_is_empty_string() {
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(field_sel("spec.nodeName=").matches(&unscheduled));
        assert!(field_sel("spec.nodeName==").matches(&unscheduled));
        assert!(!field_sel("spec.nodeName!=").matches(&unscheduled));
        assert!(field_sel("spec.nodeName!=node-a").matches(&unscheduled));
        assert!(!field_sel("spec.nodeName=node-a").matches(&unscheduled));
        assert!(field_sel("status.phase=").matches(&json!({"status": null})));
        assert!(field_sel("status.phase=").matches(&json!("not an object")));
    }

    #[test]
    fn non_string_fields_use_json_spelling() {
        let selector =
            FieldSelector::parse("spec.hostNetwork=true", &["spec.hostNetwork"]).unwrap();
        assert!(selector.matches(&pod()));
        let selector = FieldSelector::parse("spec.replicas=3", &["spec.replicas"]).unwrap();
        assert!(selector.matches(&json!({"spec": {"replicas": 3}})));
    }

    #[test]
    fn field_selector_escapes() {
        let selector = field_sel(r"metadata.name=a\,b\=c\\d");
        assert_eq!(selector.requirements()[0].value(), r"a,b=c\d");
        assert!(selector.matches(&json!({"metadata": {"name": "a,b=c\\d"}})));
        assert_eq!(selector.to_string(), r"metadata.name=a\,b\=c\\d");

        // An escaped comma does not split terms; an escaped backslash before a
        // comma does.
        let selector = field_sel(r"metadata.name=x\\,status.phase=Running");
        assert_eq!(selector.requirements().len(), 2);
        assert_eq!(selector.exact_match("metadata.name"), Some("x\\"));

        assert_eq!(
            FieldSelector::parse(r"metadata.name=a\b", POD_FIELDS),
            Err(SelectorError::InvalidEscape {
                value: r"a\b".into(),
                sequence: r"\b".into()
            })
        );
        assert_eq!(
            FieldSelector::parse(r"metadata.name=a\", POD_FIELDS),
            Err(SelectorError::InvalidEscape {
                value: r"a\".into(),
                sequence: r"\".into()
            })
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=a=b", POD_FIELDS),
            Err(SelectorError::UnescapedCharacter {
                value: "a=b".into(),
                character: '='
            })
        );
        // `===` splits at `==`, leaving a bare `=` in the value.
        assert!(matches!(
            FieldSelector::parse("metadata.name===a", POD_FIELDS),
            Err(SelectorError::UnescapedCharacter { character: '=', .. })
        ));
    }

    #[test]
    fn field_selector_syntax_errors() {
        for s in ["metadata.name", "status.phase=Running,bogus", "a<b"] {
            match FieldSelector::parse(s, POD_FIELDS) {
                Err(SelectorError::FieldSyntax { selector, term }) => {
                    assert_eq!(selector, s);
                    assert!(s.contains(&term));
                }
                other => panic!("{s:?}: unexpected {other:?}"),
            }
        }
        let message = FieldSelector::parse("metadata.name", POD_FIELDS)
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"metadata.name\""), "{message}");
    }

    #[test]
    fn unsupported_field_uses_api_server_wording() {
        let err = FieldSelector::parse("spec.foo=bar", POD_FIELDS).unwrap_err();
        assert_eq!(err, SelectorError::UnsupportedField("spec.foo".into()));
        assert_eq!(err.to_string(), "field label not supported: spec.foo");
        // No trimming: the space is part of the field name.
        assert_eq!(
            FieldSelector::parse("metadata.name =x", POD_FIELDS).unwrap_err(),
            SelectorError::UnsupportedField("metadata.name ".into())
        );
        // Terms are sorted before checking, so the first bad field in sorted
        // order is the one reported.
        assert_eq!(
            FieldSelector::parse("z.z=1,a.a=1", POD_FIELDS).unwrap_err(),
            SelectorError::UnsupportedField("a.a".into())
        );
        // A syntax error anywhere wins over an unsupported field.
        assert!(matches!(
            FieldSelector::parse("a.a=1,zzz", POD_FIELDS).unwrap_err(),
            SelectorError::FieldSyntax { .. }
        ));
        assert!(FieldSelector::parse("metadata.name=x", &[]).is_err());
    }

    #[test]
    fn field_selector_display_and_exact_match() {
        let selector = field_sel("status.phase!=Failed,metadata.name=web");
        assert_eq!(
            selector.to_string(),
            "metadata.name=web,status.phase!=Failed"
        );
        assert_eq!(selector.exact_match("metadata.name"), Some("web"));
        assert_eq!(selector.exact_match("status.phase"), None);
        let r = &selector.requirements()[1];
        assert_eq!(
            (r.field(), r.value(), r.is_negated()),
            ("status.phase", "Failed", true)
        );
    }

    #[test]
    fn error_messages_include_offending_input() {
        let cases: Vec<(SelectorError, &str)> = vec![
            (parse_err("a in (b c)"), "'c'"),
            (parse_err("-bad=x"), "\"-bad\""),
            (parse_err("k=-bad"), "\"-bad\""),
            (
                from_object(
                    json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
                )
                .unwrap_err(),
                "\"Gt\"",
            ),
            (
                FieldSelector::parse(r"metadata.name=\q", POD_FIELDS).unwrap_err(),
                r#""\\q""#,
            ),
        ];
        for (err, needle) in cases {
            let message = err.to_string();
            assert!(
                message.contains(needle),
                "{message} should contain {needle}"
            );
        }
    }
}
