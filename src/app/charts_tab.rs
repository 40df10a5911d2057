//! The Charts tab: histograms of price, tokens and prompt length over all rows (bins by width
//! or count, log y, log x with $ labels, hover counts and shares, click a bar to filter), the
//! category bar chart and donut (click a bar to filter), and price vs. prompt length as a density
//! image of every item.

use super::Action;
use super::tabs::{JobOutput, TabCtx, TabView};
use super::widgets::{category_colour, donut_ui, thousands};
use crate::dataset::Dataset;
use crate::stats::{Bins, Histogram, Summary, histogram, price_histogram};
use crate::view::Filter;
use egui::{Color32, RichText, Ui};
use egui_plot::{Bar, BarChart, Plot, PlotImage, PlotPoint};
use std::sync::Arc;

/// Which column a histogram shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Price in USD.
    Price,
    /// Prompt tokens.
    Tokens,
    /// Prompt characters.
    Length,
}

impl Measure {
    fn label(self) -> &'static str {
        match self {
            Measure::Price => "Price",
            Measure::Tokens => "Tokens",
            Measure::Length => "Prompt length",
        }
    }
}

/// How bins are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinMode {
    /// A fixed number of bins.
    Count,
    /// A fixed width (dollars, tokens or characters).
    Width,
}

/// State of the Charts tab.
pub struct ChartsTab {
    /// Histogram column.
    pub measure: Measure,
    /// Bin mode.
    pub bin_mode: BinMode,
    /// Number of bins.
    pub n_bins: usize,
    /// Bin width.
    pub bin_width: f64,
    /// Logarithmic counts.
    pub log_y: bool,
    /// Logarithmic x (log10 bins, $ labels).
    pub log_x: bool,
    cache: Option<(HistKey, Arc<Histogram>)>,
    density_texture: Option<(usize, egui::TextureHandle)>,
}

type HistKey = (usize, Measure, BinMode, usize, u64, bool);

impl Default for ChartsTab {
    fn default() -> Self {
        Self {
            measure: Measure::Price,
            bin_mode: BinMode::Width,
            n_bins: 100,
            bin_width: 10.0,
            log_y: false,
            log_x: false,
            cache: None,
            density_texture: None,
        }
    }
}

impl TabView for ChartsTab {
    fn logic(&mut self, ctx: &mut TabCtx<'_>) {
        if let Some(data) = ctx.data {
            self.histogram(data);
        }
    }

    fn ui(&mut self, ui: &mut Ui, ctx: &mut TabCtx<'_>) {
        if let Some(data) = ctx.data {
            self.draw_ui(ui, data, ctx.actions);
        }
    }

    fn job_done(&mut self, _output: JobOutput, _secs: f64, _ctx: &mut TabCtx<'_>) {}
}

impl ChartsTab {
    fn hist_key(&self, data: &Arc<Dataset>) -> HistKey {
        (Arc::as_ptr(data) as usize, self.measure, self.bin_mode, self.n_bins, self.bin_width.to_bits(), self.log_x)
    }

    /// The current histogram (computed over all rows, cached per settings).
    pub fn histogram(&mut self, data: &Arc<Dataset>) -> Arc<Histogram> {
        let key = self.hist_key(data);
        if let Some((k, h)) = &self.cache
            && *k == key
        {
            return h.clone();
        }
        let t = &data.table;
        let summary = self.summary(data);
        let (lo, hi) = match self.measure {
            Measure::Price => (0.0, summary.max.max(1.0).ceil()),
            _ => (summary.min.floor(), summary.max.floor() + 1.0),
        };
        let bins = if self.log_x {
            Bins::Log {
                n: self.n_bins.max(1),
                min: lo.max(if self.measure == Measure::Price { 0.5 } else { 1.0 }),
                max: hi,
            }
        } else {
            match self.bin_mode {
                BinMode::Count => Bins::Count { n: self.n_bins.max(1), min: lo, max: hi },
                BinMode::Width => Bins::Width { start: lo, width: self.bin_width.max(1e-3), end: hi },
            }
        };
        let h = Arc::new(match self.measure {
            Measure::Price => price_histogram(t, bins),
            Measure::Tokens => histogram(t.token_counts(), bins),
            Measure::Length => histogram(t.prompt_chars(), bins),
        });
        self.cache = Some((key, h.clone()));
        h
    }

