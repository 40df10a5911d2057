//! Runs on other machines ([`crate::remote`]) in the Fine-tune tab: the host the form launches
//! on (persisted in the settings' host list), background pulls of every remote run that has not
//! ended (one ssh call per run every [`PULL_EVERY`], on its own thread, never the UI's),
//! "unreachable since …" until a pull succeeds again (which is the re-attaching: nothing else to
//! do), and Stop, Resume and *Pull checkpoints* sent there.

use super::{Command, FinetuneTab};
use crate::finetune::run::{RunSnapshot, RunState};
use crate::jobs::Level;
use crate::remote::{self, Host};
use egui::{RichText, Ui};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

/// How often a remote run that has not ended is pulled.
pub const PULL_EVERY: Duration = Duration::from_secs(5);
/// How long a run is pulled after a command (launch, resume) whatever its status says.
const WATCH_AFTER_COMMAND: Duration = Duration::from_secs(90);

/// What a background call sends back.
enum Outcome {
    /// A pull of a run folder ended.
    Pulled(PathBuf, Result<(), crate::Error>),
    /// A command ended: its log line and whether it failed.
    Said(String, bool),
}

/// The remote runs' background calls and what they found.
#[derive(Default)]
pub struct RemoteFollow {
    in_flight: HashSet<PathBuf>,
    last_pull: HashMap<PathBuf, Instant>,
    watch_until: HashMap<PathBuf, Instant>,
    /// When each run's host stopped answering, and what ssh said (cleared by a good pull).
    pub unreachable_since: HashMap<PathBuf, (SystemTime, String)>,
    /// Each remote run's host as shown and `destination:folder` there, read from its
    /// `remote.json` once (they do not change; the pulled offsets in it do).
    labels: HashMap<PathBuf, (String, String)>,
    channel: Option<(mpsc::Sender<Outcome>, mpsc::Receiver<Outcome>)>,
}

impl RemoteFollow {
    fn sender(&mut self) -> mpsc::Sender<Outcome> {
        self.channel.get_or_insert_with(mpsc::channel).0.clone()
    }

    /// Pulls `dir` whatever its status says for a while (after a launch or a resume).
    pub fn watch(&mut self, dir: &Path) {
        self.watch_until.insert(dir.to_owned(), Instant::now() + WATCH_AFTER_COMMAND);
        self.last_pull.remove(dir);
    }

    /// Starts the pulls that are due.
    pub fn poll(&mut self, runs: &[RunSnapshot], wake: &Arc<dyn Fn() + Send + Sync>) {
        for r in runs.iter().filter(|r| r.remote) {
            if self.labels.contains_key(&r.dir) {
                continue;
            }
            if let Some(run) = remote::RemoteRun::read(&r.dir) {
                let host = if run.host.name.is_empty() { run.host.destination.clone() } else { run.host.name.clone() };
                self.labels.insert(r.dir.clone(), (host, format!("{}:{}", run.host.destination, run.dir())));
            }
        }
        let now = Instant::now();
        self.watch_until.retain(|_, t| *t > now);
        for r in runs.iter().filter(|r| r.remote) {
            let live = matches!(r.state(), RunState::New | RunState::Running) || self.watch_until.contains_key(&r.dir);
            let due = self.last_pull.get(&r.dir).is_none_or(|t| t.elapsed() >= PULL_EVERY);
            if !live || !due || self.in_flight.contains(&r.dir) {
                continue;
            }
            self.in_flight.insert(r.dir.clone());
            self.last_pull.insert(r.dir.clone(), now);
            let (tx, wake, dir) = (self.sender(), wake.clone(), r.dir.clone());
            std::thread::spawn(move || {
                let result = remote::pull_run(&dir).map(|_| ());
                let _ = tx.send(Outcome::Pulled(dir, result));
                wake();
            });
        }
    }

    /// Runs `work` (ssh calls) on its own thread; its line goes to the log.
    fn call(
        &mut self,
        wake: &Arc<dyn Fn() + Send + Sync>,
        work: impl FnOnce() -> crate::Result<String> + Send + 'static,
    ) {
        let (tx, wake) = (self.sender(), wake.clone());
        std::thread::spawn(move || {
            let said = match work() {
                Ok(line) => Outcome::Said(line, false),
                Err(e) => Outcome::Said(e.to_string(), true),
            };
            let _ = tx.send(said);
            wake();
        });
    }

