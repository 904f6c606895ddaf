//! Tokens of RocketMQ's SQL92 selector language, cut the way its JavaCC grammar cuts them
//! (longest match; keywords and names are ASCII and case-insensitive for keywords).

use super::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
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
}

impl Keyword {
    fn of(word: &str) -> Option<Keyword> {
        const ALL: [(&str, Keyword); 12] = [
            ("NOT", Keyword::Not),
            ("AND", Keyword::And),
            ("OR", Keyword::Or),
            ("BETWEEN", Keyword::Between),
            ("IN", Keyword::In),
            ("TRUE", Keyword::True),
            ("FALSE", Keyword::False),
            ("NULL", Keyword::Null),
            ("IS", Keyword::Is),
            ("CONTAINS", Keyword::Contains),
            ("STARTSWITH", Keyword::StartsWith),
            ("ENDSWITH", Keyword::EndsWith),
        ];
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map(|(_, k)| *k)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Keyword::Not => "NOT",
            Keyword::And => "AND",
            Keyword::Or => "OR",
            Keyword::Between => "BETWEEN",
            Keyword::In => "IN",
            Keyword::True => "TRUE",
            Keyword::False => "FALSE",
            Keyword::Null => "NULL",
            Keyword::Is => "IS",
            Keyword::Contains => "CONTAINS",
            Keyword::StartsWith => "STARTSWITH",
            Keyword::EndsWith => "ENDSWITH",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Keyword(Keyword),
    /// A property name.
    Ident(String),
    /// A quoted string, `''` already turned into `'`.
    Str(String),
    /// Digits of an integer literal, without its `L` suffix.
    Integer(String),
    /// The text of a decimal literal (`1.5`, `.5`, `5.`, `2E10`).
    Decimal(String),
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

impl Tok {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Keyword(k) => k.name().to_owned(),
            Tok::Ident(name) => format!("name `{name}`"),
            Tok::Str(s) => format!("string '{}'", s.replace('\'', "''")),
            Tok::Integer(d) | Tok::Decimal(d) => format!("number {d}"),
            Tok::Eq => "`=`".into(),
            Tok::Ne => "`<>`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::End => "the end of the expression".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    /// 1-based character column where the token starts.
    pub column: usize,
}

/// Cuts `text` into tokens, ending with [`Tok::End`].
pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let last_line_end = chars.iter().rposition(|&c| c == '\n' || c == '\r');
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let at = |k: usize| chars.get(k).copied();
        match c {
            ' ' | '\t' | '\n' | '\r' | '\u{c}' => {
                i += 1;
                continue;
            }
            // A line comment needs its line end in RocketMQ's grammar; without one, `--` is two
            // minus signs there. Both readings are kept.
            '-' if at(i + 1) == Some('-') && last_line_end.is_some_and(|end| end > i) => {
                while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                    i += 1;
                }
                continue;
            }
            '/' if at(i + 1) == Some('*') => {
                let mut j = i + 2;
                loop {
                    match at(j) {
                        None => return Err(ParseError::at(column, "unterminated /* comment")),
                        Some('*') if at(j + 1) == Some('/') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 2;
                continue;
            }
            '\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match at(j) {
                        None => {
                            return Err(ParseError::at(
                                column,
                                "unterminated string: a quote ' is missing",
                            ))
                        }
                        Some('\'') if at(j + 1) == Some('\'') => {
                            s.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                out.push(Token {
                    tok: Tok::Str(s),
                    column,
                });
                i = j + 1;
                continue;
            }
            _ => {}
        }
        if c.is_ascii_digit() || (c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let (tok, end) = number(&chars, i);
            out.push(Token { tok, column });
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            let mut j = i + 1;
            while at(j).is_some_and(|d| d.is_ascii_alphanumeric() || d == '_' || d == '$') {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            let tok = match Keyword::of(&word) {
                Some(k) => Tok::Keyword(k),
                None => Tok::Ident(word),
            };
            out.push(Token { tok, column });
            i = j;
            continue;
        }
        let (tok, len) = match (c, at(i + 1)) {
            ('<', Some('>')) => (Tok::Ne, 2),
            ('<', Some('=')) => (Tok::Le, 2),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('<', _) => (Tok::Lt, 1),
            ('>', _) => (Tok::Gt, 1),
            ('=', _) => (Tok::Eq, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (',', _) => (Tok::Comma, 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            _ => {
                let hint = match c {
                    '!' => " (use <> for not equal)",
                    '"' => " (strings take single quotes)",
                    _ => "",
                };
                return Err(ParseError::at(
                    column,
                    format!("unexpected character {c:?}{hint}"),
                ));
            }
        };
        out.push(Token { tok, column });
        i += len;
    }
    out.push(Token {
        tok: Tok::End,
        column: chars.len() + 1,
    });
    Ok(out)
}

/// A number starting at `start`: the token and the index after it.
fn number(chars: &[char], start: usize) -> (Tok, usize) {
    let digits_from = |mut k: usize| {
        while chars.get(k).is_some_and(|c| c.is_ascii_digit()) {
            k += 1;
        }
        k
    };
    // `E`, an optional sign, then at least one digit; else no exponent.
    let exponent_end = |k: usize| -> Option<usize> {
        if !matches!(chars.get(k), Some('e' | 'E')) {
            return None;
        }
        let mut j = k + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        let end = digits_from(j);
        (end > j).then_some(end)
    };
    let text = |end: usize| chars[start..end].iter().collect::<String>();

    let int_end = digits_from(start);
    if chars.get(int_end) == Some(&'.') {
        let frac_end = digits_from(int_end + 1);
        let end = exponent_end(frac_end).unwrap_or(frac_end);
        return (Tok::Decimal(text(end)), end);
    }
    if let Some(end) = exponent_end(int_end) {
        return (Tok::Decimal(text(end)), end);
    }
    // An integer is `0` alone or has no leading zero: `007` reads as three numbers, as in Java.
    if chars[start] == '0' {
        return (Tok::Integer("0".into()), start + 1);
    }
    let digits = text(int_end);
    let end = if matches!(chars.get(int_end), Some('l' | 'L')) {
        int_end + 1
    } else {
        int_end
    };
    (Tok::Integer(digits), end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers_are_cut_as_the_java_grammar_cuts_them() {
        let int = |s: &str| Tok::Integer(s.into());
        let dec = |s: &str| Tok::Decimal(s.into());
        assert_eq!(toks("12"), [int("12"), Tok::End]);
        assert_eq!(toks("12L"), [int("12"), Tok::End]);
        assert_eq!(toks("1.5 .5 5. 2E10 2e-3 5.e3"), {
            let mut v: Vec<Tok> = ["1.5", ".5", "5.", "2E10", "2e-3", "5.e3"]
                .into_iter()
                .map(dec)
                .collect();
            v.push(Tok::End);
            v
        });
        assert_eq!(toks("007"), [int("0"), int("0"), int("7"), Tok::End]);
        assert_eq!(toks("05.5"), [dec("05.5"), Tok::End]);
        assert_eq!(toks("5e"), [int("5"), Tok::Ident("e".into()), Tok::End]);
    }

    #[test]
    fn keywords_ignore_case_and_names_keep_it() {
        assert_eq!(
            toks("Not nOT anD Tags isx"),
            [
                Tok::Keyword(Keyword::Not),
                Tok::Keyword(Keyword::Not),
                Tok::Keyword(Keyword::And),
                Tok::Ident("Tags".into()),
                Tok::Ident("isx".into()),
                Tok::End
            ]
        );
    }

    #[test]
    fn strings_comments_and_operators() {
        assert_eq!(
            toks("'it''s' /* x */ <> <= >= < > = ( ) , + - -- note\n a"),
            [
                Tok::Str("it's".into()),
                Tok::Ne,
                Tok::Le,
                Tok::Ge,
                Tok::Lt,
                Tok::Gt,
                Tok::Eq,
                Tok::LParen,
                Tok::RParen,
                Tok::Comma,
                Tok::Plus,
                Tok::Minus,
                Tok::Ident("a".into()),
                Tok::End
            ]
        );
        // Without a line end, `--` is two minus signs.
        assert_eq!(
            toks("--5"),
            [Tok::Minus, Tok::Minus, Tok::Integer("5".into()), Tok::End]
        );
    }

    #[test]
    fn bad_characters_and_open_strings_are_errors_with_a_column() {
        let e = tokenize("a != 1").unwrap_err();
        assert_eq!(e.column, Some(3));
        assert!(e.message.contains("<>"), "{e}");
        assert!(tokenize("a = 'x").unwrap_err().message.contains("quote"));
        assert!(tokenize("a /* open").is_err());
        assert!(tokenize("a = \"x\"")
            .unwrap_err()
            .message
            .contains("single"));
        assert!(tokenize("é = 1").is_err());
    }
}
