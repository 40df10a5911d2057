//! The week-8 ensemble: a linear regression over chosen pricers' guesses plus the minimum and
//! the maximum of them, fitted on other test items than the ones it is scored on (the original:
//! fitted on items 1000–1250, scored on 0–250), guesses clamped at 0.

use super::linear::{Design, LinearModel};
use super::{Guess, Pricer};
use crate::evaluation::Evaluation;
use crate::items::ItemRef;
use crate::jobs::JobCtx;
use crate::{Error, Result};
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

/// A fitted ensemble.
pub struct Ensemble {
    names: Vec<String>,
    model: LinearModel,
    /// Each member's guess by test index.
    members: Vec<HashMap<usize, f64>>,
    fit_items: (usize, usize),
}

/// The ensemble's input row: the members' guesses, their min and their max.
pub fn row(guesses: &[f64]) -> Vec<f64> {
    let mut r = guesses.to_vec();
    r.push(guesses.iter().copied().fold(f64::INFINITY, f64::min));
    r.push(guesses.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    r
}

impl Ensemble {
    /// Reads the members' evaluations and fits on the test items `fit_items`.
    pub fn fit(files: &[PathBuf], fit_items: (usize, usize), evaluated: Range<usize>, _ctx: &JobCtx) -> Result<Self> {
        let (a, b) = fit_items;
        if a >= b {
            return Err(Error::InvalidInput(format!("ensemble: the fitting items {a}..{b} are empty")));
        }
        if a < evaluated.end && evaluated.start < b {
            return Err(Error::InvalidInput(format!(
                "ensemble: the fitting items {a}..{b} overlap the items it would be scored on {}..{} — \
                 fit on other items (the original fitted on 1000..1250 and scored 0..250)",
                evaluated.start, evaluated.end
            )));
        }
        if files.is_empty() {
            return Err(Error::InvalidInput("ensemble: name at least one member evaluation".into()));
        }
        let evals: Vec<Evaluation> = files.iter().map(|f| Evaluation::load(f)).collect::<Result<_>>()?;
        let digest = &evals[0].test.digest;
        if let Some(e) = evals.iter().find(|e| &e.test.digest != digest) {
            return Err(Error::InvalidInput(format!(
                "ensemble: `{}` priced other test items ({}) than `{}` ({})",
                e.name, e.test.path, evals[0].name, evals[0].test.path
            )));
        }
        let members: Vec<HashMap<usize, f64>> =
            evals.iter().map(|e| e.items.iter().map(|i| (i.index, i.guess)).collect()).collect();
        for (e, m) in evals.iter().zip(&members) {
            for range in [a..b, evaluated.clone()] {
                let missing = range.clone().filter(|i| !m.contains_key(i)).count();
                if missing > 0 {
                    return Err(Error::InvalidInput(format!(
                        "ensemble: `{}` has no guess for {missing} of the items {}..{} — evaluate it with \
                         --start/--size covering them",
                        e.name, range.start, range.end
                    )));
                }
            }
        }
        let truth: HashMap<usize, f64> = evals[0].items.iter().map(|i| (i.index, i.truth)).collect();
        let k = members.len() + 2;
        let x: Vec<f64> = (a..b).flat_map(|i| row(&members.iter().map(|m| m[&i]).collect::<Vec<_>>())).collect();
        let y: Vec<f64> = (a..b).map(|i| truth[&i]).collect();
        let model = LinearModel::fit(&Design::Dense(&x, k), &y)?;
        Ok(Self { names: evals.iter().map(|e| e.name.clone()).collect(), model, members, fit_items })
    }
}

impl Pricer for Ensemble {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], _: &JobCtx) -> Result<Vec<Guess>> {
        batch
            .iter()
            .map(|(i, _)| {
                let g: Option<Vec<f64>> = self.members.iter().map(|m| m.get(i).copied()).collect();
                let g =
                    g.ok_or_else(|| Error::InvalidInput(format!("ensemble: a member has no guess for item {i}")))?;
                Ok(Guess::of(self.model.predict_dense(&row(&g)).max(0.0)))
            })
            .collect()
    }
    fn fitted(&self) -> serde_json::Value {
        let mut names = self.names.clone();
        names.push("min".into());
        names.push("max".into());
        let coef: serde_json::Map<String, serde_json::Value> =
            names.into_iter().zip(self.model.coef.iter().map(|&c| c.into())).collect();
        serde_json::json!({ "coefficients": coef, "intercept": self.model.intercept,
            "fit_items": [self.fit_items.0, self.fit_items.1] })
    }
}