    /// Takes what came back: log lines (failed?, text), and whether a run folder changed.
    fn take(&mut self) -> (Vec<(bool, String)>, bool) {
        let mut lines = vec![];
        let mut changed = false;
        let Some((_, rx)) = &self.channel else { return (lines, changed) };
        while let Ok(outcome) = rx.try_recv() {
            match outcome {
                Outcome::Pulled(dir, Ok(())) => {
                    self.in_flight.remove(&dir);
                    if let Some((since, _)) = self.unreachable_since.remove(&dir) {
                        let secs = since.elapsed().map_or(0, |d| d.as_secs());
                        lines.push((false, format!("{}: reachable again after {secs}s", dir.display())));
                    }
                    changed = true;
                }
                Outcome::Pulled(dir, Err(e)) => {
                    self.in_flight.remove(&dir);
                    if remote::is_unreachable(&e) {
                        let line = format!("{}: unreachable ({e}); retrying", dir.display());
                        if let std::collections::hash_map::Entry::Vacant(v) = self.unreachable_since.entry(dir) {
                            v.insert((SystemTime::now(), e.to_string()));
                            lines.push((true, line));
                        }
                    } else {
                        lines.push((true, format!("{}: {e}", dir.display())));
                    }
                }
                Outcome::Said(line, failed) => {
                    lines.push((failed, line));
                    changed = true;
                }
            }
        }
        (lines, changed)
    }
}

