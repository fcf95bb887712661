//! Speed limits: a job's own and the global ones, on downloads (one connection and split) and
//! uploads, and changed while the transfer runs. The tests check that a transfer never runs
//! ahead of its limit (a bound a slow machine cannot break) and that lifting the limit
//! mid-transfer lets it finish; the accuracy of the pace is measured by
//! `scripts/bench-limit.sh`, not here.

use crate::server::{Behaviour, TestServer};
use crate::upload::Server;
use crate::{Harness, content, sha256, test_config};
use ferry::job::{
    BandwidthPolicy, ClassLimit, ClassLimits, Day, ErrorCode, JobId, JobState, JobType, NewFile,
    PolicyWindow, Priority, PropertyChange, Rate, TimeOfDay,
};
use std::time::Instant;

/// What a transfer may move beyond `rate × elapsed`: the bucket's burst and the reads that
/// passed its check before it went into debt (hyper reads up to 400 KiB at once), on each
/// connection.
const SLACK_PER_CONNECTION: f64 = 512.0 * 1024.0;

fn rate(text: &str) -> Rate {
    Rate::parse(text).expect("a rate")
}

/// Follows the job's progress until `seconds` have passed since `start`, checking at every
/// change that it never ran ahead of `limit`; returns the bytes moved by then.
async fn follow_paced(
    h: &mut Harness,
    id: JobId,
    start: Instant,
    limit: Rate,
    connections: u32,
    seconds: f64,
) -> u64 {
    loop {
        let job = h.engine.job(id).await.expect("job");
        let elapsed = start.elapsed().as_secs_f64();
        let moved = job.progress().bytes_transferred;
        let allowed = limit.bytes_per_second() as f64 * elapsed
            + SLACK_PER_CONNECTION * f64::from(connections);
        assert!(
            (moved as f64) <= allowed,
            "{moved} bytes after {elapsed:.2} s at a limit of {limit}: more than {allowed:.0}"
        );
        assert!(
            job.state != JobState::Transferred && job.state != JobState::Error,
            "the limited job ended early: {} {:?}",
            job.state,
            job.error
        );
        if elapsed >= seconds {
            return moved;
        }
        // The next change of the job (progress comes every 100 ms while bytes move).
        let _ = tokio::time::timeout(crate::PATIENCE, h.events.recv()).await;
    }
}

/// Completes the job and checks that its file `name` is `data`, byte for byte.
async fn completed_byte_exact(h: &Harness, id: JobId, name: &str, data: &[u8]) {
    h.engine.complete(id).await.expect("complete");
    let got = std::fs::read(h.out(name)).expect("the downloaded file");
    assert_eq!(sha256(&got), sha256(data), "{name} byte-exact");
}

