//! `pricer import-run`: a Hugging Face Trainer + PEFT output folder (the fixture made by
//! tools/make_trainer_fixture.py: a tiny random Llama, 8 steps of LoRA) becomes a run folder like
//! ours — curves, checkpoints, config differences — and its adapters give PyTorch's logits here.

use pricer::finetune::import::{ImportOptions, import_run};
use pricer::finetune::run::{self, BestBy, RunSnapshot, RunState, config_differences};
use pricer::finetune::{Lora, Model, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_trainer_run")
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap()).unwrap()
}

fn source_history() -> Vec<serde_json::Value> {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("output/trainer_state.json")).unwrap()).unwrap();
    s["log_history"].as_array().unwrap().clone()
}

fn import(runs: &Path) -> pricer::finetune::import::Imported {
    let opts = ImportOptions { runs_dir: runs.to_owned(), name: Some("hf".into()), model: None };
    import_run(&fixture().join("output"), &opts).unwrap()
}

#[test]
fn a_trainer_output_folder_imports_as_a_run_with_its_curves_and_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let r = import(tmp.path());
    assert_eq!(r.dir, tmp.path().join("hf"));
    assert_eq!((r.train_rows, r.val_rows), (8, 2));
    // Checkpoints 4 and 8; the final adapter at the top has step 8, already a checkpoint.
    assert_eq!(r.checkpoints, vec![4, 8]);
    // The base model named by the adapter (relative to where the fixture was made) is found
    // beside the output folder, and written absolute.
    assert_eq!(Path::new(&r.model), std::fs::canonicalize(fixture().join("base")).unwrap());

    // The metric rows are the log history's values.
    let rows = run::read_metrics(&r.dir);
    let history = source_history();
    let train: Vec<_> = history.iter().filter(|h| h.get("loss").is_some()).collect();
    let evals: Vec<_> = history.iter().filter(|h| h.get("eval_loss").is_some()).collect();
    let ours_train: Vec<_> = rows.iter().filter(|m| m.train_loss.is_some()).collect();
    let ours_val: Vec<_> = rows.iter().filter(|m| m.val_loss.is_some()).collect();
    assert_eq!(ours_train.len(), train.len());
    for (m, h) in ours_train.iter().zip(&train) {
        assert_eq!(m.step as u64, h["step"].as_u64().unwrap());
        assert_eq!(m.train_loss, h["loss"].as_f64());
        assert_eq!(m.lr, h["learning_rate"].as_f64());
        assert_eq!(m.grad_norm, h["grad_norm"].as_f64());
        assert_eq!(m.epoch, h["epoch"].as_f64().unwrap());
    }
    assert_eq!(ours_val.iter().map(|m| (m.step, m.val_loss)).collect::<Vec<_>>(), {
        evals.iter().map(|h| (h["step"].as_u64().unwrap() as usize, h["eval_loss"].as_f64())).collect::<Vec<_>>()
    });
    // Seconds spread from the summary's train_runtime: rising, the last one the runtime.
    let runtime = history.iter().find_map(|h| h["train_runtime"].as_f64()).unwrap();
    assert!((ours_train.last().unwrap().elapsed_s - runtime).abs() < 1e-9);
    assert!(ours_train.windows(2).all(|w| w[0].elapsed_s < w[1].elapsed_s));

    // It reads as a finished run with two checkpoints; "best by loss" follows the eval rows.
    let snap = RunSnapshot::read(&r.dir);
    assert_eq!(snap.state(), RunState::Finished);
    assert_eq!(snap.checkpoints.iter().map(|c| c.0).collect::<Vec<_>>(), vec![4, 8]);
    let best_step = evals
        .iter()
        .min_by(|a, b| a["eval_loss"].as_f64().partial_cmp(&b["eval_loss"].as_f64()).unwrap())
        .unwrap()["step"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(run::best_checkpoint(&r.dir, BestBy::Loss).unwrap().0, best_step);
    let status = snap.status.as_ref().unwrap();
    assert_eq!((status.step, status.total_steps), (8, 8));
    assert!(snap.log_tail.iter().any(|l| l.contains("imported from")), "{:?}", snap.log_tail);

    // Its configuration: the adapter's LoRA settings, the trainer's batch and steps, and the
    // mark that makes it read-only; compared with one of our runs key by key.
    let cfg = snap.config.clone().unwrap();
    assert_eq!((cfg.lora.r, cfg.lora.alpha, cfg.batch_size, cfg.max_steps), (4, 8.0, 4, Some(8)));
    assert_eq!(cfg.lora.target_modules, ["q_proj", "k_proj", "v_proj", "o_proj"]);
    assert!((cfg.learning_rate - 0.02).abs() < 1e-12, "peak lr {}", cfg.learning_rate);
    assert!(cfg.imported_from.as_deref().unwrap().contains("Hugging Face Trainer"));
    let ours = TrainConfig::default();
    let diff = config_differences(&[&ours, &cfg]);
    assert_eq!(diff["lora.r"], vec![ours.lora.r.to_string(), "4".to_string()]);
    assert!(diff.contains_key("imported_from"), "{diff:?}");
    assert!(!diff.contains_key("weight_decay"), "{diff:?}");

    // Read-only: resuming is refused without marking the run failed.
    let err = pricer::finetune::Trainer::resume(&r.dir, None).err().unwrap().to_string();
    assert!(err.contains("imported"), "{err}");
    assert_eq!(RunSnapshot::read(&r.dir).state(), RunState::Finished);

    // A second import under the same name is refused and changes nothing.
    let opts = ImportOptions { runs_dir: tmp.path().to_owned(), name: Some("hf".into()), model: None };
    let err = import_run(&fixture().join("output"), &opts).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(run::read_metrics(&r.dir).len(), rows.len());
}

