//! Prices from a model (+ adapter, + regression head): the original top-3 weighted decode where
//! the tokenizer has one token per number, a greedy digit-sequence decode otherwise, or the
//! regression head. Evaluating a checkpoint is the pricers' engine (`pricers::run`).

pub use super::decode::Decode;
use super::head::RegHead;
use super::lora::Lora;
use super::model::{KvCache, Model};
use super::tokenize::encode_prompt;
use crate::{Error, Result};
use candle_core::Tensor;
use std::path::Path;

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
}

impl Predictor {
    /// Chooses the decode for what is loaded: the head when there is one, else by tokenizer.
    pub fn new(model: Model, lora: Option<Lora>, head: Option<RegHead>, max_len: usize) -> Self {
        let decode = if head.is_some() {
            Decode::Regression
        } else if model.tokenizer.number_tokens {
            Decode::Top3Weighted
        } else {
            // Measured on 250 held-out real items with a SmolLM2 LoRA (closing note of issue 4):
            // $66.75 / RMSLE 0.90 / 46.8% hits against greedy's $73.79 / 1.07 / 50.0%.
            Decode::DigitTop3Weighted
        };
        Self { model, lora, head, decode, max_len }
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
        let test = crate::items::test_prompt(prompt);
        let ex = encode_prompt(&self.model.tokenizer, test, 0.0, self.max_len)?;
        let ids = ex.ids;
        let lora = self.lora.as_ref();
        match self.decode {
            Decode::Regression => {
                let head = self.head.as_ref().ok_or_else(|| Error::Model("no regression head".into()))?;
                let t = Tensor::from_slice(&ids, (1, ids.len()), &self.model.device)?;
                let h = self.model.hidden(&t, lora, None, None)?;
                let last = h.narrow(1, ids.len() - 1, 1).and_then(|x| x.squeeze(1))?;
                let z = head.forward(&self.model.final_norm(&last)?)?.to_vec1::<f32>()?[0];
                Ok(head.price(z as f64))
            }
            Decode::Top3Weighted => {
                let logits = self.model.next_token_logits(&ids, lora, None)?;
                Ok(top_k_weighted(&logits, 3, |id| self.model.tokenizer.decode_one(id)))
            }
            Decode::GreedyDigits | Decode::DigitTop3Weighted => {
                let mut cache = KvCache::new(self.model.cfg.num_hidden_layers);
                let logits = self.model.next_token_logits(&ids, lora, Some(&mut cache))?;
                let digits = self.model.tokenizer.digit_ids;
                if self.decode == Decode::GreedyDigits {
                    return self.greedy_digits(logits, cache, String::new());
                }
                // The 3 likeliest first digits 1–9, each continued greedily.
                let mut firsts: Vec<(usize, u32)> = (1..10).filter_map(|d| digits[d].map(|id| (d, id))).collect();
                firsts.sort_by(|a, b| logits[b.1 as usize].total_cmp(&logits[a.1 as usize]));
                let mut picked = vec![];
                for &(d, id) in firsts.iter().take(3) {
                    let mut branch = cache.clone();
                    let next = self.model.next_token_logits(&[id], lora, Some(&mut branch))?;
                    picked.push((self.greedy_digits(next, branch, d.to_string())?, logits[id as usize]));
                }
                Ok(probability_weighted_mean(&picked))
            }
        }
    }

    /// Continues `prefix` (digits already chosen) while the likeliest next token is a digit; the
    /// first digit, when `prefix` is empty, is the likeliest digit even if a non-digit leads.
    fn greedy_digits(&self, mut logits: Vec<f32>, mut cache: KvCache, mut out: String) -> Result<f64> {
        let digits = self.model.tokenizer.digit_ids;
        let lora = self.lora.as_ref();
        while out.len() < 7 {
            let best = argmax(&logits);
            let chosen = match digits.iter().position(|&x| x == Some(best)) {
                Some(d) => Some((d, best)),
                None if out.is_empty() => digits
                    .iter()
                    .enumerate()
                    .filter_map(|(d, id)| id.map(|id| (d, id)))
                    .max_by(|a, b| logits[a.1 as usize].total_cmp(&logits[b.1 as usize])),
                None => None,
            };
            let Some((d, id)) = chosen else { break };
            out.push(char::from(b'0' + d as u8));
            logits = self.model.next_token_logits(&[id], lora, Some(&mut cache))?;
        }
        Ok(out.parse::<f64>().unwrap_or(0.0))
    }
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

/// The mean of `(value, logit)` pairs weighted by their probabilities renormalised among themselves
/// (the softmax denominator over the vocabulary cancels, so it is not computed).
fn probability_weighted_mean(picked: &[(f64, f32)]) -> f64 {
    let max = picked.iter().map(|p| p.1).fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = picked.iter().map(|p| ((p.1 - max) as f64).exp()).collect();
    let w: f64 = weights.iter().sum();
    if w > 0.0 { picked.iter().zip(&weights).map(|(p, q)| p.0 * q).sum::<f64>() / w } else { 0.0 }
}

/// The probability-weighted mean of the `k` most likely tokens that decode to a positive number.
pub fn top_k_weighted(logits: &[f32], k: usize, decode: impl Fn(u32) -> String) -> f64 {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let mut picked = vec![];
    for id in order.into_iter().take(2000) {
        if let Ok(v) = decode(id).trim().parse::<f64>()
            && v > 0.0
            && v.is_finite()
        {
            picked.push((v, logits[id as usize]));
            if picked.len() == k {
                break;
            }
        }
    }
    probability_weighted_mean(&picked)
}
