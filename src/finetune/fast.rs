//! The LoRA training step on the CPU, forward and backward written out by hand.
//!
//! candle's autograd builds a graph of every intermediate tensor, allocates a zero gradient for each
//! node and adds into it, and keeps the padded batch. Here one function runs the whole model over the
//! batch's sequences packed end to end (no padding: causal attention never lets a real token see the
//! pad), keeps only the activations the backward pass reads, and computes exactly the gradients LoRA
//! needs: `dx` through the frozen weights (never `dW`), `dA`/`dB` of each adapter, the regression
//! head's. Matrix products go straight to `gemm` (the kernels candle itself uses) with strides in
//! place of transposes and copies; attention runs one task per (sequence, key/value head) on rayon.
//!
//! The result equals [`crate::finetune::Trainer::batch_loss`] + `backward()` on the same batch,
//! dropout masks included (both draw them from [`super::lora::dropout_mask`]); the integration tests
//! compare the two gradient by gradient.

use super::head::RegHead;
use super::lora::{Lora, Target, dropout_mask};
use super::model::{Layer, Model};
use super::tokenize::Example;
use crate::{Error, Result};
use candle_core::{CpuStorage, Storage, Tensor};
use rayon::prelude::*;
use std::ops::Deref;

/// Whether the hand-written step can run `model` (f32 weights on the CPU).
pub fn supported(model: &Model) -> bool {
    model.device.is_cpu() && model.embed.dtype() == candle_core::DType::F32
}

/// A read lock on a contiguous f32 CPU tensor's values.
pub(super) struct Data<'a> {
    guard: Box<dyn Deref<Target = Storage> + 'a>,
    start: usize,
    len: usize,
}

impl Data<'_> {
    pub(super) fn get(&self) -> &[f32] {
        match &**self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.start..self.start + self.len],
            _ => unreachable!("checked in data()"),
        }
    }
}

pub(super) fn data(t: &Tensor) -> Result<Data<'_>> {
    let (guard, layout) = t.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(Error::Model("the CPU training step needs contiguous tensors".into()));
    };
    if !matches!(&*guard, Storage::Cpu(CpuStorage::F32(_))) {
        return Err(Error::Model("the CPU training step needs f32 tensors on the CPU".into()));
    }
    Ok(Data { guard: Box::new(guard), start, len: end - start })
}

/// A strided view of a matrix: element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// Row-major `rows × cols` (the row length is the stride).
pub(crate) fn rm(data: &[f32], cols: usize) -> View<'_> {
    View { data, rs: cols, cs: 1 }
}

/// Row-major rows of length `cols` inside a wider buffer whose rows are `stride` apart.
pub(crate) fn strided(data: &[f32], stride: usize) -> View<'_> {
    View { data, rs: stride, cs: 1 }
}

impl View<'_> {
    /// The transpose.
    pub(crate) fn t(self) -> Self {
        Self { data: self.data, rs: self.cs, cs: self.rs }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `c ← (acc ? c : 0) + beta · a · b` with `a` `m × k`, `b` `k × n` and `c` `m × n` (rows `c_rs` apart).
#[allow(clippy::too_many_arguments, unsafe_code)]
pub(crate) fn gemm(c: &mut [f32], c_rs: usize, a: View, b: View, m: usize, n: usize, k: usize, acc: bool, beta: f32) {
    assert!(a.fits(m, k) && b.fits(k, n) && rm(c, c_rs).fits(m, n), "gemm operands out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            for row in c.chunks_mut(c_rs).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * k >= 1 << 18 && rayon::current_thread_index().is_none() {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three views were checked to hold every element the product touches, and `c` is
    // borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            acc,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            par,
        );
    }
}

/// Shapes and per-batch tables shared by every layer.
struct Ctx {
    hidden: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    inter: usize,
    eps: f32,
    /// Start row and length of each sequence.
    seqs: Vec<(usize, usize)>,
    /// Rows in all.
    n: usize,
    /// Each row's position in its sequence.
    pos: Vec<usize>,
    /// Each row's index in the padded `[batch, t_max]` layout (what dropout masks are drawn over).
    padded_row: Vec<usize>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    dropout: Option<(u64, f64)>,
    lora_scale: f32,
    rank: usize,
}

/// What one adapter's backward needs from its forward.
struct LoraSaved {
    module: usize,
    /// Keep mask (1 = kept) over the input, when dropout ran.
    mask: Option<Vec<u8>>,
    keep_scale: f32,
    /// `dropout(x) · Aᵀ`, `[n, r]`.
    u: Vec<f32>,
}

