//! The Sampling tab: the balancing recipe (slot width, take-all threshold, cap, a weight per
//! category, seed, presets) with a live preview computed from the slot × category counts —
//! price histogram and category bars before vs. after, donut after, count, mean price, shares —
//! then the exact draw (Apply), the split, export, and saving/loading recipes.

use super::tabs::{JobOutput, TabCtx, TabView};
use super::widgets::{category_colour, donut_ui, thousands};
use crate::dataset::Dataset;
use crate::export::ExportFormat;
use crate::jobs::Level;
use crate::sampling::{
    BalanceParams, BalancePreview, Recipe, Sample, SampleOutcome, SavedRecipe, SplitParams, preview, table_digest,
};
use egui::{Color32, RichText, Ui};
use egui_plot::{Bar, BarChart, Legend, Plot};
use std::path::PathBuf;
use std::sync::Arc;

/// The presets offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// The original recipe.
    Original,
    /// Appliances only, no balancing.
    Lite,
    /// Weights inverse to category size: each category weighs the same.
    EqualPerCategory,
    /// Anything edited by hand.
    Custom,
}

/// What the tab's controls ask for, carried out in `logic` (never inside `ui`).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Draw the exact sample of the current recipe.
    Apply,
    /// Write the applied sample (drawn first when there is none) into a folder.
    Export(ExportFormat, PathBuf),
    /// Load a `recipe.json` and check whether it was made from the data shown.
    LoadRecipe(PathBuf),
    /// Show the folder picker.
    BrowseExportDir,
}

/// What the tab's jobs hand back.
enum Done {
    /// A sample of the dataset named by the pointer.
    Sampled(usize, Arc<Sample>),
    /// Files written from a sample of the dataset named by the pointer.
    Exported(usize, Arc<Sample>, SampleOutcome),
    RecipeLoaded(PathBuf, Box<SavedRecipe>, bool),
}

/// State of the Sampling tab.
pub struct SamplingTab {
    /// Preset last chosen.
    pub preset: Preset,
    /// The recipe being edited.
    pub recipe: Recipe,
    /// Export format.
    pub format: ExportFormat,
    /// Export folder (typed or picked).
    pub export_dir: String,
    /// Path of a recipe to load.
    pub recipe_path: String,
    /// The live preview and what it was computed for.
    pub preview: Option<(usize, BalanceParams, BalancePreview)>,
    /// Times of the last previews (seconds), newest last.
    pub preview_secs: Vec<f64>,
    /// The exact sample drawn on Apply (Export writes it).
    pub applied: Option<Arc<Sample>>,
    /// What the last export wrote.
    pub last_export: Option<SampleOutcome>,
    /// Commands queued by the controls.
    pub commands: Vec<Command>,
    picked_dir: Option<std::sync::mpsc::Receiver<Option<PathBuf>>>,
}

impl Default for SamplingTab {
    fn default() -> Self {
        Self {
            preset: Preset::Original,
            recipe: Recipe::preset("original")
                .unwrap_or_else(|| Recipe { balance: BalanceParams::original(), split: SplitParams::default() }),
            format: ExportFormat::Parquet,
            export_dir: String::new(),
            recipe_path: String::new(),
            preview: None,
            preview_secs: Vec::new(),
            applied: None,
            last_export: None,
            commands: Vec::new(),
            picked_dir: None,
        }
    }
}

impl TabView for SamplingTab {
    fn on_new_data(&mut self, data: &Arc<Dataset>, _ctx: &mut TabCtx<'_>) {
        self.new_data(data);
    }

    fn logic(&mut self, ctx: &mut TabCtx<'_>) {
        let Some(data) = ctx.data.cloned() else { return };
        self.update_preview(&data);
        if let Some(rx) = &self.picked_dir
            && let Ok(dir) = rx.try_recv()
        {
            if let Some(dir) = dir {
                self.export_dir = dir.display().to_string();
            }
            self.picked_dir = None;
        }
        for command in std::mem::take(&mut self.commands) {
            self.run(command, &data, ctx);
        }
    }