    fn summary<'a>(&self, data: &'a Dataset) -> &'a Summary {
        match self.measure {
            Measure::Price => &data.stats.price,
            Measure::Tokens => &data.stats.tokens,
            Measure::Length => &data.stats.prompt_chars,
        }
    }

    fn draw_ui(&mut self, ui: &mut Ui, data: &Arc<Dataset>, actions: &mut Vec<Action>) {
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            self.controls_ui(ui);
            self.histogram_ui(ui, data, actions);
            self.summary_ui(ui, data);
            ui.separator();
            ui.columns(2, |cols| {
                categories_ui(&mut cols[0], data, actions);
                self.density_ui(&mut cols[1], data, actions);
            });
        });
    }

    fn controls_ui(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            for m in [Measure::Price, Measure::Tokens, Measure::Length] {
                if ui.selectable_label(self.measure == m, m.label()).clicked() && self.measure != m {
                    self.measure = m;
                    self.bin_width = match m {
                        Measure::Price => 10.0,
                        Measure::Tokens => 1.0,
                        Measure::Length => 10.0,
                    };
                    self.log_x = false;
                }
            }
            ui.separator();
            ui.add_enabled_ui(!self.log_x, |ui| {
                ui.radio_value(&mut self.bin_mode, BinMode::Width, "bin width");
                ui.radio_value(&mut self.bin_mode, BinMode::Count, "bin count");
            });
            match (self.bin_mode, self.log_x) {
                (BinMode::Width, false) => {
                    let unit = if self.measure == Measure::Price { "$" } else { "" };
                    ui.add(egui::DragValue::new(&mut self.bin_width).prefix(unit).speed(0.1).range(0.01..=10_000.0));
                }
                _ => {
                    ui.add(egui::DragValue::new(&mut self.n_bins).range(1..=2000).suffix(" bins"));
                }
            }
            ui.checkbox(&mut self.log_y, "log y");
            ui.add_enabled(self.measure != Measure::Tokens, egui::Checkbox::new(&mut self.log_x, "log x"))
                .on_hover_text("log10 bins; axis labelled in the column's units");
        });
    }

    fn histogram_ui(&mut self, ui: &mut Ui, data: &Arc<Dataset>, actions: &mut Vec<Action>) {
        // The histogram is computed in `logic`; after a change of the controls this frame shows
        // the previous one and asks for the next frame.
        let key = self.hist_key(data);
        let Some((k, h)) = self.cache.clone() else { return };
        if k != key {
            ui.ctx().request_repaint();
        }
        let total = h.total().max(1) as f64;
        let (log_x, log_y, measure) = (self.log_x, self.log_y, self.measure);
        let x_of = move |v: f64| if log_x { v.max(1e-9).log10() } else { v };
        let y_of = move |c: f64| if log_y { (c + 1.0).log10() } else { c };
        let unit = move |v: f64| match measure {
            Measure::Price => format!("${v:.2}"),
            _ => format!("{v:.0}"),
        };
        let bars: Vec<Bar> = h
            .counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let (a, b) = (x_of(h.edges[i]), x_of(h.edges[i + 1]));
                Bar::new((a + b) / 2.0, y_of(c as f64)).width((b - a) * 0.95).name(format!(
                    "{}–{}\n{} items ({:.2}%)",
                    unit(h.edges[i]),
                    unit(h.edges[i + 1]),
                    thousands(c),
                    c as f64 / total * 100.0
                ))
            })
            .collect();
        let chart = BarChart::new(measure.label(), bars)
            .color(Color32::from_rgb(0x4e, 0x79, 0xa7))
            .element_formatter(Box::new(|bar, _| bar.name.clone()));
        ui.label(RichText::new(format!("{} — all {} rows; click a bar to filter the Dataset tab to it; drag to pan, scroll to zoom, double-click to reset", measure.label(), thousands(data.table.len() as u64))).weak());
        let response = Plot::new(("hist", measure as u8))
            .height(300.0)
            .allow_scroll(false)
            .x_axis_formatter(move |mark, _| {
                let v = if log_x { 10f64.powf(mark.value) } else { mark.value };
                match measure {
                    Measure::Price => format!("${v:.0}"),
                    _ => format!("{v:.0}"),
                }
            })
            .y_axis_formatter(move |mark, _| {
                if log_y { format!("{:.0}", 10f64.powf(mark.value) - 1.0) } else { format!("{:.0}", mark.value) }
            })
            .y_axis_label(if log_y { "items (log)" } else { "items" })
            .show(ui, |plot| {
                plot.bar_chart(chart);
                (plot.pointer_coordinate(), plot.plot_bounds())
            });
        let (pointer, bounds) = response.inner;
        let range_filter = |lo: f64, hi: f64| {
            let mut f = Filter::default();
            match measure {
                Measure::Price => f.price_usd = Some((lo.max(0.0), hi)),
                Measure::Tokens => f.tokens = Some((lo.max(0.0).ceil() as u32, (hi - 1e-9).floor().max(0.0) as u32)),
                Measure::Length => {
                    f.prompt_chars = Some((lo.max(0.0).ceil() as u32, (hi - 1e-9).floor().max(0.0) as u32))
                }
            }
            f
        };
        if ui
            .button("Filter the Dataset tab to the visible range")
            .on_hover_text("Zoom or drag the chart to a range first")
            .clicked()
        {
            let (lo, hi) = (bounds.min()[0], bounds.max()[0]);
            let (lo, hi) = if log_x { (10f64.powf(lo), 10f64.powf(hi)) } else { (lo, hi) };
            actions.push(Action::FilterTo(range_filter(lo, hi)));
        }
        if response.response.clicked()
            && let Some(p) = pointer
        {
            let v = if log_x { 10f64.powf(p.x) } else { p.x };
            if let Some(i) = (0..h.counts.len()).find(|&i| h.edges[i] <= v && v <= h.edges[i + 1]) {
                actions.push(Action::FilterTo(range_filter(h.edges[i], h.edges[i + 1])));
            }
        }
        if h.below + h.above > 0 {
            ui.label(
                RichText::new(format!("outside the range: {} below, {} above", thousands(h.below), thousands(h.above)))
                    .weak(),
            );
        }
    }

    fn summary_ui(&self, ui: &mut Ui, data: &Dataset) {
        let s = self.summary(data);
        let f = |v: f64| if self.measure == Measure::Price { format!("${v:.2}") } else { format!("{v:.1}") };
        ui.horizontal_wrapped(|ui| {
            for (k, v) in [
                ("count", thousands(s.count as u64)),
                ("mean", f(s.mean)),
                ("std", f(s.std)),
                ("min", f(s.min)),
                ("p25", f(s.p25)),
                ("median", f(s.median)),
                ("p75", f(s.p75)),
                ("max", f(s.max)),
            ] {
                ui.label(RichText::new(k).weak());
                ui.label(RichText::new(v).strong());
                ui.add_space(8.0);
            }
        });
    }

    fn density_ui(&mut self, ui: &mut Ui, data: &Arc<Dataset>, actions: &mut Vec<Action>) {
        ui.strong("Price vs. prompt length");
        ui.label(RichText::new("every item, as density (log colour); drag to pan, scroll to zoom").weak());
        let g = &data.density;
        let key = Arc::as_ptr(data) as usize;
        if self.density_texture.as_ref().map(|(k, _)| *k) != Some(key) {
            let mut img = egui::ColorImage::filled([g.nx, g.ny], Color32::TRANSPARENT);
            let lmax = f64::from(g.max.max(1)).ln_1p();
            for row in 0..g.ny {
                for col in 0..g.nx {
                    let c = g.counts[row * g.nx + col];
                    if c > 0 {
                        let t = (f64::from(c).ln_1p() / lmax) as f32;
                        let colour = viridis(t);
                        // Image rows go top-down; grid rows bottom-up.
                        img.pixels[(g.ny - 1 - row) * g.nx + col] = colour;
                    }
                }
            }
            let tex = ui.ctx().load_texture("density", img, egui::TextureOptions::NEAREST);
            self.density_texture = Some((key, tex));
        }
        if let Some((_, tex)) = &self.density_texture {
            let (x0, x1) = g.x_range;
            let (y0, y1) = g.y_range;
            let center = PlotPoint::new((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let size = egui::vec2((x1 - x0) as f32, (y1 - y0) as f32);
            let image = PlotImage::new("density", tex.id(), center, size);
            let (nx, ny, counts) = (g.nx, g.ny, g.counts.clone());
            let response = Plot::new("density_plot")
                .height(300.0)
                .x_axis_label("price ($)")
                .y_axis_label("prompt characters")
                .label_formatter(move |hp| {
                    let pos = match hp {
                        egui_plot::HoverPosition::NearDataPoint { position, .. }
                        | egui_plot::HoverPosition::Elsewhere { position } => *position,
                    };
                    let (px, py) = (pos.x, pos.y);
                    let col = ((px - x0) / (x1 - x0) * nx as f64).floor();
                    let row = ((py - y0) / (y1 - y0) * ny as f64).floor();
                    if col < 0.0 || row < 0.0 || col >= nx as f64 || row >= ny as f64 {
                        return None;
                    }
                    let c = counts[row as usize * nx + col as usize];
                    Some(format!("${px:.0}, {py:.0} chars\n{c} items in this cell"))
                })
                .show(ui, |plot| {
                    plot.image(image);
                    plot.plot_bounds()
                });
            if ui.button("Filter the Dataset tab to the visible area").clicked() {
                let b = response.inner;
                let f = Filter {
                    price_usd: Some((b.min()[0].max(0.0), b.max()[0])),
                    prompt_chars: Some((b.min()[1].max(0.0).ceil() as u32, b.max()[1].floor().max(0.0) as u32)),
                    ..Filter::default()
                };
                actions.push(Action::FilterTo(f));
            }
        }
    }
}

fn categories_ui(ui: &mut Ui, data: &Dataset, actions: &mut Vec<Action>) {
    ui.strong("Categories");
    ui.label(RichText::new("click a bar to filter the Dataset tab").weak());
    let cats = &data.stats.categories;
    let total = data.table.len().max(1) as f64;
    let code_of = |name: &str| data.table.category_names().iter().position(|c| c == name).unwrap_or(0);
    let n = cats.len();
    let bars: Vec<Bar> =
        cats.iter()
            .enumerate()
            .map(|(k, (name, count))| {
                Bar::new((n - 1 - k) as f64, *count as f64)
                    .width(0.7)
                    .fill(category_colour(code_of(name)))
                    .name(format!("{name}: {} ({:.1}%)", thousands(*count), *count as f64 / total * 100.0))
            })
            .collect();
    let names: Vec<String> = cats.iter().map(|(c, _)| c.clone()).collect();
    let names2 = names.clone();
    let chart = BarChart::new("categories", bars).horizontal().element_formatter(Box::new(|bar, _| bar.name.clone()));
    let response = Plot::new("categories_plot")
        .height(220.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .show_grid([true, false])
        .include_x(cats.first().map_or(1.0, |c| c.1 as f64 * 1.18))
        .y_axis_formatter(move |mark, _| {
            let k = mark.value.round();
            if (mark.value - k).abs() > 1e-6 || k < 0.0 || k as usize >= names2.len() {
                return String::new();
            }
            names2[names2.len() - 1 - k as usize].clone()
        })
        .y_axis_min_width(150.0)
        .show(ui, |plot| {
            plot.bar_chart(chart);
            for (k, (_, count)) in cats.iter().enumerate() {
                plot.text(
                    egui_plot::Text::new(
                        "",
                        PlotPoint::new(*count as f64, (n - 1 - k) as f64),
                        format!("  {}", thousands(*count)),
                    )
                    .anchor(egui::Align2::LEFT_CENTER),
                );
            }
            plot.pointer_coordinate()
        });
    if response.response.clicked()
        && let Some(p) = response.inner
    {
        let k = p.y.round();
        if k >= 0.0 && (k as usize) < n {
            let name = names[n - 1 - k as usize].clone();
            actions.push(Action::FilterTo(Filter { categories: vec![name], ..Filter::default() }));
        }
    }
    let parts: Vec<(String, f64, Color32)> =
        cats.iter().map(|(c, v)| (c.clone(), *v as f64, category_colour(code_of(c)))).collect();
    donut_ui(ui, &parts, 170.0);
}

/// Viridis-like colour map for `t` in `0..=1`.
pub fn viridis(t: f32) -> Color32 {
    const STOPS: [(f32, [u8; 3]); 5] = [
        (0.0, [68, 1, 84]),
        (0.25, [59, 82, 139]),
        (0.5, [33, 145, 140]),
        (0.75, [94, 201, 98]),
        (1.0, [253, 231, 37]),
    ];
    let t = t.clamp(0.0, 1.0);
    for w in STOPS.windows(2) {
        let (t0, c0) = w[0];
        let (t1, c1) = w[1];
        if t <= t1 {
            let f = (t - t0) / (t1 - t0);
            let mix = |a: u8, b: u8| (f32::from(a) + (f32::from(b) - f32::from(a)) * f) as u8;
            return Color32::from_rgb(mix(c0[0], c1[0]), mix(c0[1], c1[1]), mix(c0[2], c1[2]));
        }
    }
    Color32::from_rgb(253, 231, 37)
}
