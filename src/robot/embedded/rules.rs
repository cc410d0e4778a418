//! The embedded robot's rules file: parsing, validation and reply templates.
//!
//! The format is documented at the top of `src/robot/default.rules`, the compiled-in default. In
//! short: `[section]` headers, each followed by `key = value` lines; `#` starts a comment line.
//! Ordinary sections are keyword rules; sections whose names start with `@` configure the
//! behaviours implemented in code (arithmetic, names, fallback, pronoun reflection, weekdays).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::text::{is_word_pattern, normalize_keyword, Keyword, Reflections};
use crate::clock::LocalTime;

/// The largest rules file accepted, in bytes.
pub(super) const MAX_RULES_BYTES: usize = 1024 * 1024;

/// The language of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lang {
    Zh,
    En,
}

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
pub(super) struct Values<'a> {
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
    fn parse(text: &str, allowed: impl Fn(Var) -> bool) -> Result<Self, String> {
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

/// Alternative replies in both languages; one is picked by a hash of the user's text.
#[derive(Debug, Clone, Default)]
pub(super) struct Replies {
    zh: Vec<Template>,
    en: Vec<Template>,
}

impl Replies {
    /// Writes the reply in `lang` that `hash` picks.
    pub fn render(&self, lang: Lang, hash: u64, values: &Values<'_>) -> String {
        let choices = match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        };
        // Parsing guarantees at least one choice; an empty reply is the harmless answer if not.
        let count = choices.len().max(1) as u64;
        let index = usize::try_from(hash % count).unwrap_or(0);
        choices
            .get(index)
            .map(|t| t.render(values))
            .unwrap_or_default()
    }

    fn add(&mut self, lang: Lang, template: Template) {
        match lang {
            Lang::Zh => self.zh.push(template),
            Lang::En => self.en.push(template),
        }
    }

    fn missing(&self) -> Option<&'static str> {
        if self.zh.is_empty() {
            Some("zh")
        } else if self.en.is_empty() {
            Some("en")
        } else {
            None
        }
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone)]
pub(super) enum Behaviour {
    /// Answers with its replies when one of its keywords occurs.
    Keywords,
    /// Answers a message that is an expression (its keywords are filler words to ignore).
    Arithmetic {
        division_by_zero: Replies,
        too_big: Replies,
        too_complex: Replies,
    },
    /// Tells users the name they gave, or `unknown` if they gave none.
    RecallName { unknown: Replies },
    /// Remembers the name that follows one of its keywords.
    SetName,
}

/// One section that takes part in matching.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    /// The section name, for logs.
    pub name: String,
    pub keywords: Vec<Keyword>,
    pub replies: Replies,
    pub behaviour: Behaviour,
}

/// Weekday names, Sunday first.
#[derive(Debug, Clone)]
pub(super) struct Weekdays {
    zh: Vec<String>,
    en: Vec<String>,
}

impl Weekdays {
    /// The name of `weekday` (0 = Sunday) in `lang`.
    pub fn name(&self, lang: Lang, weekday: u32) -> &str {
        let names = match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        };
        let index = usize::try_from(weekday % 7).unwrap_or(0);
        names.get(index).map_or("", String::as_str)
    }
}

/// A whole parsed rules file.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    /// Tried top to bottom; the first that matches answers.
    pub rules: Vec<Rule>,
    /// When no rule matches.
    pub fallback: Replies,
    /// When the message has no letters or digits at all.
    pub empty: Replies,
    pub reflections: Reflections,
    pub weekdays: Weekdays,
}

/// Why a rules file could not be loaded.
///
/// Its message names the file (if any) and line, and says what to change, for example
/// `my.rules:12: unknown key `mach` in [greeting]; expected one of: match, zh, en`.
#[derive(Debug)]
pub struct RulesError {
    path: Option<PathBuf>,
    line: Option<usize>,
    message: String,
}

