//! "Price them yourself": one test prompt at a time, a typed guess (Enter records it and shows the
//! next), the answers kept in a CSV that resumes where it stopped, and a button that scores them
//! as the `human` pricer in the comparison.

use super::{Command, CompareTab};
use egui::{Key, RichText, Ui};
use std::path::PathBuf;

/// The quiz form and the typed answer.
#[derive(Clone, Debug)]
pub struct QuizForm {
    /// Test items.
    pub test: String,
    /// First item.
    pub start: usize,
    /// Questions.
    pub n: usize,
    /// The answers file.
    pub file: String,
    /// The guess being typed.
    pub input: String,
    /// Show the true price after each answer.
    pub reveal: bool,
    /// What the last answer was (shown when `reveal` is on).
    pub last: Option<(String, f64, f64)>,
    /// Why the typed guess is not a price.
    pub problem: Option<String>,
}

impl Default for QuizForm {
    fn default() -> Self {
        Self {
            test: String::new(),
            start: 0,
            n: 250,
            file: "evaluations/human-quiz.csv".into(),
            input: String::new(),
            reveal: false,
            last: None,
            problem: None,
        }
    }
}

impl CompareTab {
    pub(super) fn quiz_ui(&mut self, ui: &mut Ui) {
        ui.heading("Price them yourself");
        ui.label(
            "The original's human baseline: a person priced 250 test items from their descriptions alone. Read \
             each prompt, type your guess, press Enter. Your answers are saved after each one; come back any time \
             to continue.",
        );
        if self.quiz_form.test.trim().is_empty() {
            if let Some(c) = &self.comparison {
                self.quiz_form.test = c.evals[0].test.path.clone();
            } else if !self.form.test.trim().is_empty() {
                self.quiz_form.test = self.form.test.clone();
            }
        }
        let f = &mut self.quiz_form;
        let mut open = None;
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("test items");
            ui.add(egui::TextEdit::singleline(&mut f.test).desired_width(240.0)).labelled_by(l.id);
            let l = ui.label("questions");
            ui.add(egui::DragValue::new(&mut f.n).range(1..=10_000)).labelled_by(l.id);
            let l = ui.label("from item");
            ui.add(egui::DragValue::new(&mut f.start).range(0..=10_000_000)).labelled_by(l.id);
            let l = ui.label("answers file");
            ui.add(egui::TextEdit::singleline(&mut f.file).desired_width(220.0)).labelled_by(l.id);
            let ok = !f.test.trim().is_empty() && !f.file.trim().is_empty();
            if ui.add_enabled(ok, egui::Button::new("Start or resume")).clicked() {
                open = Some(Command::OpenQuiz {
                    test: PathBuf::from(f.test.trim()),
                    start: f.start,
                    n: f.n,
                    file: PathBuf::from(f.file.trim()),
                });
            }
            ui.checkbox(&mut f.reveal, "show the true price after each answer");
        });
        if let Some(c) = open {
            self.queue(c);
        }
        ui.separator();
        let Some(q) = &self.quiz else {
            ui.label(RichText::new("Press Start to see the first question.").weak());
            return;
        };
        let total = q.questions.len();
        let answered = q.answered();
        let prefix = q.answered_prefix();
        ui.add(
            egui::ProgressBar::new(answered as f32 / total.max(1) as f32)
                .text(format!("{answered} of {total} answered"))
                .desired_width(400.0),
        );
        let f = &mut self.quiz_form;
        if f.reveal
            && let Some((title, guess, truth)) = &f.last
        {
            let s = crate::tester::score_one(*truth, *guess);
            ui.label(
                RichText::new(format!("{title}: you said ${guess:.2}, it was ${truth:.2} ({})", s.colour.name()))
                    .color(super::scatter::colour_of(s.colour)),
            );
        }
        let mut commands = vec![];
        match q.next() {
            Some(k) => {
                let question = &q.questions[k];
                ui.label(
                    RichText::new(format!("Question {} of {total} · test item {}", k + 1, question.index)).strong(),
                );
                egui::ScrollArea::vertical().max_height(ui.available_height() - 90.0).show(ui, |ui| {
                    ui.label(RichText::new(&question.prompt).monospace());
                });
                ui.horizontal(|ui| {
                    let l = ui.label("your guess $");
                    let r = ui.add(egui::TextEdit::singleline(&mut f.input).desired_width(120.0)).labelled_by(l.id);
                    let enter = r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                    // Keep the cursor in the field (after Enter, for the next question), unless the
                    // user is typing elsewhere.
                    if !r.has_focus() && ui.memory(|m| m.focused().is_none()) {
                        r.request_focus();
                    }
                    if ui.button("Record").clicked() || enter {
                        match crate::pricers::import::parse_number(&f.input).filter(|v| *v >= 0.0) {
                            Some(v) => {
                                commands.push(Command::Answer(v));
                                f.problem = None;
                                f.input.clear();
                            }
                            None => f.problem = Some(format!("`{}` is not a price", f.input.trim())),
                        }
                    }
                    if let Some(p) = &f.problem {
                        ui.colored_label(egui::Color32::from_rgb(220, 70, 70), p);
                    }
                });
            }
            None => {
                ui.label(RichText::new("All answered — thank you.").strong());
            }
        }
        ui.add_space(8.0);
        if ui
            .add_enabled(
                prefix > 0,
                egui::Button::new(format!("Score my answers so far ({prefix}) as a pricer of the comparison")),
            )
            .clicked()
        {
            commands.push(Command::ScoreQuiz);
        }
        self.commands.extend(commands);
    }
}
