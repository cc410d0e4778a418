//! Arithmetic for the embedded robot: recognises a message that is nothing but a small expression
//! (once filler words such as "what is" or "等于几" are removed) and evaluates it.
//!
//! Supported: numbers with an optional decimal point (ASCII or full-width digits), `+ - * /`,
//! `× ÷ x` and full-width operators, Chinese `加 加上 减 减去 乘 乘以 除 除以`, English `plus minus
//! times "multiplied by" "divided by"`, parentheses, and unary minus or plus. The work is bounded:
//! at most [`MAX_TOKENS`] tokens, [`MAX_DEPTH`] nested parentheses or signs and
//! [`MAX_NUMBER_LEN`]-character numbers, so hostile input cannot recurse deeply or loop long.

/// The most tokens (numbers, operators, parentheses) an expression may have.
pub(super) const MAX_TOKENS: usize = 100;
/// The deepest nesting of parentheses and unary signs.
pub(super) const MAX_DEPTH: usize = 32;
/// The longest number literal, in characters.
pub(super) const MAX_NUMBER_LEN: usize = 30;

/// What came of trying a message as arithmetic.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    /// The message is not an expression with at least one operator.
    NotArithmetic,
    /// The expression, tidily written (such as `(1 + 2) * 3`), and its value.
    Value { expr: String, value: f64 },
    /// The expression divides by zero.
    DivisionByZero { expr: String },
    /// A number or the result is too large to handle.
    TooBig,
    /// The expression is longer or more deeply nested than allowed.
    TooComplex,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A number as written (full-width digits made ASCII) and its value.
    Number(String, f64),
    Op(Op),
    Open,
    Close,
}

/// Operators spelled as words or symbols, longest first where one is a prefix of another.
const OPERATOR_WORDS: &[(&str, Token)] = &[
    ("multiplied by", Token::Op(Op::Mul)),
    ("divided by", Token::Op(Op::Div)),
    ("plus", Token::Op(Op::Add)),
    ("minus", Token::Op(Op::Sub)),
    ("times", Token::Op(Op::Mul)),
    ("加上", Token::Op(Op::Add)),
    ("减去", Token::Op(Op::Sub)),
    ("乘以", Token::Op(Op::Mul)),
    ("除以", Token::Op(Op::Div)),
    ("加", Token::Op(Op::Add)),
    ("减", Token::Op(Op::Sub)),
    ("乘", Token::Op(Op::Mul)),
    ("除", Token::Op(Op::Div)),
];

/// Why tokenising or parsing stopped.
enum Failure {
    /// Not an expression at all.
    Invalid,
    /// An expression, but beyond the limits.
    TooComplex,
    /// A number literal too long to take seriously.
    TooBig,
}

/// Evaluates `text` (normalised, filler words already removed) if it is an expression.
pub(super) fn evaluate(text: &str) -> Outcome {
    let text = trim_question(text);
    let tokens = match tokenize(text) {
        Ok(tokens) => tokens,
        Err(Failure::Invalid) => return Outcome::NotArithmetic,
        Err(Failure::TooComplex) => return Outcome::TooComplex,
        Err(Failure::TooBig) => return Outcome::TooBig,
    };
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        depth: 0,
        binary_ops: 0,
        divided_by_zero: false,
    };
    let value = match parser.parse() {
        Ok(value) => value,
        Err(Failure::TooComplex) => return Outcome::TooComplex,
        Err(_) => return Outcome::NotArithmetic,
    };
    if parser.binary_ops == 0 {
        // A lone number ("42", "-3") is a number, not a sum to work out.
        return Outcome::NotArithmetic;
    }
    let expr = render(&tokens);
    if parser.divided_by_zero {
        Outcome::DivisionByZero { expr }
    } else if !value.is_finite() {
        Outcome::TooBig
    } else {
        Outcome::Value { expr, value }
    }
}