    fn ui(&mut self, ui: &mut Ui, ctx: &mut TabCtx<'_>) {
        let Some(data) = ctx.data.cloned() else { return };
        if self.export_dir.is_empty()
            && let Some(d) = &ctx.settings.sampling.export_dir
        {
            self.export_dir = d.display().to_string();
        }
        let busy = ctx.busy();
        egui::Panel::left("sampling_controls").resizable(true).default_size(330.0).show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| self.controls_ui(ui, &data, busy));
        });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| self.preview_ui(ui, &data));
        });
    }

    /// Commands wait for the next `logic`.
    fn is_busy(&self) -> bool {
        !self.commands.is_empty()
    }

    fn job_done(&mut self, output: JobOutput, secs: f64, ctx: &mut TabCtx<'_>) {
        let Ok(done) = output.downcast::<Done>() else { return };
        match *done {
            Done::Sampled(of, s) => {
                if ctx.data.map(|d| Arc::as_ptr(d) as usize) != Some(of) {
                    ctx.log(Level::Info, "sample drawn from a dataset no longer shown: dropped");
                    return;
                }
                ctx.log(
                    Level::Info,
                    format!(
                        "sample drawn: {} items (train {}, test {}) in {secs:.2}s",
                        s.len(),
                        s.train.len(),
                        s.test.len()
                    ),
                );
                self.applied = Some(s);
            }
            Done::Exported(of, sample, out) => {
                let files: Vec<String> = out.files.iter().map(|p| p.display().to_string()).collect();
                ctx.log(
                    Level::Info,
                    format!(
                        "exported train {} / test {} in {secs:.1}s:\n  {}",
                        out.n_train,
                        out.n_test,
                        files.join("\n  ")
                    ),
                );
                ctx.actions.push(super::Action::UseExport(out.files.clone()));
                if ctx.data.map(|d| Arc::as_ptr(d) as usize) == Some(of) {
                    self.applied = Some(sample);
                }
                self.last_export = Some(out);
            }
            Done::RecipeLoaded(path, saved, same_data) => {
                self.recipe = saved.recipe.clone();
                self.preset = Preset::Custom;
                if same_data {
                    ctx.log(Level::Info, format!("recipe loaded from {}; same source data", path.display()));
                } else {
                    ctx.log(
                        Level::Warning,
                        format!(
                            "recipe loaded from {}, but it was made from other data ({} items): the files will differ",
                            path.display(),
                            saved.source_items
                        ),
                    );
                }
            }
        }
    }
}

impl SamplingTab {
    /// Queues a command (as the controls do); it runs in the next `logic`.
    pub fn queue(&mut self, command: Command) {
        self.commands.push(command);
    }

    fn run(&mut self, command: Command, data: &Arc<Dataset>, ctx: &mut TabCtx<'_>) {
        match command {
            Command::Apply => {
                let (data, recipe) = (data.clone(), self.recipe.clone());
                ctx.start_job("drawing the sample", move |job| {
                    job.check()?;
                    let of = Arc::as_ptr(&data) as usize;
                    Ok(Done::Sampled(of, Arc::new(Sample::draw(&data.table, &recipe))))
                });
            }
            Command::Export(format, dir) => {
                ctx.settings.sampling.export_dir = Some(dir.clone());
                // The sample the user applied is what gets written (a new dataset clears it); only
                // without one is it drawn here (and then kept as the applied one).
                let applied = self.applied.clone();
                let (data, recipe) = (data.clone(), self.recipe.clone());
                ctx.start_job("exporting", move |job| {
                    job.check()?;
                    let sample = applied.unwrap_or_else(|| Arc::new(Sample::draw(&data.table, &recipe)));
                    job.check()?;
                    let out = sample.export(&data.table, &dir, format, &PathBuf::from(&data.name))?;
                    Ok(Done::Exported(Arc::as_ptr(&data) as usize, sample, out))
                });
            }
            Command::LoadRecipe(path) => {
                let data = data.clone();
                ctx.start_job("loading the recipe", move |job| {
                    let saved = SavedRecipe::load(&path)?;
                    job.check()?;
                    job.report(&crate::jobs::Progress {
                        stage: "comparing with the data shown".into(),
                        ..Default::default()
                    });
                    let same =
                        saved.source_items == data.table.len() && table_digest(&data.table) == saved.source_digest;
                    Ok(Done::RecipeLoaded(path, Box::new(saved), same))
                });
            }
            Command::BrowseExportDir => {
                let (tx, rx) = std::sync::mpsc::channel();
                let wake = ctx.wake.clone();
                let _ = std::thread::Builder::new().name("folder dialog".into()).spawn(move || {
                    let _ = tx.send(rfd::FileDialog::new().set_title("Export into folder").pick_folder());
                    wake();
                });
                self.picked_dir = Some(rx);
            }
        }
    }

    /// Called when a new dataset is loaded.
    pub fn new_data(&mut self, data: &Dataset) {
        self.applied = None;
        self.preview = None;
        if self.preset == Preset::EqualPerCategory {
            self.recipe.balance = equal_weights(data, &self.recipe.balance);
        }
    }

