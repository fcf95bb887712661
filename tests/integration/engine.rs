//! The engine over real HTTP on loopback.

use crate::server::{Behaviour, LAST_MODIFIED, TestServer};
use crate::{Harness, content, hidden_files, sha256, test_config};
use ferry::config::Config;
use ferry::engine::{CancelOutcome, CompleteOutcome, EngineEvent};
use ferry::job::{
    AuthScheme, Credentials, ErrorCode, ErrorContext, FileRange, JobState, JobType, NewFile,
    NotifyCommand, NotifyFlags, Priority, PropertyChange, RedirectMode, RedirectPolicy,
};
use std::sync::Arc;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_walks_every_state_to_acknowledged() {
    let server = TestServer::start().await;
    let data = content(300_000, 1);
    server.put("/a.bin", data.clone());
    let mut h = Harness::new().await;
    let id = h
        .download(Priority::Foreground, &[(&server.url("/a.bin"), "a.bin")])
        .await;
    let mut observer = h.engine.subscribe();
    assert_eq!(
        h.engine.job(id).await.expect("job").state,
        JobState::Suspended
    );
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert_eq!(job.progress().bytes_total, Some(300_000));
    assert_eq!(job.progress().bytes_transferred, 300_000);
    assert!(job.times.transfer_completed.is_some());
    assert!(
        !h.out("a.bin").exists(),
        "the file is not visible before Complete"
    );
    let outcome = h.engine.complete(id).await.expect("complete");
    assert_eq!(outcome, CompleteOutcome::Complete);
    let saved = std::fs::read(h.out("a.bin")).expect("file");
    assert_eq!(sha256(&saved), sha256(&data));
    assert!(hidden_files(&h.out_dir()).is_empty(), "no temp file left");
    // The modification time comes from Last-Modified.
    let mtime = std::fs::metadata(h.out("a.bin"))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(
        mtime,
        httpdate::parse_http_date(LAST_MODIFIED).expect("date")
    );
    // The job has left the queue (it stays readable a while), and its states were published in
    // order.
    assert!(h.engine.jobs().await.expect("jobs").is_empty());
    assert_eq!(
        h.engine.job(id).await.expect("still readable").state,
        JobState::Acknowledged
    );
    let mut states = vec![JobState::Suspended];
    while let Ok(event) = observer.try_recv() {
        if let EngineEvent::StateChanged { job, to, .. } = event
            && job == id
        {
            states.push(to);
        }
    }
    use JobState::*;
    assert_eq!(
        states,
        vec![
            Suspended,
            Queued,
            Connecting,
            Transferring,
            Transferred,
            Acknowledged
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_transfer_one_after_another_in_order() {
    let server = TestServer::start().await;
    for i in 0..5 {
        server.put(&format!("/f{i}"), content(10_000 + i, i as u64));
    }
    let mut h = Harness::new().await;
    let urls: Vec<String> = (0..5).map(|i| server.url(&format!("/f{i}"))).collect();
    let names: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, &str)> = urls
        .iter()
        .zip(&names)
        .map(|(u, n)| (u.as_str(), n.as_str()))
        .collect();
    let id = h.start(Priority::Normal, &files).await;
    h.wait_state(id, JobState::Transferred).await;
    assert_eq!(
        server.request_paths(),
        vec!["/f0", "/f1", "/f2", "/f3", "/f4"]
    );
    h.engine.complete(id).await.expect("complete");
    for i in 0..5 {
        assert_eq!(
            std::fs::read(h.out(&format!("f{i}"))).expect("file"),
            content(10_000 + i, i as u64)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_statuses_follow_the_transient_fatal_table() {
    let server = TestServer::start().await;
    let transient = [408u16, 409, 429, 500, 502, 503, 504, 306, 308];
    let fatal = [400u16, 401, 403, 404, 410, 416, 501, 505, 300, 304];
    let mut h = Harness::new().await;
    for (status, expected) in transient
        .iter()
        .map(|s| (*s, JobState::TransientError))
        .chain(fatal.iter().map(|s| (*s, JobState::Error)))
    {
        let path = format!("/s{status}");
        server.put(&path, content(100, 0));
        server.behave(&path, Behaviour::status(status));
        let id = h
            .start(
                Priority::Foreground,
                &[(&server.url(&path), &format!("s{status}"))],
            )
            .await;
        let job = h
            .wait_for(id, "an error state", |j| {
                matches!(j.state, JobState::Error | JobState::TransientError)
            })
            .await;
        assert_eq!(job.state, expected, "HTTP {status}");
        let error = job.current_error().expect("error object");
        assert_eq!(error.code, ErrorCode::Http(status), "HTTP {status}");
        assert_eq!(error.code.hresult(), 0x8019_0000 | u32::from(status));
        assert_eq!(error.context, ErrorContext::RemoteFile);
        assert_eq!(error.file, Some(0));
        h.engine.cancel(id).await.expect("cancel");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_error_raises_job_error_and_waits_for_the_user() {
    let server = TestServer::start().await;
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/missing"), "m")])
        .await;
    let event = h
        .wait_event("JobError", |e| matches!(e, EngineEvent::JobError { .. }))
        .await;
    let EngineEvent::JobError { job, error } = event else {
        unreachable!()
    };
    assert_eq!(job, id);
    assert_eq!(error.code.name(), "BG_E_HTTP_ERROR_404");
    assert!(
        error.description.contains("/missing"),
        "{}",
        error.description
    );
    // It stays in ERROR until the user acts: after a fix, Resume retries at once.
    server.put("/missing", content(1000, 9));
    h.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(h.engine.job(id).await.expect("job").state, JobState::Error);
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert_eq!(
        job.error_count, 0,
        "a first failure while connecting is not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_error_retries_after_the_minimum_delay() {
    let server = TestServer::start().await;
    server.put("/busy", content(5000, 2));
    server.behave(
        "/busy",
        Behaviour {
            status: Some(503),
            status_times: Some(2),
            ..Default::default()
        },
    );
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/busy"), "busy")])
        .await;
    let job = h
        .wait_for(id, "TRANSIENT_ERROR", |j| {
            j.state == JobState::TransientError
        })
        .await;
    let first_retry = job.retry.next_retry_at.expect("retry timer");
    assert_eq!(
        first_retry,
        crate::start_time() + chrono::Duration::seconds(600)
    );
    h.clock.advance(Duration::from_secs(599));
    // Nothing happens before the delay: the engine answers and the job still waits.
    assert_eq!(
        h.engine.job(id).await.expect("job").state,
        JobState::TransientError
    );
    assert_eq!(server.requests("/busy").len(), 1);
    h.clock.advance(Duration::from_secs(1));
    let job = h
        .wait_for(id, "second failure", |j| {
            j.state == JobState::TransientError && j.retry.consecutive_failures == 2
        })
        .await;
    // Exponential back-off: the second delay is twice the first.
    assert_eq!(
        job.retry.next_retry_at,
        Some(first_retry + chrono::Duration::seconds(1200))
    );
    assert_eq!(job.error_count, 1, "a failed retry counts");
    // Resume retries at once, ignoring the remaining delay.
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    assert_eq!(server.requests("/busy").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let server = TestServer::start().await;
    server.put("/later", content(100, 3));
    server.behave(
        "/later",
        Behaviour {
            status: Some(503),
            retry_after: Some("7200".into()),
            status_times: Some(1),
            ..Default::default()
        },
    );
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/later"), "later")])
        .await;
    let job = h
        .wait_for(id, "TRANSIENT_ERROR", |j| {
            j.state == JobState::TransientError
        })
        .await;
    assert_eq!(
        job.retry.next_retry_at,
        Some(crate::start_time() + chrono::Duration::seconds(7200))
    );
    h.clock.advance(Duration::from_secs(7199));
    assert_eq!(
        h.engine.job(id).await.expect("job").state,
        JobState::TransientError
    );
    h.clock.advance(Duration::from_secs(1));
    h.wait_state(id, JobState::Transferred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_progress_timeout_ends_retries_in_error() {
    let server = TestServer::start().await;
    server.put("/down", content(100, 4));
    server.behave("/down", Behaviour::status(500));
    let mut h = Harness::new().await;
    let id = h
        .download(Priority::Foreground, &[(&server.url("/down"), "down")])
        .await;
    // The BITS defaults: 600 s retry delay, 14-day no-progress timeout, crossed in milliseconds.
    h.engine.resume(id).await.expect("resume");
    let mut failures = 0;
    let job = loop {
        let job = h
            .wait_for(id, "an error state", |j| {
                j.state == JobState::Error
                    || (j.state == JobState::TransientError
                        && j.retry.consecutive_failures > failures)
            })
            .await;
        if job.state == JobState::Error {
            break job;
        }
        failures = job.retry.consecutive_failures;
        // To the next retry, or to the end of the timeout if that comes first.
        let deadline = crate::start_time() + chrono::Duration::days(14);
        let next = job.retry.next_retry_at.expect("timer").min(deadline);
        h.clock
            .advance((next - h.clock_now()).to_std().expect("future"));
    };
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::Http(500)
    );
    // ERROR when the timeout has elapsed since the first failure: not a retry delay early.
    let elapsed = h.clock_now() - crate::start_time();
    assert_eq!(
        elapsed,
        chrono::Duration::days(14),
        "gave up after {elapsed}"
    );
    // Back-off is capped at an hour: about 14 days of hourly retries.
    assert!(
        server.requests("/down").len() > 300,
        "{} attempts",
        server.requests("/down").len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_resumes_with_a_range_request() {
    let server = TestServer::start().await;
    let data = content(1_000_000, 5);
    server.put("/cut", data.clone());
    server.behave("/cut", Behaviour::cut_once_after(400_000));
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/cut"), "cut")])
        .await;
    let job = h
        .wait_for(id, "TRANSIENT_ERROR", |j| {
            j.state == JobState::TransientError
        })
        .await;
    let kept = job.files[0].bytes_transferred;
    // What arrived is kept (how much arrives before the reset is up to the kernels).
    assert!(kept <= 400_000, "{kept} bytes kept");
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::ConnectionError
    );
    assert_eq!(job.error_count, 1);
    h.clock.advance(Duration::from_secs(600));
    h.wait_state(id, JobState::Transferred).await;
    let requests = server.requests("/cut");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].range, None, "the first GET has no Range");
    let expected_range = (kept > 0).then(|| format!("bytes={kept}-999999"));
    assert_eq!(
        requests[1].range, expected_range,
        "the retry resumes where the data ends"
    );
    assert_eq!(
        requests[1].if_range.as_deref(),
        (kept > 0).then_some("\"v1000000\""),
        "a strong ETag guards the resume"
    );
    h.engine.complete(id).await.expect("complete");
    assert_eq!(
        sha256(&std::fs::read(h.out("cut")).expect("file")),
        sha256(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_times_out_as_a_transient_error() {
    let server = TestServer::start().await;
    server.put("/stall", content(100_000, 6));
    server.behave("/stall", Behaviour::stall_after(10_000));
    let config = Config {
        read_timeout_ms: 300,
        ..test_config()
    };
    let mut h = Harness::with_config(config).await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/stall"), "stall")])
        .await;
    let job = h
        .wait_for(id, "TRANSIENT_ERROR", |j| {
            j.state == JobState::TransientError
        })
        .await;
    assert_eq!(job.current_error().expect("error").code, ErrorCode::Timeout);
    assert_eq!(job.files[0].bytes_transferred, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requirements_missing_size_and_ranges() {
    let server = TestServer::start().await;
    let data = content(50_000, 7);
    server.put("/nolen", data.clone());
    server.behave(
        "/nolen",
        Behaviour {
            omit_length: true,
            ..Default::default()
        },
    );
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/nolen"), "nolen")])
        .await;
    let job = h.wait_state(id, JobState::Error).await;
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::MissingFileSize
    );
    h.engine.cancel(id).await.expect("cancel");

    // A dynamic-content job takes it anyway, size unknown until the end.
    let id = h
        .download(Priority::Foreground, &[(&server.url("/nolen"), "nolen")])
        .await;
    h.engine
        .set(id, PropertyChange::DynamicContent(true))
        .await
        .expect("dynamic");
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    h.engine.complete(id).await.expect("complete");
    assert_eq!(std::fs::read(h.out("nolen")).expect("file"), data);

    // A server that ignores Range cannot resume a normal job.
    server.put("/norange", content(500_000, 8));
    server.behave(
        "/norange",
        Behaviour {
            ignore_range: true,
            cut_after: Some(100_000),
            cut_times: 1,
            ..Default::default()
        },
    );
    let id = h
        .start(
            Priority::Foreground,
            &[(&server.url("/norange"), "norange")],
        )
        .await;
    h.wait_for(id, "TRANSIENT_ERROR", |j| {
        j.state == JobState::TransientError
    })
    .await;
    h.engine.resume(id).await.expect("retry now");
    let job = h.wait_state(id, JobState::Error).await;
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::InsufficientRangeSupport
    );
    assert_eq!(
        job.current_error().expect("error").code.hresult(),
        0x8020_0013
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_remote_file_restarts_from_zero() {
    let server = TestServer::start().await;
    let old = content(600_000, 10);
    let new = content(650_000, 11);
    let mut h = Harness::new().await;
    // Last-Modified and size change (BITS rule); and ETag alone changes (Ferry extension).
    for (path, etag_only) in [("/lm", false), ("/etag", true)] {
        server.put(path, old.clone());
        server.behave(path, Behaviour::cut_once_after(200_000));
        let id = h
            .start(Priority::Foreground, &[(&server.url(path), &path[1..])])
            .await;
        h.wait_for(id, "TRANSIENT_ERROR", |j| {
            j.state == JobState::TransientError
        })
        .await;
        let replacement = if etag_only {
            content(600_000, 12)
        } else {
            new.clone()
        };
        server.edit(path, |file| {
            file.content = replacement.clone().into();
            file.etag = Some("\"changed\"".into());
            if !etag_only {
                file.last_modified = Some("Thu, 22 Oct 2015 07:28:00 GMT".into());
            }
        });
        h.engine.resume(id).await.expect("retry now");
        let job = h.wait_state(id, JobState::Transferred).await;
        assert_eq!(job.files[0].bytes_total, Some(replacement.len() as u64));
        h.engine.complete(id).await.expect("complete");
        let saved = std::fs::read(h.out(&path[1..])).expect("file");
        assert_eq!(
            sha256(&saved),
            sha256(&replacement),
            "{path}: never a mix of two versions"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_ranges_are_concatenated_in_the_given_order() {
    let server = TestServer::start().await;
    let data = content(10_000, 13);
    server.put("/r", data.clone());
    let mut h = Harness::new().await;
    let id = h
        .engine
        .create_job("ranges", JobType::Download, Some(Priority::Foreground))
        .await
        .expect("create");
    let ranges = FileRange::parse_list("100:100,900:100,400:100,9000:eof").expect("ranges");
    let file = NewFile {
        remote_url: server.url("/r"),
        local_path: h.out("r"),
        ranges: Some(ranges),
        checksum: None,
    };
    h.engine.add_files(id, vec![file]).await.expect("add");
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert_eq!(job.files[0].bytes_total, Some(1300));
    h.engine.complete(id).await.expect("complete");
    let expected: Vec<u8> = [
        &data[100..200],
        &data[900..1000],
        &data[400..500],
        &data[9000..],
    ]
    .concat();
    assert_eq!(std::fs::read(h.out("r")).expect("file"), expected);
    let ranges: Vec<_> = server
        .requests("/r")
        .into_iter()
        .filter_map(|r| r.range)
        .collect();
    assert_eq!(
        ranges,
        vec![
            "bytes=100-199",
            "bytes=900-999",
            "bytes=400-499",
            // The first answer told the size: the range to the end is asked for exactly.
            "bytes=9000-9999"
        ]
    );

    // A range past the end of the file is an error after Resume.
    let id = h
        .engine
        .create_job("bad range", JobType::Download, Some(Priority::Foreground))
        .await
        .expect("create");
    let ranges = FileRange::parse_list("20000:10").expect("ranges");
    let file = NewFile {
        remote_url: server.url("/r"),
        local_path: h.out("bad"),
        ranges: Some(ranges),
        checksum: None,
    };
    h.engine.add_files(id, vec![file]).await.expect("add");
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Error).await;
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::InvalidRange
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_keeps_transferred_files_and_deletes_the_rest() {
    let server = TestServer::start().await;
    server.put("/done", content(20_000, 14));
    server.put("/slow", content(200_000, 15));
    server.behave("/slow", Behaviour::stall_after(50_000));
    server.put("/never", content(100, 16));
    let mut h = Harness::new().await;
    let id = h
        .start(
            Priority::Foreground,
            &[
                (&server.url("/done"), "done"),
                (&server.url("/slow"), "slow"),
                (&server.url("/never"), "never"),
            ],
        )
        .await;
    h.wait_for(id, "second file under way", |j| {
        j.files[1].bytes_transferred >= 50_000
    })
    .await;
    assert_eq!(
        hidden_files(&h.out_dir()).len(),
        2,
        "temp files of files 1 and 2"
    );
    let outcome = h.engine.complete(id).await.expect("complete");
    assert_eq!(outcome, CompleteOutcome::PartialComplete);
    assert_eq!(
        std::fs::read(h.out("done")).expect("file"),
        content(20_000, 14)
    );
    assert!(!h.out("slow").exists() && !h.out("never").exists());
    assert!(
        hidden_files(&h.out_dir()).is_empty(),
        "partial temp file deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_every_temp_file() {
    let server = TestServer::start().await;
    server.put("/one", content(20_000, 17));
    server.put("/two", content(200_000, 18));
    server.behave("/two", Behaviour::stall_after(30_000));
    let mut h = Harness::new().await;
    let id = h
        .start(
            Priority::Foreground,
            &[(&server.url("/one"), "one"), (&server.url("/two"), "two")],
        )
        .await;
    h.wait_for(id, "second file under way", |j| {
        j.files[1].bytes_transferred >= 30_000
    })
    .await;
    assert_eq!(
        h.engine.cancel(id).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    let out = h.dir.path().join("out");
    assert!(
        std::fs::read_dir(&out).expect("dir").next().is_none(),
        "nothing left in {out:?}"
    );
    assert_eq!(
        h.engine.cancel(id).await.expect_err("gone").code,
        ErrorCode::InvalidState
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_destination_is_never_overwritten_silently() {
    let server = TestServer::start().await;
    server.put("/x", content(1000, 19));
    let mut h = Harness::new().await;
    std::fs::write(h.out("taken"), b"mine").expect("write");
    let id = h
        .engine
        .create_job("x", JobType::Download, Some(Priority::Foreground))
        .await
        .expect("create");
    let file = |name: &str| NewFile {
        remote_url: server.url("/x"),
        local_path: h.out(name),
        ranges: None,
        checksum: None,
    };
    let err = h
        .engine
        .add_files(id, vec![file("taken")])
        .await
        .expect_err("exists");
    assert_eq!(err.code, ErrorCode::FileExists);
    assert!(err.message.contains("already exists"), "{}", err.message);

    // A file that appears while the job runs: Complete refuses, the job stays TRANSFERRED.
    h.engine
        .add_files(id, vec![file("late")])
        .await
        .expect("add");
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    std::fs::write(h.out("late"), b"someone else's").expect("write");
    let err = h.engine.complete(id).await.expect_err("refused");
    assert_eq!(err.code, ErrorCode::FileExists);
    assert_eq!(
        h.engine.job(id).await.expect("job").state,
        JobState::Transferred
    );
    assert_eq!(
        std::fs::read(h.out("late")).expect("file"),
        b"someone else's"
    );
    // The user allows replacing, completes again: done.
    h.engine
        .set(id, PropertyChange::ReplaceExisting(true))
        .await
        .expect("set");
    assert_eq!(
        h.engine.complete(id).await.expect("complete"),
        CompleteOutcome::Complete
    );
    assert_eq!(
        std::fs::read(h.out("late")).expect("file"),
        content(1000, 19)
    );
    assert_eq!(std::fs::read(h.out("taken")).expect("file"), b"mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_enforced_with_their_bits_errors() {
    let config = Config {
        max_jobs_per_user: 2,
        max_files_per_job: 3,
        max_ranges_per_file: 2,
        ..test_config()
    };
    let mut h = Harness::with_config(config).await;
    let a = h
        .engine
        .create_job("a", JobType::Download, None)
        .await
        .expect("first");
    h.engine
        .create_job("b", JobType::Download, None)
        .await
        .expect("second");
    let err = h
        .engine
        .create_job("c", JobType::Download, None)
        .await
        .expect_err("third");
    assert_eq!(err.code, ErrorCode::TooManyJobsPerUser);
    assert_eq!(err.code.hresult(), 0x8020_0049);
    let event = h
        .wait_event("QuotaExceeded", |e| {
            matches!(e, EngineEvent::QuotaExceeded { .. })
        })
        .await;
    assert!(matches!(
        event,
        EngineEvent::QuotaExceeded {
            code: ErrorCode::TooManyJobsPerUser,
            ..
        }
    ));
    // Finishing a job frees its place.
    h.engine.cancel(a).await.expect("cancel");
    let c = h
        .engine
        .create_job("c", JobType::Download, None)
        .await
        .expect("room again");

    let file = |i: usize| NewFile {
        remote_url: format!("http://127.0.0.1:9/f{i}"),
        local_path: h.out(&format!("f{i}")),
        ranges: None,
        checksum: None,
    };
    let err = h
        .engine
        .add_files(c, (0..4).map(file).collect())
        .await
        .expect_err("files");
    assert_eq!(err.code, ErrorCode::TooManyFilesInJob);
    assert!(
        h.engine.job(c).await.expect("job").files.is_empty(),
        "all or nothing"
    );
    h.engine
        .add_files(c, (0..3).map(file).collect())
        .await
        .expect("three fit");

    let err = h
        .engine
        .add_files(c, vec![file(9)])
        .await
        .expect_err("a fourth file");
    assert_eq!(err.code, ErrorCode::TooManyFilesInJob);
    assert_eq!(h.engine.job(c).await.expect("job").files.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_ranges_in_a_file() {
    let config = Config {
        max_ranges_per_file: 2,
        ..test_config()
    };
    let h = Harness::with_config(config).await;
    let id = h
        .engine
        .create_job("r", JobType::Download, None)
        .await
        .expect("create");
    let file = NewFile {
        remote_url: "http://127.0.0.1:9/r".into(),
        local_path: h.out("r"),
        ranges: Some(FileRange::parse_list("0:1,5:1,9:1").expect("ranges")),
        checksum: None,
    };
    let err = h
        .engine
        .add_files(id, vec![file])
        .await
        .expect_err("ranges");
    assert_eq!(err.code, ErrorCode::TooManyRangesInFile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_is_exempt_from_quotas_unless_configured_otherwise() {
    if !ferry::platform::User::current().is_admin() {
        eprintln!("skipped: the exemption applies to root and this test does not run as root");
        return;
    }
    let config = Config {
        max_jobs_per_user: 1,
        admin_exempt_from_quotas: true,
        ..test_config()
    };
    let h = Harness::with_config(config).await;
    for name in ["a", "b", "c"] {
        h.engine
            .create_job(name, JobType::Download, None)
            .await
            .expect("exempt");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactivity_warns_then_cancels() {
    let server = TestServer::start().await;
    server.put("/idle", content(100_000, 20));
    server.behave("/idle", Behaviour::stall_after(40_000));
    let mut h = Harness::with_config(Config {
        read_timeout_ms: 300,
        ..test_config()
    })
    .await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/idle"), "idle")])
        .await;
    h.wait_for(id, "TRANSIENT_ERROR", |j| {
        j.state == JobState::TransientError
    })
    .await;
    h.engine.suspend(id).await.expect("suspend");
    assert_eq!(hidden_files(&h.out_dir()).len(), 1, "a partial temp file");
    let modified = h.engine.job(id).await.expect("job").times.modified;
    h.clock.advance(Duration::from_secs(83 * 86_400 - 60));
    assert_eq!(
        h.engine.job(id).await.expect("job").state,
        JobState::Suspended
    );
    h.clock.advance(MINUTE);
    let event = h
        .wait_event("InactivityWarning", |e| {
            matches!(e, EngineEvent::InactivityWarning { .. })
        })
        .await;
    assert_eq!(
        event,
        EngineEvent::InactivityWarning {
            job: id,
            deadline: modified + chrono::Duration::days(90)
        }
    );
    h.clock.advance(Duration::from_secs(7 * 86_400));
    let event = h
        .wait_event("InactivityCancelled", |e| {
            matches!(e, EngineEvent::InactivityCancelled { .. })
        })
        .await;
    assert_eq!(event, EngineEvent::InactivityCancelled { job: id });
    assert!(h.engine.jobs().await.expect("jobs").is_empty());
    assert_eq!(
        h.engine.job(id).await.expect("still readable").state,
        JobState::Cancelled
    );
    assert!(hidden_files(&h.out_dir()).is_empty(), "temp file deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_download_time_puts_the_job_in_error() {
    let server = TestServer::start().await;
    server.put("/long", content(100_000, 21));
    server.behave("/long", Behaviour::stall_after(1000));
    let mut h = Harness::new().await;
    let id = h
        .download(Priority::Foreground, &[(&server.url("/long"), "long")])
        .await;
    h.engine
        .set(
            id,
            PropertyChange::MaxDownloadTime(Duration::from_secs(3600)),
        )
        .await
        .expect("set");
    h.engine.resume(id).await.expect("resume");
    h.wait_for(id, "bytes flowing", |j| {
        j.files[0].bytes_transferred >= 1000
    })
    .await;
    h.clock.advance(Duration::from_secs(3601));
    let job = h.wait_state(id, JobState::Error).await;
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::MaxDownloadTimeout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_background_job_at_a_time_and_every_foreground_job() {
    let server = TestServer::start().await;
    for path in ["/bg1", "/bg2", "/fg1", "/fg2"] {
        server.put(path, content(100_000, 22));
        server.behave(path, Behaviour::stall_after(5000));
    }
    let mut h = Harness::new().await;
    let bg1 = h
        .download(Priority::Normal, &[(&server.url("/bg1"), "bg1")])
        .await;
    let bg2 = h
        .download(Priority::Normal, &[(&server.url("/bg2"), "bg2")])
        .await;
    let fg1 = h
        .download(Priority::Foreground, &[(&server.url("/fg1"), "fg1")])
        .await;
    let fg2 = h
        .download(Priority::Foreground, &[(&server.url("/fg2"), "fg2")])
        .await;
    for id in [bg1, bg2, fg1, fg2] {
        h.engine.resume(id).await.expect("resume");
    }
    for id in [bg1, fg1, fg2] {
        h.wait_state(id, JobState::Transferring).await;
    }
    assert_eq!(
        h.engine.job(bg2).await.expect("job").state,
        JobState::Queued
    );
    // A higher priority preempts at once.
    let high = h
        .start(Priority::High, &[(&server.url("/bg2"), "high")])
        .await;
    h.wait_state(high, JobState::Transferring).await;
    assert_eq!(
        h.engine.job(bg1).await.expect("job").state,
        JobState::Queued
    );
    // When the slice ends, the next job of the same priority gets its turn.
    h.engine
        .set(high, PropertyChange::Priority(Priority::Normal))
        .await
        .expect("priority");
    h.clock.advance(Duration::from_secs(300));
    let running: Vec<_> = {
        let mut running = Vec::new();
        for id in [bg1, bg2, high] {
            let job = h
                .wait_for(id, "settled", |j| j.state != JobState::Connecting)
                .await;
            if job.state == JobState::Transferring {
                running.push(id);
            }
        }
        running
    };
    assert_eq!(running.len(), 1, "exactly one background job runs");
    assert_ne!(running[0], high, "the job whose slice ended waits");
}

/// The engine runs on its own runtime, which is torn down mid-transfer like a crash (no
/// shutdown, no final save); a new engine resumes from the saved checkpoint.
#[test]
fn restart_resumes_from_the_checkpoint_byte_exact() {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let server_runtime = runtime();
    let server = server_runtime.block_on(TestServer::start());
    let data = content(3_000_000, 23);
    server.put("/big", data.clone());
    server.behave("/big", Behaviour::stall_after(1_200_000));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("out")).expect("out");
    let out = dir.path().join("out").join("big");
    let clock = std::sync::Arc::new(ferry::engine::ManualClock::new(crate::start_time()));
    let first = runtime();
    let id = first.block_on(async {
        let (engine, _) =
            Harness::start_engine(dir.path(), &test_config(), clock.clone()).expect("engine");
        let mut events = engine.subscribe();
        let id = engine
            .create_job("big", JobType::Download, Some(Priority::Foreground))
            .await
            .expect("create");
        let file = NewFile {
            remote_url: server.url("/big"),
            local_path: out.clone(),
            ranges: None,
            checksum: None,
        };
        engine.add_files(id, vec![file]).await.expect("add");
        // One connection: its checkpoint is a prefix (segmented.rs and cli.rs kill split ones).
        engine
            .set(id, PropertyChange::Connections(Some(1)))
            .await
            .expect("one connection");
        engine.resume(id).await.expect("resume");
        loop {
            let event = tokio::time::timeout(crate::PATIENCE, events.recv())
                .await
                .expect("a checkpoint in time")
                .expect("event");
            if let EngineEvent::ProgressSaved { job, checkpointed } = event
                && job == id
                && checkpointed == 1_200_000
            {
                break id;
            }
        }
    });
    first.shutdown_background();
    server.behave("/big", Behaviour::default());
    runtime().block_on(async {
        let (engine, report) =
            crate::restart_engine(dir.path(), &test_config(), clock.clone()).await;
        assert_eq!(report.jobs_loaded, 1);
        let mut events = engine.subscribe();
        let job = engine.job(id).await.expect("the job survived");
        assert!(
            matches!(
                job.state,
                JobState::Queued | JobState::Connecting | JobState::Transferring
            ),
            "an interrupted transfer goes back to the queue: {} {:?}",
            job.state,
            job.error
        );
        loop {
            if engine.job(id).await.expect("job").state == JobState::Transferred {
                break;
            }
            tokio::time::timeout(crate::PATIENCE, events.recv())
                .await
                .expect("progress")
                .expect("event");
        }
        engine.complete(id).await.expect("complete");
    });
    assert_eq!(sha256(&std::fs::read(&out).expect("file")), sha256(&data));
    assert_eq!(
        server.last_range("/big").as_deref(),
        Some("bytes=1200000-2999999")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_job_file_is_quarantined_and_the_others_load() {
    let mut h = Harness::new().await;
    let good = h
        .download(Priority::Low, &[("http://127.0.0.1:9/a", "a")])
        .await;
    h.engine.shutdown().await.expect("shutdown");
    let damaged = h
        .data_dir()
        .join("jobs")
        .join(format!("{}.ron", uuid::Uuid::new_v4()));
    std::fs::write(&damaged, "(format: 1, job: (id: \"oops").expect("write");
    let (engine, report) =
        Harness::start_engine(h.dir.path(), &h.config, h.clock.clone()).expect("restart");
    assert_eq!(report.jobs_loaded, 1);
    assert_eq!(report.quarantined.len(), 1);
    assert!(
        report.quarantined[0]
            .moved_to
            .starts_with(h.data_dir().join("quarantine"))
    );
    assert!(
        report.quarantined[0]
            .reason
            .contains("not a valid job record"),
        "{}",
        report.quarantined[0].reason
    );
    assert!(!damaged.exists());
    assert_eq!(
        engine.job(good).await.expect("good job").state,
        JobState::Suspended
    );
    h.engine = engine;
    h.events = h.engine.subscribe();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_on_the_same_data_is_refused() {
    let h = Harness::new().await;
    let err = Harness::start_engine(h.dir.path(), &h.config, h.clock.clone())
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(
        message.contains("another Ferry engine is already using"),
        "{message}"
    );
}

/// A named pipe the notify command writes to: reading it waits for the command, no polling.
fn message_pipe(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let path = dir.join("notify.fifo");
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: c_path is a valid NUL-terminated string.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    path
}

/// The next message a notify command writes to the pipe (one writer, one message).
async fn next_message(pipe: &std::path::Path) -> String {
    let pipe = pipe.to_path_buf();
    let read =
        tokio::task::spawn_blocking(move || std::fs::read_to_string(pipe).expect("read pipe"));
    tokio::time::timeout(crate::PATIENCE, read)
        .await
        .expect("the notify command ran")
        .expect("join")
}

fn notify_script(pipe: &std::path::Path, exit_code: u8) -> NotifyCommand {
    let script = format!(
        "echo \"$FERRY_JOB_STATE $FERRY_JOB_ID\" > {}; exit {exit_code}",
        pipe.display()
    );
    NotifyCommand {
        program: "/bin/sh".into(),
        args: vec!["sh".into(), "-c".into(), script],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_command_runs_on_transferred_and_when_set_on_a_transferred_job() {
    let server = TestServer::start().await;
    server.put("/n", content(1000, 24));
    server.put("/late", content(1000, 25));
    let mut h = Harness::new().await;
    let pipe = message_pipe(h.dir.path());
    let early = h
        .download(Priority::Foreground, &[(&server.url("/n"), "n")])
        .await;
    let late = h
        .start(Priority::Foreground, &[(&server.url("/late"), "late")])
        .await;
    h.wait_state(late, JobState::Transferred).await;
    // Set before the transfer: it runs when the job is transferred. Set on a transferred job
    // (registered late): it runs at once, as BITS calls back a callback registered then.
    for (id, resume) in [(early, true), (late, false)] {
        let command = PropertyChange::NotifyCommand(Some(notify_script(&pipe, 0)));
        h.engine.set(id, command).await.expect("set");
        if resume {
            h.engine.resume(id).await.expect("resume");
        }
        assert_eq!(
            next_message(&pipe).await.trim(),
            format!("TRANSFERRED {id}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_notify_command_runs_again_after_the_retry_delay() {
    let server = TestServer::start().await;
    let mut h = Harness::new().await;
    let pipe = message_pipe(h.dir.path());
    let id = h
        .download(Priority::Foreground, &[(&server.url("/absent"), "absent")])
        .await;
    h.engine
        .set(
            id,
            PropertyChange::NotifyCommand(Some(notify_script(&pipe, 3))),
        )
        .await
        .expect("set");
    h.engine.resume(id).await.expect("resume");
    assert_eq!(next_message(&pipe).await.trim(), format!("ERROR {id}"));
    let event = h
        .wait_event("NotifyCommandFailed", |e| {
            matches!(e, EngineEvent::NotifyCommandFailed { .. })
        })
        .await;
    let EngineEvent::NotifyCommandFailed { retry_at, .. } = event else {
        unreachable!()
    };
    assert_eq!(retry_at, h.clock_now() + chrono::Duration::seconds(600));
    h.clock.advance(Duration::from_secs(600));
    assert_eq!(
        next_message(&pipe).await.trim(),
        format!("ERROR {id}"),
        "run again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_and_custom_headers() {
    let server = TestServer::start().await;
    server.put("/secret", content(2000, 25));
    server.behave(
        "/secret",
        Behaviour {
            basic_auth: Some(("ann".into(), "pw".into())),
            ..Default::default()
        },
    );
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/secret"), "secret")])
        .await;
    let job = h.wait_state(id, JobState::Error).await;
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::Http(401)
    );
    let credentials = Credentials {
        server: Some((AuthScheme::Basic, "ann".into(), "pw".into())),
    };
    h.engine
        .set(id, PropertyChange::Credentials(credentials))
        .await
        .expect("credentials");
    h.engine
        .set(
            id,
            PropertyChange::CustomHeaders(vec![("X-Ferry-Test".into(), "1".into())]),
        )
        .await
        .expect("headers");
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    let stored = std::fs::read_to_string(h.data_dir().join("jobs").join(format!("{}.ron", id.0)))
        .expect("record");
    assert!(!stored.contains("\"pw\""), "the password is not stored");
    assert!(stored.contains("credentials_dropped: true"));
}

/// Downloads `/moved` (a redirect) into `name` with the redirect `mode` (`None`: the default) and
/// waits for the job to reach `end`.
async fn follow_redirect(
    h: &mut Harness,
    server: &TestServer,
    name: &str,
    mode: Option<RedirectMode>,
    end: JobState,
) -> ferry::job::Job {
    let id = h
        .download(Priority::Foreground, &[(&server.url("/moved"), name)])
        .await;
    if let Some(mode) = mode {
        let policy = RedirectPolicy {
            mode,
            allow_https_to_http: false,
        };
        h.engine
            .set(id, PropertyChange::RedirectPolicy(policy))
            .await
            .expect("set");
    }
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, end).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_policies() {
    let server = TestServer::start().await;
    server.put("/target", content(3000, 26));
    server.put("/moved", content(1, 0));
    server.behave(
        "/moved",
        Behaviour {
            redirect_to: Some(server.url("/target")),
            ..Default::default()
        },
    );
    let mut h = Harness::new().await;
    // Default: follow silently.
    let job = follow_redirect(&mut h, &server, "silent", None, JobState::Transferred).await;
    assert_eq!(job.files[0].remote_url, server.url("/moved"));
    // ALLOW_REPORT rewrites the URL.
    let report = Some(RedirectMode::AllowReport);
    let job = follow_redirect(&mut h, &server, "report", report, JobState::Transferred).await;
    assert_eq!(job.files[0].remote_url, server.url("/target"));
    // DISALLOW puts the job in ERROR.
    let disallow = Some(RedirectMode::Disallow);
    let job = follow_redirect(&mut h, &server, "disallow", disallow, JobState::Error).await;
    let error = job.current_error().expect("error");
    assert_eq!(error.code, ErrorCode::RedirectFailed);
    assert!(
        error.description.contains("/target"),
        "{}",
        error.description
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_loss_and_return() {
    let server = TestServer::start().await;
    server.put("/net", content(100_000, 27));
    server.behave("/net", Behaviour::stall_after(10_000));
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/net"), "net")])
        .await;
    h.wait_for(id, "TRANSFERRING", |j| {
        j.files[0].bytes_transferred >= 10_000
    })
    .await;
    h.engine.network_changed(false).await.expect("lost");
    let job = h.engine.job(id).await.expect("job");
    assert_eq!(job.state, JobState::TransientError);
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::NetworkDisconnected
    );
    assert_eq!(job.error_count, 0, "a network loss is not counted");
    assert_eq!(
        job.retry.next_retry_at, None,
        "it waits for the network, not for a timer"
    );
    // A job resumed while the network is away waits too, without a request.
    server.put("/later", content(5000, 28));
    let later = h
        .start(Priority::Foreground, &[(&server.url("/later"), "later")])
        .await;
    let job = h.wait_state(later, JobState::TransientError).await;
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::NetworkDisconnected
    );
    h.clock.advance(Duration::from_secs(86_400));
    assert_eq!(
        h.engine.job(later).await.expect("job").state,
        JobState::TransientError
    );
    assert!(server.requests("/later").is_empty());
    // T15: back, and both go on at once.
    server.behave("/net", Behaviour::default());
    h.engine.network_changed(true).await.expect("back");
    h.wait_state(id, JobState::Transferred).await;
    h.wait_state(later, JobState::Transferred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_credentials() {
    let server = TestServer::start().await;
    server.put("/digest", content(4000, 28));
    server.behave(
        "/digest",
        Behaviour {
            digest_auth: Some(("dan".into(), "s3cret".into())),
            ..Default::default()
        },
    );
    let mut h = Harness::new().await;
    let id = h
        .download(Priority::Foreground, &[(&server.url("/digest"), "digest")])
        .await;
    let wrong = Credentials {
        server: Some((AuthScheme::Digest, "dan".into(), "nope".into())),
    };
    h.engine
        .set(id, PropertyChange::Credentials(wrong))
        .await
        .expect("credentials");
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Error).await;
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::Http(401)
    );
    let right = Credentials {
        server: Some((AuthScheme::Digest, "dan".into(), "s3cret".into())),
    };
    h.engine
        .set(id, PropertyChange::Credentials(right))
        .await
        .expect("credentials");
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    h.engine.complete(id).await.expect("complete");
    assert_eq!(
        std::fs::read(h.out("digest")).expect("file"),
        content(4000, 28)
    );
}

/// Sets the job's notify flags and resumes it, listening from before the resume.
async fn resume_observed(
    h: &Harness,
    id: ferry::job::JobId,
    flags: u32,
) -> tokio::sync::broadcast::Receiver<EngineEvent> {
    h.engine
        .set(id, PropertyChange::NotifyFlags(flags))
        .await
        .expect("notify flags");
    let observer = h.engine.subscribe();
    h.engine.resume(id).await.expect("resume");
    observer
}

async fn next_event(observer: &mut tokio::sync::broadcast::Receiver<EngineEvent>) -> EngineEvent {
    tokio::time::timeout(crate::PATIENCE, observer.recv())
        .await
        .expect("events")
        .expect("event")
}

/// What a listener by notify flags hears of one job, and what the whole stream hears.
#[derive(Debug, Default, PartialEq)]
struct Heard {
    files: usize,
    transferred: bool,
    modifications: bool,
    state_changes: bool,
    into_transferred: bool,
}

impl Heard {
    fn note(&mut self, event: &EngineEvent, id: ferry::job::JobId) {
        if event.job() != Some(id) {
            return;
        }
        match event {
            EngineEvent::FileTransferred { .. } => self.files += 1,
            EngineEvent::JobTransferred { .. } => self.transferred = true,
            EngineEvent::JobModification { .. } => self.modifications = true,
            EngineEvent::StateChanged { to, .. } => {
                self.state_changes = true;
                self.into_transferred |= *to == JobState::Transferred;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_follow_the_notify_flags() {
    let server = TestServer::start().await;
    for i in 0..3 {
        server.put(&format!("/n{i}"), content(20_000, 30 + i));
    }
    let h = Harness::new().await;
    let files = [
        (server.url("/n0"), "n0"),
        (server.url("/n1"), "n1"),
        (server.url("/n2"), "n2"),
    ];
    let pairs: Vec<(&str, &str)> = files.iter().map(|(u, n)| (u.as_str(), *n)).collect();
    let heard = |files, transferred, modifications| Heard {
        files,
        transferred,
        modifications,
        state_changes: modifications,
        into_transferred: false,
    };
    // (flags, what the stream by notify flags hears)
    let cases = [
        (ferry::job::DEFAULT_NOTIFY_FLAGS, heard(0, true, false)),
        (
            NotifyFlags::JOB_TRANSFERRED | NotifyFlags::FILE_TRANSFERRED,
            heard(3, true, false),
        ),
        (NotifyFlags::JOB_ERROR, heard(0, false, false)),
        (NotifyFlags::JOB_MODIFICATION, heard(0, false, true)),
        (NotifyFlags::ALL, heard(0, false, false)), // DISABLE silences everything
        (0, heard(0, false, false)),
    ];
    for (flags, expected) in cases {
        let id = h.download(Priority::Foreground, &pairs).await;
        h.engine
            .set(id, PropertyChange::NotifyFlags(flags))
            .await
            .expect("notify flags");
        let mut all = h.engine.subscribe();
        let mut by_flags = h.engine.subscribe_by_notify_flags();
        h.engine.resume(id).await.expect("resume");
        let mut whole = Heard::default();
        // The whole stream hears every event; TRANSFERRED is the last state change.
        while !whole.into_transferred {
            whole.note(&next_event(&mut all).await, id);
        }
        assert_eq!(
            (whole.files, whole.transferred, whole.state_changes),
            (3, true, true),
            "the whole stream with flags {flags:#x}"
        );
        // Both streams are fed together, the one by flags first: it has all it will get.
        let mut told = Heard::default();
        while let Ok(event) = by_flags.try_recv() {
            told.note(&event, id);
        }
        // A JobModification comes at most every `modification_interval_ms`: there may be none
        // before so short a transfer ends, but never one the flags do not ask for.
        let modifications_asked = NotifyFlags(flags).wants(NotifyFlags::JOB_MODIFICATION);
        assert!(
            modifications_asked || !told.modifications,
            "JobModification with flags {flags:#x}"
        );
        told.modifications = expected.modifications;
        assert_eq!(told, expected, "by notify flags {flags:#x}");
        h.engine.cancel(id).await.expect("cancel");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_modification_events_are_rate_limited() {
    let server = TestServer::start().await;
    let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    for name in &names {
        server.put(&format!("/{name}"), content(50_000, 29));
    }
    let config = Config {
        modification_interval_ms: 60_000,
        ..test_config()
    };
    let h = Harness::with_config(config).await;
    let urls: Vec<String> = names.iter().map(|n| server.url(&format!("/{n}"))).collect();
    let files: Vec<(&str, &str)> = urls
        .iter()
        .zip(&names)
        .map(|(u, n)| (u.as_str(), n.as_str()))
        .collect();
    let id = h.download(Priority::Foreground, &files).await;
    let flags = NotifyFlags::JOB_TRANSFERRED | NotifyFlags::FILE_TRANSFERRED;
    let mut observer = resume_observed(&h, id, flags).await;
    let mut modifications = 0;
    let mut changes = 0;
    loop {
        match next_event(&mut observer).await {
            EngineEvent::JobModification { job, .. } if job == id => modifications += 1,
            EngineEvent::StateChanged { job, .. } | EngineEvent::FileTransferred { job, .. }
                if job == id =>
            {
                changes += 1
            }
            EngineEvent::JobTransferred { job } if job == id => break,
            _ => {}
        }
    }
    assert!(changes >= 10, "{changes} changes");
    // The interval started before the resume (job creation): at most one more event in it.
    assert!(
        modifications <= 1,
        "{modifications} JobModification events in one interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_downloads_and_the_https_to_http_redirect_rule() {
    use axum::http::{StatusCode, header};
    let plain = TestServer::start().await;
    plain.put("/plain", content(2000, 40));
    let data = content(70_000, 41);
    let body = data.clone();
    let downgrade = plain.url("/plain");
    let router = axum::Router::new()
        .route(
            "/secure",
            axum::routing::get(move || async move { body.clone() }),
        )
        .route(
            "/downgrade",
            axum::routing::get(move || async move {
                (StatusCode::FOUND, [(header::LOCATION, downgrade.clone())])
            }),
        );
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = crate::tls::TlsServer::start(router, dir.path()).await;
    // Without the test CA the certificate is rejected: a fatal TLS error.
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&tls.url("/secure"), "untrusted")])
        .await;
    let job = h.wait_state(id, JobState::Error).await;
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::SecureFailure
    );
    // Trusting the CA through the config file.
    let config = Config {
        extra_root_certificates: vec![tls.ca_file.clone()],
        ..test_config()
    };
    let mut h = Harness::with_config(config).await;
    let id = h
        .start(Priority::Foreground, &[(&tls.url("/secure"), "secure")])
        .await;
    h.wait_state(id, JobState::Transferred).await;
    h.engine.complete(id).await.expect("complete");
    assert_eq!(std::fs::read(h.out("secure")).expect("file"), data);
    // HTTPS → HTTP is refused by default…
    let id = h
        .start(
            Priority::Foreground,
            &[(&tls.url("/downgrade"), "downgrade")],
        )
        .await;
    let job = h.wait_state(id, JobState::Error).await;
    let error = job.current_error().expect("error");
    assert_eq!(error.code, ErrorCode::RedirectFailed);
    assert!(
        plain.requests("/plain").is_empty(),
        "the HTTP URL was never fetched"
    );
    // …and allowed when the job says so.
    let allow = RedirectPolicy {
        mode: RedirectMode::AllowSilent,
        allow_https_to_http: true,
    };
    h.engine
        .set(id, PropertyChange::RedirectPolicy(allow))
        .await
        .expect("set");
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    assert_eq!(plain.requests("/plain").len(), 1);
}

#[test]
fn an_unreadable_extra_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.ron");
    std::fs::write(
        &path,
        "(extra_root_certificates: [\"/nonexistent/ca.pem\"])",
    )
    .expect("write");
    let err = Config::load(&path).expect_err("invalid").to_string();
    assert!(
        err.contains("extra_root_certificates") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_cut_by_a_crash_finishes_at_the_next_start_without_losing_a_file() {
    let server = TestServer::start().await;
    server.put("/c0", content(3000, 50));
    server.put("/c1", content(4000, 51));
    let mut h = Harness::new().await;
    let id = h
        .start(
            Priority::Foreground,
            &[(&server.url("/c0"), "c0"), (&server.url("/c1"), "c1")],
        )
        .await;
    let job = h.wait_state(id, JobState::Transferred).await;
    h.engine.shutdown().await.expect("shutdown");
    // What a crash in the middle of Complete leaves: the intent saved, the first file moved.
    let record = h.data_dir().join("jobs").join(format!("{}.ron", id.0));
    let text = std::fs::read_to_string(&record).expect("record");
    assert!(text.contains("committing: []"), "{text}");
    std::fs::write(
        &record,
        text.replace("committing: []", "committing: [0, 1]"),
    )
    .expect("write");
    std::fs::rename(&job.files[0].temp_path, h.out("c0")).expect("move");
    let (engine, _) =
        Harness::start_engine(h.dir.path(), &h.config, h.clock.clone()).expect("restart");
    // Someone asked for that Complete: the service finishes it in its first round, before it
    // answers a call.
    let finished = engine.job(id).await.expect("job");
    assert_eq!(finished.state, JobState::Acknowledged);
    assert!(
        engine.complete(id).await.is_err(),
        "nothing left to complete"
    );
    assert_eq!(std::fs::read(h.out("c0")).expect("file"), content(3000, 50));
    assert_eq!(std::fs::read(h.out("c1")).expect("file"), content(4000, 51));
    assert!(hidden_files(&h.out_dir()).is_empty());
    // The store's queue is written out at shutdown: the job's file is gone.
    engine.shutdown().await.expect("shutdown");
    assert!(!record.exists(), "the job file is removed");
    let (engine, _) =
        Harness::start_engine(h.dir.path(), &h.config, h.clock.clone()).expect("restart");
    assert!(engine.job(id).await.is_err(), "it does not come back");
    h.engine = engine;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_file_is_downloaded_again() {
    let server = TestServer::start().await;
    server.put("/v", content(30_000, 52));
    let mut h = Harness::new().await;
    let id = h
        .start(Priority::Foreground, &[(&server.url("/v"), "v")])
        .await;
    let job = h.wait_state(id, JobState::Transferred).await;
    // The owner inspects the temp file and rejects it.
    assert_eq!(
        std::fs::read(&job.files[0].temp_path).expect("temp file"),
        content(30_000, 52)
    );
    h.engine
        .set_validation(id, 0, false)
        .await
        .expect("validate");
    let job = h.engine.job(id).await.expect("job");
    assert_eq!(job.state, JobState::Error);
    assert_eq!(
        job.current_error().expect("error").code,
        ErrorCode::ValidationFailed
    );
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    let requests = server.requests("/v");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].range, None, "downloaded again from the start");
    h.engine.set_validation(id, 0, true).await.expect("accept");
    h.engine.complete(id).await.expect("complete");
    assert_eq!(
        std::fs::read(h.out("v")).expect("file"),
        content(30_000, 52)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_rewrites_only_that_job_file() {
    let config = Config {
        max_jobs_per_user: 100,
        ..test_config()
    };
    let h = Harness::with_config(config).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            h.engine
                .create_job(&format!("j{i}"), JobType::Download, None)
                .await
                .expect("create"),
        );
    }
    let jobs_dir = h.data_dir().join("jobs");
    let stamp = |id: ferry::job::JobId| {
        std::fs::metadata(jobs_dir.join(format!("{}.ron", id.0)))
            .and_then(|m| m.modified())
            .expect("job file")
    };
    let before: Vec<_> = ids.iter().map(|id| stamp(*id)).collect();
    let inode_before = std::fs::metadata(jobs_dir.join(format!("{}.ron", ids[7].0)))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("inode");
    h.engine
        .set(ids[7], PropertyChange::Description("changed".into()))
        .await
        .expect("set");
    let inode_after = std::fs::metadata(jobs_dir.join(format!("{}.ron", ids[7].0)))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("inode");
    assert_ne!(
        inode_before, inode_after,
        "the changed job was rewritten (temp file + rename)"
    );
    for (i, id) in ids.iter().enumerate() {
        if i != 7 {
            assert_eq!(stamp(*id), before[i], "job {i} was not touched");
        }
    }
}

/// Defect: a worker that panicked was never noticed; its job stayed TRANSFERRING for ever and a
/// FOREGROUND job never gave up its slot. Stopping a worker had no timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_or_stuck_worker_fails_its_job_and_frees_its_slot() {
    use ferry::engine::WorkerFault;
    use std::sync::Mutex;
    let server = TestServer::start().await;
    server.put("/ok", content(10_000, 90));
    let faults: Arc<Mutex<Vec<WorkerFault>>> = Arc::new(Mutex::new(vec![
        WorkerFault::IgnoreStop,
        WorkerFault::Panic,
    ]));
    let injected = faults.clone();
    let mut h = Harness::with_faults(Arc::new(move |_| {
        injected.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }))
    .await;
    // The first worker panics: TRANSIENT_ERROR naming the internal error, not TRANSFERRING.
    let id = h
        .start(Priority::Foreground, &[(&server.url("/ok"), "panic")])
        .await;
    let job = h.wait_state(id, JobState::TransientError).await;
    let error = job.current_error().expect("error");
    assert_eq!(error.context, ErrorContext::GeneralQueueManager);
    assert!(
        error.description.contains("stopped unexpectedly"),
        "{}",
        error.description
    );
    // The retry gets a worker that never stops; Suspend ends it after the stop timeout.
    h.clock.advance(Duration::from_secs(600));
    h.wait_for(id, "a running worker", |j| j.state.is_running())
        .await;
    h.engine.suspend(id).await.expect("suspend");
    let job = h.engine.job(id).await.expect("job");
    assert_eq!(job.state, JobState::Suspended);
    // And the job still downloads after that.
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    h.engine.complete(id).await.expect("complete");
    assert_eq!(
        std::fs::read(h.out("panic")).expect("file"),
        content(10_000, 90)
    );
    assert!(faults.lock().expect("faults").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_when_transferred_puts_the_files_in_place_by_itself() {
    let server = TestServer::start().await;
    let data = content(50_000, 71);
    server.put("/auto.bin", data.clone());
    server.put("/blocked.bin", content(2000, 72));
    let mut h = Harness::new().await;
    let mut observer = h.engine.subscribe();
    let id = h
        .download(
            Priority::Foreground,
            &[(&server.url("/auto.bin"), "auto.bin")],
        )
        .await;
    h.engine
        .set(id, PropertyChange::CompleteWhenTransferred(true))
        .await
        .expect("set");
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Acknowledged).await;
    assert!(job.complete_when_transferred);
    assert_eq!(std::fs::read(h.out("auto.bin")).expect("file"), data);
    assert!(hidden_files(&h.out_dir()).is_empty(), "no temp file left");

    // A file in the way: the job stays TRANSFERRED and the refusal is told, not retried.
    let blocked = h
        .download(
            Priority::Foreground,
            &[(&server.url("/blocked.bin"), "blocked.bin")],
        )
        .await;
    h.engine
        .set(blocked, PropertyChange::CompleteWhenTransferred(true))
        .await
        .expect("set");
    std::fs::write(h.out("blocked.bin"), b"mine").expect("write");
    h.engine.resume(blocked).await.expect("resume");
    let failed = loop {
        match observer.recv().await.expect("events") {
            EngineEvent::CompleteFailed { job, code, message } if job == blocked => {
                break (code, message);
            }
            _ => {}
        }
    };
    assert_eq!(failed.0, ErrorCode::FileExists);
    assert!(failed.1.contains("already exists"), "{}", failed.1);
    assert_eq!(
        h.engine.job(blocked).await.expect("job").state,
        JobState::Transferred
    );
    assert_eq!(std::fs::read(h.out("blocked.bin")).expect("file"), b"mine");
    // The user lets it replace and asks again: turning the option on completes it at once.
    h.engine
        .set(blocked, PropertyChange::ReplaceExisting(true))
        .await
        .expect("set");
    h.engine
        .set(blocked, PropertyChange::CompleteWhenTransferred(true))
        .await
        .expect("set");
    h.wait_state(blocked, JobState::Acknowledged).await;
    assert_eq!(
        std::fs::read(h.out("blocked.bin")).expect("file"),
        content(2000, 72)
    );
}
