//! The column-mapping dialog: opening a table that is not in Amazon's layout (a shop's CSV, a
//! Parquet or Arrow export) shows its schema, which column feeds each curation field, and a live
//! preview of the first curated items that follows every change of the mapping.

use crate::curate::{Curator, Preview};
use crate::table::{
    CategoryMapping, CsvDialect, DecimalMark, DetailsMapping, TableHead, TableKind, TableMapping, TableSpec,
};
use egui::{RichText, Ui};
use std::path::PathBuf;
use std::sync::Arc;

/// Rows of the table the preview curates.
pub const PREVIEW_ROWS: usize = 300;

/// What the dialog asks of the shell when it closes.
pub enum MappingOutcome {
    /// Curate with this spec (and save it for tables with the same columns).
    Curate(TableSpec),
    /// Read the table's head again with another CSV dialect.
    Reinspect(CsvDialect),
    /// Closed without loading.
    Cancel,
}

/// The dialog's state.
pub struct MappingDialog {
    /// Every file of the load (the others already mapped or not tables).
    pub paths: Vec<PathBuf>,
    /// Mappings chosen so far for the other tables of the load.
    pub mapped: Vec<(PathBuf, TableSpec)>,
    /// The table being mapped.
    pub path: PathBuf,
    /// Its first rows and schema.
    pub head: Arc<TableHead>,
    /// The mapping being edited.
    pub mapping: TableMapping,
    curator: Arc<Curator>,
    preview: Option<(TableMapping, Preview)>,
    category_name: String,
}

impl MappingDialog {
    /// A dialog for `path`, starting from `mapping` (the guess, or the saved one).
    pub fn new(
        paths: Vec<PathBuf>,
        mapped: Vec<(PathBuf, TableSpec)>,
        path: PathBuf,
        head: Arc<TableHead>,
        mapping: TableMapping,
        curator: Arc<Curator>,
    ) -> Self {
        let category_name = match &mapping.category {
            CategoryMapping::Name(n) => n.clone(),
            CategoryMapping::Column(_) => crate::table::default_category(&path),
        };
        Self { paths, mapped, path, head, mapping, curator, preview: None, category_name }
    }

    /// The preview of the current mapping (recomputed when the mapping changed: a few
    /// milliseconds for [`PREVIEW_ROWS`] rows).
    pub fn preview(&mut self) -> &Preview {
        if self.preview.as_ref().is_none_or(|(m, _)| *m != self.mapping) {
            let p = crate::curate::preview(&self.head, &self.mapping, &self.curator, PREVIEW_ROWS);
            self.preview = Some((self.mapping.clone(), p));
        }
        &self.preview.as_ref().expect("computed").1
    }

    fn spec(&self) -> TableSpec {
        TableSpec { kind: self.head.schema.kind, dialect: self.head.schema.dialect, mapping: self.mapping.clone() }
    }

