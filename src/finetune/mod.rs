//! Fine-tuning a causal LM to price items: LoRA adapters (and an optional regression head) trained
//! with candle on the tokens after `Price is $`, runs that stop and resume, prediction and
//! evaluation with the Tester. CUDA behind the `cuda` feature; the CPU path is the default.

pub mod adamw;
pub mod arch;
pub mod axolotl;
pub mod config;
pub mod decode;
pub mod fast;
pub mod head;
pub mod import;
pub mod infer;
pub mod lora;
pub mod model;
pub mod ops;
pub mod predict;
pub mod run;
pub mod supervisor;
pub mod tensors;
pub mod tokenize;
pub mod train;

pub use config::{Objective, TrainConfig};
pub use decode::Decode;
pub use lora::{Lora, LoraConfig, Target};
pub use model::{LlamaConfig, Model, ModelSource};
pub use predict::Predictor;
pub use run::{RunSnapshot, RunState};
pub use supervisor::{TrainerProcess, reexec_with_allocator_settings};
pub use train::{Outcome, Trainer};
