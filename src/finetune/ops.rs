//! Differentiable building blocks for LoRA training that candle's autograd would otherwise do
//! wastefully: a linear layer with a frozen weight (no weight gradient), a causal scaled softmax
//! (no mask tensor, no mask gradient), an RMS norm with a frozen scale and the rotary embedding.
//! On the CPU in f32 each is one custom op with its own backward (the hand-written step's
//! kernels). Elsewhere — CUDA, or a bf16/f16 base on any device — the forward is one fused kernel
//! (cuBLAS for the linear layer, candle-nn's RMS norm, rotary and softmax kernels) and the backward
//! is attached by [`attach`]: candle's autograd then never sees the frozen weight (no weight
//! gradient is computed) nor the mask, and the backward formulas run in f32.

use candle_core::{CpuStorage, CudaStorage, CustomOp1, D, DType, Layout, Result, Shape, Storage, Tensor};
use std::sync::Mutex;

/// Whether `x` goes through the hand-written CPU f32 kernels.
fn cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = storage else { candle_core::bail!("expected f32 storage") };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("expected a contiguous tensor"),
    }
}

/// `x @ wᵀ (+ b)` for a frozen `w` of shape `[out, in]`: the backward pass gives only `dx`.
pub fn frozen_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = if (x.device().is_cpu() || x.device().is_cuda()) && x.dtype() == w.dtype() {
        x.contiguous()?.apply_op1(FrozenLinear { w: w.clone() })?
    } else {
        x.broadcast_matmul(&w.t()?)?
    };
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

struct FrozenLinear {
    w: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let dims = layout.shape().dims();
        let (out, inp) = self.w.dims2()?;
        let k = *dims.last().unwrap_or(&0);
        if k != inp {
            candle_core::bail!("frozen-linear: input has {k} features, weight expects {inp}");
        }
        let n = layout.shape().elem_count() / inp.max(1);
        // Multiply the storages in place: x as [n, in] times wᵀ (w's transposed layout), no copies.
        let wt = self.w.t()?;
        let (w_storage, w_layout) = wt.storage_and_layout();
        let candle_core::Storage::Cpu(w_cpu) = &*w_storage else { candle_core::bail!("weight is not on the CPU") };
        let x_layout = Layout::contiguous_with_offset((n, inp), layout.start_offset());
        let y = storage.matmul(w_cpu, (1, n, out, inp), &x_layout, w_layout)?;
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-scalar input") = out;
        Ok((y, Shape::from(shape)))
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let dims = layout.shape().dims();
        let (out, inp) = self.w.dims2()?;
        if dims.last() != Some(&inp) {
            candle_core::bail!("frozen-linear: input has {:?} features, weight expects {inp}", dims.last());
        }
        let n = layout.shape().elem_count() / inp.max(1);
        // cuBLAS reads wᵀ through its strides: no copy of the weight.
        let wt = self.w.t()?;
        let (w_storage, w_layout) = wt.storage_and_layout();
        let Storage::Cuda(w_cuda) = &*w_storage else { candle_core::bail!("weight is not on the GPU") };
        let x_layout = Layout::contiguous_with_offset((n, inp), layout.start_offset());
        let y = storage.matmul(w_cuda, (1, n, out, inp), &x_layout, w_layout)?;
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-scalar input") = out;
        Ok((y, Shape::from(shape)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (out, _) = self.w.dims2()?;
        let n = grad.elem_count() / out;
        let dx = grad.reshape((n, out))?.matmul(&self.w)?.reshape(arg.shape())?;
        Ok(Some(dx))
    }
}

/// Causal softmax of `scale · s` over the last dimension of `[.., tq, tk]` scores, where query `i`
/// (at absolute position `offset + i`) sees keys `0..=offset + i`.
pub fn causal_softmax(s: &Tensor, scale: f64, offset: usize) -> Result<Tensor> {
    if cpu_f32(s) {
        return s.contiguous()?.apply_op1(CausalSoftmax { scale: scale as f32, offset });
    }
    let mask = causal_mask(s.dim(D::Minus2)?, s.dim(D::Minus1)?, offset, s.dtype(), s.device())?;
    masked_softmax(s, scale, &mask)
}

/// The additive causal mask `[tq, tk]` (0 where query `i` at `offset + i` sees key `j`, −∞ elsewhere).
pub fn causal_mask(tq: usize, tk: usize, offset: usize, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
    let mask: Vec<f32> =
        (0..tq).flat_map(|i| (0..tk).map(move |j| if j <= offset + i { 0.0 } else { f32::NEG_INFINITY })).collect();
    Tensor::from_vec(mask, (tq, tk), device)?.to_dtype(dtype)
}

/// `softmax(scale · s + mask)` over the last dimension: candle-nn's fused kernel forward, the
/// gradient `scale · y ⊙ (g − Σ g ⊙ y)` (in f32) attached; the mask is a constant.
pub fn masked_softmax(s: &Tensor, scale: f64, mask: &Tensor) -> Result<Tensor> {
    let z = (s.detach() * scale)?.broadcast_add(mask)?;
    let y = candle_nn::ops::softmax_last_dim(&z.contiguous()?)?;
    attach(s, y, "masked-softmax", move |_arg, res, grad| {
        let dtype = res.dtype();
        let (y, g) = (res.to_dtype(DType::F32)?, grad.to_dtype(DType::F32)?);
        let gy = (g * &y)?;
        let dot = gy.sum_keepdim(D::Minus1)?;
        ((gy - y.broadcast_mul(&dot)?)? * scale)?.to_dtype(dtype)
    })
}

/// The backward of an attached op: `(input, output, output gradient) → input gradient`.
type Backward = dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync;

/// `y` (computed from `x` outside the graph, e.g. by a fused kernel without a backward) as a
/// function of `x` whose gradient is `bwd`. `y` is moved into the op (one device copy of it, no
/// second copy kept alive). Without a graph (`x` tracks nothing) `y` is returned as it is.
pub fn attach(
    x: &Tensor,
    y: Tensor,
    name: &'static str,
    bwd: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    if !x.track_op() {
        return Ok(y);
    }
    let y = y.contiguous()?;
    x.apply_op1(Attached { name, out: Mutex::new(Some(y)), bwd: Box::new(bwd) })
}

struct Attached {
    name: &'static str,
    out: Mutex<Option<Tensor>>,
    bwd: Box<Backward>,
}

impl Attached {
    fn take(&self) -> Result<Tensor> {
        let y = self.out.lock().map_err(|_| candle_core::Error::Msg("attached op poisoned".into()))?.take();
        y.ok_or_else(|| candle_core::Error::Msg(format!("{}: forward ran twice", self.name)))
    }
}

impl CustomOp1 for Attached {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, _storage: &CpuStorage, _layout: &Layout) -> Result<(CpuStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let y = self.take()?;
        let (st, l) = y.storage_and_layout();
        let Storage::Cpu(c) = &*st else { candle_core::bail!("{}: result is not on the CPU", self.name) };
        Ok((c.try_clone(l)?, y.shape().clone()))
    }

