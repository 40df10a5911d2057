//! Sentence embeddings with all-MiniLM-L6-v2 (candle-transformers' BERT configuration and
//! weights; the forward pass of [`super::bert`], tested against candle-transformers'
//! `BertModel`), as sentence-transformers computes them: WordPiece tokens truncated at the
//! model's `max_seq_length` (256), the transformer, the mean of the token vectors under the
//! attention mask, L2 normalisation. Texts are embedded in batches of similar length with progress and
//! Cancel, and every vector is cached on disk by (model, text digest): an append-only file of
//! `[16-byte SHA-256 prefix of the text][dim × f32]` records, so a second run costs nothing.
//!
//! On top of them: k nearest neighbours (cosine, uniform or 1/distance weights) and the
//! original's week-8 random forest.

use super::bert::Bert;
use super::forest::Forest;
use super::{Guess, Pricer, description};
use crate::evaluation::ForestParams;
use crate::items::{ItemRef, ItemTable};
use crate::jobs::{JobCtx, Progress};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Texts per forward pass.
pub const BATCH: usize = 32;

/// The built-in embedder's folder: `PRICER_EMBEDDER`, else `assets/models/all-MiniLM-L6-v2`
/// (fetched by `scripts/fetch-assets.sh`).
pub fn default_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PRICER_EMBEDDER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/all-MiniLM-L6-v2")
}

/// The folder a spec's `embedder` names (empty: the built-in one).
pub fn resolve(name: &str) -> PathBuf {
    if name.is_empty() { default_dir() } else { PathBuf::from(name) }
}

type Key = [u8; 16];

fn key_of(text: &str) -> Key {
    let h = Sha256::digest(text.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h[..16]);
    k
}

/// The on-disk cache of one embedder's vectors.
struct Cache {
    path: PathBuf,
    dim: usize,
    map: HashMap<Key, Vec<f32>>,
}

impl Cache {
    fn open(path: PathBuf, dim: usize) -> Self {
        let mut map = HashMap::new();
        let rec = 16 + 4 * dim;
        if let Ok(bytes) = std::fs::read(&path) {
            // A torn last record (a crash mid-write) is ignored.
            for r in bytes.chunks_exact(rec) {
                let mut k = [0u8; 16];
                k.copy_from_slice(&r[..16]);
                let v = r[16..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                map.insert(k, v);
            }
        }
        Self { path, dim, map }
    }

    fn append(&mut self, new: &[(Key, Vec<f32>)]) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut buf = Vec::with_capacity(new.len() * (16 + 4 * self.dim));
        for (k, v) in new {
            buf.extend_from_slice(k);
            v.iter().for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            self.map.insert(*k, v.clone());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        // Whole records only: pad a torn tail left by an earlier crash before appending.
        let len = f.metadata().map_err(|e| Error::io(&self.path, e))?.len() as usize;
        let rec = 16 + 4 * self.dim;
        if !len.is_multiple_of(rec) {
            drop(f);
            let bytes = std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))?;
            let keep = bytes.len() / rec * rec;
            crate::atomic::write_atomic_bytes(&self.path, &bytes[..keep])?;
            f = std::fs::OpenOptions::new().append(true).open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        }
        f.write_all(&buf).and_then(|()| f.flush()).map_err(|e| Error::io(&self.path, e))
    }
}

/// A loaded sentence embedder.
pub struct Embedder {
    bert: Bert,
    tokenizer: tokenizers::Tokenizer,
    /// Vector size.
    pub dim: usize,
    /// Longest input in tokens (specials included).
    pub max_len: usize,
    /// Model name (its folder's name).
    pub name: String,
    cache: Option<Mutex<Cache>>,
}

impl Embedder {
    /// Loads a sentence-transformers folder (config.json, model.safetensors, tokenizer.json,
    /// sentence_bert_config.json) with its disk cache under `cache_dir`.
    pub fn load(dir: &Path, cache_dir: &Path) -> Result<Self> {
        let mut e = Self::load_uncached(dir)?;
        let cache = cache_dir.join("embeddings").join(format!("{}-{}.bin", e.name, e.max_len));
        e.cache = Some(Mutex::new(Cache::open(cache, e.dim)));
        Ok(e)
    }

