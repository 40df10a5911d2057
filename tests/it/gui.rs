//! The app, driven headlessly with egui_kittest: tabs, filters linked to the core's counts, the
//! live sampling preview, loading errors that keep the previous dataset.

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use pricer::app::{PricerApp, Settings, Tab};
use pricer::dataset::{Dataset, load_demo};
use pricer::jobs::JobCtx;
use std::sync::Arc;

fn demo() -> Arc<Dataset> {
    Arc::new(load_demo(3000, 42, &JobCtx::default()).unwrap())
}

fn app_with(data: Arc<Dataset>) -> PricerApp {
    let mut app = PricerApp::new(Settings::default(), Arc::new(|| {}), false);
    app.tabs.sampling.new_data(&data);
    app.data = Some(data);
    app
}

fn harness(app: PricerApp) -> Harness<'static, PricerApp> {
    Harness::builder().with_size(egui::vec2(1440.0, 900.0)).build_ui_state(
        |ui, app: &mut PricerApp| {
            app.logic(&ui.ctx().clone());
            app.ui(ui);
        },
        app,
    )
}

/// Steps until no job runs (bounded: a running job keeps repainting).
fn settle(h: &mut Harness<'static, PricerApp>) {
    for _ in 0..600 {
        h.step();
        if !h.state().is_busy() {
            h.step();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("job did not finish");
}

#[test]
fn inspector_shows_the_selected_item() {
    let mut h = harness(app_with(demo()));
    h.step();
    h.state_mut().tabs.dataset.selected = Some(1);
    h.step();
    h.step();
    let title = h.state().data.as_ref().unwrap().table.get(1).title.to_owned();
    h.get_by_label("training prompt");
    assert!(h.query_all_by_label_contains(&title).count() >= 1);
}

/// A dataset whose $10 slot is crowded (3000 Automotive + 3000 Electronics) so the cap bites.
fn crowded() -> Arc<Dataset> {
    let mut t = pricer::items::ItemTable::new();
    for (cat, price, n) in [
        ("Automotive", 10.0, 3000),
        ("Electronics", 10.2, 3000),
        ("Appliances", 55.0, 40),
        ("Toys_and_Games", 300.0, 500),
    ] {
        for i in 0..n {
            let prompt = format!(
                "How much does this cost to the nearest dollar?\n\n{cat} thing {i}\n\nPrice is ${:.0}.00",
                f64::round(price)
            );
            t.push_parts(&format!("{cat} thing {i}"), cat, price, "{}", &prompt, 170);
        }
    }
    Arc::new(Dataset::build("crowded".into(), false, t, Default::default()))
}

#[test]
fn tabs_switch_by_click_and_shortcut() {
    let mut h = harness(app_with(demo()));
    h.step();
    assert_eq!(h.state().tab(), Tab::Dataset);
    h.get_by_label("Charts").click();
    h.step();
    h.step();
    assert_eq!(h.state().tab(), Tab::Charts);
    assert!(h.query_all_by_label_contains("click a bar to filter the Dataset tab").count() >= 1);
    h.get_by_label("Sampling").click();
    h.step();
    h.step();
    assert_eq!(h.state().tab(), Tab::Sampling);
    h.get_by_label("Apply: draw the exact sample");
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Num1);
    h.step();
    h.step();
    assert_eq!(h.state().tab(), Tab::Dataset);
}

#[test]
fn moving_the_cap_changes_the_previewed_count_and_histogram() {
    let mut h = harness(app_with(crowded()));
    h.state_mut().act(pricer::app::Action::SetTab(Tab::Sampling));
    h.step();
    h.step();
    let (count_before, slot10_before) = {
        let p = &h.state().tabs.sampling.preview.as_ref().unwrap().2;
        (p.total, p.per_slot[10])
    };
    assert!((count_before - 1740.0).abs() < 1e-6, "{count_before}");
    assert!((slot10_before - 1200.0).abs() < 1e-6);
    assert!(h.query_all_by_label_contains("1,740").count() >= 1, "the count shown follows the preview");
    h.get_by_role_and_label(Role::Slider, "cap per slot").set_value_accesskit(300.0);
    h.step();
    h.step();
    assert_eq!(h.state().tabs.sampling.recipe.balance.cap_per_slot, 300);
    assert_eq!(
        h.state().tabs.sampling.preset,
        pricer::app::sampling_tab::Preset::Custom,
        "an edit makes the recipe custom"
    );
    let p = &h.state().tabs.sampling.preview.as_ref().unwrap().2;
    assert!((p.per_slot[10] - 300.0).abs() < 1e-6);
    assert!((p.total - 840.0).abs() < 1e-6);
    assert!(h.query_all_by_label_contains("840").count() >= 1);
    // A category weight of 0 takes the category out of the preview.
    h.get_by_role_and_label(Role::Slider, "Appliances").set_value_accesskit(0.0);
    h.step();
    h.step();
    let p = &h.state().tabs.sampling.preview.as_ref().unwrap().2;
    assert!((p.total - 800.0).abs() < 1e-6);
}

#[test]
fn category_filter_matches_the_core_count_and_clears() {
    let data = demo();
    let mut h = harness(app_with(data.clone()));
    h.step();
    let (name, n) = data.stats.categories[2].clone();
    let core = pricer::view::filtered_sorted(
        &data.table,
        &pricer::view::Filter { categories: vec![name.clone()], ..Default::default() },
        Default::default(),
        &pricer::jobs::CancelToken::new(),
    )
    .unwrap();
    assert_eq!(core.len() as u64, n);
    h.get_by_label_contains("Categories (all)").click();
    h.step();
    h.step();
    h.get_by_label_contains(&format!("{name} (")).click();
    h.step();
    h.step();
    assert_eq!(h.state().tabs.dataset.view.len() as u64, n);
    let shown = format!(
        "{} of {} items",
        pricer::app::widgets::thousands(n),
        pricer::app::widgets::thousands(data.table.len() as u64)
    );
    h.get_by_label(&shown);
    assert!(h.state().tabs.dataset.view.iter().all(|&i| data.table.get(i as usize).category == name));
    // The chart link does the same and switches to the Dataset tab; the chip clears it.
    h.state_mut().act(pricer::app::Action::SetTab(Tab::Charts));
    h.step();
    h.state_mut().act(pricer::app::Action::FilterTo(pricer::view::Filter {
        categories: vec![name.clone()],
        ..Default::default()
    }));
    h.step();
    h.step();
    assert_eq!(h.state().tab(), Tab::Dataset);
    assert_eq!(h.state().tabs.dataset.view.len() as u64, n);
    h.get_by_label_contains(&format!("category: {name}")).click();
    h.step();
    h.step();
    assert_eq!(h.state().tabs.dataset.view.len(), data.table.len());
}

#[test]
fn a_malformed_file_shows_an_error_and_keeps_the_previous_dataset() {
    let data = demo();
    let mut h = harness(app_with(data.clone()));
    h.step();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "{not json\nalso not json\n").unwrap();
    h.state_mut().act(pricer::app::Action::Load(vec![junk]));
    settle(&mut h);
    assert!(Arc::ptr_eq(h.state().data.as_ref().unwrap(), &data));
    let err = h.state().log.iter().find(|e| e.level == pricer::app::Level::Error).expect("an error in the log");
    assert!(err.text.contains("junk.jsonl") && err.text.contains("2 malformed"), "{}", err.text);
    assert!(h.state().log.shown);
    h.get_by_label_contains("The previous dataset is kept");
    assert!(
        h.query_all_by_label_contains("3,000 raw lines").count() >= 1
            || h.query_all_by_label_contains("synthetic demo").count() >= 1
    );
}

