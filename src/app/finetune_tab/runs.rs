//! The runs list (state, step, losses, checkpoints, Resume/Stop, config differences of the runs
//! overlaid) and the live curves (raw and smoothed train loss, validation loss, learning rate,
//! tokens/s) with the live numbers of the selected run.

use super::{Command, FinetuneTab};
use crate::app::widgets::category_colour;
use crate::finetune::config::TrainConfig;
use crate::finetune::run::{BestBy, MetricRow, RunSnapshot, RunState, best_of, config_differences};
use crate::stats::ema;
use egui::{RichText, Ui};
use egui_plot::{Legend, Line, MarkerShape, Plot, PlotPoints, Points};

impl FinetuneTab {
    pub(super) fn runs_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.heading("Runs");
            ui.label(format!("in {}", self.form.runs_dir.display()));
            if ui.small_button("Rescan").on_hover_text("Read the runs folder again").clicked() {
                self.queue(Command::Rescan);
            }
            if ui
                .small_button("Import run…")
                .on_hover_text(
                    "A Hugging Face Trainer or axolotl output folder (trainer_state.json, PEFT checkpoints): \
                     its curves beside these runs, its checkpoints evaluated here",
                )
                .clicked()
            {
                self.queue(Command::BrowseImport);
            }
        });
        if self.runs.is_empty() {
            ui.label("No runs yet. Fill in the form and launch one.");
            return;
        }
        let running_dir = self.running.as_ref().map(|r| r.run_dir.clone());
        let mut commands = vec![];
        egui::Grid::new("runs_grid").striped(true).num_columns(8).show(ui, |ui| {
            for h in ["overlay", "run", "state", "step", "train loss", "val loss", "checkpoints", ""] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for (i, r) in self.runs.iter().enumerate() {
                let mut on = self.shown.contains(&r.dir);
                if ui.checkbox(&mut on, "show").on_hover_text("Overlay in the charts").changed() {
                    if on {
                        self.shown.insert(r.dir.clone());
                    } else {
                        self.shown.remove(&r.dir);
                    }
                }
                let colour = category_colour(i);
                if ui.selectable_label(self.selected == Some(i), RichText::new(&r.name).color(colour)).clicked() {
                    self.selected = Some(i);
                    self.shown.insert(r.dir.clone());
                }
                let is_running = running_dir.as_deref() == Some(r.dir.as_path());
                let state =
                    if is_running && r.state() == RunState::Interrupted { RunState::Running } else { r.state() };
                let remote = self.remote_state(r);
                match (r.config.as_ref().and_then(|c| c.imported_from.as_deref()), &remote) {
                    (Some(from), _) => ui.label(format!("imported ({})", state.name())).on_hover_text(from),
                    (None, Some((text, hover))) => {
                        let label = ui.label(text);
                        match hover {
                            Some(h) => label.on_hover_text(h),
                            None => label,
                        }
                    }
                    (None, None) => ui.label(state.name()),
                };
                ui.label(r.status.as_ref().map_or("—".into(), |s| format!("{}/{}", s.step, s.total_steps)));
                ui.label(r.last_train_loss().map_or("—".into(), |l| format!("{l:.4}")));
                ui.label(r.last_val_loss().map_or("—".into(), |l| format!("{l:.4}")));
                ui.label(r.checkpoints.len().to_string());
                let can_resume = !is_running && running_dir.is_none() && state.can_resume();
                ui.horizontal(|ui| {
                    if can_resume && ui.button("Resume").on_hover_text("Continue from the last checkpoint").clicked() {
                        commands.push(Command::Resume(r.dir.clone()));
                    }
                    if state == RunState::Running
                        && !is_running
                        && ui.button("Stop").on_hover_text("Stop after the current step, with a checkpoint").clicked()
                    {
                        commands.push(Command::Stop(r.dir.clone()));
                    }
                    if remote.is_some()
                        && ui
                            .button("Pull checkpoints")
                            .on_hover_text("Copy the checkpoints this machine lacks (to evaluate them here)")
                            .clicked()
                    {
                        commands.push(Command::PullCheckpoints(r.dir.clone()));
                    }
                });
                ui.end_row();
            }
        });
        self.commands.extend(commands);
        if let Some(run_dir) = self.running.as_ref().map(|r| r.run_dir.clone()) {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("training {} …", run_dir.display()));
                if ui.button("Stop run").on_hover_text("Stop after the current step, with a checkpoint").clicked() {
                    self.queue(Command::StopRunning);
                }
            });
        }
        let shown: Vec<&RunSnapshot> = self.runs.iter().filter(|r| self.shown.contains(&r.dir)).collect();
        if shown.len() > 1 {
            let configs: Vec<&TrainConfig> = shown.iter().filter_map(|r| r.config.as_ref()).collect();
            let diff = config_differences(&configs);
            egui::CollapsingHeader::new(format!("Config differences ({} keys)", diff.len())).default_open(true).show(
                ui,
                |ui| {
                    egui::Grid::new("diff_grid").striped(true).show(ui, |ui| {
                        ui.label("");
                        for r in &shown {
                            ui.label(RichText::new(&r.name).strong());
                        }
                        ui.end_row();
                        for (k, vals) in &diff {
                            ui.label(k);
                            for v in vals {
                                ui.label(v);
                            }
                            ui.end_row();
                        }
                    });
                },
            );
        }
    }

    pub(super) fn curves_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.heading("Curves");
            ui.label("smoothing");
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99).fixed_decimals(2))
                .on_hover_text("EMA of the train loss; the raw loss stays visible");
            ui.checkbox(&mut self.log_y, "log scale");
        });
        if let Some(r) = self.selected.and_then(|i| self.runs.get(i)) {
            live_stats_ui(ui, r);
        }
        if !self.runs.iter().any(|r| self.shown.contains(&r.dir)) {
            ui.label("Tick a run above (or launch one) to see its loss, learning rate and throughput here.");
            return;
        }
        let log_y = self.log_y;
        let tr = |v: f64| if log_y { v.max(1e-9).log10() } else { v };
        let plot = Plot::new("loss_plot")
            .height(260.0)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label(if log_y { "loss (log10)" } else { "loss" });
        plot.show(ui, |plot| {
            for (i, r) in self.runs.iter().enumerate().filter(|(_, r)| self.shown.contains(&r.dir)) {
                let colour = category_colour(i);
                let train: Vec<[f64; 2]> =
                    r.metrics.iter().filter_map(|m| m.train_loss.map(|l| [m.step as f64, l])).collect();
                let raw: Vec<[f64; 2]> = train.iter().map(|p| [p[0], tr(p[1])]).collect();
                plot.line(
                    Line::new(format!("{} train (raw)", r.name), PlotPoints::from(raw))
                        .color(colour.gamma_multiply(0.35))
                        .width(1.0),
                );
                if self.smoothing > 0.0 {
                    let ys: Vec<f64> = train.iter().map(|p| p[1]).collect();
                    let sm: Vec<[f64; 2]> =
                        ema(&ys, self.smoothing).into_iter().zip(&train).map(|(y, p)| [p[0], tr(y)]).collect();
                    plot.line(
                        Line::new(format!("{} train (EMA {:.2})", r.name, self.smoothing), PlotPoints::from(sm))
                            .color(colour)
                            .width(2.0),
                    );
                }
                let val: Vec<[f64; 2]> =
                    r.metrics.iter().filter_map(|m| m.val_loss.map(|l| [m.step as f64, tr(l)])).collect();
                plot.line(
                    Line::new(format!("{} validation", r.name), PlotPoints::from(val.clone()))
                        .color(colour)
                        .width(1.5)
                        .style(egui_plot::LineStyle::dashed_loose()),
                );
                plot.points(
                    Points::new(format!("{} validation", r.name), PlotPoints::from(val))
                        .color(colour)
                        .radius(4.0)
                        .shape(MarkerShape::Diamond),
                );
            }
        });
        self.price_curves_ui(ui);
        ui.columns(2, |cols| {
            Plot::new("lr_plot").height(120.0).x_axis_label("step").y_axis_label("learning rate").show(
                &mut cols[0],
                |plot| {
                    for (i, r) in self.runs.iter().enumerate().filter(|(_, r)| self.shown.contains(&r.dir)) {
                        let pts: Vec<[f64; 2]> =
                            r.metrics.iter().filter_map(|m| m.lr.map(|l| [m.step as f64, l])).collect();
                        plot.line(Line::new(r.name.clone(), PlotPoints::from(pts)).color(category_colour(i)));
                    }
                },
            );
            let logged = |r: &RunSnapshot| r.metrics.iter().any(|m| m.tokens_per_s.is_some());
            if !self.runs.iter().filter(|r| self.shown.contains(&r.dir)).any(logged) {
                cols[1].weak("tokens/s: not in this run's log (an imported trainer's log has none)");
                return;
            }
            Plot::new("tps_plot").height(120.0).x_axis_label("step").y_axis_label("tokens/s").show(
                &mut cols[1],
                |plot| {
                    for (i, r) in self.runs.iter().enumerate().filter(|(_, r)| self.shown.contains(&r.dir)) {
                        let pts: Vec<[f64; 2]> =
                            r.metrics.iter().filter_map(|m| m.tokens_per_s.map(|l| [m.step as f64, l])).collect();
                        plot.line(Line::new(r.name.clone(), PlotPoints::from(pts)).color(category_colour(i)));
                    }
                },
            );
        });
    }
}

