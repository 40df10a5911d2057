//! The Pricer Studio app: the shell (tab bar, status bar with the running job, log panel, open and
//! download dialogs, shortcuts, themes, persisted settings) and one module per tab. The only
//! code that imports egui; the domain work runs as [`jobs::Job`]s over the core.

pub mod charts_tab;
pub mod data;
pub mod dataset_tab;
pub mod finetune_tab;
pub mod jobs;
pub mod sampling_tab;
pub mod widgets;

use crate::export::ExportFormat;
use crate::sampling::{Recipe, SampleOutcome};
use crate::view::Filter;
use data::Dataset;
use egui::{Key, KeyboardShortcut, Modifiers};
use jobs::{Job, Poll};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Instant;

/// The tabs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tab {
    /// Items, filters, inspector, curation report.
    #[default]
    Dataset,
    /// Histograms, categories, price vs. length.
    Charts,
    /// Balancing recipe with live preview, split, export.
    Sampling,
    /// LoRA fine-tuning runs: launch, live curves, stop/resume, evaluate.
    Finetune,
}

impl Tab {
    /// All tabs in display order.
    pub const ALL: [Tab; 4] = [Tab::Dataset, Tab::Charts, Tab::Sampling, Tab::Finetune];
    /// Label in the tab bar.
    pub fn label(self) -> &'static str {
        match self {
            Tab::Dataset => "Dataset",
            Tab::Charts => "Charts",
            Tab::Sampling => "Sampling",
            Tab::Finetune => "Fine-tune",
        }
    }
}

/// Settings kept across restarts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Dark theme (else light).
    pub dark_mode: bool,
    /// Last tab shown.
    pub tab: Tab,
    /// Files loaded last (offered in the Open dialog).
    pub recent_files: Vec<PathBuf>,
    /// Last directory exported to.
    pub export_dir: Option<PathBuf>,
    /// Raw lines of the built-in demo.
    pub demo_lines: usize,
    /// Hub categories ticked in the download dialog.
    pub download_categories: Vec<String>,
    /// Where downloads are copied.
    pub download_dir: Option<PathBuf>,
    /// Folder of fine-tuning runs (Fine-tune tab).
    pub runs_dir: Option<PathBuf>,
    /// Test items last used to evaluate a checkpoint.
    pub eval_test_file: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dark_mode: true,
            tab: Tab::Dataset,
            recent_files: Vec::new(),
            export_dir: None,
            demo_lines: crate::demo::DEFAULT_LINES,
            download_categories: vec!["Appliances".into()],
            download_dir: None,
            runs_dir: None,
            eval_test_file: String::new(),
        }
    }
}

/// Severity of a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something done.
    Info,
    /// Done, with problems (malformed lines…).
    Warning,
    /// Failed; nothing changed.
    Error,
}

/// One line of the log panel.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// Seconds since the app started.
    pub at_secs: f64,
    /// Severity.
    pub level: Level,
    /// Text (may span lines).
    pub text: String,
}

/// What a finished job hands back.
pub enum JobDone {
    /// A dataset to show.
    Loaded(Arc<Dataset>),
    /// An exact sample and split (indices into the current table).
    Sampled(Arc<sampling_tab::AppliedSample>),
    /// Files written by an export.
    Exported(SampleOutcome),
    /// Files downloaded (then loaded).
    Downloaded(Vec<PathBuf>),
    /// A checkpoint evaluated with the Tester.
    Evaluated(Box<crate::finetune::predict::EvalSummary>),
}