/// A layer's activations kept for the backward pass.
struct Saved {
    x: Vec<f32>,
    rstd1: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention probabilities of each (sequence, kv head) task: `[rep, len, len]`.
    probs: Vec<Vec<f32>>,
    attn: Vec<f32>,
    x1: Vec<f32>,
    rstd2: Vec<f32>,
    h2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Option<Vec<f32>>,
    lora: [Option<LoraSaved>; 7],
}

/// A layer's frozen weights, read-locked for the step.
pub(super) struct Weights<'a> {
    pub(super) attn_norm: Data<'a>,
    pub(super) mlp_norm: Data<'a>,
    pub(super) w: Vec<Data<'a>>,
    pub(super) b: Vec<Option<Data<'a>>>,
}

impl<'a> Weights<'a> {
    pub(super) fn new(layer: &'a Layer) -> Result<Self> {
        Ok(Self {
            attn_norm: data(&layer.attn_norm)?,
            mlp_norm: data(&layer.mlp_norm)?,
            w: layer.proj.iter().map(|p| data(&p.w)).collect::<Result<_>>()?,
            b: layer.proj.iter().map(|p| p.b.as_ref().map(data).transpose()).collect::<Result<_>>()?,
        })
    }
}

/// Trainable variables' gradients, in the optimizer's order (each adapter's A then
/// B, then the head's w and b), as flat vectors.
pub fn zero_grads(lora: &Lora, head: Option<&RegHead>) -> Vec<Vec<f32>> {
    let mut v: Vec<Vec<f32>> = lora.vars().iter().map(|v| vec![0.0; v.elem_count()]).collect();
    if let Some(h) = head {
        v.push(vec![0.0; h.w.elem_count()]);
        v.push(vec![0.0; 1]);
    }
    v
}

/// Rows per rayon task in the element-wise loops (enough work to beat the hand-off).
pub(super) const ROWS: usize = 32;
/// Elements per rayon task in flat element-wise loops.
pub(super) const ELEMS: usize = 1 << 14;

pub(super) fn rms_forward(x: &[f32], g: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let hdim = g.len();
    let mut y = vec![0f32; x.len()];
    let mut rstd = vec![0f32; x.len() / hdim];
    y.par_chunks_exact_mut(hdim).zip(rstd.par_iter_mut()).zip(x.par_chunks_exact(hdim)).with_min_len(ROWS).for_each(
        |((yr, r), xr)| {
            let ms = xr.iter().map(|v| v * v).sum::<f32>() / hdim as f32;
            *r = 1.0 / (ms + eps).sqrt();
            for ((o, &v), &a) in yr.iter_mut().zip(xr).zip(g) {
                *o = v * *r * a;
            }
        },
    );
    (y, rstd)
}

/// `a + b`, element-wise.
fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.par_iter().zip(b).with_min_len(ELEMS).map(|(x, y)| x + y).collect()
}

/// `dx += r·(g·dy − x̂·mean(g·dy·x̂))` with `x̂ = x·r`.
fn rms_backward(x: &[f32], rstd: &[f32], g: &[f32], dy: &[f32], dx: &mut [f32]) {
    let hdim = g.len();
    dx.par_chunks_exact_mut(hdim)
        .zip(x.par_chunks_exact(hdim))
        .zip(dy.par_chunks_exact(hdim))
        .zip(rstd.par_iter())
        .with_min_len(ROWS)
        .for_each(|(((dxr, xr), dyr), &r)| {
            let mut dot = 0f32;
            for ((&xv, &d), &a) in xr.iter().zip(dyr).zip(g) {
                dot += a * d * xv * r;
            }
            let m = dot / hdim as f32;
            for (((o, &xv), &d), &a) in dxr.iter_mut().zip(xr).zip(dyr).zip(g) {
                *o += r * (a * d - xv * r * m);
            }
        });
}

/// Rotates each head of `[n, heads·hd]` rows by its row's position (`sign` −1 undoes it).
fn rope(ctx: &Ctx, buf: &mut [f32], heads: usize, sign: f32) {
    rope_rows(buf, heads, ctx.hd, &ctx.pos, &ctx.cos, &ctx.sin, sign);
}