    /// Recomputes the preview when the parameters or the data changed (well under a
    /// millisecond on 2.8M items: it reads the count table, not the rows).
    pub fn update_preview(&mut self, data: &Arc<Dataset>) {
        let key = Arc::as_ptr(data) as usize;
        let stale = self.preview.as_ref().is_none_or(|(k, p, _)| *k != key || *p != self.recipe.balance);
        if stale {
            let t0 = std::time::Instant::now();
            let counts_for_width;
            let counts = if self.recipe.balance.slot_width_usd == 1.0 {
                &data.counts
            } else {
                counts_for_width =
                    crate::sampling::SlotCategoryCounts::from_table(&data.table, self.recipe.balance.slot_width_usd);
                &counts_for_width
            };
            let p = preview(counts, data.table.category_names(), &self.recipe.balance);
            self.preview_secs.push(t0.elapsed().as_secs_f64());
            if self.preview_secs.len() > 600 {
                self.preview_secs.drain(..300);
            }
            self.preview = Some((key, self.recipe.balance.clone(), p));
        }
    }

    /// The preset the recipe's balancing equals, else `Custom`.
    pub fn matching_preset(&self, data: &Dataset) -> Preset {
        let b = &self.recipe.balance;
        let is = |name: &str| Recipe::preset(name).is_some_and(|r| r.balance == *b);
        if is("original") {
            Preset::Original
        } else if is("lite") {
            Preset::Lite
        } else if Recipe::preset("original").is_some_and(|r| equal_weights(data, &r.balance) == *b) {
            Preset::EqualPerCategory
        } else {
            Preset::Custom
        }
    }

    fn controls_ui(&mut self, ui: &mut Ui, data: &Dataset, busy: bool) {
        ui.heading("Recipe");
        // The highlighted preset is the one the recipe equals now (edits make it "custom").
        self.preset = self.matching_preset(data);
        ui.horizontal_wrapped(|ui| {
            for (p, label) in [
                (Preset::Original, "original"),
                (Preset::Lite, "lite"),
                (Preset::EqualPerCategory, "equal per category"),
                (Preset::Custom, "custom"),
            ] {
                if ui.selectable_label(self.preset == p, label).clicked() {
                    self.preset = p;
                    match p {
                        Preset::Original => self.recipe = Recipe::preset("original").unwrap_or(self.recipe.clone()),
                        Preset::Lite => self.recipe = Recipe::preset("lite").unwrap_or(self.recipe.clone()),
                        Preset::EqualPerCategory => {
                            self.recipe = Recipe::preset("original").unwrap_or(self.recipe.clone());
                            self.recipe.balance = equal_weights(data, &self.recipe.balance);
                        }
                        Preset::Custom => {}
                    }
                }
            }
        });
        let b = &mut self.recipe.balance;
        ui.checkbox(&mut b.balance, "balance crowded price slots");
        ui.add(egui::DragValue::new(&mut b.slot_width_usd).prefix("slot width $").speed(0.05).range(0.1..=100.0));
        ui.add(egui::Slider::new(&mut b.take_all_from_usd, 0.0..=1000.0).prefix("$").text("take all from"));
        ui.add(egui::Slider::new(&mut b.cap_per_slot, 1..=20_000).logarithmic(true).text("cap per slot"));
        let largest = largest_slot(data);
        let hint = if b.balance && largest <= b.cap_per_slot {
            format!("the largest slot holds {}: this cap changes nothing", thousands(largest as u64))
        } else {
            format!("the largest slot holds {}", thousands(largest as u64))
        };
        ui.label(RichText::new(hint).weak().small());
        ui.add(egui::Slider::new(&mut b.default_weight, 0.0..=10.0).text("default weight"));
        ui.add(egui::DragValue::new(&mut b.seed).prefix("seed "));
        ui.separator();
        ui.strong("Category weights");
        ui.label(RichText::new("0 leaves a category out; the count is what the preview expects after").weak());
        let expected = self.preview.as_ref().map(|(_, _, p)| p.per_category.clone()).unwrap_or_default();
        egui::Grid::new("weights").num_columns(2).striped(true).show(ui, |ui| {
            for (code, name) in data.table.category_names().iter().enumerate() {
                let mut w = b.weight_of_unfiltered(name);
                let slider = egui::Slider::new(&mut w, 0.0..=10.0)
                    .max_decimals(2)
                    .text(RichText::new(name).color(category_colour(code)));
                if ui.add(slider).changed() {
                    b.weights.insert(name.clone(), w);
                }
                ui.label(
                    RichText::new(thousands(expected.get(code).copied().unwrap_or(0.0).round() as u64)).monospace(),
                );
                ui.end_row();
            }
        });
        if !b.categories.is_empty() {
            ui.label(RichText::new(format!("only: {}", b.categories.join(", "))).weak());
            if ui.small_button("use all categories").clicked() {
                b.categories.clear();
            }
        }
        ui.separator();
        ui.heading("Split");
        let s = &mut self.recipe.split;
        ui.add(egui::DragValue::new(&mut s.n_train).speed(100).range(0..=100_000_000).prefix("train "));
        ui.add(egui::DragValue::new(&mut s.n_test).speed(10).range(0..=10_000_000).prefix("test "));
        ui.add(egui::DragValue::new(&mut s.seed).prefix("split seed "));
        ui.add_space(6.0);
        if ui
            .add_enabled(!busy, egui::Button::new("Apply: draw the exact sample"))
            .on_hover_text("Runs the real draw in the background")
            .clicked()
        {
            self.queue(Command::Apply);
        }
        if let Some(a) = &self.applied {
            let fresh = a.recipe == self.recipe;
            ui.label(format!(
                "{}drawn: {} items, avg ${:.2}; train {}, test {}",
                if fresh { "" } else { "(older recipe) " },
                thousands(a.len() as u64),
                a.mean_price_usd,
                thousands(a.train.len() as u64),
                thousands(a.test.len() as u64)
            ));
        }
        ui.separator();
        ui.heading("Export");
        ui.horizontal(|ui| {
            for f in [ExportFormat::Parquet, ExportFormat::Jsonl, ExportFormat::Openai, ExportFormat::Csv] {
                ui.radio_value(&mut self.format, f, format!("{f:?}").to_lowercase());
            }
        });
        ui.horizontal(|ui| {
            ui.label("folder");
            ui.add(egui::TextEdit::singleline(&mut self.export_dir).desired_width(170.0).hint_text("/path/to/export"));
            if ui.button("Browse…").clicked() {
                self.queue(Command::BrowseExportDir);
            }
        });
        let dir = self.export_dir.trim();
        let hint = if self.applied.is_some() {
            "Writes the sample drawn by Apply"
        } else {
            "Draws the sample of this recipe, then writes it"
        };
        if ui
            .add_enabled(!busy && !dir.is_empty(), egui::Button::new("Export train, test and recipe.json"))
            .on_hover_text(hint)
            .clicked()
        {
            self.queue(Command::Export(self.format, PathBuf::from(dir)));
        }
        if let Some(out) = &self.last_export {
            for f in &out.files {
                ui.label(RichText::new(f.display().to_string()).monospace().weak());
            }
        }
        ui.separator();
        ui.heading("Recipes");
        ui.horizontal(|ui| {
            ui.add(egui::TextEdit::singleline(&mut self.recipe_path).desired_width(200.0).hint_text("recipe.json"));
            if ui.button("Load").on_hover_text("Load a recipe.json written beside an export").clicked() {
                self.queue(Command::LoadRecipe(PathBuf::from(self.recipe_path.trim())));
            }
        });
    }

