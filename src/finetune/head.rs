//! The regression head: a linear map from the final-normed hidden state of the last prompt token
//! to the standardised log price, saved beside the adapters in a checkpoint.

use super::tensors::safetensors_bytes;
use crate::atomic::write_atomic_bytes;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// The regression head: `ŷ = w·h + b` on the final-normed hidden state of the last prompt token,
/// predicting `(ln(price + 1) − mean) / std`.
pub struct RegHead {
    /// `[1, hidden]`.
    pub w: Var,
    /// `[1]`.
    pub b: Var,
    /// Mean of `ln(price + 1)` over the training items.
    pub mean: f64,
    /// Standard deviation of the same.
    pub std: f64,
}

impl RegHead {
    pub(crate) fn new(hidden: usize, mean: f64, std: f64, device: &Device) -> Result<Self> {
        Ok(Self { w: Var::zeros((1, hidden), DType::F32, device)?, b: Var::zeros(1, DType::F32, device)?, mean, std })
    }

    /// Standardised predictions `[n]` of normed rows `[n, hidden]`.
    pub fn forward(&self, normed: &Tensor) -> Result<Tensor> {
        normed
            .matmul(&self.w.as_tensor().t()?)
            .and_then(|y| y.squeeze(1))
            .and_then(|y| y.broadcast_add(self.b.as_tensor()))
            .map_err(Error::from)
    }

    /// The standardised target of a price: `(ln(price + 1) − mean) / std`.
    pub fn target(&self, price: f64) -> f64 {
        ((price + 1.0).ln() - self.mean) / self.std
    }

    /// Price from a standardised prediction.
    pub fn price(&self, z: f64) -> f64 {
        ((z * self.std + self.mean).exp() - 1.0).max(0.0)
    }

    /// Writes `price_head.safetensors` and `price_head.json` into a checkpoint folder.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut m = HashMap::new();
        m.insert("price_head.weight".to_owned(), self.w.as_tensor().clone());
        m.insert("price_head.bias".to_owned(), self.b.as_tensor().clone());
        let bytes = safetensors_bytes(&m)?;
        write_atomic_bytes(&dir.join("price_head.safetensors"), &bytes)?;
        let meta = serde_json::json!({"target": "standardised ln(price + 1)", "mean": self.mean, "std": self.std});
        write_atomic_bytes(&dir.join("price_head.json"), meta.to_string().as_bytes())
    }

    /// Loads a head saved in a checkpoint, if there is one.
    pub fn load(dir: &Path, device: &Device) -> Result<Option<Self>> {
        let p = dir.join("price_head.safetensors");
        if !p.is_file() {
            return Ok(None);
        }
        let mut t = candle_core::safetensors::load(&p, device)?;
        let meta_path = dir.join("price_head.json");
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?)
                .map_err(|e| Error::Model(e.to_string()))?;
        let w = t.remove("price_head.weight").ok_or_else(|| Error::Model("price_head.weight missing".into()))?;
        let b = t.remove("price_head.bias").ok_or_else(|| Error::Model("price_head.bias missing".into()))?;
        Ok(Some(Self {
            w: Var::from_tensor(&w)?,
            b: Var::from_tensor(&b)?,
            mean: meta["mean"].as_f64().unwrap_or(0.0),
            std: meta["std"].as_f64().unwrap_or(1.0),
        }))
    }
}
