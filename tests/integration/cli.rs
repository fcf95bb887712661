//! `ferry get`, the real binary, against the loopback server.

use crate::server::{Behaviour, TestServer};
use crate::{content, hidden_files, sha256};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn ferry(home: &Path) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin!("ferry"));
    command
        .env("FERRY_HOME", home)
        .env_remove("FERRY_LOG")
        .stdin(Stdio::null());
    command
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("ferry runs"))
        .await
        .expect("join")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_downloads_every_url_into_the_folder() {
    let server = TestServer::start().await;
    server.put("/dir/one.bin", content(200_000, 30));
    server.put("/two%20words.txt", content(1000, 31));
    let home = tempfile::tempdir().expect("home");
    let out = tempfile::tempdir().expect("out");
    let mut command = ferry(home.path());
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
    let jobs = std::fs::read_dir(home.path().join("jobs"))
        .expect("jobs")
        .count();
    assert_eq!(jobs, 0, "the completed job left the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_reports_a_fatal_error_and_cancels() {
    let server = TestServer::start().await;
    server.put("/ok", content(1000, 32));
    let home = tempfile::tempdir().expect("home");
    let out = tempfile::tempdir().expect("out");
    let mut command = ferry(home.path());
    command
        .args(["get", "--quiet", "-o"])
        .arg(out.path())
        .arg(server.url("/ok"))
        .arg(server.url("/gone"));
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
    let home = tempfile::tempdir().expect("home");
    let out = tempfile::tempdir().expect("out");
    std::fs::write(out.path().join("f"), b"precious").expect("write");
    let mut command = ferry(home.path());
    command
        .args(["get", "--quiet", "-o"])
        .arg(out.path())
        .arg(server.url("/f"));
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
    let mut command = ferry(home.path());
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
    let home = tempfile::tempdir().expect("home");
    let mut command = ferry(home.path());
    command.arg("get");
    assert_eq!(run(command).await.status.code(), Some(2));
    let mut command = ferry(home.path());
    command.args(["get", "--priority", "urgent", "http://127.0.0.1/x"]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("foreground, high, normal or low"));
    let mut command = ferry(home.path());
    command.args(["get", "http://127.0.0.1/"]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("does not end in a file name"),
        "{}",
        stderr(&output)
    );
}

/// Starts `ferry get` on a stalling file and waits (reading its log) until a checkpoint of at
/// least `bytes` is saved; then interrupts it with `signal` and runs it again.
async fn interrupt_and_rerun(signal: i32, expected_exit: Option<i32>) {
    let server = TestServer::start().await;
    let data = content(2_000_000, 34);
    server.put("/big.bin", data.clone());
    server.behave("/big.bin", Behaviour::stall_after(700_000));
    let home = tempfile::tempdir().expect("home");
    let out = tempfile::tempdir().expect("out");
    let mut command = ferry(home.path());
    command
        .env("FERRY_LOG", "ferry=debug")
        .stderr(Stdio::piped());
    command
        .args(["get", "--quiet", "-o"])
        .arg(out.path())
        .arg(server.url("/big.bin"));
    let mut child = command.spawn().expect("spawn");
    let log = child.stderr.take().expect("stderr");
    let pid = child.id();
    let exit = tokio::task::spawn_blocking(move || {
        let mut sent = false;
        // Read to the end: the process keeps logging after the signal.
        for line in BufReader::new(log).lines() {
            let line = line.expect("log line");
            if !sent && line.contains("progress saved") && line.contains("checkpointed=700000") {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, signal) };
                sent = true;
            }
        }
        assert!(sent, "the checkpoint was never logged");
        child.wait().expect("wait")
    })
    .await
    .expect("join");
    assert_eq!(exit.code(), expected_exit);
    assert!(!out.path().join("big.bin").exists());
    server.behave("/big.bin", Behaviour::default());
    let mut command = ferry(home.path());
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
    let last = server
        .requests("/big.bin")
        .last()
        .and_then(|r| r.range.clone());
    assert_eq!(
        last.as_deref(),
        Some("bytes=700000-1999999"),
        "resumed, not restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_killed_mid_transfer_resumes_byte_exact() {
    interrupt_and_rerun(libc::SIGKILL, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_interrupted_by_ctrl_c_suspends_and_resumes() {
    interrupt_and_rerun(libc::SIGINT, Some(130)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_file_is_named() {
    let home = tempfile::tempdir().expect("home");
    std::fs::write(home.path().join("config.ron"), "(max_files_per_jobs: 5)").expect("write");
    let mut command = ferry(home.path());
    command.args(["get", "--quiet", "http://127.0.0.1:9/x"]);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("config.ron") && text.contains("max_files_per_jobs"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_on_the_same_data_exits_with_4() {
    let server = TestServer::start().await;
    server.put("/hold", content(100_000, 35));
    server.behave("/hold", Behaviour::stall_after(1000));
    let home = tempfile::tempdir().expect("home");
    let out = tempfile::tempdir().expect("out");
    let mut first = ferry(home.path());
    first.env("FERRY_LOG", "ferry=debug").stderr(Stdio::piped());
    first
        .args(["get", "--quiet", "-o"])
        .arg(out.path())
        .arg(server.url("/hold"));
    let mut child = first.spawn().expect("spawn");
    let log = child.stderr.take().expect("stderr");
    // Wait until the first engine is transferring (it logs its checkpoint).
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::task::spawn_blocking(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(log).lines().map_while(Result::ok) {
            if line.contains("progress saved")
                && let Some(ready) = ready.take()
            {
                let _ = ready.send(());
            }
        }
    });
    tokio::time::timeout(crate::PATIENCE, ready_rx)
        .await
        .expect("first engine runs")
        .expect("ready");
    let mut second = ferry(home.path());
    second
        .args(["get", "--quiet", "-o"])
        .arg(out.path())
        .arg(server.url("/hold"));
    let output = run(second).await;
    assert_eq!(output.status.code(), Some(4));
    assert!(
        stderr(&output).contains("another Ferry engine is already using"),
        "{}",
        stderr(&output)
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("join");
    assert_eq!(status.code(), Some(130));
    reader.await.expect("reader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_waits_through_transient_errors_and_says_so() {
    let server = TestServer::start().await;
    server.put("/busy.bin", content(1000, 36));
    server.behave("/busy.bin", Behaviour::status(503));
    let home = tempfile::tempdir().expect("home");
    let out = tempfile::tempdir().expect("out");
    let mut command = ferry(home.path());
    command.stderr(Stdio::piped());
    command
        .args(["get", "--quiet", "-o"])
        .arg(out.path())
        .arg(server.url("/busy.bin"));
    let mut child = command.spawn().expect("spawn");
    let log = child.stderr.take().expect("stderr");
    let pid = child.id();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(log).lines().map_while(Result::ok) {
            if line.contains("transient error") {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGINT) };
            }
            lines.push(line);
        }
        (lines, child.wait().expect("wait"))
    });
    let (lines, status) = tokio::time::timeout(crate::PATIENCE, lines)
        .await
        .expect("in time")
        .expect("join");
    let text = lines.join("\n");
    assert!(
        text.contains("BG_E_HTTP_ERROR_503 0x801901F7") && text.contains("retrying at"),
        "{text}"
    );
    assert!(text.contains("suspended"), "{text}");
    assert_eq!(status.code(), Some(130), "{text}");
}