impl RulesError {
    pub(super) fn at(line: usize, message: impl Into<String>) -> Self {
        RulesError {
            path: None,
            line: Some(line),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        RulesError {
            path: None,
            line: None,
            message: message.into(),
        }
    }

    /// Says which file the error is in.
    pub(super) fn in_file(mut self, path: &Path) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// An error reading the file itself rather than its contents.
    pub(super) fn unreadable(path: &Path, message: impl Into<String>) -> Self {
        RulesError::whole(message).in_file(path)
    }

    /// The 1-based line the error is on, if it concerns one line.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The file the rules came from, if they came from a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What is wrong, without the file name and line.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(path), Some(line)) => write!(f, "{}:{line}: {}", path.display(), self.message),
            (Some(path), None) => write!(f, "{}: {}", path.display(), self.message),
            (None, Some(line)) => write!(f, "rules line {line}: {}", self.message),
            (None, None) => write!(f, "rules: {}", self.message),
        }
    }
}

impl std::error::Error for RulesError {}

/// The kinds of section; built-ins are named with a leading `@`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Keywords,
    Arithmetic,
    RecallName,
    SetName,
    Fallback,
    Reflections,
    Weekdays,
}

const BUILT_INS: &[(&str, Kind)] = &[
    ("@arithmetic", Kind::Arithmetic),
    ("@recall-name", Kind::RecallName),
    ("@set-name", Kind::SetName),
    ("@fallback", Kind::Fallback),
    ("@reflections", Kind::Reflections),
    ("@weekdays", Kind::Weekdays),
];

/// Whether a section's `match` line is needed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
    Forbidden,
}

/// Which keys a reply-bearing section takes.
struct Spec {
    matching: Need,
    /// Reply variants; `""` is the plain `zh`/`en`, others are `zh.<variant>`/`en.<variant>`.
    variants: &'static [&'static str],
}

impl Kind {
    fn spec(self) -> Spec {
        let (matching, variants): (Need, &'static [&'static str]) = match self {
            Kind::Keywords | Kind::SetName => (Need::Required, &[""]),
            Kind::Arithmetic => (Need::Optional, &["", "div-zero", "too-big", "too-complex"]),
            Kind::RecallName => (Need::Required, &["", "unknown"]),
            Kind::Fallback => (Need::Forbidden, &["", "empty"]),
            Kind::Reflections | Kind::Weekdays => (Need::Forbidden, &[]),
        };
        Spec { matching, variants }
    }

    /// Whether replies of `variant` in this kind of section may use `var`.
    fn allows(self, variant: &str, var: Var) -> bool {
        match var {
            Var::Expr => self == Kind::Arithmetic && (variant.is_empty() || variant == "div-zero"),
            Var::Result => self == Kind::Arithmetic && variant.is_empty(),
            _ => true,
        }
    }
}

struct Entry<'a> {
    line: usize,
    key: &'a str,
    value: &'a str,
}

struct Section<'a> {
    name: &'a str,
    line: usize,
    kind: Kind,
    entries: Vec<Entry<'a>>,
}

