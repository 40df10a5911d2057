//! Words from text as scikit-learn's `CountVectorizer` and gensim's `simple_preprocess` take
//! them, and the bag-of-words pricer: the most frequent terms of the training test prompts
//! (English stop words removed) counted per item, then linear regression.

use super::linear::{Design, LinearModel};
use super::stop_words::ENGLISH_STOP_WORDS;
use super::{Guess, Pricer};
use crate::Result;
use crate::items::{ItemRef, ItemTable};
use crate::jobs::JobCtx;
use crate::text::{is_py_decimal, is_py_word};
use rayon::prelude::*;
use std::collections::HashMap;

/// Maximal runs of characters where `word` holds, in order.
fn runs(text: &str, word: impl Fn(char) -> bool) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find(|c: char| word(c))?;
        let tail = &rest[start..];
        let len = tail.find(|c: char| !word(c)).unwrap_or(tail.len());
        rest = &tail[len..];
        Some(&tail[..len])
    })
}

/// `CountVectorizer`'s analyzer: lower-case, tokens of `(?u)\b\w\w+\b` (Python's `\w`: every
/// maximal run of two or more word characters), stop words dropped.
pub fn sk_tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    runs(&lower, is_py_word)
        .filter(|t| t.chars().nth(1).is_some() && ENGLISH_STOP_WORDS.binary_search(t).is_err())
        .map(str::to_owned)
        .collect()
}

/// gensim's `simple_preprocess`: lower-case runs of `(((?![\d])\w)+)` (Python's word
/// characters that are not decimal digits), 2–15 characters long, not starting with `_`.
pub fn simple_preprocess(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    runs(&lower, |c| is_py_word(c) && !is_py_decimal(c))
        .filter(|t| (2..=15).contains(&t.chars().count()) && !t.starts_with('_'))
        .map(str::to_owned)
        .collect()
}

/// A fitted vocabulary: term → column (columns in alphabetical order of the terms).
#[derive(Clone, Debug)]
pub struct Vocabulary {
    /// Terms, sorted; a term's position is its column.
    pub terms: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocabulary {
    /// The `max_features` terms with the largest total count over `docs` (ties: alphabetical).
    pub fn fit(docs: &[Vec<String>], max_features: usize) -> Self {
        let counts = docs
            .par_iter()
            .fold(HashMap::<&str, u64>::new, |mut m, d| {
                for t in d {
                    *m.entry(t.as_str()).or_default() += 1;
                }
                m
            })
            .reduce(HashMap::new, |mut a, b| {
                for (k, v) in b {
                    *a.entry(k).or_default() += v;
                }
                a
            });
        let mut all: Vec<(&str, u64)> = counts.into_iter().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(max_features);
        let mut terms: Vec<String> = all.into_iter().map(|(t, _)| t.to_owned()).collect();
        terms.sort();
        let index = terms.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        Self { terms, index }
    }

    /// Counts of the vocabulary's terms in a tokenised document, by column.
    pub fn counts(&self, doc: &[String]) -> Vec<(u32, f64)> {
        let mut m: HashMap<u32, f64> = HashMap::new();
        for t in doc {
            if let Some(&j) = self.index.get(t) {
                *m.entry(j).or_default() += 1.0;
            }
        }
        let mut v: Vec<(u32, f64)> = m.into_iter().collect();
        v.sort_by_key(|e| e.0);
        v
    }
}

/// Bag of words + linear regression.
pub struct BowLr {
    /// The terms.
    pub vocabulary: Vocabulary,
    /// The model.
    pub model: LinearModel,
}

impl BowLr {
    /// Fits on the training items' test prompts.
    pub fn fit(train: &ItemTable, max_features: usize, ctx: &JobCtx) -> Result<Self> {
        ctx.check()?;
        let docs: Vec<Vec<String>> =
            (0..train.len()).into_par_iter().map(|i| sk_tokens(train.get(i).test_prompt())).collect();
        let vocabulary = Vocabulary::fit(&docs, max_features);
        let rows: Vec<Vec<(u32, f64)>> = docs.par_iter().map(|d| vocabulary.counts(d)).collect();
        ctx.check()?;
        let model = LinearModel::fit(&Design::Sparse(&rows, vocabulary.terms.len()), train.prices())?;
        Ok(Self { vocabulary, model })
    }
}

impl Pricer for BowLr {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], _: &JobCtx) -> Result<Vec<Guess>> {
        Ok(batch
            .iter()
            .map(|(_, it)| {
                let row = self.vocabulary.counts(&sk_tokens(it.test_prompt()));
                Guess::of(self.model.predict_sparse(&row).max(0.0))
            })
            .collect())
    }
    fn fitted(&self) -> serde_json::Value {
        let mut top: Vec<(&String, f64)> = self.vocabulary.terms.iter().zip(self.model.coef.iter().copied()).collect();
        top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let top: serde_json::Map<String, serde_json::Value> =
            top.into_iter().take(20).map(|(t, c)| (t.clone(), c.into())).collect();
        serde_json::json!({ "terms": self.vocabulary.terms.len(), "intercept": self.model.intercept, "largest_coefficients": top })
    }
}
