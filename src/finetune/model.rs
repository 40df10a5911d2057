//! Llama-architecture causal LMs (Llama 3.x, SmolLM2, Qwen2 with its q/k/v biases): loading from a
//! GGUF file (dequantized, Q/K rows put back in Hugging Face order), a Hugging Face folder
//! (`config.json`, `*.safetensors`, `tokenizer.json`) or a Hub repo id; the forward pass with
//! optional LoRA adapters for training, and a KV-cached pass for prediction.
//!
//! The frozen weights are f32 on the CPU (the hand-written kernels' type) and bf16 on a GPU (f16
//! where bf16 is missing), see [`base_dtype`]. Loading reads one tensor at a time and converts it
//! on its device, so an 8B model never has an f32 (or any whole) copy in host memory.

pub use super::arch::LlamaConfig;
use super::arch::Target;
use super::lora::Lora;
use super::ops;
pub use super::tensors::safetensors_bytes;
use super::tokenize::ModelTokenizer;
use crate::{Error, Result};
use candle_core::{D, DType, Device, Tensor};

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One projection: weight `[out, in]` and optional bias.
#[derive(Clone, Debug)]
pub struct Proj {
    /// Weight `[out, in]`.
    pub w: Tensor,
    /// Bias `[out]`.
    pub b: Option<Tensor>,
}

/// One decoder layer's frozen weights.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Input RMS norm scale.
    pub attn_norm: Tensor,
    /// Post-attention RMS norm scale.
    pub mlp_norm: Tensor,
    /// q, k, v, o, gate, up, down in [`Target::ALL`] order.
    pub proj: Vec<Proj>,
}

/// A loaded base model (frozen) with its tokenizer.
pub struct Model {
    /// Architecture numbers.
    pub cfg: LlamaConfig,
    /// Embedding `[vocab, hidden]`.
    pub embed: Tensor,
    /// Decoder layers.
    pub layers: Vec<Layer>,
    /// Final norm scale.
    pub norm: Tensor,
    /// LM head `[vocab, hidden]` (the embedding when tied).
    pub lm_head: Tensor,
    /// The model's tokenizer.
    pub tokenizer: ModelTokenizer,
    /// Where it came from (shown in the UI and logs).
    pub source: String,
    /// The device it lives on.
    pub device: Device,
    /// Rotary tables and causal masks reused across forward passes (no host-to-device copy per
    /// pass once a length has been seen).
    caches: ForwardCaches,
}

/// `(tq, tk, offset)` of a causal mask.
type MaskKey = (usize, usize, usize);

/// Per-model tables a forward pass needs, kept on the model's device in its dtype.
#[derive(Default)]
struct ForwardCaches {
    /// `(positions, cos, sin)` for positions `0..positions`, `[positions, head_dim / 2]`.
    rope: std::sync::Mutex<Option<(usize, Tensor, Tensor)>>,
    /// The last causal mask, by `(tq, tk, offset)`.
    mask: std::sync::Mutex<Option<(MaskKey, Tensor)>>,
}

/// The dtype of the frozen base weights for a `base_dtype` setting on `device`: `f32`, `bf16`,
/// `f16`, or `auto` — f32 on the CPU, bf16 on a GPU (f16 when the build targets a GPU older than
/// compute capability 8.0, which has no bf16).
pub fn base_dtype(setting: &str, device: &Device) -> Result<DType> {
    match setting {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        "auto" | "" if device.is_cpu() => Ok(DType::F32),
        "auto" | "" => {
            let cap = option_env!("CUDA_COMPUTE_CAP").and_then(|c| c.trim().parse::<u32>().ok()).unwrap_or(90);
            Ok(if cap < 80 { DType::F16 } else { DType::BF16 })
        }
        other => Err(Error::Model(format!("unknown base_dtype {other} (auto, f32, bf16, f16)"))),
    }
}

/// Key/value cache of one prediction (cloning is cheap: tensors are shared, appends make new ones).
#[derive(Clone)]
pub struct KvCache {
    kv: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens already in the cache.
    pub len: usize,
}

impl KvCache {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> Self {
        Self { kv: vec![None; layers], len: 0 }
    }
}

/// Where a model comes from, resolved to files.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// A `.gguf` file.
    Gguf(PathBuf),
    /// A Hugging Face model folder.
    HfDir(PathBuf),
    /// A Hub repository id (`owner/name`), downloaded into the Hub cache.
    Hub(String),
}

