//! Importing another trainer's run: the output folder of a Hugging Face `Trainer` (which is what
//! axolotl, TRL and most fine-tuning scripts leave) becomes a run folder like ours, so that the
//! Fine-tune tab shows its curves beside our runs, compares its configuration with theirs, and
//! evaluates its PEFT checkpoints with the same engine.
//!
//! What is read:
//! - `trainer_state.json` (at the top, else the newest `checkpoint-N/`'s): `log_history` rows with
//!   `loss` become train rows (step, epoch, learning rate, grad norm), rows with `eval_loss`
//!   validation rows; `max_steps`, `train_batch_size`, the total run time.
//! - every `checkpoint-N/` with `adapter_model.safetensors` + `adapter_config.json`, and the
//!   final adapter at the top (as `checkpoint-<global_step>` when no checkpoint has that step);
//!   adapters saved as pickles (`adapter_model.bin`) are refused by name.
//! - `adapter_config.json`: base model, r, alpha, dropout, target modules.
//!
//! What is written (into a temporary folder renamed into place at the end, so a failed import
//! leaves nothing half-made): `config.toml` (with `imported_from`, which makes the run
//! read-only), `metrics.jsonl`, `status.json` (finished), `train.log`, `checkpoints/checkpoint-N/`
//! with the adapter files and our `trainer_state.json`, and the source's state as
//! `source_trainer_state.json`.

use super::config::TrainConfig;
use super::lora::LoraConfig;
use super::run::{self, MetricRow, RunState, RunStatus, TrainerState, files};
use crate::{Error, Result};
use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What to import and where.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The folder holding run folders.
    pub runs_dir: PathBuf,
    /// The run folder's name (default `imported-<source folder name>`).
    pub name: Option<String>,
    /// The base model (file, folder or Hub id) when the adapter's `base_model_name_or_path` is not
    /// what this machine loads.
    pub model: Option<String>,
}

/// What an import made.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The new run folder.
    pub dir: PathBuf,
    /// Train rows and validation rows of `metrics.jsonl`.
    pub train_rows: usize,
    /// Validation rows.
    pub val_rows: usize,
    /// Steps of the checkpoints imported.
    pub checkpoints: Vec<usize>,
    /// The base model the run's config names.
    pub model: String,
}

/// The parts of a Hugging Face `trainer_state.json` used here.
#[derive(Debug, Deserialize)]
struct HfState {
    #[serde(default)]
    log_history: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    global_step: usize,
    #[serde(default)]
    max_steps: usize,
    #[serde(default)]
    train_batch_size: Option<usize>,
    #[serde(default)]
    num_train_epochs: Option<f64>,
}

const ADAPTER: &str = "adapter_model.safetensors";
const ADAPTER_CONFIG: &str = "adapter_config.json";

