//! The balancing recipe of design.md §5 and the seeded train/test split. Every constant is a
//! parameter; the defaults are the original recipe. Same table, parameters and seed give the
//! same indices, whatever the number of threads.

use crate::items::{ItemTable, price_slot};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Parameters of the balancing pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BalanceParams {
    /// Whether to balance at all (false: take every item of the chosen categories).
    pub balance: bool,
    /// Width of a price slot in USD (1.0 in the original).
    pub slot_width_usd: f64,
    /// Slots whose price (slot × width) is at least this are taken whole (240 in the original).
    pub take_all_from_usd: f64,
    /// Items drawn from a crowded slot (1200 in the original).
    pub cap_per_slot: usize,
    /// Weight of categories not listed in `weights` (5 in the original).
    pub default_weight: f64,
    /// Per-category weights (Automotive 1 in the original). A weight of 0 excludes the category.
    pub weights: BTreeMap<String, f64>,
    /// Only these categories are used, when non-empty.
    pub categories: Vec<String>,
    /// Seed of the draw.
    pub seed: u64,
}

impl Default for BalanceParams {
    fn default() -> Self {
        Self::original()
    }
}

impl BalanceParams {
    /// The original recipe: slots of $1, take all from $240, cap 1200, Automotive 1, others 5.
    pub fn original() -> Self {
        Self {
            balance: true,
            slot_width_usd: 1.0,
            take_all_from_usd: 240.0,
            cap_per_slot: 1200,
            default_weight: 5.0,
            weights: BTreeMap::from([("Automotive".to_owned(), 1.0)]),
            categories: Vec::new(),
            seed: 42,
        }
    }

    /// The lite recipe: Appliances only, no balancing.
    pub fn lite() -> Self {
        Self {
            balance: false,
            weights: BTreeMap::new(),
            default_weight: 1.0,
            categories: vec!["Appliances".to_owned()],
            ..Self::original()
        }
    }

    /// The weight set for a category, ignoring the category list.
    pub fn weight_of_unfiltered(&self, category: &str) -> f64 {
        self.weights.get(category).copied().unwrap_or(self.default_weight)
    }

    /// Weight of a category under these parameters (0 when excluded).
    pub fn weight_of(&self, category: &str) -> f64 {
        if !self.categories.is_empty() && !self.categories.iter().any(|c| c == category) {
            return 0.0;
        }
        self.weights.get(category).copied().unwrap_or(self.default_weight).max(0.0)
    }
}

/// A named preset: balancing parameters plus split sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Balancing parameters.
    pub balance: BalanceParams,
    /// Split parameters.
    pub split: SplitParams,
}

impl Recipe {
    /// A preset by name: `original` or `lite`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "original" => Some(Self { balance: BalanceParams::original(), split: SplitParams::default() }),
            "lite" => Some(Self {
                balance: BalanceParams::lite(),
                split: SplitParams { n_train: 25_000, n_test: 2_000, seed: 42 },
            }),
            _ => None,
        }
    }
}

/// Sizes and seed of the train/test split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SplitParams {
    /// Train items (400,000 in the original).
    pub n_train: usize,
    /// Test items (2,000 in the original).
    pub n_test: usize,
    /// Seed of the shuffle.
    pub seed: u64,
}

impl Default for SplitParams {
    fn default() -> Self {
        Self { n_train: 400_000, n_test: 2_000, seed: 42 }
    }
}

/// Row indices of the balanced sample, in slot order (and table order within a slot).
pub fn balance(table: &ItemTable, params: &BalanceParams) -> Vec<usize> {
    let weights: Vec<f64> = table.category_names().iter().map(|c| params.weight_of(c)).collect();
    let codes = table.category_codes();
    let slots = slots_for(table, params.slot_width_usd);
    let n_slots = slots.iter().copied().max().map_or(0, |m| m as usize + 1);

    // Counting sort of eligible rows by slot (slot 0 is never taken).
    let mut counts = vec![0usize; n_slots + 1];
    for (i, &s) in slots.iter().enumerate() {
        if s > 0 && weights[codes[i] as usize] > 0.0 {
            counts[s as usize + 1] += 1;
        }
    }
    for s in 1..counts.len() {
        counts[s] += counts[s - 1];
    }
    let starts = counts.clone();
    let mut by_slot = vec![0u32; *counts.last().unwrap_or(&0)];
    let mut fill = counts;
    for (i, &s) in slots.iter().enumerate() {
        if s > 0 && weights[codes[i] as usize] > 0.0 {
            by_slot[fill[s as usize]] = i as u32;
            fill[s as usize] += 1;
        }
    }

    let per_slot: Vec<Vec<u32>> = (1..n_slots)
        .into_par_iter()
        .map(|slot| {
            let rows = &by_slot[starts[slot]..starts[slot + 1]];
            let slot_price = slot as f64 * params.slot_width_usd;
            if !params.balance || slot_price >= params.take_all_from_usd || rows.len() <= params.cap_per_slot {
                return rows.to_vec();
            }
            draw_weighted(rows, params.cap_per_slot, |r| weights[codes[r as usize] as usize], params.seed, slot as u64)
        })
        .collect();
    per_slot.into_iter().flatten().map(|r| r as usize).collect()
}