#[test]
fn an_adapter_written_by_peft_gives_pytorchs_logits_here() {
    let e = expected();
    let ids: Vec<u32> = e["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let want = |k: &str| -> Vec<f32> { e[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    let model = Model::from_hf_dir(&fixture().join("base"), &candle_core::Device::Cpu).unwrap();
    // The fixture's rope_theta (500,000) sits in transformers 5's rope_parameters.
    assert_eq!(model.cfg.rope_theta, 500_000.0);
    // The tokenizer of the base folder encodes the prompt as transformers did.
    let enc = model.tokenizer.tok.encode(e["prompt"].as_str().unwrap(), false).unwrap();
    assert_eq!(enc.get_ids(), ids.as_slice());
    let close = |got: &[f32], want: &[f32], what: &str| {
        assert_eq!(got.len(), want.len());
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{what}: largest logit difference {worst}");
    };
    close(&model.next_token_logits(&ids, None, None).unwrap(), &want("base_logits"), "base");
    let tmp = tempfile::tempdir().unwrap();
    let r = import(tmp.path());
    let ck = r.dir.join("checkpoints/checkpoint-8");
    let lora = Lora::load_peft(&ck, &model.cfg, &model.device).unwrap();
    let tuned = model.next_token_logits(&ids, Some(&lora), None).unwrap();
    close(&tuned, &want("adapter_logits"), "with the adapter");
    // The adapter matters: the tuned logits are not the base's.
    let moved = tuned.iter().zip(want("base_logits")).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(moved > 0.01, "{moved}");
}

#[test]
fn an_imported_checkpoint_is_evaluated_by_pricer_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pricer"))
        .args(["import-run", fixture().join("output").to_str().unwrap(), "--runs"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tmp.path().join("imported-output");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), dir.display().to_string());
    // Three curated items (the tiny model prices any prompt; what matters is that it runs).
    let items = tmp.path().join("test.jsonl");
    let lines: Vec<String> = [("Brass desk lamp", 42.5), ("Steel hammer", 12.0), ("Oak bookshelf", 189.99)]
        .iter()
        .map(|(title, price)| {
            serde_json::json!({
                "title": title, "category": "Home", "price": price,
                "prompt": format!("How much does this cost to the nearest dollar?\n\n{title}\n\nPrice is $"),
            })
            .to_string()
        })
        .collect();
    std::fs::write(&items, lines.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pricer"))
        .args(["eval", "--run", dir.to_str().unwrap(), "--test", items.to_str().unwrap(), "--size", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let evals = run::read_evaluations(&dir);
    assert_eq!(evals.len(), 1);
    assert_eq!(evals[0].metrics.n, 3);
    assert!(evals[0].items.iter().all(|i| i.guess.is_finite() && i.guess >= 0.0));
}

#[test]
fn folders_that_are_not_a_trainer_run_are_refused_by_what_they_lack() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let opts = ImportOptions { runs_dir: tmp.path().join("runs"), ..Default::default() };
    let err = import_run(&src, &opts).unwrap_err().to_string();
    assert!(err.contains("no trainer_state.json"), "{err}");
    // A state but no adapter.
    std::fs::copy(fixture().join("output/trainer_state.json"), src.join("trainer_state.json")).unwrap();
    let err = import_run(&src, &opts).unwrap_err().to_string();
    assert!(err.contains("no PEFT adapter"), "{err}");
    // A pickled adapter is named.
    let ck = src.join("checkpoint-8");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::write(ck.join("adapter_model.bin"), b"pickle").unwrap();
    let err = import_run(&src, &opts).unwrap_err().to_string();
    assert!(err.contains("adapter_model.bin"), "{err}");
    // Nothing was left in the runs folder.
    assert!(std::fs::read_dir(tmp.path().join("runs")).map_or(true, |mut d| d.next().is_none()));
}
