//! The model's own tokenizer (from `tokenizer.json`, or rebuilt from GGUF metadata) and turning
//! items into training examples: the prompt's tokens, the index where the price starts (loss is
//! only on the tokens after `Price is $`), truncated from the description so that what follows
//! `Price is $` is never cut.

use crate::items::PREFIX;
use crate::{Error, Result};
use candle_core::quantized::gguf_file::Value;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::Tokenizer;

/// A tokenizer plus what the model expects around it.
pub struct ModelTokenizer {
    /// The tokenizer.
    pub tok: Tokenizer,
    /// A BOS id to put first when the tokenizer itself does not add one.
    pub bos: Option<u32>,
    /// End of sequence (also the padding id).
    pub eos: u32,
    /// Whether numbers 0–999 are single tokens (Llama 3), which the top-3 weighted decode needs.
    pub number_tokens: bool,
    /// Token ids of the digits `0`..`9` as standalone tokens, where they exist.
    pub digit_ids: [Option<u32>; 10],
    /// Tokens a typical training price (`100.00`) takes after `Price is $`: what a sequence keeps
    /// free for the price when a description is cut.
    pub price_room: usize,
}

fn terr(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl ModelTokenizer {
    fn finish(tok: Tokenizer, bos: Option<u32>, eos: u32) -> Self {
        let single = |s: &str| tok.encode(s, false).ok().map(|e| e.get_ids().to_vec()).filter(|v| v.len() == 1);
        let number_tokens = ["7", "42", "199", "999"].iter().all(|s| single(s).is_some());
        let mut digit_ids = [None; 10];
        for (d, slot) in digit_ids.iter_mut().enumerate() {
            *slot = tok.token_to_id(&d.to_string());
        }
        let count = |s: &str| tok.encode(s, false).map(|e| e.get_ids().len()).unwrap_or(0);
        let price_room = count("Price is $100.00").saturating_sub(count("Price is $")).max(1);
        Self { tok, bos, eos, number_tokens, digit_ids, price_room }
    }

    /// Loads a `tokenizer.json`; EOS from the usual special tokens.
    pub fn from_file(path: &Path) -> Result<Self> {
        let tok = Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self::from_tokenizer(tok))
    }

    /// Wraps a tokenizer; BOS is left to its post-processor, EOS is found among the usual names.
    pub fn from_tokenizer(tok: Tokenizer) -> Self {
        let eos = ["<|end_of_text|>", "<|endoftext|>", "</s>", "<|im_end|>", "<eos>"]
            .iter()
            .find_map(|s| tok.token_to_id(s))
            .unwrap_or(0);
        Self::finish(tok, None, eos)
    }

    /// Saves the tokenizer as `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.tok.to_string(true).map_err(terr)?;
        crate::atomic::write_atomic_bytes(path, text.as_bytes())
    }

    /// Rebuilds a byte-level BPE tokenizer (`tokenizer.ggml.model = gpt2`) from GGUF metadata.
    pub fn from_gguf_metadata(md: &HashMap<String, Value>) -> Result<Self> {
        use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
        use tokenizers::models::bpe::BPE;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::pre_tokenizers::digits::Digits;
        use tokenizers::pre_tokenizers::sequence::Sequence;
        use tokenizers::{AddedToken, PreTokenizerWrapper};
        let get = |k: &str| md.get(k).ok_or_else(|| Error::Tokenizer(format!("GGUF metadata has no {k}")));
        let model = get("tokenizer.ggml.model")?.to_string().map_err(terr)?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "GGUF tokenizer model {model:?} cannot be rebuilt here; put the model's tokenizer.json beside the .gguf file"
            )));
        }
        let pre = md.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        let tokens: Vec<String> = get("tokenizer.ggml.tokens")?
            .to_vec()
            .map_err(terr)?
            .iter()
            .map(|v| v.to_string().cloned().map_err(terr))
            .collect::<Result<_>>()?;
        let merges: Vec<(String, String)> = get("tokenizer.ggml.merges")?
            .to_vec()
            .map_err(terr)?
            .iter()
            .map(|v| {
                let s = v.to_string().map_err(terr)?;
                let (a, b) = s.split_once(' ').ok_or_else(|| Error::Tokenizer(format!("bad merge {s:?}")))?;
                Ok((a.to_owned(), b.to_owned()))
            })
            .collect::<Result<_>>()?;
        let types: Vec<i32> = md
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.iter().map(|x| x.to_i32().unwrap_or(1)).collect())
            .unwrap_or_default();
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(terr)?;
        let mut tok = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tok: PreTokenizerWrapper = match pre.as_str() {
            // SmolLM2 / StarCoder-style: every digit its own token, then GPT-2 byte level.
            "smollm" | "starcoder" | "refact" | "smaug-bpe" => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
            _ => byte_level.into(),
        };
        tok.with_pre_tokenizer(Some(pre_tok));
        tok.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types.get(*i), Some(3) | Some(4)))
            .map(|(_, t)| AddedToken::from(t.clone(), true))
            .collect();
        tok.add_special_tokens(specials).map_err(terr)?;
        let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
        let eos = id("tokenizer.ggml.eos_token_id").unwrap_or(0);
        let add_bos = md.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
        let bos = if add_bos { id("tokenizer.ggml.bos_token_id") } else { None };
        Ok(Self::finish(tok, bos, eos))
    }

    /// Token ids and their byte offsets (special tokens as the tokenizer adds them, BOS first
    /// when the model wants one the tokenizer does not add).
    pub fn encode_with_offsets(&self, text: &str) -> Result<Encoded> {
        let enc = self.tok.encode(text, true).map_err(terr)?;
        let mut ids = enc.get_ids().to_vec();
        let mut offs = enc.get_offsets().to_vec();
        if let Some(b) = self.bos
            && ids.first() != Some(&b)
        {
            ids.insert(0, b);
            offs.insert(0, (0, 0));
        }
        Ok((ids, offs))
    }

    /// Decodes one token.
    pub fn decode_one(&self, id: u32) -> String {
        self.tok.decode(&[id], false).unwrap_or_default()
    }

    /// Decodes several tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tok.decode(ids, false).unwrap_or_default()
    }
}