fn slots_for(table: &ItemTable, width: f64) -> std::borrow::Cow<'_, [u16]> {
    if width == 1.0 {
        std::borrow::Cow::Borrowed(table.slots())
    } else {
        std::borrow::Cow::Owned(
            table.prices().par_iter().map(|&p| price_slot(p, width).min(u32::from(u16::MAX)) as u16).collect(),
        )
    }
}

/// Draws `k` of `rows` without replacement, each draw proportional to the weight among those
/// left (Efraimidis–Spirakis keys, equivalent to successive weighted draws). Returns the chosen
/// rows in their input order.
fn draw_weighted(rows: &[u32], k: usize, weight: impl Fn(u32) -> f64, seed: u64, stream: u64) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    // key = -ln(u) / w: the k smallest keys win.
    let mut keyed: Vec<(f64, u32)> = rows
        .iter()
        .map(|&r| {
            let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            (-u.ln() / weight(r), r)
        })
        .collect();
    keyed.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.truncate(k);
    let mut chosen: Vec<u32> = keyed.into_iter().map(|(_, r)| r).collect();
    chosen.sort_unstable();
    chosen
}

/// The expected outcome of a balancing pass, computed from slot × category counts without
/// touching rows: what a live preview needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BalancePreview {
    /// Expected items per slot (index = slot).
    pub per_slot: Vec<f64>,
    /// Expected items per category code.
    pub per_category: Vec<f64>,
    /// Expected total items.
    pub total: f64,
    /// Expected mean price (slot price as the price of its items).
    pub mean_price_usd: f64,
}

/// Slot × category counts of a table, the input of [`preview`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlotCategoryCounts {
    /// Slot width the counts were made with.
    pub slot_width_usd: f64,
    /// Number of categories.
    pub n_categories: usize,
    /// `counts[slot * n_categories + category]`.
    pub counts: Vec<u32>,
    /// Sum of prices per slot and category (for mean prices).
    pub price_sums: Vec<f64>,
}

impl SlotCategoryCounts {
    /// Counts a table (one pass over the prices).
    pub fn from_table(table: &ItemTable, slot_width_usd: f64) -> Self {
        let n_categories = table.category_names().len().max(1);
        let slots = slots_for(table, slot_width_usd);
        let n_slots = slots.iter().copied().max().map_or(1, |m| m as usize + 1);
        let mut counts = vec![0u32; n_slots * n_categories];
        let mut price_sums = vec![0f64; n_slots * n_categories];
        for ((&s, &c), &p) in slots.iter().zip(table.category_codes()).zip(table.prices()) {
            let k = s as usize * n_categories + c as usize;
            counts[k] += 1;
            price_sums[k] += p;
        }
        Self { slot_width_usd, n_categories, counts, price_sums }
    }

    /// Number of slots (including slot 0).
    pub fn n_slots(&self) -> usize {
        self.counts.len() / self.n_categories
    }
}

