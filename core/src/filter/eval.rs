//! Evaluation with RocketMQ's semantics (`ComparisonExpression`, `LogicExpression`,
//! `UnaryExpression`): three-valued logic, string properties converted to the type they are
//! compared with, and a failed conversion failing the whole evaluation.

use std::cmp::Ordering;

use super::parser::{CompareOp, Expr, StringOp};

/// A value during evaluation. Decimal literals are Java longs, others doubles.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL: a missing property, or unknown.
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
}

impl Value {
    pub(super) fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Value::Null => "NULL".to_owned(),
            Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
            Value::Long(n) => n.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Str(s) => format!("'{s}'"),
        }
    }

    /// Java's `equals`: same type and value (doubles by bits, as `Double.equals`).
    fn java_equals(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
            (a, b) => a == b,
        }
    }
}

/// Java's `Double.valueOf(String)` for decimal text: surrounding whitespace and control
/// characters are ignored, an `f`/`d` suffix is allowed, and `NaN`/`Infinity` are accepted.
pub(crate) fn java_parse_double(text: &str) -> Option<f64> {
    let t = text.trim_matches(|c: char| c <= ' ');
    let (sign, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, t.strip_prefix('+').unwrap_or(t)),
    };
    match unsigned {
        "NaN" => return Some(f64::NAN),
        "Infinity" => return Some(sign * f64::INFINITY),
        _ => {}
    }
    let digits = unsigned
        .strip_suffix(['f', 'F', 'd', 'D'])
        .unwrap_or(unsigned);
    if digits.is_empty()
        || !digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        || !digits.chars().any(|c| c.is_ascii_digit())
    {
        return None;
    }
    digits.parse::<f64>().ok().map(|d| sign * d)
}

/// Java's `Long.valueOf(String)`.
fn java_parse_long(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok()
}

fn not_a_number(text: &str) -> String {
    format!("For input string: \"{text}\"")
}

fn compare_doubles(a: f64, b: f64) -> Ordering {
    // Double.compareTo: -0.0 < 0.0 and NaN above everything, equal to itself.
    a.total_cmp(&b)
}

/// RocketMQ's `__compare` with string conversion on: values of different types are converted
/// towards each other; types that cannot meet compare as "less" (Java's -1); a string that is
/// not a number where one is needed is an error.
pub(super) fn compare_values(lv: &Value, rv: &Value) -> Result<Ordering, String> {
    use Value::*;
    Ok(match (lv, rv) {
        (Bool(a), Bool(b)) => a.cmp(b),
        (Long(a), Long(b)) => a.cmp(b),
        (Double(a), Double(b)) => compare_doubles(*a, *b),
        (Str(a), Str(b)) => a.encode_utf16().cmp(b.encode_utf16()),
        (Long(a), Double(b)) => compare_doubles(*a as f64, *b),
        (Double(a), Long(b)) => compare_doubles(*a, *b as f64),
        (Long(a), Str(b)) => a.cmp(&java_parse_long(b).ok_or_else(|| not_a_number(b))?),
        (Double(a), Str(b)) => {
            compare_doubles(*a, java_parse_double(b).ok_or_else(|| not_a_number(b))?)
        }
        (Str(a), Long(b)) => java_parse_long(a).ok_or_else(|| not_a_number(a))?.cmp(b),
        (Str(a), Double(b)) => {
            compare_doubles(java_parse_double(a).ok_or_else(|| not_a_number(a))?, *b)
        }
        (Str(a), Bool(b)) => a.eq_ignore_ascii_case("true").cmp(b),
        // Java casts the Boolean to String here and fails with a ClassCastException.
        (Bool(_), Str(_)) => {
            return Err("java.lang.Boolean cannot be cast to java.lang.String".to_owned())
        }
        _ => Ordering::Less,
    })
}

type Lookup<'p, 'a> = &'p dyn Fn(&str) -> Option<&'a str>;

fn as_truth(v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(format!("{} is not a boolean", other.describe())),
    }
}

fn truth(b: Option<bool>) -> Value {
    b.map_or(Value::Null, Value::Bool)
}

