//! Recursive descent over RocketMQ's selector grammar (`SelectorParser.jj`), loosest first:
//!
//! ```text
//! expr       := and ( OR and )*
//! and        := equality ( AND equality )*
//! equality   := comparison ( ( '=' | '<>' ) comparison | IS [NOT] NULL )*
//! comparison := unary ( ( '>' | '>=' | '<' | '<=' ) unary
//!                     | [NOT] ( CONTAINS | STARTSWITH | ENDSWITH ) string
//!                     | [NOT] BETWEEN unary AND unary
//!                     | [NOT] IN '(' string ( ',' string )* ')' )*
//! unary      := '+' unary | '-' unary | NOT unary | primary
//! primary    := literal | name | '(' expr ')'
//! ```
//!
//! As in RocketMQ, NOT binds tighter than comparisons (`NOT a = 1` is `(NOT a) = 1`), and the
//! operand checks RocketMQ makes while building the tree are made here too (only numbers are
//! ordered, NULL is not compared with `=`, IN needs a property, BETWEEN bounds are in order).
//! Unlike RocketMQ, which stops reading after the first complete expression, text left over
//! after it is an error, and so are a few forms that can never match a message.

use super::ast::{Expr, InItems, InTest, Lit, OrderOp, TextOp, TextTest};
use super::eval::compare_literals;
use super::lexer::{Keyword, Tok, Token};
use super::{ParseError, MAX_DEPTH, MAX_IN_ITEMS};

/// A subtree with its height, so that depth is checked as the tree grows.
struct Node {
    expr: Expr,
    depth: usize,
}

pub(super) fn parse(tokens: &[Token]) -> Result<Expr, ParseError> {
    let mut p = Parser {
        tokens,
        pos: 0,
        nesting: 0,
    };
    if p.peek() == &Tok::End {
        return Err(ParseError::at(1, "the expression is empty"));
    }
    let column = p.column();
    let node = p.or_expr()?;
    if p.peek() != &Tok::End {
        return Err(p.unexpected("an operator (AND, OR, =, >, ...) or the end"));
    }
    Ok(as_condition(node, column)?.expr)
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    /// Open parentheses and unary operators around the current point.
    nesting: usize,
}

