//! LoRA adapters: `y = W·x + (α/r)·B·A·dropout(x)` on chosen projections, `A` initialised like
//! PEFT (Kaiming-uniform, bound 1/√in), `B` zero. Saved in PEFT's layout:
//! `adapter_model.safetensors` with keys `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`
//! (`[r, in]`) / `.lora_B.weight` (`[out, r]`) and `adapter_config.json`.

use super::arch::LlamaConfig;
pub use super::arch::Target;
use super::tensors::safetensors_bytes;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// LoRA hyperparameters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r.
    pub r: usize,
    /// Scale numerator α (the update is scaled by α/r).
    pub alpha: f64,
    /// Dropout on the adapter input.
    pub dropout: f64,
    /// Projections that get adapters (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`).
    pub target_modules: Vec<String>,
    /// The layers (0-based) that get adapters, PEFT's `layers_to_transform`; empty = every layer.
    /// Adapting only the top layers makes a step cheaper: nothing is propagated back below the
    /// lowest adapted layer (see [`LoraConfig::top_layers`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers_to_transform: Vec<usize>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 32,
            alpha: 64.0,
            dropout: 0.1,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"].map(String::from).to_vec(),
            layers_to_transform: vec![],
        }
    }
}

impl LoraConfig {
    /// The targets, validated.
    pub fn targets(&self) -> Result<Vec<Target>> {
        let mut v = vec![];
        for s in &self.target_modules {
            v.push(Target::parse(s).ok_or_else(|| Error::Model(format!("unknown LoRA target module {s}")))?);
        }
        v.sort();
        v.dedup();
        if v.is_empty() {
            return Err(Error::Model("LoRA needs at least one target module".into()));
        }
        Ok(v)
    }

    /// The adapted layers of a model with `n_layers` layers, ascending, validated.
    pub fn layers(&self, n_layers: usize) -> Result<Vec<usize>> {
        if self.layers_to_transform.is_empty() {
            return Ok((0..n_layers).collect());
        }
        let mut v = self.layers_to_transform.clone();
        v.sort_unstable();
        v.dedup();
        if let Some(&bad) = v.iter().find(|&&l| l >= n_layers) {
            return Err(Error::Model(format!(
                "LoRA layer {bad} does not exist: the model has {n_layers} layers (0–{})",
                n_layers.saturating_sub(1)
            )));
        }
        Ok(v)
    }

    /// `layers_to_transform` for the top `n` of `n_layers` layers (`n` ≥ `n_layers`: every layer,
    /// written as the empty list).
    pub fn top_layers(n: usize, n_layers: usize) -> Vec<usize> {
        if n >= n_layers { vec![] } else { (n_layers - n..n_layers).collect() }
    }

    /// Trainable parameters for a model.
    pub fn n_params(&self, cfg: &LlamaConfig) -> usize {
        let t = self.targets().unwrap_or_default();
        let layers = self.layers(cfg.num_hidden_layers).map_or(cfg.num_hidden_layers, |l| l.len());
        layers * t.iter().map(|&t| self.r * (cfg.shape_of(t).0 + cfg.shape_of(t).1)).sum::<usize>()
    }
}

/// The trainable adapters of one run.
pub struct Lora {
    /// Hyperparameters.
    pub cfg: LoraConfig,
    /// `(layer, target) → (A [r, in], B [out, r])`.
    pub modules: Vec<((usize, Target), Var, Var)>,
    index: HashMap<(usize, Target), usize>,
}

