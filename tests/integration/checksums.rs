//! Checksums (`--checksum sha-256=HEX`): a file counts as transferred only once its bytes on disk
//! have the digest asked for; one that does not is not kept, the job is in ERROR naming both
//! digests, and Resume downloads it again. Through the engine, and the real binary.

use crate::home::{Home, run, stderr, stdout};
use crate::server::{Behaviour, TestServer};
use crate::{Harness, content, hidden_files, sha256};
use ferry::job::checksum::Checksum;
use ferry::job::{ErrorCode, JobState, JobType, NewFile, Priority};

/// The digest of `bytes` as a coreutils tool (`md5sum`, `sha512sum`) gives it.
fn digest_by(tool: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bytes");
    std::fs::write(&path, bytes).expect("write");
    let out = std::process::Command::new(tool)
        .arg(&path)
        .output()
        .expect(tool);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

fn checksum(text: &str) -> Option<Checksum> {
    Some(Checksum::parse(text).expect("checksum"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_does_not_match_its_checksum_is_not_kept_and_comes_again_on_resume() {
    let server = TestServer::start().await;
    let (served, wanted) = (content(300_000, 90), content(300_000, 91));
    server.put("/f.bin", served.clone());
    let mut h = Harness::new().await;
    let id = h
        .engine
        .create_job("checked", JobType::Download, Some(Priority::Foreground))
        .await
        .expect("create");
    let file = NewFile {
        remote_url: server.url("/f.bin"),
        local_path: h.out("f.bin"),
        ranges: None,
        checksum: checksum(&format!("sha-256={}", sha256(&wanted))),
    };
    h.engine.add_files(id, vec![file]).await.expect("add");
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Error).await;
    let error = job.error.expect("an error");
    assert_eq!(error.code, ErrorCode::ValidationFailed);
    assert_eq!(error.file, Some(0));
    let text = &error.description;
    assert!(
        text.contains(&h.out("f.bin").display().to_string()),
        "{text}"
    );
    assert!(text.contains(&sha256(&served)), "the actual digest: {text}");
    assert!(
        text.contains(&sha256(&wanted)),
        "the expected digest: {text}"
    );
    let file = &job.files[0];
    assert!(!file.transferred && !file.checksum_verified);
    assert_eq!(file.bytes_transferred, 0, "the file starts again");
    assert!(!h.out("f.bin").exists(), "nothing moved into place");

    // The server has the right file now: Resume fetches it whole, and it is kept.
    server.put("/f.bin", wanted.clone());
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert!(job.files[0].checksum_verified);
    h.engine.complete(id).await.expect("complete");
    assert_eq!(
        sha256(&std::fs::read(h.out("f.bin")).expect("file")),
        sha256(&wanted)
    );
    assert!(hidden_files(&h.out_dir()).is_empty(), "no temp file left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_split_over_connections_is_checked_whole_with_each_digest() {
    let server = TestServer::start().await;
    let big = content(6 << 20, 92);
    let small = content(5_000, 93);
    server.put("/big.bin", big.clone());
    // 2 MiB/s per connection: the file is split.
    server.behave("/big.bin", Behaviour::rate(2 << 20));
    server.put("/small.bin", small.clone());
    let md5_of_small = digest_by("md5sum", &small);
    let sha512_of_big = digest_by("sha512sum", &big);
    let mut h = Harness::new().await;
    let id = h
        .engine
        .create_job("two", JobType::Download, Some(Priority::Foreground))
        .await
        .expect("create");
    let files = vec![
        NewFile {
            remote_url: server.url("/big.bin"),
            local_path: h.out("big.bin"),
            ranges: None,
            checksum: checksum(&format!("SHA512:{}", sha512_of_big.to_uppercase())),
        },
        NewFile {
            remote_url: server.url("/small.bin"),
            local_path: h.out("small.bin"),
            ranges: None,
            checksum: checksum(&format!("md5={md5_of_small}")),
        },
    ];
    h.engine.add_files(id, files).await.expect("add");
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert!(
        job.files.iter().all(|f| f.checksum_verified),
        "{:?}",
        job.files
    );
    assert!(
        server.connections("/big.bin").len() >= 2,
        "the big file was split"
    );
    h.engine.complete(id).await.expect("complete");
    assert_eq!(
        sha256(&std::fs::read(h.out("big.bin")).expect("big")),
        sha256(&big)
    );
    assert_eq!(std::fs::read(h.out("small.bin")).expect("small"), small);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_checks_checksums_and_says_what_did_not_match() {
    let server = TestServer::start().await;
    let data = content(100_000, 94);
    server.put("/iso.bin", data.clone());
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let get = |checksum: String| {
        let mut command = home.ferry();
        command.args([
            "get",
            "--quiet",
            "-o",
            &out.path().display().to_string(),
            "--checksum",
            &checksum,
            &server.url("/iso.bin"),
        ]);
        run(command)
    };
    let wrong = "0".repeat(64);
    let output = get(format!("sha-256={wrong}")).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains("BG_E_VALIDATION_FAILED"), "{text}");
    assert!(
        text.contains(&wrong) && text.contains(&sha256(&data)),
        "{text}"
    );
    assert!(
        !out.path().join("iso.bin").exists(),
        "a file that did not match is not kept"
    );
    assert!(hidden_files(out.path()).is_empty(), "nor its temp file");

    let output = get(format!("sha-256={}", sha256(&data))).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        std::fs::read(out.path().join("iso.bin")).expect("file"),
        data
    );

    // A checksum that is not one is a usage error that says how to write it.
    let output = get("sha-256=abc".into()).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("64 hex digits") && text.contains("ALGORITHM=HEX"),
        "{text}"
    );

    // add --checksum, and info shows the digest and whether it was verified.
    let id = home.ok(&["create", "checked"]).await.trim().to_string();
    let target = out.path().join("again.bin");
    home.ok(&[
        "add",
        &id,
        &server.url("/iso.bin"),
        &target.display().to_string(),
        "--checksum",
        &format!("sha-256={}", sha256(&data)),
    ])
    .await;
    let info = home.ok(&["info", &id]).await;
    assert!(
        info.contains(&format!(
            "digest sha-256={} (checked when downloaded)",
            sha256(&data)
        )),
        "{info}"
    );
    home.ok(&["resume", &id]).await;
    home.ok(&["wait", &id]).await;
    let info = home.ok(&["info", &id]).await;
    assert!(info.contains("(verified)"), "{info}");
    let json = home.ok(&["info", &id, "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["files"][0]["checksum_verified"], true, "{json}");
    assert_eq!(
        json["files"][0]["checksum"],
        format!("sha-256={}", sha256(&data)),
        "{json}"
    );
    let output = home.run(&["complete", &id]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(std::fs::read(&target).expect("file"), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksums_file_gives_every_file_of_a_job_its_digest() {
    let server = TestServer::start().await;
    let (a, b) = (content(40_000, 95), content(60_000, 96));
    server.put("/rel/a.iso", a.clone());
    server.put("/rel/b.iso", b.clone());
    server.put(
        "/rel/SHA256SUMS",
        format!("{}  a.iso\n{} *b.iso\n", sha256(&a), sha256(&b)),
    );
    server.put(
        "/rel/BAD",
        format!("{}  a.iso\n{}  b.iso\n", sha256(&b), sha256(&b)),
    );
    server.put("/rel/SHORT", format!("{}  a.iso\n", sha256(&a)));
    let home = Home::new();
    let get = |sums: &str, out: &std::path::Path| {
        let mut command = home.ferry();
        command.args([
            "get",
            "--quiet",
            "-o",
            &out.display().to_string(),
            "--checksums",
            &server.url(sums),
            &server.url("/rel/a.iso"),
            &server.url("/rel/b.iso"),
        ]);
        run(command)
    };
    let good = tempfile::tempdir().expect("out");
    let output = get("/rel/SHA256SUMS", good.path()).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(std::fs::read(good.path().join("a.iso")).expect("a"), a);
    assert_eq!(std::fs::read(good.path().join("b.iso")).expect("b"), b);

    let bad = tempfile::tempdir().expect("out");
    let output = get("/rel/BAD", bad.path()).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains("BG_E_VALIDATION_FAILED") && text.contains("a.iso"),
        "{text}"
    );
    assert!(!bad.path().join("a.iso").exists());

    // A list without one of the files creates no job, and says which file it lacks.
    let output = get("/rel/SHORT", bad.path()).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("lists no b.iso"), "{text}");
    let output = get("/rel/none", bad.path()).await;
    let text = stderr(&output);
    assert!(
        text.contains("cannot use the checksums file") && text.contains("404"),
        "{text}"
    );
    assert!(
        !home.ok(&["list"]).await.contains("a.iso"),
        "no job was left behind"
    );
}
