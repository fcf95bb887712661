//! Several files of one job at once (`PropertyChange::ParallelFiles`): byte-exact files reported
//! transferred in their order, the per-host cap, and Cancel with files in flight.

use crate::server::{Behaviour, TestServer};
use crate::{Harness, content, hidden_files, sha256, test_config};
use ferry::config::Config;
use ferry::engine::{CancelOutcome, EngineEvent};
use ferry::job::{JobId, JobState, NotifyFlags, Priority, PropertyChange};

/// A NORMAL job (one connection per file) of `files` (path, size), `at_once` at a time, resumed.
async fn start(h: &Harness, server: &TestServer, files: &[(&str, usize)], at_once: u32) -> JobId {
    let urls: Vec<(String, String)> = files
        .iter()
        .map(|(path, _)| (server.url(path), path.trim_start_matches('/').to_string()))
        .collect();
    let pairs: Vec<(&str, &str)> = urls.iter().map(|(u, n)| (u.as_str(), n.as_str())).collect();
    let id = h.download(Priority::Normal, &pairs).await;
    h.engine
        .set(id, PropertyChange::ParallelFiles(at_once))
        .await
        .expect("files at once");
    // FileTransferred events tell the order the files are reported in.
    let flags =
        NotifyFlags::JOB_TRANSFERRED | NotifyFlags::JOB_ERROR | NotifyFlags::FILE_TRANSFERRED;
    h.engine
        .set(id, PropertyChange::NotifyFlags(flags))
        .await
        .expect("notify flags");
    h.engine.resume(id).await.expect("resume");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_transfer_at_once_and_are_reported_in_their_order() {
    let server = TestServer::start().await;
    // The first file is the largest: it finishes last, but is reported first.
    let files = [
        ("/f0", 1_500_000),
        ("/f1", 200_000),
        ("/f2", 200_000),
        ("/f3", 200_000),
    ];
    for (i, (path, size)) in files.iter().enumerate() {
        server.put(path, content(*size, 80 + i as u64));
        server.behave(path, Behaviour::rate(1 << 20));
    }
    let mut h = Harness::new().await;
    let mut observer = h.engine.subscribe();
    let id = start(&h, &server, &files, 4).await;
    h.wait_for(id, "the small files on disk", |j| {
        j.files[1..].iter().all(|f| f.bytes_transferred == 200_000)
    })
    .await;
    let job = h.engine.job(id).await.expect("job");
    assert!(
        job.files.iter().all(|f| !f.transferred),
        "none is reported before the first: {:?}",
        job.files.iter().map(|f| f.transferred).collect::<Vec<_>>()
    );
    h.wait_state(id, JobState::Transferred).await;
    let mut order = Vec::new();
    while let Ok(event) = observer.try_recv() {
        if let EngineEvent::FileTransferred { job, file } = event
            && job == id
        {
            order.push(file);
        }
    }
    assert_eq!(order, vec![0, 1, 2, 3]);
    assert_eq!(server.most_sending_at_once(), 4, "all four at once");
    h.engine.complete(id).await.expect("complete");
    for (i, (path, size)) in files.iter().enumerate() {
        let saved = std::fs::read(h.out(path.trim_start_matches('/'))).expect("file");
        assert_eq!(
            sha256(&saved),
            sha256(&content(*size, 80 + i as u64)),
            "{path}"
        );
    }
    assert!(hidden_files(&h.out_dir()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_at_once_keep_to_the_connections_per_host() {
    let server = TestServer::start().await;
    let files: Vec<(String, usize)> = (0..6).map(|i| (format!("/p{i}"), 300_000)).collect();
    for (i, (path, size)) in files.iter().enumerate() {
        server.put(path, content(*size, 90 + i as u64));
        server.behave(path, Behaviour::rate(1 << 20));
    }
    let config = Config {
        connections_per_host: 2,
        ..test_config()
    };
    let mut h = Harness::with_config(config).await;
    let refs: Vec<(&str, usize)> = files.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    let id = start(&h, &server, &refs, 6).await;
    h.wait_state(id, JobState::Transferred).await;
    assert_eq!(server.most_sending_at_once(), 2, "the host's cap");
    h.engine.complete(id).await.expect("complete");
    for (i, (path, size)) in files.iter().enumerate() {
        let saved = std::fs::read(h.out(path.trim_start_matches('/'))).expect("file");
        assert_eq!(saved, content(*size, 90 + i as u64), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_files_in_flight_deletes_every_temp_file() {
    let server = TestServer::start().await;
    let files = [("/c0", 200_000), ("/c1", 200_000), ("/c2", 200_000)];
    for (i, (path, size)) in files.iter().enumerate() {
        server.put(path, content(*size, 95 + i as u64));
        server.behave(path, Behaviour::stall_after(30_000));
    }
    let mut h = Harness::new().await;
    let id = start(&h, &server, &files, 3).await;
    h.wait_for(id, "every file under way", |j| {
        j.files.iter().all(|f| f.bytes_transferred >= 30_000)
    })
    .await;
    assert!(!hidden_files(&h.out_dir()).is_empty(), "temp files exist");
    assert_eq!(
        h.engine.cancel(id).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    let left: Vec<_> = std::fs::read_dir(h.out_dir())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_file_stops_the_others_at_their_checkpoints() {
    let server = TestServer::start().await;
    server.put("/ok", content(400_000, 97));
    server.behave("/ok", Behaviour::stall_after(100_000));
    server.put("/mid", content(200_000, 98));
    server.behave("/mid", Behaviour::rate(1 << 20));
    server.put("/gone", content(1000, 99));
    server.behave("/gone", Behaviour::status(404));
    let mut h = Harness::new().await;
    let files = [("/ok", 400_000), ("/mid", 200_000), ("/gone", 1000)];
    // /ok and /mid start; /gone when /mid is done, and it fails the job.
    let id = start(&h, &server, &files, 2).await;
    let job = h.wait_state(id, JobState::Error).await;
    let error = job.current_error().expect("error");
    assert_eq!(error.file, Some(2));
    assert_eq!(error.code, ferry::job::ErrorCode::Http(404));
    // /ok stopped where it stood; /mid is whole but not reported before /ok.
    assert_eq!(job.files[0].bytes_checkpointed, 100_000);
    assert!(!job.files[1].transferred);
    assert_eq!(job.files[1].bytes_checkpointed, 200_000);
    assert_eq!(hidden_files(&h.out_dir()).len(), 2, "their temp files stay");
    // Fixed on the server, the job goes on from there.
    server.behave("/ok", Behaviour::default());
    server.behave("/gone", Behaviour::default());
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    h.engine.complete(id).await.expect("complete");
    for (i, (path, size)) in files.iter().enumerate() {
        let saved = std::fs::read(h.out(path.trim_start_matches('/'))).expect("file");
        assert_eq!(saved, content(*size, 97 + i as u64), "{path}");
    }
    assert_eq!(
        server.last_range("/ok").as_deref(),
        Some("bytes=100000-399999")
    );
    assert_eq!(
        server.requests("/mid").len(),
        1,
        "a whole file is not asked for again"
    );
}
