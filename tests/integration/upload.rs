//! The BITS upload client (`engine::bits_upload`) against `ferry serve`'s upload server, both
//! real, on loopback.

use crate::{content, sha256};
use ferry::engine::bits_upload::{FIRST_FRAGMENT, Outcome, Progress, Upload};
use ferry::job::{ErrorClass, ErrorCode};
use ferry::serve::ServeOptions;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// `ferry serve` in this process, stopped when dropped.
pub struct Server {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(dir: &Path, max_upload_size: Option<u64>) -> Server {
        let options = ServeOptions {
            max_upload_size,
            ..ServeOptions::new(dir.to_path_buf(), "127.0.0.1:0".parse().expect("address"))
        };
        Server::start_with(options).await
    }

    pub async fn start_with(options: ServeOptions) -> Server {
        let (address_tx, address) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let ready = move |a| {
                let _ = address_tx.send(a);
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            ferry::serve::run(options, ready, shutdown)
                .await
                .expect("serve");
        });
        let address = address.await.expect("listening");
        Server {
            base: format!("http://{address}"),
            stop: Some(stop),
            task,
        }
    }

    pub async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }

    fn upload(&self, path: &str, local: &Path) -> Upload {
        upload_to(format!("{}{path}", self.base), local)
    }
}

/// An upload of `local` to `url` with no headers, credentials or special client.
fn upload_to(url: String, local: &Path) -> Upload {
    Upload {
        client: reqwest::Client::new(),
        url,
        local: local.to_path_buf(),
        headers: Vec::new(),
        credentials: Default::default(),
        clock: std::sync::Arc::new(ferry::engine::SystemClock::default()),
        throttle: Default::default(),
    }
}

/// Sends until the end (or a failure), recording every acknowledged offset.
async fn send_all(upload: &Upload, progress: &mut Progress) -> (Outcome, Vec<u64>) {
    let mut offsets = Vec::new();
    let (_stop, mut stop) = no_stop();
    let outcome = upload
        .send(progress, false, |p| offsets.push(p.acknowledged), &mut stop)
        .await;
    (outcome, offsets)
}

/// Sends until the server acknowledged at least `at` bytes, then stops.
async fn send_until(upload: &Upload, progress: &mut Progress, at: u64) -> Outcome {
    let (stop_tx, mut stop) = no_stop();
    let stop_at = |p: &Progress| {
        if p.acknowledged >= at {
            let _ = stop_tx.send(true);
        }
    };
    upload.send(progress, false, stop_at, &mut stop).await
}

