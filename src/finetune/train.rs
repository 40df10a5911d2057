//! The training loop: seeded data order, masked next-token loss (logits only at the price
//! positions) or the regression head, gradient accumulation, global-norm clipping, AdamW with a
//! warm-up + cosine schedule, validation, `metrics.jsonl`, checkpoints written to a temporary
//! folder and renamed (a half-written checkpoint is never taken for a good one), stop through a
//! `STOP` file and resume from the last checkpoint.

use super::adamw::AdamW;
use super::config::{Objective, TrainConfig};
pub use super::head::RegHead;
use super::lora::Lora;
use super::model::Model;
use super::run::{self, MetricRow, RunState, RunStatus, TrainerState, files};
use super::tokenize::{Example, encode_prompt};
use crate::jobs::{JobCtx, Level, Progress};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Reads the items of a file as `(prompt, price)` pairs through the loader the app and the CLI
/// use (item files as they are, raw metadata curated); malformed lines are skipped and reported
/// (count and the first ones with their line numbers) to the run's log and the job's sink.
fn read_pairs(path: &Path, log: &mut impl Write, ctx: &JobCtx) -> Result<Vec<(String, f64)>> {
    let opened = crate::dataset::open_paths(&[path.to_owned()], ctx)?;
    for (level, note) in opened.notes() {
        let _ = writeln!(log, "{note}");
        ctx.log(level, &note);
    }
    Ok(opened.table.iter().map(|r| (r.prompt.to_owned(), r.price)).collect())
}

/// An item as training sees it: `(prompt, price)`.
pub type Pair = (String, f64);