    /// Draws the dialog; `Some` when it closes.
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<MappingOutcome> {
        let mut outcome = None;
        let title = format!("Map columns — {}", self.head.schema.name);
        let screen = ctx.content_rect();
        egui::Window::new(title)
            .collapsible(false)
            .resizable(true)
            .default_size([screen.width() * 0.85, screen.height() * 0.85])
            .max_height(screen.height() - 40.0)
            .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
            .show(ctx, |ui| {
                let schema = &self.head.schema;
                ui.label(format!(
                    "{} is not in Amazon's layout. Choose which columns feed the curation; the preview \
                     curates its first {} rows by the same rules as the whole file.",
                    schema.name,
                    PREVIEW_ROWS.min(schema.rows)
                ));
                if schema.kind == TableKind::Csv
                    && let Some(d) = schema.dialect
                {
                    let mut nd = d;
                    ui.horizontal(|ui| {
                        ui.label("Separator");
                        for (sep, label) in [(b',', ","), (b';', ";"), (b'\t', "tab"), (b'|', "|")] {
                            ui.selectable_value(&mut nd.separator, sep, label);
                        }
                        ui.checkbox(&mut nd.has_header, "first row names the columns");
                    });
                    if nd != d {
                        outcome = Some(MappingOutcome::Reinspect(nd));
                    }
                }
                ui.separator();
                ui.columns(2, |cols| {
                    egui::ScrollArea::vertical().id_salt("schema").max_height(cols[0].available_height() - 60.0).show(
                        &mut cols[0],
                        |ui| {
                            schema_ui(ui, &self.head);
                            ui.separator();
                            mapping_ui(ui, &self.head, &mut self.mapping, &mut self.category_name);
                        },
                    );
                    let problem = self.mapping.validate(&self.head.schema).err();
                    egui::ScrollArea::vertical()
                        .id_salt("preview")
                        .auto_shrink([false, false])
                        .max_height(cols[1].available_height() - 60.0)
                        .show(&mut cols[1], |ui| match &problem {
                            Some(p) => {
                                ui.colored_label(ui.visuals().error_fg_color, p.to_string());
                            }
                            None => {
                                let unit = match self.head.schema.kind {
                                    TableKind::Csv | TableKind::JsonLines => "line",
                                    _ => "row",
                                };
                                let p = self.preview().clone();
                                preview_ui(ui, &p, unit);
                            }
                        });
                });
                ui.separator();
                ui.horizontal(|ui| {
                    let ok = self.mapping.validate(&self.head.schema).is_ok();
                    if ui
                        .add_enabled(ok, egui::Button::new("Curate with this mapping"))
                        .on_hover_text("Curate the whole file; the mapping is saved for tables with the same columns")
                        .clicked()
                    {
                        outcome = Some(MappingOutcome::Curate(self.spec()));
                    }
                    if ui.button("Cancel").clicked() {
                        outcome = Some(MappingOutcome::Cancel);
                    }
                    ui.label(RichText::new(format!("--map {}", self.mapping.to_map_string())).monospace().weak())
                        .on_hover_text("The same mapping for `pricer curate`");
                });
            });
        outcome
    }
}

fn schema_ui(ui: &mut Ui, head: &TableHead) {
    let s = &head.schema;
    ui.strong(format!(
        "Schema: {} columns, {} {} rows",
        s.columns.len(),
        if s.whole_file { "all" } else { "first" },
        s.rows
    ));
    if s.unreadable > 0 {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("{} of these records could not be read (another separator?)", s.unreadable),
        );
        for e in &s.first_unreadable {
            ui.label(RichText::new(e).weak().small());
        }
    }
    egui::Grid::new("schema_grid").striped(true).num_columns(4).show(ui, |ui| {
        ui.strong("column");
        ui.strong("type");
        ui.strong("nulls");
        ui.strong("samples");
        ui.end_row();
        for c in &s.columns {
            ui.label(&c.name);
            ui.label(&c.dtype);
            ui.label(c.nulls.to_string());
            let sample: Vec<String> = c.samples.iter().take(2).map(|v| short(v, 40)).collect();
            ui.label(RichText::new(sample.join(" | ")).weak()).on_hover_text(c.samples.join("\n"));
            ui.end_row();
        }
    });
}

