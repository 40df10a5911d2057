//! Training on another machine over SSH: OpenSSH run through `std::process`, the way git uses it,
//! so keys, agents and `~/.ssh/config` work as the user has them and no password is ever held
//! here (`BatchMode=yes`: a host that would ask for one is reported, not prompted for).
//!
//! A remote run is a work folder on the host (`Host::work_dir`) holding the data and model files
//! by content digest (`data/<sha256 prefix>-<name>`, so a second launch with the same files sends
//! nothing), one config per run (`<name>.toml`, with absolute paths there) and the run
//! folders (`runs/<name>/`, as `pricer train` writes them). `pricer train` is started detached
//! (`nohup`, its own session, no terminal, output to `runs/<name>.console.log`), so it survives
//! the connection dropping. A local mirror folder (`<runs_dir>/<name>/`, with `remote.json`
//! naming the host and the remote folder) receives `metrics.jsonl` and `train.log` by appended
//! bytes only and `status.json` whole ([`pull_run`]), which is what the Fine-tune tab reads; Stop
//! touches `STOP` there; Resume runs `pricer train --resume` there; checkpoints come back on
//! request ([`pull_checkpoints`]).

use crate::evaluation::file_sha256;
use crate::finetune::config::TrainConfig;
use crate::finetune::run::files;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A machine reachable with `ssh`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Host {
    /// What the user calls it.
    pub name: String,
    /// `user@host`, `host`, or an alias of `~/.ssh/config`.
    pub destination: String,
    /// `-p PORT` (else the config's or 22).
    pub port: Option<u16>,
    /// `-i FILE` (else the agent's and the config's keys).
    pub identity: Option<PathBuf>,
    /// More `-o NAME=VALUE` options.
    pub options: Vec<String>,
    /// The work folder there (relative to the login folder, or absolute).
    pub work_dir: String,
    /// The `pricer` binary there (on its PATH, or a path).
    pub pricer: String,
}

impl Default for Host {
    fn default() -> Self {
        Self {
            name: String::new(),
            destination: String::new(),
            port: None,
            identity: None,
            options: Vec::new(),
            work_dir: "pricer-work".into(),
            pricer: "pricer".into(),
        }
    }
}

/// `s` as one word of a POSIX shell command line.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether an error says the host could not be reached (as opposed to a command failing there).
pub fn is_unreachable(e: &Error) -> bool {
    matches!(e, Error::Remote { unreachable: true, .. })
}

/// What [`Host::push`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Files sent (their names there).
    pub sent: Vec<String>,
    /// Files the host already had with the same digest.
    pub skipped: Vec<String>,
    /// Bytes sent.
    pub bytes: u64,
}

impl Host {
    fn err(&self, unreachable: bool, message: String) -> Error {
        let host = if self.name.is_empty() { self.destination.clone() } else { self.name.clone() };
        Error::Remote { host, unreachable, message }
    }

    fn command(&self, script: &str) -> Command {
        // PRICER_SSH: another ssh client (e.g. a wrapper adding options).
        let mut c = Command::new(std::env::var_os("PRICER_SSH").unwrap_or_else(|| "ssh".into()));
        c.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5"]);
        c.args(["-o", "ServerAliveCountMax=2"]);
        if let Some(p) = self.port {
            c.arg("-p").arg(p.to_string());
        }
        if let Some(i) = &self.identity {
            c.arg("-i").arg(i);
        }
        for o in &self.options {
            c.arg("-o").arg(o);
        }
        c.arg(&self.destination).arg("--").arg(format!("sh -c {}", sh_quote(script)));
        c
    }