/// Rotates each head (size `hd`) of `[n, heads·hd]` rows by the row's position in `pos`, with the
/// tables of [`super::model::rope_tables`] (`sign` −1 undoes it). Training and inference share it.
pub(super) fn rope_rows(buf: &mut [f32], heads: usize, hd: usize, pos: &[usize], cos: &[f32], sin: &[f32], sign: f32) {
    let half = hd / 2;
    buf.par_chunks_mut(heads * hd).zip(pos).with_min_len(8).for_each(|(row, &p)| {
        let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
        for head in row.chunks_exact_mut(hd) {
            for i in 0..half {
                let (a, b) = (head[i], head[i + half]);
                let si = s[i] * sign;
                head[i] = a * c[i] - b * si;
                head[i + half] = b * c[i] + a * si;
            }
        }
    });
}

/// Adds a bias to every `[.., out]` row.
pub(super) fn add_bias(y: &mut [f32], b: &[f32]) {
    y.par_chunks_exact_mut(b.len())
        .with_min_len(ROWS)
        .for_each(|row| row.iter_mut().zip(b).for_each(|(o, &bv)| *o += bv));
}

/// `y = x·Wᵀ (+ b) (+ s·(dropout(x)·Aᵀ)·Bᵀ)` for projection `target` of layer `li`.
#[allow(clippy::too_many_arguments)]
fn project(
    ctx: &Ctx,
    lora: &Lora,
    li: usize,
    target: Target,
    w: &Weights,
    x: &[f32],
    inp: usize,
    out: usize,
) -> Result<(Vec<f32>, Option<LoraSaved>)> {
    let n = ctx.n;
    let mut y = vec![0f32; n * out];
    gemm(&mut y, out, rm(x, inp), rm(w.w[target as usize].get(), inp).t(), n, out, inp, false, 1.0);
    if let Some(b) = &w.b[target as usize] {
        add_bias(&mut y, b.get());
    }
    let Some(module) = lora.module_index(li, target) else { return Ok((y, None)) };
    let (_, a, b) = &lora.modules[module];
    let (a, b) = (data(a.as_tensor())?, data(b.as_tensor())?);
    let r = ctx.rank;
    let (mask, keep_scale) = match ctx.dropout {
        Some((seed, p)) => (Some(mask_rows(ctx, seed, p, li, target, inp)), (1.0 / (1.0 - p)) as f32),
        None => (None, 1.0),
    };
    let xm = dropped(x, mask.as_deref(), keep_scale);
    let mut u = vec![0f32; n * r];
    gemm(&mut u, r, rm(&xm, inp), rm(a.get(), inp).t(), n, r, inp, false, 1.0);
    gemm(&mut y, out, rm(&u, r), rm(b.get(), r).t(), n, out, r, true, ctx.lora_scale);
    Ok((y, Some(LoraSaved { module, mask, keep_scale, u })))
}

/// The keep mask of one adapter's input rows, drawn over the padded layout like the autograd path.
fn mask_rows(ctx: &Ctx, seed: u64, p: f64, li: usize, target: Target, inp: usize) -> Vec<u8> {
    let mut m = vec![0u8; ctx.n * inp];
    m.par_chunks_mut(inp).zip(&ctx.padded_row).for_each(|(row, &pr)| {
        dropout_mask(seed, li, target, p, (pr * inp) as u64, row);
    });
    m
}

/// `dropout(x)`: `x` itself without a mask, else the kept inputs scaled by `keep`.
fn dropped<'a>(x: &'a [f32], mask: Option<&[u8]>, keep: f32) -> std::borrow::Cow<'a, [f32]> {
    match mask {
        None => x.into(),
        Some(m) => {
            x.par_iter().zip(m).with_min_len(ELEMS).map(|(&v, &k)| if k != 0 { v * keep } else { 0.0 }).collect()
        }
    }
}

/// Backward of an adapter: accumulates `dA`, `dB` and adds its share of `dx`.
#[allow(clippy::too_many_arguments)]
fn lora_backward(
    ctx: &Ctx,
    lora: &Lora,
    saved: &LoraSaved,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    inp: usize,
    out: usize,
    grads: &mut [Vec<f32>],
) -> Result<()> {
    let (n, r, s) = (ctx.n, ctx.rank, ctx.lora_scale);
    let (_, a, b) = &lora.modules[saved.module];
    let (a, b) = (data(a.as_tensor())?, data(b.as_tensor())?);
    let (ga, gb) = grads[2 * saved.module..].split_at_mut(1);
    // dB [out, r] += s · dyᵀ · u
    gemm(&mut gb[0], r, rm(dy, out).t(), rm(&saved.u, r), out, r, n, true, s);
    // du [n, r] = s · dy · B
    let mut du = vec![0f32; n * r];
    gemm(&mut du, r, rm(dy, out), rm(b.get(), r), n, r, out, false, s);
    let xm = dropped(x, saved.mask.as_deref(), saved.keep_scale);
    // dA [r, in] += duᵀ · dropout(x)
    gemm(&mut ga[0], inp, rm(&du, r).t(), rm(&xm, inp), r, inp, n, true, 1.0);
    // dx += (du · A) ∘ mask
    match &saved.mask {
        None => gemm(dx, inp, rm(&du, r), rm(a.get(), inp), n, inp, r, true, 1.0),
        Some(m) => {
            let mut t = vec![0f32; n * inp];
            gemm(&mut t, inp, rm(&du, r), rm(a.get(), inp), n, inp, r, false, 1.0);
            dx.par_iter_mut().zip(&t).zip(m).with_min_len(ELEMS).for_each(|((o, &v), &k)| {
                if k != 0 {
                    *o += v * saved.keep_scale;
                }
            });
        }
    }
    Ok(())
}

