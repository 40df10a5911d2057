//! The tokenizer used to count and cut prompts: Llama 3.1 by default (shipped gzip-compressed in
//! `assets/` and compiled into the binary), or any Hugging Face `tokenizer.json`.

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
            Ok(Arc::new(Self { inner, clean_up_spaces: true, name: "Llama 3.1 (built in)".into() }))
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
        Ok(Self { inner, clean_up_spaces, name: path.display().to_string() })
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
        let raw = self.decode_raw(ids)?;
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

    /// The text of each token (byte-level tokens decoded one by one), for token chips.
    pub fn token_texts(&self, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&id| self.inner.decode(&[id], false).unwrap_or_default()).collect()
    }
}