    /// Loads without a disk cache.
    pub fn load_uncached(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| {
                Error::Model(format!(
                    "embedder {}: {e} (run scripts/fetch-assets.sh to fetch all-MiniLM-L6-v2)",
                    p.display()
                ))
            })
        };
        let cfg: Config = serde_json::from_str(&read("config.json")?)
            .map_err(|e| Error::Model(format!("{}: {e}", dir.join("config.json").display())))?;
        let dim = cfg.hidden_size;
        let max_len = read("sentence_bert_config.json")
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("max_seq_length")?.as_u64())
            .unwrap_or(256) as usize;
        let tensors = load_tensors(dir)?;
        let bert = Bert::new(&tensors, &cfg)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let name = dir.file_name().map_or_else(|| "embedder".into(), |s| s.to_string_lossy().into_owned());
        Ok(Self { bert, tokenizer, dim, max_len, name, cache: None })
    }

    /// Embeds texts (normalised vectors), from the cache where it has them.
    pub fn embed(&self, texts: &[&str], ctx: &JobCtx) -> Result<Vec<Vec<f32>>> {
        let keys: Vec<Key> = texts.par_iter().map(|t| key_of(t)).collect();
        let mut out: Vec<Option<Vec<f32>>> = match &self.cache {
            Some(c) => {
                let c = c.lock().unwrap_or_else(|e| e.into_inner());
                keys.iter().map(|k| c.map.get(k).cloned()).collect()
            }
            None => vec![None; texts.len()],
        };
        // Missing texts, each once, in order of token length (batches of similar length pad little).
        let mut first: HashMap<Key, usize> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if out[i].is_none() {
                first.entry(*k).or_insert(i);
            }
        }
        let mut todo: Vec<usize> = first.values().copied().collect();
        todo.sort_unstable();
        let encodings: Vec<tokenizers::Encoding> = todo
            .par_iter()
            .map(|&i| self.tokenizer.encode(texts[i], true).map_err(|e| Error::Tokenizer(e.to_string())))
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..todo.len()).collect();
        order.sort_by_key(|&k| encodings[k].get_ids().len());
        let total = order.len();
        // Batches run side by side, one per core: a forward pass of a 32-text batch keeps about
        // one core busy (its matrix products are too small for the matmul to split them well).
        let done = std::sync::atomic::AtomicUsize::new(0);
        let batches: Vec<&[usize]> = order.chunks(BATCH).collect();
        let results: Vec<Vec<(Key, Vec<f32>)>> = batches
            .par_iter()
            .map(|chunk| {
                ctx.check()?;
                let batch: Vec<&tokenizers::Encoding> = chunk.iter().map(|&k| &encodings[k]).collect();
                let vecs = self.forward(&batch)?;
                let new: Vec<(Key, Vec<f32>)> = chunk.iter().map(|&k| keys[todo[k]]).zip(vecs).collect();
                if let Some(c) = &self.cache {
                    c.lock().unwrap_or_else(|e| e.into_inner()).append(&new)?;
                }
                let n = done.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed) + chunk.len();
                ctx.report(&Progress {
                    stage: format!("embedding {n}/{total} texts"),
                    done: n as u64,
                    total: total as u64,
                    n_items: n as u64,
                });
                Ok(new)
            })
            .collect::<Result<_>>()?;
        let computed: HashMap<Key, Vec<f32>> = results.into_iter().flatten().collect();
        for (i, k) in keys.iter().enumerate() {
            if out[i].is_none() {
                out[i] = computed.get(k).cloned();
            }
        }
        Ok(out.into_iter().map(|v| v.unwrap_or_default()).collect())
    }

    /// One batch of encodings: sentence vectors from the hand-written encoder.
    fn forward(&self, batch: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>> {
        let seqs: Vec<&[u32]> = batch.iter().map(|e| e.get_ids()).collect();
        self.bert.sentence_vectors(&seqs)
    }

    /// The same texts through candle-transformers' `BertModel` (padded batch, attention mask,
    /// masked mean pooling, L2 normalisation): the reference the hand-written encoder is tested
    /// against.
    pub fn reference_forward(&self, dir: &Path, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let cfg: Config = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).map_err(|e| Error::io(dir.join("config.json"), e))?,
        )
        .map_err(|e| Error::Model(e.to_string()))?;
        let device = Device::Cpu;
        let vb = candle_nn::VarBuilder::from_tensors(load_tensors(dir)?, DType::F32, &device);
        let model = BertModel::load(vb, &cfg)?;
        let enc: Vec<tokenizers::Encoding> = texts
            .iter()
            .map(|t| self.tokenizer.encode(*t, true).map_err(|e| Error::Tokenizer(e.to_string())))
            .collect::<Result<_>>()?;
        let len = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let b = enc.len();
        let mut ids = vec![0u32; b * len];
        let mut mask = vec![0f32; b * len];
        for (r, e) in enc.iter().enumerate() {
            for (c, &id) in e.get_ids().iter().enumerate() {
                ids[r * len + c] = id;
                mask[r * len + c] = 1.0;
            }
        }
        let ids = Tensor::from_vec(ids, (b, len), &device)?;
        let types = ids.zeros_like()?;
        let mask_t = Tensor::from_vec(mask, (b, len), &device)?;
        let h = model.forward(&ids, &types, Some(&mask_t))?;
        let m = mask_t.unsqueeze(2)?;
        let summed = h.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

