//! The fast engine of the built-in Llama 3.1 tokenizer (`tokenizers` 1.0.0-rc.3) against the
//! reference (`tokenizers` 0.23): the same ids, token ends, counts and decodes on every real
//! prompt, every vocabulary string and every edge of the Llama 3 pre-tokenizer, plus a seeded fuzz
//! set. Zero mismatches allowed.

use crate::common::{read_jsonl, real_data};
use pricer::curate::{CurateOptions, Curator};
use pricer::load::parse_line;
use pricer::tokenizer::PriceTokenizer;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Arc;

fn engines() -> (Arc<PriceTokenizer>, Arc<PriceTokenizer>) {
    let fast = PriceTokenizer::llama31().unwrap();
    let reference = PriceTokenizer::llama31_reference().unwrap();
    assert_eq!(fast.engine(), "tokenizers 1.0.0-rc.3", "the built-in should load the fast engine");
    assert_eq!(reference.engine(), "tokenizers 0.23");
    (fast, reference)
}

/// Every difference between the engines on `texts` (ids, ends, counts, decodes), described.
fn mismatches<S: AsRef<str>>(texts: &[S]) -> Vec<String> {
    let (fast, reference) = engines();
    let mut bad = Vec::new();
    for text in texts {
        let text = text.as_ref();
        let (ids, ends) = fast.encode_with_ends(text).unwrap();
        let (ref_ids, ref_ends) = reference.encode_with_ends(text).unwrap();
        if ids != ref_ids {
            bad.push(format!("ids of {text:?}: {ids:?} vs {ref_ids:?}"));
            continue;
        }
        if ends != ref_ends {
            bad.push(format!("ends of {text:?}: {ends:?} vs {ref_ends:?}"));
        }
        if fast.encode(text).unwrap() != ids || fast.count(text).unwrap() != ids.len() {
            bad.push(format!("encode/count of {text:?} disagree with encode_with_ends"));
        }
        // Decoding with the byte table against 0.23's own decoder (and its clean-up).
        let decoded = fast.decode(&ids).unwrap();
        let expected = pricer::text::clean_up_tokenization(reference.decode_raw(&ids).unwrap());
        if decoded != expected {
            bad.push(format!("decode of {text:?}: {decoded:?} vs {expected:?}"));
        }
    }
    bad
}

fn assert_identical<S: AsRef<str>>(what: &str, texts: &[S]) {
    let bad = mismatches(texts);
    assert!(bad.is_empty(), "{} of {} {what} differ; first: {:#?}", bad.len(), texts.len(), &bad[..bad.len().min(8)]);
}

#[test]
fn every_real_prompt_and_its_exact_token_count() {
    let Some(path) = real_data("curated_items.jsonl") else { return };
    let items = read_jsonl(&path);
    let prompts: Vec<&str> = items.iter().map(|i| i["prompt"].as_str().unwrap()).collect();
    assert_eq!(prompts.len(), 5732);
    assert_identical("real prompts", &prompts);
    // The texts a curation encodes first (title and contents, before the cut and the question).
    let bodies: Vec<String> = prompts.iter().map(|p| p.split_once("\n\n").unwrap().1.to_owned()).collect();
    assert_identical("real prompt bodies", &bodies);
    let (fast, _) = engines();
    let mut exact = 0;
    for item in &items {
        let source = item["source"].as_str().unwrap();
        if source == "ed_test_2000[250:]" || source == "lite_appliances_test" {
            let prompt = item["prompt"].as_str().unwrap();
            assert_eq!(fast.count(prompt).unwrap() as u64, item["token_count"].as_u64().unwrap(), "{prompt}");
            exact += 1;
        }
    }
    assert_eq!(exact, 3740);
}

#[test]
fn every_valid_utf8_vocabulary_string() {
    let (fast, reference) = engines();
    let inner = reference.inner().unwrap();
    let n = inner.get_vocab_size(true) as u32;
    let mut texts = Vec::new();
    let mut texts_of_ids = Vec::new();
    for id in 0..n {
        let bytes: Vec<u8> = reference.token_texts(&[id]).concat().into_bytes();
        let text = String::from_utf8(bytes).unwrap();
        // A token that is part of a character decodes to U+FFFD: not a string of its own.
        if !text.contains('\u{FFFD}') && !text.is_empty() {
            texts_of_ids.push((id, text.clone()));
            texts.push(text);
        }
    }
    assert!(texts.len() > 120_000, "{}", texts.len());
    assert_identical("vocabulary strings", &texts);
    // `ignore_merges`: a pre-token that is a vocabulary string is that one token. Llama 3's added
    // multilingual tokens come out only this way (a plain BPE merges " Việt" differently).
    let single = texts_of_ids.iter().filter(|(id, t)| fast.encode(t).unwrap() == [*id]).count();
    assert!(single > 100_000, "{single}");
    let viet = inner.token_to_id(&byte_level(" Việt")).unwrap();
    assert_eq!(fast.encode(" Việt").unwrap(), [viet]);
    // Token chips: the byte table's text of each id equals 0.23's decode of it.
    let ids: Vec<u32> = (0..n).collect();
    assert_eq!(fast.token_texts(&ids), reference.token_texts(&ids));
    let direct: Vec<String> = ids.iter().map(|&id| inner.decode(&[id], false).unwrap()).collect();
    assert_eq!(fast.token_texts(&ids), direct);
}

