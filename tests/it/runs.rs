//! Run folders read through `finetune::run`: the snapshot reader on folders in every state, torn
//! checkpoints ignored, re-reading only what changed, truncation on resume, failure marking,
//! config differences.

use pricer::finetune::TrainConfig;
use pricer::finetune::run::{
    self, MetricRow, RunSnapshot, RunState, RunStatus, TrainerState, config_differences, files,
};
use std::path::{Path, PathBuf};

/// A process id that is not running: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn trainer_state(step: usize) -> TrainerState {
    TrainerState {
        step,
        total_steps: 10,
        micro_batches: step,
        micro_batches_per_epoch: 5,
        data_seed: 42,
        n_train: 10,
        tokens_seen: 100 * step as u64,
        elapsed_s: step as f64,
        val_loss: None,
    }
}

/// A run folder with `steps` metric rows, complete checkpoints at `checkpoints`, a torn one at
/// step 9 (no trainer_state.json), and a status in `state` written by process `pid`.
fn fixture(root: &Path, name: &str, state: RunState, pid: u32, steps: usize, checkpoints: &[usize]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join(files::CHECKPOINTS)).unwrap();
    let cfg = TrainConfig {
        name: Some(name.into()),
        train: "train.jsonl".into(),
        learning_rate: 1e-4 * steps as f64,
        ..Default::default()
    };
    std::fs::write(dir.join(files::CONFIG), cfg.to_toml()).unwrap();
    for step in 1..=steps {
        let row = MetricRow { step, train_loss: Some(3.0 / step as f64), elapsed_s: step as f64, ..Default::default() };
        run::append_metric(&dir, &row).unwrap();
    }
    run::append_metric(&dir, &MetricRow { step: steps, val_loss: Some(1.5), ..Default::default() }).unwrap();
    for &step in checkpoints {
        let ck = dir.join(files::CHECKPOINTS).join(format!("checkpoint-{step}"));
        std::fs::create_dir_all(&ck).unwrap();
        pricer::atomic::write_atomic_json(&ck.join(files::STATE), &trainer_state(step)).unwrap();
    }
    let torn = dir.join(files::CHECKPOINTS).join("checkpoint-9");
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::write(torn.join("adapter_model.safetensors"), b"half written").unwrap();
    let log: String = (1..=20).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.join(files::LOG), log).unwrap();
    let status = RunStatus { state, pid, step: steps, total_steps: 10, ..Default::default() };
    run::write_status(&dir, &status).unwrap();
    dir
}

#[test]
fn the_snapshot_reader_reads_every_state_and_ignores_torn_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let dead = dead_pid();
    let cases = [
        ("a-running", RunState::Running, me, RunState::Running),
        ("b-stopped", RunState::Stopped, dead, RunState::Stopped),
        ("c-finished", RunState::Finished, dead, RunState::Finished),
        ("d-failed", RunState::Failed, dead, RunState::Failed),
        ("e-interrupted", RunState::Running, dead, RunState::Interrupted),
    ];
    for (name, state, pid, _) in cases {
        fixture(tmp.path(), name, state, pid, 4, &[2, 4]);
    }
    std::fs::create_dir_all(tmp.path().join("not-a-run")).unwrap();
    let found = run::list_runs(tmp.path());
    assert_eq!(found.len(), 5, "folders without config.toml are not runs: {found:?}");
    for ((name, _, _, expected), dir) in cases.iter().zip(&found) {
        let snap = RunSnapshot::read(dir);
        assert_eq!(&snap.name, name);
        assert_eq!(snap.state(), *expected, "{name}");
        assert_eq!(
            snap.state().can_resume(),
            matches!(expected, RunState::Stopped | RunState::Failed | RunState::Interrupted)
        );
        let steps: Vec<usize> = snap.checkpoints.iter().map(|c| c.0).collect();
        assert_eq!(steps, vec![2, 4], "{name}: the torn checkpoint-9 is left out");
        assert_eq!(snap.metrics.len(), 5);
        assert_eq!(snap.last_train_loss(), Some(0.75));
        assert_eq!(snap.last_val_loss(), Some(1.5));
        assert_eq!(snap.log_tail.len(), run::LOG_TAIL_LINES);
        assert_eq!(snap.log_tail.last().map(String::as_str), Some("line 20"));
        assert_eq!(snap.config.as_ref().and_then(|c| c.name.clone()).as_deref(), Some(*name));
    }
    // The mirror of a run on another machine: its process id is not this machine's, so a
    // running status is taken as it is.
    std::fs::write(found[4].join(files::REMOTE), "{}").unwrap();
    assert_eq!(RunSnapshot::read(&found[4]).state(), RunState::Running);
    // The status file keeps the words it always had.
    let text = std::fs::read_to_string(found[1].join(files::STATUS)).unwrap();
    assert!(text.contains("\"state\": \"stopped\""), "{text}");
}

