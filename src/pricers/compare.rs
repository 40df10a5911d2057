//! Several evaluations side by side: restricted to the items they all priced (flagged when they
//! priced different test files), one row of metrics per pricer sorted by error, breakdowns by
//! category or price band (computed with polars), and one CSV row per item with every pricer's
//! guess and error.

use crate::evaluation::{EvalItem, Evaluation, Metrics};
use crate::{Error, Result};
use polars::prelude::*;
use std::collections::HashSet;
use std::path::Path;

/// Evaluations aligned on their shared items.
pub struct Comparison {
    /// The evaluations, each keeping only the shared items (in the same order), metrics recomputed.
    pub evals: Vec<Evaluation>,
    /// Items every evaluation priced.
    pub shared: usize,
    /// Whether the evaluations priced different test files.
    pub different_tests: bool,
    /// What the alignment dropped, for the user.
    pub notes: Vec<String>,
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
    let different_tests = evals.iter().any(|e| e.test.digest != evals[0].test.digest);
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
    Ok(Comparison { shared: shared.len(), evals, different_tests, notes })
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
            hit.push(if i.colour == crate::tester::Colour::Green { 1.0 } else { 0.0 });
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
    crate::atomic::write_atomic(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        let io = std::io::Error::other;
        let mut header = vec!["index".to_owned(), "title".into(), "category".into(), "truth".into()];
        for e in &c.evals {
            header.push(format!("{} guess", e.name));
            header.push(format!("{} error", e.name));
        }
        csv.write_record(&header).map_err(io)?;
        for (k, it) in c.evals[0].items.iter().enumerate() {
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