impl ModelSource {
    /// Reads a user's model string: an existing `.gguf` file, an existing folder, or `owner/name`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let p = Path::new(s);
        if let Some(id) = s.strip_prefix("hub:") {
            return Ok(Self::Hub(id.to_owned()));
        }
        if p.is_file() {
            return Ok(Self::Gguf(p.to_owned()));
        }
        if p.is_dir() {
            return Ok(Self::HfDir(p.to_owned()));
        }
        let looks_like_id =
            s.split('/').count() == 2 && !s.starts_with('.') && !s.contains('\\') && !s.ends_with(".gguf");
        if looks_like_id {
            return Ok(Self::Hub(s.to_owned()));
        }
        Err(Error::Model(format!(
            "model {s}: no such file or folder (give a .gguf file, a Hugging Face model folder, or a Hub id like HuggingFaceTB/SmolLM2-135M-Instruct)"
        )))
    }
}

/// The default local model: SmolLM2-135M-Instruct as fetched by `scripts/fetch-assets.sh`.
pub fn default_model_path() -> PathBuf {
    if let Ok(p) = std::env::var("PRICER_MODEL") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Picks the device: `cpu`, `cuda` (error when not compiled in or absent) or `auto`.
pub fn pick_device(name: &str) -> Result<Device> {
    match name {
        "cpu" | "" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| {
            Error::Model(format!("CUDA device unavailable ({e}); build with `--features cuda` on a machine with a GPU"))
        }),
        "auto" => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        other => Err(Error::Model(format!("unknown device {other} (cpu, cuda, auto)"))),
    }
}

/// Whether CUDA support is compiled in and a GPU answers.
pub fn cuda_available() -> bool {
    candle_core::utils::cuda_is_available() && Device::new_cuda(0).is_ok()
}

impl Model {
    /// Loads from a resolved source with f32 weights.
    pub fn load(source: &ModelSource, device: &Device, hub: &crate::hub::HubOptions) -> Result<Self> {
        Self::load_as(source, device, DType::F32, hub)
    }

    /// Loads from a resolved source with weights of `dtype` on `device`.
    pub fn load_as(source: &ModelSource, device: &Device, dtype: DType, hub: &crate::hub::HubOptions) -> Result<Self> {
        match source {
            ModelSource::Gguf(p) => Self::from_gguf_as(p, device, dtype),
            ModelSource::HfDir(p) => Self::from_hf_dir_as(p, device, dtype),
            ModelSource::Hub(id) => {
                let dir = download_model(id, hub, &crate::jobs::JobCtx::default())?;
                let mut m = Self::from_hf_dir_as(&dir, device, dtype)?;
                m.source = format!("hub:{id}");
                Ok(m)
            }
        }
    }

    /// The dtype of the frozen weights.
    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// The same model with its frozen weights converted to `dtype` (tests and benchmarks).
    pub fn to_dtype(mut self, dtype: DType) -> Result<Self> {
        let c = |t: &Tensor| t.to_dtype(dtype).map_err(Error::from);
        let tied = self.cfg.tie_word_embeddings;
        self.embed = c(&self.embed)?;
        for l in &mut self.layers {
            l.attn_norm = c(&l.attn_norm)?;
            l.mlp_norm = c(&l.mlp_norm)?;
            for p in &mut l.proj {
                p.w = c(&p.w)?;
                p.b = p.b.as_ref().map(c).transpose()?;
            }
        }
        self.norm = c(&self.norm)?;
        self.lm_head = if tied { self.embed.clone() } else { c(&self.lm_head)? };
        self.caches = ForwardCaches::default();
        Ok(self)
    }

    /// Loads a GGUF file, dequantizing every tensor to f32.
    pub fn from_gguf(path: &Path, device: &Device) -> Result<Self> {
        Self::from_gguf_as(path, device, DType::F32)
    }