#[test]
fn refresh_rereads_what_changed_and_a_torn_metric_line_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture(tmp.path(), "run", RunState::Running, std::process::id(), 3, &[2]);
    let mut snap = RunSnapshot::read(&dir);
    assert_eq!(snap.metrics.len(), 4);
    assert!(snap.evals.is_empty());
    run::append_metric(&dir, &MetricRow { step: 4, train_loss: Some(0.5), ..Default::default() }).unwrap();
    // A line the trainer is still writing.
    let mut text = std::fs::read_to_string(dir.join(files::METRICS)).unwrap();
    text.push_str("{\"step\": 5, \"train_lo");
    std::fs::write(dir.join(files::METRICS), text).unwrap();
    let items = vec![
        pricer::evaluation::score_item(0, "a", "c", 10.0, 11.0),
        pricer::evaluation::score_item(1, "b", "c", 20.0, 19.0),
    ];
    let test = pricer::evaluation::FileRef { path: "test.jsonl".into(), digest: "0".into(), items: 2 };
    let spec =
        pricer::evaluation::PricerSpec::Run { dir: dir.clone(), checkpoint: Some("checkpoint-2".into()), decode: None };
    let eval = pricer::evaluation::Evaluation::new("run/checkpoint-2".into(), spec, None, test, items);
    eval.save(&dir.join("eval-checkpoint-2.json")).unwrap();
    run::write_status(
        &dir,
        &RunStatus { state: RunState::Stopped, pid: std::process::id(), step: 4, ..Default::default() },
    )
    .unwrap();
    snap.refresh();
    assert_eq!(snap.metrics.len(), 5, "the new row is read, the torn one skipped");
    assert_eq!(snap.metrics.last().unwrap().train_loss, Some(0.5));
    assert_eq!(snap.evals, vec![eval]);
    assert_eq!(snap.state(), RunState::Stopped);
}

#[test]
fn resume_truncates_the_curve_and_failure_keeps_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture(tmp.path(), "run", RunState::Running, dead_pid(), 6, &[4]);
    run::truncate_metrics(&dir, 4).unwrap();
    let rows = run::read_metrics(&dir);
    assert!(rows.iter().all(|r| r.step <= 4) && rows.len() == 4, "{rows:?}");
    let ck = run::checkpoints(&dir).pop().unwrap();
    assert_eq!(run::read_trainer_state(&ck.1).unwrap(), trainer_state(4));
    run::mark_failed(&dir, "out of memory");
    let st = run::read_status(&dir).unwrap();
    assert_eq!((st.state, st.message.as_str(), st.step), (RunState::Failed, "out of memory", 6));
    assert!(std::fs::read_to_string(dir.join(files::LOG)).unwrap().ends_with("failed: out of memory\n"));
    assert_eq!(run::checkpoints(&dir).len(), 1, "the checkpoint stays");
    run::request_stop(&dir).unwrap();
    assert!(dir.join(files::STOP).is_file());
}

#[test]
fn config_differences_list_only_the_keys_that_differ() {
    let a = TrainConfig { name: Some("a".into()), ..Default::default() };
    let mut b = TrainConfig { name: Some("b".into()), learning_rate: 1e-3, ..Default::default() };
    b.lora.r = 8;
    let diff = config_differences(&[&a, &b]);
    let keys: Vec<&str> = diff.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["learning_rate", "lora.r"], "{diff:?}");
    assert_eq!(diff["lora.r"][1], "8");
}