/// Strips the spaces and punctuation that surround a question ("1+2=?", "3*4。").
fn trim_question(text: &str) -> &str {
    let edge = |c: char| c.is_whitespace() || "?？!！=＝,，。:：".contains(c);
    let text = text.trim_matches(edge);
    // A trailing full stop ends the sentence; a leading one may start a decimal such as ".5".
    text.trim_end_matches(|c: char| c == '.' || edge(c))
}

fn tokenize(text: &str) -> Result<Vec<Token>, Failure> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if tokens.len() > MAX_TOKENS {
            return Err(Failure::TooComplex);
        }
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
        } else if ascii_digit(c).is_some() || c == '.' || c == '．' {
            let (token, after) = number(rest)?;
            tokens.push(token);
            rest = after;
        } else if let Some(token) = symbol(c) {
            tokens.push(token);
            rest = &rest[c.len_utf8()..];
        } else {
            let (token, after) = operator_word(rest).ok_or(Failure::Invalid)?;
            tokens.push(token);
            rest = after;
        }
    }
    if tokens.len() > MAX_TOKENS {
        return Err(Failure::TooComplex);
    }
    Ok(tokens)
}

/// The ASCII digit for an ASCII or full-width digit.
fn ascii_digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
        _ => None,
    }
}

/// Reads a number at the start of `text`; returns it and the rest.
fn number(text: &str) -> Result<(Token, &str), Failure> {
    let mut literal = String::new();
    let mut end = text.len();
    for (at, c) in text.char_indices() {
        let ascii = match c {
            '.' | '．' => '.',
            other => match ascii_digit(other) {
                Some(digit) => digit,
                None => {
                    end = at;
                    break;
                }
            },
        };
        if literal.len() >= MAX_NUMBER_LEN {
            return Err(Failure::TooBig);
        }
        literal.push(ascii);
    }
    if literal.matches('.').count() > 1 || !literal.contains(|c: char| c.is_ascii_digit()) {
        return Err(Failure::Invalid);
    }
    let value: f64 = literal.parse().map_err(|_| Failure::Invalid)?;
    Ok((Token::Number(literal, value), &text[end..]))
}

fn symbol(c: char) -> Option<Token> {
    Some(match c {
        '+' | '＋' => Token::Op(Op::Add),
        '-' | '－' | '\u{2212}' => Token::Op(Op::Sub),
        '*' | '＊' | '×' | 'x' | '·' => Token::Op(Op::Mul),
        '/' | '／' | '÷' => Token::Op(Op::Div),
        '(' | '（' => Token::Open,
        ')' | '）' => Token::Close,
        _ => return None,
    })
}

/// Reads an operator written as a word; English words must not run into further letters.
fn operator_word(text: &str) -> Option<(Token, &str)> {
    OPERATOR_WORDS.iter().find_map(|(word, token)| {
        let after = text.strip_prefix(word)?;
        let glued = word.is_ascii() && after.starts_with(|c: char| c.is_ascii_alphabetic());
        (!glued).then(|| (token.clone(), after))
    })
}

/// Writes the expression tidily: spaces around binary operators, none inside parentheses or
/// after a sign.
fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut previous: Option<&Token> = None;
    for token in tokens {
        match token {
            Token::Number(literal, _) => out.push_str(literal),
            Token::Open => out.push('('),
            Token::Close => out.push(')'),
            Token::Op(op) => {
                let unary = matches!(previous, None | Some(Token::Op(_)) | Some(Token::Open));
                if unary {
                    out.push_str(op.symbol());
                } else {
                    out.push(' ');
                    out.push_str(op.symbol());
                    out.push(' ');
                }
            }
        }
        previous = Some(token);
    }
    out
}

/// A recursive-descent parser that evaluates as it goes.
struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    /// Current nesting of parentheses and signs, capped at [`MAX_DEPTH`].
    depth: usize,
    binary_ops: usize,
    /// Set instead of failing at once, so that "1/0 + (" is still rejected as not arithmetic.
    divided_by_zero: bool,
}