/// Expected result of [`balance`] with `params` on the table behind `counts`, from the counts
/// alone (no rows touched): what the live preview shows while a control moves.
pub fn preview(counts: &SlotCategoryCounts, category_names: &[String], params: &BalanceParams) -> BalancePreview {
    let nc = counts.n_categories;
    let weights: Vec<f64> = (0..nc).map(|c| category_names.get(c).map_or(0.0, |n| params.weight_of(n))).collect();
    let mut out =
        BalancePreview { per_slot: vec![0.0; counts.n_slots()], per_category: vec![0.0; nc], ..Default::default() };
    let mut price_total = 0.0;
    let mut take = vec![0f64; nc];
    for slot in 1..counts.n_slots() {
        let row = &counts.counts[slot * nc..(slot + 1) * nc];
        let sums = &counts.price_sums[slot * nc..(slot + 1) * nc];
        let eligible: f64 = (0..nc).filter(|&c| weights[c] > 0.0).map(|c| f64::from(row[c])).sum();
        if eligible == 0.0 {
            continue;
        }
        let slot_price = slot as f64 * counts.slot_width_usd;
        let capped = params.balance && slot_price < params.take_all_from_usd && eligible > params.cap_per_slot as f64;
        for c in 0..nc {
            take[c] = if weights[c] > 0.0 { f64::from(row[c]) } else { 0.0 };
        }
        if capped {
            expected_draw(&mut take, row, &weights, params.cap_per_slot as f64);
        }
        for c in 0..nc {
            if take[c] > 0.0 {
                out.per_slot[slot] += take[c];
                out.per_category[c] += take[c];
                price_total += sums[c] / f64::from(row[c]) * take[c];
            }
        }
    }
    out.total = out.per_slot.iter().sum();
    out.mean_price_usd = if out.total > 0.0 { price_total / out.total } else { 0.0 };
    out
}

/// Expected draw per category when `cap` of the `available` rows are drawn by successive
/// weighted draws: an item of weight `w` is taken with probability `1 - exp(-w t)`, where `t`
/// solves `sum_c n_c (1 - exp(-w_c t)) = cap` (the exponential-key view of the draw; exact in
/// the limit of many items per category, within a fraction of an item here).
fn expected_draw(take: &mut [f64], available: &[u32], weights: &[f64], cap: f64) {
    let expected = |t: f64| -> f64 {
        (0..available.len())
            .filter(|&c| weights[c] > 0.0)
            .map(|c| f64::from(available[c]) * (1.0 - (-weights[c] * t).exp()))
            .sum()
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while expected(hi) < cap && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if expected(mid) < cap { lo = mid } else { hi = mid }
    }
    let t = 0.5 * (lo + hi);
    for c in 0..take.len() {
        take[c] = if weights[c] > 0.0 { f64::from(available[c]) * (1.0 - (-weights[c] * t).exp()) } else { 0.0 };
    }
}

/// The seeded shuffle and split of a sample: `(train, test)` row indices.
pub fn split(sample: &[usize], params: &SplitParams) -> (Vec<usize>, Vec<usize>) {
    let mut shuffled = sample.to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    shuffled.shuffle(&mut rng);
    let n_test = params.n_test.min(shuffled.len());
    let n_train = params.n_train.min(shuffled.len() - n_test);
    let test = shuffled[n_train..n_train + n_test].to_vec();
    shuffled.truncate(n_train);
    (shuffled, test)
}

/// A recipe as saved beside an export: every parameter, the seed, and a digest of the source
/// data, so the same files can be reproduced (and a changed source noticed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedRecipe {
    /// Balancing and split parameters.
    pub recipe: Recipe,
    /// SHA-256 of the source items (category, price, prompt of every item, in order).
    pub source_digest: String,
    /// Items in the source.
    pub source_items: usize,
    /// Where the source was read from (informational).
    pub source_path: String,
    /// Export format used.
    pub format: crate::export::ExportFormat,
    /// Items in the balanced sample.
    pub n_sampled: usize,
    /// Train items written.
    pub n_train: usize,
    /// Test items written.
    pub n_test: usize,
}

