//! What the app keeps across restarts: the shell's settings and each tab's persisted state, one
//! struct each, all `#[serde(default)]` so that an older or partial file still loads.

use super::tabs::Tab;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Settings kept across restarts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Dark theme (else light).
    pub dark_mode: bool,
    /// Last tab shown.
    pub tab: Tab,
    /// Files loaded last (offered in the Open dialog).
    pub recent_files: Vec<PathBuf>,
    /// Raw lines of the built-in demo.
    pub demo_lines: usize,
    /// Hub categories ticked in the download dialog.
    pub download_categories: Vec<String>,
    /// Where downloads are copied.
    pub download_dir: Option<PathBuf>,
    /// The Sampling tab's persisted state.
    #[serde(flatten)]
    pub sampling: SamplingSettings,
    /// The Fine-tune tab's persisted state.
    #[serde(flatten)]
    pub finetune: FinetuneSettings,
    /// The Compare tab's persisted state.
    pub compare: CompareSettings,
    /// Column mappings of the user's own tables, reused for files with the same columns.
    pub table_mappings: crate::table::SavedMappings,
}

/// The Compare tab's persisted state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareSettings {
    /// Folder where new evaluations are written and read.
    pub folder: String,
    /// Training items of *Add pricer*.
    pub train_file: String,
    /// Test items of *Add pricer*.
    pub test_file: String,
    /// The pricers shown last.
    pub pricers: Vec<crate::pricers::compare::SetEntry>,
}

/// The Sampling tab's persisted state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingSettings {
    /// Last directory exported to.
    pub export_dir: Option<PathBuf>,
}

/// The Fine-tune tab's persisted state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FinetuneSettings {
    /// Folder of fine-tuning runs.
    pub runs_dir: Option<PathBuf>,
    /// Test items last used to evaluate a checkpoint.
    pub eval_test_file: String,
    /// Machines to train on over SSH, the last used first (no secrets: ssh holds the keys).
    pub hosts: Vec<crate::remote::Host>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dark_mode: true,
            tab: Tab::Dataset,
            recent_files: Vec::new(),
            demo_lines: crate::demo::DEFAULT_LINES,
            download_categories: vec!["Appliances".into()],
            download_dir: None,
            sampling: SamplingSettings::default(),
            finetune: FinetuneSettings::default(),
            compare: CompareSettings::default(),
            table_mappings: crate::table::SavedMappings::default(),
        }
    }
}
