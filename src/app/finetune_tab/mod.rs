//! The Fine-tune tab: a validated form for a training run (data, model, LoRA and optimizer
//! settings with the design.md §7 defaults, memory estimate), launching `pricer train` as a
//! separate process, live curves read from the run folders (raw train loss with EMA smoothing,
//! validation loss, learning rate, tokens/s, ETA, memory), the log tail, Stop and Resume, the
//! list of runs with several overlaid and their config differences, and "Evaluate checkpoint"
//! with the Tester's report and scatter.
//!
//! `mod.rs` holds the state, the commands and the work done in `logic`; `form`, `runs` and
//! `evaluate` draw the three parts of the tab.

mod evaluate;
mod form;
mod remote;
mod runs;

use super::settings::FinetuneSettings;
use super::tabs::{JobOutput, Tab, TabCtx, TabView};
use crate::evaluation::Evaluation;
use crate::finetune::LlamaConfig;
use crate::finetune::config::TrainConfig;
use crate::finetune::run::{self, RunSnapshot};
use crate::finetune::supervisor::{TrainerProcess, trainer_program};
use crate::jobs::Level;
use egui::{RichText, Ui};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the tab's controls ask for, carried out in `logic` (never inside `ui`).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Start a new run with the form's settings.
    Launch,
    /// Stop the run started from here after its current step.
    StopRunning,
    /// Stop a run by its folder (one running elsewhere).
    Stop(PathBuf),
    /// Continue a run from its last checkpoint.
    Resume(PathBuf),
    /// Score a checkpoint on the first `n` test items.
    Evaluate {
        /// Run folder.
        run: PathBuf,
        /// Checkpoint folder.
        checkpoint: PathBuf,
        /// Test items.
        test: PathBuf,
        /// Items scored.
        n: usize,
    },
    /// Read the runs folder again.
    Rescan,
    /// Ask for a trainer's output folder to import.
    BrowseImport,
    /// Import a Hugging Face Trainer / axolotl output folder as a run (a job).
    Import(PathBuf),
    /// Start a new run with the form's settings on the form's host (a job: copy, start there).
    LaunchRemote,
    /// Copy a remote run's checkpoints that this machine lacks.
    PullCheckpoints(PathBuf),
    /// Ask the form's host for its `pricer --version`.
    CheckHost,
    /// Copy this machine's `pricer` to the form's host and use it there.
    InstallPricer,
}

/// Token counts of the training prompts in the model's tokenizer, for the form's preview of what
/// the sequence length shortens; counted by a job per (train file, model).
pub struct PromptLengths {
    /// Training file counted.
    pub train: PathBuf,
    /// Model whose tokenizer counted.
    pub model: String,
    /// The counts, or why there are none; `None` while the job runs.
    pub result: Option<Result<Vec<usize>, String>>,
}

/// Model facts for the form (architecture, memory estimate), read in `logic` per model string.
struct ModelInfo {
    model: String,
    /// The architecture, or the error and whether the file is missing.
    result: Result<LlamaConfig, (String, bool)>,
}

/// State of the Fine-tune tab.
pub struct FinetuneTab {
    /// The form.
    pub form: TrainConfig,
    /// Test items for "Evaluate checkpoint".
    pub test_file: String,
    /// Items scored by an evaluation.
    pub eval_n: usize,
    /// Runs found in the runs folder.
    pub runs: Vec<RunSnapshot>,
    /// Runs overlaid in the charts (by folder).
    pub shown: BTreeSet<PathBuf>,
    /// The run whose details are shown.
    pub selected: Option<usize>,
    /// EMA smoothing of the train loss (0 = none).
    pub smoothing: f64,
    /// Log-scale loss axis.
    pub log_y: bool,
    /// The trainer started from here.
    pub running: Option<TrainerProcess>,
    /// Checkpoint picked for evaluation (default: the best by `best_by`, else the latest).
    pub eval_checkpoint: Option<PathBuf>,
    /// What "best checkpoint" is picked by.
    pub best_by: crate::finetune::run::BestBy,
    /// The program started for `train` (default: [`trainer_program`]).
    pub trainer: Option<PathBuf>,
    /// Commands queued by the controls.
    pub commands: Vec<Command>,
    model_info: Option<ModelInfo>,
    /// Prompt token counts for the form (see [`PromptLengths`]).
    pub lengths: Option<PromptLengths>,
    last_scan: Option<Instant>,
    /// The folder dialog of *Import run…* while it is open.
    picked_import: Option<std::sync::mpsc::Receiver<Option<PathBuf>>>,
    /// The host *Launch on host* uses.
    pub host: crate::remote::Host,
    /// The hosts used before (the settings' list), offered in the form.
    pub hosts: Vec<crate::remote::Host>,
    /// Remote runs' background pulls and commands.
    remote: remote::RemoteFollow,
}