/// Forward of one decoder layer; returns the next residual stream and what backward needs.
fn layer_forward(ctx: &Ctx, lora: &Lora, li: usize, w: &Weights, x: Vec<f32>) -> Result<(Vec<f32>, Saved)> {
    let (hs, nh, nkv, hd, inter) = (ctx.hidden, ctx.nh, ctx.nkv, ctx.hd, ctx.inter);
    let (qd, kd) = (nh * hd, nkv * hd);
    let (h, rstd1) = rms_forward(&x, w.attn_norm.get(), ctx.eps);
    let mut lsaved: [Option<LoraSaved>; 7] = Default::default();
    let (mut q, lq) = project(ctx, lora, li, Target::Q, w, &h, hs, qd)?;
    let (mut k, lk) = project(ctx, lora, li, Target::K, w, &h, hs, kd)?;
    let (v, lv) = project(ctx, lora, li, Target::V, w, &h, hs, kd)?;
    (lsaved[0], lsaved[1], lsaved[2]) = (lq, lk, lv);
    rope(ctx, &mut q, nh, 1.0);
    rope(ctx, &mut k, nkv, 1.0);
    let rep = nh / nkv;
    let scale = 1.0 / (hd as f32).sqrt();
    let tasks: Vec<(usize, usize)> = (0..ctx.seqs.len()).flat_map(|s| (0..nkv).map(move |g| (s, g))).collect();
    let results: Vec<(Vec<f32>, Vec<f32>)> = tasks
        .par_iter()
        .map(|&(s, g)| {
            let (o, len) = ctx.seqs[s];
            let kv = strided(&k[o * kd + g * hd..], kd);
            let vv = strided(&v[o * kd + g * hd..], kd);
            let mut probs = vec![0f32; rep * len * len];
            let mut out = vec![0f32; rep * len * hd];
            for r in 0..rep {
                let head = g * rep + r;
                let qv = strided(&q[o * qd + head * hd..], qd);
                let p = &mut probs[r * len * len..(r + 1) * len * len];
                gemm(p, len, qv, kv.t(), len, len, hd, false, scale);
                for (i, row) in p.chunks_exact_mut(len).enumerate() {
                    let max = row[..=i].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let mut sum = 0f32;
                    for e in &mut row[..=i] {
                        *e = (*e - max).exp();
                        sum += *e;
                    }
                    let inv = 1.0 / sum;
                    row[..=i].iter_mut().for_each(|e| *e *= inv);
                    row[i + 1..].fill(0.0);
                }
                gemm(&mut out[r * len * hd..], hd, rm(p, len), vv, len, hd, len, false, 1.0);
            }
            (probs, out)
        })
        .collect();
    let mut attn = vec![0f32; ctx.n * qd];
    let mut probs = Vec::with_capacity(tasks.len());
    for (&(s, g), (p, out)) in tasks.iter().zip(results) {
        let (o, len) = ctx.seqs[s];
        for r in 0..rep {
            let head = g * rep + r;
            for i in 0..len {
                attn[(o + i) * qd + head * hd..][..hd].copy_from_slice(&out[(r * len + i) * hd..][..hd]);
            }
        }
        probs.push(p);
    }
    let (o_out, lo) = project(ctx, lora, li, Target::O, w, &attn, qd, hs)?;
    lsaved[3] = lo;
    let x1 = add(&x, &o_out);
    drop(o_out);
    let (h2, rstd2) = rms_forward(&x1, w.mlp_norm.get(), ctx.eps);
    let (gate, lg) = project(ctx, lora, li, Target::Gate, w, &h2, hs, inter)?;
    let (up, lu) = project(ctx, lora, li, Target::Up, w, &h2, hs, inter)?;
    (lsaved[4], lsaved[5]) = (lg, lu);
    let act: Vec<f32> =
        gate.par_iter().zip(&up).with_min_len(ELEMS).map(|(&g, &u)| g / (1.0 + (-g).exp()) * u).collect();
    let (down, ld) = project(ctx, lora, li, Target::Down, w, &act, inter, hs)?;
    let keep_act = ld.is_some();
    lsaved[6] = ld;
    let x2 = add(&x1, &down);
    let saved = Saved {
        x,
        rstd1,
        h,
        q,
        k,
        v,
        probs,
        attn,
        x1,
        rstd2,
        h2,
        gate,
        up,
        act: keep_act.then_some(act),
        lora: lsaved,
    };
    Ok((x2, saved))
}