/// Seed of one dropout mask.
fn mask_seed(seed: u64, layer: usize, target: Target) -> u64 {
    seed ^ ((layer as u64) << 32 | (target as u64) << 8).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// SplitMix64's output function: a well-mixed 64-bit hash of `z`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The dropout keep mask (1 = kept) of adapter `(layer, target)` at elements `first..first +
/// out.len()` of its input (flattened in the padded `[batch, t, in]` layout), drop probability `p`.
/// Counter-based — element `i` depends only on `(seed, layer, target, i)` — so the autograd path and
/// the CPU step draw identical masks, in any order and on any number of threads.
pub fn dropout_mask(seed: u64, layer: usize, target: Target, p: f64, first: u64, out: &mut [u8]) {
    let key = mix(mask_seed(seed, layer, target));
    let threshold = (p * (1u64 << 53) as f64) as u64;
    for (i, o) in out.iter_mut().enumerate() {
        let z = mix(key.wrapping_add((first + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        *o = u8::from((z >> 11) >= threshold);
    }
}

impl Lora {
    /// Fresh adapters for `model_cfg`, seeded.
    pub fn new(cfg: &LoraConfig, model_cfg: &LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        let targets = cfg.targets()?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut modules = vec![];
        for layer in cfg.layers(model_cfg.num_hidden_layers)? {
            for &t in &targets {
                let (out, inp) = model_cfg.shape_of(t);
                let bound = 1.0 / (inp as f32).sqrt();
                let a: Vec<f32> = (0..cfg.r * inp).map(|_| rng.random_range(-bound..bound)).collect();
                let a = Var::from_vec(a, (cfg.r, inp), device)?;
                let b = Var::zeros((out, cfg.r), DType::F32, device)?;
                modules.push(((layer, t), a, b));
            }
        }
        Ok(Self::from_modules(cfg.clone(), modules))
    }

    fn from_modules(cfg: LoraConfig, modules: Vec<((usize, Target), Var, Var)>) -> Self {
        let index = modules.iter().enumerate().map(|(i, (k, _, _))| (*k, i)).collect();
        Self { cfg, modules, index }
    }

    /// The lowest layer with an adapter (the layer count when there is none): the backward pass
    /// stops there.
    pub fn first_layer(&self, n_layers: usize) -> usize {
        self.modules.iter().map(|((l, _), _, _)| *l).min().unwrap_or(n_layers)
    }

    /// Position of `(layer, target)`'s adapter in [`Self::modules`], when it has one.
    pub fn module_index(&self, layer: usize, target: Target) -> Option<usize> {
        self.index.get(&(layer, target)).copied()
    }

    /// Every trainable variable (A then B of each module).
    pub fn vars(&self) -> Vec<&Var> {
        self.modules.iter().flat_map(|(_, a, b)| [a, b]).collect()
    }

    /// Adds the adapter's update to `base_out` when `(layer, target)` has one.
    pub fn apply(
        &self,
        layer: usize,
        target: Target,
        input: &Tensor,
        base_out: Tensor,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor> {
        let Some(&i) = self.index.get(&(layer, target)) else { return Ok(base_out) };
        let (_, a, b) = &self.modules[i];
        let x = match dropout_seed {
            Some(seed) if self.cfg.dropout > 0.0 => {
                let p = self.cfg.dropout;
                let keep = 1.0 / (1.0 - p);
                let mask = if input.device().is_cpu() {
                    // The hand-written step's mask (same draws), so both CPU paths agree.
                    let mut kept = vec![0u8; input.elem_count()];
                    dropout_mask(seed, layer, target, p, 0, &mut kept);
                    let mask: Vec<f32> = kept.iter().map(|&k| if k != 0 { keep as f32 } else { 0.0 }).collect();
                    Tensor::from_vec(mask, input.shape(), input.device())?.to_dtype(input.dtype())?
                } else {
                    // Drawn on the device (its generator seeded per micro-batch by the trainer):
                    // no host work or copy per module.
                    let u = Tensor::rand(0f32, 1f32, input.shape(), input.device())?;
                    (u.ge(p)?.to_dtype(input.dtype())? * keep)?
                };
                (input * mask)?
            }
            _ => input.clone(),
        };
        // Mixed precision as autocast does it: the f32 adapters are cast to the base's dtype for
        // the matmuls; their gradients flow back through the cast into the f32 variables.
        let dtype = input.dtype();
        let (a, b) = (a.as_tensor().to_dtype(dtype)?, b.as_tensor().to_dtype(dtype)?);
        let scale = self.cfg.alpha / self.cfg.r as f64;
        let low = x.broadcast_matmul(&a.t()?)?;
        let up = low.broadcast_matmul(&b.t()?)?;
        (base_out + (up * scale)?).map_err(Error::from)
    }

    /// The PEFT key of a module's A or B.
    pub fn peft_key(layer: usize, target: Target, which: char) -> String {
        format!("base_model.model.model.layers.{layer}.{}.lora_{which}.weight", target.hf_path())
    }

    /// Tensors under PEFT's names.
    pub fn peft_tensors(&self) -> HashMap<String, Tensor> {
        let mut m = HashMap::new();
        for ((layer, t), a, b) in &self.modules {
            m.insert(Self::peft_key(*layer, *t, 'A'), a.as_tensor().clone());
            m.insert(Self::peft_key(*layer, *t, 'B'), b.as_tensor().clone());
        }
        m
    }

    /// Writes `adapter_model.safetensors` and `adapter_config.json` into `dir`.
    pub fn save_peft(&self, dir: &Path, base_model: &str, model_cfg: &LlamaConfig) -> Result<()> {
        let bytes = safetensors_bytes(&self.peft_tensors())?;
        crate::atomic::write_atomic(&dir.join("adapter_model.safetensors"), |w| w.write_all(&bytes))?;
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.cfg.r,
            "lora_alpha": self.cfg.alpha,
            "lora_dropout": self.cfg.dropout,
            "target_modules": self.cfg.targets()?.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "use_rslora": false,
            "use_dora": false,
            "revision": null,
            "layers_to_transform": if self.cfg.layers_to_transform.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!(self.cfg.layers(model_cfg.num_hidden_layers)?)
            },
            "num_hidden_layers": model_cfg.num_hidden_layers,
        });
        let text = serde_json::to_string_pretty(&config).expect("json");
        crate::atomic::write_atomic_bytes(&dir.join("adapter_config.json"), text.as_bytes())
    }

    /// Reads adapters saved by [`Lora::save_peft`] (or by PEFT) from `dir`.
    pub fn load_peft(dir: &Path, model_cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Model(format!("{e}")))?;
        peft_options_supported(&v).map_err(|what| Error::Model(format!("{}: {what}", cfg_path.display())))?;
        let targets: Vec<String> = v["target_modules"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let cfg = LoraConfig {
            r: v["r"].as_u64().unwrap_or(8) as usize,
            alpha: v["lora_alpha"].as_f64().unwrap_or(16.0),
            dropout: v["lora_dropout"].as_f64().unwrap_or(0.0),
            target_modules: targets,
            layers_to_transform: peft_layers(&v["layers_to_transform"])
                .map_err(|what| Error::Model(format!("{}: {what}", cfg_path.display())))?,
        };
        let path = dir.join("adapter_model.safetensors");
        let mut tensors = candle_core::safetensors::load(&path, device)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let mut modules = vec![];
        for layer in cfg.layers(model_cfg.num_hidden_layers)? {
            for t in cfg.targets()? {
                let mut take = |w: char| -> Result<Var> {
                    let k = Self::peft_key(layer, t, w);
                    let t =
                        tensors.remove(&k).ok_or_else(|| Error::Model(format!("{}: {k} missing", path.display())))?;
                    Var::from_tensor(&t.to_dtype(DType::F32)?).map_err(Error::from)
                };
                let a = take('A')?;
                let b = take('B')?;
                let (out, inp) = model_cfg.shape_of(t);
                if a.dims() != [cfg.r, inp] || b.dims() != [out, cfg.r] {
                    return Err(Error::Model(format!("{}: adapter shapes do not fit the model", path.display())));
                }
                modules.push(((layer, t), a, b));
            }
        }
        Ok(Self::from_modules(cfg, modules))
    }
}

/// PEFT's `layers_to_transform`: null (every layer), one layer index, or a list of them.
pub(super) fn peft_layers(v: &serde_json::Value) -> std::result::Result<Vec<usize>, String> {
    let index = |x: &serde_json::Value| x.as_u64().map(|l| l as usize);
    match v {
        serde_json::Value::Null => Ok(vec![]),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| index(x).ok_or_else(|| format!("layers_to_transform holds {x}, not a layer index")))
            .collect(),
        x => index(x).map(|l| vec![l]).ok_or_else(|| format!("layers_to_transform = {x} is not a layer index")),
    }
}

/// Whether an `adapter_config.json` asks only for what [`Lora`] computes (plain LoRA: `B·A·x·α/r`
/// on whole projections of the chosen layers); otherwise what it asks for, so that an adapter is never
/// silently evaluated as something it is not.
fn peft_options_supported(v: &serde_json::Value) -> std::result::Result<(), String> {
    let set = |k: &str| match &v[k] {
        serde_json::Value::Null | serde_json::Value::Bool(false) => false,
        serde_json::Value::Object(m) => !m.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    };
    if let Some(t) = v["peft_type"].as_str().filter(|t| *t != "LORA") {
        return Err(format!("peft_type {t} is not supported (LORA only)"));
    }
    if v["target_modules"].is_string() {
        return Err("target_modules as a pattern is not supported: give the module names (q_proj, …)".into());
    }
    for k in ["use_rslora", "use_dora", "rank_pattern", "alpha_pattern", "layers_pattern", "modules_to_save"] {
        if set(k) {
            return Err(format!("{k} = {} is not supported (plain LoRA only)", v[k]));
        }
    }
    if let Some(b) = v["bias"].as_str().filter(|b| *b != "none") {
        return Err(format!("bias = {b:?} is not supported (\"none\" only)"));
    }
    if v["fan_in_fan_out"].as_bool() == Some(true) {
        return Err("fan_in_fan_out = true is not supported".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_options_this_engine_cannot_compute_are_refused_by_name() {
        let plain = serde_json::json!({"peft_type": "LORA", "r": 8, "use_rslora": false, "rank_pattern": {},
            "layers_to_transform": null, "bias": "none", "target_modules": ["q_proj"]});
        assert_eq!(peft_options_supported(&plain), Ok(()));
        for (k, v) in [
            ("use_dora", serde_json::json!(true)),
            ("use_rslora", serde_json::json!(true)),
            ("rank_pattern", serde_json::json!({"q_proj": 4})),
            ("modules_to_save", serde_json::json!(["lm_head"])),
            ("layers_pattern", serde_json::json!("blocks")),
            ("target_modules", serde_json::json!(".*proj")),
            ("bias", serde_json::json!("all")),
        ] {
            let mut c = plain.clone();
            c[k] = v;
            let err = peft_options_supported(&c).unwrap_err();
            assert!(err.contains(k), "{k}: {err}");
        }
    }

    #[test]
    fn adapters_of_the_top_layers_only_round_trip_through_peft_files() {
        let model = LlamaConfig {
            model_type: "llama".into(),
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 4,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            vocab_size: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            tie_word_embeddings: true,
            attention_bias: false,
        };
        let cfg = LoraConfig { r: 2, layers_to_transform: LoraConfig::top_layers(2, 4), ..Default::default() };
        assert_eq!(cfg.layers_to_transform, vec![2, 3]);
        assert_eq!(LoraConfig::top_layers(4, 4), Vec::<usize>::new(), "all layers is the empty list");
        let all = LoraConfig { r: 2, ..Default::default() };
        assert_eq!(cfg.n_params(&model) * 2, all.n_params(&model));
        let lora = Lora::new(&cfg, &model, 3, &Device::Cpu).unwrap();
        assert_eq!(lora.first_layer(4), 2);
        assert_eq!(lora.modules.len(), 2 * 4);
        assert!(lora.module_index(1, Target::Q).is_none() && lora.module_index(2, Target::Q).is_some());
        let dir = tempfile::tempdir().unwrap();
        lora.save_peft(dir.path(), "base", &model).unwrap();
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!(written["layers_to_transform"], serde_json::json!([2, 3]));
        let back = Lora::load_peft(dir.path(), &model, &Device::Cpu).unwrap();
        assert_eq!(back.cfg.layers_to_transform, vec![2, 3]);
        let keys = |l: &Lora| l.modules.iter().map(|(k, _, _)| *k).collect::<Vec<_>>();
        assert_eq!(keys(&back), keys(&lora));
        // PEFT also writes one index as a number; a layer the model lacks is refused by name.
        assert_eq!(peft_layers(&serde_json::json!(3)), Ok(vec![3]));
        assert!(peft_layers(&serde_json::json!(["x"])).is_err());
        let bad = LoraConfig { layers_to_transform: vec![4], ..cfg };
        let err = Lora::new(&bad, &model, 3, &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("layer 4 does not exist"), "{err}");
    }

    #[test]
    fn dropout_masks_drop_p_of_the_inputs_and_depend_only_on_the_element() {
        let mut whole = vec![0u8; 100_000];
        dropout_mask(7, 3, Target::V, 0.1, 0, &mut whole);
        let dropped = whole.iter().filter(|&&k| k == 0).count() as f64 / whole.len() as f64;
        assert!((dropped - 0.1).abs() < 0.005, "dropped {dropped}");
        // A slice drawn on its own (as each row is on the CPU path) equals that part of the whole.
        let mut part = vec![0u8; 1000];
        dropout_mask(7, 3, Target::V, 0.1, 40_000, &mut part);
        assert_eq!(part, whole[40_000..41_000]);
        // Other layers, projections and seeds draw other masks.
        for (seed, layer, target) in [(8, 3, Target::V), (7, 4, Target::V), (7, 3, Target::K)] {
            let mut other = vec![0u8; 1000];
            dropout_mask(seed, layer, target, 0.1, 40_000, &mut other);
            assert_ne!(other, part, "{seed} {layer} {target:?}");
        }
        let mut none = vec![0u8; 1000];
        dropout_mask(7, 3, Target::V, 0.0, 0, &mut none);
        assert!(none.iter().all(|&k| k == 1));
    }
}
