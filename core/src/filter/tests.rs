use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn eval_with(expr: &str, props: &[(&str, &str)]) -> Result<Option<bool>, String> {
    let map: BTreeMap<&str, &str> = props.iter().copied().collect();
    let filter = SqlFilter::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    filter.evaluate(&|name| map.get(name).copied())
}

fn t(expr: &str, props: &[(&str, &str)]) -> Option<bool> {
    eval_with(expr, props).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn err(expr: &str) -> FilterError {
    match SqlFilter::compile(expr) {
        Ok(f) => panic!("{expr} compiled to {:?}", f.root()),
        Err(e) => e,
    }
}

#[test]
fn equality_on_strings_and_numbers() {
    assert_eq!(t("a = 'x'", &[("a", "x")]), Some(true));
    assert_eq!(t("a = 'x'", &[("a", "y")]), Some(false));
    assert_eq!(t("a = 5", &[("a", "5")]), Some(true));
    assert_eq!(t("a = 5.0", &[("a", "5")]), Some(true));
    assert_eq!(t("a <> 'x'", &[("a", "y")]), Some(true));
    assert_eq!(t("a <> 'x'", &[("a", "x")]), Some(false));
    assert_eq!(t("a = TRUE", &[("a", "true")]), Some(true));
    // A string that is not a number fails the comparison, and with it the whole selector.
    assert!(eval_with("a = 5", &[("a", "five")]).is_err());
    assert!(eval_with("NOT (a = 5)", &[("a", "five")]).is_err());
}

#[test]
fn ordering_comparisons_convert_strings_to_numbers() {
    let p = [("a", "10")];
    assert_eq!(t("a > 5", &p), Some(true));
    assert_eq!(t("a >= 10", &p), Some(true));
    assert_eq!(t("a < 10", &p), Some(false));
    assert_eq!(t("a <= 10.5", &p), Some(true));
    assert_eq!(t("a > -11", &p), Some(true));
    // Two properties are compared as numbers, never as text ("9" < "10").
    assert_eq!(t("a > b", &[("a", "10"), ("b", "9")]), Some(true));
    assert!(eval_with("a > b", &[("a", "x"), ("b", "9")]).is_err());
    assert!(
        eval_with("a > 5", &[("a", "5.5")]).is_err(),
        "Long.valueOf(\"5.5\") fails"
    );
    assert_eq!(t("a > 5.0", &[("a", "5.5")]), Some(true));
}

#[test]
fn between_and_not_between() {
    assert_eq!(t("a BETWEEN 1 AND 3", &[("a", "1")]), Some(true));
    assert_eq!(t("a BETWEEN 1 AND 3", &[("a", "3")]), Some(true));
    assert_eq!(t("a BETWEEN 1 AND 3", &[("a", "4")]), Some(false));
    assert_eq!(t("a NOT BETWEEN 1 AND 3", &[("a", "4")]), Some(true));
    assert_eq!(t("a NOT BETWEEN 1 AND 3", &[("a", "2")]), Some(false));
    assert_eq!(t("a BETWEEN 1 AND 3", &[]), None);
    assert!(err("a BETWEEN 3 AND 1")
        .message
        .contains("Illegal values of between"));
    assert!(err("a BETWEEN NULL AND 1")
        .message
        .contains("can not be null"));
    assert!(err("a BETWEEN 'a' AND 'b'")
        .message
        .contains("cannot be compared"));
}

#[test]
fn in_and_not_in() {
    assert_eq!(t("TAGS IN ('a', 'b')", &[("TAGS", "b")]), Some(true));
    assert_eq!(t("TAGS IN ('a', 'b')", &[("TAGS", "c")]), Some(false));
    assert_eq!(t("TAGS NOT IN ('a', 'b')", &[("TAGS", "c")]), Some(true));
    assert_eq!(t("TAGS NOT IN ('a')", &[]), None);
    assert!(err("5 IN ('a')").message.contains("Expected a property"));
    assert!(err("a IN (1, 2)")
        .message
        .contains("expected a string literal"));
}

#[test]
fn is_null_and_is_not_null() {
    assert_eq!(t("a IS NULL", &[]), Some(true));
    assert_eq!(t("a IS NULL", &[("a", "")]), Some(false));
    assert_eq!(t("a IS NOT NULL", &[("a", "1")]), Some(true));
    assert_eq!(t("a IS NOT NULL", &[]), Some(false));
    assert!(err("a = NULL").message.contains("cannot be compared"));
}

#[test]
fn three_valued_logic_with_missing_properties() {
    // Unknown AND FALSE is FALSE; unknown AND TRUE is unknown; unknown OR TRUE is TRUE.
    assert_eq!(t("a = 'x' AND b = 'y'", &[("b", "z")]), Some(false));
    assert_eq!(t("a = 'x' AND b = 'y'", &[("b", "y")]), None);
    assert_eq!(t("a = 'x' OR b = 'y'", &[("b", "y")]), Some(true));
    assert_eq!(t("a = 'x' OR b = 'y'", &[("b", "z")]), None);
    assert_eq!(t("NOT (a > 1)", &[]), None);
    assert_eq!(t("a > 1", &[]), None);
    // RocketMQ's asymmetry: a missing right-hand side compares FALSE, so <> is TRUE.
    assert_eq!(t("'x' = a", &[]), Some(false));
    assert_eq!(t("'x' <> a", &[]), Some(true));
    let f = SqlFilter::compile("a > 1").expect("compiles");
    assert!(!f.matches(&|_| None));
    assert!(f.matches(&|_| Some("2")));
}

#[test]
fn precedence_and_parentheses() {
    // AND binds tighter than OR.
    let p = [("a", "1"), ("b", "2"), ("c", "3")];
    assert_eq!(t("a = 1 OR b = 0 AND c = 0", &p), Some(true));
    assert_eq!(t("(a = 1 OR b = 0) AND c = 0", &p), Some(false));
    // NOT is a unary operator binding tighter than `=`: `(NOT a) = 2`, a boolean against a
    // number, which RocketMQ answers FALSE.
    assert_eq!(t("NOT a = 2 AND b = 2", &p), Some(false));
    assert_eq!(t("NOT (a = 2) AND b = 2", &p), Some(true));
    assert_eq!(t("not (a = 1) or B = 2", &p), None);
}

#[test]
fn literals_and_keywords() {
    assert_eq!(t("TRUE", &[]), Some(true));
    assert_eq!(t("FALSE OR true", &[]), Some(true));
    assert_eq!(t("a = 'it''s'", &[("a", "it's")]), Some(true));
    assert_eq!(t("a = 10L", &[("a", "10")]), Some(true));
    assert_eq!(t("a = .5", &[("a", "0.5")]), Some(true));
    assert_eq!(t("a = 1e2", &[("a", "100")]), Some(true));
    assert_eq!(
        t(
            "a = 1 -- comment\n AND /* block */ b = 2",
            &[("a", "1"), ("b", "2")]
        ),
        Some(true)
    );
    // A property on its own is a boolean cast: a string is never TRUE.
    assert_eq!(t("a", &[("a", "true")]), Some(false));
    assert_eq!(t("a", &[]), None);
    assert_eq!(t("NULL", &[]), None);
}

#[test]
fn contains_startswith_endswith() {
    let p = [("a", "hello world")];
    assert_eq!(t("a CONTAINS 'lo w'", &p), Some(true));
    assert_eq!(t("a NOT CONTAINS 'xyz'", &p), Some(true));
    assert_eq!(t("a STARTSWITH 'hell'", &p), Some(true));
    assert_eq!(t("a NOT STARTSWITH 'hell'", &p), Some(false));
    assert_eq!(t("a ENDSWITH 'world'", &p), Some(true));
    assert_eq!(t("a ENDSWITH 'x'", &[]), None);
}

#[test]
fn errors_name_what_and_where() {
    let e = err("a = ");
    assert_eq!(e.position, 4);
    assert!(e.to_string().contains("expected an operand"), "{e}");
    assert_eq!(err("a == 1").position, 3);
    assert_eq!(err("a = 'x").position, 4);
    assert!(err("a > 'x'").message.contains("cannot be compared"));
    assert!(err("TRUE > 1").message.contains("cannot be compared"));
    assert!(err("TRUE = 1").message.contains("cannot be compared with"));
    assert!(err("'x'").message.contains("will not result in a boolean"));
    assert!(err("a = 1 b = 2").message.contains("expected an operator"));
    assert!(err("a = 1 -- no line end")
        .message
        .contains("expected an operator"));
    assert!(err("a.b = 1").message.contains("unexpected character"));
    assert!(err("").message.contains("<EOF>"));
    assert!(err("a = 99999999999999999999")
        .message
        .contains("long range"));
    assert!(err("a = 1 AND").message.contains("<EOF>"));
    assert!(err("a NOT 1").message.contains("expected an operator"));
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}a = 1{}", "(".repeat(5_000), ")".repeat(5_000));
    assert!(err(&deep).message.contains("nests deeper"));
    let nots = format!("{}a = 1", "NOT ".repeat(5_000));
    assert!(err(&nots).message.contains("nests deeper"));
    let chain = format!("a{}", " = 1".repeat(5_000));
    assert!(err(&chain).message.contains("nests deeper"));
    // Long OR lists are flat and fine.
    let ors: Vec<String> = (0..5_000).map(|i| format!("TAGS = 't{i}'")).collect();
    assert_eq!(t(&ors.join(" OR "), &[("TAGS", "t4999")]), Some(true));
    let ok = format!("{}a = 1{}", "(".repeat(50), ")".repeat(50));
    assert_eq!(t(&ok, &[("a", "1")]), Some(true));
}

proptest! {
    #[test]
    fn random_text_parses_or_errors(s in "\\PC{0,60}") {
        if let Ok(f) = SqlFilter::compile(&s) {
            let _ = f.evaluate(&|_| Some("1"));
            let _ = f.evaluate(&|_| None);
        }
    }

    #[test]
    fn random_token_soup_parses_or_errors(parts in proptest::collection::vec(
        prop_oneof![
            Just("a"), Just("b"), Just("TAGS"), Just("("), Just(")"), Just("="), Just("<>"),
            Just(">"), Just("<="), Just("AND"), Just("OR"), Just("NOT"), Just("BETWEEN"),
            Just("IN"), Just("IS"), Just("NULL"), Just("TRUE"), Just("'x'"), Just("1"),
            Just("2.5"), Just("-"), Just(","), Just("CONTAINS"), Just("--"), Just("\n"),
        ],
        0..40,
    )) {
        let s = parts.join(" ");
        if let Ok(f) = SqlFilter::compile(&s) {
            let _ = f.evaluate(&|name| (name == "a").then_some("2"));
        }
    }
}
