//! Fine-tuning: a tiny random-initialised Llama (built here, with the Llama 3.1 tokenizer) trains
//! with LoRA; the real SmolLM2-135M (fetched by scripts/fetch-assets.sh) loads and runs; a short
//! real run goes end to end through the CLI.

use candle_core::{DType, Device, Tensor};
use pricer::finetune::model::KvCache;
use pricer::finetune::run::{checkpoints, files, read_metrics};
use pricer::finetune::tokenize::{ModelTokenizer, encode_prompt};
use pricer::finetune::{LlamaConfig, Model, Outcome, Predictor, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

fn tiny_cfg() -> LlamaConfig {
    LlamaConfig {
        model_type: "llama".into(),
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        vocab_size: 128_256,
        rms_norm_eps: 1e-5,
        rope_theta: 500_000.0,
        tie_word_embeddings: true,
        attention_bias: false,
    }
}

fn llama_tokenizer() -> ModelTokenizer {
    let t = pricer::tokenizer::PriceTokenizer::llama31().unwrap();
    ModelTokenizer::from_tokenizer(t.inner().unwrap().clone())
}

/// A tiny random model saved as a Hugging Face folder.
pub fn tiny_model_dir(root: &Path) -> PathBuf {
    let dir = root.join("tiny-llama");
    let mut m = Model::random(tiny_cfg(), llama_tokenizer(), 7, &Device::Cpu).unwrap();
    // Larger (tied) embeddings than the 0.02 init, so that a 32-wide model can express
    // confident next tokens at all.
    m.embed = (&m.embed * 10.0).unwrap();
    m.lm_head = m.embed.clone();
    m.save_hf_dir(&dir).unwrap();
    dir
}

/// The first `n` real curated items written to a JSONL file.
pub fn real_items(root: &Path, name: &str, skip: usize, n: usize) -> Option<PathBuf> {
    let src = crate::common::real_data("curated_items.jsonl")?;
    let (table, _) = pricer::items_io::read_items(&src).unwrap();
    let idx: Vec<usize> = (skip..skip + n).collect();
    let out = root.join(name);
    pricer::items_io::write_items(&table.select(&idx), &out).unwrap();
    Some(out)
}

pub fn tiny_run_cfg(root: &Path, model: &Path, train: &Path, name: &str) -> TrainConfig {
    TrainConfig {
        model: model.display().to_string(),
        train: train.to_owned(),
        val_items: 2,
        runs_dir: root.join("runs"),
        name: Some(name.into()),
        lora: pricer::finetune::LoraConfig { r: 4, alpha: 8.0, dropout: 0.1, ..Default::default() },
        max_steps: Some(6),
        batch_size: 2,
        learning_rate: 1e-2,
        warmup_ratio: 0.0,
        max_grad_norm: 1.0,
        max_seq_len: pricer::finetune::config::SeqLen::Tokens(96),
        eval_every: 3,
        save_every: 3,
        log_every: 1,
        ..Default::default()
    }
}

fn weights(m: &Model) -> Vec<Vec<f32>> {
    let mut v = vec![m.embed.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
    for l in &m.layers {
        for p in &l.proj {
            v.push(p.w.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
        v.push(l.attn_norm.to_vec1::<f32>().unwrap());
    }
    v
}

#[test]
fn lora_training_lowers_the_loss_and_changes_only_the_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 10) else { return };
    let mut cfg = tiny_run_cfg(tmp.path(), &model, &train, "falls");
    cfg.max_steps = Some(60);
    cfg.batch_size = 8;
    cfg.learning_rate = 1e-2;
    cfg.lora.target_modules =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec();
    cfg.lora.dropout = 0.0;
    cfg.eval_every = 0;
    cfg.save_every = 0;
    let mut t = Trainer::create(cfg).unwrap();
    let base_before = weights(&t.model);
    let lora_before: Vec<Vec<f32>> =
        t.lora.vars().iter().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
    let first = t.validation_loss().unwrap().unwrap();
    assert_eq!(t.run(&|| false).unwrap(), Outcome::Finished);
    let rows = read_metrics(&t.run_dir);
    let train_losses: Vec<f64> = rows.iter().filter_map(|r| r.train_loss).collect();
    assert_eq!(train_losses.len(), 60);
    let head: f64 = train_losses[..3].iter().sum::<f64>() / 3.0;
    let tail: f64 = train_losses[57..].iter().sum::<f64>() / 3.0;
    assert!(tail < head * 0.75, "training loss fell from {head:.3} to only {tail:.3}");
    // Base weights are bit-identical; every adapter matrix B moved away from its zero init.
    assert!(weights(&t.model) == base_before, "base weights changed");
    let lora_after: Vec<Vec<f32>> =
        t.lora.vars().iter().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
    for (i, (a, b)) in lora_before.iter().zip(&lora_after).enumerate() {
        assert_ne!(a, b, "adapter variable {i} did not change");
    }
    assert!(first.is_finite());
}

#[test]
fn a_stopped_and_resumed_run_continues_the_same_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 12) else { return };
    // Uninterrupted.
    let mut a = Trainer::create(tiny_run_cfg(tmp.path(), &model, &train, "straight")).unwrap();
    assert_eq!(a.run(&|| false).unwrap(), Outcome::Finished);
    let straight = read_metrics(&a.run_dir);
    // Stopped through the STOP file after step 2 (a checkpoint is written), then resumed.
    let mut b = Trainer::create(tiny_run_cfg(tmp.path(), &model, &train, "resumed")).unwrap();
    let run_dir = b.run_dir.clone();
    let stop_file = run_dir.join(files::STOP);
    let outcome = b
        .run(&|| {
            let done = read_metrics(&run_dir).iter().filter(|r| r.train_loss.is_some()).count();
            if done == 2 {
                std::fs::write(&stop_file, b"").unwrap();
            }
            false
        })
        .unwrap();
    assert_eq!(outcome, Outcome::Stopped);
    assert_eq!(checkpoints(&run_dir).last().unwrap().0, 2, "stop writes a checkpoint of the last step");
    assert_eq!(pricer::finetune::run::read_status(&run_dir).unwrap().state, pricer::finetune::RunState::Stopped);
    // A half-written checkpoint (no trainer_state.json) is never taken for a good one.
    std::fs::create_dir_all(run_dir.join("checkpoints/checkpoint-5")).unwrap();
    std::fs::write(run_dir.join("checkpoints/checkpoint-5/adapter_model.safetensors"), b"torn").unwrap();
    drop(b);
    let mut c = Trainer::resume(&run_dir, None).unwrap();
    assert_eq!(c.state.step, 2);
    assert_eq!(c.run(&|| false).unwrap(), Outcome::Finished);
    let resumed = read_metrics(&run_dir);
    let losses = |rows: &[pricer::finetune::run::MetricRow]| -> Vec<(usize, f64)> {
        rows.iter().filter_map(|r| r.train_loss.map(|l| (r.step, l))).collect()
    };
    let (s, r) = (losses(&straight), losses(&resumed));
    assert_eq!(s.len(), 6);
    assert_eq!(r.len(), 6, "the resumed curve has each step once");
    for ((s1, l1), (s2, l2)) in s.iter().zip(&r) {
        assert_eq!(s1, s2);
        assert!((l1 - l2).abs() < 1e-6, "step {s1}: {l1} uninterrupted vs {l2} resumed");
    }
    let vals =
        |rows: &[pricer::finetune::run::MetricRow]| -> Vec<f64> { rows.iter().filter_map(|r| r.val_loss).collect() };
    let (vs, vr) = (vals(&straight), vals(&resumed));
    assert_eq!(vs.len(), vr.len());
    for (x, y) in vs.iter().zip(&vr) {
        assert!((x - y).abs() < 1e-6);
    }
}