/// Token ids and their byte offsets in the text.
pub type Encoded = (Vec<u32>, Vec<(usize, usize)>);

/// One training example.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Index of the first price token (loss on `ids[price_start..]`).
    pub price_start: usize,
    /// The item's price.
    pub price: f64,
    /// Whether the description had to be shortened.
    pub truncated: bool,
}

/// Tokenizes a prompt (`… Price is $123.00` for training, or a test prompt ending `Price is $`)
/// for a sequence budget of `max_len` tokens: tokens are dropped from the end of the description,
/// never from `\n\nPrice is $` on.
///
/// Where the description is cut never depends on the price: the part up to `$` keeps at most
/// `max_len − price_room` tokens (room for a typical price, `100.00`), and the price's own tokens
/// follow, so a long price may take the sequence a token or two past `max_len`. A test prompt is cut
/// exactly where its training prompt was, whatever the price. (Issue 12: cutting the whole sequence
/// to `max_len` put `$` one token earlier for every extra price digit, so the position of `$` told
/// the model the price's magnitude while training, and the checkpoints learned that instead of
/// reading the description.)
pub fn encode_prompt(tok: &ModelTokenizer, prompt: &str, price: f64, max_len: usize) -> Result<Example> {
    let pos =
        prompt.rfind(PREFIX).ok_or_else(|| Error::InvalidInput(format!("prompt has no {PREFIX:?}: {:.60}", prompt)))?;
    let price_pos = pos + PREFIX.len();
    let tail_from = prompt[..pos].trim_end().len();
    let (ids, offs) = tok.encode_with_offsets(prompt)?;
    // Tokens of the price start at `price_pos` (none for a test prompt).
    let price_start = offs.iter().position(|&(s, e)| s >= price_pos && e > s).unwrap_or(ids.len());
    if offs[..price_start].iter().any(|&(_, e)| e > price_pos) {
        return Err(Error::InvalidInput("the tokenizer merges `$` with the price; cannot mask the loss".into()));
    }
    let tail_start = offs.iter().position(|&(s, e)| e > tail_from && e > s).unwrap_or(ids.len());
    // `\n\nPrice is $`, without the price.
    let tail_len = price_start - tail_start;
    let budget = max_len.saturating_sub(tok.price_room);
    if price_start <= budget {
        return Ok(Example { ids, price_start, price, truncated: false });
    }
    if tail_len + 1 > budget {
        return Err(Error::InvalidInput(format!(
            "max sequence length {max_len} is too short for the {tail_len} tokens of `Price is $` and a price"
        )));
    }
    let keep_head = budget - tail_len;
    let mut out = ids[..keep_head].to_vec();
    out.extend_from_slice(&ids[tail_start..]);
    let price_start = price_start - (tail_start - keep_head);
    Ok(Example { ids: out, price_start, price, truncated: true })
}

/// The sequence length each prompt needs uncut, as [`encode_prompt`] budgets it: its tokens up to
/// `Price is $` (BOS included) plus the room kept for a price. A prompt is shortened exactly when
/// this exceeds the sequence length.
pub fn prompt_lengths(tok: &ModelTokenizer, prompts: &[&str]) -> Result<Vec<usize>> {
    prompts.iter().map(|p| encode_prompt(tok, p, 0.0, usize::MAX).map(|e| e.price_start + tok.price_room)).collect()
}

/// Token ids of a prompt to price (a test prompt ending `Price is $`, or a full item prompt, cut
/// there), shortened exactly as [`encode_prompt`] shortened it for training.
pub fn encode_for_pricing(tok: &ModelTokenizer, prompt: &str, max_len: usize) -> Result<Vec<u32>> {
    Ok(encode_prompt(tok, crate::items::test_prompt(prompt), 0.0, max_len)?.ids)
}
