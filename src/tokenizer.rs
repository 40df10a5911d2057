//! The tokenizer used to count and cut prompts: Llama 3.1 by default (shipped gzip-compressed in
//! `assets/` and compiled into the binary), or any Hugging Face `tokenizer.json`.
//!
//! Two engines read the same `tokenizer.json`. The built-in Llama 3.1 encodes with the `tokenizers`
//! 1.0 pipeline (`PipelineTokenizer`, pinned to its release candidate; 40–60× faster than 0.23 and
//! token-identical, which `tests/it/tokenizer_identity.rs` checks on every edge of the Llama 3
//! pre-tokenizer). `tokenizers` 0.23 stays the reference: it is what another `tokenizer.json` is
//! read with, what the built-in falls back to (with a log line) when the fast engine cannot load
//! it, and what the tests compare against. Token ends (for `--word-boundary`) and decoding come from
//! the byte-level table, so the fast path never needs 0.23's object model; the reference is loaded
//! only when something asks for it.

use crate::items::BytesColumn;
use crate::text::clean_up_tokenization;
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};

static LLAMA31_GZ: &[u8] = include_bytes!("../assets/llama-3.1-tokenizer.json.gz");

/// Set to `1` to make the built-in tokenizer encode with the reference engine (`tokenizers` 0.23):
/// for measuring against it, or as a way out should the fast engine ever disagree.
pub const REFERENCE_ENV: &str = "PRICER_REFERENCE_TOKENIZER";

/// The fast engine: `tokenizers` 1.0's read-only pipeline.
type FastEngine = tokenizers_fast::pipeline::PipelineTokenizer;

/// A tokenizer plus the decode clean-up setting of its `tokenizer_config.json`.
pub struct PriceTokenizer {
    /// The fast engine, when this tokenizer encodes with it.
    fast: Option<FastEngine>,
    /// The reference engine (`tokenizers` 0.23), loaded on first use for the built-in.
    reference: OnceLock<std::result::Result<tokenizers::Tokenizer, String>>,
    /// Where the reference comes from when it is not loaded yet: the built-in's JSON.
    reference_json: Option<fn() -> Result<Vec<u8>>>,
    clean_up_spaces: bool,
    name: String,
    /// Bytes of text behind each token id, for byte-level tokenizers with no normalizer whose
    /// pre-tokenizer is known to start a new piece at every " <letter>" (the built-in Llama 3.1):
    /// decodes without the reference, gives token ends, and lets a prompt be counted from its
    /// first encoding instead of a second full pass.
    token_bytes: Option<BytesColumn>,
}

impl std::fmt::Debug for PriceTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriceTokenizer")
            .field("name", &self.name)
            .field("engine", &self.engine())
            .finish_non_exhaustive()
    }
}

/// The built-in tokenizer.json, decompressed.
fn llama31_json() -> Result<Vec<u8>> {
    let mut json = Vec::with_capacity(9 << 20);
    flate2::read::GzDecoder::new(LLAMA31_GZ)
        .read_to_end(&mut json)
        .map_err(|e| Error::Tokenizer(format!("built-in tokenizer: {e}")))?;
    Ok(json)
}

/// A text through every alternative of the Llama 3 split pattern (contractions in both cases,
/// digit groups, a multilingual token, whitespace before a letter and at the end, `\r\n`, an
/// added token, an emoji cut inside its bytes) and its ids in the built-in tokenizer, by
/// `tokenizers` 0.23 (a test checks them): the fast engine must give exactly these before it is
/// used.
#[doc(hidden)]
pub const CANARY: (&str, &[u32]) = (
    "It's THEY'RE 12345 Việt  naïve\r\n\n  <|eot_id|>😀 $1,299.00 x\n  ",
    &[
        2181, 596, 63593, 95253, 220, 4513, 1774, 101798, 220, 95980, 588, 81923, 256, 128009, 76460, 222, 400, 16, 11,
        15531, 13, 410, 865, 198, 256,
    ],
);

