//! The simplest pricers (random, constant) and ordinary least squares with an intercept, dense
//! or sparse, as scikit-learn's `LinearRegression` computes it: the columns are centred, and the
//! normal equations of the standardised columns are solved by Cholesky with a vanishing ridge
//! (1e-12 of the diagonal), which gives the minimum-norm solution where columns are collinear.

use super::{Guess, Pricer};
use crate::items::{ItemRef, ItemTable};
use crate::jobs::JobCtx;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;

/// Whole dollars 1–999, the same for an item whatever the batch or the order.
pub struct RandomPricer {
    /// Seed.
    pub seed: u64,
}

/// SplitMix64: a well-mixed hash of `(seed, index)`.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Pricer for RandomPricer {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], _: &JobCtx) -> Result<Vec<Guess>> {
        Ok(batch.iter().map(|(i, _)| Guess::of((1 + splitmix(splitmix(self.seed) ^ *i as u64) % 999) as f64)).collect())
    }
    fn fitted(&self) -> serde_json::Value {
        serde_json::json!({ "seed": self.seed })
    }
}

/// The training mean.
pub struct ConstantPricer {
    /// The mean training price.
    pub mean: f64,
}

impl ConstantPricer {
    /// Fits (takes the mean).
    pub fn fit(train: &ItemTable) -> Self {
        Self { mean: train.prices().iter().sum::<f64>() / train.len().max(1) as f64 }
    }
}

impl Pricer for ConstantPricer {
    fn price(&self, batch: &[(usize, ItemRef<'_>)], _: &JobCtx) -> Result<Vec<Guess>> {
        Ok(vec![Guess::of(self.mean); batch.len()])
    }
    fn fitted(&self) -> serde_json::Value {
        serde_json::json!({ "mean": self.mean })
    }
}

/// A fitted linear model `y = intercept + coef · x`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinearModel {
    /// Coefficients, one per column.
    pub coef: Vec<f64>,
    /// Intercept.
    pub intercept: f64,
}

/// A design matrix: dense rows (row-major, `d` columns) or sparse rows `(column, value)`.
pub enum Design<'a> {
    /// `n × d`, row-major.
    Dense(&'a [f64], usize),
    /// Sparse rows over `d` columns.
    Sparse(&'a [Vec<(u32, f64)>], usize),
}

impl Design<'_> {
    fn rows(&self) -> usize {
        match self {
            Self::Dense(x, d) => x.len() / (*d).max(1),
            Self::Sparse(r, _) => r.len(),
        }
    }
    fn cols(&self) -> usize {
        match self {
            Self::Dense(_, d) | Self::Sparse(_, d) => *d,
        }
    }
}

impl LinearModel {
    /// Ordinary least squares with an intercept.
    pub fn fit(x: &Design<'_>, y: &[f64]) -> Result<Self> {
        let (n, d) = (x.rows(), x.cols());
        if n != y.len() || n == 0 {
            return Err(Error::InvalidInput(format!("least squares: {n} rows for {} targets", y.len())));
        }
        let nf = n as f64;
        let y_mean = y.iter().sum::<f64>() / nf;
        // Raw sums: Σx, Σxxᵀ (upper triangle), Σx·y — in parallel over fixed chunks of rows, added
        // in chunk order (the same sums, bit for bit, on every run).
        let (sx, gram, sxy) = match x {
            Design::Dense(data, _) => data
                .par_chunks(d * 256)
                .zip(y.par_chunks(256))
                .map(|(rows, ys)| {
                    let mut sx = vec![0.0; d];
                    let mut g = vec![0.0; d * d];
                    let mut sxy = vec![0.0; d];
                    for (row, &yv) in rows.chunks(d).zip(ys) {
                        for a in 0..d {
                            let xa = row[a];
                            sx[a] += xa;
                            sxy[a] += xa * yv;
                            if xa != 0.0 {
                                let ga = &mut g[a * d..(a + 1) * d];
                                for b in a..d {
                                    ga[b] += xa * row[b];
                                }
                            }
                        }
                    }
                    (sx, g, sxy)
                })
                .collect::<Vec<_>>()
                .into_iter()
                .fold((vec![0.0; d], vec![0.0; d * d], vec![0.0; d]), add3),
            Design::Sparse(rows, _) => rows
                .par_chunks(256)
                .zip(y.par_chunks(256))
                .map(|(rows, ys)| {
                    let mut sx = vec![0.0; d];
                    let mut g = vec![0.0; d * d];
                    let mut sxy = vec![0.0; d];
                    for (row, &yv) in rows.iter().zip(ys) {
                        for &(a, xa) in row {
                            let a = a as usize;
                            sx[a] += xa;
                            sxy[a] += xa * yv;
                            for &(b, xb) in row {
                                if b as usize >= a {
                                    g[a * d + b as usize] += xa * xb;
                                }
                            }
                        }
                    }
                    (sx, g, sxy)
                })
                .collect::<Vec<_>>()
                .into_iter()
                .fold((vec![0.0; d], vec![0.0; d * d], vec![0.0; d]), add3),
        };
        let mean: Vec<f64> = sx.iter().map(|s| s / nf).collect();
        // Centred Gram and right-hand side, then standardised by each column's norm.
        let mut g = vec![0.0; d * d];
        for a in 0..d {
            for b in a..d {
                let v = gram[a * d + b] - nf * mean[a] * mean[b];
                g[a * d + b] = v;
                g[b * d + a] = v;
            }
        }
        let rhs: Vec<f64> = (0..d).map(|a| sxy[a] - nf * mean[a] * y_mean).collect();
        let scale: Vec<f64> = (0..d).map(|a| g[a * d + a].max(0.0).sqrt()).collect();
        let live: Vec<usize> = (0..d).filter(|&a| scale[a] > 1e-12 * nf.sqrt()).collect();
        let m = live.len();
        let mut gs = vec![0.0; m * m];
        let mut bs = vec![0.0; m];
        for (i, &a) in live.iter().enumerate() {
            bs[i] = rhs[a] / scale[a];
            for (j, &b) in live.iter().enumerate() {
                gs[i * m + j] = g[a * d + b] / (scale[a] * scale[b]);
            }
        }
        let z = solve_spd(&gs, &bs, m)?;
        let mut coef = vec![0.0; d];
        for (i, &a) in live.iter().enumerate() {
            coef[a] = z[i] / scale[a];
        }
        let intercept = y_mean - coef.iter().zip(&mean).map(|(c, m)| c * m).sum::<f64>();
        Ok(Self { coef, intercept })
    }

