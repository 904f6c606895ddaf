//! The compiled form of an expression. Parentheses leave no node; `<>`, `IS [NOT] NULL`,
//! `[NOT] BETWEEN` are rewritten into the nodes RocketMQ builds for them, so evaluation has few
//! cases. AND and OR chains are flat lists, which keeps the tree as shallow as its nesting.

use std::collections::HashSet;
use std::fmt;

/// A literal. Integers that fit 32 bits are `Int` and larger ones `Long`, as Java's parser makes
/// `Integer` and `Long`: the difference shows when a property string is converted to compare with
/// them (`Integer.valueOf` refuses "3000000000").
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Lit {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(String),
}

impl Lit {
    pub(super) fn is_number(&self) -> bool {
        matches!(self, Lit::Int(_) | Lit::Long(_) | Lit::Double(_))
    }
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Null => f.write_str("NULL"),
            Lit::Bool(true) => f.write_str("TRUE"),
            Lit::Bool(false) => f.write_str("FALSE"),
            Lit::Int(v) => write!(f, "{v}"),
            Lit::Long(v) => write!(f, "{v}"),
            Lit::Double(v) => write!(f, "{v:?}"),
            Lit::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

/// `>`, `>=`, `<`, `<=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OrderOp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl OrderOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            OrderOp::Gt => ">",
            OrderOp::Ge => ">=",
            OrderOp::Lt => "<",
            OrderOp::Le => "<=",
        }
    }
}

/// `CONTAINS`, `STARTSWITH`, `ENDSWITH` (RocketMQ 5.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// The strings of an IN list; long lists are hashed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum InItems {
    Few(Vec<String>),
    Many(HashSet<String>),
}

/// Lists longer than this are hashed.
const FEW_IN_ITEMS: usize = 8;

impl InItems {
    pub(super) fn new(items: Vec<String>) -> Self {
        if items.len() > FEW_IN_ITEMS {
            InItems::Many(items.into_iter().collect())
        } else {
            InItems::Few(items)
        }
    }

    pub(super) fn contains(&self, s: &str) -> bool {
        match self {
            InItems::Few(v) => v.iter().any(|i| i == s),
            InItems::Many(set) => set.contains(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    Lit(Lit),
    /// A message property, by its case-sensitive name.
    Prop(String),
    /// Unary minus.
    Neg(Box<Expr>),
    Not(Box<Expr>),
    /// A bare property used as a condition (`a AND b`): unknown when absent, else false, since
    /// property values are strings, never booleans.
    Cast(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// `=`, and `IS NULL` as equality with a NULL literal, with RocketMQ's null rules.
    Equal(Box<Expr>, Box<Expr>),
    Order(OrderOp, Box<Expr>, Box<Expr>),
    In(Box<InTest>),
    Text(Box<TextTest>),
}

/// `prop [NOT] IN (...)`. Boxed, like [`TextTest`], to keep [`Expr`] small: the parser's stack
/// frames, which bound how deep an expression may nest, hold many of them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct InTest {
    pub prop: String,
    pub items: InItems,
    pub negated: bool,
}

/// `operand [NOT] CONTAINS|STARTSWITH|ENDSWITH 'needle'`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TextTest {
    pub op: TextOp,
    pub negated: bool,
    pub operand: Expr,
    pub needle: String,
}

impl Expr {
    /// Whether RocketMQ types this as a condition (`BooleanExpression`): the TRUE, FALSE and NULL
    /// literals and every comparison or logic node.
    pub(super) fn is_condition(&self) -> bool {
        match self {
            Expr::Lit(lit) => matches!(lit, Lit::Bool(_) | Lit::Null),
            Expr::Prop(_) | Expr::Neg(_) => false,
            Expr::Not(_)
            | Expr::Cast(_)
            | Expr::And(_)
            | Expr::Or(_)
            | Expr::Equal(..)
            | Expr::Order(..)
            | Expr::In(_)
            | Expr::Text(_) => true,
        }
    }

    /// How an operand reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Expr::Lit(lit) => lit.to_string(),
            Expr::Prop(name) => format!("property `{name}`"),
            Expr::Neg(_) => "a negated value".into(),
            _ => "a condition".into(),
        }
    }
}