#[test]
fn a_run_on_the_top_layer_only_reuses_the_frozen_layers_over_epochs_and_resumes_on_the_same_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 10) else { return };
    let cfg = |name: &str| {
        let mut cfg = tiny_run_cfg(tmp.path(), &model, &train, name);
        cfg.lora.layers_to_transform = vec![1];
        cfg.batch_size = 4;
        cfg.max_steps = None;
        cfg.epochs = 3.0;
        cfg.objective = pricer::finetune::Objective::Regression;
        cfg
    };
    // 8 training items, 2 steps per epoch: from the second epoch on every batch is cached.
    let mut a = Trainer::create(cfg("straight")).unwrap();
    assert_eq!(a.state.total_steps, 6);
    assert_eq!(a.run(&|| false).unwrap(), Outcome::Finished);
    let log = std::fs::read_to_string(a.run_dir.join("train.log")).unwrap();
    assert!(log.contains("LoRA on layers 1–1 of 2: layers 0–0 are frozen"), "{log}");
    let ck = checkpoints(&a.run_dir).last().unwrap().1.clone();
    let adapter: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(adapter["layers_to_transform"], serde_json::json!([1]));
    let saved = candle_core::safetensors::load(ck.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    assert!(saved.keys().all(|k| k.contains(".layers.1.")), "{:?}", saved.keys());
    let straight = read_metrics(&a.run_dir);
    // Stopped after step 3 (mid-epoch), resumed with an empty cache: the same losses.
    let mut b = Trainer::create(cfg("resumed")).unwrap();
    let run_dir = b.run_dir.clone();
    let stop_file = run_dir.join(files::STOP);
    let outcome = b
        .run(&|| {
            if read_metrics(&run_dir).iter().filter(|r| r.train_loss.is_some()).count() == 3 {
                std::fs::write(&stop_file, b"").unwrap();
            }
            false
        })
        .unwrap();
    assert_eq!(outcome, Outcome::Stopped);
    drop(b);
    let mut c = Trainer::resume(&run_dir, None).unwrap();
    assert_eq!(c.run(&|| false).unwrap(), Outcome::Finished);
    let losses = |rows: &[pricer::finetune::run::MetricRow]| -> Vec<(usize, f64)> {
        rows.iter().filter_map(|r| r.train_loss.map(|l| (r.step, l))).collect()
    };
    let (s, r) = (losses(&straight), losses(&read_metrics(&run_dir)));
    assert_eq!(s.len(), 6);
    assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), r.iter().map(|x| x.0).collect::<Vec<_>>());
    for ((step, l1), (_, l2)) in s.iter().zip(&r) {
        assert!(l1.is_finite() && (l1 - l2).abs() < 1e-5 * l1.abs().max(1.0), "step {step}: {l1} vs {l2}");
    }
}

