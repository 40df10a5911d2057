//! The metrics table (every metric of an evaluation, sortable, with 95% bootstrap intervals of
//! Error and Hits, the paired bootstrap of two chosen pricers, and optional greyed rows of the
//! original's published results), the per-item table (virtual rows, one guess and one error
//! column per pricer, filters, CSV export) and the side panel of the item picked.

use super::scatter::colour_of;
use super::{Command, CompareTab};
use crate::evaluation::{Evaluation, Metrics};
use crate::pricers::compare::{self, Comparison, ItemSort, PRICE_BANDS, PUBLISHED};
use egui::{Color32, RichText, Ui};
use egui_extras::{Column, TableBuilder};

/// A sortable column of the metrics table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricColumn {
    /// Display order.
    Order,
    /// Pricer name.
    Name,
    /// Mean absolute error.
    #[default]
    Error,
    /// RMSLE.
    Rmsle,
    /// Hits.
    Hits,
    /// RMSE.
    Rmse,
    /// Median absolute error.
    Median,
    /// R².
    R2,
    /// MAPE.
    Mape,
    /// Bias.
    Bias,
    /// Unparsable replies.
    Unparsable,
    /// Items.
    N,
    /// Fit seconds.
    Fit,
    /// Predict seconds.
    Predict,
}

impl MetricColumn {
    /// Every column, in table order, with its header.
    pub const ALL: [(MetricColumn, &'static str); 14] = [
        (Self::Order, "#"),
        (Self::Name, "Pricer"),
        (Self::Error, "Error"),
        (Self::Rmsle, "RMSLE"),
        (Self::Hits, "Hits"),
        (Self::Rmse, "RMSE"),
        (Self::Median, "Median"),
        (Self::R2, "R²"),
        (Self::Mape, "MAPE"),
        (Self::Bias, "Bias"),
        (Self::Unparsable, "Unparsable"),
        (Self::N, "n"),
        (Self::Fit, "Fit s"),
        (Self::Predict, "Predict s"),
    ];

    fn key(self, p: usize, e: &Evaluation) -> f64 {
        let m = &e.metrics;
        match self {
            Self::Order | Self::Name => p as f64,
            Self::Error => m.error,
            Self::Rmsle => m.rmsle,
            Self::Hits => m.hits_percent,
            Self::Rmse => m.rmse,
            Self::Median => m.median_error,
            Self::R2 => m.r2,
            Self::Mape => m.mape,
            Self::Bias => m.bias,
            Self::Unparsable => m.unparsable as f64,
            Self::N => m.n as f64,
            Self::Fit => e.fit_seconds,
            Self::Predict => e.predict_seconds,
        }
    }
}

/// Order of the pricers in the metrics table sorted by `col` (`descending` reverses).
pub fn metric_order(c: &Comparison, col: MetricColumn, descending: bool) -> Vec<usize> {
    let mut o: Vec<usize> = (0..c.evals.len()).collect();
    if col == MetricColumn::Name {
        o.sort_by(|&a, &b| c.evals[a].name.cmp(&c.evals[b].name));
    } else {
        o.sort_by(|&a, &b| col.key(a, &c.evals[a]).total_cmp(&col.key(b, &c.evals[b])));
    }
    if descending {
        o.reverse();
    }
    o
}

/// The cells after Hits: RMSE, median, R², MAPE, bias, unparsable.
fn cells_after_hits(m: &Metrics) -> [String; 6] {
    [
        format!("${:.2}", m.rmse),
        format!("${:.2}", m.median_error),
        format!("{:.3}", m.r2),
        format!("{:.1}%", m.mape),
        format!("{:+.2}", m.bias),
        m.unparsable.to_string(),
    ]
}

impl CompareTab {
    /// The order of the metrics table now.
    pub fn metric_order_now(&self) -> Vec<usize> {
        self.comparison.as_ref().map_or_else(Vec::new, |c| metric_order(c, self.metric_sort.0, self.metric_sort.1))
    }

