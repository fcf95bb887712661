//! A Ferry home for tests that drive the real binary: a temp `FERRY_HOME` with its own config and
//! runtime directory. The service that the commands start lives there; it is stopped when the
//! `Home` is dropped.

use ferry::service::client::{Client, ServiceEvent};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Home {
    pub dir: tempfile::TempDir,
}

/// The config every CLI test starts from; `extra` adds or overrides fields.
fn config_text(extra: &str) -> String {
    let defaults = [
        "watch_network: false",
        "read_timeout_ms: 5000",
        "connect_timeout_secs: 5",
        "modification_interval_ms: 10",
        "admin_exempt_from_quotas: false",
        "service_idle_exit_secs: 300",
    ];
    let fields: Vec<&str> = defaults
        .into_iter()
        .filter(|field| {
            let name = field.split(':').next().unwrap_or_default();
            !extra.contains(&format!("{name}:"))
        })
        .chain(Some(extra).filter(|e| !e.is_empty()))
        .collect();
    format!("({})", fields.join(", "))
}

impl Home {
    pub fn new() -> Home {
        Home::with_config("")
    }

    pub fn with_config(extra: &str) -> Home {
        let dir = tempfile::tempdir().expect("home");
        std::fs::write(dir.path().join("config.ron"), config_text(extra)).expect("config");
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("run").join("ferry.sock")
    }

    /// The real `ferry` binary, with this home.
    pub fn ferry(&self) -> Command {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin!("ferry"));
        command
            .env("FERRY_HOME", self.path())
            // A machine registry of its own (as root, the service creates it), so that tests
            // running at once do not count each other's jobs.
            .env("FERRY_MACHINE_DIR", self.path().join("machine"))
            .env_remove("FERRY_RUNTIME_DIR")
            .env_remove("FERRY_LOG")
            .stdin(Stdio::null());
        command
    }

    /// Runs `ferry ARGS` to its end.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = self.ferry();
        command.args(args);
        run(command).await
    }

    /// Runs `ferry ARGS`, which must succeed; returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "ferry {args:?} failed: {}",
            stderr(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A client of the service of this home (the library the CLI and GUI use).
    pub fn client(&self) -> Client {
        Client::new(&self.socket()).expect("client")
    }

    /// The pid of the service that holds the data directory, if it still runs.
    pub fn service_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.path().join("lock"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("ferry") && cmdline.contains("daemon")).then_some(pid)
    }

    /// Waits for an event of the service for which `wanted` holds, and returns it.
    pub async fn wait_event(
        &self,
        events: &mut ferry::service::client::EventStream,
        what: &str,
        wanted: impl Fn(&ferry::engine::EngineEvent) -> bool,
    ) -> ferry::engine::EngineEvent {
        let found = tokio::time::timeout(crate::PATIENCE, async {
            while let Some(event) = events.next().await {
                if let Ok(ServiceEvent::Engine(event)) = event
                    && wanted(&event)
                {
                    return Some(event);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(event)) => event,
            _ => panic!("no event: {what}"),
        }
    }

    /// Waits until a checkpoint of `bytes` (the whole job) is on disk.
    pub async fn wait_checkpoint(
        &self,
        events: &mut ferry::service::client::EventStream,
        bytes: u64,
    ) {
        self.wait_event(events, &format!("the checkpoint at {bytes}"), |e| {
            matches!(e, ferry::engine::EngineEvent::ProgressSaved { checkpointed, .. } if *checkpointed == bytes)
        })
        .await;
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Some(pid) = self.service_pid() {
            // SAFETY: kill has no memory-safety preconditions; the pid was checked to be ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

pub async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("ferry runs"))
        .await
        .expect("join")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until process `pid` (not a child of the test) has exited, through a pidfd.
pub async fn wait_exit(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return; // already gone
    }
    // SAFETY: fd is a fresh descriptor that we own.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: `owned` is a valid descriptor, owned by the AsyncFd until it is dropped.
    let async_fd = unsafe { tokio::io::unix::AsyncFd::register(owned) }.expect("pidfd");
    let exited = tokio::time::timeout(crate::PATIENCE, async_fd.readable()).await;
    assert!(exited.is_ok(), "process {pid} did not exit");
}

/// A private session bus (dbus-daemon) for the test, stopped when dropped.
pub struct SessionBus {
    daemon: std::process::Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl SessionBus {
    pub fn start() -> SessionBus {
        let dir = tempfile::tempdir().expect("dir");
        let mut daemon = Command::new("dbus-daemon")
            .arg("--session")
            .arg("--nofork")
            .arg("--print-address=1")
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus").display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (scripts/setup.sh installs it)");
        let mut line = String::new();
        let stdout = daemon.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("the bus address");
        SessionBus {
            daemon,
            address: line.trim().to_string(),
            _dir: dir,
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
