//! The pricers and the evaluation engine: features, linear models against Python's numbers,
//! determinism under a seed, the chat client against a loopback server, imports, ensembles,
//! resuming an interrupted evaluation.

use crate::common::{asset, real_data};
use pricer::evaluation::{ChatSpec, Evaluation, ForestParams, ImportSpec, PricerSpec, W2vParams};
use pricer::items::ItemTable;
use pricer::items_io::{read_items, write_items};
use pricer::jobs::{CancelToken, JobCtx};
use pricer::pricers::engine::{Request, evaluate};
use pricer::pricers::{self, FitData, features, textfeat};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn golden() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/pricers.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn real_items() -> Option<ItemTable> {
    let p = real_data("curated_items.jsonl")?;
    Some(read_items(&p).unwrap().0)
}

fn first(table: &ItemTable, range: std::ops::Range<usize>) -> ItemTable {
    table.select(&range.collect::<Vec<_>>())
}

fn vec_f64(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn request(spec: PricerSpec, train: Option<&Path>, test: &Path, size: usize, out: &Path, cache: &Path) -> Request {
    Request {
        spec,
        name: None,
        train: train.map(Path::to_owned),
        test: test.to_owned(),
        start: 0,
        size,
        out: Some(out.to_owned()),
        cache: Some(cache.to_owned()),
    }
}

#[test]
fn weight_units_rank_and_brand() {
    let d = |s: &str| -> Value { serde_json::from_str(s).unwrap() };
    let w = |s: &str| features::weight_pounds(&d(&format!(r#"{{"Item Weight": "{s}"}}"#)));
    assert_eq!(w("19.3 pounds"), Some(19.3));
    assert_eq!(w("8 Ounces"), Some(0.5));
    assert!((w("453.592 grams").unwrap() - 1.0).abs() < 1e-12);
    assert!((w("453592 milligrams").unwrap() - 1.0).abs() < 1e-12);
    assert!((w("2 Kilograms").unwrap() - 2.0 / 0.453592).abs() < 1e-12);
    assert_eq!(w("250 hundredths pounds"), Some(2.5));
    assert_eq!(w("3 stones"), None);
    assert_eq!(w("heavy"), None);
    assert_eq!(w("12"), None);
    assert_eq!(features::weight_pounds(&d("{}")), None);
    assert_eq!(features::mean_rank(&d(r#"{"Best Sellers Rank": {"Tools": 100, "Lights": 300}}"#)), Some(200.0));
    assert_eq!(features::mean_rank(&d(r#"{"Best Sellers Rank": {}}"#)), None);
    assert_eq!(features::mean_rank(&d(r#"{"Brand": "x"}"#)), None);
    for b in ["HP", "Dell", "lenovo", "SAMSUNG", "Asus", "Sony", "Canon", "Apple", "Intel"] {
        assert!(features::is_top_brand(&d(&format!(r#"{{"Brand": "{b}"}}"#))), "{b}");
    }
    assert!(!features::is_top_brand(&d(r#"{"Brand": "Moen"}"#)));
    assert!(!features::is_top_brand(&d("{}")));
}

#[test]
fn features_and_linear_regression_match_numpy() {
    let Some(all) = real_items() else { return };
    let g = golden();
    let train = first(&all, 0..3000);
    let rows = g["features"]["first_rows"].as_array().unwrap();
    let lr = features::FeaturesLr::fit(&train, &JobCtx::default()).unwrap();
    for (k, want) in rows.iter().enumerate() {
        let got = lr.row(&train.get(k));
        for (a, b) in got.iter().zip(vec_f64(want)) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "item {k}: {got:?} vs {want}");
        }
    }
    for (a, b) in lr.fill.iter().zip(vec_f64(&g["features"]["fill"])) {
        assert!((a - b).abs() <= 1e-9 * b.abs(), "fill {a} vs {b}");
    }
    // numpy's SVD least squares (scikit-learn ≥ 1.7 truncates singular values below 1e-6 of the
    // largest, which drops the rare brand flag: the original's exact solve is the reference).
    for (a, b) in lr.model.coef.iter().zip(vec_f64(&g["features"]["lstsq_coef"])) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "coef {a} vs {b}");
    }
    let icpt = g["features"]["lstsq_intercept"].as_f64().unwrap();
    assert!((lr.model.intercept - icpt).abs() < 1e-6 * icpt.abs());
}

#[test]
fn bag_of_words_vocabulary_and_coefficients_match_scikit_learn() {
    let Some(all) = real_items() else { return };
    let g = golden();
    let train = first(&all, 0..3000);
    let bow = textfeat::BowLr::fit(&train, 1000, &JobCtx::default()).unwrap();
    let terms: Vec<&str> = g["bow"]["terms"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let totals = vec_f64(&g["bow"]["totals"]);
    let cutoff = g["bow"]["cutoff_count"].as_f64().unwrap();
    assert_eq!(bow.vocabulary.terms.len(), 1000);
    // Every term counted more often than the 1,000th is in both; at the cutoff count scikit-learn's
    // unstable argsort picks among equals, so only the number taken from the tie must agree.
    let ours: std::collections::HashSet<&str> = bow.vocabulary.terms.iter().map(String::as_str).collect();
    let above: Vec<&str> = terms.iter().zip(&totals).filter(|(_, c)| **c > cutoff).map(|(t, _)| *t).collect();
    assert!(above.len() > 900, "{}", above.len());
    for t in &above {
        assert!(ours.contains(t), "`{t}` missing from our vocabulary");
    }
    let docs: Vec<Vec<String>> = (0..train.len()).map(|i| textfeat::sk_tokens(train.get(i).test_prompt())).collect();
    let count = |t: &str| docs.iter().flatten().filter(|w| *w == t).count() as f64;
    for t in bow.vocabulary.terms.iter().filter(|t| !above.contains(&t.as_str())) {
        assert_eq!(count(t), cutoff, "`{t}` was taken at the cutoff but has another count");
    }
    // Same vocabulary → same least-squares solution: compare where the terms agree.
    let want = vec_f64(&g["bow"]["lstsq_coef"]);
    if bow.vocabulary.terms.iter().map(String::as_str).eq(terms.iter().copied()) {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, (a, b)) in bow.model.coef.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-5 * scale, "coef {k} `{}`: {a} vs {b}", terms[k]);
        }
        let icpt = g["bow"]["lstsq_intercept"].as_f64().unwrap();
        assert!((bow.model.intercept - icpt).abs() < 1e-4 * icpt.abs(), "{} vs {icpt}", bow.model.intercept);
    } else {
        // A different pick at the tie changes the model a little: compare its predictions with
        // scikit-learn's on items it was not fitted on.
        let preds = vec_f64(&g["bow"]["sklearn_predictions"]);
        let ctx = JobCtx::default();
        use pricers::Pricer;
        let test = first(&all, 3000..3020);
        let items: Vec<(usize, pricer::items::ItemRef<'_>)> = (0..20).map(|i| (i, test.get(i))).collect();
        let ours = bow.price(&items, &ctx).unwrap();
        let mean_abs: f64 = ours.iter().zip(&preds).map(|(a, b)| (a.price - b.max(0.0)).abs()).sum::<f64>() / 20.0;
        assert!(mean_abs < 5.0, "predictions differ by ${mean_abs:.2} on average");
    }
}

#[test]
fn linear_svr_matches_liblinear_on_standardised_features() {
    let Some(all) = real_items() else { return };
    let g = golden();
    let train = first(&all, 0..3000);
    let lr = features::FeaturesLr::fit(&train, &JobCtx::default()).unwrap();
    let rows: Vec<[f64; 4]> = (0..train.len()).map(|i| lr.row(&train.get(i))).collect();
    let n = rows.len() as f64;
    let mean: Vec<f64> = (0..4).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n).collect();
    let std: Vec<f64> =
        (0..4).map(|j| (rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n).sqrt()).collect();
    let x: Vec<f64> = rows.iter().flat_map(|r| (0..4).map(|j| (r[j] - mean[j]) / std[j]).collect::<Vec<_>>()).collect();
    let y = train.prices();
    let svr = pricers::svr::LinearSvr::fit(&x, 4, y, &Default::default()).unwrap();
    assert!(svr.converged);
    // liblinear's primal: ½(‖w‖² + b²) + C Σ max(0, |y − w·x − b| − ε), with C = 1, ε = 0.
    let objective = |w: &[f64], b: f64| {
        0.5 * (w.iter().map(|v| v * v).sum::<f64>() + b * b)
            + x.chunks(4)
                .zip(y)
                .map(|(r, yv)| (yv - b - r.iter().zip(w).map(|(a, c)| a * c).sum::<f64>()).abs())
                .sum::<f64>()
    };
    let want = vec_f64(&g["svr_standardised_features"]["coef"]);
    let icpt = g["svr_standardised_features"]["intercept"].as_f64().unwrap();
    let (ours, theirs) = (objective(&svr.coef, svr.intercept), objective(&want, icpt));
    // Both stop at liblinear's tolerance: the same optimum to a relative 1e-3 of the objective.
    assert!((ours - theirs).abs() <= 1e-3 * theirs, "objective {ours} vs liblinear's {theirs}");
    for (a, b) in svr.coef.iter().zip(&want) {
        assert!((a - b).abs() <= 0.15 * b.abs().max(1.0), "{:?} vs {want:?}", svr.coef);
    }
    assert!((svr.intercept - icpt).abs() <= 0.02 * icpt.abs(), "{} vs {icpt}", svr.intercept);
}

#[test]
fn least_squares_recovers_exact_coefficients_and_handles_collinear_columns() {
    use pricers::linear::{Design, LinearModel};
    // y = 3 + 2a − b, plus a column that duplicates a (minimum norm splits its weight in two).
    let rows: Vec<[f64; 3]> =
        (0..50).map(|i| [i as f64 * 0.37 % 5.0, (i * i) as f64 % 7.0, i as f64 * 0.37 % 5.0]).collect();
    let y: Vec<f64> = rows.iter().map(|r| 3.0 + 2.0 * r[0] - r[1]).collect();
    let x: Vec<f64> = rows.iter().flatten().copied().collect();
    let m = LinearModel::fit(&Design::Dense(&x, 3), &y).unwrap();
    // The duplicated pair shares the weight (the minimum-norm split, to the vanishing ridge's
    // precision); their sum and every prediction are exact.
    assert!((m.coef[0] - 1.0).abs() < 1e-3 && (m.coef[2] - 1.0).abs() < 1e-3, "{m:?}");
    assert!((m.coef[0] + m.coef[2] - 2.0).abs() < 1e-9, "{m:?}");
    assert!((m.coef[1] + 1.0).abs() < 1e-9 && (m.intercept - 3.0).abs() < 1e-8, "{m:?}");
    let sparse: Vec<Vec<(u32, f64)>> = rows
        .iter()
        .map(|r| r.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(j, v)| (j as u32, *v)).collect())
        .collect();
    let s = LinearModel::fit(&Design::Sparse(&sparse, 3), &y).unwrap();
    for (r, yv) in rows.iter().zip(&y) {
        assert!((s.predict_dense(r) - yv).abs() < 1e-8 && (m.predict_dense(r) - yv).abs() < 1e-8);
    }
}

fn tmp_items(table: &ItemTable, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    write_items(table, &p).unwrap();
    p
}

#[test]
fn word2vec_and_forests_are_deterministic_under_a_seed() {
    let Some(all) = real_items() else { return };
    let dir = tempfile::tempdir().unwrap();
    let train = tmp_items(&first(&all, 0..400), dir.path(), "train.jsonl");
    let test = tmp_items(&first(&all, 400..440), dir.path(), "test.jsonl");
    let small = W2vParams { vector_size: 50, epochs: 2, ..W2vParams::default() };
    let forest = ForestParams { n_trees: 10, ..ForestParams::default() };
    let run = |spec: PricerSpec, out: &str| {
        let req = request(spec, Some(&train), &test, 40, &dir.path().join(out), dir.path());
        evaluate(&req, &JobCtx::default()).unwrap()
    };
    let rf = PricerSpec::Word2vecRf { word2vec: small.clone(), forest: forest.clone() };
    let a = run(rf.clone(), "a.json");
    let b = run(rf, "b.json");
    let guesses = |e: &Evaluation| e.items.iter().map(|i| i.guess).collect::<Vec<_>>();
    assert_eq!(guesses(&a), guesses(&b));
    assert!(a.items.iter().any(|i| (i.guess - a.items[0].guess).abs() > 1e-9), "all guesses equal");
    let other = run(PricerSpec::Word2vecLr { word2vec: W2vParams { seed: 7, ..small.clone() } }, "c.json");
    let same_seed = run(PricerSpec::Word2vecLr { word2vec: small.clone() }, "d.json");
    assert_ne!(guesses(&other), guesses(&same_seed), "the seed changes the vectors");
    assert_eq!(guesses(&same_seed), guesses(&run(PricerSpec::Word2vecLr { word2vec: small.clone() }, "f.json")));
    let svr = run(PricerSpec::Word2vecSvr { word2vec: small, svr: Default::default() }, "e.json");
    assert!(svr.items.iter().all(|i| i.guess >= 0.0), "guesses are clamped at 0");
    // The saved file is the evaluation returned.
    assert_eq!(Evaluation::load(&dir.path().join("a.json")).unwrap(), a);
}

#[test]
fn random_and_constant_baselines() {
    let Some(all) = real_items() else { return };
    let dir = tempfile::tempdir().unwrap();
    let train_t = first(&all, 0..500);
    let train = tmp_items(&train_t, dir.path(), "train.jsonl");
    let test = tmp_items(&first(&all, 500..800), dir.path(), "test.jsonl");
    let ctx = JobCtx::default();
    let r = evaluate(
        &request(PricerSpec::Random { seed: 42 }, None, &test, 300, &dir.path().join("r.json"), dir.path()),
        &ctx,
    )
    .unwrap();
    assert!(r.items.iter().all(|i| (1.0..=999.0).contains(&i.guess) && i.guess.fract() == 0.0));
    let r2 = evaluate(
        &request(PricerSpec::Random { seed: 42 }, None, &test, 300, &dir.path().join("r2.json"), dir.path()),
        &ctx,
    )
    .unwrap();
    assert_eq!(r.items, r2.items);
    let c = evaluate(
        &request(PricerSpec::Constant, Some(&train), &test, 300, &dir.path().join("c.json"), dir.path()),
        &ctx,
    )
    .unwrap();
    let mean = train_t.prices().iter().sum::<f64>() / 500.0;
    assert!(c.items.iter().all(|i| (i.guess - mean).abs() < 1e-9));
    assert_eq!(c.metrics.n, 300);
    assert!((c.metrics.bias - (mean - first(&all, 500..800).prices().iter().sum::<f64>() / 300.0)).abs() < 1e-9);
    assert_eq!(c.train.as_ref().unwrap().items, 500);
    assert_eq!(c.test.digest, pricer::evaluation::file_digest(&test).unwrap());
}

#[test]
fn an_interrupted_evaluation_resumes_to_the_same_result() {
    let Some(all) = real_items() else { return };
    let dir = tempfile::tempdir().unwrap();
    let train = tmp_items(&first(&all, 0..300), dir.path(), "train.jsonl");
    let test = tmp_items(&first(&all, 300..1300), dir.path(), "test.jsonl");
    let spec = PricerSpec::BowLr { max_features: 200 };
    let whole = evaluate(
        &request(spec.clone(), Some(&train), &test, 1000, &dir.path().join("whole.json"), dir.path()),
        &JobCtx::default(),
    )
    .unwrap();
    let out = dir.path().join("cut.json");
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let ctx = JobCtx {
        cancel: cancel.clone(),
        ..JobCtx::with_progress(move |p| {
            if p.total == 1000 && p.done >= 256 {
                c2.cancel();
            }
        })
    };
    let err = evaluate(&request(spec.clone(), Some(&train), &test, 1000, &out, dir.path()), &ctx).unwrap_err();
    assert!(matches!(err, pricer::Error::Cancelled), "{err}");
    let partial = pricers::engine::partial_path(&out);
    let kept = std::fs::read_to_string(&partial).unwrap().lines().count() - 1;
    assert!((256..1000).contains(&kept), "{kept} rows kept");
    assert!(!out.exists());
    let logged = Arc::new(Mutex::new(vec![]));
    let l2 = logged.clone();
    let ctx = JobCtx::default().with_log(move |_, t| l2.lock().unwrap().push(t.to_owned()));
    let resumed = evaluate(&request(spec, Some(&train), &test, 1000, &out, dir.path()), &ctx).unwrap();
    assert_eq!(resumed.items, whole.items);
    assert_eq!(resumed.metrics, whole.metrics);
    assert!(logged.lock().unwrap().iter().any(|l| l.contains(&format!("{kept} of 1000 items already priced"))));
    assert!(!partial.exists(), "the partial file is removed once the evaluation is saved");
}

// ---------------------------------------------------------------- chat models, loopback server

/// What the fake server does with the n-th request (0-based): status, extra headers, body, delay.
type Script = dyn Fn(usize, &Value) -> (u16, String, String, u64) + Send + Sync;

struct FakeApi {
    url: String,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

fn fake_api(script: Arc<Script>) -> FakeApi {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(vec![]));
    let (h, s) = (hits.clone(), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (h, s, script) = (h.clone(), s.clone(), script.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                let mut auth = String::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let lower = l.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = l["authorization:".len()..].trim().to_owned();
                    }
                }
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).unwrap();
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let n = h.fetch_add(1, Ordering::SeqCst);
                s.lock().unwrap().push((auth, v.clone()));
                let (status, headers, reply, delay) = script(n, &v);
                std::thread::sleep(std::time::Duration::from_millis(delay));
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{reply}",
                    reply.len()
                );
                let _ = stream.write_all(resp.as_bytes());
            });
        }
    });
    FakeApi { url, hits, seen }
}

fn completion(content: &str) -> String {
    json!({ "choices": [{ "message": { "role": "assistant", "content": content } }],
            "usage": { "prompt_tokens": 100, "completion_tokens": 3 } })
    .to_string()
}

fn chat(url: &str) -> ChatSpec {
    ChatSpec {
        model: "fake-model".into(),
        base_url: url.into(),
        concurrency: 2,
        timeout_s: 1.0,
        retries: 2,
        backoff_ms: 10,
        ..ChatSpec::default()
    }
}

fn demo_test(dir: &Path, n: usize) -> (ItemTable, PathBuf) {
    let d = pricer::dataset::load_demo(2000, 7, &JobCtx::default()).unwrap();
    let t = first(&d.table, 0..n);
    let p = tmp_items(&t, dir, "test.jsonl");
    (t, p)
}

#[test]
fn chat_messages_and_reply_parsing_are_the_originals() {
    use pricers::chat::{messages, parse_price};
    let m = messages("How much does this cost to the nearest dollar?\n\nA lamp\n\nPrice is $");
    assert_eq!(m[0]["content"], "You estimate prices of items. Reply only with the price, no explanation");
    assert_eq!(m[1]["content"], "How much does this cost?\n\nA lamp");
    assert_eq!(m[2], json!({ "role": "assistant", "content": "Price is $" }));
    assert_eq!(parse_price("$1,299.00"), Some(1299.0));
    assert_eq!(parse_price("Price is $45.99"), Some(45.99));
    assert_eq!(parse_price("about .5 dollars"), Some(0.5));
    // The original pattern `[-+]?\d*\.\d+|\d+` takes a sign only before a decimal point.
    assert_eq!(parse_price("-12"), Some(12.0));
    assert_eq!(parse_price("-1.5"), Some(-1.5));
    assert_eq!(parse_price("I cannot tell"), None);
}

#[test]
fn chat_pricer_against_a_loopback_server() {
    let dir = tempfile::tempdir().unwrap();
    let (table, test) = demo_test(dir.path(), 12);
    // Replies by item: a plain number, `$1,299.00`, one without a number; the first request
    // of all gets a 429 (retried), so the run sees one retry.
    let api = fake_api(Arc::new(|n, body: &Value| {
        if n == 0 {
            return (429, "Retry-After: 0\r\n".into(), "{}".into(), 0);
        }
        let user = body["messages"][1]["content"].as_str().unwrap_or("");
        let reply = if user.len().is_multiple_of(3) {
            "$1,299.00"
        } else if user.len() % 3 == 1 {
            "42"
        } else {
            "no idea"
        };
        (200, String::new(), completion(reply), 0)
    }));
    let cache = dir.path().join("cache");
    let out = dir.path().join("chat.json");
    let mut req = request(PricerSpec::Chat(chat(&api.url)), None, &test, 12, &out, &cache);
    req.name = Some("fake".into());
    let e = evaluate(&req, &JobCtx::default()).unwrap();
    assert_eq!(e.metrics.n, 12);
    for (k, it) in e.items.iter().enumerate() {
        let user = pricers::chat::messages(table.get(k).test_prompt())[1]["content"].as_str().unwrap().to_owned();
        let (want, unparsable) = match user.len() % 3 {
            0 => (1299.0, false),
            1 => (42.0, false),
            _ => (0.0, true),
        };
        assert_eq!((it.guess, it.unparsable), (want, unparsable), "item {k}");
        assert!(it.reply.is_some());
    }
    assert_eq!(e.metrics.unparsable, e.items.iter().filter(|i| i.unparsable).count());
    let u = e.usage.clone().unwrap();
    assert_eq!((u.calls, u.retries, u.cached), (13, 1, 0));
    assert_eq!(u.prompt_tokens, 1200);
    let body = &api.seen.lock().unwrap()[1].1;
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["max_tokens"], 5);
    assert_eq!(body["seed"], 42);
    // A re-run is answered from the cache: no request reaches the server.
    let before = api.hits.load(Ordering::SeqCst);
    let again = evaluate(
        &request(PricerSpec::Chat(chat(&api.url)), None, &test, 12, &dir.path().join("again.json"), &cache),
        &JobCtx::default(),
    )
    .unwrap();
    assert_eq!(api.hits.load(Ordering::SeqCst), before);
    assert_eq!(again.usage.unwrap().cached, 12);
    assert_eq!(
        again.items.iter().map(|i| i.guess).collect::<Vec<_>>(),
        e.items.iter().map(|i| i.guess).collect::<Vec<_>>()
    );
}

#[test]
fn chat_errors_are_clear_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (_, test) = demo_test(dir.path(), 2);
    let cases: Vec<(&str, Arc<Script>, &str)> = vec![
        ("500", Arc::new(|_, _: &Value| (500, String::new(), "{\"error\":\"boom\"}".into(), 0)), "HTTP 500"),
        ("timeout", Arc::new(|_, _: &Value| (200, String::new(), completion("5"), 1500)), "tries"),
        ("malformed", Arc::new(|_, _: &Value| (200, String::new(), "{not json".into(), 0)), "not JSON"),
        ("no choices", Arc::new(|_, _: &Value| (200, String::new(), "{\"choices\": []}".into(), 0)), "choices[0]"),
    ];
    for (name, script, message) in cases {
        let api = fake_api(script);
        let out = dir.path().join(format!("{name}.json"));
        let req = request(PricerSpec::Chat(chat(&api.url)), None, &test, 2, &out, &dir.path().join(name));
        let err = evaluate(&req, &JobCtx::default()).unwrap_err().to_string();
        assert!(err.contains(message), "{name}: {err}");
        let hits = api.hits.load(Ordering::SeqCst);
        match name {
            // 500 and timeouts are retried `retries` times for each item in flight, then give up.
            "500" | "timeout" => assert!((3..=6).contains(&hits), "{name}: {hits} requests"),
            _ => assert!(hits <= 2, "{name}: {hits} requests"),
        }
        assert!(!out.exists());
    }
}

#[test]
fn the_api_key_is_sent_but_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_, test) = demo_test(dir.path(), 5);
    let secret = "sk-test-5ecr3t-d0-not-write";
    let api = fake_api(Arc::new(move |_, _: &Value| (200, String::new(), completion("17.50"), 0)));
    let out = dir.path().join("eval.json");
    let cache = dir.path().join("cache");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pricer"))
            .args(["price", "--pricer", &format!("chat:fake@{}", api.url), "--api-key-env", "PRICER_TEST_KEY"])
            .args(["--test", test.to_str().unwrap(), "--size", "5", "--out", out.to_str().unwrap()])
            .args(extra)
            .env("PRICER_TEST_KEY", secret)
            .env("PRICER_CACHE_DIR", &cache)
            .output()
            .unwrap()
    };
    let o = run(&["--csv", dir.path().join("items.csv").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Error=$"));
    assert!(api.seen.lock().unwrap().iter().all(|(auth, _)| auth == &format!("Bearer {secret}")));
    let mut files = vec![];
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    walk(dir.path(), &mut files);
    assert!(files.iter().any(|f| f.ends_with("replies.jsonl")), "{files:?}");
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        assert!(!text.contains(secret), "{} holds the key", f.display());
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains(secret));
    let e = Evaluation::load(&out).unwrap();
    assert_eq!(e.items[0].guess, 17.5);
    // A server that refuses the key: the error names the status, not the key.
    let deny = fake_api(Arc::new(|_, _: &Value| (401, String::new(), "{\"error\":\"bad key\"}".into(), 0)));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pricer"))
        .args(["price", "--pricer", &format!("chat:fake@{}", deny.url), "--api-key-env", "PRICER_TEST_KEY"])
        .args([
            "--concurrency",
            "1",
            "--test",
            test.to_str().unwrap(),
            "--size",
            "5",
            "--out",
            dir.path().join("x.json").to_str().unwrap(),
        ])
        .env("PRICER_TEST_KEY", secret)
        .env("PRICER_CACHE_DIR", &cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("HTTP 401") && !stderr.contains(secret), "{stderr}");
    assert_eq!(deny.hits.load(Ordering::SeqCst), 1, "a 401 is not retried");
}

// ---------------------------------------------------------------- imports, human, ensembles

#[test]
fn imported_guesses_join_by_index_or_title_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (table, test) = demo_test(dir.path(), 6);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let by_index = write(
        "g.csv",
        &format!("row,my guess\n{}", (0..6).map(|i| format!("{i},\"${},00{i}.50\"\n", i + 1)).collect::<String>()),
    );
    let spec = |file: &Path, idx: Option<&str>, title: Option<&str>, truth: Option<&str>| {
        PricerSpec::Import(ImportSpec {
            file: file.to_owned(),
            guess_column: "my guess".into(),
            index_column: idx.map(str::to_owned),
            title_column: title.map(str::to_owned),
            truth_column: truth.map(str::to_owned),
        })
    };
    let eval = |s: PricerSpec| {
        evaluate(&request(s, None, &test, 6, &dir.path().join("e.json"), dir.path()), &JobCtx::default())
    };
    let e = eval(spec(&by_index, Some("row"), None, None)).unwrap();
    assert_eq!(
        e.items.iter().map(|i| i.guess).collect::<Vec<_>>(),
        vec![1000.5, 2001.5, 3002.5, 4003.5, 5004.5, 6005.5]
    );
    // By title, rows in another order, as JSON lines.
    let mut jl = String::new();
    for i in (0..6).rev() {
        jl.push_str(&json!({ "name": table.get(i).title, "my guess": i * 10 }).to_string());
        jl.push('\n');
    }
    let by_title = write("g.jsonl", &jl);
    let e = eval(spec(&by_title, None, Some("name"), None)).unwrap();
    assert_eq!(e.items.iter().map(|i| i.guess).collect::<Vec<_>>(), vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
    // Errors: a missing row, a duplicate, a wrong title, a wrong truth, a bad number, no join column.
    let rows = |f: &dyn Fn(usize) -> String, n: usize| (0..n).map(f).collect::<String>();
    let missing = write("m.csv", &format!("row,my guess\n{}", rows(&|i| format!("{i},5\n"), 5)));
    let err = eval(spec(&missing, Some("row"), None, None)).unwrap_err().to_string();
    assert!(err.contains("no guess for 1 of the 6") && err.contains("indices 5"), "{err}");
    let dup = write("d.csv", &format!("row,my guess\n{}0,9\n", rows(&|i| format!("{i},5\n"), 6)));
    let err = eval(spec(&dup, Some("row"), None, None)).unwrap_err().to_string();
    assert!(err.contains("guessed twice") && err.contains("row 8") && err.contains("row 2"), "{err}");
    let wrong_title = write(
        "t.csv",
        &format!(
            "row,title,my guess\n{}",
            rows(&|i| format!("{i},{},5\n", quote(if i == 3 { "Another thing" } else { table.get(i).title })), 6)
        ),
    );
    let err = eval(spec(&wrong_title, Some("row"), Some("title"), None)).unwrap_err().to_string();
    assert!(err.contains("Another thing") && err.contains("does not match test item 3"), "{err}");
    let wrong_truth = write(
        "w.csv",
        &format!(
            "row,truth,my guess\n{}",
            rows(&|i| format!("{i},{},5\n", if i == 2 { 1.0 } else { table.get(i).price }), 6)
        ),
    );
    let err = eval(spec(&wrong_truth, Some("row"), None, Some("truth"))).unwrap_err().to_string();
    assert!(err.contains("does not match test item 2's price"), "{err}");
    let bad = write(
        "b.csv",
        &format!("row,my guess\n{}", rows(&|i| format!("{i},{}\n", if i == 4 { "lots" } else { "5" }), 6)),
    );
    let err = eval(spec(&bad, Some("row"), None, None)).unwrap_err().to_string();
    assert!(err.contains("row 6") && err.contains("`lots`"), "{err}");
    let err = eval(spec(&missing, None, None, None)).unwrap_err().to_string();
    assert!(err.contains("--index-column"), "{err}");
    let err = eval(spec(&by_index, Some("nope"), None, None)).unwrap_err().to_string();
    assert!(err.contains("no column `nope`") && err.contains("my guess"), "{err}");
}

#[test]
fn human_csv_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (table, test) = demo_test(dir.path(), 4);
    let csv = dir.path().join("human.csv");
    assert_eq!(pricers::import::write_human_csv(&table, 0..4, &csv).unwrap(), 4);
    // A person fills in the guess column.
    let mut r = csv::Reader::from_path(&csv).unwrap();
    let header = r.headers().unwrap().clone();
    assert_eq!(header.iter().collect::<Vec<_>>(), vec!["index", "title", "category", "prompt", "guess"]);
    let mut w = csv::Writer::from_path(dir.path().join("filled.csv")).unwrap();
    w.write_record(&header).unwrap();
    for (k, rec) in r.records().enumerate() {
        let rec = rec.unwrap();
        assert!(rec[3].ends_with("Price is $"));
        w.write_record([&rec[0], &rec[1], &rec[2], &rec[3], &format!("{}", 10 * (k + 1))]).unwrap();
    }
    w.flush().unwrap();
    let spec = PricerSpec::Human { file: dir.path().join("filled.csv") };
    let e =
        evaluate(&request(spec, None, &test, 4, &dir.path().join("h.json"), dir.path()), &JobCtx::default()).unwrap();
    assert_eq!(e.items.iter().map(|i| i.guess).collect::<Vec<_>>(), vec![10.0, 20.0, 30.0, 40.0]);
}

#[test]
fn ensemble_is_a_least_squares_fit_on_other_items() {
    let dir = tempfile::tempdir().unwrap();
    let (table, test) = demo_test(dir.path(), 60);
    // Three members' guesses as files, evaluated over all 60 items.
    let guess = |m: usize, i: usize| table.get(i).price * (0.5 + 0.3 * m as f64) + ((i * 7 + m * 13) % 11) as f64;
    let mut members = vec![];
    for m in 0..3 {
        let f = dir.path().join(format!("g{m}.csv"));
        std::fs::write(
            &f,
            format!("index,guess\n{}", (0..60).map(|i| format!("{i},{}\n", guess(m, i))).collect::<String>()),
        )
        .unwrap();
        let spec = PricerSpec::Import(ImportSpec { file: f, guess_column: "guess".into(), ..Default::default() });
        let out = dir.path().join(format!("m{m}.json"));
        evaluate(&request(spec, None, &test, 60, &out, dir.path()), &JobCtx::default()).unwrap();
        members.push(out);
    }
    let spec = PricerSpec::Ensemble { members: members.clone(), fit_items: (20, 60) };
    let e = evaluate(&request(spec, None, &test, 20, &dir.path().join("ens.json"), dir.path()), &JobCtx::default())
        .unwrap();
    // The same least squares solved here by modified Gram–Schmidt QR.
    let rows: Vec<Vec<f64>> = (20..60)
        .map(|i| {
            let g: Vec<f64> = (0..3).map(|m| guess(m, i)).collect();
            let mut r = vec![1.0];
            r.extend(pricers::ensemble::row(&g));
            r
        })
        .collect();
    let y: Vec<f64> = (20..60).map(|i| table.get(i).price).collect();
    let beta = qr_solve(&rows, &y);
    let fitted = &e.fitted["coefficients"];
    let names = ["import g0", "import g1", "import g2", "min", "max"];
    for (k, n) in names.iter().enumerate() {
        let got = fitted[n].as_f64().unwrap();
        assert!((got - beta[k + 1]).abs() < 1e-6 * beta[k + 1].abs().max(1.0), "{n}: {got} vs {}", beta[k + 1]);
    }
    assert!((e.fitted["intercept"].as_f64().unwrap() - beta[0]).abs() < 1e-6 * beta[0].abs().max(1.0));
    for it in &e.items {
        let g: Vec<f64> = (0..3).map(|m| guess(m, it.index)).collect();
        let mut r = vec![1.0];
        r.extend(pricers::ensemble::row(&g));
        let want = r.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>().max(0.0);
        assert!((it.guess - want).abs() < 1e-6 * want.max(1.0));
    }
    // Fitting on the scored items is refused.
    let spec = PricerSpec::Ensemble { members, fit_items: (10, 40) };
    let err = evaluate(&request(spec, None, &test, 20, &dir.path().join("bad.json"), dir.path()), &JobCtx::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("overlap"), "{err}");
}

fn qr_solve(a: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let (n, k) = (a.len(), a[0].len());
    let mut q: Vec<Vec<f64>> = (0..k).map(|j| (0..n).map(|i| a[i][j]).collect()).collect();
    let mut r = vec![vec![0.0; k]; k];
    for j in 0..k {
        for p in 0..j {
            let d: f64 = (0..n).map(|i| q[p][i] * q[j][i]).sum();
            r[p][j] = d;
            let qp = q[p].clone();
            q[j].iter_mut().zip(&qp).for_each(|(x, y)| *x -= d * y);
        }
        let norm = q[j].iter().map(|v| v * v).sum::<f64>().sqrt();
        r[j][j] = norm;
        q[j].iter_mut().for_each(|v| *v /= norm);
    }
    let qty: Vec<f64> = (0..k).map(|j| (0..n).map(|i| q[j][i] * y[i]).sum()).collect();
    let mut x = vec![0.0; k];
    for j in (0..k).rev() {
        x[j] = (qty[j] - (j + 1..k).map(|p| r[j][p] * x[p]).sum::<f64>()) / r[j][j];
    }
    x
}

// ---------------------------------------------------------------- embeddings

fn embedder_dir() -> Option<PathBuf> {
    asset(pricers::embed::default_dir().join("model.safetensors"), "run scripts/fetch-assets.sh (scripts/test.sh does)")
        .map(|p| p.parent().unwrap().to_owned())
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let Some(dir) = embedder_dir() else { return };
    let Some(all) = real_items() else { return };
    let g = golden();
    let from = g["embeddings"]["texts_from"].as_u64().unwrap() as usize;
    let want: Vec<Vec<f64>> = g["embeddings"]["vectors"].as_array().unwrap().iter().map(vec_f64).collect();
    let cache = tempfile::tempdir().unwrap();
    let e = pricers::embed::Embedder::load(&dir, cache.path()).unwrap();
    let texts: Vec<String> = (from..from + want.len()).map(|i| pricers::description(all.get(i).prompt)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = e.embed(&refs, &JobCtx::default()).unwrap();
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
        let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
        let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!((na - 1.0).abs() < 1e-5, "not normalised: {na}");
        assert!(dot / (na * nb) >= 0.9999, "text {k}: cosine {}", dot / (na * nb));
    }
    // The hand-written encoder against candle-transformers' BertModel on the same texts.
    let reference = e.reference_forward(&dir, &refs[..6]).unwrap();
    for (a, b) in got.iter().zip(&reference) {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(dot >= 0.99999, "cosine {dot} against candle-transformers");
    }
    // Cached: a second embedder reads the vectors back bit for bit.
    let e2 = pricers::embed::Embedder::load(&dir, cache.path()).unwrap();
    let ctx = JobCtx::with_progress(|_| panic!("a cached text was embedded again"));
    assert_eq!(e2.embed(&refs, &ctx).unwrap(), got);
    let size = std::fs::metadata(cache.path().join("embeddings/all-MiniLM-L6-v2-256.bin")).unwrap().len();
    assert_eq!(size as usize, want.len() * (16 + 4 * 384));
}

#[test]
fn knn_and_embedding_forest_are_deterministic() {
    let Some(_) = embedder_dir() else { return };
    let Some(all) = real_items() else { return };
    let dir = tempfile::tempdir().unwrap();
    let train = tmp_items(&first(&all, 0..120), dir.path(), "train.jsonl");
    let test = tmp_items(&first(&all, 120..140), dir.path(), "test.jsonl");
    let cache = dir.path().join("cache");
    let run = |spec: PricerSpec, out: &str| {
        evaluate(&request(spec, Some(&train), &test, 20, &dir.path().join(out), &cache), &JobCtx::default()).unwrap()
    };
    let knn = PricerSpec::EmbedKnn { embedder: String::new(), k: 3, distance_weighted: true };
    let a = run(knn.clone(), "a.json");
    assert_eq!(a.items, run(knn, "b.json").items);
    // k = 1 gives a training item's own price.
    let one = run(PricerSpec::EmbedKnn { embedder: String::new(), k: 1, distance_weighted: false }, "c.json");
    let prices = first(&all, 0..120).prices().to_vec();
    assert!(one.items.iter().all(|i| prices.contains(&i.guess)));
    let rf = PricerSpec::EmbedRf { embedder: String::new(), forest: ForestParams { n_trees: 8, ..Default::default() } };
    assert_eq!(run(rf.clone(), "d.json").items, run(rf, "e.json").items);
}

#[test]
fn fit_data_without_training_items_is_a_clear_error() {
    let d = pricer::dataset::load_demo(100, 1, &JobCtx::default()).unwrap();
    let data = FitData { train: None, test: &d.table, evaluated: 0..10, cache: PathBuf::from("/nonexistent") };
    let err =
        pricers::fit(&PricerSpec::BowLr { max_features: 10 }, &data, &JobCtx::default()).err().unwrap().to_string();
    assert!(err.contains("needs training items"), "{err}");
    let err = pricers::spec::parse("chat:gpt", &Default::default()).unwrap_err().to_string();
    assert!(err.contains("base URL"), "{err}");
    let err = pricers::spec::parse("nope", &Default::default()).unwrap_err().to_string();
    assert!(err.contains("unknown pricer") && err.contains("word2vec-rf"), "{err}");
    assert_eq!(pricers::spec::parse_range("1000..1250").unwrap(), (1000, 1250));
    let run = pricers::spec::parse("run:runs/a:b:checkpoint-400", &Default::default()).unwrap();
    assert_eq!(
        run,
        PricerSpec::Run { dir: "runs/a:b".into(), checkpoint: Some("checkpoint-400".into()), decode: None }
    );
    let latest = pricers::spec::parse("run:runs/a", &Default::default()).unwrap();
    assert_eq!(latest, PricerSpec::Run { dir: "runs/a".into(), checkpoint: None, decode: None });
    let o = pricers::spec::SpecOptions { rag: Some(5), api_key_env: Some("K".into()), ..Default::default() };
    let PricerSpec::Chat(c) = pricers::spec::parse("chat:gpt-4o-mini@https://api.openai.com/v1", &o).unwrap() else {
        panic!("not a chat spec")
    };
    assert_eq!((c.model.as_str(), c.base_url.as_str(), c.rag), ("gpt-4o-mini", "https://api.openai.com/v1", 5));
    assert!(PricerSpec::Chat(c).needs_train(), "RAG retrieves from the training items");
    assert!(pricers::spec::parse_range("5..5").is_err());
}

#[test]
fn cli_price_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let d = pricer::dataset::load_demo(3000, 3, &JobCtx::default()).unwrap();
    let train = tmp_items(&first(&d.table, 0..600), dir.path(), "train.parquet");
    let test = tmp_items(&first(&d.table, 600..700), dir.path(), "test.jsonl");
    let pricer = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_pricer"))
            .args(args)
            .env("PRICER_CACHE_DIR", dir.path().join("cache"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (tr, te) = (train.to_str().unwrap(), test.to_str().unwrap());
    let mut evals = vec![];
    for p in ["random", "constant", "features-lr", "bow-lr"] {
        let out = dir.path().join(format!("{p}.json"));
        let line = pricer(&[
            "price",
            "--pricer",
            p,
            "--train",
            tr,
            "--test",
            te,
            "--size",
            "80",
            "--out",
            out.to_str().unwrap(),
        ]);
        let e = Evaluation::load(&out).unwrap();
        assert_eq!(line.trim(), e.line);
        assert!(line.starts_with(&format!("{p} Error=$")), "{line}");
        assert_eq!(e.metrics.n, 80);
        evals.push(out);
    }
    let csv = dir.path().join("all.csv");
    let mut args = vec!["compare".to_owned()];
    args.extend(evals.iter().map(|p| p.display().to_string()));
    args.extend(["--by".into(), "price-band".into(), "--csv".into(), csv.display().to_string()]);
    let out = pricer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("pricer") && lines[0].contains("median") && lines[0].contains("bias"));
    let errors: Vec<f64> = lines[1..5].iter().map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap()).collect();
    assert!(errors.windows(2).all(|w| w[0] <= w[1]), "not sorted by error: {errors:?}");
    assert!(out.contains("$25–50") || out.contains("$50–100"), "{out}");
    let mut r = csv::Reader::from_path(&csv).unwrap();
    assert_eq!(r.headers().unwrap().len(), 4 + 2 * 4);
    assert_eq!(r.records().count(), 80);
    // A missing --train is refused before anything runs.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pricer"))
        .args(["price", "--pricer", "bow-lr", "--test", te, "--out", dir.path().join("x.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--train"));
}

#[test]
fn tokens_are_scikit_learns_and_gensims() {
    let g = golden();
    let texts = g["tokens"]["texts"].as_array().unwrap();
    let words =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_owned()).collect() };
    for (k, t) in texts.iter().enumerate() {
        let t = t.as_str().unwrap();
        assert_eq!(
            textfeat::sk_tokens(t),
            words(&g["tokens"]["sklearn"][k]),
            "CountVectorizer tokens of text {k}: {t:.80}"
        );
        assert_eq!(
            textfeat::simple_preprocess(t),
            words(&g["tokens"]["gensim"][k]),
            "simple_preprocess of text {k}: {t:.80}"
        );
    }
}
