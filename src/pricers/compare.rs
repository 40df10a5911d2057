//! Several evaluations side by side: restricted to the items they all priced (flagged when they
//! priced different test files), one row of metrics per pricer sorted by error, breakdowns by
//! category or price band (computed with polars), and one CSV row per item with every pricer's
//! guess and error.

use super::bootstrap::Bootstrap;
use crate::evaluation::{EvalItem, Evaluation, Metrics};
use crate::jobs::JobCtx;
use crate::tester::Colour;
use crate::{Error, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Evaluations aligned on their shared items.
pub struct Comparison {
    /// The evaluations, each keeping only the shared items (in the same order), metrics recomputed.
    pub evals: Vec<Evaluation>,
    /// Items every evaluation priced.
    pub shared: usize,
    /// Whether the evaluations priced different test files.
    pub different_tests: bool,
    /// Per evaluation: it priced another test file than most of them (flagged in the Compare tab).
    pub other_test: Vec<bool>,
    /// What the alignment dropped, for the user.
    pub notes: Vec<String>,
    /// The shared items' categories, sorted, each once (the Items table's filter offers them).
    pub categories: Vec<String>,
}

/// An item's identity across evaluations: its index, title and truth.
fn key(i: &EvalItem) -> (usize, String, u64) {
    (i.index, i.title.clone(), i.truth.to_bits())
}

/// Aligns evaluations on the items they share.
pub fn align(evals: Vec<Evaluation>) -> Result<Comparison> {
    if evals.is_empty() {
        return Err(Error::InvalidInput("nothing to compare: give evaluation files".into()));
    }
    // The test file most evaluations priced (the first of them on a tie) is the reference.
    let count = |d: &str| evals.iter().filter(|e| e.test.digest == d).count();
    let reference = evals
        .iter()
        .map(|e| e.test.digest.as_str())
        .fold("", |best, d| if best.is_empty() || count(d) > count(best) { d } else { best });
    let other_test: Vec<bool> = evals.iter().map(|e| e.test.digest != reference).collect();
    let different_tests = other_test.contains(&true);
    let mut shared: HashSet<(usize, String, u64)> = evals[0].items.iter().map(key).collect();
    for e in &evals[1..] {
        let k: HashSet<_> = e.items.iter().map(key).collect();
        shared.retain(|x| k.contains(x));
    }
    let mut notes = vec![];
    if different_tests {
        notes.push(format!(
            "the evaluations priced different test files: only the {} items they share are compared",
            shared.len()
        ));
    }
    let evals: Vec<Evaluation> = evals
        .into_iter()
        .map(|mut e| {
            let before = e.items.len();
            e.items.retain(|i| shared.contains(&key(i)));
            if e.items.len() < before {
                notes.push(format!(
                    "{}: {} of its {before} items are not shared and are left out",
                    e.name,
                    before - e.items.len()
                ));
                e.metrics = Metrics::of(&e.items);
                e.line = e.metrics.line(&e.name);
            }
            e
        })
        .collect();
    if shared.is_empty() {
        return Err(Error::InvalidInput("the evaluations share no test item".into()));
    }
    let mut categories: Vec<String> = evals[0].items.iter().map(|i| i.category.clone()).collect();
    categories.sort();
    categories.dedup();
    Ok(Comparison { shared: shared.len(), evals, different_tests, other_test, notes, categories })
}

impl Comparison {
    /// Pricer `p`'s absolute errors on the shared items.
    pub fn errors(&self, p: usize) -> Vec<f64> {
        self.evals[p].items.iter().map(|i| i.error).collect()
    }

    /// Pricer `p`'s hits (green items) on the shared items.
    pub fn hits(&self, p: usize) -> Vec<bool> {
        self.evals[p].items.iter().map(|i| i.colour == Colour::Green).collect()
    }

    /// The shared items (as the first evaluation holds them; every evaluation holds the same ones
    /// in the same order).
    pub fn items(&self) -> &[EvalItem] {
        &self.evals[0].items
    }

    /// The bootstrap of every pricer's Error and Hits over the shared items.
    pub fn bootstrap(&self, resamples: usize, seed: u64, ctx: &JobCtx) -> Result<Bootstrap> {
        let errors: Vec<Vec<f64>> = (0..self.evals.len()).map(|p| self.errors(p)).collect();
        let hits: Vec<Vec<bool>> = (0..self.evals.len()).map(|p| self.hits(p)).collect();
        Bootstrap::run(&errors, &hits, resamples, seed, ctx)
    }
}

/// Indices of the evaluations sorted by error (best first).
pub fn by_error(c: &Comparison) -> Vec<usize> {
    let mut o: Vec<usize> = (0..c.evals.len()).collect();
    o.sort_by(|&a, &b| c.evals[a].metrics.error.total_cmp(&c.evals[b].metrics.error));
    o
}

/// The price band of a true price.
pub fn price_band(truth: f64) -> &'static str {
    match truth {
        t if t < 25.0 => "$0–25",
        t if t < 50.0 => "$25–50",
        t if t < 100.0 => "$50–100",
        t if t < 200.0 => "$100–200",
        t if t < 500.0 => "$200–500",
        _ => "$500+",
    }
}

