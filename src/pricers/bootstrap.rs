//! How sure a comparison is: percentile bootstrap intervals of the Tester's Error and Hits for
//! each pricer, and the paired bootstrap of the difference between two pricers (the same
//! resampled items for both, so what they share cancels out). 250 test items is few: a $5 gap in
//! Error is often inside the noise, and these numbers say when.
//!
//! One resampling serves every pricer: each resample draws `n` item positions with replacement
//! (seeded, so a rerun gives the same intervals), and the mean error and hit rate of every pricer
//! over those positions are kept. Any pair's paired difference is then the difference of two
//! stored rows — choosing another pair costs a sort of `resamples` numbers, not a new bootstrap.

use crate::jobs::JobCtx;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Resamples by default (Efron and Tibshirani's rule of thumb for percentile intervals: 1,000+).
pub const DEFAULT_RESAMPLES: usize = 2000;

/// Seed of the resampling.
pub const DEFAULT_SEED: u64 = 42;

/// A central interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

impl Interval {
    /// Whether `x` lies inside.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// The bootstrap distribution of every pricer's mean error and hit rate.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// Resamples drawn.
    pub resamples: usize,
    /// Items per resample (the shared items).
    pub n: usize,
    /// `error[p][r]`: pricer `p`'s mean absolute error over resample `r`.
    pub error: Vec<Vec<f64>>,
    /// `hits[p][r]`: pricer `p`'s share of green items over resample `r`, in percent.
    pub hits: Vec<Vec<f64>>,
    /// Seconds the resampling took.
    pub secs: f64,
}

/// The paired bootstrap of pricer `a` minus pricer `b`.
#[derive(Clone, Debug, PartialEq)]
pub struct PairedDifference {
    /// Error of `a` minus error of `b` on the items (negative: `a` is better).
    pub error_diff: f64,
    /// Its 95% interval.
    pub error_ci: Interval,
    /// Share of resamples in which `a`'s error is below `b`'s.
    pub a_lower_error: f64,
    /// Hits of `a` minus hits of `b`, in percentage points (positive: `a` is better).
    pub hits_diff: f64,
    /// Its 95% interval.
    pub hits_ci: Interval,
}

impl PairedDifference {
    /// One sentence saying whether the difference in Error is real at 95%.
    pub fn verdict(&self, a: &str, b: &str) -> String {
        if self.error_ci.hi < 0.0 {
            format!("{a} beats {b} on Error (the 95% interval of the difference excludes 0)")
        } else if self.error_ci.lo > 0.0 {
            format!("{b} beats {a} on Error (the 95% interval of the difference excludes 0)")
        } else {
            format!("no clear winner on Error: the 95% interval of {a} − {b} contains 0")
        }
    }
}

impl Bootstrap {
    /// Resamples the items `resamples` times. `errors[p]` and `hits[p]` are pricer `p`'s absolute
    /// errors and green flags on the same items in the same order.
    pub fn run(errors: &[Vec<f64>], hits: &[Vec<bool>], resamples: usize, seed: u64, ctx: &JobCtx) -> Result<Self> {
        let start = std::time::Instant::now();
        let n = errors.first().map_or(0, Vec::len);
        if n == 0 || resamples == 0 {
            return Err(Error::InvalidInput("bootstrap: no items".into()));
        }
        if errors.iter().any(|e| e.len() != n) || hits.len() != errors.len() || hits.iter().any(|h| h.len() != n) {
            return Err(Error::InvalidInput("bootstrap: the pricers priced different numbers of items".into()));
        }
        let p = errors.len();
        // Hits as 0/1 floats, item-major so one resampled position reads one cache line per pricer.
        let mut rows = vec![0f64; n * 2 * p];
        for k in 0..n {
            for q in 0..p {
                rows[k * 2 * p + q] = errors[q][k];
                rows[k * 2 * p + p + q] = f64::from(u8::from(hits[q][k]));
            }
        }
        let mut error = vec![vec![0f64; resamples]; p];
        let mut hit = vec![vec![0f64; resamples]; p];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sums = vec![0f64; 2 * p];
        for r in 0..resamples {
            if r % 256 == 0 {
                ctx.check()?;
            }
            sums.iter_mut().for_each(|s| *s = 0.0);
            for _ in 0..n {
                let k = rng.random_range(0..n);
                for (s, v) in sums.iter_mut().zip(&rows[k * 2 * p..(k + 1) * 2 * p]) {
                    *s += v;
                }
            }
            for q in 0..p {
                error[q][r] = sums[q] / n as f64;
                hit[q][r] = sums[p + q] / n as f64 * 100.0;
            }
        }
        Ok(Self { resamples, n, error, hits: hit, secs: start.elapsed().as_secs_f64() })
    }

    /// 95% interval of pricer `p`'s Error.
    pub fn error_ci(&self, p: usize) -> Interval {
        percentile_interval(&self.error[p], 0.95)
    }

    /// 95% interval of pricer `p`'s Hits (percent).
    pub fn hits_ci(&self, p: usize) -> Interval {
        percentile_interval(&self.hits[p], 0.95)
    }

    /// The paired difference of `a` minus `b`; `error`/`hits` are the point estimates (the
    /// metrics over all items).
    pub fn paired(&self, a: usize, b: usize, error: (f64, f64), hits: (f64, f64)) -> PairedDifference {
        let de: Vec<f64> = self.error[a].iter().zip(&self.error[b]).map(|(x, y)| x - y).collect();
        let dh: Vec<f64> = self.hits[a].iter().zip(&self.hits[b]).map(|(x, y)| x - y).collect();
        let lower = de.iter().filter(|d| **d < 0.0).count() as f64 / de.len() as f64;
        PairedDifference {
            error_diff: error.0 - error.1,
            error_ci: percentile_interval(&de, 0.95),
            a_lower_error: lower,
            hits_diff: hits.0 - hits.1,
            hits_ci: percentile_interval(&dh, 0.95),
        }
    }
}

/// The central `level` percentile interval of `values` (linear interpolation between order
/// statistics, as numpy's default `percentile`).
pub fn percentile_interval(values: &[f64], level: f64) -> Interval {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Interval { lo: quantile_sorted(&v, tail), hi: quantile_sorted(&v, 1.0 - tail) }
}

/// The `q` quantile of sorted values (numpy's "linear" method).
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    if lo + 1 >= v.len() { v[v.len() - 1] } else { v[lo] + (v[lo + 1] - v[lo]) * frac }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 4.0);
        assert!((quantile_sorted(&v, 0.025) - 1.075).abs() < 1e-12);
        assert!((quantile_sorted(&v, 0.5) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn identical_pricers_differ_by_exactly_zero() {
        let e: Vec<f64> = (0..100).map(|i| f64::from(i) * 1.5).collect();
        let h: Vec<bool> = (0..100).map(|i| i % 3 == 0).collect();
        let b = Bootstrap::run(&[e.clone(), e.clone()], &[h.clone(), h.clone()], 500, 1, &JobCtx::default()).unwrap();
        let d = b.paired(0, 1, (1.0, 1.0), (2.0, 2.0));
        assert_eq!(d.error_ci, Interval { lo: 0.0, hi: 0.0 });
        assert_eq!(d.hits_ci, Interval { lo: 0.0, hi: 0.0 });
        // The interval of the mean contains the mean of all items.
        let mean = e.iter().sum::<f64>() / 100.0;
        assert!(b.error_ci(0).contains(mean));
    }
}
