//! A run folder, the one place that knows its layout: file names, the run state, metric rows,
//! the status file, the trainer state saved in each checkpoint, checkpoint listing (torn ones
//! ignored), truncation of the curve on resume, failure marking, the evaluations saved beside the
//! checkpoints, and [`RunSnapshot`], the reader the app polls (it re-reads only files that
//! changed). The trainer writes through this module, the app and `pricer eval` read through it,
//! and remote runs will mirror the same files.
//!
//! ```text
//! <run>/config.toml          the validated run configuration (written once)
//! <run>/metrics.jsonl        one MetricRow per line (train rows and validation rows)
//! <run>/train.log            the human-readable log
//! <run>/status.json          RunStatus: state, pid, step, …
//! <run>/STOP                 created to ask the trainer to stop after the current step
//! <run>/checkpoints/checkpoint-<step>/   adapters (PEFT layout), optimizer, trainer_state.json (last)
//! <run>/eval-<checkpoint>.json / .csv    evaluations of checkpoints
//! ```

use super::config::TrainConfig;
use crate::atomic::{write_atomic, write_atomic_json};
use crate::evaluation::Evaluation;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// In the local mirror of a run on another machine (`crate::remote`): the host and folder.
    pub const REMOTE: &str = "remote.json";
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// No status yet (the trainer has not started).
    #[default]
    New,
    /// A trainer works on it.
    Running,
    /// Stopped on request, with a checkpoint of the last step.
    Stopped,
    /// Every step done.
    Finished,
    /// The trainer reported an error.
    Failed,
    /// The status says running but its trainer process is gone (killed, crashed, machine off).
    /// Never written: [`RunStatus::effective_state`] derives it.
    Interrupted,
}

impl RunState {
    /// The word shown and written.
    pub fn name(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// Whether a run in this state can be continued from its last checkpoint.
    pub fn can_resume(self) -> bool {
        matches!(self, Self::Stopped | Self::Interrupted | Self::Failed)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The run's status file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunStatus {
    /// Where the run stands.
    pub state: RunState,
    /// Process id of the trainer.
    pub pid: u32,
    /// Steps done.
    pub step: usize,
    /// Steps of the run.
    pub total_steps: usize,
    /// Last message (the error when failed).
    pub message: String,
    /// Sequences shortened to the maximum length.
    pub truncated: usize,
    /// The run's sequence length (`auto` resolved); 0 in runs from before it was recorded.
    #[serde(default)]
    pub seq_len: usize,
    /// Training items.
    pub n_train: usize,
    /// Validation items.
    pub n_val: usize,
}

impl RunStatus {
    /// The state, with a `running` status whose trainer process is gone read as `interrupted`.
    pub fn effective_state(&self) -> RunState {
        if self.state == RunState::Running && !pid_alive(self.pid) { RunState::Interrupted } else { self.state }
    }
}

/// Whether a process still runs (Linux: /proc; elsewhere assumed alive).
pub fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new(&format!("/proc/{pid}")).exists() } else { true }
}

/// What a checkpoint records besides tensors (`trainer_state.json`, written last).
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
    /// Mean absolute error in USD of the validation items priced (validation rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_error: Option<f64>,
    /// RMSLE of the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_rmsle: Option<f64>,
    /// Hits (the Tester's green) of the same, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_hits: Option<f64>,
}

impl MetricRow {
    /// The value of a metric in this row, when it has one.
    pub fn metric(&self, by: BestBy) -> Option<f64> {
        match by {
            BestBy::Error => self.val_error,
            BestBy::Rmsle => self.val_rmsle,
            BestBy::Hits => self.val_hits,
            BestBy::Loss => self.val_loss,
        }
    }
}

/// What "best checkpoint" means: the validation metric it is picked by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BestBy {
    /// Lowest mean absolute error of the validation prices (the Tester's Error).
    #[default]
    Error,
    /// Lowest RMSLE of the validation prices.
    Rmsle,
    /// Most hits among the validation prices.
    Hits,
    /// Lowest validation loss.
    Loss,
}

impl BestBy {
    /// Every choice, in the order the UI lists them.
    pub const ALL: [Self; 4] = [Self::Error, Self::Rmsle, Self::Hits, Self::Loss];

    /// The name read by [`BestBy::parse`] (`error`, `rmsle`, `hits`, `loss`).
    pub fn key(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Rmsle => "rmsle",
            Self::Hits => "hits",
            Self::Loss => "loss",
        }
    }

    /// Reads a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.key() == s)
    }

    /// Whether a higher value is better.
    pub fn higher_is_better(self) -> bool {
        self == Self::Hits
    }
}

