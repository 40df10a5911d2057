//! The Compare tab: every pricer side by side on the same test items. Sources (evaluation files,
//! a folder of them, every run's checkpoint evaluations, imported guesses, and *Add pricer*,
//! which fits and evaluates any pricer as a job), small multiples of truth-vs-estimate scatters
//! with linked zoom, cursor and selection, the metrics table with bootstrap intervals and a
//! paired bootstrap of two pricers, the per-item table, breakdowns by category and price band,
//! and "Price them yourself" (the human baseline as a quiz).
//!
//! `mod.rs` holds the state, the commands and what `logic` and the jobs do; `sources`, `scatter`,
//! `tables`, `breakdowns` and `quiz` draw the parts. Everything that reads files or loops over
//! all items runs in `logic` or in a job, never in `ui`.

mod breakdowns;
mod quiz;
mod scatter;
mod sources;
mod tables;

use super::settings::CompareSettings;
use super::tabs::{JobOutput, TabCtx, TabView};
use crate::evaluation::{Evaluation, PricerSpec};
use crate::items::ItemTable;
use crate::jobs::Level;
use crate::pricers::bootstrap::{self, Bootstrap};
use crate::pricers::compare::{self, By, Comparison, GroupRow, ItemFilter, ItemSort, PricerSet, SetEntry};
use crate::pricers::quiz::Quiz;
use egui::Ui;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use scatter::PlotMode;
pub use tables::MetricColumn;

/// One pricer in the comparison.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Name shown (the user may rename it).
    pub name: String,
    /// Its evaluation file, when it has one.
    pub path: Option<PathBuf>,
    /// The evaluation as read.
    pub eval: Arc<Evaluation>,
}

/// What the tab shows in its main area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum View {
    /// Small multiples and the metrics table.
    #[default]
    Scatters,
    /// The per-item table.
    Items,
    /// Breakdowns by category and price band, within-$X curves, error histogram.
    Breakdowns,
    /// The quiz.
    Quiz,
}

/// What the controls ask for, carried out in `logic`.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Add evaluation files.
    AddFiles(Vec<PathBuf>),
    /// Add every evaluation file in a folder.
    ScanFolder(PathBuf),
    /// Add every checkpoint evaluation of every run in a runs folder.
    AddRuns(PathBuf),
    /// Replace the set with a saved one.
    LoadSet(PathBuf),
    /// Replace the set with these entries (the set kept in the settings).
    LoadEntries(Vec<SetEntry>),
    /// Save the set.
    SaveSet(PathBuf),
    /// Fit and evaluate a pricer as a job; its evaluation joins the set.
    AddPricer {
        /// The pricer.
        spec: PricerSpec,
        /// Name (default: the spec's).
        name: Option<String>,
        /// Training items.
        train: Option<PathBuf>,
        /// Test items.
        test: PathBuf,
        /// First test item.
        start: usize,
        /// Items priced.
        size: usize,
    },
    /// Remove pricer `p`.
    Remove(usize),
    /// Rename pricer `p`.
    Rename(usize, String),
    /// Move pricer `p` up (−1) or down (+1).
    Move(usize, i32),
    /// Hover over a shared item (by position), or nothing.
    Hover(Option<usize>),
    /// Select a shared item (by position), or nothing — what a click on a point or a row sends.
    SelectItem(Option<usize>),
    /// Select the items whose point in pricer `plot`'s scatter lies in the rectangle (plot
    /// coordinates of the current mode).
    SelectRect {
        /// Pricer whose scatter was dragged on.
        plot: usize,
        /// `[min, max]` on x.
        x: [f64; 2],
        /// `[min, max]` on y.
        y: [f64; 2],
    },
    /// Forget the rectangle selection.
    ClearSelection,
    /// Cancel a job of this tab.
    CancelJob(u64),
    /// Sort the metrics table by a column (again: reverse).
    SortMetrics(MetricColumn),
    /// Sort the per-item table by a column (again: reverse).
    SortItems(ItemSort),
    /// Write the per-item table's rows as CSV.
    ExportItems(PathBuf),
    /// Open (or resume) the quiz.
    OpenQuiz {
        /// Test items.
        test: PathBuf,
        /// First item.
        start: usize,
        /// Questions.
        n: usize,
        /// The answers file.
        file: PathBuf,
    },
    /// Answer the current question.
    Answer(f64),
    /// Turn the answers given so far into an evaluation in the set.
    ScoreQuiz,
}

