//! Table tests of the SQL92 filter: expressions evaluated over property maps, with the results
//! RocketMQ's evaluator gives, and expressions that must not compile.

use std::collections::HashMap;

use super::*;

fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What an evaluation gives: TRUE, FALSE, unknown, or an evaluation error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum R {
    T,
    F,
    Unknown,
    Error,
}

fn run(expr: &str, pairs: &[(&str, &str)]) -> R {
    let f = Sql92Filter::compile(expr).unwrap_or_else(|e| panic!("{expr:?} compiles: {e}"));
    let got = match f.evaluate(&props(pairs)) {
        Ok(Some(true)) => R::T,
        Ok(Some(false)) => R::F,
        Ok(None) => R::Unknown,
        Err(_) => R::Error,
    };
    // Only TRUE delivers the message.
    assert_eq!(f.matches(&props(pairs)), got == R::T);
    got
}

/// An expression, the message's properties, and the expected result.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], R);

fn check(cases: &[Case<'_>]) {
    for (expr, pairs, want) in cases {
        assert_eq!(run(expr, pairs), *want, "{expr:?} over {pairs:?}");
    }
}

use R::*;

#[test]
fn comparisons_convert_property_strings_to_the_literal_type() {
    check(&[
        ("a > 5", &[("a", "10")], T),
        ("a > 5", &[("a", "3")], F),
        ("a >= 10", &[("a", "10")], T),
        ("a < 10", &[("a", "10")], F),
        ("a <= 10", &[("a", "10")], T),
        ("a = 10", &[("a", "10")], T),
        ("a = 10", &[("a", "010")], T),
        ("a = 10", &[("a", "+10")], T),
        ("a <> 10", &[("a", "11")], T),
        ("10 < a", &[("a", "11")], T),
        ("a > -5", &[("a", "-4")], T),
        ("a > - -5", &[("a", "4")], F),
        ("a > +5", &[("a", "6")], T),
        // An int literal reads the property as an int: decimals and big values fail.
        ("a > 5", &[("a", "10.5")], Error),
        ("a > 5", &[("a", "3000000000")], Error),
        ("a > 5", &[("a", " 10")], Error),
        ("a > 5", &[("a", "abc")], Error),
        ("a = 5", &[("a", "abc")], Error),
        // A long literal reads it as a long, a decimal literal as a double.
        ("a > 2147483648", &[("a", "3000000000")], T),
        ("a > 5.0", &[("a", "10.5")], T),
        ("a > 3.14", &[("a", "3.1415")], T),
        ("a > 3.1E10", &[("a", "3.1415E10")], T),
        ("a = 5.0", &[("a", " 5 ")], T),
        ("a = 5", &[("a", "5.0")], Error),
        ("a > 5L", &[("a", "6")], T),
        // Literals of different types compare as numbers.
        ("5 = 5.0", &[], T),
        ("2147483648 > 5", &[], T),
        ("2.5 < 3", &[], T),
        // Two properties: equality compares the strings, ordering reads both as doubles.
        ("a = b", &[("a", "3.14"), ("b", "3.14")], T),
        ("a = b", &[("a", "3.14"), ("b", "3.140")], F),
        ("a <> b", &[("a", "3.14"), ("b", "3.141")], T),
        ("a > b", &[("a", "20"), ("b", "10")], T),
        ("a > b", &[("a", "10"), ("b", "20")], F),
        ("a > b", &[("a", "10"), ("b", "x")], Error),
        ("a > b", &[("a", "1e1"), ("b", "9.5")], T),
        // Strings compare only for equality.
        ("a = 'abc'", &[("a", "abc")], T),
        ("a = 'abc'", &[("a", "ABC")], F),
        ("a <> 'abc'", &[("a", "abd")], T),
        ("'abc' = 'abc'", &[], T),
        ("TAGS = '''''tag'''''", &[("TAGS", "''tag''")], T),
        // Booleans: the property is read with Boolean.valueOf.
        ("a = TRUE", &[("a", "true")], T),
        ("a = TRUE", &[("a", "TRUE")], T),
        ("a = TRUE", &[("a", "yes")], F),
        ("a = FALSE", &[("a", "no")], T),
        ("a=TRUE OR b=FALSE", &[("a", "true"), ("b", "false")], T),
        ("a=TRUE OR b=FALSE", &[("a", "false"), ("b", "true")], F),
        ("'true' = TRUE", &[], T),
        ("TRUE = FALSE", &[], F),
        ("(a > 1) = TRUE", &[("a", "2")], T),
        ("(a > 1) = FALSE", &[("a", "2")], F),
        // A number against a boolean is "less", never equal.
        ("1 = TRUE", &[], F),
        ("1 <> TRUE", &[], T),
        ("(a > 1) = 1", &[("a", "2")], F),
    ]);
}

#[test]
fn null_and_absent_properties_follow_rocketmq() {
    check(&[
        ("a IS NULL", &[], T),
        ("a IS NULL", &[("a", "x")], F),
        ("a IS NOT NULL", &[("a", "x")], T),
        ("a IS NOT NULL", &[], F),
        ("a is null", &[("abc", "2")], T),
        // Comparisons with an absent property are unknown, so neither they nor their negation match.
        ("a = 'x'", &[], Unknown),
        ("a <> 'x'", &[], Unknown),
        ("NOT (a = 'x')", &[], Unknown),
        ("a > 1", &[], Unknown),
        ("1 < a", &[], Unknown),
        ("a BETWEEN 1 AND 5", &[], Unknown),
        ("a NOT BETWEEN 1 AND 5", &[], Unknown),
        ("a IN ('x')", &[], Unknown),
        ("a NOT IN ('x')", &[], Unknown),
        // An absent property on the right of = is just unequal (RocketMQ's asymmetry).
        ("'x' = a", &[], F),
        ("'x' <> a", &[], T),
        // Two absent properties are equal.
        ("a = b", &[], T),
        ("a = b", &[("a", "1")], F),
        ("a = b", &[("b", "1")], Unknown),
        // CONTAINS and friends are false, not unknown, on an absent property.
        ("a CONTAINS 'x'", &[], F),
        ("a NOT CONTAINS 'x'", &[], F),
        // Three-valued logic.
        ("a IS NULL OR a = 'hello'", &[], T),
        ("a IS NULL OR a = 'hello'", &[("a", "hello")], T),
        ("a IS NULL OR a = 'hello'", &[("a", "abc")], F),
        ("a IS NOT NULL AND a = 'hello'", &[], F),
        ("a IS NOT NULL AND a = 'hello'", &[("a", "hello")], T),
        ("a = 1 OR b = 1", &[("b", "1")], T),
        ("a = 1 OR b = 1", &[("b", "2")], Unknown),
        ("a = 1 AND b = 1", &[("b", "2")], F),
        ("a = 1 AND b = 1", &[("b", "1")], Unknown),
        ("NULL", &[], Unknown),
        ("NOT NULL", &[], Unknown),
        ("TRUE", &[], T),
        ("NOT FALSE", &[], T),
        ("TRUE AND NULL", &[], Unknown),
        ("TRUE OR NULL", &[], T),
        // A bare property as a condition: unknown when absent, else false (it is a string).
        ("a", &[("a", "true")], F),
        ("a", &[], Unknown),
        ("NOT a", &[("a", "x")], T),
        ("NOT a", &[], Unknown),
        ("a OR b = 1", &[("a", "true"), ("b", "1")], T),
    ]);
}

#[test]
fn between_in_and_text_operators() {
    check(&[
        ("a BETWEEN 2 AND 10", &[("a", "2")], T),
        ("a BETWEEN 2 AND 10", &[("a", "10")], T),
        ("a BETWEEN 2 AND 10", &[("a", "3")], T),
        ("a BETWEEN 2 AND 10", &[("a", "1")], F),
        ("a BETWEEN 2 AND 10", &[("a", "11")], F),
        ("a BETWEEN 2 AND 2", &[("a", "2")], T),
        ("a NOT BETWEEN 2 AND 10", &[("a", "1")], T),
        ("a NOT BETWEEN 2 AND 10", &[("a", "11")], T),
        ("a NOT BETWEEN 2 AND 10", &[("a", "2")], F),
        ("a NOT BETWEEN 2 AND 10", &[("a", "10")], F),
        ("a BETWEEN 0 AND 100", &[("a", "abc")], Error),
        ("a BETWEEN 1.5 AND 2.0", &[("a", "1.75")], T),
        // The int bound reads the property as an int, which "1.75" is not.
        ("a BETWEEN 1.5 AND 2", &[("a", "1.75")], Error),
        ("a BETWEEN -5 AND -1", &[("a", "-3")], T),
        (
            "a BETWEEN lo AND hi",
            &[("a", "5"), ("lo", "1"), ("hi", "9")],
            T,
        ),
        (
            "a BETWEEN lo AND hi",
            &[("a", "5"), ("lo", "up"), ("hi", "9")],
            Error,
        ),
        ("a IN ('3', '4', '5')", &[("a", "4")], T),
        ("a IN ('3', '4', '5')", &[("a", "8")], F),
        ("a IN ('3', '4', '5')", &[("a", "4.0")], F),
        ("a NOT IN ('3', '4', '5')", &[("a", "8")], T),
        ("a NOT IN ('3', '4', '5')", &[("a", "3")], F),
        ("a IN ('x')", &[("a", "X")], F),
        ("(a) IN ('x')", &[("a", "x")], T),
        (
            "a IN ('1','2','3','4','5','6','7','8','9','10','11','12')",
            &[("a", "11")],
            T,
        ),
        (
            "a NOT IN ('1','2','3','4','5','6','7','8','9','10','11','12')",
            &[("a", "13")],
            T,
        ),
        ("value CONTAINS 'x'", &[("value", "axb")], T),
        ("value STARTSWITH 'ax'", &[("value", "axb")], T),
        ("value ENDSWITH 'xb'", &[("value", "axb")], T),
        ("value NOT CONTAINS 'x'", &[("value", "axb")], F),
        ("value NOT STARTSWITH 'x'", &[("value", "axb")], T),
        ("value NOT ENDSWITH 'x'", &[("value", "axb")], T),
        ("value CONTAINS ''", &[("value", "axb")], F),
        ("value NOT CONTAINS ''", &[("value", "axb")], F),
        ("'axb' contains 'x'", &[], T),
        ("' ' startswith ' '", &[], T),
        ("'s' endswith '\\'", &[], F),
        ("5 CONTAINS '5'", &[], F),
        ("a CONTAINS 'é'", &[("a", "café")], T),
        (
            "a not in ('4', '4', '5') and b between 3 and 10 and c not contains 'axbc'",
            &[("a", "3"), ("b", "3"), ("c", "axbcd_")],
            F,
        ),
        (
            "a not in ('4', '4', '5') and b between 3 and 10 and c not endswith 'axbc'",
            &[("a", "3"), ("b", "3"), ("c", "axbcd")],
            T,
        ),
    ]);
}

#[test]
fn precedence_keywords_case_and_names() {
    check(&[
        // AND binds tighter than OR.
        (
            "a = 1 OR b = 1 AND c = 1",
            &[("a", "1"), ("b", "0"), ("c", "0")],
            T,
        ),
        (
            "(a = 1 OR b = 1) AND c = 1",
            &[("a", "1"), ("b", "0"), ("c", "0")],
            F,
        ),
        (
            "a = 1 AND b = 1 OR c = 1",
            &[("a", "0"), ("b", "0"), ("c", "1")],
            T,
        ),
        // Comparisons bind tighter than =, so this is (a > 1) = TRUE.
        ("a > 1 = TRUE", &[("a", "2")], T),
        ("NOT (a = 1 OR b = 1)", &[("a", "0"), ("b", "0")], T),
        ("NOT a = 1 OR TRUE", &[("a", "0")], T),
        // Keywords in any case, names case-sensitive.
        (
            "a=3 and b<>4 And c>5 AND d<=4",
            &[("a", "3"), ("b", "5"), ("c", "6"), ("d", "1")],
            T,
        ),
        (
            "a=3 or b<>4 Or c>5 OR d<=4",
            &[("a", "4"), ("b", "4"), ("c", "3"), ("d", "10")],
            F,
        ),
        ("Region = 'eu'", &[("region", "eu")], Unknown),
        ("Region = 'eu'", &[("Region", "eu")], T),
        ("$x_1 = 'y'", &[("$x_1", "y")], T),
        ("a <= now", &[("a", "1"), ("now", "2")], T),
        // TAGS and other system properties are ordinary properties.
        (
            "TAGS = 'TagA' AND KEYS IS NOT NULL",
            &[("TAGS", "TagA"), ("KEYS", "k1")],
            T,
        ),
        ("TAGS IN ('TagA', 'TagB')", &[("TAGS", "TagB")], T),
        ("TAGS IS NULL", &[], T),
        // Comments and line breaks.
        (
            "a = 1 -- the first\n AND /* and */ b = 2",
            &[("a", "1"), ("b", "2")],
            T,
        ),
        ("\ta\r\n=\u{c}1", &[("a", "1")], T),
        // Long AND/OR chains stay shallow.
        (&long_chain(2_000), &[("a", "1999")], T),
    ]);
}

fn long_chain(n: usize) -> String {
    (0..n)
        .map(|i| format!("a = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[test]
fn errors_propagate_in_evaluation_order() {
    check(&[
        // The left side fails before the right side is looked at.
        ("a = 1 OR b = 'x'", &[("a", "one"), ("b", "x")], Error),
        // A decided AND/OR stops before the failing part.
        ("b = 'x' OR a = 1", &[("a", "one"), ("b", "x")], T),
        ("b = 'y' AND a = 1", &[("a", "one"), ("b", "x")], F),
        ("b = 'x' AND a = 1", &[("a", "one"), ("b", "x")], Error),
        ("NOT (a > 1)", &[("a", "x")], Error),
    ]);
}

fn compile_error(expr: &str) -> ParseError {
    match Sql92Filter::compile(expr) {
        Ok(f) => panic!("{expr:?} compiled to {f:?}"),
        Err(e) => e,
    }
}

#[test]
fn invalid_expressions_are_refused_with_a_message() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("   ", "empty"),
        ("-- just a note\n", "empty"),
        ("a >", "expected a value"),
        ("a = 1 AND", "expected a value"),
        ("(a = 1", "`)`"),
        ("a = 1)", "or the end"),
        ("a = 1 b = 2", "or the end"),
        ("a and between 2 and 10", "expected a value"),
        ("a BETWEEN 1", "AND between the BETWEEN bounds"),
        ("a BETWEEN 10 AND 0", "lower bound is above"),
        ("a between 10.5 and 10", "lower bound is above"),
        ("a BETWEEN 'a' AND 'b'", "only numbers are ordered"),
        ("a BETWEEN NULL AND 1", "only numbers are ordered"),
        ("a > 'x'", "only numbers are ordered"),
        ("'x' < a", "only numbers are ordered"),
        ("a > TRUE", "only numbers are ordered"),
        ("a > NULL", "only numbers are ordered"),
        ("a > 1 > 2", "a condition cannot be compared"),
        ("NOT a > 1", "a condition cannot be compared"),
        ("a = NULL", "IS NULL"),
        ("NULL <> a", "IS NULL"),
        ("TRUE = 1", "cannot be compared"),
        ("FALSE = 'x'", "cannot be compared"),
        ("TRUE = a", "put the property first"),
        ("NOT a = 'x'", "negate a whole comparison"),
        ("(a > 1) = 'true'", "put the property first"),
        ("a IN ()", "quoted string"),
        ("a IN (1, 2)", "quoted string"),
        ("a IN ('x',)", "quoted string"),
        ("a IN 'x'", "`(` after IN"),
        ("'x' IN ('x')", "property name on its left"),
        ("a CONTAINS b", "quoted string after CONTAINS"),
        ("a NOT CONTAINS 123", "quoted string"),
        ("a CONTAINS", "quoted string"),
        ("a NOT LIKE 'x%'", "NOT here must be followed"),
        ("a LIKE 'x%'", "or the end"),
        ("a NOT > 1", "NOT here must be followed"),
        ("a IS 5", "NULL after IS"),
        ("a IS NOT", "NULL after IS"),
        ("5", "not a condition"),
        ("'abc'", "not a condition"),
        ("-a", "not a condition"),
        ("a = 1 AND 5", "not a condition"),
        ("NOT 5", "not a condition"),
        ("a > 100000000000000000000000", "out of range"),
        ("a > 1e999", "out of range"),
        ("a != 1", "use <> for not equal"),
        ("a = \"x\"", "single quotes"),
        ("a = 'open", "quote"),
        ("a = 1 /* open", "unterminated"),
        ("a.b = 1", "unexpected character '.'"),
        ("a = 0L", "or the end"),
        ("a = 007", "or the end"),
    ];
    for (expr, needle) in cases {
        let e = compile_error(expr);
        assert!(
            e.to_string().contains(needle),
            "{expr:?}: {e} (wanted {needle:?})"
        );
    }
}

#[test]
fn parse_errors_point_at_the_column() {
    let e = compile_error("a = 1 AND b >");
    assert_eq!(e.column, Some(14));
    assert_eq!(
        e.to_string(),
        "invalid SQL92 expression at column 14: expected a value, a property name or `(`, \
         found the end of the expression"
    );
    assert_eq!(compile_error("a = 1 ) ").column, Some(7));
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for n in [MAX_DEPTH + 1, 10_000, 60_000] {
        let parens = format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
        let nots = format!("{}a = 1", "NOT ".repeat(n));
        let minus = format!("a > {}1", "-".repeat(n.min(30_000) * 2).replace("--", "- "));
        let eq_chain = format!("a = 1{}", " = TRUE".repeat(n.min(9_000)));
        for expr in [parens, nots, minus, eq_chain] {
            let e = compile_error(&expr);
            let text = e.to_string();
            assert!(
                text.contains("nests deeper than 100") || text.contains("bytes long"),
                "{text}"
            );
        }
    }
    // Right at the limit is fine.
    let ok = format!("{}a = 1{}", "(".repeat(90), ")".repeat(90));
    assert_eq!(run(&ok, &[("a", "1")]), T);
}

#[test]
fn size_limits_are_enforced() {
    let long = format!("a = '{}'", "x".repeat(MAX_EXPRESSION_BYTES));
    assert!(compile_error(&long).to_string().contains("bytes long"));
    let mut items = vec!["'x'"; MAX_IN_ITEMS];
    items.push("'y'");
    let big_in = format!("a IN ({})", items.join(","));
    assert!(big_in.len() < MAX_EXPRESSION_BYTES);
    assert!(compile_error(&big_in).to_string().contains("at most 10000"));
    let ok_in = format!("a IN ({})", items[1..].join(","));
    assert_eq!(run(&ok_in, &[("a", "y")]), T);
}

#[test]
fn garbage_never_panics() {
    // Every prefix of some tricky inputs either compiles or fails cleanly.
    let inputs = [
        "a NOT BETWEEN -1.5e3 AND +2 OR (b IN ('x','y''z') AND NOT c IS NOT NULL)",
        "TAGS CONTAINS 'é' /* c */ -- d\n OR x STARTSWITH '' AND y <> 2147483648L",
        "((((a)))) = ((b)) = TRUE",
    ];
    for input in inputs {
        let chars: Vec<char> = input.chars().collect();
        for end in 0..=chars.len() {
            let prefix: String = chars[..end].iter().collect();
            if let Ok(f) = Sql92Filter::compile(&prefix) {
                let _ = f.evaluate(&props(&[("a", "1"), ("b", "x"), ("TAGS", "é")]));
            }
        }
    }
    for byte in 0u8..=127 {
        let s = format!("a = 1 {} b", byte as char);
        let _ = Sql92Filter::compile(&s);
    }
}

#[test]
fn raw_properties_of_a_record_are_read_in_place() {
    use apogee_protocol::message::record::MessageRecord;
    use bytes::Bytes;

    let mut mp = MessageProperties::new();
    mp.set_tags("TagA");
    mp.insert("price", "42");
    mp.insert("region", "eu");
    let mut rec = MessageRecord::new("T", Bytes::from_static(b"body"), mp.to_bytes());
    rec.born_host = "127.0.0.1:1".parse().unwrap();
    rec.store_host = "127.0.0.1:2".parse().unwrap();
    let bytes = rec.encode().unwrap();

    let yes = Sql92Filter::compile("price > 40 AND region = 'eu' AND TAGS = 'TagA'").unwrap();
    let no = Sql92Filter::compile("price > 50").unwrap();
    assert!(yes.matches_record(&bytes));
    assert!(!no.matches_record(&bytes));
    assert!(yes.matches(&mp));
    assert!(!yes.matches_record(&bytes[..bytes.len() - 1]));
    assert!(!yes.matches_record(b""));
}

#[test]
fn the_deepest_accepted_expression_fits_a_small_stack() {
    // Tokio's worker threads have 2 MiB; a quarter of that must do for the worst accepted input,
    // even unoptimized.
    let run_deep = move || {
        let parens = format!(
            "{}a = 1{}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        let nots = format!("{}(a = 1)", "NOT ".repeat(MAX_DEPTH - 2));
        let chain = format!("a = 1{}", " = TRUE".repeat(MAX_DEPTH - 2));
        for expr in [parens, nots, chain] {
            let f = Sql92Filter::compile(&expr).unwrap_or_else(|e| panic!("{e}"));
            let _ = f.evaluate(&props(&[("a", "1")]));
            drop(f);
        }
    };
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(run_deep)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn random_token_soup_never_panics() {
    const WORDS: &[&str] = &[
        "a",
        "b",
        "TAGS",
        "NOT",
        "AND",
        "OR",
        "BETWEEN",
        "IN",
        "IS",
        "NULL",
        "TRUE",
        "FALSE",
        "CONTAINS",
        "STARTSWITH",
        "ENDSWITH",
        "=",
        "<>",
        ">",
        ">=",
        "<",
        "<=",
        "(",
        ")",
        ",",
        "+",
        "-",
        "'x'",
        "''",
        "'it''s'",
        "0",
        "5",
        "5L",
        "2147483648",
        "1.5",
        ".5",
        "1e3",
        "--",
        "/*",
        "*/",
        "\n",
        "é",
        "!",
    ];
    let mut seed: u64 = 0x5EED_0000_0000_0042;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let values = props(&[("a", "5"), ("b", "x"), ("TAGS", "t")]);
    let mut compiled = 0;
    for _ in 0..20_000 {
        let len = 1 + (next() % 12) as usize;
        let expr: Vec<&str> = (0..len)
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect();
        if let Ok(f) = Sql92Filter::compile(&expr.join(" ")) {
            compiled += 1;
            let _ = f.evaluate(&values);
        }
    }
    assert!(
        compiled > 100,
        "the soup should hold some valid expressions: {compiled}"
    );
}