/// GPT-2's byte-to-character spelling of a text (how byte-level vocabularies write tokens).
fn byte_level(text: &str) -> String {
    text.bytes()
        .map(|b| {
            let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
            if printable {
                char::from(b)
            } else {
                let rank = (0..=b).filter(|&x| !matches!(x, 33..=126 | 161..=172 | 174..=255)).count() as u32;
                char::from_u32(255 + rank).unwrap()
            }
        })
        .collect()
}

/// Pieces that exercise each alternative of the cl100k pattern and the added tokens.
fn atoms() -> Vec<String> {
    let mut a: Vec<String> = [
        // letters, cases, Unicode letters, combining marks
        "a",
        "Z",
        "word",
        "Word",
        "WORD",
        "café",
        "cafe\u{301}",
        "naïve",
        "Việt",
        "Ελληνικά",
        "русский",
        "中文字符",
        "日本語のテキスト",
        "한국어",
        "עברית",
        "العربية",
        "हिन्दी",
        "ไทย",
        "a\u{300}\u{301}\u{302}",
        "\u{301}",
        "ǅ",
        "ß",
        "ﬁ",
        "Ⅻ", // digits: ASCII groups, non-ASCII digits and numbers
        "1",
        "12",
        "123",
        "1234",
        "12345",
        "1234567",
        "3.14159",
        "1,299.00",
        "$19.99",
        "١٢٣٤",
        "१२३४५",
        "１２３４",
        "²³",
        "½",
        "٣",
        "𝟘𝟙", // contractions in any case, and their near-misses
        "'s",
        "'S",
        "'t",
        "'T",
        "'re",
        "'RE",
        "'rE",
        "'ve",
        "'Ve",
        "'m",
        "'M",
        "'ll",
        "'LL",
        "'lL",
        "'d",
        "'D",
        "’s",
        "‘s",
        "`s",
        "''s",
        "'x",
        "'",
        "''",
        "n't",
        "N'T",
        "y'all",
        "'sa",
        "'t2", // punctuation
        ".",
        "...",
        "?!",
        "C++",
        "#1",
        "50%",
        "&amp;",
        "<br/>",
        "\"",
        "—",
        "–",
        "…",
        "(",
        ")",
        "[x]",
        "@",
        "!!!",
        "$",
        "©",
        "®",
        "™",
        "°F", // emoji, ZWJ sequences, modifiers, flags, keycaps
        "😀",
        "👨\u{200d}👩\u{200d}👧\u{200d}👦",
        "🏳\u{fe0f}\u{200d}🌈",
        "👍🏽",
        "🇺🇸",
        "❤\u{fe0f}",
        "1\u{fe0f}\u{20e3}",
        // whitespace: ASCII, runs, newlines, \r\n, Unicode spaces and separators
        " ",
        "  ",
        "   ",
        "\t",
        " \t ",
        "\n",
        "\n\n",
        "\n\n\n",
        "\r\n",
        "\r\n\r\n",
        "\r",
        "\r\r\n",
        "\n\r",
        " \n",
        "\n ",
        " \n ",
        "\u{a0}",
        "\u{2003}",
        "\u{3000}",
        "\u{2028}",
        "\u{2029}",
        "\u{85}",
        "\u{b}",
        "\u{c}",
        "\u{200b}",
        "\u{feff}",
        "\u{1680}", // added-token literals and near-misses
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|start_header_id|>",
        "<|reserved_special_token_250|>",
        "<|eot_id|",
        "<|eot_id >",
        "<| eot_id|>",
        "<|EOT_ID|>",
        "<<|eot_id|>>",
        "<|eot_id|><|eot_id|>",
        "<|reserved_special_token_251|>",
        "<|",
        "|>",
        "<||>", // controls and odd code points
        "\u{0}",
        "\u{1b}",
        "\u{7f}",
        "\u{fffd}",
        "\u{10ffff}",
        "\u{e000}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(" ".repeat(17));
    a.push("\n".repeat(9));
    a
}

fn edge_strings() -> Vec<String> {
    let atoms = atoms();
    let mut texts = vec![String::new()];
    texts.extend(atoms.iter().cloned());
    // Every pair, so each piece meets each other one on both sides (whitespace at the start, the
    // end and in between; contractions after letters and spaces; digits after letters; ...).
    for a in &atoms {
        for b in &atoms {
            texts.push(format!("{a}{b}"));
        }
    }
    // Whitespace runs at every position of a short text, including its end.
    let ws = [" ", "  ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u{a0}", "\u{3000}", "   \n  "];
    let base = "Price is $12.00 it's";
    for w in ws {
        for (i, _) in base.char_indices().chain([(base.len(), ' ')]) {
            texts.push(format!("{}{w}{}", &base[..i], &base[i..]));
        }
        texts.push(format!("x{w}"));
        texts.push(format!("x\n{w}"));
        texts.push(format!("{w}x"));
        texts.push(w.repeat(3));
    }
    // Very long runs.
    for piece in ["a", "ab", " ", "1", "!", "😀", "\n", "\r\n", "é", "x ", "<|eot_id|>", " \n"] {
        texts.push(piece.repeat(5000));
    }
    texts.push(format!("{}{}", "Supercalifragilistic".repeat(300), " end"));
    texts
}

#[test]
fn every_edge_of_the_llama3_pre_tokenizer() {
    let texts = edge_strings();
    assert!(texts.len() > 20_000, "{}", texts.len());
    assert_identical("edge strings", &texts);
}

#[test]
fn seeded_fuzz_over_a_mixed_alphabet() {
    let atoms = atoms();
    // Single characters of every class as well as the multi-character atoms.
    let chars: Vec<String> = atoms.iter().flat_map(|a| a.chars()).map(String::from).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let texts: Vec<String> = (0..30_000)
        .map(|_| {
            let n = rng.random_range(1..40);
            (0..n)
                .map(|_| {
                    if rng.random_bool(0.5) {
                        &atoms[rng.random_range(0..atoms.len())]
                    } else {
                        &chars[rng.random_range(0..chars.len())]
                    }
                })
                .map(String::as_str)
                .collect()
        })
        .collect();
    assert_identical("fuzz strings", &texts);
}

#[test]
fn curation_is_identical_on_both_engines_with_and_without_word_boundary() {
    let (fast, reference) = engines();
    let mut lines: Vec<String> =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo_300.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
    if let Some(p) = real_data("raw_meta_rows_hf_form.jsonl") {
        lines.extend(std::fs::read_to_string(p).unwrap().lines().map(str::to_owned));
    }
    for opts in [
        CurateOptions::default(),
        CurateOptions { word_boundary: true, ..CurateOptions::default() },
        CurateOptions { word_boundary: true, min_tokens: 20, max_tokens: 41, ..CurateOptions::default() },
    ] {
        let a = Curator::new(fast.clone(), opts.clone()).unwrap();
        let b = Curator::new(reference.clone(), opts).unwrap();
        let mut kept = 0;
        for line in &lines {
            let Ok(rec) = parse_line(line.as_bytes()) else { continue };
            let x = a.curate(&rec, "C").unwrap();
            assert_eq!(x, b.curate(&rec, "C").unwrap());
            kept += usize::from(x.is_ok());
        }
        assert!(kept > 100, "{kept}");
    }
}

#[test]
fn a_tokenizer_json_the_fast_engine_cannot_read_falls_back_to_the_reference() {
    let gz = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/llama-3.1-tokenizer.json.gz")).unwrap();
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
    let fn_json = || -> pricer::Result<Vec<u8>> { unreachable!("the fallback holds its reference already") };
    // The same file loads the fast engine...
    let (tok, why) = PriceTokenizer::built_in_from_json(json.as_bytes(), fn_json).unwrap();
    assert_eq!((tok.engine(), why), ("tokenizers 1.0.0-rc.3", None));
    // The canary it is checked on is what the reference makes of it.
    let reference = PriceTokenizer::llama31_reference().unwrap();
    assert_eq!(reference.encode(pricer::tokenizer::CANARY.0).unwrap(), pricer::tokenizer::CANARY.1);
    // A changed split pattern (numbers in groups of 1-4 digits) is not one it can run (it reads
    // the pattern but fails at the first encode): the reference takes over, with the reason.
    let pattern = r"\\p{N}{1,3}";
    assert!(json.contains(pattern));
    let changed = json.replacen(pattern, r"\\p{N}{1,4}", 1);
    let (tok, why) = PriceTokenizer::built_in_from_json(changed.as_bytes(), fn_json).unwrap();
    assert_eq!(tok.engine(), "tokenizers 0.23");
    assert!(why.is_some_and(|w| w.contains("regex")));
    let reference = tokenizers::Tokenizer::from_bytes(changed.as_bytes()).unwrap();
    let expected = reference.encode("Model 12345678", false).unwrap().get_ids().to_vec();
    assert_eq!(tok.encode("Model 12345678").unwrap(), expected);
    assert_ne!(expected, PriceTokenizer::llama31().unwrap().encode("Model 12345678").unwrap());
    // One it runs but that encodes otherwise (two tokens' ids swapped) fails the canary.
    let swapped = json.replacen(r#""-primary": 9999,"#, r#""-primary": 2181,"#, 1).replacen(
        r#""It": 2181,"#,
        r#""It": 9999,"#,
        1,
    );
    assert_eq!(swapped.len(), json.len());
    assert!(swapped.contains(r#""It": 9999,"#) && swapped.contains(r#""-primary": 2181,"#));
    let (tok, why) = PriceTokenizer::built_in_from_json(swapped.as_bytes(), fn_json).unwrap();
    assert_eq!(tok.engine(), "tokenizers 0.23");
    assert!(why.is_some_and(|w| w.contains("differently")), "{tok:?}");
    assert_eq!(tok.encode("It").unwrap(), [9999]);
}