/// What the statistics job computes for one state of the set.
pub struct Stats {
    /// Which alignment it is for.
    pub generation: u64,
    /// The bootstrap of every pricer's Error and Hits.
    pub bootstrap: Bootstrap,
    /// Error and hits per pricer and category.
    pub by_category: Vec<GroupRow>,
    /// Error and hits per pricer and price band.
    pub by_band: Vec<GroupRow>,
    /// Per pricer: share of items within $x of the truth, `[x, share]`.
    pub within: Vec<Vec<[f64; 2]>>,
    /// Per pricer: counts of absolute errors in bins of [`HIST_WIDTH`].
    pub histogram: Vec<Vec<usize>>,
}

/// Width of the error histogram's bins, in dollars.
pub const HIST_WIDTH: f64 = 20.0;
/// Bins of the error histogram (the last holds everything beyond).
pub const HIST_BINS: usize = 30;

/// What a job hands back.
enum Done {
    /// Evaluations read (path, evaluation, name), plus what could not be read.
    Loaded { evals: Vec<(Option<PathBuf>, Evaluation, Option<String>)>, skipped: Vec<String>, replace: bool },
    /// A pricer fitted and evaluated, saved at the path.
    Evaluated(PathBuf, Box<Evaluation>),
    /// The statistics of an alignment.
    Stats(Stats),
    /// Test items read (for prompts in the side panel and the quiz).
    TestItems(PathBuf, Arc<ItemTable>),
    /// The quiz opened, on its test file.
    Quiz(PathBuf, Quiz),
    /// A file written.
    Wrote(String),
}

/// State of the Compare tab.
pub struct CompareTab {
    /// The pricers, in display order.
    pub entries: Vec<Entry>,
    /// The entries aligned on their shared items (renamed as shown); `None` when empty.
    pub comparison: Option<Arc<Comparison>>,
    /// Why the entries could not be aligned.
    pub align_error: Option<String>,
    /// Statistics of the current alignment (computed off the UI thread).
    pub stats: Option<Arc<Stats>>,
    /// Seconds the last statistics job took.
    pub stats_secs: f64,
    generation: u64,
    stats_requested: u64,
    /// Main area.
    pub view: View,
    /// Scatter mode.
    pub mode: PlotMode,
    /// Overlay two pricers in one plot instead of the small multiples.
    pub overlay: bool,
    /// The pair compared (overlay, paired bootstrap, "A green while B red").
    pub pair: (usize, usize),
    /// Dragging in a scatter selects a rectangle (else it pans).
    pub select_tool: bool,
    /// Shared item under the pointer (position).
    pub hovered: Option<usize>,
    /// Shared item clicked (position).
    pub selected: Option<usize>,
    /// Items in the rectangle selection (positions).
    pub selection: Option<Vec<usize>>,
    /// Metrics table order.
    pub metric_sort: (MetricColumn, bool),
    /// Reference rows of the original's published results.
    pub show_published: bool,
    /// Per-item table filters (the selection is added to them).
    pub item_filter: ItemFilter,
    /// Per-item table order.
    pub item_sort: (ItemSort, bool),
    /// Rows of the per-item table (positions), as filtered and sorted in `logic`.
    pub rows: Arc<Vec<usize>>,
    rows_key: Option<(u64, ItemFilter, ItemSort, bool)>,
    /// Breakdown grouping.
    pub by: By,
    /// The *Add pricer* form.
    pub form: sources::AddForm,
    /// Folder typed in the sources panel.
    pub folder: String,
    /// Runs folder typed in the sources panel.
    pub runs_folder: String,
    /// Evaluation files typed in the sources panel.
    pub files: String,
    /// Pricer-set file typed in the sources panel.
    pub set_file: String,
    /// CSV path of the per-item export.
    pub export_file: String,
    /// Running jobs that add a pricer: (job id, name).
    pub pending: Vec<(u64, String)>,
    /// Test items read for the side panel and the quiz.
    pub test_items: Option<(PathBuf, Arc<ItemTable>)>,
    test_items_requested: Option<PathBuf>,
    /// The quiz, once opened.
    pub quiz: Option<Quiz>,
    /// The test file the quiz was opened on (its answers are scored against it).
    quiz_test: PathBuf,
    /// The quiz form and its typed answer.
    pub quiz_form: quiz::QuizForm,
    /// Per scatter drawn last frame, the item it highlighted (tests read it).
    pub drawn_highlights: Vec<Option<usize>>,
    /// Per scatter drawn last frame, its pricer and its transform (screen ↔ plot; tests use it).
    pub drawn_transforms: Vec<(usize, egui_plot::PlotTransform)>,
    /// Commands queued by the controls.
    pub commands: Vec<Command>,
    /// Per-pricer plot points of the current mode, rebuilt when the mode or the set changes.
    plot_data: Option<scatter::PlotData>,
    drag: Option<(usize, [f64; 2], [f64; 2])>,
    renaming: Option<(usize, String)>,
    /// Shared item selected once the next set is loaded (the screenshot mode).
    pub select_after_load: Option<usize>,
}

