//! The sources panel: the pricers of the comparison (rename, reorder, remove, flagged when they
//! priced other test items), where they come from (evaluation files, a folder, the runs' checkpoint
//! evaluations, a saved set), and *Add pricer*: a kind, its parameters (every field of its
//! specification, as JSON), the files and the items, fitted and evaluated as a job — several at
//! once, each with its progress, a chat model's calls and tokens so far, and its own Cancel.

use super::{Command, CompareTab};
use crate::evaluation::PricerSpec;
use crate::jobs::Progress;
use crate::pricers::spec::{SpecOptions, parse};
use egui::{Color32, RichText, Ui};
use std::path::PathBuf;

/// Kinds offered by *Add pricer*, with what the name needs after the colon.
pub const KINDS: [(&str, &str); 14] = [
    ("random", ""),
    ("constant", ""),
    ("features-lr", ""),
    ("bow-lr", ""),
    ("word2vec-lr", ""),
    ("word2vec-svr", ""),
    ("word2vec-rf", ""),
    ("embed-knn", ""),
    ("embed-rf", ""),
    ("chat", "MODEL@BASE_URL"),
    ("run", "RUN_DIR[:CHECKPOINT]"),
    ("import", "FILE"),
    ("human", "FILE"),
    ("ensemble", "EVAL,EVAL,…"),
];

/// The *Add pricer* form.
#[derive(Clone, Debug)]
pub struct AddForm {
    /// Whether the form is open.
    pub open: bool,
    /// Kind (one of [`KINDS`]).
    pub kind: String,
    /// What the kind needs after the colon (model@url, run folder, file…).
    pub target: String,
    /// The full specification as JSON (edited by the user).
    pub spec_json: String,
    /// Name shown (empty: the spec's default).
    pub name: String,
    /// Training items.
    pub train: String,
    /// Test items.
    pub test: String,
    /// First test item.
    pub start: usize,
    /// Items priced.
    pub size: usize,
    /// Why the spec does not parse.
    pub problem: Option<String>,
}

impl Default for AddForm {
    fn default() -> Self {
        let mut f = Self {
            open: false,
            kind: "features-lr".into(),
            target: String::new(),
            spec_json: String::new(),
            name: String::new(),
            train: String::new(),
            test: String::new(),
            start: 0,
            size: 250,
            problem: None,
        };
        f.reset_spec();
        f
    }
}

impl AddForm {
    /// Fills the JSON with the kind's defaults (and the target).
    pub fn reset_spec(&mut self) {
        let name = if self.target.trim().is_empty() {
            self.kind.clone()
        } else {
            format!("{}:{}", self.kind, self.target.trim())
        };
        match parse(&name, &SpecOptions::default()) {
            Ok(spec) => {
                self.spec_json = serde_json::to_string_pretty(&spec).unwrap_or_default();
                self.problem = None;
            }
            Err(e) => {
                self.spec_json.clear();
                self.problem = Some(e.to_string());
            }
        }
    }

    /// The specification the JSON holds, or why not.
    pub fn spec(&self) -> Result<PricerSpec, String> {
        serde_json::from_str(&self.spec_json).map_err(|e| format!("the specification does not read: {e}"))
    }

    /// The command that adds the pricer, or what is missing.
    pub fn command(&self) -> Result<Command, String> {
        let spec = self.spec()?;
        if self.test.trim().is_empty() {
            return Err("choose the test items".into());
        }
        let train = (!self.train.trim().is_empty()).then(|| PathBuf::from(self.train.trim()));
        if spec.needs_train() && train.is_none() {
            return Err(format!("{} fits on training items: choose them", spec.kind()));
        }
        if self.size == 0 {
            return Err("price at least one item".into());
        }
        Ok(Command::AddPricer {
            spec,
            name: (!self.name.trim().is_empty()).then(|| self.name.trim().to_owned()),
            train,
            test: PathBuf::from(self.test.trim()),
            start: self.start,
            size: self.size,
        })
    }
}