/// Parses and checks a whole rules file.
pub(super) fn parse(text: &str) -> Result<Rules, RulesError> {
    if text.len() > MAX_RULES_BYTES {
        return Err(RulesError::whole(format!(
            "the rules are {} bytes long; the limit is {MAX_RULES_BYTES} bytes",
            text.len()
        )));
    }
    let sections = split_sections(text.strip_prefix('\u{feff}').unwrap_or(text))?;
    let mut rules = Vec::new();
    let mut fallback = None;
    let mut reflections = None;
    let mut weekdays = None;
    for section in &sections {
        match section.kind {
            Kind::Reflections => reflections = Some(build_reflections(section)?),
            Kind::Weekdays => weekdays = Some(build_weekdays(section)?),
            Kind::Fallback => {
                let mut replies = collect(section)?.replies;
                let empty = replies.remove("empty").unwrap_or_default();
                fallback = Some((replies.remove("").unwrap_or_default(), empty));
            }
            _ => rules.push(build_rule(section)?),
        }
    }
    for (name, kind) in BUILT_INS {
        if !sections.iter().any(|s| s.kind == *kind) {
            return Err(RulesError::whole(format!(
                "the required section [{name}] is missing; every rules file needs {}. \
                 Copy them from the default rules (src/robot/default.rules)",
                BUILT_INS
                    .iter()
                    .map(|(n, _)| format!("[{n}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let (fallback, empty) = fallback.unwrap_or_default();
    Ok(Rules {
        rules,
        fallback,
        empty,
        reflections: reflections.unwrap_or_default(),
        weekdays: weekdays.unwrap_or(Weekdays {
            zh: Vec::new(),
            en: Vec::new(),
        }),
    })
}

/// First pass: headers and `key = value` lines, grouped into sections.
fn split_sections(text: &str) -> Result<Vec<Section<'_>>, RulesError> {
    let mut sections: Vec<Section<'_>> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            let section = parse_header(header, line)?;
            if let Some(earlier) = sections.iter().find(|s| s.name == section.name) {
                return Err(RulesError::at(
                    line,
                    format!(
                        "section [{}] is defined twice (first at line {}); merge them or rename one",
                        section.name, earlier.line
                    ),
                ));
            }
            sections.push(section);
        } else if let Some((key, value)) = trimmed.split_once('=') {
            let key = key.trim();
            let Some(section) = sections.last_mut() else {
                return Err(RulesError::at(
                    line,
                    format!(
                        "`{key} = ...` comes before any [section] header; start a section first"
                    ),
                ));
            };
            if key.is_empty() {
                return Err(RulesError::at(
                    line,
                    "a line starts with `=`; write `key = value`",
                ));
            }
            section.entries.push(Entry {
                line,
                key,
                value: value.trim(),
            });
        } else {
            return Err(RulesError::at(
                line,
                "expected a `[section]` header, a `key = value` line or a `#` comment",
            ));
        }
    }
    Ok(sections)
}

/// Parses what follows the `[` of a section header.
fn parse_header(header: &str, line: usize) -> Result<Section<'_>, RulesError> {
    let Some((name, after)) = header.split_once(']') else {
        return Err(RulesError::at(
            line,
            "the section header is missing its closing `]`",
        ));
    };
    let after = after.trim_start();
    if !after.is_empty() && !after.starts_with('#') {
        return Err(RulesError::at(
            line,
            format!("unexpected text `{after}` after the section header; comments start with `#`"),
        ));
    }
    let name = name.trim();
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '[') {
        return Err(RulesError::at(
            line,
            format!("bad section name `[{name}]`; use one word such as [greeting] (no spaces)"),
        ));
    }
    let kind = if name.starts_with('@') {
        BUILT_INS
            .iter()
            .find(|(built_in, _)| *built_in == name)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                let known: Vec<String> = BUILT_INS.iter().map(|(n, _)| format!("[{n}]")).collect();
                RulesError::at(
                    line,
                    format!(
                        "unknown built-in section [{name}]; built-ins are {} (ordinary rules have names without `@`)",
                        known.join(", ")
                    ),
                )
            })?
    } else {
        Kind::Keywords
    };
    Ok(Section {
        name,
        line,
        kind,
        entries: Vec::new(),
    })
}

/// The keywords and replies of a section.
struct Collected {
    keywords: Vec<Keyword>,
    replies: HashMap<&'static str, Replies>,
}