impl Default for FinetuneTab {
    fn default() -> Self {
        Self {
            form: TrainConfig::default(),
            test_file: String::new(),
            eval_n: 250,
            runs: vec![],
            shown: BTreeSet::new(),
            selected: None,
            smoothing: 0.6,
            log_y: false,
            running: None,
            eval_checkpoint: None,
            best_by: Default::default(),
            trainer: None,
            commands: vec![],
            model_info: None,
            lengths: None,
            last_scan: None,
            picked_import: None,
            host: crate::remote::Host::default(),
            hosts: vec![],
            remote: remote::RemoteFollow::default(),
        }
    }
}

impl TabView for FinetuneTab {
    fn needs_data(&self) -> bool {
        false
    }

    fn logic(&mut self, ctx: &mut TabCtx<'_>) {
        if let Some(rx) = &self.picked_import
            && let Ok(picked) = rx.try_recv()
        {
            self.picked_import = None;
            if let Some(dir) = picked {
                self.commands.push(Command::Import(dir));
            }
        }
        for command in std::mem::take(&mut self.commands) {
            self.run(command, ctx);
        }
        if let Some(r) = &mut self.running
            && let Some(exit) = r.poll()
        {
            let dir = r.run_dir.clone();
            let secs = r.elapsed_secs();
            self.running = None;
            if exit.success {
                ctx.log(Level::Info, format!("training process ended after {secs:.0}s: {}", dir.display()));
            } else {
                ctx.log(
                    Level::Error,
                    format!(
                        "training process failed ({}); its checkpoints and log are kept\n{}",
                        exit.status,
                        exit.output_tail.join("\n")
                    ),
                );
            }
            self.scan(true);
        }
        if ctx.settings.tab == Tab::Finetune || self.is_training() {
            self.scan(false);
            self.refresh_model_info();
            self.refresh_lengths(ctx);
        }
        if self.is_training() {
            ctx.repaint_within(std::time::Duration::from_millis(500));
        }
        self.remote_logic(ctx);
    }

    fn ui(&mut self, ui: &mut Ui, ctx: &mut TabCtx<'_>) {
        let job_running = ctx.busy();
        egui::Panel::left("finetune_form").resizable(true).default_size(340.0).show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| self.form_ui(ui));
        });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
                self.runs_ui(ui);
                ui.separator();
                self.curves_ui(ui);
                ui.separator();
                ui.columns(2, |cols| {
                    if let Some(r) = self.selected.and_then(|i| self.runs.get(i)) {
                        let ui = &mut cols[0];
                        egui::CollapsingHeader::new(format!("Log of {}", r.name)).default_open(true).show(ui, |ui| {
                            for l in &r.log_tail {
                                ui.add(egui::Label::new(RichText::new(l).monospace().small()).truncate());
                            }
                        });
                    }
                    self.eval_ui(&mut cols[1], job_running);
                });
            });
        });
    }

    /// Commands wait for the next `logic`.
    fn is_busy(&self) -> bool {
        !self.commands.is_empty()
    }

    fn job_done(&mut self, output: JobOutput, secs: f64, ctx: &mut TabCtx<'_>) {
        let output = match output.downcast::<PromptLengths>() {
            Ok(counted) => {
                if self.lengths.as_ref().is_some_and(|l| l.train == counted.train && l.model == counted.model) {
                    self.lengths = Some(*counted);
                }
                return;
            }
            Err(other) => other,
        };
        let output = match output.downcast::<crate::remote::Launched>() {
            Ok(l) => {
                ctx.log(Level::Info, l.summary());
                self.remote.watch(&l.local);
                self.form.name = None;
                self.scan_and_select(&l.local);
                return;
            }
            Err(other) => other,
        };
        let output = match output.downcast::<crate::finetune::import::Imported>() {
            Ok(imported) => {
                ctx.log(
                    Level::Info,
                    format!(
                        "imported {} ({} train and {} validation rows, checkpoints {:?}, base model {})",
                        imported.dir.display(),
                        imported.train_rows,
                        imported.val_rows,
                        imported.checkpoints,
                        imported.model
                    ),
                );
                self.scan_and_select(&imported.dir);
                return;
            }
            Err(other) => other,
        };
        let Ok(eval) = output.downcast::<Evaluation>() else { return };
        ctx.log(Level::Info, format!("{} ({} items, {secs:.1}s)", eval.line, eval.metrics.n));
        self.scan(true);
    }
}

