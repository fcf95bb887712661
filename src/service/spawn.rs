//! Starting the service in the background: `ferry daemon` without `--foreground`, which clients
//! also run when they find no service.
//!
//! `ferry daemon` takes a start lock in the runtime directory (so that two clients starting at
//! once start one service), checks whether a service already answers, and otherwise starts
//! `ferry daemon --foreground` in a new session with its stderr going to `service.log` in the data
//! directory. It returns once the service prints its ready line, so the caller can connect at
//! once; the service, no longer its child, is adopted by init.

use crate::platform;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The line `ferry daemon --foreground` prints on stdout once it accepts connections.
pub const READY: &str = "ready";

/// A service log larger than this is moved to `service.log.old` when the next service starts.
const LOG_LIMIT: u64 = 1 << 20;

/// Exit code of `ferry daemon` when a service already runs (see `cli::exit::SERVICE_BUSY`).
const ALREADY_RUNNING: i32 = 4;
/// How long a client waits for a service it started to say it is ready. Loading is bounded (job
/// files are size-capped, never a FIFO), so this is only reached by a service that is stuck.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub enum Started {
    Started { pid: u32 },
    AlreadyRunning,
}

/// Runs `ferry daemon` and waits for it (used by clients that found no service).
pub fn start_in_background() -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the ferry program: {e}"))?;
    let output = Command::new(exe)
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run `ferry daemon`: {e}"))?;
    match output.status.code() {
        Some(0) | Some(ALREADY_RUNNING) => Ok(()),
        _ => Err(format!(
            "`ferry daemon` could not start the service: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// `ferry daemon`: starts the service in the background unless one already answers.
pub fn daemonize() -> Result<Started, String> {
    let socket = platform::socket_path();
    let dir = socket
        .parent()
        .ok_or("the socket path has no parent directory")?;
    platform::check_runtime_access(&socket).map_err(|sentence| {
        crate::job::BitsError::new(crate::job::ErrorCode::AccessDenied, sentence).to_string()
    })?;
    platform::prepare_runtime_dir(dir)?;
    let lock_path = dir.join("start.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Ok(Started::AlreadyRunning);
    }
    let data_dir = platform::data_dir()?;
    platform::private_dir(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let log_path = data_dir.join("service.log");
    // One older log is kept; the log never grows without bound.
    if std::fs::metadata(&log_path).is_ok_and(|m| m.len() > LOG_LIMIT) {
        let _ = std::fs::rename(&log_path, data_dir.join("service.log.old"));
    }
    let log = platform::open_private(&log_path, OpenOptions::new().create(true).append(true))
        .map_err(|e| format!("cannot open the service log {}: {e}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the ferry program: {e}"))?;
    let mut command = Command::new(exe);
    command
        .args(["daemon", "--foreground"])
        // Paths reach the service absolute; its own folder must not keep a mount busy.
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the service leaves the terminal's session so that
    // closing the terminal or pressing Ctrl+C there does not stop it.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the service: {e}"))?;
    let line = wait_ready(&mut child, READY_TIMEOUT, &log_path, log_start)?;
    if line.starts_with(READY) {
        return Ok(Started::Started { pid: child.id() });
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the service: {e}"))?;
    if status.code() == Some(ALREADY_RUNNING) {
        return Ok(Started::AlreadyRunning);
    }
    Err(format!(
        "the service stopped at once ({status}): {}",
        log_tail(&log_path, log_start)
    ))
}

/// The child's first line on stdout (empty if it ended first); never an endless wait: a service
/// stuck at start would otherwise hang every client that starts it. A child that says nothing
/// within `timeout` is killed, and the error names its log.
fn wait_ready(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
    log_path: &Path,
    log_start: u64,
) -> Result<String, String> {
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = line_tx.send(line);
        });
    }
    match line_rx.recv_timeout(timeout) {
        Ok(line) => Ok(line),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Ok(String::new()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "the service did not become ready within {} s and was stopped; its log is {}: {}",
                timeout.as_secs(),
                log_path.display(),
                log_tail(log_path, log_start)
            ))
        }
    }
}

/// What the service wrote to its log since `from`, for an error message.
fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.seek(SeekFrom::Start(from));
        let _ = file.take(4096).read_to_string(&mut text);
    }
    match text.trim() {
        "" => format!("see {}", path.display()),
        text => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect: every client waited on a starting service's ready line without a timeout.
    #[test]
    fn a_service_that_never_says_ready_is_stopped_and_its_log_named() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("service.log");
        std::fs::write(&log, "loading a huge store...\n").expect("log");
        let mut child = Command::new("sleep")
            .arg("600")
            .stdout(Stdio::piped())
            .spawn()
            .expect("sleep");
        let error = wait_ready(&mut child, std::time::Duration::from_millis(200), &log, 0)
            .expect_err("no ready line");
        assert!(error.contains("did not become ready"), "{error}");
        assert!(error.contains(&log.display().to_string()), "{error}");
        assert!(error.contains("loading a huge store"), "{error}");
        assert!(
            child.try_wait().expect("status").is_some(),
            "the stuck child is stopped"
        );
    }
}
