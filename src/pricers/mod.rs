//! Pricers: everything that guesses a price from an item — the original baselines, sentence
//! embeddings, chat models (with retrieved context), fine-tuned checkpoints, imported guesses, a
//! person, ensembles — fitted on training items where they need it, run by one evaluation engine
//! ([`engine`]) into a saved [`Evaluation`](crate::evaluation::Evaluation).

pub mod bert;
pub mod bootstrap;
pub mod chat;
pub mod compare;
pub mod embed;
pub mod engine;
pub mod ensemble;
pub mod features;
pub mod forest;
pub mod import;
pub mod linear;
pub mod quiz;
pub mod run;
pub mod spec;
pub mod stop_words;
pub mod svr;
pub mod textfeat;
pub mod word2vec;

use crate::evaluation::{PricerSpec, Usage};
use crate::items::{ItemRef, ItemTable};
use crate::jobs::JobCtx;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// One guess.
#[derive(Clone, Debug, PartialEq)]
pub struct Guess {
    /// The price (clamped at 0 where the original clamps).
    pub price: f64,
    /// A chat model's raw reply.
    pub reply: Option<String>,
    /// The reply held no number.
    pub unparsable: bool,
}

impl Guess {
    /// A plain number.
    pub fn of(price: f64) -> Self {
        Self { price, reply: None, unparsable: false }
    }
}

/// A fitted pricer.
pub trait Pricer: Send + Sync {
    /// Prices a batch of test items, given with their indices in the test file.
    fn price(&self, batch: &[(usize, ItemRef<'_>)], ctx: &JobCtx) -> Result<Vec<Guess>>;
    /// Items per batch (the unit of progress, of Cancel and of a resumed evaluation).
    fn batch_size(&self) -> usize {
        256
    }
    /// Whether the engine may price several batches at once (false where the pricer runs its own
    /// parallelism: a model using every core, a chat client with its own calls in flight).
    fn parallel_batches(&self) -> bool {
        true
    }
    /// What fitting found, for the evaluation file (coefficients, sizes, …).
    fn fitted(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Calls and tokens so far (chat models).
    fn usage(&self) -> Option<Usage> {
        None
    }
}

/// What fitting may read: the training items and the test items with their file.
pub struct FitData<'a> {
    /// Training items (`None` for pricers that need none).
    pub train: Option<&'a ItemTable>,
    /// Test items.
    pub test: &'a ItemTable,
    /// Test indices that will be priced.
    pub evaluated: std::ops::Range<usize>,
    /// Where chat replies and embeddings are cached.
    pub cache: PathBuf,
}

impl FitData<'_> {
    fn train(&self, kind: &str) -> Result<&ItemTable> {
        match self.train {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(Error::InvalidInput(format!("the {kind} pricer needs training items (--train FILE)"))),
        }
    }
}

/// Fits the pricer a specification describes.
pub fn fit(spec: &PricerSpec, data: &FitData<'_>, ctx: &JobCtx) -> Result<Box<dyn Pricer>> {
    use PricerSpec as S;
    Ok(match spec {
        S::Random { seed } => Box::new(linear::RandomPricer { seed: *seed }),
        S::Constant => Box::new(linear::ConstantPricer::fit(data.train("constant")?)),
        S::FeaturesLr => Box::new(features::FeaturesLr::fit(data.train("features-lr")?, ctx)?),
        S::BowLr { max_features } => Box::new(textfeat::BowLr::fit(data.train("bow-lr")?, *max_features, ctx)?),
        S::Word2vecLr { word2vec } | S::Word2vecSvr { word2vec, .. } | S::Word2vecRf { word2vec, .. } => {
            Box::new(word2vec::Word2vecPricer::fit(data.train(spec.kind())?, word2vec, spec, ctx)?)
        }
        S::EmbedKnn { embedder, k, distance_weighted } => Box::new(embed::KnnPricer::fit(
            data.train("embed-knn")?,
            embedder,
            &data.cache,
            *k,
            *distance_weighted,
            ctx,
        )?),
        S::EmbedRf { embedder, forest } => {
            Box::new(embed::EmbedRf::fit(data.train("embed-rf")?, embedder, &data.cache, forest, ctx)?)
        }
        S::Chat(c) => Box::new(chat::ChatPricer::new(
            c,
            if c.rag > 0 { Some(data.train("RAG")?) } else { None },
            &data.cache,
            ctx,
        )?),
        S::Run { dir, checkpoint, decode } => {
            Box::new(run::CheckpointPricer::load(dir, checkpoint.as_deref(), decode.as_deref(), ctx)?)
        }
        S::Import(i) => Box::new(import::ImportedPricer::read(i, data.test, data.evaluated.clone(), ctx)?),
        S::Human { file } => {
            Box::new(import::ImportedPricer::read(&import::human_spec(file), data.test, data.evaluated.clone(), ctx)?)
        }
        S::Ensemble { members, fit_items } => {
            Box::new(ensemble::Ensemble::fit(members, *fit_items, data.evaluated.clone(), ctx)?)
        }
    })
}

/// Where replies and embeddings are cached: `PRICER_CACHE_DIR`, else `$XDG_CACHE_HOME/pricer-studio`,
/// else `~/.cache/pricer-studio`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PRICER_CACHE_DIR") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return Path::new(&p).join("pricer-studio");
    }
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from(".cache"), |h| Path::new(&h).join(".cache"))
        .join("pricer-studio")
}

/// The description of an item: its test prompt without the question and the price line (what
/// the original's week-8 pricers embed and retrieve).
pub fn description(prompt: &str) -> String {
    let text = prompt.replace(&format!("{}\n\n", crate::items::QUESTION), "");
    match text.find("\n\nPrice is $") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
