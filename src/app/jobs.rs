//! Background jobs of the app: one named worker thread per job, a cancel token, the latest
//! progress in a shared cell, and the result through a channel. The worker wakes the UI through
//! a plain callback, so the core never sees egui.

use crate::jobs::{CancelToken, JobCtx, Progress};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A job running on a worker thread, producing a `T`.
pub struct Job<T> {
    /// What the job does (shown in the status bar).
    pub name: String,
    /// Cancels the job at its next check.
    pub cancel: CancelToken,
    progress: Arc<Mutex<Progress>>,
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
    /// Starts `work` on a thread named after the job; `wake` is called on progress and at the end.
    pub fn spawn(
        name: &str,
        wake: Arc<dyn Fn() + Send + Sync>,
        work: impl FnOnce(&JobCtx) -> anyhow::Result<T> + Send + 'static,
    ) -> Self {
        let cancel = CancelToken::new();
        let progress = Arc::new(Mutex::new(Progress { stage: name.to_owned(), ..Progress::default() }));
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
        };
        let spawned = std::thread::Builder::new().name(format!("job: {name}")).spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&ctx)))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the job crashed (a bug); nothing was changed")));
            let _ = tx.send(result);
            wake();
        });
        if let Err(e) = spawned {
            let (tx, rx2) = std::sync::mpsc::sync_channel(1);
            let _ = tx.send(Err(anyhow::anyhow!("cannot start a worker thread: {e}")));
            return Self { name: name.to_owned(), cancel, progress, rx: rx2, started: Instant::now() };
        }
        Self { name: name.to_owned(), cancel, progress, rx, started: Instant::now() }
    }

    /// The latest progress report.
    pub fn progress(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
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