/// Backward of one decoder layer: `dx` holds the gradient of the layer's output on entry and of its
/// input on return.
fn layer_backward(
    ctx: &Ctx,
    lora: &Lora,
    w: &Weights,
    sv: Saved,
    dx: &mut [f32],
    grads: &mut [Vec<f32>],
) -> Result<()> {
    let (n, hs, nh, nkv, hd, inter) = (ctx.n, ctx.hidden, ctx.nh, ctx.nkv, ctx.hd, ctx.inter);
    let (qd, kd) = (nh * hd, nkv * hd);
    let wt = |t: Target| w.w[t as usize].get();
    // MLP: x2 = x1 + down(silu(gate(h2)) · up(h2)).
    let mut d_act = vec![0f32; n * inter];
    gemm(&mut d_act, inter, rm(dx, hs), rm(wt(Target::Down), inter), n, inter, hs, false, 1.0);
    if let (Some(ls), Some(act)) = (&sv.lora[6], &sv.act) {
        lora_backward(ctx, lora, ls, act, dx, &mut d_act, inter, hs, grads)?;
    }
    let mut d_gate = d_act;
    let mut d_up = vec![0f32; n * inter];
    d_gate.par_iter_mut().zip(d_up.par_iter_mut()).zip(&sv.gate).zip(&sv.up).with_min_len(ELEMS).for_each(
        |(((dg, du), &g), &u)| {
            let sig = 1.0 / (1.0 + (-g).exp());
            let da = *dg;
            *du = da * g * sig;
            *dg = da * u * sig * (1.0 + g * (1.0 - sig));
        },
    );
    let mut dh2 = vec![0f32; n * hs];
    gemm(&mut dh2, hs, rm(&d_gate, inter), rm(wt(Target::Gate), hs), n, hs, inter, false, 1.0);
    gemm(&mut dh2, hs, rm(&d_up, inter), rm(wt(Target::Up), hs), n, hs, inter, true, 1.0);
    if let Some(ls) = &sv.lora[4] {
        lora_backward(ctx, lora, ls, &sv.h2, &d_gate, &mut dh2, hs, inter, grads)?;
    }
    if let Some(ls) = &sv.lora[5] {
        lora_backward(ctx, lora, ls, &sv.h2, &d_up, &mut dh2, hs, inter, grads)?;
    }
    drop((d_gate, d_up));
    rms_backward(&sv.x1, &sv.rstd2, w.mlp_norm.get(), &dh2, dx);
    // Attention: x1 = x + o(attn(rope(q(h)), rope(k(h)), v(h))).
    let mut d_attn = vec![0f32; n * qd];
    gemm(&mut d_attn, qd, rm(dx, hs), rm(wt(Target::O), qd), n, qd, hs, false, 1.0);
    if let Some(ls) = &sv.lora[3] {
        lora_backward(ctx, lora, ls, &sv.attn, dx, &mut d_attn, qd, hs, grads)?;
    }
    let rep = nh / nkv;
    let scale = 1.0 / (hd as f32).sqrt();
    let tasks: Vec<(usize, usize)> = (0..ctx.seqs.len()).flat_map(|s| (0..nkv).map(move |g| (s, g))).collect();
    let (q, k, v) = (&sv.q, &sv.k, &sv.v);
    let results: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = tasks
        .par_iter()
        .zip(&sv.probs)
        .map(|(&(s, g), probs)| {
            let (o, len) = ctx.seqs[s];
            let kv = strided(&k[o * kd + g * hd..], kd);
            let vv = strided(&v[o * kd + g * hd..], kd);
            let mut dq = vec![0f32; rep * len * hd];
            let mut dk = vec![0f32; len * hd];
            let mut dv = vec![0f32; len * hd];
            let mut ds = vec![0f32; len * len];
            for r in 0..rep {
                let head = g * rep + r;
                let p = &probs[r * len * len..(r + 1) * len * len];
                let dout = strided(&d_attn[o * qd + head * hd..], qd);
                let qv = strided(&q[o * qd + head * hd..], qd);
                // dP = dO · Vᵀ;  dV += Pᵀ · dO
                gemm(&mut ds, len, dout, vv.t(), len, len, hd, false, 1.0);
                gemm(&mut dv, hd, rm(p, len).t(), dout, len, hd, len, true, 1.0);
                // dS = P ∘ (dP − rowsum(dP ∘ P)) · scale
                for (i, (dr, pr)) in ds.chunks_exact_mut(len).zip(p.chunks_exact(len)).enumerate() {
                    let dot: f32 = dr[..=i].iter().zip(&pr[..=i]).map(|(a, b)| a * b).sum();
                    for (d, &pv) in dr[..=i].iter_mut().zip(&pr[..=i]) {
                        *d = pv * (*d - dot) * scale;
                    }
                    dr[i + 1..].fill(0.0);
                }
                // dQ = dS · K;  dK += dSᵀ · Q
                gemm(&mut dq[r * len * hd..], hd, rm(&ds, len), kv, len, hd, len, false, 1.0);
                gemm(&mut dk, hd, rm(&ds, len).t(), qv, len, hd, len, true, 1.0);
            }
            (dq, dk, dv)
        })
        .collect();
    drop(d_attn);
    let mut dq = vec![0f32; n * qd];
    let mut dk = vec![0f32; n * kd];
    let mut dv = vec![0f32; n * kd];
    for (&(s, g), (lq, lk, lv)) in tasks.iter().zip(results) {
        let (o, len) = ctx.seqs[s];
        for i in 0..len {
            for r in 0..rep {
                let head = g * rep + r;
                dq[(o + i) * qd + head * hd..][..hd].copy_from_slice(&lq[(r * len + i) * hd..][..hd]);
            }
            dk[(o + i) * kd + g * hd..][..hd].copy_from_slice(&lk[i * hd..][..hd]);
            dv[(o + i) * kd + g * hd..][..hd].copy_from_slice(&lv[i * hd..][..hd]);
        }
    }
    rope(ctx, &mut dq, nh, -1.0);
    rope(ctx, &mut dk, nkv, -1.0);
    let mut dh = vec![0f32; n * hs];
    gemm(&mut dh, hs, rm(&dq, qd), rm(wt(Target::Q), hs), n, hs, qd, false, 1.0);
    gemm(&mut dh, hs, rm(&dk, kd), rm(wt(Target::K), hs), n, hs, kd, true, 1.0);
    gemm(&mut dh, hs, rm(&dv, kd), rm(wt(Target::V), hs), n, hs, kd, true, 1.0);
    for (i, dy) in [(0, &dq), (1, &dk), (2, &dv)] {
        if let Some(ls) = &sv.lora[i] {
            let out = if i == 0 { qd } else { kd };
            lora_backward(ctx, lora, ls, &sv.h, dy, &mut dh, hs, out, grads)?;
        }
    }
    rms_backward(&sv.x, &sv.rstd1, w.attn_norm.get(), &dh, dx);
    Ok(())
}

