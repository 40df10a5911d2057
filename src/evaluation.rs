//! A saved evaluation: which pricer (its full specification, so it can be re-run), on which files
//! (with digests), every scored item, the Tester's metrics and more, and the time it took. Every
//! pricer's result is one of these — the baselines, chat models, imports, ensembles and the
//! fine-tuned checkpoints alike — so the Compare tab and `pricer compare` read one format.

use crate::atomic::write_atomic_json;
use crate::tester::{Colour, TestReport};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the evaluation file format.
pub const FORMAT: u32 = 1;

/// word2vec training parameters (gensim's defaults with the original's choices).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct W2vParams {
    /// Vector size (the original: 400).
    pub vector_size: usize,
    /// Context window (5).
    pub window: usize,
    /// Words seen fewer times are dropped (1).
    pub min_count: usize,
    /// Negative samples per word (5).
    pub negative: usize,
    /// Exponent of the negative-sampling distribution (0.75).
    pub ns_exponent: f64,
    /// Down-sampling threshold of frequent words (1e-3).
    pub sample: f64,
    /// Learning rate at the start (0.025) …
    pub alpha: f64,
    /// … and at the end (0.0001).
    pub min_alpha: f64,
    /// Passes over the corpus (5).
    pub epochs: usize,
    /// Seed of the initial vectors, windows and samples.
    pub seed: u64,
}

impl Default for W2vParams {
    fn default() -> Self {
        Self {
            vector_size: 400,
            window: 5,
            min_count: 1,
            negative: 5,
            ns_exponent: 0.75,
            sample: 1e-3,
            alpha: 0.025,
            min_alpha: 0.0001,
            epochs: 5,
            seed: 1,
        }
    }
}

/// Random forest parameters (scikit-learn's `RandomForestRegressor` defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForestParams {
    /// Trees (100).
    pub n_trees: usize,
    /// Seed of the bootstrap samples and feature orders (42).
    pub seed: u64,
    /// Features tried at each split; `None` = all (the regressor's default).
    pub max_features: Option<usize>,
    /// Fewest samples in a leaf (1).
    pub min_samples_leaf: usize,
    /// Deepest tree; `None` = grow until pure.
    pub max_depth: Option<usize>,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self { n_trees: 100, seed: 42, max_features: None, min_samples_leaf: 1, max_depth: None }
    }
}

/// Linear SVR parameters (scikit-learn's `LinearSVR` defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SvrParams {
    /// Regularisation (1.0).
    pub c: f64,
    /// Width of the insensitive tube (0.0).
    pub epsilon: f64,
    /// Stopping tolerance (1e-4).
    pub tol: f64,
    /// Most passes (1000).
    pub max_iter: usize,
    /// Seed of the coordinate order.
    pub seed: u64,
}

impl Default for SvrParams {
    fn default() -> Self {
        Self { c: 1.0, epsilon: 0.0, tol: 1e-4, max_iter: 1000, seed: 1 }
    }
}

/// A chat model behind an OpenAI-compatible `/chat/completions` endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatSpec {
    /// Model name sent in the request.
    pub model: String,
    /// Base URL, e.g. `https://api.openai.com/v1` or `http://localhost:8080/v1`.
    pub base_url: String,
    /// Name of the environment variable holding the API key (the key itself is never stored).
    pub api_key_env: Option<String>,
    /// Retrieved training items shown as context (0 = zero-shot; the original RAG: 5).
    pub rag: usize,
    /// Sentence embedder of the retrieval (a model folder; empty = the built-in MiniLM).
    pub embedder: String,
    /// Reply length limit (5).
    pub max_tokens: u32,
    /// Field name of that limit (`max_tokens`; newer OpenAI models want `max_completion_tokens`).
    pub max_tokens_field: String,
    /// Sent as `seed` (42).
    pub seed: Option<u64>,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Seconds before a call is abandoned.
    pub timeout_s: f64,
    /// Retries of a call that failed with 429, 5xx, a timeout or a lost connection.
    pub retries: u32,
    /// First retry delay in milliseconds (doubled at each retry; a `Retry-After` wins).
    pub backoff_ms: u64,
}

