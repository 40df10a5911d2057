//! The Compare tab, driven headlessly with egui_kittest: adding pricers (files and the *Add
//! pricer* job), linked selection, rectangle selection, sorting, the numbers of `pricer compare`,
//! flagged test files, the quiz.

use crate::compare::{synthetic_eval, truths};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use pricer::app::compare_tab::{Command, MetricColumn, View};
use pricer::app::{Action, PricerApp, Settings, Tab};
use pricer::evaluation::PricerSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn harness() -> Harness<'static, PricerApp> {
    let mut app = PricerApp::new(Settings::default(), Arc::new(|| {}), false);
    app.act(Action::SetTab(Tab::Compare));
    Harness::builder().with_size(egui::vec2(1600.0, 1000.0)).build_ui_state(
        |ui, app: &mut PricerApp| {
            app.logic(&ui.ctx().clone());
            app.ui(ui);
        },
        app,
    )
}

/// Steps until no job runs (bounded).
fn settle(h: &mut Harness<'static, PricerApp>) {
    for _ in 0..3000 {
        h.step();
        if !h.state().is_busy() {
            h.step();
            h.step();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("job did not finish");
}

/// Three evaluations of the same 300 items, saved in `dir`.
fn three(dir: &Path) -> Vec<PathBuf> {
    let items = truths(300);
    [("sharp", 0.15, 1), ("middling", 0.6, 2), ("blunt", 1.4, 3)]
        .iter()
        .map(|(name, noise, seed)| {
            let p = dir.join(format!("{name}.json"));
            synthetic_eval(name, "d1", &items, *noise, *seed).save(&p).unwrap();
            p
        })
        .collect()
}

fn add_files(h: &mut Harness<'static, PricerApp>, paths: Vec<PathBuf>) {
    h.state_mut().tabs.compare.queue(Command::AddFiles(paths));
    settle(h);
}

#[test]
fn adding_a_pricer_adds_a_scatter_and_a_table_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = pricer::dataset::load_demo(3000, 42, &Default::default()).unwrap();
    let n = data.table.len();
    let train = dir.path().join("train.jsonl");
    let test = dir.path().join("test.jsonl");
    pricer::items_io::write_items(&data.table.select(&(0..n - 200).collect::<Vec<_>>()), &train).unwrap();
    pricer::items_io::write_items(&data.table.select(&(n - 200..n).collect::<Vec<_>>()), &test).unwrap();
    let mut h = harness();
    h.state_mut().tabs.compare.folder = dir.path().join("evals").display().to_string();
    h.step();
    h.get_by_label_contains("No pricers yet");
    // The first through the command the form sends, the second through the form itself.
    h.state_mut().tabs.compare.queue(Command::AddPricer {
        spec: PricerSpec::Constant,
        name: None,
        train: Some(train.clone()),
        test: test.clone(),
        start: 0,
        size: 150,
    });
    settle(&mut h);
    assert_eq!(h.state().tabs.compare.entries.len(), 1);
    assert_eq!(h.state().tabs.compare.drawn_highlights.len(), 1, "one scatter");
    let first = h.state().tabs.compare.entries[0].eval.line.clone();
    h.get_by_label(&first); // the scatter's title is its report line
    h.get_by_label("constant"); // its metrics row
    h.get_by_label("Add pricer…").click();
    h.step();
    h.step();
    for (field, path) in [("train", &train), ("test", &test)] {
        let node = h.get_by_role_and_label(Role::TextInput, field);
        node.click();
        h.step();
        h.get_by_role_and_label(Role::TextInput, field).type_text(&path.display().to_string());
        h.step();
    }
    h.state_mut().tabs.compare.form.size = 150;
    h.step();
    h.get_by_label("Fit and evaluate").click();
    settle(&mut h);
    let tab = &h.state().tabs.compare;
    assert_eq!(tab.entries.len(), 2);
    assert_eq!(tab.entries[1].eval.spec.kind(), "features-lr", "the form's default kind");
    assert_eq!(tab.drawn_highlights.len(), 2, "a second scatter");
    assert!(tab.entries[1].path.as_ref().unwrap().is_file(), "the evaluation is saved in the folder");
    let second = tab.entries[1].eval.line.clone();
    h.get_by_label(&first);
    h.get_by_label(&second);
    h.get_by_label("features-lr"); // its metrics row
    assert_eq!(h.state().tabs.compare.entries[1].eval.metrics.n, 150);
    h.get_by_label_contains("2 pricers on 150 shared items");
}

#[test]
fn selecting_an_item_highlights_it_in_every_scatter_and_fills_the_side_panel() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness();
    add_files(&mut h, three(dir.path()));
    assert_eq!(h.state().tabs.compare.drawn_highlights, vec![None; 3]);
    // What a click on a point sends.
    h.state_mut().tabs.compare.queue(Command::SelectItem(Some(7)));
    h.step();
    h.step();
    assert_eq!(h.state().tabs.compare.drawn_highlights, vec![Some(7); 3]);
    let c = h.state().tabs.compare.comparison.clone().unwrap();
    let item = &c.items()[7];
    h.get_by_label(&item.title);
    assert!(h.query_all_by_label(&format!("${:.2}", item.truth)).count() >= 1);
    for e in &c.evals {
        let x = &e.items[7];
        assert!(h.query_all_by_label(&format!("${:.2} {}", x.error, x.colour.name())).count() >= 1, "{}", e.name);
        assert!(h.query_all_by_label(&format!("${:.2}", x.guess)).count() >= 1, "{}", e.name);
    }
    // Hovering shows an item too (the pointer over item 9's point in the first scatter), but a
    // click wins.
    let (p, t) = h.state().tabs.compare.drawn_transforms[0];
    let pos = t.position_from_point(&egui_plot::PlotPoint::new(c.evals[p].items[9].truth, c.evals[p].items[9].guess));
    h.hover_at(pos);
    h.step();
    h.step();
    assert_eq!(h.state().tabs.compare.drawn_highlights, vec![Some(7); 3]);
    h.state_mut().tabs.compare.queue(Command::SelectItem(None));
    h.step();
    h.step();
    let shown = h.state().tabs.compare.drawn_highlights.clone();
    let k = shown[0].expect("the hovered item is highlighted");
    assert_eq!(shown, vec![Some(k); 3]);
    let at = |k: usize| {
        let i = &c.evals[p].items[k];
        t.position_from_point(&egui_plot::PlotPoint::new(i.truth, i.guess)).distance(pos)
    };
    assert!(at(k) <= at(9) + 1e-3, "the nearest point to the pointer: item {k}");
    h.get_by_label(&c.items()[k].title);
}

