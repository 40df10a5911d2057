//! The BERT encoder forward pass written out for the CPU, for sentence embeddings: the weights
//! candle-transformers' `BertModel` loads (same names, same `Config`), the same computation
//! (post-LayerNorm encoder, erf GELU, absolute positions, token type 0), but texts packed end to
//! end without padding, Q/K/V in one matrix product, and every product a direct `gemm` call on
//! one core, so that one batch runs per core. candle-transformers' model stays the reference the
//! tests compare it with (`Embedder::reference_forward`).

use crate::finetune::fast::{View, gemm, rm, strided};
use crate::{Error, Result};
use candle_core::Tensor;
use candle_transformers::models::bert::{Config, HiddenAct};
use std::collections::HashMap;

struct Layer {
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    o_w: Vec<f32>,
    o_b: Vec<f32>,
    ln1: (Vec<f32>, Vec<f32>),
    i_w: Vec<f32>,
    i_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    ln2: (Vec<f32>, Vec<f32>),
}

/// A BERT encoder held as plain `f32` weights.
pub struct Bert {
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    approximate_gelu: bool,
    word: Vec<f32>,
    pos: Vec<f32>,
    typ: Vec<f32>,
    max_pos: usize,
    emb_ln: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
}

impl Bert {
    /// Takes the weights from a safetensors map (names as in Hugging Face's `BertModel`, with or
    /// without a `bert.` prefix).
    pub fn new(tensors: &HashMap<String, Tensor>, cfg: &Config) -> Result<Self> {
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let get = |name: &str| -> Result<Vec<f32>> {
            let t = tensors
                .get(&format!("{prefix}{name}"))
                .ok_or_else(|| Error::Model(format!("embedder weights lack `{prefix}{name}`")))?;
            Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let ln = |name: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((get(&format!("{name}.weight"))?, get(&format!("{name}.bias"))?))
        };
        let mut layers = vec![];
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let mut qkv_w = get(&format!("{p}.attention.self.query.weight"))?;
            qkv_w.extend(get(&format!("{p}.attention.self.key.weight"))?);
            qkv_w.extend(get(&format!("{p}.attention.self.value.weight"))?);
            let mut qkv_b = get(&format!("{p}.attention.self.query.bias"))?;
            qkv_b.extend(get(&format!("{p}.attention.self.key.bias"))?);
            qkv_b.extend(get(&format!("{p}.attention.self.value.bias"))?);
            layers.push(Layer {
                qkv_w,
                qkv_b,
                o_w: get(&format!("{p}.attention.output.dense.weight"))?,
                o_b: get(&format!("{p}.attention.output.dense.bias"))?,
                ln1: ln(&format!("{p}.attention.output.LayerNorm"))?,
                i_w: get(&format!("{p}.intermediate.dense.weight"))?,
                i_b: get(&format!("{p}.intermediate.dense.bias"))?,
                out_w: get(&format!("{p}.output.dense.weight"))?,
                out_b: get(&format!("{p}.output.dense.bias"))?,
                ln2: ln(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let h = cfg.hidden_size;
        if !h.is_multiple_of(cfg.num_attention_heads) || layers.iter().any(|l| l.qkv_w.len() != 3 * h * h) {
            return Err(Error::Model("embedder weights do not match its config.json".into()));
        }
        Ok(Self {
            hidden: h,
            heads: cfg.num_attention_heads,
            inter: cfg.intermediate_size,
            eps: cfg.layer_norm_eps as f32,
            approximate_gelu: cfg.hidden_act == HiddenAct::GeluApproximate,
            word: get("embeddings.word_embeddings.weight")?,
            pos: get("embeddings.position_embeddings.weight")?,
            typ: get("embeddings.token_type_embeddings.weight")?,
            max_pos: cfg.max_position_embeddings,
            emb_ln: ln("embeddings.LayerNorm")?,
            layers,
        })
    }

    /// The last hidden states of token sequences, packed end to end (`Σ len × hidden`).
    pub fn hidden_states(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        let h = self.hidden;
        let rows: usize = seqs.iter().map(|s| s.len()).sum();
        let vocab = self.word.len() / h;
        let mut x = vec![0f32; rows * h];
        let mut r = 0;
        for s in seqs {
            if s.len() > self.max_pos {
                return Err(Error::Model(format!("{} tokens is more than the embedder's {}", s.len(), self.max_pos)));
            }
            for (p, &id) in s.iter().enumerate() {
                let id = id as usize;
                if id >= vocab {
                    return Err(Error::Model(format!("token id {id} is outside the embedder's vocabulary")));
                }
                let row = &mut x[r * h..(r + 1) * h];
                let (w, ps, t) = (&self.word[id * h..(id + 1) * h], &self.pos[p * h..(p + 1) * h], &self.typ[..h]);
                for j in 0..h {
                    row[j] = w[j] + ps[j] + t[j];
                }
                r += 1;
            }
        }
        layer_norm(&mut x, h, &self.emb_ln, self.eps);
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        for l in &self.layers {
            x = self.layer(l, x, &lens);
        }
        Ok(x)
    }

    fn layer(&self, l: &Layer, x: Vec<f32>, lens: &[usize]) -> Vec<f32> {
        let (h, nh) = (self.hidden, self.heads);
        let dh = h / nh;
        let rows = x.len() / h;
        let qkv = linear(&x, rows, &l.qkv_w, &l.qkv_b, 3 * h, h);
        let mut ctx = vec![0f32; rows * h];
        let scale = 1.0 / (dh as f32).sqrt();
        let mut scores = vec![];
        let mut o = 0;
        for &len in lens {
            scores.resize(len * len, 0.0);
            for hd in 0..nh {
                let q = strided(&qkv[o * 3 * h + hd * dh..], 3 * h);
                let k = strided(&qkv[o * 3 * h + h + hd * dh..], 3 * h);
                let v = strided(&qkv[o * 3 * h + 2 * h + hd * dh..], 3 * h);
                gemm(&mut scores, len, q, k.t(), len, len, dh, false, scale);
                for row in scores.chunks_mut(len) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0;
                    for s in row.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|s| *s *= inv);
                }
                gemm(&mut ctx[o * h + hd * dh..], h, rm(&scores, len), v, len, dh, len, false, 1.0);
            }
            o += len;
        }
        let mut a = linear(&ctx, rows, &l.o_w, &l.o_b, h, h);
        a.iter_mut().zip(&x).for_each(|(a, x)| *a += x);
        layer_norm(&mut a, h, &l.ln1, self.eps);
        let mut inter = linear(&a, rows, &l.i_w, &l.i_b, self.inter, h);
        if self.approximate_gelu {
            inter.iter_mut().for_each(|v| *v = gelu_tanh(*v));
        } else {
            inter.iter_mut().for_each(|v| *v = gelu_erf(*v));
        }
        let mut out = linear(&inter, rows, &l.out_w, &l.out_b, h, self.inter);
        out.iter_mut().zip(&a).for_each(|(o, a)| *o += a);
        layer_norm(&mut out, h, &l.ln2, self.eps);
        out
    }

    /// Masked-mean-pooled, L2-normalised sentence vectors (sentence-transformers' pipeline).
    pub fn sentence_vectors(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let h = self.hidden;
        let x = self.hidden_states(seqs)?;
        let mut out = Vec::with_capacity(seqs.len());
        let mut o = 0;
        for s in seqs {
            let mut v = vec![0f32; h];
            for r in o..o + s.len() {
                v.iter_mut().zip(&x[r * h..(r + 1) * h]).for_each(|(a, b)| *a += b);
            }
            let n = s.len().max(1) as f32;
            v.iter_mut().for_each(|a| *a /= n);
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= norm);
            out.push(v);
            o += s.len();
        }
        Ok(out)
    }
}

/// `x · Wᵀ + b` for `rows` rows of `inp` values, `W` being `out × inp`.
fn linear(x: &[f32], rows: usize, w: &[f32], b: &[f32], out: usize, inp: usize) -> Vec<f32> {
    let mut y = Vec::with_capacity(rows * out);
    for _ in 0..rows {
        y.extend_from_slice(b);
    }
    let wt: View<'_> = rm(w, inp).t();
    gemm(&mut y, out, rm(x, inp), wt, rows, out, inp, true, 1.0);
    y
}

fn layer_norm(x: &mut [f32], h: usize, (g, b): &(Vec<f32>, Vec<f32>), eps: f32) {
    for row in x.chunks_mut(h) {
        let mean = row.iter().sum::<f32>() / h as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(g).zip(b) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// `erf` to about 1e-7 (Abramowitz & Stegun 7.1.26, in f64).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-x * x).exp();
    if x >= 0.0 { y } else { -y }
}

fn gelu_erf(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))) as f32
}

fn gelu_tanh(x: f32) -> f32 {
    0.5 * x * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}
