//! The one evaluation engine: fit a pricer, price test items `start..start+size` in batches
//! (several at once where the pricer allows) with progress and Cancel, score them with the
//! Tester, and save the [`Evaluation`]. What was priced is appended to `<out>.partial.jsonl` as
//! each batch finishes, so an interrupted evaluation (a chat model over 2,000 items) continues
//! where it stopped when run again with the same pricer, files and range.

use super::{FitData, Guess, fit};
use crate::evaluation::{EvalItem, Evaluation, FileRef, PricerSpec, score_item};
use crate::items::ItemTable;
use crate::jobs::{JobCtx, Progress};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct Request {
    /// The pricer.
    pub spec: PricerSpec,
    /// Report title (default: the spec's default name).
    pub name: Option<String>,
    /// Training items (curated items file), for pricers that fit.
    pub train: Option<PathBuf>,
    /// Test items (curated items file).
    pub test: PathBuf,
    /// First test item priced.
    pub start: usize,
    /// Items priced.
    pub size: usize,
    /// Where the evaluation is saved (and, beside it, what is priced so far).
    pub out: Option<PathBuf>,
    /// Where chat replies and embeddings are cached (`None`: [`super::cache_dir`]).
    pub cache: Option<PathBuf>,
}

/// Loaded inputs of an evaluation.
pub struct Inputs<'a> {
    /// Training items and their file.
    pub train: Option<(&'a ItemTable, FileRef)>,
    /// Test items and their file.
    pub test: (&'a ItemTable, FileRef),
}

/// Reads the files of a request and evaluates.
pub fn evaluate(req: &Request, ctx: &JobCtx) -> Result<Evaluation> {
    let read = |path: &Path| -> Result<(ItemTable, FileRef)> {
        let f = crate::items_io::ItemsFile::read(path, ctx)?;
        if let Some(report) = f.malformed_report() {
            ctx.log(crate::jobs::Level::Warning, &report);
        }
        let r = FileRef::of(path, f.table.len())?;
        Ok((f.table, r))
    };
    let train = match &req.train {
        Some(p) if req.spec.needs_train() => Some(read(p)?),
        _ => None,
    };
    let test = read(&req.test)?;
    let inputs = Inputs { train: train.as_ref().map(|(t, r)| (t, r.clone())), test: (&test.0, test.1.clone()) };
    evaluate_loaded(req, &inputs, ctx)
}

/// The partial file beside an evaluation file.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial.jsonl");
    PathBuf::from(s)
}