#[test]
fn the_adapter_follows_peft_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 8) else { return };
    let mut cfg = tiny_run_cfg(tmp.path(), &model, &train, "peft");
    cfg.max_steps = Some(1);
    cfg.lora.target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"].map(String::from).to_vec();
    let mut t = Trainer::create(cfg).unwrap();
    t.run(&|| false).unwrap();
    let (_, ck) = checkpoints(&t.run_dir).pop().unwrap();
    let tensors = candle_core::safetensors::load(ck.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let c = tiny_cfg();
    let kv = c.num_key_value_heads * c.head_dim();
    let expect = [
        ("self_attn.q_proj", 32, 32),
        ("self_attn.k_proj", kv, 32),
        ("self_attn.v_proj", kv, 32),
        ("self_attn.o_proj", 32, 32),
        ("mlp.down_proj", 32, 64),
    ];
    assert_eq!(tensors.len(), 2 * 2 * expect.len());
    for layer in 0..2 {
        for (module, out, inp) in expect {
            let a = &tensors[&format!("base_model.model.model.layers.{layer}.{module}.lora_A.weight")];
            let b = &tensors[&format!("base_model.model.model.layers.{layer}.{module}.lora_B.weight")];
            assert_eq!(a.dims(), [4, inp], "{module} A");
            assert_eq!(b.dims(), [out, 4], "{module} B");
            assert_eq!(a.dtype(), DType::F32);
        }
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]));
    // And it loads back into the same numbers.
    let back = pricer::finetune::Lora::load_peft(&ck, &t.model.cfg, &Device::Cpu).unwrap();
    for (x, y) in back.vars().iter().zip(t.lora.vars()) {
        let d = (x.as_tensor() - y.as_tensor()).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0);
    }
}

#[test]
fn the_loss_is_only_on_the_price_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 8) else { return };
    let t = Trainer::create(tiny_run_cfg(tmp.path(), &model, &train, "mask")).unwrap();
    let ex = &t.train[0];
    let price_text = t.model.tokenizer.decode(&ex.ids[ex.price_start..]);
    assert!(price_text.ends_with(".00") && price_text.trim_end_matches(".00").parse::<u32>().is_ok(), "{price_text:?}");
    assert!(t.model.tokenizer.decode(&ex.ids[..ex.price_start]).ends_with("Price is $"));
    let (loss, _) = t.batch_loss(&[ex], None).unwrap();
    let loss = loss.to_scalar::<f32>().unwrap() as f64;
    // Cross-entropy over every position, by hand from full logits.
    let ids = Tensor::from_slice(&ex.ids, (1, ex.ids.len()), &Device::Cpu).unwrap();
    let h = t.model.hidden(&ids, Some(&t.lora), None, None).unwrap().squeeze(0).unwrap();
    let logits = t.model.logits(&t.model.final_norm(&h).unwrap()).unwrap();
    let logp = candle_nn_free_log_softmax(&logits);
    let nll = |p: usize| -(logp[p][ex.ids[p + 1] as usize] as f64);
    let n = ex.ids.len();
    let price_only: f64 = (ex.price_start - 1..n - 1).map(nll).sum::<f64>() / (n - ex.price_start) as f64;
    let everything: f64 = (0..n - 1).map(nll).sum::<f64>() / (n - 1) as f64;
    assert!((loss - price_only).abs() < 1e-4 * price_only, "loss {loss} vs price-only {price_only}");
    assert!((loss - everything).abs() > 1e-2, "the prompt tokens would not change the loss");
}

fn candle_nn_free_log_softmax(logits: &Tensor) -> Vec<Vec<f32>> {
    let rows = logits.to_vec2::<f32>().unwrap();
    rows.into_iter()
        .map(|r| {
            let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = r.iter().map(|x| (x - m).exp()).sum::<f32>().ln() + m;
            r.into_iter().map(|x| x - lse).collect()
        })
        .collect()
}

#[test]
fn truncation_shortens_the_description_and_keeps_the_price() {
    let tok = llama_tokenizer();
    let prompt = format!(
        "How much does this cost to the nearest dollar?\n\n{}\n\nPrice is $123.00",
        "word ".repeat(300).trim_end()
    );
    let ex = encode_prompt(&tok, &prompt, 123.0, 40).unwrap();
    assert!(ex.truncated);
    // `123.00` takes the room kept for a price (`100.00`, 3 tokens), so the sequence is 40 long.
    assert_eq!(tok.price_room, 3);
    assert_eq!(ex.ids.len(), 40);
    assert_eq!(tok.decode(&ex.ids[ex.price_start..]), "123.00");
    assert!(tok.decode(&ex.ids).contains("\n\nPrice is $123.00"));
    assert!(encode_prompt(&tok, &prompt, 123.0, 6).is_err(), "too short for the price part");
    let test = encode_prompt(&tok, pricer::items::test_prompt(&prompt), 0.0, 40).unwrap();
    assert_eq!(test.price_start, test.ids.len());
    assert!(tok.decode(&test.ids).ends_with("Price is $"));
}

#[test]
fn top3_weighted_decode_reads_number_tokens() {
    let tok = llama_tokenizer();
    assert!(tok.number_tokens, "Llama 3 has one token per number");
    let mut logits = vec![0f32; 128_256];
    let id = |s: &str| tok.tok.token_to_id(s).unwrap();
    logits[id("abc") as usize] = 10.0; // likeliest, not a number: skipped
    logits[id("100") as usize] = 9.0;
    logits[id("200") as usize] = 9.0;
    logits[id("400") as usize] = 8.0;
    logits[id("900") as usize] = 1.0; // fourth number: not used
    let got = pricer::finetune::predict::top_k_weighted(&logits, 3, |i| tok.decode_one(i));
    let e = 1f64.exp();
    let want = (100.0 * e + 200.0 * e + 400.0) / (2.0 * e + 1.0);
    assert!((got - want).abs() < 1e-3, "{got} vs {want}");
}

