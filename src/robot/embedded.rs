//! The embedded robot, 小图 (Xiaotu): the server's default robot, which answers offline from a
//! rules file.
//!
//! It greets, says who it is, tells the local time and date, does arithmetic, remembers what
//! users want to be called, explains what it can do, and otherwise reflects the user's words back
//! ELIZA-style. It answers in Chinese when the message contains CJK characters and in English
//! otherwise. The same message always gets the same reply (alternatives are picked by a hash of
//! the text, not at random), apart from what it has learnt about names and the time of day.
//!
//! Every word it says comes from the rules file; the compiled-in default is
//! `src/robot/default.rules`, whose header documents the format.

mod arith;
mod memory;
mod rules;
mod text;

use std::fmt;
use std::io::Read;
use std::path::Path;

use self::arith::Outcome;
use self::memory::NameMemory;
use self::rules::{Behaviour, Lang, Replies, Rule, Rules, Values};
use self::text::{contains_cjk, Normalized};
use super::{Conversation, Request, Robot, RobotError, RobotReport};
use crate::clock::LocalTime;
use crate::text::{cut_to_chars, fnv1a};

pub use self::rules::RulesError;

/// The compiled-in rules.
const DEFAULT_RULES: &str = include_str!("default.rules");
/// Only this many characters of a message are read, which bounds the work per message.
const MAX_INPUT_CHARS: usize = 1000;
/// The longest name remembered, in characters.
const MAX_NAME_CHARS: usize = 32;
/// The longest quotation of the user's words in a reply, in characters.
const MAX_QUOTE_CHARS: usize = 200;

/// The offline, rule-driven robot 小图 (Xiaotu).
///
/// Each message is tried against the rules top to bottom and the first that matches answers;
/// see the module documentation for what the default rules do. Only the first 1,000 characters of
/// a message are read. Names that users give (`my name is Bob`, `我叫小明`) are remembered per
/// user name, for a bounded number of users (see [`with_name_capacity`](Self::with_name_capacity)).
///
/// # Example
///
/// ```
/// use robochat::{EmbeddedRobot, Robot};
///
/// let robot = EmbeddedRobot::new();
/// assert!(robot.reply("alice", "what is (1+2)*3").unwrap().contains('9'));
/// assert!(robot.reply("alice", "你是谁").unwrap().contains("小图"));
/// ```
pub struct EmbeddedRobot {
    rules: Rules,
    names: NameMemory,
}

impl EmbeddedRobot {
    /// The robot with the compiled-in default rules.
    pub fn new() -> Self {
        Self::from_rules(DEFAULT_RULES)
            .expect("the compiled-in rules are valid: the default_rules_parse test checks them")
    }

    /// A robot with the rules in `text` (the format of `src/robot/default.rules`).
    pub fn from_rules(text: &str) -> Result<Self, RulesError> {
        Ok(EmbeddedRobot {
            rules: rules::parse(text)?,
            names: NameMemory::new(memory::DEFAULT_CAPACITY),
        })
    }

