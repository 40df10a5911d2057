//! The training loop: seeded data order, masked next-token loss (logits only at the price
//! positions) or the regression head, gradient accumulation, global-norm clipping, AdamW with a
//! warm-up + cosine schedule, validation, `metrics.jsonl`, checkpoints written to a temporary
//! folder and renamed (a half-written checkpoint is never taken for a good one), stop through a
//! `STOP` file and resume from the last checkpoint.

use super::config::{Objective, TrainConfig};
use super::lora::Lora;
use super::model::{Model, safetensors_bytes};
use super::tokenize::{Example, encode_prompt};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// File names inside a run folder.
pub mod files {
    /// The run's configuration.
    pub const CONFIG: &str = "config.toml";
    /// One JSON object per line: train rows (`train_loss`) and validation rows (`val_loss`).
    pub const METRICS: &str = "metrics.jsonl";
    /// Human-readable log.
    pub const LOG: &str = "train.log";
    /// Current state (`running`, `stopped`, `finished`, `failed`).
    pub const STATUS: &str = "status.json";
    /// Created by the GUI (or a user) to ask the trainer to stop after the current step.
    pub const STOP: &str = "STOP";
    /// Folder of checkpoints.
    pub const CHECKPOINTS: &str = "checkpoints";
    /// Written last inside a checkpoint.
    pub const STATE: &str = "trainer_state.json";
}

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
    fn new(hidden: usize, mean: f64, std: f64, device: &Device) -> Result<Self> {
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

    fn save(&self, dir: &Path) -> Result<()> {
        let mut m = HashMap::new();
        m.insert("price_head.weight".to_owned(), self.w.as_tensor().clone());
        m.insert("price_head.bias".to_owned(), self.b.as_tensor().clone());
        let bytes = safetensors_bytes(&m).map_err(Error::Model)?;
        crate::export::write_atomic(&dir.join("price_head.safetensors"), |w| w.write_all(&bytes))?;
        let meta = serde_json::json!({"target": "standardised ln(price + 1)", "mean": self.mean, "std": self.std});
        crate::export::write_atomic(&dir.join("price_head.json"), |w| w.write_all(meta.to_string().as_bytes()))
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
    fn new(vars: &[&Var]) -> Result<Self> {
        let z = |v: &&Var| v.as_tensor().zeros_like().map_err(Error::from);
        Ok(Self {
            m: vars.iter().map(z).collect::<Result<_>>()?,
            v: vars.iter().map(z).collect::<Result<_>>()?,
            t: 0,
            betas: (0.9, 0.999, 1e-8),
        })
    }

    fn step(&mut self, vars: &[&Var], grads: &[Tensor], lr: f64, wd: f64) -> Result<()> {
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

    fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            map.insert(format!("exp_avg.{i:05}"), m.clone());
            map.insert(format!("exp_avg_sq.{i:05}"), v.clone());
        }
        let bytes = safetensors_bytes(&map).map_err(Error::Model)?;
        crate::export::write_atomic(path, |w| w.write_all(&bytes))
    }

    fn load(path: &Path, n: usize, t: u64, device: &Device) -> Result<Self> {
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

/// What a checkpoint records besides tensors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Micro-batches done (the data-order position).
    pub micro_batches: usize,
    /// Micro-batches per pass over the training items.
    pub micro_batches_per_epoch: usize,
    /// Seed of the data order (epoch `e` is a permutation drawn from `seed ^ e`).
    pub data_seed: u64,
    /// Training items (after hold-out), to check a resume sees the same data.
    pub n_train: usize,
    /// Tokens trained on so far.
    pub tokens_seen: u64,
    /// Seconds of training so far.
    pub elapsed_s: f64,
    /// Last validation loss.
    pub val_loss: Option<f64>,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MetricRow {
    /// Optimizer step (1-based: the step just done).
    pub step: usize,
    /// Fractional epoch.
    pub epoch: f64,
    /// Training loss of the step (train rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// Validation loss (validation rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Learning rate used by the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Gradient norm before clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Training tokens per second over the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// Seconds of training so far.
    pub elapsed_s: f64,
    /// Resident memory of the trainer in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mb: Option<f64>,
}

/// Reads `metrics.jsonl`, skipping a torn last line.
pub fn read_metrics(run_dir: &Path) -> Vec<MetricRow> {
    let Ok(text) = std::fs::read_to_string(run_dir.join(files::METRICS)) else { return vec![] };
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The run's status file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunStatus {
    /// `running`, `stopped`, `finished` or `failed`.
    pub state: String,
    /// Process id of the trainer.
    pub pid: u32,
    /// Steps done.
    pub step: usize,
    /// Steps of the run.
    pub total_steps: usize,
    /// Last message (the error when failed).
    pub message: String,
    /// Tokens of the base model's tokenizer and sequences truncated, for the UI.
    pub truncated: usize,
    /// Training items.
    pub n_train: usize,
    /// Validation items.
    pub n_val: usize,
}

/// Reads a run's status.
pub fn read_status(run_dir: &Path) -> Option<RunStatus> {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join(files::STATUS)).ok()?).ok()
}