/// `HH:MM:SS` (UTC) of a time.
fn clock(t: SystemTime) -> String {
    let s = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

impl FinetuneTab {
    /// Each frame's remote work: start due pulls, take what came back.
    pub(super) fn remote_logic(&mut self, ctx: &mut crate::app::tabs::TabCtx<'_>) {
        self.remote.poll(&self.runs, ctx.wake);
        let (lines, changed) = self.remote.take();
        for (failed, line) in lines {
            ctx.log(if failed { Level::Error } else { Level::Info }, line);
        }
        if changed {
            self.scan(true);
        }
        if self.runs.iter().any(|r| r.remote && matches!(r.state(), RunState::Running)) {
            ctx.repaint_within(PULL_EVERY);
        }
    }

    /// The state column's text for a remote run (`None` for a local one).
    pub(super) fn remote_state(&self, r: &RunSnapshot) -> Option<(String, Option<String>)> {
        let (host, there) = self.remote.labels.get(&r.dir)?;
        Some(match self.remote.unreachable_since.get(&r.dir) {
            Some((since, why)) => {
                (format!("{} — unreachable since {}", r.state().name(), clock(*since)), Some(why.clone()))
            }
            None => (format!("{} on {host}", r.state().name()), Some(there.clone())),
        })
    }

    /// Runs a remote command on its own thread ([`Command::Stop`], [`Command::Resume`],
    /// [`Command::PullCheckpoints`] of a remote run, [`Command::CheckHost`],
    /// [`Command::InstallPricer`]).
    pub(super) fn remote_command(&mut self, command: Command, ctx: &mut crate::app::tabs::TabCtx<'_>) {
        match command {
            Command::Stop(dir) => self.remote.call(ctx.wake, move || {
                remote::stop(&dir)?;
                Ok(format!("{}: stop requested there", dir.display()))
            }),
            Command::Resume(dir) => {
                self.remote.watch(&dir);
                self.remote.call(ctx.wake, move || {
                    let pid = remote::resume(&dir, None)?;
                    Ok(format!("{}: resumed there (pid {pid})", dir.display()))
                })
            }
            Command::PullCheckpoints(dir) => self.remote.call(ctx.wake, move || {
                let copied = remote::pull_checkpoints(&dir)?;
                Ok(format!("{}: {} checkpoints pulled {:?}", dir.display(), copied.len(), copied))
            }),
            Command::InstallPricer => {
                let host = self.host.clone();
                let local = crate::finetune::supervisor::trainer_program();
                self.remote.call(ctx.wake, move || {
                    let there = host.install_pricer(&local)?;
                    Ok(format!("{}: this machine's pricer copied to {there}", host.destination))
                });
                self.host.pricer = format!("{}/bin/pricer", self.host.work_dir.trim_end_matches('/'));
            }
            Command::CheckHost => {
                let host = self.host.clone();
                self.remote.call(ctx.wake, move || {
                    Ok(match host.pricer_version()? {
                        Some(v) => {
                            format!("{}: pricer {v} there ({} here)", host.destination, env!("CARGO_PKG_VERSION"))
                        }
                        None => format!(
                            "{}: no `{}` there: copy this binary (same OS/arch) or name one built there",
                            host.destination, host.pricer
                        ),
                    })
                })
            }
            _ => {}
        }
    }

    /// The form's "another machine" section: the host and *Launch on host*.
    pub(super) fn host_ui(&mut self, ui: &mut Ui, can_launch: bool) {
        egui::CollapsingHeader::new("Run on another machine (SSH)")
            .default_open(!self.host.destination.is_empty())
            .show(ui, |ui| {
                let others: Vec<Host> =
                    self.hosts.iter().filter(|h| h.destination != self.host.destination).cloned().collect();
                if !others.is_empty() {
                    egui::ComboBox::from_label("hosts used before").selected_text("pick one…").show_ui(ui, |ui| {
                        for h in others {
                            if ui.selectable_label(false, &h.destination).clicked() {
                                // The one being left stays in the list.
                                if !self.host.destination.trim().is_empty() {
                                    self.hosts.retain(|k| k.destination != self.host.destination);
                                    self.hosts.insert(0, self.host.clone());
                                }
                                self.host = h;
                            }
                        }
                    });
                }
                egui::Grid::new("host_grid").num_columns(2).show(ui, |ui| {
                    let l = ui.label("host");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.host.destination)
                            .hint_text("user@gpu-box or an ssh alias"),
                    )
                    .labelled_by(l.id)
                    .on_hover_text("ssh uses your keys, agent and ~/.ssh/config; no password is asked for");
                    ui.end_row();
                    let l = ui.label("port");
                    let mut port = self.host.port.map(|p| p.to_string()).unwrap_or_default();
                    let edit = egui::TextEdit::singleline(&mut port).hint_text("22").desired_width(60.0);
                    if ui.add(edit).labelled_by(l.id).changed() {
                        self.host.port = port.trim().parse().ok();
                    }
                    ui.end_row();
                    let l = ui.label("key file");
                    let mut key = self.host.identity.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                    let edit = egui::TextEdit::singleline(&mut key).hint_text("ssh's own choice");
                    if ui.add(edit).labelled_by(l.id).changed() {
                        self.host.identity = (!key.trim().is_empty()).then(|| PathBuf::from(key.trim()));
                    }
                    ui.end_row();
                    let l = ui.label("work folder there");
                    ui.text_edit_singleline(&mut self.host.work_dir).labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("pricer there");
                    ui.text_edit_singleline(&mut self.host.pricer)
                        .labelled_by(l.id)
                        .on_hover_text("the pricer binary on the host (e.g. one built there with --features cuda)");
                    ui.end_row();
                });
                self.host.name = self.host.destination.clone();
                let has_host = !self.host.destination.trim().is_empty();
                ui.horizontal(|ui| {
                    if ui.add_enabled(has_host, egui::Button::new("Check host")).clicked() {
                        self.queue(Command::CheckHost);
                    }
                    if ui
                        .add_enabled(has_host, egui::Button::new("Copy this pricer there"))
                        .on_hover_text(
                            "For a host of the same OS and architecture: copies this machine's pricer to \
                             bin/pricer in the work folder and uses it",
                        )
                        .clicked()
                    {
                        self.queue(Command::InstallPricer);
                    }
                    if ui
                        .add_enabled(
                            can_launch && has_host,
                            egui::Button::new(RichText::new("Launch on host").strong()),
                        )
                        .on_hover_text(
                            "Copies the data and model there (only what it lacks), starts pricer train there \
                             detached, and follows it here",
                        )
                        .clicked()
                    {
                        self.queue(Command::LaunchRemote);
                    }
                });
            });
    }
}
