//! Batched, KV-cached inference: the forward pass of many sequences at once (prompts packed end to
//! end, or one new token for each of many branches), each with its own cache, and the decodes that
//! read a price from it — all of them written once over a [`Backend`].
//!
//! Two backends: [`Fast`], written out by hand on the CPU like the training step ([`super::fast`]):
//! the rows of every sequence go through each projection in one matrix product, attention runs one
//! rayon task per (sequence, key/value head); and [`Candle`], candle's tensors one sequence at a
//! time, for other devices. A cache is a chain of shared segments, so a branch of the digit tree
//! costs only its own tokens, never a copy of the prompt's keys and values.

use super::decode::Decode;
use super::fast::{Data, Weights, add_bias, data, gemm, rm, rms_forward, rope_rows, strided};
use super::head::RegHead;
use super::lora::{Lora, Target};
use super::model::{KvCache, Model};
use crate::{Error, Result};
use candle_core::Tensor;
use rayon::prelude::*;
use std::sync::Arc;

/// Runs the model over new tokens of several sequences.
pub trait Backend {
    /// What a sequence has seen so far.
    type Cache: Clone + Send + Sync;
    /// A cache that has seen nothing.
    fn empty(&self) -> Self::Cache;
    /// For each `(cache, new tokens)`: the final-normed hidden state of the last new token and the
    /// cache extended by the new tokens.
    fn forward(&self, inputs: &[(&Self::Cache, &[u32])]) -> Result<Vec<(Vec<f32>, Self::Cache)>>;
    /// LM-head logits of final-normed rows.
    fn logits(&self, normed: &[&[f32]]) -> Result<Vec<Vec<f32>>>;
}

/// One forward call's keys and values for one sequence: per layer, `[len, kv_heads · head_dim]`.
pub struct Segment {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

/// What a sequence has seen: segments shared between the branches that grew from them.
#[derive(Clone, Default)]
pub struct SeqCache {
    segs: Vec<Arc<Segment>>,
    /// Tokens seen.
    pub len: usize,
}

/// The hand-written CPU backend (f32 weights on the CPU).
pub struct Fast<'a> {
    model: &'a Model,
    lora: Option<&'a Lora>,
    weights: Vec<Weights<'a>>,
    norm: Data<'a>,
    lm_head: Data<'a>,
    embed: Data<'a>,
    /// Each adapter's `(A, B)` values, by module index.
    adapters: Vec<(Data<'a>, Data<'a>)>,
}

impl<'a> Fast<'a> {
    /// Read-locks the model's (and the adapters') weights; `None` where the model is not f32 on the CPU.
    pub fn new(model: &'a Model, lora: Option<&'a Lora>) -> Result<Option<Self>> {
        if !super::fast::supported(model) {
            return Ok(None);
        }
        let adapters = match lora {
            Some(l) => l
                .modules
                .iter()
                .map(|(_, a, b)| Ok((data(a.as_tensor())?, data(b.as_tensor())?)))
                .collect::<Result<_>>()?,
            None => vec![],
        };
        Ok(Some(Self {
            model,
            lora,
            weights: model.layers.iter().map(Weights::new).collect::<Result<_>>()?,
            norm: data(&model.norm)?,
            lm_head: data(&model.lm_head)?,
            embed: data(&model.embed)?,
            adapters,
        }))
    }

    /// `y = x·Wᵀ (+ b) (+ s·(x·Aᵀ)·Bᵀ)` for `n` rows.
    #[allow(clippy::too_many_arguments)]
    fn linear(&self, li: usize, target: Target, x: &[f32], n: usize, inp: usize, out: usize) -> Vec<f32> {
        let w = &self.weights[li];
        let mut y = vec![0f32; n * out];
        gemm(&mut y, out, rm(x, inp), rm(w.w[target as usize].get(), inp).t(), n, out, inp, false, 1.0);
        if let Some(b) = &w.b[target as usize] {
            add_bias(&mut y, b.get());
        }
        if let Some(lora) = self.lora
            && let Some(m) = lora.module_index(li, target)
        {
            let r = lora.cfg.r;
            let s = (lora.cfg.alpha / r as f64) as f32;
            let (a, b) = &self.adapters[m];
            let mut u = vec![0f32; n * r];
            gemm(&mut u, r, rm(x, inp), rm(a.get(), inp).t(), n, r, inp, false, 1.0);
            gemm(&mut y, out, rm(&u, r), rm(b.get(), r).t(), n, out, r, true, s);
        }
        y
    }
}