/// Complete checkpoints of a run, oldest first: `(step, folder)`.
pub fn checkpoints(run_dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(run_dir.join(files::CHECKPOINTS)) else { return vec![] };
    let mut v: Vec<(usize, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
            let p = e.path();
            p.join(files::STATE).is_file().then_some((step, p))
        })
        .collect();
    v.sort();
    v
}

/// Reads the items of a file as `(prompt, price)` pairs; malformed lines are skipped and reported
/// (count and the first few with their line numbers) to `log`.
fn read_pairs(path: &Path, log: &mut impl Write) -> Result<Vec<(String, f64)>> {
    let (table, errors) = crate::export::read_items(path)?;
    if !errors.is_empty() {
        let msg = format!("{}: {} malformed lines skipped", path.display(), errors.len());
        let _ = writeln!(log, "{msg}");
        eprintln!("{msg}");
        for e in errors.iter().take(5) {
            let _ = writeln!(log, "  {e}");
            eprintln!("  {e}");
        }
    }
    if table.is_empty() {
        return Err(Error::InvalidInput(format!("{}: no items", path.display())));
    }
    Ok(table.iter().map(|r| (r.prompt.to_owned(), r.price)).collect())
}

/// A training run in memory.
pub struct Trainer {
    /// Configuration.
    pub cfg: TrainConfig,
    /// Run folder.
    pub run_dir: PathBuf,
    /// Base model.
    pub model: Model,
    /// Adapters.
    pub lora: Lora,
    /// Regression head (regression objective).
    pub head: Option<RegHead>,
    opt: AdamW,
    /// Training examples.
    pub train: Vec<Example>,
    /// Validation examples.
    pub val: Vec<Example>,
    /// Progress.
    pub state: TrainerState,
    truncated: usize,
    log: Option<std::fs::File>,
    /// The shuffled order of the current epoch (drawn once per epoch).
    epoch_order: Option<(usize, Vec<usize>)>,
    /// Whether steps run the hand-written CPU forward/backward ([`super::fast`]) rather than
    /// candle's autograd (other devices, or `PRICER_AUTOGRAD=1`).
    pub hand_written: bool,
}

/// Why [`Trainer::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step done.
    Finished,
    /// Stopped on request; a checkpoint holds the last step.
    Stopped,
}

impl Trainer {
    /// Prepares a new run: makes the run folder, loads model and data, writes `config.toml`.
    pub fn create(cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let name = cfg.name.clone().unwrap_or_else(super::config::default_run_name);
        let run_dir = cfg.runs_dir.join(&name);
        if run_dir.join(files::CONFIG).exists() {
            return Err(Error::InvalidInput(format!(
                "{} already holds a run; resume it or choose another name",
                run_dir.display()
            )));
        }
        std::fs::create_dir_all(run_dir.join(files::CHECKPOINTS)).map_err(|e| Error::io(&run_dir, e))?;
        let mut saved = cfg.clone();
        saved.name = Some(name);
        crate::export::write_atomic(&run_dir.join(files::CONFIG), |w| w.write_all(saved.to_toml().as_bytes()))?;
        Self::build(saved, run_dir, None)
    }