#[test]
fn kv_cache_gives_the_same_logits_as_a_full_pass() {
    let m = Model::random(tiny_cfg(), llama_tokenizer(), 3, &Device::Cpu).unwrap();
    let ids: Vec<u32> = vec![128_000, 791, 6864, 315, 9822, 374];
    let full = m.next_token_logits(&ids, None, None).unwrap();
    let mut cache = KvCache::new(2);
    m.next_token_logits(&ids[..4], None, Some(&mut cache)).unwrap();
    m.next_token_logits(&ids[4..5], None, Some(&mut cache)).unwrap();
    let step = m.next_token_logits(&ids[5..], None, Some(&mut cache)).unwrap();
    let diff = full.iter().zip(&step).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-4, "max difference {diff}");
}

#[test]
fn regression_objective_trains_a_price_head() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 10) else { return };
    let mut cfg = tiny_run_cfg(tmp.path(), &model, &train, "regression");
    cfg.objective = pricer::finetune::Objective::Regression;
    cfg.max_steps = Some(30);
    cfg.batch_size = 8;
    cfg.learning_rate = 3e-2;
    cfg.lora.dropout = 0.0;
    cfg.eval_every = 0;
    let mut t = Trainer::create(cfg).unwrap();
    t.run(&|| false).unwrap();
    let losses: Vec<f64> = read_metrics(&t.run_dir).iter().filter_map(|r| r.train_loss).collect();
    assert!(losses[27..].iter().sum::<f64>() < losses[..3].iter().sum::<f64>() * 0.5, "{losses:?}");
    let (_, ck) = checkpoints(&t.run_dir).pop().unwrap();
    assert!(ck.join("price_head.safetensors").is_file());
    let m = Model::from_hf_dir(&model, &Device::Cpu).unwrap();
    let p = Predictor::from_checkpoint(m, Some(&ck), 96).unwrap();
    assert_eq!(p.decode, pricer::finetune::Decode::Regression);
    let (table, _) = pricer::items_io::read_items(&train).unwrap();
    let guess = p.predict(table.get(0).prompt).unwrap();
    assert!(guess > 0.0 && guess.is_finite());
}

fn smollm2() -> Option<Model> {
    let path = crate::common::model_file()?;
    Some(Model::from_gguf(&path, &Device::Cpu).unwrap())
}

#[test]
fn real_smollm2_loads_from_gguf_and_continues_plain_english() {
    let Some(m) = smollm2() else { return };
    assert_eq!(m.cfg.num_hidden_layers, 30);
    assert_eq!(m.cfg.hidden_size, 576);
    assert_eq!((m.cfg.num_attention_heads, m.cfg.num_key_value_heads), (9, 3));
    assert!(!m.tokenizer.number_tokens, "SmolLM2 splits numbers into digits");
    assert_eq!(m.tokenizer.tok.encode("123", false).unwrap().get_ids().len(), 3);
    let (ids, _) = m.tokenizer.encode_with_offsets("The capital of France is").unwrap();
    let logits = m.next_token_logits(&ids, None, None).unwrap();
    let best = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
    assert_eq!(m.tokenizer.decode_one(best).trim(), "Paris");
}