impl Parser<'_> {
    fn token(&self, ahead: usize) -> Option<&Token> {
        self.tokens
            .get(self.pos + ahead)
            .or_else(|| self.tokens.last())
    }

    fn peek(&self) -> &Tok {
        self.token(0).map(|t| &t.tok).unwrap_or(&Tok::End)
    }

    fn peek2(&self) -> &Tok {
        self.token(1).map(|t| &t.tok).unwrap_or(&Tok::End)
    }

    fn column(&self) -> usize {
        self.token(0).map(|t| t.column).unwrap_or(1)
    }

    fn bump(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        tok
    }

    fn unexpected(&self, wanted: &str) -> ParseError {
        ParseError::at(
            self.column(),
            format!("expected {wanted}, found {}", self.peek().describe()),
        )
    }

    fn expect(&mut self, tok: Tok, wanted: &str) -> Result<(), ParseError> {
        if self.peek() == &tok {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    /// Runs `f` one nesting level deeper, refusing to go past [`MAX_DEPTH`] so that hostile input
    /// cannot exhaust the stack.
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.nesting >= MAX_DEPTH {
            return Err(too_deep(self.column()));
        }
        self.nesting += 1;
        let out = f(self);
        self.nesting -= 1;
        out
    }

    // The functions on the recursive path (`or_expr` down to `primary`, and the operator steps
    // that parse a right operand) keep their frames small: each level of nesting costs one of
    // each, and the nesting limit must fit a thread's stack even in a debug build. Error
    // messages and node building live in separate functions for that reason.

    fn or_expr(&mut self) -> Result<Node, ParseError> {
        let mut left = self.and_expr()?;
        while self.peek() == &Tok::Keyword(Keyword::Or) {
            left = self.logic_step(false, left)?;
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Node, ParseError> {
        let mut left = self.equality()?;
        while self.peek() == &Tok::Keyword(Keyword::And) {
            left = self.logic_step(true, left)?;
        }
        Ok(left)
    }

    #[inline(never)]
    fn logic_step(&mut self, all: bool, left: Node) -> Result<Node, ParseError> {
        let column = self.column();
        self.bump();
        let right = if all {
            self.equality()?
        } else {
            self.and_expr()?
        };
        logic(all, left, right, column)
    }

    fn equality(&mut self) -> Result<Node, ParseError> {
        let mut left = self.comparison()?;
        loop {
            left = match self.peek() {
                Tok::Eq | Tok::Ne => self.equal_step(left)?,
                Tok::Keyword(Keyword::Is) => self.is_null_step(left)?,
                _ => return Ok(left),
            };
        }
    }

    #[inline(never)]
    fn equal_step(&mut self, left: Node) -> Result<Node, ParseError> {
        let column = self.column();
        let negated = self.bump() == Tok::Ne;
        let right = self.comparison()?;
        equal_or_not(negated, left, right, column)
    }

    #[inline(never)]
    fn is_null_step(&mut self, left: Node) -> Result<Node, ParseError> {
        let column = self.column();
        self.bump();
        let negated = self.peek() == &Tok::Keyword(Keyword::Not);
        if negated {
            self.bump();
        }
        self.expect(Tok::Keyword(Keyword::Null), "NULL after IS / IS NOT")?;
        let is_null = binary(left, literal(Lit::Null), column, |l, r| {
            Expr::Equal(Box::new(l), Box::new(r))
        })?;
        if negated {
            not(is_null, column)
        } else {
            Ok(is_null)
        }
    }

    fn comparison(&mut self) -> Result<Node, ParseError> {
        let mut left = self.unary()?;
        loop {
            let negated = self.peek() == &Tok::Keyword(Keyword::Not);
            let op = if negated { self.peek2() } else { self.peek() };
            left = match op {
                Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le if !negated => self.order_step(left)?,
                Tok::Keyword(Keyword::Contains | Keyword::StartsWith | Keyword::EndsWith) => {
                    self.text_step(negated, left)?
                }
                Tok::Keyword(Keyword::Between) => self.between_step(negated, left)?,
                Tok::Keyword(Keyword::In) => self.in_step(negated, left)?,
                _ if negated => return Err(self.misplaced_not()),
                _ => return Ok(left),
            };
        }
    }

    #[inline(never)]
    fn order_step(&mut self, left: Node) -> Result<Node, ParseError> {
        let column = self.column();
        let op = match self.bump() {
            Tok::Gt => OrderOp::Gt,
            Tok::Ge => OrderOp::Ge,
            Tok::Lt => OrderOp::Lt,
            _ => OrderOp::Le,
        };
        let right = self.unary()?;
        order(op, left, right, column)
    }

    #[inline(never)]
    fn text_step(&mut self, negated: bool, left: Node) -> Result<Node, ParseError> {
        let column = self.column();
        self.skip_not(negated);
        let (op, name) = match self.bump() {
            Tok::Keyword(Keyword::Contains) => (TextOp::Contains, "CONTAINS"),
            Tok::Keyword(Keyword::StartsWith) => (TextOp::StartsWith, "STARTSWITH"),
            _ => (TextOp::EndsWith, "ENDSWITH"),
        };
        let needle = self.string_literal(name)?;
        unary(left, column, |operand| {
            Expr::Text(Box::new(TextTest {
                op,
                negated,
                operand,
                needle,
            }))
        })
    }

    #[inline(never)]
    fn between_step(&mut self, negated: bool, left: Node) -> Result<Node, ParseError> {
        let column = self.column();
        self.skip_not(negated);
        self.bump();
        let low = self.unary()?;
        self.expect(Tok::Keyword(Keyword::And), "AND between the BETWEEN bounds")?;
        let high = self.unary()?;
        between(negated, left, low, high, column)
    }

    #[inline(never)]
    fn in_step(&mut self, negated: bool, left: Node) -> Result<Node, ParseError> {
        let column = self.column();
        self.skip_not(negated);
        self.bump();
        let items = self.in_list()?;
        in_list(negated, left, items, column)
    }

    #[cold]
    #[inline(never)]
    fn misplaced_not(&self) -> ParseError {
        ParseError::at(
            self.column(),
            format!(
                "NOT here must be followed by BETWEEN, IN, CONTAINS, STARTSWITH or ENDSWITH, \
                 found {}; to negate a condition write NOT (condition)",
                self.peek2().describe()
            ),
        )
    }

    fn skip_not(&mut self, negated: bool) {
        if negated {
            self.bump();
        }
    }

    fn string_literal(&mut self, after: &str) -> Result<String, ParseError> {
        if let Tok::Str(_) = self.peek() {
            if let Tok::Str(s) = self.bump() {
                return Ok(s);
            }
        }
        Err(self.unexpected(&format!("a quoted string after {after}")))
    }

    #[inline(never)]
    fn in_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(Tok::LParen, "`(` after IN")?;
        let mut items = vec![self.string_literal("IN (")?];
        while self.peek() == &Tok::Comma {
            self.bump();
            if items.len() >= MAX_IN_ITEMS {
                return Err(ParseError::at(
                    self.column(),
                    format!("an IN list may hold at most {MAX_IN_ITEMS} strings"),
                ));
            }
            items.push(self.string_literal("`,` in an IN list")?);
        }
        self.expect(Tok::RParen, "`,` or `)` in the IN list")?;
        Ok(items)
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        match self.peek() {
            Tok::Plus | Tok::Minus | Tok::Keyword(Keyword::Not) => self.prefix_step(),
            _ => self.primary(),
        }
    }

    #[inline(never)]
    fn prefix_step(&mut self) -> Result<Node, ParseError> {
        let column = self.column();
        let op = self.bump();
        let operand = self.nested(Self::unary)?;
        match op {
            Tok::Minus => unary(operand, column, |e| Expr::Neg(Box::new(e))),
            Tok::Keyword(Keyword::Not) => not(as_condition(operand, column)?, column),
            _ => Ok(operand),
        }
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        if self.peek() == &Tok::LParen {
            return self.parenthesized();
        }
        self.operand()
    }

    #[inline(never)]
    fn parenthesized(&mut self) -> Result<Node, ParseError> {
        self.bump();
        let inner = self.nested(Self::or_expr)?;
        self.expect(Tok::RParen, "`)`")?;
        Ok(inner)
    }

    /// A literal or a property name.
    #[inline(never)]
    fn operand(&mut self) -> Result<Node, ParseError> {
        let column = self.column();
        let lit = match self.peek() {
            Tok::Ident(_) => {
                let Tok::Ident(name) = self.bump() else {
                    return Err(self.unexpected("a property name"));
                };
                return Ok(Node {
                    expr: Expr::Prop(name),
                    depth: 1,
                });
            }
            Tok::Str(s) => Lit::Str(s.clone()),
            Tok::Integer(digits) => integer(digits, column)?,
            Tok::Decimal(text) => decimal(text, column)?,
            Tok::Keyword(Keyword::True) => Lit::Bool(true),
            Tok::Keyword(Keyword::False) => Lit::Bool(false),
            Tok::Keyword(Keyword::Null) => Lit::Null,
            _ => return Err(self.unexpected("a value, a property name or `(`")),
        };
        self.bump();
        Ok(literal(lit))
    }
}

fn too_deep(column: usize) -> ParseError {
    ParseError::at(
        column,
        format!("the expression nests deeper than {MAX_DEPTH} levels"),
    )
}

fn literal(lit: Lit) -> Node {
    Node {
        expr: Expr::Lit(lit),
        depth: 1,
    }
}

fn checked(expr: Expr, depth: usize, column: usize) -> Result<Node, ParseError> {
    if depth > MAX_DEPTH {
        return Err(too_deep(column));
    }
    Ok(Node { expr, depth })
}

fn unary(operand: Node, column: usize, f: impl FnOnce(Expr) -> Expr) -> Result<Node, ParseError> {
    checked(f(operand.expr), operand.depth + 1, column)
}

fn binary(
    left: Node,
    right: Node,
    column: usize,
    f: impl FnOnce(Expr, Expr) -> Expr,
) -> Result<Node, ParseError> {
    let depth = left.depth.max(right.depth) + 1;
    checked(f(left.expr, right.expr), depth, column)
}

fn not(operand: Node, column: usize) -> Result<Node, ParseError> {
    unary(operand, column, |e| Expr::Not(Box::new(e)))
}

/// An operand of AND, OR, NOT or the whole expression must be a condition; a bare property is
/// read as one (RocketMQ's `asBooleanExpression`).
fn as_condition(node: Node, column: usize) -> Result<Node, ParseError> {
    if node.expr.is_condition() {
        return Ok(node);
    }
    if matches!(node.expr, Expr::Prop(_)) {
        return unary(node, column, |e| Expr::Cast(Box::new(e)));
    }
    Err(ParseError::at(
        column,
        format!(
            "{} is not a condition (it does not give TRUE or FALSE)",
            node.expr.describe()
        ),
    ))
}

/// AND (`all`) or OR of two operands, flattened into one list.
fn logic(all: bool, left: Node, right: Node, column: usize) -> Result<Node, ParseError> {
    let left = as_condition(left, column)?;
    let right = as_condition(right, column)?;
    let split = |e: Expr| -> Result<Vec<Expr>, Expr> {
        match e {
            Expr::And(v) if all => Ok(v),
            Expr::Or(v) if !all => Ok(v),
            other => Err(other),
        }
    };
    let (mut items, mut depth) = match split(left.expr) {
        Ok(v) => (v, left.depth),
        Err(e) => (vec![e], left.depth + 1),
    };
    match split(right.expr) {
        Ok(v) => items.extend(v),
        Err(e) => items.push(e),
    }
    depth = depth.max(right.depth + 1);
    let expr = if all {
        Expr::And(items)
    } else {
        Expr::Or(items)
    };
    checked(expr, depth, column)
}

/// `=` (and `<>` before its NOT), with RocketMQ's operand checks plus one of ours: a condition on
/// the left compared with a string or a property on the right is refused, since RocketMQ fails
/// on every message it evaluates that for (a boolean cannot be converted from a string there).
fn equal(left: Node, right: Node, op: &str, column: usize) -> Result<Node, ParseError> {
    for side in [&left, &right] {
        if side.expr == Expr::Lit(Lit::Null) {
            return Err(ParseError::at(
                column,
                format!("NULL cannot be compared with {op}; use IS NULL or IS NOT NULL"),
            ));
        }
    }
    if let (Expr::Lit(Lit::Bool(_)), Expr::Lit(r)) = (&left.expr, &right.expr) {
        if !matches!(r, Lit::Bool(_)) {
            return Err(ParseError::at(
                column,
                format!(
                    "{} cannot be compared with {}",
                    left.expr.describe(),
                    right.expr.describe()
                ),
            ));
        }
    }
    if left.expr.is_condition() && matches!(right.expr, Expr::Prop(_) | Expr::Lit(Lit::Str(_))) {
        return Err(ParseError::at(
            column,
            format!(
                "{} on the left of {op} cannot be compared with {}: put the property first \
                 (`a = TRUE`), or negate a whole comparison with NOT (a = 'x')",
                left.expr.describe(),
                right.expr.describe()
            ),
        ));
    }
    binary(left, right, column, |l, r| {
        Expr::Equal(Box::new(l), Box::new(r))
    })
}

fn equal_or_not(negated: bool, left: Node, right: Node, column: usize) -> Result<Node, ParseError> {
    if negated {
        not(equal(left, right, "<>", column)?, column)
    } else {
        equal(left, right, "=", column)
    }
}

/// Only numbers, properties and negations may stand on either side of `>`, `>=`, `<`, `<=`.
fn check_ordered(operand: &Node, op: &str, column: usize) -> Result<(), ParseError> {
    let ok = match &operand.expr {
        Expr::Lit(lit) => lit.is_number(),
        e => !e.is_condition(),
    };
    if ok {
        return Ok(());
    }
    Err(ParseError::at(
        column,
        format!(
            "{} cannot be compared with {op}: only numbers are ordered",
            operand.expr.describe()
        ),
    ))
}

fn order(op: OrderOp, left: Node, right: Node, column: usize) -> Result<Node, ParseError> {
    check_ordered(&left, op.symbol(), column)?;
    check_ordered(&right, op.symbol(), column)?;
    binary(left, right, column, |l, r| {
        Expr::Order(op, Box::new(l), Box::new(r))
    })
}

/// `v BETWEEN low AND high` is `v >= low AND v <= high`; `NOT BETWEEN` is `v < low OR v > high`.
fn between(
    negated: bool,
    value: Node,
    low: Node,
    high: Node,
    column: usize,
) -> Result<Node, ParseError> {
    for operand in [&value, &low, &high] {
        check_ordered(operand, "BETWEEN", column)?;
    }
    if !negated {
        if let (Expr::Lit(l), Expr::Lit(h)) = (&low.expr, &high.expr) {
            if compare_literals(h, l) == Some(std::cmp::Ordering::Less) {
                return Err(ParseError::at(
                    column,
                    format!("BETWEEN {l} AND {h}: the lower bound is above the upper bound"),
                ));
            }
        }
    }
    let copy = Node {
        expr: value.expr.clone(),
        depth: value.depth,
    };
    let (first, second) = if negated {
        (
            order(OrderOp::Lt, value, low, column)?,
            order(OrderOp::Gt, copy, high, column)?,
        )
    } else {
        (
            order(OrderOp::Ge, value, low, column)?,
            order(OrderOp::Le, copy, high, column)?,
        )
    };
    logic(!negated, first, second, column)
}

fn in_list(
    negated: bool,
    left: Node,
    items: Vec<String>,
    column: usize,
) -> Result<Node, ParseError> {
    let Expr::Prop(prop) = left.expr else {
        return Err(ParseError::at(
            column,
            format!(
                "IN needs a property name on its left, found {}",
                left.expr.describe()
            ),
        ));
    };
    checked(
        Expr::In(Box::new(InTest {
            prop,
            items: InItems::new(items),
            negated,
        })),
        2,
        column,
    )
}

/// An integer literal: a 32-bit one when it fits, else 64-bit.
fn integer(digits: &str, column: usize) -> Result<Lit, ParseError> {
    let v: i64 = digits.parse().map_err(|_| {
        ParseError::at(
            column,
            format!("{digits} is out of range (at most {})", i64::MAX),
        )
    })?;
    Ok(match i32::try_from(v) {
        Ok(small) => Lit::Int(small),
        Err(_) => Lit::Long(v),
    })
}

/// A decimal literal. RocketMQ also refuses those below `Double.MIN_VALUE`, which takes 0.0 with
/// them; zero is accepted here.
fn decimal(text: &str, column: usize) -> Result<Lit, ParseError> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Lit::Double(v)),
        _ => Err(ParseError::at(
            column,
            format!("{text} is out of range for a double"),
        )),
    }
}