/// What a breakdown groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// The item's category.
    Category,
    /// The band of its true price.
    PriceBand,
}

/// One group of a breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    /// Pricer name.
    pub pricer: String,
    /// Group (category or price band).
    pub group: String,
    /// Items.
    pub n: usize,
    /// Mean absolute error.
    pub error: f64,
    /// RMSLE.
    pub rmsle: f64,
    /// Hits in percent.
    pub hits_percent: f64,
}

/// Metrics per pricer and group, in the evaluations' order and the groups' first appearance.
pub fn breakdown(c: &Comparison, by: By) -> Result<Vec<GroupRow>> {
    let mut pricer = vec![];
    let mut group = vec![];
    let mut error = vec![];
    let mut sle = vec![];
    let mut hit = vec![];
    for e in &c.evals {
        for i in &e.items {
            pricer.push(e.name.clone());
            group.push(match by {
                By::Category => i.category.clone(),
                By::PriceBand => price_band(i.truth).to_owned(),
            });
            error.push(i.error);
            sle.push(i.sle);
            hit.push(if i.colour == Colour::Green { 1.0 } else { 0.0 });
        }
    }
    let pe = |e: PolarsError| Error::InvalidInput(format!("breakdown: {e}"));
    let df = DataFrame::new(vec![
        Column::new("pricer".into(), pricer),
        Column::new("group".into(), group),
        Column::new("error".into(), error),
        Column::new("sle".into(), sle),
        Column::new("hit".into(), hit),
    ])
    .map_err(pe)?;
    let parts = df.partition_by_stable(["pricer", "group"], true).map_err(pe)?;
    let mut rows = vec![];
    for p in parts {
        let text = |name: &str| -> Result<String> {
            let c = p.column(name).map_err(pe)?;
            Ok(c.str().map_err(pe)?.get(0).unwrap_or_default().to_owned())
        };
        let mean = |name: &str| -> Result<f64> {
            Ok(p.column(name).map_err(pe)?.as_materialized_series().mean().unwrap_or(f64::NAN))
        };
        rows.push(GroupRow {
            pricer: text("pricer")?,
            group: text("group")?,
            n: p.height(),
            error: mean("error")?,
            rmsle: mean("sle")?.sqrt(),
            hits_percent: mean("hit")? * 100.0,
        });
    }
    Ok(rows)
}

/// One row per shared item: index, title, category, truth, then each pricer's guess and error.
pub fn write_items_csv(c: &Comparison, path: &Path) -> Result<()> {
    let all: Vec<usize> = (0..c.shared).collect();
    write_items_csv_rows(c, &all, path)
}