    /// Runs `script` with `sh` there, `input` on its standard input; its standard output.
    /// Exit status 255 (ssh's own) is "unreachable"; another non-zero status is the script's
    /// failure, with its standard error.
    pub fn run(&self, script: &str, input: Option<&mut dyn Read>) -> Result<Vec<u8>> {
        let mut cmd = self.command(script);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.err(true, format!("cannot run ssh: {e}")))?;
        let mut stdin = child.stdin.take();
        let (out, sent) = std::thread::scope(|s| {
            // Output is read while the input is written, so neither pipe fills up and blocks.
            let reader = s.spawn(|| child.wait_with_output());
            let sent = match (input, stdin.as_mut()) {
                (Some(r), Some(w)) => std::io::copy(r, w).map(|_| ()),
                _ => Ok(()),
            };
            drop(stdin);
            (reader.join().expect("ssh reader"), sent)
        });
        let out = out.map_err(|e| self.err(true, format!("ssh: {e}")))?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match out.status.code() {
            Some(0) => {
                sent.map_err(|e| self.err(false, format!("sending input: {e}")))?;
                Ok(out.stdout)
            }
            Some(255) | None => Err(self.err(true, if stderr.is_empty() { "connection lost".into() } else { stderr })),
            Some(code) => Err(self.err(false, format!("exit status {code}: {stderr}"))),
        }
    }

    /// The version `pricer --version` prints there, or `None` when there is no such binary.
    pub fn pricer_version(&self) -> Result<Option<String>> {
        let out = self.run(&format!("{} --version 2>/dev/null || true", self.pricer_cmd()), None)?;
        let text = String::from_utf8_lossy(&out).trim().to_string();
        Ok(text.strip_prefix("pricer ").map(str::to_owned))
    }

    fn pricer_cmd(&self) -> String {
        sh_quote(&self.pricer)
    }

    /// Copies each `(local file, name there, its SHA-256)` into the work folder, except the
    /// files the host already has with that SHA-256. Each file is written to a temporary name and
    /// renamed, so an interrupted copy leaves no half file under the real name.
    pub fn push(&self, files: &[(PathBuf, String, String)]) -> Result<PushReport> {
        let wd = sh_quote(&self.work_dir);
        let names: Vec<String> = files.iter().map(|(_, n, _)| sh_quote(n)).collect();
        let script = format!(
            "mkdir -p {wd} && cd {wd} && for f in {}; do if [ -f \"$f\" ]; then sha256sum \"$f\"; fi; done",
            names.join(" ")
        );
        let out = self.run(&script, None)?;
        let theirs: std::collections::HashMap<String, String> = String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_once("  ").map(|(d, n)| (n.to_string(), d.to_string())))
            .collect();
        let mut report = PushReport::default();
        for (local, name, digest) in files {
            if theirs.get(name) == Some(digest) {
                report.skipped.push(name.clone());
                continue;
            }
            let mut f = std::fs::File::open(local).map_err(|e| Error::io(local, e))?;
            self.put(name, &mut f)?;
            report.bytes += std::fs::metadata(local).map_or(0, |m| m.len());
            report.sent.push(name.clone());
        }
        Ok(report)
    }

    /// Writes what `from` reads as the file `name` in the work folder (under a temporary name,
    /// then renamed).
    pub fn put(&self, name: &str, from: &mut dyn Read) -> Result<()> {
        let (wd, q) = (sh_quote(&self.work_dir), sh_quote(name));
        let script =
            format!("mkdir -p {wd} && cd {wd} && mkdir -p \"$(dirname {q})\" && cat > {q}.part && mv {q}.part {q}");
        self.run(&script, Some(from)).map(|_| ())
    }

    /// Copies the `pricer` binary at `local` (same OS and architecture as the host's) to
    /// `bin/pricer` in the work folder and makes it executable; returns its path there, for
    /// [`Host::pricer`].
    pub fn install_pricer(&self, local: &Path) -> Result<String> {
        let mut f = std::fs::File::open(local).map_err(|e| Error::io(local, e))?;
        self.put("bin/pricer", &mut f)?;
        let out = self.run(&format!("cd {} && chmod +x bin/pricer && pwd", sh_quote(&self.work_dir)), None)?;
        Ok(format!("{}/bin/pricer", String::from_utf8_lossy(&out).trim()))
    }

    /// Starts `pricer ARGS` in the work folder, detached: its own session, no terminal, standard
    /// input from /dev/null, output to `log` (relative to the work folder). Returns its PID there.
    pub fn spawn_detached(&self, args: &[String], log: &str) -> Result<u32> {
        let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
        let script = format!(
            "cd {} && mkdir -p \"$(dirname {log})\" && (setsid nohup {} {} > {log} 2>&1 < /dev/null & echo $!)",
            sh_quote(&self.work_dir),
            self.pricer_cmd(),
            args.join(" "),
            log = sh_quote(log),
        );
        let out = self.run(&script, None)?;
        String::from_utf8_lossy(&out)
            .trim()
            .parse()
            .map_err(|_| self.err(false, format!("no process id from the launch: {:?}", String::from_utf8_lossy(&out))))
    }
}