/// Something the UI asked for, carried out after drawing.
#[derive(Clone, Debug)]
pub enum Action {
    /// Show the Open dialog.
    ShowOpen,
    /// Load these files (raw metadata or curated items).
    Load(Vec<PathBuf>),
    /// Load the built-in synthetic demo.
    LoadDemo,
    /// Show the download dialog.
    ShowDownload,
    /// Download these categories into a folder, then load them.
    Download(Vec<String>, Option<PathBuf>),
    /// Switch tab.
    SetTab(Tab),
    /// Replace the Dataset filter (linked charts) and show the Dataset tab.
    FilterTo(Filter),
    /// Draw the exact sample of a recipe.
    Apply(Recipe),
    /// Sample, split and export into a folder.
    Export(Recipe, ExportFormat, PathBuf),
    /// Cancel the running job.
    Cancel,
    /// Show or hide the log.
    ToggleLog,
    /// Write a message to the log.
    Log(Level, String),
    /// Score a run's checkpoint on the first `n` test items.
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
}

/// The app.
pub struct PricerApp {
    /// Persisted settings.
    pub settings: Settings,
    /// The dataset shown (kept while a new one loads, and when loading fails).
    pub data: Option<Arc<Dataset>>,
    /// The running job, if any.
    pub job: Option<Job<JobDone>>,
    /// The log.
    pub log: Vec<LogEntry>,
    /// Whether the log panel is open.
    pub show_log: bool,
    /// The Dataset tab's filter (charts link into it).
    pub filter: Filter,
    /// Tab states.
    pub dataset_tab: dataset_tab::DatasetTab,
    /// Charts tab state.
    pub charts_tab: charts_tab::ChartsTab,
    /// Sampling tab state.
    pub sampling_tab: sampling_tab::SamplingTab,
    /// Fine-tune tab state.
    pub finetune_tab: finetune_tab::FinetuneTab,
    open_dialog: Option<widgets::PathDialog>,
    download_dialog: Option<widgets::DownloadDialog>,
    picked: Option<Receiver<Option<Vec<PathBuf>>>>,
    actions: Vec<Action>,
    wake: Arc<dyn Fn() + Send + Sync>,
    started: Instant,
    /// Frames drawn (for tests and the screenshot mode).
    pub frames: u64,
}

const SHORTCUT_OPEN: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
const SHORTCUT_DEMO: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::D);
const SHORTCUT_LOG: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::L);
const SHORTCUT_TABS: [KeyboardShortcut; 4] = [
    KeyboardShortcut::new(Modifiers::COMMAND, Key::Num1),
    KeyboardShortcut::new(Modifiers::COMMAND, Key::Num2),
    KeyboardShortcut::new(Modifiers::COMMAND, Key::Num3),
    KeyboardShortcut::new(Modifiers::COMMAND, Key::Num4),
];

impl PricerApp {
    /// A new app with `settings`; `wake` requests a repaint from any thread. Starts loading the
    /// built-in demo when `load_demo` is set.
    pub fn new(settings: Settings, wake: Arc<dyn Fn() + Send + Sync>, load_demo: bool) -> Self {
        let mut app = Self {
            dataset_tab: dataset_tab::DatasetTab::default(),
            charts_tab: charts_tab::ChartsTab::default(),
            sampling_tab: sampling_tab::SamplingTab::default(),
            finetune_tab: finetune_tab::FinetuneTab::default(),
            settings,
            data: None,
            job: None,
            log: Vec::new(),
            show_log: false,
            filter: Filter::default(),
            open_dialog: None,
            download_dialog: None,
            picked: None,
            actions: Vec::new(),
            wake,
            started: Instant::now(),
            frames: 0,
        };
        if load_demo {
            app.actions.push(Action::LoadDemo);
            app.process_actions();
        }
        app
    }

    /// The tab shown.
    pub fn tab(&self) -> Tab {
        self.settings.tab
    }

    /// Queues an action (as the UI does).
    pub fn act(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Writes to the log.
    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        let at_secs = self.started.elapsed().as_secs_f64();
        self.log.push(LogEntry { at_secs, level, text: text.into() });
        if level == Level::Error {
            self.show_log = true;
        }
    }