    pub(super) fn metrics_ui(&mut self, ui: &mut Ui, c: &Comparison) {
        let stats = self.stats.clone();
        ui.horizontal_wrapped(|ui| {
            ui.strong("Metrics");
            ui.label(RichText::new(format!("on the {} shared items; click a header to sort", c.shared)).weak());
            ui.checkbox(&mut self.show_published, "published results")
                .on_hover_text("The original's published numbers (design notes §6), on its own test set");
            match &stats {
                Some(s) => ui
                    .label(
                        RichText::new(format!(
                            "95% intervals: percentile bootstrap, {} resamples",
                            s.bootstrap.resamples
                        ))
                        .weak(),
                    )
                    .on_hover_text(format!(
                        "seed {}, computed in {:.2}s off the UI thread",
                        crate::pricers::bootstrap::DEFAULT_SEED,
                        s.bootstrap.secs
                    )),
                None => ui.label(RichText::new("computing bootstrap intervals…").weak()),
            };
        });
        let order = metric_order(c, self.metric_sort.0, self.metric_sort.1);
        let mut clicked = None;
        // One line per row: cells are cut, never wrapped into the next row.
        ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
        let weak = ui.visuals().weak_text_color();
        let rows = order.len() + if self.show_published { PUBLISHED.len() } else { 0 };
        TableBuilder::new(ui)
            .id_salt("compare_metrics_table")
            .striped(true)
            .resizable(true)
            .vscroll(false)
            .column(Column::exact(26.0))
            .column(Column::initial(200.0).at_least(120.0).clip(true))
            .column(Column::initial(205.0))
            .column(Column::exact(60.0))
            .column(Column::initial(180.0))
            .columns(Column::exact(78.0), 7)
            .columns(Column::exact(66.0), 3)
            .header(20.0, |mut h| {
                for (col, label) in MetricColumn::ALL {
                    h.col(|ui| {
                        let arrow = if self.metric_sort.0 == col {
                            if self.metric_sort.1 { " (desc)" } else { " (asc)" }
                        } else {
                            ""
                        };
                        if ui.button(RichText::new(format!("{label}{arrow}")).strong()).clicked() {
                            clicked = Some(col);
                        }
                    });
                }
            })
            .body(|body| {
                body.rows(20.0, rows, |mut row| {
                    let r = row.index();
                    if let Some(&p) = order.get(r) {
                        let e = &c.evals[p];
                        let m = &e.metrics;
                        row.col(|ui| {
                            ui.label(RichText::new((p + 1).to_string()).weak());
                        });
                        row.col(|ui| {
                            let mut t = RichText::new(&e.name).strong();
                            if c.other_test[p] {
                                t = t.color(Color32::from_rgb(235, 150, 50));
                            }
                            let l = ui.label(t);
                            if c.other_test[p] {
                                l.on_hover_text("priced other test items: only the shared ones are compared");
                            }
                        });
                        let ci = stats.as_ref().map(|s| (s.bootstrap.error_ci(p), s.bootstrap.hits_ci(p)));
                        row.col(|ui| {
                            ui.monospace(match ci {
                                Some((e, _)) => format!("${:.2} [{:.2}, {:.2}]", m.error, e.lo, e.hi),
                                None => format!("${:.2}", m.error),
                            });
                        });
                        row.col(|ui| {
                            ui.monospace(format!("{:.2}", m.rmsle));
                        });
                        row.col(|ui| {
                            ui.monospace(match ci {
                                Some((_, h)) => format!("{:.1}% [{:.1}, {:.1}]", m.hits_percent, h.lo, h.hi),
                                None => format!("{:.1}%", m.hits_percent),
                            });
                        });
                        for cell in cells_after_hits(m) {
                            row.col(|ui| {
                                ui.monospace(cell);
                            });
                        }
                        row.col(|ui| {
                            ui.monospace(m.n.to_string());
                        });
                        row.col(|ui| {
                            ui.monospace(format!("{:.1}", e.fit_seconds));
                        });
                        row.col(|ui| {
                            ui.monospace(format!("{:.1}", e.predict_seconds));
                        });
                    } else {
                        let pubr = &PUBLISHED[r - order.len()];
                        let grey = |s: String| RichText::new(s).color(weak).italics();
                        row.col(|ui| {
                            ui.label(grey("ref".into()));
                        });
                        row.col(|ui| {
                            ui.label(grey(pubr.name.to_owned()))
                                .on_hover_text("published, on the original test set (not these items)");
                        });
                        row.col(|ui| {
                            ui.label(grey(format!("${:.2}", pubr.error)));
                        });
                        row.col(|ui| {
                            ui.label(grey(format!("{:.2}", pubr.rmsle)));
                        });
                        row.col(|ui| {
                            ui.label(grey(format!("{:.1}%", pubr.hits_percent)));
                        });
                        row.col(|ui| {
                            ui.label(grey("published, on the original test set".into()));
                        });
                        for _ in 0..8 {
                            row.col(|_| {});
                        }
                    }
                });
            });
        if let Some(col) = clicked {
            self.queue(Command::SortMetrics(col));
        }
        if c.evals.len() >= 2 {
            ui.separator();
            ui.horizontal_wrapped(|ui| {
                ui.strong("Is A really better than B?");
                self.pair_ui(ui, c);
            });
            match &stats {
                Some(s) if self.pair.0 != self.pair.1 => {
                    let (a, b) = self.pair;
                    let (ea, eb) = (&c.evals[a], &c.evals[b]);
                    let d = s.bootstrap.paired(
                        a,
                        b,
                        (ea.metrics.error, eb.metrics.error),
                        (ea.metrics.hits_percent, eb.metrics.hits_percent),
                    );
                    ui.monospace(format!(
                        "Error A − B = {:+.2} [{:+.2}, {:+.2}] · A's error is lower in {:.1}% of resamples · \
                         Hits A − B = {:+.1} pp [{:+.1}, {:+.1}]",
                        d.error_diff,
                        d.error_ci.lo,
                        d.error_ci.hi,
                        d.a_lower_error * 100.0,
                        d.hits_diff,
                        d.hits_ci.lo,
                        d.hits_ci.hi
                    ));
                    ui.label(RichText::new(d.verdict(&ea.name, &eb.name)).strong());
                }
                Some(_) => {
                    ui.label("Choose two different pricers.");
                }
                None => {
                    ui.label("computing…");
                }
            }
        }
    }

