//! Curation exactly as the reference pipeline: golden tokens, real items, every rule.

use crate::common::{read_jsonl, real_data};
use pricer::curate::{CurateOptions, Curator, DropReason};
use pricer::items::test_prompt;
use pricer::load::{LineError, PriceField, RawRecord, parse_line};
use pricer::tokenizer::PriceTokenizer;
use sha2::{Digest, Sha256};
use std::path::Path;

#[test]
fn golden_number_tokens() {
    let tok = PriceTokenizer::llama31().unwrap();
    for (text, ids) in [
        ("0", vec![15]),
        ("1", vec![16]),
        ("10", vec![605]),
        ("100", vec![1041]),
        ("999", vec![5500]),
        ("1000", vec![1041, 15]),
    ] {
        assert_eq!(tok.encode(text).unwrap(), ids, "{text}");
    }
}

#[test]
fn golden_prompt_tail() {
    let tok = PriceTokenizer::llama31().unwrap();
    let ids =
        tok.encode("How much does this cost?\n\nIt is sold by the manufacturer from\n\nPrice is $765.00").unwrap();
    assert_eq!(&ids[ids.len() - 10..], &[279, 14290, 505, 271, 7117, 374, 400, 22240, 13, 410]);
}

#[test]
fn real_prompts_reencode_to_their_token_count() {
    let Some(path) = real_data("curated_items.jsonl") else { return };
    let tok = PriceTokenizer::llama31().unwrap();
    let mut checked = 0;
    for item in read_jsonl(&path) {
        let source = item["source"].as_str().unwrap();
        let prompt = item["prompt"].as_str().unwrap();
        assert!(prompt.ends_with(".00"));
        assert_eq!(test_prompt(prompt), &prompt[..prompt.rfind("Price is $").unwrap() + 10]);
        if source == "ed_test_2000[250:]" || source == "lite_appliances_test" {
            assert_eq!(tok.count(prompt).unwrap() as u64, item["token_count"].as_u64().unwrap(), "{prompt}");
            checked += 1;
        }
    }
    assert_eq!(checked, 3740);
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(name)
}

/// Curates every line of `input` the way the pipeline does and compares status, token count and
/// prompt digest with the reference implementation's output (tools/reference_curate.py).
fn check_against_reference(input: &Path, golden: &Path) {
    let curator = Curator::original().unwrap();
    let bytes = std::fs::read(input).unwrap();
    let expected = std::fs::read_to_string(golden).unwrap();
    let mut expected = expected.lines().map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>());
    let mut n = 0;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let want = expected.next().expect("golden file shorter than input");
        assert_eq!(want[0], (i + 1).to_string());
        let (status, count, digest) = match parse_line(line) {
            Err(_) => ("malformed".to_owned(), 0, "-".to_owned()),
            Ok(rec) => match curator.curate(&rec, "X").unwrap() {
                Ok(item) => {
                    let digest: String =
                        Sha256::digest(item.prompt.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
                    ("kept".to_owned(), item.token_count, digest)
                }
                Err(r) => (
                    match r {
                        DropReason::NoPrice => "no_price",
                        DropReason::OutOfRange => "out_of_range",
                        DropReason::TooShort => "too_short",
                        DropReason::TooFewTokens => "too_few_tokens",
                    }
                    .to_owned(),
                    0,
                    "-".to_owned(),
                ),
            },
        };
        assert_eq!(
            (status.as_str(), count.to_string().as_str(), digest.as_str()),
            (want[1].as_str(), want[2].as_str(), want[3].as_str()),
            "line {}",
            i + 1
        );
        n += 1;
    }
    assert!(expected.next().is_none(), "golden file longer than input");
    assert!(n > 0);
}

#[test]
fn edge_cases_match_reference() {
    check_against_reference(&fixture("fixtures/edge_cases.jsonl"), &fixture("golden/edge_cases.tsv"));
}

#[test]
fn demo_lines_match_reference() {
    check_against_reference(&fixture("fixtures/demo_300.jsonl"), &fixture("golden/demo_300.tsv"));
}

#[test]
fn real_raw_rows_match_reference() {
    let Some(path) = real_data("raw_meta_rows_hf_form.jsonl") else { return };
    check_against_reference(&path, &fixture("golden/real_raw_rows.tsv"));
}

