//! `pricer export-run --to axolotl`: the YAML and data against golden files, the data's tokens
//! against what axolotl tokenizes (tools/axolotl_tokens.py, the Python tokenizers library), and
//! the price segment on a token boundary for every real prompt.

use pricer::finetune::axolotl::{ExportOptions, export, segments};
use pricer::finetune::config::SeqLen;
use pricer::finetune::tokenize::{ModelTokenizer, encode_prompt};
use pricer::finetune::{Objective, TrainConfig};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/axolotl")
}

fn llama() -> ModelTokenizer {
    let t = pricer::tokenizer::PriceTokenizer::llama31().unwrap();
    ModelTokenizer::from_tokenizer(t.inner().unwrap().clone())
}

/// The run the golden files were written from: the original's base (Llama 3.1 8B, QLoRA) on the
/// 300 demo lines of the fixtures, short sequences so that descriptions are cut.
fn golden_cfg() -> TrainConfig {
    TrainConfig {
        model: "meta-llama/Llama-3.1-8B".into(),
        train: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo_300.jsonl"),
        val_items: 20,
        name: Some("golden".into()),
        max_seq_len: SeqLen::Tokens(96),
        epochs: 2.0,
        grad_accum: 2,
        learning_rate: 2e-4,
        ..TrainConfig::default()
    }
}

fn export_golden(dir: &Path) -> pricer::finetune::axolotl::ExportReport {
    let opts = ExportOptions { qlora: true, gpus: "H100:2".into(), ..Default::default() };
    export(&golden_cfg(), dir, &opts, &Default::default()).unwrap()
}

#[test]
fn the_axolotl_export_matches_its_golden_files() {
    let tmp = tempfile::tempdir().unwrap();
    let r = export_golden(tmp.path());
    assert_eq!(r.base_model, "meta-llama/Llama-3.1-8B");
    assert_eq!(r.sequence_len, 96);
    assert!(r.shortened > 0 && r.val == 20 && r.train > 100, "{r:?}");
    let bless = std::env::var_os("PRICER_BLESS").is_some();
    for f in ["axolotl.yaml", "train.jsonl", "val.jsonl", "sky.yaml", "train.sbatch"] {
        let got = std::fs::read_to_string(tmp.path().join(f)).unwrap();
        let golden = golden_dir().join(f);
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap();
        assert!(got == want, "{f} differs from {} (PRICER_BLESS=1 rewrites it)", golden.display());
    }
    let yaml = std::fs::read_to_string(tmp.path().join("axolotl.yaml")).unwrap();
    for key in [
        "base_model: \"meta-llama/Llama-3.1-8B\"",
        "adapter: qlora",
        "load_in_4bit: true",
        "lora_r: 32",
        "lora_alpha: 64",
        "lora_dropout: 0.1",
        "sequence_len: 96",
        "train_on_inputs: false",
        "type: input_output",
        "gradient_accumulation_steps: 2",
        "num_epochs: 2",
        "learning_rate: 0.0002",
        "lr_scheduler: cosine",
        "warmup_ratio: 0.03",
        "max_grad_norm: 0.3",
        "seed: 42",
    ] {
        assert!(yaml.contains(key), "axolotl.yaml lacks {key}:\n{yaml}");
    }
    assert!(std::fs::read_to_string(tmp.path().join("train.sbatch")).unwrap().contains("--gpus-per-node=2"));
}