    pub(super) fn items_ui(&mut self, ui: &mut Ui, c: &Comparison) {
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("category");
            egui::ComboBox::from_id_salt("compare_cat")
                .selected_text(self.item_filter.category.clone().unwrap_or_else(|| "all".into()))
                .show_ui(ui, |ui| {
                    if ui.selectable_label(self.item_filter.category.is_none(), "all").clicked() {
                        self.item_filter.category = None;
                    }
                    for cat in &c.categories {
                        if ui.selectable_label(self.item_filter.category.as_ref() == Some(cat), cat).clicked() {
                            self.item_filter.category = Some(cat.clone());
                        }
                    }
                })
                .response
                .labelled_by(l.id);
            let l = ui.label("price band");
            egui::ComboBox::from_id_salt("compare_band")
                .selected_text(self.item_filter.band.clone().unwrap_or_else(|| "all".into()))
                .show_ui(ui, |ui| {
                    if ui.selectable_label(self.item_filter.band.is_none(), "all").clicked() {
                        self.item_filter.band = None;
                    }
                    for b in PRICE_BANDS {
                        if ui.selectable_label(self.item_filter.band.as_deref() == Some(b), b).clicked() {
                            self.item_filter.band = Some(b.to_owned());
                        }
                    }
                })
                .response
                .labelled_by(l.id);
            if c.evals.len() >= 2 {
                let mut on = self.item_filter.green_red.is_some();
                if ui.checkbox(&mut on, "A green while B red").changed() {
                    self.item_filter.green_red = on.then_some(self.pair);
                }
                self.pair_ui(ui, c);
                if self.item_filter.green_red.is_some() {
                    self.item_filter.green_red = Some(self.pair);
                }
            }
            if let Some(sel) = &self.selection
                && ui.button(format!("{} selected in the scatters ×", sel.len())).clicked()
            {
                self.queue(Command::ClearSelection);
            }
        });
        ui.horizontal(|ui| {
            ui.label(format!("{} of {} items", self.rows.len(), c.shared));
            let l = ui.label("CSV");
            ui.add(egui::TextEdit::singleline(&mut self.export_file).desired_width(260.0)).labelled_by(l.id);
            if ui.button("Export rows").on_hover_text("Write the rows shown, every pricer's guess and error").clicked()
            {
                self.queue(Command::ExportItems(self.export_file.trim().into()));
            }
        });
        let rows = self.rows.clone();
        let n = c.evals.len();
        ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
        let mut clicked_header = None;
        let mut clicked_row = None;
        let sort = self.item_sort;
        let header = |ui: &mut Ui, label: &str, col: ItemSort, clicked: &mut Option<ItemSort>| {
            let arrow = if sort.0 == col { if sort.1 { " (desc)" } else { " (asc)" } } else { "" };
            if ui.button(RichText::new(format!("{label}{arrow}")).strong()).clicked() {
                *clicked = Some(col);
            }
        };
        egui::ScrollArea::horizontal().show(ui, |ui| {
            TableBuilder::new(ui)
                .id_salt("compare_items_table")
                .striped(true)
                .resizable(true)
                .sense(egui::Sense::click())
                .column(Column::exact(50.0))
                .column(Column::initial(260.0).clip(true))
                .column(Column::initial(120.0).clip(true))
                .column(Column::exact(70.0))
                .columns(Column::exact(78.0), 2 * n)
                .header(20.0, |mut h| {
                    h.col(|ui| header(ui, "#", ItemSort::Index, &mut clicked_header));
                    h.col(|ui| header(ui, "Title", ItemSort::Title, &mut clicked_header));
                    h.col(|ui| header(ui, "Category", ItemSort::Category, &mut clicked_header));
                    h.col(|ui| header(ui, "Truth", ItemSort::Truth, &mut clicked_header));
                    for (p, e) in c.evals.iter().enumerate() {
                        h.col(|ui| header(ui, &format!("{} guess", e.name), ItemSort::Guess(p), &mut clicked_header));
                        h.col(|ui| header(ui, &format!("{} error", e.name), ItemSort::Error(p), &mut clicked_header));
                    }
                })
                .body(|body| {
                    body.rows(20.0, rows.len(), |mut row| {
                        let k = rows[row.index()];
                        let it = &c.items()[k];
                        row.set_selected(self.selected == Some(k));
                        row.col(|ui| {
                            ui.label(RichText::new(it.index.to_string()).weak());
                        });
                        row.col(|ui| {
                            ui.label(&it.title);
                        });
                        row.col(|ui| {
                            ui.label(&it.category);
                        });
                        row.col(|ui| {
                            ui.monospace(format!("${:.2}", it.truth));
                        });
                        for e in &c.evals {
                            let x = &e.items[k];
                            row.col(|ui| {
                                ui.monospace(format!("${:.2}", x.guess));
                            });
                            row.col(|ui| {
                                ui.label(
                                    RichText::new(format!("${:.2}", x.error)).monospace().color(colour_of(x.colour)),
                                );
                            });
                        }
                        if row.response().clicked() {
                            clicked_row = Some(k);
                        }
                    });
                });
        });
        if let Some(col) = clicked_header {
            self.queue(Command::SortItems(col));
        }
        if let Some(k) = clicked_row {
            self.queue(Command::SelectItem(Some(k)));
        }
    }

    pub(super) fn item_panel_ui(&mut self, ui: &mut Ui) {
        ui.heading("Item");
        let Some(c) = self.comparison.clone() else {
            ui.label("Add pricers to compare.");
            return;
        };
        let Some(k) = self.selected.or(self.hovered).filter(|&k| k < c.shared) else {
            ui.label("Hover or click a point in a scatter (or a row of the Items table) to see the item here.");
            return;
        };
        let it = &c.items()[k];
        if self.selected == Some(k) {
            if ui.button("Clear").clicked() {
                self.queue(Command::SelectItem(None));
            }
        } else {
            ui.label(RichText::new("hovered — click to keep it").weak());
        }
        ui.label(RichText::new(&it.title).strong());
        egui::Grid::new("compare_item_fields").num_columns(2).show(ui, |ui| {
            ui.label("test item");
            ui.label(it.index.to_string());
            ui.end_row();
            ui.label("category");
            ui.label(&it.category);
            ui.end_row();
            ui.label("price band");
            ui.label(compare::price_band(it.truth));
            ui.end_row();
            ui.label("truth");
            ui.label(RichText::new(format!("${:.2}", it.truth)).strong());
            ui.end_row();
        });
        ui.separator();
        egui::Grid::new("compare_item_guesses").num_columns(3).striped(true).show(ui, |ui| {
            ui.strong("pricer");
            ui.strong("guess");
            ui.strong("error");
            ui.end_row();
            for e in &c.evals {
                let x = &e.items[k];
                ui.add_sized([118.0, 16.0], egui::Label::new(&e.name).truncate());
                ui.monospace(format!("${:.2}", x.guess));
                ui.label(RichText::new(format!("${:.2} {}", x.error, x.colour.name())).color(colour_of(x.colour)));
                ui.end_row();
                if let Some(reply) = &x.reply {
                    ui.label(RichText::new("reply").weak());
                    ui.label(RichText::new(reply).monospace().weak());
                    ui.end_row();
                }
            }
        });
        ui.separator();
        ui.strong("Test prompt");
        match &self.test_items {
            Some((_, t)) if it.index < t.len() && t.get(it.index).title == it.title => {
                ui.label(RichText::new(t.get(it.index).test_prompt()).monospace().small());
            }
            _ => {
                ui.label(
                    RichText::new(format!("(the test file {} is not readable here)", c.evals[0].test.path)).weak(),
                );
            }
        }
    }
}
