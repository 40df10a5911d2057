//! The CUDA path on a real GPU (built with `--features cuda`). Each test prints why it skips and
//! passes where no GPU answers (CI, this project's machines); `scripts/gpu-check.sh` runs them on
//! a lent GPU.

use crate::finetune::{assert_matches_the_f32_step, tiny_model_dir, tiny_run_cfg};
use candle_core::{DType, Device};
use pricer::finetune::model::cuda_available;
use pricer::finetune::run::{checkpoints, read_metrics};
use pricer::finetune::{Outcome, TrainConfig, Trainer};

/// `n` curated items of the built-in demo data (the GPU machine has no `../shared`).
fn demo_items(root: &std::path::Path, n: usize) -> std::path::PathBuf {
    let data = pricer::dataset::load_demo(600, 42, &Default::default()).unwrap();
    let out = root.join("demo-items.jsonl");
    pricer::items_io::write_items(&data.table.select(&(0..n).collect::<Vec<_>>()), &out).unwrap();
    out
}

fn gpu() -> bool {
    let ok = cuda_available();
    if !ok {
        eprintln!("skipped: no CUDA device (build with --features cuda on a machine with a GPU)");
    }
    ok
}

/// One bf16 step on the GPU gives the loss and gradients of the hand-written f32 CPU step
/// within bf16's precision (the same adapters and batch, dropout off: the GPU draws its own masks).
#[test]
fn a_cuda_bf16_step_equals_the_cpu_f32_step() {
    if !gpu() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let train = demo_items(tmp.path(), 12);
    let mut cfg = tiny_run_cfg(tmp.path(), &model, &train, "cpu");
    cfg.lora.target_modules =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec();
    let cpu = Trainer::create(cfg.clone()).unwrap();
    let gpu = Trainer::create(TrainConfig { name: Some("cuda".into()), device: "cuda".into(), ..cfg }).unwrap();
    assert!(gpu.model.device.is_cuda() && gpu.model.dtype() == DType::BF16 && !gpu.hand_written);
    assert_matches_the_f32_step(&cpu, &gpu, None);
}

/// A short run on the GPU learns, with dropout drawn on the device, writes its checkpoints, and
/// its adapters price on the GPU.
#[test]
fn a_short_cuda_run_learns_and_checkpoints() {
    if !gpu() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let train = demo_items(tmp.path(), 10);
    let mut cfg = tiny_run_cfg(tmp.path(), &model, &train, "cuda-run");
    cfg.device = "cuda".into();
    cfg.max_steps = Some(60);
    cfg.batch_size = 8;
    let mut t = Trainer::create(cfg).unwrap();
    let dir = t.run_dir.clone();
    assert_eq!(t.run(&|| false).unwrap(), Outcome::Finished);
    let rows = read_metrics(&dir);
    let loss: Vec<f64> = rows.iter().filter_map(|r| r.train_loss).collect();
    let (first, last) = (loss[..5].iter().sum::<f64>() / 5.0, loss[loss.len() - 5..].iter().sum::<f64>() / 5.0);
    assert!(last < first * 0.7, "cuda losses {loss:?}");
    let (_, last_ck) = checkpoints(&dir).pop().expect("a checkpoint");
    // The checkpoint prices on the GPU as on the CPU (f32 weights on both: a KV-cached pass).
    let (table, _) = pricer::items_io::read_items(&train).unwrap();
    let prompts: Vec<&str> = (0..3).map(|i| table.get(i).prompt).collect();
    let price = |device: &Device| {
        let m = pricer::finetune::Model::from_hf_dir(&model, device).unwrap();
        pricer::finetune::Predictor::from_checkpoint(m, Some(&last_ck), 96).unwrap().predict_batch(&prompts).unwrap()
    };
    let (on_gpu, on_cpu) = (price(&Device::new_cuda(0).unwrap()), price(&Device::Cpu));
    for (g, c) in on_gpu.iter().zip(&on_cpu) {
        assert!((g - c).abs() <= 0.01 * c.abs().max(1.0), "gpu {on_gpu:?} vs cpu {on_cpu:?}");
    }
}
