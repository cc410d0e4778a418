//! Small text helpers shared across the crate: cutting text to a number of characters, and a
//! stable hash.

/// The first `max` characters of `text` (all of it if shorter), cut at a character boundary.
pub(crate) fn cut_to_chars(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(end, _)| &text[..end])
}

/// FNV-1a, 64 bits: a hash that is the same in every run and version (std's `DefaultHasher` is
/// not guaranteed to be), for choices that must not change from one run to the next.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_character_boundaries() {
        assert_eq!(cut_to_chars("hello", 3), "hel");
        assert_eq!(cut_to_chars("hello", 5), "hello");
        assert_eq!(cut_to_chars("hello", 50), "hello");
        assert_eq!(cut_to_chars("你好世界", 2), "你好");
        assert_eq!(cut_to_chars("", 2), "");
        assert_eq!(cut_to_chars("abc", 0), "");
    }

    #[test]
    fn fnv1a_is_stable() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("hello"), fnv1a("hello"));
        assert_ne!(fnv1a("hello"), fnv1a("hellp"));
    }
}