    fn preview_ui(&mut self, ui: &mut Ui, data: &Dataset) {
        let Some((_, _, p)) = &self.preview else { return };
        let t = &data.table;
        let total_before = t.len() as f64;
        let mean_before = data.stats.price.mean;
        ui.horizontal_wrapped(|ui| {
            let stat = |ui: &mut Ui, label: &str, v: String| {
                ui.label(RichText::new(label).weak());
                ui.label(RichText::new(v).strong().size(16.0));
                ui.add_space(14.0);
            };
            stat(ui, "items after", thousands(p.total.round() as u64));
            stat(ui, "of", thousands(total_before as u64));
            stat(ui, "avg price after", format!("${:.2}", p.mean_price_usd));
            stat(ui, "before", format!("${mean_before:.2}"));
        });
        ui.label(
            RichText::new(
                "Live preview: expected result from the slot × category counts; Apply draws the exact sample.",
            )
            .weak(),
        );

        // Price histogram before vs. after, in $10 bins.
        let width = 10.0f64;
        let n_bins = 100usize;
        let counts = &data.counts;
        let nc = counts.n_categories;
        let mut before = vec![0f64; n_bins];
        let mut after = vec![0f64; n_bins];
        let slot_w = self.recipe.balance.slot_width_usd;
        for slot in 0..counts.n_slots() {
            let b = ((slot as f64 / width) as usize).min(n_bins - 1);
            before[b] += counts.counts[slot * nc..(slot + 1) * nc].iter().map(|&c| f64::from(c)).sum::<f64>();
        }
        for (slot, &v) in p.per_slot.iter().enumerate() {
            let b = ((slot as f64 * slot_w / width) as usize).min(n_bins - 1);
            after[b] += v;
        }
        let bars = |v: &[f64], colour: Color32, name: &str| {
            BarChart::new(
                name,
                v.iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        Bar::new(i as f64 * width + width / 2.0, c).width(width * 0.9).name(format!(
                            "${:.0}–${:.0}: {}",
                            i as f64 * width,
                            (i + 1) as f64 * width,
                            thousands(c.round() as u64)
                        ))
                    })
                    .collect(),
            )
            .color(colour)
            .element_formatter({
                let name = name.to_owned();
                Box::new(move |b, _| format!("{name}\n{}", b.name))
            })
        };
        ui.strong("Price distribution: before vs. after");
        Plot::new("sample_hist")
            .height(260.0)
            .legend(Legend::default())
            .allow_scroll(false)
            .x_axis_formatter(|m, _| format!("${:.0}", m.value))
            .show(ui, |plot| {
                plot.bar_chart(bars(&before, Color32::from_rgba_unmultiplied(160, 160, 160, 110), "before"));
                plot.bar_chart(bars(&after, Color32::from_rgba_unmultiplied(0x4e, 0x79, 0xa7, 220), "after"));
            });

        ui.columns(2, |cols| {
            let ui = &mut cols[0];
            ui.strong("Categories: before vs. after");
            let before_cat: Vec<f64> =
                (0..nc).map(|c| (0..counts.n_slots()).map(|s| f64::from(counts.counts[s * nc + c])).sum()).collect();
            // Largest category first (top), as on the Charts tab.
            let order: Vec<usize> = data
                .stats
                .categories
                .iter()
                .filter_map(|(n, _)| t.category_names().iter().position(|c| c == n))
                .collect();
            let names: Vec<String> = order.iter().map(|&c| t.category_names()[c].clone()).collect();
            let m = order.len();
            let names2 = names.clone();
            Plot::new("sample_cats")
                .height(240.0)
                .legend(Legend::default())
                .allow_drag(false)
                .allow_zoom(false)
                .allow_scroll(false)
                .show_grid([true, false])
                .y_axis_min_width(120.0)
                .y_axis_formatter(move |mark, _| {
                    let k = mark.value.round();
                    if (mark.value - k).abs() > 1e-6 || k < 0.0 || k as usize >= m {
                        String::new()
                    } else {
                        names2[m - 1 - k as usize].clone()
                    }
                })
                .show(ui, |plot| {
                    let mk = |vals: &[f64], off: f64, colour: Color32, name: &str| {
                        let bars = order
                            .iter()
                            .enumerate()
                            .map(|(k, &c)| {
                                Bar::new((m - 1 - k) as f64 + off, vals[c]).width(0.38).name(format!(
                                    "{}: {}",
                                    names[k],
                                    thousands(vals[c].round() as u64)
                                ))
                            })
                            .collect();
                        BarChart::new(name, bars).horizontal().color(colour).element_formatter({
                            let name = name.to_owned();
                            Box::new(move |b, _| format!("{name} {}", b.name))
                        })
                    };
                    plot.bar_chart(mk(&before_cat, 0.2, Color32::from_rgb(160, 160, 160), "before"));
                    plot.bar_chart(mk(&p.per_category, -0.2, Color32::from_rgb(0x4e, 0x79, 0xa7), "after"));
                });
            let ui = &mut cols[1];
            ui.strong("Category mix after");
            let parts: Vec<(String, f64, Color32)> = t
                .category_names()
                .iter()
                .enumerate()
                .map(|(c, n)| (n.clone(), p.per_category[c], category_colour(c)))
                .collect();
            donut_ui(ui, &parts, 180.0);
        });
    }
}

/// Items in the most crowded $1 slot.
fn largest_slot(data: &Dataset) -> usize {
    let c = &data.counts;
    let nc = c.n_categories;
    (1..c.n_slots())
        .map(|s| c.counts[s * nc..(s + 1) * nc].iter().map(|&v| v as usize).sum::<usize>())
        .max()
        .unwrap_or(0)
}

/// Weights inverse to category size, the smallest category at 10 (the top of the sliders).
fn equal_weights(data: &Dataset, params: &BalanceParams) -> BalanceParams {
    let mut out = params.clone();
    let min = data.stats.categories.iter().map(|(_, n)| *n).min().unwrap_or(1).max(1) as f64;
    out.weights = data
        .stats
        .categories
        .iter()
        .map(|(c, n)| (c.clone(), (10.0 * min / (*n).max(1) as f64 * 1000.0).round() / 1000.0))
        .collect();
    out
}