    fn cuda_fwd(&self, _storage: &CudaStorage, _layout: &Layout) -> Result<(CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let y = self.take()?;
        let (st, l) = y.storage_and_layout();
        let Storage::Cuda(c) = &*st else { candle_core::bail!("{}: result is not on the GPU", self.name) };
        Ok((c.try_clone(l)?, y.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        (self.bwd)(arg, res, grad).map(Some)
    }
}

struct CausalSoftmax {
    scale: f32,
    offset: usize,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let dims = layout.shape().dims();
        let tk = dims[dims.len() - 1];
        let tq = dims[dims.len() - 2];
        let mut y = vec![0f32; x.len()];
        for (r, (xr, yr)) in x.chunks_exact(tk).zip(y.chunks_exact_mut(tk)).enumerate() {
            let visible = (self.offset + r % tq + 1).min(tk);
            let mut max = f32::NEG_INFINITY;
            for &v in &xr[..visible] {
                max = max.max(v * self.scale);
            }
            let mut sum = 0f32;
            for (o, &v) in yr[..visible].iter_mut().zip(&xr[..visible]) {
                *o = (v * self.scale - max).exp();
                sum += *o;
            }
            let inv = 1.0 / sum;
            for o in &mut yr[..visible] {
                *o *= inv;
            }
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let gy = (grad * res)?;
        let dot = gy.sum_keepdim(D::Minus1)?;
        let dx = ((gy - res.broadcast_mul(&dot)?)? * self.scale as f64)?;
        Ok(Some(dx))
    }
}

/// RMS norm over the last dimension with a frozen scale `alpha`.
pub fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    if cpu_f32(x) {
        let alpha = alpha.to_vec1::<f32>()?;
        return x.contiguous()?.apply_op1(RmsNorm { alpha, eps: eps as f32 });
    }
    let alpha = alpha.to_dtype(x.dtype())?;
    let y = candle_nn::ops::rms_norm(&x.detach().contiguous()?, &alpha, eps as f32)?;
    let alpha32 = alpha.to_dtype(DType::F32)?;
    attach(x, y, "rms-norm", move |arg, _res, grad| {
        // x̂ = x·r, y = x̂·α; dx = r·(g·α − x̂·mean(g·α·x̂)), in f32.
        let h = alpha32.dim(0)? as f64;
        let x = arg.to_dtype(DType::F32)?;
        let ms = (x.sqr()?.sum_keepdim(D::Minus1)? / h)?;
        let r = (ms + eps)?.sqrt()?.recip()?;
        let xhat = x.broadcast_mul(&r)?;
        let ga = grad.to_dtype(DType::F32)?.broadcast_mul(&alpha32)?;
        let m = ((&ga * &xhat)?.sum_keepdim(D::Minus1)? / h)?;
        (ga - xhat.broadcast_mul(&m)?)?.broadcast_mul(&r)?.to_dtype(arg.dtype())
    })
}

struct RmsNorm {
    alpha: Vec<f32>,
    eps: f32,
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-frozen"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let h = self.alpha.len();
        if layout.shape().dims().last() != Some(&h) {
            candle_core::bail!("rms-norm: last dimension must be {h}");
        }
        let mut y = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)) {
            let ms = xr.iter().map(|v| v * v).sum::<f32>() / h as f32;
            let r = 1.0 / (ms + self.eps).sqrt();
            for ((o, &v), &a) in yr.iter_mut().zip(xr).zip(&self.alpha) {
                *o = v * r * a;
            }
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // x̂ = x·r, y = x̂·α; dx = r·(g·α − x̂·mean(g·α·x̂)).
        let h = self.alpha.len();
        let alpha = Tensor::from_slice(&self.alpha, h, arg.device())?;
        let ms = (arg.sqr()?.sum_keepdim(D::Minus1)? / h as f64)?;
        let r = (ms + self.eps as f64)?.sqrt()?.recip()?;
        let xhat = arg.broadcast_mul(&r)?;
        let ga = grad.broadcast_mul(&alpha)?;
        let m = ((&ga * &xhat)?.sum_keepdim(D::Minus1)? / h as f64)?;
        let dx = (ga - xhat.broadcast_mul(&m)?)?.broadcast_mul(&r)?;
        Ok(Some(dx))
    }
}