/// Evaluates a boolean expression.
pub(super) fn evaluate_bool(expr: &Expr, property: Lookup<'_, '_>) -> Result<Option<bool>, String> {
    as_truth(&evaluate(expr, property)?)
}

/// Evaluates an expression. Recursion is bounded by the parser's depth limit.
pub(super) fn evaluate(expr: &Expr, property: Lookup<'_, '_>) -> Result<Value, String> {
    Ok(match expr {
        Expr::Constant(v) => v.clone(),
        Expr::Property(name) => property(name).map_or(Value::Null, |s| Value::Str(s.to_owned())),
        Expr::Negate(inner) => match evaluate(inner, property)? {
            Value::Long(n) => Value::Long(n.wrapping_neg()),
            Value::Double(d) => Value::Double(-d),
            _ => Value::Null,
        },
        Expr::Not(inner) => truth(evaluate_bool(inner, property)?.map(|b| !b)),
        Expr::BooleanCast(inner) => match evaluate(inner, property)? {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            _ => Value::Bool(false),
        },
        // LogicExpression: FALSE as soon as an operand is FALSE (later ones unevaluated),
        // unknown if any was unknown, else TRUE. OR mirrors it.
        Expr::And(items) => {
            let mut unknown = false;
            for item in items {
                match evaluate_bool(item, property)? {
                    Some(false) => return Ok(Value::Bool(false)),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            truth((!unknown).then_some(true))
        }
        Expr::Or(items) => {
            let mut unknown = false;
            for item in items {
                match evaluate_bool(item, property)? {
                    Some(true) => return Ok(Value::Bool(true)),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            truth((!unknown).then_some(false))
        }
        Expr::Equal(left, right) => {
            let lv = evaluate(left, property)?;
            let rv = evaluate(right, property)?;
            match (lv.is_null(), rv.is_null()) {
                // Java's asymmetry: an unknown left side is unknown, an unknown right side FALSE.
                (true, false) => Value::Null,
                (false, true) => Value::Bool(false),
                (true, true) => Value::Bool(true),
                (false, false) => {
                    Value::Bool(lv.java_equals(&rv) || compare_values(&lv, &rv)? == Ordering::Equal)
                }
            }
        }
        Expr::Compare(op, left, right) => {
            let lv = evaluate(left, property)?;
            if lv.is_null() {
                return Ok(Value::Null);
            }
            let rv = evaluate(right, property)?;
            if rv.is_null() {
                return Ok(Value::Null);
            }
            let ordering = match (&lv, &rv) {
                // Strings are only ordered as numbers.
                (Value::Str(a), Value::Str(b)) => {
                    match (java_parse_double(a), java_parse_double(b)) {
                        (Some(x), Some(y)) => compare_doubles(x, y),
                        _ => {
                            return Err(format!(
                                "It's illegal to compare string by '>=', '>', '<', '<='. lv={a}, rv={b}"
                            ))
                        }
                    }
                }
                _ => compare_values(&lv, &rv)?,
            };
            Value::Bool(match op {
                CompareOp::Gt => ordering == Ordering::Greater,
                CompareOp::Ge => ordering != Ordering::Less,
                CompareOp::Lt => ordering == Ordering::Less,
                CompareOp::Le => ordering != Ordering::Greater,
            })
        }
        Expr::In {
            property: name,
            values,
            negated,
        } => match property(name) {
            None => Value::Null,
            Some(v) => Value::Bool(values.iter().any(|x| x == v) ^ negated),
        },
        Expr::StringTest {
            op,
            operand,
            literal,
            negated,
        } => match evaluate(operand, property)? {
            Value::Null => Value::Null,
            Value::Str(s) => {
                let hit = match op {
                    StringOp::Contains => s.contains(literal.as_str()),
                    StringOp::StartsWith => s.starts_with(literal.as_str()),
                    StringOp::EndsWith => s.ends_with(literal.as_str()),
                };
                Value::Bool(hit ^ negated)
            }
            _ => Value::Bool(false),
        },
    })
}