impl Backend for Fast<'_> {
    type Cache = SeqCache;

    fn empty(&self) -> SeqCache {
        SeqCache::default()
    }

    fn forward(&self, inputs: &[(&SeqCache, &[u32])]) -> Result<Vec<(Vec<f32>, SeqCache)>> {
        let cfg = &self.model.cfg;
        let (hs, nh, nkv, hd, inter) =
            (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim(), cfg.intermediate_size);
        let (qd, kd, rep) = (nh * hd, nkv * hd, nh / nkv);
        let eps = cfg.rms_norm_eps as f32;
        let mut rows = Vec::with_capacity(inputs.len());
        let mut pos = vec![];
        let mut n = 0;
        for (c, ids) in inputs {
            if ids.is_empty() {
                return Err(Error::InvalidInput("a forward pass needs at least one new token".into()));
            }
            rows.push((n, ids.len()));
            pos.extend(c.len..c.len + ids.len());
            n += ids.len();
        }
        let max_pos = pos.iter().max().map_or(0, |p| p + 1);
        let (cos, sin) = super::model::rope_tables(cfg.rope_theta, hd, 0, max_pos);
        let emb = self.embed.get();
        let mut x = vec![0f32; n * hs];
        for (row, &id) in x.chunks_exact_mut(hs).zip(inputs.iter().flat_map(|(_, ids)| ids.iter())) {
            let id = id as usize;
            if (id + 1) * hs > emb.len() {
                return Err(Error::Model(format!("token id {id} is outside the vocabulary")));
            }
            row.copy_from_slice(&emb[id * hs..(id + 1) * hs]);
        }
        let layers = self.weights.len();
        let mut segs: Vec<Segment> = rows
            .iter()
            .map(|&(_, m)| Segment { k: Vec::with_capacity(layers), v: Vec::with_capacity(layers), len: m })
            .collect();
        let scale = 1.0 / (hd as f32).sqrt();
        for (li, w) in self.weights.iter().enumerate() {
            let (h, _) = rms_forward(&x, w.attn_norm.get(), eps);
            let mut q = self.linear(li, Target::Q, &h, n, hs, qd);
            let mut k = self.linear(li, Target::K, &h, n, hs, kd);
            let v = self.linear(li, Target::V, &h, n, hs, kd);
            drop(h);
            rope_rows(&mut q, nh, hd, &pos, &cos, &sin, 1.0);
            rope_rows(&mut k, nkv, hd, &pos, &cos, &sin, 1.0);
            let tasks: Vec<(usize, usize)> = (0..inputs.len()).flat_map(|s| (0..nkv).map(move |g| (s, g))).collect();
            let outs: Vec<Vec<f32>> = tasks
                .par_iter()
                .map(|&(s, g)| {
                    let (o, m) = rows[s];
                    let past = inputs[s].0;
                    let (l, t) = (past.len, past.len + m);
                    let mut scores = vec![0f32; m * t];
                    let mut out = vec![0f32; rep * m * hd];
                    let new_k = strided(&k[o * kd + g * hd..], kd);
                    let new_v = strided(&v[o * kd + g * hd..], kd);
                    for r in 0..rep {
                        let head = g * rep + r;
                        let qv = strided(&q[o * qd + head * hd..], qd);
                        let mut col = 0;
                        for seg in &past.segs {
                            let ks = strided(&seg.k[li][g * hd..], kd);
                            gemm(&mut scores[col..], t, qv, ks.t(), m, seg.len, hd, false, scale);
                            col += seg.len;
                        }
                        gemm(&mut scores[col..], t, qv, new_k.t(), m, m, hd, false, scale);
                        for (i, row) in scores.chunks_exact_mut(t).enumerate() {
                            let seen = l + i + 1;
                            let max = row[..seen].iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                            let mut sum = 0f32;
                            for e in &mut row[..seen] {
                                *e = (*e - max).exp();
                                sum += *e;
                            }
                            let inv = 1.0 / sum;
                            row[..seen].iter_mut().for_each(|e| *e *= inv);
                            row[seen..].fill(0.0);
                        }
                        let dst = &mut out[r * m * hd..(r + 1) * m * hd];
                        let mut col = 0;
                        for seg in &past.segs {
                            let vs = strided(&seg.v[li][g * hd..], kd);
                            gemm(dst, hd, strided(&scores[col..], t), vs, m, hd, seg.len, col > 0, 1.0);
                            col += seg.len;
                        }
                        gemm(dst, hd, strided(&scores[col..], t), new_v, m, hd, m, col > 0, 1.0);
                    }
                    out
                })
                .collect();
            let mut attn = vec![0f32; n * qd];
            for (&(s, g), out) in tasks.iter().zip(&outs) {
                let (o, m) = rows[s];
                for r in 0..rep {
                    let head = g * rep + r;
                    for i in 0..m {
                        attn[(o + i) * qd + head * hd..][..hd].copy_from_slice(&out[(r * m + i) * hd..][..hd]);
                    }
                }
            }
            drop(outs);
            for (seg, &(o, m)) in segs.iter_mut().zip(&rows) {
                seg.k.push(k[o * kd..(o + m) * kd].to_vec());
                seg.v.push(v[o * kd..(o + m) * kd].to_vec());
            }
            drop((q, k, v));
            let o_out = self.linear(li, Target::O, &attn, n, qd, hs);
            x.par_iter_mut().zip(&o_out).with_min_len(1 << 14).for_each(|(a, b)| *a += b);
            let (h2, _) = rms_forward(&x, w.mlp_norm.get(), eps);
            let gate = self.linear(li, Target::Gate, &h2, n, hs, inter);
            let up = self.linear(li, Target::Up, &h2, n, hs, inter);
            let act: Vec<f32> =
                gate.par_iter().zip(&up).with_min_len(1 << 14).map(|(&g, &u)| g / (1.0 + (-g).exp()) * u).collect();
            let down = self.linear(li, Target::Down, &act, n, inter, hs);
            x.par_iter_mut().zip(&down).with_min_len(1 << 14).for_each(|(a, b)| *a += b);
        }
        let mut last = vec![0f32; inputs.len() * hs];
        for (dst, &(o, m)) in last.chunks_exact_mut(hs).zip(&rows) {
            dst.copy_from_slice(&x[(o + m - 1) * hs..(o + m) * hs]);
        }
        let (normed, _) = rms_forward(&last, self.norm.get(), eps);
        Ok(normed
            .chunks_exact(hs)
            .zip(segs)
            .zip(inputs)
            .map(|((row, seg), (past, _))| {
                let mut c = (*past).clone();
                c.len += seg.len;
                c.segs.push(Arc::new(seg));
                (row.to_vec(), c)
            })
            .collect())
    }

    fn logits(&self, normed: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let hs = self.model.cfg.hidden_size;
        let vocab = self.model.cfg.vocab_size;
        let m = normed.len();
        let flat: Vec<f32> = normed.iter().flat_map(|r| r.iter().copied()).collect();
        let mut out = vec![0f32; m * vocab];
        gemm(&mut out, vocab, rm(&flat, hs), rm(self.lm_head.get(), hs).t(), m, vocab, hs, false, 1.0);
        Ok(out.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }
}

