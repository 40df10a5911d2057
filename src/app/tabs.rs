//! The contract every tab keeps, and the registry of tabs.
//!
//! A tab is a state struct implementing [`TabView`]: `logic` (per frame, before drawing: poll,
//! prepare snapshots, start jobs), `ui` (draw from prepared state, queue actions; no file I/O,
//! no process spawn, no loop over all rows), `job_done` (a job it started has finished). Each gets
//! one [`TabCtx`] from the shell and owns its jobs: it starts them through the context and only
//! it receives their results. Jobs of different tabs run at once, each with its own progress and
//! Cancel in the status bar.
//!
//! Adding a tab: write its module, then add one line to the [`register_tabs!`] call below.

use super::actions::Action;
use super::settings::Settings;
use crate::dataset::Dataset;
use crate::jobs::{Job, JobCtx, Level, Poll, Progress};
use crate::view::Filter;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

/// What a finished job hands back to the tab that started it (the tab downcasts it).
pub type JobOutput = Box<dyn Any + Send>;

/// Who started a job: the shell (loading, downloading) or a tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The shell.
    Shell,
    /// A tab.
    Tab(Tab),
}

/// A running job and who gets its result.
pub struct RunningJob {
    /// Unique id (Cancel names it).
    pub id: u64,
    /// Who started it.
    pub owner: Owner,
    /// The job.
    pub job: Job<JobOutput>,
}

/// The jobs running now, of every owner.
#[derive(Default)]
pub struct Jobs {
    /// Running jobs, oldest first.
    pub running: Vec<RunningJob>,
    next_id: u64,
}

/// A job that ended, as [`Jobs::poll`] hands it out.
pub struct FinishedJob {
    /// Who started it.
    pub owner: Owner,
    /// Its name.
    pub name: String,
    /// Seconds it ran.
    pub secs: f64,
    /// Its result.
    pub result: anyhow::Result<JobOutput>,
}

impl Jobs {
    /// Starts `work` as a job of `owner`; returns its id.
    pub fn start<T: Send + 'static>(
        &mut self,
        owner: Owner,
        name: &str,
        wake: Arc<dyn Fn() + Send + Sync>,
        work: impl FnOnce(&JobCtx) -> anyhow::Result<T> + Send + 'static,
    ) -> u64 {
        self.next_id += 1;
        let job = Job::spawn(name, wake, move |ctx| work(ctx).map(|v| Box::new(v) as JobOutput));
        self.running.push(RunningJob { id: self.next_id, owner, job });
        self.next_id
    }

    /// Whether `owner` has a job running.
    pub fn busy(&self, owner: Owner) -> bool {
        self.running.iter().any(|j| j.owner == owner)
    }

    /// Whether any job runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Asks one job to stop.
    pub fn cancel(&self, id: u64) {
        if let Some(j) = self.running.iter().find(|j| j.id == id) {
            j.job.cancel.cancel();
        }
    }

    /// Asks the newest job to stop.
    pub fn cancel_newest(&self) {
        if let Some(j) = self.running.last() {
            j.job.cancel.cancel();
        }
    }

    /// Log lines the jobs sent since the last call, with the job's name.
    pub fn take_log(&self) -> Vec<(Level, String)> {
        self.running
            .iter()
            .flat_map(|j| j.job.take_log().into_iter().map(|(l, t)| (l, format!("{}: {t}", j.job.name))))
            .collect()
    }

    /// Removes and returns the jobs that ended.
    pub fn poll(&mut self) -> Vec<FinishedJob> {
        let mut done = Vec::new();
        let mut k = 0;
        while k < self.running.len() {
            if let Poll::Done(result) = self.running[k].job.poll() {
                let j = self.running.remove(k);
                done.push(FinishedJob {
                    owner: j.owner,
                    name: j.job.name.clone(),
                    secs: j.job.started.elapsed().as_secs_f64(),
                    result,
                });
            } else {
                k += 1;
            }
        }
        done
    }

    /// `(id, name, progress)` of each running job, for the status bar.
    pub fn progress(&self) -> Vec<(u64, String, Progress)> {
        self.running.iter().map(|j| (j.id, j.job.name.clone(), j.job.progress())).collect()
    }
}

