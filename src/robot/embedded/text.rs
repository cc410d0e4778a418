//! Text helpers for the embedded robot: language detection, normalisation, keyword matching that
//! respects English word boundaries, ELIZA-style pronoun reflection and a stable hash.

use std::ops::Range;

/// Whether `c` belongs to a CJK script or CJK punctuation; such text gets a Chinese reply.
pub(super) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2FDF     // radicals
        | 0x3000..=0x303F   // CJK symbols and punctuation
        | 0x3040..=0x30FF   // kana
        | 0x3100..=0x312F   // bopomofo
        | 0x31A0..=0x31BF   // bopomofo extended
        | 0x3400..=0x4DBF   // extension A
        | 0x4E00..=0x9FFF   // unified ideographs
        | 0xF900..=0xFAFF   // compatibility ideographs
        | 0xFF00..=0xFFEF   // full-width forms
        | 0x20000..=0x3134F // extensions B to G
    )
}

/// Whether `text` contains any CJK character.
pub(super) fn contains_cjk(text: &str) -> bool {
    text.chars().any(is_cjk)
}

/// A letter or digit that glues words together, so that a keyword next to it is not a whole word.
///
/// CJK characters are excluded: Chinese is written without spaces, so `hi小明` still contains the
/// word `hi`.
fn is_word_glue(c: char) -> bool {
    c.is_alphanumeric() && !is_cjk(c)
}

/// The user's text lower-cased, with curly apostrophes made straight and runs of white space
/// collapsed into one space, remembering where each part came from in the original.
pub(super) struct Normalized {
    /// The normalised text.
    pub text: String,
    /// For each byte offset of `text`, the offset in the original text of the character that
    /// produced it; one more entry maps `text.len()` to the original's length.
    origin: Vec<usize>,
}

impl Normalized {
    /// Normalises `original`.
    pub fn new(original: &str) -> Self {
        let mut text = String::with_capacity(original.len());
        let mut origin = Vec::with_capacity(original.len() + 1);
        for (at, c) in original.char_indices() {
            if c.is_whitespace() {
                if !text.is_empty() && !text.ends_with(' ') {
                    push_mapped(&mut text, &mut origin, ' ', at);
                }
            } else {
                for lower in fold_char(c) {
                    push_mapped(&mut text, &mut origin, lower, at);
                }
            }
        }
        if text.ends_with(' ') {
            text.pop();
            origin.pop();
        }
        origin.push(original.len());
        Normalized { text, origin }
    }

    /// The offset in the original text that corresponds to `offset` in the normalised text.
    pub fn original_offset(&self, offset: usize) -> usize {
        self.origin
            .get(offset)
            .copied()
            .unwrap_or_else(|| self.origin.last().copied().unwrap_or(0))
    }
}

fn push_mapped(text: &mut String, origin: &mut Vec<usize>, c: char, at: usize) {
    text.push(c);
    origin.extend(std::iter::repeat_n(at, c.len_utf8()));
}

/// Case-folds one character the way keywords and text are compared.
fn fold_char(c: char) -> impl Iterator<Item = char> {
    let straight = match c {
        '\u{2018}' | '\u{2019}' => '\'',
        other => other,
    };
    straight.to_lowercase()
}

/// Normalises a keyword written in a rules file the same way as the user's text.
pub(super) fn normalize_keyword(raw: &str) -> String {
    Normalized::new(raw).text
}

/// A keyword to look for in normalised text.
#[derive(Debug, Clone)]
pub(super) struct Keyword {
    text: String,
    /// Whether the keyword starts (ends) with a letter or digit, and so must not be glued to one
    /// in the text: `hi` must not match inside `this`, but `?` may follow anything.
    bounded_start: bool,
    bounded_end: bool,
}

impl Keyword {
    /// A keyword from a rules file; `None` if it is empty after normalising.
    pub fn new(raw: &str) -> Option<Self> {
        let text = normalize_keyword(raw);
        let first = text.chars().next()?;
        let last = text.chars().next_back()?;
        Some(Keyword {
            bounded_start: is_word_glue(first),
            bounded_end: is_word_glue(last),
            text,
        })
    }

    /// The keyword as it is compared (normalised).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the keyword first occurs in `haystack` (normalised text) as a whole word.
    pub fn find_in(&self, haystack: &str) -> Option<Range<usize>> {
        haystack
            .match_indices(self.text.as_str())
            .map(|(at, found)| at..at + found.len())
            .find(|range| self.has_boundaries(haystack, range))
    }

    /// `haystack` with every whole-word occurrence of the keyword replaced by `with`.
    pub fn replace_all(&self, haystack: &str, with: &str) -> String {
        let mut out = String::with_capacity(haystack.len());
        let mut copied = 0;
        for (at, found) in haystack.match_indices(self.text.as_str()) {
            let range = at..at + found.len();
            if self.has_boundaries(haystack, &range) {
                out.push_str(&haystack[copied..range.start]);
                out.push_str(with);
                copied = range.end;
            }
        }
        out.push_str(&haystack[copied..]);
        out
    }

