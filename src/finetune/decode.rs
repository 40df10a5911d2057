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
    /// The trained regression head.
    Regression,
}

impl Decode {
    /// Reads a name: `top3` (number tokens), `greedy`, `digit-top3`, `regression`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "top3" | "top-3" => Some(Self::Top3Weighted),
            "greedy" | "greedy-digits" => Some(Self::GreedyDigits),
            "digit-top3" | "digits-top3" => Some(Self::DigitTop3Weighted),
            "regression" => Some(Self::Regression),
            _ => None,
        }
    }

    /// The name [`Decode::parse`] reads (`top3`, `greedy`, `digit-top3`, `regression`).
    pub fn key(self) -> &'static str {
        match self {
            Self::Top3Weighted => "top3",
            Self::GreedyDigits => "greedy",
            Self::DigitTop3Weighted => "digit-top3",
            Self::Regression => "regression",
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Top3Weighted => "top-3 weighted",
            Self::GreedyDigits => "greedy digits",
            Self::DigitTop3Weighted => "top-3 first digits, weighted",
            Self::Regression => "regression head",
        }
    }
}
