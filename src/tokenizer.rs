//! The tokenizer used to count and cut prompts: Llama 3.1 by default (shipped gzip-compressed in
//! `assets/` and compiled into the binary), or any Hugging Face `tokenizer.json`.

use crate::items::BytesColumn;
use crate::text::clean_up_tokenization;
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};

static LLAMA31_GZ: &[u8] = include_bytes!("../assets/llama-3.1-tokenizer.json.gz");

/// A tokenizer plus the decode clean-up setting of its `tokenizer_config.json`.
pub struct PriceTokenizer {
    inner: tokenizers::Tokenizer,
    clean_up_spaces: bool,
    name: String,
    /// Bytes of text behind each token id, for byte-level tokenizers whose pre-tokenizer is
    /// known to start a new piece at every " <letter>" (the built-in Llama 3.1): lets a prompt
    /// be counted from its first encoding instead of a second full pass.
    token_bytes: Option<BytesColumn>,
}

impl std::fmt::Debug for PriceTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriceTokenizer").field("name", &self.name).finish_non_exhaustive()
    }
}

impl PriceTokenizer {
    /// The Llama 3.1 tokenizer of the reference pipeline, loaded once per process.
    pub fn llama31() -> Result<Arc<Self>> {
        static CELL: OnceLock<std::result::Result<Arc<PriceTokenizer>, String>> = OnceLock::new();
        CELL.get_or_init(|| {
            let mut json = Vec::with_capacity(9 << 20);
            flate2::read::GzDecoder::new(LLAMA31_GZ).read_to_end(&mut json).map_err(|e| e.to_string())?;
            let inner = tokenizers::Tokenizer::from_bytes(&json).map_err(|e| e.to_string())?;
            let token_bytes = Some(byte_level_table(&inner));
            Ok(Arc::new(Self { inner, clean_up_spaces: true, name: "Llama 3.1 (built in)".into(), token_bytes }))
        })
        .clone()
        .map_err(Error::Tokenizer)
    }

    /// A tokenizer from a `tokenizer.json`; `clean_up_tokenization_spaces` is read from a
    /// `tokenizer_config.json` beside it when present (default: true, as in `transformers`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let config = path.with_file_name("tokenizer_config.json");
        let clean_up_spaces = std::fs::read(&config)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("clean_up_tokenization_spaces").and_then(serde_json::Value::as_bool))
            .unwrap_or(true);
        Ok(Self { inner, clean_up_spaces, name: path.display().to_string(), token_bytes: None })
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Human-readable name (for reports).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode_fast(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Token ids of `text` and the byte end offset of each token in `text`.
    pub fn encode_with_ends(&self, text: &str) -> Result<(Vec<u32>, Vec<usize>)> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
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
        Ok(if self.clean_up_spaces { clean_up_tokenization(&raw) } else { raw })
    }

    /// Decodes ids without the clean-up of spaces.
    pub fn decode_raw(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::Tokenizer(e.to_string()))
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

    /// The text of each token (byte-level tokens decoded one by one), for token chips.
    pub fn token_texts(&self, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&id| self.inner.decode(&[id], false).unwrap_or_default()).collect()
    }
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

/// The bytes behind each token id of a byte-level BPE (added tokens stand for their content).
fn byte_level_table(tok: &tokenizers::Tokenizer) -> BytesColumn {
    let n = tok.get_vocab_size(true);
    let map = byte_level_decoder_map();
    let mut per_id: Vec<Vec<u8>> = vec![Vec::new(); n];
    for (token, id) in tok.get_vocab(false) {
        if let Some(slot) = per_id.get_mut(id as usize) {
            *slot = token.chars().map(|c| map.get(&c).copied().unwrap_or(b'?')).collect();
        }
    }
    for (id, added) in tok.get_added_tokens_decoder() {
        if let Some(slot) = per_id.get_mut(id as usize) {
            *slot = added.content.into_bytes();
        }
    }
    let mut table = BytesColumn::default();
    for bytes in per_id {
        table.push(&bytes);
    }
    table
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
