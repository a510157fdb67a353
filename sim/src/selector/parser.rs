//! The label selector string grammar of `labels.Parse`: the lexer, the recursive-descent parser, and the errors that name the offending token.

use super::error::SelectorError;
use super::label::{LabelOperator, LabelRequirement, LabelSelector, validate_label_key};

impl LabelSelector {
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

pub(super) const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

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