impl Default for ChatSpec {
    fn default() -> Self {
        Self {
            model: String::new(),
            base_url: String::new(),
            api_key_env: None,
            rag: 0,
            embedder: String::new(),
            max_tokens: 5,
            max_tokens_field: "max_tokens".into(),
            seed: Some(42),
            concurrency: 4,
            timeout_s: 60.0,
            retries: 5,
            backoff_ms: 500,
        }
    }
}

/// Guesses read from a user's file (CSV, Parquet or JSON lines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ImportSpec {
    /// The file.
    pub file: PathBuf,
    /// Column holding the guess.
    pub guess_column: String,
    /// Column holding the test item's index (join by index).
    pub index_column: Option<String>,
    /// Column holding the title (join by title, or checked when joining by index).
    pub title_column: Option<String>,
    /// Column holding the truth (checked against the test items).
    pub truth_column: Option<String>,
}

/// Everything needed to build (and re-build) a pricer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PricerSpec {
    /// Whole dollars 1–999, seeded.
    Random {
        /// Seed.
        seed: u64,
    },
    /// The training mean.
    Constant,
    /// Linear regression on weight, rank, prompt length and top-brand flag.
    FeaturesLr,
    /// Bag of words (the most frequent terms, English stop words removed) + linear regression.
    BowLr {
        /// Vocabulary size (1,000).
        max_features: usize,
    },
    /// Mean word2vec vector + linear regression.
    Word2vecLr {
        /// word2vec parameters.
        word2vec: W2vParams,
    },
    /// Mean word2vec vector + linear SVR.
    Word2vecSvr {
        /// word2vec parameters.
        word2vec: W2vParams,
        /// SVR parameters.
        svr: SvrParams,
    },
    /// Mean word2vec vector + random forest.
    Word2vecRf {
        /// word2vec parameters.
        word2vec: W2vParams,
        /// Forest parameters.
        forest: ForestParams,
    },
    /// k nearest training items by sentence embedding.
    EmbedKnn {
        /// Embedder model folder (empty = the built-in MiniLM).
        embedder: String,
        /// Neighbours.
        k: usize,
        /// Weight neighbours by 1/distance instead of equally.
        distance_weighted: bool,
    },
    /// Random forest on sentence embeddings (the original week-8 pricer).
    EmbedRf {
        /// Embedder model folder (empty = the built-in MiniLM).
        embedder: String,
        /// Forest parameters.
        forest: ForestParams,
    },
    /// A chat model, zero-shot or with retrieved context.
    Chat(ChatSpec),
    /// A fine-tuned checkpoint of a run.
    Run {
        /// Run folder.
        dir: PathBuf,
        /// Checkpoint folder name (`None` = the latest).
        checkpoint: Option<String>,
        /// Decode name (`None` = chosen by tokenizer and head).
        decode: Option<String>,
    },
    /// Guesses imported from a file.
    Import(ImportSpec),
    /// A person's guesses: the CSV written by `pricer human-csv`, filled in.
    Human {
        /// The filled CSV.
        file: PathBuf,
    },
    /// Linear regression over other evaluations' guesses plus their min and max.
    Ensemble {
        /// Evaluation files of the members.
        members: Vec<PathBuf>,
        /// Test items (by index) the ensemble is fitted on, `[start, end)`.
        fit_items: (usize, usize),
    },
}

impl PricerSpec {
    /// The short kind name (`random`, `word2vec-rf`, `chat`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Random { .. } => "random",
            Self::Constant => "constant",
            Self::FeaturesLr => "features-lr",
            Self::BowLr { .. } => "bow-lr",
            Self::Word2vecLr { .. } => "word2vec-lr",
            Self::Word2vecSvr { .. } => "word2vec-svr",
            Self::Word2vecRf { .. } => "word2vec-rf",
            Self::EmbedKnn { .. } => "embed-knn",
            Self::EmbedRf { .. } => "embed-rf",
            Self::Chat(_) => "chat",
            Self::Run { .. } => "run",
            Self::Import(_) => "import",
            Self::Human { .. } => "human",
            Self::Ensemble { .. } => "ensemble",
        }
    }

    /// Whether fitting needs training items.
    pub fn needs_train(&self) -> bool {
        match self {
            Self::Random { .. } | Self::Run { .. } | Self::Import(_) | Self::Human { .. } | Self::Ensemble { .. } => {
                false
            }
            Self::Chat(c) => c.rag > 0,
            _ => true,
        }
    }

    /// A readable default name: `word2vec-rf`, `chat gpt-4o-mini`, `chat gpt-4o-mini + RAG 5`, …
    pub fn default_name(&self) -> String {
        let file_stem = |p: &Path| p.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        match self {
            Self::Chat(c) if c.rag > 0 => format!("{} + RAG {}", c.model, c.rag),
            Self::Chat(c) => c.model.clone(),
            Self::Run { dir, checkpoint, decode } => {
                let mut s = format!("{}/{}", file_stem(dir), checkpoint.as_deref().unwrap_or("latest"));
                if let Some(d) = decode {
                    s.push_str(&format!(" ({d})"));
                }
                s
            }
            Self::Import(i) => format!("import {}", file_stem(&i.file)),
            Self::Human { file } => format!("human {}", file_stem(file)),
            Self::EmbedKnn { k, .. } => format!("embed-knn k={k}"),
            other => other.kind().to_owned(),
        }
    }
}