/// Rotary position embedding in Hugging Face's layout (halves rotated, not interleaved pairs) on
/// `[b, heads, t, head_dim]`; `cos`/`sin` are `[t, head_dim / 2]` for the positions of `x`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if cpu_f32(x) {
        let cos = cos.flatten_all()?.to_vec1::<f32>()?;
        let sin = sin.flatten_all()?.to_vec1::<f32>()?;
        return x.contiguous()?.apply_op1(Rope { cos, sin });
    }
    let (cos, sin) = (cos.to_dtype(x.dtype())?.contiguous()?, sin.to_dtype(x.dtype())?.contiguous()?);
    let y = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, &cos, &sin)?;
    // The rotation is orthogonal: its transpose is the rotation by −θ.
    let neg_sin = sin.neg()?;
    attach(x, y, "rope-hf", move |_arg, _res, grad| candle_nn::rotary_emb::rope(&grad.contiguous()?, &cos, &neg_sin))
}

struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

fn rope_apply(x: &[f32], t: usize, hd: usize, cos: &[f32], sin: &[f32], sign: f32) -> Vec<f32> {
    let half = hd / 2;
    let mut y = vec![0f32; x.len()];
    for (r, (xr, yr)) in x.chunks_exact(hd).zip(y.chunks_exact_mut(hd)).enumerate() {
        let p = r % t;
        let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
        for i in 0..half {
            let (a, b) = (xr[i], xr[i + half]);
            let si = s[i] * sign;
            yr[i] = a * c[i] - b * si;
            yr[i + half] = b * c[i] + a * si;
        }
    }
    y
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope-hf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let dims = layout.shape().dims();
        let (t, hd) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        if self.cos.len() != t * hd / 2 {
            candle_core::bail!("rope: tables cover {} values, need {}", self.cos.len(), t * hd / 2);
        }
        Ok((CpuStorage::F32(rope_apply(x, t, hd, &self.cos, &self.sin, 1.0)), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // The rotation is orthogonal: its transpose is the rotation by −θ.
        let dims = grad.dims();
        let (t, hd) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let dx = rope_apply(&g, t, hd, &self.cos, &self.sin, -1.0);
        Ok(Some(Tensor::from_vec(dx, grad.shape(), grad.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Each fused op and its backward agree with the same computation in candle's primitive ops:
    /// the hand-written CPU f32 kernels closely, the device path (candle-nn's kernels with an
    /// attached backward, here in bf16 on the CPU) within bf16's precision.
    #[test]
    fn fused_ops_match_primitive_ops_forward_and_backward() {
        let x = Var::from_tensor(&rand(&[2, 3, 5, 8], 1)).unwrap();
        let w = rand(&[6, 8], 2);
        let alpha = rand(&[8], 3);
        let cos = rand(&[5, 4], 4);
        let sin = rand(&[5, 4], 5);
        let probe = rand(&[2, 3, 5, 6], 6);
        let probe5 = rand(&[2, 3, 5, 5], 7);
        let probe8 = rand(&[2, 3, 5, 8], 8);
        type F<'a> = dyn Fn(&Tensor, bool) -> Tensor + 'a;
        let cases: Vec<(&str, Box<F<'_>>, &Tensor)> = vec![
            (
                "linear",
                Box::new(|x, fused| {
                    if fused {
                        frozen_linear(x, &w.to_dtype(x.dtype()).unwrap(), None).unwrap()
                    } else {
                        x.broadcast_matmul(&w.t().unwrap()).unwrap()
                    }
                }),
                &probe,
            ),
            (
                "softmax",
                Box::new(|x, fused| {
                    let s = x.narrow(3, 0, 5).unwrap();
                    if fused {
                        causal_softmax(&s, 0.7, 0).unwrap()
                    } else {
                        let mask: Vec<f32> =
                            (0..25).map(|k| if k % 5 <= k / 5 { 0.0 } else { f32::NEG_INFINITY }).collect();
                        let mask = Tensor::from_vec(mask, (5, 5), &Device::Cpu).unwrap();
                        candle_nn_free_softmax(&(s * 0.7).unwrap().broadcast_add(&mask).unwrap())
                    }
                }),
                &probe5,
            ),
            (
                "rmsnorm",
                Box::new(|x, fused| {
                    if fused {
                        rms_norm(x, &alpha, 1e-5).unwrap()
                    } else {
                        let ms = (x.sqr().unwrap().sum_keepdim(3).unwrap() / 8.0).unwrap();
                        x.broadcast_div(&(ms + 1e-5).unwrap().sqrt().unwrap()).unwrap().broadcast_mul(&alpha).unwrap()
                    }
                }),
                &probe8,
            ),
            (
                "rope",
                Box::new(|x, fused| {
                    if fused {
                        rope(x, &cos, &sin).unwrap()
                    } else {
                        let c = Tensor::cat(&[&cos, &cos], 1).unwrap();
                        let s = Tensor::cat(&[&sin, &sin], 1).unwrap();
                        let x1 = x.narrow(3, 0, 4).unwrap();
                        let x2 = x.narrow(3, 4, 4).unwrap();
                        let rot = Tensor::cat(&[&x2.neg().unwrap(), &x1], 3).unwrap();
                        (x.broadcast_mul(&c).unwrap() + rot.broadcast_mul(&s).unwrap()).unwrap()
                    }
                }),
                &probe8,
            ),
        ];
        let scale = |t: &Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        for (name, f, probe) in cases {
            let mut outs = vec![];
            for (fused, dtype) in [(true, DType::F32), (false, DType::F32), (true, DType::BF16)] {
                let y = f(&x.as_tensor().to_dtype(dtype).unwrap(), fused).to_dtype(DType::F32).unwrap();
                let probe = if y.dims() == probe.dims() {
                    probe.clone()
                } else {
                    probe.narrow(3, 0, y.dim(3).unwrap()).unwrap()
                };
                let loss = (y.clone() * probe).unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                outs.push((y, grads.get(&x).unwrap().clone()));
            }
            assert!(max_diff(&outs[0].0, &outs[1].0) < 1e-5, "{name} forward");
            assert!(max_diff(&outs[0].1, &outs[1].1) < 1e-4, "{name} backward");
            // bf16 keeps 8 bits of mantissa: ~0.4% per rounding, a few roundings deep.
            let (fwd, bwd) = (max_diff(&outs[2].0, &outs[1].0), max_diff(&outs[2].1, &outs[1].1));
            assert!(fwd < 2e-2 * scale(&outs[1].0), "{name} bf16 forward differs by {fwd}");
            assert!(bwd < 2e-2 * scale(&outs[1].1), "{name} bf16 backward differs by {bwd}");
            assert!(bwd > 0.0, "{name}: the bf16 path went through bf16");
        }
    }

    fn candle_nn_free_softmax(x: &Tensor) -> Tensor {
        let max = x.max_keepdim(3).unwrap();
        let e = x.broadcast_sub(&max).unwrap().exp().unwrap();
        e.broadcast_div(&e.sum_keepdim(3).unwrap()).unwrap()
    }
}