    /// Reopens a run at its last complete checkpoint (or from the start when it has none).
    /// `max_steps` may extend (or shorten) the run.
    pub fn resume(run_dir: &Path, max_steps: Option<usize>) -> Result<Self> {
        let mut cfg = TrainConfig::load(&run_dir.join(files::CONFIG))?;
        if max_steps.is_some() {
            cfg.max_steps = max_steps;
        }
        let last = checkpoints(run_dir).pop();
        Self::build(cfg, run_dir.to_owned(), last.map(|(_, p)| p))
    }

    fn build(cfg: TrainConfig, run_dir: PathBuf, from: Option<PathBuf>) -> Result<Self> {
        let device = super::model::pick_device(&cfg.device)?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run_dir.join(files::LOG))
            .map_err(|e| Error::io(run_dir.join(files::LOG), e))?;
        let source = super::model::ModelSource::parse(&cfg.model)?;
        let _ = writeln!(log, "loading model {}", cfg.model);
        let model = Model::load(&source, &device, &crate::hub::HubOptions::default())?;
        let mut train_pairs = read_pairs(&cfg.train, &mut log)?;
        let val_pairs = match &cfg.validation {
            Some(p) => read_pairs(p, &mut log)?,
            None => {
                let mut order: Vec<usize> = (0..train_pairs.len()).collect();
                order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x005E_ED0F_7E57));
                let n_val = cfg.val_items.min(train_pairs.len() / 5);
                let mut held: Vec<usize> = order[..n_val].to_vec();
                held.sort_unstable();
                let mut val = vec![];
                for &i in held.iter().rev() {
                    val.push(train_pairs.remove(i));
                }
                val.reverse();
                val
            }
        };
        if let Some(n) = cfg.max_train_items {
            train_pairs.truncate(n);
        }
        let mut truncated = 0;
        let mut encode = |pairs: &[(String, f64)]| -> Result<Vec<Example>> {
            let mut out = Vec::with_capacity(pairs.len());
            for (prompt, price) in pairs {
                let ex = encode_prompt(&model.tokenizer, prompt, *price, cfg.max_seq_len)?;
                if ex.price_start >= ex.ids.len() {
                    return Err(Error::InvalidInput(format!(
                        "item without a price after `Price is $`: {:.60}",
                        prompt
                    )));
                }
                truncated += usize::from(ex.truncated);
                out.push(ex);
            }
            Ok(out)
        };
        let train = encode(&train_pairs)?;
        let val = encode(&val_pairs)?;
        if train.is_empty() {
            return Err(Error::InvalidInput("no training items".into()));
        }
        let mut lora = Lora::new(&cfg.lora, &model.cfg, cfg.seed, &device)?;
        let head = if cfg.objective == Objective::Regression {
            let logs: Vec<f64> = train.iter().map(|e| (e.price + 1.0).ln()).collect();
            let mean = logs.iter().sum::<f64>() / logs.len() as f64;
            let std = (logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / logs.len() as f64).sqrt().max(1e-6);
            Some(RegHead::new(model.cfg.hidden_size, mean, std, &device)?)
        } else {
            None
        };
        let mb_per_epoch = train.len().div_ceil(cfg.batch_size);
        let mut state = TrainerState {
            step: 0,
            total_steps: cfg.total_steps(train.len()),
            micro_batches: 0,
            micro_batches_per_epoch: mb_per_epoch,
            data_seed: cfg.seed,
            n_train: train.len(),
            tokens_seen: 0,
            elapsed_s: 0.0,
            val_loss: None,
        };
        let mut head = head;
        let opt = match &from {
            Some(dir) => {
                let st_path = dir.join(files::STATE);
                let saved: TrainerState =
                    serde_json::from_str(&std::fs::read_to_string(&st_path).map_err(|e| Error::io(&st_path, e))?)
                        .map_err(|e| Error::Model(format!("{}: {e}", st_path.display())))?;
                if saved.n_train != train.len() {
                    return Err(Error::InvalidInput(format!(
                        "the training data changed since the checkpoint ({} items then, {} now)",
                        saved.n_train,
                        train.len()
                    )));
                }
                lora = Lora::load_peft(dir, &model.cfg, &device)?;
                if head.is_some() {
                    head = RegHead::load(dir, &device)?;
                }
                let n_vars = trainable(&lora, head.as_ref()).len();
                let opt = AdamW::load(&dir.join("optimizer.safetensors"), n_vars, saved.step as u64, &device)?;
                let total = state.total_steps;
                state = saved;
                state.total_steps = total;
                truncate_metrics(&run_dir, state.step)?;
                let _ = writeln!(log, "resumed from {} at step {}", dir.display(), state.step);
                opt
            }
            None => AdamW::new(&trainable(&lora, head.as_ref()))?,
        };
        let hand_written = super::fast::supported(&model) && std::env::var_os("PRICER_AUTOGRAD").is_none();
        Ok(Self {
            cfg,
            run_dir,
            model,
            lora,
            head,
            opt,
            train,
            val,
            state,
            truncated,
            log: Some(log),
            epoch_order: None,
            hand_written,
        })
    }

    fn vars(&self) -> Vec<&Var> {
        trainable(&self.lora, self.head.as_ref())
    }

    fn log_line(&mut self, msg: &str) {
        if let Some(f) = &mut self.log {
            let _ = writeln!(f, "[{:>8.1}s] {msg}", self.state.elapsed_s);
        }
        eprintln!("{msg}");
    }

    fn write_status(&self, state: &str, message: &str) -> Result<()> {
        let st = RunStatus {
            state: state.into(),
            pid: std::process::id(),
            step: self.state.step,
            total_steps: self.state.total_steps,
            message: message.into(),
            truncated: self.truncated,
            n_train: self.train.len(),
            n_val: self.val.len(),
        };
        let text = serde_json::to_string_pretty(&st).expect("json");
        crate::export::write_atomic(&self.run_dir.join(files::STATUS), |w| w.write_all(text.as_bytes()))
    }

    /// Marks the run failed (for the CLI to call on an error).
    pub fn mark_failed(run_dir: &Path, message: &str) {
        let mut st = read_status(run_dir).unwrap_or_default();
        st.state = "failed".into();
        st.message = message.into();
        let text = serde_json::to_string_pretty(&st).expect("json");
        let _ = crate::export::write_atomic(&run_dir.join(files::STATUS), |w| w.write_all(text.as_bytes()));
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(run_dir.join(files::LOG)) {
            let _ = writeln!(f, "failed: {message}");
        }
    }

    fn append_metric(&self, row: &MetricRow) -> Result<()> {
        let path = self.run_dir.join(files::METRICS);
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let line = serde_json::to_string(row).expect("json") + "\n";
        f.write_all(line.as_bytes()).map_err(|e| Error::io(&path, e))
    }

    /// Indices of the examples of micro-batch `g` (global count).
    fn micro_batch(&mut self, g: usize) -> Vec<usize> {
        let per = self.state.micro_batches_per_epoch;
        let (epoch, within) = (g / per, g % per);
        if self.epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<usize> = (0..self.train.len()).collect();
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(self.state.data_seed ^ ((epoch as u64) << 1)));
            self.epoch_order = Some((epoch, order));
        }
        let order = &self.epoch_order.as_ref().expect("drawn above").1;
        let b = self.cfg.batch_size;
        order[within * b..((within + 1) * b).min(order.len())].to_vec()
    }

    /// Loss of a batch of examples (graph kept for backward) and its token count.
    pub fn batch_loss(&self, batch: &[&Example], dropout_seed: Option<u64>) -> Result<(Tensor, usize)> {
        let device = &self.model.device;
        let t = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1);
        let b = batch.len();
        let eos = self.model.tokenizer.eos;
        let mut ids = vec![eos; b * t];
        for (i, e) in batch.iter().enumerate() {
            ids[i * t..i * t + e.ids.len()].copy_from_slice(&e.ids);
        }
        let tokens: usize = batch.iter().map(|e| e.ids.len()).sum();
        let ids_t = Tensor::from_vec(ids.clone(), (b, t), device)?;
        let hidden = self.model.hidden(&ids_t, Some(&self.lora), dropout_seed, None)?;
        let flat = hidden.reshape((b * t, self.model.cfg.hidden_size))?;
        match &self.head {
            None => {
                let mut rows = vec![];
                let mut targets = vec![];
                for (i, e) in batch.iter().enumerate() {
                    for p in e.price_start - 1..e.ids.len() - 1 {
                        rows.push((i * t + p) as u32);
                        targets.push(e.ids[p + 1]);
                    }
                }
                let rows = Tensor::from_vec(rows, targets.len(), device)?;
                let sel = flat.index_select(&rows, 0)?;
                let logits = self.model.logits(&self.model.final_norm(&sel)?)?;
                let targets = Tensor::from_vec(targets, rows.dim(0)?, device)?;
                Ok((super::model::cross_entropy(&logits, &targets)?, tokens))
            }
            Some(head) => {
                let rows: Vec<u32> =
                    batch.iter().enumerate().map(|(i, e)| (i * t + e.price_start - 1) as u32).collect();
                let rows = Tensor::from_vec(rows, b, device)?;
                let sel = flat.index_select(&rows, 0)?;
                let pred = head.forward(&self.model.final_norm(&sel)?)?;
                let target: Vec<f32> = batch.iter().map(|e| head.target(e.price) as f32).collect();
                let target = Tensor::from_vec(target, b, device)?;
                let loss = (pred - target).and_then(|d| d.sqr()).and_then(|d| d.mean_all())?;
                Ok((loss, tokens))
            }
        }
    }

    /// Mean validation loss (no dropout), weighted by batch size.
    pub fn validation_loss(&self) -> Result<Option<f64>> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let mut total = 0.0;
        let mut n = 0usize;
        let bs = self.cfg.batch_size.max(1) * 2;
        for chunk in self.val.chunks(bs) {
            let batch: Vec<&Example> = chunk.iter().collect();
            let loss = if self.hand_written {
                super::fast::loss_and_grads(&self.model, &self.lora, self.head.as_ref(), &batch, None, None)?.0
            } else {
                self.batch_loss(&batch, None)?.0.to_scalar::<f32>()? as f64
            };
            total += loss * chunk.len() as f64;
            n += chunk.len();
        }
        Ok(Some(total / n as f64))
    }

    /// One optimizer step: accumulate gradients over micro-batches, clip, update. Returns
    /// `(loss, grad_norm, lr, tokens)`.
    pub fn step(&mut self) -> Result<(f64, f64, f64, usize)> {
        let accum = self.cfg.grad_accum;
        let vars: Vec<Var> = self.vars().into_iter().cloned().collect();
        let mut sums: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut flat = self.hand_written.then(|| super::fast::zero_grads(&self.lora, self.head.as_ref()));
        let mut loss_sum = 0.0;
        let mut tokens = 0;
        for micro in 0..accum {
            let g = self.state.micro_batches + micro;
            let idx = self.micro_batch(g);
            let batch: Vec<&Example> = idx.iter().map(|&i| &self.train[i]).collect();
            let seed = self.cfg.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (g as u64).wrapping_mul(0x9E37_79B9);
            if let Some(flat) = flat.as_mut() {
                let scale = 1.0 / accum as f32;
                let (loss, n_tok) = super::fast::loss_and_grads(
                    &self.model,
                    &self.lora,
                    self.head.as_ref(),
                    &batch,
                    Some(seed),
                    Some((flat, scale)),
                )?;
                tokens += n_tok;
                loss_sum += loss;
                continue;
            }
            let (loss, n_tok) = self.batch_loss(&batch, Some(seed))?;
            tokens += n_tok;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            let scaled = (loss / accum as f64)?;
            let grads = scaled.backward()?;
            for (s, v) in sums.iter_mut().zip(&vars) {
                if let Some(gr) = grads.get(v) {
                    *s = Some(match s.take() {
                        Some(acc) => (acc + gr)?,
                        None => gr.clone(),
                    });
                }
            }
        }
        let grads: Vec<Tensor> = match flat {
            Some(flat) => flat
                .into_iter()
                .zip(&vars)
                .map(|(g, v)| Tensor::from_vec(g, v.shape(), v.device()).map_err(Error::from))
                .collect::<Result<_>>()?,
            None => sums
                .into_iter()
                .zip(&vars)
                .map(|(g, v)| g.map_or_else(|| v.as_tensor().zeros_like().map_err(Error::from), Ok))
                .collect::<Result<_>>()?,
        };
        let mut sq = 0f64;
        for g in &grads {
            sq += g.sqr().and_then(|s| s.sum_all()).and_then(|s| s.to_scalar::<f32>())? as f64;
        }
        let norm = sq.sqrt();
        let clip = (self.cfg.max_grad_norm / (norm + 1e-6)).min(1.0);
        let grads: Vec<Tensor> = if clip < 1.0 {
            grads.iter().map(|g| (g * clip).map_err(Error::from)).collect::<Result<_>>()?
        } else {
            grads
        };
        let lr = self.cfg.lr_at(self.state.step, self.state.total_steps);
        let var_refs: Vec<&Var> = vars.iter().collect();
        self.opt.step(&var_refs, &grads, lr, self.cfg.weight_decay)?;
        self.state.micro_batches += accum;
        self.state.step += 1;
        self.state.tokens_seen += tokens as u64;
        Ok((loss_sum / accum as f64, norm, lr, tokens))
    }

    /// Writes a checkpoint of the current step: a temporary folder renamed into place.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let ck = self.run_dir.join(files::CHECKPOINTS);
        let final_dir = ck.join(format!("checkpoint-{}", self.state.step));
        let tmp = ck.join(format!(".tmp-checkpoint-{}-{}", self.state.step, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        self.lora.save_peft(&tmp, &self.model.source, &self.model.cfg)?;
        if let Some(h) = &self.head {
            h.save(&tmp)?;
        }
        self.opt.save(&tmp.join("optimizer.safetensors"))?;
        let state = serde_json::to_string_pretty(&self.state).expect("json");
        crate::export::write_atomic(&tmp.join(files::STATE), |w| w.write_all(state.as_bytes()))?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
        Ok(final_dir)
    }

    /// Runs to the end or until `STOP` appears (or `should_stop` says so).
    pub fn run(&mut self, should_stop: &dyn Fn() -> bool) -> Result<Outcome> {
        let stop_file = self.run_dir.join(files::STOP);
        let _ = std::fs::remove_file(&stop_file);
        let msg = format!(
            "model {} ({} layers, hidden {}), {} LoRA parameters, {} train / {} validation items ({} shortened to {} tokens), {} steps",
            self.model.source,
            self.model.cfg.num_hidden_layers,
            self.model.cfg.hidden_size,
            self.cfg.lora.n_params(&self.model.cfg),
            self.train.len(),
            self.val.len(),
            self.truncated,
            self.cfg.max_seq_len,
            self.state.total_steps
        );
        self.log_line(&msg);
        self.write_status("running", "")?;
        if self.state.step == 0 && self.cfg.eval_every > 0 {
            self.evaluate_now()?;
        }
        let started = Instant::now();
        let base_elapsed = self.state.elapsed_s;
        while self.state.step < self.state.total_steps {
            let t0 = Instant::now();
            let (loss, norm, lr, tokens) = self.step()?;
            let dt = t0.elapsed().as_secs_f64();
            self.state.elapsed_s = base_elapsed + started.elapsed().as_secs_f64();
            if !loss.is_finite() {
                return Err(Error::Model(format!(
                    "loss is {loss} at step {}; lower the learning rate",
                    self.state.step
                )));
            }
            let row = MetricRow {
                step: self.state.step,
                epoch: self.state.micro_batches as f64 / self.state.micro_batches_per_epoch as f64,
                train_loss: Some(loss),
                lr: Some(lr),
                grad_norm: Some(norm),
                tokens_per_s: Some(tokens as f64 / dt),
                elapsed_s: self.state.elapsed_s,
                rss_mb: rss_mb(),
                ..Default::default()
            };
            self.append_metric(&row)?;
            let step = self.state.step;
            if self.cfg.log_every > 0 && (step.is_multiple_of(self.cfg.log_every) || step == 1) {
                let line = format!(
                    "step {step}/{} loss {loss:.4} lr {lr:.2e} grad-norm {norm:.3} {:.0} tok/s",
                    self.state.total_steps,
                    tokens as f64 / dt
                );
                self.log_line(&line);
            }
            let last = step == self.state.total_steps;
            if (self.cfg.eval_every > 0 && step.is_multiple_of(self.cfg.eval_every)) || last {
                self.evaluate_now()?;
            }
            let stop = should_stop() || stop_file.exists();
            if (self.cfg.save_every > 0 && step.is_multiple_of(self.cfg.save_every)) || last || stop {
                let dir = self.save_checkpoint()?;
                self.log_line(&format!("checkpoint {}", dir.display()));
            }
            self.write_status("running", "")?;
            if stop && !last {
                let _ = std::fs::remove_file(&stop_file);
                self.log_line(&format!("stopped at step {step}"));
                self.write_status("stopped", &format!("stopped at step {step}"))?;
                return Ok(Outcome::Stopped);
            }
        }
        self.log_line("finished");
        self.write_status("finished", "")?;
        Ok(Outcome::Finished)
    }

    fn evaluate_now(&mut self) -> Result<()> {
        if let Some(v) = self.validation_loss()? {
            self.state.val_loss = Some(v);
            let row = MetricRow {
                step: self.state.step,
                epoch: self.state.micro_batches as f64 / self.state.micro_batches_per_epoch as f64,
                val_loss: Some(v),
                elapsed_s: self.state.elapsed_s,
                ..Default::default()
            };
            self.append_metric(&row)?;
            let step = self.state.step;
            self.log_line(&format!("step {step} validation loss {v:.4}"));
        }
        Ok(())
    }
}