/// Reads `match`, `zh`, `en`, `zh.<variant>` and `en.<variant>` lines and checks that every
/// reply the section's kind needs is there.
fn collect(section: &Section<'_>) -> Result<Collected, RulesError> {
    let spec = section.kind.spec();
    let mut collected = Collected {
        keywords: Vec::new(),
        replies: HashMap::new(),
    };
    for entry in &section.entries {
        if entry.key == "match" && spec.matching != Need::Forbidden {
            collected.keywords.extend(parse_keywords(entry)?);
            continue;
        }
        let (lang, variant) = reply_key(entry.key, spec.variants)
            .ok_or_else(|| unknown_key(section, entry, &spec))?;
        if entry.value.is_empty() {
            return Err(RulesError::at(
                entry.line,
                format!(
                    "`{}` has an empty reply; write the reply after `=`",
                    entry.key
                ),
            ));
        }
        let template = Template::parse(entry.value, |var| section.kind.allows(variant, var))
            .map_err(|message| RulesError::at(entry.line, message))?;
        collected
            .replies
            .entry(variant)
            .or_default()
            .add(lang, template);
    }
    if spec.matching == Need::Required && collected.keywords.is_empty() {
        return Err(RulesError::at(
            section.line,
            format!(
                "[{}] has no `match` line; add one such as `match = hello | 你好`",
                section.name
            ),
        ));
    }
    for variant in spec.variants {
        let missing = collected
            .replies
            .get(variant)
            .map_or(Some("zh"), Replies::missing);
        if let Some(lang) = missing {
            let key = if variant.is_empty() {
                lang.to_owned()
            } else {
                format!("{lang}.{variant}")
            };
            return Err(RulesError::at(
                section.line,
                format!(
                    "[{}] has no `{key}` reply; add at least one `{key} = ...` line \
                     (every reply is needed in both Chinese `zh` and English `en`)",
                    section.name
                ),
            ));
        }
    }
    Ok(collected)
}

/// Splits `zh`, `en`, `zh.<variant>`, `en.<variant>` keys; `None` for any other key.
fn reply_key(key: &str, variants: &[&'static str]) -> Option<(Lang, &'static str)> {
    let (lang, variant) = key.split_once('.').unwrap_or((key, ""));
    let lang = match lang {
        "zh" => Lang::Zh,
        "en" => Lang::En,
        _ => return None,
    };
    let variant = variants.iter().find(|v| **v == variant)?;
    Some((lang, variant))
}

fn unknown_key(section: &Section<'_>, entry: &Entry<'_>, spec: &Spec) -> RulesError {
    let mut expected: Vec<String> = Vec::new();
    if spec.matching != Need::Forbidden {
        expected.push("match".to_owned());
    }
    for variant in spec.variants {
        for lang in ["zh", "en"] {
            expected.push(if variant.is_empty() {
                lang.to_owned()
            } else {
                format!("{lang}.{variant}")
            });
        }
    }
    RulesError::at(
        entry.line,
        format!(
            "unknown key `{}` in [{}]; expected one of: {}",
            entry.key,
            section.name,
            expected.join(", ")
        ),
    )
}

/// Parses `match = a | b | c`.
fn parse_keywords(entry: &Entry<'_>) -> Result<Vec<Keyword>, RulesError> {
    entry
        .value
        .split('|')
        .map(|raw| {
            Keyword::new(raw).ok_or_else(|| {
                RulesError::at(
                    entry.line,
                    "empty keyword in `match`; check for a doubled, leading or trailing `|`",
                )
            })
        })
        .collect()
}

fn build_rule(section: &Section<'_>) -> Result<Rule, RulesError> {
    let Collected {
        keywords,
        mut replies,
    } = collect(section)?;
    let mut take = |variant: &str| replies.remove(variant).unwrap_or_default();
    let main = take("");
    let behaviour = match section.kind {
        Kind::Arithmetic => Behaviour::Arithmetic {
            division_by_zero: take("div-zero"),
            too_big: take("too-big"),
            too_complex: take("too-complex"),
        },
        Kind::RecallName => Behaviour::RecallName {
            unknown: take("unknown"),
        },
        Kind::SetName => Behaviour::SetName,
        _ => Behaviour::Keywords,
    };
    Ok(Rule {
        name: section.name.to_owned(),
        keywords,
        replies: main,
        behaviour,
    })
}

/// Parses `pair = from => to` lines.
fn build_reflections(section: &Section<'_>) -> Result<Reflections, RulesError> {
    let mut reflections = Reflections::default();
    for entry in &section.entries {
        if entry.key != "pair" {
            return Err(RulesError::at(
                entry.line,
                format!(
                    "unknown key `{}` in [@reflections]; expected `pair = from => to`",
                    entry.key
                ),
            ));
        }
        let Some((from, to)) = entry.value.split_once("=>") else {
            return Err(RulesError::at(
                entry.line,
                "a `pair` needs `=>`, as in `pair = my => your`",
            ));
        };
        let (from, to) = (from.trim(), to.trim());
        if from.is_empty() || to.is_empty() {
            return Err(RulesError::at(
                entry.line,
                "a `pair` needs words on both sides of `=>`",
            ));
        }
        check_reflection_pattern(from).map_err(|message| RulesError::at(entry.line, message))?;
        reflections.add(from, to);
    }
    Ok(reflections)
}

fn check_reflection_pattern(pattern: &str) -> Result<(), String> {
    let normalized = normalize_keyword(pattern);
    let (anchored, body) = match normalized.strip_prefix('^') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, normalized.as_str()),
    };
    if body.is_empty() {
        return Err("`^` must be followed by a word".to_owned());
    }
    if body.is_ascii() {
        if !is_word_pattern(body) {
            return Err(format!(
                "`{pattern}` is not made of English words; patterns in ASCII may contain only \
                 letters, digits and apostrophes, separated by spaces"
            ));
        }
    } else if anchored {
        return Err(format!("`^` works only with English words, not `{body}`"));
    }
    Ok(())
}