#[test]
fn a_rectangle_selection_filters_the_item_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness();
    add_files(&mut h, three(dir.path()));
    h.state_mut().tabs.compare.queue(Command::SelectRect { plot: 1, x: [20.0, 150.0], y: [150.0, 10.0] });
    h.step();
    h.step();
    let c = h.state().tabs.compare.comparison.clone().unwrap();
    let expected: Vec<usize> = (0..c.shared)
        .filter(|&k| {
            let i = &c.evals[1].items[k];
            (20.0..=150.0).contains(&i.truth) && (10.0..=150.0).contains(&i.guess)
        })
        .collect();
    assert!(expected.len() > 10 && expected.len() < c.shared, "{}", expected.len());
    assert_eq!(h.state().tabs.compare.selection.as_ref().unwrap(), &expected);
    h.state_mut().tabs.compare.view = View::Items;
    h.step();
    h.step();
    assert_eq!(*h.state().tabs.compare.rows, expected);
    h.get_by_label(&format!("{} of {} items", expected.len(), c.shared));
    // The selection is drawn in every scatter and the filter clears with it.
    h.get_by_label_contains(&format!("{} selected in the scatters", expected.len())).click();
    h.step();
    h.step();
    assert_eq!(h.state().tabs.compare.rows.len(), c.shared);
    // Export writes the rows shown.
    let csv = dir.path().join("items.csv");
    h.state_mut().tabs.compare.queue(Command::SelectRect { plot: 0, x: [0.0, 60.0], y: [0.0, 60.0] });
    h.step();
    h.step();
    let n = h.state().tabs.compare.rows.len();
    h.state_mut().tabs.compare.queue(Command::ExportItems(csv.clone()));
    settle(&mut h);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), n + 1);
    assert!(text.lines().next().unwrap().contains("sharp guess,sharp error,middling guess"));
}