/// Reads a `tokenizer.json` with the fast engine (after `tokenizers` 1.0's upgrade pass, which
/// rewrites a file written by 0.x into the form its reader accepts) and checks it on the canary.
/// Its reader accepts a split pattern it cannot run (the error comes at the first encode), so
/// the canary is what proves it runs this one.
fn load_fast(json: &[u8]) -> std::result::Result<FastEngine, String> {
    let text = std::str::from_utf8(json).map_err(|e| e.to_string())?;
    let canonical = tokenizers_fast::canonicalize_str(text).map_err(|e| e.to_string())?;
    let fast = tokenizers_fast::from_json(&canonical).map_err(|e| e.to_string())?;
    let mut ids = Vec::new();
    fast.encode_into(CANARY.0, &fast_options(), &mut ids).map_err(|e| e.to_string())?;
    if ids.iter().map(|&t| u32::from(t)).ne(CANARY.1.iter().copied()) {
        return Err(format!("it encodes {:?} differently", CANARY.0));
    }
    Ok(fast)
}

fn load_reference(json: &[u8]) -> std::result::Result<tokenizers::Tokenizer, String> {
    tokenizers::Tokenizer::from_bytes(json).map_err(|e| e.to_string())
}

impl PriceTokenizer {
    /// The Llama 3.1 tokenizer of the reference pipeline, loaded once per process: the fast engine,
    /// or the reference when [`REFERENCE_ENV`] is `1` or the fast engine cannot load it.
    pub fn llama31() -> Result<Arc<Self>> {
        static CELL: OnceLock<std::result::Result<Arc<PriceTokenizer>, String>> = OnceLock::new();
        CELL.get_or_init(|| {
            if std::env::var(REFERENCE_ENV).is_ok_and(|v| v == "1") {
                return Self::llama31_reference().map_err(|e| e.to_string());
            }
            let json = llama31_json().map_err(|e| e.to_string())?;
            let (tok, fallback) = Self::built_in_from_json(&json, llama31_json).map_err(|e| e.to_string())?;
            if let Some(why) = fallback {
                eprintln!(
                    "pricer: the fast tokenizer could not load the built-in Llama 3.1 ({why}); using tokenizers 0.23"
                );
            }
            Ok(Arc::new(tok))
        })
        .clone()
        .map_err(Error::Tokenizer)
    }

    /// The built-in Llama 3.1 tokenizer on the reference engine (`tokenizers` 0.23) only, loaded
    /// once per process: what the fast engine is checked and measured against.
    pub fn llama31_reference() -> Result<Arc<Self>> {
        static CELL: OnceLock<std::result::Result<Arc<PriceTokenizer>, String>> = OnceLock::new();
        CELL.get_or_init(|| {
            let json = llama31_json().map_err(|e| e.to_string())?;
            let reference = load_reference(&json)?;
            let token_bytes = Some(byte_level_table(&json).map_err(|e| e.to_string())?);
            Ok(Arc::new(Self {
                fast: None,
                reference: OnceLock::from(Ok(reference)),
                reference_json: None,
                clean_up_spaces: true,
                name: "Llama 3.1 (built in)".into(),
                token_bytes,
            }))
        })
        .clone()
        .map_err(Error::Tokenizer)
    }

    /// The built-in tokenizer from its `tokenizer.json` bytes (`reference_json` gives them again
    /// when the reference engine is first needed): the fast engine when it loads, else the
    /// reference, with the fast engine's error as the second value.
    #[doc(hidden)]
    pub fn built_in_from_json(json: &[u8], reference_json: fn() -> Result<Vec<u8>>) -> Result<(Self, Option<String>)> {
        let name = "Llama 3.1 (built in)".to_owned();
        // The byte table (a second parse of the JSON) is read beside the fast engine's load.
        let (fast, table) = std::thread::scope(|scope| {
            let table = scope.spawn(|| byte_level_table(json));
            (load_fast(json), table.join())
        });
        let table = table.map_err(|_| Error::Tokenizer("reading the byte table panicked".into()))?;
        match fast {
            Ok(fast) => {
                let token_bytes = Some(table?);
                let tok = Self {
                    fast: Some(fast),
                    reference: OnceLock::new(),
                    reference_json: Some(reference_json),
                    clean_up_spaces: true,
                    name,
                    token_bytes,
                };
                Ok((tok, None))
            }
            Err(why) => {
                let reference = load_reference(json).map_err(Error::Tokenizer)?;
                let token_bytes = Some(table?);
                let tok = Self {
                    fast: None,
                    reference: OnceLock::from(Ok(reference)),
                    reference_json: None,
                    clean_up_spaces: true,
                    name,
                    token_bytes,
                };
                Ok((tok, Some(why)))
            }
        }
    }

