//! Breakdowns: Error and Hits by category or by price band (one bar per pricer side by side), the
//! cumulative share of items within $X of the truth (one curve per pricer) and the error
//! histogram — all from the statistics job.

use super::{CompareTab, HIST_BINS, HIST_WIDTH};
use crate::app::widgets::category_colour;
use crate::pricers::compare::{By, Comparison, GroupRow, PRICE_BANDS};
use egui::{RichText, Ui};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};

/// Groups in display order: price bands in price order, categories by item count.
fn groups(rows: &[GroupRow], by: By) -> Vec<String> {
    let mut g: Vec<(String, usize)> = vec![];
    for r in rows {
        match g.iter_mut().find(|x| x.0 == r.group) {
            Some(_) => {}
            None => g.push((r.group.clone(), r.n)),
        }
    }
    match by {
        By::PriceBand => g.sort_by_key(|x| PRICE_BANDS.iter().position(|b| *b == x.0).unwrap_or(usize::MAX)),
        By::Category => g.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0))),
    }
    g.into_iter().map(|x| x.0).collect()
}

impl CompareTab {
    pub(super) fn breakdowns_ui(&mut self, ui: &mut Ui, c: &Comparison) {
        ui.horizontal(|ui| {
            ui.label("by");
            if ui.selectable_label(self.by == By::Category, "category").clicked() {
                self.by = By::Category;
            }
            if ui.selectable_label(self.by == By::PriceBand, "price band").clicked() {
                self.by = By::PriceBand;
            }
        });
        let Some(s) = self.stats.clone() else {
            ui.label("computing…");
            return;
        };
        let rows = if self.by == By::Category { &s.by_category } else { &s.by_band };
        let groups = groups(rows, self.by);
        let names: Vec<String> = c.evals.iter().map(|e| e.name.clone()).collect();
        let n = names.len().max(1);
        let width = 0.8 / n as f64;
        let h = ((ui.available_height() - 60.0) / 2.0).max(180.0);
        let label_of = {
            let groups = groups.clone();
            move |v: f64| -> String {
                let k = v.round();
                if (v - k).abs() < 1e-6 && k >= 0.0 {
                    groups.get(k as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
        };
        ui.columns(2, |cols| {
            for (col, (title, value)) in
                [("Error by group ($)", 0usize), ("Hits by group (%)", 1usize)].into_iter().enumerate()
            {
                let ui = &mut cols[col];
                ui.label(RichText::new(title).strong());
                let label_of = label_of.clone();
                Plot::new(("compare_breakdown", value))
                    .height(h)
                    .legend(Legend::default())
                    .allow_scroll(false)
                    .x_axis_formatter(move |m, _| label_of(m.value))
                    .show(ui, |plot| {
                        for (p, name) in names.iter().enumerate() {
                            let bars: Vec<Bar> = groups
                                .iter()
                                .enumerate()
                                .filter_map(|(g, group)| {
                                    let r = rows.iter().find(|r| &r.pricer == name && &r.group == group)?;
                                    let v = if value == 0 { r.error } else { r.hits_percent };
                                    let x = g as f64 - 0.4 + width * (p as f64 + 0.5);
                                    Some(Bar::new(x, v).width(width * 0.95).name(format!("{group}: {} items", r.n)))
                                })
                                .collect();
                            plot.bar_chart(BarChart::new(name.clone(), bars).color(category_colour(p)));
                        }
                    });
            }
        });
        ui.columns(2, |cols| {
            let ui = &mut cols[0];
            ui.label(RichText::new("Share of items within $X of the truth").strong());
            Plot::new("compare_within")
                .height(h)
                .legend(Legend::default())
                .allow_scroll(false)
                .include_y(0.0)
                .include_y(1.0)
                .x_axis_formatter(|m, _| format!("${:.0}", m.value))
                .y_axis_formatter(|m, _| format!("{:.0}%", m.value * 100.0))
                .show(ui, |plot| {
                    for (p, name) in names.iter().enumerate() {
                        let pts = PlotPoints::from(s.within[p].clone());
                        plot.line(Line::new(name.clone(), pts).color(category_colour(p)));
                    }
                });
            let ui = &mut cols[1];
            ui.label(
                RichText::new(format!("Error histogram (${HIST_WIDTH:.0} bins; the last holds the rest)")).strong(),
            );
            Plot::new("compare_hist")
                .height(h)
                .legend(Legend::default())
                .allow_scroll(false)
                .x_axis_formatter(|m, _| format!("${:.0}", m.value))
                .show(ui, |plot| {
                    for (p, name) in names.iter().enumerate() {
                        // A step line per pricer: overlapping bars of 12 pricers would hide each other.
                        let mut pts = vec![];
                        for (b, &count) in s.histogram[p].iter().enumerate().take(HIST_BINS) {
                            let (x0, x1) = (b as f64 * HIST_WIDTH, (b + 1) as f64 * HIST_WIDTH);
                            pts.push([x0, count as f64]);
                            pts.push([x1, count as f64]);
                        }
                        plot.line(Line::new(name.clone(), PlotPoints::from(pts)).color(category_colour(p)));
                    }
                });
        });
    }
}
