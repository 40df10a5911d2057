//! Text rules of the reference curation pipeline: the details removals, `scrub`, and the
//! tokenizer's clean-up of spaces after decode. Each function reproduces the Python original
//! character for character (Python's `\s` and `str.isdigit` classes included).

use crate::unicode_tables::PY_DIGIT_RANGES;

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
    let mut out = details.to_owned();
    for r in REMOVALS {
        if out.contains(r) {
            out = out.replace(r, "");
        }
    }
    out
}

fn is_scrub_class(c: char) -> bool {
    matches!(c, ':' | '[' | ']' | '"' | '{' | '}' | '【' | '】') || is_py_space(c)
}

/// The original `scrub`: collapse runs of `: [ ] " { } 【 】` and whitespace into one space and
/// trim; fix ` ,`, `,,,`, `,,`; drop every word of 7+ characters that contains a digit.
pub fn scrub(s: &str) -> String {
    let mut collapsed = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if is_scrub_class(c) {
            in_run = true;
        } else {
            if in_run && !collapsed.is_empty() {
                collapsed.push(' ');
            }
            in_run = false;
            collapsed.push(c);
        }
    }
    // `collapsed` is already trimmed: leading runs were skipped and a trailing run never pushed.
    let mut fixed = collapsed;
    for (from, to) in [(" ,", ","), (",,,", ","), (",,", ",")] {
        if fixed.contains(from) {
            fixed = fixed.replace(from, to);
        }
    }
    let mut out = String::with_capacity(fixed.len());
    let mut first = true;
    for word in fixed.split(' ') {
        let long_with_digit = word.len() >= 7 && word.chars().count() >= 7 && word.chars().any(is_py_digit);
        if long_with_digit {
            continue;
        }
        if !first {
            out.push(' ');
        }
        first = false;
        out.push_str(word);
    }
    out
}

/// The clean-up of spaces that `transformers` applies after decode when the tokenizer sets
/// `clean_up_tokenization_spaces` (Llama 3.1 does), in its order.
pub fn clean_up_tokenization(s: &str) -> String {
    let mut out = s.to_owned();
    for (from, to) in [
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
    ] {
        if out.contains(from) {
            out = out.replace(from, to);
        }
    }
    out
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