    /// Loads a GGUF file: each tensor is dequantized on the CPU, moved to `device` and converted
    /// to `dtype` there before the next one is read.
    pub fn from_gguf_as(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        use candle_core::quantized::gguf_file;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = std::io::BufReader::new(&mut f);
        let content =
            gguf_file::Content::read(&mut reader).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let md = &content.metadata;
        let cfg = gguf_config(&content).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let arch = cfg.model_type.clone();
        let tensor = |name: &str, reader: &mut std::io::BufReader<&mut std::fs::File>| -> Result<Tensor> {
            let q = content.tensor(reader, name, &Device::Cpu)?;
            q.dequantize(&Device::Cpu).map_err(Error::from)
        };
        let place = |t: Tensor| -> Result<Tensor> { t.to_device(device)?.to_dtype(dtype).map_err(Error::from) };
        let embed = place(tensor("token_embd.weight", &mut reader)?)?;
        let hd = cfg.head_dim();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let mut proj = Vec::with_capacity(7);
            for t in Target::ALL {
                let gname = match t {
                    Target::Q => "attn_q",
                    Target::K => "attn_k",
                    Target::V => "attn_v",
                    Target::O => "attn_output",
                    Target::Gate => "ffn_gate",
                    Target::Up => "ffn_up",
                    Target::Down => "ffn_down",
                };
                let mut w = tensor(&format!("blk.{i}.{gname}.weight"), &mut reader)?;
                let bias_name = format!("blk.{i}.{gname}.bias");
                let mut b = if content.tensor_infos.contains_key(&bias_name) {
                    Some(tensor(&bias_name, &mut reader)?)
                } else {
                    None
                };
                // llama.cpp stores Llama's Q and K rows permuted for its interleaved RoPE; put them
                // back in Hugging Face order so adapters trained here load in PEFT.
                if arch == "llama" && matches!(t, Target::Q | Target::K) {
                    let nh = if t == Target::Q { cfg.num_attention_heads } else { cfg.num_key_value_heads };
                    w = unpermute(&w, nh, hd)?;
                    if let Some(bb) = b.take() {
                        b = Some(unpermute(&bb.unsqueeze(1)?, nh, hd)?.squeeze(1)?);
                    }
                }
                proj.push(Proj { w: place(w)?, b: b.map(place).transpose()? });
            }
            layers.push(Layer {
                attn_norm: place(tensor(&format!("blk.{i}.attn_norm.weight"), &mut reader)?)?,
                mlp_norm: place(tensor(&format!("blk.{i}.ffn_norm.weight"), &mut reader)?)?,
                proj,
            });
        }
        let norm = place(tensor("output_norm.weight", &mut reader)?)?;
        let lm_head =
            if cfg.tie_word_embeddings { embed.clone() } else { place(tensor("output.weight", &mut reader)?)? };
        let beside = path.with_file_name("tokenizer.json");
        let tokenizer = if beside.is_file() {
            ModelTokenizer::from_file(&beside)?
        } else {
            ModelTokenizer::from_gguf_metadata(md)?
        };
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            tokenizer,
            source: path.display().to_string(),
            device: device.clone(),
            caches: ForwardCaches::default(),
        })
    }

    /// Loads a Hugging Face model folder (single or sharded safetensors) with f32 weights.
    pub fn from_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        Self::from_hf_dir_as(dir, device, DType::F32)
    }

    /// Loads a Hugging Face model folder: each tensor is read from its file alone, moved to
    /// `device` in the file's dtype and converted to `dtype` there.
    pub fn from_hf_dir_as(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let cfg = LlamaConfig::from_hf_json(&text)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::Model(format!("{}: no *.safetensors files", dir.display())));
        }
        let mut st = super::tensors::SafetensorsFiles::open(&files)?;
        let mut take = |name: &str| -> Result<Tensor> {
            let t = st
                .read(name, device)?
                .ok_or_else(|| Error::Model(format!("{}: tensor {name} missing", dir.display())))?;
            t.to_dtype(dtype).map_err(Error::from)
        };
        let embed = take("model.embed_tokens.weight")?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let mut proj = Vec::with_capacity(7);
            for t in Target::ALL {
                let base = format!("model.layers.{i}.{}", t.hf_path());
                let b = if cfg.attention_bias && matches!(t, Target::Q | Target::K | Target::V) {
                    Some(take(&format!("{base}.bias"))?)
                } else {
                    None
                };
                proj.push(Proj { w: take(&format!("{base}.weight"))?, b });
            }
            layers.push(Layer {
                attn_norm: take(&format!("model.layers.{i}.input_layernorm.weight"))?,
                mlp_norm: take(&format!("model.layers.{i}.post_attention_layernorm.weight"))?,
                proj,
            });
        }
        let norm = take("model.norm.weight")?;
        let lm_head = if cfg.tie_word_embeddings { embed.clone() } else { take("lm_head.weight")? };
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = ModelTokenizer::from_file(&tok_path)?;
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            tokenizer,
            source: dir.display().to_string(),
            device: device.clone(),
            caches: ForwardCaches::default(),
        })
    }

    /// Saves the model as a Hugging Face folder (used by tests to build tiny models).
    pub fn save_hf_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut map: HashMap<String, Tensor> = HashMap::new();
        map.insert("model.embed_tokens.weight".into(), self.embed.clone());
        for (i, l) in self.layers.iter().enumerate() {
            for (t, p) in Target::ALL.iter().zip(&l.proj) {
                let base = format!("model.layers.{i}.{}", t.hf_path());
                map.insert(format!("{base}.weight"), p.w.clone());
                if let Some(b) = &p.b {
                    map.insert(format!("{base}.bias"), b.clone());
                }
            }
            map.insert(format!("model.layers.{i}.input_layernorm.weight"), l.attn_norm.clone());
            map.insert(format!("model.layers.{i}.post_attention_layernorm.weight"), l.mlp_norm.clone());
        }
        map.insert("model.norm.weight".into(), self.norm.clone());
        if !self.cfg.tie_word_embeddings {
            map.insert("lm_head.weight".into(), self.lm_head.clone());
        }
        let st = dir.join("model.safetensors");
        crate::atomic::write_atomic(&st, |w| {
            let bytes = safetensors_bytes(&map).map_err(|e| std::io::Error::other(e.to_string()))?;
            w.write_all(&bytes)
        })?;
        crate::atomic::write_atomic(&dir.join("config.json"), |w| w.write_all(self.cfg.to_hf_json().as_bytes()))?;
        self.tokenizer.save(&dir.join("tokenizer.json"))
    }

    /// A model with random weights (std 0.02), for tests and benchmarks.
    pub fn random(cfg: LlamaConfig, tokenizer: ModelTokenizer, seed: u64, device: &Device) -> Result<Self> {
        use rand::SeedableRng;
        use rand_distr_free::normal_vec;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut rand_t = |shape: (usize, usize)| -> Result<Tensor> {
            Tensor::from_vec(normal_vec(&mut rng, shape.0 * shape.1, 0.02), shape, device).map_err(Error::from)
        };
        let embed = rand_t((cfg.vocab_size, cfg.hidden_size))?;
        let ones = Tensor::ones(cfg.hidden_size, DType::F32, device)?;
        let mut layers = vec![];
        for _ in 0..cfg.num_hidden_layers {
            let mut proj = vec![];
            for t in Target::ALL {
                let w = rand_t(cfg.shape_of(t))?;
                let b = if cfg.attention_bias && matches!(t, Target::Q | Target::K | Target::V) {
                    Some(rand_t((1, cfg.shape_of(t).0))?.squeeze(0)?)
                } else {
                    None
                };
                proj.push(Proj { w, b });
            }
            layers.push(Layer { attn_norm: ones.clone(), mlp_norm: ones.clone(), proj });
        }
        let lm_head = if cfg.tie_word_embeddings { embed.clone() } else { rand_t((cfg.vocab_size, cfg.hidden_size))? };
        Ok(Self {
            cfg,
            embed,
            layers,
            norm: ones,
            lm_head,
            tokenizer,
            source: "random".into(),
            device: device.clone(),
            caches: ForwardCaches::default(),
        })
    }

    /// Rotary tables `[t, head_dim / 2]` for positions `offset..offset + t`, in the model's dtype
    /// on its device (computed once for the longest length seen, then narrowed).
    fn rope_tables(&self, offset: usize, t: usize) -> Result<(Tensor, Tensor)> {
        let need = offset + t;
        let mut cache = self.caches.rope.lock().map_err(|_| Error::Model("rope cache poisoned".into()))?;
        if cache.as_ref().is_none_or(|(n, _, _)| *n < need) {
            let n = need.next_power_of_two().max(256);
            let half = self.cfg.head_dim() / 2;
            let (cos, sin) = rope_tables(self.cfg.rope_theta, self.cfg.head_dim(), 0, n);
            let dtype = self.dtype();
            let cos = Tensor::from_vec(cos, (n, half), &self.device)?.to_dtype(dtype)?;
            let sin = Tensor::from_vec(sin, (n, half), &self.device)?.to_dtype(dtype)?;
            *cache = Some((n, cos, sin));
        }
        let (_, cos, sin) = cache.as_ref().expect("filled above");
        Ok((cos.narrow(0, offset, t)?.contiguous()?, sin.narrow(0, offset, t)?.contiguous()?))
    }

    /// The additive causal mask of a `[tq, tk]` score block at `offset` (the last one is kept).
    fn causal_mask(&self, tq: usize, tk: usize, offset: usize) -> Result<Tensor> {
        let mut cache = self.caches.mask.lock().map_err(|_| Error::Model("mask cache poisoned".into()))?;
        if let Some((key, m)) = cache.as_ref()
            && *key == (tq, tk, offset)
        {
            return Ok(m.clone());
        }
        let m = ops::causal_mask(tq, tk, offset, self.dtype(), &self.device)?;
        *cache = Some(((tq, tk, offset), m.clone()));
        Ok(m)
    }

    /// The hidden states `[b, t, hidden]` after the last layer, before the final norm.
    /// With `lora`, adapters are applied (and their dropout when `train` is set, drawn from
    /// `dropout_seed`). With `cache`, keys and values are appended and reused.
    pub fn hidden(
        &self,
        ids: &Tensor,
        lora: Option<&Lora>,
        dropout_seed: Option<u64>,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim());
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let (cos, sin) = self.rope_tables(offset, t)?;
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0).and_then(|e| e.reshape((b, t, cfg.hidden_size)))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let c = |r: candle_core::Result<Tensor>| r.map_err(Error::from);
        for (li, layer) in self.layers.iter().enumerate() {
            let proj = |target: Target, input: &Tensor| -> Result<Tensor> {
                let p = &layer.proj[target as usize];
                let y = c(ops::frozen_linear(input, &p.w, p.b.as_ref()))?;
                match lora {
                    Some(l) => l.apply(li, target, input, y, dropout_seed),
                    None => Ok(y),
                }
            };
            let h = c(ops::rms_norm(&x, &layer.attn_norm, cfg.rms_norm_eps))?;
            let q = proj(Target::Q, &h)?;
            let k = proj(Target::K, &h)?;
            let v = proj(Target::V, &h)?;
            let q = c(q.reshape((b, t, nh, hd)).and_then(|q| q.transpose(1, 2)))?;
            let k = c(k.reshape((b, t, nkv, hd)).and_then(|k| k.transpose(1, 2)))?;
            let v = c(v.reshape((b, t, nkv, hd)).and_then(|v| v.transpose(1, 2)))?;
            let q = c(ops::rope(&q, &cos, &sin))?;
            let mut k = c(ops::rope(&k, &cos, &sin))?;
            let mut v = c(v.contiguous())?;
            if let Some(cache) = cache.as_deref_mut() {
                if let Some((pk, pv)) = &cache.kv[li] {
                    k = c(Tensor::cat(&[pk, &k], 2))?;
                    v = c(Tensor::cat(&[pv, &v], 2))?;
                }
                cache.kv[li] = Some((k.clone(), v.clone()));
            }
            let tk = k.dim(2)?;
            let rep = nh / nkv;
            let (k, v) = if rep > 1 {
                let expand = |x: &Tensor| {
                    x.unsqueeze(2)
                        .and_then(|x| x.broadcast_as((b, nkv, rep, tk, hd)))
                        .and_then(|x| x.reshape((b, nh, tk, hd)))
                };
                (c(expand(&k))?, c(expand(&v))?)
            } else {
                (k, v)
            };
            let scores = c(q.contiguous().and_then(|q| q.matmul(&k.t()?.contiguous()?)))?;
            let probs = if self.fast_kernels() {
                c(ops::causal_softmax(&scores, scale, offset))?
            } else {
                c(ops::masked_softmax(&scores, scale, &self.causal_mask(t, tk, offset)?))?
            };
            let attn = c(probs
                .matmul(&v.contiguous()?)
                .and_then(|a| a.transpose(1, 2))
                .and_then(|a| a.reshape((b, t, nh * hd))))?;
            let o = proj(Target::O, &attn)?;
            x = c(x + o)?;
            let h2 = c(ops::rms_norm(&x, &layer.mlp_norm, cfg.rms_norm_eps))?;
            let gate = proj(Target::Gate, &h2)?;
            let up = proj(Target::Up, &h2)?;
            let act = c(gate.silu().and_then(|g| g * up))?;
            let down = proj(Target::Down, &act)?;
            x = c(x + down)?;
        }
        if let Some(cache) = cache {
            cache.len += t;
        }
        Ok(x)
    }

    /// Final norm of selected hidden rows `[m, hidden]`.
    pub fn final_norm(&self, rows: &Tensor) -> Result<Tensor> {
        ops::rms_norm(rows, &self.norm, self.cfg.rms_norm_eps).map_err(Error::from)
    }

    /// LM-head logits `[m, vocab]` in f32 of normed rows `[m, hidden]` (of any dtype).
    pub fn logits(&self, normed: &Tensor) -> Result<Tensor> {
        let x = normed.to_dtype(self.dtype())?;
        ops::frozen_linear(&x, &self.lm_head, None).and_then(|l| l.to_dtype(DType::F32)).map_err(Error::from)
    }

    /// Whether the forward pass runs the hand-written CPU f32 kernels.
    fn fast_kernels(&self) -> bool {
        self.device.is_cpu() && self.dtype() == DType::F32
    }

    /// Logits of the last position of `ids` (one sequence), for a plain forward pass.
    pub fn next_token_logits(&self, ids: &[u32], lora: Option<&Lora>, cache: Option<&mut KvCache>) -> Result<Vec<f32>> {
        let t = Tensor::from_slice(ids, (1, ids.len()), &self.device)?;
        let h = self.hidden(&t, lora, None, cache)?;
        let last = h.narrow(1, ids.len() - 1, 1).and_then(|x| x.squeeze(1))?;
        let normed = self.final_norm(&last)?;
        self.logits(&normed)?.squeeze(0).and_then(|x| x.to_vec1::<f32>()).map_err(Error::from)
    }
}

