//! SQL92 property filters, as RocketMQ's `org.apache.rocketmq.filter` understands them.
//!
//! A consumer subscribing with expression type `SQL92` sends a selector such as
//! `a BETWEEN 1 AND 3 AND TAGS IN ('x', 'y')`; the broker compiles it once ([`SqlFilter::compile`])
//! and evaluates it against each message's properties ([`SqlFilter::matches`]). The tag is the
//! property `TAGS`, the keys are `KEYS`, user properties are themselves.
//!
//! Grammar (keywords case-insensitive; lowest precedence first):
//!
//! ```text
//! selector   := or
//! or         := and ( OR and )*
//! and        := equality ( AND equality )*
//! equality   := comparison ( '=' comparison | '<>' comparison | IS NULL | IS NOT NULL )*
//! comparison := unary ( ('>'|'>='|'<'|'<=') unary
//!                     | [NOT] BETWEEN unary AND unary
//!                     | [NOT] IN '(' string (',' string)* ')'
//!                     | [NOT] (CONTAINS|STARTSWITH|ENDSWITH) string )*
//! unary      := '+' unary | '-' unary | NOT unary | primary
//! primary    := literal | identifier | '(' or ')'
//! literal    := 'string' ('' escapes a quote) | integer [L] | decimal | TRUE | FALSE | NULL
//! identifier := [A-Za-z_$][A-Za-z0-9_$]*
//! ```
//!
//! Evaluation follows RocketMQ: three-valued logic (a missing property gives "unknown", and a
//! selector that ends unknown does not match); property values are strings, converted to the
//! other side's type when compared with a number or boolean; a conversion that fails makes the
//! whole evaluation fail, and a failed evaluation does not match.

mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

pub use eval::Value;
pub use parser::{Expr, MAX_DEPTH};

/// A selector that does not compile: what is wrong and where (0-based character position).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Invalid MessageSelector. {message} at position {position}")]
pub struct FilterError {
    pub message: String,
    pub position: usize,
}

/// A compiled SQL92 selector.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlFilter {
    expression: String,
    root: Expr,
}

impl SqlFilter {
    /// Compiles a selector. Errors say what is wrong and where; no input panics.
    pub fn compile(expression: &str) -> Result<Self, FilterError> {
        let tokens = lexer::tokenize(expression)?;
        let root = parser::parse(&tokens, expression.chars().count())?;
        Ok(Self {
            expression: expression.to_owned(),
            root,
        })
    }

    /// The selector text as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The parsed expression.
    pub fn root(&self) -> &Expr {
        &self.root
    }

    /// Evaluates against a message's properties: `Some(true)`, `Some(false)`, `None` for unknown;
    /// `Err` when a value could not be converted for a comparison.
    pub fn evaluate<'a>(
        &self,
        property: &dyn Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<bool>, String> {
        eval::evaluate_bool(&self.root, property)
    }

    /// Whether a message with these properties passes: only a definite TRUE does.
    pub fn matches<'a>(&self, property: &dyn Fn(&str) -> Option<&'a str>) -> bool {
        matches!(self.evaluate(property), Ok(Some(true)))
    }
}