#[test]
fn sorting_by_a_metric_orders_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness();
    add_files(&mut h, three(dir.path()));
    let c = h.state().tabs.compare.comparison.clone().unwrap();
    let by_error = h.state().tabs.compare.metric_order_now();
    assert!(by_error.windows(2).all(|w| c.evals[w[0]].metrics.error <= c.evals[w[1]].metrics.error));
    assert_eq!(by_error, vec![0, 1, 2]);
    h.get_by_label("Hits").click();
    h.step();
    h.step();
    assert_eq!(h.state().tabs.compare.metric_sort, (MetricColumn::Hits, false));
    let o = h.state().tabs.compare.metric_order_now();
    assert!(o.windows(2).all(|w| c.evals[w[0]].metrics.hits_percent <= c.evals[w[1]].metrics.hits_percent));
    assert_eq!(o, vec![2, 1, 0], "fewest hits first");
    h.get_by_label("Hits (asc)").click();
    h.step();
    h.step();
    assert_eq!(h.state().tabs.compare.metric_order_now(), vec![0, 1, 2], "again: reversed");
    // The rows are drawn in that order: the first name cell is above the second.
    let y = |h: &Harness<'static, PricerApp>, name: &str| {
        h.query_all_by_label(name).map(|n| n.rect().min.y).fold(f32::MAX, f32::min)
    };
    assert!(y(&h, "sharp") < y(&h, "blunt"));
}

#[test]
fn the_metrics_shown_equal_pricer_compare_on_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = three(dir.path());
    // A fourth on partly other items, so that the alignment has work to do.
    let mut other = truths(300);
    for it in other.iter_mut().skip(250) {
        it.0.push_str(" (other)");
    }
    let p = dir.path().join("other.json");
    synthetic_eval("other", "d2", &other, 0.3, 4).save(&p).unwrap();
    paths.push(p);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricer")).arg("compare").args(&paths).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut h = harness();
    add_files(&mut h, paths);
    let c = h.state().tabs.compare.comparison.clone().unwrap();
    assert_eq!(c.shared, 250);
    let mut rows = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (name, error, rmsle, hits) = (f[0], f[1], f[2], f[3]);
        let e = c.evals.iter().find(|e| e.name == name).unwrap();
        assert_eq!(format!("{:.2}", e.metrics.error), error);
        assert_eq!(format!("{:.2}", e.metrics.rmsle), rmsle);
        assert_eq!(format!("{:.1}%", e.metrics.hits_percent), hits);
        // The same numbers in the table: Error (with its interval) and Hits cells.
        assert!(h.query_all_by_label_contains(&format!("${error} [")).count() >= 1, "{name} error {error}");
        assert!(h.query_all_by_label_contains(&format!("{hits} [")).count() >= 1, "{name} hits {hits}");
        rows += 1;
    }
    assert_eq!(rows, 4);
}

#[test]
fn an_evaluation_on_other_test_items_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = three(dir.path());
    let mut other = truths(300);
    for it in other.iter_mut().skip(200) {
        it.0.push_str(" (other)");
    }
    let p = dir.path().join("other.json");
    synthetic_eval("other", "d2", &other, 0.3, 4).save(&p).unwrap();
    paths.push(p);
    let mut h = harness();
    add_files(&mut h, paths);
    assert_eq!(h.state().tabs.compare.comparison.as_ref().unwrap().other_test, vec![false, false, false, true]);
    h.get_by_label_contains("! other test items");
    h.get_by_label("200 shared items compared");
    h.get_by_label_contains("4 pricers on 200 shared items (the pricers priced different test files)");
    // Removing it restores the full set.
    h.state_mut().tabs.compare.queue(Command::Remove(3));
    h.step();
    h.step();
    h.get_by_label("300 shared items compared");
    assert!(h.query_by_label_contains("! other test items").is_none());
}

