//! Snapshot images of each tab, rendered by wgpu on Mesa's software Vulkan (lavapipe; `.ci/run`
//! installs it). `UPDATE_SNAPSHOTS=1 cargo test snapshots` rewrites tests/snapshots/*.png after an
//! intended change; look at the new images before committing them.

use egui_kittest::Harness;
use pricer::app::{Action, PricerApp, Settings, Tab};
use pricer::dataset::load_demo;
use std::sync::Arc;

fn snapshot_tab(tab: Tab, name: &str) {
    let data = Arc::new(load_demo(3000, 42, &Default::default()).unwrap());
    let mut app = PricerApp::new(Settings::default(), Arc::new(|| {}), false);
    app.tabs.sampling.new_data(&data);
    app.data = Some(data);
    app.act(Action::SetTab(tab));
    if tab == Tab::Dataset {
        app.tabs.dataset.selected = Some(1);
    }
    if tab == Tab::Finetune {
        // Paths that read the same on every machine: no runs, the fetched model by relative path.
        app.tabs.finetune.form.runs_dir = "tests/fixtures/no-runs".into();
        app.tabs.finetune.form.model = "assets/models/SmolLM2-135M-Instruct.Q4_1.gguf".into();
    }
    let mut h = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).wgpu().build_ui_state(
        |ui, app: &mut PricerApp| {
            app.logic(&ui.ctx().clone());
            app.ui(ui);
        },
        app,
    );
    for _ in 0..6 {
        h.step();
    }
    h.snapshot(name);
}

#[test]
fn dataset_tab_snapshot() {
    snapshot_tab(Tab::Dataset, "dataset_tab");
}

#[test]
fn charts_tab_snapshot() {
    snapshot_tab(Tab::Charts, "charts_tab");
}

#[test]
fn sampling_tab_snapshot() {
    snapshot_tab(Tab::Sampling, "sampling_tab");
}

#[test]
fn finetune_tab_snapshot() {
    snapshot_tab(Tab::Finetune, "finetune_tab");
}