fn record(title: &str, price: PriceField, description: &str, details: &str) -> RawRecord {
    RawRecord {
        main_category: None,
        title: title.to_owned(),
        features: Vec::new(),
        description: vec![description.to_owned()],
        price,
        details: details.to_owned(),
    }
}

const FILLER: &str = "This sturdy product is designed for everyday use in homes, garages and offices. It installs \
    quickly, works with most standard fittings, and comes with clear instructions. The finish resists scratches and \
    fading, and every unit is inspected before shipping. ";

#[test]
fn removals_apply_in_order() {
    use pricer::text::scrub_details;
    assert_eq!(scrub_details(r#"{"Batteries Included?": "No", "Brand": "X"}"#), r#"{, "Brand" "X"}"#);
    // "Item" goes before "Number of": "Number of Items" → "Number of s" → " s".
    assert_eq!(scrub_details("Number of Items"), " s");
    assert_eq!(scrub_details("Item Package Quantity"), "  Quantity");
    assert_eq!(
        scrub_details("Product Dimensions; Best Sellers Rank; Date First Available"),
        "Dimensions;  Rank;  Available"
    );
    assert_eq!(scrub_details("Is Discontinued By Manufacturer"), "Is Discontinued ");
}

#[test]
fn scrub_drops_long_words_with_digits() {
    use pricer::text::scrub;
    assert_eq!(scrub("ABC1234 AB1234 abcdefg 【Pro】 x"), "AB1234 abcdefg Pro x");
    assert_eq!(scrub(r#"{"Brand": "Acme" , "Size": [1,2]}"#), "Brand Acme, Size 1,2");
    assert_eq!(scrub("a ,,, b ,, c"), "a, b, c");
    assert_eq!(scrub("  \u{1c}lead\u{3000}and\ttrail \n "), "lead and trail");
    assert_eq!(scrub("１２３４５６７ x²y²z²q 1234567890"), "");
}

/// `scrub` as the original defines it, char by char (the byte-level `scrub` must agree).
fn scrub_by_chars(s: &str) -> String {
    use pricer::text::{is_py_digit, is_py_space};
    let class = |c: char| matches!(c, ':' | '[' | ']' | '"' | '{' | '}' | '【' | '】') || is_py_space(c);
    let mut collapsed = String::new();
    let mut in_run = false;
    for c in s.chars() {
        if class(c) {
            in_run = true;
        } else {
            if in_run && !collapsed.is_empty() {
                collapsed.push(' ');
            }
            in_run = false;
            collapsed.push(c);
        }
    }
    let fixed = collapsed.replace(" ,", ",").replace(",,,", ",").replace(",,", ",");
    let words: Vec<&str> =
        fixed.split(' ').filter(|w| !(w.chars().count() >= 7 && w.chars().any(is_py_digit))).collect();
    words.join(" ")
}

#[test]
fn scrub_agrees_with_its_char_by_char_definition_on_fuzz() {
    use rand::{Rng, SeedableRng};
    let atoms = [
        "a",
        "Z",
        "é",
        "x²",
        "7",
        "１",
        "٣",
        ",",
        " ",
        "  ",
        ":",
        "[",
        "]",
        "\"",
        "{",
        "}",
        "【",
        "】",
        "\t",
        "\n",
        "\r\n",
        "\u{1c}",
        "\u{85}",
        "\u{a0}",
        "\u{2009}",
        "\u{3000}",
        "\u{200b}",
        "-",
        "ABC1234",
        "abcdefg",
        "日本語",
        "😀",
        ",,",
        " ,",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    for _ in 0..20_000 {
        let n = rng.random_range(0..40);
        let s: String = (0..n).map(|_| atoms[rng.random_range(0..atoms.len())]).collect();
        assert_eq!(pricer::text::scrub(&s), scrub_by_chars(&s), "scrub({s:?})");
    }
}

#[test]
fn boundaries_are_inclusive_and_strict_where_the_original_is() {
    let curator = Curator::original().unwrap();
    let body = FILLER.repeat(4);
    let status = |price: PriceField| curator.curate(&record("Widget", price, &body, ""), "C").unwrap();
    assert!(status(PriceField::Number(0.5)).is_ok());
    assert!(status(PriceField::Number(999.49)).is_ok());
    assert!(status(PriceField::Text("999.49".into())).is_ok());
    assert_eq!(status(PriceField::Number(999.4900001)).unwrap_err(), DropReason::OutOfRange);
    assert_eq!(status(PriceField::Number(0.4999)).unwrap_err(), DropReason::OutOfRange);
    assert_eq!(status(PriceField::Text("None".into())).unwrap_err(), DropReason::NoPrice);
    assert_eq!(status(PriceField::Missing).unwrap_err(), DropReason::NoPrice);

    // Contents: description + "\n"; 300 characters is too short, 301 is enough.
    let short = curator.curate(&record("W", PriceField::Number(5.0), &"a".repeat(299), ""), "C").unwrap();
    assert_eq!(short.unwrap_err(), DropReason::TooShort);
    let long = record("W", PriceField::Number(5.0), &"a ".repeat(150), "");
    assert_ne!(curator.curate(&long, "C").unwrap().err(), Some(DropReason::TooShort));

    // Tokens: kept only with more than min_tokens.
    let rec = record("Widget", PriceField::Number(5.0), &body, "");
    let text = format!("{}\n{}", pricer::text::scrub("Widget"), pricer::text::scrub(&Curator::contents(&rec)));
    let n = curator.tokenizer().count(&text).unwrap();
    let with_min = |min_tokens| {
        let opts = CurateOptions { min_tokens, max_tokens: 400, ..CurateOptions::default() };
        Curator::new(curator.tokenizer().clone(), opts).unwrap().curate(&rec, "C").unwrap()
    };
    assert_eq!(with_min(n).unwrap_err(), DropReason::TooFewTokens);
    assert!(with_min(n - 1).is_ok());
}

#[test]
fn prices_round_half_even_into_the_prompt() {
    let curator = Curator::original().unwrap();
    let body = FILLER.repeat(4);
    for (price, tail) in [(226.5, "$226.00"), (227.5, "$228.00"), (0.5, "$0.00"), (1.5, "$2.00"), (19.99, "$20.00")] {
        let item = curator.curate(&record("Widget", PriceField::Number(price), &body, ""), "C").unwrap().unwrap();
        assert!(item.prompt.ends_with(&format!("\n\nPrice is {tail}")), "{price}: {}", item.prompt);
        assert_eq!(item.price, price);
        assert!(test_prompt(&item.prompt).ends_with("\n\nPrice is $"));
    }
}

#[test]
fn decode_cleans_up_spaces_like_transformers() {
    let tok = PriceTokenizer::llama31().unwrap();
    let ids = tok.encode("It is n't bad . I 'm sure it 's good , we 've seen they 're happy ! Really ?").unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), "It isn't bad. I'm sure it's good, we've seen they're happy! Really?");
    assert!(tok.decode_raw(&ids).unwrap().contains(" n't"));
}

#[test]
fn object_details_become_python_json_dumps() {
    let line = r#"{"title": "T", "price": 10, "details": {"Brand": "Café", "Weight": 1.0, "Rank": {"A": 12}}}"#;
    let rec = parse_line(line.as_bytes()).unwrap();
    assert_eq!(rec.details, r#"{"Brand": "Caf\u00e9", "Weight": 1.0, "Rank": {"A": 12}}"#);
    // Hugging Face row form: price and details are strings, taken as they are.
    let hf = r#"{"title": "T", "price": "25.55", "details": "{\"Brand\": \"Caf\\u00e9\"}"}"#;
    let rec = parse_line(hf.as_bytes()).unwrap();
    assert_eq!(rec.price, PriceField::Text("25.55".into()));
    assert_eq!(rec.price.parse(), Some(25.55));
    assert_eq!(rec.details, r#"{"Brand": "Caf\u00e9"}"#);
}

#[test]
fn malformed_lines_are_rejected_with_reasons() {
    for bad in
        [&b"{not json"[..], b"{\"title\": 5}", b"{\"price\": true}", b"{\"features\": \"x\"}", b"\xff\xfe{}", b"[1,2]"]
    {
        let err = parse_line(bad).unwrap_err();
        assert!(!err.is_empty());
    }
    let e = LineError { file: "f.jsonl".into(), line: 7, message: "oops".into() };
    assert_eq!(e.to_string(), "f.jsonl:7: oops");
}

#[test]
fn word_boundary_option_never_cuts_mid_word() {
    let tok = PriceTokenizer::llama31().unwrap();
    let body = "Extraordinarily comprehensive multifunctional instrumentation ".repeat(40);
    let rec = record("Widget", PriceField::Number(9.0), &body, "");
    let full = ["Extraordinarily", "comprehensive", "multifunctional", "instrumentation"];
    let last_word = |p: &str| p.split("\n\n").nth(1).unwrap().split_whitespace().last().unwrap().to_owned();
    let mut mid_word_cuts = 0;
    for max_tokens in 55..70 {
        let opts = CurateOptions { min_tokens: 50, max_tokens, ..CurateOptions::default() };
        let orig = Curator::new(tok.clone(), opts.clone()).unwrap();
        let wb = Curator::new(tok.clone(), CurateOptions { word_boundary: true, ..opts }).unwrap();
        let a = orig.curate(&rec, "C").unwrap().unwrap();
        let b = wb.curate(&rec, "C").unwrap().unwrap();
        assert!(full.contains(&last_word(&b.prompt).as_str()), "{}", b.prompt);
        if !full.contains(&last_word(&a.prompt).as_str()) {
            mid_word_cuts += 1;
            assert!(b.prompt.len() < a.prompt.len());
        }
    }
    assert!(mid_word_cuts > 0, "the original pipeline should cut mid-word for some limits");
}

#[test]
fn token_counts_equal_a_full_re_encoding_of_the_prompt() {
    // Curation counts the prompt from its first encoding where it can; every count must equal
    // encoding the finished prompt from scratch.
    let bytes: std::sync::Arc<[u8]> = pricer::demo::demo_bytes(4000, 11).into();
    let src = pricer::load::Source::from_bytes("d.jsonl", bytes, None);
    let curator = Curator::original().unwrap();
    let (t, _) = curator.curate_sources(&[src], Default::default(), &Default::default()).unwrap();
    assert!(t.len() > 1500);
    let tok = curator.tokenizer();
    for it in t.iter() {
        assert_eq!(tok.count(it.prompt).unwrap() as u32, it.token_count, "{}", it.prompt);
    }
    // Also with a cut back at word boundaries and other limits.
    let opts = CurateOptions { word_boundary: true, min_tokens: 40, max_tokens: 77, ..CurateOptions::default() };
    let wb = Curator::new(tok.clone(), opts).unwrap();
    for line in std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo_300.jsonl"))
        .unwrap()
        .lines()
    {
        if let Ok(item) = wb.curate(&parse_line(line.as_bytes()).unwrap(), "C").unwrap() {
            assert_eq!(tok.count(&item.prompt).unwrap() as u32, item.token_count, "{}", item.prompt);
        }
    }
}

#[test]
fn fast_decode_equals_the_tokenizers_decode() {
    let tok = PriceTokenizer::llama31().unwrap();
    let text = "Café ☃ 😀 naïve — 12.5\" x 3' <|eot_id|> It 's n't";
    let ids = tok.encode(text).unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), pricer::text::clean_up_tokenization(tok.decode_raw(&ids).unwrap()));
    // A cut inside a multi-byte character decodes to U+FFFD, as the byte-level decoder does.
    for cut in 1..ids.len() {
        assert_eq!(
            tok.decode(&ids[..cut]).unwrap(),
            pricer::text::clean_up_tokenization(tok.decode_raw(&ids[..cut]).unwrap())
        );
    }
}

#[test]
fn another_tokenizer_json_works_and_the_generic_path_agrees_with_the_built_in() {
    // The built-in tokenizer written out as a plain tokenizer.json: loaded through `from_file`
    // it takes the generic path (full second encode, HF decode), which must give the same items.
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("tokenizer.json");
    let gz = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/llama-3.1-tokenizer.json.gz")).unwrap();
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
    std::fs::write(&json_path, json).unwrap();
    let from_file = std::sync::Arc::new(PriceTokenizer::from_file(&json_path).unwrap());
    assert!(from_file.cleans_up_spaces());
    let generic = Curator::new(from_file, CurateOptions::default()).unwrap();
    let built_in = Curator::original().unwrap();
    let mut kept = 0;
    for line in std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo_300.jsonl"))
        .unwrap()
        .lines()
    {
        let rec = parse_line(line.as_bytes()).unwrap();
        let a = built_in.curate(&rec, "C").unwrap();
        let b = generic.curate(&rec, "C").unwrap();
        assert_eq!(a, b);
        kept += usize::from(a.is_ok());
    }
    assert!(kept > 100);
    // A missing or broken file is a clear error.
    let err = PriceTokenizer::from_file(&dir.path().join("nope.json")).unwrap_err().to_string();
    assert!(err.contains("nope.json"), "{err}");
}
