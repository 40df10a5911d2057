//! Text rules of the reference curation pipeline: the details removals, `scrub`, and the
//! tokenizer's clean-up of spaces after decode. Each function reproduces the Python original
//! character for character (Python's `\s` and `str.isdigit` classes included).

use crate::unicode_tables::PY_DIGIT_RANGES;
use memchr::memmem::Finder;
use std::sync::LazyLock;

/// Substrings deleted from the details JSON string, in this order (case-sensitive).
pub const REMOVALS: [&str; 13] = [
    "\"Batteries Included?\": \"No\"",
    "\"Batteries Included?\": \"Yes\"",
    "\"Batteries Required?\": \"No\"",
    "\"Batteries Required?\": \"Yes\"",
    "By Manufacturer",
    "Item",
    "Date First",
    "Package",
    ":",
    "Number of",
    "Best Sellers",
    "Number",
    "Product ",
];

/// Python `re` `\s` on a `str` pattern (Unicode whitespace, including U+001C..U+001F).
pub fn is_py_space(c: char) -> bool {
    matches!(c as u32, 0x09..=0x0D | 0x1C..=0x20 | 0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000)
}

/// Python `str.isdigit()` for one character.
pub fn is_py_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    in_ranges(PY_DIGIT_RANGES, c)
}

/// Python `re` `\w` (on a `str` pattern) for one character.
pub fn is_py_word(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    in_ranges(crate::unicode_tables::PY_WORD_RANGES, c)
}

/// Python `re` `\d` (on a `str` pattern) for one character.
pub fn is_py_decimal(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    in_ranges(crate::unicode_tables::PY_DECIMAL_RANGES, c)
}

fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let cp = c as u32;
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Applies [`REMOVALS`] to a details JSON string.
pub fn scrub_details(details: &str) -> String {
    static FINDERS: LazyLock<Vec<(Finder<'static>, &str)>> =
        LazyLock::new(|| REMOVALS.iter().map(|r| (Finder::new(r), "")).collect());
    replace_all_shrinking(details.to_owned(), &FINDERS)
}

/// Python's `s.replace(from, to)` (left to right, non-overlapping) in place, for a `to` no longer
/// than `from` (the needle of `finder`). Whole UTF-8 strings for a whole one keep it UTF-8: a
/// match of a UTF-8 string always starts and ends at character boundaries.
fn replace_shrinking(buf: &mut Vec<u8>, finder: &Finder<'_>, to: &[u8]) {
    let n = finder.needle().len();
    debug_assert!(to.len() <= n && n > 0);
    let Some(first) = finder.find(buf) else { return };
    // Everything before `write` is the result; everything from `read` on is still the input,
    // and `write <= read` throughout, so the input ahead is never overwritten.
    let (mut write, mut read) = (first, first);
    loop {
        buf[write..write + to.len()].copy_from_slice(to);
        write += to.len();
        read += n;
        let gap = finder.find(&buf[read..]).unwrap_or(buf.len() - read);
        buf.copy_within(read..read + gap, write);
        write += gap;
        read += gap;
        if read == buf.len() {
            break;
        }
    }
    buf.truncate(write);
}

/// Python's chain `s.replace(a, b).replace(c, d)…` for replacements each no longer than its
/// pattern.
fn replace_all_shrinking(s: String, finders: &[(Finder<'static>, &'static str)]) -> String {
    let mut buf = s.into_bytes();
    for (finder, to) in finders {
        replace_shrinking(&mut buf, finder, to.as_bytes());
    }
    String::from_utf8(buf).expect("replacing whole UTF-8 strings with UTF-8 leaves UTF-8")
}

fn is_scrub_class(c: char) -> bool {
    matches!(c, ':' | '[' | ']' | '"' | '{' | '}' | '【' | '】') || is_py_space(c)
}

/// [`is_scrub_class`] for each ASCII byte.
const ASCII_SCRUB_CLASS: [bool; 128] = {
    let mut t = [false; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = matches!(b as u8, b':' | b'[' | b']' | b'"' | b'{' | b'}' | 0x09..=0x0D | 0x1C..=0x20);
        b += 1;
    }
    t
};

/// The original `scrub`: collapse runs of `: [ ] " { } 【 】` and whitespace into one space and
/// trim; fix ` ,`, `,,,`, `,,`; drop every word of 7+ characters that contains a digit.
///
/// Works on bytes: ASCII bytes are classified by a table and kept text is copied a run at a
/// time; only non-ASCII characters are decoded.
pub fn scrub(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut collapsed = String::with_capacity(s.len());
    let mut in_run = false;
    // Start of the pending run of kept characters.
    let mut keep_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (class, len) = if b < 0x80 {
            (ASCII_SCRUB_CLASS[b as usize], 1)
        } else {
            let c = s[i..].chars().next().expect("a char at a char boundary");
            (is_scrub_class(c), c.len_utf8())
        };
        if class {
            if !in_run {
                collapsed.push_str(&s[keep_from..i]);
                in_run = true;
            }
        } else if in_run {
            // The run's space, unless a comma follows: every space of the collapsed text comes
            // from a run, so this is the original's `replace(" ,", ",")`.
            if !collapsed.is_empty() && b != b',' {
                collapsed.push(' ');
            }
            in_run = false;
            keep_from = i;
        }
        i += len;
    }
    if !in_run {
        collapsed.push_str(&s[keep_from..]);
    }
    // `collapsed` is already trimmed: leading runs were skipped and a trailing run never pushed.
    static COMMAS: LazyLock<[(Finder<'static>, &str); 2]> =
        LazyLock::new(|| [(Finder::new(",,,"), ","), (Finder::new(",,"), ",")]);
    let fixed = if collapsed.contains(",,") { replace_all_shrinking(collapsed, &*COMMAS) } else { collapsed };
    drop_long_words_with_digits(fixed)
}

/// The last rule of [`scrub`] on a collapsed text: drops every space-separated word of 7+
/// characters that contains a digit (Python's `" ".join(w for w in s.split(" ") if …)`), in one
/// pass, in place.
fn drop_long_words_with_digits(text: String) -> String {
    let mut buf = text.into_bytes();
    let n = buf.len();
    // Output goes to `buf[..write]`; the word being read starts at `start`. The output is never
    // longer than what was read before `start` minus its last space, so `write < start` once a
    // word was read: kept text moves left over bytes already read.
    let (mut write, mut start, mut i) = (0, 0, 0);
    let (mut chars, mut digit, mut first) = (0usize, false, true);
    while i <= n {
        if i == n || buf[i] == b' ' {
            if !(chars >= 7 && digit) {
                if !first {
                    buf[write] = b' ';
                    write += 1;
                }
                buf.copy_within(start..i, write);
                write += i - start;
                first = false;
            }
            i += 1;
            start = i;
            chars = 0;
            digit = false;
            continue;
        }
        let b = buf[i];
        chars += 1;
        if b < 0x80 {
            digit |= b.is_ascii_digit();
            i += 1;
        } else {
            let width = match b {
                0xF0.. => 4,
                0xE0.. => 3,
                _ => 2,
            };
            let c = std::str::from_utf8(&buf[i..i + width]).ok().and_then(|s| s.chars().next());
            digit |= c.is_some_and(is_py_digit);
            i += width;
        }
    }
    buf.truncate(write);
    String::from_utf8(buf).expect("whole words of UTF-8 are UTF-8")
}

/// The clean-up of spaces that `transformers` applies after decode when the tokenizer sets
/// `clean_up_tokenization_spaces` (Llama 3.1 does), in its order.
pub fn clean_up_tokenization(s: String) -> String {
    static FINDERS: LazyLock<Vec<(Finder<'static>, &str)>> = LazyLock::new(|| {
        [
            (" .", "."),
            (" ?", "?"),
            (" !", "!"),
            (" ,", ","),
            (" ' ", "'"),
            (" n't", "n't"),
            (" 'm", "'m"),
            (" 's", "'s"),
            (" 've", "'ve"),
            (" 're", "'re"),
        ]
        .into_iter()
        .map(|(from, to)| (Finder::new(from), to))
        .collect()
    });
    replace_all_shrinking(s, &FINDERS)
}

/// Number of Unicode code points (Python's `len`).
pub fn py_len(s: &str) -> usize {
    if s.is_ascii() { s.len() } else { s.chars().count() }
}

/// The first `n` code points of `s` (Python's `s[:n]`).
pub fn py_prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Cuts `s` back to at most `n` code points, ending at a word boundary when one exists in the
/// last 20% (an option beside the original's mid-word cut).
pub fn prefix_at_word_boundary(s: &str, n: usize) -> &str {
    let cut = py_prefix(s, n);
    if cut.len() == s.len() {
        return cut;
    }
    let min_keep = cut.len() * 4 / 5;
    match cut.rfind(|c: char| c.is_whitespace()) {
        Some(i) if i >= min_keep => &cut[..i],
        _ => cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_classes() {
        assert!(is_py_space('\u{1c}') && is_py_space('\u{a0}') && is_py_space('\u{3000}'));
        assert!(!is_py_space('\u{200b}') && !is_py_space('x'));
        assert!(is_py_digit('7') && is_py_digit('²') && is_py_digit('٣') && is_py_digit('①'));
        assert!(!is_py_digit('½') && !is_py_digit('Ⅳ') && !is_py_digit('⑩') && !is_py_digit('a'));
    }
}