/// RoPE cosines and sines `[t, head_dim / 2]` (row-major) for positions `offset..offset + t`.
pub fn rope_tables(theta: f64, head_dim: usize, offset: usize, t: usize) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for p in offset..offset + t {
        for i in 0..half {
            let a = p as f64 * (1.0 / theta.powf(2.0 * i as f64 / (2 * half) as f64));
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// The architecture numbers in a GGUF file's metadata.
fn gguf_config(content: &candle_core::quantized::gguf_file::Content) -> Result<LlamaConfig> {
    let md = &content.metadata;
    let arch = md.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    if !matches!(arch.as_str(), "llama" | "qwen2") {
        return Err(Error::Model(format!("architecture {arch:?} is not supported (llama, qwen2)")));
    }
    let get_u = |k: &str| -> Result<usize> {
        md.get(&format!("{arch}.{k}"))
            .and_then(|v| v.to_u32().ok().or_else(|| v.to_u64().ok().map(|x| x as u32)))
            .map(|v| v as usize)
            .ok_or_else(|| Error::Model(format!("GGUF metadata has no {arch}.{k}")))
    };
    let get_f = |k: &str, d: f64| md.get(&format!("{arch}.{k}")).and_then(|v| v.to_f32().ok()).map_or(d, f64::from);
    let embed =
        content.tensor_infos.get("token_embd.weight").ok_or_else(|| Error::Model("no token_embd.weight".into()))?;
    let (vocab, hidden) = embed.shape.dims2()?;
    let heads = get_u("attention.head_count")?;
    Ok(LlamaConfig {
        model_type: arch.clone(),
        hidden_size: hidden,
        intermediate_size: get_u("feed_forward_length")?,
        num_hidden_layers: get_u("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: get_u("attention.head_count_kv").unwrap_or(heads),
        vocab_size: vocab,
        rms_norm_eps: get_f("attention.layer_norm_rms_epsilon", 1e-5),
        rope_theta: get_f("rope.freq_base", 10_000.0),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        attention_bias: arch == "qwen2" || content.tensor_infos.contains_key("blk.0.attn_q.bias"),
    })
}

/// The architecture of a model without loading its weights (GGUF header or `config.json`);
/// `None` for a Hub id not in the cache.
pub fn peek_config(model: &str) -> Result<LlamaConfig> {
    match ModelSource::parse(model)? {
        ModelSource::Gguf(p) => {
            let mut f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
            let content = candle_core::quantized::gguf_file::Content::read(&mut std::io::BufReader::new(&mut f))
                .map_err(|e| Error::Model(format!("{}: {e}", p.display())))?;
            gguf_config(&content)
        }
        ModelSource::HfDir(d) => {
            let p = d.join("config.json");
            LlamaConfig::from_hf_json(&std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?)
        }
        ModelSource::Hub(id) => {
            Err(Error::Model(format!("{id} is downloaded when the run starts; its size is known then")))
        }
    }
}

/// The tokenizer of a model without loading its weights (GGUF metadata or `tokenizer.json`).
pub fn peek_tokenizer(model: &str) -> Result<ModelTokenizer> {
    match ModelSource::parse(model)? {
        ModelSource::Gguf(p) => {
            // As `from_gguf`: a `tokenizer.json` beside the file wins.
            let beside = p.with_file_name("tokenizer.json");
            if beside.is_file() {
                return ModelTokenizer::from_file(&beside);
            }
            let mut f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
            let content = candle_core::quantized::gguf_file::Content::read(&mut std::io::BufReader::new(&mut f))
                .map_err(|e| Error::Model(format!("{}: {e}", p.display())))?;
            ModelTokenizer::from_gguf_metadata(&content.metadata)
        }
        ModelSource::HfDir(d) => ModelTokenizer::from_file(&d.join("tokenizer.json")),
        ModelSource::Hub(id) => {
            Err(Error::Model(format!("{id} is downloaded when the run starts; its tokenizer is known then")))
        }
    }
}

/// Inverse of llama.cpp's Q/K row permutation for `nh` heads of size `hd`.
fn unpermute(w: &Tensor, nh: usize, hd: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    w.reshape((nh, hd / 2, 2, inp))
        .and_then(|w| w.transpose(1, 2))
        .and_then(|w| w.contiguous())
        .and_then(|w| w.reshape((out, inp)))
        .map_err(Error::from)
}

/// Downloads a model repository's `config.json`, `tokenizer.json` and safetensors (sharded or
/// not) into the Hub cache through `hf-hub`; returns the snapshot folder.
pub fn download_model(id: &str, opts: &crate::hub::HubOptions, ctx: &crate::jobs::JobCtx) -> Result<PathBuf> {
    use hf_hub::{Repo, RepoType};
    let api = crate::hub::api(opts, 1)?;
    let repo = api.repo(Repo::new(id.to_owned(), RepoType::Model));
    let get = |file: &str| -> Result<PathBuf> {
        ctx.check()?;
        ctx.report(&crate::jobs::Progress { stage: format!("downloading {id}/{file}"), ..Default::default() });
        repo.get(file).map_err(|e| {
            let text = e.to_string();
            let hint = if text.contains("404") {
                " — no such file in the repository"
            } else if text.contains("401") || text.contains("403") {
                " — access denied: accept the model's license on the Hub and set HF_TOKEN"
            } else {
                " — the Hub cannot be reached (offline?); set HF_ENDPOINT to a mirror, or give a local .gguf file or model folder"
            };
            Error::Download(format!("{id}/{file}: {text}{hint}"))
        })
    };
    let config = get("config.json")?;
    get("tokenizer.json")?;
    match get("model.safetensors.index.json") {
        Ok(index) => {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Model(format!("{e}")))?;
            let mut shards: Vec<String> = v["weight_map"]
                .as_object()
                .map(|m| m.values().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            for s in shards {
                get(&s)?;
            }
        }
        Err(_) => {
            get("model.safetensors")?;
        }
    }
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    // The index file sits beside shards but is not a safetensors file; nothing else to clean.
    Ok(dir)
}

/// Small helpers for normal draws without another dependency.
mod rand_distr_free {
    use rand::Rng;
    /// `n` draws from N(0, std²) (Box–Muller).
    pub fn normal_vec(rng: &mut impl Rng, n: usize, std: f32) -> Vec<f32> {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f32::consts::TAU * u2;
            v.push(r * a.cos() * std);
            if v.len() < n {
                v.push(r * a.sin() * std);
            }
        }
        v
    }
}

/// Mean of `log_softmax(logits)[target]` over rows, negated: the cross-entropy loss.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let c = |r: candle_core::Result<Tensor>| r.map_err(Error::from);
    let max = c(logits.max_keepdim(D::Minus1))?;
    let diff = c(logits.broadcast_sub(&max.detach()))?;
    let lse = c(diff.exp().and_then(|e| e.sum_keepdim(D::Minus1)).and_then(|s| s.log()))?;
    let logp = c(diff.broadcast_sub(&lse))?;
    let picked = c(logp.gather(&targets.unsqueeze(1)?, 1))?;
    c(picked.mean_all().and_then(|m| m.neg()))
}