/// `checkpoint-N` folders of a trainer's output folder, by step.
fn source_checkpoints(src: &Path) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(src)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let step = e.file_name().to_str()?.strip_prefix("checkpoint-")?.parse().ok()?;
                    e.path().is_dir().then(|| (step, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Imports a trainer's output folder as a run folder (see the module's text).
pub fn import_run(src: &Path, opts: &ImportOptions) -> Result<Imported> {
    if !src.is_dir() {
        return Err(Error::InvalidInput(format!("{} is not a folder", src.display())));
    }
    let ckpts = source_checkpoints(src);
    let state_path = std::iter::once(src.join(files::STATE))
        .chain(ckpts.iter().rev().map(|(_, p)| p.join(files::STATE)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "{} holds no trainer_state.json (neither at the top nor in a checkpoint-N folder): \
                 not the output folder of a Hugging Face Trainer or axolotl run",
                src.display()
            ))
        })?;
    let state_text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: HfState = serde_json::from_str(&state_text)
        .map_err(|e| Error::InvalidInput(format!("{}: not a trainer state: {e}", state_path.display())))?;

    // Adapters: each checkpoint's, and the final one at the top under its own step.
    let mut adapters: Vec<(usize, PathBuf)> = vec![];
    for (step, dir) in &ckpts {
        if dir.join(ADAPTER).is_file() {
            adapters.push((*step, dir.clone()));
        } else if dir.join("adapter_model.bin").is_file() {
            return Err(Error::InvalidInput(format!(
                "{}: adapter_model.bin is a pickle, which is not read here; save adapters with \
                 safe_serialization (the default of PEFT and Trainer)",
                dir.display()
            )));
        }
    }
    if src.join(ADAPTER).is_file() && !adapters.iter().any(|(s, _)| *s == state.global_step) {
        adapters.push((state.global_step, src.to_owned()));
        adapters.sort();
    }
    let adapter_cfg_path =
        adapters.last().map(|(_, d)| d.join(ADAPTER_CONFIG)).filter(|p| p.is_file()).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{} holds no PEFT adapter (adapter_model.safetensors with adapter_config.json) at the top \
                 or in a checkpoint-N folder",
                src.display()
            ))
        })?;
    let adapter_text = std::fs::read_to_string(&adapter_cfg_path).map_err(|e| Error::io(&adapter_cfg_path, e))?;
    let adapter: serde_json::Value = serde_json::from_str(&adapter_text)
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", adapter_cfg_path.display())))?;

    let (rows, val_rows) = metric_rows(&state);
    let train_rows = rows.len() - val_rows;
    let model = match &opts.model {
        Some(m) => m.clone(),
        None => base_model(&adapter, src),
    };
    let total_steps = if state.max_steps > 0 { state.max_steps } else { state.global_step };
    let peak_lr = rows.iter().filter_map(|r| r.lr).fold(0.0, f64::max);
    let cfg = TrainConfig {
        model: model.clone(),
        name: None,
        runs_dir: opts.runs_dir.clone(),
        lora: LoraConfig {
            r: adapter["r"].as_u64().unwrap_or(8) as usize,
            alpha: adapter["lora_alpha"].as_f64().unwrap_or(8.0),
            dropout: adapter["lora_dropout"].as_f64().unwrap_or(0.0),
            target_modules: {
                let mut t: Vec<String> = adapter["target_modules"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                // PEFT writes a set, in no fixed order.
                t.sort_by_key(|m| super::lora::Target::parse(m).map_or(usize::MAX, |t| t as usize));
                t
            },
            layers_to_transform: super::lora::peft_layers(&adapter["layers_to_transform"])
                .map_err(|what| Error::InvalidInput(format!("{}: {what}", adapter_cfg_path.display())))?,
        },
        max_steps: Some(total_steps),
        epochs: state.num_train_epochs.unwrap_or(1.0),
        batch_size: state.train_batch_size.unwrap_or(0),
        learning_rate: peak_lr,
        imported_from: Some(format!("Hugging Face Trainer output {}", src.display())),
        ..TrainConfig::default()
    };

    let name = opts.name.clone().unwrap_or_else(|| {
        format!("imported-{}", src.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned()))
    });
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(Error::InvalidInput(format!("{name:?} is not a run folder name")));
    }
    let dir = opts.runs_dir.join(&name);
    if dir.exists() {
        return Err(Error::InvalidInput(format!("{} already exists: choose another name", dir.display())));
    }
    std::fs::create_dir_all(&opts.runs_dir).map_err(|e| Error::io(&opts.runs_dir, e))?;
    let tmp = opts.runs_dir.join(format!(".{name}.importing"));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_run(&tmp, &cfg, &rows, &state, &state_text, &adapters, total_steps, src);
    let done = written.and_then(|()| std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e)));
    if let Err(e) = done {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(Imported { dir, train_rows, val_rows, checkpoints: adapters.iter().map(|(s, _)| *s).collect(), model })
}