/// candle's tensors, one sequence at a time (any device).
pub struct Candle<'a> {
    /// The base model.
    pub model: &'a Model,
    /// Adapters, if any.
    pub lora: Option<&'a Lora>,
}

impl Backend for Candle<'_> {
    type Cache = KvCache;

    fn empty(&self) -> KvCache {
        KvCache::new(self.model.cfg.num_hidden_layers)
    }

    fn forward(&self, inputs: &[(&KvCache, &[u32])]) -> Result<Vec<(Vec<f32>, KvCache)>> {
        inputs
            .iter()
            .map(|(c, ids)| {
                let mut cache = (*c).clone();
                let t = Tensor::from_slice(ids, (1, ids.len()), &self.model.device)?;
                let h = self.model.hidden(&t, self.lora, None, Some(&mut cache))?;
                let last = h.narrow(1, ids.len() - 1, 1).and_then(|x| x.squeeze(1))?;
                let normed =
                    self.model.final_norm(&last)?.squeeze(0)?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
                Ok((normed, cache))
            })
            .collect()
    }

    fn logits(&self, normed: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let hs = self.model.cfg.hidden_size;
        let flat: Vec<f32> = normed.iter().flat_map(|r| r.iter().copied()).collect();
        let t = Tensor::from_vec(flat, (normed.len(), hs), &self.model.device)?;
        Ok(self.model.logits(&t)?.to_vec2::<f32>()?)
    }
}

