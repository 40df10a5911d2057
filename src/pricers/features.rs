//! The original's four hand-made features — item weight in pounds, mean Best Sellers Rank, length
//! of the test prompt, top-electronics-brand flag — and the linear regression on them. Missing
//! values become the training mean of that feature.

use super::linear::{Design, LinearModel};
use super::{Guess, Pricer};
use crate::Result;
use crate::items::{ItemRef, ItemTable};
use crate::jobs::JobCtx;
use serde_json::Value;

/// Brands (lower-cased) of the original's flag.
pub const TOP_ELECTRONICS_BRANDS: [&str; 9] =
    ["hp", "dell", "lenovo", "samsung", "asus", "sony", "canon", "apple", "intel"];

/// Feature names, in column order.
pub const NAMES: [&str; 4] = ["weight", "rank", "text_length", "is_top_electronics_brand"];

/// "Item Weight" in pounds: `"<amount> <unit>"` with pounds, ounces, grams, milligrams, kilograms
/// or "hundredths pounds"; anything else is missing.
pub fn weight_pounds(details: &Value) -> Option<f64> {
    let s = details.get("Item Weight")?.as_str()?;
    let parts: Vec<&str> = s.split(' ').collect();
    let amount: f64 = parts.first()?.parse().ok()?;
    let unit = parts.get(1)?.to_lowercase();
    match unit.as_str() {
        "pounds" => Some(amount),
        "ounces" => Some(amount / 16.0),
        "grams" => Some(amount / 453.592),
        "milligrams" => Some(amount / 453_592.0),
        "kilograms" => Some(amount / 0.453592),
        "hundredths" if parts.get(2).is_some_and(|p| p.to_lowercase() == "pounds") => Some(amount / 100.0),
        _ => None,
    }
}

/// The mean of the "Best Sellers Rank" values.
pub fn mean_rank(details: &Value) -> Option<f64> {
    let ranks = details.get("Best Sellers Rank")?.as_object()?;
    if ranks.is_empty() {
        return None;
    }
    let values: Option<Vec<f64>> = ranks.values().map(Value::as_f64).collect();
    let values = values?;
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// Whether the brand is one of [`TOP_ELECTRONICS_BRANDS`].
pub fn is_top_brand(details: &Value) -> bool {
    details
        .get("Brand")
        .and_then(Value::as_str)
        .is_some_and(|b| TOP_ELECTRONICS_BRANDS.contains(&b.to_lowercase().as_str()))
}

/// The four features of an item, `None` where missing.
pub fn raw_features(item: &ItemRef<'_>) -> [Option<f64>; 4] {
    let details: Value = serde_json::from_str(item.details()).unwrap_or(Value::Null);
    [
        weight_pounds(&details),
        mean_rank(&details),
        Some(crate::text::py_len(item.test_prompt()) as f64),
        Some(if is_top_brand(&details) { 1.0 } else { 0.0 }),
    ]
}

/// Linear regression on the four features.
pub struct FeaturesLr {
    /// Training means that replace missing values.
    pub fill: [f64; 4],
    /// The model.
    pub model: LinearModel,
}

impl FeaturesLr {
    /// Fits on training items.
    pub fn fit(train: &ItemTable, ctx: &JobCtx) -> Result<Self> {
        use rayon::prelude::*;
        ctx.check()?;
        let raw: Vec<[Option<f64>; 4]> =
            (0..train.len()).into_par_iter().map(|i| raw_features(&train.get(i))).collect();
        let mut fill = [0.0; 4];
        for (j, f) in fill.iter_mut().enumerate() {
            let present: Vec<f64> = raw.iter().filter_map(|r| r[j]).collect();
            *f = if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 };
        }
        let x: Vec<f64> = raw.iter().flat_map(|r| (0..4).map(|j| r[j].unwrap_or(fill[j]))).collect();
        let model = LinearModel::fit(&Design::Dense(&x, 4), train.prices())?;
        Ok(Self { fill, model })
    }

    /// The filled feature row of an item.
    pub fn row(&self, item: &ItemRef<'_>) -> [f64; 4] {
        let r = raw_features(item);
        [0, 1, 2, 3].map(|j| r[j].unwrap_or(self.fill[j]))
    }
}

impl Pricer for FeaturesLr {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], _: &JobCtx) -> Result<Vec<Guess>> {
        Ok(batch.iter().map(|(_, it)| Guess::of(self.model.predict_dense(&self.row(it)).max(0.0))).collect())
    }
    fn fitted(&self) -> serde_json::Value {
        let coef: serde_json::Map<String, Value> =
            NAMES.iter().zip(&self.model.coef).map(|(n, c)| ((*n).to_owned(), Value::from(*c))).collect();
        serde_json::json!({ "coefficients": coef, "intercept": self.model.intercept, "fill": self.fill })
    }
}