impl Default for CompareTab {
    fn default() -> Self {
        Self {
            entries: vec![],
            comparison: None,
            align_error: None,
            stats: None,
            stats_secs: 0.0,
            generation: 0,
            stats_requested: 0,
            view: View::Scatters,
            mode: PlotMode::Linear,
            overlay: false,
            pair: (0, 1),
            select_tool: false,
            hovered: None,
            selected: None,
            selection: None,
            metric_sort: (MetricColumn::Error, false),
            show_published: false,
            item_filter: ItemFilter::default(),
            item_sort: (ItemSort::Index, false),
            rows: Arc::new(vec![]),
            rows_key: None,
            by: By::Category,
            form: sources::AddForm::default(),
            folder: "evaluations".into(),
            runs_folder: "runs".into(),
            files: String::new(),
            set_file: "evaluations/pricers.set.json".into(),
            export_file: "evaluations/items.csv".into(),
            pending: vec![],
            test_items: None,
            test_items_requested: None,
            quiz: None,
            quiz_test: PathBuf::new(),
            quiz_form: quiz::QuizForm::default(),
            drawn_highlights: vec![],
            drawn_transforms: vec![],
            commands: vec![],
            plot_data: None,
            drag: None,
            renaming: None,
            select_after_load: None,
        }
    }
}

impl TabView for CompareTab {
    fn needs_data(&self) -> bool {
        false
    }

    fn logic(&mut self, ctx: &mut TabCtx<'_>) {
        for command in std::mem::take(&mut self.commands) {
            self.run(command, ctx);
        }
        let running: Vec<u64> = ctx.jobs.running.iter().map(|j| j.id).collect();
        self.pending.retain(|(id, _)| running.contains(id));
        // Statistics for the alignment shown, off the UI thread.
        if let Some(c) = &self.comparison
            && self.stats_requested != self.generation
        {
            self.stats_requested = self.generation;
            let (c, generation) = (c.clone(), self.generation);
            ctx.start_job("comparing: bootstrap and breakdowns", move |job| {
                Ok(Done::Stats(compute_stats(&c, generation, job)?))
            });
        }
        // The test items of the set, for the prompts in the side panel.
        if let Some(c) = &self.comparison {
            let path = PathBuf::from(&c.evals[0].test.path);
            if self.test_items_requested.as_ref() != Some(&path) {
                self.request_test_items(&path, ctx);
            }
        }
        self.update_rows();
        self.update_plot_data();
    }