/// Digits a price has at most (prices up to $9,999,999).
pub const MAX_DIGITS: usize = 7;

/// Default pruning threshold of the digit tree: a branch whose probability (as a share of the first
/// digit's) falls below it is not expanded.
pub const TREE_THRESHOLD: f64 = 0.01;

/// What the decodes need besides the backend.
pub struct DecodeCtx<'a> {
    /// Token ids of `0`..`9`.
    pub digit_ids: [Option<u32>; 10],
    /// The regression head, for [`Decode::Regression`].
    pub head: Option<&'a RegHead>,
    /// Decodes one token (for the number-token top-3 decode).
    pub decode_one: &'a (dyn Fn(u32) -> String + Sync),
    /// Pruning threshold of the digit tree.
    pub tree_threshold: f64,
}

/// Which backend prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// The hand-written CPU backend where the model allows it, else candle.
    Best,
    /// candle's tensors (for comparisons).
    Candle,
}

/// Prices of encoded prompts with a model, its adapters and head, through the backend chosen.
pub fn price_with(
    model: &Model,
    lora: Option<&Lora>,
    head: Option<&RegHead>,
    decode: Decode,
    tree_threshold: f64,
    backend: BackendChoice,
    prompts: &[&[u32]],
) -> Result<Vec<f64>> {
    let tok = &model.tokenizer;
    let decode_one = |id: u32| tok.decode_one(id);
    let cx = DecodeCtx { digit_ids: tok.digit_ids, head, decode_one: &decode_one, tree_threshold };
    match (backend, Fast::new(model, lora)?) {
        (BackendChoice::Best, Some(fast)) => price_batch(&fast, decode, &cx, prompts),
        _ => price_batch(&Candle { model, lora }, decode, &cx, prompts),
    }
}

