//! The Pricer Studio app: the shell (tab bar, status bar with every running job, log panel, open
//! and download dialogs, shortcuts, themes, persisted settings) over tabs that keep one contract
//! ([`tabs::TabView`]). The only code that imports egui; the domain work runs as jobs over the
//! core.
//!
//! - `actions` — what the UI asks of the shell, carried out after drawing
//! - `log` — the log panel
//! - `settings` — what persists across restarts (the shell's and each tab's)
//! - `tabs` — the tab contract, the registry of tabs, the jobs board
//! - `dataset_tab`, `charts_tab`, `sampling_tab`, `finetune_tab`, `compare_tab` — one module per tab
//! - `widgets` — dialogs, badges, the donut, the screenshot plan

pub mod actions;
pub mod charts_tab;
pub mod compare_tab;
pub mod dataset_tab;
pub mod finetune_tab;
pub mod log;
pub mod mapping_dialog;
pub mod sampling_tab;
pub mod settings;
pub mod tabs;
pub mod widgets;

pub use crate::jobs::Level;
pub use actions::Action;
pub use log::{Log, LogEntry};
pub use settings::Settings;
pub use tabs::{Jobs, Owner, Tab, TabCtx, Tabs};

use crate::dataset::{self, Dataset};
use crate::view::Filter;
use egui::{Key, KeyboardShortcut, Modifiers};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

/// What a shell job hands back.
enum ShellDone {
    /// A dataset to show.
    Loaded(Arc<Dataset>),
    /// Files downloaded (then loaded).
    Downloaded(Vec<PathBuf>),
    /// A table of the load needs its columns mapped first.
    NeedsMapping(Box<mapping_dialog::MappingDialog>),
    /// The mapped table's first rows read again with another CSV dialect.
    Reinspected(Box<crate::table::TableHead>),
}

/// The app.
pub struct PricerApp {
    /// Persisted settings.
    pub settings: Settings,
    /// The dataset shown (kept while a new one loads, and when loading fails).
    pub data: Option<Arc<Dataset>>,
    /// Every running job (the shell's and the tabs').
    pub jobs: Jobs,
    /// The log.
    pub log: Log,
    /// The Dataset tab's filter (charts link into it).
    pub filter: Filter,
    /// The tabs' states.
    pub tabs: Tabs,
    open_dialog: Option<widgets::PathDialog>,
    download_dialog: Option<widgets::DownloadDialog>,
    /// The column-mapping dialog, while a table of a load waits for its mapping.
    pub mapping_dialog: Option<mapping_dialog::MappingDialog>,
    picked: Option<Receiver<Option<Vec<PathBuf>>>>,
    actions: Vec<Action>,
    wake: Arc<dyn Fn() + Send + Sync>,
    /// Frames drawn (for tests and the screenshot mode).
    pub frames: u64,
}

const SHORTCUT_OPEN: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
const SHORTCUT_DEMO: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::D);
const SHORTCUT_LOG: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::L);
const TAB_KEYS: [Key; 9] =
    [Key::Num1, Key::Num2, Key::Num3, Key::Num4, Key::Num5, Key::Num6, Key::Num7, Key::Num8, Key::Num9];

impl PricerApp {
    /// A new app with `settings`; `wake` requests a repaint from any thread. Starts loading the
    /// built-in demo when `load_demo` is set.
    pub fn new(settings: Settings, wake: Arc<dyn Fn() + Send + Sync>, load_demo: bool) -> Self {
        let mut app = Self {
            tabs: Tabs::default(),
            settings,
            data: None,
            jobs: Jobs::default(),
            log: Log::default(),
            filter: Filter::default(),
            open_dialog: None,
            download_dialog: None,
            mapping_dialog: None,
            picked: None,
            actions: Vec::new(),
            wake,
            frames: 0,
        };
        app.tabs.finetune.restore(&app.settings.finetune);
        app.tabs.compare.restore(&app.settings.compare);
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
        self.log.push(level, text);
    }

    /// Whether anything is being computed (a job, or a tab's own background work).
    pub fn is_busy(&self) -> bool {
        !self.jobs.is_empty() || Tab::ALL.iter().any(|&t| self.tabs.get(t).is_busy())
    }

    /// Shows a dataset (as a finished load does).
    pub fn set_data(&mut self, data: Arc<Dataset>) {
        self.filter = Filter::default();
        self.data = Some(data.clone());
        for &tab in Tab::ALL {
            self.with_tab(tab, |t, c| t.on_new_data(&data, c));
        }
    }