#[test]
fn a_trainer_that_fails_to_start_is_reported_and_its_run_marked_failed() {
    use pricer::finetune::TrainerProcess;
    let tmp = tempfile::tempdir().unwrap();
    // The trainer loads the model before the data.
    let Some(model) = crate::common::model_file() else { return };
    let cfg = TrainConfig {
        name: Some("no-data".into()),
        model: model.display().to_string(),
        train: tmp.path().join("missing.jsonl"),
        runs_dir: tmp.path().join("runs"),
        ..Default::default()
    };
    let program = PathBuf::from(env!("CARGO_BIN_EXE_pricer"));
    let mut p = TrainerProcess::launch(&program, &cfg).unwrap();
    let exit = loop {
        if let Some(exit) = p.poll() {
            break exit;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!exit.success);
    assert!(exit.output_tail.iter().any(|l| l.contains("missing.jsonl")), "{:?}", exit.output_tail);
    let snap = RunSnapshot::read(&p.run_dir);
    assert_eq!(snap.state(), RunState::Failed);
    assert!(snap.status.unwrap().message.contains("missing.jsonl"));
    // A second launch under the same name is refused.
    assert!(TrainerProcess::launch(&program, &cfg).is_err());
}

#[test]
fn the_best_checkpoint_follows_the_validation_price_rows() {
    let ck = |s: usize| (s, PathBuf::from(format!("checkpoint-{s}")));
    let row = |step: usize, error: f64, hits: f64, loss: f64| MetricRow {
        step,
        val_loss: Some(loss),
        val_error: Some(error),
        val_rmsle: Some(error / 100.0),
        val_hits: Some(hits),
        ..Default::default()
    };
    let train = |step: usize| MetricRow { step, train_loss: Some(1.0), ..Default::default() };
    // Step 150 has the lowest error but no checkpoint; 100 is best by error, 200 by hits, 300 by loss.
    let rows = vec![
        train(50),
        row(50, 90.0, 30.0, 0.9),
        row(100, 70.0, 40.0, 0.8),
        row(150, 60.0, 41.0, 0.7),
        row(200, 75.0, 48.0, 0.6),
        row(300, 80.0, 45.0, 0.5),
    ];
    let cks = vec![ck(50), ck(100), ck(200), ck(300)];
    assert_eq!(run::best_of(&rows, &cks, run::BestBy::Error).map(|b| b.0), Some(100));
    assert_eq!(run::best_of(&rows, &cks, run::BestBy::Rmsle).map(|b| b.0), Some(100));
    assert_eq!(run::best_of(&rows, &cks, run::BestBy::Hits).map(|b| b.0), Some(200));
    assert_eq!(run::best_of(&rows, &cks, run::BestBy::Loss).map(|b| b.0), Some(300));
    // A better row at a new checkpoint moves it.
    let mut more = rows.clone();
    more.push(row(350, 50.0, 50.0, 0.4));
    let mut cks2 = cks.clone();
    cks2.push(ck(350));
    assert_eq!(run::best_of(&more, &cks2, run::BestBy::Error).map(|b| b.0), Some(350));
    // Rows without prices (runs from before they were written) give no best by error.
    let old: Vec<MetricRow> = rows.iter().map(|r| MetricRow { val_error: None, ..r.clone() }).collect();
    assert_eq!(run::best_of(&old, &cks, run::BestBy::Error), None);
}

#[test]
fn max_seq_len_reads_auto_or_a_number_and_round_trips() {
    use pricer::finetune::config::SeqLen;
    let auto = TrainConfig::parse("max_seq_len = \"auto\"", Path::new("."), "t").unwrap();
    assert_eq!(auto.max_seq_len, SeqLen::Auto);
    assert_eq!(TrainConfig::default().max_seq_len, SeqLen::Auto);
    let n = TrainConfig::parse("max_seq_len = 96", Path::new("."), "t").unwrap();
    assert_eq!(n.max_seq_len, SeqLen::Tokens(96));
    let back = TrainConfig::parse(&n.to_toml(), Path::new("."), "t").unwrap();
    assert_eq!(back.max_seq_len, SeqLen::Tokens(96));
    assert!(TrainConfig::parse("max_seq_len = \"long\"", Path::new("."), "t").is_err());
    assert_eq!(SeqLen::Auto.resolve(300), 300);
    assert_eq!(SeqLen::Tokens(128).resolve(300), 128);
}

#[test]
fn the_shipped_recipe_reads_as_a_regression_run_on_its_prepared_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = pricer::finetune::TrainConfig::load(&dir.join("recipes/benchmark-regression.toml")).unwrap();
    assert_eq!(cfg.objective, pricer::finetune::config::Objective::Regression);
    assert_eq!(cfg.train, dir.join("recipes/../target/recipe/train_x2.jsonl"));
    assert_eq!(cfg.validation, Some(dir.join("recipes/../target/recipe/val.jsonl")));
    assert_eq!(cfg.max_seq_len, pricer::finetune::config::SeqLen::Tokens(128));
    assert_eq!(cfg.lora.target_modules.len(), 7);
}