/// [`write_items_csv`] of the shared items at positions `rows`, in that order.
pub fn write_items_csv_rows(c: &Comparison, rows: &[usize], path: &Path) -> Result<()> {
    crate::atomic::write_atomic(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        let io = std::io::Error::other;
        let mut header = vec!["index".to_owned(), "title".into(), "category".into(), "truth".into()];
        for e in &c.evals {
            header.push(format!("{} guess", e.name));
            header.push(format!("{} error", e.name));
        }
        csv.write_record(&header).map_err(io)?;
        for &k in rows {
            let Some(it) = c.evals[0].items.get(k) else { continue };
            let mut row = vec![it.index.to_string(), it.title.clone(), it.category.clone(), it.truth.to_string()];
            for e in &c.evals {
                row.push(e.items[k].guess.to_string());
                row.push(format!("{:.4}", e.items[k].error));
            }
            csv.write_record(&row).map_err(io)?;
        }
        csv.flush()
    })
}

/// The price bands, in order.
pub const PRICE_BANDS: [&str; 6] = ["$0–25", "$25–50", "$50–100", "$100–200", "$200–500", "$500+"];

/// Which shared items a per-item table shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemFilter {
    /// Only this category.
    pub category: Option<String>,
    /// Only this price band (one of [`PRICE_BANDS`]).
    pub band: Option<String>,
    /// Only items pricer `.0` got green while pricer `.1` got red.
    pub green_red: Option<(usize, usize)>,
    /// Only these positions (a selection in the scatters).
    pub only: Option<Vec<usize>>,
}

/// A column of the per-item table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ItemSort {
    /// Test index.
    #[default]
    Index,
    /// Title.
    Title,
    /// Category.
    Category,
    /// True price.
    Truth,
    /// Pricer `p`'s guess.
    Guess(usize),
    /// Pricer `p`'s absolute error.
    Error(usize),
}

/// Positions of the shared items that pass `filter`, ordered by `sort`.
pub fn item_rows(c: &Comparison, filter: &ItemFilter, sort: ItemSort, descending: bool) -> Vec<usize> {
    let items = c.items();
    let only: Option<HashSet<usize>> = filter.only.as_ref().map(|v| v.iter().copied().collect());
    let mut rows: Vec<usize> = (0..items.len())
        .filter(|&k| {
            let it = &items[k];
            filter.category.as_ref().is_none_or(|cat| &it.category == cat)
                && filter.band.as_ref().is_none_or(|b| price_band(it.truth) == b)
                && filter.green_red.is_none_or(|(a, b)| {
                    c.evals[a].items[k].colour == Colour::Green && c.evals[b].items[k].colour == Colour::Red
                })
                && only.as_ref().is_none_or(|o| o.contains(&k))
        })
        .collect();
    let key = |k: usize| -> f64 {
        match sort {
            ItemSort::Truth => items[k].truth,
            ItemSort::Guess(p) => c.evals[p].items[k].guess,
            ItemSort::Error(p) => c.evals[p].items[k].error,
            _ => 0.0,
        }
    };
    match sort {
        ItemSort::Index => {}
        ItemSort::Title => rows.sort_by(|&a, &b| items[a].title.cmp(&items[b].title)),
        ItemSort::Category => rows.sort_by(|&a, &b| items[a].category.cmp(&items[b].category)),
        _ => rows.sort_by(|&a, &b| key(a).total_cmp(&key(b))),
    }
    if descending {
        rows.reverse();
    }
    rows
}

/// Share of items (0–1) whose absolute error is at most `x`, at `x = 0, step, 2·step, …, max`.
pub fn within_curve(errors: &[f64], step: f64, max: f64) -> Vec<[f64; 2]> {
    let mut e = errors.to_vec();
    e.sort_by(f64::total_cmp);
    let n = e.len().max(1) as f64;
    let steps = (max / step).ceil() as usize;
    (0..=steps)
        .map(|s| {
            let x = s as f64 * step;
            [x, e.partition_point(|v| *v <= x) as f64 / n]
        })
        .collect()
}

