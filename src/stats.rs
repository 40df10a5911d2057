//! Statistics over all rows of an item table: summaries, histograms with any bins (linear by width
//! or count, logarithmic), category counts and price-vs-length pairs — what the charts and the
//! sampling preview call.

use crate::items::ItemTable;
use rayon::prelude::*;
use serde::Serialize;

/// Summary statistics of one numeric column.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of values.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// 25th percentile.
    pub p25: f64,
    /// Median.
    pub median: f64,
    /// 75th percentile.
    pub p75: f64,
    /// Maximum.
    pub max: f64,
}

impl Summary {
    /// Summarises `values` (exact quantiles, linear interpolation as numpy's default).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.par_sort_unstable_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let q = |p: f64| {
            let pos = p * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        };
        Self { count: n, mean, std: var.sqrt(), min: v[0], p25: q(0.25), median: q(0.5), p75: q(0.75), max: v[n - 1] }
    }
}

/// How to bin a histogram.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Bins {
    /// Bins of `width` starting at `start`, up to `end`.
    Width {
        /// Left edge of the first bin.
        start: f64,
        /// Bin width.
        width: f64,
        /// Right edge of the range.
        end: f64,
    },
    /// `n` equal bins over `[min, max]`.
    Count {
        /// Number of bins.
        n: usize,
        /// Left edge.
        min: f64,
        /// Right edge.
        max: f64,
    },
    /// `n` bins equal in log10 over `[min, max]` (`min > 0`).
    Log {
        /// Number of bins.
        n: usize,
        /// Left edge (> 0).
        min: f64,
        /// Right edge.
        max: f64,
    },
}

/// A histogram: `edges.len() == counts.len() + 1`. Values outside the range are counted apart.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// Bin edges, ascending.
    pub edges: Vec<f64>,
    /// Count per bin (last bin includes its right edge).
    pub counts: Vec<u64>,
    /// Values below the first edge.
    pub below: u64,
    /// Values above the last edge.
    pub above: u64,
}

impl Histogram {
    /// Total count inside the range.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Bins {
    /// `(number of bins, low edge, high edge, logarithmic)`, edges in the binned coordinate
    /// (log10 of the value for logarithmic bins). Width bins round the range up to whole bins.
    fn layout(self) -> (usize, f64, f64, bool) {
        match self {
            Bins::Width { start, width, end } => {
                let n = (((end - start) / width).ceil().max(1.0)) as usize;
                (n, start, start + n as f64 * width, false)
            }
            Bins::Count { n, min, max } => (n.max(1), min, max, false),
            Bins::Log { n, min, max } => (n.max(1), min.max(f64::MIN_POSITIVE).log10(), max.log10(), true),
        }
    }
}

/// Bins `values` (in parallel over chunks).
pub fn histogram<T: Copy + Into<f64> + Send + Sync>(values: &[T], bins: Bins) -> Histogram {
    let (n, lo, hi, log) = bins.layout();
    let span = hi - lo;
    let scale = if span > 0.0 { n as f64 / span } else { 0.0 };
    let edges: Vec<f64> =
        (0..=n).map(|i| lo + span * i as f64 / n as f64).map(|e| if log { 10f64.powf(e) } else { e }).collect();
    let chunk = (values.len() / (rayon::current_num_threads() * 4)).max(1 << 14);
    let (counts, below, above) = values
        .par_chunks(chunk)
        .map(|chunk| {
            let mut counts = vec![0u64; n];
            let (mut below, mut above) = (0u64, 0u64);
            let mut bin = |x: f64| {
                if x < lo || x.is_nan() {
                    below += 1;
                } else if x > hi {
                    above += 1;
                } else {
                    counts[(((x - lo) * scale) as usize).min(n - 1)] += 1;
                }
            };
            if log {
                for &v in chunk {
                    let x: f64 = v.into();
                    bin(if x > 0.0 { x.log10() } else { f64::NEG_INFINITY });
                }
            } else {
                for &v in chunk {
                    bin(v.into());
                }
            }
            (counts, below, above)
        })
        .reduce(|| (vec![0u64; n], 0, 0), merge_counts);
    Histogram { edges, counts, below, above }
}

/// Adds two partial `(counts, below, above)` results of a parallel binning pass.
fn merge_counts(
    (mut a, below_a, above_a): (Vec<u64>, u64, u64),
    (b, below_b, above_b): (Vec<u64>, u64, u64),
) -> (Vec<u64>, u64, u64) {
    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
    (a, below_a + below_b, above_a + above_b)
}

/// Histogram of the table's prices. Linear bins whose edges fall on whole cents are counted on
/// the integer cents column (exact fixed-point arithmetic, about twice as fast as floating
/// point); other bins use [`histogram`] on the prices.
pub fn price_histogram(table: &ItemTable, bins: Bins) -> Histogram {
    let (n, lo, hi, log) = bins.layout();
    if log {
        return histogram(table.prices(), bins);
    }
    let (lo_c, hi_c) = ((lo * 100.0).round(), (hi * 100.0).round());
    let whole_cents = (lo * 100.0 - lo_c).abs() < 1e-9 && (hi * 100.0 - hi_c).abs() < 1e-9;
    let span = hi_c - lo_c;
    // floor(x * n / span) == (x * mul) >> 48 with mul = ceil(n * 2^48 / span) whenever
    // x * span < 2^48 (x <= span < 2^24 here); x * mul <= n * 2^48 + span fits in 64 bits
    // for n < 2^15.
    if !whole_cents || lo_c < 0.0 || span < 1.0 || span >= 2f64.powi(24) || n >= 1 << 15 {
        return histogram(table.prices(), bins);
    }
    let (lo_c, span) = (lo_c as u64, span as u64);
    let mul = ((n as u128) << 48).div_ceil(u128::from(span)) as u64;
    let mut hist = histogram::<f64>(&[], bins);
    let chunk = (table.len() / (rayon::current_num_threads() * 4)).max(1 << 14);
    let (counts, below, above) = table
        .price_cents()
        .par_chunks(chunk)
        .map(|chunk| {
            // Four interleaved count arrays break the store-to-load dependency on hot bins.
            let mut c = vec![[0u32; 4]; n];
            let (mut below, mut above) = (0u64, 0u64);
            for (k, &cents) in chunk.iter().enumerate() {
                let x = u64::from(cents);
                if x < lo_c {
                    below += 1;
                } else if x - lo_c > span {
                    above += 1;
                } else {
                    let b = (((x - lo_c) * mul) >> 48) as usize;
                    c[b.min(n - 1)][k & 3] += 1;
                }
            }
            (c.iter().map(|q| q.iter().map(|&v| u64::from(v)).sum()).collect::<Vec<u64>>(), below, above)
        })
        .reduce(|| (vec![0u64; n], 0, 0), merge_counts);
    hist.counts = counts;
    hist.below = below;
    hist.above = above;
    hist
}

