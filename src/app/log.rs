//! The log panel's model and view: entries with their time and level; errors open the panel and
//! stay there.

use crate::jobs::Level;
use egui::{Color32, RichText, Ui};
use std::time::Instant;

/// One line of the log panel.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// Seconds since the app started.
    pub at_secs: f64,
    /// Severity.
    pub level: Level,
    /// Text (may span lines).
    pub text: String,
}

/// The log: entries, and whether the panel is open.
pub struct Log {
    /// Entries, oldest first.
    pub entries: Vec<LogEntry>,
    /// Whether the panel is open.
    pub shown: bool,
    started: Instant,
}

impl Default for Log {
    fn default() -> Self {
        Self { entries: Vec::new(), shown: false, started: Instant::now() }
    }
}

impl Log {
    /// Adds an entry; an error opens the panel.
    pub fn push(&mut self, level: Level, text: impl Into<String>) {
        let at_secs = self.started.elapsed().as_secs_f64();
        self.entries.push(LogEntry { at_secs, level, text: text.into() });
        if level == Level::Error {
            self.shown = true;
        }
    }

    /// Errors logged.
    pub fn n_errors(&self) -> usize {
        self.entries.iter().filter(|e| e.level == Level::Error).count()
    }

    /// Iterates over the entries.
    pub fn iter(&self) -> std::slice::Iter<'_, LogEntry> {
        self.entries.iter()
    }

    /// Draws the panel's content.
    pub fn ui(&self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.strong("Log");
            ui.label(RichText::new("errors stay here; Ctrl+L hides").weak());
        });
        egui::ScrollArea::vertical().stick_to_bottom(true).auto_shrink([false, false]).show(ui, |ui| {
            for e in &self.entries {
                let colour = match e.level {
                    Level::Info => ui.visuals().text_color(),
                    Level::Warning => Color32::from_rgb(0xf2, 0x8e, 0x2b),
                    Level::Error => Color32::from_rgb(0xe1, 0x57, 0x59),
                };
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new(format!("{:>7.1}s", e.at_secs)).monospace().weak());
                    ui.label(RichText::new(&e.text).color(colour));
                });
            }
        });
    }
}