/// A file an evaluation read, with the SHA-256 of its bytes (first 16 hex digits).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path as given.
    pub path: String,
    /// Digest of the file's bytes.
    pub digest: String,
    /// Items in the file.
    pub items: usize,
}

impl FileRef {
    /// Digests a file.
    pub fn of(path: &Path, items: usize) -> Result<Self> {
        Ok(Self { path: path.display().to_string(), digest: file_digest(path)?, items })
    }
}

/// SHA-256 of a file's bytes, first 16 hex digits.
pub fn file_digest(path: &Path) -> Result<String> {
    let mut hex = file_sha256(path)?;
    hex.truncate(16);
    Ok(hex)
}

/// SHA-256 of a file's bytes in hex, as `sha256sum` prints it.
pub fn file_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// One scored test item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalItem {
    /// Index in the test file.
    pub index: usize,
    /// Title.
    pub title: String,
    /// Category.
    pub category: String,
    /// True price.
    pub truth: f64,
    /// The pricer's guess.
    pub guess: f64,
    /// `|guess − truth|`.
    pub error: f64,
    /// Squared log error.
    pub sle: f64,
    /// The Tester's colour.
    pub colour: Colour,
    /// A chat model's raw reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The reply held no number (the guess is 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unparsable: bool,
}

/// The Tester's metrics and the regression metrics beyond them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// Items scored.
    pub n: usize,
    /// Mean absolute error (the Tester's Error).
    pub error: f64,
    /// Root mean squared log error.
    pub rmsle: f64,
    /// Green items.
    pub hits: usize,
    /// Green items in percent.
    pub hits_percent: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Median absolute error.
    pub median_error: f64,
    /// Coefficient of determination.
    pub r2: f64,
    /// Mean absolute percentage error (items with a truth above 0).
    pub mape: f64,
    /// Mean of guess − truth.
    pub bias: f64,
    /// Replies without a number.
    pub unparsable: usize,
}

impl Metrics {
    /// Computes every metric over scored items.
    pub fn of(items: &[EvalItem]) -> Self {
        if items.is_empty() {
            return Self::default();
        }
        let pairs: Vec<(f64, f64)> = items.iter().map(|i| (i.truth, i.guess)).collect();
        let r = TestReport::new("", &pairs, pairs.len()).expect("not empty");
        let n = items.len() as f64;
        let with_truth: Vec<&EvalItem> = items.iter().filter(|i| i.truth > 0.0).collect();
        let mape = with_truth.iter().map(|i| i.error / i.truth).sum::<f64>() / with_truth.len().max(1) as f64 * 100.0;
        Self {
            n: items.len(),
            error: r.mean_error,
            rmsle: r.rmsle,
            hits: r.hits,
            hits_percent: r.hit_percent(),
            rmse: r.rmse,
            median_error: r.median_error,
            r2: r.r2,
            mape,
            bias: items.iter().map(|i| i.guess - i.truth).sum::<f64>() / n,
            unparsable: items.iter().filter(|i| i.unparsable).count(),
        }
    }

    /// The Tester's report line for `title`.
    pub fn line(&self, title: &str) -> String {
        crate::tester::report_line(title, self.error, self.rmsle, self.hits_percent)
    }
}