    /// Per-frame work that draws nothing: job results, background views, file dialogs, drops.
    pub fn logic(&mut self, ctx: &egui::Context) {
        self.poll_job();
        if let Some(rx) = &self.picked
            && let Ok(result) = rx.try_recv()
        {
            self.picked = None;
            match result {
                Some(paths) if !paths.is_empty() => self.actions.push(Action::Load(paths)),
                // No portal (or the user closed it): offer the path field instead.
                _ => self.open_dialog = Some(widgets::PathDialog::new(self.settings.recent_files.first())),
            }
        }
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).filter(|p| !p.as_os_str().is_empty()).collect()
        });
        if !dropped.is_empty() {
            self.actions.push(Action::Load(dropped));
        }
        if let Some(data) = self.data.clone() {
            self.dataset_tab.logic(&data, &self.filter, &self.wake);
            self.sampling_tab.logic(&data);
        }
        if self.settings.tab == Tab::Finetune || self.finetune_tab.is_training() {
            self.finetune_tab.logic(&mut self.actions);
            if self.finetune_tab.is_training() {
                ctx.request_repaint_after(std::time::Duration::from_millis(500));
            }
        }
        self.process_actions();
        if self.job.is_some() || self.dataset_tab.is_busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    fn poll_job(&mut self) {
        let Some(job) = &self.job else { return };
        let Poll::Done(result) = job.poll() else { return };
        let name = job.name.clone();
        let secs = job.started.elapsed().as_secs_f64();
        self.job = None;
        match result {
            Ok(JobDone::Loaded(data)) => {
                let rep = &data.report;
                let level = if rep.malformed > 0 || !rep.file_errors.is_empty() { Level::Warning } else { Level::Info };
                self.log(
                    level,
                    format!("loaded {}: {} items in {secs:.1}s\n{}", data.name, data.table.len(), rep.summary()),
                );
                self.filter = Filter::default();
                self.dataset_tab.reset();
                self.sampling_tab.on_new_data(&data);
                self.data = Some(data);
            }
            Ok(JobDone::Sampled(s)) => {
                self.log(
                    Level::Info,
                    format!(
                        "sample drawn: {} items (train {}, test {}) in {secs:.2}s",
                        s.sample.len(),
                        s.train.len(),
                        s.test.len()
                    ),
                );
                self.sampling_tab.applied = Some(s);
            }
            Ok(JobDone::Exported(out)) => {
                let files: Vec<String> = out.files.iter().map(|p| p.display().to_string()).collect();
                self.log(
                    Level::Info,
                    format!(
                        "exported train {} / test {} in {secs:.1}s:\n  {}",
                        out.n_train,
                        out.n_test,
                        files.join("\n  ")
                    ),
                );
                if self.finetune_tab.form.train.as_os_str().is_empty() {
                    self.finetune_tab.use_export(&out.files);
                }
                self.sampling_tab.last_export = Some(out);
            }
            Ok(JobDone::Evaluated(summary)) => {
                self.log(
                    Level::Info,
                    format!("{} ({} items, decode {}, {secs:.1}s)", summary.line, summary.n, summary.decode.name()),
                );
                self.finetune_tab.scan(true);
            }
            Ok(JobDone::Downloaded(paths)) => {
                self.log(Level::Info, format!("downloaded {} file(s) in {secs:.1}s", paths.len()));
                self.actions.push(Action::Load(paths));
            }
            Err(e) if e.downcast_ref::<crate::Error>().is_some_and(|e| matches!(e, crate::Error::Cancelled)) => {
                self.log(Level::Info, format!("{name}: cancelled; nothing changed"));
            }
            Err(e) => self.log(Level::Error, format!("{name} failed: {e:#}\nThe previous dataset is kept.")),
        }
    }

    fn start(
        &mut self,
        name: &str,
        work: impl FnOnce(&crate::jobs::JobCtx) -> anyhow::Result<JobDone> + Send + 'static,
    ) {
        if let Some(job) = &self.job {
            self.log(Level::Warning, format!("{} is still running: cancel it first", job.name));
            return;
        }
        self.job = Some(Job::spawn(name, self.wake.clone(), work));
    }

    fn process_actions(&mut self) {
        let actions = std::mem::take(&mut self.actions);
        for action in actions {
            match action {
                Action::ShowOpen => {
                    let (tx, rx) = std::sync::mpsc::channel();
                    let wake = self.wake.clone();
                    let dir = self.settings.recent_files.first().and_then(|p| p.parent().map(PathBuf::from));
                    let spawned = std::thread::Builder::new().name("file dialog".into()).spawn(move || {
                        let mut dialog = rfd::FileDialog::new()
                            .set_title("Open Amazon metadata or curated items")
                            .add_filter("Data", &["jsonl", "gz", "json", "parquet"]);
                        if let Some(dir) = dir {
                            dialog = dialog.set_directory(dir);
                        }
                        let _ = tx.send(dialog.pick_files());
                        wake();
                    });
                    match spawned {
                        Ok(_) => self.picked = Some(rx),
                        Err(_) => self.open_dialog = Some(widgets::PathDialog::new(self.settings.recent_files.first())),
                    }
                }
                Action::Load(paths) => {
                    self.settings.recent_files.retain(|p| !paths.contains(p));
                    for p in paths.iter().rev() {
                        self.settings.recent_files.insert(0, p.clone());
                    }
                    self.settings.recent_files.truncate(8);
                    let name = format!(
                        "loading {}",
                        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                    );
                    self.start(&name, move |ctx| Ok(JobDone::Loaded(Arc::new(data::load_paths(&paths, ctx)?))));
                }
                Action::LoadDemo => {
                    let n = self.settings.demo_lines;
                    self.start("loading the synthetic demo", move |ctx| {
                        Ok(JobDone::Loaded(Arc::new(data::load_demo(n, crate::demo::DEFAULT_SEED, ctx)?)))
                    });
                }
                Action::ShowDownload => {
                    self.download_dialog = Some(widgets::DownloadDialog::new(&self.settings));
                }
                Action::Download(categories, dir) => {
                    self.settings.download_categories = categories.clone();
                    self.settings.download_dir = dir.clone();
                    self.start("downloading from the Hub", move |ctx| {
                        let opts = crate::hub::HubOptions::default();
                        let mut paths = Vec::new();
                        for c in &categories {
                            paths.push(crate::hub::download_category(c, dir.as_deref(), &opts, ctx)?);
                        }
                        Ok(JobDone::Downloaded(paths))
                    });
                }
                Action::SetTab(tab) => self.settings.tab = tab,
                Action::FilterTo(filter) => {
                    self.filter = filter;
                    self.settings.tab = Tab::Dataset;
                }
                Action::Apply(recipe) => {
                    let Some(data) = self.data.clone() else { continue };
                    self.start("drawing the sample", move |ctx| {
                        ctx.check()?;
                        Ok(JobDone::Sampled(Arc::new(sampling_tab::AppliedSample::draw(&data, &recipe))))
                    });
                }
                Action::Export(recipe, format, dir) => {
                    let Some(data) = self.data.clone() else { continue };
                    self.settings.export_dir = Some(dir.clone());
                    self.start("exporting", move |ctx| {
                        ctx.check()?;
                        let source = PathBuf::from(&data.name);
                        Ok(JobDone::Exported(crate::sampling::sample_and_export(
                            &data.table,
                            &recipe,
                            &dir,
                            format,
                            &source,
                        )?))
                    });
                }
                Action::Cancel => {
                    if let Some(job) = &self.job {
                        job.cancel.cancel();
                    }
                }
                Action::ToggleLog => self.show_log = !self.show_log,
                Action::Log(level, text) => self.log(level, text),
                Action::Evaluate { run, checkpoint, test, n } => {
                    self.start("evaluate checkpoint", move |ctx| {
                        let s = crate::finetune::predict::evaluate_run(&run, Some(&checkpoint), &test, n, None, ctx)?;
                        Ok(JobDone::Evaluated(Box::new(s)))
                    });
                }
            }
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        ctx.input_mut(|i| {
            if i.consume_shortcut(&SHORTCUT_OPEN) {
                self.actions.push(Action::ShowOpen);
            }
            if i.consume_shortcut(&SHORTCUT_DEMO) {
                self.actions.push(Action::LoadDemo);
            }
            if i.consume_shortcut(&SHORTCUT_LOG) {
                self.actions.push(Action::ToggleLog);
            }
            for (k, s) in SHORTCUT_TABS.iter().enumerate() {
                if i.consume_shortcut(s) {
                    self.actions.push(Action::SetTab(Tab::ALL[k]));
                }
            }
            if self.job.is_some() && i.consume_key(Modifiers::NONE, Key::Escape) {
                self.actions.push(Action::Cancel);
            }
        });
    }

    /// Draws the whole window.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        self.frames += 1;
        let ctx = ui.ctx().clone();
        ctx.set_theme(if self.settings.dark_mode { egui::Theme::Dark } else { egui::Theme::Light });
        self.shortcuts(&ctx);

        egui::Panel::top("top_bar").show(ui, |ui| self.top_bar_ui(ui));
        egui::Panel::bottom("status_bar").show(ui, |ui| self.status_bar_ui(ui));
        if self.show_log {
            egui::Panel::bottom("log")
                .resizable(true)
                .default_size(160.0)
                .show(ui, |ui| widgets::log_ui(ui, &self.log));
        }
        if self.settings.tab == Tab::Finetune {
            let busy = self.job.is_some();
            egui::CentralPanel::default().show(ui, |ui| self.finetune_tab.ui(ui, busy, &mut self.actions));
        } else {
            egui::CentralPanel::default().show(ui, |ui| match self.data.clone() {
                None => {
                    ui.centered_and_justified(|ui| {
                        if self.job.is_some() {
                            ui.label("Loading…");
                        } else {
                            ui.label("No dataset. Open a file (Ctrl+O), drop one here, or load the demo (Ctrl+D).");
                        }
                    });
                }
                Some(data) => match self.settings.tab {
                    Tab::Dataset => self.dataset_tab.ui(ui, &data, &mut self.filter, &mut self.actions),
                    Tab::Charts => self.charts_tab.ui(ui, &data, &mut self.actions),
                    Tab::Sampling => {
                        self.sampling_tab.ui(ui, &data, &mut self.settings, self.job.is_some(), &mut self.actions)
                    }
                    Tab::Finetune => {}
                },
            });
        }

        if let Some(dialog) = &mut self.open_dialog
            && let Some(result) =
                dialog.ui(&ctx, "Open files", "Paths (one per line) of raw .jsonl/.jsonl.gz/.parquet or curated items")
        {
            if let Some(paths) = result {
                self.actions.push(Action::Load(paths));
            }
            self.open_dialog = None;
        }
        if let Some(dialog) = &mut self.download_dialog
            && let Some(result) = dialog.ui(&ctx)
        {
            if let Some((cats, dir)) = result {
                self.actions.push(Action::Download(cats, dir));
            }
            self.download_dialog = None;
        }
        self.process_actions();
    }

    fn top_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Pricer Studio");
            ui.separator();
            for tab in Tab::ALL {
                if ui.selectable_label(self.settings.tab == tab, tab.label()).clicked() {
                    self.actions.push(Action::SetTab(tab));
                }
            }
            ui.separator();
            if ui.button("Open…").on_hover_text("Open raw metadata or curated items (Ctrl+O)").clicked() {
                self.actions.push(Action::ShowOpen);
            }
            if ui.button("Open path…").on_hover_text("Type or paste file paths").clicked() {
                self.open_dialog = Some(widgets::PathDialog::new(self.settings.recent_files.first()));
            }
            if ui.button("Demo").on_hover_text("Load the built-in synthetic demo (Ctrl+D)").clicked() {
                self.actions.push(Action::LoadDemo);
            }
            if ui.button("Download from Hub…").clicked() {
                self.actions.push(Action::ShowDownload);
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let theme = if self.settings.dark_mode { "Light theme" } else { "Dark theme" };
                if ui.button(theme).on_hover_text("Switch theme").clicked() {
                    self.settings.dark_mode = !self.settings.dark_mode;
                }
                if let Some(data) = &self.data
                    && data.synthetic
                {
                    widgets::synthetic_badge(ui);
                }
            });
        });
    }

    fn status_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if let Some(job) = &self.job {
                let p = job.progress();
                ui.label(&job.name);
                let frac = p.fraction().unwrap_or(0.0);
                let text = if p.n_items > 0 { format!("{} — {} items", p.stage, p.n_items) } else { p.stage.clone() };
                ui.add(egui::ProgressBar::new(frac).desired_width(260.0).show_percentage().text(text));
                if ui.button("Cancel").on_hover_text("Stop the job (Esc); what was there stays").clicked() {
                    self.actions.push(Action::Cancel);
                }
            } else if let Some(data) = &self.data {
                ui.label(format!("{} — {} items", data.name, data.table.len()));
            } else {
                ui.label("Ready");
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let errors = self.log.iter().filter(|e| e.level == Level::Error).count();
                let label =
                    if errors > 0 { format!("Log ({errors} errors)") } else { format!("Log ({})", self.log.len()) };
                if ui.selectable_label(self.show_log, label).on_hover_text("Ctrl+L").clicked() {
                    self.actions.push(Action::ToggleLog);
                }
            });
        });
    }
}