/// SHA-256 over the category, price and prompt of every item, in table order.
pub fn table_digest(table: &ItemTable) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for it in table.iter() {
        h.update(it.category.as_bytes());
        h.update([0]);
        h.update(it.price.to_le_bytes());
        h.update(it.prompt.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`Sample::export`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOutcome {
    /// Items in the balanced sample.
    pub n_sampled: usize,
    /// Mean price of the sample.
    pub mean_price_usd: f64,
    /// Train items written.
    pub n_train: usize,
    /// Test items written.
    pub n_test: usize,
    /// Items per category in the sample, largest first.
    pub category_counts: Vec<(String, u64)>,
    /// Files written (train, test, recipe).
    pub files: Vec<std::path::PathBuf>,
}

/// An exact sample and its split, drawn once from a table by a recipe: what the app shows after
/// Apply, what Export writes (without drawing again), and what the CLI's `sample` and `tour`
/// print. Rows index the table it was drawn from.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The recipe it was drawn with.
    pub recipe: Recipe,
    /// Sampled rows (slot order).
    pub rows: Vec<usize>,
    /// Train rows (shuffled order).
    pub train: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
    /// Sampled items per category code of the table.
    pub per_category: Vec<u64>,
    /// Mean price of the sample.
    pub mean_price_usd: f64,
    /// Items in the table it was drawn from.
    pub source_items: usize,
}

impl Sample {
    /// Balances `table` by `recipe` and splits the result (seeded: same table and recipe, same
    /// sample).
    pub fn draw(table: &ItemTable, recipe: &Recipe) -> Self {
        let rows = balance(table, &recipe.balance);
        let (train, test) = split(&rows, &recipe.split);
        let mut per_category = vec![0u64; table.category_names().len()];
        let mut price_sum = 0.0;
        for &i in &rows {
            per_category[table.category_codes()[i] as usize] += 1;
            price_sum += table.prices()[i];
        }
        let mean_price_usd = if rows.is_empty() { 0.0 } else { price_sum / rows.len() as f64 };
        Self { recipe: recipe.clone(), rows, train, test, per_category, mean_price_usd, source_items: table.len() }
    }

    /// Items in the sample.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the sample is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Items per category name, largest first (categories with none left out).
    pub fn category_counts(&self, table: &ItemTable) -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = table
            .category_names()
            .iter()
            .cloned()
            .zip(self.per_category.iter().copied())
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }

    /// Writes `train.<ext>` (full prompts), `test.<ext>` (test prompts) and `recipe.json` into
    /// `out_dir`, each atomically: exactly these rows of `table` (the table the sample was drawn
    /// from), not a new draw.
    pub fn export(
        &self,
        table: &ItemTable,
        out_dir: &std::path::Path,
        format: crate::export::ExportFormat,
        source_path: &std::path::Path,
    ) -> crate::Result<SampleOutcome> {
        use crate::export::{TextForm, export};
        if table.len() != self.source_items {
            return Err(crate::Error::InvalidInput(format!(
                "the sample was drawn from {} items, the table has {}: apply the recipe again",
                self.source_items,
                table.len()
            )));
        }
        let ext = format.extension();
        let train_path = out_dir.join(format!("train.{ext}"));
        let test_path = out_dir.join(format!("test.{ext}"));
        export(table, &self.train, TextForm::Train, format, &train_path)?;
        export(table, &self.test, TextForm::Test, format, &test_path)?;
        let saved = SavedRecipe {
            recipe: self.recipe.clone(),
            source_digest: table_digest(table),
            source_items: table.len(),
            source_path: source_path.display().to_string(),
            format,
            n_sampled: self.rows.len(),
            n_train: self.train.len(),
            n_test: self.test.len(),
        };
        let recipe_path = out_dir.join("recipe.json");
        crate::atomic::write_atomic_json(&recipe_path, &saved)?;
        Ok(SampleOutcome {
            n_sampled: self.rows.len(),
            mean_price_usd: self.mean_price_usd,
            n_train: self.train.len(),
            n_test: self.test.len(),
            category_counts: self.category_counts(table),
            files: vec![train_path, test_path, recipe_path],
        })
    }
}

impl SavedRecipe {
    /// Reads a `recipe.json`.
    pub fn load(path: &std::path::Path) -> crate::Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| crate::Error::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| crate::Error::InvalidInput(format!("{} is not a recipe: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_of_zero_takes_nothing_from_crowded_slots() {
        let mut t = ItemTable::new();
        for i in 0..10 {
            t.push_parts("t", "A", 10.0, "", &format!("p{i}"), 1);
        }
        t.push_parts("t", "A", 300.0, "", "q", 1);
        let p = BalanceParams { cap_per_slot: 0, ..BalanceParams::original() };
        assert_eq!(balance(&t, &p), vec![10]);
    }

    #[test]
    fn slots_round_half_even() {
        assert_eq!(price_slot(226.5, 1.0), 226);
        assert_eq!(price_slot(227.5, 1.0), 228);
        assert_eq!(price_slot(0.5, 1.0), 0);
        assert_eq!(price_slot(1.5, 1.0), 2);
        assert_eq!(price_slot(999.49, 1.0), 999);
        assert_eq!(price_slot(25.0, 10.0), 2);
    }

    #[test]
    fn expected_draw_matches_cap_and_favours_weight() {
        let mut take = vec![0.0; 2];
        expected_draw(&mut take, &[1000, 1000], &[5.0, 1.0], 100.0);
        assert!((take[0] + take[1] - 100.0).abs() < 1e-6);
        assert!(take[0] > 4.0 * take[1], "{take:?}");
        expected_draw(&mut take, &[10, 1000], &[5.0, 1.0], 1009.0);
        assert!(take[0] > 9.99 && take[1] > 998.0);
    }
}