    /// Whether the keyword occurs in `haystack` (normalised text) as a whole word.
    pub fn is_in(&self, haystack: &str) -> bool {
        self.find_in(haystack).is_some()
    }

    fn has_boundaries(&self, haystack: &str, range: &Range<usize>) -> bool {
        let before = haystack[..range.start].chars().next_back();
        let after = haystack[range.end..].chars().next();
        let glued = |c: Option<char>| c.is_some_and(is_word_glue);
        let glued_start = self.bounded_start && glued(before);
        let glued_end = self.bounded_end && glued(after);
        !glued_start && !glued_end
    }
}

/// Whether `c` can be part of an English word for reflection (`I'm` is one word).
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '\'' || c == '\u{2019}'
}

/// Whether `c` ends a clause, after which a `^`-anchored reflection may match again.
fn ends_clause(c: char) -> bool {
    matches!(
        c,
        ',' | '.' | ';' | ':' | '!' | '?' | '，' | '。' | '；' | '：' | '！' | '？' | '、'
    )
}

/// Whether every character of a word pattern can be part of an English word.
pub(super) fn is_word_pattern(pattern: &str) -> bool {
    pattern
        .split(' ')
        .all(|word| !word.is_empty() && word.chars().all(is_word_char))
}

/// A replacement of whole English words, such as `my` → `your` or `you are` → `I am`.
#[derive(Debug, Clone)]
struct WordSwap {
    words: Vec<String>,
    /// Only at the start of a clause (`^you` → `I`, while `you` elsewhere → `me`).
    anchored: bool,
    replacement: String,
}

/// Pronoun swaps that turn the user's words into the robot's point of view ("I like my cat" →
/// "you like your cat"; "我喜欢我的猫" → "你喜欢你的猫").
#[derive(Debug, Clone, Default)]
pub(super) struct Reflections {
    /// Tried longest first, so that `you are` wins over `you`.
    words: Vec<WordSwap>,
    /// Substring swaps for text without spaces (Chinese), tried longest first.
    substrings: Vec<(String, String)>,
}

