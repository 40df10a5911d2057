//! Comparing pricers in the core: bootstrap intervals against their analytic width, the paired
//! bootstrap, the per-item table's filters and order, within-$X curves, pricer sets, the quiz's
//! answers file, and `pricer compare --intervals --save-set`.

use pricer::evaluation::{EvalItem, Evaluation, FileRef, PricerSpec, score_item};
use pricer::jobs::JobCtx;
use pricer::pricers::bootstrap::Bootstrap;
use pricer::pricers::compare::{self, ItemFilter, ItemSort, PricerSet, SetEntry};
use pricer::pricers::quiz::Quiz;
use std::path::Path;

/// Deterministic pseudo-random numbers in [0, 1).
pub fn unit(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Items 0..n with truths spread over $5–$900 and categories cycling over four names.
pub fn truths(n: usize) -> Vec<(String, String, f64)> {
    let cats = ["Appliances", "Electronics", "Automotive", "Toys_and_Games"];
    (0..n)
        .map(|i| {
            let t = 5.0 * (180f64).powf(unit(7, i as u64));
            (format!("Item number {i}"), cats[i % 4].to_owned(), (t * 100.0).round() / 100.0)
        })
        .collect()
}

/// An evaluation whose guesses are the truth times a log-normal-ish noise of width `noise`.
pub fn synthetic_eval(name: &str, digest: &str, items: &[(String, String, f64)], noise: f64, seed: u64) -> Evaluation {
    let scored: Vec<EvalItem> = items
        .iter()
        .enumerate()
        .map(|(i, (title, cat, truth))| {
            let f = (noise * (unit(seed, i as u64) * 2.0 - 1.0)).exp();
            score_item(i, title, cat, *truth, (truth * f * 100.0).round() / 100.0)
        })
        .collect();
    let test = FileRef { path: "tests/fixtures/compare-test.jsonl".into(), digest: digest.into(), items: items.len() };
    let mut e = Evaluation::new(name.into(), PricerSpec::Constant, None, test, scored);
    e.fit_seconds = 0.5;
    e.predict_seconds = 1.5;
    e
}

#[test]
fn bootstrap_interval_of_a_mean_has_the_analytic_width() {
    // Errors uniform on [0, 100): sd = 100/sqrt(12); the 95% interval of the mean of n is about
    // ±1.96·sd/sqrt(n).
    let n = 2000;
    let errors: Vec<f64> = (0..n).map(|i| unit(3, i) * 100.0).collect();
    let hits: Vec<bool> = (0..n).map(|i| unit(4, i) < 0.3).collect();
    let b = Bootstrap::run(std::slice::from_ref(&errors), std::slice::from_ref(&hits), 2000, 42, &JobCtx::default())
        .unwrap();
    let mean = errors.iter().sum::<f64>() / n as f64;
    let half = 1.96 * 100.0 / 12f64.sqrt() / (n as f64).sqrt();
    let ci = b.error_ci(0);
    assert!(ci.contains(mean));
    let width = (ci.hi - ci.lo) / 2.0;
    assert!((width - half).abs() / half < 0.12, "half width {width} vs analytic {half}");
    // Hits: a proportion p = share of true flags, half width 1.96·sqrt(p(1−p)/n) in percent.
    let p = hits.iter().filter(|h| **h).count() as f64 / n as f64;
    let hh = 1.96 * (p * (1.0 - p) / n as f64).sqrt() * 100.0;
    let h = b.hits_ci(0);
    assert!(((h.hi - h.lo) / 2.0 - hh).abs() / hh < 0.15, "{h:?} vs ±{hh}");
    // Same seed, same intervals.
    let again = Bootstrap::run(&[errors], &[hits], 2000, 42, &JobCtx::default()).unwrap();
    assert_eq!(again.error_ci(0), ci);
}

#[test]
fn paired_bootstrap_sees_a_small_consistent_gap_that_unpaired_intervals_miss() {
    // B is A plus $3 on every item: the unpaired intervals overlap, the paired difference is
    // exactly −3 with no spread, so A clearly beats B.
    let n = 250;
    let a: Vec<f64> = (0..n).map(|i| unit(9, i) * 200.0).collect();
    let b: Vec<f64> = a.iter().map(|x| x + 3.0).collect();
    let h: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    let boot = Bootstrap::run(&[a.clone(), b.clone()], &[h.clone(), h], 1000, 1, &JobCtx::default()).unwrap();
    let (ca, cb) = (boot.error_ci(0), boot.error_ci(1));
    assert!(ca.hi > cb.lo, "the unpaired intervals overlap: {ca:?} {cb:?}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let d = boot.paired(0, 1, (mean(&a), mean(&b)), (50.0, 50.0));
    assert!((d.error_diff + 3.0).abs() < 1e-9);
    assert!((d.error_ci.lo + 3.0).abs() < 1e-9 && (d.error_ci.hi + 3.0).abs() < 1e-9, "{:?}", d.error_ci);
    assert_eq!(d.a_lower_error, 1.0);
    assert!(d.verdict("A", "B").starts_with("A beats B"));
    let rev = boot.paired(1, 0, (mean(&b), mean(&a)), (50.0, 50.0));
    assert!(rev.verdict("B", "A").starts_with("A beats B"));
}

#[test]
fn item_rows_filter_by_category_band_green_red_and_selection_and_sort() {
    let items = truths(400);
    let c =
        compare::align(vec![synthetic_eval("good", "d1", &items, 0.1, 1), synthetic_eval("bad", "d1", &items, 1.5, 2)])
            .unwrap();
    let all = compare::item_rows(&c, &ItemFilter::default(), ItemSort::Index, false);
    assert_eq!(all, (0..400).collect::<Vec<_>>());
    let f = ItemFilter { category: Some("Automotive".into()), ..Default::default() };
    let rows = compare::item_rows(&c, &f, ItemSort::Truth, true);
    assert_eq!(rows.len(), 100);
    assert!(rows.iter().all(|&k| c.items()[k].category == "Automotive"));
    assert!(rows.windows(2).all(|w| c.items()[w[0]].truth >= c.items()[w[1]].truth), "descending by truth");
    let f = ItemFilter { band: Some("$100–200".into()), ..Default::default() };
    let rows = compare::item_rows(&c, &f, ItemSort::Index, false);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|&k| (100.0..200.0).contains(&c.items()[k].truth)));
    let f = ItemFilter { green_red: Some((0, 1)), ..Default::default() };
    let rows = compare::item_rows(&c, &f, ItemSort::Error(1), false);
    let expected: Vec<usize> = (0..400)
        .filter(|&k| {
            c.evals[0].items[k].colour == pricer::tester::Colour::Green
                && c.evals[1].items[k].colour == pricer::tester::Colour::Red
        })
        .collect();
    assert!(!expected.is_empty());
    let mut sorted = rows.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    assert!(rows.windows(2).all(|w| c.evals[1].items[w[0]].error <= c.evals[1].items[w[1]].error));
    let f = ItemFilter { only: Some(vec![5, 3, 300]), ..Default::default() };
    assert_eq!(compare::item_rows(&c, &f, ItemSort::Index, false), vec![3, 5, 300]);
}

