//! A training run's configuration (`run.toml`), with the defaults of the original QLoRA run
//! (design.md §7) and validation.

use super::lora::LoraConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the model learns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Next-token cross-entropy on the tokens after `Price is $` (the original).
    #[default]
    Lm,
    /// A linear head on the last hidden state of the test prompt predicting standardised
    /// `ln(price + 1)` with MSE (sidesteps digit-by-digit tokenizers).
    Regression,
}

/// The longest sequence a run trains on: `"auto"` (the longest training prompt in the model's own
/// tokenizer, at most [`SeqLen::AUTO_LIMIT`]) or a number of tokens (a cap: longer prompts are
/// shortened in the description, never from `Price is $` on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeqLen {
    /// Long enough for every training prompt.
    #[default]
    Auto,
    /// At most this many tokens.
    Tokens(usize),
}

impl SeqLen {
    /// The most tokens `auto` ever picks.
    pub const AUTO_LIMIT: usize = 2048;

    /// The length for training prompts whose longest encodes to `longest` tokens.
    pub fn resolve(self, longest: usize) -> usize {
        match self {
            Self::Auto => longest.clamp(16, Self::AUTO_LIMIT),
            Self::Tokens(n) => n,
        }
    }

    /// The cap for prompts outside training (pricing): the number, or [`SeqLen::AUTO_LIMIT`].
    pub fn cap(self) -> usize {
        match self {
            Self::Auto => Self::AUTO_LIMIT,
            Self::Tokens(n) => n,
        }
    }
}

impl std::fmt::Display for SeqLen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Tokens(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for SeqLen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Tokens(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for SeqLen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self::Tokens(n as usize)),
            Raw::S(s) if s == "auto" => Ok(Self::Auto),
            Raw::S(s) => s
                .parse()
                .map(Self::Tokens)
                .map_err(|_| serde::de::Error::custom(format!("max_seq_len must be \"auto\" or a number, not {s:?}"))),
        }
    }
}