    /// A robot with the rules in the file at `path`; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self, RulesError> {
        let text = read_rules_file(path)?;
        Self::from_rules(&text).map_err(|error| error.in_file(path))
    }

    /// Remembers the names of at most `users` users (10,000 unless changed), forgetting the one
    /// told longest ago when full; 0 remembers none. Forgets any names already remembered.
    pub fn with_name_capacity(self, users: usize) -> Self {
        EmbeddedRobot {
            names: NameMemory::new(users),
            ..self
        }
    }

    /// Answers `text` from `user` (in the conversation of everyone with that name) as if the
    /// local time were `now`.
    #[cfg(test)]
    fn reply_at(&self, user: &str, text: &str, now: &LocalTime) -> String {
        self.answer_at(&Request::new(user, text), now)
    }

    /// Answers `request` as if the local time were `now`.
    fn answer_at(&self, request: &Request<'_>, now: &LocalTime) -> String {
        let user = request.user;
        let turn = Turn::new(self, request, now);
        if !turn.text.chars().any(char::is_alphanumeric) {
            return turn.render(&self.rules.empty);
        }
        for rule in &self.rules.rules {
            if let Some(reply) = self.try_rule(rule, &turn) {
                log::debug!("embedded robot: [{}] answers {user}", rule.name);
                return reply;
            }
        }
        log::debug!("embedded robot: no rule matched; reflecting {user}'s words");
        turn.render(&self.rules.fallback)
    }

    /// The reply of `rule`, if it applies to this message.
    fn try_rule(&self, rule: &Rule, turn: &Turn<'_>) -> Option<String> {
        let matches = || rule.keywords.iter().any(|k| k.is_in(&turn.normalized.text));
        match &rule.behaviour {
            Behaviour::Keywords => matches().then(|| turn.render(&rule.replies)),
            Behaviour::Arithmetic {
                division_by_zero,
                too_big,
                too_complex,
            } => {
                let expression = strip_fillers(&turn.normalized.text, rule);
                match arith::evaluate(&expression) {
                    Outcome::NotArithmetic => None,
                    Outcome::Value { expr, value } => {
                        let result = arith::format_number(value);
                        Some(turn.render_full(&rule.replies, &turn.name, &expr, &result))
                    }
                    Outcome::DivisionByZero { expr } => {
                        Some(turn.render_full(division_by_zero, &turn.name, &expr, ""))
                    }
                    Outcome::TooBig => Some(turn.render(too_big)),
                    Outcome::TooComplex => Some(turn.render(too_complex)),
                }
            }
            Behaviour::RecallName { unknown } => {
                if !matches() {
                    return None;
                }
                Some(match &turn.remembered {
                    Some(name) => turn.render_full(&rule.replies, name, "", ""),
                    None => turn.render(unknown),
                })
            }
            Behaviour::SetName => {
                let name = rule.keywords.iter().find_map(|keyword| {
                    let found = keyword.find_in(&turn.normalized.text)?;
                    let after = turn.normalized.original_offset(found.end);
                    extract_name(turn.text.get(after..)?)
                })?;
                self.names.remember(turn.conversation, &name);
                Some(turn.render_full(&rule.replies, &name, "", ""))
            }
        }
    }
}

impl Default for EmbeddedRobot {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EmbeddedRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name memory can hold thousands of users; their names do not belong in logs.
        f.debug_struct("EmbeddedRobot")
            .field("rules", &self.rules.rules.len())
            .finish_non_exhaustive()
    }
}

impl Robot for EmbeddedRobot {
    fn name(&self) -> &str {
        "embedded"
    }

    fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
        self.answer(&Request::new(user, text))
    }

    fn answer(&self, request: &Request<'_>) -> Result<String, RobotError> {
        Ok(self.answer_at(request, &LocalTime::now()))
    }

    fn end_conversation(&self, conversation: &Conversation) {
        self.names.forget(conversation);
    }

    fn report(&self) -> RobotReport {
        RobotReport {
            memory_bytes: self.names.bytes() as u64,
            links: Vec::new(),
        }
    }

    fn never_blocks(&self) -> bool {
        true // pure computation; the name memory's lock is held only for a map lookup or insert
    }
}

/// Everything about one message that replies are written from.
struct Turn<'a> {
    robot: &'a EmbeddedRobot,
    user: &'a str,
    conversation: &'a Conversation,
    /// The message, trimmed and cut to [`MAX_INPUT_CHARS`].
    text: &'a str,
    normalized: Normalized,
    lang: Lang,
    hash: u64,
    now: &'a LocalTime,
    remembered: Option<String>,
    /// What `{name}` means: the remembered name, or else the user name.
    name: String,
    /// The message with pronouns reflected, for `{text}`.
    reflected: String,
}

