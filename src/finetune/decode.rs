//! How a price is read from a model's output.

use serde::{Deserialize, Serialize};

/// How a price is read from the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decode {
    /// Softmax at the last position; the 3 most likely tokens that decode to a positive number,
    /// probability-weighted (design.md §7). Needs one token per number (Llama 3).
    Top3Weighted,
    /// Greedy decoding of digits until the first non-digit, with a KV cache.
    GreedyDigits,
    /// The 3 likeliest first digits (1–9), each continued greedily, probability-weighted: the
    /// top-3 idea of design.md §7 carried over to digit-by-digit tokenizers.
    DigitTop3Weighted,
    /// The expected price over the tree of digit sequences (first digit 1–9, then each position a
    /// digit or the end), branches below a probability threshold cut.
    DigitTree,
    /// The median of the same tree's distribution.
    DigitTreeMedian,
    /// The trained regression head.
    Regression,
}

impl Decode {
    /// Reads a name: `top3` (number tokens), `greedy`, `digit-top3`, `tree`, `tree-median`, `regression`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "top3" | "top-3" => Some(Self::Top3Weighted),
            "greedy" | "greedy-digits" => Some(Self::GreedyDigits),
            "digit-top3" | "digits-top3" => Some(Self::DigitTop3Weighted),
            "tree" | "digit-tree" | "tree-mean" => Some(Self::DigitTree),
            "tree-median" | "digit-tree-median" => Some(Self::DigitTreeMedian),
            "regression" => Some(Self::Regression),
            _ => None,
        }
    }

    /// Every decode, in the order the UI lists them.
    pub const ALL: [Self; 6] = [
        Self::Top3Weighted,
        Self::GreedyDigits,
        Self::DigitTop3Weighted,
        Self::DigitTree,
        Self::DigitTreeMedian,
        Self::Regression,
    ];

    /// The name [`Decode::parse`] reads (`top3`, `greedy`, `digit-top3`, `tree`, `tree-median`, `regression`).
    pub fn key(self) -> &'static str {
        match self {
            Self::Top3Weighted => "top3",
            Self::GreedyDigits => "greedy",
            Self::DigitTop3Weighted => "digit-top3",
            Self::DigitTree => "tree",
            Self::DigitTreeMedian => "tree-median",
            Self::Regression => "regression",
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Top3Weighted => "top-3 weighted",
            Self::GreedyDigits => "greedy digits",
            Self::DigitTop3Weighted => "top-3 first digits, weighted",
            Self::DigitTree => "expected price over the digit tree",
            Self::DigitTreeMedian => "median of the digit tree",
            Self::Regression => "regression head",
        }
    }
}

/// The mean of `(value, logit)` pairs weighted by their probabilities renormalised among themselves
/// (the softmax denominator over the vocabulary cancels, so it is not computed).
pub(crate) fn probability_weighted_mean(picked: &[(f64, f32)]) -> f64 {
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