fn load_tensors(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::load(&weights, &Device::Cpu)
        .map_err(|e| Error::Model(format!("{}: {e}", weights.display())))
}

/// Embeds the descriptions of a table's items.
pub fn embed_items(e: &Embedder, table: &ItemTable, ctx: &JobCtx) -> Result<Vec<Vec<f32>>> {
    let texts: Vec<String> = (0..table.len()).into_par_iter().map(|i| description(table.get(i).prompt)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    e.embed(&refs, ctx)
}

/// The `k` training rows nearest to `q` by cosine (vectors normalised): `(row, similarity)`,
/// nearest first.
pub fn nearest(index: &[Vec<f32>], q: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut sims: Vec<(usize, f32)> =
        index.iter().enumerate().map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>())).collect();
    let k = k.min(sims.len());
    if k == 0 {
        return vec![];
    }
    sims.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sims.truncate(k);
    sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sims
}

/// k nearest neighbours on sentence embeddings.
pub struct KnnPricer {
    embedder: Embedder,
    index: Vec<Vec<f32>>,
    prices: Vec<f64>,
    k: usize,
    distance_weighted: bool,
}

impl KnnPricer {
    /// Embeds the training items.
    pub fn fit(
        train: &ItemTable,
        embedder: &str,
        cache: &Path,
        k: usize,
        distance_weighted: bool,
        ctx: &JobCtx,
    ) -> Result<Self> {
        if k == 0 {
            return Err(Error::InvalidInput("embed-knn needs k ≥ 1".into()));
        }
        let embedder = Embedder::load(&resolve(embedder), cache)?;
        let index = embed_items(&embedder, train, ctx)?;
        Ok(Self { embedder, index, prices: train.prices().to_vec(), k, distance_weighted })
    }
}

impl Pricer for KnnPricer {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], ctx: &JobCtx) -> Result<Vec<Guess>> {
        let texts: Vec<String> = batch.iter().map(|(_, it)| description(it.prompt)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let q = self.embedder.embed(&refs, ctx)?;
        Ok(q.par_iter()
            .map(|q| {
                let nn = nearest(&self.index, q, self.k);
                // Euclidean distance of unit vectors: sqrt(2 − 2 cos).
                let dist: Vec<f64> = nn.iter().map(|&(_, s)| (2.0 - 2.0 * s as f64).max(0.0).sqrt()).collect();
                let price = if self.distance_weighted && dist.contains(&0.0) {
                    let exact: Vec<f64> =
                        nn.iter().zip(&dist).filter(|(_, d)| **d == 0.0).map(|(n, _)| self.prices[n.0]).collect();
                    exact.iter().sum::<f64>() / exact.len() as f64
                } else if self.distance_weighted {
                    let w: Vec<f64> = dist.iter().map(|d| 1.0 / d).collect();
                    nn.iter().zip(&w).map(|(n, w)| self.prices[n.0] * w).sum::<f64>() / w.iter().sum::<f64>()
                } else {
                    nn.iter().map(|n| self.prices[n.0]).sum::<f64>() / nn.len().max(1) as f64
                };
                Guess::of(price)
            })
            .collect())
    }
    fn batch_size(&self) -> usize {
        128
    }
    fn parallel_batches(&self) -> bool {
        false
    }
    fn fitted(&self) -> serde_json::Value {
        serde_json::json!({ "embedder": self.embedder.name, "train_items": self.index.len(), "k": self.k,
            "weights": if self.distance_weighted { "distance" } else { "uniform" } })
    }
}

/// Random forest on sentence embeddings.
pub struct EmbedRf {
    embedder: Embedder,
    forest: Forest,
}

impl EmbedRf {
    /// Embeds the training items and grows the forest.
    pub fn fit(train: &ItemTable, embedder: &str, cache: &Path, p: &ForestParams, ctx: &JobCtx) -> Result<Self> {
        let embedder = Embedder::load(&resolve(embedder), cache)?;
        let x: Vec<f32> = embed_items(&embedder, train, ctx)?.into_iter().flatten().collect();
        let forest = Forest::fit(&x, embedder.dim, train.prices(), p, ctx)?;
        Ok(Self { embedder, forest })
    }
}

impl Pricer for EmbedRf {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], ctx: &JobCtx) -> Result<Vec<Guess>> {
        let texts: Vec<String> = batch.iter().map(|(_, it)| description(it.prompt)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let q = self.embedder.embed(&refs, ctx)?;
        Ok(q.par_iter().map(|v| Guess::of(self.forest.predict(v).max(0.0))).collect())
    }
    fn batch_size(&self) -> usize {
        128
    }
    fn parallel_batches(&self) -> bool {
        false
    }
    fn fitted(&self) -> serde_json::Value {
        serde_json::json!({ "embedder": self.embedder.name, "trees": self.forest.trees.len() })
    }
}
