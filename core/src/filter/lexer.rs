//! Tokens of the selector language (RocketMQ's SelectorParser.jj token section).

use super::FilterError;

/// One token and the character position it starts at.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    pub kind: Kind,
    pub position: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kind {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
    /// A decimal literal as written, without the `L` suffix.
    Integer(String),
    Decimal(String),
    /// A string literal, quotes removed and `''` decoded.
    Str(String),
    Ident(String),
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    End,
}

impl Kind {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Kind::Integer(s) | Kind::Decimal(s) => s.clone(),
            Kind::Str(s) => format!("'{s}'"),
            Kind::Ident(s) => s.clone(),
            Kind::End => "<EOF>".to_owned(),
            other => {
                let s = match other {
                    Kind::Not => "NOT",
                    Kind::And => "AND",
                    Kind::Or => "OR",
                    Kind::Between => "BETWEEN",
                    Kind::In => "IN",
                    Kind::True => "TRUE",
                    Kind::False => "FALSE",
                    Kind::Null => "NULL",
                    Kind::Is => "IS",
                    Kind::Contains => "CONTAINS",
                    Kind::StartsWith => "STARTSWITH",
                    Kind::EndsWith => "ENDSWITH",
                    Kind::Eq => "=",
                    Kind::Ne => "<>",
                    Kind::Gt => ">",
                    Kind::Ge => ">=",
                    Kind::Lt => "<",
                    Kind::Le => "<=",
                    Kind::LParen => "(",
                    Kind::RParen => ")",
                    Kind::Comma => ",",
                    Kind::Plus => "+",
                    Kind::Minus => "-",
                    _ => "?",
                };
                format!("\"{s}\"")
            }
        }
    }
}

fn error(message: impl Into<String>, position: usize) -> FilterError {
    FilterError {
        message: message.into(),
        position,
    }
}

fn keyword(word: &str) -> Option<Kind> {
    Some(match word.to_ascii_uppercase().as_str() {
        "NOT" => Kind::Not,
        "AND" => Kind::And,
        "OR" => Kind::Or,
        "BETWEEN" => Kind::Between,
        "IN" => Kind::In,
        "TRUE" => Kind::True,
        "FALSE" => Kind::False,
        "NULL" => Kind::Null,
        "IS" => Kind::Is,
        "CONTAINS" => Kind::Contains,
        "STARTSWITH" => Kind::StartsWith,
        "ENDSWITH" => Kind::EndsWith,
        _ => return None,
    })
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_part(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// Splits a selector into tokens, ending with [`Kind::End`]. Positions count characters.
pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}') {
            i += 1;
            continue;
        }
        // A line comment needs its line end, as in RocketMQ's grammar; without one the dashes
        // are two minus signs.
        if c == '-' && at(i + 1) == Some('-') {
            if let Some(end) = chars[i + 2..].iter().position(|&c| c == '\n' || c == '\r') {
                i += 2 + end + 1;
                continue;
            }
        }
        if c == '/' && at(i + 1) == Some('*') {
            let Some(end) = chars[i + 2..].windows(2).position(|w| w == ['*', '/']) else {
                return Err(error("unterminated comment", start));
            };
            i += 2 + end + 2;
            continue;
        }
        let kind = match c {
            '=' => {
                i += 1;
                Kind::Eq
            }
            '<' => match at(i + 1) {
                Some('>') => {
                    i += 2;
                    Kind::Ne
                }
                Some('=') => {
                    i += 2;
                    Kind::Le
                }
                _ => {
                    i += 1;
                    Kind::Lt
                }
            },
            '>' => {
                if at(i + 1) == Some('=') {
                    i += 2;
                    Kind::Ge
                } else {
                    i += 1;
                    Kind::Gt
                }
            }
            '(' => {
                i += 1;
                Kind::LParen
            }
            ')' => {
                i += 1;
                Kind::RParen
            }
            ',' => {
                i += 1;
                Kind::Comma
            }
            '+' => {
                i += 1;
                Kind::Plus
            }
            '-' => {
                i += 1;
                Kind::Minus
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match at(i) {
                        None => return Err(error("unterminated string literal", start)),
                        Some('\'') if at(i + 1) == Some('\'') => {
                            value.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                Kind::Str(value)
            }
            c if c.is_ascii_digit()
                || (c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                lex_number(&chars, &mut i)
            }
            c if is_ident_start(c) => {
                while at(i).is_some_and(is_ident_part) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                keyword(&word).unwrap_or(Kind::Ident(word))
            }
            other => {
                return Err(error(
                    format!("Lexical error: unexpected character {other:?}"),
                    start,
                ))
            }
        };
        tokens.push(Token {
            kind,
            position: start,
        });
    }
    tokens.push(Token {
        kind: Kind::End,
        position: chars.len(),
    });
    Ok(tokens)
}

/// Longest match of DECIMAL_LITERAL (`0` or `[1-9][0-9]*[lL]?`) or FLOATING_POINT_LITERAL.
fn lex_number(chars: &[char], i: &mut usize) -> Kind {
    let start = *i;
    let at = |i: usize| chars.get(i).copied();
    let digits_from = |mut j: usize| {
        while at(j).is_some_and(|c| c.is_ascii_digit()) {
            j += 1;
        }
        j
    };
    // The exponent `E[+-]?[0-9]+` starting at j, if complete: its end.
    let exponent_at = |j: usize| {
        if !matches!(at(j), Some('e' | 'E')) {
            return None;
        }
        let mut k = j + 1;
        if matches!(at(k), Some('+' | '-')) {
            k += 1;
        }
        let end = digits_from(k);
        (end > k).then_some(end)
    };
    let int_end = digits_from(start);
    // Floating point forms: digits '.' digits* exp? | '.' digits exp? | digits exp.
    if at(int_end) == Some('.') {
        let frac_end = digits_from(int_end + 1);
        let end = exponent_at(frac_end).unwrap_or(frac_end);
        *i = end;
        return Kind::Decimal(chars[start..end].iter().collect());
    }
    if int_end > start {
        if let Some(end) = exponent_at(int_end) {
            *i = end;
            return Kind::Decimal(chars[start..end].iter().collect());
        }
    }
    // Integer: a leading zero is the literal `0` alone.
    let end = if chars[start] == '0' {
        start + 1
    } else {
        int_end
    };
    let text: String = chars[start..end].iter().collect();
    *i = end;
    if chars[start] != '0' && matches!(at(end), Some('l' | 'L')) {
        *i = end + 1;
    }
    Kind::Integer(text)
}