#[test]
fn a_short_real_run_trains_checkpoints_and_evaluates_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(_) = smollm2() else { return };
    let Some(_) = real_items(tmp.path(), "train.jsonl", 0, 32) else { return };
    let Some(_) = real_items(tmp.path(), "val.jsonl", 100, 4) else { return };
    let Some(test) = real_items(tmp.path(), "test.jsonl", 200, 4) else { return };
    let config = tmp.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "model = {:?}\ntrain = \"train.jsonl\"\nvalidation = \"val.jsonl\"\nruns_dir = \"runs\"\nname = \"real\"\n\
             max_steps = 4\nbatch_size = 2\nlora = {{ r = 8, alpha = 16.0, dropout = 0.1 }}\n\
             eval_every = 2\nsave_every = 2\nlog_every = 1\n",
            pricer::finetune::model::default_model_path().display().to_string()
        ),
    )
    .unwrap();
    let exe = env!("CARGO_BIN_EXE_pricer");
    let out = std::process::Command::new(exe).args(["train", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = tmp.path().join("runs/real");
    let rows = read_metrics(&run);
    assert_eq!(rows.iter().filter(|r| r.train_loss.is_some()).count(), 4);
    assert_eq!(rows.iter().filter(|r| r.val_loss.is_some()).count(), 3, "at steps 0, 2 and 4");
    assert!(rows.iter().all(|r| r.train_loss.is_none_or(|l| l.is_finite() && l > 0.0)));
    assert_eq!(checkpoints(&run).iter().map(|c| c.0).collect::<Vec<_>>(), vec![2, 4]);
    assert!(std::fs::read_to_string(run.join(files::LOG)).unwrap().contains("finished"));
    let out =
        std::process::Command::new(exe).args(["eval", "--run"]).arg(&run).arg("--test").arg(&test).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with("real/checkpoint-4 Error=$") && line.contains("RMSLE=") && line.contains("Hits="),
        "{line}"
    );
    let csv = std::fs::read_to_string(run.join("eval-checkpoint-4.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "header + 4 items");
    // The run's evaluation is an evaluation like every pricer's: `pricer compare` reads it.
    let e = pricer::evaluation::Evaluation::load(&run.join("eval-checkpoint-4.json")).unwrap();
    assert!(matches!(&e.spec, pricer::evaluation::PricerSpec::Run { checkpoint: Some(c), .. } if c == "checkpoint-4"));
    assert_eq!((e.metrics.n, e.line.as_str()), (4, line.trim()));
    assert_eq!(e.test.digest, pricer::evaluation::file_digest(&test).unwrap());
}

#[test]
fn models_download_from_a_hub_layout_and_offline_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_model_dir(tmp.path());
    let files: Vec<(String, Vec<u8>)> = ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .map(|f| ((*f).to_owned(), std::fs::read(dir.join(f)).unwrap()))
        .collect();
    let hub = crate::hub::fake_hub_at("/acme/tiny-llama/resolve/main/", files);
    let opts = pricer::hub::HubOptions {
        endpoint: Some(hub.endpoint.clone()),
        cache_dir: Some(tmp.path().join("cache")),
        token: None,
    };
    let got = pricer::finetune::model::download_model("acme/tiny-llama", &opts, &Default::default()).unwrap();
    assert!(got.starts_with(tmp.path().join("cache")));
    let m = Model::from_hf_dir(&got, &Device::Cpu).unwrap();
    assert_eq!(m.cfg, tiny_cfg());
    let offline = pricer::hub::HubOptions {
        endpoint: Some("http://127.0.0.1:9".into()),
        cache_dir: Some(tmp.path().join("cache2")),
        token: None,
    };
    let err = pricer::finetune::model::download_model("acme/tiny-llama", &offline, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("cannot be reached"), "{err}");
}

#[test]
fn qwen2_biases_load_and_gradient_accumulation_counts_micro_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LlamaConfig { model_type: "qwen2".into(), attention_bias: true, ..tiny_cfg() };
    let m = Model::random(cfg.clone(), llama_tokenizer(), 11, &Device::Cpu).unwrap();
    let dir = tmp.path().join("tiny-qwen2");
    m.save_hf_dir(&dir).unwrap();
    let back = Model::from_hf_dir(&dir, &Device::Cpu).unwrap();
    assert_eq!(back.cfg, cfg);
    let b = back.layers[0].proj[0].b.as_ref().expect("q_proj bias");
    assert_eq!(b.dims(), [32]);
    // The bias is used: the same ids give other logits without it.
    let ids = [128_000u32, 791, 6864];
    let with = back.next_token_logits(&ids, None, None).unwrap();
    let mut no_bias = Model::from_hf_dir(&dir, &Device::Cpu).unwrap();
    for l in &mut no_bias.layers {
        for p in &mut l.proj {
            p.b = None;
        }
    }
    assert_ne!(with, no_bias.next_token_logits(&ids, None, None).unwrap());
    // Two micro-batches of 2 per step over 10 items: 3 steps make an epoch.
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 12) else { return };
    let mut rc = tiny_run_cfg(tmp.path(), &dir, &train, "accum");
    rc.max_steps = None;
    rc.epochs = 1.0;
    rc.grad_accum = 2;
    rc.eval_every = 0;
    let mut t = Trainer::create(rc).unwrap();
    assert_eq!(t.train.len(), 10);
    assert_eq!(t.state.total_steps, 3);
    t.run(&|| false).unwrap();
    assert_eq!(t.state.micro_batches, 6);
    let rows = read_metrics(&t.run_dir);
    let last = rows.iter().rev().find(|r| r.train_loss.is_some()).unwrap();
    assert!(last.epoch >= 1.0 && last.epoch < 1.3, "epoch {}", last.epoch);
}

#[test]
fn malformed_training_lines_are_skipped_and_logged_with_their_line_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 8) else { return };
    let mut text = std::fs::read_to_string(&train).unwrap();
    text.push_str("{not json\n");
    std::fs::write(&train, text).unwrap();
    let t = Trainer::create(tiny_run_cfg(tmp.path(), &model, &train, "bad-lines")).unwrap();
    assert_eq!(t.train.len() + t.val.len(), 8);
    let log = std::fs::read_to_string(t.run_dir.join(files::LOG)).unwrap();
    assert!(log.contains("1 malformed lines skipped"), "{log}");
    assert!(log.contains(":9"), "the bad line's number is in the log: {log}");
}