/// Items per category, sorted by count descending then name.
pub fn category_counts(table: &ItemTable) -> Vec<(String, u64)> {
    let mut counts = vec![0u64; table.category_names().len()];
    for &c in table.category_codes() {
        counts[c as usize] += 1;
    }
    let mut out: Vec<(String, u64)> = table.category_names().iter().cloned().zip(counts).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// (price, prompt characters) of every item, for the scatter plot.
pub fn price_length_pairs(table: &ItemTable) -> Vec<[f32; 2]> {
    table.prices().par_iter().zip(table.prompt_chars().par_iter()).map(|(&p, &c)| [p as f32, c as f32]).collect()
}

/// Table-level statistics printed by `pricer stats`.
#[derive(Clone, Debug, Serialize)]
pub struct TableStats {
    /// Items.
    pub n_items: usize,
    /// Price summary.
    pub price: Summary,
    /// Token count summary.
    pub tokens: Summary,
    /// Prompt length (characters) summary.
    pub prompt_chars: Summary,
    /// Items per category.
    pub categories: Vec<(String, u64)>,
}

impl TableStats {
    /// Computes all statistics of `table`.
    pub fn of(table: &ItemTable) -> Self {
        Self {
            n_items: table.len(),
            price: Summary::of(table.prices().iter().copied()),
            tokens: Summary::of(table.token_counts().iter().map(|&t| f64::from(t))),
            prompt_chars: Summary::of(table.prompt_chars().iter().map(|&c| f64::from(c))),
            categories: category_counts(table),
        }
    }
}

/// EMA of `values` with weight `alpha` on the past (TensorBoard-style, debiased at the start).
pub fn ema(values: &[f64], alpha: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let mut acc = 0.0;
    let mut weight = 0.0;
    for &v in values {
        acc = alpha * acc + (1.0 - alpha) * v;
        weight = alpha * weight + (1.0 - alpha);
        out.push(if weight > 0.0 { acc / weight } else { v });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_edges_and_counts() {
        let v = [0.0f64, 0.5, 1.0, 9.99, 10.0, 10.5, -1.0];
        let h = histogram(&v, Bins::Width { start: 0.0, width: 1.0, end: 10.0 });
        assert_eq!(h.counts.len(), 10);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[9], 2); // 9.99 and the right edge 10.0
        assert_eq!((h.below, h.above), (1, 1));
        let h = histogram(&[1.0f64, 10.0, 100.0, 1000.0], Bins::Log { n: 3, min: 1.0, max: 1000.0 });
        assert_eq!(h.counts, vec![1, 1, 2]);
        assert!((h.edges[1] - 10.0).abs() < 1e-9);
    }

    #[test]
    fn price_histogram_matches_the_float_path() {
        let mut t = ItemTable::new();
        for i in 0..20_000u32 {
            let price = f64::from(i % 99_950) / 100.0 + f64::from(i % 7) * 13.37;
            t.push_parts("t", "c", (price * 100.0).round() / 100.0, "", "p", 1);
        }
        // Exact reference: floor((cents - lo) * n / span) in integers.
        let exact = |n: u64, lo: u64, hi: u64| {
            let mut counts = vec![0u64; n as usize];
            let (mut below, mut above) = (0, 0);
            for &c in t.price_cents() {
                let c = u64::from(c);
                if c < lo {
                    below += 1;
                } else if c > hi {
                    above += 1;
                } else {
                    counts[(((c - lo) * n / (hi - lo)) as usize).min(n as usize - 1)] += 1;
                }
            }
            (counts, below, above)
        };
        for (bins, n, lo, hi) in [
            (Bins::Count { n: 100, min: 0.0, max: 1000.0 }, 100, 0, 100_000),
            (Bins::Width { start: 0.0, width: 0.37, end: 100.0 }, 271, 0, 10_027),
            (Bins::Width { start: 5.0, width: 3.0, end: 250.0 }, 82, 500, 25_100),
            (Bins::Count { n: 7, min: 10.0, max: 80.0 }, 7, 1000, 8000),
        ] {
            let h = price_histogram(&t, bins);
            assert_eq!((h.counts.clone(), h.below, h.above), exact(n, lo, hi), "{bins:?}");
            assert_eq!(h.edges, histogram(t.prices(), bins).edges);
        }
    }

    #[test]
    fn summary_quantiles() {
        let s = Summary::of([1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.median, 2.5);
        assert_eq!(s.p25, 1.75);
        assert_eq!((s.min, s.max, s.mean), (1.0, 4.0, 2.5));
    }
}
