//! word2vec as gensim's `Word2Vec` trains it by default — CBOW with the mean of the context
//! (`sg=0, cbow_mean=1`), negative sampling (5 words from the unigram distribution to the power
//! 0.75), down-sampling of frequent words (`sample=1e-3`), windows shrunk at random, a learning
//! rate falling linearly from 0.025 to 0.0001 over 5 epochs — on one thread, so that a seed gives
//! the same vectors every time (gensim's own runs differ between runs with several workers). A
//! document is the mean of its words' vectors; then linear regression, linear SVR or a random
//! forest prices it.

use super::forest::Forest;
use super::linear::{Design, LinearModel};
use super::svr::LinearSvr;
use super::textfeat::simple_preprocess;
use super::{Guess, Pricer};
use crate::evaluation::{PricerSpec, W2vParams};
use crate::items::{ItemRef, ItemTable};
use crate::jobs::{JobCtx, Progress};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;

/// Trained word vectors.
pub struct WordVectors {
    /// Vector size.
    pub dim: usize,
    /// Words, most frequent first.
    pub words: Vec<String>,
    index: HashMap<String, usize>,
    /// `words.len() × dim`, row-major.
    pub vectors: Vec<f32>,
}

impl WordVectors {
    /// The vector of a word.
    pub fn get(&self, word: &str) -> Option<&[f32]> {
        self.index.get(word).map(|&i| &self.vectors[i * self.dim..(i + 1) * self.dim])
    }

    /// The mean vector of a document's known words (zeros when none is known).
    pub fn document(&self, words: &[String]) -> Vec<f64> {
        let mut v = vec![0.0f64; self.dim];
        let mut n = 0;
        for w in words {
            if let Some(x) = self.get(w) {
                v.iter_mut().zip(x).for_each(|(a, b)| *a += *b as f64);
                n += 1;
            }
        }
        if n > 0 {
            v.iter_mut().for_each(|a| *a /= n as f64);
        }
        v
    }

