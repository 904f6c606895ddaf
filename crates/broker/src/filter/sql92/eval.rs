//! Evaluation with RocketMQ's rules (`ComparisonExpression`, `LogicExpression`,
//! `UnaryExpression`): three-valued logic where an absent property is NULL ("unknown"), property
//! strings converted to the number type they are compared with (Java's `Integer.valueOf`,
//! `Long.valueOf`, `Double.valueOf`), and a conversion that fails making the whole evaluation an
//! error, which RocketMQ treats as "does not match".

use std::borrow::Cow;
use std::cmp::Ordering;

use super::ast::{Expr, Lit, OrderOp, TextOp};
use super::{EvalError, PropertySource};

/// A value during evaluation. Property values are always strings.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(Cow<'a, str>),
}

impl<'a> Value<'a> {
    fn of(lit: &'a Lit) -> Value<'a> {
        match lit {
            Lit::Null => Value::Null,
            Lit::Bool(b) => Value::Bool(*b),
            Lit::Int(v) => Value::Int(*v),
            Lit::Long(v) => Value::Long(*v),
            Lit::Double(v) => Value::Double(*v),
            Lit::Str(s) => Value::Str(Cow::Borrowed(s)),
        }
    }

    fn condition(self) -> Result<Option<bool>, EvalError> {
        match self {
            Value::Bool(b) => Ok(Some(b)),
            Value::Null => Ok(None),
            other => Err(EvalError::new(format!("{other:?} is not a condition"))),
        }
    }
}

fn from_condition<'a>(c: Option<bool>) -> Value<'a> {
    c.map_or(Value::Null, Value::Bool)
}

pub(super) fn eval<'a>(e: &'a Expr, props: &'a dyn PropertySource) -> Result<Value<'a>, EvalError> {
    Ok(match e {
        Expr::Lit(lit) => Value::of(lit),
        Expr::Prop(name) => props.property(name).map_or(Value::Null, Value::Str),
        Expr::Neg(inner) => match eval(inner, props)? {
            Value::Int(v) => Value::Int(v.wrapping_neg()),
            Value::Long(v) => Value::Long(v.wrapping_neg()),
            Value::Double(v) => Value::Double(-v),
            _ => Value::Null,
        },
        Expr::Not(inner) => from_condition(eval(inner, props)?.condition()?.map(|b| !b)),
        Expr::Cast(inner) => match eval(inner, props)? {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            _ => Value::Bool(false),
        },
        Expr::And(items) => {
            let mut unknown = false;
            for item in items {
                match eval(item, props)?.condition()? {
                    Some(false) => return Ok(Value::Bool(false)),
                    Some(true) => {}
                    None => unknown = true,
                }
            }
            from_condition((!unknown).then_some(true))
        }
        Expr::Or(items) => {
            let mut unknown = false;
            for item in items {
                match eval(item, props)?.condition()? {
                    Some(true) => return Ok(Value::Bool(true)),
                    Some(false) => {}
                    None => unknown = true,
                }
            }
            from_condition((!unknown).then_some(false))
        }
        Expr::Equal(l, r) => {
            let lv = eval(l, props)?;
            let rv = eval(r, props)?;
            match (&lv, &rv) {
                (Value::Null, Value::Null) => Value::Bool(true),
                // Asymmetric, as in RocketMQ: an absent left side is unknown, an absent right
                // side is simply unequal.
                (Value::Null, _) => Value::Null,
                (_, Value::Null) => Value::Bool(false),
                _ => Value::Bool(compare(&lv, &rv)? == Ordering::Equal),
            }
        }
        Expr::Order(op, l, r) => {
            let lv = eval(l, props)?;
            if lv == Value::Null {
                return Ok(Value::Null);
            }
            let rv = eval(r, props)?;
            let ord = match (&lv, &rv) {
                (_, Value::Null) => return Ok(Value::Null),
                // Two strings (two properties) are ordered as numbers or not at all.
                (Value::Str(a), Value::Str(b)) => {
                    java_double_cmp(parse_double(a)?, parse_double(b)?)
                }
                _ => compare(&lv, &rv)?,
            };
            Value::Bool(match op {
                OrderOp::Gt => ord == Ordering::Greater,
                OrderOp::Ge => ord != Ordering::Less,
                OrderOp::Lt => ord == Ordering::Less,
                OrderOp::Le => ord != Ordering::Greater,
            })
        }
        Expr::In(test) => match props.property(&test.prop) {
            None => Value::Null,
            Some(v) => Value::Bool(test.items.contains(&v) != test.negated),
        },
        Expr::Text(test) => {
            if test.needle.is_empty() {
                return Ok(Value::Bool(false));
            }
            match eval(&test.operand, props)? {
                Value::Str(s) => {
                    let needle = test.needle.as_str();
                    let found = match test.op {
                        TextOp::Contains => s.contains(needle),
                        TextOp::StartsWith => s.starts_with(needle),
                        TextOp::EndsWith => s.ends_with(needle),
                    };
                    Value::Bool(found != test.negated)
                }
                // Absent or not a string: false, negated or not.
                _ => Value::Bool(false),
            }
        }
    })
}

/// Java's `Comparable.compareTo` after RocketMQ's conversions (`ComparisonExpression.__compare`):
/// numbers widen to the wider type, a string is converted to the type of the other side, a
/// boolean against anything but a boolean or a string compares as "less", and a boolean on the
/// left against a string fails (a cast RocketMQ gets wrong, so it throws on every message).
fn compare(l: &Value<'_>, r: &Value<'_>) -> Result<Ordering, EvalError> {
    use Value::*;
    Ok(match (l, r) {
        (Null, _) | (_, Null) => return Err(EvalError::new("NULL cannot be compared")),
        (Bool(a), Bool(b)) => a.cmp(b),
        (Bool(_), Str(_)) => {
            return Err(EvalError::new("a boolean cannot be compared with a string"))
        }
        (Bool(_), _) => Ordering::Less,
        (Int(a), Int(b)) => a.cmp(b),
        (Int(a), Long(b)) => i64::from(*a).cmp(b),
        (Int(a), Double(b)) => java_double_cmp(f64::from(*a), *b),
        (Int(a), Str(s)) => a.cmp(&parse_int(s)?),
        (Long(a), Int(b)) => a.cmp(&i64::from(*b)),
        (Long(a), Long(b)) => a.cmp(b),
        (Long(a), Double(b)) => java_double_cmp(*a as f64, *b),
        (Long(a), Str(s)) => a.cmp(&parse_long(s)?),
        (Double(a), Int(b)) => java_double_cmp(*a, f64::from(*b)),
        (Double(a), Long(b)) => java_double_cmp(*a, *b as f64),
        (Double(a), Double(b)) => java_double_cmp(*a, *b),
        (Double(a), Str(s)) => java_double_cmp(*a, parse_double(s)?),
        (Int(_) | Long(_) | Double(_), Bool(_)) => Ordering::Less,
        (Str(s), Bool(b)) => java_boolean_of(s).cmp(b),
        (Str(s), Int(b)) => parse_int(s)?.cmp(b),
        (Str(s), Long(b)) => parse_long(s)?.cmp(b),
        (Str(s), Double(b)) => java_double_cmp(parse_double(s)?, *b),
        (Str(a), Str(b)) => java_string_cmp(a, b),
    })
}

/// Orders two numeric literals (the BETWEEN bounds check); `None` for anything else.
pub(super) fn compare_literals(l: &Lit, r: &Lit) -> Option<Ordering> {
    if !(l.is_number() && r.is_number()) {
        return None;
    }
    compare(&Value::of(l), &Value::of(r)).ok()
}

/// `Double.compareTo`: -0.0 below 0.0, NaN above everything and equal to itself.
fn java_double_cmp(a: f64, b: f64) -> Ordering {
    if a < b {
        return Ordering::Less;
    }
    if a > b {
        return Ordering::Greater;
    }
    let bits = |v: f64| -> i64 {
        if v.is_nan() {
            0x7ff8_0000_0000_0000
        } else {
            v.to_bits() as i64
        }
    };
    bits(a).cmp(&bits(b))
}

/// `String.compareTo`: by UTF-16 code units.
fn java_string_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// `Boolean.valueOf(String)`.
fn java_boolean_of(s: &str) -> bool {
    s.eq_ignore_ascii_case("true")
}

fn not_a_number(s: &str, what: &str) -> EvalError {
    EvalError::new(format!("{s:?} is not {what}"))
}

/// `Integer.valueOf(String)`: an optional sign, then decimal digits; no spaces.
pub(super) fn parse_int(s: &str) -> Result<i32, EvalError> {
    parse_long(s)
        .ok()
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| not_a_number(s, "an int"))
}