/// Loss and every trainable gradient of one batch, through candle's autograd.
pub fn autograd_grads(
    t: &Trainer,
    batch: &[&pricer::finetune::tokenize::Example],
    seed: Option<u64>,
) -> (f64, Vec<Vec<f32>>) {
    let (loss, _) = t.batch_loss(batch, seed).unwrap();
    let store = loss.backward().unwrap();
    let mut vars: Vec<&candle_core::Var> = t.lora.vars();
    if let Some(h) = &t.head {
        vars.extend([&h.w, &h.b]);
    }
    let grads = vars
        .iter()
        .map(|v| store.get(v).map_or(vec![0.0; v.elem_count()], |g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    (loss.to_scalar::<f32>().unwrap() as f64, grads)
}

#[test]
fn the_hand_written_cpu_step_equals_autograd_loss_and_gradients() {
    use pricer::finetune::fast;
    let tmp = tempfile::tempdir().unwrap();
    let llama = tiny_model_dir(tmp.path());
    let qwen_cfg =
        LlamaConfig { model_type: "qwen2".into(), attention_bias: true, num_key_value_heads: 1, ..tiny_cfg() };
    let qwen = tmp.path().join("tiny-qwen2");
    Model::random(qwen_cfg, llama_tokenizer(), 5, &Device::Cpu).unwrap().save_hf_dir(&qwen).unwrap();
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 12) else { return };
    // The third: only the top layer adapted (PEFT's layers_to_transform), so the step stops its
    // backward pass there and can skip the frozen layer below.
    for (name, model, regression, layers) in
        [("lm", &llama, false, vec![]), ("regression", &qwen, true, vec![]), ("top layer", &llama, true, vec![1])]
    {
        let mut cfg = tiny_run_cfg(tmp.path(), model, &train, name);
        cfg.lora.target_modules =
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec();
        cfg.lora.layers_to_transform = layers.clone();
        if regression {
            cfg.objective = pricer::finetune::Objective::Regression;
        }
        let t = Trainer::create(cfg).unwrap();
        assert!(t.hand_written, "CPU runs use the hand-written step");
        let adapted: std::collections::BTreeSet<usize> = t.lora.modules.iter().map(|((l, _), _, _)| *l).collect();
        assert_eq!(
            adapted.into_iter().collect::<Vec<_>>(),
            if layers.is_empty() { vec![0, 1] } else { layers.clone() }
        );
        // B starts at zero (so would every gradient of A) and so does the head: randomise them.
        for (_, _, b) in &t.lora.modules {
            b.set(&Tensor::randn(0f32, 0.05, b.shape(), &Device::Cpu).unwrap()).unwrap();
        }
        if let Some(h) = &t.head {
            h.w.set(&Tensor::randn(0f32, 0.3, h.w.shape(), &Device::Cpu).unwrap()).unwrap();
        }
        // Three sequences of different lengths (descriptions shortened by hand).
        let mut short = t.train[1].clone();
        short.ids.drain(5..45);
        short.price_start -= 40;
        let mut shorter = t.train[2].clone();
        shorter.ids.drain(3..90);
        shorter.price_start -= 87;
        let batch = vec![&t.train[0], &short, &shorter];
        let lens: Vec<usize> = batch.iter().map(|e| e.ids.len()).collect();
        assert!(lens.iter().any(|&l| l != lens[0]), "lengths {lens:?} should differ");
        for seed in [None, Some(99)] {
            let (want_loss, want) = autograd_grads(&t, &batch, seed);
            let mut got = fast::zero_grads(&t.lora, t.head.as_ref());
            let (loss, tokens) =
                fast::loss_and_grads(&t.model, &t.lora, t.head.as_ref(), &batch, seed, Some((&mut got, 1.0))).unwrap();
            assert_eq!(tokens, lens.iter().sum::<usize>());
            assert!(
                (loss - want_loss).abs() < 1e-4 * want_loss.abs().max(1.0),
                "{name} {seed:?}: loss {loss} vs {want_loss}"
            );
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(scale > 0.0, "{name} {seed:?}: gradient {i} is zero");
                let diff = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                // f32 summation order differs; correct results agree to ~1e-6 of the scale.
                assert!(diff <= 2e-5 * scale, "{name} {seed:?}: gradient {i} differs by {diff} (scale {scale})");
            }
            // Without gradients (validation) the same loss.
            let (plain, _) = fast::loss_and_grads(&t.model, &t.lora, t.head.as_ref(), &batch, seed, None).unwrap();
            assert_eq!(plain, loss);
            // The frozen layers' output: kept by a first step, then read instead of recomputed,
            // with the same loss and gradients (none kept when every layer is adapted).
            let mut frozen = vec![None; batch.len()];
            for pass in 0..2 {
                let mut again = fast::zero_grads(&t.lora, t.head.as_ref());
                let step = Some((&mut again[..], 1.0));
                let (l2, _) = fast::loss_and_grads_frozen(
                    &t.model,
                    &t.lora,
                    t.head.as_ref(),
                    &batch,
                    seed,
                    step,
                    Some(&mut frozen),
                )
                .unwrap();
                assert_eq!((l2, &again), (loss, &got), "{name} {seed:?} pass {pass}");
                let kept: Vec<usize> = frozen.iter().map(|f| f.as_ref().map_or(0, |v| v.len())).collect();
                let want: Vec<usize> =
                    if layers.is_empty() { vec![0; 3] } else { lens.iter().map(|l| l * 32).collect() };
                assert_eq!(kept, want, "{name}");
            }
            if !layers.is_empty() {
                // Proof that the cache is read: a poisoned entry changes the loss.
                let mut poisoned = frozen.clone();
                poisoned[0] = Some(std::sync::Arc::new(vec![1.0; lens[0] * 32]));
                let (l3, _) = fast::loss_and_grads_frozen(
                    &t.model,
                    &t.lora,
                    t.head.as_ref(),
                    &batch,
                    seed,
                    None,
                    Some(&mut poisoned),
                )
                .unwrap();
                assert_ne!(l3, loss, "{name}: the cached rows were not used");
            }
        }
    }
}

#[test]
fn the_cli_the_app_and_the_trainer_report_the_same_malformed_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pricer::dataset::load_demo(600, 42, &Default::default()).unwrap();
    let items = tmp.path().join("items.jsonl");
    pricer::items_io::write_items(&data.table.select(&(0..6).collect::<Vec<_>>()), &items).unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string(&items).unwrap().lines().map(str::to_owned).collect();
    lines.insert(2, "{not json".into());
    lines.insert(6, "[1, 2]".into());
    std::fs::write(&items, lines.join("\n") + "\n").unwrap();
    let file = pricer::items_io::ItemsFile::read(&items, &Default::default()).unwrap();
    let expected: Vec<String> = file.malformed.iter().map(ToString::to_string).collect();
    assert_eq!(expected.len(), 2);
    assert!(expected[0].contains("items.jsonl:3:") && expected[1].contains("items.jsonl:7:"), "{expected:?}");
    // The CLI.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricer")).arg("stats").arg(&items).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for e in &expected {
        assert!(stderr.contains(e.as_str()), "the CLI reports {e}: {stderr}");
    }
    // The app's loader.
    let ds = pricer::dataset::load_paths(std::slice::from_ref(&items), &Default::default()).unwrap();
    assert_eq!(ds.report.first_errors, expected);
    assert_eq!(ds.table.len(), 6);
    // The trainer.
    let model = tiny_model_dir(tmp.path());
    let t = Trainer::create(tiny_run_cfg(tmp.path(), &model, &items, "bad-lines")).unwrap();
    assert_eq!(t.train.len() + t.val.len(), 6);
    let log = std::fs::read_to_string(t.run_dir.join(files::LOG)).unwrap();
    for e in &expected {
        assert!(log.contains(e.as_str()), "the trainer logs {e}: {log}");
    }
}

