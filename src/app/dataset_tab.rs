//! The Dataset tab: header (items, prices, categories, synthetic badge), filters with live
//! counts, a virtual table over all rows (sortable), the inspector of one item (fields, details,
//! prompts, token chips) and the curation report.

use super::Action;
use super::tabs::{JobOutput, TabCtx, TabView};
use super::widgets::{self, thousands};
use crate::dataset::Dataset;
use crate::jobs::{Job, Poll};
use crate::view::{Filter, Sort, SortColumn, filtered_sorted};
use egui::{Color32, RichText, Ui};
use egui_extras::{Column, TableBuilder};
use std::sync::Arc;

/// Tables up to this size are filtered on the UI thread (instant); larger ones in a job.
const SYNC_VIEW_ROWS: usize = 200_000;

type ViewKey = (usize, Filter, Sort);

/// State of the Dataset tab.
#[derive(Default)]
pub struct DatasetTab {
    /// Sort order.
    pub sort: Sort,
    /// Rows shown (filtered and sorted); the previous view stays while a new one computes.
    pub view: Arc<Vec<u32>>,
    view_key: Option<ViewKey>,
    view_job: Option<(ViewKey, Job<Vec<u32>>)>,
    /// Selected row (table index).
    pub selected: Option<usize>,
    tokens_of: Option<(usize, Vec<(u32, String)>)>,
}

impl TabView for DatasetTab {
    fn on_new_data(&mut self, _data: &Arc<Dataset>, _ctx: &mut TabCtx<'_>) {
        self.reset();
    }

    fn logic(&mut self, ctx: &mut TabCtx<'_>) {
        if let Some(data) = ctx.data {
            self.update_view(data, ctx.filter, ctx.wake);
        }
    }

    fn ui(&mut self, ui: &mut Ui, ctx: &mut TabCtx<'_>) {
        if let Some(data) = ctx.data
            && let Some(action) = self.draw_ui(ui, data, ctx.filter)
        {
            ctx.actions.push(action);
        }
    }

    fn job_done(&mut self, _output: JobOutput, _secs: f64, _ctx: &mut TabCtx<'_>) {}

    /// Whether a view is being computed.
    fn is_busy(&self) -> bool {
        self.view_job.is_some()
    }
}

impl DatasetTab {
    /// Forgets per-dataset state.
    pub fn reset(&mut self) {
        *self = Self { sort: self.sort, ..Self::default() };
    }

    /// Keeps the view in step with the filter and sort (off the UI thread for big tables).
    fn update_view(&mut self, data: &Arc<Dataset>, filter: &Filter, wake: &Arc<dyn Fn() + Send + Sync>) {
        let key: ViewKey = (Arc::as_ptr(data) as usize, filter.clone(), self.sort);
        if let Some((k, job)) = &self.view_job {
            if let Poll::Done(result) = job.poll() {
                if let Ok(rows) = result {
                    self.view = Arc::new(rows);
                    self.view_key = Some(k.clone());
                }
                self.view_job = None;
            } else if *k != key {
                job.cancel.cancel();
                self.view_job = None;
            }
        }
        if self.view_key.as_ref() == Some(&key) || self.view_job.as_ref().is_some_and(|(k, _)| *k == key) {
            return;
        }
        if data.table.len() <= SYNC_VIEW_ROWS {
            if let Some(rows) = filtered_sorted(&data.table, filter, self.sort, &crate::jobs::CancelToken::new()) {
                self.view = Arc::new(rows);
                self.view_key = Some(key);
            }
            return;
        }
        let (data2, filter2, sort) = (data.clone(), filter.clone(), self.sort);
        let job = Job::spawn("filtering", wake.clone(), move |ctx| {
            filtered_sorted(&data2.table, &filter2, sort, &ctx.cancel).ok_or_else(|| crate::Error::Cancelled.into())
        });
        self.view_job = Some((key, job));
    }