/// Counts of absolute errors in bins `[k·width, (k+1)·width)`, the last bin open-ended.
pub fn error_histogram(errors: &[f64], width: f64, bins: usize) -> Vec<usize> {
    let mut h = vec![0; bins.max(1)];
    for e in errors {
        let k = ((e / width).floor().max(0.0) as usize).min(h.len() - 1);
        h[k] += 1;
    }
    h
}

/// One published result of the original (design.md §6), on the original test set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Published {
    /// Pricer.
    pub name: &'static str,
    /// Error in dollars.
    pub error: f64,
    /// RMSLE.
    pub rmsle: f64,
    /// Hits in percent.
    pub hits_percent: f64,
}

/// The original's published results (first 250 items of its test set).
pub const PUBLISHED: [Published; 16] = [
    Published { name: "Random ($1–$999)", error: 340.74, rmsle: 1.72, hits_percent: 11.6 },
    Published { name: "Constant (train mean)", error: 145.51, rmsle: 1.22, hits_percent: 16.8 },
    Published { name: "Linear regression, 4 features", error: 139.34, rmsle: 1.17, hits_percent: 15.6 },
    Published { name: "Bag of words + LR", error: 113.60, rmsle: 0.99, hits_percent: 24.8 },
    Published { name: "word2vec + LR", error: 115.47, rmsle: 1.01, hits_percent: 27.6 },
    Published { name: "word2vec + LinearSVR", error: 112.52, rmsle: 0.93, hits_percent: 26.4 },
    Published { name: "word2vec + random forest", error: 97.11, rmsle: 0.88, hits_percent: 34.0 },
    Published { name: "Human", error: 126.55, rmsle: 1.00, hits_percent: 32.0 },
    Published { name: "GPT-4o-mini, zero-shot", error: 79.58, rmsle: 0.59, hits_percent: 52.0 },
    Published { name: "GPT-4o, zero-shot", error: 75.92, rmsle: 0.75, hits_percent: 58.0 },
    Published { name: "Claude 3.5 Sonnet, zero-shot", error: 100.83, rmsle: 0.60, hits_percent: 50.8 },
    Published { name: "GPT-4o-mini fine-tuned (200)", error: 91.45, rmsle: 0.68, hits_percent: 44.0 },
    Published { name: "Llama 3.1 8B base, 4-bit", error: 395.72, rmsle: 1.49, hits_percent: 28.0 },
    Published { name: "Llama 3.1 8B QLoRA (400k)", error: 46.66, rmsle: 0.38, hits_percent: 70.8 },
    Published { name: "GPT-4o-mini + RAG (rerun)", error: 48.52, rmsle: 0.41, hits_percent: 70.4 },
    Published { name: "Ensemble (rerun)", error: 50.90, rmsle: 0.49, hits_percent: 68.4 },
];

/// Version of the pricer-set file.
pub const SET_FORMAT: u32 = 1;

/// A saved set of pricers for the Compare tab: evaluation files in display order, with the names
/// the user gave them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PricerSet {
    /// File format version.
    pub format: u32,
    /// The pricers, in display order.
    pub pricers: Vec<SetEntry>,
}

/// One pricer of a set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetEntry {
    /// Its evaluation file.
    pub path: PathBuf,
    /// The name shown, when the user renamed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl PricerSet {
    /// Reads a set file.
    pub fn load(path: &Path) -> Result<Self> {
        crate::evaluation::read_versioned(path, ("a pricer set", "pricer-set"), SET_FORMAT, |s: &Self| s.format)
    }

    /// Writes it atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic_json(path, self)
    }
}

/// What a folder scan found: evaluation files with their contents, and why other files were skipped.
pub type Scanned = (Vec<(PathBuf, Evaluation)>, Vec<String>);

/// The evaluation files (`*.json` that parse as evaluations) in a folder, sorted by name, and
/// the files that did not parse with why.
pub fn scan_folder(dir: &Path) -> Result<Scanned> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    paths.sort();
    let mut found = vec![];
    let mut skipped = vec![];
    for p in paths {
        match Evaluation::load(&p) {
            Ok(e) => found.push((p, e)),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    Ok((found, skipped))
}