/// Parses `zh = 星期日 | ...` and `en = Sunday | ...`.
fn build_weekdays(section: &Section<'_>) -> Result<Weekdays, RulesError> {
    let mut weekdays = Weekdays {
        zh: Vec::new(),
        en: Vec::new(),
    };
    for entry in &section.entries {
        let names = match entry.key {
            "zh" => &mut weekdays.zh,
            "en" => &mut weekdays.en,
            other => {
                return Err(RulesError::at(
                    entry.line,
                    format!("unknown key `{other}` in [@weekdays]; expected `zh` and `en`"),
                ))
            }
        };
        if !names.is_empty() {
            return Err(RulesError::at(
                entry.line,
                format!("`{}` is given twice in [@weekdays]", entry.key),
            ));
        }
        *names = entry
            .value
            .split('|')
            .map(|name| name.trim().to_owned())
            .collect();
        if names.len() != 7 || names.iter().any(String::is_empty) {
            return Err(RulesError::at(
                entry.line,
                format!(
                    "`{}` needs seven non-empty weekday names separated by `|`, Sunday first",
                    entry.key
                ),
            ));
        }
    }
    if let Some(lang) = [("zh", &weekdays.zh), ("en", &weekdays.en)]
        .iter()
        .find(|(_, names)| names.is_empty())
        .map(|(lang, _)| lang)
    {
        return Err(RulesError::at(
            section.line,
            format!("[@weekdays] has no `{lang}` line; add `{lang} = ...` with seven names, Sunday first"),
        ));
    }
    Ok(weekdays)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in sections, minimal, to append to rules under test.
    const BUILT_IN_SECTIONS: &str = "
[@arithmetic]
zh = {expr} = {result}
en = {expr} = {result}
zh.div-zero = 不能除以零
en.div-zero = cannot divide by zero
zh.too-big = 太大
en.too-big = too big
zh.too-complex = 太复杂
en.too-complex = too complex
[@recall-name]
match = what is my name
zh = 你叫{name}
en = you are {name}
zh.unknown = 不知道
en.unknown = no idea
[@set-name]
match = my name is
zh = 好的{name}
en = ok {name}
[@fallback]
zh = 嗯：{text}
en = hm: {text}
zh.empty = 说话
en.empty = say something
[@reflections]
pair = my => your
[@weekdays]
zh = 日|一|二|三|四|五|六
en = Sun|Mon|Tue|Wed|Thu|Fri|Sat
";

    fn error(text: &str) -> RulesError {
        match parse(text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(error) => error,
        }
    }

    fn error_with_built_ins(text: &str) -> RulesError {
        error(&format!("{text}\n{BUILT_IN_SECTIONS}"))
    }

    fn values(now: &LocalTime) -> Values<'_> {
        Values {
            name: "Bob",
            user: "bob1",
            now,
            weekday: "Thu",
            text: "you",
            expr: "1 + 2",
            result: "3",
        }
    }

    #[test]
    fn minimal_rules_parse() {
        let rules = parse(BUILT_IN_SECTIONS).expect("valid");
        assert_eq!(rules.rules.len(), 3);
        assert_eq!(rules.weekdays.name(Lang::En, 4), "Thu");
        assert_eq!(rules.weekdays.name(Lang::Zh, 0), "日");
    }

    #[test]
    fn rules_keep_file_order_and_header_comments() {
        let text = format!("# hi\n[b]   # second\nmatch = b\nzh = 乙\nen = B\n[a]\nmatch = a\nzh = 甲\nen = A\n{BUILT_IN_SECTIONS}");
        let rules = parse(&text).expect("valid");
        let names: Vec<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["b", "a", "@arithmetic", "@recall-name", "@set-name"]
        );
    }

    #[test]
    fn templates_fill_placeholders() {
        let now = LocalTime {
            year: 2026,
            month: 11,
            day: 26,
            hour: 9,
            minute: 5,
            second: 7,
            weekday: 4,
        };
        let t = Template::parse("{name}/{user} {date} {time} {weekday} {year}年{month}月{day}日 {hour}:{minute}:{second} {text} {{x}}", |_| true)
            .expect("valid");
        assert_eq!(
            t.render(&values(&now)),
            "Bob/bob1 2026-11-26 09:05:07 Thu 2026年11月26日 9:05:07 you {x}"
        );
    }

    #[test]
    fn template_errors() {
        assert!(Template::parse("{nmae}", |_| true)
            .unwrap_err()
            .contains("unknown placeholder `{nmae}`"));
        assert!(Template::parse("a {name", |_| true)
            .unwrap_err()
            .contains("unclosed"));
        assert!(Template::parse("a } b", |_| true)
            .unwrap_err()
            .contains("stray"));
        assert!(Template::parse("{}", |_| true)
            .unwrap_err()
            .contains("unknown placeholder"));
    }

    #[test]
    fn unknown_key_reports_line() {
        let e = error_with_built_ins("[greeting]\nmach = hi\nzh = 你好\nen = hi");
        assert_eq!(e.line(), Some(2));
        assert!(e.message().contains("unknown key `mach`"), "{e}");
        assert!(e.message().contains("match, zh, en"), "{e}");
        assert_eq!(e.to_string(), format!("rules line 2: {}", e.message()));
    }

    #[test]
    fn section_without_replies() {
        let e = error_with_built_ins("\n[greeting]\nmatch = hi\nzh = 你好");
        assert_eq!(e.line(), Some(2));
        assert!(e.message().contains("no `en` reply"), "{e}");
        let e = error_with_built_ins("[greeting]\nmatch = hi");
        assert!(e.message().contains("no `zh` reply"), "{e}");
    }

    #[test]
    fn section_without_match() {
        let e = error_with_built_ins("[greeting]\nzh = 你好\nen = hi");
        assert_eq!(e.line(), Some(1));
        assert!(e.message().contains("no `match`"), "{e}");
    }

    #[test]
    fn unknown_placeholder_reports_line() {
        let e = error_with_built_ins("[greeting]\nmatch = hi\nzh = 你好{nmae}\nen = hi");
        assert_eq!(e.line(), Some(3));
        assert!(e.message().contains("`{nmae}`"), "{e}");
    }

    #[test]
    fn result_only_in_arithmetic() {
        let e = error_with_built_ins("[greeting]\nmatch = hi\nzh = {result}\nen = hi");
        assert_eq!(e.line(), Some(3));
        assert!(e.message().contains("cannot be used here"), "{e}");
    }

    #[test]
    fn missing_built_in() {
        let (without_weekdays, _) = BUILT_IN_SECTIONS
            .split_once("[@weekdays]")
            .expect("present");
        let e = error(without_weekdays);
        assert_eq!(e.line(), None);
        assert!(e.message().contains("[@weekdays] is missing"), "{e}");
        assert_eq!(error("").line(), None);
    }

    #[test]
    fn unknown_built_in_and_bad_headers() {
        let e = error_with_built_ins("[@greeting]");
        assert!(
            e.message().contains("unknown built-in section [@greeting]"),
            "{e}"
        );
        assert!(error_with_built_ins("[greeting")
            .message()
            .contains("closing `]`"));
        assert!(error_with_built_ins("[]")
            .message()
            .contains("bad section name"));
        assert!(error_with_built_ins("[two words]")
            .message()
            .contains("bad section name"));
        assert!(error_with_built_ins("[a] b")
            .message()
            .contains("unexpected text"));
    }

    #[test]
    fn duplicate_section() {
        let e = error(&format!("{BUILT_IN_SECTIONS}\n[@weekdays]"));
        assert!(e.message().contains("defined twice"), "{e}");
    }

    #[test]
    fn stray_lines() {
        let e = error("match = hi");
        assert_eq!(e.line(), Some(1));
        assert!(e.message().contains("before any [section]"), "{e}");
        let e = error("\n\nhello there");
        assert_eq!(e.line(), Some(3));
        assert!(e.message().contains("expected a `[section]` header"), "{e}");
        let e = error("[a]\n= x");
        assert!(e.message().contains("starts with `=`"), "{e}");
    }

    #[test]
    fn empty_values() {
        let e = error_with_built_ins("[g]\nmatch = hi ||\nzh = a\nen = b");
        assert_eq!(e.line(), Some(2));
        assert!(e.message().contains("empty keyword"), "{e}");
        let e = error_with_built_ins("[g]\nmatch = hi\nzh =\nen = b");
        assert_eq!(e.line(), Some(3));
        assert!(e.message().contains("empty reply"), "{e}");
    }

    #[test]
    fn match_forbidden_in_fallback() {
        let text = BUILT_IN_SECTIONS.replace("[@fallback]\n", "[@fallback]\nmatch = x\n");
        let e = error(&text);
        assert!(
            e.message().contains("unknown key `match` in [@fallback]"),
            "{e}"
        );
    }

    #[test]
    fn reflection_errors() {
        let with = |pair: &str| BUILT_IN_SECTIONS.replace("pair = my => your", pair);
        assert!(error(&with("pair = my your")).message().contains("`=>`"));
        assert!(error(&with("pair = my =>"))
            .message()
            .contains("both sides"));
        assert!(error(&with("pair = hello! => hi"))
            .message()
            .contains("not made of English words"));
        assert!(error(&with("pair = ^我 => 你"))
            .message()
            .contains("only with English"));
        assert!(error(&with("swap = a => b"))
            .message()
            .contains("unknown key `swap`"));
        parse(&with("pair = ^you => I")).expect("anchored English pattern is fine");
    }

    #[test]
    fn weekday_errors() {
        let e =
            error(&BUILT_IN_SECTIONS.replace("en = Sun|Mon|Tue|Wed|Thu|Fri|Sat", "en = Sun|Mon"));
        assert!(e.message().contains("seven"), "{e}");
        let e = error(&BUILT_IN_SECTIONS.replace("en = Sun|Mon|Tue|Wed|Thu|Fri|Sat", ""));
        assert!(e.message().contains("no `en` line"), "{e}");
    }

    #[test]
    fn size_cap() {
        let big = format!("{BUILT_IN_SECTIONS}\n#{}", "x".repeat(MAX_RULES_BYTES));
        assert!(error(&big).message().contains("limit"));
    }

    #[test]
    fn crlf_and_bom() {
        let text = format!("\u{feff}{}", BUILT_IN_SECTIONS.replace('\n', "\r\n"));
        parse(&text).expect("CRLF and a byte-order mark are fine");
    }

    #[test]
    fn never_panics_on_junk() {
        for junk in [
            "",
            "[",
            "]",
            "=",
            "{",
            "[a]\nzh = {",
            "[a]\nmatch = |",
            "\u{0}",
            "[@weekdays]\nzh = |||||||",
            "😀 = 😀",
        ] {
            let _ = parse(junk);
            let _ = parse(&format!("{BUILT_IN_SECTIONS}\n{junk}"));
        }
    }
}
