//! A fine-tuned checkpoint as a pricer, and "evaluate a run's checkpoint": the engine run on it,
//! saved as `eval-<checkpoint>.json` (an [`Evaluation`]) and `eval-<checkpoint>.csv` in the run
//! folder, where the Fine-tune tab and `pricer compare` find it.

use super::engine::{self, Request};
use super::{Guess, Pricer};
use crate::evaluation::{Evaluation, PricerSpec};
use crate::finetune::predict::{Decode, Predictor};
use crate::finetune::run;
use crate::items::ItemRef;
use crate::jobs::{JobCtx, Progress};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A run's checkpoint, loaded.
pub struct CheckpointPricer {
    predictor: Predictor,
    checkpoint: PathBuf,
}

/// The checkpoint folder a name picks: `checkpoint-<step>` (or a folder), `best` (by the
/// validation prices' Error) or `best:<error|rmsle|hits|loss>`; `None`: the latest complete one.
pub fn checkpoint_dir(run_dir: &Path, name: Option<&str>) -> Result<PathBuf> {
    match name {
        Some(n) if n == "best" || n.starts_with("best:") => {
            let by = match n.strip_prefix("best:") {
                None => run::BestBy::default(),
                Some(k) => run::BestBy::parse(k).ok_or_else(|| {
                    Error::InvalidInput(format!("`{n}`: pick the best by error, rmsle, hits or loss"))
                })?,
            };
            run::best_checkpoint(run_dir, by).map(|b| b.1).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{}: no checkpoint has a validation {} in metrics.jsonl (runs price their validation items when val_price_items > 0); name a checkpoint instead",
                    run_dir.display(),
                    by.key()
                ))
            })
        }
        Some(n) => {
            let p = run_dir.join(run::files::CHECKPOINTS).join(n);
            if p.is_dir() {
                Ok(p)
            } else if Path::new(n).is_dir() {
                Ok(PathBuf::from(n))
            } else {
                Err(Error::InvalidInput(format!("{}: no checkpoint `{n}`", run_dir.display())))
            }
        }
        None => run::checkpoints(run_dir)
            .pop()
            .map(|(_, p)| p)
            .ok_or_else(|| Error::InvalidInput(format!("{} has no checkpoint yet", run_dir.display()))),
    }
}

impl CheckpointPricer {
    /// Loads the run's model with the checkpoint's adapter and head.
    pub fn load(run_dir: &Path, checkpoint: Option<&str>, decode: Option<&str>, ctx: &JobCtx) -> Result<Self> {
        let cfg = run::read_config(run_dir)?;
        let ck = checkpoint_dir(run_dir, checkpoint)?;
        ctx.report(&Progress { stage: "loading model".into(), ..Default::default() });
        let device = crate::finetune::model::pick_device(&cfg.device)?;
        let model = crate::finetune::Model::load(
            &crate::finetune::ModelSource::parse(&cfg.model)?,
            &device,
            &Default::default(),
        )?;
        let mut predictor = Predictor::from_checkpoint(model, Some(&ck), cfg.max_seq_len.cap())?;
        if let Some(d) = decode {
            predictor.decode = Decode::parse(d).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown decode `{d}`: use top3, greedy, digit-top3, tree, tree-median or regression"
                ))
            })?;
        }
        Ok(Self { predictor, checkpoint: ck })
    }
}

impl Pricer for CheckpointPricer {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], ctx: &JobCtx) -> Result<Vec<Guess>> {
        ctx.check()?;
        let prompts: Vec<&str> = batch.iter().map(|(_, it)| it.prompt).collect();
        Ok(self.predictor.predict_batch(&prompts)?.into_iter().map(Guess::of).collect())
    }
    fn batch_size(&self) -> usize {
        // Prompts priced together: enough rows per matrix product to keep both cores busy and the
        // weights read once per decode step for all of them.
        16
    }
    fn parallel_batches(&self) -> bool {
        false
    }
    fn fitted(&self) -> serde_json::Value {
        serde_json::json!({ "checkpoint": self.checkpoint.display().to_string(), "decode": self.predictor.decode.name() })
    }
}

/// The name of a run evaluation's files: the checkpoint, plus the decode when one was chosen.
pub fn eval_name(checkpoint: &Path, decode: Option<&str>) -> String {
    let name = checkpoint.file_name().map_or_else(|| "checkpoint".into(), |s| s.to_string_lossy().into_owned());
    match decode {
        Some(d) => format!("{name}-{d}"),
        None => name,
    }
}

/// Evaluates a run's checkpoint (the latest when `None`) on the first `n` items of `test`,
/// saving `eval-<name>.json` and `eval-<name>.csv` in the run folder.
pub fn evaluate_run(
    run_dir: &Path,
    checkpoint: Option<&Path>,
    test: &Path,
    n: usize,
    decode: Option<Decode>,
    ctx: &JobCtx,
) -> Result<Evaluation> {
    let ck = match checkpoint {
        Some(p) if p.is_dir() => p.to_owned(),
        Some(p) => checkpoint_dir(run_dir, Some(&p.to_string_lossy()))?,
        None => checkpoint_dir(run_dir, None)?,
    };
    let decode_name = decode.map(Decode::key);
    let ck_name = ck.file_name().map(|s| s.to_string_lossy().into_owned());
    let name = eval_name(&ck, decode_name);
    let run_name = run_dir.file_name().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let out = run_dir.join(format!("eval-{name}.json"));
    let req = Request {
        spec: PricerSpec::Run { dir: run_dir.to_owned(), checkpoint: ck_name, decode: decode_name.map(str::to_owned) },
        name: Some(format!("{run_name}/{name}")),
        train: None,
        test: test.to_owned(),
        start: 0,
        size: n,
        out: Some(out),
        cache: None,
    };
    let eval = engine::evaluate(&req, ctx)?;
    eval.write_csv(&run_dir.join(format!("eval-{name}.csv")))?;
    Ok(eval)
}
