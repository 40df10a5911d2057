//! The trainer process seen from outside: launch `pricer train` as a child process for a new run
//! or to resume one, ask it to stop, and poll whether it ended. The allocator settings the trainer
//! needs are set here, in one place, both for children and for the CLI re-executing itself.

use super::config::{TrainConfig, default_run_name};
use super::run;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Instant;

/// Environment the trainer runs with. Training and prediction allocate and free the same large
/// tensors every step; mimalloc keeps freed memory for reuse only when told so by these
/// variables, read at start-up — without them every step pays a page fault per page.
pub const ALLOCATOR_ENV: [(&str, &str); 2] = [("MIMALLOC_PURGE_DELAY", "-1"), ("MIMALLOC_ARENA_EAGER_COMMIT", "1")];

/// Starts this process again, once, with [`ALLOCATOR_ENV`] set (Unix). Returns `Ok` when they are
/// set already (or elsewhere); on success it does not return. The error says why it could not.
pub fn reexec_with_allocator_settings() -> std::result::Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os(ALLOCATOR_ENV[0].0).is_some() {
            return Ok(());
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).envs(ALLOCATOR_ENV).exec();
        return Err(err.to_string());
    }
    #[allow(unreachable_code)]
    Ok(())
}

/// The program that runs `train`: the `pricer` CLI beside this executable, else this executable
/// itself (`pricer-studio train …` runs the same command).
pub fn trainer_program() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("pricer-studio"));
    let sibling = me.with_file_name(format!("pricer{}", std::env::consts::EXE_SUFFIX));
    if sibling.is_file() { sibling } else { me }
}

/// How a trainer process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Whether it exited with success.
    pub success: bool,
    /// The exit status as text.
    pub status: String,
    /// The last lines it printed (from `<run>.launch.log`), for a failure message.
    pub output_tail: Vec<String>,
}

/// A trainer process started by [`TrainerProcess::launch`] or [`TrainerProcess::resume`].
pub struct TrainerProcess {
    child: Child,
    /// Its run folder.
    pub run_dir: PathBuf,
    /// When it started.
    pub started: Instant,
}

fn launch_log(run_dir: &Path) -> PathBuf {
    run_dir.with_extension("launch.log")
}

/// Starts `program train ARGS` with its output in `<run>.launch.log`; `stdin_text` is written to
/// its standard input (then closed).
fn spawn(program: &Path, args: &[&std::ffi::OsStr], run_dir: &Path, stdin_text: Option<&str>) -> Result<Child> {
    use std::process::Stdio;
    let log_to = launch_log(run_dir);
    let err = std::fs::File::create(&log_to).map_err(|e| Error::io(&log_to, e))?;
    let out = err.try_clone().map_err(|e| Error::io(&log_to, e))?;
    let mut child = std::process::Command::new(program)
        .arg("train")
        .args(args)
        .envs(ALLOCATOR_ENV)
        .stdout(out)
        .stderr(err)
        .stdin(if stdin_text.is_some() { Stdio::piped() } else { Stdio::null() })
        .spawn()
        .map_err(|e| Error::InvalidInput(format!("could not start {}: {e}", program.display())))?;
    if let (Some(text), Some(mut stdin)) = (stdin_text, child.stdin.take()) {
        std::io::Write::write_all(&mut stdin, text.as_bytes()).map_err(|e| Error::io("the trainer's input", e))?;
    }
    Ok(child)
}

impl TrainerProcess {
    /// Checks `cfg` (so that the form's problems show here, not in a failed child), makes its
    /// paths absolute (the child may run from another folder) and starts `program train --config
    /// -` with it on standard input. The trainer validates it, makes the run folder and writes
    /// the run's one configuration file, `config.toml`.
    pub fn launch(program: &Path, cfg: &TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let mut cfg = cfg.clone();
        let name = cfg.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(default_run_name);
        cfg.name = Some(name.clone());
        let runs_dir = cfg.runs_dir.clone();
        std::fs::create_dir_all(&runs_dir).map_err(|e| Error::io(&runs_dir, e))?;
        let run_dir = runs_dir.join(&name);
        if run_dir.exists() {
            return Err(Error::InvalidInput(format!("{} exists: choose another run name", run_dir.display())));
        }
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        cfg.train = abs(&cfg.train);
        cfg.validation = cfg.validation.as_deref().map(abs);
        cfg.runs_dir = abs(&runs_dir);
        let args = [std::ffi::OsStr::new("--config"), std::ffi::OsStr::new("-")];
        let child = spawn(program, &args, &run_dir, Some(&cfg.to_toml()))?;
        Ok(Self { child, run_dir, started: Instant::now() })
    }

    /// Starts `program train --resume` on a run folder: it continues from the last complete
    /// checkpoint on the same curve.
    pub fn resume(program: &Path, run_dir: &Path) -> Result<Self> {
        let child = spawn(program, &[std::ffi::OsStr::new("--resume"), run_dir.as_os_str()], run_dir, None)?;
        Ok(Self { child, run_dir: run_dir.to_owned(), started: Instant::now() })
    }

    /// Asks the trainer to stop after its current step (it writes a checkpoint first).
    pub fn stop(&self) -> Result<()> {
        run::request_stop(&self.run_dir)
    }

    /// Whether the process ended, and how (reaps it; never blocks).
    pub fn poll(&mut self) -> Option<Exit> {
        let status = self.child.try_wait().ok()??;
        let text = std::fs::read_to_string(launch_log(&self.run_dir)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let output_tail = lines[lines.len().saturating_sub(6)..].iter().map(|s| (*s).to_owned()).collect();
        Some(Exit { success: status.success(), status: status.to_string(), output_tail })
    }

    /// Seconds since the process started.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
