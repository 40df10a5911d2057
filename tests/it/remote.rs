//! Training on another machine over SSH, against an OpenSSH server this test starts on the
//! loopback interface (Debian's openssh-server: its own host key, a throwaway user key, a free
//! high port) with this machine's `pricer` as the remote binary: launch, curves pulled, the
//! connection cut and restored, checkpoints pulled, a second launch that sends no data, Stop and
//! Resume there.

use pricer::finetune::run::{self, RunState, files};
use pricer::remote::{self, Host, RemoteRun};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd on 127.0.0.1:`port` that accepts `key` for the current user; killed on drop.
pub struct Sshd {
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_sshd(dir: &Path, port: u16) -> Sshd {
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PidFile none\nPermitRootLogin prohibit-password\nLogLevel ERROR\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // The privilege-separation folder sshd wants when started as root.
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "sshd did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Sshd { child }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok);
}

/// The host, its sshd and the port; `None` (or a failure in CI) without OpenSSH.
pub fn loopback_host(dir: &Path) -> Option<(Host, Sshd, u16)> {
    if !Path::new(SSHD).exists() {
        assert!(std::env::var_os("CI").is_none(), "{SSHD} missing: scripts/test.sh installs openssh-server");
        eprintln!("skipped: {SSHD} missing (apt-get install openssh-server)");
        return None;
    }
    keygen(&dir.join("host_key"));
    keygen(&dir.join("user_key"));
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sshd = start_sshd(dir, port);
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let host = Host {
        name: "loopback".into(),
        destination: format!("{}@127.0.0.1", user.trim()),
        port: Some(port),
        identity: Some(dir.join("user_key")),
        options: vec![
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "LogLevel=ERROR".into(),
        ],
        work_dir: dir.join("remote-work").display().to_string(),
        pricer: env!("CARGO_BIN_EXE_pricer").into(),
    };
    Some((host, sshd, port))
}

/// Pulls until the mirror's status is `state` (or the deadline passes); the number of pulls.
fn pull_until(local: &Path, state: RunState, secs: u64) -> usize {
    let t0 = Instant::now();
    let mut pulls = 0;
    loop {
        remote::pull_run(local).unwrap();
        pulls += 1;
        if run::read_status(local).is_some_and(|s| s.state == state) {
            return pulls;
        }
        let log = std::fs::read_to_string(local.join(files::LOG)).unwrap_or_default();
        assert!(t0.elapsed() < Duration::from_secs(secs), "no {state:?} after {secs}s; log:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn remote_file(host: &Host, run: &str, file: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(&host.work_dir).join("runs").join(run).join(file)).unwrap()
}

#[test]
fn a_run_launched_over_ssh_is_followed_stopped_resumed_and_its_checkpoints_pulled() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((host, sshd, port)) = loopback_host(tmp.path()) else { return };
    assert_eq!(host.pricer_version().unwrap().as_deref(), Some(env!("CARGO_PKG_VERSION")));
    let model = crate::finetune::tiny_model_dir(tmp.path());
    let Some(train) = crate::finetune::real_items(tmp.path(), "train.jsonl", 0, 24) else { return };
    let mut cfg = crate::finetune::tiny_run_cfg(tmp.path(), &model, &train, "remote-a");
    cfg.runs_dir = tmp.path().join("local-runs");
    cfg.max_steps = Some(9);
    cfg.val_price_items = 0;

    // Launch: the data file and the model folder's files are sent.
    let a = remote::launch(&host, &cfg).unwrap();
    let model_files = std::fs::read_dir(&model).unwrap().count();
    assert_eq!(a.push.sent.len(), 1 + model_files, "{:?}", a.push);
    assert!(a.push.skipped.is_empty());
    assert_eq!(RemoteRun::read(&a.local).unwrap().name, "remote-a");

    // Curves arrive; the connection is cut (sshd killed) and restored on the same port.
    let t0 = Instant::now();
    while run::read_metrics(&a.local).is_empty() {
        remote::pull_run(&a.local).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(120), "no metrics pulled");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(sshd);
    let before = std::fs::read(a.local.join(files::METRICS)).unwrap();
    let err = remote::pull_run(&a.local).unwrap_err();
    assert!(remote::is_unreachable(&err), "{err}");
    assert_eq!(std::fs::read(a.local.join(files::METRICS)).unwrap(), before, "nothing changes while unreachable");
    let sshd = start_sshd(tmp.path(), port);
    pull_until(&a.local, RunState::Finished, 180);
    // Appended pulls add up to the remote files exactly.
    assert_eq!(std::fs::read(a.local.join(files::METRICS)).unwrap(), remote_file(&host, "remote-a", files::METRICS));
    assert_eq!(std::fs::read(a.local.join(files::LOG)).unwrap(), remote_file(&host, "remote-a", files::LOG));
    assert_eq!(run::read_metrics(&a.local).iter().filter(|r| r.train_loss.is_some()).count(), 9);

    // Checkpoints on request, each once, byte for byte.
    let pulled = remote::pull_checkpoints(&a.local).unwrap();
    assert_eq!(pulled, ["checkpoint-3", "checkpoint-6", "checkpoint-9"]);
    assert!(remote::pull_checkpoints(&a.local).unwrap().is_empty());
    let ck = a.local.join(files::CHECKPOINTS).join("checkpoint-9");
    for f in std::fs::read_dir(&ck).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().into_owned();
        let there = remote_file(&host, "remote-a", &format!("{}/checkpoint-9/{name}", files::CHECKPOINTS));
        assert_eq!(std::fs::read(ck.join(&name)).unwrap(), there, "{name}");
    }
    assert_eq!(run::checkpoints(&a.local).len(), 3);

    // A second launch with the same files sends none; it is stopped there, then resumed there.
    cfg.name = Some("remote-b".into());
    cfg.max_steps = Some(400);
    let b = remote::launch(&host, &cfg).unwrap();
    assert!(b.push.sent.is_empty(), "{:?}", b.push);
    assert_eq!(b.push.skipped.len(), 1 + model_files);
    let t0 = Instant::now();
    while run::read_metrics(&b.local).iter().all(|r| r.train_loss.is_none()) {
        remote::pull_run(&b.local).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(120), "remote-b did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    remote::stop(&b.local).unwrap();
    pull_until(&b.local, RunState::Stopped, 120);
    let stopped_at = run::read_status(&b.local).unwrap().step;
    assert!(stopped_at < 400, "stopped at {stopped_at}");
    remote::resume(&b.local, Some(stopped_at + 3)).unwrap();
    pull_until(&b.local, RunState::Finished, 120);
    let steps: Vec<usize> =
        run::read_metrics(&b.local).iter().filter(|r| r.train_loss.is_some()).map(|r| r.step).collect();
    assert_eq!(steps.last().copied(), Some(stopped_at + 3));
    assert_eq!(std::fs::read(b.local.join(files::METRICS)).unwrap(), remote_file(&host, "remote-b", files::METRICS));
    drop(sshd);
}

#[test]
fn a_host_that_cannot_be_reached_or_lacks_pricer_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((mut host, _sshd, _)) = loopback_host(tmp.path()) else { return };
    host.pricer = "/nonexistent/pricer".into();
    assert_eq!(host.pricer_version().unwrap(), None);
    // This machine's binary copied there (the same OS and architecture here).
    host.pricer = host.install_pricer(Path::new(env!("CARGO_BIN_EXE_pricer"))).unwrap();
    assert_eq!(host.pricer, format!("{}/bin/pricer", host.work_dir));
    assert_eq!(host.pricer_version().unwrap().as_deref(), Some(env!("CARGO_PKG_VERSION")));
    let err = host.run("exit 3", None).unwrap_err();
    assert!(!remote::is_unreachable(&err) && err.to_string().contains("exit status 3"), "{err}");
    // A port nothing listens on.
    host.port = Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let err = host.pricer_version().unwrap_err();
    assert!(remote::is_unreachable(&err), "{err}");
    assert!(err.to_string().starts_with("loopback: "), "{err}");
}

#[test]
fn the_cli_launches_follows_and_pulls_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((host, _sshd, port)) = loopback_host(tmp.path()) else { return };
    let model = crate::finetune::tiny_model_dir(tmp.path());
    let Some(train) = crate::finetune::real_items(tmp.path(), "train.jsonl", 0, 16) else { return };
    let mut cfg = crate::finetune::tiny_run_cfg(tmp.path(), &model, &train, "cli-run");
    cfg.runs_dir = tmp.path().join("local-runs");
    cfg.val_price_items = 0;
    let config = tmp.path().join("run.toml");
    std::fs::write(&config, cfg.to_toml()).unwrap();
    let mut args: Vec<String> = vec!["remote".into(), "launch".into(), "--config".into(), config.display().to_string()];
    args.extend(["--host".into(), host.destination.clone(), "--port".into(), port.to_string()]);
    args.extend(["--identity".into(), host.identity.clone().unwrap().display().to_string()]);
    for o in &host.options {
        args.extend(["--ssh-option".into(), o.clone()]);
    }
    args.extend(["--work-dir".into(), host.work_dir.clone(), "--remote-pricer".into(), host.pricer.clone()]);
    args.push("--follow".into());
    let out = Command::new(env!("CARGO_BIN_EXE_pricer")).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let local = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(local, cfg.runs_dir.join("cli-run"));
    assert!(stderr.contains("Finished step 6/6"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_pricer"))
        .args(["remote", "pull", "--checkpoints"])
        .arg(&local)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), ["checkpoint-3", "checkpoint-6"]);
    assert_eq!(run::checkpoints(&local).len(), 2);
}
