//! Linear support vector regression as scikit-learn's `LinearSVR` computes it by default:
//! liblinear's L2-regularised L1-loss (epsilon-insensitive) SVR solved in the dual by coordinate
//! descent with shrinking (`solve_l2r_l1l2_svr`, solver 13), the intercept learned as the weight
//! of a constant feature 1 (so it is regularised, as liblinear's `intercept_scaling=1` does).

use crate::evaluation::SvrParams;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A fitted linear SVR.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearSvr {
    /// Coefficients.
    pub coef: Vec<f64>,
    /// Intercept.
    pub intercept: f64,
    /// Passes made.
    pub iterations: usize,
    /// Whether it stopped by tolerance (not by `max_iter`).
    pub converged: bool,
}

impl LinearSvr {
    /// Fits on `n` rows of `d` features (row-major).
    pub fn fit(x: &[f64], d: usize, y: &[f64], p: &SvrParams) -> Result<Self> {
        let l = y.len();
        if l == 0 || x.len() != l * d {
            return Err(Error::InvalidInput(format!("linear SVR: {} values for {l} rows of {d} features", x.len())));
        }
        let dim = d + 1; // the bias feature
        let row = |i: usize| &x[i * d..(i + 1) * d];
        let dot = |w: &[f64], i: usize| row(i).iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + w[d];
        let upper = p.c;
        let eps = p.epsilon;
        let mut beta = vec![0.0f64; l];
        let mut w = vec![0.0f64; dim];
        let qd: Vec<f64> = (0..l).map(|i| row(i).iter().map(|v| v * v).sum::<f64>() + 1.0).collect();
        let mut index: Vec<usize> = (0..l).collect();
        let mut active = l;
        let mut gmax_old = f64::INFINITY;
        let mut gnorm1_init = -1.0;
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let mut iter = 0;
        let mut converged = false;
        while iter < p.max_iter {
            let mut gmax_new = 0.0f64;
            let mut gnorm1_new = 0.0f64;
            for i in 0..active {
                let j = rng.random_range(i..active);
                index.swap(i, j);
            }
            let mut s = 0;
            while s < active {
                let i = index[s];
                let g = -y[i] + dot(&w, i);
                let h = qd[i];
                let gp = g + eps;
                let gn = g - eps;
                let mut violation = 0.0;
                let mut shrink = false;
                if beta[i] == 0.0 {
                    if gp < 0.0 {
                        violation = -gp;
                    } else if gn > 0.0 {
                        violation = gn;
                    } else if gp > gmax_old && gn < -gmax_old {
                        shrink = true;
                    }
                } else if beta[i] >= upper {
                    if gp > 0.0 {
                        violation = gp;
                    } else if gp < -gmax_old {
                        shrink = true;
                    }
                } else if beta[i] <= -upper {
                    if gn < 0.0 {
                        violation = -gn;
                    } else if gn > gmax_old {
                        shrink = true;
                    }
                } else if beta[i] > 0.0 {
                    violation = gp.abs();
                } else {
                    violation = gn.abs();
                }
                if shrink {
                    active -= 1;
                    index.swap(s, active);
                    continue;
                }
                gmax_new = gmax_new.max(violation);
                gnorm1_new += violation;
                let dlt = if gp < h * beta[i] {
                    -gp / h
                } else if gn > h * beta[i] {
                    -gn / h
                } else {
                    -beta[i]
                };
                if dlt.abs() >= 1.0e-12 {
                    let old = beta[i];
                    beta[i] = (beta[i] + dlt).clamp(-upper, upper);
                    let dd = beta[i] - old;
                    if dd != 0.0 {
                        for (wk, xk) in w.iter_mut().zip(row(i)) {
                            *wk += dd * xk;
                        }
                        w[d] += dd;
                    }
                }
                s += 1;
            }
            if iter == 0 {
                gnorm1_init = gnorm1_new;
            }
            iter += 1;
            if gnorm1_new <= p.tol * gnorm1_init {
                if active == l {
                    converged = true;
                    break;
                }
                active = l;
                gmax_old = f64::INFINITY;
                continue;
            }
            gmax_old = gmax_new;
        }
        let intercept = w[d];
        w.truncate(d);
        Ok(Self { coef: w, intercept, iterations: iter, converged })
    }

    /// `intercept + coef · x`.
    pub fn predict(&self, row: &[f64]) -> f64 {
        self.intercept + self.coef.iter().zip(row).map(|(c, x)| c * x).sum::<f64>()
    }
}