/// The run folder's files, in `tmp`.
#[allow(clippy::too_many_arguments)]
fn write_run(
    tmp: &Path,
    cfg: &TrainConfig,
    rows: &[MetricRow],
    state: &HfState,
    state_text: &str,
    adapters: &[(usize, PathBuf)],
    total_steps: usize,
    src: &Path,
) -> Result<()> {
    std::fs::create_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    crate::atomic::write_atomic_bytes(&tmp.join(files::CONFIG), cfg.to_toml().as_bytes())?;
    crate::atomic::write_atomic(&tmp.join(files::METRICS), |w| {
        for r in rows {
            serde_json::to_writer(&mut *w, r)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    crate::atomic::write_atomic_bytes(&tmp.join("source_trainer_state.json"), state_text.as_bytes())?;
    let elapsed_at = |step: usize| rows.iter().filter(|r| r.step <= step).map(|r| r.elapsed_s).fold(0.0, f64::max);
    for (step, from) in adapters {
        let to = tmp.join(files::CHECKPOINTS).join(format!("checkpoint-{step}"));
        std::fs::create_dir_all(&to).map_err(|e| Error::io(&to, e))?;
        for f in [ADAPTER, ADAPTER_CONFIG] {
            std::fs::copy(from.join(f), to.join(f)).map_err(|e| Error::io(from.join(f), e))?;
        }
        let ours = TrainerState {
            step: *step,
            total_steps,
            micro_batches: 0,
            micro_batches_per_epoch: 0,
            data_seed: 0,
            n_train: 0,
            tokens_seen: 0,
            elapsed_s: elapsed_at(*step),
            val_loss: rows.iter().filter(|r| r.step <= *step).rev().find_map(|r| r.val_loss),
        };
        crate::atomic::write_atomic_json(&to.join(files::STATE), &ours)?;
    }
    let status = RunStatus {
        state: RunState::Finished,
        pid: 0,
        step: state.global_step,
        total_steps,
        message: format!("imported from {}", src.display()),
        ..RunStatus::default()
    };
    run::write_status(tmp, &status)?;
    let log = format!(
        "imported from {} (Hugging Face Trainer state {} steps of {total_steps}; {} metric rows; checkpoints {})\nbase model: {}\n",
        src.display(),
        state.global_step,
        rows.len(),
        adapters.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>().join(", "),
        cfg.model,
    );
    crate::atomic::write_atomic_bytes(&tmp.join(files::LOG), log.as_bytes())
}

/// Our metric rows from the trainer's log history (train rows: `loss`; validation rows:
/// `eval_loss`; the closing summary row is left out) and how many are validation rows. Seconds
/// are spread over the steps from the summary's `train_runtime` when there is one.
fn metric_rows(state: &HfState) -> (Vec<MetricRow>, usize) {
    let num = |m: &serde_json::Map<String, serde_json::Value>, k: &str| m.get(k).and_then(serde_json::Value::as_f64);
    let runtime = state.log_history.iter().find_map(|m| num(m, "train_runtime"));
    let steps = state.global_step.max(1) as f64;
    let mut rows = vec![];
    let mut val = 0;
    for m in &state.log_history {
        let step = num(m, "step").unwrap_or(0.0) as usize;
        let base = MetricRow {
            step,
            epoch: num(m, "epoch").unwrap_or(0.0),
            elapsed_s: runtime.map_or(0.0, |t| t * step as f64 / steps),
            ..MetricRow::default()
        };
        if let Some(loss) = num(m, "loss") {
            rows.push(MetricRow {
                train_loss: Some(loss),
                lr: num(m, "learning_rate"),
                grad_norm: num(m, "grad_norm"),
                ..base
            });
        } else if let Some(loss) = num(m, "eval_loss") {
            rows.push(MetricRow { val_loss: Some(loss), ..base });
            val += 1;
        }
    }
    (rows, val)
}

/// The adapter's base model as this machine would load it: its `base_model_name_or_path` when it
/// is a Hub id or a folder that exists as written or beside the imported folder.
fn base_model(adapter: &serde_json::Value, src: &Path) -> String {
    let named = adapter["base_model_name_or_path"].as_str().unwrap_or_default();
    let p = Path::new(named);
    let found = if p.exists() {
        Some(p.to_owned())
    } else if p.is_relative() {
        src.ancestors().skip(1).map(|root| root.join(p)).find(|c| c.exists())
    } else {
        None
    };
    // Absolute, since the run's config is read relative to the run folder.
    found.map_or_else(|| named.to_owned(), |f| std::fs::canonicalize(&f).unwrap_or(f).display().to_string())
}