#[derive(Serialize, Deserialize, PartialEq)]
struct PartialHeader {
    spec: PricerSpec,
    test_digest: String,
    train_digest: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct PartialRow {
    index: usize,
    guess: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unparsable: bool,
}

/// Guesses already made by an earlier run of the same evaluation (a torn last line is ignored).
fn read_partial(path: &Path, header: &PartialHeader) -> HashMap<usize, Guess> {
    let Ok(text) = std::fs::read_to_string(path) else { return HashMap::new() };
    let mut lines = text.lines();
    let same = lines.next().and_then(|l| serde_json::from_str::<PartialHeader>(l).ok()).is_some_and(|h| &h == header);
    if !same {
        return HashMap::new();
    }
    lines
        .filter_map(|l| serde_json::from_str::<PartialRow>(l).ok())
        .map(|r| (r.index, Guess { price: r.guess, reply: r.reply, unparsable: r.unparsable }))
        .collect()
}

/// Fits and evaluates on loaded tables.
pub fn evaluate_loaded(req: &Request, inputs: &Inputs<'_>, ctx: &JobCtx) -> Result<Evaluation> {
    let test = inputs.test.0;
    let end = (req.start + req.size).min(test.len());
    if req.start >= end {
        return Err(Error::InvalidInput(format!(
            "no test items to price: the range starts at {} and the test file has {} items",
            req.start,
            test.len()
        )));
    }
    let range = req.start..end;
    ctx.report(&Progress { stage: format!("fitting {}", req.spec.kind()), ..Default::default() });
    let t0 = Instant::now();
    let data = FitData {
        train: inputs.train.as_ref().map(|t| t.0),
        test,
        evaluated: range.clone(),
        cache: req.cache.clone().unwrap_or_else(super::cache_dir),
    };
    let pricer = fit(&req.spec, &data, ctx)?;
    let fit_seconds = t0.elapsed().as_secs_f64();

    let header = PartialHeader {
        spec: req.spec.clone(),
        test_digest: inputs.test.1.digest.clone(),
        train_digest: inputs.train.as_ref().map(|t| t.1.digest.clone()),
    };
    let partial = req.out.as_deref().map(partial_path);
    let mut done: HashMap<usize, Guess> = partial.as_deref().map(|p| read_partial(p, &header)).unwrap_or_default();
    done.retain(|i, _| range.contains(i));
    if !done.is_empty() {
        ctx.log(
            crate::jobs::Level::Info,
            &format!("continuing: {} of {} items already priced", done.len(), range.len()),
        );
    }
    let writer = match &partial {
        Some(p) => {
            let fresh = done.is_empty();
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(!fresh)
                .truncate(fresh)
                .open(p)
                .map_err(|e| Error::io(p, e))?;
            if fresh {
                let line = serde_json::to_string(&header).map_err(|e| Error::InvalidInput(e.to_string()))?;
                writeln!(f, "{line}").map_err(|e| Error::io(p, e))?;
            }
            Some(Mutex::new(f))
        }
        None => None,
    };
    let todo: Vec<usize> = range.clone().filter(|i| !done.contains_key(i)).collect();
    let n_total = range.len();
    let counter = AtomicUsize::new(done.len());
    let t1 = Instant::now();
    let price_batch = |batch: &[usize]| -> Result<Vec<(usize, Guess)>> {
        ctx.check()?;
        let items: Vec<(usize, crate::items::ItemRef<'_>)> = batch.iter().map(|&i| (i, test.get(i))).collect();
        let guesses = pricer.price(&items, ctx)?;
        if guesses.len() != batch.len() {
            return Err(Error::Model(format!("pricer gave {} guesses for {} items", guesses.len(), batch.len())));
        }
        if let (Some(w), Some(p)) = (&writer, &partial) {
            let mut text = String::new();
            for (&index, g) in batch.iter().zip(&guesses) {
                let row = PartialRow { index, guess: g.price, reply: g.reply.clone(), unparsable: g.unparsable };
                text.push_str(&serde_json::to_string(&row).map_err(|e| Error::InvalidInput(e.to_string()))?);
                text.push('\n');
            }
            let mut f = w.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(text.as_bytes()).and_then(|()| f.flush()).map_err(|e| Error::io(p, e))?;
        }
        let n = counter.fetch_add(batch.len(), Ordering::Relaxed) + batch.len();
        let stage = match pricer.usage() {
            Some(u) => format!(
                "pricing {n}/{n_total} · {} calls, {} cached, {} tokens",
                u.calls,
                u.cached,
                u.prompt_tokens + u.completion_tokens
            ),
            None => format!("pricing {n}/{n_total}"),
        };
        ctx.report(&Progress { stage, done: n as u64, total: n_total as u64, n_items: n as u64 });
        Ok(batch.iter().copied().zip(guesses).collect())
    };
    let batches: Vec<&[usize]> = todo.chunks(pricer.batch_size().max(1)).collect();
    let results: Vec<Vec<(usize, Guess)>> = if pricer.parallel_batches() {
        batches.par_iter().map(|b| price_batch(b)).collect::<Result<_>>()?
    } else {
        batches.iter().map(|b| price_batch(b)).collect::<Result<_>>()?
    };
    let predict_seconds = t1.elapsed().as_secs_f64();
    done.extend(results.into_iter().flatten());

    let items: Vec<EvalItem> = range
        .map(|i| {
            let item = test.get(i);
            let g = &done[&i];
            let mut e = score_item(i, item.title, item.category, item.price, g.price);
            e.reply = g.reply.clone();
            e.unparsable = g.unparsable;
            e
        })
        .collect();
    let name = req.name.clone().unwrap_or_else(|| req.spec.default_name());
    let mut eval = Evaluation::new(
        name,
        req.spec.clone(),
        inputs.train.as_ref().map(|t| t.1.clone()),
        inputs.test.1.clone(),
        items,
    );
    eval.fit_seconds = fit_seconds;
    eval.predict_seconds = predict_seconds;
    eval.fitted = pricer.fitted();
    eval.usage = pricer.usage();
    if let Some(out) = &req.out {
        eval.save(out)?;
        if let Some(p) = &partial {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(eval)
}