    fn draw_ui(&mut self, ui: &mut Ui, data: &Arc<Dataset>, filter: &mut Filter) -> Option<Action> {
        let action = header_ui(ui, data);
        ui.separator();
        filter_bar_ui(ui, data, filter, self.view.len(), self.view_job.is_some());
        ui.separator();
        let max_inspector = (ui.available_width() * 0.42).max(280.0);
        egui::Panel::right("inspector").resizable(true).default_size(420.0).size_range(260.0..=max_inspector).show(
            ui,
            |ui| {
                egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
                    ui.set_max_width(ui.available_width());
                    self.inspector_ui(ui, data);
                    ui.separator();
                    report_ui(ui, data);
                });
            },
        );
        egui::CentralPanel::default().show(ui, |ui| self.table_ui(ui, data));
        action
    }

    fn table_ui(&mut self, ui: &mut Ui, data: &Dataset) {
        let t = &data.table;
        let view = self.view.clone();
        let row_h = 20.0;
        let mut clicked_header = None;
        let header = |ui: &mut Ui, label: &str, col: SortColumn, sort: Sort, clicked: &mut Option<SortColumn>| {
            let arrow = if sort.column == col { if sort.descending { " (desc)" } else { " (asc)" } } else { "" };
            if ui
                .button(format!("{label}{arrow}"))
                .on_hover_text("Sort by this column; click again to reverse")
                .clicked()
            {
                *clicked = Some(col);
            }
        };
        TableBuilder::new(ui)
            .striped(true)
            .resizable(true)
            .sense(egui::Sense::click())
            .column(Column::exact(70.0))
            .column(Column::remainder().at_least(200.0).clip(true).resizable(false))
            .column(Column::initial(170.0).clip(true))
            .column(Column::exact(80.0))
            .column(Column::exact(60.0))
            .column(Column::exact(60.0))
            .header(22.0, |mut h| {
                let sort = self.sort;
                h.col(|ui| header(ui, "#", SortColumn::Row, sort, &mut clicked_header));
                h.col(|ui| header(ui, "Title", SortColumn::Title, sort, &mut clicked_header));
                h.col(|ui| header(ui, "Category", SortColumn::Category, sort, &mut clicked_header));
                h.col(|ui| header(ui, "Price", SortColumn::Price, sort, &mut clicked_header));
                h.col(|ui| header(ui, "Tokens", SortColumn::Tokens, sort, &mut clicked_header));
                h.col(|ui| header(ui, "Chars", SortColumn::Chars, sort, &mut clicked_header));
            })
            .body(|body| {
                body.rows(row_h, view.len(), |mut row| {
                    let i = view[row.index()] as usize;
                    row.set_selected(self.selected == Some(i));
                    let it = t.get(i);
                    row.col(|ui| {
                        ui.label(RichText::new(i.to_string()).monospace().weak());
                    });
                    row.col(|ui| {
                        ui.label(it.title);
                    });
                    row.col(|ui| {
                        ui.label(it.category);
                    });
                    row.col(|ui| {
                        ui.label(RichText::new(format!("${:.2}", it.price)).monospace());
                    });
                    row.col(|ui| {
                        ui.label(RichText::new(it.token_count.to_string()).monospace());
                    });
                    row.col(|ui| {
                        ui.label(RichText::new(t.prompt_chars()[i].to_string()).monospace());
                    });
                    if row.response().clicked() {
                        self.selected = Some(i);
                    }
                });
            });
        if let Some(col) = clicked_header {
            self.sort = if self.sort.column == col {
                Sort { column: col, descending: !self.sort.descending }
            } else {
                Sort { column: col, descending: false }
            };
        }
    }

    fn inspector_ui(&mut self, ui: &mut Ui, data: &Dataset) {
        ui.heading("Inspector");
        let Some(i) = self.selected.filter(|&i| i < data.table.len()) else {
            ui.label("Click a row to see its fields, prompts and tokens.");
            return;
        };
        let it = data.table.get(i);
        egui::Grid::new("fields").num_columns(2).striped(true).show(ui, |ui| {
            ui.strong("title");
            ui.label(it.title);
            ui.end_row();
            ui.strong("category");
            ui.label(it.category);
            ui.end_row();
            ui.strong("price");
            ui.label(format!("${:.2}", it.price));
            ui.end_row();
            ui.strong("token count");
            ui.label(it.token_count.to_string());
            ui.end_row();
            ui.strong("row");
            ui.label(i.to_string());
            ui.end_row();
        });
        egui::CollapsingHeader::new("details (raw JSON)").default_open(false).show(ui, |ui| {
            ui.add(egui::Label::new(RichText::new(it.details()).monospace()).wrap());
        });
        let body = it.prompt.split("\n\n").nth(1).unwrap_or("");
        egui::CollapsingHeader::new("text (scrubbed, cut to 160 tokens)").default_open(false).show(ui, |ui| {
            ui.add(egui::Label::new(body).wrap());
        });
        egui::CollapsingHeader::new("training prompt").default_open(true).show(ui, |ui| {
            ui.add(egui::Label::new(RichText::new(it.prompt).monospace()).wrap());
        });
        egui::CollapsingHeader::new("test prompt").default_open(false).show(ui, |ui| {
            ui.add(egui::Label::new(RichText::new(it.test_prompt()).monospace()).wrap());
        });
        if self.tokens_of.as_ref().map(|(k, _)| *k) != Some(i) {
            let tokens = crate::tokenizer::PriceTokenizer::llama31()
                .and_then(|tok| {
                    let ids = tok.encode(it.prompt)?;
                    let texts = tok.token_texts(&ids);
                    Ok(ids.into_iter().zip(texts).collect())
                })
                .unwrap_or_default();
            self.tokens_of = Some((i, tokens));
        }
        if let Some((_, tokens)) = &self.tokens_of {
            egui::CollapsingHeader::new(format!("tokens ({})", tokens.len())).default_open(true).show(ui, |ui| {
                ui.label(
                    RichText::new("Llama 3.1 tokens of the training prompt (text, then id); the price tokens in green")
                        .weak(),
                );
                ui.horizontal_wrapped(|ui| {
                    ui.spacing_mut().item_spacing = egui::vec2(2.0, 2.0);
                    let n = tokens.len();
                    for (k, (id, text)) in tokens.iter().enumerate() {
                        let shown = text.replace('\n', "\\n").replace(' ', "·");
                        let price_part = k + 4 >= n;
                        let fill = if price_part {
                            Color32::from_rgb(0x59, 0xa1, 0x4f)
                        } else if k % 2 == 0 {
                            ui.visuals().faint_bg_color
                        } else {
                            ui.visuals().extreme_bg_color
                        };
                        ui.label(
                            RichText::new(format!(" {shown} {id} ")).monospace().size(11.0).background_color(fill),
                        )
                        .on_hover_text(format!("token {k}: id {id}"));
                    }
                });
            });
        }
    }
}

