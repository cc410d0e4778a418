//! Arithmetic for the embedded robot: recognises a message that is nothing but a small expression
//! (once filler words such as "what is" or "等于几" are removed) and evaluates it.
//!
//! Supported: numbers with an optional decimal point (ASCII or full-width digits), whole numbers
//! in Chinese numerals (`十二`, `一百零五`, `两千三百`, `三万五千`, `一亿二千万`; see
//! [`chinese_value`]), `+ - * /`, `× ÷ x` and full-width operators, Chinese `加 加上 减 减去 乘 乘以
//! 除 除以`, English `plus minus times "multiplied by" "divided by"`, parentheses, and unary minus
//! or plus. The work is bounded: at most [`MAX_TOKENS`] tokens, [`MAX_DEPTH`] nested parentheses
//! or signs and [`MAX_NUMBER_LEN`]-character numbers, so hostile input cannot recurse deeply or
//! loop long.

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
    /// A number as it is shown (full-width digits made ASCII, Chinese numerals in digits) and its
    /// value.
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
        } else if numeral(c).is_some() {
            let (token, after) = chinese_number(rest)?;
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

/// 万 and 亿, the scales of Chinese numerals above 千.
const WAN: u64 = 10_000;
const YI: u64 = 100_000_000;

/// A character of a Chinese numeral.
#[derive(Debug, Clone, Copy)]
enum Numeral {
    /// 一 to 九, and 两 (the 2 of 两千).
    Digit(u64),
    /// 零 or 〇, which marks skipped places (一百零五).
    Zero,
    /// 十 百 千 万 亿: the place of the digit before it.
    Unit(u64),
}

/// What `c` means in a Chinese numeral, if it is part of one.
fn numeral(c: char) -> Option<Numeral> {
    Some(match c {
        '零' | '〇' => Numeral::Zero,
        '一' => Numeral::Digit(1),
        '二' | '两' => Numeral::Digit(2),
        '三' => Numeral::Digit(3),
        '四' => Numeral::Digit(4),
        '五' => Numeral::Digit(5),
        '六' => Numeral::Digit(6),
        '七' => Numeral::Digit(7),
        '八' => Numeral::Digit(8),
        '九' => Numeral::Digit(9),
        '十' => Numeral::Unit(10),
        '百' => Numeral::Unit(100),
        '千' => Numeral::Unit(1000),
        '万' => Numeral::Unit(WAN),
        '亿' => Numeral::Unit(YI),
        _ => return None,
    })
}

/// Reads a Chinese numeral at the start of `text`; returns it, written in digits, and the rest.
///
/// The whole run of numeral characters must be one well-formed number: `万一`, `一二` or `十十`
/// make the text not arithmetic, rather than being read as something the user did not mean.
fn chinese_number(text: &str) -> Result<(Token, &str), Failure> {
    let end = text.find(|c| numeral(c).is_none()).unwrap_or(text.len());
    let run: Vec<char> = text[..end].chars().collect();
    let value = chinese_value(&run).ok_or(Failure::Invalid)?;
    // Below 10^16 (see chinese_value), so its digits are well within MAX_NUMBER_LEN; as f64 it
    // is exact up to 2^53 and rounded beyond, just as the same digits would be.
    Ok((Token::Number(value.to_string(), value as f64), &text[end..]))
}

/// The value of a Chinese numeral: `零`, or a number such as `十二`, `一百零五`, `两千三百`,
/// `三万五千`, `十万`, `一亿二千万`, `一万亿`. What comes before 亿 is below 一亿, so every value
/// is below 10^16.
///
/// Places are read strictly, so that nothing is misread: a place may be skipped only with a 零
/// (`一千零五十` is 1,050; `一千五十` is refused), and a 零 must skip at least one place
/// (`一千零五百` is refused). The one shorthand accepted is the everyday one of a last digit
/// right after a unit, which counts one place lower: `一百五` is 150, `三万五` 35,000. `None` for
/// anything else (`万`, `万一`, `一二`, `十十`, `二十三百`, `一百零`, `亿亿`).
fn chinese_value(run: &[char]) -> Option<u64> {
    match run {
        ['零' | '〇'] => Some(0),
        _ => scaled(run, &[('亿', YI), ('万', WAN)]),
    }
}

/// A number written with the largest of `scales` (亿, then 万) and the ones below it:
/// `high 亿 low`, where `high` and `low` use only the smaller scales.
fn scaled(run: &[char], scales: &[(char, u64)]) -> Option<u64> {
    let Some((&(unit, scale), smaller)) = scales.split_first() else {
        return below_wan(run);
    };
    let Some(at) = run.iter().position(|&c| c == unit) else {
        return scaled(run, smaller);
    };
    let high = scaled(&run[..at], smaller)?;
    let low = match &run[at + 1..] {
        [] => 0,
        // After a 零 the rest starts at least two places lower: 一万零五, 一亿零五百万.
        ['零' | '〇', rest @ ..] => {
            let low = scaled(rest, smaller)?;
            (low < scale / 10).then_some(low)?
        }
        // The shorthand 三万五: one digit, counted one place below the unit.
        &[c] => match numeral(c)? {
            Numeral::Digit(digit) => digit.checked_mul(scale / 10)?,
            _ => return None,
        },
        // Otherwise the rest starts right below the unit: 三万五千, 一亿二千万.
        rest => {
            let low = scaled(rest, smaller)?;
            (low >= scale / 10).then_some(low)?
        }
    };
    high.checked_mul(scale)?.checked_add(low)
}

/// A number from 1 to 9,999 written with 十, 百 and 千: `七`, `十二`, `三百零五`, `一千五`.
fn below_wan(run: &[char]) -> Option<u64> {
    let mut value: u64 = 0;
    // The place of the last unit read, and whether a 零 came after it.
    let mut last: Option<u64> = None;
    let mut zero = false;
    // A digit waiting for its unit.
    let mut digit: Option<u64> = None;
    for (i, &c) in run.iter().enumerate() {
        match numeral(c)? {
            Numeral::Digit(d) if digit.is_none() => digit = Some(d),
            Numeral::Zero if digit.is_none() && last.is_some() && !zero => zero = true,
            Numeral::Unit(place @ (10 | 100 | 1000)) => {
                // 十 may stand for 一十 at the start (十二); 百 and 千 need their digit.
                let d = digit.take().or((i == 0 && place == 10).then_some(1))?;
                if !in_place(last, zero, place) {
                    return None;
                }
                value = value.checked_add(d.checked_mul(place)?)?;
                last = Some(place);
                zero = false;
            }
            _ => return None,
        }
    }
    match digit {
        Some(d) => {
            // The ones after 零 or alone; else the place below the last unit (二十五, 一百五).
            let place = match last {
                Some(last) if !zero => last / 10,
                _ => 1,
            };
            if !in_place(last, zero, place) {
                return None;
            }
            value.checked_add(d.checked_mul(place)?)
        }
        // Nothing at all, or a 零 with no digit after it (一百零).
        None if last.is_none() || zero => None,
        None => Some(value),
    }
}

/// Whether a digit of `place` may come after the unit `last`: in the place right below it, or
/// after a 零 in a place further down; never in a place already passed.
fn in_place(last: Option<u64>, zero: bool, place: u64) -> bool {
    match last {
        None => true,
        Some(last) if zero => place < last / 10,
        Some(last) => place == last / 10,
    }
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

    fn chinese(text: &str) -> Option<u64> {
        chinese_value(&text.chars().collect::<Vec<_>>())
    }

    #[test]
    fn chinese_numerals() {
        for (text, expected) in [
            ("零", 0),
            ("〇", 0),
            ("一", 1),
            ("两", 2),
            ("九", 9),
            ("十", 10),
            ("十二", 12),
            ("二十", 20),
            ("二十五", 25),
            ("一百", 100),
            ("一百零五", 105),
            ("一百〇五", 105),
            ("一百一十", 110),
            ("两百", 200),
            ("一千零五十", 1050),
            ("两千三百", 2300),
            ("九千九百九十九", 9999),
        ] {
            assert_eq!(chinese(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn chinese_numerals_at_wan_and_yi_scale() {
        for (text, expected) in [
            ("一万", 10_000),
            ("两万", 20_000),
            ("三万五千", 35_000),
            ("一万零五", 10_005),
            ("十万", 100_000),
            ("十万零五百", 100_500),
            ("一百万", 1_000_000),
            ("一千万", 10_000_000),
            ("一亿", 100_000_000),
            ("一亿二千万", 120_000_000),
            ("两亿零五百万", 205_000_000),
            ("一亿零五", 100_000_005),
            ("三千亿零一", 300_000_000_001),
            ("一万亿", 1_000_000_000_000),
            (
                "九千九百九十九万九千九百九十九亿九千九百九十九万九千九百九十九",
                9_999_999_999_999_999,
            ),
        ] {
            assert_eq!(chinese(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn chinese_shorthand_counts_one_place_lower() {
        assert_eq!(chinese("一百五"), Some(150));
        assert_eq!(chinese("两千三"), Some(2300));
        assert_eq!(chinese("三万五"), Some(35_000));
        assert_eq!(chinese("一亿五"), Some(150_000_000));
    }

    #[test]
    fn malformed_chinese_numerals() {
        for text in [
            "",
            "万",
            "亿",
            "百",
            "千",
            "万一",
            "一二",
            "五零",
            "零五",
            "零零",
            "十十",
            "二十三百",
            "一百零",
            "一千零五百",
            "一千五十",
            "十零五",
            "一万零",
            "一万五十",
            "一万万",
            "一亿亿",
            "亿亿",
        ] {
            assert_eq!(chinese(text), None, "{text}");
        }
    }

    #[test]
    fn huge_chinese_numerals_are_refused_without_overflow() {
        assert_eq!(chinese(&"九".repeat(1000)), None);
        assert_eq!(chinese(&"亿".repeat(1000)), None);
        assert_eq!(chinese(&"一亿".repeat(500)), None);
        assert_eq!(chinese(&format!("一{}", "千".repeat(1000))), None);
        let most = "九千九百九十九万九千九百九十九亿九千九百九十九万九千九百九十九";
        assert_eq!(evaluate(&vec![most; 25].join("乘")), Outcome::TooBig);
        assert_eq!(
            evaluate(&format!("{}加一", "九".repeat(1000))),
            Outcome::NotArithmetic
        );
    }

    #[test]
    fn arithmetic_with_chinese_numerals() {
        assert_eq!(value("二加三"), ("2 + 3".to_owned(), "5".to_owned()));
        assert_eq!(value("十二乘以三"), ("12 * 3".to_owned(), "36".to_owned()));
        assert_eq!(value("十二乘以3").0, "12 * 3");
        assert_eq!(value("3乘十二").0, "3 * 12");
        assert_eq!(
            value("（一加二）乘以三"),
            ("(1 + 2) * 3".to_owned(), "9".to_owned())
        );
        assert_eq!(result("两加两"), "4");
        assert_eq!(result("零乘以五"), "0");
        assert_eq!(result("一百零五除以五"), "21");
        assert_eq!(result("两千三百减去三百"), "2000");
        assert_eq!(result("十万除以一万"), "10");
        assert_eq!(result("一亿二千万加一"), "120000001");
        assert_eq!(result("十 × 十"), "100");
        assert_eq!(
            evaluate("五除以零"),
            Outcome::DivisionByZero {
                expr: "5 / 0".to_owned()
            }
        );
    }

    #[test]
    fn chinese_numerals_answer_as_their_digits() {
        for (chinese, digits) in [
            ("二加三", "2加3"),
            ("十二乘以三", "12乘以3"),
            ("十二乘以3", "12乘以3"),
            ("一百零五除以五", "105除以5"),
            ("三万五千减一", "35000减1"),
            ("一亿二千万乘以十", "120000000乘以10"),
            ("十除以零", "10除以0"),
        ] {
            assert_eq!(evaluate(chinese), evaluate(digits), "{chinese}");
        }
    }

    #[test]
    fn words_with_numeral_characters_are_not_arithmetic() {
        for text in [
            "一起",
            "万一",
            "十分",
            "你好",
            "十一",
            "一百",
            "一加",
            "万一加一",
            "两个加三",
            "三心二意",
            "一二加三",
            "一百零加一",
            "一点五加一",
        ] {
            assert_eq!(evaluate(text), Outcome::NotArithmetic, "{text:?}");
        }
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
