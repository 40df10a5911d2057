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

#[test]
fn compare_tab_snapshot() {
    // Five pricers of different sharpness on the same 300 items, one item selected.
    let dir = tempfile::tempdir().unwrap();
    let items = crate::compare::truths(300);
    let paths: Vec<std::path::PathBuf> =
        [("sharp", 0.15), ("good", 0.35), ("middling", 0.6), ("poor", 1.0), ("blunt", 1.6)]
            .iter()
            .enumerate()
            .map(|(k, (name, noise))| {
                let p = dir.path().join(format!("{name}.json"));
                crate::compare::synthetic_eval(name, "d1", &items, *noise, k as u64 + 1).save(&p).unwrap();
                p
            })
            .collect();
    let mut app = PricerApp::new(Settings::default(), Arc::new(|| {}), false);
    app.act(Action::SetTab(Tab::Compare));
    app.tabs.compare.queue(pricer::app::compare_tab::Command::AddFiles(paths));
    app.tabs.compare.select_after_load = Some(4);
    let mut h = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).wgpu().build_ui_state(
        |ui, app: &mut PricerApp| {
            app.logic(&ui.ctx().clone());
            app.ui(ui);
        },
        app,
    );
    for _ in 0..400 {
        h.step();
        if !h.state().is_busy() && h.state().tabs.compare.stats.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for _ in 0..4 {
        h.step();
    }
    assert_eq!(h.state().tabs.compare.drawn_highlights, vec![Some(4); 5]);
    h.snapshot("compare_tab");
}
