//! Plumbing shared by long-running work: a cancel token checked between chunks and a progress
//! callback. The core never blocks on a UI; a front end (CLI or app) supplies the callback and
//! decides how to show it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cheap, clonable cancellation flag.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh token, not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the job to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One progress report of a job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// What the job is doing now ("reading meta_Appliances.jsonl", "balancing", …).
    pub stage: String,
    /// Work done, in the unit of `total` (bytes for loading).
    pub done: u64,
    /// Total work if known (0 when unknown).
    pub total: u64,
    /// Items produced so far.
    pub n_items: u64,
}

impl Progress {
    /// Fraction done in `0..=1`, or `None` when the total is unknown.
    pub fn fraction(&self) -> Option<f32> {
        (self.total > 0).then(|| (self.done as f64 / self.total as f64).min(1.0) as f32)
    }
}

/// Callback receiving progress reports; must be cheap (called from worker threads).
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// What a job needs from its caller: a cancel token and where to send progress.
#[derive(Clone)]
pub struct JobCtx {
    /// Checked between chunks of work.
    pub cancel: CancelToken,
    /// Receives progress reports.
    pub progress: ProgressFn,
}

impl Default for JobCtx {
    fn default() -> Self {
        Self { cancel: CancelToken::new(), progress: Arc::new(|_| {}) }
    }
}

impl JobCtx {
    /// A context that reports progress to `f`.
    pub fn with_progress(f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        Self { cancel: CancelToken::new(), progress: Arc::new(f) }
    }
    /// Returns `Err(Cancelled)` once cancellation was requested.
    pub fn check(&self) -> crate::Result<()> {
        if self.cancel.is_cancelled() { Err(crate::Error::Cancelled) } else { Ok(()) }
    }
    /// Sends a progress report.
    pub fn report(&self, p: &Progress) {
        (self.progress)(p);
    }
}