/// The eframe wrapper: persistence and the per-frame split into `logic` and `ui`.
pub struct EframeApp {
    /// The app.
    pub app: PricerApp,
    screenshot: Option<widgets::ScreenshotPlan>,
}

/// Key of the settings in eframe's storage.
pub const SETTINGS_KEY: &str = "pricer-studio-settings";

impl EframeApp {
    /// Creates the app, restoring settings from eframe's storage.
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        screenshot: Option<widgets::ScreenshotPlan>,
        tab: Option<Tab>,
        demo_lines: Option<usize>,
        cap: Option<usize>,
        runs_dir: Option<PathBuf>,
    ) -> Self {
        // A screenshot run starts from defaults, not from what a user saved.
        let saved =
            if screenshot.is_some() { None } else { cc.storage.and_then(|s| eframe::get_value(s, SETTINGS_KEY)) };
        let mut settings: Settings = saved.unwrap_or_default();
        if let Some(tab) = tab {
            settings.tab = tab;
        }
        if let Some(n) = demo_lines {
            settings.demo_lines = n;
        }
        let ctx = cc.egui_ctx.clone();
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || ctx.request_repaint());
        let mut app = PricerApp::new(settings, wake, true);
        if let Some(cap) = cap {
            app.sampling_tab.recipe.balance.cap_per_slot = cap;
        }
        if let Some(dir) = runs_dir.or_else(|| app.settings.runs_dir.clone()) {
            app.finetune_tab.form.runs_dir = dir;
        }
        app.finetune_tab.test_file = app.settings.eval_test_file.clone();
        Self { app, screenshot }
    }
}

impl eframe::App for EframeApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.app.logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.app.ui(ui);
        if let Some(plan) = &mut self.screenshot {
            plan.step(ui.ctx(), &mut self.app);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        let ft = &self.app.finetune_tab;
        self.app.settings.runs_dir = Some(ft.form.runs_dir.clone());
        self.app.settings.eval_test_file = ft.test_file.clone();
        eframe::set_value(storage, SETTINGS_KEY, &self.app.settings);
    }
}
