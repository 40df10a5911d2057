//! A random forest regressor as scikit-learn's `RandomForestRegressor` defines it: bootstrap
//! samples (as sample weights, the way scikit-learn draws them), squared-error splits over all
//! features (or a random subset), thresholds halfway between neighbouring distinct values,
//! leaves of at least `min_samples_leaf` samples, trees grown until pure; the forest predicts the
//! mean of its trees. Features are held as `f32`, as scikit-learn's trees hold them.
//!
//! Each tree keeps, per feature, the node's samples sorted by that feature (sorted once for the
//! whole forest, then partitioned stably at every split), so a split costs O(features × samples)
//! with no sorting.

use crate::evaluation::ForestParams;
use crate::jobs::JobCtx;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

const LEAF: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Node {
    feature: u32,
    threshold: f32,
    left: u32,
    right: u32,
    value: f64,
}

/// One regression tree.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// The leaf value for a row.
    pub fn predict(&self, row: &[f32]) -> f64 {
        let mut k = 0usize;
        loop {
            let n = &self.nodes[k];
            if n.feature == LEAF {
                return n.value;
            }
            k = if row[n.feature as usize] <= n.threshold { n.left } else { n.right } as usize;
        }
    }
    /// Nodes in the tree.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    /// Whether the tree is empty (never, once fitted).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// A fitted forest.
#[derive(Clone, Debug)]
pub struct Forest {
    /// The trees.
    pub trees: Vec<Tree>,
    /// Features per row.
    pub n_features: usize,
}

impl Forest {
    /// Fits on `n` rows of `d` features (row-major) and their targets.
    pub fn fit(x: &[f32], d: usize, y: &[f64], p: &ForestParams, ctx: &JobCtx) -> Result<Self> {
        let n = y.len();
        if n == 0 || d == 0 || x.len() != n * d {
            return Err(Error::InvalidInput(format!("random forest: {} values for {n} rows of {d} features", x.len())));
        }
        // Column-major copy and each feature's global order.
        let cols: Vec<Vec<f32>> = (0..d).into_par_iter().map(|f| (0..n).map(|i| x[i * d + f]).collect()).collect();
        let orders: Vec<Vec<u32>> = cols
            .par_iter()
            .map(|c| {
                let mut o: Vec<u32> = (0..n as u32).collect();
                o.sort_by(|&a, &b| c[a as usize].total_cmp(&c[b as usize]));
                o
            })
            .collect();
        let built = AtomicUsize::new(0);
        let trees = (0..p.n_trees)
            .into_par_iter()
            .map(|t| {
                ctx.check()?;
                let tree = build_tree(&cols, &orders, y, p, t as u64);
                let k = built.fetch_add(1, Ordering::Relaxed) + 1;
                ctx.report(&crate::jobs::Progress {
                    stage: format!("random forest: tree {k}/{}", p.n_trees),
                    done: k as u64,
                    total: p.n_trees as u64,
                    n_items: 0,
                });
                Ok(tree)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { trees, n_features: d })
    }

    /// The mean of the trees' predictions.
    pub fn predict(&self, row: &[f32]) -> f64 {
        self.trees.iter().map(|t| t.predict(row)).sum::<f64>() / self.trees.len().max(1) as f64
    }
}

fn build_tree(cols: &[Vec<f32>], orders: &[Vec<u32>], y: &[f64], p: &ForestParams, t: u64) -> Tree {
    let (n, d) = (y.len(), cols.len());
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t);
    let mut w = vec![0u32; n];
    for _ in 0..n {
        w[rng.random_range(0..n)] += 1;
    }
    // Per feature, the bootstrap samples in that feature's order.
    let mut sorted: Vec<Vec<u32>> =
        orders.iter().map(|o| o.iter().copied().filter(|&i| w[i as usize] > 0).collect()).collect();
    let m = sorted[0].len();
    let mut nodes: Vec<Node> = vec![];
    let mut goes_left = vec![false; n];
    let mut buf: Vec<u32> = Vec::with_capacity(m);
    let min_leaf = p.min_samples_leaf.max(1);
    let mut features: Vec<usize> = (0..d).collect();
    // (node id, lo, hi, depth)
    let mut stack = vec![(0usize, 0usize, m, 0usize)];
    nodes.push(Node { feature: LEAF, threshold: 0.0, left: 0, right: 0, value: 0.0 });
    while let Some((id, lo, hi, depth)) = stack.pop() {
        let idx = &sorted[0][lo..hi];
        let (mut sw, mut sy, mut syy) = (0.0f64, 0.0f64, 0.0f64);
        for &i in idx {
            let (wi, yi) = (w[i as usize] as f64, y[i as usize]);
            sw += wi;
            sy += wi * yi;
            syy += wi * yi * yi;
        }
        nodes[id].value = sy / sw;
        let impurity = syy / sw - (sy / sw).powi(2);
        let count = hi - lo;
        if count < 2 * min_leaf || count < 2 || impurity <= f64::EPSILON || p.max_depth.is_some_and(|md| depth >= md) {
            continue;
        }
        let tried = match p.max_features {
            Some(k) if k < d => {
                for j in 0..k {
                    let r = rng.random_range(j..d);
                    features.swap(j, r);
                }
                k
            }
            _ => d,
        };
        let mut best: Option<(f64, usize, f32)> = None;
        for &f in &features[..tried] {
            let col = &cols[f];
            let ord = &sorted[f][lo..hi];
            let (mut wl, mut sl) = (0.0f64, 0.0f64);
            for k in 0..count - 1 {
                let i = ord[k] as usize;
                let wi = w[i] as f64;
                wl += wi;
                sl += wi * y[i];
                let (a, b) = (col[i], col[ord[k + 1] as usize]);
                if b <= a + 1e-7 || k + 1 < min_leaf || count - (k + 1) < min_leaf {
                    continue;
                }
                let (wr, sr) = (sw - wl, sy - sl);
                let proxy = sl * sl / wl + sr * sr / wr;
                if best.is_none_or(|bst| proxy > bst.0) {
                    let mut thr = a / 2.0 + b / 2.0;
                    if thr >= b || !thr.is_finite() {
                        thr = a;
                    }
                    best = Some((proxy, f, thr));
                }
            }
        }
        let Some((_, f, thr)) = best else { continue };
        let col = &cols[f];
        for &i in &sorted[0][lo..hi] {
            goes_left[i as usize] = col[i as usize] <= thr;
        }
        let mut n_left = 0;
        for s in sorted.iter_mut() {
            buf.clear();
            let range = &mut s[lo..hi];
            let mut l = 0;
            for k in 0..range.len() {
                let i = range[k];
                if goes_left[i as usize] {
                    range[l] = i;
                    l += 1;
                } else {
                    buf.push(i);
                }
            }
            range[l..].copy_from_slice(&buf);
            n_left = l;
        }
        let left = nodes.len();
        nodes.push(Node { feature: LEAF, threshold: 0.0, left: 0, right: 0, value: 0.0 });
        nodes.push(Node { feature: LEAF, threshold: 0.0, left: 0, right: 0, value: 0.0 });
        nodes[id] = Node {
            feature: f as u32,
            threshold: thr,
            left: left as u32,
            right: left as u32 + 1,
            value: nodes[id].value,
        };
        stack.push((left + 1, lo + n_left, hi, depth + 1));
        stack.push((left, lo, lo + n_left, depth + 1));
    }
    Tree { nodes }
}
