//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The one policy for a test whose asset (model, data) is missing: in CI (`CI=true`) the test
/// fails with a message naming the setup step that provides it; elsewhere it says it skipped and
/// the caller returns. `Some(path)` when the asset is there.
pub fn asset(path: PathBuf, setup: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!("{} is missing: {setup}", path.display());
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    None
}

/// `../shared/data/real/<name>` (the shared folder beside the checkout; CI has it).
pub fn real_data(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real").join(name);
    asset(p, "it comes with ../shared/data/real beside the checkout")
}

/// The SmolLM2-135M GGUF the fine-tuning tests use.
pub fn model_file() -> Option<PathBuf> {
    asset(pricer::finetune::model::default_model_path(), "run scripts/fetch-assets.sh (scripts/test.sh does)")
}

/// Reads a JSON-lines file into values.
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