/// `Long.valueOf(String)`.
pub(super) fn parse_long(s: &str) -> Result<i64, EvalError> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_number(s, "a long"));
    }
    // Accumulate negatively so that the minimum value parses, as Java does.
    let mut v: i64 = 0;
    for b in digits.bytes() {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(b - b'0')))
            .ok_or_else(|| not_a_number(s, "a long"))?;
    }
    if negative {
        Ok(v)
    } else {
        v.checked_neg().ok_or_else(|| not_a_number(s, "a long"))
    }
}

/// `Double.valueOf(String)`: surrounding whitespace (anything up to U+0020) ignored, an optional
/// sign, `NaN`, `Infinity`, or a decimal number with optional fraction and exponent and an
/// optional `f`/`F`/`d`/`D` suffix. Java's hexadecimal form (`0x1p3`) is not read.
pub(super) fn parse_double(s: &str) -> Result<f64, EvalError> {
    let t = s.trim_matches(|c: char| c <= ' ');
    let bad = || not_a_number(s, "a double");
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let magnitude = match rest {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        _ => {
            let body = rest
                .strip_suffix(['f', 'F', 'd', 'D'])
                .unwrap_or(rest)
                .as_bytes();
            let digits = |mut i: usize| {
                while body.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                i
            };
            let int_end = digits(0);
            let mut end = int_end;
            let mut frac_digits = 0;
            if body.get(end) == Some(&b'.') {
                let frac_end = digits(end + 1);
                frac_digits = frac_end - end - 1;
                end = frac_end;
            }
            if int_end == 0 && frac_digits == 0 {
                return Err(bad());
            }
            if matches!(body.get(end), Some(b'e' | b'E')) {
                let mut j = end + 1;
                if matches!(body.get(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                let exp_end = digits(j);
                if exp_end == j {
                    return Err(bad());
                }
                end = exp_end;
            }
            if end != body.len() {
                return Err(bad());
            }
            let text = std::str::from_utf8(body).map_err(|_| bad())?;
            text.parse::<f64>().map_err(|_| bad())?
        }
    };
    Ok(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_number_parsing() {
        assert_eq!(parse_int("10").unwrap(), 10);
        assert_eq!(parse_int("+10").unwrap(), 10);
        assert_eq!(parse_int("-2147483648").unwrap(), i32::MIN);
        assert_eq!(parse_int("010").unwrap(), 10);
        for bad in [
            "",
            "-",
            " 1",
            "1 ",
            "1.0",
            "2147483648",
            "1L",
            "0x10",
            "abc",
        ] {
            assert!(parse_int(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_long("-9223372036854775808").unwrap(), i64::MIN);
        assert_eq!(parse_long("3000000000").unwrap(), 3_000_000_000);
        assert!(parse_long("9223372036854775808").is_err());

        for (text, v) in [
            ("1", 1.0),
            (" 1.5 ", 1.5),
            ("-2.", -2.0),
            (".5", 0.5),
            ("1e3", 1000.0),
            ("1.5E-1", 0.15),
            ("2f", 2.0),
            ("2.5D", 2.5),
            ("3.1415E10", 3.1415e10),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(parse_double(text).unwrap(), v, "{text:?}");
        }
        assert!(parse_double("NaN").unwrap().is_nan());
        for bad in [
            "", ".", "e5", "1e", "1.5.5", "inf", "nan", "1,5", "0x1p3", "1 2", "ff",
        ] {
            assert!(parse_double(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn double_order_follows_java() {
        assert_eq!(java_double_cmp(-0.0, 0.0), Ordering::Less);
        assert_eq!(java_double_cmp(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(java_double_cmp(f64::NAN, f64::NAN), Ordering::Equal);
        assert_eq!(java_double_cmp(1.0, 2.0), Ordering::Less);
    }

    #[test]
    fn mixed_comparisons_convert_like_rocketmq() {
        let s = |v: &'static str| Value::Str(Cow::Borrowed(v));
        assert_eq!(
            compare(&s("10"), &Value::Int(5)).unwrap(),
            Ordering::Greater
        );
        assert_eq!(compare(&Value::Int(5), &s("10")).unwrap(), Ordering::Less);
        assert!(compare(&s("10.5"), &Value::Int(5)).is_err());
        assert_eq!(
            compare(&s("10.5"), &Value::Double(5.0)).unwrap(),
            Ordering::Greater
        );
        assert!(compare(&s("3000000000"), &Value::Int(5)).is_err());
        assert_eq!(
            compare(&s("3000000000"), &Value::Long(3_000_000_001)).unwrap(),
            Ordering::Less
        );
        assert_eq!(
            compare(&Value::Int(5), &Value::Double(5.0)).unwrap(),
            Ordering::Equal
        );
        assert_eq!(
            compare(&s("TRUE"), &Value::Bool(true)).unwrap(),
            Ordering::Equal
        );
        assert_eq!(
            compare(&s("yes"), &Value::Bool(true)).unwrap(),
            Ordering::Less
        );
        assert!(compare(&Value::Bool(true), &s("true")).is_err());
        assert_eq!(
            compare(&Value::Int(1), &Value::Bool(true)).unwrap(),
            Ordering::Less
        );
        assert_eq!(
            compare(&Value::Bool(true), &Value::Int(1)).unwrap(),
            Ordering::Less
        );
    }
}
