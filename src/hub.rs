//! Downloading raw category files of `McAuley-Lab/Amazon-Reviews-2023` from the Hugging Face
//! Hub through `hf-hub`: the standard cache (`HF_HOME`), `HF_ENDPOINT`, `HF_TOKEN`, resume of
//! a partial download (`.part` file), and progress.

use crate::jobs::{JobCtx, Progress};
use crate::{Error, Result};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};
use std::path::{Path, PathBuf};

/// The dataset repository of Amazon Reviews 2023.
pub const DATASET_REPO: &str = "McAuley-Lab/Amazon-Reviews-2023";

/// The eight categories of the original recipe.
pub const ORIGINAL_CATEGORIES: [&str; 8] = [
    "Automotive",
    "Electronics",
    "Office_Products",
    "Tools_and_Home_Improvement",
    "Cell_Phones_and_Accessories",
    "Toys_and_Games",
    "Appliances",
    "Musical_Instruments",
];

/// The file of a category inside the dataset repository.
pub fn category_file(category: &str) -> String {
    format!("raw/meta_categories/meta_{category}.jsonl")
}

/// Where and how to download.
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// Hub endpoint; default `HF_ENDPOINT` or `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Cache directory; default `HF_HOME/hub` (`~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Access token; default `HF_TOKEN` or the token file of the cache.
    pub token: Option<String>,
}

struct ProgressAdapter<'a> {
    ctx: &'a JobCtx,
    stage: String,
    done: u64,
    total: u64,
    last_reported: u64,
}

impl hf_hub::api::Progress for ProgressAdapter<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.total = size as u64;
        self.done = 0;
        self.stage = format!("downloading {filename}");
    }
    fn update(&mut self, size: usize) {
        self.done += size as u64;
        if self.done - self.last_reported >= 1 << 20 || self.done == self.total {
            self.last_reported = self.done;
            self.ctx.report(&Progress { stage: self.stage.clone(), done: self.done, total: self.total, n_items: 0 });
        }
    }
    fn finish(&mut self) {}
}

/// The Hub client for `opts` (endpoint, cache, token from the options or `HF_TOKEN`).
pub fn api(opts: &HubOptions, retries: usize) -> Result<hf_hub::api::sync::Api> {
    let mut builder = ApiBuilder::from_env().with_progress(false).with_retries(retries);
    if let Some(endpoint) = &opts.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_owned());
    }
    if let Some(dir) = &opts.cache_dir {
        builder = builder.with_cache_dir(dir.clone());
    }
    let token = opts.token.clone().or_else(|| std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()));
    if token.is_some() {
        builder = builder.with_token(token);
    }
    builder.build().map_err(|e| Error::Download(e.to_string()))
}

/// Downloads (or finds in the cache) the raw file of `category`; returns its path in the cache.
/// When `out_dir` is given, the file is also copied there under its own name.
pub fn download_category(category: &str, out_dir: Option<&Path>, opts: &HubOptions, ctx: &JobCtx) -> Result<PathBuf> {
    ctx.check()?;
    let api = api(opts, 2)?;
    let repo = api.repo(Repo::new(DATASET_REPO.to_owned(), RepoType::Dataset));
    let file = category_file(category);
    let endpoint = opts
        .endpoint
        .clone()
        .or_else(|| std::env::var("HF_ENDPOINT").ok())
        .unwrap_or_else(|| "https://huggingface.co".into());
    let progress = ProgressAdapter { ctx, stage: String::new(), done: 0, total: 0, last_reported: 0 };
    let path = repo.download_with_progress(&file, progress).map_err(|e| {
        let text = e.to_string();
        let hint = if text.contains("Connection")
            || text.contains("connect")
            || text.contains("dns")
            || text.contains("resolve")
        {
            " — the Hub cannot be reached (offline?); set HF_ENDPOINT to a mirror, or load a local file instead"
        } else if text.contains("404") {
            " — no such file: check the category name (e.g. Appliances, Tools_and_Home_Improvement)"
        } else if text.contains("401") || text.contains("403") {
            " — access denied: set HF_TOKEN"
        } else {
            ""
        };
        Error::Download(format!("{file} from {endpoint}: {text}{hint}"))
    })?;
    match out_dir {
        Some(dir) => {
            let dest = dir.join(format!("meta_{category}.jsonl"));
            crate::atomic::write_atomic(&dest, |w| {
                let mut src = std::fs::File::open(&path)?;
                std::io::copy(&mut src, w).map(|_| ())
            })?;
            Ok(dest)
        }
        None => Ok(path),
    }
}