    /// Trains on tokenised sentences.
    pub fn train(sentences: &[Vec<String>], p: &W2vParams, ctx: &JobCtx) -> Result<Self> {
        let dim = p.vector_size;
        // Vocabulary: counts, kept words by count (ties: first seen).
        let mut counts: HashMap<&str, (u64, usize)> = HashMap::new();
        let mut order = 0;
        for s in sentences {
            for w in s {
                let e = counts.entry(w.as_str()).or_insert((0, order));
                if e.0 == 0 {
                    order += 1;
                }
                e.0 += 1;
            }
        }
        let mut vocab: Vec<(&str, u64, usize)> =
            counts.into_iter().filter(|(_, (c, _))| *c as usize >= p.min_count).map(|(w, (c, o))| (w, c, o)).collect();
        if vocab.is_empty() {
            return Err(Error::InvalidInput("word2vec: no words in the training texts".into()));
        }
        vocab.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        let words: Vec<String> = vocab.iter().map(|v| v.0.to_owned()).collect();
        let freq: Vec<u64> = vocab.iter().map(|v| v.1).collect();
        let index: HashMap<String, usize> = words.iter().enumerate().map(|(i, w)| (w.clone(), i)).collect();
        let nw = words.len();
        let retain_total: u64 = freq.iter().sum();
        // Down-sampling: keep probability per word, as gensim computes it.
        let threshold = if p.sample < 1.0 { p.sample * retain_total as f64 } else { p.sample };
        let keep: Vec<f64> = freq
            .iter()
            .map(|&c| {
                let c = c as f64;
                if threshold > 0.0 { ((c / threshold).sqrt() + 1.0) * (threshold / c) } else { 1.0 }.min(1.0)
            })
            .collect();
        // Negative-sampling table (cumulative count^0.75).
        let pow: Vec<f64> = freq.iter().map(|&c| (c as f64).powf(p.ns_exponent)).collect();
        let total_pow: f64 = pow.iter().sum();
        let mut cum = Vec::with_capacity(nw);
        let mut acc = 0.0;
        for x in &pow {
            acc += x / total_pow;
            cum.push(acc);
        }
        // Initial vectors: uniform in ±0.5/dim, seeded per word; output weights zero.
        let mut syn0 = vec![0.0f32; nw * dim];
        syn0.par_chunks_mut(dim).enumerate().for_each(|(i, v)| {
            let mut r = ChaCha8Rng::seed_from_u64(p.seed ^ fnv(&words[i]));
            for x in v {
                *x = (r.random::<f32>() - 0.5) / dim as f32;
            }
        });
        let mut syn1 = vec![0.0f32; nw * dim];
        let ids: Vec<Vec<usize>> =
            sentences.iter().map(|s| s.iter().filter_map(|w| index.get(w).copied()).collect()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let total_words = (retain_total as f64) * p.epochs as f64;
        let mut seen = 0u64;
        let mut neu1 = vec![0.0f32; dim];
        let mut work = vec![0.0f32; dim];
        let mut kept: Vec<usize> = vec![];
        for epoch in 0..p.epochs {
            ctx.check()?;
            ctx.report(&Progress {
                stage: format!("word2vec: epoch {}/{}", epoch + 1, p.epochs),
                done: epoch as u64,
                total: p.epochs as u64,
                n_items: 0,
            });
            for s in &ids {
                let alpha = (p.alpha - (p.alpha - p.min_alpha) * seen as f64 / total_words).max(p.min_alpha) as f32;
                seen += s.len() as u64;
                kept.clear();
                kept.extend(s.iter().copied().filter(|&w| keep[w] >= 1.0 || rng.random::<f64>() < keep[w]));
                for i in 0..kept.len() {
                    let word = kept[i];
                    let b = rng.random_range(0..p.window.max(1));
                    let (j, k) = ((i + b).saturating_sub(p.window), (i + p.window + 1 - b).min(kept.len()));
                    neu1.iter_mut().for_each(|x| *x = 0.0);
                    let mut count = 0;
                    for (m, &c) in kept.iter().enumerate().take(k).skip(j) {
                        if m != i {
                            count += 1;
                            neu1.iter_mut().zip(&syn0[c * dim..(c + 1) * dim]).for_each(|(a, b)| *a += b);
                        }
                    }
                    if count > 0 {
                        let inv = 1.0 / count as f32;
                        neu1.iter_mut().for_each(|x| *x *= inv);
                    }
                    work.iter_mut().for_each(|x| *x = 0.0);
                    for d in 0..=p.negative {
                        let (target, label) = if d == 0 {
                            (word, 1.0f32)
                        } else {
                            let r: f64 = rng.random();
                            let t = cum.partition_point(|&c| c < r).min(nw - 1);
                            if t == word {
                                continue;
                            }
                            (t, 0.0)
                        };
                        let out = &mut syn1[target * dim..(target + 1) * dim];
                        let f: f32 = neu1.iter().zip(out.iter()).map(|(a, b)| a * b).sum();
                        let sig = if f <= -6.0 {
                            0.0
                        } else if f >= 6.0 {
                            1.0
                        } else {
                            1.0 / (1.0 + (-f).exp())
                        };
                        let g = (label - sig) * alpha;
                        work.iter_mut().zip(out.iter()).for_each(|(w, o)| *w += g * o);
                        out.iter_mut().zip(&neu1).for_each(|(o, n)| *o += g * n);
                    }
                    for (m, &c) in kept.iter().enumerate().take(k).skip(j) {
                        if m != i {
                            syn0[c * dim..(c + 1) * dim].iter_mut().zip(&work).for_each(|(a, b)| *a += b);
                        }
                    }
                }
            }
        }
        Ok(Self { dim, words, index, vectors: syn0 })
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The model on top of the document vectors.
pub enum Head {
    /// Linear regression.
    Lr(LinearModel),
    /// Linear SVR.
    Svr(LinearSvr),
    /// Random forest.
    Rf(Forest),
}

/// word2vec document vectors + a regressor.
pub struct Word2vecPricer {
    /// The word vectors.
    pub wv: WordVectors,
    /// The regressor.
    pub head: Head,
}

impl Word2vecPricer {
    /// Trains the vectors on the training test prompts, then the regressor the spec names.
    pub fn fit(train: &ItemTable, p: &W2vParams, spec: &PricerSpec, ctx: &JobCtx) -> Result<Self> {
        let docs: Vec<Vec<String>> =
            (0..train.len()).into_par_iter().map(|i| simple_preprocess(train.get(i).test_prompt())).collect();
        let wv = WordVectors::train(&docs, p, ctx)?;
        let x: Vec<f64> = docs.par_iter().flat_map_iter(|d| wv.document(d)).collect();
        let y = train.prices();
        ctx.report(&Progress { stage: format!("fitting {}", spec.kind()), ..Default::default() });
        let head = match spec {
            PricerSpec::Word2vecSvr { svr, .. } => Head::Svr(LinearSvr::fit(&x, wv.dim, y, svr)?),
            PricerSpec::Word2vecRf { forest, .. } => {
                let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                Head::Rf(Forest::fit(&xf, wv.dim, y, forest, ctx)?)
            }
            _ => Head::Lr(LinearModel::fit(&Design::Dense(&x, wv.dim), y)?),
        };
        Ok(Self { wv, head })
    }

    /// The price of a text.
    pub fn price_text(&self, text: &str) -> f64 {
        let v = self.wv.document(&simple_preprocess(text));
        match &self.head {
            Head::Lr(m) => m.predict_dense(&v),
            Head::Svr(m) => m.predict(&v),
            Head::Rf(f) => f.predict(&v.iter().map(|&x| x as f32).collect::<Vec<_>>()),
        }
        .max(0.0)
    }
}

impl Pricer for Word2vecPricer {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], _: &JobCtx) -> Result<Vec<Guess>> {
        Ok(batch.iter().map(|(_, it)| Guess::of(self.price_text(it.test_prompt()))).collect())
    }
    fn fitted(&self) -> serde_json::Value {
        let head = match &self.head {
            Head::Lr(m) => serde_json::json!({ "model": "linear regression", "intercept": m.intercept }),
            Head::Svr(m) => serde_json::json!({
                "model": "linear SVR", "intercept": m.intercept, "iterations": m.iterations, "converged": m.converged
            }),
            Head::Rf(f) => serde_json::json!({
                "model": "random forest", "trees": f.trees.len(),
                "mean_nodes": f.trees.iter().map(|t| t.len()).sum::<usize>() as f64 / f.trees.len().max(1) as f64
            }),
        };
        serde_json::json!({ "words": self.wv.words.len(), "dim": self.wv.dim, "head": head })
    }
}