/// The best complete checkpoint by `by` among the steps whose validation row has that metric:
/// `(step, folder, value)`; ties go to the earlier step. `None` when no checkpoint step has it.
pub fn best_checkpoint(run_dir: &Path, by: BestBy) -> Option<(usize, PathBuf, f64)> {
    best_of(&read_metrics(run_dir), &checkpoints(run_dir), by)
}

/// [`best_checkpoint`] over rows and checkpoints already read.
pub fn best_of(rows: &[MetricRow], checkpoints: &[(usize, PathBuf)], by: BestBy) -> Option<(usize, PathBuf, f64)> {
    let mut best: Option<(usize, PathBuf, f64)> = None;
    for (step, dir) in checkpoints {
        let Some(v) = rows.iter().filter(|x| x.step == *step).find_map(|x| x.metric(by)) else { continue };
        let better = match &best {
            None => true,
            Some((_, _, b)) => {
                if by.higher_is_better() {
                    v > *b
                } else {
                    v < *b
                }
            }
        };
        if better {
            best = Some((*step, dir.clone(), v));
        }
    }
    best
}

/// Reads `metrics.jsonl`, skipping a torn last line.
pub fn read_metrics(run_dir: &Path) -> Vec<MetricRow> {
    let Ok(text) = std::fs::read_to_string(run_dir.join(files::METRICS)) else { return vec![] };
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Reads a run's status.
pub fn read_status(run_dir: &Path) -> Option<RunStatus> {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join(files::STATUS)).ok()?).ok()
}

/// Complete checkpoints of a run, oldest first: `(step, folder)`. A folder without its
/// `trainer_state.json` (written last) is a torn checkpoint and is left out.
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

/// Reads the trainer state saved in a checkpoint.
pub fn read_trainer_state(checkpoint: &Path) -> Result<TrainerState> {
    let path = checkpoint.join(files::STATE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", path.display())))
}

/// Reads the run's configuration.
pub fn read_config(run_dir: &Path) -> Result<TrainConfig> {
    TrainConfig::load(&run_dir.join(files::CONFIG))
}

/// Keeps only the metric rows up to `step` (a resumed run continues the same curve).
pub fn truncate_metrics(run_dir: &Path, step: usize) -> Result<()> {
    let path = run_dir.join(files::METRICS);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<MetricRow>(l).is_ok_and(|r| r.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomic(&path, |w| w.write_all(kept.as_bytes()))
}

/// Writes the status file.
pub fn write_status(run_dir: &Path, status: &RunStatus) -> Result<()> {
    write_atomic_json(&run_dir.join(files::STATUS), status)
}

/// Appends a row to `metrics.jsonl`.
pub fn append_metric(run_dir: &Path, row: &MetricRow) -> Result<()> {
    let path = run_dir.join(files::METRICS);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
    let line = serde_json::to_string(row).map_err(|e| Error::Model(e.to_string()))? + "\n";
    f.write_all(line.as_bytes()).map_err(|e| Error::io(&path, e))
}

/// Opens the log for appending.
pub fn open_log(run_dir: &Path) -> Result<std::fs::File> {
    let path = run_dir.join(files::LOG);
    std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))
}

/// Marks the run failed with `message` (status and log); what the run wrote stays.
pub fn mark_failed(run_dir: &Path, message: &str) {
    let mut st = read_status(run_dir).unwrap_or_default();
    st.state = RunState::Failed;
    st.message = message.into();
    let _ = write_status(run_dir, &st);
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(run_dir.join(files::LOG)) {
        let _ = writeln!(f, "failed: {message}");
    }
}

/// Asks the trainer of a run to stop after its current step (it writes a checkpoint).
pub fn request_stop(run_dir: &Path) -> Result<()> {
    let path = run_dir.join(files::STOP);
    std::fs::write(&path, b"").map_err(|e| Error::io(&path, e))
}

/// The evaluations saved in a run folder (`eval-*.json`), by file name; files that are not
/// evaluations are skipped.
pub fn read_evaluations(run_dir: &Path) -> Vec<Evaluation> {
    read_evaluation_files(run_dir).into_iter().map(|(_, e)| e).collect()
}

/// The evaluations of a run's checkpoints with their files.
pub fn read_evaluation_files(run_dir: &Path) -> Vec<(PathBuf, Evaluation)> {
    eval_files(run_dir)
        .iter()
        .filter_map(|(n, _)| {
            let p = run_dir.join(n);
            Evaluation::load(&p).ok().map(|e| (p, e))
        })
        .collect()
}

