//! Fine-tuning a causal LM to price items: LoRA adapters (and an optional regression head) trained
//! with candle on the tokens after `Price is $`, runs that stop and resume, prediction and
//! evaluation with the Tester. CUDA behind the `cuda` feature; the CPU path is the default.

pub mod config;
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