/// Everything a run needs; `pricer train --config run.toml` reads it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// A `.gguf` file, a Hugging Face model folder, or a Hub id (`owner/name`).
    pub model: String,
    /// Training items (a Sampling export: Parquet or JSONL of curated items).
    pub train: PathBuf,
    /// Validation items; when absent, `val_items` are held out from `train`.
    pub validation: Option<PathBuf>,
    /// Items held out for validation when no validation file is given.
    pub val_items: usize,
    /// Validation items priced at every validation (val_error, val_rmsle, val_hits in
    /// `metrics.jsonl`); 0 turns it off.
    pub val_price_items: usize,
    /// Use at most this many training items (after the hold-out).
    pub max_train_items: Option<usize>,
    /// Folder holding run folders.
    pub runs_dir: PathBuf,
    /// Run folder name (default `run-YYYYMMDD-HHMMSS`).
    pub name: Option<String>,
    /// What the model learns.
    pub objective: Objective,
    /// Adapter settings.
    pub lora: LoraConfig,
    /// Passes over the training items (fractions allowed).
    pub epochs: f64,
    /// Stop after this many optimizer steps (overrides `epochs`).
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Fraction of steps of linear warm-up before the cosine decay.
    pub warmup_ratio: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Tokens per sequence (`"auto"`: the longest training prompt); descriptions are shortened,
    /// never what follows `Price is $`.
    pub max_seq_len: SeqLen,
    /// Seed of adapter init, data order and dropout.
    pub seed: u64,
    /// Validation loss every N steps (0: only at the end).
    pub eval_every: usize,
    /// Checkpoint every N steps (0: only at the end / on stop).
    pub save_every: usize,
    /// A line in the log every N steps (metrics.jsonl gets every step).
    pub log_every: usize,
    /// `cpu`, `cuda` or `auto`.
    pub device: String,
    /// Dtype of the frozen base weights and activations: `auto` (f32 on the CPU, bf16 on a GPU
    /// of compute capability ≥ 8.0, f16 below), `f32`, `bf16` or `f16`. Adapters, the
    /// optimizer and the loss stay f32 whatever this is.
    pub base_dtype: String,
    /// Where an imported run came from (`pricer import-run`: the trainer and its output folder);
    /// such a run is read-only (no resume), its checkpoints are evaluated like ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: super::model::default_model_path().display().to_string(),
            train: PathBuf::new(),
            validation: None,
            val_items: 100,
            val_price_items: 100,
            max_train_items: None,
            runs_dir: PathBuf::from("runs"),
            name: None,
            objective: Objective::Lm,
            lora: LoraConfig::default(),
            epochs: 1.0,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            learning_rate: 1e-4,
            warmup_ratio: 0.03,
            weight_decay: 0.001,
            max_grad_norm: 0.3,
            max_seq_len: SeqLen::Auto,
            seed: 42,
            eval_every: 50,
            save_every: 50,
            log_every: 50,
            device: "cpu".into(),
            base_dtype: "auto".into(),
            imported_from: None,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file; relative paths are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")), &path.display().to_string())
    }

    /// Reads a configuration from TOML text; relative paths are taken from `base_dir`. Not
    /// validated: the trainer validates it, once, before it writes the run's `config.toml`.
    pub fn parse(text: &str, base_dir: &Path, source_name: &str) -> Result<Self> {
        let mut cfg: Self = toml::from_str(text).map_err(|e| Error::InvalidInput(format!("{source_name}: {e}")))?;
        cfg.resolve_relative(base_dir);
        Ok(cfg)
    }

    fn resolve_relative(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.train);
        if let Some(v) = &mut self.validation {
            fix(v);
        }
        fix(&mut self.runs_dir);
        let m = PathBuf::from(&self.model);
        if m.is_relative() && dir.join(&m).exists() {
            self.model = dir.join(m).display().to_string();
        }
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    /// Every problem with the values, one message each (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut p = vec![];
        if self.model.trim().is_empty() {
            p.push("model: choose a .gguf file, a model folder or a Hub id".into());
        }
        if self.train.as_os_str().is_empty() {
            p.push("train: choose a file of curated items".into());
        }
        if self.lora.r == 0 {
            p.push("lora.r must be at least 1".into());
        }
        if let Err(e) = self.lora.targets() {
            p.push(e.to_string());
        }
        if !(0.0..1.0).contains(&self.lora.dropout) {
            p.push("lora.dropout must be in [0, 1)".into());
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            p.push("batch_size and grad_accum must be at least 1".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            p.push("learning_rate must be in (0, 1)".into());
        }
        if !(0.0..=0.5).contains(&self.warmup_ratio) {
            p.push("warmup_ratio must be in [0, 0.5]".into());
        }
        if self.weight_decay < 0.0 || self.max_grad_norm <= 0.0 {
            p.push("weight_decay must be ≥ 0 and max_grad_norm > 0".into());
        }
        if self.max_steps.is_none() && self.epochs <= 0.0 {
            p.push("epochs must be > 0 (or set max_steps)".into());
        }
        if matches!(self.max_seq_len, SeqLen::Tokens(n) if n < 16) {
            p.push("max_seq_len must be at least 16".into());
        }
        if !matches!(self.device.as_str(), "cpu" | "cuda" | "auto") {
            p.push("device must be cpu, cuda or auto".into());
        }
        if !matches!(self.base_dtype.as_str(), "auto" | "f32" | "bf16" | "f16") {
            p.push("base_dtype must be auto, f32, bf16 or f16".into());
        }
        p
    }

    /// Errors with every problem when there is one.
    pub fn validate(&self) -> Result<()> {
        let p = self.problems();
        if p.is_empty() { Ok(()) } else { Err(Error::InvalidInput(p.join("; "))) }
    }

    /// Optimizer steps for `n_train` items.
    pub fn total_steps(&self, n_train: usize) -> usize {
        let per_epoch = n_train.div_ceil(self.batch_size * self.grad_accum).max(1);
        self.max_steps.unwrap_or_else(|| ((per_epoch as f64) * self.epochs).ceil().max(1.0) as usize)
    }

    /// Warm-up steps (rounded up, as `transformers` does).
    pub fn warmup_steps(&self, total: usize) -> usize {
        (self.warmup_ratio * total as f64).ceil() as usize
    }

    /// Learning rate before optimizer step `step` (0-based): linear warm-up then cosine to 0.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let warm = self.warmup_steps(total);
        if step < warm {
            return self.learning_rate * step as f64 / warm.max(1) as f64;
        }
        let progress = (step - warm) as f64 / (total.saturating_sub(warm)).max(1) as f64;
        self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

