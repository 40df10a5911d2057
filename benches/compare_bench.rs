//! Frame times of the Compare tab with 12 pricers × 2,000 items while dragging the linked zoom
//! (each frame pans all twelve scatters), idle frames, the tessellation of a frame's shapes, and
//! the bootstrap (off the UI thread) — `cargo bench --bench compare_bench`.

use egui_kittest::Harness;
use pricer::app::compare_tab::{Command, PlotMode};
use pricer::app::{Action, PricerApp, Settings, Tab};
use pricer::evaluation::{Evaluation, FileRef, PricerSpec, score_item};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn unit(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn evals(pricers: usize, n: usize, dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let cats = ["Appliances", "Electronics", "Automotive", "Toys_and_Games", "Tools", "Office"];
    (0..pricers)
        .map(|p| {
            let noise = 0.1 + 0.12 * p as f64;
            let items = (0..n)
                .map(|i| {
                    let t = (5.0 * 180f64.powf(unit(7, i as u64)) * 100.0).round() / 100.0;
                    let g = t * (noise * (unit(p as u64 + 1, i as u64) * 2.0 - 1.0)).exp();
                    score_item(i, &format!("Item {i}"), cats[i % cats.len()], t, (g * 100.0).round() / 100.0)
                })
                .collect();
            let test = FileRef { path: "test.jsonl".into(), digest: "d".into(), items: n };
            let path = dir.join(format!("p{p}.json"));
            Evaluation::new(format!("pricer {p}"), PricerSpec::Constant, None, test, items).save(&path).unwrap();
            path
        })
        .collect()
}

fn stats(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label}: n={} median {:.2} ms, p95 {:.2} ms, worst {:.2} ms",
        v.len(),
        ms(v[v.len() / 2]),
        ms(v[v.len() * 95 / 100]),
        ms(*v.last().unwrap())
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let paths = evals(12, 2000, dir.path());
    let mut app = PricerApp::new(Settings::default(), Arc::new(|| {}), false);
    app.act(Action::SetTab(Tab::Compare));
    app.tabs.compare.queue(Command::AddFiles(paths));
    let mut h = Harness::builder().with_size(egui::vec2(1600.0, 1000.0)).build_ui_state(
        |ui, app: &mut PricerApp| {
            app.logic(&ui.ctx().clone());
            app.ui(ui);
        },
        app,
    );
    let t0 = Instant::now();
    while h.state().tabs.compare.stats.is_none() {
        h.step();
        std::thread::sleep(Duration::from_millis(5));
        assert!(t0.elapsed().as_secs() < 120, "the set did not load");
    }
    let s = h.state().tabs.compare.stats.clone().unwrap();
    println!(
        "bootstrap: {} resamples × {} items × 12 pricers in {:.3}s (the whole statistics job: {:.3}s, off the UI thread)",
        s.bootstrap.resamples,
        s.bootstrap.n,
        s.bootstrap.secs,
        h.state().tabs.compare.stats_secs
    );
    for mode in [PlotMode::Linear, PlotMode::LogLog] {
        h.state_mut().tabs.compare.mode = mode;
        for _ in 0..3 {
            h.step();
        }
        // Press inside the first scatter and drag: the linked axes pan all twelve plots.
        let start = egui::pos2(420.0, 140.0);
        h.event(egui::Event::PointerMoved(start));
        h.step();
        h.event(egui::Event::PointerButton {
            pos: start,
            button: egui::PointerButton::Primary,
            pressed: true,
            modifiers: egui::Modifiers::NONE,
        });
        h.step();
        let before = *h.state().tabs.compare.drawn_transforms[5].1.bounds();
        let (mut frames, mut tess) = (vec![], vec![]);
        for k in 0..150 {
            let dx = (k % 50) as f32 * 2.0 - 50.0;
            h.event(egui::Event::PointerMoved(start + egui::vec2(dx, dx * 0.5)));
            let t = Instant::now();
            h.step();
            frames.push(t.elapsed());
            let shapes = h.output().shapes.clone();
            let t = Instant::now();
            let prims = h.ctx.tessellate(shapes, 1.0);
            tess.push(t.elapsed());
            std::hint::black_box(prims);
        }
        h.event(egui::Event::PointerButton {
            pos: start,
            button: egui::PointerButton::Primary,
            pressed: false,
            modifiers: egui::Modifiers::NONE,
        });
        h.step();
        // The drag in the first plot moved the bounds of another (linked) plot.
        let after = *h.state().tabs.compare.drawn_transforms[5].1.bounds();
        assert_ne!(before.range_x(), after.range_x(), "the drag panned the linked plots");
        println!("  plot 6's x range: {:?} -> {:?}", before.range_x(), after.range_x());
        stats(
            &format!("compare tab, 12 pricers × 2,000 items, dragging the linked zoom ({mode:?}): UI"),
            frames.clone(),
        );
        stats("  tessellation of the frame", tess.clone());
        let both: Vec<Duration> = frames.iter().zip(&tess).map(|(a, b)| *a + *b).collect();
        stats("  UI + tessellation (target: median <= 16 ms)", both);
    }
    let mut idle = vec![];
    for _ in 0..30 {
        let t = Instant::now();
        h.step();
        idle.push(t.elapsed());
    }
    stats("compare tab, idle frames", idle);
}