impl Parser<'_> {
    fn parse(&mut self) -> Result<f64, Failure> {
        let value = self.sum()?;
        if self.pos == self.tokens.len() {
            Ok(value)
        } else {
            Err(Failure::Invalid)
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    /// sum := product (('+' | '-') product)*
    fn sum(&mut self) -> Result<f64, Failure> {
        let mut value = self.product()?;
        while let Some(Token::Op(op @ (Op::Add | Op::Sub))) = self.peek() {
            let op = *op;
            self.pos += 1;
            self.binary_ops += 1;
            let rhs = self.product()?;
            value = if op == Op::Add {
                value + rhs
            } else {
                value - rhs
            };
        }
        Ok(value)
    }

    /// product := signed (('*' | '/') signed)*
    fn product(&mut self) -> Result<f64, Failure> {
        let mut value = self.signed()?;
        while let Some(Token::Op(op @ (Op::Mul | Op::Div))) = self.peek() {
            let op = *op;
            self.pos += 1;
            self.binary_ops += 1;
            let rhs = self.signed()?;
            value = if op == Op::Mul {
                value * rhs
            } else if rhs == 0.0 {
                self.divided_by_zero = true;
                f64::NAN
            } else {
                value / rhs
            };
        }
        Ok(value)
    }

    /// signed := ('-' | '+') signed | atom
    fn signed(&mut self) -> Result<f64, Failure> {
        match self.peek() {
            Some(Token::Op(op @ (Op::Add | Op::Sub))) => {
                let negate = *op == Op::Sub;
                self.pos += 1;
                let value = self.nested(Self::signed)?;
                Ok(if negate { -value } else { value })
            }
            _ => self.atom(),
        }
    }

    /// atom := number | '(' sum ')'
    fn atom(&mut self) -> Result<f64, Failure> {
        match self.peek() {
            Some(Token::Number(_, value)) => {
                let value = *value;
                self.pos += 1;
                Ok(value)
            }
            Some(Token::Open) => {
                self.pos += 1;
                let value = self.nested(Self::sum)?;
                match self.peek() {
                    Some(Token::Close) => {
                        self.pos += 1;
                        Ok(value)
                    }
                    _ => Err(Failure::Invalid),
                }
            }
            _ => Err(Failure::Invalid),
        }
    }

    /// Runs `inner` one level deeper, refusing to go beyond [`MAX_DEPTH`].
    fn nested(&mut self, inner: fn(&mut Self) -> Result<f64, Failure>) -> Result<f64, Failure> {
        if self.depth >= MAX_DEPTH {
            return Err(Failure::TooComplex);
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }
}

/// Writes a result for people: whole numbers without a decimal point, others rounded to ten
/// decimal places (so 0.1 + 0.2 is 0.3), very large or small ones in scientific notation.
pub(super) fn format_number(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned(); // also turns -0 into 0
    }
    let magnitude = value.abs();
    if !(1e-9..1e15).contains(&magnitude) {
        let text = format!("{value:.9e}");
        return match text.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim_fraction(mantissa)),
            None => text,
        };
    }
    let text = trim_fraction(&format!("{value:.10}")).to_owned();
    if text == "-0" {
        "0".to_owned()
    } else {
        text
    }
}