    fn ui(&mut self, ui: &mut Ui, ctx: &mut TabCtx<'_>) {
        let progress = ctx.jobs.progress();
        egui::Panel::left("compare_sources").resizable(true).default_size(300.0).show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| self.sources_ui(ui, &progress));
        });
        egui::Panel::right("compare_item").resizable(true).default_size(300.0).show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| self.item_panel_ui(ui));
        });
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                for (v, label) in [
                    (View::Scatters, "Scatters & metrics"),
                    (View::Items, "Items"),
                    (View::Breakdowns, "Breakdowns"),
                    (View::Quiz, "Price them yourself"),
                ] {
                    if ui.selectable_label(self.view == v, label).clicked() {
                        self.view = v;
                    }
                }
                if let Some(c) = &self.comparison {
                    ui.separator();
                    let mut text = format!("{} pricers on {} shared items", c.evals.len(), c.shared);
                    if c.different_tests {
                        text.push_str(" (the pricers priced different test files)");
                    }
                    ui.label(text);
                }
            });
            ui.separator();
            if self.view == View::Quiz {
                self.quiz_ui(ui);
                return;
            }
            let Some(c) = self.comparison.clone() else {
                ui.centered_and_justified(|ui| match &self.align_error {
                    Some(e) => ui.colored_label(egui::Color32::from_rgb(220, 70, 70), e),
                    None => ui.label(
                        "No pricers yet. Add evaluation files, a folder, your runs' evaluations or a new pricer \
                         on the left.",
                    ),
                });
                return;
            };
            match self.view {
                View::Scatters => {
                    egui::Panel::bottom("compare_metrics").resizable(true).default_size(250.0).show(ui, |ui| {
                        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
                            self.metrics_ui(ui, &c);
                        });
                    });
                    egui::CentralPanel::default().show(ui, |ui| self.scatters_ui(ui, &c));
                }
                View::Items => self.items_ui(ui, &c),
                View::Breakdowns => self.breakdowns_ui(ui, &c),
                View::Quiz => {}
            }
        });
    }

    fn is_busy(&self) -> bool {
        !self.commands.is_empty()
    }

    fn job_done(&mut self, output: JobOutput, secs: f64, ctx: &mut TabCtx<'_>) {
        let Ok(done) = output.downcast::<Done>() else { return };
        match *done {
            Done::Loaded { evals, skipped, replace } => {
                if replace {
                    self.entries.clear();
                }
                let n = evals.len();
                for (path, eval, name) in evals {
                    let name = name.unwrap_or_else(|| eval.name.clone());
                    self.push(Entry { name, path, eval: Arc::new(eval) });
                }
                let mut text = format!("compare: added {n} evaluation(s)");
                if !skipped.is_empty() {
                    text.push_str(&format!("; {} file(s) skipped:\n{}", skipped.len(), skipped.join("\n")));
                }
                ctx.log(if skipped.is_empty() { Level::Info } else { Level::Warning }, text);
                self.realign();
                if let Some(k) = self.select_after_load.take() {
                    self.selected = Some(k).filter(|&k| self.comparison.as_ref().is_some_and(|c| k < c.shared));
                }
            }
            Done::Evaluated(path, eval) => {
                ctx.log(
                    Level::Info,
                    format!("{} ({} items, {secs:.1}s), saved as {}", eval.line, eval.metrics.n, path.display()),
                );
                self.push(Entry { name: eval.name.clone(), path: Some(path), eval: Arc::new(*eval) });
                self.realign();
            }
            Done::Stats(s) => {
                if s.generation == self.generation {
                    self.stats_secs = secs;
                    self.stats = Some(Arc::new(s));
                }
            }
            Done::TestItems(path, table) => self.test_items = Some((path, table)),
            Done::Quiz(test, q) => {
                let at =
                    q.next().map_or("all answered".into(), |k| format!("question {} of {}", k + 1, q.questions.len()));
                ctx.log(Level::Info, format!("quiz {}: {at}", q.file.display()));
                self.quiz = Some(q);
                self.quiz_test = test;
            }
            Done::Wrote(what) => ctx.log(Level::Info, what),
        }
    }
}

impl View {
    /// Reads a view name given on the command line (`scatters`, `items`, `breakdowns`, `quiz`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "scatters" | "metrics" => Some(Self::Scatters),
            "items" => Some(Self::Items),
            "breakdowns" => Some(Self::Breakdowns),
            "quiz" => Some(Self::Quiz),
            _ => None,
        }
    }
}

impl CompareTab {
    /// Queues a command (as the controls do); it runs in the next `logic`.
    pub fn queue(&mut self, command: Command) {
        self.commands.push(command);
    }

    /// Takes the persisted part of the state (and reloads the set that was shown).
    pub fn restore(&mut self, saved: &CompareSettings) {
        if !saved.folder.is_empty() {
            self.folder = saved.folder.clone();
        }
        self.form.train = saved.train_file.clone();
        self.form.test = saved.test_file.clone();
        if !saved.pricers.is_empty() {
            self.commands.push(Command::LoadEntries(saved.pricers.clone()));
        }
    }