/// Where a remote run lives; `remote.json` in the local mirror folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRun {
    /// The host.
    pub host: Host,
    /// The run's name (its folder under `runs/` in the work folder).
    pub name: String,
    /// The run's config there, relative to the work folder.
    pub config: String,
    /// Bytes of `metrics.jsonl` and `train.log` already pulled.
    #[serde(default)]
    pub pulled: [u64; 2],
}

/// The file in a local mirror folder that names its remote run.
pub const REMOTE_FILE: &str = files::REMOTE;

impl RemoteRun {
    /// The run folder there, relative to the work folder.
    pub fn dir(&self) -> String {
        format!("runs/{}", self.name)
    }
    /// Reads the `remote.json` of a local mirror folder, `None` for a local run.
    pub fn read(local: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(local.join(REMOTE_FILE)).ok()?).ok()
    }
    fn save(&self, local: &Path) -> Result<()> {
        crate::atomic::write_atomic_json(&local.join(REMOTE_FILE), self)
    }
}

/// What [`launch`] did.
#[derive(Clone, Debug)]
pub struct Launched {
    /// The local mirror folder.
    pub local: PathBuf,
    /// The remote run.
    pub run: RemoteRun,
    /// The data and model files sent or found there.
    pub push: PushReport,
    /// The trainer's process id there.
    pub pid: u32,
}

impl Launched {
    /// One line for the log: the run, the host, the process there and what was copied.
    pub fn summary(&self) -> String {
        format!(
            "launched {} on {} (pid {} there): {} files sent ({} bytes), {} already there",
            self.run.name,
            self.run.host.destination,
            self.pid,
            self.push.sent.len(),
            self.push.bytes,
            self.push.skipped.len()
        )
    }
}