fn short(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn column_combo(ui: &mut Ui, id: &str, names: &[String], value: &mut Option<String>, none: &str) {
    egui::ComboBox::from_id_salt(id).selected_text(value.clone().unwrap_or_else(|| none.to_owned())).show_ui(
        ui,
        |ui| {
            ui.selectable_value(value, None, none);
            for n in names {
                ui.selectable_value(value, Some(n.clone()), n);
            }
        },
    );
}

/// An ordered list of columns: each with a remove button, and a combo to add one.
fn column_list(ui: &mut Ui, field: &str, names: &[String], list: &mut Vec<String>) {
    ui.horizontal_wrapped(|ui| {
        let mut remove = None;
        for (i, c) in list.iter().enumerate() {
            ui.label(RichText::new(c).strong());
            if ui.small_button("×").on_hover_text(format!("remove {c} from {field}")).clicked() {
                remove = Some(i);
            }
        }
        if let Some(i) = remove {
            list.remove(i);
        }
        let mut add: Option<String> = None;
        egui::ComboBox::from_id_salt(format!("add_{field}")).selected_text(format!("add to {field}…")).show_ui(
            ui,
            |ui| {
                for n in names.iter().filter(|n| !list.contains(n)) {
                    ui.selectable_value(&mut add, Some(n.clone()), n);
                }
            },
        );
        if let Some(a) = add {
            list.push(a);
        }
    });
}

fn mapping_ui(ui: &mut Ui, head: &TableHead, m: &mut TableMapping, category_name: &mut String) {
    let names: Vec<String> = head.schema.columns.iter().map(|c| c.name.clone()).collect();
    ui.strong("Mapping");
    egui::Grid::new("mapping_grid").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
        ui.label("Title");
        column_combo(ui, "map_title", &names, &mut m.title, "(none)");
        ui.end_row();

        ui.label("Description").on_hover_text("Each column one line, in this order (a list column gives its elements)");
        column_list(ui, "description", &names, &mut m.description);
        ui.end_row();

        ui.label("Features").on_hover_text("The bullet lines, after the description");
        column_list(ui, "features", &names, &mut m.features);
        ui.end_row();

        ui.label("Details");
        ui.vertical(|ui| {
            let mut kind = match &m.details {
                DetailsMapping::None => 0,
                DetailsMapping::Json(_) => 1,
                DetailsMapping::Columns(_) => 2,
            };
            let before = kind;
            ui.horizontal(|ui| {
                ui.radio_value(&mut kind, 0, "none");
                ui.radio_value(&mut kind, 1, "a JSON column");
                ui.radio_value(&mut kind, 2, "gather columns");
            });
            if kind != before {
                m.details = match kind {
                    1 => DetailsMapping::Json(names.first().cloned().unwrap_or_default()),
                    2 => DetailsMapping::Columns(Vec::new()),
                    _ => DetailsMapping::None,
                };
            }
            match &mut m.details {
                DetailsMapping::None => {}
                DetailsMapping::Json(c) => {
                    let mut v = Some(c.clone());
                    column_combo(ui, "map_details", &names, &mut v, "(none)");
                    match v {
                        Some(v) => *c = v,
                        None => m.details = DetailsMapping::None,
                    }
                }
                DetailsMapping::Columns(cs) => {
                    column_list(ui, "details", &names, cs);
                    ui.label(RichText::new("written as {\"column\": value, …} in table order").weak());
                }
            }
        });
        ui.end_row();

        ui.label("Price");
        ui.horizontal(|ui| {
            column_combo(ui, "map_price", &names, &mut m.price, "(none)");
            ui.label("decimal mark");
            ui.radio_value(&mut m.decimal, DecimalMark::Dot, "1,299.00");
            ui.radio_value(&mut m.decimal, DecimalMark::Comma, "1.299,00");
        });
        ui.end_row();

        ui.label("Category");
        ui.vertical(|ui| {
            let mut column = matches!(m.category, CategoryMapping::Column(_));
            let before = column;
            ui.horizontal(|ui| {
                ui.radio_value(&mut column, true, "a column");
                ui.radio_value(&mut column, false, "one name for the file");
            });
            if column != before {
                m.category = if column {
                    CategoryMapping::Column(names.first().cloned().unwrap_or_default())
                } else {
                    CategoryMapping::Name(category_name.clone())
                };
            }
            match &mut m.category {
                CategoryMapping::Column(c) => {
                    let mut v = Some(c.clone());
                    column_combo(ui, "map_category", &names, &mut v, "(none)");
                    if let Some(v) = v {
                        *c = v;
                    }
                }
                CategoryMapping::Name(n) => {
                    if ui.add(egui::TextEdit::singleline(category_name).desired_width(200.0)).changed() {
                        *n = category_name.clone();
                    }
                }
            }
        });
        ui.end_row();
    });
}

fn preview_ui(ui: &mut Ui, p: &Preview, unit: &str) {
    ui.set_max_width(ui.available_width() - 12.0);
    let r = &p.report;
    ui.strong(format!("Preview: {} of the first {} rows kept", r.kept, p.rows));
    ui.label(format!(
        "dropped: {} no price, {} out of range, {} too short, {} too few tokens, {} malformed",
        r.no_price, r.out_of_range, r.too_short, r.too_few_tokens, r.malformed
    ));
    for e in r.first_column_problems.iter().chain(&r.first_errors).take(5) {
        ui.colored_label(ui.visuals().warn_fg_color, e);
    }
    if r.column_problems > 0 {
        ui.colored_label(ui.visuals().warn_fg_color, format!("{} prices could not be read", r.column_problems));
    }
    ui.separator();
    if p.items.is_empty() {
        ui.label("No row of the preview makes an item with this mapping.");
    }
    for (row, item) in &p.items {
        ui.label(
            RichText::new(format!(
                "{unit} {row} · {} · ${:.2} · {} tokens",
                item.category, item.price, item.token_count
            ))
            .strong(),
        );
        ui.label(RichText::new(&item.prompt).monospace().small());
        ui.separator();
    }
}