impl<'a> Turn<'a> {
    fn new(robot: &'a EmbeddedRobot, request: &'a Request<'a>, now: &'a LocalTime) -> Self {
        let (user, conversation) = (request.user, &request.conversation);
        let text = cut_to_chars(request.text.trim(), MAX_INPUT_CHARS).trim_end();
        let remembered = robot.names.recall(conversation);
        Turn {
            robot,
            user,
            conversation,
            text,
            normalized: Normalized::new(text),
            lang: if contains_cjk(text) {
                Lang::Zh
            } else {
                Lang::En
            },
            hash: fnv1a(text),
            now,
            name: remembered.clone().unwrap_or_else(|| user.to_owned()),
            remembered,
            reflected: quote(&robot.rules.reflections.reflect(trim_sentence_end(text))),
        }
    }

    fn render(&self, replies: &Replies) -> String {
        self.render_full(replies, &self.name, "", "")
    }

    fn render_full(&self, replies: &Replies, name: &str, expr: &str, result: &str) -> String {
        let values = Values {
            name,
            user: self.user,
            now: self.now,
            weekday: self.robot.rules.weekdays.name(self.lang, self.now.weekday),
            text: &self.reflected,
            expr,
            result,
        };
        replies.render(self.lang, self.hash, &values)
    }
}

/// The text of an arithmetic question without the rule's filler words ("what is", "等于几").
fn strip_fillers(text: &str, rule: &Rule) -> String {
    let mut fillers: Vec<_> = rule.keywords.iter().collect();
    // Longest first, so that "what is" goes before "is" could split it.
    fillers.sort_by_key(|k| std::cmp::Reverse(k.text().len()));
    fillers.into_iter().fold(text.to_owned(), |text, filler| {
        filler.replace_all(&text, " ")
    })
}

/// The name at the start of `rest` (what follows "my name is"), if it looks like one: up to the
/// first clause punctuation, without surrounding quotes or punctuation, at most
/// [`MAX_NAME_CHARS`] characters.
fn extract_name(rest: &str) -> Option<String> {
    let rest = rest.trim_start_matches(|c: char| c.is_whitespace() || is_name_punctuation(c));
    let end = rest.find(ends_name).unwrap_or(rest.len());
    let name: String = rest[..end].chars().take(MAX_NAME_CHARS).collect();
    let name = name.trim_end_matches(|c: char| c.is_whitespace() || is_name_punctuation(c));
    name.chars()
        .any(char::is_alphanumeric)
        .then(|| name.to_owned())
}

/// Punctuation that ends a name: the end of a clause or a sentence.
fn ends_name(c: char) -> bool {
    c.is_control() || ",.!?;()，。！？；、（）\u{2026}".contains(c)
}

/// Punctuation around a name, such as quotes, to drop.
fn is_name_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || "：“”‘’「」『』《》～—…·".contains(c)
}

/// `text` without the punctuation that ends its sentence, so it can be quoted mid-sentence.
fn trim_sentence_end(text: &str) -> &str {
    text.trim_end_matches(|c: char| c.is_whitespace() || ".!?。！？~～…".contains(c))
}

/// `text` cut to [`MAX_QUOTE_CHARS`], marking the cut.
fn quote(text: &str) -> String {
    let short = cut_to_chars(text, MAX_QUOTE_CHARS);
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short.to_owned()
    }
}

/// Reads a rules file, refusing files over the size limit or not in UTF-8.
fn read_rules_file(path: &Path) -> Result<String, RulesError> {
    let file = std::fs::File::open(path).map_err(|error| {
        RulesError::unreadable(path, format!("cannot open the rules file: {error}"))
    })?;
    let limit = rules::MAX_RULES_BYTES;
    let mut bytes = Vec::new();
    // Read one byte past the limit so that a file that grows while being read is still caught.
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| {
            RulesError::unreadable(path, format!("cannot read the rules file: {error}"))
        })?;
    if bytes.len() > limit {
        return Err(RulesError::unreadable(
            path,
            format!("the rules file is larger than the {limit}-byte limit"),
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        RulesError::at(line, "the rules file is not valid UTF-8; save it as UTF-8").in_file(path)
    })
}

#[cfg(test)]
mod tests;