/// The name, the headline statistics, and for a user's table its mapping with *Map columns…*.
fn header_ui(ui: &mut Ui, data: &Dataset) -> Option<Action> {
    let s = &data.stats;
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        ui.heading(&data.name);
        if data.synthetic {
            widgets::synthetic_badge(ui);
        }
        for (path, spec) in &data.tables {
            let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
            ui.label(RichText::new(format!("{name}: {}", spec.mapping.to_map_string())).weak().small())
                .on_hover_text("How this table's columns feed the curation");
        }
        if !data.tables.is_empty()
            && ui
                .button("Map columns…")
                .on_hover_text("Change which columns feed the curation and curate again")
                .clicked()
        {
            action = Some(Action::LoadMapped(data.paths.clone(), Vec::new(), true));
        }
    });
    ui.horizontal_wrapped(|ui| {
        let stat = |ui: &mut Ui, label: &str, value: String| {
            ui.label(RichText::new(label).weak());
            ui.label(RichText::new(value).strong());
            ui.add_space(12.0);
        };
        stat(ui, "items", thousands(s.n_items as u64));
        stat(ui, "average price", format!("${:.2}", s.price.mean));
        stat(ui, "median price", format!("${:.2}", s.price.median));
        stat(ui, "max price", format!("${:.2}", s.price.max));
        stat(ui, "categories", s.categories.len().to_string());
        stat(ui, "tokens", format!("{:.0}–{:.0}", s.tokens.min, s.tokens.max));
    });
    action
}