#[test]
fn batched_pricing_gives_the_guesses_of_one_prompt_at_a_time_and_of_candle() {
    use pricer::finetune::Decode;
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(items) = real_items(tmp.path(), "items.jsonl", 0, 6) else { return };
    let (table, _) = pricer::items_io::read_items(&items).unwrap();
    let prompts: Vec<&str> = (0..table.len()).map(|i| table.get(i).prompt).collect();
    let m = Model::from_hf_dir(&model, &Device::Cpu).unwrap();
    let mut p = Predictor::new(m, None, None, 96);
    for decode in [Decode::GreedyDigits, Decode::DigitTop3Weighted, Decode::DigitTree, Decode::DigitTreeMedian] {
        p.decode = decode;
        p.candle_only = false;
        let batched = p.predict_batch(&prompts).unwrap();
        let single: Vec<f64> = prompts.iter().map(|q| p.predict(q).unwrap()).collect();
        p.candle_only = true;
        let candle = p.predict_batch(&prompts).unwrap();
        // The same guesses: within a cent, or 1e-7 of the price for the random model's millions of
        // dollars (the weighted decodes sum probabilities whose last float bits depend on the
        // batch's row count in the matrix products).
        let same = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= (1e-7 * x.abs()).max(0.005));
        assert!(same(&batched, &single), "{decode:?}: batched {batched:?} vs one at a time {single:?}");
        assert!(same(&batched, &candle), "{decode:?}: hand-written {batched:?} vs candle {candle:?}");
        assert!(batched.iter().all(|g| g.is_finite() && *g >= 0.0), "{decode:?}: {batched:?}");
    }
}

#[test]
fn runs_price_their_validation_items_and_auto_length_is_the_longest_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 12) else { return };
    let mut cfg = tiny_run_cfg(tmp.path(), &model, &train, "priced");
    cfg.max_seq_len = pricer::finetune::config::SeqLen::Auto;
    cfg.val_items = 3;
    let mut t = Trainer::create(cfg).unwrap();
    let longest = t.train.iter().map(|e| e.ids.len()).max().unwrap();
    assert_eq!(t.seq_len, longest);
    assert!(t.train.iter().all(|e| !e.truncated));
    let (table, _) = pricer::items_io::read_items(&train).unwrap();
    let all: Vec<&str> = (0..table.len()).map(|i| table.get(i).prompt).collect();
    let report =
        pricer::finetune::train::length_report(&t.model.tokenizer, &all, pricer::finetune::config::SeqLen::Auto)
            .unwrap();
    // The report counts the room kept for a price; the run's longest holds the actual price.
    assert!(report.longest.abs_diff(longest) <= 2 && report.shortened == 0, "{report:?} vs {longest}");
    let capped = pricer::finetune::train::length_report(
        &t.model.tokenizer,
        &all,
        pricer::finetune::config::SeqLen::Tokens(report.longest - 10),
    )
    .unwrap();
    assert!(capped.shortened >= 1 && capped.max_cut >= 10, "{capped:?}");
    assert_eq!(t.run(&|| false).unwrap(), Outcome::Finished);
    let priced: Vec<_> = read_metrics(&t.run_dir).into_iter().filter(|r| r.val_error.is_some()).collect();
    // Steps 0, 3 and 6 validate; each row prices the 3 validation items.
    assert_eq!(priced.iter().map(|r| r.step).collect::<Vec<_>>(), vec![0, 3, 6]);
    assert!(priced.iter().all(|r| r.val_rmsle.is_some() && r.val_hits.is_some_and(|h| (0.0..=100.0).contains(&h))));
    let best = pricer::pricers::run::checkpoint_dir(&t.run_dir, Some("best")).unwrap();
    let want = run_best(&t.run_dir);
    assert_eq!(best, want);
}

fn run_best(dir: &Path) -> PathBuf {
    pricer::finetune::run::best_checkpoint(dir, pricer::finetune::run::BestBy::Error).unwrap().1
}

/// A long description with the given price.
fn long_prompt(price: &str) -> String {
    let words: Vec<String> = (0..120).map(|i| format!("word{i}")).collect();
    format!("How much does this cost to the nearest dollar?\n\nA lamp\n{}\n\nPrice is ${price}", words.join(" "))
}

/// Issue 12's label leak: the description must be cut at the same token whatever the price, or
/// where `$` sits tells the model how many digits the price has.
fn assert_cut_ignores_the_price(tok: &ModelTokenizer, cheap: &str, dear: &str) {
    use pricer::finetune::tokenize::{encode_for_pricing, encode_prompt};
    let (a, b) = (long_prompt(cheap), long_prompt(dear));
    let (ea, eb) = (encode_prompt(tok, &a, 9.0, 64).unwrap(), encode_prompt(tok, &b, 999.0, 64).unwrap());
    assert!(ea.truncated && eb.truncated);
    assert!(ea.ids.len() - ea.price_start < eb.ids.len() - eb.price_start, "the dear price has more tokens");
    assert_eq!(ea.ids[..ea.price_start], eb.ids[..eb.price_start], "same tokens before the price");
    assert_eq!(ea.price_start + tok.price_room, 64, "the cut keeps room for a typical price");
    assert_eq!(tok.decode(&eb.ids[eb.price_start..]), dear);
    // Pricing reads what training read, for the test prompt and for the full prompt alike.
    let test = encode_for_pricing(tok, pricer::items::test_prompt(&b), 64).unwrap();
    assert_eq!(test, ea.ids[..ea.price_start]);
    assert_eq!(encode_for_pricing(tok, &a, 64).unwrap(), test);
    // What the form reports as a prompt's length is what decides the cut.
    let lens = pricer::finetune::tokenize::prompt_lengths(tok, &[&a, &b]).unwrap();
    assert!(lens[0] == lens[1] && lens[0] > 64);
}