    /// `intercept + coef · x` for a dense row.
    pub fn predict_dense(&self, row: &[f64]) -> f64 {
        self.intercept + self.coef.iter().zip(row).map(|(c, x)| c * x).sum::<f64>()
    }

    /// `intercept + coef · x` for a sparse row.
    pub fn predict_sparse(&self, row: &[(u32, f64)]) -> f64 {
        self.intercept + row.iter().map(|&(j, x)| self.coef[j as usize] * x).sum::<f64>()
    }
}

fn add3(mut a: (Vec<f64>, Vec<f64>, Vec<f64>), b: (Vec<f64>, Vec<f64>, Vec<f64>)) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    a.0.iter_mut().zip(&b.0).for_each(|(x, y)| *x += y);
    a.1.iter_mut().zip(&b.1).for_each(|(x, y)| *x += y);
    a.2.iter_mut().zip(&b.2).for_each(|(x, y)| *x += y);
    a
}

/// Solves `(A + λI) x = b` for a symmetric positive semi-definite `A` (`m × m`, diagonal ≈ 1)
/// by Cholesky, with λ = 1e-12, raised until the factorisation succeeds.
pub fn solve_spd(a: &[f64], b: &[f64], m: usize) -> Result<Vec<f64>> {
    let mut lambda = 1e-12;
    for _ in 0..8 {
        if let Some(l) = cholesky(a, m, lambda) {
            // L y = b, then Lᵀ x = y.
            let mut y = b.to_vec();
            for i in 0..m {
                let s: f64 = (0..i).map(|k| l[i * m + k] * y[k]).sum();
                y[i] = (y[i] - s) / l[i * m + i];
            }
            for i in (0..m).rev() {
                let s: f64 = (i + 1..m).map(|k| l[k * m + i] * y[k]).sum();
                y[i] = (y[i] - s) / l[i * m + i];
            }
            return Ok(y);
        }
        lambda *= 100.0;
    }
    Err(Error::Model("least squares: the normal equations could not be factorised".into()))
}

fn cholesky(a: &[f64], m: usize, lambda: f64) -> Option<Vec<f64>> {
    let mut l = vec![0.0; m * m];
    for j in 0..m {
        let row_j = &l[j * m..j * m + j];
        let d = a[j * m + j] + lambda - row_j.iter().map(|v| v * v).sum::<f64>();
        if d <= 1e-14 {
            return None;
        }
        let djj = d.sqrt();
        l[j * m + j] = djj;
        let (upper, lower) = l.split_at_mut((j + 1) * m);
        let row_j = &upper[j * m..j * m + j];
        lower.par_chunks_mut(m).enumerate().for_each(|(k, row_i)| {
            let i = j + 1 + k;
            let s: f64 = row_i[..j].iter().zip(row_j).map(|(x, y)| x * y).sum();
            row_i[j] = (a[i * m + j] - s) / djj;
        });
    }
    Some(l)
}