#[test]
fn rename_reorder_and_save_and_load_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness();
    add_files(&mut h, three(dir.path()));
    h.state_mut().tabs.compare.queue(Command::Rename(0, "my best".into()));
    h.state_mut().tabs.compare.queue(Command::Move(0, 1));
    h.step();
    h.step();
    let names: Vec<String> = h.state().tabs.compare.entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, ["middling", "my best", "blunt"]);
    assert!(h.state().tabs.compare.comparison.as_ref().unwrap().evals[1].line.starts_with("my best Error=$"));
    let set = dir.path().join("set.json");
    h.state_mut().tabs.compare.queue(Command::SaveSet(set.clone()));
    settle(&mut h);
    let mut h2 = harness();
    h2.state_mut().tabs.compare.queue(Command::LoadSet(set));
    settle(&mut h2);
    let names2: Vec<String> = h2.state().tabs.compare.entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names2, names);
    // What the app persists brings the same set back at the next start.
    let mut settings = Settings::default();
    h2.state().tabs.compare.persist(&mut settings.compare);
    assert_eq!(settings.compare.pricers[1].name.as_deref(), Some("my best"));
    let mut app = PricerApp::new(settings, Arc::new(|| {}), false);
    app.act(Action::SetTab(Tab::Compare));
    let mut h3 = Harness::builder().with_size(egui::vec2(1600.0, 1000.0)).build_ui_state(
        |ui, app: &mut PricerApp| {
            app.logic(&ui.ctx().clone());
            app.ui(ui);
        },
        app,
    );
    settle(&mut h3);
    let names3: Vec<String> = h3.state().tabs.compare.entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names3, names);
}

#[test]
fn the_quiz_records_a_typed_guess_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = pricer::dataset::load_demo(3000, 42, &Default::default()).unwrap();
    let test = dir.path().join("test.jsonl");
    pricer::items_io::write_items(&data.table.select(&(0..40).collect::<Vec<_>>()), &test).unwrap();
    let file = dir.path().join("me.csv");
    let open = Command::OpenQuiz { test: test.clone(), start: 0, n: 5, file: file.clone() };
    let mut h = harness();
    h.state_mut().tabs.compare.view = View::Quiz;
    h.state_mut().tabs.compare.quiz_form.test = test.display().to_string();
    h.state_mut().tabs.compare.folder = dir.path().join("evals").display().to_string();
    h.state_mut().tabs.compare.queue(open.clone());
    settle(&mut h);
    h.get_by_label_contains("Question 1 of 5");
    let prompt = data.table.get(0).test_prompt().to_owned();
    h.get_by_label(&prompt);
    h.get_by_role_and_label(Role::TextInput, "your guess $").type_text("123.5");
    h.step();
    h.key_press(egui::Key::Enter);
    h.step();
    h.step();
    h.get_by_label_contains("Question 2 of 5");
    let q = h.state().tabs.compare.quiz.as_ref().unwrap();
    assert_eq!(q.questions[0].guess, Some(123.5));
    let csv = std::fs::read_to_string(&file).unwrap();
    let mut rd = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5);
    assert_eq!((&rows[0][0], &rows[0][4], &rows[1][4]), ("0", "123.5", ""));
    // A new session resumes at the second question.
    let mut h2 = harness();
    h2.state_mut().tabs.compare.view = View::Quiz;
    h2.state_mut().tabs.compare.quiz_form.test = test.display().to_string();
    h2.state_mut().tabs.compare.folder = dir.path().join("evals").display().to_string();
    h2.state_mut().tabs.compare.queue(open);
    settle(&mut h2);
    h2.get_by_label_contains("Question 2 of 5");
    h2.get_by_label_contains("1 of 5 answered");
    // Scoring makes the answers a pricer of the comparison.
    h2.get_by_label("Score my answers so far (1) as a pricer of the comparison").click();
    settle(&mut h2);
    let tab = &h2.state().tabs.compare;
    assert_eq!(tab.entries.len(), 1);
    assert_eq!(tab.entries[0].eval.items[0].guess, 123.5);
    assert_eq!(tab.entries[0].eval.spec.kind(), "human");
}