/// A run's training and validation items as `(prompt, price)` pairs: the validation file's, or
/// `val_items` (at most a fifth) held out of the training file by a draw from the run's seed;
/// then at most `max_train_items` training items. The trainer and `pricer export-run` both take
/// their items from here, so an exported run trains and validates on the same items.
pub fn run_items(cfg: &TrainConfig, log: &mut impl Write, ctx: &JobCtx) -> Result<(Vec<Pair>, Vec<Pair>)> {
    let mut train_pairs = read_pairs(&cfg.train, log, ctx)?;
    let val_pairs = match &cfg.validation {
        Some(p) => read_pairs(p, log, ctx)?,
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
    Ok((train_pairs, val_pairs))
}

/// Token counts of a training file's prompts in a model's tokenizer, for the form's preview of
/// what a sequence length would shorten (the model's weights are not loaded).
pub fn train_prompt_lengths(train: &Path, model: &str, ctx: &JobCtx) -> Result<Vec<usize>> {
    let tok = super::model::peek_tokenizer(model)?;
    let pairs = read_pairs(train, &mut std::io::sink(), ctx)?;
    let prompts: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
    super::tokenize::prompt_lengths(&tok, &prompts)
}

/// Encodes every prompt with the model's tokenizer and says what `seq_len` would do to them.
pub fn length_report(
    tok: &super::tokenize::ModelTokenizer,
    prompts: &[&str],
    seq_len: super::config::SeqLen,
) -> Result<super::config::LengthReport> {
    Ok(super::config::LengthReport::of(&super::tokenize::prompt_lengths(tok, prompts)?, seq_len))
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
    /// The sequence length of the run (`auto` resolved).
    pub seq_len: usize,
    log: Option<std::fs::File>,
    /// The shuffled order of the current epoch (drawn once per epoch).
    epoch_order: Option<(usize, Vec<usize>)>,
    /// Whether steps run the hand-written CPU forward/backward ([`super::fast`]) rather than
    /// candle's autograd (other devices, or `PRICER_AUTOGRAD=1`).
    pub hand_written: bool,
    /// The frozen layers' output per training example (hand-written step with only the top
    /// layers adapted): from the second epoch on, a step skips those layers.
    frozen: FrozenCache,
    /// Where log lines and progress go (besides `train.log`); its cancel token stops the run
    /// like the `STOP` file.
    pub ctx: JobCtx,
}

/// Most bytes [`FrozenCache`] holds (beyond it, the frozen layers are recomputed).
pub const FROZEN_CACHE_BYTES: usize = 6 << 30;

/// The frozen layers' output of the training examples, kept up to [`FROZEN_CACHE_BYTES`].
#[derive(Default)]
struct FrozenCache {
    entries: Vec<Option<super::fast::Frozen>>,
    bytes: usize,
}

impl FrozenCache {
    /// The entries of examples `idx` (shared; `None` where not cached).
    fn take(&mut self, idx: &[usize], n: usize) -> Vec<Option<super::fast::Frozen>> {
        self.entries.resize(n, None);
        idx.iter().map(|&i| self.entries[i].clone()).collect()
    }

    /// Keeps what a step computed, while there is room.
    fn put(&mut self, idx: &[usize], got: Vec<Option<super::fast::Frozen>>) {
        for (&i, e) in idx.iter().zip(got) {
            let Some(e) = e else { continue };
            if self.entries[i].is_some() {
                continue;
            }
            let size = e.len() * 4;
            if self.bytes + size <= FROZEN_CACHE_BYTES {
                self.bytes += size;
                self.entries[i] = Some(e);
            }
        }
    }
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
        Self::create_with(cfg, &JobCtx::default())
    }

    /// [`Trainer::create`] with log lines and progress sent to `ctx`. The configuration is
    /// validated here, once, and written to the run folder as the one `config.toml`.
    pub fn create_with(cfg: TrainConfig, ctx: &JobCtx) -> Result<Self> {
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
        crate::atomic::write_atomic_bytes(&run_dir.join(files::CONFIG), saved.to_toml().as_bytes())?;
        Self::build(saved, run_dir.clone(), None, ctx).inspect_err(|e| run::mark_failed(&run_dir, &e.to_string()))
    }

    /// Reopens a run at its last complete checkpoint (or from the start when it has none).
    /// `max_steps` may extend (or shorten) the run.
    pub fn resume(run_dir: &Path, max_steps: Option<usize>) -> Result<Self> {
        Self::resume_with(run_dir, max_steps, &JobCtx::default())
    }

    /// [`Trainer::resume`] with log lines and progress sent to `ctx`.
    pub fn resume_with(run_dir: &Path, max_steps: Option<usize>, ctx: &JobCtx) -> Result<Self> {
        let mut cfg = run::read_config(run_dir)?;
        if let Some(from) = &cfg.imported_from {
            return Err(Error::InvalidInput(format!(
                "{} was imported ({from}): it can be evaluated and compared, not resumed here",
                run_dir.display()
            )));
        }
        if max_steps.is_some() {
            cfg.max_steps = max_steps;
        }
        let last = run::checkpoints(run_dir).pop();
        Self::build(cfg, run_dir.to_owned(), last.map(|(_, p)| p), ctx)
            .inspect_err(|e| run::mark_failed(run_dir, &e.to_string()))
    }

    fn build(cfg: TrainConfig, run_dir: PathBuf, from: Option<PathBuf>, ctx: &JobCtx) -> Result<Self> {
        let device = super::model::pick_device(&cfg.device)?;
        let mut log = run::open_log(&run_dir)?;
        let source = super::model::ModelSource::parse(&cfg.model)?;
        let dtype = super::model::base_dtype(&cfg.base_dtype, &device)?;
        let _ = writeln!(
            log,
            "loading model {} ({dtype:?} on {})",
            cfg.model,
            if device.is_cpu() { "cpu" } else { "cuda" }
        );
        let model = Model::load_as(&source, &device, dtype, &crate::hub::HubOptions::default())?;
        let (train_pairs, val_pairs) = run_items(&cfg, &mut log, ctx)?;
        let mut truncated = 0;
        // `auto`: encode at the limit, then the longest training prompt is the length.
        let cap = cfg.max_seq_len.cap();
        let mut encode = |pairs: &[(String, f64)]| -> Result<Vec<Example>> {
            let mut out = Vec::with_capacity(pairs.len());
            for (prompt, price) in pairs {
                let ex = encode_prompt(&model.tokenizer, prompt, *price, cap)?;
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
        let seq_len = cfg.max_seq_len.resolve(train.iter().map(|e| e.ids.len()).max().unwrap_or(0));
        let _ = writeln!(log, "sequence length {seq_len} tokens (max_seq_len = {})", cfg.max_seq_len);
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
                let saved = run::read_trainer_state(dir)?;
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
                run::truncate_metrics(&run_dir, state.step)?;
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
            seq_len,
            log: Some(log),
            epoch_order: None,
            hand_written,
            frozen: FrozenCache::default(),
            ctx: ctx.clone(),
        })
    }

    fn vars(&self) -> Vec<&Var> {
        trainable(&self.lora, self.head.as_ref())
    }

    fn log_line(&mut self, msg: &str) {
        if let Some(f) = &mut self.log {
            let _ = writeln!(f, "[{:>8.1}s] {msg}", self.state.elapsed_s);
        }
        self.ctx.log(Level::Info, msg);
    }

    fn write_status(&self, state: RunState, message: &str) -> Result<()> {
        let st = RunStatus {
            state,
            pid: std::process::id(),
            step: self.state.step,
            total_steps: self.state.total_steps,
            message: message.into(),
            truncated: self.truncated,
            seq_len: self.seq_len,
            n_train: self.train.len(),
            n_val: self.val.len(),
        };
        run::write_status(&self.run_dir, &st)
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
                let pred = head.forward(&self.model.final_norm(&sel)?.to_dtype(DType::F32)?)?;
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
        let mut device_loss: Option<Tensor> = None;
        let mut device_norm: Option<Tensor> = None;
        let mut tokens = 0;
        for micro in 0..accum {
            let g = self.state.micro_batches + micro;
            let idx = self.micro_batch(g);
            let batch: Vec<&Example> = idx.iter().map(|&i| &self.train[i]).collect();
            let seed = self.cfg.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (g as u64).wrapping_mul(0x9E37_79B9);
            if let Some(flat) = flat.as_mut() {
                let scale = 1.0 / accum as f32;
                let mut frozen = self.frozen.take(&idx, self.train.len());
                let (loss, n_tok) = super::fast::loss_and_grads_frozen(
                    &self.model,
                    &self.lora,
                    self.head.as_ref(),
                    &batch,
                    Some(seed),
                    Some((flat, scale)),
                    Some(&mut frozen),
                )?;
                self.frozen.put(&idx, frozen);
                tokens += n_tok;
                loss_sum += loss;
                continue;
            }
            if !self.model.device.is_cpu() {
                // The device's generator draws the dropout masks: seeded per micro-batch so a
                // resumed run draws what an unbroken one would.
                self.model.device.set_seed(seed)?;
            }
            let (loss, n_tok) = self.batch_loss(&batch, Some(seed))?;
            tokens += n_tok;
            // Kept on the device: one read-out per step, not one per micro-batch.
            let detached = loss.detach();
            device_loss = Some(match device_loss.take() {
                Some(acc) => (acc + detached)?,
                None => detached,
            });
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
        let (grads, norm) = match flat {
            Some(flat) => {
                let grads: Vec<Tensor> = flat
                    .into_iter()
                    .zip(&vars)
                    .map(|(g, v)| Tensor::from_vec(g, v.shape(), v.device()).map_err(Error::from))
                    .collect::<Result<_>>()?;
                let mut sq = 0f64;
                for g in &grads {
                    sq += g.sqr().and_then(|s| s.sum_all()).and_then(|s| s.to_scalar::<f32>())? as f64;
                }
                let norm = sq.sqrt();
                let clip = (self.cfg.max_grad_norm / (norm + 1e-6)).min(1.0);
                let grads = if clip < 1.0 {
                    grads.iter().map(|g| (g * clip).map_err(Error::from)).collect::<Result<_>>()?
                } else {
                    grads
                };
                (grads, Some(norm))
            }
            None => {
                let grads: Vec<Tensor> = sums
                    .into_iter()
                    .zip(&vars)
                    .map(|(g, v)| g.map_or_else(|| v.as_tensor().zeros_like().map_err(Error::from), Ok))
                    .collect::<Result<_>>()?;
                // Norm and clip factor computed on the device (no read-out between backward
                // and the update); a factor of exactly 1 leaves the gradients as they are.
                let sq: Vec<Tensor> = grads.iter().map(|g| g.sqr()?.sum_all()).collect::<candle_core::Result<_>>()?;
                let norm_t = Tensor::stack(&sq, 0)?.sum_all()?.sqrt()?;
                let clip = ((norm_t.clone() + 1e-6)?.recip()? * self.cfg.max_grad_norm)?.minimum(1.0)?;
                let grads = grads.iter().map(|g| g.broadcast_mul(&clip).map_err(Error::from)).collect::<Result<_>>()?;
                device_norm = Some(norm_t);
                (grads, None)
            }
        };
        let lr = self.cfg.lr_at(self.state.step, self.state.total_steps);
        let var_refs: Vec<&Var> = vars.iter().collect();
        self.opt.step(&var_refs, &grads, lr, self.cfg.weight_decay)?;
        let norm = match (norm, device_loss, device_norm) {
            (Some(norm), _, _) => norm,
            (None, Some(l), Some(n)) => {
                let both = Tensor::stack(&[l.to_dtype(DType::F32)?, n.to_dtype(DType::F32)?], 0)?.to_vec1::<f32>()?;
                loss_sum = both[0] as f64;
                both[1] as f64
            }
            _ => return Err(Error::Model("no loss was computed for this step".into())),
        };
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
        crate::atomic::write_atomic_json(&tmp.join(files::STATE), &self.state)?;
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
            self.seq_len,
            self.state.total_steps
        );
        self.log_line(&msg);
        let n_layers = self.model.cfg.num_hidden_layers;
        let first = self.lora.first_layer(n_layers);
        if first > 0 && first < n_layers {
            let cached = if self.hand_written {
                format!(
                    "; their output is kept per example (up to {} GiB), so after the first epoch a step skips them",
                    FROZEN_CACHE_BYTES >> 30
                )
            } else {
                String::new()
            };
            self.log_line(&format!(
                "LoRA on layers {first}–{} of {n_layers}: layers 0–{} are frozen and get no backward pass{cached}",
                n_layers - 1,
                first - 1
            ));
        }
        self.write_status(RunState::Running, "")?;
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
            run::append_metric(&self.run_dir, &row)?;
            let step = self.state.step;
            self.ctx.report(&Progress {
                stage: format!("step {step}/{}", self.state.total_steps),
                done: step as u64,
                total: self.state.total_steps as u64,
                n_items: 0,
            });
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
            let stop = should_stop() || self.ctx.cancel.is_cancelled() || stop_file.exists();
            if (self.cfg.save_every > 0 && step.is_multiple_of(self.cfg.save_every)) || last || stop {
                let dir = self.save_checkpoint()?;
                self.log_line(&format!("checkpoint {}", dir.display()));
            }
            self.write_status(RunState::Running, "")?;
            if stop && !last {
                let _ = std::fs::remove_file(&stop_file);
                self.log_line(&format!("stopped at step {step}"));
                self.write_status(RunState::Stopped, &format!("stopped at step {step}"))?;
                return Ok(Outcome::Stopped);
            }
        }
        self.log_line("finished");
        self.write_status(RunState::Finished, "")?;
        Ok(Outcome::Finished)
    }

    fn evaluate_now(&mut self) -> Result<()> {
        let Some(v) = self.validation_loss()? else { return Ok(()) };
        self.state.val_loss = Some(v);
        let priced = self.price_validation()?;
        let row = MetricRow {
            step: self.state.step,
            epoch: self.state.micro_batches as f64 / self.state.micro_batches_per_epoch as f64,
            val_loss: Some(v),
            elapsed_s: self.state.elapsed_s,
            val_error: priced.as_ref().map(|r| r.mean_error),
            val_rmsle: priced.as_ref().map(|r| r.rmsle),
            val_hits: priced.as_ref().map(|r| r.hit_percent()),
            ..Default::default()
        };
        run::append_metric(&self.run_dir, &row)?;
        let step = self.state.step;
        let prices = priced.map_or_else(String::new, |r| {
            format!(
                ", {} items priced: Error ${:.2} RMSLE {:.2} Hits {:.1}%",
                r.items.len(),
                r.mean_error,
                r.rmsle,
                r.hit_percent()
            )
        });
        self.log_line(&format!("step {step} validation loss {v:.4}{prices}"));
        Ok(())
    }

    /// Prices the first `val_price_items` validation items with the run's default decode (the
    /// head for the regression objective), batched, and scores them with the Tester.
    pub fn price_validation(&self) -> Result<Option<crate::tester::TestReport>> {
        let n = self.cfg.val_price_items.min(self.val.len());
        if n == 0 {
            return Ok(None);
        }
        let decode = super::Predictor::default_decode(self.head.is_some(), self.model.tokenizer.number_tokens);
        let mut pairs = Vec::with_capacity(n);
        for chunk in self.val[..n].chunks(16) {
            let prompts: Vec<&[u32]> = chunk.iter().map(|e| &e.ids[..e.price_start]).collect();
            let guesses = super::infer::price_with(
                &self.model,
                Some(&self.lora),
                self.head.as_ref(),
                decode,
                super::infer::TREE_THRESHOLD,
                super::infer::BackendChoice::Best,
                &prompts,
            )?;
            pairs.extend(chunk.iter().map(|e| e.price).zip(guesses));
        }
        crate::tester::TestReport::new("validation", &pairs, n).map(Some)
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

/// Resident memory of this process in MiB (Linux).
pub fn rss_mb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

/// `train --config RUN.toml|- | --resume RUN_DIR [--max-steps N]` (`-`: the configuration on
/// standard input, as the app's supervisor sends it): what both the `pricer` CLI and
/// the app's child process run. `on_start` gets the run folder before the first step (the CLI
/// prints it); log lines go to `ctx`. Marks the run failed on an error. Returns the run folder,
/// why it ended and the last step.
pub fn run_command(
    config: Option<&Path>,
    resume: Option<&Path>,
    max_steps: Option<usize>,
    ctx: &JobCtx,
    on_start: &dyn Fn(&Path),
) -> Result<(PathBuf, Outcome, usize)> {
    let mut trainer = match (config, resume) {
        (_, Some(dir)) => Trainer::resume_with(dir, max_steps, ctx)?,
        (Some(path), None) => {
            let mut cfg = if path.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| Error::io("standard input", e))?;
                TrainConfig::parse(&text, Path::new("."), "the configuration on standard input")?
            } else {
                TrainConfig::load(path)?
            };
            if max_steps.is_some() {
                cfg.max_steps = max_steps;
            }
            Trainer::create_with(cfg, ctx)?
        }
        (None, None) => return Err(Error::InvalidInput("give --config RUN.toml or --resume RUN_DIR".into())),
    };
    let run_dir = trainer.run_dir.clone();
    on_start(&run_dir);
    match trainer.run(&|| false) {
        Ok(outcome) => Ok((run_dir, outcome, trainer.state.step)),
        Err(e) => {
            run::mark_failed(&run_dir, &e.to_string());
            Err(e)
        }
    }
}