impl FinetuneTab {
    /// Takes the persisted part of the state.
    pub fn restore(&mut self, saved: &FinetuneSettings) {
        if let Some(dir) = &saved.runs_dir {
            self.form.runs_dir = dir.clone();
        }
        self.test_file = saved.eval_test_file.clone();
        if let Some(host) = saved.hosts.first() {
            self.host = host.clone();
        }
        self.hosts = saved.hosts.clone();
    }

    /// Writes the persisted part of the state.
    pub fn persist(&self, saved: &mut FinetuneSettings) {
        saved.runs_dir = Some(self.form.runs_dir.clone());
        saved.eval_test_file = self.test_file.clone();
        // The host in use first, the others after it (one entry per destination).
        saved.hosts = self.hosts.clone();
        if !self.host.destination.trim().is_empty() {
            saved.hosts.retain(|h| h.destination != self.host.destination);
            saved.hosts.insert(0, self.host.clone());
        }
    }

    /// Fills the data fields from a Sampling export (train file, test file) when the form has no
    /// training data yet.
    pub fn use_export(&mut self, files: &[PathBuf]) {
        if !self.form.train.as_os_str().is_empty() {
            return;
        }
        if let Some(train) = super::actions::exported(files, "train") {
            self.form.train = train.to_owned();
        }
        if let Some(test) = super::actions::exported(files, "test") {
            self.test_file = test.display().to_string();
        }
    }

    /// Queues a command (as the controls do); it runs in the next `logic`.
    pub fn queue(&mut self, command: Command) {
        self.commands.push(command);
    }

    fn run(&mut self, command: Command, ctx: &mut TabCtx<'_>) {
        // A run on another machine: Stop, Resume and Pull checkpoints go there.
        if let Command::Stop(dir) | Command::Resume(dir) | Command::PullCheckpoints(dir) = &command
            && dir.join(run::files::REMOTE).exists()
        {
            return self.remote_command(command, ctx);
        }
        match command {
            Command::Launch => match self.launch() {
                Ok(dir) => ctx.log(Level::Info, format!("training started: {}", dir.display())),
                Err(e) => ctx.log(Level::Error, format!("could not launch: {e}")),
            },
            Command::StopRunning => match self.running.as_ref().map(TrainerProcess::stop) {
                Some(Ok(())) => ctx.log(Level::Info, "stop requested: the run ends after this step"),
                Some(Err(e)) => ctx.log(Level::Error, format!("could not stop: {e}")),
                None => ctx.log(Level::Error, "no run in progress"),
            },
            Command::PullCheckpoints(dir) => {
                ctx.log(Level::Error, format!("{} is not a run on another machine", dir.display()));
            }
            Command::CheckHost | Command::InstallPricer => self.remote_command(command, ctx),
            Command::LaunchRemote => {
                let (host, cfg) = (self.host.clone(), self.form.clone());
                ctx.log(Level::Info, format!("launching on {} …", host.destination));
                ctx.start_job("launch on host", move |_| {
                    if host.pricer_version()?.is_none() {
                        anyhow::bail!(
                            "{}: no `{}` there: *Copy this pricer there* (same OS and architecture) or name one \
                             installed there in *pricer there*",
                            host.destination,
                            host.pricer
                        );
                    }
                    Ok(crate::remote::launch(&host, &cfg)?)
                });
            }
            Command::Stop(dir) => {
                if let Err(e) = run::request_stop(&dir) {
                    ctx.log(Level::Error, format!("could not stop: {e}"));
                }
            }
            Command::Resume(dir) => match self.resume(&dir) {
                Ok(()) => ctx.log(Level::Info, format!("resuming {}", dir.display())),
                Err(e) => ctx.log(Level::Error, format!("could not resume: {e}")),
            },
            Command::Evaluate { run, checkpoint, test, n } => {
                ctx.log(Level::Info, format!("evaluating {} on {n} items of {}", checkpoint.display(), test.display()));
                ctx.start_job("evaluate checkpoint", move |job| {
                    Ok(crate::pricers::run::evaluate_run(&run, Some(&checkpoint), &test, n, None, job)?)
                });
            }
            Command::Rescan => self.scan(true),
            Command::BrowseImport => {
                let (tx, rx) = std::sync::mpsc::channel();
                let wake = ctx.wake.clone();
                let _ = std::thread::Builder::new().name("folder dialog".into()).spawn(move || {
                    let dialog =
                        rfd::FileDialog::new().set_title("Import a Hugging Face Trainer / axolotl output folder");
                    let _ = tx.send(dialog.pick_folder());
                    wake();
                });
                self.picked_import = Some(rx);
            }
            Command::Import(src) => {
                let opts = crate::finetune::import::ImportOptions {
                    runs_dir: self.form.runs_dir.clone(),
                    ..Default::default()
                };
                ctx.start_job("import run", move |_| Ok(crate::finetune::import::import_run(&src, &opts)?));
            }
        }
    }

