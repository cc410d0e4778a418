//! Parsing and checking a rules file: sections and `key = value` lines become [`Rules`].
//!
//! Every mistake becomes a [`RulesError`] naming its line and saying what to change. This file
//! must never panic on any input and must never accept a file that leaves the robot without a
//! reply it needs: once [`parse`] succeeds, answering cannot fail.

use std::collections::HashMap;

use super::template::{Template, Var};
use super::{Behaviour, Lang, Replies, Rule, Rules, RulesError, Weekdays, MAX_RULES_BYTES};
use crate::robot::embedded::text::{is_word_pattern, normalize_keyword, Keyword, Reflections};

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
pub(in crate::robot::embedded) fn parse(text: &str) -> Result<Rules, RulesError> {
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