/// Loss of `batch` (causal-LM loss on the price tokens, or the regression head's MSE when `head` is
/// given) and its token count. With `grads`, also adds `scale ×` the gradient of every trainable
/// variable into those buffers (see [`zero_grads`]); `dropout_seed` turns adapter dropout on.
pub fn loss_and_grads(
    model: &Model,
    lora: &Lora,
    head: Option<&RegHead>,
    batch: &[&Example],
    dropout_seed: Option<u64>,
    grads: Option<(&mut [Vec<f32>], f32)>,
) -> Result<(f64, usize)> {
    loss_and_grads_frozen(model, lora, head, batch, dropout_seed, grads, None)
}

/// The input of the lowest adapted layer for one example (its rows, `[len, hidden]`): what the
/// frozen layers below compute, the same at every step.
pub type Frozen = std::sync::Arc<Vec<f32>>;

/// [`loss_and_grads`] with a cache of the frozen layers' output: `frozen[i]` belongs to `batch[i]`.
/// When every example of the batch has its entry, the embedding and the layers below the lowest
/// adapted one are skipped; otherwise they run and the entries are filled. Nothing is cached when
/// every layer is adapted.
pub fn loss_and_grads_frozen(
    model: &Model,
    lora: &Lora,
    head: Option<&RegHead>,
    batch: &[&Example],
    dropout_seed: Option<u64>,
    mut grads: Option<(&mut [Vec<f32>], f32)>,
    mut frozen: Option<&mut [Option<Frozen>]>,
) -> Result<(f64, usize)> {
    if !supported(model) {
        return Err(Error::Model("the hand-written training step runs f32 models on the CPU".into()));
    }
    if batch.is_empty() {
        return Err(Error::InvalidInput("an empty batch has no loss".into()));
    }
    if let Some(e) = batch.iter().find(|e| e.price_start == 0 || e.price_start >= e.ids.len()) {
        return Err(Error::InvalidInput(format!(
            "an example needs prompt tokens before its price and price tokens after (price at {} of {})",
            e.price_start,
            e.ids.len()
        )));
    }
    let cfg = &model.cfg;
    let t_max = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut seqs = vec![];
    let (mut pos, mut padded_row) = (vec![], vec![]);
    let mut n = 0;
    for (s, e) in batch.iter().enumerate() {
        seqs.push((n, e.ids.len()));
        n += e.ids.len();
        pos.extend(0..e.ids.len());
        padded_row.extend((0..e.ids.len()).map(|p| s * t_max + p));
    }
    let hd = cfg.head_dim();
    let (cos, sin) = super::model::rope_tables(cfg.rope_theta, hd, 0, t_max);
    let ctx = Ctx {
        hidden: cfg.hidden_size,
        nh: cfg.num_attention_heads,
        nkv: cfg.num_key_value_heads,
        hd,
        inter: cfg.intermediate_size,
        eps: cfg.rms_norm_eps as f32,
        seqs,
        n,
        pos,
        padded_row,
        cos,
        sin,
        dropout: dropout_seed.filter(|_| lora.cfg.dropout > 0.0).map(|s| (s, lora.cfg.dropout)),
        lora_scale: (lora.cfg.alpha / lora.cfg.r as f64) as f32,
        rank: lora.cfg.r,
    };
    let hs = ctx.hidden;
    let train = grads.is_some();
    let n_layers = model.layers.len();
    // Below the lowest adapted layer nothing is trained: no states kept, no backward pass, and
    // with `frozen` filled, nothing computed.
    let first = lora.first_layer(n_layers);
    if first == 0 || first == n_layers {
        frozen = None;
    }
    if let Some(f) = &frozen
        && f.len() != batch.len()
    {
        return Err(Error::InvalidInput(format!("{} frozen entries for {} examples", f.len(), batch.len())));
    }
    let from_cache = frozen
        .as_ref()
        .is_some_and(|f| f.iter().zip(&ctx.seqs).all(|(e, &(_, len))| e.as_ref().is_some_and(|v| v.len() == len * hs)));
    let mut x = vec![0f32; n * hs];
    if from_cache {
        for (e, &(o, len)) in frozen.as_ref().expect("checked").iter().zip(&ctx.seqs) {
            x[o * hs..(o + len) * hs].copy_from_slice(e.as_ref().expect("checked"));
        }
    } else {
        let emb = data(&model.embed)?;
        let emb = emb.get();
        let rows = x.chunks_exact_mut(hs);
        for (row, &id) in rows.zip(batch.iter().flat_map(|e| &e.ids)) {
            let id = id as usize;
            if (id + 1) * hs > emb.len() {
                return Err(Error::Model(format!("token id {id} is outside the vocabulary")));
            }
            row.copy_from_slice(&emb[id * hs..(id + 1) * hs]);
        }
    }
    let weights: Vec<Weights> = model.layers.iter().map(Weights::new).collect::<Result<_>>()?;
    let mut saved = Vec::with_capacity(if train { weights.len() - first } else { 0 });
    for (li, w) in weights.iter().enumerate() {
        if from_cache && li < first {
            continue;
        }
        if li == first
            && !from_cache
            && let Some(f) = frozen.as_mut()
        {
            for (e, &(o, len)) in f.iter_mut().zip(&ctx.seqs) {
                *e = Some(std::sync::Arc::new(x[o * hs..(o + len) * hs].to_vec()));
            }
        }
        let (next, sv) = layer_forward(&ctx, lora, li, w, x)?;
        if train && li >= first {
            saved.push(sv);
        }
        x = next;
    }
    // The rows the loss reads, final-normed.
    let rows: Vec<usize> = match head {
        None => batch
            .iter()
            .zip(&ctx.seqs)
            .flat_map(|(e, &(o, len))| (e.price_start - 1..len - 1).map(move |p| o + p))
            .collect(),
        Some(_) => batch.iter().zip(&ctx.seqs).map(|(e, &(o, _))| o + e.price_start - 1).collect(),
    };
    let m = rows.len();
    let mut sel = vec![0f32; m * hs];
    for (dst, &r) in sel.chunks_exact_mut(hs).zip(&rows) {
        dst.copy_from_slice(&x[r * hs..(r + 1) * hs]);
    }
    drop(x);
    let norm = data(&model.norm)?;
    let (normed, rstd) = rms_forward(&sel, norm.get(), ctx.eps);
    let mut d_normed = vec![0f32; m * hs];
    let gscale = grads.as_ref().map_or(0.0, |g| g.1);
    let loss;
    match head {
        None => {
            let targets: Vec<usize> =
                batch.iter().flat_map(|e| e.ids[e.price_start..].iter().map(|&t| t as usize)).collect();
            let lm = data(&model.lm_head)?;
            let vocab = cfg.vocab_size;
            let mut logits = vec![0f32; m * vocab];
            gemm(&mut logits, vocab, rm(&normed, hs), rm(lm.get(), hs).t(), m, vocab, hs, false, 1.0);
            let mut total = 0f64;
            for (row, &t) in logits.chunks_exact_mut(vocab).zip(&targets) {
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
                let lse = max + sum.ln();
                total += (lse - row[t]) as f64;
                if train {
                    // d/dlogits of the mean CE: (softmax − onehot) / m.
                    let c = gscale / m as f32;
                    row.iter_mut().for_each(|v| *v = (*v - lse).exp() * c);
                    row[t] -= c;
                }
            }
            loss = total / m as f64;
            if train {
                gemm(&mut d_normed, hs, rm(&logits, vocab), rm(lm.get(), hs), m, hs, vocab, false, 1.0);
            }
        }
        Some(h) => {
            let wv = data(h.w.as_tensor())?;
            let bv = h.b.as_tensor().to_vec1::<f32>()?[0];
            let mut total = 0f64;
            let mut dpred = vec![0f32; m];
            for ((row, e), dp) in normed.chunks_exact(hs).zip(batch).zip(dpred.iter_mut()) {
                let pred: f32 = row.iter().zip(wv.get()).map(|(a, b)| a * b).sum::<f32>() + bv;
                let target = h.target(e.price) as f32;
                let d = pred - target;
                total += (d * d) as f64;
                // d/dpred of the mean squared error.
                *dp = 2.0 * d / m as f32 * gscale;
            }
            loss = total / m as f64;
            for (dr, &dp) in d_normed.chunks_exact_mut(hs).zip(&dpred) {
                dr.iter_mut().zip(wv.get()).for_each(|(o, &w)| *o = dp * w);
            }
            if let Some((g, _)) = grads.as_mut() {
                let nw = g.len() - 2;
                for (row, &dp) in normed.chunks_exact(hs).zip(&dpred) {
                    g[nw].iter_mut().zip(row).for_each(|(o, &v)| *o += dp * v);
                    g[nw + 1][0] += dp;
                }
            }
        }
    }
    if let Some((g, _)) = grads {
        finish_backward(&ctx, lora, &weights[first..], saved, &rows, &sel, &rstd, norm.get(), &d_normed, g)?;
    }
    Ok((loss, n))
}

/// From the gradient of the final-normed loss rows back through the layers of `weights` (the top
/// ones, from the lowest adapted layer up; `saved` holds their states).
#[allow(clippy::too_many_arguments)]
fn finish_backward(
    ctx: &Ctx,
    lora: &Lora,
    weights: &[Weights],
    mut saved: Vec<Saved>,
    rows: &[usize],
    sel: &[f32],
    rstd: &[f32],
    norm: &[f32],
    d_normed: &[f32],
    grads: &mut [Vec<f32>],
) -> Result<()> {
    let hs = ctx.hidden;
    let mut d_sel = vec![0f32; sel.len()];
    rms_backward(sel, rstd, norm, d_normed, &mut d_sel);
    let mut dx = vec![0f32; ctx.n * hs];
    for (&r, d) in rows.iter().zip(d_sel.chunks_exact(hs)) {
        dx[r * hs..(r + 1) * hs].iter_mut().zip(d).for_each(|(o, &v)| *o += v);
    }
    for w in weights.iter().rev() {
        let sv = saved.pop().expect("one saved state per layer");
        layer_backward(ctx, lora, w, sv, &mut dx, grads)?;
    }
    Ok(())
}
