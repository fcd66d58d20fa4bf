//! Hand-written JSON pieces for the two dialects RocketMQ peers speak.
//!
//! Java serializes with fastjson 1.x, which writes maps with numeric keys unquoted
//! (`{0:"10.0.0.1:10911"}`). Vostok must be able to *write* that dialect for old clients (route
//! data for request versions below 401) and to *read* it wherever a Java peer may put such a map,
//! even inside keys it otherwise ignores (a Java broker's static-topic mapping section), because
//! serde_json refuses the whole document otherwise.

/// Appends `text` as a JSON string literal.
///
/// `ascii_only` escapes every non-ASCII character as `\uXXXX` (UTF-16 code units), as fastjson's
/// `BrowserCompatible` feature does for the standard route dialect; otherwise non-ASCII text is
/// written as raw UTF-8, as fastjson's default does.
pub(crate) fn write_string(out: &mut String, text: &str, ascii_only: bool) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii_only && (c as u32) >= 0x7f) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Rewrites fastjson's unquoted numeric object keys (`{0:"a",-1:"b"}`) into standard JSON
/// (`{"0":"a","-1":"b"}`) so serde_json can parse the text. Standard JSON passes through
/// unchanged; text that is not JSON at all is left for the parser to reject.
pub(crate) fn quote_numeric_keys(text: &str) -> String {
    /// What kind of container the scanner is inside.
    #[derive(Clone, Copy, PartialEq)]
    enum Container {
        Array,
        Object,
    }

    let mut out = String::with_capacity(text.len() + 16);
    let mut stack: Vec<Container> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    // True right after `{` or `,` inside an object: the next token is a key.
    let mut expect_key = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if expect_key && (c.is_ascii_digit() || c == '-') {
            // An unquoted numeric key: copy it up to the colon, inside quotes.
            out.push('"');
            out.push(c);
            while let Some(&next) = chars.peek() {
                if next.is_ascii_digit() || matches!(next, '.' | '-' | '+' | 'e' | 'E') {
                    out.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push('"');
            expect_key = false;
            continue;
        }
        out.push(c);
        match c {
            '"' => {
                in_string = true;
                expect_key = false;
            }
            '{' => {
                stack.push(Container::Object);
                expect_key = true;
            }
            '[' => {
                stack.push(Container::Array);
                expect_key = false;
            }
            '}' | ']' => {
                stack.pop();
                expect_key = false;
            }
            ',' => expect_key = stack.last() == Some(&Container::Object),
            c if c.is_whitespace() => {}
            _ => expect_key = false,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_per_dialect() {
        let mut out = String::new();
        write_string(&mut out, "a\"b\\c\nä😀", false);
        assert_eq!(out, "\"a\\\"b\\\\c\\nä😀\"");
        let mut out = String::new();
        write_string(&mut out, "ä😀\u{1}", true);
        assert_eq!(out, "\"\\u00e4\\ud83d\\ude00\\u0001\"");
    }

    #[test]
    fn numeric_keys_get_quoted_only_where_they_are_keys() {
        assert_eq!(
            quote_numeric_keys(r#"{"a":{0:"x:1",1:"y"},"b":[1,2,{-3:4}],"c":"{5:6}"}"#),
            r#"{"a":{"0":"x:1","1":"y"},"b":[1,2,{"-3":4}],"c":"{5:6}"}"#
        );
        assert_eq!(quote_numeric_keys(r#"{ 7 : "s" }"#), r#"{ "7" : "s" }"#);
        let standard = r#"{"k":{"0":"v"},"n":[0,1]}"#;
        assert_eq!(quote_numeric_keys(standard), standard);
    }
}