/// The trainable variables, in optimizer order: the adapters, then the regression head.
fn trainable<'a>(lora: &'a Lora, head: Option<&'a RegHead>) -> Vec<&'a Var> {
    let mut v = lora.vars();
    if let Some(h) = head {
        v.push(&h.w);
        v.push(&h.b);
    }
    v
}

/// Keeps only the metric rows up to `step` (a resumed run continues the same curve).
fn truncate_metrics(run_dir: &Path, step: usize) -> Result<()> {
    let path = run_dir.join(files::METRICS);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<MetricRow>(l).is_ok_and(|r| r.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    crate::export::write_atomic(&path, |w| w.write_all(kept.as_bytes()))
}

/// Resident memory of this process in MiB (Linux).
pub fn rss_mb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

/// `train --config RUN.toml | --resume RUN_DIR [--max-steps N]`: what both the `pricer` CLI and
/// the app's child process run. Prints the run folder first (the app reads it), marks the run
/// failed on an error. Returns the run folder, why it ended and the last step.
pub fn run_command(
    config: Option<&Path>,
    resume: Option<&Path>,
    max_steps: Option<usize>,
) -> Result<(PathBuf, Outcome, usize)> {
    let mut trainer = match (config, resume) {
        (_, Some(dir)) => Trainer::resume(dir, max_steps)?,
        (Some(path), None) => {
            let mut cfg = TrainConfig::load(path)?;
            if max_steps.is_some() {
                cfg.max_steps = max_steps;
            }
            Trainer::create(cfg)?
        }
        (None, None) => return Err(Error::InvalidInput("give --config RUN.toml or --resume RUN_DIR".into())),
    };
    let run_dir = trainer.run_dir.clone();
    println!("run folder: {}", run_dir.display());
    match trainer.run(&|| false) {
        Ok(outcome) => Ok((run_dir, outcome, trainer.state.step)),
        Err(e) => {
            Trainer::mark_failed(&run_dir, &e.to_string());
            Err(e)
        }
    }
}