/// Launches the run `cfg` on `host`: its data (and its model, when a local file or folder) are
/// copied by digest, its config rewritten with paths in the work folder, `pricer train` started
/// detached, and a local mirror folder `cfg.runs_dir/<name>` made with `remote.json`.
pub fn launch(host: &Host, cfg: &TrainConfig) -> Result<Launched> {
    let name = cfg.name.clone().unwrap_or_else(crate::finetune::config::default_run_name);
    let local = cfg.runs_dir.join(&name);
    if local.exists() {
        return Err(Error::InvalidInput(format!("{} already exists: choose another run name", local.display())));
    }
    let mut files = Vec::new();
    let mut by_digest = |path: &Path, folder: &str| -> Result<String> {
        let digest = file_sha256(path)?;
        let file = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        let there = format!("{folder}/{}-{file}", &digest[..16]);
        files.push((path.to_owned(), there.clone(), digest));
        Ok(there)
    };
    // Absolute paths there: the run's own config.toml, which `--resume` reads, lives in the run
    // folder, not beside the launch config.
    let wd = String::from_utf8_lossy(
        &host.run(&format!("mkdir -p {q} && cd {q} && pwd", q = sh_quote(&host.work_dir)), None)?,
    )
    .trim()
    .to_string();
    let mut remote = cfg.clone();
    remote.train = format!("{wd}/{}", by_digest(&cfg.train, "data")?).into();
    if let Some(v) = &cfg.validation {
        remote.validation = Some(format!("{wd}/{}", by_digest(v, "data")?).into());
    }
    let model = Path::new(&cfg.model);
    if model.is_file() {
        remote.model = format!("{wd}/{}", by_digest(model, "models")?);
    } else if model.is_dir() {
        // A model folder: its files, under a folder named by the digest of their digests.
        let mut entries: Vec<PathBuf> = std::fs::read_dir(model)
            .map_err(|e| Error::io(model, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        let digests = entries.iter().map(|p| file_sha256(p)).collect::<Result<Vec<_>>>()?;
        let folder_digest = file_sha256_of_text(&digests.join("\n"));
        let folder = format!(
            "models/{}-{}",
            &folder_digest[..16],
            model.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
        );
        for (p, digest) in entries.iter().zip(digests) {
            let there = format!("{folder}/{}", p.file_name().unwrap_or_default().to_string_lossy());
            files.push((p.clone(), there, digest));
        }
        remote.model = format!("{wd}/{folder}");
    }
    remote.runs_dir = format!("{wd}/runs").into();
    remote.name = Some(name.clone());
    let push = host.push(&files)?;
    let config = format!("{name}.toml");
    host.put(&config, &mut remote.to_toml().as_bytes())?;
    let pid =
        host.spawn_detached(&["train".into(), "--config".into(), config.clone()], &format!("runs/{name}.console.log"))?;
    std::fs::create_dir_all(&local).map_err(|e| Error::io(&local, e))?;
    let run = RemoteRun { host: host.clone(), name, config, pulled: [0, 0] };
    run.save(&local)?;
    // The local config keeps the user's paths (for the form and the config differences).
    crate::atomic::write_atomic_bytes(&local.join(files::CONFIG), cfg.to_toml().as_bytes())?;
    Ok(Launched { local, run, push, pid })
}

fn file_sha256_of_text(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The remote run a local mirror folder follows.
fn remote_run(local: &Path) -> Result<RemoteRun> {
    RemoteRun::read(local)
        .ok_or_else(|| Error::InvalidInput(format!("{} is not a remote run (no {REMOTE_FILE})", local.display())))
}

/// The sections of a reply made of `NAME SIZE` header lines each followed by SIZE bytes; `None`
/// when a section came back shorter than its header says (a cut connection).
fn sections(mut rest: &[u8]) -> Option<Vec<(String, &[u8])>> {
    let mut out = Vec::new();
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let header = String::from_utf8_lossy(&rest[..nl]).to_string();
        let (name, size) = header.rsplit_once(' ')?;
        let size: usize = size.trim().parse().ok()?;
        let body = rest.get(nl + 1..nl + 1 + size)?;
        out.push((name.to_string(), body));
        rest = &rest[nl + 1 + size..];
    }
    Some(out)
}

/// What one [`pull_run`] brought.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    /// New bytes of `metrics.jsonl` and `train.log`.
    pub appended: [u64; 2],
    /// Whether `status.json` was there.
    pub status: bool,
}

/// Brings a remote run's progress into its local mirror folder in one connection: the bytes of
/// `metrics.jsonl` and `train.log` after those already pulled (whole lines only) and
/// `status.json` whole. Nothing local changes when the host cannot be reached.
pub fn pull_run(local: &Path) -> Result<Pulled> {
    let mut run = remote_run(local)?;
    let dir = sh_quote(&run.dir());
    // Each section: a header line `NAME SIZE`, then SIZE bytes.
    let mut script = format!("cd {} && cd {dir} 2>/dev/null || exit 0; ", sh_quote(&run.host.work_dir));
    for (i, f) in [files::METRICS, files::LOG].iter().enumerate() {
        script.push_str(&format!(
            "if [ -f {f} ]; then s=$(wc -c < {f}); n=$((s - {o})); if [ $n -lt 0 ]; then n=0; fi; \
             echo \"{f} $n\"; tail -c +{} {f} | head -c $n; fi; ",
            run.pulled[i] + 1,
            o = run.pulled[i],
        ));
    }
    script.push_str(&format!("if [ -f {s} ]; then echo \"{s} $(wc -c < {s})\"; cat {s}; fi", s = files::STATUS));
    let out = run.host.run(&script, None)?;
    let mut pulled = Pulled::default();
    let parts = sections(&out).ok_or_else(|| run.host.err(true, "the reply was cut short".into()))?;
    for (name, body) in parts {
        if name == files::STATUS {
            crate::atomic::write_atomic_bytes(&local.join(files::STATUS), body)?;
            pulled.status = true;
            continue;
        }
        let i = if name == files::METRICS { 0 } else { 1 };
        // Whole lines only: a line still being written comes with the next pull.
        let whole = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if whole > 0 {
            let path = local.join(&name);
            let mut f =
                std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
            f.write_all(&body[..whole]).map_err(|e| Error::io(&path, e))?;
            run.pulled[i] += whole as u64;
            pulled.appended[i] = whole as u64;
        }
    }
    run.save(local)?;
    Ok(pulled)
}

/// Asks the remote trainer to stop at its next step (it saves a checkpoint first).
pub fn stop(local: &Path) -> Result<()> {
    let run = remote_run(local)?;
    let script = format!("cd {} && touch {}/{}", sh_quote(&run.host.work_dir), sh_quote(&run.dir()), files::STOP);
    run.host.run(&script, None).map(|_| ())
}

/// Resumes the remote run there from its last checkpoint (`pricer train --resume`, detached).
pub fn resume(local: &Path, max_steps: Option<usize>) -> Result<u32> {
    let run = remote_run(local)?;
    let mut args = vec!["train".to_string(), "--resume".into(), run.dir()];
    if let Some(n) = max_steps {
        args.extend(["--max-steps".into(), n.to_string()]);
    }
    run.host.spawn_detached(&args, &format!("runs/{}.console.log", run.name))
}

/// Copies the remote run's checkpoints that the mirror lacks into `checkpoints/` there (each
/// through a temporary folder renamed into place). Returns the names copied.
pub fn pull_checkpoints(local: &Path) -> Result<Vec<String>> {
    let run = remote_run(local)?;
    let base = format!("{}/{}", run.dir(), files::CHECKPOINTS);
    let listing = run.host.run(
        &format!("cd {} && cd {} 2>/dev/null && ls -1 || true", sh_quote(&run.host.work_dir), sh_quote(&base)),
        None,
    )?;
    let have = local.join(files::CHECKPOINTS);
    let mut copied = Vec::new();
    let mut names: Vec<(usize, String)> = String::from_utf8_lossy(&listing)
        .lines()
        .filter_map(|n| Some((n.strip_prefix("checkpoint-")?.parse().ok()?, n.to_string())))
        .collect();
    names.sort();
    for (_, name) in &names {
        let name = name.as_str();
        if have.join(name).exists() {
            continue;
        }
        // A checkpoint is a handful of files: each sent as `NAME SIZE` + bytes, like pull_run.
        let script = format!(
            "cd {} && cd {} && for f in *; do [ -f \"$f\" ] && echo \"$f $(wc -c < \"$f\")\" && cat \"$f\"; done",
            sh_quote(&run.host.work_dir),
            sh_quote(&format!("{base}/{name}"))
        );
        let out = run.host.run(&script, None)?;
        let parts = sections(&out)
            .filter(|p| p.iter().all(|(f, _)| !f.contains('/')))
            .ok_or_else(|| run.host.err(true, format!("{name} came back incomplete")))?;
        let tmp = have.join(format!(".{name}.pulling"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        for (file, body) in parts {
            std::fs::write(tmp.join(&file), body).map_err(|e| Error::io(tmp.join(&file), e))?;
        }
        std::fs::rename(&tmp, have.join(name)).map_err(|e| Error::io(have.join(name), e))?;
        copied.push(name.to_string());
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_reach_the_shell_unchanged() {
        for word in ["plain", "two words", "it's", "$HOME `x` \"q\" \\ ;|&", ""] {
            let out = Command::new("sh").arg("-c").arg(format!("printf %s {}", sh_quote(word))).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word);
        }
    }

    #[test]
    fn reply_sections_split_by_their_sizes_and_a_short_one_is_refused() {
        let reply = b"metrics.jsonl 6\n{\"a\"}\nstatus.json 0\nname with spaces 3\nx\ny";
        let parts = sections(reply).unwrap();
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["metrics.jsonl", "status.json", "name with spaces"]);
        assert_eq!(parts[0].1, b"{\"a\"}\n");
        assert_eq!(parts[2].1, b"x\ny");
        assert!(sections(b"metrics.jsonl 10\nshort").is_none());
        assert!(sections(b"").unwrap().is_empty());
    }
}
