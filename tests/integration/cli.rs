//! `ferry get`, the real binary (through the service it starts), against the loopback server.

use crate::home::{Home, run, stderr};
use crate::server::{Behaviour, TestServer};
use crate::{content, hidden_files, sha256};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// `ferry get --quiet -o OUT URL...`
fn get_quiet(home: &Home, out: &Path, urls: &[String]) -> Command {
    let mut command = home.ferry();
    command.args(["get", "--quiet", "-o"]).arg(out).args(urls);
    command
}

/// A `ferry` process whose stderr is read line by line, so a test can act when a line appears.
/// Its stderr is read to the end (the process must never block or fail writing it).
pub struct Watched {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Watched {
    pub fn start(mut command: Command) -> Watched {
        let mut child = command.stderr(Stdio::piped()).spawn().expect("spawn");
        let log = child.stderr.take().expect("stderr");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Watched {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line for which `wanted` holds.
    pub async fn wait_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) {
        loop {
            let line = tokio::time::timeout(crate::PATIENCE, self.lines.recv()).await;
            match line {
                Ok(Some(line)) => {
                    let found = wanted(&line);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                _ => panic!("no line with {what}; stderr was:\n{}", self.seen.join("\n")),
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to end; returns all of its stderr and its status.
    pub async fn finish(mut self) -> (String, std::process::ExitStatus) {
        while let Ok(Some(line)) = tokio::time::timeout(crate::PATIENCE, self.lines.recv()).await {
            self.seen.push(line);
        }
        let mut child = self.child;
        let status = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
            .await
            .expect("join");
        (self.seen.join("\n"), status)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_downloads_every_url_into_the_folder() {
    let server = TestServer::start().await;
    server.put("/dir/one.bin", content(200_000, 30));
    server.put("/two%20words.txt", content(1000, 31));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let mut command = home.ferry();
    command.args(["get", "--quiet", "-o"]).arg(out.path());
    command
        .arg(server.url("/dir/one.bin"))
        .arg(server.url("/two%20words.txt"));
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        std::fs::read(out.path().join("one.bin")).expect("file"),
        content(200_000, 30)
    );
    assert_eq!(
        std::fs::read(out.path().join("two words.txt")).expect("file"),
        content(1000, 31)
    );
    assert!(hidden_files(out.path()).is_empty());
    let listed = home.client().jobs(true).await.expect("jobs");
    assert!(
        listed.len() == 1 && listed[0].state == ferry::job::JobState::Acknowledged,
        "the job is complete: {listed:?}"
    );
    // Once the service has stopped (its writes done), the store holds no job.
    home.ok(&["daemon", "--stop"]).await;
    let jobs = std::fs::read_dir(home.path().join("jobs"))
        .expect("jobs")
        .count();
    assert_eq!(jobs, 0, "the completed job left the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_reports_a_fatal_error_and_cancels() {
    let server = TestServer::start().await;
    server.put("/ok", content(1000, 32));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let command = get_quiet(&home, out.path(), &[server.url("/ok"), server.url("/gone")]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("BG_E_HTTP_ERROR_404 0x80190194"), "{text}");
    assert!(text.contains("/gone"), "{text}");
    assert!(text.contains("cancelled"), "{text}");
    assert!(
        std::fs::read_dir(out.path()).expect("dir").next().is_none(),
        "nothing left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_refuses_to_overwrite_unless_asked() {
    let server = TestServer::start().await;
    server.put("/f", content(500, 33));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    std::fs::write(out.path().join("f"), b"precious").expect("write");
    let command = get_quiet(&home, out.path(), &[server.url("/f")]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("ERROR_FILE_EXISTS") && text.contains("already exists"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(out.path().join("f")).expect("file"),
        b"precious"
    );
    assert_eq!(
        std::fs::read_dir(home.path().join("jobs"))
            .expect("jobs")
            .count(),
        0,
        "no job left"
    );
    let mut command = home.ferry();
    command
        .args(["get", "--quiet", "--overwrite", "-o"])
        .arg(out.path())
        .arg(server.url("/f"));
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        std::fs::read(out.path().join("f")).expect("file"),
        content(500, 33)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_with_2() {
    let home = Home::new();
    let mut command = home.ferry();
    command.arg("get");
    assert_eq!(run(command).await.status.code(), Some(2));
    let mut command = home.ferry();
    command.args(["get", "--priority", "urgent", "http://127.0.0.1/x"]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("foreground, high, normal or low"));
    let mut command = home.ferry();
    command.args(["get", "http://127.0.0.1/"]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("does not end in a file name"),
        "{}",
        stderr(&output)
    );
}

/// Starts `ferry get` on a stalling file and waits (on the service's events) until its checkpoint
/// is saved; then interrupts it — Ctrl+C on `get`, or `kill -9` of the service — and runs the same
/// command again, which must resume from the checkpoint.
async fn interrupt_and_rerun(kill_service: bool) {
    let server = TestServer::start().await;
    let data = content(2_000_000, 34);
    server.put("/big.bin", data.clone());
    server.behave("/big.bin", Behaviour::stall_after(700_000));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    home.ok(&["daemon"]).await;
    let mut events = home
        .client()
        .events(ferry::engine::Subscription::All)
        .await
        .expect("events");
    let first = Watched::start(get_quiet(&home, out.path(), &[server.url("/big.bin")]));
    home.wait_checkpoint(&mut events, 700_000).await;
    if kill_service {
        let pid = home.service_pid().expect("service runs");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    } else {
        first.signal(libc::SIGINT);
    }
    let (text, exit) = first.finish().await;
    if kill_service {
        assert_eq!(exit.code(), Some(8), "{text}");
        assert!(text.contains("cannot reach the Ferry service"), "{text}");
    } else {
        assert_eq!(exit.code(), Some(130), "{text}");
        assert!(text.contains("suspended"), "{text}");
    }
    assert!(!out.path().join("big.bin").exists());
    server.behave("/big.bin", Behaviour::default());
    let mut command = home.ferry();
    command
        .args(["get", "-o"])
        .arg(out.path())
        .arg(server.url("/big.bin"));
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("resuming job"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        sha256(&std::fs::read(out.path().join("big.bin")).expect("file")),
        sha256(&data)
    );
    assert_eq!(
        server.last_range("/big.bin").as_deref(),
        Some("bytes=700000-1999999"),
        "resumed, not restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_killed_mid_get_resumes_byte_exact() {
    interrupt_and_rerun(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_interrupted_by_ctrl_c_suspends_and_resumes() {
    interrupt_and_rerun(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_file_is_named() {
    let home = Home::new();
    std::fs::write(home.path().join("config.ron"), "(max_files_per_jobs: 5)").expect("write");
    let output = home.run(&["get", "--quiet", "http://127.0.0.1:9/x"]).await;
    assert_eq!(output.status.code(), Some(8));
    let text = stderr(&output);
    assert!(
        text.contains("config.ron") && text.contains("max_files_per_jobs"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_waits_through_transient_errors_and_says_so() {
    let server = TestServer::start().await;
    server.put("/busy.bin", content(1000, 36));
    server.behave("/busy.bin", Behaviour::status(503));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let command = get_quiet(&home, out.path(), &[server.url("/busy.bin")]);
    let mut get = Watched::start(command);
    get.wait_line("a transient error", |l| l.contains("transient error"))
        .await;
    get.signal(libc::SIGINT);
    let (text, status) = get.finish().await;
    assert!(
        text.contains("BG_E_HTTP_ERROR_503 0x801901F7") && text.contains("retrying at"),
        "{text}"
    );
    assert!(text.contains("suspended"), "{text}");
    assert_eq!(status.code(), Some(130), "{text}");
}

/// `ferry get --connections 16` while the service is killed (SIGKILL) five times, each time after
/// a newer checkpoint was saved: every piece resumes where its flushed bytes end, and the file is
/// byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixteen_connection_get_survives_five_kills_of_the_service() {
    const MIB: usize = 1 << 20;
    let server = TestServer::start().await;
    let data = content(24 * MIB, 38);
    server.put("/many.bin", data.clone());
    // 128 KiB/s per connection: 2 MiB/s on 16, about 12 s for the file.
    server.behave("/many.bin", Behaviour::rate(128 << 10));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let get = || {
        let mut command = get_quiet(&home, out.path(), &[server.url("/many.bin")]);
        command.args(["--connections", "16"]);
        command
    };
    let mut checkpoint = 0u64;
    for kill in 1..=5 {
        home.ok(&["daemon"]).await;
        let mut events = home
            .client()
            .events(ferry::engine::Subscription::All)
            .await
            .expect("events");
        let running = Watched::start(get());
        let newer = home
            .wait_event(&mut events, "a newer checkpoint", |e| {
                matches!(e, ferry::engine::EngineEvent::ProgressSaved { checkpointed, .. }
                    if *checkpointed > checkpoint)
            })
            .await;
        if let ferry::engine::EngineEvent::ProgressSaved { checkpointed, .. } = newer {
            checkpoint = checkpointed;
        }
        assert!(
            checkpoint < data.len() as u64,
            "kill {kill} comes mid-transfer"
        );
        let pid = home.service_pid().expect("service runs");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        crate::home::wait_exit(pid).await;
        let (text, exit) = running.finish().await;
        assert_eq!(exit.code(), Some(8), "{text}");
        assert!(!out.path().join("many.bin").exists());
    }
    let output = run(get()).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        sha256(&std::fs::read(out.path().join("many.bin")).expect("file")),
        sha256(&data)
    );
    assert!(hidden_files(out.path()).is_empty());
    let requests = server.requests("/many.bin");
    let whole = requests.iter().filter(|r| r.range.is_none()).count();
    assert_eq!(whole, 1, "resumed piece by piece, never restarted");
    assert!(
        server.most_sending_at_once() >= 8,
        "many connections at once: {}",
        server.most_sending_at_once()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_parallel_fetches_several_files_at_once() {
    let server = TestServer::start().await;
    let urls: Vec<String> = (0..6)
        .map(|i| {
            let path = format!("/p{i}.bin");
            server.put(&path, content(300_000, 40 + i));
            server.behave(&path, Behaviour::rate(1 << 20));
            server.url(&path)
        })
        .collect();
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let mut command = get_quiet(&home, out.path(), &urls);
    command.args(["--parallel", "6"]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for i in 0..6 {
        let saved = std::fs::read(out.path().join(format!("p{i}.bin"))).expect("file");
        assert_eq!(saved, content(300_000, 40 + i));
    }
    assert_eq!(server.most_sending_at_once(), 6, "all at once");
    let refused = home.run(&["get", "--parallel", "33", &urls[0]]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("give 1 to 32"),
        "{}",
        stderr(&refused)
    );
}
