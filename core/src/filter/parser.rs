//! Recursive-descent parser for the selector grammar (see the module docs of [`super`]), with
//! RocketMQ's compile-time checks (`ComparisonExpression.checkLessThanOperand` and friends).
//!
//! Both the parser's recursion and the depth of the tree it builds are bounded by [`MAX_DEPTH`],
//! so neither parsing, evaluating nor dropping an expression can exhaust the stack. AND and OR
//! chains are kept flat, so `a = 1 OR a = 2 OR …` costs no depth however long.

use super::eval::{compare_values, Value};
use super::lexer::{Kind, Token};
use super::FilterError;

/// The deepest nesting (parentheses, unary operators, chained comparisons) a selector may have.
pub const MAX_DEPTH: usize = 100;

/// A `>`, `>=`, `<` or `<=` comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// A string test with a literal: `CONTAINS`, `STARTSWITH`, `ENDSWITH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// A parsed selector expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Constant(Value),
    Property(String),
    Negate(Box<Expr>),
    Not(Box<Expr>),
    /// A property used where a boolean is expected: TRUE only for a boolean value, which a
    /// property (a string) never is.
    BooleanCast(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Equal(Box<Expr>, Box<Expr>),
    Compare(CompareOp, Box<Expr>, Box<Expr>),
    In {
        property: String,
        values: Vec<String>,
        negated: bool,
    },
    StringTest {
        op: StringOp,
        operand: Box<Expr>,
        literal: String,
        negated: bool,
    },
}

impl Expr {
    /// Whether this is a `BooleanExpression` in RocketMQ's sense.
    fn is_boolean(&self) -> bool {
        match self {
            Expr::Constant(v) => matches!(v, Value::Bool(_) | Value::Null),
            Expr::Property(_) | Expr::Negate(_) => false,
            _ => true,
        }
    }

    fn describe(&self) -> String {
        match self {
            Expr::Constant(v) => v.describe(),
            Expr::Property(name) => name.clone(),
            _ => "a boolean expression".to_owned(),
        }
    }
}

/// An expression with the depth of its tree.
struct Node {
    expr: Expr,
    depth: usize,
}

struct Parser<'t> {
    tokens: &'t [Token],
    next: usize,
    nesting: usize,
}

fn error(message: impl Into<String>, position: usize) -> FilterError {
    FilterError {
        message: message.into(),
        position,
    }
}

/// Parses a token stream ending in [`Kind::End`] into a boolean expression.
pub(super) fn parse(tokens: &[Token], text_len: usize) -> Result<Expr, FilterError> {
    if tokens.is_empty() {
        return Err(error("empty selector", 0));
    }
    let mut p = Parser {
        tokens,
        next: 0,
        nesting: 0,
    };
    let start = p.position();
    let node = p.or()?;
    let end = p.peek();
    if end.kind != Kind::End {
        return Err(error(
            format!("unexpected {}, expected an operator", end.kind.describe()),
            end.position,
        ));
    }
    let _ = text_len;
    Ok(as_boolean(node, start)?.expr)
}

/// RocketMQ's `asBooleanExpression`: a property becomes a boolean cast, other non-boolean
/// operands are refused.
fn as_boolean(node: Node, position: usize) -> Result<Node, FilterError> {
    if node.expr.is_boolean() {
        return Ok(node);
    }
    if let Expr::Property(_) = node.expr {
        return Ok(Node {
            depth: node.depth + 1,
            expr: Expr::BooleanCast(Box::new(node.expr)),
        });
    }
    Err(error(
        format!(
            "Expression will not result in a boolean value: {}",
            node.expr.describe()
        ),
        position,
    ))
}

/// `checkLessThanOperand`: only numbers (and non-boolean non-constants) can be ordered.
fn check_orderable(node: &Node, position: usize) -> Result<(), FilterError> {
    let orderable = match &node.expr {
        Expr::Constant(v) => matches!(v, Value::Long(_) | Value::Double(_)),
        e => !e.is_boolean(),
    };
    if orderable {
        Ok(())
    } else {
        Err(error(
            format!("Value '{}' cannot be compared.", node.expr.describe()),
            position,
        ))
    }
}

