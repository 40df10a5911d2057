//! Handing a run to axolotl, the maintained trainer that runs LoRA/QLoRA on 1..N GPUs and nodes
//! (torchrun, DeepSpeed, FSDP, Ray): `pricer export-run RUN_CONFIG --to axolotl DIR` writes an
//! axolotl YAML equivalent to the run, its items as `input_output` JSON lines, and launch files
//! for SkyPilot and Slurm.
//!
//! The data keeps our completion-only loss exactly: each line has two segments, the prompt up to
//! and including `Price is $` (`label: false`, no loss) and the price (`label: true`). axolotl
//! tokenizes each segment alone without special tokens and concatenates them, so the first
//! segment starts with the BOS token's text when the model wants one, and a description is
//! shortened here, at the run's sequence length and exactly where our trainer cuts it
//! ([`super::tokenize::encode_prompt`]), because axolotl would drop a sequence that is too long.

use super::config::{Objective, TrainConfig};
use super::tokenize::{ModelTokenizer, encode_prompt};
use crate::items::PREFIX;
use crate::jobs::JobCtx;
use crate::{Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the export needs beyond the run's configuration.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// The base model as axolotl loads it (a Hub id or a folder); default: from the run's model.
    pub base_model: Option<String>,
    /// Load the base in 4 bits (QLoRA, as the original run did).
    pub qlora: bool,
    /// GPUs for the launch files, SkyPilot's form (`A100:1`, `H100:8`).
    pub gpus: String,
    /// A `tokenizer.json` to cut descriptions with, when the run's model does not say.
    pub tokenizer: Option<PathBuf>,
}

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportReport {
    /// The files, in the order written.
    pub files: Vec<PathBuf>,
    /// Training and validation lines.
    pub train: usize,
    pub val: usize,
    /// Prompts whose description was shortened to fit the sequence length.
    pub shortened: usize,
    /// The sequence length written: `auto` resolved to the longest training sequence, a number
    /// raised to the longest sequence when a long price takes one past it.
    pub sequence_len: usize,
    /// The base model written.
    pub base_model: String,
}