#[test]
fn the_cut_before_the_price_does_not_depend_on_the_price() {
    // Llama 3 numbers: `9.00` is 3 tokens, `1234.00` 4.
    assert_cut_ignores_the_price(&llama_tokenizer(), "9.00", "1234.00");
    // SmolLM2 digits: `9.00` is 4 tokens, `999.00` 6.
    if let Some(path) = crate::common::model_file() {
        let tok = pricer::finetune::model::peek_tokenizer(&path.display().to_string()).unwrap();
        assert_cut_ignores_the_price(&tok, "9.00", "999.00");
    }
}

#[test]
fn pricing_leaves_a_prompt_that_fits_whole() {
    use pricer::finetune::tokenize::{encode_for_pricing, encode_prompt};
    let tok = llama_tokenizer();
    let short = "How much does this cost to the nearest dollar?\n\nA lamp\n\nPrice is $";
    let whole = encode_prompt(&tok, short, 0.0, usize::MAX).unwrap().ids;
    assert_eq!(encode_for_pricing(&tok, short, 64).unwrap(), whole);
    assert_eq!(encode_for_pricing(&tok, short, whole.len() + tok.price_room).unwrap(), whole);
    assert!(encode_for_pricing(&tok, short, whole.len() + tok.price_room - 1).unwrap().len() < whole.len());
}

/// Gives `other` (a bf16 and/or GPU trainer on the same run) the same random non-zero adapters as
/// the f32 CPU trainer `f32`, then checks that its autograd loss and gradients on three training
/// sequences agree with the hand-written f32 step within bf16's precision (loss within 2%, each
/// gradient within 8% of its norm).
pub fn assert_matches_the_f32_step(f32: &Trainer, other: &Trainer, seed: Option<u64>) {
    use pricer::finetune::fast;
    for ((_, _, b32), (_, _, b)) in f32.lora.modules.iter().zip(&other.lora.modules) {
        let v = Tensor::randn(0f32, 0.05, b32.shape(), &Device::Cpu).unwrap();
        b32.set(&v).unwrap();
        b.set(&v.to_device(&other.model.device).unwrap()).unwrap();
    }
    let batch = vec![&f32.train[0], &f32.train[1], &f32.train[2]];
    let mut want = fast::zero_grads(&f32.lora, None);
    let (want_loss, _) =
        fast::loss_and_grads(&f32.model, &f32.lora, None, &batch, seed, Some((&mut want, 1.0))).unwrap();
    let (loss, got) = autograd_grads(other, &batch, seed);
    let what = format!("{:?} on {:?}, seed {seed:?}", other.model.dtype(), other.model.device);
    assert!((loss - want_loss).abs() < 2e-2 * want_loss, "{what}: loss {loss} vs f32 {want_loss}");
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let diff: Vec<f32> = g.iter().zip(w).map(|(a, b)| a - b).collect();
        let rel = norm(&diff) / norm(w);
        assert!(norm(w) > 0.0 && rel < 0.08, "{what}: gradient {i} differs by {rel:.3} of its norm");
    }
}

/// The GPU's path (bf16 base, candle's autograd with the attached backward passes), run on the
/// CPU: its loss and gradients agree with the hand-written f32 step within bf16's precision, and
/// a short run in bf16 learns.
#[test]
fn a_bf16_base_trains_through_autograd_and_agrees_with_the_f32_step() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let Some(train) = real_items(tmp.path(), "train.jsonl", 0, 12) else { return };
    let mut cfg = tiny_run_cfg(tmp.path(), &model, &train, "f32");
    cfg.lora.target_modules = ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"].map(String::from).to_vec();
    let t32 = Trainer::create(cfg.clone()).unwrap();
    let bf16_cfg = TrainConfig { name: Some("bf16".into()), base_dtype: "bf16".into(), ..cfg.clone() };
    let t16 = Trainer::create(bf16_cfg.clone()).unwrap();
    assert!(t32.hand_written && !t16.hand_written);
    assert_eq!(t16.model.dtype(), DType::BF16);
    assert_eq!(t16.lora.vars()[0].dtype(), DType::F32, "adapters stay f32");
    let log = std::fs::read_to_string(t16.run_dir.join(files::LOG)).unwrap();
    assert!(log.contains("BF16 on cpu"), "{log}");
    for seed in [None, Some(99)] {
        assert_matches_the_f32_step(&t32, &t16, seed);
    }
    // A short bf16 run learns: the mean loss of its last steps is below that of its first.
    drop(t16);
    let mut long = TrainConfig { name: Some("bf16-run".into()), max_steps: Some(30), batch_size: 8, ..bf16_cfg };
    long.train = real_items(tmp.path(), "ten.jsonl", 0, 10).unwrap();
    let mut t = Trainer::create(long).unwrap();
    let losses: Vec<f64> = (0..30).map(|_| t.step().unwrap().0).collect();
    let (first, last) = (losses[..5].iter().sum::<f64>() / 5.0, losses[25..].iter().sum::<f64>() / 5.0);
    assert!(last < first * 0.8, "bf16 losses {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()));
}
