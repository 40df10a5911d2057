//! What the UI asks of the shell: actions queued while drawing and carried out after it (the
//! command-sender pattern), so no `ui` function changes shared state or starts work itself.

use super::tabs::Tab;
use crate::jobs::Level;
use crate::view::Filter;
use std::path::{Path, PathBuf};

/// The exported file whose name starts with `stem` (`train`, `test`) among a Sampling export's
/// files (what [`Action::UseExport`] carries).
pub fn exported<'a>(files: &'a [PathBuf], stem: &str) -> Option<&'a Path> {
    files.iter().find(|p| p.file_stem().is_some_and(|s| s.to_string_lossy().starts_with(stem))).map(PathBuf::as_path)
}

/// Something the UI asked the shell for, carried out after drawing.
#[derive(Clone, Debug)]
pub enum Action {
    /// Show the Open dialog.
    ShowOpen,
    /// Show the path dialog (typed paths).
    ShowOpenPath,
    /// Load these files (raw metadata, curated items or the user's own tables).
    Load(Vec<PathBuf>),
    /// Load these files with mappings for some of their tables; the others ask for one (the
    /// dialog), or use the one saved for their columns unless the flag asks to review it.
    LoadMapped(Vec<PathBuf>, Vec<(PathBuf, crate::table::TableSpec)>, bool),
    /// Load the built-in synthetic demo.
    LoadDemo,
    /// Show the download dialog.
    ShowDownload,
    /// Download these categories into a folder, then load them.
    Download(Vec<String>, Option<PathBuf>),
    /// Switch tab.
    SetTab(Tab),
    /// Replace the Dataset filter (linked charts) and show the Dataset tab.
    FilterTo(Filter),
    /// Cancel the job with this id.
    Cancel(u64),
    /// Cancel the newest job (Esc).
    CancelNewest,
    /// Show or hide the log.
    ToggleLog,
    /// Switch between the dark and the light theme.
    ToggleTheme,
    /// Write a message to the log.
    Log(Level, String),
    /// Fill the Fine-tune tab's data fields from exported files (train, test).
    UseExport(Vec<PathBuf>),
}