/// What axolotl trains on (the golden token file, made from the golden data by the Python
/// tokenizers library as axolotl's input_output strategy tokenizes) is exactly what our trainer
/// trains on: the same ids, and the loss on the same (price) tokens.
#[test]
fn axolotl_tokenizes_the_export_into_our_trainers_examples() {
    let tmp = tempfile::tempdir().unwrap();
    export_golden(tmp.path());
    let tok = llama();
    let cfg = golden_cfg();
    let (train, _) = pricer::finetune::train::run_items(&cfg, &mut std::io::sink(), &Default::default()).unwrap();
    let theirs = std::fs::read_to_string(golden_dir().join("train.tokens.jsonl")).unwrap();
    let theirs: Vec<serde_json::Value> = theirs.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(theirs.len(), train.len());
    let (mut cut, mut same) = (0, 0);
    for ((prompt, price), t) in train.iter().zip(&theirs) {
        let ex = encode_prompt(&tok, prompt, *price, 96).unwrap();
        let ids: Vec<u32> = t["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let labels: Vec<i64> = t["labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let first_label = labels.iter().position(|&l| l != -100).unwrap();
        cut += usize::from(ex.truncated);
        same += usize::from(ids == ex.ids && first_label == ex.price_start);
        assert_eq!(&ids[first_label..], &ex.ids[ex.price_start..], "price tokens of {prompt:.60}");
        assert!(ids.len() <= 96, "axolotl would drop a sequence of {} tokens (sequence_len 96)", ids.len());
    }
    assert!(cut > 0, "the golden run cuts descriptions");
    // An uncut prompt is always identical; a cut one differs only where the cut falls inside a
    // word that re-tokenizes differently on its own (the price tokens are the same regardless).
    eprintln!("{same} of {} identical, {cut} cut", train.len());
    assert!(same + cut / 10 >= train.len(), "{same} of {} examples identical ({cut} cut)", train.len());
}

/// On every real prompt, with the Llama 3.1 tokenizer: the two segments tokenized apart give the
/// tokens of the whole text (the boundary is a token boundary), the price segment's tokens are
/// our trainer's price tokens, and an uncut prompt's tokens are all ours.
#[test]
fn the_price_segment_starts_on_a_token_boundary_for_every_real_prompt() {
    let Some(src) = crate::common::real_data("curated_items.jsonl") else { return };
    let (table, _) = pricer::items_io::read_items(&src).unwrap();
    let tok = llama();
    let enc = |s: &str| tok.tok.encode(s, false).unwrap().get_ids().to_vec();
    let mut differ = 0;
    let mut cut = 0;
    for i in 0..table.len() {
        let it = table.get(i);
        let (input, output, shortened) = segments(&tok, it.prompt, 120).unwrap();
        let (a, b) = (enc(&input), enc(&output));
        let whole = enc(&format!("{input}{output}"));
        assert_eq!([a.clone(), b.clone()].concat(), whole, "segment boundary inside a token: {:.80}", it.prompt);
        let ex = encode_prompt(&tok, it.prompt, it.price, 120).unwrap();
        assert_eq!(b, ex.ids[ex.price_start..], "price tokens of {:.80}", it.prompt);
        cut += usize::from(shortened);
        if !shortened {
            assert_eq!(a, ex.ids[..ex.price_start], "prompt tokens of {:.80}", it.prompt);
        } else {
            differ += usize::from(a != ex.ids[..ex.price_start]);
        }
    }
    eprintln!("{} real prompts, {cut} cut at 120 tokens, {differ} of those re-tokenize differently", table.len());
    assert!(cut > 500, "120 tokens cuts many real prompts ({cut})");
    // Where the cut falls inside a word, that word's first part may re-tokenize differently alone
    // (the price tokens never do): measured 785 of 5,732 (14%), each a token or two at the cut.
    assert!(differ * 5 <= cut, "{differ} of {cut} cut prompts re-tokenize differently");
}

#[test]
fn a_regression_run_or_an_unknown_gguf_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = TrainConfig { objective: Objective::Regression, ..golden_cfg() };
    let e = export(&reg, tmp.path(), &Default::default(), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("regression"), "{e}");
    let gguf = tmp.path().join("mystery.gguf");
    std::fs::write(&gguf, b"not a model").unwrap();
    let unknown = TrainConfig { model: gguf.display().to_string(), ..golden_cfg() };
    let e = export(&unknown, tmp.path(), &Default::default(), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("--base-model"), "{e}");
    assert!(!tmp.path().join("axolotl.yaml").exists(), "nothing written on error");
}

#[test]
fn the_cli_writes_the_same_export() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("run.toml");
    std::fs::write(&config, golden_cfg().to_toml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricer"))
        .args(["export-run", config.to_str().unwrap(), "--to", "axolotl", "--qlora", "--gpus", "H100:2"])
        .arg(tmp.path().join("ax"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("axolotl train axolotl.yaml"), "{stderr}");
    for f in ["axolotl.yaml", "train.jsonl", "val.jsonl"] {
        let got = std::fs::read_to_string(tmp.path().join("ax").join(f)).unwrap();
        assert_eq!(got, std::fs::read_to_string(golden_dir().join(f)).unwrap(), "{f}");
    }
}
