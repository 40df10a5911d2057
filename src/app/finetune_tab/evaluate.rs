//! "Evaluate checkpoint": pick a checkpoint and test items, score the first N with the Tester,
//! show the report line and the truth-vs-estimate scatter.

use super::{Command, FinetuneTab};
use crate::evaluation::Evaluation;
use crate::tester::Colour;
use egui::{Color32, RichText, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};
use std::path::PathBuf;

impl FinetuneTab {
    pub(super) fn eval_ui(&mut self, ui: &mut Ui, job_running: bool) {
        ui.heading("Evaluate checkpoint");
        let Some(r) = self.selected.and_then(|i| self.runs.get(i)) else {
            ui.label("Select a run.");
            return;
        };
        let dir = r.dir.clone();
        let cks = r.checkpoints.clone();
        let evals = r.evals.clone();
        let best = crate::finetune::run::best_of(&r.metrics, &cks, self.best_by);
        ui.horizontal_wrapped(|ui| {
            let ck_label = ui.label("checkpoint");
            let current = self
                .eval_checkpoint
                .as_ref()
                .filter(|p| cks.iter().any(|c| &c.1 == *p))
                .cloned()
                .or_else(|| best.as_ref().map(|b| b.1.clone()))
                .or_else(|| cks.last().map(|c| c.1.clone()));
            let key = self.best_by.key();
            let name_of = |step: usize| {
                if best.as_ref().is_some_and(|b| b.0 == step) {
                    format!("checkpoint-{step} (best {key})")
                } else {
                    format!("checkpoint-{step}")
                }
            };
            let label = current
                .as_ref()
                .and_then(|p| cks.iter().find(|c| &c.1 == p))
                .map_or("none yet".into(), |c| name_of(c.0));
            egui::ComboBox::from_id_salt("eval_ck")
                .selected_text(label)
                .show_ui(ui, |ui| {
                    for (step, p) in &cks {
                        if ui.selectable_label(current.as_ref() == Some(p), name_of(*step)).clicked() {
                            self.eval_checkpoint = Some(p.clone());
                        }
                    }
                })
                .response
                .labelled_by(ck_label.id);
            let label = ui.label("test items");
            ui.add(
                egui::TextEdit::singleline(&mut self.test_file)
                    .hint_text("test.parquet from a Sampling export")
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
            let label = ui.label("N");
            ui.add(egui::DragValue::new(&mut self.eval_n).range(1..=100_000)).labelled_by(label.id);
            let ok = current.is_some() && !self.test_file.trim().is_empty() && !job_running;
            if ui.add_enabled(ok, egui::Button::new("Evaluate")).clicked()
                && let Some(ck) = current
            {
                self.queue(Command::Evaluate {
                    run: dir.clone(),
                    checkpoint: ck,
                    test: PathBuf::from(self.test_file.trim()),
                    n: self.eval_n,
                });
            }
        });
        for e in evals.iter().rev().take(1) {
            ui.label(RichText::new(&e.line).monospace().strong());
            let decode = e.fitted.get("decode").and_then(|d| d.as_str()).unwrap_or("default");
            ui.label(format!("{} items · decode: {decode} · {:.1}s · {}", e.metrics.n, e.predict_seconds, e.test.path));
            scatter_ui(ui, e);
        }
        if evals.len() > 1 {
            egui::CollapsingHeader::new("Earlier evaluations").show(ui, |ui| {
                for e in evals.iter().rev().skip(1) {
                    ui.monospace(&e.line);
                }
            });
        }
    }
}

/// Truth vs estimate, coloured by the Tester's rule, with y = x.
fn scatter_ui(ui: &mut Ui, e: &Evaluation) {
    let pairs = e.pairs();
    let max = pairs.iter().map(|p| p.0.max(p.1)).fold(1.0, f64::max);
    let mut groups: [(Colour, Color32, Vec<[f64; 2]>); 3] = [
        (Colour::Green, Color32::from_rgb(80, 180, 90), vec![]),
        (Colour::Orange, Color32::from_rgb(235, 150, 50), vec![]),
        (Colour::Red, Color32::from_rgb(220, 70, 70), vec![]),
    ];
    for &(t, g) in &pairs {
        let c = crate::tester::score_one(t, g).colour;
        if let Some(grp) = groups.iter_mut().find(|x| x.0 == c) {
            grp.2.push([t, g]);
        }
    }
    Plot::new("eval_scatter")
        .height(280.0)
        .allow_scroll(false)
        .legend(Legend::default())
        .x_axis_label("Ground Truth")
        .y_axis_label("Model Estimate")
        .include_x(0.0)
        .include_y(0.0)
        .include_x(max)
        .include_y(max)
        .show(ui, |plot| {
            plot.line(Line::new("y = x", PlotPoints::from(vec![[0.0, 0.0], [max, max]])).color(Color32::GRAY));
            for (c, colour, pts) in groups {
                let n = pts.len();
                plot.points(
                    Points::new(format!("{} ({n})", c.name()), PlotPoints::from(pts)).color(colour).radius(3.0),
                );
            }
        });
}