fn filter_bar_ui(ui: &mut Ui, data: &Dataset, filter: &mut Filter, shown: usize, busy: bool) {
    ui.horizontal_wrapped(|ui| {
        ui.label("Search");
        ui.add(egui::TextEdit::singleline(&mut filter.search).hint_text("title contains…").desired_width(180.0));
        ui.checkbox(&mut filter.search_prompts, "in prompts too");
        ui.menu_button(
            format!(
                "Categories ({})",
                if filter.categories.is_empty() { "all".to_owned() } else { filter.categories.len().to_string() }
            ),
            |ui| {
                for (name, n) in &data.stats.categories {
                    let mut on = filter.categories.contains(name);
                    if ui.checkbox(&mut on, format!("{name} ({})", thousands(*n))).changed() {
                        if on {
                            filter.categories.push(name.clone());
                        } else {
                            filter.categories.retain(|c| c != name);
                        }
                    }
                }
                if ui.button("All").clicked() {
                    filter.categories.clear();
                }
            },
        );
        let mut price_on = filter.price_usd.is_some();
        if ui.checkbox(&mut price_on, "Price").changed() {
            filter.price_usd = price_on.then_some((data.stats.price.min, data.stats.price.max));
        }
        if let Some((lo, hi)) = &mut filter.price_usd {
            ui.add(egui::DragValue::new(lo).prefix("$").speed(1.0).range(0.0..=*hi));
            ui.label("–");
            ui.add(egui::DragValue::new(hi).prefix("$").speed(1.0).range(*lo..=1e6));
        }
        let mut tokens_on = filter.tokens.is_some();
        if ui.checkbox(&mut tokens_on, "Tokens").changed() {
            filter.tokens = tokens_on.then_some((data.stats.tokens.min as u32, data.stats.tokens.max as u32));
        }
        if let Some((lo, hi)) = &mut filter.tokens {
            ui.add(egui::DragValue::new(lo).range(0..=*hi));
            ui.label("–");
            ui.add(egui::DragValue::new(hi).range(*lo..=100_000));
        }
        ui.separator();
        let total = data.table.len();
        let text = if busy {
            format!("filtering… (showing {} of {})", thousands(shown as u64), thousands(total as u64))
        } else {
            format!("{} of {} items", thousands(shown as u64), thousands(total as u64))
        };
        ui.label(RichText::new(text).strong());
    });
    let chips = filter.chips();
    if !chips.is_empty() {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Filters:").weak());
            for (part, text) in chips {
                if ui.button(format!("{text}  x")).on_hover_text("Remove this filter").clicked() {
                    filter.clear(part);
                }
            }
            if ui.button("Clear all").clicked() {
                *filter = Filter::default();
            }
        });
    }
}

fn report_ui(ui: &mut Ui, data: &Dataset) {
    let r = &data.report;
    egui::CollapsingHeader::new("Curation report").default_open(true).show(ui, |ui| {
        egui::Grid::new("report").num_columns(2).striped(true).show(ui, |ui| {
            for (label, v) in [
                ("lines read", r.lines_read),
                ("items kept", r.kept),
                ("dropped: no price", r.no_price),
                ("dropped: price out of range", r.out_of_range),
                ("dropped: contents too short", r.too_short),
                ("dropped: too few tokens", r.too_few_tokens),
                ("malformed lines", r.malformed),
                ("cells not read (prices)", r.column_problems),
            ] {
                ui.label(label);
                ui.label(RichText::new(thousands(v)).monospace());
                ui.end_row();
            }
        });
        for e in r.first_errors.iter().chain(&r.first_column_problems).chain(&r.file_errors) {
            ui.colored_label(Color32::from_rgb(0xf2, 0x8e, 0x2b), e);
        }
    });
}
