//! Fine-tuning benchmarks (harness = false):
//!
//! ```sh
//! cargo bench --bench finetune_bench               # matmul peak, then LoRA training throughput
//! cargo bench --bench finetune_bench -- matmul     # only the matmul peak
//! ```
//!
//! `matmul`: the machine's f32 matmul peak through candle (the shapes of SmolLM2's projections at
//! batch 4 × 182 tokens, and 1024³), best of several runs. `train`: SmolLM2-135M-Instruct LoRA
//! (r 32, alpha 64, dropout 0.1, q/k/v/o, batch 4, sequence ≤ 182) on real curated items — the same
//! work as `tools/bench_pytorch_lora.py` — tokens/s, model FLOPs utilisation against the matmul
//! peak, peak resident memory. It runs the hand-written CPU step; `PRICER_AUTOGRAD=1` measures the
//! candle-autograd path instead.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{Device, Tensor};
use pricer::finetune::{LlamaConfig, TrainConfig, Trainer};
use std::time::Instant;

fn matmul_gflops(m: usize, k: usize, n: usize, reps: usize) -> f64 {
    let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
    let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu).unwrap();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let c = a.matmul(&b).unwrap();
        std::hint::black_box(c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * k * n) as f64 / best / 1e9
}

fn matmul_peak() -> f64 {
    let shapes = [(728, 576, 1536), (728, 1536, 576), (728, 576, 576), (1024, 1024, 1024)];
    let mut peak: f64 = 0.0;
    for (m, k, n) in shapes {
        let g = matmul_gflops(m, k, n, 20);
        println!("matmul {m}x{k} @ {k}x{n}: {g:.1} GFLOP/s (best of 20)");
        peak = peak.max(g);
    }
    println!("matmul peak: {peak:.1} GFLOP/s");
    peak
}

/// FLOPs of one LoRA training step: forward and the activation gradients through the frozen base
/// (2 + 2 per weight per token), the adapters' forward and both gradients (6 per parameter per
/// token), attention scores and mixing (forward 4·t²·h per sequence and layer, backward twice that).
fn step_flops(cfg: &LlamaConfig, lora_params: usize, seq_lens: &[usize]) -> f64 {
    let embed = cfg.vocab_size * cfg.hidden_size * if cfg.tie_word_embeddings { 1 } else { 2 };
    let base = (cfg.n_params() - embed) as f64;
    let tokens: f64 = seq_lens.iter().map(|&t| t as f64).sum();
    let attn: f64 = seq_lens.iter().map(|&t| 12.0 * (t * t) as f64 * cfg.hidden_size as f64).sum::<f64>()
        * cfg.num_hidden_layers as f64;
    4.0 * base * tokens + 6.0 * lora_params as f64 * tokens + attn
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn train(peak: f64) {
    let model = pricer::finetune::model::default_model_path();
    if !model.is_file() {
        println!("train: {} missing — run scripts/fetch-assets.sh", model.display());
        return;
    }
    let items = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real/curated_items.jsonl");
    if !items.is_file() {
        println!("train: {} missing", items.display());
        return;
    }
    let (warmup, steps) = (2usize, 8usize);
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        model: model.display().to_string(),
        train: items,
        val_items: 0,
        max_train_items: Some(4 * (warmup + steps)),
        runs_dir: dir.path().to_owned(),
        name: Some("bench".into()),
        max_steps: Some(warmup + steps),
        eval_every: 0,
        save_every: 0,
        ..Default::default()
    };
    let mut t = Trainer::create(cfg).unwrap();
    let lora_params = t.cfg.lora.n_params(&t.model.cfg);
    let mut tokens = 0usize;
    let mut flops = 0.0;
    let mut secs = 0.0;
    for s in 0..warmup + steps {
        let t0 = Instant::now();
        let (loss, _, _, n) = t.step().unwrap();
        let dt = t0.elapsed().as_secs_f64();
        // Sequences here are about the same length (most are cut to 182), so the attention FLOPs
        // are counted at the batch's mean length.
        let lens: Vec<usize> = vec![n / 4; 4];
        println!("step {s}: loss {loss:.4}, {n} tokens, {:.2} s, {:.1} tokens/s", dt, n as f64 / dt);
        if s >= warmup {
            tokens += n;
            flops += step_flops(&t.model.cfg, lora_params, &lens);
            secs += dt;
        }
    }
    let achieved = flops / secs / 1e9;
    println!(
        "train SmolLM2-135M LoRA r32 q/k/v/o batch 4 seq<=182 ({}): {:.1} tokens/s over {steps} steps; {achieved:.1} GFLOP/s = {:.0}% of the matmul peak ({peak:.1}); peak RSS {:.0} MB",
        if t.hand_written { "hand-written CPU step" } else { "candle autograd" },
        tokens as f64 / secs,
        achieved / peak * 100.0,
        peak_rss_mb()
    );
}

fn main() {
    if let Err(e) = pricer::finetune::reexec_with_allocator_settings() {
        eprintln!("note: running without allocator settings ({e})");
    }
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let peak = matmul_peak();
    if want("train") {
        train(peak);
    }
}