/// A peak-memory estimate in bytes for training `cfg` on a model: the base weights, adapters with
/// AdamW state and gradients, and the activations kept for the backward pass.
///
/// On the CPU in f32 (the hand-written step, [`super::fast`]) that is exactly what each layer
/// saves: the residual stream and its two norms, q/k/v, attention probabilities, the attention
/// output, gate and up (and the MLP activation when `down_proj` has an adapter), each adapter's
/// dropout mask (a byte per input) and its `[tokens, r]` product. On SmolLM2-135M at batch 4 ×
/// 182 this gives 1.57 GiB against 1.53 GiB of peak RSS measured by `finetune_bench`. Elsewhere
/// (candle's autograd) the graph holds far more; that formula was calibrated on the same run
/// through autograd in f32 (4.5 GiB estimated, 4.1–4.96 GiB measured). In bf16/f16 (the GPU
/// default) the same elements are counted at 2 bytes and the base at 2 bytes per parameter; that
/// scaling is not yet calibrated against a measured GPU peak (issue 13's device check measures it).
/// `seq_len` is the sequence length the run will use (the resolved `auto`).
pub fn memory_estimate(model: &super::arch::LlamaConfig, cfg: &TrainConfig, seq_len: usize) -> u64 {
    let on_gpu = cfg.device == "cuda" || (cfg.device == "auto" && super::model::cuda_available());
    let bytes: u64 = match cfg.base_dtype.as_str() {
        "f32" => 4,
        "bf16" | "f16" => 2,
        _ if on_gpu => 2,
        _ => 4,
    };
    let base = model.n_params() as u64 * bytes;
    let lora = cfg.lora.n_params(model) as u64 * 4 * 5;
    let (b, t) = (cfg.batch_size as u64, seq_len as u64);
    let n = b * t;
    let (h, i) = (model.hidden_size as u64, model.intermediate_size as u64);
    let heads = model.num_attention_heads as u64;
    let q = heads * model.head_dim() as u64;
    let kv = (model.num_key_value_heads * model.head_dim()) as u64;
    let targets = cfg.lora.targets().unwrap_or_default();
    let r = cfg.lora.r as u64;
    let adapters: u64 = targets
        .iter()
        .map(|&tg| {
            let (_, inp) = model.shape_of(tg);
            n * inp as u64 + n * r * 4
        })
        .sum();
    let act = if targets.contains(&super::lora::Target::Down) { n * i } else { 0 };
    let saved = (n * (4 * h + q + 2 * kv + q + 2 * i) + act + b * heads * t * t) * 4 + adapters;
    let layers = model.num_hidden_layers as u64;
    let lowest = cfg.lora.layers(model.num_hidden_layers).ok().and_then(|l| l.first().copied()).unwrap_or(0);
    let adapted = layers - lowest as u64;
    let hand_written = !on_gpu && bytes == 4;
    let per_layer = if hand_written {
        // The hand-written step keeps states only from the lowest adapted layer up.
        saved * adapted / layers
    } else {
        // Autograd's graph: norms, q/k/v/o, rotated q/k, expanded k/v, scores and probabilities,
        // MLP, residuals and dropout masks, ×2.6 for gradients and copies.
        n * (8 * h + 6 * kv + 4 * i + 2 * heads * t + targets.len() as u64 * h) * bytes * 26 / 10
    };
    // The logits of the LM objective's price tokens are f32 whatever the base dtype; the CUDA
    // context and candle's kernels take a few hundred MiB of device memory.
    let overhead: u64 = if on_gpu { 512 << 20 } else { 256 << 20 };
    base + lora + per_layer * layers + overhead
}

