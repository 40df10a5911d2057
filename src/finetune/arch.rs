//! The architecture of a Llama-family model: its numbers (`config.json`) and the names of the
//! projections inside a decoder layer. Shared by the model, the adapters, the memory estimate.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A projection inside a decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    /// `self_attn.q_proj`
    Q = 0,
    /// `self_attn.k_proj`
    K = 1,
    /// `self_attn.v_proj`
    V = 2,
    /// `self_attn.o_proj`
    O = 3,
    /// `mlp.gate_proj`
    Gate = 4,
    /// `mlp.up_proj`
    Up = 5,
    /// `mlp.down_proj`
    Down = 6,
}

impl Target {
    /// Every projection, in weight order.
    pub const ALL: [Target; 7] = [Self::Q, Self::K, Self::V, Self::O, Self::Gate, Self::Up, Self::Down];

    /// PEFT's module name (`q_proj`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// Path inside a layer (`self_attn.q_proj`).
    pub fn hf_path(self) -> String {
        let parent = if (self as usize) < 4 { "self_attn" } else { "mlp" };
        format!("{parent}.{}", self.name())
    }

    /// Reads a module name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s || t.name().trim_end_matches("_proj") == s)
    }
}

/// The architecture numbers of a model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LlamaConfig {
    /// `llama` or `qwen2`.
    pub model_type: String,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// RMS norm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// The LM head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases (Qwen2).
    pub attention_bias: bool,
}

impl LlamaConfig {
    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// (out, in) of a projection.
    pub fn shape_of(&self, t: Target) -> (usize, usize) {
        let (h, i, kv) = (self.hidden_size, self.intermediate_size, self.num_key_value_heads * self.head_dim());
        match t {
            Target::Q | Target::O => (h, h),
            Target::K | Target::V => (kv, h),
            Target::Gate | Target::Up => (i, h),
            Target::Down => (h, i),
        }
    }

    /// Parameters of the base model.
    pub fn n_params(&self) -> usize {
        let per_layer: usize =
            Target::ALL.iter().map(|&t| self.shape_of(t).0 * self.shape_of(t).1).sum::<usize>() + 2 * self.hidden_size;
        let embed = self.vocab_size * self.hidden_size;
        embed * if self.tie_word_embeddings { 1 } else { 2 } + self.num_hidden_layers * per_layer + self.hidden_size
    }

    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Model(format!("config.json: {e}")))?;
        let num = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
        let need = |k: &str| num(k).ok_or_else(|| Error::Model(format!("config.json has no {k}")));
        let model_type = v.get("model_type").and_then(|x| x.as_str()).unwrap_or("llama").to_owned();
        if !matches!(model_type.as_str(), "llama" | "qwen2" | "mistral") {
            return Err(Error::Model(format!("model_type {model_type} is not supported (llama, qwen2, mistral)")));
        }
        let heads = need("num_attention_heads")?;
        Ok(Self {
            hidden_size: need("hidden_size")?,
            intermediate_size: need("intermediate_size")?,
            num_hidden_layers: need("num_hidden_layers")?,
            num_attention_heads: heads,
            num_key_value_heads: num("num_key_value_heads").unwrap_or(heads),
            vocab_size: need("vocab_size")?,
            rms_norm_eps: v.get("rms_norm_eps").and_then(|x| x.as_f64()).unwrap_or(1e-5),
            // transformers 5 writes it inside `rope_parameters`, earlier versions at the top.
            rope_theta: v
                .get("rope_theta")
                .or_else(|| v.get("rope_parameters").and_then(|r| r.get("rope_theta")))
                .and_then(|x| x.as_f64())
                .unwrap_or(10_000.0),
            tie_word_embeddings: v.get("tie_word_embeddings").and_then(|x| x.as_bool()).unwrap_or(false),
            attention_bias: v.get("attention_bias").and_then(|x| x.as_bool()).unwrap_or(model_type == "qwen2"),
            model_type,
        })
    }

    /// The `config.json` of this configuration (for saving a model folder).
    pub fn to_hf_json(&self) -> String {
        serde_json::to_string_pretty(&serde_json::json!({
            "architectures": [if self.model_type == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
            "model_type": self.model_type,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "hidden_act": "silu",
            "max_position_embeddings": 8192,
            "torch_dtype": "float32",
        }))
        .expect("json")
    }
}
