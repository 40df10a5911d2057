//! Plumbing shared by long-running work: a cancel token checked between chunks, a progress
//! callback, a sink for log lines, and [`Job`], a named worker thread that runs one piece of work
//! and hands its result back through a channel. The core never prints and never blocks on a UI:
//! a front end (the CLI prints, the app shows) supplies the callbacks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something done.
    Info,
    /// Done, with problems (malformed lines…).
    Warning,
    /// Failed; nothing changed.
    Error,
}

/// Callback receiving log lines of a job (what a terminal program would print).
pub type LogFn = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// What a job needs from its caller: a cancel token, where to send progress, where log lines go.
#[derive(Clone)]
pub struct JobCtx {
    /// Checked between chunks of work.
    pub cancel: CancelToken,
    /// Receives progress reports.
    pub progress: ProgressFn,
    /// Receives log lines.
    pub log: LogFn,
}

impl Default for JobCtx {
    fn default() -> Self {
        Self { cancel: CancelToken::new(), progress: Arc::new(|_| {}), log: Arc::new(|_, _| {}) }
    }
}

impl JobCtx {
    /// A context that reports progress to `f` (and drops log lines).
    pub fn with_progress(f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        Self { progress: Arc::new(f), ..Self::default() }
    }
    /// The same context with log lines sent to `f`.
    pub fn with_log(mut self, f: impl Fn(Level, &str) + Send + Sync + 'static) -> Self {
        self.log = Arc::new(f);
        self
    }
    /// Sends a log line.
    pub fn log(&self, level: Level, text: &str) {
        (self.log)(level, text);
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

/// A job running on a worker thread, producing a `T`.
pub struct Job<T> {
    /// What the job does (shown in the status bar).
    pub name: String,
    /// Cancels the job at its next check.
    pub cancel: CancelToken,
    progress: Arc<Mutex<Progress>>,
    logged: Arc<Mutex<Vec<(Level, String)>>>,
    rx: Receiver<anyhow::Result<T>>,
    /// When it started.
    pub started: Instant,
}

/// What polling a job found.
pub enum Poll<T> {
    /// Still running.
    Running,
    /// Finished with a result.
    Done(anyhow::Result<T>),
}

impl<T: Send + 'static> Job<T> {
    /// Starts `work` on a thread named after the job; `wake` is called on progress (at most ten
    /// times a second), on log lines and at the end.
    pub fn spawn(
        name: &str,
        wake: Arc<dyn Fn() + Send + Sync>,
        work: impl FnOnce(&JobCtx) -> anyhow::Result<T> + Send + 'static,
    ) -> Self {
        let cancel = CancelToken::new();
        let progress = Arc::new(Mutex::new(Progress { stage: name.to_owned(), ..Progress::default() }));
        let logged = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let ctx = JobCtx {
            cancel: cancel.clone(),
            progress: {
                let progress = progress.clone();
                let wake = wake.clone();
                let last = Mutex::new(Instant::now());
                Arc::new(move |p: &Progress| {
                    if let Ok(mut cell) = progress.lock() {
                        *cell = p.clone();
                    }
                    // Wake the UI at most ~10 times a second: progress needs no more, and a busy UI
                    // (software rendering) would take CPU from the job.
                    if let Ok(mut last) = last.lock()
                        && last.elapsed().as_millis() >= 100
                    {
                        *last = Instant::now();
                        wake();
                    }
                })
            },
            log: {
                let logged = logged.clone();
                let wake = wake.clone();
                Arc::new(move |level, text: &str| {
                    if let Ok(mut v) = logged.lock() {
                        v.push((level, text.to_owned()));
                    }
                    wake();
                })
            },
        };
        let spawned = std::thread::Builder::new().name(format!("job: {name}")).spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&ctx)))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the job crashed (a bug); nothing was changed")));
            let _ = tx.send(result);
            wake();
        });
        let rx = match spawned {
            Ok(_) => rx,
            Err(e) => {
                let (tx, rx2) = std::sync::mpsc::sync_channel(1);
                let _ = tx.send(Err(anyhow::anyhow!("cannot start a worker thread: {e}")));
                rx2
            }
        };
        Self { name: name.to_owned(), cancel, progress, logged, rx, started: Instant::now() }
    }

    /// The latest progress report.
    pub fn progress(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Log lines sent since the last call.
    pub fn take_log(&self) -> Vec<(Level, String)> {
        self.logged.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    /// Checks for the result without blocking.
    pub fn poll(&self) -> Poll<T> {
        match self.rx.try_recv() {
            Ok(r) => Poll::Done(r),
            Err(TryRecvError::Empty) => Poll::Running,
            Err(TryRecvError::Disconnected) => Poll::Done(Err(anyhow::anyhow!("the job ended without a result"))),
        }
    }

    /// Blocks until the job ends (tests and headless use).
    pub fn wait(self) -> anyhow::Result<T> {
        self.rx.recv().unwrap_or_else(|_| Err(anyhow::anyhow!("the job ended without a result")))
    }
}

/// Whether an error is a cancellation (not an error to show).
pub fn is_cancelled(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::Error>().is_some_and(|e| matches!(e, crate::Error::Cancelled))
}
