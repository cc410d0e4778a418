//! Reply templates of the rules file: parsing `{placeholder}` text into pieces, and filling the
//! pieces in when a reply is written.
//!
//! This file knows nothing about sections, keys or line numbers: its errors are plain messages
//! that the parser places on a line. It must never panic on any template text, and rendering
//! must never fail (a template is checked once, when the rules are loaded).

use crate::clock::LocalTime;

/// Something a reply template can fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Var {
    Name,
    User,
    Time,
    Date,
    Weekday,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Text,
    Expr,
    Result,
}

const PLACEHOLDERS: &[(&str, Var)] = &[
    ("name", Var::Name),
    ("user", Var::User),
    ("time", Var::Time),
    ("date", Var::Date),
    ("weekday", Var::Weekday),
    ("year", Var::Year),
    ("month", Var::Month),
    ("day", Var::Day),
    ("hour", Var::Hour),
    ("minute", Var::Minute),
    ("second", Var::Second),
    ("text", Var::Text),
    ("expr", Var::Expr),
    ("result", Var::Result),
];

/// The values placeholders are replaced with when a reply is written.
pub(in crate::robot::embedded) struct Values<'a> {
    /// The name the user asked to be called, or else their user name.
    pub name: &'a str,
    pub user: &'a str,
    pub now: &'a LocalTime,
    /// Today's weekday name in the reply's language.
    pub weekday: &'a str,
    /// The user's text with pronouns reflected.
    pub text: &'a str,
    pub expr: &'a str,
    pub result: &'a str,
}

#[derive(Debug, Clone)]
enum Piece {
    Literal(String),
    Placeholder(Var),
}

/// A reply with placeholders such as `{name}`.
#[derive(Debug, Clone)]
pub(super) struct Template(Vec<Piece>);

impl Template {
    /// Parses `text`; `allowed` says which placeholders this reply may use.
    pub fn parse(text: &str, allowed: impl Fn(Var) -> bool) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err("stray `}`; write `}}` for a literal brace".to_owned()),
                '{' => {
                    let var = read_placeholder(&mut chars)?;
                    if !allowed(var) {
                        return Err(misplaced(var));
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Placeholder(var));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template(pieces))
    }

    /// The reply with its placeholders filled in.
    pub fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Placeholder(var) => push_value(&mut out, *var, values),
            }
        }
        out
    }
}

/// Reads a placeholder's name up to its `}` (the `{` already read) and looks it up.
fn read_placeholder(chars: &mut impl Iterator<Item = char>) -> Result<Var, String> {
    let mut name = String::new();
    for c in chars {
        if c == '}' {
            return placeholder(&name);
        }
        name.push(c);
    }
    Err("unclosed `{`; write `{{` for a literal brace".to_owned())
}

/// The error for a placeholder used where it has no value.
fn misplaced(var: Var) -> String {
    let name = PLACEHOLDERS
        .iter()
        .find(|(_, known)| *known == var)
        .map_or("?", |(name, _)| name);
    format!(
        "placeholder `{{{name}}}` cannot be used here: `{{expr}}` belongs to the `zh`, `en`, \
         `zh.div-zero` and `en.div-zero` replies of [@arithmetic], and `{{result}}` to its \
         `zh` and `en` replies only"
    )
}

/// Looks up the name between `{` and `}`.
fn placeholder(name: &str) -> Result<Var, String> {
    PLACEHOLDERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, var)| *var)
        .ok_or_else(|| {
            let known: Vec<String> = PLACEHOLDERS.iter().map(|(n, _)| format!("{{{n}}}")).collect();
            format!(
                "unknown placeholder `{{{name}}}`; known placeholders are {} (write `{{{{` for a literal brace)",
                known.join(" ")
            )
        })
}

fn push_value(out: &mut String, var: Var, v: &Values<'_>) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = match var {
        Var::Name => write!(out, "{}", v.name),
        Var::User => write!(out, "{}", v.user),
        Var::Time => write!(out, "{}", v.now.time()),
        Var::Date => write!(out, "{}", v.now.date()),
        Var::Weekday => write!(out, "{}", v.weekday),
        Var::Year => write!(out, "{}", v.now.year),
        Var::Month => write!(out, "{}", v.now.month),
        Var::Day => write!(out, "{}", v.now.day),
        Var::Hour => write!(out, "{}", v.now.hour),
        Var::Minute => write!(out, "{:02}", v.now.minute),
        Var::Second => write!(out, "{:02}", v.now.second),
        Var::Text => write!(out, "{}", v.text),
        Var::Expr => write!(out, "{}", v.expr),
        Var::Result => write!(out, "{}", v.result),
    };
}