/// The default run folder name for now (`run-YYYYMMDD-HHMMSS`, UTC).
pub fn default_run_name() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("run-{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> super::super::arch::LlamaConfig {
        super::super::arch::LlamaConfig {
            model_type: "llama".into(),
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            vocab_size: 49_152,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            tie_word_embeddings: true,
            attention_bias: false,
        }
    }

    #[test]
    fn memory_estimate_matches_the_measured_cpu_peak_and_grows_with_the_batch() {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let cfg = TrainConfig::default();
        let est = gib(memory_estimate(&smollm2(), &cfg, 182));
        // finetune_bench measured 1.53 GiB peak RSS for this run on the CPU.
        assert!((1.3..1.8).contains(&est), "{est:.2} GiB");
        let double = TrainConfig { batch_size: 8, ..TrainConfig::default() };
        let est8 = gib(memory_estimate(&smollm2(), &double, 182));
        assert!(est8 > est + 0.6, "batch 8: {est8:.2} GiB vs batch 4: {est:.2} GiB");
        let autograd = TrainConfig { device: "cuda".into(), base_dtype: "f32".into(), ..TrainConfig::default() };
        let autograd = gib(memory_estimate(&smollm2(), &autograd, 182));
        assert!(autograd > est * 1.8);
        // bf16 (the GPU default) halves the base and the activations.
        let bf16 = TrainConfig { device: "cuda".into(), ..TrainConfig::default() };
        let bf16 = gib(memory_estimate(&smollm2(), &bf16, 182));
        assert!(bf16 < autograd * 0.6 && bf16 > autograd * 0.4, "bf16 {bf16:.2} vs f32 {autograd:.2} GiB");
        let bf16_8 = TrainConfig { device: "cuda".into(), batch_size: 8, ..TrainConfig::default() };
        assert!(gib(memory_estimate(&smollm2(), &bf16_8, 182)) > bf16 * 1.5);
        // CPU in bf16 goes through autograd too.
        let cpu_bf16 = TrainConfig { base_dtype: "bf16".into(), ..TrainConfig::default() };
        assert!(gib(memory_estimate(&smollm2(), &cpu_bf16, 182)) > est);
        // Adapting the top 10 of 30 layers keeps a third of the states.
        let mut top = TrainConfig { batch_size: 8, ..TrainConfig::default() };
        top.lora.layers_to_transform = LoraConfig::top_layers(10, 30);
        let est_top = gib(memory_estimate(&smollm2(), &top, 182));
        let states = |c: &TrainConfig| {
            gib(memory_estimate(&smollm2(), c, 182)
                - memory_estimate(&smollm2(), &TrainConfig { batch_size: 0, ..c.clone() }, 182))
        };
        assert!((states(&top) / states(&double) - 1.0 / 3.0).abs() < 0.01, "{est_top:.2} vs {est8:.2} GiB");
        assert!(est_top < est8);
    }
}

/// How a sequence length treats a set of training prompts, for the form before launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LengthReport {
    /// Prompts looked at.
    pub items: usize,
    /// Tokens of the longest prompt (the model's own tokenizer, BOS included).
    pub longest: usize,
    /// The length the run would use (`auto` resolved).
    pub seq_len: usize,
    /// Prompts that would be shortened.
    pub shortened: usize,
    /// Tokens cut over all shortened prompts.
    pub tokens_cut: usize,
    /// The most tokens cut from one prompt.
    pub max_cut: usize,
}

impl LengthReport {
    /// What `seq_len` does to prompts of these token counts.
    pub fn of(lens: &[usize], seq_len: SeqLen) -> Self {
        let longest = lens.iter().copied().max().unwrap_or(0);
        let n = seq_len.resolve(longest);
        let cuts: Vec<usize> = lens.iter().filter(|&&l| l > n).map(|&l| l - n).collect();
        LengthReport {
            items: lens.len(),
            longest,
            seq_len: n,
            shortened: cuts.len(),
            tokens_cut: cuts.iter().sum(),
            max_cut: cuts.iter().copied().max().unwrap_or(0),
        }
    }
}