impl CompareTab {
    pub(super) fn sources_ui(&mut self, ui: &mut Ui, progress: &[(u64, String, Progress)]) {
        ui.heading("Pricers");
        let n = self.entries.len();
        let flagged: Vec<bool> = self.comparison.as_ref().map_or_else(|| vec![false; n], |c| c.other_test.clone());
        if n == 0 {
            ui.label(RichText::new("none yet").weak());
        }
        let mut commands = vec![];
        for p in 0..n {
            let e = &self.entries[p];
            ui.horizontal(|ui| {
                ui.push_id(("entry", p), |ui| {
                    if let Some((q, text)) = &mut self.renaming
                        && *q == p
                    {
                        let r = ui.add(egui::TextEdit::singleline(text).desired_width(150.0).hint_text("name"));
                        if r.lost_focus() {
                            commands.push(Command::Rename(p, text.clone()));
                            self.renaming = None;
                        } else {
                            r.request_focus();
                        }
                        return;
                    }
                    let mut t = RichText::new(format!("{}. {}", p + 1, e.name));
                    if flagged.get(p).copied().unwrap_or(false) {
                        t = t.color(Color32::from_rgb(235, 150, 50));
                    }
                    let l = ui.add(egui::Label::new(t).truncate().sense(egui::Sense::click()));
                    let mut hover = format!(
                        "{}\n{} items of {}\n{}",
                        e.eval.line,
                        e.eval.metrics.n,
                        e.eval.test.path,
                        e.path.as_ref().map_or("(no file)".into(), |p| p.display().to_string())
                    );
                    if flagged.get(p).copied().unwrap_or(false) {
                        hover.push_str("\n! other test items: only the items shared with the rest are compared");
                    }
                    if l.on_hover_text(hover).double_clicked() {
                        self.renaming = Some((p, e.name.clone()));
                    }
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if ui.small_button("×").on_hover_text("Remove").clicked() {
                            commands.push(Command::Remove(p));
                        }
                        if ui.add_enabled(p + 1 < n, egui::Button::new("down").small()).on_hover_text("Down").clicked()
                        {
                            commands.push(Command::Move(p, 1));
                        }
                        if ui.add_enabled(p > 0, egui::Button::new("up").small()).on_hover_text("Up").clicked() {
                            commands.push(Command::Move(p, -1));
                        }
                        if ui.small_button("rename").on_hover_text("Rename (or double-click the name)").clicked() {
                            self.renaming = Some((p, e.name.clone()));
                        }
                    });
                });
            });
            if flagged.get(p).copied().unwrap_or(false) {
                ui.label(RichText::new("   ! other test items").small().color(Color32::from_rgb(235, 150, 50)));
            }
        }
        if let Some(c) = &self.comparison {
            let mut t = RichText::new(format!("{} shared items compared", c.shared));
            if c.different_tests {
                t = t.color(Color32::from_rgb(235, 150, 50));
            }
            ui.label(t);
            for note in &c.notes {
                ui.label(RichText::new(note).small().weak());
            }
        }
        if let Some(e) = &self.align_error {
            ui.colored_label(Color32::from_rgb(220, 70, 70), e);
        }
        // The jobs adding pricers, with what they cost so far (a chat model's calls and tokens).
        for (id, name) in &self.pending {
            if let Some((_, _, p)) = progress.iter().find(|(j, _, _)| j == id) {
                ui.label(RichText::new(name).strong());
                ui.add(egui::ProgressBar::new(p.fraction().unwrap_or(0.0)).show_percentage().text(&p.stage));
                if ui.small_button("Cancel").clicked() {
                    commands.push(Command::CancelJob(*id));
                }
            }
        }
        ui.add_space(6.0);
        if ui.button(if self.form.open { "Hide the form" } else { "Add pricer…" }).clicked() {
            self.form.open = !self.form.open;
        }
        if self.form.open {
            egui::Frame::group(ui.style()).show(ui, |ui| self.add_form_ui(ui, &mut commands));
        }
        ui.separator();
        ui.strong("Add evaluations");
        ui.horizontal(|ui| {
            let l = ui.label("files");
            ui.add(egui::TextEdit::singleline(&mut self.files).hint_text("a.json b.json").desired_width(170.0))
                .labelled_by(l.id);
            if ui.button("Add").clicked() {
                let paths: Vec<PathBuf> = self.files.split_whitespace().map(PathBuf::from).collect();
                if !paths.is_empty() {
                    commands.push(Command::AddFiles(paths));
                }
            }
        });
        ui.horizontal(|ui| {
            let l = ui.label("folder");
            ui.add(egui::TextEdit::singleline(&mut self.folder).desired_width(160.0)).labelled_by(l.id);
            if ui.button("Add all").on_hover_text("Every evaluation file in the folder").clicked() {
                commands.push(Command::ScanFolder(self.folder.trim().into()));
            }
        });
        ui.horizontal(|ui| {
            let l = ui.label("runs");
            ui.add(egui::TextEdit::singleline(&mut self.runs_folder).desired_width(160.0)).labelled_by(l.id);
            if ui.button("Add runs").on_hover_text("Every checkpoint evaluation of every fine-tuning run").clicked() {
                commands.push(Command::AddRuns(self.runs_folder.trim().into()));
            }
        });
        ui.separator();
        ui.strong("Pricer set");
        ui.horizontal(|ui| {
            let l = ui.label("file");
            ui.add(egui::TextEdit::singleline(&mut self.set_file).desired_width(150.0)).labelled_by(l.id);
            if ui.add_enabled(n > 0, egui::Button::new("Save")).clicked() {
                commands.push(Command::SaveSet(self.set_file.trim().into()));
            }
            if ui.button("Load").clicked() {
                commands.push(Command::LoadSet(self.set_file.trim().into()));
            }
        });
        self.commands.extend(commands);
    }

    fn add_form_ui(&mut self, ui: &mut Ui, commands: &mut Vec<Command>) {
        let f = &mut self.form;
        let mut changed = false;
        egui::Grid::new("compare_add_form").num_columns(2).show(ui, |ui| {
            let l = ui.label("kind");
            egui::ComboBox::from_id_salt("compare_kind")
                .selected_text(&f.kind)
                .show_ui(ui, |ui| {
                    for (k, _) in KINDS {
                        if ui.selectable_label(f.kind == k, k).clicked() && f.kind != k {
                            f.kind = k.to_owned();
                            f.target.clear();
                            changed = true;
                        }
                    }
                })
                .response
                .labelled_by(l.id);
            ui.end_row();
            let needs = KINDS.iter().find(|(k, _)| *k == f.kind).map_or("", |k| k.1);
            if !needs.is_empty() {
                let l = ui.label("of");
                let r = ui.add(egui::TextEdit::singleline(&mut f.target).hint_text(needs).desired_width(170.0));
                if r.labelled_by(l.id).changed() {
                    changed = true;
                }
                ui.end_row();
            }
            let l = ui.label("name");
            ui.add(egui::TextEdit::singleline(&mut f.name).hint_text("default from the kind").desired_width(170.0))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("train");
            ui.add(egui::TextEdit::singleline(&mut f.train).hint_text("train.parquet").desired_width(170.0))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("test");
            ui.add(egui::TextEdit::singleline(&mut f.test).hint_text("test.parquet").desired_width(170.0))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("items");
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut f.size).range(1..=1_000_000)).labelled_by(l.id);
                let l = ui.label("from");
                ui.add(egui::DragValue::new(&mut f.start).range(0..=10_000_000)).labelled_by(l.id);
            });
            ui.end_row();
        });
        if changed {
            f.reset_spec();
        }
        egui::CollapsingHeader::new("parameters (the full specification)").show(ui, |ui| {
            let l = ui.label(RichText::new("every field of the pricer; edit as JSON").weak());
            ui.add(
                egui::TextEdit::multiline(&mut f.spec_json).code_editor().desired_rows(6).desired_width(f32::INFINITY),
            )
            .labelled_by(l.id);
            if ui.small_button("defaults").clicked() {
                f.reset_spec();
            }
        });
        if let Some(p) = &f.problem {
            ui.colored_label(Color32::from_rgb(220, 70, 70), p);
        }
        let cmd = f.command();
        if let Err(why) = &cmd {
            ui.label(RichText::new(why).weak());
        }
        if ui.add_enabled(cmd.is_ok(), egui::Button::new("Fit and evaluate")).clicked()
            && let Ok(c) = cmd
        {
            commands.push(c);
        }
    }
}