/// A SUSPENDED FOREGROUND job of an 8 MiB file served at `path`; returns it and the bytes.
async fn eight_mib_job(
    h: &Harness,
    server: &TestServer,
    path: &str,
    seed: u64,
) -> (JobId, Vec<u8>) {
    let data = content(8 << 20, seed);
    server.put(path, data.clone());
    let name = path.trim_start_matches('/');
    let id = h
        .download(Priority::Foreground, &[(&server.url(path), name)])
        .await;
    (id, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_limit_paces_its_download_and_lifting_it_mid_transfer_lets_it_finish() {
    let mut h = Harness::new().await;
    let server = TestServer::start().await;
    let (id, data) = eight_mib_job(&h, &server, "/big.bin", 141).await;
    for change in [
        PropertyChange::Connections(Some(1)),
        PropertyChange::LimitRate(Some(rate("64K"))),
    ] {
        h.engine.set(id, change).await.expect("set");
    }
    let start = Instant::now();
    h.engine.resume(id).await.expect("resume");
    let moved = follow_paced(&mut h, id, start, rate("64K"), 1, 1.5).await;
    assert!(moved > 0, "the job moves, slowly");
    // Raised, then lifted, while the transfer runs: it finishes without a restart.
    h.engine
        .set(id, PropertyChange::LimitRate(Some(rate("128K"))))
        .await
        .expect("raise");
    h.engine
        .set(id, PropertyChange::LimitRate(None))
        .await
        .expect("lift");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert_eq!(job.limit_rate, None);
    assert_eq!(job.error_count, 0, "a limit is not an error");
    completed_byte_exact(&h, id, "big.bin", &data).await;
    // Under the limit it asks for bounded ranges (a few seconds of the limit each), each
    // where the last ended: paced, never restarted from byte 0.
    let requests = server.requests("/big.bin");
    let starts: Vec<u64> = requests
        .iter()
        .skip(1)
        .map(|r| {
            let range = r.range.as_deref().expect("a range after the first GET");
            let start = range
                .trim_start_matches("bytes=")
                .split('-')
                .next()
                .unwrap_or("");
            start.parse().expect("a start")
        })
        .collect();
    assert!(!starts.is_empty(), "bounded ranges under the limit");
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]) && starts[0] > 0,
        "each range goes on where the last ended: {starts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_download_limit_binds_a_split_file_and_changes_live() {
    let mut config = test_config();
    config.download_limit = Some(rate("64K"));
    let mut h = Harness::with_config(config.clone()).await;
    let server = TestServer::start().await;
    let (id, data) = eight_mib_job(&h, &server, "/split.bin", 142).await;
    h.engine
        .set(id, PropertyChange::Connections(Some(4)))
        .await
        .expect("4 connections");
    let start = Instant::now();
    h.engine.resume(id).await.expect("resume");
    follow_paced(&mut h, id, start, rate("64K"), 4, 1.5).await;
    config.download_limit = None;
    h.engine.configure(config).await.expect("configure");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert_eq!(job.error_count, 0);
    completed_byte_exact(&h, id, "split.bin", &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_paced_by_its_limit_and_lifting_the_global_one_lets_it_finish() {
    let mut config = test_config();
    config.upload_limit = Some(rate("256K"));
    let mut h = Harness::with_config(config.clone()).await;
    let served = tempfile::tempdir().expect("served");
    let server = Server::start(served.path(), None).await;
    let local = h.out("up.bin");
    let data = content(6 << 20, 143);
    std::fs::write(&local, &data).expect("local");
    let id = h
        .engine
        .create_job("up", JobType::Upload, Some(Priority::Foreground))
        .await
        .expect("create");
    let file = NewFile {
        remote_url: format!("{}/up.bin", server.base),
        local_path: local.clone(),
        ranges: None,
        checksum: None,
    };
    h.engine.add_files(id, vec![file]).await.expect("add");
    // The job's own limit is the lower one here: it sets the pace.
    h.engine
        .set(id, PropertyChange::LimitRate(Some(rate("128K"))))
        .await
        .expect("limit");
    let start = Instant::now();
    h.engine.resume(id).await.expect("resume");
    // Acknowledged bytes: the first fragments (256 KiB, then 512 KiB) come back in seconds.
    follow_paced(&mut h, id, start, rate("128K"), 1, 2.5).await;
    h.engine
        .set(id, PropertyChange::LimitRate(None))
        .await
        .expect("lift the job's");
    config.upload_limit = None;
    h.engine
        .configure(config)
        .await
        .expect("lift the global one");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert_eq!(job.error_count, 0);
    let uploaded = std::fs::read(served.path().join("up.bin")).expect("uploaded");
    assert_eq!(sha256(&uploaded), sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_is_kept_with_the_job_and_refused_once_it_has_ended() {
    // Through the store: the limit survives a restart of the engine.
    {
        let h = Harness::new().await;
        let id = h
            .download(Priority::Normal, &[("http://127.0.0.1:9/x", "x")])
            .await;
        h.engine
            .set(id, PropertyChange::LimitRate(Some(rate("1536K"))))
            .await
            .expect("set");
        h.engine.shutdown().await.expect("shutdown");
        let (engine, report) =
            crate::restart_engine(h.dir.path(), &h.config, h.clock.clone()).await;
        assert_eq!(report.jobs_loaded, 1);
        let job = engine.job(id).await.expect("job");
        assert_eq!(job.limit_rate, Some(rate("1536K")));
        engine.cancel(id).await.expect("cancel");
        let refused = engine
            .set(id, PropertyChange::LimitRate(None))
            .await
            .expect_err("a cancelled job takes no more changes");
        assert_eq!(refused.code, ferry::job::ErrorCode::InvalidState);
    }
}

/// A schedule with one window on the day the harness's clock stands, `from_minutes` after its
/// time (in local time, as the engine reads it) for `length_minutes`, with these limits for
/// HIGH, NORMAL and LOW.
fn window_ahead(
    h: &Harness,
    from_minutes: i64,
    length_minutes: i64,
    limit: ClassLimit,
) -> BandwidthPolicy {
    use chrono::{Datelike, Timelike};
    let local = |minutes: i64| {
        (h.clock_now() + chrono::Duration::minutes(minutes))
            .with_timezone(&chrono::Local)
            .naive_local()
    };
    let (start, end) = (local(from_minutes), local(from_minutes + length_minutes));
    let time = |t: chrono::NaiveDateTime| TimeOfDay::new(t.hour(), t.minute()).expect("time");
    let day = Day::ALL[start.weekday().num_days_from_monday() as usize];
    BandwidthPolicy {
        windows: vec![PolicyWindow {
            days: vec![day],
            start: time(start),
            end: time(end),
            high: limit,
            normal: limit,
            low: limit,
        }],
        outside: ClassLimits::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_window_holds_background_jobs_while_foreground_ones_transfer() {
    let mut config = test_config();
    let mut h = Harness::with_config(config.clone()).await;
    // The window opens in an hour and lasts two (T28).
    config.bandwidth_policy = window_ahead(&h, 60, 120, ClassLimit::Blocked);
    h.engine.configure(config).await.expect("configure");
    let server = TestServer::start().await;
    let normal_data = content(100_000, 151);
    server.put("/normal", normal_data.clone());
    server.behave("/normal", Behaviour::stall_after(10_000));
    let normal = h
        .start(Priority::Normal, &[(&server.url("/normal"), "normal")])
        .await;
    h.wait_for(normal, "TRANSFERRING", |j| {
        j.files[0].bytes_transferred >= 10_000
    })
    .await;

    // The window opens: the running background job is held, without an error counted.
    h.clock.advance(std::time::Duration::from_secs(61 * 60));
    let held = h
        .wait_for(normal, "held by the policy", |j| j.is_blocked_by_policy())
        .await;
    let error = held.current_error().expect("an error object");
    assert_eq!(error.code, ErrorCode::BlockedByPolicy);
    assert_eq!(error.code.name(), "BG_E_BLOCKED_BY_POLICY");
    assert_eq!(held.error_count, 0);
    assert_eq!(held.retry.next_retry_at, None, "no retry timer");

    // A background job resumed in the window is held before it asks anything.
    let low_data = content(20_000, 152);
    server.put("/low", low_data.clone());
    let low = h
        .start(Priority::Low, &[(&server.url("/low"), "low")])
        .await;
    h.wait_for(low, "held by the policy", |j| j.is_blocked_by_policy())
        .await;
    // A FOREGROUND job is never held.
    let fore_data = content(50_000, 153);
    server.put("/fore", fore_data.clone());
    let fore = h
        .start(Priority::Foreground, &[(&server.url("/fore"), "fore")])
        .await;
    h.wait_state(fore, JobState::Transferred).await;
    h.engine.complete(fore).await.expect("complete");
    assert_eq!(std::fs::read(h.out("fore")).ok(), Some(fore_data));

    // Longer than the retry delay, still held: it waits for the window, not for a timer.
    h.clock.advance(std::time::Duration::from_secs(50 * 60));
    for id in [normal, low] {
        assert!(h.engine.job(id).await.expect("job").is_blocked_by_policy());
    }
    assert!(server.requests("/low").is_empty(), "no request while held");

    // The window ends: both go on, and nothing was counted as an error.
    server.behave("/normal", Behaviour::default());
    h.clock.advance(std::time::Duration::from_secs(70 * 60));
    for (id, name, data) in [(normal, "normal", &normal_data), (low, "low", &low_data)] {
        let job = h.wait_state(id, JobState::Transferred).await;
        assert_eq!(job.error_count, 0, "{name}");
        completed_byte_exact(&h, id, name, data).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_limit_paces_background_jobs_and_not_foreground_ones() {
    let mut config = test_config();
    let mut h = Harness::with_config(config.clone()).await;
    let limit = rate("64K");
    config.bandwidth_policy = BandwidthPolicy {
        windows: Vec::new(),
        outside: ClassLimits {
            normal: ClassLimit::Limited(limit),
            ..ClassLimits::default()
        },
    };
    h.engine.configure(config.clone()).await.expect("configure");
    let server = TestServer::start().await;
    let data = content(8 << 20, 154);
    server.put("/paced", data.clone());
    let id = h
        .download(Priority::Normal, &[(&server.url("/paced"), "paced")])
        .await;
    h.engine.resume(id).await.expect("resume");
    let start = Instant::now();
    let moved = follow_paced(&mut h, id, start, limit, 1, 1.5).await;
    assert!(moved > 0, "it moves, at its pace");
    // A FOREGROUND job beside it is not limited by the policy.
    let (fore, fore_data) = eight_mib_job(&h, &server, "/fore.bin", 155).await;
    h.engine.resume(fore).await.expect("resume");
    h.wait_state(fore, JobState::Transferred).await;
    completed_byte_exact(&h, fore, "fore.bin", &fore_data).await;
    assert_ne!(
        h.engine.job(id).await.expect("job").state,
        JobState::Transferred,
        "the background job is still held to its pace"
    );
    // Lifting the policy lets it finish.
    config.bandwidth_policy = BandwidthPolicy::default();
    h.engine.configure(config).await.expect("configure");
    h.wait_state(id, JobState::Transferred).await;
    completed_byte_exact(&h, id, "paced", &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_a_limit_longer_than_the_read_timeout_is_not_a_timeout() {
    // A read of a few hundred KiB at 128K/s is paid for by seconds of waiting, longer than this
    // read timeout: the server is not silent, the job is paced, and it must not fail.
    let mut config = test_config();
    config.read_timeout_ms = 1_000;
    let mut h = Harness::with_config(config).await;
    let server = TestServer::start().await;
    let data = content(768 << 10, 156);
    server.put("/slowly", data.clone());
    let id = h
        .download(Priority::Foreground, &[(&server.url("/slowly"), "slowly")])
        .await;
    for change in [
        PropertyChange::Connections(Some(1)),
        PropertyChange::LimitRate(Some(rate("128K"))),
    ] {
        h.engine.set(id, change).await.expect("set");
    }
    h.engine.resume(id).await.expect("resume");
    let job = h
        .wait_for(id, "TRANSFERRED", |j| {
            j.state == JobState::Transferred || j.state == JobState::TransientError
        })
        .await;
    assert_eq!(job.state, JobState::Transferred, "{:?}", job.error);
    assert_eq!(job.error_count, 0);
    completed_byte_exact(&h, id, "slowly", &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_download_from_a_server_that_announces_ranges_it_ignores_still_completes() {
    // Under a limit, a long answer is cut and the rest asked for in bounded ranges; a server
    // that says `Accept-Ranges: bytes` and answers the range with the whole file gets the file
    // started again and streamed whole, as before bounded ranges, not a fatal range error.
    let mut h = Harness::new().await;
    let server = TestServer::start().await;
    let data = content(3 << 19, 157);
    server.put("/liar", data.clone());
    server.behave(
        "/liar",
        Behaviour {
            ignore_range: true,
            ..Default::default()
        },
    );
    let id = h
        .download(Priority::Foreground, &[(&server.url("/liar"), "liar")])
        .await;
    for change in [
        PropertyChange::Connections(Some(1)),
        PropertyChange::LimitRate(Some(rate("512K"))),
    ] {
        h.engine.set(id, change).await.expect("set");
    }
    h.engine.resume(id).await.expect("resume");
    let job = h
        .wait_for(id, "TRANSFERRED or ERROR", |j| {
            matches!(j.state, JobState::Transferred | JobState::Error)
        })
        .await;
    assert_eq!(job.state, JobState::Transferred, "{:?}", job.error);
    assert!(
        server.requests("/liar").iter().any(|r| r.range.is_some()),
        "the answer was cut and a range asked for"
    );
    completed_byte_exact(&h, id, "liar", &data).await;
}