    /// Runs `f` with a tab and its context; returns when the tab asked to be polled again.
    fn with_tab(
        &mut self,
        tab: Tab,
        f: impl FnOnce(&mut dyn tabs::TabView, &mut TabCtx<'_>),
    ) -> Option<std::time::Duration> {
        let data = self.data.clone();
        let mut ctx = TabCtx {
            tab,
            data: data.as_ref(),
            filter: &mut self.filter,
            settings: &mut self.settings,
            actions: &mut self.actions,
            jobs: &mut self.jobs,
            wake: &self.wake,
            repaint_after: None,
        };
        f(self.tabs.get_mut(tab), &mut ctx);
        ctx.repaint_after
    }

    /// Per-frame work that draws nothing: finished jobs, tabs' logic, file dialogs, drops.
    pub fn logic(&mut self, ctx: &egui::Context) {
        self.poll_jobs();
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
        for &tab in Tab::ALL {
            if let Some(after) = self.with_tab(tab, |t, c| t.logic(c)) {
                ctx.request_repaint_after(after);
            }
        }
        self.process_actions();
        if self.is_busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    fn poll_jobs(&mut self) {
        for (level, text) in self.jobs.take_log() {
            self.log(level, text);
        }
        for done in self.jobs.poll() {
            let (name, secs) = (done.name, done.secs);
            match done.result {
                Err(e) if crate::jobs::is_cancelled(&e) => {
                    self.log(Level::Info, format!("{name}: cancelled; nothing changed"));
                }
                Err(e) => {
                    let kept = if done.owner == Owner::Shell { "\nThe previous dataset is kept." } else { "" };
                    self.log(Level::Error, format!("{name} failed: {e:#}{kept}"));
                }
                Ok(output) => match done.owner {
                    Owner::Shell => self.shell_job_done(output, secs),
                    Owner::Tab(tab) => {
                        self.with_tab(tab, |t, c| t.job_done(output, secs, c));
                    }
                },
            }
        }
    }

    fn shell_job_done(&mut self, output: tabs::JobOutput, secs: f64) {
        let Ok(done) = output.downcast::<ShellDone>() else { return };
        match *done {
            ShellDone::Loaded(data) => {
                let rep = &data.report;
                let level = if rep.malformed > 0 || !rep.file_errors.is_empty() { Level::Warning } else { Level::Info };
                self.log(
                    level,
                    format!("loaded {}: {} items in {secs:.1}s\n{}", data.name, data.table.len(), rep.summary()),
                );
                self.set_data(data);
            }
            ShellDone::Downloaded(paths) => {
                self.log(Level::Info, format!("downloaded {} file(s) in {secs:.1}s", paths.len()));
                self.actions.push(Action::Load(paths));
            }
            ShellDone::NeedsMapping(dialog) => {
                self.log(
                    Level::Info,
                    format!("{}: not in Amazon's layout; choose its columns", dialog.head.schema.name),
                );
                self.mapping_dialog = Some(*dialog);
            }
            ShellDone::Reinspected(head) => {
                if let Some(dialog) = &mut self.mapping_dialog {
                    let same = head.schema.signature() == dialog.head.schema.signature();
                    if !same {
                        let category = crate::table::default_category(&dialog.path);
                        dialog.mapping = crate::table::TableMapping::guess(&head.schema, &category);
                    }
                    dialog.head = Arc::new(*head);
                }
            }
        }
    }

    fn start(
        &mut self,
        name: &str,
        work: impl FnOnce(&crate::jobs::JobCtx) -> anyhow::Result<ShellDone> + Send + 'static,
    ) {
        if self.jobs.busy(Owner::Shell) {
            self.log(Level::Warning, "a dataset is still loading: cancel it first");
            return;
        }
        self.jobs.start(Owner::Shell, name, self.wake.clone(), work);
    }

    fn process_actions(&mut self) {
        while !self.actions.is_empty() {
            let actions = std::mem::take(&mut self.actions);
            for action in actions {
                self.process(action);
            }
        }
    }

    fn process(&mut self, action: Action) {
        match action {
            Action::ShowOpen => {
                let (tx, rx) = std::sync::mpsc::channel();
                let wake = self.wake.clone();
                let dir = self.settings.recent_files.first().and_then(|p| p.parent().map(PathBuf::from));
                let spawned = std::thread::Builder::new().name("file dialog".into()).spawn(move || {
                    let mut dialog = rfd::FileDialog::new()
                        .set_title("Open Amazon metadata, curated items or your own product table")
                        .add_filter(
                            "Data",
                            &["jsonl", "gz", "json", "parquet", "csv", "tsv", "arrow", "ipc", "feather", "ndjson"],
                        );
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
            Action::ShowOpenPath => {
                self.open_dialog = Some(widgets::PathDialog::new(self.settings.recent_files.first()));
            }
            Action::Load(paths) => {
                self.settings.recent_files.retain(|p| !paths.contains(p));
                for p in paths.iter().rev() {
                    self.settings.recent_files.insert(0, p.clone());
                }
                self.settings.recent_files.truncate(8);
                self.actions.push(Action::LoadMapped(paths, Vec::new(), false));
            }
            Action::LoadMapped(paths, mapped, review) => {
                let name =
                    format!("loading {}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
                let saved = self.settings.table_mappings.clone();
                self.start(&name, move |ctx| match dataset::prepare_open(&paths, mapped, &saved, review, ctx)? {
                    dataset::Prepared::Ready(mapped) => {
                        Ok(ShellDone::Loaded(Arc::new(dataset::load_paths_mapped(&paths, &mapped, None, ctx)?)))
                    }
                    dataset::Prepared::NeedsMapping { path, head, mapping, mapped } => {
                        ctx.report(&crate::jobs::Progress {
                            stage: "loading the tokenizer for the preview".into(),
                            ..Default::default()
                        });
                        let curator = Arc::new(crate::curate::Curator::original()?);
                        Ok(ShellDone::NeedsMapping(Box::new(mapping_dialog::MappingDialog::new(
                            paths,
                            mapped,
                            path,
                            Arc::new(*head),
                            mapping,
                            curator,
                        ))))
                    }
                });
            }
            Action::LoadDemo => {
                let n = self.settings.demo_lines;
                self.start("loading the synthetic demo", move |ctx| {
                    Ok(ShellDone::Loaded(Arc::new(dataset::load_demo(n, crate::demo::DEFAULT_SEED, ctx)?)))
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
                    Ok(ShellDone::Downloaded(paths))
                });
            }
            Action::SetTab(tab) => self.settings.tab = tab,
            Action::FilterTo(filter) => {
                self.filter = filter;
                self.settings.tab = Tab::Dataset;
            }
            Action::Cancel(id) => self.jobs.cancel(id),
            Action::CancelNewest => self.jobs.cancel_newest(),
            Action::ToggleLog => self.log.shown = !self.log.shown,
            Action::ToggleTheme => self.settings.dark_mode = !self.settings.dark_mode,
            Action::Log(level, text) => self.log(level, text),
            Action::UseExport(files) => {
                self.tabs.finetune.use_export(&files);
                self.tabs.compare.use_export(&files);
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
            for (k, tab) in TAB_KEYS.iter().zip(Tab::ALL) {
                if i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, *k)) {
                    self.actions.push(Action::SetTab(*tab));
                }
            }
            if !self.jobs.is_empty() && i.consume_key(Modifiers::NONE, Key::Escape) {
                self.actions.push(Action::CancelNewest);
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
        if self.log.shown {
            egui::Panel::bottom("log").resizable(true).default_size(160.0).show(ui, |ui| self.log.ui(ui));
        }
        let tab = self.settings.tab;
        let loading = self.jobs.busy(Owner::Shell);
        egui::CentralPanel::default().show(ui, |ui| {
            if self.tabs.get(tab).needs_data() && self.data.is_none() {
                ui.centered_and_justified(|ui| {
                    if loading {
                        ui.label("Loading…");
                    } else {
                        ui.label("No dataset. Open a file (Ctrl+O), drop one here, or load the demo (Ctrl+D).");
                    }
                });
            } else {
                self.with_tab(tab, |t, c| t.ui(ui, c));
            }
        });

        if let Some(dialog) = &mut self.open_dialog
            && let Some(result) =
                dialog.ui(&ctx, "Open files", "Paths (one per line): raw .jsonl/.jsonl.gz/.parquet, curated items, or your own .csv/.tsv/.parquet/.jsonl/.arrow table")
        {
            if let Some(paths) = result {
                self.actions.push(Action::Load(paths));
            }
            self.open_dialog = None;
        }
        if let Some(dialog) = &mut self.mapping_dialog
            && let Some(outcome) = dialog.ui(&ctx)
        {
            self.mapping_done(outcome);
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

    fn mapping_done(&mut self, outcome: mapping_dialog::MappingOutcome) {
        use mapping_dialog::MappingOutcome;
        let Some(dialog) = &mut self.mapping_dialog else { return };
        match outcome {
            MappingOutcome::Cancel => {
                let msg = format!("{}: not loaded", dialog.head.schema.name);
                self.mapping_dialog = None;
                self.log(Level::Info, msg);
            }
            MappingOutcome::Reinspect(dialect) => {
                let path = dialog.path.clone();
                self.start(&format!("reading {} again", path.display()), move |_| {
                    let head = crate::table::inspect(&path, Some(dialect), crate::table::INSPECT_ROWS)?;
                    Ok(ShellDone::Reinspected(Box::new(head)))
                });
            }
            MappingOutcome::Curate(spec) => {
                let Some(dialog) = self.mapping_dialog.take() else { return };
                self.settings.table_mappings.put(&dialog.head.schema, spec.clone());
                let mut mapped = dialog.mapped;
                mapped.push((dialog.path, spec));
                self.actions.push(Action::LoadMapped(dialog.paths, mapped, false));
            }
        }
    }

    fn top_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Pricer Studio");
            ui.separator();
            for &tab in Tab::ALL {
                if ui.selectable_label(self.settings.tab == tab, tab.label()).clicked() {
                    self.actions.push(Action::SetTab(tab));
                }
            }
            ui.separator();
            if ui.button("Open…").on_hover_text("Open raw metadata or curated items (Ctrl+O)").clicked() {
                self.actions.push(Action::ShowOpen);
            }
            if ui.button("Open path…").on_hover_text("Type or paste file paths").clicked() {
                self.actions.push(Action::ShowOpenPath);
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
                    self.actions.push(Action::ToggleTheme);
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
            let jobs = self.jobs.progress();
            for (id, name, p) in &jobs {
                ui.push_id(id, |ui| {
                    ui.label(name);
                    let frac = p.fraction().unwrap_or(0.0);
                    let text =
                        if p.n_items > 0 { format!("{} — {} items", p.stage, p.n_items) } else { p.stage.clone() };
                    let width = if jobs.len() > 1 { 160.0 } else { 260.0 };
                    ui.add(egui::ProgressBar::new(frac).desired_width(width).show_percentage().text(text));
                    if ui
                        .button("Cancel")
                        .on_hover_text(format!("Stop {name} (Esc: the newest job); what was there stays"))
                        .clicked()
                    {
                        self.actions.push(Action::Cancel(*id));
                    }
                });
                ui.separator();
            }
            if jobs.is_empty() {
                if let Some(data) = &self.data {
                    ui.label(format!("{} — {} items", data.name, data.table.len()));
                } else {
                    ui.label("Ready");
                }
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let errors = self.log.n_errors();
                let label = if errors > 0 {
                    format!("Log ({errors} errors)")
                } else {
                    format!("Log ({})", self.log.entries.len())
                };
                if ui.selectable_label(self.log.shown, label).on_hover_text("Ctrl+L").clicked() {
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
    /// Creates the app, restoring settings from eframe's storage, then applying `start`.
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        screenshot: Option<widgets::ScreenshotPlan>,
        start: StartOptions,
    ) -> Self {
        // A screenshot run starts from defaults, not from what a user saved.
        let saved =
            if screenshot.is_some() { None } else { cc.storage.and_then(|s| eframe::get_value(s, SETTINGS_KEY)) };
        let mut settings: Settings = saved.unwrap_or_default();
        if let Some(tab) = start.tab {
            settings.tab = tab;
        }
        if let Some(n) = start.demo_lines {
            settings.demo_lines = n;
        }
        if let Some(dir) = start.runs_dir {
            settings.finetune.runs_dir = Some(dir);
        }
        let ctx = cc.egui_ctx.clone();
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || ctx.request_repaint());
        let mut app = PricerApp::new(settings, wake, start.open.is_empty());
        if !start.open.is_empty() {
            app.act(Action::Load(start.open.clone()));
        }
        if let Some(cap) = start.cap {
            app.tabs.sampling.recipe.balance.cap_per_slot = cap;
        }
        if let Some(set) = start.pricer_set {
            app.tabs.compare.queue(compare_tab::Command::LoadSet(set));
        }
        app.tabs.compare.select_after_load = start.select_item;
        if let Some(view) = start.compare_view {
            app.tabs.compare.view = view;
        }
        Self { app, screenshot }
    }
}

/// What the command line asks the app to start with.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Tab shown first.
    pub tab: Option<Tab>,
    /// Raw lines of the built-in demo.
    pub demo_lines: Option<usize>,
    /// Cap per slot of the sampling recipe.
    pub cap: Option<usize>,
    /// Folder of fine-tuning runs.
    pub runs_dir: Option<PathBuf>,
    /// A pricer set shown on the Compare tab.
    pub pricer_set: Option<PathBuf>,
    /// Shared item (position) selected on the Compare tab once the set is loaded.
    pub select_item: Option<usize>,
    /// The Compare tab's view shown first.
    pub compare_view: Option<compare_tab::View>,
    /// Files opened at start instead of the demo.
    pub open: Vec<PathBuf>,
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
        self.app.tabs.finetune.persist(&mut self.app.settings.finetune);
        self.app.tabs.compare.persist(&mut self.app.settings.compare);
        eframe::set_value(storage, SETTINGS_KEY, &self.app.settings);
    }
}