    /// Writes the persisted part of the state.
    pub fn persist(&self, saved: &mut CompareSettings) {
        saved.folder = self.folder.clone();
        saved.train_file = self.form.train.clone();
        saved.test_file = self.form.test.clone();
        saved.pricers = self.set().pricers;
    }

    /// Fills the *Add pricer* files from a Sampling export when they are empty.
    pub fn use_export(&mut self, files: &[PathBuf]) {
        use super::actions::exported;
        if self.form.train.trim().is_empty()
            && let Some(p) = exported(files, "train")
        {
            self.form.train = p.display().to_string();
        }
        if self.form.test.trim().is_empty()
            && let Some(p) = exported(files, "test")
        {
            self.form.test = p.display().to_string();
        }
    }

    /// The set as it would be saved (entries with a file, their names when renamed).
    pub fn set(&self) -> PricerSet {
        PricerSet {
            format: compare::SET_FORMAT,
            pricers: self
                .entries
                .iter()
                .filter_map(|e| {
                    let path = e.path.clone()?;
                    Some(SetEntry { path, name: (e.name != e.eval.name).then(|| e.name.clone()) })
                })
                .collect(),
        }
    }

    fn push(&mut self, entry: Entry) {
        // The same file again replaces the earlier one (a re-run evaluation).
        if let Some(p) = &entry.path
            && let Some(k) = self.entries.iter().position(|e| e.path.as_ref() == Some(p))
        {
            self.entries[k] = entry;
            return;
        }
        self.entries.push(entry);
    }

    /// Aligns the entries again (after any change of the set).
    fn realign(&mut self) {
        self.generation += 1;
        self.stats = None;
        self.hovered = None;
        self.selected = None;
        self.selection = None;
        self.drag = None;
        self.plot_data = None;
        self.rows_key = None;
        let n = self.entries.len();
        if n > 0 {
            let clamp = |p: usize| p.min(n - 1);
            self.pair = (clamp(self.pair.0), clamp(self.pair.1));
            if n > 1 && self.pair.0 == self.pair.1 {
                self.pair = (0, 1);
            }
        }
        if self.entries.is_empty() {
            self.comparison = None;
            self.align_error = None;
            return;
        }
        let evals: Vec<Evaluation> = self
            .entries
            .iter()
            .map(|e| {
                let mut ev = (*e.eval).clone();
                ev.rename(&e.name);
                ev
            })
            .collect();
        match compare::align(evals) {
            Ok(c) => {
                self.comparison = Some(Arc::new(c));
                self.align_error = None;
            }
            Err(e) => {
                self.comparison = None;
                self.align_error = Some(e.to_string());
            }
        }
    }

    fn request_test_items(&mut self, path: &Path, ctx: &mut TabCtx<'_>) {
        self.test_items_requested = Some(path.to_owned());
        if !path.is_file() {
            return;
        }
        let path = path.to_owned();
        ctx.start_job("reading the test items", move |job| {
            let f = crate::items_io::ItemsFile::read(&path, job)?;
            Ok(Done::TestItems(path, Arc::new(f.table)))
        });
    }