fn eval_files(run_dir: &Path) -> Vec<(std::ffi::OsString, u64)> {
    let mut v: Vec<(std::ffi::OsString, u64)> = std::fs::read_dir(run_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("eval-") && n.ends_with(".json")
                })
                .map(|e| (e.file_name(), e.metadata().map_or(0, |m| m.len())))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Run folders (those holding a `config.toml`) directly inside `runs_dir`, sorted by name.
pub fn list_runs(runs_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join(files::CONFIG).is_file()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

/// Lines kept of the log's tail.
pub const LOG_TAIL_LINES: usize = 12;

/// What a run folder holds, read for display; [`RunSnapshot::refresh`] re-reads only files whose
/// size changed.
#[derive(Clone, Debug)]
pub struct RunSnapshot {
    /// Folder.
    pub dir: PathBuf,
    /// Folder name.
    pub name: String,
    /// Its configuration (None when unreadable).
    pub config: Option<TrainConfig>,
    /// Status file.
    pub status: Option<RunStatus>,
    /// Metric rows.
    pub metrics: Vec<MetricRow>,
    /// Complete checkpoints `(step, folder)`.
    pub checkpoints: Vec<(usize, PathBuf)>,
    /// Last lines of the log.
    pub log_tail: Vec<String>,
    /// Evaluations saved in the folder.
    pub evals: Vec<Evaluation>,
    /// Whether the folder mirrors a run on another machine (it holds [`files::REMOTE`]).
    pub remote: bool,
    // Sizes of the files when last read: unchanged files are not read again.
    metrics_len: u64,
    log_len: u64,
    eval_files: Vec<(std::ffi::OsString, u64)>,
}

impl RunSnapshot {
    /// Reads a run folder.
    pub fn read(dir: &Path) -> Self {
        let mut v = Self {
            dir: dir.to_owned(),
            name: dir.file_name().map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
            config: read_config(dir).ok(),
            status: None,
            metrics: vec![],
            checkpoints: vec![],
            log_tail: vec![],
            evals: vec![],
            metrics_len: u64::MAX,
            log_len: u64::MAX,
            eval_files: vec![(Default::default(), u64::MAX)],
            remote: false,
        };
        v.refresh();
        v
    }

    /// Re-reads what may have changed (cheap when nothing did).
    pub fn refresh(&mut self) {
        let size = |name: &str| std::fs::metadata(self.dir.join(name)).map_or(0, |m| m.len());
        self.status = read_status(&self.dir);
        self.remote = self.dir.join(files::REMOTE).exists();
        let len = size(files::METRICS);
        if len != self.metrics_len {
            self.metrics = read_metrics(&self.dir);
            self.metrics_len = len;
        }
        self.checkpoints = checkpoints(&self.dir);
        let len = size(files::LOG);
        if len != self.log_len
            && let Ok(text) = std::fs::read_to_string(self.dir.join(files::LOG))
        {
            let lines: Vec<&str> = text.lines().collect();
            self.log_tail =
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].iter().map(|s| (*s).to_owned()).collect();
            self.log_len = len;
        }
        let eval_files = eval_files(&self.dir);
        if eval_files != self.eval_files {
            self.evals = read_evaluations(&self.dir);
            self.eval_files = eval_files;
        }
    }

    /// The state, `interrupted` when the status says running but its process is gone (not
    /// judged for a run on another machine, whose process id is not one of this machine's).
    pub fn state(&self) -> RunState {
        match &self.status {
            None => RunState::New,
            Some(s) if self.remote => s.state,
            Some(s) => s.effective_state(),
        }
    }

    /// The last training loss.
    pub fn last_train_loss(&self) -> Option<f64> {
        self.metrics.iter().rev().find_map(|m| m.train_loss)
    }

    /// The last validation loss.
    pub fn last_val_loss(&self) -> Option<f64> {
        self.metrics.iter().rev().find_map(|m| m.val_loss)
    }
}

/// Config values that differ between runs: `key → value per run` (`—` where a run lacks it).
pub fn config_differences(configs: &[&TrainConfig]) -> BTreeMap<String, Vec<String>> {
    let flat: Vec<BTreeMap<String, String>> = configs
        .iter()
        .map(|c| {
            let v: toml::Value = toml::Value::try_from(*c).unwrap_or(toml::Value::Table(Default::default()));
            let mut m = BTreeMap::new();
            flatten("", &v, &mut m);
            m
        })
        .collect();
    let mut keys: Vec<&String> = flat.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = BTreeMap::new();
    for k in keys {
        if k == "name" {
            continue;
        }
        let vals: Vec<String> = flat.iter().map(|m| m.get(k).cloned().unwrap_or_else(|| "—".into())).collect();
        if vals.iter().any(|v| v != &vals[0]) {
            out.insert(k.clone(), vals);
        }
    }
    out
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}