#[test]
fn loading_a_file_replaces_the_dataset_through_a_job() {
    let mut h = harness(app_with(demo()));
    h.step();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("meta_Appliances.jsonl");
    std::fs::write(&raw, pricer::demo::demo_bytes(400, 3)).unwrap();
    h.state_mut().act(pricer::app::Action::Load(vec![raw]));
    settle(&mut h);
    let data = h.state().data.clone().unwrap();
    assert_eq!(data.name, "meta_Appliances.jsonl");
    assert!(!data.synthetic);
    assert!(data.table.iter().all(|i| i.category == "Appliances"));
    assert_eq!(data.report.lines_read, 400);
    assert_eq!(h.state().tabs.dataset.view.len(), data.table.len());
}

#[test]
fn apply_and_export_run_as_jobs_and_match_the_cli() {
    // The GUI path: demo → curate → preview → apply → split → export.
    let data = demo();
    let mut h = harness(app_with(data.clone()));
    h.state_mut().act(pricer::app::Action::SetTab(Tab::Sampling));
    h.step();
    let mut recipe = h.state().tabs.sampling.recipe.clone();
    recipe.balance.cap_per_slot = 25; // make the cap bite on the small demo
    recipe.split = pricer::sampling::SplitParams { n_train: 600, n_test: 50, seed: 9 };
    h.state_mut().tabs.sampling.recipe = recipe.clone();
    h.step();
    let expected = h.state().tabs.sampling.preview.as_ref().unwrap().2.total;
    h.get_by_label("Apply: draw the exact sample").click();
    settle(&mut h);
    let applied = h.state().tabs.sampling.applied.clone().expect("sample drawn");
    assert!((applied.len() as f64 - expected).abs() / expected < 0.02, "preview {expected} vs drawn {}", applied.len());
    assert_eq!((applied.train.len(), applied.test.len()), (600, 50));

    let dir = tempfile::tempdir().unwrap();
    let gui_dir = dir.path().join("gui");
    h.state_mut()
        .tabs
        .sampling
        .queue(pricer::app::sampling_tab::Command::Export(pricer::export::ExportFormat::Jsonl, gui_dir.clone()));
    settle(&mut h);
    assert!(
        h.state().tabs.sampling.last_export.is_some(),
        "{:?}",
        h.state().log.iter().map(|e| &e.text).collect::<Vec<_>>()
    );

    // The CLI on the same items with the recipe the GUI saved writes the same bytes.
    let items = dir.path().join("items.jsonl");
    pricer::items_io::write_items(&data.table, &items).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricer"))
        .arg("sample")
        .arg(&items)
        .arg("--recipe")
        .arg(gui_dir.join("recipe.json"))
        .arg("--out-dir")
        .arg(dir.path().join("cli"))
        .args(["--format", "jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["train.jsonl", "test.jsonl"] {
        let a = std::fs::read(gui_dir.join(f)).unwrap();
        let b = std::fs::read(dir.path().join("cli").join(f)).unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, b, "{f} differs between GUI and CLI");
    }
    // And the exported rows are exactly the applied split.
    let train = std::fs::read_to_string(gui_dir.join("train.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(train.lines().next().unwrap()).unwrap();
    assert_eq!(first["text"], data.table.get(applied.train[0]).prompt);
}

#[test]
fn charts_link_a_range_to_the_dataset_filter() {
    let data = demo();
    let mut h = harness(app_with(data.clone()));
    h.state_mut().act(pricer::app::Action::SetTab(Tab::Charts));
    h.step();
    h.step();
    h.get_by_label("Filter the Dataset tab to the visible range").click();
    h.step();
    h.step();
    h.step();
    assert_eq!(h.state().tab(), Tab::Dataset);
    let (lo, hi) = h.state().filter.price_usd.expect("a price range");
    assert!(lo <= data.stats.price.min && hi >= data.stats.price.max, "{lo}..{hi}");
    assert_eq!(h.state().tabs.dataset.view.len(), data.table.len());
    assert!(h.query_all_by_label_contains("price $").count() >= 1, "a chip shows the range");
}

#[test]
fn curated_items_files_load_as_they_are() {
    let data = demo();
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("items.parquet");
    pricer::items_io::write_items(&data.table, &items).unwrap();
    let mut h = harness(app_with(demo()));
    h.step();
    h.state_mut().act(pricer::app::Action::Load(vec![items]));
    settle(&mut h);
    let loaded = h.state().data.clone().unwrap();
    assert_eq!(loaded.name, "items.parquet");
    assert_eq!(loaded.table.len(), data.table.len());
    assert_eq!(loaded.report.kept as usize, data.table.len());
    assert_eq!(loaded.table.get(7).prompt, data.table.get(7).prompt);
}

/// Steps the harness until `done` holds (bounded), sleeping between frames.
fn wait_for(h: &mut Harness<'static, PricerApp>, what: &str, secs: u64, done: impl Fn(&PricerApp) -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        h.step();
        if done(h.state()) {
            h.step();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log: Vec<&str> = h.state().log.entries.iter().map(|e| e.text.as_str()).collect();
    panic!("timed out waiting for {what}; the app's log:\n{}", log.join("\n"));
}

use pricer::finetune::config::SeqLen;
use pricer::finetune::run::BestBy;

fn train_rows(app: &PricerApp) -> Vec<usize> {
    let ft = &app.tabs.finetune;
    ft.runs.first().map_or(vec![], |r| r.metrics.iter().filter(|m| m.train_loss.is_some()).map(|m| m.step).collect())
}

#[test]
fn finetune_tab_launches_stops_resumes_and_evaluates_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let model = crate::finetune::tiny_model_dir(tmp.path());
    let Some(train) = crate::finetune::real_items(tmp.path(), "train.jsonl", 0, 12) else { return };
    let Some(test) = crate::finetune::real_items(tmp.path(), "test.jsonl", 50, 3) else { return };
    let mut app = PricerApp::new(Settings::default(), Arc::new(|| {}), false);
    app.settings.tab = Tab::Finetune;
    let ft = &mut app.tabs.finetune;
    ft.trainer = Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_pricer")));
    ft.form.runs_dir = tmp.path().join("runs");
    ft.form.model = model.display().to_string();
    ft.form.lora.r = 4;
    ft.form.batch_size = 2;
    ft.form.max_seq_len = SeqLen::Tokens(96);
    ft.form.max_steps = Some(100_000);
    ft.form.val_items = 2;
    // Validation (loss and the 2 validation items priced) and a checkpoint every 2 steps.
    ft.form.eval_every = 2;
    ft.form.save_every = 2;
    let mut h = harness(app);
    h.step();
    // Without training data the form says so and Launch is disabled.
    h.get_by_label_contains("train: choose a file of curated items");
    assert!(h.get_by_label("Launch training").accesskit_node().is_disabled());
    assert!(
        h.query_by_label_contains("LoRA 0.00M trainable").is_some() || h.query_by_label_contains("trainable").is_some()
    );
    h.state_mut().tabs.finetune.form.train = train.clone();
    h.step();
    // Before launch the form counts the prompts' tokens and says what the length shortens.
    wait_for(&mut h, "the token count", 60, |a| {
        a.tabs.finetune.lengths.as_ref().is_some_and(|l| l.train == train && l.result.is_some())
    });
    let tok = pricer::finetune::model::peek_tokenizer(&model.display().to_string()).unwrap();
    let (items, _) = pricer::items_io::read_items(&train).unwrap();
    let prompts: Vec<&str> = (0..items.len()).map(|i| items.get(i).prompt).collect();
    let expected = pricer::finetune::train::length_report(&tok, &prompts, SeqLen::Tokens(96)).unwrap();
    assert!(expected.shortened > 0, "real prompts are longer than 96 tokens");
    h.get_by_label_contains(&format!("{} shortened", expected.shortened));
    h.get_by_label_contains(&format!("longest prompt {} of 12 prompts", expected.longest));
    h.state_mut().tabs.finetune.form.max_seq_len = SeqLen::Auto;
    h.step();
    h.get_by_label_contains(&format!(
        "{} tokens; longest prompt {} of 12 prompts: none shortened",
        expected.longest, expected.longest
    ));
    h.state_mut().tabs.finetune.form.max_seq_len = SeqLen::Tokens(96);
    h.step();
    // Only the top layer of the tiny model's two (the form's "layers: only the top N").
    h.get_by_label("only the top").click();
    h.step();
    assert_eq!(h.state().tabs.finetune.form.lora.layers_to_transform, vec![1]);
    h.get_by_label("layers 1–1");
    h.get_by_label("Launch training").click();
    wait_for(&mut h, "the first steps", 120, |a| train_rows(a).len() >= 3);
    assert!(h.state().tabs.finetune.is_training());
    h.get_by_label("Stop run").click();
    wait_for(&mut h, "the trainer to stop", 120, |a| !a.tabs.finetune.is_training());
    let run = &h.state().tabs.finetune.runs[0];
    assert_eq!(run.status.as_ref().unwrap().state, pricer::finetune::RunState::Stopped);
    let stopped_at = run.status.as_ref().unwrap().step;
    let run_cfg = std::fs::read_to_string(run.dir.join("config.toml")).unwrap();
    assert!(run_cfg.contains("layers_to_transform = [1]"), "{run_cfg}");
    assert_eq!(run.checkpoints.last().unwrap().0, stopped_at, "stop checkpoints the last step");
    // The validation items were priced at every evaluation; the tab plots them and names the best
    // checkpoint, and Evaluate defaults to it.
    let priced: Vec<&pricer::finetune::run::MetricRow> = run.metrics.iter().filter(|m| m.val_error.is_some()).collect();
    assert!(!priced.is_empty() && priced.iter().all(|m| m.step % 2 == 0 && m.val_hits.is_some()), "{priced:?}");
    let best = pricer::finetune::run::best_checkpoint(&run.dir, BestBy::Error).unwrap();
    h.step();
    h.get_by_label_contains("Validation prices");
    h.get_by_label_contains(&format!("best checkpoint-{}", best.0));
    // The Evaluate picker (labelled "checkpoint") shows the best one as its current choice.
    let picked = format!("checkpoint-{} (best error)", best.0);
    let wanted = picked.clone();
    let shown = h
        .query_by(move |n: &egui_kittest::kittest::AccessKitNode<'_>| {
            [n.label(), n.value()].into_iter().flatten().any(|t| t.contains(wanted.as_str()))
        })
        .is_some();
    assert!(shown, "the Evaluate picker shows {picked}");
    // Resume continues the same curve.
    h.get_by_label("Resume").click();
    wait_for(&mut h, "steps after resuming", 120, |a| train_rows(a).len() >= stopped_at + 3);
    h.get_by_label("Stop run").click();
    wait_for(&mut h, "the second stop", 120, |a| !a.tabs.finetune.is_training());
    let steps = train_rows(h.state());
    assert_eq!(steps, (1..=steps.len()).collect::<Vec<_>>(), "each step once, in order");
    // Evaluate the last checkpoint with the Tester.
    h.state_mut().tabs.finetune.test_file = test.display().to_string();
    h.state_mut().tabs.finetune.eval_n = 3;
    // Resuming put the run's own configuration in the form, which counts its tokens again (a job
    // of this tab, during which Evaluate waits).
    wait_for(&mut h, "the tab's jobs", 60, |a| a.jobs.is_empty());
    // The validation price plot pushed the Evaluate row below the fold: a taller window shows it.
    h.set_size(egui::vec2(1280.0, 2400.0));
    h.step();
    h.step();
    h.get_by_label("Evaluate").click();
    h.step();
    settle(&mut h);
    wait_for(&mut h, "the evaluation", 180, |a| a.tabs.finetune.runs[0].evals.len() == 1);
    let line = &h.state().tabs.finetune.runs[0].evals[0].line;
    assert!(line.contains("Error=$") && line.contains("Hits="), "{line}");
    h.get_by_label_contains("Error=$");
}

#[test]
fn export_after_apply_writes_the_applied_rows_without_drawing_again() {
    let data = demo();
    let mut h = harness(app_with(data.clone()));
    h.state_mut().act(pricer::app::Action::SetTab(Tab::Sampling));
    h.step();
    h.state_mut().tabs.sampling.recipe.balance.cap_per_slot = 25;
    h.state_mut().tabs.sampling.recipe.split = pricer::sampling::SplitParams { n_train: 300, n_test: 40, seed: 9 };
    h.step();
    h.get_by_label("Apply: draw the exact sample").click();
    settle(&mut h);
    let applied = h.state().tabs.sampling.applied.clone().expect("sample drawn");
    // Other seeds after Apply: a new draw would give other rows in another order.
    h.state_mut().tabs.sampling.recipe.split.seed = 10;
    h.state_mut().tabs.sampling.recipe.balance.seed = 11;
    let redrawn = pricer::sampling::Sample::draw(&data.table, &h.state().tabs.sampling.recipe);
    assert_ne!(redrawn.train, applied.train, "the new seeds draw other rows");
    let dir = tempfile::tempdir().unwrap();
    h.state_mut()
        .tabs
        .sampling
        .queue(pricer::app::sampling_tab::Command::Export(pricer::export::ExportFormat::Jsonl, dir.path().into()));
    settle(&mut h);
    assert!(h.state().tabs.sampling.last_export.is_some());
    let written: Vec<String> = crate::common::read_jsonl(&dir.path().join("train.jsonl"))
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = applied.train.iter().map(|&i| data.table.get(i).prompt.to_owned()).collect();
    assert_eq!(written, expected, "Export writes the applied train rows, in their order");
    let saved: pricer::sampling::SavedRecipe =
        serde_json::from_slice(&std::fs::read(dir.path().join("recipe.json")).unwrap()).unwrap();
    assert_eq!(saved.recipe, applied.recipe, "recipe.json names the recipe the rows were drawn with");
    assert!(Arc::ptr_eq(h.state().tabs.sampling.applied.as_ref().unwrap(), &applied));
}

/// A job that runs until it is cancelled.
fn until_cancelled(ctx: &pricer::jobs::JobCtx) -> anyhow::Result<()> {
    loop {
        ctx.check()?;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn jobs_of_two_tabs_run_at_once_and_each_cancels_alone() {
    use pricer::app::{Level, Owner};
    let mut h = harness(app_with(demo()));
    h.step();
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
    let a = h.state_mut().jobs.start(Owner::Tab(Tab::Sampling), "sampling job", wake.clone(), until_cancelled);
    let b = h.state_mut().jobs.start(Owner::Tab(Tab::Finetune), "fine-tune job", wake, until_cancelled);
    assert_ne!(a, b);
    h.step();
    h.step();
    // Both in the status bar, each with its own Cancel.
    assert!(h.query_all_by_label("sampling job").count() >= 1);
    assert!(h.query_all_by_label("fine-tune job").count() >= 1);
    let cancels: Vec<_> = h.query_all_by_label("Cancel").collect();
    assert_eq!(cancels.len(), 2, "one Cancel per running job");
    cancels[0].click();
    for _ in 0..200 {
        h.step();
        if h.state().jobs.running.len() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(h.state().jobs.running.len(), 1, "only the cancelled job ended");
    assert_eq!(h.state().jobs.running[0].id, b);
    assert!(h.state().jobs.busy(Owner::Tab(Tab::Finetune)) && !h.state().jobs.busy(Owner::Tab(Tab::Sampling)));
    assert!(
        h.state().log.iter().any(|e| e.level == Level::Info && e.text == "sampling job: cancelled; nothing changed")
    );
    h.state_mut().act(pricer::app::Action::Cancel(b));
    settle(&mut h);
    assert!(h.state().jobs.is_empty());
    assert!(h.state().log.iter().any(|e| e.text == "fine-tune job: cancelled; nothing changed"));
}

#[test]
fn a_shop_table_opens_the_mapping_dialog_whose_preview_follows_the_mapping() {
    let Some(raw) = crate::common::real_data("raw_meta_rows_hf_form.jsonl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("shop.csv");
    // The real rows with a shop's column names (the guess finds them all); characters beyond the
    // test font's (the harness panics on a missing glyph) left out.
    let latin = |s: &str| s.chars().filter(|&c| (c as u32) < 0x2000).collect::<String>();
    let mut w = csv::Writer::from_path(&csv).unwrap();
    w.write_record(["name", "desc", "features", "details", "price", "category"]).unwrap();
    for v in crate::common::read_jsonl(&raw) {
        let join =
            |k: &str| v[k].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect::<Vec<_>>().join("\n");
        let price = v["price"].as_str().unwrap();
        w.write_record([
            latin(v["title"].as_str().unwrap()),
            latin(&join("description")),
            latin(&join("features")),
            v["details"].as_str().unwrap().to_owned(),
            (if price == "None" { "" } else { price }).to_owned(),
            v["main_category"].as_str().unwrap().to_owned(),
        ])
        .unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let kept = pricer::dataset::open_paths(std::slice::from_ref(&csv), &JobCtx::default()).unwrap().table.len();
    let mut h = Harness::builder().with_size(egui::vec2(1440.0, 1000.0)).build_ui_state(
        |ui, app: &mut PricerApp| {
            app.logic(&ui.ctx().clone());
            app.ui(ui);
        },
        app_with(demo()),
    );
    h.step();
    h.state_mut().act(pricer::app::Action::Load(vec![csv.clone()]));
    wait_for(&mut h, "the mapping dialog", 60, |app| app.mapping_dialog.is_some() && !app.is_busy());
    // A new window takes a few frames to settle its size (and, anchored, its place) before clicks land.
    for _ in 0..4 {
        h.step();
    }
    h.get_by_label_contains("Map columns — shop.csv");
    h.get_by_label(&format!("Preview: {kept} of the first 7 rows kept"));
    h.get_by_label_contains("Musical_Instruments · $210.46");
    // Another separator reads the file again (a job): one column, records it cannot read; back again.
    h.get_by_label(";").click();
    wait_for(&mut h, "the file read with `;`", 30, |app| {
        !app.is_busy() && app.mapping_dialog.as_ref().is_some_and(|d| d.head.schema.columns.len() == 1)
    });
    for _ in 0..4 {
        h.step();
    }
    h.get_by_label_contains("of these records could not be read");
    h.get_by_label(",").click();
    wait_for(&mut h, "the file read with `,`", 30, |app| {
        !app.is_busy() && app.mapping_dialog.as_ref().is_some_and(|d| d.head.schema.columns.len() == 6)
    });
    for _ in 0..4 {
        h.step();
    }
    h.get_by_label_contains("Musical_Instruments · $210.46");
    // Category from one name instead of the column: the preview follows.
    h.get_by_label("one name for the file").click();
    h.step();
    h.step();
    assert!(h.query_by_label_contains("Musical_Instruments · $210.46").is_none());
    h.get_by_label_contains("shop · $210.46");
    // Without the price there is nothing to curate: the dialog says why.
    let dialog = h.state_mut().mapping_dialog.as_mut().unwrap();
    let price = dialog.mapping.price.take();
    h.step();
    h.get_by_label_contains("no column is mapped to the price");
    assert!(h.get_by_label("Curate with this mapping").accesskit_node().is_disabled());
    h.state_mut().mapping_dialog.as_mut().unwrap().mapping.price = price;
    // One frame to enable the button, one for the tree the click finds it in.
    h.step();
    h.step();
    h.get_by_label("Curate with this mapping").click();

    wait_for(&mut h, "the curated table", 60, |app| {
        app.mapping_dialog.is_none() && !app.is_busy() && app.data.as_ref().is_some_and(|d| d.name == "shop.csv")
    });
    let data = h.state().data.clone().unwrap();
    assert_eq!(data.table.len(), kept);
    assert!(data.table.iter().all(|i| i.category == "shop"));
    assert_eq!(h.state().settings.table_mappings.entries.len(), 1);
    // The same columns again: the saved mapping is used without asking.
    h.state_mut().act(pricer::app::Action::Load(vec![csv]));
    h.step();
    assert!(h.state().mapping_dialog.is_none());
    wait_for(&mut h, "the reload", 60, |app| !app.is_busy() && app.mapping_dialog.is_none());
    assert!(h.state().log.entries.iter().any(|e| e.text.contains("with the mapping saved for its columns")));
    h.get_by_label("Map columns…");
}

#[test]
fn an_imported_trainer_run_shows_in_the_runs_list_with_its_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let mut app = PricerApp::new(Settings::default(), Arc::new(|| {}), false);
    app.settings.tab = Tab::Finetune;
    app.tabs.finetune.form.runs_dir = tmp.path().join("runs");
    let mut h = harness(app);
    h.step();
    h.get_by_label("Import run…");
    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_trainer_run/output");
    h.state_mut().tabs.finetune.queue(pricer::app::finetune_tab::Command::Import(src));
    h.step();
    settle(&mut h);
    wait_for(&mut h, "the imported run", 30, |a| a.tabs.finetune.runs.len() == 1);
    let ft = &h.state().tabs.finetune;
    let run = &ft.runs[0];
    assert_eq!(run.name, "imported-output");
    assert_eq!(ft.selected, Some(0));
    assert!(ft.shown.contains(&run.dir));
    assert_eq!(run.metrics.iter().filter(|m| m.train_loss.is_some()).count(), 8);
    h.get_by_label("imported (finished)");
    let log: Vec<&str> = h.state().log.entries.iter().map(|e| e.text.as_str()).collect();
    assert!(log.iter().any(|l| l.contains("imported") && l.contains("checkpoints [4, 8]")), "{log:?}");
    // No Resume for it.
    assert!(h.query_by_label("Resume").is_none());
}

/// *Launch on host* against an sshd on loopback: the run appears in the runs list and follows
/// the remote trainer to its end ("finished on HOST"), *Pull checkpoints* brings them here; a
/// remote run whose host does not answer shows "unreachable since …" and Stop says why it failed.
#[test]
fn a_run_launched_on_a_host_is_followed_in_the_runs_list() {
    use pricer::finetune::run::{self, RunState, RunStatus, files};
    let tmp = tempfile::tempdir().unwrap();
    let Some((host, _sshd, _)) = crate::remote::loopback_host(tmp.path()) else { return };
    let model = crate::finetune::tiny_model_dir(tmp.path());
    let Some(train) = crate::finetune::real_items(tmp.path(), "train.jsonl", 0, 16) else { return };
    let mut cfg = crate::finetune::tiny_run_cfg(tmp.path(), &model, &train, "from-the-tab");
    cfg.runs_dir = tmp.path().join("runs");
    cfg.val_price_items = 0;
    let mut app = PricerApp::new(Settings::default(), Arc::new(|| {}), false);
    app.settings.tab = Tab::Finetune;
    app.tabs.finetune.form = cfg.clone();
    app.tabs.finetune.host = host.clone();
    let mut h = harness(app);
    h.step();
    // The form's section (below the fold of this window: the command is queued as its button does).
    h.get_by_label("Launch on host");
    h.state_mut().tabs.finetune.queue(pricer::app::finetune_tab::Command::LaunchRemote);
    h.step();
    wait_for(&mut h, "the remote run to finish here", 120, |a| {
        a.tabs.finetune.runs.first().is_some_and(|r| r.state() == RunState::Finished)
    });
    h.get_by_label(&format!("finished on {}", host.destination));
    assert_eq!(train_rows(h.state()), (1..=6).collect::<Vec<_>>());
    let log: Vec<String> = h.state().log.entries.iter().map(|e| e.text.clone()).collect();
    assert!(log.iter().any(|l| l.starts_with("launched from-the-tab on")), "{log:?}");
    h.get_by_label("Pull checkpoints").click();
    wait_for(&mut h, "the checkpoints", 60, |a| a.tabs.finetune.runs.first().is_some_and(|r| r.checkpoints.len() == 2));
    // The host is kept in the settings' host list.
    let mut saved = pricer::app::settings::FinetuneSettings::default();
    h.state().tabs.finetune.persist(&mut saved);
    assert_eq!(saved.hosts.first().map(|h| h.destination.clone()), Some(host.destination.clone()));
    // Restored: the last used host in the form, the list kept whole.
    let other = pricer::remote::Host { destination: "gpu-box".into(), ..Default::default() };
    saved.hosts.push(other.clone());
    let mut tab = pricer::app::finetune_tab::FinetuneTab::default();
    tab.restore(&saved);
    assert_eq!(tab.host.destination, host.destination);
    let mut again = pricer::app::settings::FinetuneSettings::default();
    tab.persist(&mut again);
    let kept: Vec<&str> = again.hosts.iter().map(|h| h.destination.as_str()).collect();
    assert_eq!(kept, [host.destination.as_str(), other.destination.as_str()]);

    // A remote run whose host does not answer.
    let ghost = cfg.runs_dir.join("ghost");
    std::fs::create_dir_all(&ghost).unwrap();
    std::fs::write(ghost.join(files::CONFIG), cfg.to_toml()).unwrap();
    run::write_status(&ghost, &RunStatus { state: RunState::Running, pid: 1, total_steps: 6, ..Default::default() })
        .unwrap();
    let mut away = host.clone();
    let away_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    away.port = Some(away_port);
    let mirror =
        pricer::remote::RemoteRun { host: away, name: "ghost".into(), config: "ghost.toml".into(), pulled: [0, 0] };
    std::fs::write(ghost.join(files::REMOTE), serde_json::to_string(&mirror).unwrap()).unwrap();
    h.state_mut().tabs.finetune.queue(pricer::app::finetune_tab::Command::Rescan);
    wait_for(&mut h, "the unreachable host", 60, |a| {
        a.tabs.finetune.runs.len() == 2 && a.log.entries.iter().any(|e| e.text.contains("unreachable"))
    });
    assert!(h.query_all_by_label_contains("unreachable since").count() >= 1);
    // Stop goes there, and says why it could not (ssh's error, prefixed by the host).
    h.get_by_label("Stop");
    h.state_mut().tabs.finetune.queue(pricer::app::finetune_tab::Command::Stop(ghost.clone()));
    let said = format!("{}: ", host.name);
    wait_for(&mut h, "the failed stop", 60, |a| a.log.entries.iter().any(|e| e.text.starts_with(&said)));
    assert!(!ghost.join(files::STOP).exists(), "not a local stop");
    // The host answers again: the next pull re-attaches by itself.
    let _back = crate::remote::start_sshd(tmp.path(), away_port);
    wait_for(&mut h, "the host back", 60, |a| a.log.entries.iter().any(|e| e.text.contains("reachable again after")));
    assert_eq!(h.query_all_by_label_contains("unreachable since").count(), 0);
    h.get_by_label(&format!("running on {}", host.name));
}