/// Sends a new upload that must fail; returns how.
async fn failure_of(upload: &Upload) -> ferry::job::Failure {
    let (_stop, mut stop) = no_stop();
    let outcome = upload
        .send(&mut Progress::default(), false, |_| {}, &mut stop)
        .await;
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    failure
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn no_stop() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_up_in_growing_fragments() {
    let dir = tempfile::tempdir().expect("dir");
    let local = dir.path().join("local.bin");
    let data = content(3_000_000, 80);
    std::fs::write(&local, &data).expect("local");
    let served = tempfile::tempdir().expect("served");
    let server = Server::start(served.path(), None).await;
    let upload = server.upload("/up.bin", &local);
    let mut progress = Progress::default();
    let (outcome, offsets) = send_all(&upload, &mut progress).await;
    assert!(
        matches!(outcome, Outcome::Done { reply_url: None }),
        "{outcome:?}"
    );
    assert_eq!(progress.acknowledged, 3_000_000);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    // 256 KiB, 512 KiB, 1 MiB, then the rest: the fragment doubled on each success.
    assert_eq!(offsets[1], FIRST_FRAGMENT, "{offsets:?}");
    assert_eq!(offsets[2], FIRST_FRAGMENT * 3, "{offsets:?}");
    let uploaded = std::fs::read(served.path().join("up.bin")).expect("uploaded");
    assert_eq!(sha256(&uploaded), sha256(&data));
    let session = progress.session.clone().expect("session");
    upload.end_session(&session, false).await.expect("close");
    let left = std::fs::read_dir(served.path().join(".ferry-uploads"))
        .expect("sessions")
        .count();
    assert_eq!(left, 0);
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_after_the_server_restarts_and_starts_over_when_the_session_is_lost() {
    let dir = tempfile::tempdir().expect("dir");
    let local = dir.path().join("local.bin");
    let data = content(2_000_000, 81);
    std::fs::write(&local, &data).expect("local");
    let served = tempfile::tempdir().expect("served");
    let server = Server::start(served.path(), None).await;
    let mut progress = Progress::default();
    let outcome = send_until(&server.upload("/r.bin", &local), &mut progress, 700_000).await;
    assert!(matches!(outcome, Outcome::Stopped), "{outcome:?}");
    let held = progress.acknowledged;
    assert!((700_000..2_000_000).contains(&held), "{held}");
    assert!(
        !served.path().join("r.bin").exists(),
        "not visible before the end"
    );
    server.shut_down().await;

    // A new server process on the same folder knows the session: the upload goes on from there.
    let server = Server::start(served.path(), None).await;
    let (outcome, offsets) = send_all(&server.upload("/r.bin", &local), &mut progress).await;
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    assert!(
        offsets.iter().all(|o| *o >= held),
        "restarted from 0: {offsets:?}"
    );
    let uploaded = std::fs::read(served.path().join("r.bin")).expect("uploaded");
    assert_eq!(sha256(&uploaded), sha256(&data));

    // The server loses a session (cancelled here, as an expiry would): the client starts over.
    let mut progress = Progress::default();
    let upload = server.upload("/lost.bin", &local);
    let _ = send_until(&upload, &mut progress, 300_000).await;
    let lost = progress.session.clone().expect("session");
    upload.end_session(&lost, true).await.expect("cancel");
    let (outcome, offsets) = send_all(&upload, &mut progress).await;
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    assert_eq!(
        offsets.first(),
        Some(&0),
        "a new session starts at 0: {offsets:?}"
    );
    assert_ne!(progress.session, Some(lost));
    let uploaded = std::fs::read(served.path().join("lost.bin")).expect("uploaded");
    assert_eq!(sha256(&uploaded), sha256(&data));
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_classified() {
    let dir = tempfile::tempdir().expect("dir");
    let local = dir.path().join("local.bin");
    std::fs::write(&local, content(10_000, 82)).expect("local");
    let served = tempfile::tempdir().expect("served");
    std::fs::write(served.path().join("taken.bin"), b"old").expect("existing");
    let server = Server::start(served.path(), Some(5_000)).await;

    // Exists and may not be overwritten: 409, transient by the HTTP table (§12 D4).
    let failure = failure_of(&server.upload("/taken.bin", &local)).await;
    assert_eq!(failure.error.code, ErrorCode::Http(409));
    assert_eq!(failure.class, ErrorClass::Transient);
    assert_eq!(
        std::fs::read(served.path().join("taken.bin")).expect("kept"),
        b"old"
    );

    // Larger than the server takes: BG_E_TOO_LARGE, fatal.
    let failure = failure_of(&server.upload("/big.bin", &local)).await;
    assert_eq!(failure.error.code, ErrorCode::TooLarge);
    assert_eq!(failure.class, ErrorClass::Fatal);

    // Nothing listens: a transient transport error.
    let address = server.base.clone();
    server.shut_down().await;
    let upload = Upload {
        client: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("client"),
        ..upload_to(format!("{address}/x.bin"), &local)
    };
    assert_eq!(failure_of(&upload).await.class, ErrorClass::Transient);
}

/// A request header as text, `""` when absent (for the stub servers of the tests).
pub fn header(headers: &axum::http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A stub server's BITS Ack: the status, `BITS-Packet-Type: Ack` and these headers.
pub fn answer(status: u16, extra: Vec<(&'static str, String)>) -> axum::response::Response {
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    *response.status_mut() = axum::http::StatusCode::from_u16(status).expect("status");
    let headers = response.headers_mut();
    headers.insert("BITS-Packet-Type", "Ack".parse().expect("value"));
    for (name, value) in extra {
        headers.insert(name, value.parse().expect("value"));
    }
    response
}

/// A BITS upload server that refuses fragments over `limit` with 413 and, once, forgets part of
/// what it received (its offset is authoritative: the client must send that part again).
#[derive(Default)]
struct Picky {
    data: Vec<u8>,
    received: u64,
    forgot: bool,
    refused: u32,
    gaps: u32,
}

async fn picky(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<std::sync::Mutex<Picky>>>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> axum::response::Response {
    const LIMIT: usize = 64 * 1024;
    let text = |name: &str| header(&headers, name);
    let mut state = state.lock().expect("state");
    match text("BITS-Packet-Type").to_ascii_lowercase().as_str() {
        "create-session" => answer(
            200,
            vec![
                ("BITS-Protocol", ferry::engine::bits_upload::PROTOCOL.into()),
                ("BITS-Session-Id", "{PICKY}".into()),
            ],
        ),
        "fragment" => {
            if body.len() > LIMIT {
                state.refused += 1;
                return answer(413, Vec::new());
            }
            let range = text("Content-Range");
            let (first, _) = range
                .trim_start_matches("bytes ")
                .split_once('-')
                .expect("range");
            let first: u64 = first.parse().expect("first");
            if first > state.received {
                state.gaps += 1;
                let received = state.received.to_string();
                return answer(416, vec![("BITS-Received-Content-Range", received)]);
            }
            let skip = (state.received - first) as usize;
            let tail = &body[skip.min(body.len())..];
            state.data.extend_from_slice(tail);
            state.received += tail.len() as u64;
            if !state.forgot && state.received >= 200_000 {
                // Lose the last bytes, as a server whose disk write failed would.
                state.forgot = true;
                state.received = 100_000;
                state.data.truncate(100_000);
            }
            let received = state.received.to_string();
            answer(200, vec![("BITS-Received-Content-Range", received)])
        }
        _ => answer(200, Vec::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_shrink_on_413_and_follow_the_servers_offset() {
    let dir = tempfile::tempdir().expect("dir");
    let local = dir.path().join("local.bin");
    let data = content(600_000, 83);
    std::fs::write(&local, &data).expect("local");
    let state = std::sync::Arc::new(std::sync::Mutex::new(Picky::default()));
    let app = axum::Router::new()
        .fallback(picky)
        .with_state(state.clone());
    let server = crate::spawn_router(app).await;
    let address = server.address;
    let upload = upload_to(format!("http://{address}/picky.bin"), &local);
    let mut progress = Progress::default();
    let (outcome, offsets) = send_all(&upload, &mut progress).await;
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    let state = state.lock().expect("state");
    assert_eq!(sha256(&state.data), sha256(&data), "offsets: {offsets:?}");
    // 256 KiB and 128 KiB refused, then 64 KiB is the ceiling: no more 413s.
    assert_eq!(state.refused, 2, "offsets: {offsets:?}");
    assert_eq!(progress.ceiling, Some(64 * 1024));
    assert!(
        offsets.contains(&100_000),
        "resent from the server's offset: {offsets:?}"
    );
    assert_eq!(state.gaps, 0, "the client never skipped ahead");
}

/// Defect: when the server's acknowledged offset stopped moving, the client sent the same
/// fragment again at once, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_offset_stops_moving_is_not_sent_fragments_forever() {
    let dir = tempfile::tempdir().expect("dir");
    let local = dir.path().join("local.bin");
    std::fs::write(&local, content(300_000, 84)).expect("local");
    let fragments = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = fragments.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let counted = counted.clone();
        async move {
            match header(&headers, "BITS-Packet-Type")
                .to_ascii_lowercase()
                .as_str()
            {
                "create-session" => answer(
                    200,
                    vec![
                        ("BITS-Protocol", ferry::engine::bits_upload::PROTOCOL.into()),
                        ("BITS-Session-Id", "{STUCK}".into()),
                    ],
                ),
                "fragment" => {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    answer(200, vec![("BITS-Received-Content-Range", "1000".into())])
                }
                _ => answer(200, Vec::new()),
            }
        }
    });
    let server = crate::spawn_router(app).await;
    let upload = upload_to(format!("http://{}/stuck.bin", server.address), &local);
    let failure = failure_of(&upload).await;
    assert_eq!(failure.error.code, ErrorCode::InvalidServerResponse);
    assert_eq!(failure.class, ferry::job::ErrorClass::Transient);
    assert!(
        failure.error.description.contains("no new byte"),
        "{}",
        failure.error.description
    );
    // One answer moves the offset to 1000, then three stay there.
    assert_eq!(fragments.load(std::sync::atomic::Ordering::SeqCst), 4);
}