/// Calls and tokens of a chat model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    /// Calls sent over the network.
    pub calls: u64,
    /// Replies taken from the cache (cost nothing).
    pub cached: u64,
    /// Retries after 429, 5xx, timeouts or lost connections.
    pub retries: u64,
    /// Prompt tokens the server reported.
    pub prompt_tokens: u64,
    /// Completion tokens the server reported.
    pub completion_tokens: u64,
}

/// A saved evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// File format version.
    pub format: u32,
    /// Name shown in reports (the title of the report line).
    pub name: String,
    /// The pricer.
    pub spec: PricerSpec,
    /// Training items it was fitted on.
    pub train: Option<FileRef>,
    /// Test items it priced.
    pub test: FileRef,
    /// Scored items, in index order.
    pub items: Vec<EvalItem>,
    /// Metrics over `items`.
    pub metrics: Metrics,
    /// The report line.
    pub line: String,
    /// Seconds fitting.
    pub fit_seconds: f64,
    /// Seconds pricing.
    pub predict_seconds: f64,
    /// What fitting found (coefficients, vocabulary size, …).
    #[serde(default)]
    pub fitted: serde_json::Value,
    /// A chat model's calls and tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl Evaluation {
    /// Builds an evaluation from scored items (computing the metrics and the report line).
    pub fn new(name: String, spec: PricerSpec, train: Option<FileRef>, test: FileRef, items: Vec<EvalItem>) -> Self {
        let metrics = Metrics::of(&items);
        let line = metrics.line(&name);
        Self {
            format: FORMAT,
            name,
            spec,
            train,
            test,
            items,
            metrics,
            line,
            fit_seconds: 0.0,
            predict_seconds: 0.0,
            fitted: serde_json::Value::Null,
            usage: None,
        }
    }

    /// Renames (the report line follows).
    pub fn rename(&mut self, name: &str) {
        self.name = name.to_owned();
        self.line = self.metrics.line(name);
    }

    /// Reads an evaluation file.
    pub fn load(path: &Path) -> Result<Self> {
        read_versioned(path, ("an evaluation file", "evaluation"), FORMAT, |e: &Self| e.format)
    }

    /// Writes it atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic_json(path, self)
    }

    /// `(truth, guess)` per item.
    pub fn pairs(&self) -> Vec<(f64, f64)> {
        self.items.iter().map(|i| (i.truth, i.guess)).collect()
    }

    /// The item with test index `index`.
    pub fn item(&self, index: usize) -> Option<&EvalItem> {
        self.items.binary_search_by_key(&index, |i| i.index).ok().map(|k| &self.items[k])
    }

    /// Writes one row per item: index, title, category, truth, guess, error, sle, colour, reply.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, |w| {
            let mut csv = csv::Writer::from_writer(w);
            let io = std::io::Error::other;
            csv.write_record(["index", "title", "category", "truth", "guess", "error", "sle", "colour", "reply"])
                .map_err(io)?;
            for i in &self.items {
                csv.write_record([
                    i.index.to_string(),
                    i.title.clone(),
                    i.category.clone(),
                    i.truth.to_string(),
                    i.guess.to_string(),
                    format!("{:.4}", i.error),
                    format!("{:.6}", i.sle),
                    i.colour.name().to_owned(),
                    i.reply.clone().unwrap_or_default(),
                ])
                .map_err(io)?;
            }
            csv.flush()
        })
    }
}

/// Reads a JSON file of one of this program's versioned formats. `names` are the file's name in
/// "not a…" and its format's name in "… format N is newer than this program's"; `format` reads the
/// version from the value.
pub fn read_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    names: (&str, &str),
    newest: u32,
    format: impl Fn(&T) -> u32,
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: T = serde_json::from_str(&text)
        .map_err(|e| Error::InvalidInput(format!("{}: not {} ({e})", path.display(), names.0)))?;
    if format(&value) > newest {
        return Err(Error::InvalidInput(format!(
            "{}: {} format {} is newer than this program's {newest}",
            path.display(),
            names.1,
            format(&value)
        )));
    }
    Ok(value)
}

/// Scores one guess for an item.
pub fn score_item(index: usize, title: &str, category: &str, truth: f64, guess: f64) -> EvalItem {
    let s = crate::tester::score_one(truth, guess);
    EvalItem {
        index,
        title: title.to_owned(),
        category: category.to_owned(),
        truth,
        guess,
        error: s.error,
        sle: s.sle,
        colour: s.colour,
        reply: None,
        unparsable: false,
    }
}