impl FinetuneTab {
    /// The validation items' prices over steps (val_error, val_rmsle or val_hits by `best_by`),
    /// each run's best checkpoint marked.
    fn price_curves_ui(&mut self, ui: &mut Ui) {
        let shown: Vec<(usize, &RunSnapshot)> =
            self.runs.iter().enumerate().filter(|(_, r)| self.shown.contains(&r.dir)).collect();
        if !shown.iter().any(|(_, r)| r.metrics.iter().any(|m| m.val_error.is_some())) {
            return;
        }
        ui.horizontal(|ui| {
            ui.label(RichText::new("Validation prices").strong());
            let label = ui.label("best by");
            egui::ComboBox::from_id_salt("best_by")
                .selected_text(self.best_by.key())
                .show_ui(ui, |ui| {
                    for b in BestBy::ALL {
                        ui.selectable_value(&mut self.best_by, b, b.key());
                    }
                })
                .response
                .labelled_by(label.id);
        });
        let by = self.best_by;
        let unit = match by {
            BestBy::Error => "Error ($)",
            BestBy::Rmsle => "RMSLE",
            BestBy::Hits => "Hits (%)",
            BestBy::Loss => "validation loss",
        };
        let mut bests = vec![];
        // From 0, so the axis always has a labelled tick (a range like $105–170 at this height
        // gets grid lines every $10, too close for labels, and none at $100s).
        Plot::new("price_plot")
            .height(160.0)
            .include_y(0.0)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label(unit)
            .show(ui, |plot| {
                for (i, r) in &shown {
                    let colour = category_colour(*i);
                    let pts: Vec<[f64; 2]> =
                        r.metrics.iter().filter_map(|m| m.metric(by).map(|v| [m.step as f64, v])).collect();
                    plot.line(Line::new(format!("{} {}", r.name, by.key()), PlotPoints::from(pts)).color(colour));
                    if let Some((step, _, v)) = best_of(&r.metrics, &r.checkpoints, by) {
                        plot.points(
                            Points::new(
                                format!("{} best: checkpoint-{step}", r.name),
                                PlotPoints::from(vec![[step as f64, v]]),
                            )
                            .color(colour)
                            .radius(6.0)
                            .shape(MarkerShape::Asterisk),
                        );
                        bests.push(format!("{}: best checkpoint-{step} ({} {v:.2})", r.name, by.key()));
                    }
                }
            });
        for b in bests {
            ui.label(b);
        }
    }
}