/// What the shell hands a tab each frame.
pub struct TabCtx<'a> {
    /// The tab this context is for (its jobs are tagged with it).
    pub tab: Tab,
    /// The dataset shown, if any.
    pub data: Option<&'a Arc<Dataset>>,
    /// The Dataset tab's filter (charts link into it).
    pub filter: &'a mut Filter,
    /// Persisted settings (each tab reads and writes its own part).
    pub settings: &'a mut Settings,
    /// Actions for the shell, carried out after the frame.
    pub actions: &'a mut Vec<Action>,
    /// The running jobs.
    pub jobs: &'a mut Jobs,
    /// Requests a repaint from any thread.
    pub wake: &'a Arc<dyn Fn() + Send + Sync>,
    /// Set by a tab that needs to be polled again after a while (a running trainer).
    pub repaint_after: Option<Duration>,
}

impl TabCtx<'_> {
    /// Starts a job owned by this tab; its result comes back through [`TabView::job_done`].
    pub fn start_job<T: Send + 'static>(
        &mut self,
        name: &str,
        work: impl FnOnce(&JobCtx) -> anyhow::Result<T> + Send + 'static,
    ) -> u64 {
        self.jobs.start(Owner::Tab(self.tab), name, self.wake.clone(), work)
    }

    /// Whether a job of this tab runs.
    pub fn busy(&self) -> bool {
        self.jobs.busy(Owner::Tab(self.tab))
    }

    /// Queues a log message.
    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        self.actions.push(Action::Log(level, text.into()));
    }

    /// Asks to be polled again within `after`.
    pub fn repaint_within(&mut self, after: Duration) {
        self.repaint_after = Some(self.repaint_after.map_or(after, |d| d.min(after)));
    }
}

/// The entry points of a tab.
pub trait TabView {
    /// Whether the tab shows the dataset (the shell draws a placeholder while there is none).
    fn needs_data(&self) -> bool {
        true
    }
    /// A new dataset is shown.
    fn on_new_data(&mut self, _data: &Arc<Dataset>, _ctx: &mut TabCtx<'_>) {}
    /// Per-frame work that draws nothing. Called every frame for every tab.
    fn logic(&mut self, ctx: &mut TabCtx<'_>);
    /// Draws the tab (only the tab shown).
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut TabCtx<'_>);
    /// A job this tab started ended well (errors and cancellations are logged by the shell).
    fn job_done(&mut self, output: JobOutput, secs: f64, ctx: &mut TabCtx<'_>);
    /// Whether the tab computes something in the background of its own (kept repainting).
    fn is_busy(&self) -> bool {
        false
    }
}

/// Declares the tabs: each line `Variant => field: Type, "Label", "cli-name";` adds the enum
/// variant, the field of [`Tabs`] and its dispatch.
macro_rules! register_tabs {
    ($( $(#[$doc:meta])* $variant:ident => $field:ident : $ty:ty, $label:literal, $cli:literal; )*) => {
        /// The tabs, in display order.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Tab {
            #[default]
            $( $(#[$doc])* $variant, )*
        }

        impl Tab {
            /// All tabs in display order.
            pub const ALL: &'static [Tab] = &[$(Tab::$variant),*];
            /// Label in the tab bar.
            pub fn label(self) -> &'static str {
                match self { $(Tab::$variant => $label),* }
            }
            /// Reads a name given on the command line (`dataset`, `fine-tune`, …).
            pub fn parse(name: &str) -> Option<Tab> {
                let n = name.to_ascii_lowercase().replace('-', "");
                match n.as_str() {
                    $( $cli => Some(Tab::$variant), )*
                    _ => None,
                }
            }
        }

        /// The state of every tab.
        #[derive(Default)]
        pub struct Tabs {
            $( $(#[$doc])* pub $field: $ty, )*
        }

        impl Tabs {
            /// The tab as its contract.
            pub fn get_mut(&mut self, tab: Tab) -> &mut dyn TabView {
                match tab { $(Tab::$variant => &mut self.$field),* }
            }
            /// The tab as its contract, read-only.
            pub fn get(&self, tab: Tab) -> &dyn TabView {
                match tab { $(Tab::$variant => &self.$field),* }
            }
        }
    };
}

register_tabs! {
    /// Items, filters, inspector, curation report.
    Dataset => dataset: super::dataset_tab::DatasetTab, "Dataset", "dataset";
    /// Histograms, categories, price vs. length.
    Charts => charts: super::charts_tab::ChartsTab, "Charts", "charts";
    /// Balancing recipe with live preview, split, export.
    Sampling => sampling: super::sampling_tab::SamplingTab, "Sampling", "sampling";
    /// LoRA fine-tuning runs: launch, live curves, stop/resume, evaluate.
    Finetune => finetune: super::finetune_tab::FinetuneTab, "Fine-tune", "finetune";
    /// Every pricer side by side: linked scatters, metrics with intervals, items, breakdowns, quiz.
    Compare => compare: super::compare_tab::CompareTab, "Compare", "compare";
}
