//! The embedded robot's rules file: what a parsed file holds, and the way in ([`parse()`]).
//!
//! The format is documented at the top of `src/robot/default.rules`, the compiled-in default. In
//! short: `[section]` headers, each followed by `key = value` lines; `#` starts a comment line.
//! Ordinary sections are keyword rules; sections whose names start with `@` configure the
//! behaviours implemented in code (arithmetic, names, fallback, pronoun reflection, weekdays).
//!
//! This file keeps the data types the robot answers from and the module's public surface. The
//! work lives next to it: `rules/parse.rs` reads and checks the text, `rules/template.rs` handles
//! `{placeholder}` replies, `rules/error.rs` is [`RulesError`]. This file must never parse text
//! or word error messages itself; those belong to the files next to it.

mod error;
mod parse;
mod template;

use self::template::Template;
use super::text::{Keyword, Reflections};

pub use self::error::RulesError;
pub(super) use self::parse::parse;
pub(super) use self::template::Values;

/// The largest rules file accepted, in bytes.
pub(super) const MAX_RULES_BYTES: usize = 1024 * 1024;

/// The language of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lang {
    Zh,
    En,
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

#[cfg(test)]
mod tests;