    fn run(&mut self, command: Command, ctx: &mut TabCtx<'_>) {
        match command {
            Command::AddFiles(paths) => {
                ctx.start_job("reading evaluations", move |_| {
                    Ok(load_entries(paths.into_iter().map(|path| SetEntry { path, name: None }), false))
                });
            }
            Command::ScanFolder(dir) => {
                ctx.start_job("reading a folder of evaluations", move |_| {
                    let (found, skipped) = compare::scan_folder(&dir)?;
                    let evals = found.into_iter().map(|(p, e)| (Some(p), e, None)).collect();
                    Ok(Done::Loaded { evals, skipped, replace: false })
                });
            }
            Command::AddRuns(dir) => {
                ctx.start_job("reading the runs' evaluations", move |_| {
                    let mut evals = vec![];
                    for run in crate::finetune::run::list_runs(&dir) {
                        for (p, e) in crate::finetune::run::read_evaluation_files(&run) {
                            evals.push((Some(p), e, None));
                        }
                    }
                    let skipped = if evals.is_empty() {
                        vec![format!("{}: no run holds an evaluation (evaluate a checkpoint first)", dir.display())]
                    } else {
                        vec![]
                    };
                    Ok(Done::Loaded { evals, skipped, replace: false })
                });
            }
            Command::LoadSet(path) => {
                ctx.start_job("reading a pricer set", move |_| Ok(load_entries(PricerSet::load(&path)?.pricers, true)));
            }
            Command::LoadEntries(entries) => {
                ctx.start_job("reading the pricers shown last", move |_| Ok(load_entries(entries, true)));
            }
            Command::SaveSet(path) => {
                let set = self.set();
                let dropped = self.entries.len() - set.pricers.len();
                ctx.start_job("saving the pricer set", move |_| {
                    set.save(&path)?;
                    let mut text = format!("saved {} pricer(s) to {}", set.pricers.len(), path.display());
                    if dropped > 0 {
                        text.push_str(&format!(" ({dropped} without an evaluation file left out)"));
                    }
                    Ok(Done::Wrote(text))
                });
            }
            Command::AddPricer { spec, name, train, test, start, size } => {
                let name = name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| spec.default_name());
                let out = Path::new(&self.folder).join(format!("{}.json", file_stem(&name)));
                let req = crate::pricers::engine::Request {
                    spec,
                    name: Some(name.clone()),
                    train,
                    test,
                    start,
                    size,
                    out: Some(out.clone()),
                    cache: None,
                };
                let id = ctx.start_job(&format!("pricing with {name}"), move |job| {
                    let eval = crate::pricers::engine::evaluate(&req, job)?;
                    Ok(Done::Evaluated(out, Box::new(eval)))
                });
                self.pending.push((id, name));
            }
            Command::Remove(p) => {
                if p < self.entries.len() {
                    self.entries.remove(p);
                    self.realign();
                }
            }
            Command::Rename(p, name) => {
                if let Some(e) = self.entries.get_mut(p)
                    && !name.trim().is_empty()
                {
                    e.name = name.trim().to_owned();
                    self.realign();
                }
            }
            Command::Move(p, by) => {
                let q = p as i64 + i64::from(by);
                if p < self.entries.len() && q >= 0 && (q as usize) < self.entries.len() {
                    self.entries.swap(p, q as usize);
                    self.realign();
                }
            }
            Command::Hover(k) => self.hovered = k,
            Command::SelectItem(k) => {
                let n = self.comparison.as_ref().map_or(0, |c| c.shared);
                self.selected = k.filter(|&k| k < n);
            }
            Command::SelectRect { plot, x, y } => {
                if let Some(pd) = &self.plot_data {
                    let inside = pd.in_rect(plot, x, y, self.overlay.then_some(self.pair));
                    ctx.log(Level::Info, format!("selected {} items in the scatter", inside.len()));
                    self.selection = Some(inside);
                }
            }
            Command::ClearSelection => self.selection = None,
            Command::CancelJob(id) => ctx.jobs.cancel(id),
            Command::SortMetrics(col) => {
                self.metric_sort = toggled(self.metric_sort, col);
            }
            Command::SortItems(col) => {
                self.item_sort = toggled(self.item_sort, col);
            }
            Command::ExportItems(path) => {
                let Some(c) = self.comparison.clone() else { return };
                let rows = self.rows.clone();
                ctx.start_job("exporting the items", move |_| {
                    compare::write_items_csv_rows(&c, &rows, &path)?;
                    Ok(Done::Wrote(format!("wrote {} items to {}", rows.len(), path.display())))
                });
            }
            Command::OpenQuiz { test, start, n, file } => {
                ctx.start_job("opening the quiz", move |job| {
                    let f = crate::items_io::ItemsFile::read(&test, job)?;
                    let quiz = Quiz::open(&f.table, start..start + n, &file)?;
                    Ok(Done::Quiz(test, quiz))
                });
            }
            Command::Answer(guess) => {
                if let Some(q) = &mut self.quiz
                    && let Some(k) = q.next()
                {
                    // One small CSV (a few hundred rows) written atomically: milliseconds.
                    match q.answer(k, guess) {
                        Ok(()) => {
                            let question = &q.questions[k];
                            self.quiz_form.last = Some((question.title.clone(), guess, question.truth));
                        }
                        Err(e) => ctx.log(Level::Error, format!("could not record the answer: {e}")),
                    }
                }
            }
            Command::ScoreQuiz => {
                let Some(q) = &self.quiz else { return };
                let n = q.answered_prefix();
                if n == 0 {
                    ctx.log(Level::Warning, "answer at least one question first");
                    return;
                }
                let spec = PricerSpec::Human { file: q.file.clone() };
                let stem = q.file.file_stem().map_or_else(|| "quiz".into(), |s| s.to_string_lossy().into_owned());
                let name = Some(format!("human {stem}"));
                let (test, start) = (self.quiz_test.clone(), q.questions[0].index);
                self.run(Command::AddPricer { spec, name, train: None, test, start, size: n }, ctx);
            }
        }
    }

    /// Re-filters the per-item table when its inputs changed (a few thousand rows: well under a
    /// millisecond).
    fn update_rows(&mut self) {
        let Some(c) = &self.comparison else { return };
        let mut filter = self.item_filter.clone();
        filter.only = self.selection.clone();
        let key = (self.generation, filter.clone(), self.item_sort.0, self.item_sort.1);
        if self.rows_key.as_ref() == Some(&key) {
            return;
        }
        let ok = |p: usize| p < c.evals.len();
        if filter.green_red.is_some_and(|(a, b)| !ok(a) || !ok(b)) {
            filter.green_red = None;
        }
        let sort = match self.item_sort.0 {
            ItemSort::Guess(p) | ItemSort::Error(p) if !ok(p) => ItemSort::Index,
            s => s,
        };
        self.rows = Arc::new(compare::item_rows(c, &filter, sort, self.item_sort.1));
        self.rows_key = Some(key);
    }

    fn update_plot_data(&mut self) {
        let Some(c) = &self.comparison else { return };
        if self.plot_data.as_ref().is_some_and(|p| p.mode == self.mode && p.generation == self.generation) {
            return;
        }
        self.plot_data = Some(scatter::PlotData::new(c, self.mode, self.generation));
    }
}