    /// A tokenizer from a `tokenizer.json` (read with the reference engine);
    /// `clean_up_tokenization_spaces` is read from a `tokenizer_config.json` beside it when
    /// present (default: true, as in `transformers`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let config = path.with_file_name("tokenizer_config.json");
        let clean_up_spaces = std::fs::read(&config)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("clean_up_tokenization_spaces").and_then(serde_json::Value::as_bool))
            .unwrap_or(true);
        Ok(Self {
            fast: None,
            reference: OnceLock::from(Ok(inner)),
            reference_json: None,
            clean_up_spaces,
            name: path.display().to_string(),
            token_bytes: None,
        })
    }

    /// The reference engine's tokenizer (`tokenizers` 0.23), loaded now if it was not yet.
    pub fn inner(&self) -> Result<&tokenizers::Tokenizer> {
        self.reference
            .get_or_init(|| {
                let json = self.reference_json.ok_or("no reference tokenizer")?().map_err(|e| e.to_string())?;
                load_reference(&json)
            })
            .as_ref()
            .map_err(|e| Error::Tokenizer(e.clone()))
    }

    /// Human-readable name (for reports).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The engine that encodes: `"tokenizers 1.0.0-rc.3"` or `"tokenizers 0.23"`.
    pub fn engine(&self) -> &'static str {
        if self.fast.is_some() { "tokenizers 1.0.0-rc.3" } else { "tokenizers 0.23" }
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.fast {
            Some(fast) => {
                let mut out = Vec::with_capacity(text.len() / 3 + 4);
                fast.encode_into(text, &fast_options(), &mut out).map_err(|e| Error::Tokenizer(e.to_string()))?;
                Ok(out.into_iter().map(u32::from).collect())
            }
            None => self
                .inner()?
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::Tokenizer(e.to_string())),
        }
    }

    /// Token ids of `text` and the byte end offset of each token in `text`. A token that ends
    /// inside a multi-byte character ends where that character ends, as the reference's offsets do.
    pub fn encode_with_ends(&self, text: &str) -> Result<(Vec<u32>, Vec<usize>)> {
        if let (Some(_), Some(table)) = (&self.fast, &self.token_bytes) {
            let ids = self.encode(text)?;
            let mut ends = Vec::with_capacity(ids.len());
            let mut at = 0usize;
            for &id in &ids {
                at += table.try_get(id as usize).map_or(0, <[u8]>::len);
                let mut end = at.min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                ends.push(end);
            }
            return Ok((ids, ends));
        }
        let enc = self.inner()?.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let ends = enc.get_offsets().iter().map(|&(_, end)| end).collect();
        Ok((enc.get_ids().to_vec(), ends))
    }

    /// Number of tokens in `text` (no special tokens).
    pub fn count(&self, text: &str) -> Result<usize> {
        self.encode(text).map(|ids| ids.len())
    }

    /// Decodes ids back to text the way `transformers` does (clean-up of spaces when the
    /// tokenizer's config asks for it).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let raw = match &self.token_bytes {
            Some(table) => {
                // The byte-level decoder is a concatenation of token bytes, read as lossy UTF-8.
                let mut bytes = Vec::with_capacity(ids.len() * 6);
                for &id in ids {
                    bytes.extend_from_slice(
                        table.try_get(id as usize).ok_or_else(|| Error::Tokenizer(format!("unknown token id {id}")))?,
                    );
                }
                String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
            }
            None => self.decode_raw(ids)?,
        };
        Ok(if self.clean_up_spaces { clean_up_tokenization(raw) } else { raw })
    }

    /// Decodes ids without the clean-up of spaces (with the reference engine).
    pub fn decode_raw(&self, ids: &[u32]) -> Result<String> {
        self.inner()?.decode(ids, false).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Whether decode applies the clean-up of spaces.
    pub fn cleans_up_spaces(&self) -> bool {
        self.clean_up_spaces
    }

    /// Tokens in `body + suffix`, where `body` is the decode of `kept`, the first tokens of the
    /// encoding of `text` (possibly cleaned up or cut back at a word boundary). Counts exactly
    /// like encoding the whole string, but re-encodes only from the last word of `body` on when
    /// it can prove the earlier tokens unchanged: `body` is a prefix of `text`, and a token of
    /// the first encoding ends right before a " <letter>" in it, where a new piece always starts.
    pub fn count_continuation(&self, text: &str, kept: &[u32], body: &str, suffix: &str) -> Result<usize> {
        if let Some(table) = &self.token_bytes
            && text.starts_with(body)
            && let Some((n_before, split)) = reusable_prefix(table, kept, body)
        {
            return Ok(n_before + self.count(&format!("{}{suffix}", &body[split..]))?);
        }
        self.count(&format!("{body}{suffix}"))
    }

    /// The text of each token (byte-level tokens decoded one by one, a partial character as
    /// U+FFFD), for token chips.
    pub fn token_texts(&self, ids: &[u32]) -> Vec<String> {
        match &self.token_bytes {
            Some(table) => ids
                .iter()
                .map(|&id| {
                    table.try_get(id as usize).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
                })
                .collect(),
            None => match self.inner() {
                Ok(inner) => ids.iter().map(|&id| inner.decode(&[id], false).unwrap_or_default()).collect(),
                Err(_) => vec![String::new(); ids.len()],
            },
        }
    }
}