/// The Hugging Face id (or folder) of a run's model: a Hub id or a folder as it is; a GGUF file
/// of a model we know by its file name; otherwise `None` (the user names it).
pub fn hf_base_model(model: &str) -> Option<String> {
    let known = [
        ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        ("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct"),
        ("llama-3.2-1b-instruct", "meta-llama/Llama-3.2-1B-Instruct"),
        ("llama-3.2-3b-instruct", "meta-llama/Llama-3.2-3B-Instruct"),
        ("meta-llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("meta-llama-3.1-8b", "meta-llama/Llama-3.1-8B"),
        ("llama-3.1-8b", "meta-llama/Llama-3.1-8B"),
    ];
    match super::model::ModelSource::parse(model).ok()? {
        super::model::ModelSource::Hub(id) => Some(id),
        super::model::ModelSource::HfDir(d) => Some(d.display().to_string()),
        super::model::ModelSource::Gguf(p) => {
            let name = p.file_name()?.to_string_lossy().to_lowercase();
            known.iter().find(|(k, _)| name.starts_with(k)).map(|(_, id)| id.to_string())
        }
    }
}

/// The tokenizer the run's prompts are cut with: `--tokenizer`, else the model's own (a GGUF's
/// metadata, a folder's `tokenizer.json`), else for a Llama 3.x Hub id the built-in Llama 3.1 one.
fn tokenizer_for(cfg: &TrainConfig, opts: &ExportOptions) -> Result<ModelTokenizer> {
    if let Some(t) = &opts.tokenizer {
        return ModelTokenizer::from_file(t);
    }
    match super::model::peek_tokenizer(&cfg.model) {
        Ok(t) => Ok(t),
        Err(e) => {
            let id = cfg.model.to_lowercase();
            if id.starts_with("meta-llama/") && id.contains("llama-3") {
                let t = crate::tokenizer::PriceTokenizer::llama31()?;
                Ok(ModelTokenizer::from_tokenizer(t.inner()?.clone()))
            } else {
                Err(Error::InvalidInput(format!("{e}; give --tokenizer tokenizer.json")))
            }
        }
    }
}

/// The two segments of one item: the prompt up to `Price is $` (BOS text first when the model
/// wants one, the description shortened as our trainer shortens it at `max_len`) and the price
/// text. Also whether the description was shortened.
pub fn segments(tok: &ModelTokenizer, prompt: &str, max_len: usize) -> Result<(String, String, bool)> {
    let pos =
        prompt.rfind(PREFIX).ok_or_else(|| Error::InvalidInput(format!("prompt has no {PREFIX:?}: {prompt:.60}")))?;
    let price_pos = pos + PREFIX.len();
    let price = prompt[price_pos..].to_owned();
    if price.trim().is_empty() {
        return Err(Error::InvalidInput(format!("item without a price after `Price is $`: {prompt:.60}")));
    }
    let (ids, offs) = tok.encode_with_offsets(prompt)?;
    let ex = encode_prompt(tok, prompt, 0.0, max_len)?;
    // Special tokens the tokenizer put first (their offsets are empty), as text.
    let bos: String =
        ids.iter().zip(&offs).take_while(|(_, (s, e))| s == e).filter_map(|(&id, _)| tok.tok.id_to_token(id)).collect();
    let n_special = ids.iter().zip(&offs).take_while(|(_, (s, e))| s == e).count();
    let head = if ex.truncated {
        // Kept, as `encode_prompt` keeps them: the first tokens of the description, then
        // `\n\nPrice is $` from the prompt.
        let full_price_start = offs.iter().position(|&(s, e)| s >= price_pos && e > s).unwrap_or(ids.len());
        let tail_from = prompt[..pos].trim_end().len();
        let tail_start = offs.iter().position(|&(s, e)| e > tail_from && e > s).unwrap_or(ids.len());
        let keep_head = tail_start - (full_price_start - ex.price_start);
        let head_end = if keep_head > n_special { offs[keep_head - 1].1 } else { 0 };
        format!("{}{}", &prompt[..head_end], &prompt[offs[tail_start].0..price_pos])
    } else {
        prompt[..price_pos].to_owned()
    };
    Ok((format!("{bos}{head}"), price, ex.truncated))
}

/// One `input_output` line.
fn line(input: &str, output: &str) -> String {
    serde_json::json!({"segments": [{"label": false, "text": input}, {"label": true, "text": output}]}).to_string()
}

/// The axolotl YAML of a run.
pub fn axolotl_yaml(
    cfg: &TrainConfig,
    base: &str,
    seq_len: usize,
    has_val: bool,
    opts: &ExportOptions,
    pad: &str,
) -> String {
    let name = cfg.name.clone().unwrap_or_else(|| "pricer-run".into());
    let mut y = String::new();
    let q = |s: &str| serde_json::to_string(s).expect("string");
    let _ = writeln!(
        y,
        "# Written by `pricer export-run` from the run configuration {name}; `axolotl train axolotl.yaml`."
    );
    let _ = writeln!(y, "base_model: {}", q(base));
    if opts.qlora {
        let _ = writeln!(y, "load_in_4bit: true\nadapter: qlora");
    } else {
        let _ = writeln!(y, "adapter: lora");
    }
    let _ = writeln!(y, "lora_r: {}", cfg.lora.r);
    let _ = writeln!(y, "lora_alpha: {}", cfg.lora.alpha);
    let _ = writeln!(y, "lora_dropout: {}", cfg.lora.dropout);
    let targets: Vec<String> = cfg.lora.target_modules.iter().map(|t| q(t)).collect();
    let _ = writeln!(y, "lora_target_modules: [{}]", targets.join(", "));
    if !cfg.lora.layers_to_transform.is_empty() {
        let layers: Vec<String> = cfg.lora.layers_to_transform.iter().map(|l| l.to_string()).collect();
        let _ = writeln!(y, "peft_layers_to_transform: [{}]", layers.join(", "));
    }
    let _ = writeln!(y, "sequence_len: {seq_len}");
    let _ = writeln!(y, "sample_packing: false\npad_to_sequence_len: false");
    let _ = writeln!(y, "# The loss only on the price segment (label: true), as in pricer's trainer.");
    let _ = writeln!(y, "train_on_inputs: false");
    let _ = writeln!(y, "datasets:\n  - path: train.jsonl\n    ds_type: json\n    type: input_output");
    if has_val {
        let _ = writeln!(
            y,
            "test_datasets:\n  - path: val.jsonl\n    ds_type: json\n    type: input_output\n    split: train"
        );
    } else {
        let _ = writeln!(y, "val_set_size: 0");
    }
    let _ = writeln!(y, "micro_batch_size: {}", cfg.batch_size);
    let _ = writeln!(y, "gradient_accumulation_steps: {}", cfg.grad_accum);
    match cfg.max_steps {
        Some(n) => {
            let _ = writeln!(y, "max_steps: {n}");
        }
        None => {
            let _ = writeln!(y, "num_epochs: {}", cfg.epochs);
        }
    }
    let _ = writeln!(y, "optimizer: adamw_torch\nlearning_rate: {}", cfg.learning_rate);
    let _ = writeln!(y, "lr_scheduler: cosine\nwarmup_ratio: {}", cfg.warmup_ratio);
    let _ = writeln!(y, "weight_decay: {}\nmax_grad_norm: {}", cfg.weight_decay, cfg.max_grad_norm);
    let _ = writeln!(y, "seed: {}", cfg.seed);
    let _ = writeln!(y, "bf16: auto\ntf32: true\ngradient_checkpointing: false");
    let every = |n: usize| if n == 0 { "null".to_owned() } else { n.to_string() };
    let _ = writeln!(y, "logging_steps: {}", cfg.log_every.max(1));
    let _ = writeln!(y, "eval_steps: {}", every(cfg.eval_every));
    let _ = writeln!(y, "save_steps: {}", every(cfg.save_every));
    let _ = writeln!(y, "save_safetensors: true");
    let _ = writeln!(y, "output_dir: ./outputs/{name}");
    let _ = writeln!(y, "special_tokens:\n  pad_token: {}", q(pad));
    y
}

/// A SkyPilot task that installs axolotl and runs the export on `gpus`.
pub fn skypilot_yaml(name: &str, gpus: &str) -> String {
    format!(
        "# sky launch -c {name} sky.yaml   (then: sky logs {name}; sky down {name})\n\
         name: {name}\n\
         resources:\n  accelerators: {gpus}\n\
         workdir: .\n\
         setup: |\n  pip install -U packaging setuptools wheel ninja\n  pip install --no-build-isolation \"axolotl[flash-attn,deepspeed]\"\n\
         run: |\n  axolotl train axolotl.yaml\n"
    )
}

/// A Slurm batch script for one node with the GPUs of `gpus` (`A100:4` → 4).
pub fn slurm_sbatch(name: &str, gpus: &str) -> String {
    let n = gpus.rsplit(':').next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(1);
    format!(
        "#!/bin/bash\n\
         # sbatch train.sbatch   (axolotl installed in the job's environment: pip install \"axolotl[flash-attn]\")\n\
         #SBATCH --job-name={name}\n#SBATCH --nodes=1\n#SBATCH --gpus-per-node={n}\n#SBATCH --time=08:00:00\n\
         #SBATCH --output=%x-%j.log\n\
         set -euo pipefail\n\
         cd \"$SLURM_SUBMIT_DIR\"\n\
         axolotl train axolotl.yaml\n"
    )
}

/// Writes `axolotl.yaml`, `train.jsonl`, `val.jsonl` (when the run validates), `sky.yaml` and
/// `train.sbatch` into `dir` (each atomically).
pub fn export(cfg: &TrainConfig, dir: &Path, opts: &ExportOptions, ctx: &JobCtx) -> Result<ExportReport> {
    cfg.validate()?;
    if cfg.objective == Objective::Regression {
        return Err(Error::InvalidInput(
            "the regression objective (a price head) is pricer's own; axolotl trains the next-token objective".into(),
        ));
    }
    let base = match &opts.base_model {
        Some(b) => b.clone(),
        None => hf_base_model(&cfg.model).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{}: which Hugging Face model is this? give --base-model OWNER/NAME",
                cfg.model
            ))
        })?,
    };
    let tok = tokenizer_for(cfg, opts)?;
    let (train, val) = super::train::run_items(cfg, &mut std::io::sink(), ctx)?;
    if train.is_empty() {
        return Err(Error::InvalidInput("no training items".into()));
    }
    // As the trainer: every prompt cut at the cap (the number, or `auto`'s limit), and `auto`
    // resolved to the longest training sequence.
    let cap = cfg.max_seq_len.cap();
    let mut longest = 0;
    for (p, price) in &train {
        longest = longest.max(encode_prompt(&tok, p, *price, cap)?.ids.len());
    }
    // A long price takes a sequence a token or two past the number (never cut), and axolotl drops
    // a sequence longer than `sequence_len`: the YAML gets the longest.
    let seq_len = cfg.max_seq_len.resolve(longest).max(longest);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut shortened = 0;
    let mut lines = |pairs: &[(String, f64)]| -> Result<String> {
        let mut out = String::new();
        for (i, (prompt, _)) in pairs.iter().enumerate() {
            if i % 1000 == 0 {
                ctx.check()?;
                ctx.report(&crate::jobs::Progress {
                    stage: "writing axolotl data".into(),
                    done: i as u64,
                    total: pairs.len() as u64,
                    n_items: i as u64,
                });
            }
            let (input, output, cut) = segments(&tok, prompt, cap)?;
            shortened += usize::from(cut);
            out.push_str(&line(&input, &output));
            out.push('\n');
        }
        Ok(out)
    };
    let train_text = lines(&train)?;
    let val_text = lines(&val)?;
    let name = cfg.name.clone().unwrap_or_else(|| "pricer-run".into());
    let pad = tok.tok.id_to_token(tok.eos).unwrap_or_else(|| "<|end_of_text|>".into());
    let gpus = if opts.gpus.is_empty() { "A100:1" } else { opts.gpus.as_str() };
    let mut files = vec![];
    let mut put = |file: &str, text: &str| -> Result<()> {
        let p = dir.join(file);
        crate::atomic::write_atomic_bytes(&p, text.as_bytes())?;
        files.push(p);
        Ok(())
    };
    put("train.jsonl", &train_text)?;
    if !val.is_empty() {
        put("val.jsonl", &val_text)?;
    }
    put("axolotl.yaml", &axolotl_yaml(cfg, &base, seq_len, !val.is_empty(), opts, &pad))?;
    put("sky.yaml", &skypilot_yaml(&name, gpus))?;
    put("train.sbatch", &slurm_sbatch(&name, gpus))?;
    Ok(ExportReport { files, train: train.len(), val: val.len(), shortened, sequence_len: seq_len, base_model: base })
}