fn live_stats_ui(ui: &mut Ui, r: &RunSnapshot) {
    let rows: Vec<&MetricRow> = r.metrics.iter().filter(|m| m.train_loss.is_some()).collect();
    let Some(last) = rows.last() else { return };
    let total = r.status.as_ref().map_or(0, |s| s.total_steps);
    let recent: Vec<f64> = rows.iter().rev().take(10).filter_map(|m| m.tokens_per_s).collect();
    let tps = if recent.is_empty() { 0.0 } else { recent.iter().sum::<f64>() / recent.len() as f64 };
    let per_step = last.elapsed_s / last.step.max(1) as f64;
    let eta = per_step * total.saturating_sub(last.step) as f64;
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("{}: step {}/{}", r.name, last.step, total));
        ui.separator();
        ui.label(format!("epoch {:.2}", last.epoch));
        ui.separator();
        ui.label(format!("loss {:.4}", last.train_loss.unwrap_or(f64::NAN)));
        if let Some(v) = r.metrics.iter().rev().find_map(|m| m.val_loss) {
            ui.separator();
            ui.label(format!("val {v:.4}"));
        }
        ui.separator();
        ui.label(format!("lr {:.2e}", last.lr.unwrap_or(0.0)));
        // An imported trainer's log has no throughput.
        if !recent.is_empty() {
            ui.separator();
            ui.label(format!("{tps:.0} tokens/s"));
        }
        ui.separator();
        ui.label(format!("elapsed {}", hms(last.elapsed_s)));
        if r.state() == RunState::Running && last.step < total {
            ui.separator();
            ui.label(format!("ETA {}", hms(eta)));
        }
        if let Some(mb) = last.rss_mb {
            ui.separator();
            ui.label(format!("memory {:.2} GiB", mb / 1024.0));
        }
    });
}

fn hms(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
