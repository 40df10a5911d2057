//! Prices from a model (+ adapter, + regression head): the original top-3 weighted decode where
//! the tokenizer has one token per number, the digit decodes otherwise, or the regression head;
//! batched through [`super::infer`]. Evaluating a checkpoint is the pricers' engine (`pricers::run`).

pub use super::decode::Decode;
pub use super::decode::top_k_weighted;
use super::head::RegHead;
use super::infer::{BackendChoice, TREE_THRESHOLD, price_with};
use super::lora::Lora;
use super::model::Model;
use super::tokenize::encode_for_pricing;
use crate::Result;
use std::path::Path;

/// The decode of digit-by-digit tokenizers (SmolLM2, Qwen) when none is chosen. Measured on the 250
/// held-out `ed_test_2000` items with a SmolLM2 LoRA (next-token objective, lr 2e-4, checkpoint 100,
/// issue 12): $131.80 / RMSLE 1.07 / 28.0% hits, against greedy's $149.18 / 1.23 / 20.8% and the
/// digit-tree expectation's $210.73 / 2.25 / 15.2% (the expectation is pulled up by the mass on
/// long digit strings).
pub const DEFAULT_DIGIT_DECODE: Decode = Decode::DigitTop3Weighted;

/// A model ready to price prompts.
pub struct Predictor {
    /// The base model.
    pub model: Model,
    /// Adapters, if any.
    pub lora: Option<Lora>,
    /// Regression head, if trained.
    pub head: Option<RegHead>,
    /// How prices are decoded.
    pub decode: Decode,
    /// Longest prompt (longer ones are shortened in the description).
    pub max_len: usize,
    /// Pruning threshold of the digit-tree decodes.
    pub tree_threshold: f64,
    /// Run candle's tensors even where the hand-written CPU backend could (for comparisons).
    pub candle_only: bool,
}

impl Predictor {
    /// Chooses the decode for what is loaded: the head when there is one, else by tokenizer.
    pub fn new(model: Model, lora: Option<Lora>, head: Option<RegHead>, max_len: usize) -> Self {
        let decode = Self::default_decode(head.is_some(), model.tokenizer.number_tokens);
        Self { model, lora, head, decode, max_len, tree_threshold: TREE_THRESHOLD, candle_only: false }
    }

    /// Loads the model and, from a checkpoint folder, its adapter and head.
    pub fn from_checkpoint(model: Model, checkpoint: Option<&Path>, max_len: usize) -> Result<Self> {
        let (lora, head) = match checkpoint {
            Some(dir) => (Some(Lora::load_peft(dir, &model.cfg, &model.device)?), RegHead::load(dir, &model.device)?),
            None => (None, None),
        };
        Ok(Self::new(model, lora, head, max_len))
    }

    /// The price for a prompt (a training prompt is cut after `Price is $` first).
    pub fn predict(&self, prompt: &str) -> Result<f64> {
        Ok(self.predict_batch(&[prompt])?[0])
    }

    /// Prices of several prompts, in one batch: the prompts go through the model together and
    /// every decode step of every branch of every prompt in one forward call (the hand-written CPU
    /// backend where the model is f32 on the CPU, candle one sequence at a time elsewhere).
    pub fn predict_batch(&self, prompts: &[&str]) -> Result<Vec<f64>> {
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| encode_for_pricing(&self.model.tokenizer, p, self.max_len))
            .collect::<Result<_>>()?;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        self.predict_ids(&refs)
    }

    /// Prices of prompts already encoded (ending right after `Price is $`).
    pub fn predict_ids(&self, prompts: &[&[u32]]) -> Result<Vec<f64>> {
        let backend = if self.candle_only { BackendChoice::Candle } else { BackendChoice::Best };
        price_with(
            &self.model,
            self.lora.as_ref(),
            self.head.as_ref(),
            self.decode,
            self.tree_threshold,
            backend,
            prompts,
        )
    }

    /// The decode used when none is chosen: the head when there is one, else by tokenizer.
    pub fn default_decode(has_head: bool, number_tokens: bool) -> Decode {
        if has_head {
            Decode::Regression
        } else if number_tokens {
            Decode::Top3Weighted
        } else {
            DEFAULT_DIGIT_DECODE
        }
    }
}