fn fast_options() -> tokenizers_fast::pipeline::EncodeOptions {
    tokenizers_fast::pipeline::EncodeOptions { add_special_tokens: false, ..Default::default() }
}

/// GPT-2's byte-to-character map of byte-level BPE vocabularies, inverted: character → byte.
fn byte_level_decoder_map() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
        let c = if printable {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\0')
        };
        map.insert(c, b);
    }
    map
}

/// The bytes behind each token id of a byte-level BPE `tokenizer.json` (`model.vocab` through
/// GPT-2's byte map; added tokens stand for their content), read from the file itself so that
/// neither engine's object model is needed.
fn byte_level_table(json: &[u8]) -> Result<BytesColumn> {
    #[derive(serde::Deserialize)]
    struct File {
        added_tokens: Vec<Added>,
        model: Model,
    }
    #[derive(serde::Deserialize)]
    struct Added {
        id: u32,
        content: String,
    }
    #[derive(serde::Deserialize)]
    struct Model {
        vocab: std::collections::HashMap<String, u32>,
    }
    let file: File =
        serde_json::from_slice(json).map_err(|e| Error::Tokenizer(format!("built-in tokenizer vocabulary: {e}")))?;
    let n =
        file.model.vocab.values().chain(file.added_tokens.iter().map(|a| &a.id)).max().map_or(0, |&m| m as usize + 1);
    let map = byte_level_decoder_map();
    let mut per_id: Vec<Vec<u8>> = vec![Vec::new(); n];
    for (token, id) in file.model.vocab {
        per_id[id as usize] = token.chars().map(|c| map.get(&c).copied().unwrap_or(b'?')).collect();
    }
    for added in file.added_tokens {
        per_id[added.id as usize] = added.content.into_bytes();
    }
    let mut table = BytesColumn::default();
    for bytes in per_id {
        table.push(&bytes);
    }
    Ok(table)
}

/// `(tokens, byte)`: a split point in `body` at " <ASCII letter>" after a non-space, where the
/// first `tokens` of `kept` end exactly; searched from the end, a few candidates at most.
fn reusable_prefix(table: &BytesColumn, kept: &[u32], body: &str) -> Option<(usize, usize)> {
    let mut ends = Vec::with_capacity(kept.len());
    let mut acc = 0usize;
    for &id in kept {
        acc += table.try_get(id as usize)?.len();
        ends.push(acc);
    }
    let b = body.as_bytes();
    let mut tries = 0;
    for p in (1..b.len().saturating_sub(1)).rev() {
        if b[p] == b' ' && b[p + 1].is_ascii_alphabetic() && !b[p - 1].is_ascii_whitespace() && b[p - 1] != b' ' {
            if let Ok(k) = ends.binary_search(&p) {
                return Some((k + 1, p));
            }
            tries += 1;
            if tries == 4 {
                return None;
            }
        }
    }
    None
}