    /// Re-reads the runs folder (at most once a second unless `force`).
    pub fn scan(&mut self, force: bool) {
        if !force && self.last_scan.is_some_and(|t| t.elapsed().as_secs_f32() < 1.0) {
            return;
        }
        self.last_scan = Some(Instant::now());
        let found = run::list_runs(&self.form.runs_dir);
        let selected_dir = self.selected.and_then(|i| self.runs.get(i)).map(|r| r.dir.clone());
        let mut runs = vec![];
        for d in found {
            match self.runs.iter().position(|r| r.dir == d) {
                Some(i) => {
                    let mut r = self.runs.swap_remove(i);
                    r.refresh();
                    runs.push(r);
                }
                None => runs.push(RunSnapshot::read(&d)),
            }
        }
        self.runs = runs;
        self.selected = selected_dir.and_then(|d| self.runs.iter().position(|r| r.dir == d));
        if self.selected.is_none() && !self.runs.is_empty() {
            self.selected = Some(self.runs.len() - 1);
            if let Some(r) = self.runs.last() {
                self.shown.insert(r.dir.clone());
            }
        }
    }

    /// Whether a trainer process runs.
    pub fn is_training(&self) -> bool {
        self.running.is_some()
    }

    /// Starts a new run with the form's settings.
    pub fn launch(&mut self) -> crate::Result<PathBuf> {
        if self.running.is_some() {
            return Err(crate::Error::InvalidInput("a run is already in progress: stop it first".into()));
        }
        let program = self.trainer.clone().unwrap_or_else(trainer_program);
        let process = TrainerProcess::launch(&program, &self.form)?;
        let run_dir = process.run_dir.clone();
        self.running = Some(process);
        self.form.name = None;
        self.shown.clear();
        self.scan_and_select(&run_dir);
        Ok(run_dir)
    }

    /// Reads the runs folder again and selects (and overlays) the run in `dir`, named as given
    /// or made absolute.
    fn scan_and_select(&mut self, dir: &Path) {
        self.scan(true);
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        if let Some(i) = self.runs.iter().position(|r| r.dir == dir || r.dir == abs) {
            self.selected = Some(i);
            self.shown.insert(self.runs[i].dir.clone());
        }
    }

    /// Continues a run from its last checkpoint in a new process.
    pub fn resume(&mut self, dir: &Path) -> crate::Result<()> {
        if self.running.is_some() {
            return Err(crate::Error::InvalidInput("a run is already in progress".into()));
        }
        let program = self.trainer.clone().unwrap_or_else(trainer_program);
        self.running = Some(TrainerProcess::resume(&program, dir)?);
        Ok(())
    }

    /// Counts the training prompts' tokens (a job) when the train file or the model changed and
    /// both are there to read.
    fn refresh_lengths(&mut self, ctx: &mut TabCtx<'_>) {
        let (train, model) = (self.form.train.clone(), self.form.model.clone());
        if self.lengths.as_ref().is_some_and(|l| l.train == train && l.model == model)
            || !train.is_file()
            || self.model_info.as_ref().is_none_or(|m| m.result.is_err())
        {
            return;
        }
        self.lengths = Some(PromptLengths { train: train.clone(), model: model.clone(), result: None });
        ctx.start_job("count prompt tokens", move |job| {
            let result = crate::finetune::train::train_prompt_lengths(&train, &model, job).map_err(|e| e.to_string());
            Ok(PromptLengths { train, model, result: Some(result) })
        });
    }

    /// Reads the model's architecture when the model field changed (a GGUF header or a
    /// `config.json`: milliseconds).
    fn refresh_model_info(&mut self) {
        if self.model_info.as_ref().is_some_and(|m| m.model == self.form.model) {
            return;
        }
        let result = crate::finetune::model::peek_config(&self.form.model).map_err(|e| {
            let missing =
                matches!(&e, crate::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
            (e.to_string(), missing)
        });
        self.model_info = Some(ModelInfo { model: self.form.model.clone(), result });
    }
}
