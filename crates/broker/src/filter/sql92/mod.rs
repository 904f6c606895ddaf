//! SQL92 property filters (RocketMQ's `filter` module, from ActiveMQ's JMS selectors): a lexer, a
//! recursive-descent parser into a small tree, and an evaluator over a message's properties.
//!
//! The language: comparisons `= <> > >= < <=`, `[NOT] BETWEEN a AND b` (bounds included),
//! `[NOT] IN ('a', 'b')`, `IS [NOT] NULL`, `[NOT] CONTAINS|STARTSWITH|ENDSWITH 'x'`, `AND`, `OR`,
//! `NOT`, parentheses, unary `+`/`-`; literals `'string'` (`''` for a quote), integers (`L`
//! suffix allowed), decimals (`1.5`, `.5`, `2E10`), `TRUE`, `FALSE`, `NULL`; `--` and `/* */`
//! comments. Keywords ignore case; property names (ASCII letters, digits, `_`, `$`) keep it. The
//! properties are those stored with the message, system ones included (`TAGS`, `KEYS`,
//! `UNIQ_KEY`, ...); all are strings, converted to numbers when compared with numbers.
//!
//! Evaluation follows RocketMQ to the letter (see [`eval`]); a message matches only when the
//! expression is TRUE: unknown (NULL) and errors (a property that is not a number where one is
//! needed) do not match. Parsing is bounded: [`MAX_EXPRESSION_BYTES`], [`MAX_DEPTH`] and
//! [`MAX_IN_ITEMS`] give clear errors, and no input can panic or overflow the stack.

mod ast;
mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use apogee_protocol::message::properties::{self, MessageProperties};
use apogee_protocol::message::record::RecordView;

use ast::Expr;

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 64 * 1024;
/// Deepest nesting of parentheses, unary operators and operators accepted.
pub const MAX_DEPTH: usize = 100;
/// Most strings in one IN list.
pub const MAX_IN_ITEMS: usize = 10_000;

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    /// 1-based character column the error points at.
    pub column: Option<usize>,
}

impl ParseError {
    fn at(column: usize, message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
            column: Some(column),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
            column: None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(
                f,
                "invalid SQL92 expression at column {c}: {}",
                self.message
            ),
            None => write!(f, "invalid SQL92 expression: {}", self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// Why evaluating an expression over a message failed (the message does not match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

/// Where an expression reads property values from.
pub trait PropertySource {
    fn property(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// The raw properties string of a stored record (`name \x01 value \x02 ...`), read in place.
#[derive(Debug, Clone, Copy)]
pub struct RawProperties<'a>(pub &'a [u8]);

impl PropertySource for RawProperties<'_> {
    fn property(&self, name: &str) -> Option<Cow<'_, str>> {
        properties::find_str(self.0, name)
    }
}

impl PropertySource for MessageProperties {
    fn property(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(Cow::Borrowed)
    }
}

impl PropertySource for HashMap<String, String> {
    fn property(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

impl PropertySource for BTreeMap<String, String> {
    fn property(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

/// A compiled SQL92 filter.
#[derive(Debug, Clone)]
pub struct Sql92Filter {
    source: String,
    expr: Expr,
}

impl PartialEq for Sql92Filter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Sql92Filter {}

impl Sql92Filter {
    pub fn compile(text: &str) -> Result<Self, ParseError> {
        if text.len() > MAX_EXPRESSION_BYTES {
            return Err(ParseError::whole(format!(
                "the expression is {} bytes long; at most {MAX_EXPRESSION_BYTES} are accepted",
                text.len()
            )));
        }
        let tokens = lexer::tokenize(text)?;
        let expr = parser::parse(&tokens)?;
        Ok(Sql92Filter {
            source: text.to_owned(),
            expr,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// TRUE, FALSE or unknown (`None`) for a message with these properties; `Err` where
    /// RocketMQ's evaluation throws.
    pub fn evaluate(&self, props: &dyn PropertySource) -> Result<Option<bool>, EvalError> {
        match eval::eval(&self.expr, props)? {
            eval::Value::Bool(b) => Ok(Some(b)),
            eval::Value::Null => Ok(None),
            other => Err(EvalError::new(format!("{other:?} is not a condition"))),
        }
    }

    /// Whether a message with these properties is delivered: only when the expression is TRUE.
    pub fn matches(&self, props: &dyn PropertySource) -> bool {
        match self.evaluate(props) {
            Ok(result) => result == Some(true),
            Err(e) => {
                tracing::trace!(expression = %self.source, error = %e, "filter evaluation failed");
                false
            }
        }
    }

    /// [`Sql92Filter::matches`] over a stored record's properties; a record that does not parse
    /// does not match.
    pub fn matches_record(&self, record: &[u8]) -> bool {
        match RecordView::parse(record) {
            Ok(view) => self.matches(&RawProperties(view.properties)),
            Err(_) => false,
        }
    }
}
