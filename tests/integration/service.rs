//! The service and the job CLI: the real `ferry` binary (which starts the service by itself) in a
//! temp home, against the loopback test server.

use crate::home::{Home, run, stderr, stdout, wait_exit};
use crate::server::{Behaviour, TestServer};
use crate::{content, hidden_files, sha256};
use std::io::{Read, Write};

fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The keys of a JSON object, sorted.
fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb_from_create_to_complete() {
    let server = TestServer::start().await;
    server.put("/a.bin", content(300_000, 50));
    server.put("/b.bin", content(4_000, 51));
    server.put("/c.bin", content(5_000, 52));
    server.put("/r.bin", content(10_000, 53));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    assert!(!home.socket().exists());

    // create: the service starts by itself; the id is printed alone on stdout.
    let id = home.ok(&["create", "photos"]).await.trim().to_string();
    assert!(ferry::job::JobId::parse(&id).is_some(), "{id:?}");
    assert!(home.socket().exists(), "the service was started");
    let pid = home.service_pid().expect("service runs");

    // add: URL with the default local name (the current folder), a set file, ranges.
    let mut add = home.ferry();
    add.current_dir(out.path())
        .args(["add", "photos", &server.url("/a.bin")]);
    let output = run(add).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let set = out.path().join("list.txt");
    std::fs::write(
        &set,
        format!(
            "# two more\n{} {}\n\n{} {}\n",
            server.url("/b.bin"),
            out.path().join("b.bin").display(),
            server.url("/c.bin"),
            out.path().join("c c.bin").display()
        ),
    )
    .expect("set file");
    home.ok(&["add", &id[..8], "--set", &set.display().to_string()])
        .await;
    let ranged = out.path().join("r.part");
    home.ok(&[
        "add",
        &id,
        &server.url("/r.bin"),
        &ranged.display().to_string(),
        "--ranges",
        "0:100,9000:eof",
    ])
    .await;

    // set: properties show up in info --json.
    home.ok(&[
        "set",
        "photos",
        "--priority",
        "high",
        "--description",
        "holiday",
        "--min-retry-delay",
        "60",
        "--no-progress-timeout",
        "3600",
        "--max-download-time",
        "7200",
        "--notify-flags",
        "transferred,error",
        "--header",
        "X-Trace: 42",
        "--redirect-policy",
        "allow-report",
        "--name",
        "holiday photos",
        "--connections",
        "4",
        "--parallel-files",
        "3",
    ])
    .await;
    let info = parse_json(&home.ok(&["info", "holiday photos", "--json"]).await);
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["state"], "SUSPENDED");
    assert_eq!(info["type"], "DOWNLOAD");
    assert_eq!(info["priority"], "HIGH");
    assert_eq!(info["description"], "holiday");
    assert_eq!(info["minimum_retry_delay_secs"], 60);
    assert_eq!(info["no_progress_timeout_secs"], 3600);
    assert_eq!(info["max_download_time_secs"], 7200);
    assert_eq!(info["notify_flags"], 3);
    assert_eq!(info["custom_headers"][0], "X-Trace: 42");
    assert_eq!(info["redirect_policy"], "ALLOW_REPORT");
    assert_eq!(info["proxy_usage"], "PRECONFIG");
    assert_eq!(info["connections"], 4);
    assert_eq!(info["parallel_files"], 3);
    assert_eq!(
        info["limit_rate"],
        serde_json::Value::Null,
        "no limit of its own"
    );
    home.ok(&["set", "holiday photos", "--limit-rate", "1.5M"])
        .await;
    let info = parse_json(&home.ok(&["info", "holiday photos", "--json"]).await);
    assert_eq!(info["limit_rate"], "1536K");
    let text = home.ok(&["info", "holiday photos"]).await;
    assert!(text.contains("1536K (1572864 bytes per second)"), "{text}");
    home.ok(&["set", "holiday photos", "--limit-rate", "none"])
        .await;
    let info = parse_json(&home.ok(&["info", "holiday photos", "--json"]).await);
    assert_eq!(info["limit_rate"], serde_json::Value::Null, "lifted");
    let refused = home
        .run(&["set", "holiday photos", "--limit-rate", "2X"])
        .await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("unknown unit 'X'"),
        "{}",
        stderr(&refused)
    );
    home.ok(&["set", "holiday photos", "--connections", "default"])
        .await;
    let info = parse_json(&home.ok(&["info", "holiday photos", "--json"]).await);
    assert_eq!(info["connections"], serde_json::Value::Null, "the config's");
    let refused = home
        .run(&["set", "holiday photos", "--connections", "17"])
        .await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("give 1 to 16, or `default`"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(info["files_total"], 4);
    assert_eq!(info["bytes_total"], serde_json::Value::Null);
    assert_eq!(info["error"], serde_json::Value::Null);
    let time = |value: &serde_json::Value| -> ferry::job::Timestamp {
        serde_json::from_value(value.clone()).expect("a time")
    };
    assert_eq!(
        (time(&info["inactivity_deadline"]) - time(&info["modified"])).num_days(),
        90,
        "the BITS default inactivity timeout"
    );
    assert_eq!(
        info["files"][0]["local_path"],
        out.path().join("a.bin").display().to_string()
    );
    assert_eq!(info["files"][3]["ranges"], "0:100,9000:eof");
    assert_eq!(
        keys(&info["files"][0]),
        [
            "bytes_total",
            "bytes_transferred",
            "checksum",
            "checksum_verified",
            "completed",
            "local_path",
            "ranges",
            "remote_url",
            "temp_path",
            "transferred"
        ]
    );
    let text = home.ok(&["info", &id]).await;
    assert!(
        text.contains("STATE") && text.contains("SUSPENDED"),
        "{text}"
    );
    assert!(text.contains("0 / UNKNOWN"), "{text}");

    // list and list --json.
    let table = home.ok(&["list"]).await;
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains(&id) && table.contains("SUSPENDED") && table.contains("0 / 4"),
        "{table}"
    );
    let list = parse_json(&home.ok(&["list", "--json"]).await);
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 1);
    assert_eq!(
        keys(&list[0]),
        [
            "bytes_total",
            "bytes_transferred",
            "files_total",
            "files_transferred",
            "id",
            "last_activity",
            "name",
            "priority",
            "state",
            "type"
        ]
    );
    assert_eq!(list[0]["name"], "holiday photos");

    // resume, wait, complete.
    let resumed = home.ok(&["resume", &id]).await;
    assert!(resumed.starts_with(&id), "{resumed}");
    let waited = home.ok(&["wait", &id, "--timeout", "60"]).await;
    assert!(waited.contains("TRANSFERRED"), "{waited}");
    let info = parse_json(&home.ok(&["info", &id, "--json"]).await);
    assert_eq!(info["bytes_total"], 300_000 + 4_000 + 5_000 + 100 + 1_000);
    assert_eq!(info["files_transferred"], 4);
    let completed = home.ok(&["complete", &id]).await;
    assert!(completed.contains("was completed"), "{completed}");
    assert_eq!(
        std::fs::read(out.path().join("a.bin")).expect("a"),
        content(300_000, 50)
    );
    assert_eq!(
        std::fs::read(out.path().join("b.bin")).expect("b"),
        content(4_000, 51)
    );
    assert_eq!(
        std::fs::read(out.path().join("c c.bin")).expect("c"),
        content(5_000, 52)
    );
    let r = content(10_000, 53);
    assert_eq!(
        std::fs::read(&ranged).expect("r"),
        [&r[..100], &r[9000..]].concat()
    );
    assert!(hidden_files(out.path()).is_empty());

    // The finished job left the queue; --all-states still shows how it ended.
    let list = parse_json(&home.ok(&["list", "--json"]).await);
    assert_eq!(list.as_array().map(Vec::len), Some(0));
    let all = parse_json(&home.ok(&["list", "--all-states", "--json"]).await);
    assert_eq!(all[0]["state"], "ACKNOWLEDGED");
    // Everything ran on the one service that `create` started.
    assert_eq!(home.service_pid(), Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_and_ambiguity_lists_the_candidates() {
    let home = Home::new();
    let first = home.ok(&["create", "twin"]).await.trim().to_string();
    let second = home.ok(&["create", "twin"]).await.trim().to_string();
    let output = home.run(&["info", "twin"]).await;
    assert_eq!(output.status.code(), Some(5));
    let text = stderr(&output);
    assert!(text.contains("matches 2 jobs"), "{text}");
    assert!(text.contains(&first) && text.contains(&second), "{text}");
    let output = home.run(&["suspend", "nothing-like-it"]).await;
    assert_eq!(output.status.code(), Some(5));
    assert!(
        stderr(&output).contains("BG_E_NOT_FOUND 0x80200001"),
        "{}",
        stderr(&output)
    );
    // The full id (with or without braces) and a unique prefix both work.
    home.ok(&["set", &format!("{{{first}}}"), "--name", "one"])
        .await;
    let prefix = &second[..13];
    home.ok(&["set", prefix, "--name", "two"]).await;
    let info = parse_json(&home.ok(&["info", "two", "--json"]).await);
    assert_eq!(info["id"], second.as_str());
    let info = parse_json(&home.ok(&["info", "one", "--json"]).await);
    assert_eq!(info["id"], first.as_str());
    // Jobs made here keep the BITS rule until asked otherwise.
    assert_eq!(info["complete_when_transferred"], false);
    home.ok(&["set", "one", "--complete-when-transferred", "true"])
        .await;
    let info = home.ok(&["info", "one"]).await;
    assert!(
        info.lines()
            .any(|l| l.starts_with("COMPLETE WHEN TRANSFERRED") && l.ends_with("true")),
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_name_the_problem() {
    let server = TestServer::start().await;
    let home = Home::with_config("max_jobs_per_user: 2");
    let out = tempfile::tempdir().expect("out");
    // 2: usage.
    assert_eq!(home.run(&["create"]).await.status.code(), Some(2));
    assert_eq!(
        home.run(&["set", "x", "--priority", "urgent"])
            .await
            .status
            .code(),
        Some(2)
    );
    // Defect: a huge idle exit panicked a task of the service.
    let huge = home
        .run(&[
            "daemon",
            "--foreground",
            "--idle-exit",
            "18446744073709551615",
        ])
        .await;
    assert_eq!(huge.status.code(), Some(2), "{}", stderr(&huge));
    // 1: bad input, with the BITS name.
    let output = home.run(&["set", "x"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("nothing to change"),
        "{}",
        stderr(&output)
    );
    let job = home.ok(&["create", "broken"]).await.trim().to_string();
    let output = home
        .run(&[
            "add",
            &job,
            &server.url("/x"),
            "/tmp/x",
            "--ranges",
            "100:0",
        ])
        .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("BG_E_INVALID_RANGE"),
        "{}",
        stderr(&output)
    );
    // 6: BG_E_INVALID_STATE (an upload job completes only when TRANSFERRED).
    let upload = home
        .ok(&["create", "--upload", "up"])
        .await
        .trim()
        .to_string();
    let output = home.run(&["complete", &upload]).await;
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("BG_E_INVALID_STATE 0x80200002"),
        "{}",
        stderr(&output)
    );
    // 7: a quota (two jobs per user in this config).
    let output = home.run(&["create", "third"]).await;
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("BG_E_TOO_MANY_JOBS_PER_USER"),
        "{}",
        stderr(&output)
    );
    home.ok(&["cancel", &upload]).await;
    // 124: wait ran out (the job is SUSPENDED).
    let output = home.run(&["wait", &job, "--timeout", "0.2"]).await;
    assert_eq!(output.status.code(), Some(124), "{}", stderr(&output));
    assert!(stderr(&output).contains("SUSPENDED"), "{}", stderr(&output));
    // 3: the job ended in ERROR; wait shows the error and leaves the job.
    let local = out.path().join("gone.bin").display().to_string();
    home.ok(&["add", &job, &server.url("/gone"), &local]).await;
    home.ok(&["resume", &job]).await;
    let output = home.run(&["wait", &job]).await;
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("BG_E_HTTP_ERROR_404 0x80190194"),
        "{}",
        stderr(&output)
    );
    let info = parse_json(&home.ok(&["info", &job, "--json"]).await);
    assert_eq!(info["state"], "ERROR");
    assert_eq!(info["error"]["code"], "BG_E_HTTP_ERROR_404");
    assert_eq!(info["error"]["hresult"], "0x80190194");
    assert_eq!(info["error"]["context"], "BG_ERROR_CONTEXT_REMOTE_FILE");
    assert_eq!(info["error"]["file"], 0);
    assert!(info["error_count"].is_u64(), "{info}");
    // 6 again: a job that has left the queue cannot be changed.
    home.ok(&["cancel", &job]).await;
    let output = home.run(&["resume", &job]).await;
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("has left the queue"),
        "{}",
        stderr(&output)
    );
    // 8: no service can be started (the runtime directory is a file).
    let blocked = out.path().join("not-a-dir");
    std::fs::write(&blocked, b"").expect("file");
    let mut command = home.ferry();
    command.env("FERRY_RUNTIME_DIR", &blocked).arg("list");
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(8), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("runtime directory"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_cancels_every_job_and_deletes_temp_files() {
    let server = TestServer::start().await;
    server.put("/slow.bin", content(2_000_000, 54));
    server.behave("/slow.bin", Behaviour::stall_after(700_000));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let running = home.ok(&["create", "running"]).await.trim().to_string();
    let local = out.path().join("slow.bin").display().to_string();
    home.ok(&["add", &running, &server.url("/slow.bin"), &local])
        .await;
    let mut events = home
        .client()
        .events(ferry::engine::Subscription::All)
        .await
        .expect("events");
    home.ok(&["resume", &running]).await;
    home.wait_checkpoint(&mut events, 700_000).await;
    assert_eq!(
        hidden_files(out.path()).len(),
        1,
        "a temp file while it runs"
    );
    let suspended = home.ok(&["suspend", "running"]).await;
    assert!(suspended.contains("is SUSPENDED"), "{suspended}");
    assert_eq!(
        hidden_files(out.path()).len(),
        1,
        "suspending keeps the temp file"
    );
    home.ok(&["create", "idle"]).await;
    let text = home.ok(&["reset"]).await;
    assert!(text.contains("2 out of 2 jobs cancelled."), "{text}");
    assert!(text.contains(&format!("{running} cancelled.")), "{text}");
    assert!(hidden_files(out.path()).is_empty());
    let list = parse_json(&home.ok(&["list", "--json"]).await);
    assert_eq!(list.as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shows_the_jobs_until_interrupted() {
    let home = Home::new();
    home.ok(&["create", "watched job"]).await;
    let mut command = home.ferry();
    command.args(["monitor", "--refresh", "30"]);
    let mut monitor = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("monitor");
    let stdout = monitor.stdout.take().expect("stdout");
    // Read to the end (a closed pipe would kill the monitor), passing on what arrives.
    let (tx, mut chunks) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut stdout = stdout;
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("watched job") {
        let chunk = tokio::time::timeout(crate::PATIENCE, chunks.recv()).await;
        match chunk {
            Ok(Some(chunk)) => seen.extend(chunk),
            _ => panic!(
                "the monitor showed no job: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    let screen = String::from_utf8_lossy(&seen).into_owned();
    assert!(screen.contains("MONITORING 1 job(s)"), "{screen}");
    assert!(screen.contains("SUSPENDED"), "{screen}");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.id() as i32, libc::SIGINT) };
    let status = tokio::task::spawn_blocking(move || monitor.wait().expect("wait"))
        .await
        .expect("join");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_service_is_refused() {
    let home = Home::new();
    home.ok(&["daemon"]).await;
    let pid = home.service_pid().expect("service runs");
    let output = home.run(&["daemon"]).await;
    assert_eq!(output.status.code(), Some(4));
    assert!(
        stderr(&output).contains("already runs"),
        "{}",
        stderr(&output)
    );
    let output = home.run(&["daemon", "--foreground"]).await;
    assert_eq!(output.status.code(), Some(4));
    assert!(
        stderr(&output).contains("another Ferry service is already running"),
        "{}",
        stderr(&output)
    );
    let status = home.ok(&["daemon", "--status"]).await;
    assert!(status.contains(&format!("pid:       {pid}")), "{status}");
    // --stop stops it; the next command starts a new one, with the jobs of the old.
    let job = home.ok(&["create", "kept"]).await.trim().to_string();
    home.ok(&["daemon", "--stop"]).await;
    wait_exit(pid).await;
    let output = home.run(&["daemon", "--status"]).await;
    assert_eq!(output.status.code(), Some(8));
    let info = parse_json(&home.ok(&["info", "kept", "--json"]).await);
    assert_eq!(info["id"], job.as_str());
    assert_ne!(home.service_pid(), Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_started_together_share_one_service() {
    let home = Home::new();
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let mut command = home.ferry();
            command.args(["create", &format!("job {i}")]);
            tokio::spawn(run(command))
        })
        .collect();
    for run in runs {
        let output = run.await.expect("join");
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    let status = home.client().status().await.expect("status");
    assert_eq!(status.jobs, 4, "every command reached the same service");
    assert_eq!(home.service_pid(), Some(status.pid as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_service_exits_and_is_started_again() {
    let home = Home::with_config("service_idle_exit_secs: 1");
    home.ok(&["list"]).await;
    let pid = home.service_pid().expect("service runs");
    wait_exit(pid).await;
    assert!(!home.socket().exists(), "the socket is removed on exit");
    home.ok(&["list"]).await;
    assert!(home.service_pid().is_some_and(|p| p != pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: running a client as another user needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    home.ok(&["daemon"]).await;
    // Open the doors that normally keep other users out, so that the peer check is what refuses.
    for (path, mode) in [
        (home.path().to_path_buf(), 0o755),
        (home.path().join("run"), 0o755),
        (home.socket(), 0o666),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let nobody = Nobody::new();
    let output = run(nobody.ferry(&home.path().join("run"), &["list"])).await;
    assert_eq!(output.status.code(), Some(8), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("E_ACCESSDENIED 0x80070005"), "{text}");
    assert!(text.contains("uid 65534 may not use it"), "{text}");
    // The owner is still served.
    home.ok(&["list"]).await;
}

/// The user nobody (uid 65534), with a home and a copy of the binary it can reach (it may not be
/// able to reach the build directory). Needs root.
struct Nobody {
    home: tempfile::TempDir,
}

impl Nobody {
    fn new() -> Nobody {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().expect("nobody's home");
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::copy(
            assert_cmd::cargo::cargo_bin!("ferry"),
            home.path().join("ferry"),
        )
        .expect("copy");
        std::os::unix::fs::chown(home.path(), Some(65534), Some(65534)).expect("chown");
        Nobody { home }
    }

    /// `ferry ARGS` as nobody, with `runtime` as its FERRY_RUNTIME_DIR.
    fn ferry(&self, runtime: &std::path::Path, args: &[&str]) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(self.home.path().join("ferry"));
        command
            .env("FERRY_HOME", self.home.path())
            .env("FERRY_MACHINE_DIR", self.home.path().join("machine"))
            .env("FERRY_RUNTIME_DIR", runtime)
            .env_remove("FERRY_LOG")
            .current_dir(self.home.path())
            .stdin(std::process::Stdio::null())
            .args(args)
            .uid(65534)
            .gid(65534);
        command
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_machine_limit_counts_every_users_jobs() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a second user's service needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let shared = tempfile::tempdir().expect("shared");
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let machine = shared.path().join("machine");
    // Root's service makes the registry (root's, mode 1777) when it first starts.
    let root = Home::with_config("max_jobs_per_machine: 3, admin_exempt_from_quotas: true");
    let as_root = |args: &[&str]| {
        let mut command = root.ferry();
        command.env("FERRY_MACHINE_DIR", &machine).args(args);
        run(command)
    };
    for name in ["root-a", "root-b"] {
        let output = as_root(&["create", name]).await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    let mode = std::fs::metadata(&machine)
        .expect("registry")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o1777);
    let nobody = Nobody::new();
    std::fs::write(
        nobody.home.path().join("config.ron"),
        "(max_jobs_per_machine: 3, watch_network: false)",
    )
    .expect("config");
    let runtime = nobody.home.path().join("run");
    let as_nobody = |args: &[&str]| {
        let mut command = nobody.ferry(&runtime, args);
        command.env("FERRY_MACHINE_DIR", &machine);
        run(command)
    };
    let output = as_nobody(&["create", "mine"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // 2 of root's and 1 of nobody's: the machine is full for nobody.
    let output = as_nobody(&["create", "one too many"]).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(7), "{text}");
    assert!(text.contains("BG_E_TOO_MANY_JOBS_PER_MACHINE"), "{text}");
    assert!(text.contains("3 jobs, 2 of them other users'"), "{text}");
    // Root is exempt, and its jobs still count.
    let output = as_root(&["create", "root-c"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // A job root ends frees its slot for everyone.
    for name in ["root-a", "root-c"] {
        let output = as_root(&["cancel", name]).await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    let output = as_nobody(&["create", "now it fits"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Each service's record is its own user's file, with its count.
    use std::os::unix::fs::MetadataExt;
    let records: Vec<(u32, String)> = std::fs::read_dir(&machine)
        .expect("registry")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains('.'))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let uid = e.metadata().expect("meta").uid();
            let record = std::fs::read_to_string(e.path()).expect("record");
            (uid, record.lines().next().unwrap_or_default().to_string())
        })
        .collect();
    assert!(records.contains(&(65534, "2".into())), "{records:?}");
    assert!(records.contains(&(0, "1".into())), "{records:?}");
    let _ = as_nobody(&["daemon", "--stop"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_runtime_directory_is_access_denied_in_plain_words() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: running a client as another user needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    home.ok(&["daemon"]).await;
    let runtime = home.path().join("run");
    let nobody = Nobody::new();
    let denied = |output: &std::process::Output, what: &str| {
        let text = stderr(output);
        assert_eq!(output.status.code(), Some(8), "{what}: {text}");
        assert!(text.contains("E_ACCESSDENIED 0x80070005"), "{what}: {text}");
        assert!(
            text.contains("each user has a Ferry service of their own"),
            "{what}: {text}"
        );
        assert!(!text.contains("cannot prepare"), "{what}: {text}");
        assert!(!text.contains("  "), "one sentence, no gaps: {text}");
        text
    };
    // The service's home is closed (0700): nobody cannot even look into it.
    for args in [&["list"][..], &["daemon"][..]] {
        let output = run(nobody.ferry(&runtime, args)).await;
        let text = denied(&output, "closed home");
        assert!(
            text.contains("may not enter the runtime directory"),
            "{text}"
        );
        assert!(text.contains("belongs to root (uid 0)"), "{text}");
    }
    // Open folders, but the runtime directory and the socket (0600) are root's.
    for path in [home.path().to_path_buf(), runtime.clone()] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for args in [&["list"][..], &["daemon"][..]] {
        let output = run(nobody.ferry(&runtime, args)).await;
        let text = denied(&output, "root's runtime directory");
        assert!(
            text.contains("the runtime directory")
                && text.contains("belongs to root (uid 0), and you are nobody (uid 65534)"),
            "{text}"
        );
    }
    // Nothing was started or changed there: the owner's service still serves.
    assert!(home.service_pid().is_some());
    home.ok(&["list"]).await;
}

/// Sends raw bytes to the socket and returns the whole answer.
fn raw(socket: &std::path::Path, request: &[u8]) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    // The service may answer and close before it has read everything (a body too large).
    let _ = stream.write_all(request);
    // Every request says `Connection: close` (or is not HTTP): the service closes when done.
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_errors_and_the_service_stays() {
    let home = Home::new();
    home.ok(&["daemon"]).await;
    let socket = home.socket();
    let answers = tokio::task::spawn_blocking(move || {
        [
            raw(&socket, b"THIS IS NOT HTTP\r\n\r\n"),
            raw(
                &socket,
                b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{bad:",
            ),
            raw(
                &socket,
                b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"name\": 42 }\n",
            ),
            raw(
                &socket,
                b"GET /v1/jobs/not-an-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ),
            raw(
                &socket,
                b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ),
            raw(
                &socket,
                b"PATCH /v1/jobs/6f1c3c52-3f4e-4f59-a0f3-2b0d9c1e4a7b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
            ),
            raw(
                &socket,
                b"DELETE /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ),
            raw(
                &socket,
                &[
                    &b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\nConnection: close\r\n\r\n"[..],
                    &vec![b' '; 3_000_000],
                ]
                .concat(),
            ),
        ]
    })
    .await
    .expect("join");
    assert!(
        answers[0].is_empty() || answers[0].starts_with("HTTP/1.1 400"),
        "{}",
        answers[0]
    );
    for answer in &answers[1..3] {
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("\"name\":\"E_INVALIDARG\""), "{answer}");
        assert!(answer.contains("docs/api.md"), "{answer}");
    }
    assert!(
        answers[3].starts_with("HTTP/1.1 400") && answers[3].contains("is not a job id"),
        "{}",
        answers[3]
    );
    assert!(
        answers[4].starts_with("HTTP/1.1 404") && answers[4].contains("no API route"),
        "{}",
        answers[4]
    );
    assert!(
        answers[5].starts_with("HTTP/1.1 404") && answers[5].contains("BG_E_NOT_FOUND"),
        "{}",
        answers[5]
    );
    // Errors of the HTTP layer come in the same JSON shape.
    assert!(answers[6].starts_with("HTTP/1.1 405"), "{}", answers[6]);
    assert!(
        answers[6].contains("\"name\":\"E_INVALIDARG\"")
            && answers[6].contains("does not take DELETE"),
        "{}",
        answers[6]
    );
    assert!(answers[7].starts_with("HTTP/1.1 413"), "{}", answers[7]);
    assert!(answers[7].contains("too large"), "{}", answers[7]);
    // Still serving.
    let status = home.client().status().await.expect("status");
    assert_eq!(status.jobs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_state_changes_to_clients() {
    let server = TestServer::start().await;
    server.put("/e.bin", content(20_000, 55));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let client = home.client();
    home.ok(&["daemon"]).await;
    let mut events = client
        .events(ferry::engine::Subscription::All)
        .await
        .expect("events");
    let id = home.ok(&["create", "evented"]).await.trim().to_string();
    let id = ferry::job::JobId::parse(&id).expect("id");
    let local = out.path().join("e.bin").display().to_string();
    home.ok(&["add", "evented", &server.url("/e.bin"), &local])
        .await;
    home.ok(&["resume", "evented"]).await;
    home.wait_event(
        &mut events,
        "TRANSFERRED",
        |e| matches!(e, ferry::engine::EngineEvent::JobTransferred { job } if *job == id),
    )
    .await;
    client.complete(id).await.expect("complete");
    home.wait_event(&mut events, "ACKNOWLEDGED", |e| {
        matches!(e, ferry::engine::EngineEvent::StateChanged { job, to: ferry::job::JobState::Acknowledged, .. } if *job == id)
    })
    .await;
    home.wait_event(&mut events, "a JobModification with the final progress", |e| {
        matches!(
            e,
            ferry::engine::EngineEvent::JobModification { job, state: ferry::job::JobState::Acknowledged, progress }
                if *job == id && progress.bytes_transferred == 20_000 && progress.files_transferred == 1
        )
    })
    .await;
    assert_eq!(
        sha256(&std::fs::read(out.path().join("e.bin")).expect("file")),
        sha256(&content(20_000, 55))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_tells_each_job_as_its_notify_flags_ask() {
    use ferry::engine::{EngineEvent, Subscription};
    use ferry::job::JobState;
    use ferry::service::client::ServiceEvent;
    let server = TestServer::start().await;
    server.put("/f.bin", content(20_000, 57));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let client = home.client();
    home.ok(&["daemon"]).await;
    let mut by_flags = client
        .events(Subscription::ByNotifyFlags)
        .await
        .expect("events");
    let mut all = client.events(Subscription::All).await.expect("events");
    // (name, notify flags)
    let jobs = [("quiet", "0x5"), ("modified", "0x8"), ("told", "0x1")];
    let mut ids = Vec::new();
    for (name, flags) in jobs {
        let id = home.ok(&["create", name]).await.trim().to_string();
        ids.push(ferry::job::JobId::parse(&id).expect("id"));
        home.ok(&["set", name, "--notify-flags", flags]).await;
        let local = out.path().join(name).display().to_string();
        home.ok(&["add", name, &server.url("/f.bin"), &local]).await;
        home.ok(&["resume", name]).await;
    }
    // The whole stream hears every job arrive, whatever its flags.
    for id in &ids {
        home.wait_event(&mut all, "TRANSFERRED on the whole stream", |e| {
            matches!(e, EngineEvent::StateChanged { job, to: JobState::Transferred, .. } if job == id)
        })
        .await;
    }
    // A last job's first state change marks the end of what the stream by flags has to say.
    let marker = home.ok(&["create", "marker"]).await.trim().to_string();
    let marker = ferry::job::JobId::parse(&marker).expect("id");
    home.ok(&["set", "marker", "--notify-flags", "0x8"]).await;
    let local = out.path().join("marker").display().to_string();
    home.ok(&["add", "marker", &server.url("/f.bin"), &local])
        .await;
    home.ok(&["resume", "marker"]).await;
    let mut heard: Vec<EngineEvent> = Vec::new();
    let collected = tokio::time::timeout(crate::PATIENCE, async {
        while let Some(Ok(ServiceEvent::Engine(event))) = by_flags.next().await {
            if matches!(event, EngineEvent::StateChanged { job, .. } if job == marker) {
                return;
            }
            heard.push(event);
        }
        panic!("the stream by notify flags ended");
    })
    .await;
    assert!(collected.is_ok(), "no marker event; heard {heard:?}");
    let of = |id: &ferry::job::JobId| -> Vec<&EngineEvent> {
        heard.iter().filter(|e| e.job() == Some(*id)).collect()
    };
    assert!(
        of(&ids[0]).is_empty(),
        "BG_NOTIFY_DISABLE: {:?}",
        of(&ids[0])
    );
    let modified = of(&ids[1]);
    assert!(
        modified.iter().any(|e| matches!(
            e,
            EngineEvent::StateChanged {
                to: JobState::Queued,
                ..
            }
        )),
        "JOB_MODIFICATION tells state changes: {modified:?}"
    );
    let a_modification = |e: &&EngineEvent| match e {
        EngineEvent::StateChanged { to, .. } => *to != JobState::Transferred,
        EngineEvent::JobModification { .. } => true,
        _ => false,
    };
    assert!(
        modified.iter().all(a_modification),
        "only modifications, none for the change into TRANSFERRED: {modified:?}"
    );
    let told = of(&ids[2]);
    assert!(
        matches!(told.as_slice(), [EngineEvent::JobTransferred { .. }]),
        "JOB_TRANSFERRED alone: {told:?}"
    );
    // The query is checked like any input.
    let socket = home.socket();
    let answer = tokio::task::spawn_blocking(move || {
        raw(
            &socket,
            b"GET /v1/events?everything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .expect("join");
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("all=true"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_remote_prefix_moves_a_running_job_to_another_mirror() {
    let old = TestServer::start().await;
    let new = TestServer::start().await;
    let (big, small) = (content(2_000_000, 62), content(30_000, 63));
    for server in [&old, &new] {
        server.put("/pub/big.iso", big.clone());
        server.put("/pub/small.iso", small.clone());
    }
    // The old mirror stops sending in the middle of the first file.
    old.behave("/pub/big.iso", Behaviour::stall_after(700_000));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    home.ok(&["create", "mirrored"]).await;
    for name in ["big.iso", "small.iso"] {
        let local = out.path().join(name).display().to_string();
        let url = old.url(&format!("/pub/{name}"));
        home.ok(&["add", "mirrored", &url, &local]).await;
    }
    let mut events = home
        .client()
        .events(ferry::engine::Subscription::All)
        .await
        .expect("events");
    home.ok(&["resume", "mirrored"]).await;
    home.wait_checkpoint(&mut events, 700_000).await;
    let (from, to) = (old.url("/pub/"), new.url("/pub/"));
    let said = home
        .ok(&["set", "mirrored", "--replace-remote-prefix", &from, &to])
        .await;
    assert!(said.contains("2 of 2 files now start with"), "{said}");
    home.ok(&["wait", "mirrored"]).await;
    // The same file on the new mirror (same size and Last-Modified): it went on from where it was.
    let ranges: Vec<Option<String>> = new
        .requests("/pub/big.iso")
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert!(
        ranges
            .iter()
            .all(|r| r.as_deref().is_some_and(|r| !r.starts_with("bytes=0-"))),
        "the new mirror was asked from the start: {ranges:?}"
    );
    assert!(!ranges.is_empty(), "nothing asked of the new mirror");
    assert!(old.requests("/pub/small.iso").is_empty());
    // No file matches now: S_FALSE, exit code 9, nothing changed.
    let output = home
        .run(&["set", "mirrored", "--replace-remote-prefix", &from, &to])
        .await;
    assert_eq!(output.status.code(), Some(9), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("S_FALSE") && stderr(&output).contains("nothing changed"),
        "{}",
        stderr(&output)
    );
    let output = home
        .run(&["set", "mirrored", "--replace-remote-prefix", "", &to])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("E_INVALIDARG")
            && stderr(&output).contains("prefix to replace is empty"),
        "{}",
        stderr(&output)
    );
    home.ok(&["complete", "mirrored"]).await;
    assert_eq!(std::fs::read(out.path().join("big.iso")).expect("big"), big);
    assert_eq!(
        std::fs::read(out.path().join("small.iso")).expect("small"),
        small
    );
    // Upload jobs keep their URL.
    home.ok(&["create", "--upload", "sent"]).await;
    let local = out.path().join("small.iso").display().to_string();
    home.ok(&["add", "sent", &new.url("/in/x"), &local]).await;
    let output = home
        .run(&[
            "set",
            "sent",
            "--replace-remote-prefix",
            "http://",
            "https://",
        ])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("E_NOTIMPL"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_pages_are_generated() {
    let home = Home::new();
    let output = home.run(&["completions", "bash"]).await;
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("ferry") && stdout(&output).contains("resume"));
    let dir = tempfile::tempdir().expect("man");
    home.ok(&["man", &dir.path().display().to_string()]).await;
    let page = std::fs::read_to_string(dir.path().join("ferry.1")).expect("ferry.1");
    assert!(page.contains(".TH ferry"), "{page}");
    assert!(dir.path().join("ferry-wait.1").exists());
    assert!(home.service_pid().is_none(), "these need no service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_standard_input_and_reach_the_server() {
    let server = TestServer::start().await;
    server.put("/private.bin", content(30_000, 56));
    server.behave(
        "/private.bin",
        Behaviour {
            digest_auth: Some(("alice".into(), "s3cret pass".into())),
            ..Default::default()
        },
    );
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let local = out.path().join("private.bin").display().to_string();
    home.ok(&["create", "private"]).await;
    home.ok(&["add", "private", &server.url("/private.bin"), &local])
        .await;
    let mut set = home.ferry();
    set.args(["set", "private", "--credentials", "digest:alice"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = set.spawn().expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"s3cret pass\n").expect("password");
        drop(stdin);
        child.wait_with_output().expect("wait")
    })
    .await
    .expect("join");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The password never reaches the store.
    let stored: Vec<String> = std::fs::read_dir(home.path().join("jobs"))
        .expect("jobs")
        .map(|entry| std::fs::read_to_string(entry.expect("entry").path()).expect("read"))
        .collect();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains("s3cret"), "{}", stored[0]);
    home.ok(&["resume", "private"]).await;
    home.ok(&["wait", "private"]).await;
    home.ok(&["complete", "private"]).await;
    assert_eq!(
        std::fs::read(out.path().join("private.bin")).expect("file"),
        content(30_000, 56)
    );
    let output = home
        .run(&["set", "private", "--credentials", "ntlm:alice"])
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("basic or digest"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_job_file_is_reported_by_the_commands() {
    let home = Home::new();
    let kept = home.ok(&["create", "kept"]).await.trim().to_string();
    let pid = home.service_pid().expect("service runs");
    home.ok(&["daemon", "--stop"]).await;
    wait_exit(pid).await;
    let damaged = home
        .path()
        .join("jobs")
        .join("6f1c3c52-3f4e-4f59-a0f3-2b0d9c1e4a7b.ron");
    std::fs::write(&damaged, b"(format: 1, job: (id: tru").expect("write");
    let output = home.run(&["list"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains(&kept), "the other jobs load");
    assert!(
        stderr(&output).contains("1 damaged job file(s) were moved to"),
        "{}",
        stderr(&output)
    );
    let status = home.ok(&["daemon", "--status"]).await;
    assert!(
        status.contains("damaged:") && status.contains("quarantine"),
        "{status}"
    );
    assert!(!damaged.exists());
    assert_eq!(
        std::fs::read_dir(home.path().join("quarantine"))
            .expect("quarantine")
            .count(),
        1,
        "moved aside, not deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_transfer_saves_and_the_next_service_resumes() {
    let server = TestServer::start().await;
    let data = content(2_000_000, 57);
    server.put("/term.bin", data.clone());
    server.behave("/term.bin", Behaviour::stall_after(900_000));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let local = out.path().join("term.bin").display().to_string();
    home.ok(&["create", "term"]).await;
    home.ok(&["add", "term", &server.url("/term.bin"), &local])
        .await;
    let mut events = home
        .client()
        .events(ferry::engine::Subscription::All)
        .await
        .expect("events");
    home.ok(&["resume", "term"]).await;
    home.wait_checkpoint(&mut events, 900_000).await;
    let pid = home.service_pid().expect("service runs");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_exit(pid).await;
    assert!(!home.socket().exists(), "a clean stop removes the socket");
    server.behave("/term.bin", Behaviour::default());
    // Any command starts the next service, which takes the job up where it stopped.
    home.ok(&["wait", "term"]).await;
    home.ok(&["complete", "term"]).await;
    assert_eq!(
        sha256(&std::fs::read(out.path().join("term.bin")).expect("file")),
        sha256(&data)
    );
    assert_eq!(
        server.last_range("/term.bin").as_deref(),
        Some("bytes=900000-1999999")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_is_validated_saved_and_applied_at_once() {
    let home = Home::new();
    home.ok(&["create", "first"]).await;
    let client = home.client();
    let mut config = client.config().await.expect("config");
    assert_eq!(config.max_jobs_per_user, 60);

    // Invalid: nothing is written, the error names the field.
    let mut bad = config.clone();
    bad.inactivity_warning_secs = bad.job_inactivity_timeout_secs;
    let refused = client.set_config(&bad).await.expect_err("invalid");
    assert!(
        refused.to_string().contains("inactivity_warning_secs"),
        "{refused}"
    );
    assert_eq!(client.config().await.expect("config"), config);

    // Valid: written to the config file and in force without a restart.
    config.max_jobs_per_user = 1;
    config.job_inactivity_timeout_secs = 30 * 86_400;
    config.inactivity_warning_secs = 86_400;
    config.watch_network = !config.watch_network;
    let saved = client.set_config(&config).await.expect("saved");
    assert_eq!(saved.restart_needed, vec!["watch_network".to_string()]);
    let on_disk = ferry::config::Config::load(&home.path().join("config.ron")).expect("file");
    assert_eq!(on_disk, config);
    let status = client.status().await.expect("status");
    assert_eq!(status.job_inactivity_timeout_secs, 30 * 86_400);
    let output = home.run(&["create", "second"]).await;
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert!(stderr(&output).contains("limit 1"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_limit_shows_and_changes_the_global_limits_in_the_config() {
    let home = Home::new();
    let shown = home.ok(&["limit"]).await;
    assert!(
        shown.starts_with("download none\nupload   none\n"),
        "none by default: {shown}"
    );
    assert!(
        shown.contains("background jobs use only idle bandwidth"),
        "{shown}"
    );
    assert!(shown.contains("schedule none"), "{shown}");
    let shown = home
        .ok(&["limit", "--download", "2M", "--upload", "512k"])
        .await;
    assert!(
        shown.starts_with(
            "download 2M (2097152 bytes per second)\nupload   512K (524288 bytes per second)\n"
        ),
        "{shown}"
    );
    let on_disk = ferry::config::Config::load(&home.path().join("config.ron")).expect("file");
    assert_eq!(
        on_disk.download_limit.map(|r| r.bytes_per_second()),
        Some(2 << 20)
    );
    assert_eq!(
        on_disk.upload_limit.map(|r| r.bytes_per_second()),
        Some(512 << 10)
    );
    let text = std::fs::read_to_string(home.path().join("config.ron")).expect("text");
    assert!(
        text.contains("download_limit: Some(\"2M\")"),
        "readable: {text}"
    );
    // One changed, the other kept.
    home.ok(&["limit", "--upload", "none"]).await;
    let json = parse_json(&home.ok(&["limit", "--json"]).await);
    assert_eq!(json["download"], "2M");
    assert_eq!(json["upload"], serde_json::Value::Null);
    assert_eq!(json["idle_bandwidth_for_background"], true);
    assert_eq!(json["in_effect"]["window"], serde_json::Value::Null);
    let refused = home.run(&["limit", "--download", "fast"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("give bytes per second like 500K"),
        "{}",
        stderr(&refused)
    );
}

/// Defect: a password in a URL was written to the job file and printed by `ferry info`; job
/// files were readable by every local user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_a_url_is_used_but_never_stored_or_shown() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    server.put("/private.bin", content(20_000, 58));
    server.behave(
        "/private.bin",
        Behaviour {
            basic_auth: Some(("alice".into(), "hunter2-s3cr3t".into())),
            ..Default::default()
        },
    );
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let local = out.path().join("private.bin").display().to_string();
    let url = server
        .url("/private.bin")
        .replace("http://", "http://alice:hunter2-s3cr3t@");
    home.ok(&["create", "private"]).await;
    home.ok(&["add", "private", &url, &local]).await;
    let info = home.ok(&["info", "private"]).await;
    assert!(!info.contains("hunter2"), "{info}");
    assert!(info.contains(&server.url("/private.bin")), "{info}");
    let json = home.ok(&["info", "--json", "private"]).await;
    assert!(!json.contains("hunter2"), "{json}");
    let jobs = home.path().join("jobs");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&jobs), 0o700);
    for entry in std::fs::read_dir(&jobs).expect("jobs") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    assert_eq!(mode(&home.path().join("service.log")), 0o600);
    home.ok(&["resume", "private"]).await;
    home.ok(&["wait", "private"]).await;
    home.ok(&["complete", "private"]).await;
    assert_eq!(
        std::fs::read(out.path().join("private.bin")).expect("file"),
        content(20_000, 58)
    );
}

/// Defect: `ferry daemon --status | true` panicked on the broken pipe; `list --json` died of
/// SIGPIPE (exit 141).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_commands_quietly() {
    let home = Home::new();
    home.ok(&["create", "one"]).await;
    for args in [
        &["daemon", "--status"][..],
        &["list", "--json"],
        &["list"],
        &["info", "one"],
        &["completions", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader); // every write to stdout gets EPIPE
        let mut command = home.ferry();
        command
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped());
        let output = run(command).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
}

/// Defect: a FIFO named `*.ron` in `jobs/` hung the service at start, and with it every client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_among_the_job_files_is_quarantined_not_waited_on() {
    let home = Home::new();
    let kept = home.ok(&["create", "kept"]).await.trim().to_string();
    let pid = home.service_pid().expect("service runs");
    home.ok(&["daemon", "--stop"]).await;
    wait_exit(pid).await;
    let fifo = home
        .path()
        .join("jobs")
        .join("0b7e0c4e-33a5-4c43-9a3b-0e3c2d1f5a6b.ron");
    let c_path = std::ffi::CString::new(fifo.display().to_string()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), home.run(&["list"]))
        .await
        .expect("the service starts despite the FIFO");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains(&kept));
    assert!(
        stderr(&output).contains("damaged job file(s) were moved to"),
        "{}",
        stderr(&output)
    );
    assert!(!fifo.exists());
}

/// Defect: a relative local path sent to the API got ERROR_PATH_NOT_FOUND with an empty folder
/// name; a NUL byte was accepted; a folder as destination got "allow replacing" advice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_paths_are_checked_with_clear_errors() {
    let home = Home::new();
    let id = home.ok(&["create", "paths"]).await.trim().to_string();
    let socket = home.socket();
    let folder = tempfile::tempdir().expect("folder");
    let folder_path = folder.path().display().to_string();
    let answers = tokio::task::spawn_blocking(move || {
        ["relative/x.iso", "/tmp/a\\u0000b", folder_path.as_str()]
            .map(|local| {
                let body = format!(
                    r#"{{"files":[{{"remote_url":"http://127.0.0.1:1/x","local_path":"{local}"}}]}}"#
                );
                let request = format!(
                    "POST /v1/jobs/{id}/files HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                raw(&socket, request.as_bytes())
            })
    })
    .await
    .expect("join");
    for (answer, why) in answers
        .iter()
        .zip(["must be absolute", "NUL", "is a folder"])
    {
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("E_INVALIDARG"), "{answer}");
        assert!(answer.contains(why), "{why}: {answer}");
        assert!(!answer.contains("replac"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_of_finished_jobs_survives_a_restart_and_can_be_cleared() {
    let server = TestServer::start().await;
    server.put("/kept.bin", content(4000, 81));
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let dest = out.path().join("kept.bin");
    let dest_text = dest.to_str().expect("utf-8 path");
    home.ok(&["create", "kept"]).await;
    home.ok(&["add", "kept", &server.url("/kept.bin"), dest_text])
        .await;
    home.ok(&["resume", "kept"]).await;
    home.ok(&["wait", "kept"]).await;
    home.ok(&["complete", "kept"]).await;
    home.ok(&["create", "dropped"]).await;
    home.ok(&["cancel", "dropped"]).await;
    let client = home.client();
    let history = client.history().await.expect("history");
    let names: Vec<&str> = history.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["dropped", "kept"], "newest first");
    assert_eq!(history[1].state, ferry::job::JobState::Acknowledged);
    assert_eq!(history[1].bytes, 4000);
    assert_eq!(history[1].files[0].local_path, dest);
    assert_eq!(history[0].state, ferry::job::JobState::Cancelled);

    let pid = home.service_pid().expect("service runs");
    home.ok(&["daemon", "--stop"]).await;
    wait_exit(pid).await;
    home.ok(&["list"]).await; // starts the service again
    let again = home
        .client()
        .history()
        .await
        .expect("history after restart");
    assert_eq!(again, history, "kept across the restart");

    home.client().clear_history().await.expect("clear");
    assert!(home.client().history().await.expect("history").is_empty());
    assert!(dest.exists(), "clearing the history leaves the files");
    let pid = home.service_pid().expect("service runs");
    home.ok(&["daemon", "--stop"]).await;
    wait_exit(pid).await;
    home.ok(&["list"]).await;
    assert!(home.client().history().await.expect("history").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_takes_ownership_of_another_users_job_and_nothing_else() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: taking ownership of another user's job needs root and a second user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let body = content(200_000, 77);
    server.put("/theirs.bin", body.clone());
    let shared = tempfile::tempdir().expect("shared");
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let machine = shared.path().join("machine");
    let root = Home::new();
    let as_root = |args: &[&str]| {
        let mut command = root.ferry();
        command.env("FERRY_MACHINE_DIR", &machine).args(args);
        run(command)
    };
    // Root's service makes the registry, in which nobody's service records where it is.
    let output = as_root(&["list"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let nobody = Nobody::new();
    std::fs::write(
        nobody.home.path().join("config.ron"),
        "(watch_network: false, modification_interval_ms: 10)",
    )
    .expect("config");
    let out = nobody.home.path().join("out");
    let runtime = nobody.home.path().join("run");
    let as_nobody = |args: &[&str]| {
        let mut command = nobody.ferry(&runtime, args);
        command.env("FERRY_MACHINE_DIR", &machine);
        run(command)
    };
    let ok = async |output: std::process::Output| {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        stdout(&output).trim().to_string()
    };
    ok(as_nobody(&["list"]).await).await; // their service, and out/ as theirs
    std::fs::create_dir(&out).expect("out");
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).expect("chown");
    let target = out.join("theirs.bin");
    let id = ok(as_nobody(&["create", "theirs"]).await).await;
    ok(as_nobody(&[
        "add",
        "theirs",
        &server.url("/theirs.bin"),
        &target.display().to_string(),
    ])
    .await)
    .await;
    ok(as_nobody(&[
        "set",
        "theirs",
        "--header",
        "X-Token: nobody's secret",
        "--notify-cmd",
        "/bin/true",
    ])
    .await)
    .await;

    // Anyone but root is refused, and nothing moves.
    let output = as_nobody(&["take-ownership", "theirs", "--user", "nobody"]).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(8), "{text}");
    assert!(
        text.contains("E_ACCESSDENIED") && text.contains("only root"),
        "{text}"
    );
    assert!(ok(as_nobody(&["list"]).await).await.contains("theirs"));

    // Root takes it while nobody's service transfers it: it leaves that service and its store,
    // and goes on in root's from its checkpoint. (Root may read nobody's event stream.)
    server.behave("/theirs.bin", Behaviour::rate(100_000));
    let theirs_service =
        ferry::service::client::Client::new(&runtime.join("ferry.sock")).expect("client");
    let mut events = theirs_service
        .events(ferry::engine::Subscription::All)
        .await
        .expect("their events");
    ok(as_nobody(&["resume", "theirs"]).await).await;
    root.wait_event(&mut events, "a checkpoint of nobody's transfer", |e| {
        matches!(e, ferry::engine::EngineEvent::ProgressSaved { checkpointed, .. } if *checkpointed > 0)
    })
    .await;
    let output = as_root(&["take-ownership", &id[..8], "--user", "nobody"]).await;
    let said = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(said.contains("of nobody is now root's, QUEUED"), "{said}");
    root.wait_event(&mut events, "nobody's service telling the move", |e| {
        matches!(e, ferry::engine::EngineEvent::OwnerChanged { from, to, .. } if from == "nobody" && to == "root")
    })
    .await;
    server.behave("/theirs.bin", Behaviour::default());
    assert!(
        said.contains("Removed, as nobody's: custom headers, notify command line."),
        "{said}"
    );
    assert!(
        said.contains(&root.path().display().to_string()),
        "where it lives: {said}"
    );
    assert!(!ok(as_nobody(&["list"]).await).await.contains("theirs"));
    let leftovers: Vec<String> = std::fs::read_dir(nobody.home.path().join("jobs"))
        .expect("their jobs")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftovers.is_empty(),
        "nothing of the job stays with nobody: {leftovers:?}"
    );
    let info = parse_json(&ok(as_root(&["info", "theirs", "--json"]).await).await);
    assert_eq!(info["owner"], "root", "{info}");
    assert_eq!(info["custom_headers"], serde_json::json!([]), "{info}");
    assert!(info["notify_command"].is_null(), "{info}");
    // It runs as root's job now, to the file nobody asked for, without nobody's header, and
    // resumed where nobody's service left it.
    ok(as_root(&["wait", "theirs"]).await).await;
    let ranges: Vec<Option<String>> = server
        .requests("/theirs.bin")
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert!(
        ranges
            .last()
            .is_some_and(|r| r.as_deref().is_some_and(|r| !r.starts_with("bytes=0-"))),
        "root's service went on from the checkpoint: {ranges:?}"
    );
    ok(as_root(&["complete", "theirs"]).await).await;
    assert_eq!(
        sha256(&std::fs::read(&target).expect("done")),
        sha256(&body)
    );

    // With nobody's service stopped, root takes the job from the store itself, under its lock.
    let idle = ok(as_nobody(&["create", "idle"]).await).await;
    let forged = ok(as_nobody(&["create", "forged"]).await).await;
    let forged_target = out.join("forged.bin");
    ok(as_nobody(&[
        "add",
        "forged",
        &server.url("/theirs.bin"),
        &forged_target.display().to_string(),
    ])
    .await)
    .await;
    ok(as_nobody(&["daemon", "--stop"]).await).await;
    let output = as_root(&["take-ownership", "idle", "--user", "nobody"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("It had no credentials, custom headers or notify command line")
    );
    assert!(ok(as_root(&["list"]).await).await.contains(&idle[..8]));

    // A job file is its user's to write: one naming a file its user could not reach (here in
    // root's private home) is refused, and stays with its user.
    let job_file = nobody
        .home
        .path()
        .join("jobs")
        .join(format!("{forged}.ron"));
    let text = std::fs::read_to_string(&job_file).expect("their job file");
    let inside_root = root.path().join("forged.bin");
    std::fs::write(
        &job_file,
        text.replace(
            &forged_target.display().to_string(),
            &inside_root.display().to_string(),
        ),
    )
    .expect("forge");
    let output = as_root(&["take-ownership", "forged", "--user", "nobody"]).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(8), "{text}");
    assert!(text.contains("E_ACCESSDENIED"), "{text}");
    assert!(
        text.contains(&inside_root.display().to_string()),
        "names the file: {text}"
    );
    assert!(job_file.exists(), "the job stays nobody's");
    assert!(!ok(as_root(&["list"]).await).await.contains("forged"));
    let _ = as_root(&["daemon", "--stop"]).await;
}
