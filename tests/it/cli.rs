//! The `pricer` command line, end to end.

use std::path::Path;
use std::process::{Command, Output};

fn pricer(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pricer")).args(args).current_dir(dir).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn demo_curate_stats_sample_export_score() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(&pricer(&["demo", "--items", "3000", "--seed", "9", "--out", "raw.jsonl.gz"], dir));
    // Same seed, same bytes.
    ok(&pricer(&["demo", "--items", "3000", "--seed", "9", "--out", "again.jsonl.gz"], dir));
    assert_eq!(std::fs::read(dir.join("raw.jsonl.gz")).unwrap(), std::fs::read(dir.join("again.jsonl.gz")).unwrap());

    let o = pricer(&["curate", "raw.jsonl.gz", "--out", "items.parquet", "--report", "report.json"], dir);
    ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("read 3000 lines, kept"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let kept = report["kept"].as_u64().unwrap();
    assert!(kept > 1000, "{report}");
    for rule in ["no_price", "out_of_range", "too_short", "too_few_tokens"] {
        assert!(report[rule].as_u64().unwrap() > 0, "{rule} should drop some demo lines");
    }

    let stats = ok(&pricer(&["stats", "items.parquet", "--json"], dir));
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["stats"]["n_items"].as_u64(), Some(kept));
    assert_eq!(stats["stats"]["categories"].as_array().unwrap().len(), 8);
    let text = ok(&pricer(&["stats", "items.parquet"], dir));
    assert!(text.contains("Automotive") && text.contains("price histogram"));

    ok(&pricer(
        &[
            "sample",
            "items.parquet",
            "--preset",
            "original",
            "--train",
            "800",
            "--test",
            "100",
            "--out-dir",
            "a",
            "--format",
            "jsonl",
        ],
        dir,
    ));
    ok(&pricer(&["sample", "items.parquet", "--recipe", "a/recipe.json", "--out-dir", "b", "--format", "jsonl"], dir));
    for f in ["train.jsonl", "test.jsonl"] {
        assert_eq!(std::fs::read(dir.join("a").join(f)).unwrap(), std::fs::read(dir.join("b").join(f)).unwrap());
    }
    assert_eq!(std::fs::read_to_string(dir.join("a/train.jsonl")).unwrap().lines().count(), 800);
    let o = pricer(&["sample", "items.parquet", "--preset", "lite", "--out-dir", "lite", "--format", "csv"], dir);
    ok(&o);
    let mut rdr = csv::Reader::from_path(dir.join("lite/train.csv")).unwrap();
    assert!(rdr.records().all(|r| &r.unwrap()[1] == "Appliances"));

    ok(&pricer(&["export", "items.parquet", "--format", "openai", "--out", "chat.jsonl"], dir));
    assert_eq!(std::fs::read_to_string(dir.join("chat.jsonl")).unwrap().lines().count() as u64, kept);

    std::fs::write(dir.join("preds.csv"), "truth,guess\n100,110\n50,200\n10,5\n300,200\n").unwrap();
    let line = ok(&pricer(&["score", "preds.csv", "--title", "Hand"], dir));
    assert_eq!(line.trim(), "Hand Error=$66.25 RMSLE=0.78 Hits=50.0%");
    assert!(std::fs::read_to_string(dir.join("preds.scored.csv")).unwrap().contains("green"));
}

#[test]
fn bad_input_exits_non_zero_with_a_clear_message() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let fails = |args: &[&str], needle: &str| {
        let o = pricer(args, dir);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    fails(&["curate", "missing.jsonl", "--out", "x.jsonl"], "missing.jsonl: no such file");
    std::fs::write(dir.join("junk.jsonl"), "not json\n{also not\n").unwrap();
    fails(&["curate", "junk.jsonl", "--out", "x.jsonl"], "no line of the input could be parsed");
    assert!(!dir.join("x.jsonl").exists());
    fails(&["stats", "junk.jsonl"], "holds no items");
    std::fs::write(dir.join("items.jsonl"), "{\"title\":\"t\",\"category\":\"C\",\"price\":3.0,\"prompt\":\"p\"}\n")
        .unwrap();
    fails(&["export", "items.jsonl", "--format", "xml", "--out", "o"], "unknown format `xml`");
    fails(&["sample", "items.jsonl", "--preset", "fancy", "--out-dir", "o"], "unknown preset `fancy`");
    fails(&["score", "items.jsonl"], "`truth` and `guess`");
    fails(&["frobnicate"], "unrecognized subcommand");
}

#[test]
fn every_subcommand_has_help() {
    let d = tempfile::tempdir().unwrap();
    for sub in ["demo", "curate", "stats", "sample", "export", "score", "download"] {
        let out = ok(&pricer(&[sub, "--help"], d.path()));
        assert!(out.contains("Usage: pricer"), "{sub}: {out}");
    }
}