impl<'t> Parser<'t> {
    fn peek(&self) -> &'t Token {
        // The stream always ends with End, and `next` never passes it.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &'t Kind {
        &self.tokens[(self.next + ahead).min(self.tokens.len() - 1)].kind
    }

    fn position(&self) -> usize {
        self.peek().position
    }

    fn advance(&mut self) -> &'t Token {
        let t = self.peek();
        if t.kind != Kind::End {
            self.next += 1;
        }
        t
    }

    fn eat(&mut self, kind: &Kind) -> bool {
        if &self.peek().kind == kind {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kind: &Kind, what: &str) -> Result<(), FilterError> {
        if self.eat(kind) {
            Ok(())
        } else {
            let t = self.peek();
            Err(error(
                format!("unexpected {}, expected {what}", t.kind.describe()),
                t.position,
            ))
        }
    }

    fn nest(&mut self) -> Result<(), FilterError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(error(
                format!("the selector nests deeper than {MAX_DEPTH} levels"),
                self.position(),
            ));
        }
        Ok(())
    }

    fn node(&self, expr: Expr, depth: usize, position: usize) -> Result<Node, FilterError> {
        if depth > MAX_DEPTH {
            return Err(error(
                format!("the selector nests deeper than {MAX_DEPTH} levels"),
                position,
            ));
        }
        Ok(Node { expr, depth })
    }

    fn or(&mut self) -> Result<Node, FilterError> {
        let start = self.position();
        let first = self.and()?;
        if self.peek().kind != Kind::Or {
            return Ok(first);
        }
        let first = as_boolean(first, start)?;
        let mut depth = first.depth;
        let mut items = vec![first.expr];
        while self.eat(&Kind::Or) {
            let at = self.position();
            let next = as_boolean(self.and()?, at)?;
            depth = depth.max(next.depth);
            items.push(next.expr);
        }
        self.node(Expr::Or(items), depth + 1, start)
    }

    fn and(&mut self) -> Result<Node, FilterError> {
        let start = self.position();
        let first = self.equality()?;
        if self.peek().kind != Kind::And {
            return Ok(first);
        }
        let first = as_boolean(first, start)?;
        let mut depth = first.depth;
        let mut items = vec![first.expr];
        while self.eat(&Kind::And) {
            let at = self.position();
            let next = as_boolean(self.equality()?, at)?;
            depth = depth.max(next.depth);
            items.push(next.expr);
        }
        self.node(Expr::And(items), depth + 1, start)
    }

    fn equality(&mut self) -> Result<Node, FilterError> {
        let start = self.position();
        let mut left = self.comparison()?;
        loop {
            let op = self.peek();
            match op.kind {
                Kind::Eq | Kind::Ne => {
                    self.advance();
                    let right = self.comparison()?;
                    check_equal_operands(&left, &right, op.position)?;
                    let depth = left.depth.max(right.depth) + 1;
                    let equal = Expr::Equal(Box::new(left.expr), Box::new(right.expr));
                    left = if op.kind == Kind::Eq {
                        self.node(equal, depth, start)?
                    } else {
                        self.node(Expr::Not(Box::new(equal)), depth + 1, start)?
                    };
                }
                Kind::Is => {
                    self.advance();
                    let negated = self.eat(&Kind::Not);
                    self.expect(&Kind::Null, "NULL")?;
                    let is_null =
                        Expr::Equal(Box::new(left.expr), Box::new(Expr::Constant(Value::Null)));
                    left = if negated {
                        self.node(Expr::Not(Box::new(is_null)), left.depth + 2, start)?
                    } else {
                        self.node(is_null, left.depth + 1, start)?
                    };
                }
                _ => return Ok(left),
            }
        }
    }

    fn comparison(&mut self) -> Result<Node, FilterError> {
        let start = self.position();
        let mut left = self.unary()?;
        loop {
            let op = self.peek();
            let compare = match op.kind {
                Kind::Gt => Some(CompareOp::Gt),
                Kind::Ge => Some(CompareOp::Ge),
                Kind::Lt => Some(CompareOp::Lt),
                Kind::Le => Some(CompareOp::Le),
                _ => None,
            };
            if let Some(cmp) = compare {
                self.advance();
                let right_at = self.position();
                let right = self.unary()?;
                check_orderable(&left, start)?;
                check_orderable(&right, right_at)?;
                let depth = left.depth.max(right.depth) + 1;
                left = self.node(
                    Expr::Compare(cmp, Box::new(left.expr), Box::new(right.expr)),
                    depth,
                    start,
                )?;
                continue;
            }
            // NOT binds to the operator after it only (RocketMQ's LOOKAHEAD(2)).
            let negated = op.kind == Kind::Not
                && matches!(
                    self.peek_at(1),
                    Kind::Between | Kind::In | Kind::Contains | Kind::StartsWith | Kind::EndsWith
                );
            let keyword = if negated { self.peek_at(1) } else { &op.kind };
            match keyword {
                Kind::Between => {
                    if negated {
                        self.advance();
                    }
                    self.advance();
                    left = self.between(left, negated, start)?;
                }
                Kind::In => {
                    if negated {
                        self.advance();
                    }
                    self.advance();
                    let Expr::Property(property) = left.expr else {
                        return Err(error(
                            format!(
                                "Expected a property for In expression, got: {}",
                                left.expr.describe()
                            ),
                            start,
                        ));
                    };
                    self.expect(&Kind::LParen, "\"(\"")?;
                    let mut values = vec![self.string_literal()?];
                    while self.eat(&Kind::Comma) {
                        values.push(self.string_literal()?);
                    }
                    self.expect(&Kind::RParen, "\")\" or \",\"")?;
                    left = self.node(
                        Expr::In {
                            property,
                            values,
                            negated,
                        },
                        1,
                        start,
                    )?;
                }
                Kind::Contains | Kind::StartsWith | Kind::EndsWith => {
                    let string_op = match keyword {
                        Kind::Contains => StringOp::Contains,
                        Kind::StartsWith => StringOp::StartsWith,
                        _ => StringOp::EndsWith,
                    };
                    if negated {
                        self.advance();
                    }
                    self.advance();
                    let literal = self.string_literal()?;
                    let depth = left.depth + 1;
                    left = self.node(
                        Expr::StringTest {
                            op: string_op,
                            operand: Box::new(left.expr),
                            literal,
                            negated,
                        },
                        depth,
                        start,
                    )?;
                }
                _ => return Ok(left),
            }
        }
    }

    /// `value [NOT] BETWEEN low AND high`, after the keyword: `low <= value AND value <= high`,
    /// or `value < low OR value > high`.
    fn between(&mut self, value: Node, negated: bool, start: usize) -> Result<Node, FilterError> {
        let low_at = self.position();
        let low = self.unary()?;
        self.expect(&Kind::And, "AND")?;
        let high_at = self.position();
        let high = self.unary()?;
        if !negated {
            if let (Expr::Constant(lv), Expr::Constant(hv)) = (&low.expr, &high.expr) {
                if lv.is_null() || hv.is_null() {
                    return Err(error(
                        "Illegal values of between, values can not be null!",
                        low_at,
                    ));
                }
                if let Ok(std::cmp::Ordering::Less) = compare_values(hv, lv) {
                    return Err(error(
                        format!(
                            "Illegal values of between, left value({}) must less than or equal to right value({})",
                            lv.describe(),
                            hv.describe()
                        ),
                        low_at,
                    ));
                }
            }
        }
        check_orderable(&value, start)?;
        check_orderable(&low, low_at)?;
        check_orderable(&high, high_at)?;
        let depth = value.depth.max(low.depth).max(high.depth) + 2;
        let (first_op, second_op) = if negated {
            (CompareOp::Lt, CompareOp::Gt)
        } else {
            (CompareOp::Ge, CompareOp::Le)
        };
        let first = Expr::Compare(first_op, Box::new(value.expr.clone()), Box::new(low.expr));
        let second = Expr::Compare(second_op, Box::new(value.expr), Box::new(high.expr));
        let expr = if negated {
            Expr::Or(vec![first, second])
        } else {
            Expr::And(vec![first, second])
        };
        self.node(expr, depth, start)
    }

    fn string_literal(&mut self) -> Result<String, FilterError> {
        let t = self.peek();
        if let Kind::Str(s) = &t.kind {
            self.advance();
            Ok(s.clone())
        } else {
            Err(error(
                format!(
                    "unexpected {}, expected a string literal",
                    t.kind.describe()
                ),
                t.position,
            ))
        }
    }

    /// A unary operator's operand, one nesting level down.
    fn nested_unary(&mut self) -> Result<Node, FilterError> {
        self.nest()?;
        let result = self.unary();
        self.nesting -= 1;
        result
    }

    fn unary(&mut self) -> Result<Node, FilterError> {
        let start = self.position();
        match self.peek().kind {
            Kind::Plus => {
                self.advance();
                self.nested_unary()
            }
            Kind::Minus => {
                self.advance();
                let operand = self.nested_unary()?;
                let depth = operand.depth + 1;
                self.node(Expr::Negate(Box::new(operand.expr)), depth, start)
            }
            Kind::Not => {
                self.advance();
                let at = self.position();
                let operand = as_boolean(self.nested_unary()?, at)?;
                let depth = operand.depth + 1;
                self.node(Expr::Not(Box::new(operand.expr)), depth, start)
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Node, FilterError> {
        let t = self.advance();
        let constant = |v| {
            Ok(Node {
                expr: Expr::Constant(v),
                depth: 1,
            })
        };
        match &t.kind {
            Kind::Str(s) => constant(Value::Str(s.clone())),
            Kind::Integer(digits) => match digits.parse::<i64>() {
                Ok(n) => constant(Value::Long(n)),
                Err(_) => Err(error(
                    format!("the number {digits} is out of the long range"),
                    t.position,
                )),
            },
            Kind::Decimal(text) => match super::eval::java_parse_double(text) {
                Some(d) => constant(Value::Double(d)),
                None => Err(error(format!("invalid number {text}"), t.position)),
            },
            Kind::True => constant(Value::Bool(true)),
            Kind::False => constant(Value::Bool(false)),
            Kind::Null => constant(Value::Null),
            Kind::Ident(name) => Ok(Node {
                expr: Expr::Property(name.clone()),
                depth: 1,
            }),
            Kind::LParen => {
                self.nest()?;
                let inner = self.or();
                self.nesting -= 1;
                let inner = inner?;
                self.expect(&Kind::RParen, "\")\"")?;
                Ok(inner)
            }
            other => Err(error(
                format!("unexpected {}, expected an operand", other.describe()),
                t.position,
            )),
        }
    }
}

/// `checkEqualOperand` and `checkEqualOperandCompatability`.
fn check_equal_operands(left: &Node, right: &Node, position: usize) -> Result<(), FilterError> {
    for side in [left, right] {
        if let Expr::Constant(Value::Null) = side.expr {
            return Err(error("'NULL' cannot be compared.", position));
        }
    }
    if let (Expr::Constant(l @ Value::Bool(_)), Expr::Constant(r)) = (&left.expr, &right.expr) {
        if !matches!(r, Value::Bool(_)) {
            return Err(error(
                format!(
                    "'{}' cannot be compared with '{}'",
                    l.describe(),
                    r.describe()
                ),
                position,
            ));
        }
    }
    Ok(())
}
