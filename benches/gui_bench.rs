//! Frame times of the app with 2.8M items loaded, driven headlessly (egui_kittest, no GPU):
//! dragging the cap slider on the Sampling tab (each step moves the slider, recomputes the live
//! preview and lays out the whole window), switching tabs, and the resident memory.
//! `cargo bench --bench gui_bench` (builds the table from ../shared real items when present).

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use pricer::app::{Action, PricerApp, Settings, Tab};
use pricer::dataset::Dataset;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn big_dataset(n: usize) -> Dataset {
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real/curated_items.jsonl");
    let base = if real.exists() {
        pricer::items_io::read_items(&real).expect("real items").0
    } else {
        pricer::dataset::load_demo(40_000, 7, &Default::default()).expect("demo").table
    };
    let items: Vec<_> = base.iter().map(|i| i.to_owned_item()).collect();
    let mut t = pricer::items::ItemTable::new();
    for k in 0..n {
        let it = &items[k % items.len()];
        let jitter = 1.0 + ((k / items.len()) as f64 * 0.013) % 0.2 - 0.1;
        t.push_parts(
            &it.title,
            &it.category,
            (it.price * jitter).clamp(0.5, 999.49),
            &it.details,
            &it.prompt,
            it.token_count,
        );
    }
    t.shrink_to_fit();
    Dataset::build("bench".into(), false, t, Default::default())
}

fn stats(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label}: n={} median {:.2} ms, p95 {:.2} ms, worst {:.2} ms (target: median <= 16 ms)",
        v.len(),
        ms(v[v.len() / 2]),
        ms(v[v.len() * 95 / 100]),
        ms(*v.last().unwrap())
    );
}

fn main() {
    let rss0 = rss_mb();
    let t0 = Instant::now();
    let data = Arc::new(big_dataset(2_800_000));
    println!(
        "dataset: {} items built with statistics, counts and density in {:.1}s",
        data.table.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut app = PricerApp::new(Settings::default(), Arc::new(|| {}), false);
    app.tabs.sampling.new_data(&data);
    app.data = Some(data.clone());
    let mut h = Harness::builder().with_size(egui::vec2(1440.0, 900.0)).build_ui_state(
        |ui, app: &mut PricerApp| {
            app.logic(&ui.ctx().clone());
            app.ui(ui);
        },
        app,
    );
    h.state_mut().act(Action::SetTab(Tab::Sampling));
    h.step();
    h.step();
    let mut frames = Vec::new();
    for k in 0..120 {
        let cap = 200.0 + (k % 60) as f64 * 40.0;
        h.get_by_role_and_label(Role::Slider, "cap per slot").set_value_accesskit(cap);
        let t = Instant::now();
        h.step();
        frames.push(t.elapsed());
    }
    stats("sampling tab, dragging the cap slider, 2.8M items", frames);
    let preview: Vec<Duration> =
        h.state().tabs.sampling.preview_secs.iter().map(|&s| Duration::from_secs_f64(s)).collect();
    stats("  of which the live preview", preview);
    for tab in [Tab::Charts, Tab::Dataset] {
        h.state_mut().act(Action::SetTab(tab));
        h.step();
        let mut frames = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            h.step();
            frames.push(t.elapsed());
        }
        stats(&format!("{tab:?} tab, idle frames, 2.8M items"), frames);
    }
    println!(
        "memory: resident {:.0} MB with 2.8M items loaded in the app ({:.0} MB before building; prompt text {:.0} MB)",
        rss_mb(),
        rss0,
        data.table.prompt_text_bytes() as f64 / 1e6
    );
}
