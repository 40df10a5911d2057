//! AdamW with PyTorch's semantics, its moments saved in a checkpoint to resume exactly.

use super::tensors::safetensors_bytes;
use crate::atomic::write_atomic_bytes;
use crate::{Error, Result};
use candle_core::{Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// AdamW (PyTorch semantics: decoupled decay `p ← p − lr·λ·p`, bias-corrected moments).
pub struct AdamW {
    /// First moments, one per variable.
    pub m: Vec<Tensor>,
    /// Second moments.
    pub v: Vec<Tensor>,
    /// Updates done.
    pub t: u64,
    /// β₁, β₂, ε.
    pub betas: (f64, f64, f64),
}

impl AdamW {
    /// Zero moments for `vars`.
    pub fn new(vars: &[&Var]) -> Result<Self> {
        let z = |v: &&Var| v.as_tensor().zeros_like().map_err(Error::from);
        Ok(Self {
            m: vars.iter().map(z).collect::<Result<_>>()?,
            v: vars.iter().map(z).collect::<Result<_>>()?,
            t: 0,
            betas: (0.9, 0.999, 1e-8),
        })
    }

    /// One update of `vars` by `grads` at learning rate `lr` and weight decay `wd`.
    pub fn step(&mut self, vars: &[&Var], grads: &[Tensor], lr: f64, wd: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2, eps) = self.betas;
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        for (i, (var, g)) in vars.iter().zip(grads).enumerate() {
            let c = |r: candle_core::Result<Tensor>| r.map_err(Error::from);
            let m = c((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = c((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let p = var.as_tensor();
            let decayed = c(p * (1.0 - lr * wd))?;
            let update = c((&m / bc1)?.div(&((&v / bc2)?.sqrt()? + eps)?))?;
            let newp = c(decayed - (update * lr)?)?;
            var.set(&newp)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Writes the moments to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            map.insert(format!("exp_avg.{i:05}"), m.clone());
            map.insert(format!("exp_avg_sq.{i:05}"), v.clone());
        }
        let bytes = safetensors_bytes(&map)?;
        write_atomic_bytes(path, &bytes)
    }

    /// Reads moments of `n` variables saved after `t` updates.
    pub fn load(path: &Path, n: usize, t: u64, device: &Device) -> Result<Self> {
        let mut map = candle_core::safetensors::load(path, device)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let mut take =
            |k: String| map.remove(&k).ok_or_else(|| Error::Model(format!("{}: {k} missing", path.display())));
        let mut m = vec![];
        let mut v = vec![];
        for i in 0..n {
            m.push(take(format!("exp_avg.{i:05}"))?);
            v.push(take(format!("exp_avg_sq.{i:05}"))?);
        }
        Ok(Self { m, v, t, betas: (0.9, 0.999, 1e-8) })
    }
}