/// "2.5000" → "2.5", "3.000" → "3".
fn trim_fraction(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> (String, String) {
        match evaluate(text) {
            Outcome::Value { expr, value } => (expr, format_number(value)),
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    fn result(text: &str) -> String {
        value(text).1
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(result("1+2*3"), "7");
        assert_eq!(result("(1+2)*3"), "9");
        assert_eq!(result("10-4-3"), "3");
        assert_eq!(result("100/10/5"), "2");
        assert_eq!(result("2 - 5"), "-3");
    }

    #[test]
    fn decimals() {
        assert_eq!(result("10/4"), "2.5");
        assert_eq!(result("0.1+0.2"), "0.3");
        assert_eq!(result(".5*4"), "2");
        assert_eq!(result("10/3"), "3.3333333333");
        assert!(matches!(evaluate("1.2.3+1"), Outcome::NotArithmetic));
    }

    #[test]
    fn unary_signs() {
        assert_eq!(result("-3+5"), "2");
        assert_eq!(result("2*-3"), "-6");
        assert_eq!(result("--3*1"), "3");
        assert_eq!(result("-(2+3)*2"), "-10");
        assert_eq!(result("+4-1"), "3");
    }

    #[test]
    fn operator_spellings() {
        assert_eq!(result("3×4"), "12");
        assert_eq!(result("3 x 4"), "12");
        assert_eq!(result("3x4"), "12");
        assert_eq!(result("12÷4"), "3");
        assert_eq!(result("１＋２"), "3");
        assert_eq!(result("（1+2）×3"), "9");
        assert_eq!(result("1加2"), "3");
        assert_eq!(result("5减去7"), "-2");
        assert_eq!(result("3乘以4"), "12");
        assert_eq!(result("3乘4"), "12");
        assert_eq!(result("10除以4"), "2.5");
        assert_eq!(result("3 plus 4 times 2"), "11");
        assert_eq!(result("9 divided by 3"), "3");
        assert_eq!(result("2 multiplied by 8 minus 1"), "15");
    }

    #[test]
    fn renders_tidy_expressions() {
        assert_eq!(value("(1+2)*3").0, "(1 + 2) * 3");
        assert_eq!(value("2*-3").0, "2 * -3");
        assert_eq!(value("3乘以4").0, "3 * 4");
        assert_eq!(value(" 1+2=? ").0, "1 + 2");
    }

    #[test]
    fn not_arithmetic() {
        for text in [
            "",
            "42",
            "-3",
            "hello",
            "1+",
            "(1+2",
            "1+2)",
            "2(3)",
            "x+1",
            "1 % 2",
            "3 timesx 4",
            "()",
            "1..2",
        ] {
            assert_eq!(evaluate(text), Outcome::NotArithmetic, "{text:?}");
        }
    }

    #[test]
    fn division_by_zero() {
        assert!(matches!(evaluate("1/0"), Outcome::DivisionByZero { .. }));
        assert!(matches!(evaluate("0/0"), Outcome::DivisionByZero { .. }));
        assert!(matches!(
            evaluate("5/(2-2)+1"),
            Outcome::DivisionByZero { .. }
        ));
        assert_eq!(evaluate("1/0+"), Outcome::NotArithmetic);
    }

    #[test]
    fn huge_numbers() {
        assert_eq!(result("99999999999999999999999+1"), "1e23");
        assert_eq!(result("2*0.0000000001"), "2e-10");
        let big = "9".repeat(29);
        assert!(matches!(
            evaluate(&format!(
                "{big}*{big}*{big}*{big}*{big}*{big}*{big}*{big}*{big}*{big}*{big}"
            )),
            Outcome::TooBig
        ));
        assert!(matches!(
            evaluate(&format!("{}+1", "9".repeat(1000))),
            Outcome::TooBig
        ));
    }

    #[test]
    fn depth_and_length_caps() {
        let deep = format!("{}1{}", "(".repeat(1000), ")".repeat(1000));
        assert_eq!(evaluate(&deep), Outcome::TooComplex);
        assert_eq!(evaluate(&"(".repeat(1000)), Outcome::TooComplex);
        assert_eq!(
            evaluate(&format!("{}1", "-".repeat(1000))),
            Outcome::TooComplex
        );
        let long = vec!["1"; 200].join("+");
        assert_eq!(evaluate(&long), Outcome::TooComplex);
        let nested_ok = format!("{}1+1{}", "(".repeat(20), ")".repeat(20));
        assert_eq!(result(&nested_ok), "2");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(-2.5), "-2.5");
        assert_eq!(format_number(1e15), "1e15");
        assert_eq!(format_number(123456789012345.0), "123456789012345");
        assert_eq!(format_number(-0.00000000001), "-1e-11");
    }
}