#[test]
fn within_curve_and_error_histogram_count_every_item() {
    let errors = [0.0, 5.0, 10.0, 10.0, 250.0];
    let w = compare::within_curve(&errors, 5.0, 10.0);
    assert_eq!(w, vec![[0.0, 0.2], [5.0, 0.4], [10.0, 0.8]]);
    let h = compare::error_histogram(&errors, 20.0, 3);
    assert_eq!(h, vec![4, 0, 1], "the last bin holds everything beyond");
}

#[test]
fn alignment_flags_the_evaluation_on_other_test_items() {
    let items = truths(100);
    let mut other = truths(100);
    for it in other.iter_mut().skip(80) {
        it.0 = format!("{} (another test set)", it.0);
    }
    let c = compare::align(vec![
        synthetic_eval("a", "d1", &items, 0.2, 1),
        synthetic_eval("b", "d1", &items, 0.4, 2),
        synthetic_eval("c", "d2", &other, 0.3, 3),
    ])
    .unwrap();
    assert_eq!(c.other_test, vec![false, false, true]);
    assert_eq!(c.shared, 80);
    assert!(c.evals.iter().all(|e| e.items.len() == 80 && e.metrics.n == 80));
}

#[test]
fn a_pricer_set_round_trips_and_rejects_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let set = PricerSet {
        format: compare::SET_FORMAT,
        pricers: vec![
            SetEntry { path: dir.path().join("a.json"), name: Some("mine".into()) },
            SetEntry { path: dir.path().join("b.json"), name: None },
        ],
    };
    let p = dir.path().join("s.json");
    set.save(&p).unwrap();
    assert_eq!(PricerSet::load(&p).unwrap(), set);
    std::fs::write(dir.path().join("x.json"), "{\"not\": 1}").unwrap();
    let e = PricerSet::load(&dir.path().join("x.json")).unwrap_err().to_string();
    assert!(e.contains("not a pricer set"), "{e}");
    // A folder scan keeps evaluations and names what it skipped.
    let items = truths(20);
    synthetic_eval("a", "d", &items, 0.2, 1).save(&dir.path().join("a.json")).unwrap();
    let (found, skipped) = compare::scan_folder(dir.path()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
}