impl Reflections {
    /// Adds a swap. A pattern made of ASCII words (letters, digits, apostrophes, separated by
    /// single spaces; optionally starting with `^`) replaces whole words; any other pattern
    /// replaces substrings. The caller checks patterns with [`is_word_pattern`].
    pub fn add(&mut self, pattern: &str, replacement: &str) {
        let normalized = normalize_keyword(pattern);
        let (anchored, body) = match normalized.strip_prefix('^') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, normalized.as_str()),
        };
        if body.is_ascii() {
            self.words.push(WordSwap {
                words: body.split(' ').map(str::to_owned).collect(),
                anchored,
                replacement: replacement.to_owned(),
            });
            self.words
                .sort_by_key(|swap| std::cmp::Reverse(swap.words.len()));
        } else {
            self.substrings
                .push((body.to_owned(), replacement.to_owned()));
            self.substrings
                .sort_by_key(|(from, _)| std::cmp::Reverse(from.chars().count()));
        }
    }

    /// `text` with every pronoun swapped, in one pass so that a swapped word is not swapped back.
    pub fn reflect(&self, text: &str) -> String {
        let tokens = tokenize(text);
        let mut out = String::with_capacity(text.len());
        let mut clause_start = true;
        let mut i = 0;
        while let Some(&(token, is_word)) = tokens.get(i) {
            if !is_word {
                self.reflect_substrings(token, &mut out);
                clause_start |= token.chars().any(ends_clause);
                i += 1;
                continue;
            }
            match self.swap_words(&tokens, i, clause_start) {
                Some((consumed, replacement)) => {
                    out.push_str(replacement);
                    i += consumed;
                }
                None => {
                    out.push_str(token);
                    i += 1;
                }
            }
            clause_start = false;
        }
        out
    }

    /// The first swap whose words start at token `i`: how many tokens it covers and its text.
    fn swap_words(
        &self,
        tokens: &[(&str, bool)],
        i: usize,
        clause_start: bool,
    ) -> Option<(usize, &str)> {
        self.words
            .iter()
            .filter(|swap| clause_start || !swap.anchored)
            .find(|swap| words_match(tokens, i, &swap.words))
            .map(|swap| (swap.words.len() * 2 - 1, swap.replacement.as_str()))
    }

    fn reflect_substrings(&self, mut rest: &str, out: &mut String) {
        'chars: while let Some(c) = rest.chars().next() {
            for (from, to) in &self.substrings {
                if let Some(after) = rest.strip_prefix(from.as_str()) {
                    out.push_str(to);
                    rest = after;
                    continue 'chars;
                }
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
}

/// Whether `words` occur at token `i`, separated by white space only.
fn words_match(tokens: &[(&str, bool)], i: usize, words: &[String]) -> bool {
    words.iter().enumerate().all(|(k, word)| {
        let gap_ok = k == 0
            || tokens
                .get(i + 2 * k - 1)
                .is_some_and(|(gap, _)| gap.chars().all(char::is_whitespace));
        gap_ok
            && tokens
                .get(i + 2 * k)
                .is_some_and(|&(token, is_word)| is_word && same_word(token, word))
    })
}

/// Compares a word of the user's text with a lower-case pattern word.
fn same_word(token: &str, pattern: &str) -> bool {
    token.chars().flat_map(fold_char).eq(pattern.chars())
}

/// Splits text into alternating runs of English word characters (`true`) and everything else.
fn tokenize(text: &str) -> Vec<(&str, bool)> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut in_word = None;
    for (at, c) in text.char_indices() {
        let word = is_word_char(c);
        if in_word.is_some_and(|w| w != word) {
            tokens.push((&text[start..at], !word));
            start = at;
        }
        in_word = Some(word);
    }
    if let Some(word) = in_word {
        tokens.push((&text[start..], word));
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(raw: &str) -> Keyword {
        Keyword::new(raw).expect("non-empty keyword")
    }

    fn norm(text: &str) -> String {
        Normalized::new(text).text
    }

    #[test]
    fn detects_cjk() {
        assert!(contains_cjk("1+2等于几"));
        assert!(contains_cjk("？"));
        assert!(!contains_cjk("hello 1+2"));
        assert!(!contains_cjk("héllo 😀"));
    }

    #[test]
    fn normalizes_case_space_and_quotes() {
        let n = Normalized::new("  What\u{2019}s   YOUR\tname ");
        assert_eq!(n.text, "what's your name");
        assert_eq!(n.original_offset(0), 2);
        assert_eq!(
            n.original_offset(n.text.len()),
            "  What\u{2019}s   YOUR\tname ".len()
        );
    }

    #[test]
    fn ascii_keywords_need_word_boundaries() {
        assert!(kw("hi").is_in(&norm("Hi there")));
        assert!(kw("hi").is_in(&norm("oh, HI!")));
        assert!(!kw("hi").is_in(&norm("this")));
        assert!(!kw("hi").is_in(&norm("which one")));
        assert!(!kw("hi").is_in(&norm("hid")));
        assert!(kw("what time").is_in(&norm("so, what   time is it?")));
        assert!(!kw("bye").is_in(&norm("byebye")));
        assert!(kw("hi").is_in(&norm("hi小明")));
    }

    #[test]
    fn cjk_keywords_match_as_substrings() {
        assert!(kw("你好").is_in(&norm("小图你好呀")));
        assert!(kw("几点").is_in(&norm("现在几点了")));
        assert!(!kw("你好").is_in(&norm("您好")));
    }

    #[test]
    fn punctuation_keywords_need_no_boundary() {
        assert!(kw("?").is_in("1+2?"));
        assert!(kw("=").is_in("1+2="));
    }

    #[test]
    fn find_in_skips_glued_occurrences() {
        assert_eq!(kw("hi").find_in("this hi"), Some(5..7));
    }

    #[test]
    fn replace_all_respects_boundaries() {
        assert_eq!(
            kw("is").replace_all("what is this is", "_"),
            "what _ this _"
        );
        assert_eq!(kw("?").replace_all("1+2??", ""), "1+2");
    }

    fn reflections() -> Reflections {
        let mut r = Reflections::default();
        for (from, to) in [
            ("i am", "you are"),
            ("i", "you"),
            ("my", "your"),
            ("me", "you"),
            ("am", "are"),
            ("you are", "I am"),
            ("^you", "I"),
            ("you", "me"),
            ("your", "my"),
            ("我的", "你的"),
            ("我", "你"),
            ("你", "我"),
        ] {
            r.add(from, to);
        }
        r
    }

    #[test]
    fn reflects_english_pronouns() {
        let r = reflections();
        assert_eq!(r.reflect("I like my cat"), "you like your cat");
        assert_eq!(r.reflect("I am sad"), "you are sad");
        assert_eq!(r.reflect("You are nice"), "I am nice");
        assert_eq!(r.reflect("you like me"), "I like you");
        assert_eq!(r.reflect("I like you"), "you like me");
        assert_eq!(r.reflect("well, you know me"), "well, I know you");
        assert_eq!(r.reflect("This is mine"), "This is mine");
        assert_eq!(r.reflect("Hi, me! am I?"), "Hi, you! are you?");
    }

    #[test]
    fn reflects_chinese_pronouns_in_one_pass() {
        let r = reflections();
        assert_eq!(r.reflect("我喜欢我的猫"), "你喜欢你的猫");
        assert_eq!(r.reflect("我爱你"), "你爱我");
        assert_eq!(r.reflect("I爱my猫"), "you爱your猫");
    }

    #[test]
    fn reflect_handles_odd_input() {
        let r = reflections();
        assert_eq!(r.reflect(""), "");
        assert_eq!(r.reflect("😀 % ''"), "😀 % ''");
        assert_eq!(r.reflect("i\u{2019}m"), "i\u{2019}m");
    }

    #[test]
    fn word_patterns() {
        assert!(is_word_pattern("you are"));
        assert!(is_word_pattern("i'm"));
        assert!(!is_word_pattern("hello!"));
        assert!(!is_word_pattern("a  b"));
    }
}
