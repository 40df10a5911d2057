//! Fine-tuning a causal LM to price items: LoRA adapters (and an optional regression head) trained
//! with candle on the tokens after `Price is $`, runs that stop and resume, prediction and
//! evaluation with the Tester. CUDA behind the `cuda` feature; the CPU path is the default.

pub mod config;
pub mod fast;
pub mod lora;
pub mod model;
pub mod ops;
pub mod predict;
pub mod tokenize;
pub mod train;

pub use config::{Objective, TrainConfig};
pub use lora::{Lora, LoraConfig, Target};
pub use model::{LlamaConfig, Model, ModelSource};
pub use predict::{Decode, Predictor};
pub use train::{Outcome, Trainer};

/// Training and prediction allocate and free the same large tensors every step. The binaries use
/// mimalloc, which keeps freed memory for reuse only when told so by environment variables read at
/// start-up; without them every step pays a page fault per page. This starts the process again,
/// once, with those variables set (Unix; a no-op when they are set or elsewhere).
pub fn reexec_with_allocator_settings() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        const KEY: &str = "MIMALLOC_PURGE_DELAY";
        if std::env::var_os(KEY).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(KEY, "-1")
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "1")
            .exec();
        eprintln!("note: running without allocator settings ({err})");
    }
}