fn test_items(dir: &Path, n: usize) -> std::path::PathBuf {
    let data = pricer::dataset::load_demo(3000, 42, &JobCtx::default()).unwrap();
    let idx: Vec<usize> = (0..n.min(data.table.len())).collect();
    let p = dir.join("test.jsonl");
    pricer::items_io::write_items(&data.table.select(&idx), &p).unwrap();
    p
}

#[test]
fn the_quiz_file_keeps_answers_resumes_and_refuses_other_items() {
    let dir = tempfile::tempdir().unwrap();
    let test = test_items(dir.path(), 30);
    let table = pricer::items_io::read_items(&test).unwrap().0;
    let file = dir.path().join("quiz.csv");
    let mut q = Quiz::open(&table, 0..10, &file).unwrap();
    assert_eq!((q.next(), q.answered()), (Some(0), 0));
    assert!(q.questions[0].prompt.ends_with("Price is $"), "the test prompt, without the answer");
    q.answer(0, 12.5).unwrap();
    q.answer(1, 99.0).unwrap();
    assert!(q.answer(2, -1.0).is_err());
    let again = Quiz::open(&table, 0..10, &file).unwrap();
    assert_eq!(again.next(), Some(2));
    assert_eq!(again.questions[1].guess, Some(99.0));
    // The truth is never written: the columns are those of `pricer human-csv`.
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().next().unwrap(), "index,title,category,prompt,guess");
    // The same file over other test items is refused with a clear message.
    let other = table.select(&(10..30).collect::<Vec<_>>());
    let e = Quiz::open(&other, 0..10, &file).unwrap_err().to_string();
    assert!(e.contains("belongs to other test items"), "{e}");
    // The answered prefix scores as the human pricer.
    let req = pricer::pricers::engine::Request {
        spec: PricerSpec::Human { file: file.clone() },
        name: Some("me".into()),
        train: None,
        test: test.clone(),
        start: 0,
        size: again.answered_prefix(),
        out: None,
        cache: Some(dir.path().join("cache")),
    };
    let ev = pricer::pricers::engine::evaluate(&req, &JobCtx::default()).unwrap();
    assert_eq!(ev.items.iter().map(|i| i.guess).collect::<Vec<_>>(), vec![12.5, 99.0]);
}

#[test]
fn cli_compare_prints_intervals_and_saves_a_set() {
    let dir = tempfile::tempdir().unwrap();
    let items = truths(250);
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    synthetic_eval("sharp", "d", &items, 0.1, 1).save(&a).unwrap();
    synthetic_eval("blunt", "d", &items, 1.0, 2).save(&b).unwrap();
    let set = dir.path().join("set.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricer"))
        .args(["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--intervals", "--save-set"])
        .arg(&set)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("95% percentile bootstrap, 2000 resamples of the 250 shared items"), "{text}");
    assert!(text.contains("sharp − blunt"), "{text}");
    assert!(text.contains("sharp beats blunt on Error"), "{text}");
    let s = PricerSet::load(&set).unwrap();
    assert_eq!(s.pricers.len(), 2);
    assert!(s.pricers[0].path.is_absolute());
}