/// Prices of several prompts (token ids ending right after `Price is $`), in one batch.
pub fn price_batch<B: Backend>(backend: &B, decode: Decode, cx: &DecodeCtx, prompts: &[&[u32]]) -> Result<Vec<f64>> {
    if prompts.is_empty() {
        return Ok(vec![]);
    }
    let empty = backend.empty();
    let inputs: Vec<(&B::Cache, &[u32])> = prompts.iter().map(|p| (&empty, *p)).collect();
    let first = backend.forward(&inputs)?;
    if decode == Decode::Regression {
        let head = cx.head.ok_or_else(|| Error::Model("no regression head".into()))?;
        let w = head.w.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let b = head.b.as_tensor().to_vec1::<f32>()?[0];
        return Ok(first
            .iter()
            .map(|(h, _)| {
                let z = h.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + b;
                head.price(z as f64)
            })
            .collect());
    }
    let rows: Vec<&[f32]> = first.iter().map(|(h, _)| h.as_slice()).collect();
    let logits = backend.logits(&rows)?;
    let caches: Vec<B::Cache> = first.into_iter().map(|(_, c)| c).collect();
    match decode {
        Decode::Regression => unreachable!("handled above"),
        Decode::Top3Weighted => Ok(logits.iter().map(|l| super::decode::top_k_weighted(l, 3, cx.decode_one)).collect()),
        Decode::GreedyDigits => {
            let states = caches.into_iter().zip(logits).map(|(c, l)| (c, l, String::new())).collect();
            let outs = greedy(backend, cx, states)?;
            Ok(outs.iter().map(|s| s.parse::<f64>().unwrap_or(0.0)).collect())
        }
        Decode::DigitTop3Weighted => {
            // The 3 likeliest first digits 1–9 of each prompt, each continued greedily.
            let mut branches: Vec<(usize, usize, u32, f32)> = vec![]; // (prompt, digit, id, logit)
            for (p, l) in logits.iter().enumerate() {
                let mut firsts: Vec<(usize, u32)> = (1..10).filter_map(|d| cx.digit_ids[d].map(|id| (d, id))).collect();
                firsts.sort_by(|a, b| l[b.1 as usize].total_cmp(&l[a.1 as usize]));
                branches.extend(firsts.iter().take(3).map(|&(d, id)| (p, d, id, l[id as usize])));
            }
            let toks: Vec<[u32; 1]> = branches.iter().map(|b| [b.2]).collect();
            let inputs: Vec<(&B::Cache, &[u32])> =
                branches.iter().zip(&toks).map(|(b, t)| (&caches[b.0], t.as_slice())).collect();
            let next = backend.forward(&inputs)?;
            let rows: Vec<&[f32]> = next.iter().map(|(h, _)| h.as_slice()).collect();
            let next_logits = backend.logits(&rows)?;
            let states = next
                .into_iter()
                .zip(next_logits)
                .zip(&branches)
                .map(|(((_, c), l), b)| (c, l, b.1.to_string()))
                .collect();
            let outs = greedy(backend, cx, states)?;
            let mut picked: Vec<Vec<(f64, f32)>> = vec![vec![]; prompts.len()];
            for (b, s) in branches.iter().zip(outs) {
                picked[b.0].push((s.parse::<f64>().unwrap_or(0.0), b.3));
            }
            Ok(picked.iter().map(|p| super::decode::probability_weighted_mean(p)).collect())
        }
        Decode::DigitTree | Decode::DigitTreeMedian => {
            let leaves = digit_tree(backend, cx, caches, logits)?;
            Ok(leaves.iter().map(|l| if decode == Decode::DigitTree { tree_mean(l) } else { tree_median(l) }).collect())
        }
    }
}