/// A sort order after a click on column `col`: the same column again reverses, another one sorts
/// ascending.
fn toggled<T: PartialEq>((current, descending): (T, bool), col: T) -> (T, bool) {
    let again = current == col;
    (col, again && !descending)
}

/// Reads the evaluation of each entry; what cannot be read is reported, the rest kept.
fn load_entries(entries: impl IntoIterator<Item = SetEntry>, replace: bool) -> Done {
    let mut evals = vec![];
    let mut skipped = vec![];
    for e in entries {
        match Evaluation::load(&e.path) {
            Ok(ev) => evals.push((Some(e.path), ev, e.name)),
            Err(err) => skipped.push(err.to_string()),
        }
    }
    Done::Loaded { evals, skipped, replace }
}

/// Everything the statistics job computes.
fn compute_stats(c: &Comparison, generation: u64, job: &crate::jobs::JobCtx) -> crate::Result<Stats> {
    let bootstrap = c.bootstrap(bootstrap::DEFAULT_RESAMPLES, bootstrap::DEFAULT_SEED, job)?;
    let errors: Vec<Vec<f64>> = (0..c.evals.len()).map(|p| c.errors(p)).collect();
    let max_error = errors.iter().flatten().copied().fold(1.0, f64::max);
    let step = (max_error / 400.0).max(0.5);
    Ok(Stats {
        generation,
        bootstrap,
        by_category: compare::breakdown(c, By::Category)?,
        by_band: compare::breakdown(c, By::PriceBand)?,
        within: errors.iter().map(|e| compare::within_curve(e, step, max_error)).collect(),
        histogram: errors.iter().map(|e| compare::error_histogram(e, HIST_WIDTH, HIST_BINS)).collect(),
    })
}

/// A file name from a pricer name (`chat gpt-4o-mini + RAG 5` → `chat-gpt-4o-mini-RAG-5`).
fn file_stem(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_alphanumeric() || c == '.' || c == '_' { c } else { '-' }).collect();
    let parts: Vec<&str> = s.split('-').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() { "pricer".into() } else { parts.join("-") }
}
