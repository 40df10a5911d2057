//! The command line's pricer names (`word2vec-rf`, `chat:MODEL@URL`, `run:DIR:CHECKPOINT`,
//! `import:FILE`, `ensemble:A,B,C`, …) turned into full specifications.

use crate::evaluation::{ChatSpec, ForestParams, ImportSpec, PricerSpec, SvrParams, W2vParams};
use crate::{Error, Result};
use std::path::PathBuf;

/// Options beside the name (the CLI's flags); unset ones keep the defaults.
#[derive(Clone, Debug, Default)]
pub struct SpecOptions {
    /// Seed of random, word2vec, the SVR and the forests.
    pub seed: Option<u64>,
    /// Neighbours of `embed-knn`.
    pub k: Option<usize>,
    /// `embed-knn` weights neighbours by 1/distance.
    pub distance_weighted: bool,
    /// Trees of the forests.
    pub trees: Option<usize>,
    /// Embedder model folder.
    pub embedder: Option<String>,
    /// Environment variable with the chat API key.
    pub api_key_env: Option<String>,
    /// Retrieved neighbours for a chat model.
    pub rag: Option<usize>,
    /// Chat calls in flight.
    pub concurrency: Option<usize>,
    /// Name of the reply-length field.
    pub max_tokens_field: Option<String>,
    /// Imported guesses: the guess column.
    pub guess_column: Option<String>,
    /// Imported guesses: the index column.
    pub index_column: Option<String>,
    /// Imported guesses: the title column.
    pub title_column: Option<String>,
    /// Imported guesses: the truth column.
    pub truth_column: Option<String>,
    /// Ensemble: fitting items `start..end`.
    pub fit_items: Option<(usize, usize)>,
}

/// Every name `parse` accepts, for help texts.
pub const NAMES: &str = "random, constant, features-lr, bow-lr, word2vec-lr, word2vec-svr, word2vec-rf, embed-knn, \
     embed-rf, chat:MODEL@BASE_URL, run:RUN_DIR[:CHECKPOINT], import:FILE, human:FILE, ensemble:EVAL,EVAL,...";

/// Parses `A..B` (also `A-B`).
pub fn parse_range(s: &str) -> Result<(usize, usize)> {
    let (a, b) = s.split_once("..").or_else(|| s.split_once('-')).ok_or_else(|| bad_range(s))?;
    let (a, b) = (a.trim().parse().map_err(|_| bad_range(s))?, b.trim().parse().map_err(|_| bad_range(s))?);
    if a >= b {
        return Err(bad_range(s));
    }
    Ok((a, b))
}

fn bad_range(s: &str) -> Error {
    Error::InvalidInput(format!("`{s}` is not a range of items like 1000..1250"))
}

/// Builds a specification from a name and options.
pub fn parse(name: &str, o: &SpecOptions) -> Result<PricerSpec> {
    let w2v = || W2vParams { seed: o.seed.unwrap_or(1), ..W2vParams::default() };
    let forest =
        || ForestParams { n_trees: o.trees.unwrap_or(100), seed: o.seed.unwrap_or(42), ..ForestParams::default() };
    let embedder = || o.embedder.clone().unwrap_or_default();
    let (kind, rest) = name.split_once(':').map_or((name, None), |(a, b)| (a, Some(b)));
    let need = |what: &str| {
        rest.filter(|r| !r.is_empty())
            .ok_or_else(|| Error::InvalidInput(format!("`{kind}` needs {what}: `{kind}:{what}`")))
    };
    Ok(match kind {
        "random" => PricerSpec::Random { seed: o.seed.unwrap_or(42) },
        "constant" => PricerSpec::Constant,
        "features-lr" => PricerSpec::FeaturesLr,
        "bow-lr" => PricerSpec::BowLr { max_features: 1000 },
        "word2vec-lr" => PricerSpec::Word2vecLr { word2vec: w2v() },
        "word2vec-svr" => PricerSpec::Word2vecSvr {
            word2vec: w2v(),
            svr: SvrParams { seed: o.seed.unwrap_or(1), ..Default::default() },
        },
        "word2vec-rf" => PricerSpec::Word2vecRf { word2vec: w2v(), forest: forest() },
        "embed-knn" => {
            PricerSpec::EmbedKnn { embedder: embedder(), k: o.k.unwrap_or(5), distance_weighted: o.distance_weighted }
        }
        "embed-rf" => PricerSpec::EmbedRf { embedder: embedder(), forest: forest() },
        "chat" => {
            let r = need("MODEL@BASE_URL")?;
            let (model, url) = r.split_once('@').ok_or_else(|| {
                Error::InvalidInput(format!("`chat:{r}` needs a base URL: chat:MODEL@http://localhost:8080/v1"))
            })?;
            let mut c = ChatSpec {
                model: model.to_owned(),
                base_url: url.to_owned(),
                api_key_env: o.api_key_env.clone(),
                rag: o.rag.unwrap_or(0),
                embedder: embedder(),
                ..ChatSpec::default()
            };
            if let Some(n) = o.concurrency {
                c.concurrency = n.max(1);
            }
            if let Some(f) = &o.max_tokens_field {
                c.max_tokens_field = f.clone();
            }
            PricerSpec::Chat(c)
        }
        "run" => {
            let r = need("RUN_DIR")?;
            // `run:DIR:checkpoint-400`: the last `:` part names a checkpoint when it looks like one.
            let (dir, ck) = match r.rsplit_once(':') {
                Some((d, c)) if c.starts_with("checkpoint") || c == "latest" => (d, Some(c)),
                _ => (r, None),
            };
            PricerSpec::Run {
                dir: PathBuf::from(dir),
                checkpoint: ck.filter(|c| *c != "latest").map(str::to_owned),
                decode: None,
            }
        }
        "import" => PricerSpec::Import(ImportSpec {
            file: PathBuf::from(need("FILE")?),
            guess_column: o.guess_column.clone().unwrap_or_else(|| "guess".into()),
            index_column: o.index_column.clone(),
            title_column: o.title_column.clone(),
            truth_column: o.truth_column.clone(),
        }),
        "human" => PricerSpec::Human { file: PathBuf::from(need("FILE")?) },
        "ensemble" => {
            let members: Vec<PathBuf> = need("EVAL,EVAL,...")?.split(',').map(PathBuf::from).collect();
            let fit_items = o.fit_items.unwrap_or((1000, 1250));
            PricerSpec::Ensemble { members, fit_items }
        }
        other => return Err(Error::InvalidInput(format!("unknown pricer `{other}`: use one of {NAMES}"))),
    })
}