/// Continues each `(cache, logits, digits so far)` while its likeliest next token is a digit; with no
/// digits yet, the first is the likeliest digit even if a non-digit leads. All states step together.
fn greedy<B: Backend>(backend: &B, cx: &DecodeCtx, states: Vec<(B::Cache, Vec<f32>, String)>) -> Result<Vec<String>> {
    let digits = cx.digit_ids;
    let mut outs: Vec<String> = states.iter().map(|s| s.2.clone()).collect();
    let mut active: Vec<(usize, B::Cache, Vec<f32>)> =
        states.into_iter().enumerate().map(|(i, (c, l, _))| (i, c, l)).collect();
    while !active.is_empty() {
        let mut step: Vec<(usize, B::Cache, [u32; 1])> = vec![];
        for (i, cache, logits) in active {
            if outs[i].len() >= MAX_DIGITS {
                continue;
            }
            let best = argmax(&logits);
            let chosen = match digits.iter().position(|&x| x == Some(best)) {
                Some(d) => Some((d, best)),
                None if outs[i].is_empty() => digits
                    .iter()
                    .enumerate()
                    .filter_map(|(d, id)| id.map(|id| (d, id)))
                    .max_by(|a, b| logits[a.1 as usize].total_cmp(&logits[b.1 as usize])),
                None => None,
            };
            let Some((d, id)) = chosen else { continue };
            outs[i].push(char::from(b'0' + d as u8));
            if outs[i].len() < MAX_DIGITS {
                step.push((i, cache, [id]));
            }
        }
        if step.is_empty() {
            break;
        }
        let inputs: Vec<(&B::Cache, &[u32])> = step.iter().map(|(_, c, t)| (c, t.as_slice())).collect();
        let next = backend.forward(&inputs)?;
        let rows: Vec<&[f32]> = next.iter().map(|(h, _)| h.as_slice()).collect();
        let logits = backend.logits(&rows)?;
        active = step.iter().zip(next).zip(logits).map(|(((i, _, _), (_, c)), l)| (*i, c, l)).collect();
    }
    Ok(outs)
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

/// `ln Σ exp(v)`.
fn log_sum_exp(v: &[f32]) -> f64 {
    let max = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    max + v.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln()
}

/// One priced outcome of the digit tree: the number and its probability.
pub type Leaf = (f64, f64);

/// Every number the model may write after `Price is $`, with its probability: the tree over digit
/// sequences, the first digit among 1–9 (renormalised), each later position a digit or the end (any
/// other token), branches whose probability falls below `cx.tree_threshold` cut. All nodes of one
/// depth, over all prompts, go through one forward call.
pub fn digit_tree<B: Backend>(
    backend: &B,
    cx: &DecodeCtx,
    caches: Vec<B::Cache>,
    logits: Vec<Vec<f32>>,
) -> Result<Vec<Vec<Leaf>>> {
    let mut leaves: Vec<Vec<Leaf>> = vec![vec![]; caches.len()];
    // Children to expand: (prompt, parent cache, digits, probability, digit id).
    let mut frontier: Vec<(usize, B::Cache, String, f64, u32)> = vec![];
    for (p, (cache, l)) in caches.into_iter().zip(&logits).enumerate() {
        let firsts: Vec<(usize, u32)> = (1..10).filter_map(|d| cx.digit_ids[d].map(|id| (d, id))).collect();
        let vals: Vec<f32> = firsts.iter().map(|&(_, id)| l[id as usize]).collect();
        let lse = log_sum_exp(&vals);
        for (&(d, id), &v) in firsts.iter().zip(&vals) {
            let prob = (v as f64 - lse).exp();
            if prob >= cx.tree_threshold {
                frontier.push((p, cache.clone(), d.to_string(), prob, id));
            }
        }
    }
    while !frontier.is_empty() {
        let toks: Vec<[u32; 1]> = frontier.iter().map(|f| [f.4]).collect();
        let inputs: Vec<(&B::Cache, &[u32])> = frontier.iter().zip(&toks).map(|(f, t)| (&f.1, t.as_slice())).collect();
        let next = backend.forward(&inputs)?;
        let rows: Vec<&[f32]> = next.iter().map(|(h, _)| h.as_slice()).collect();
        let next_logits = backend.logits(&rows)?;
        let mut grown = vec![];
        for ((f, (_, cache)), l) in frontier.into_iter().zip(next).zip(next_logits) {
            let (p, _, digits, prob, _) = f;
            let value: f64 = digits.parse().unwrap_or(0.0);
            if digits.len() >= MAX_DIGITS {
                leaves[p].push((value, prob));
                continue;
            }
            let lse = log_sum_exp(&l);
            let mut more = 0.0;
            for (d, id) in cx.digit_ids.iter().enumerate() {
                let Some(id) = *id else { continue };
                let q = (l[id as usize] as f64 - lse).exp();
                more += q;
                if prob * q >= cx.tree_threshold {
                    grown.push((p, cache.clone(), format!("{digits}{d}"), prob * q, id));
                }
            }
            leaves[p].push((value, prob * (1.0 - more).max(0.0)));
        }
        frontier = grown;
    }
    Ok(leaves)
}

/// The expected price over a tree's leaves (their probabilities renormalised).
pub fn tree_mean(leaves: &[Leaf]) -> f64 {
    let w: f64 = leaves.iter().map(|l| l.1).sum();
    if w > 0.0 { leaves.iter().map(|l| l.0 * l.1).sum::<f64>() / w } else { 0.0 }
}

/// The median price over a tree's leaves: the smallest number whose cumulative probability reaches
/// half the total.
pub fn tree_median(leaves: &[Leaf]) -> f64 {
    let mut v = leaves.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let half = v.iter().map(|l| l.1).sum::<f64>() / 2.0;
    let mut acc = 0.0;
    for (value, p) in &v {
        acc += p;
        if acc >= half && acc > 0.0 {
            return *value;
        }
    }
    v.last().map_or(0.0, |l| l.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend whose next-token probabilities are written by hand. Tokens 0–9 are the digits,
    /// 10 is `.`, 11 the prompt; the cache is the history.
    struct Hand;

    const DOT: usize = 10;

    fn probs(history: &[u32]) -> Vec<f64> {
        let digits: String = history.iter().filter(|&&t| t < 10).map(|t| char::from(b'0' + *t as u8)).collect();
        let mut p = vec![0.0; 12];
        match digits.as_str() {
            "" => (p[1], p[2]) = (0.6, 0.4),
            "1" => (p[5], p[DOT]) = (0.6, 0.4),
            _ => p[DOT] = 1.0,
        }
        p
    }

    impl Backend for Hand {
        type Cache = Vec<u32>;
        fn empty(&self) -> Vec<u32> {
            vec![]
        }
        fn forward(&self, inputs: &[(&Vec<u32>, &[u32])]) -> Result<Vec<(Vec<f32>, Vec<u32>)>> {
            Ok(inputs
                .iter()
                .map(|(c, ids)| {
                    let h: Vec<u32> = c.iter().chain(ids.iter()).copied().collect();
                    (h.iter().map(|&t| t as f32).collect(), h)
                })
                .collect())
        }
        fn logits(&self, normed: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
            Ok(normed
                .iter()
                .map(|h| {
                    let hist: Vec<u32> = h.iter().map(|&x| x as u32).collect();
                    probs(&hist).iter().map(|&p| if p > 0.0 { p.ln() as f32 } else { -1e9 }).collect()
                })
                .collect())
        }
    }

    fn cx(threshold: f64) -> DecodeCtx<'static> {
        static DECODE: fn(u32) -> String = |id| id.to_string();
        DecodeCtx {
            digit_ids: std::array::from_fn(|d| Some(d as u32)),
            head: None,
            decode_one: &DECODE,
            tree_threshold: threshold,
        }
    }

    #[test]
    fn the_digit_tree_gives_the_hand_computed_expectation_and_median() {
        // Leaves: "1" 0.6·0.4 = 0.24, "15" 0.6·0.6 = 0.36, "2" 0.4.
        let prompt: &[u32] = &[11];
        let mean = price_batch(&Hand, Decode::DigitTree, &cx(0.01), &[prompt]).unwrap()[0];
        assert!((mean - (0.24 * 1.0 + 0.36 * 15.0 + 0.4 * 2.0)).abs() < 1e-6, "{mean}");
        let median = price_batch(&Hand, Decode::DigitTreeMedian, &cx(0.01), &[prompt]).unwrap()[0];
        assert_eq!(median, 2.0);
        // Cutting the "15" branch (0.36 < 0.37) renormalises over what is left.
        let cut = price_batch(&Hand, Decode::DigitTree, &cx(0.37), &[prompt]).unwrap()[0];
        assert!((cut - (0.24 * 1.0 + 0.4 * 2.0) / 0.64).abs() < 1e-6, "{cut}");
        // Greedy follows 1 then 5 then stops; top-3 first digits weigh "15" (0.6) and "2" (0.4).
        let greedy = price_batch(&Hand, Decode::GreedyDigits, &cx(0.01), &[prompt]).unwrap()[0];
        assert_eq!(greedy, 15.0);
        let top3 = price_batch(&Hand, Decode::DigitTop3Weighted, &cx(0.01), &[prompt, prompt]).unwrap();
        assert!((top3[0] - (0.6 * 15.0 + 0.4 * 2.0)).abs() < 1e-4, "{top3:?}");
        assert_eq!(top3[0], top3[1]);
    }
}
