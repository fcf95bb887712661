//! The integration tests: a real loopback HTTP server, real files, a real engine (with an
//! injected clock) and the real `ferry` binary.

// Tests and benchmarks may stop at the first surprise: the no-unwrap rule is for the product.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bandwidth;
mod checksums;
mod cli;
mod engine;
mod faults;
mod gui;
mod home;
mod parallel;
mod segmented;
mod serve;
mod server;
mod service;
mod tls;
mod upload;
mod upload_jobs;
mod views;

use ferry::config::Config;
use ferry::engine::{EngineEvent, EngineHandle, EngineOptions, ManualClock};
use ferry::job::{Job, JobId, JobType, NewFile, Priority};
use ferry::platform::User;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Longest wait for something the engine is expected to do; reaching it fails the test.
const PATIENCE: Duration = Duration::from_secs(30);

pub fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic pseudo-random bytes (content that does not compress or repeat).
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

pub fn test_config() -> Config {
    Config {
        modification_interval_ms: 10,
        read_timeout_ms: 5_000,
        connect_timeout_secs: 5,
        // Tests run as root in CI: enforce the quotas anyway.
        admin_exempt_from_quotas: false,
        // The tests say when the network goes and comes back.
        watch_network: false,
        ..Config::default()
    }
}

pub fn start_time() -> ferry::job::Timestamp {
    chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("date")
        .to_utc()
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub engine: EngineHandle,
    pub events: broadcast::Receiver<EngineEvent>,
    pub config: Config,
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with_config(test_config()).await
    }

    pub async fn with_config(config: Config) -> Harness {
        Harness::build(config, None)
    }

    /// A harness whose engine injects `faults` into its workers.
    pub async fn with_faults(faults: ferry::engine::FaultInjection) -> Harness {
        Harness::build(test_config(), Some(faults))
    }

    fn build(config: Config, faults: Option<ferry::engine::FaultInjection>) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("out")).expect("out dir");
        let clock = Arc::new(ManualClock::new(start_time()));
        let (engine, _) = ferry::engine::start(EngineOptions {
            fault_injection: faults,
            ..Harness::options(dir.path(), &config, clock.clone())
        })
        .expect("engine starts");
        let events = engine.subscribe();
        Harness {
            dir,
            clock,
            engine,
            events,
            config,
        }
    }

    fn options(dir: &Path, config: &Config, clock: Arc<ManualClock>) -> EngineOptions {
        EngineOptions {
            data_dir: dir.join("data"),
            config: config.clone(),
            clock,
            user: User::current(),
            fault_injection: None,
            machine_registry: None,
        }
    }

    pub fn start_engine(
        dir: &Path,
        config: &Config,
        clock: Arc<ManualClock>,
    ) -> Result<(EngineHandle, ferry::engine::StartReport), ferry::engine::EngineError> {
        ferry::engine::start(Harness::options(dir, config, clock))
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A SUSPENDED download job with these (url, file name) pairs.
    pub async fn download(&self, priority: Priority, files: &[(&str, &str)]) -> JobId {
        let id = self
            .engine
            .create_job("test", JobType::Download, Some(priority))
            .await
            .expect("create");
        let files = files
            .iter()
            .map(|(url, name)| NewFile {
                remote_url: url.to_string(),
                local_path: self.out(name),
                ranges: None,
                checksum: None,
            })
            .collect();
        self.engine.add_files(id, files).await.expect("add files");
        id
    }

    /// A download job with these (url, file name) pairs, resumed.
    pub async fn start(&self, priority: Priority, files: &[(&str, &str)]) -> JobId {
        let id = self.download(priority, files).await;
        self.engine.resume(id).await.expect("resume");
        id
    }

    /// Waits until the job satisfies `done`; fails the test after [`PATIENCE`].
    pub async fn wait_for(&mut self, id: JobId, what: &str, done: impl Fn(&Job) -> bool) -> Job {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let job = self.engine.job(id).await;
            match &job {
                Ok(job) if done(job) => return job.clone(),
                Err(e) => panic!("waiting for {what}: {e}"),
                _ => {}
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("waiting for {what}: event stream closed: {e}"),
                Err(_) => panic!("waiting for {what}: timed out; job is {job:?}"),
            }
        }
    }

    /// The engine's current time.
    pub fn clock_now(&self) -> ferry::job::Timestamp {
        use ferry::engine::Clock;
        self.clock.now()
    }

    /// Waits until the job is in `state`.
    pub async fn wait_state(&mut self, id: JobId, state: ferry::job::JobState) -> Job {
        self.wait_for(id, state.name(), |j| j.state == state).await
    }

    /// Waits for an event matching `wanted`.
    pub async fn wait_event(
        &mut self,
        what: &str,
        wanted: impl Fn(&EngineEvent) -> bool,
    ) -> EngineEvent {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(event)) if wanted(&event) => return event,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("waiting for {what}: event stream closed: {e}"),
                Err(_) => panic!("waiting for {what}: timed out"),
            }
        }
    }
}

/// A router served on 127.0.0.1 at a free port, on the runtime that started it; it stops when
/// dropped.
pub struct Spawned {
    pub address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn spawn_router(router: axum::Router) -> Spawned {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Spawned { address, task }
}

/// Starts an engine on `dir` as soon as the one before it, stopped abruptly, lets go of the
/// store's lock (it goes with that engine's last task).
pub async fn restart_engine(
    dir: &Path,
    config: &Config,
    clock: Arc<ManualClock>,
) -> (EngineHandle, ferry::engine::StartReport) {
    loop {
        match Harness::start_engine(dir, config, clock.clone()) {
            Ok(started) => return started,
            Err(ferry::engine::EngineError::Store(ferry::store::StoreError::Locked { .. })) => {
                tokio::task::yield_now().await
            }
            Err(e) => panic!("restart: {e}"),
        }
    }
}

/// Files in a folder whose name starts with a dot (Ferry's temp files).
pub fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}
