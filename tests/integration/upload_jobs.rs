//! Upload and upload-reply jobs run by the engine: against `ferry serve` (in this process) and
//! against a scripted BITS server for the cases a real server only shows by chance.

use crate::upload::{Server, answer};
use crate::{Harness, content, sha256};
use ferry::engine::EngineEvent;
use ferry::engine::bits_upload::PROTOCOL;
use ferry::job::{ErrorCode, ErrorContext, Job, JobId, JobState, JobType, NewFile};
use ferry::serve::ServeOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A SUSPENDED upload job of `local` to `url`.
async fn upload_job(h: &Harness, job_type: JobType, url: &str, local: &Path) -> JobId {
    let id = h
        .engine
        .create_job("upload", job_type, None)
        .await
        .expect("create");
    let file = NewFile {
        remote_url: url.to_string(),
        local_path: local.to_path_buf(),
        ranges: None,
        checksum: None,
    };
    h.engine.add_files(id, vec![file]).await.expect("add file");
    id
}

/// Waits for the engine's word on the end of a session; returns the session id.
async fn session_ended(h: &mut Harness, id: JobId, cancel: bool) -> String {
    let event = h
        .wait_event("UploadSessionEnded", |e| {
            matches!(e, EngineEvent::UploadSessionEnded { job, cancel: c, .. }
                if *job == id && *c == cancel)
        })
        .await;
    let EngineEvent::UploadSessionEnded {
        session,
        acknowledged,
        ..
    } = event
    else {
        unreachable!()
    };
    assert!(acknowledged, "the server acknowledged the end of {session}");
    session
}

/// Session records `ferry serve` keeps for open sessions.
fn open_sessions(served: &Path) -> Vec<String> {
    std::fs::read_dir(served.join(".ferry-uploads"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".ron"))
                .collect()
        })
        .unwrap_or_default()
}

fn serve_options(dir: &Path, listen: SocketAddr) -> ServeOptions {
    ServeOptions::new(dir.to_path_buf(), listen)
}

fn address(server: &Server) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_job_goes_up_and_is_completed() {
    let mut h = Harness::new().await;
    let served = tempfile::tempdir().expect("served");
    let server = Server::start(served.path(), None).await;
    let local = h.out("report.bin");
    let data = content(3_000_000, 90);
    std::fs::write(&local, &data).expect("local");
    let url = format!("{}/report.bin", server.base);
    let id = upload_job(&h, JobType::Upload, &url, &local).await;
    let mut observer = h.engine.subscribe();
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert_eq!(job.progress().bytes_total, Some(3_000_000));
    assert_eq!(job.progress().bytes_transferred, 3_000_000);
    let uploaded = std::fs::read(served.path().join("report.bin")).expect("uploaded");
    assert_eq!(sha256(&uploaded), sha256(&data));
    // Close-Session went out once the upload was done; the server forgot the session.
    session_ended(&mut h, id, false).await;
    assert_eq!(open_sessions(served.path()), Vec::<String>::new());
    assert_eq!(job.upload_session, None);
    h.engine.complete(id).await.expect("complete");
    assert_eq!(
        h.engine.job(id).await.expect("job").state,
        JobState::Acknowledged
    );
    // The local file is the source: Complete and the upload leave it as it was.
    assert_eq!(
        sha256(&std::fs::read(&local).expect("local")),
        sha256(&data)
    );
    let mut states = Vec::new();
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
        vec![Queued, Connecting, Transferring, Transferred, Acknowledged]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_is_refused_before_an_upload_is_transferred() {
    let h = Harness::new().await;
    let local = h.out("a.bin");
    std::fs::write(&local, b"abc").expect("local");
    let id = upload_job(&h, JobType::Upload, "http://127.0.0.1:9/a.bin", &local).await;
    let error = h.engine.complete(id).await.expect_err("not TRANSFERRED");
    assert_eq!(error.code, ErrorCode::InvalidState);
    assert!(error.message.contains("TRANSFERRED"), "{}", error.message);
}

/// A large upload to `ferry serve` that takes small fragments (64 KiB): many round trips, so a
/// test can act while it runs. The job is resumed.
struct LongUpload {
    served: tempfile::TempDir,
    server: Option<Server>,
    /// The server's address, to start it again on the same port.
    listen: SocketAddr,
    data: Vec<u8>,
    id: JobId,
}

const SMALL_FRAGMENTS: u64 = 64 * 1024;

impl LongUpload {
    async fn start(h: &Harness, size: usize, seed: u64) -> LongUpload {
        let served = tempfile::tempdir().expect("served");
        let server = Server::start_with(small_fragments(served.path(), None)).await;
        let listen = address(&server);
        let local = h.out("big.bin");
        let data = content(size, seed);
        std::fs::write(&local, &data).expect("local");
        let url = format!("{}/big.bin", server.base);
        let id = upload_job(h, JobType::Upload, &url, &local).await;
        h.engine.resume(id).await.expect("resume");
        LongUpload {
            served,
            server: Some(server),
            listen,
            data,
            id,
        }
    }

    async fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.shut_down().await;
        }
    }

    /// `ferry serve` on the same folder and address again.
    async fn serve_again(&mut self) {
        let options = small_fragments(self.served.path(), Some(self.listen));
        self.server = Some(Server::start_with(options).await);
    }

    fn assert_arrived(&self) {
        let uploaded = std::fs::read(self.served.path().join("big.bin")).expect("uploaded");
        assert_eq!(sha256(&uploaded), sha256(&self.data));
    }
}

fn small_fragments(dir: &Path, listen: Option<SocketAddr>) -> ServeOptions {
    let listen = listen.unwrap_or_else(|| "127.0.0.1:0".parse().expect("address"));
    ServeOptions {
        max_fragment_size: Some(SMALL_FRAGMENTS),
        ..serve_options(dir, listen)
    }
}

/// The server stops in the middle of an upload and comes back: the job retries and goes on in
/// the same session from where the server stands, with fragments the server's limit allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_goes_on_in_its_session_after_the_server_restarts() {
    let mut h = Harness::new().await;
    let mut upload = LongUpload::start(&h, 32 << 20, 91).await;
    let id = upload.id;
    let started = h
        .wait_for(id, "first fragments", |j| {
            j.progress().bytes_transferred > 0 && j.upload_session.is_some()
        })
        .await;
    let session = started.upload_session.clone().expect("session");
    upload.stop_server().await;
    let failed = h.wait_state(id, JobState::TransientError).await;
    assert_eq!(
        failed.upload_session.as_deref(),
        Some(session.as_str()),
        "the session is kept for the retry"
    );
    let sent_before = failed.progress().bytes_transferred;
    assert!(sent_before > 0 && sent_before < upload.data.len() as u64);
    upload.serve_again().await;
    let mut observer = h.engine.subscribe();
    h.clock.advance(Duration::from_secs(600)); // the minimum retry delay
    h.wait_state(id, JobState::Transferred).await;
    assert_eq!(session_ended(&mut h, id, false).await, session);
    upload.assert_arrived();
    // The retry did not go back to byte 0.
    while let Ok(event) = observer.try_recv() {
        if let EngineEvent::JobModification { job, progress, .. } = event
            && job == id
        {
            assert!(
                progress.bytes_transferred >= sent_before,
                "went back to {} after {sent_before}",
                progress.bytes_transferred
            );
        }
    }
}

/// Suspends a running upload once the server holds part of it; returns the job then.
async fn suspend_midway(h: &mut Harness, id: JobId) -> Job {
    h.wait_for(id, "first fragments", |j| {
        j.progress().bytes_transferred > 0 && j.upload_session.is_some()
    })
    .await;
    h.engine.suspend(id).await.expect("suspend");
    let job = h.engine.job(id).await.expect("job");
    assert!(
        job.progress().bytes_transferred < job.progress().bytes_total.unwrap_or_default(),
        "suspended before the end"
    );
    job
}

/// The server lost bytes it had acknowledged (its disk did not keep them): it answers 416 with
/// its own offset and the client sends from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resyncs_when_the_server_holds_less_than_it_acknowledged() {
    let mut h = Harness::new().await;
    let mut upload = LongUpload::start(&h, 16 << 20, 92).await;
    let id = upload.id;
    let suspended = suspend_midway(&mut h, id).await;
    upload.stop_server().await;
    let session = suspended.upload_session.clone().expect("session");
    let part = upload
        .served
        .path()
        .join(".ferry-uploads")
        .join(format!("{session}.part"));
    let held = std::fs::metadata(&part).expect("part").len();
    assert!(held >= 10_000);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .and_then(|f| f.set_len(held - 10_000))
        .expect("truncate");
    upload.serve_again().await;
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    assert_eq!(session_ended(&mut h, id, false).await, session);
    upload.assert_arrived();
}

/// The server lost the session (another machine of a farm, or its data was wiped): the job
/// starts over in a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_starts_the_upload_again() {
    let mut h = Harness::new().await;
    let mut upload = LongUpload::start(&h, 16 << 20, 93).await;
    let id = upload.id;
    let suspended = suspend_midway(&mut h, id).await;
    upload.stop_server().await;
    std::fs::remove_dir_all(upload.served.path().join(".ferry-uploads")).expect("wipe sessions");
    upload.serve_again().await;
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    let second = session_ended(&mut h, id, false).await;
    assert_ne!(Some(second), suspended.upload_session);
    upload.assert_arrived();
}

/// A BITS upload server whose answers the test controls.
#[derive(Default)]
struct Script {
    received: u64,
    /// Packet types in the order they came, lower case.
    packets: Vec<String>,
    /// Fragments from this offset on wait until the test releases them.
    hold_from: Option<u64>,
    /// Every fragment gets this refusal: HTTP status, BITS-Error-Code, BITS-Error-Context.
    refuse: Option<(u16, u32, u32)>,
    /// Create-Session pins the session to this host (BITS-Host-Id), with this fallback timeout.
    host_id: Option<(String, Option<u64>)>,
}

struct Scripted {
    url: String,
    state: Arc<Mutex<Script>>,
    release: watch::Sender<bool>,
    _server: crate::Spawned,
}

impl Scripted {
    async fn start(script: Script) -> Scripted {
        let state = Arc::new(Mutex::new(script));
        let (release, released) = watch::channel(false);
        let app = axum::Router::new()
            .fallback(scripted)
            .with_state((state.clone(), released));
        let server = crate::spawn_router(app).await;
        let address = server.address;
        Scripted {
            url: format!("http://{address}/scripted.bin"),
            state,
            release,
            _server: server,
        }
    }

    fn packets(&self) -> Vec<String> {
        self.state.lock().expect("state").packets.clone()
    }
}

type ScriptState = (Arc<Mutex<Script>>, watch::Receiver<bool>);

async fn scripted(
    axum::extract::State((state, mut released)): axum::extract::State<ScriptState>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> axum::response::Response {
    let text = |name: &str| crate::upload::header(&headers, name);
    let packet = text("BITS-Packet-Type").to_ascii_lowercase();
    let first: u64 = text("Content-Range")
        .trim_start_matches("bytes ")
        .split_once('-')
        .and_then(|(first, _)| first.parse().ok())
        .unwrap_or(0);
    let hold = {
        let mut state = state.lock().expect("state");
        state.packets.push(packet.clone());
        packet == "fragment" && state.hold_from.is_some_and(|from| first >= from)
    };
    if hold {
        let _ = released.wait_for(|r| *r).await;
    }
    let mut state = state.lock().expect("state");
    match packet.as_str() {
        // Not BITS (a GET of a reply): the refusal, if there is one.
        "" => match state.refuse {
            Some((status, _, _)) => answer(status, Vec::new()),
            None => answer(200, Vec::new()),
        },
        "create-session" => {
            let mut extra = vec![
                ("BITS-Protocol", PROTOCOL.to_string()),
                ("BITS-Session-Id", "{SCRIPTED}".to_string()),
            ];
            if let Some((host, fallback)) = &state.host_id {
                extra.push(("BITS-Host-Id", host.clone()));
                if let Some(secs) = fallback {
                    extra.push(("BITS-Host-Id-Fallback-Timeout", secs.to_string()));
                }
            }
            answer(200, extra)
        }
        "fragment" => {
            if let Some((status, code, context)) = state.refuse {
                return answer(
                    status,
                    vec![
                        ("BITS-Error-Code", format!("0x{code:08X}")),
                        ("BITS-Error-Context", format!("0x{context:X}")),
                    ],
                );
            }
            if first <= state.received {
                let end = first + body.len() as u64;
                state.received = state.received.max(end);
            }
            let received = state.received.to_string();
            answer(200, vec![("BITS-Received-Content-Range", received)])
        }
        _ => answer(200, vec![("BITS-Session-Id", "{SCRIPTED}".into())]),
    }
}

/// An upload of a 1 MB file `name` to a scripted server that holds every fragment after the
/// first; returns once the first is acknowledged, the second waiting for `release`.
async fn held_upload(h: &mut Harness, name: &str, seed: u64) -> (Scripted, PathBuf, JobId) {
    let server = Scripted::start(Script {
        hold_from: Some(1),
        ..Script::default()
    })
    .await;
    let local = h.out(name);
    std::fs::write(&local, content(1_000_000, seed)).expect("local");
    let id = upload_job(h, JobType::Upload, &server.url, &local).await;
    h.engine.resume(id).await.expect("resume");
    h.wait_for(id, "the first fragment", |j| {
        j.progress().bytes_transferred > 0
    })
    .await;
    (server, local, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_the_upload_finished_cancels_the_session() {
    let mut h = Harness::new().await;
    let (server, local, id) = held_upload(&mut h, "a.bin", 94).await;
    h.engine.cancel(id).await.expect("cancel");
    assert_eq!(session_ended(&mut h, id, true).await, "{SCRIPTED}");
    let packets = server.packets();
    assert!(
        packets.contains(&"cancel-session".to_string()),
        "{packets:?}"
    );
    assert!(!packets.contains(&"close-session".to_string()));
    assert!(local.exists(), "the source file stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_that_changes_during_the_upload_fails_the_job() {
    let mut h = Harness::new().await;
    let (server, local, id) = held_upload(&mut h, "growing.log", 95).await;
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&local)
            .expect("open");
        file.write_all(b"one more line\n").expect("append");
    }
    server.release.send_replace(true);
    let job = h.wait_state(id, JobState::Error).await;
    let error = job.error.expect("error");
    assert_eq!(error.code, ErrorCode::LocalFileChanged);
    assert_eq!(error.context, ErrorContext::LocalFile);
    assert!(error.description.contains("growing.log"), "{error:?}");
    // Resume does not send a mix of two versions: the same error again.
    h.engine.resume(id).await.expect("resume");
    let job = h
        .wait_for(id, "ERROR again", |j| {
            j.state == JobState::Error && j.error_count >= 1
        })
        .await;
    assert_eq!(job.error.map(|e| e.code), Some(ErrorCode::LocalFileChanged));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_application_errors_are_transient_or_fatal_by_status() {
    let mut h = Harness::new().await;
    let local = h.out("a.bin");
    std::fs::write(&local, content(10_000, 96)).expect("local");
    for (status, state) in [(500, JobState::TransientError), (403, JobState::Error)] {
        let server = Scripted::start(Script {
            refuse: Some((status, 0x8000_4005, 7)),
            ..Script::default()
        })
        .await;
        let id = upload_job(&h, JobType::Upload, &server.url, &local).await;
        h.engine.resume(id).await.expect("resume");
        let job = h.wait_state(id, state).await;
        let error = job.error.expect("error");
        assert_eq!(error.context, ErrorContext::RemoteApplication, "{status}");
        assert_eq!(error.code, ErrorCode::Http(status));
        assert!(error.description.contains("0x80004005"), "{error:?}");
        h.engine.cancel(id).await.expect("cancel");
    }
}

/// Where an upload-reply job puts its reply when no name was given: beside the local file.
fn default_reply(local: &Path) -> PathBuf {
    let mut name = local.as_os_str().to_os_string();
    name.push(".reply");
    PathBuf::from(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_reply_job_needs_a_reply_url_from_the_server() {
    let mut h = Harness::new().await;
    let served = tempfile::tempdir().expect("served");
    // Without a server application, `ferry serve` names no reply: the job cannot finish.
    let server = Server::start(served.path(), None).await;
    let local = h.out("q.bin");
    std::fs::write(&local, content(5_000, 97)).expect("local");
    let url = format!("{}/q.bin", server.base);
    let id = upload_job(&h, JobType::UploadReply, &url, &local).await;
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Error).await;
    assert_eq!(
        job.reply.file_name.as_deref(),
        Some(default_reply(&local).as_path()),
        "named at the first Resume"
    );
    let error = job.error.expect("error");
    assert_eq!(error.code, ErrorCode::InvalidServerResponse);
    assert!(error.description.contains("BITS-Reply-URL"), "{error:?}");
}

/// A server application for `ferry serve --notify-url`: answers each notification with the
/// sha256 of the upload as the reply, or with the statuses it is told to give first.
#[derive(Default)]
struct AppScript {
    /// Answers the next notifications get, in order, before the normal 200.
    fail_with: Vec<u16>,
    /// Ask the server to also put the upload at its URL.
    copy: bool,
    /// Answer with this static reply URL instead of a reply.
    static_reply: Option<String>,
    notifications: Vec<axum::http::HeaderMap>,
}

struct App {
    url: String,
    state: Arc<Mutex<AppScript>>,
    _server: crate::Spawned,
}

impl App {
    async fn start(script: AppScript) -> App {
        let state = Arc::new(Mutex::new(script));
        let app = axum::Router::new()
            .fallback(application)
            .with_state(state.clone());
        let server = crate::spawn_router(app).await;
        let address = server.address;
        App {
            url: format!("http://{address}/notify"),
            state,
            _server: server,
        }
    }

    fn notifications(&self) -> Vec<axum::http::HeaderMap> {
        self.state.lock().expect("state").notifications.clone()
    }
}

async fn application(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<AppScript>>>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> axum::response::Response {
    let mut state = state.lock().expect("state");
    state.notifications.push(headers.clone());
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    if !state.fail_with.is_empty() {
        let status = state.fail_with.remove(0);
        *response.status_mut() = axum::http::StatusCode::from_u16(status).expect("status");
        return response;
    }
    if state.copy {
        response.headers_mut().insert(
            "BITS-Copy-File-To-Destination",
            "yes".parse().expect("value"),
        );
    }
    if let Some(url) = &state.static_reply {
        response
            .headers_mut()
            .insert("BITS-Static-Response-URL", url.parse().expect("value"));
        return response;
    }
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match text("BITS-Request-DataFile-Name") {
        Some(upload) => {
            // By reference: read the upload, write the reply file.
            let data = std::fs::read(upload).expect("the upload is readable");
            let reply = text("BITS-Response-DataFile-Name").expect("reply file name");
            std::fs::write(reply, format!("sha256:{}", sha256(&data))).expect("reply");
        }
        None => {
            // By value: the body is the upload, the reply is the answer's body.
            *response.body_mut() = axum::body::Body::from(format!("sha256:{}", sha256(&body)));
        }
    }
    response
}

fn notify_options(dir: &Path, app: &App, by_value: bool) -> ServeOptions {
    ServeOptions {
        notify: Some(ferry::serve::Notify {
            url: app.url.clone(),
            by_value,
        }),
        ..serve_options(dir, "127.0.0.1:0".parse().expect("address"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_reply_job_brings_back_the_applications_reply() {
    for by_value in [false, true] {
        let mut h = Harness::new().await;
        let served = tempfile::tempdir().expect("served");
        let app = App::start(AppScript {
            copy: by_value,
            ..AppScript::default()
        })
        .await;
        let server = Server::start_with(notify_options(served.path(), &app, by_value)).await;
        let local = h.out("form.bin");
        let data = content(2_000_000, 98);
        std::fs::write(&local, &data).expect("local");
        let url = format!("{}/form.bin?user=7", server.base);
        let id = upload_job(&h, JobType::UploadReply, &url, &local).await;
        h.engine.resume(id).await.expect("resume");
        let job = h.wait_state(id, JobState::Transferred).await;
        let expected = format!("sha256:{}", sha256(&data));
        let reply = job.reply_progress().expect("reply progress");
        assert_eq!(reply.bytes_total, Some(expected.len() as u64));
        assert_eq!(reply.bytes_transferred, expected.len() as u64);
        assert_eq!(
            job.progress().bytes_transferred,
            2_000_000,
            "upload progress apart"
        );
        // GetReplyData in TRANSFERRED, before Complete.
        let read = h.engine.reply_data(id).await.expect("reply data");
        assert_eq!(String::from_utf8_lossy(&read), expected);
        // Close-Session only after the reply came: the server dropped the session and reply.
        session_ended(&mut h, id, false).await;
        assert_eq!(open_sessions(served.path()), Vec::<String>::new());
        let notes = app.notifications();
        assert_eq!(notes.len(), 1, "by_value {by_value}");
        let original = notes[0]
            .get("BITS-Original-Request-URL")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(original.ends_with("/form.bin?user=7"), "{original}");
        // The application decides whether the upload also lands at its URL.
        assert_eq!(served.path().join("form.bin").exists(), by_value);
        h.engine.complete(id).await.expect("complete");
        let reply_file = default_reply(&local);
        assert_eq!(
            std::fs::read_to_string(&reply_file).expect("reply file"),
            expected
        );
        assert!(
            crate::hidden_files(&h.out_dir()).is_empty(),
            "no temp file left: {:?}",
            crate::hidden_files(&h.out_dir())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_application_failures_are_retried_or_final() {
    let mut h = Harness::new().await;
    let served = tempfile::tempdir().expect("served");
    let app = App::start(AppScript {
        fail_with: vec![500],
        ..AppScript::default()
    })
    .await;
    let server = Server::start_with(notify_options(served.path(), &app, false)).await;
    let local = h.out("a.bin");
    std::fs::write(&local, content(300_000, 99)).expect("local");
    let id = upload_job(
        &h,
        JobType::UploadReply,
        &format!("{}/a.bin", server.base),
        &local,
    )
    .await;
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::TransientError).await;
    let error = job.error.expect("error");
    assert_eq!(error.context, ErrorContext::RemoteApplication);
    assert_eq!(error.code, ErrorCode::Http(500));
    // The retry repeats the last fragment; the server asks the application again.
    h.clock.advance(Duration::from_secs(600));
    h.wait_state(id, JobState::Transferred).await;
    assert_eq!(app.notifications().len(), 2);

    // 403 from the application: final.
    app.state.lock().expect("state").fail_with = vec![403];
    let second = upload_job(
        &h,
        JobType::UploadReply,
        &format!("{}/b.bin", server.base),
        &local,
    )
    .await;
    h.engine.resume(second).await.expect("resume");
    let job = h.wait_state(second, JobState::Error).await;
    let error = job.error.expect("error");
    assert_eq!(error.context, ErrorContext::RemoteApplication);
    assert_eq!(error.code, ErrorCode::Http(403));
}

/// Upload-reply cancelled after its upload: the reply goes, the upload stays where the
/// application put it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_upload_reply_after_the_upload_cancels_only_the_reply() {
    let mut h = Harness::new().await;
    let served = tempfile::tempdir().expect("served");
    // The reply is somewhere that fails for now.
    let refusing = Scripted::start(Script {
        refuse: Some((503, 0, 5)),
        ..Script::default()
    })
    .await;
    let app = App::start(AppScript {
        copy: true,
        static_reply: Some(refusing.url.clone()),
        ..AppScript::default()
    })
    .await;
    let server = Server::start_with(notify_options(served.path(), &app, false)).await;
    let local = h.out("a.bin");
    let data = content(300_000, 100);
    std::fs::write(&local, &data).expect("local");
    let id = upload_job(
        &h,
        JobType::UploadReply,
        &format!("{}/a.bin", server.base),
        &local,
    )
    .await;
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::TransientError).await;
    assert!(job.files[0].transferred, "the upload is done");
    assert_eq!(
        job.reply.download.as_ref().map(|r| r.remote_url.as_str()),
        Some(refusing.url.as_str())
    );
    h.engine.cancel(id).await.expect("cancel");
    session_ended(&mut h, id, true).await;
    assert_eq!(open_sessions(served.path()), Vec::<String>::new());
    let uploaded = std::fs::read(served.path().join("a.bin")).expect("still uploaded");
    assert_eq!(sha256(&uploaded), sha256(&data));
    assert!(crate::hidden_files(&h.out_dir()).is_empty());
    assert!(local.exists());
}

/// `ferry serve` for use off loopback: HTTPS with its own certificate and HTTP Basic accounts.
/// A job with the right credentials and the authority in the config uploads; one without
/// credentials is refused with 401, and a plain GET without them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_https_with_basic_auth() {
    let certs = tempfile::tempdir().expect("certs");
    let identity = crate::tls::Identity::new(certs.path());
    let config = ferry::config::Config {
        extra_root_certificates: vec![identity.ca_file.clone()],
        ..crate::test_config()
    };
    let mut h = Harness::with_config(config).await;
    let served = tempfile::tempdir().expect("served");
    let options = ServeOptions {
        users: vec![("alice".into(), "s3cret".into())],
        tls: Some(ferry::serve::TlsFiles {
            certificate: identity.cert_file.clone(),
            key: identity.key_file.clone(),
        }),
        ..serve_options(served.path(), "127.0.0.1:0".parse().expect("address"))
    };
    let server = Server::start_with(options).await;
    let base = server.base.replacen("http://", "https://", 1);
    let local = h.out("secret.bin");
    let data = content(700_000, 101);
    std::fs::write(&local, &data).expect("local");

    let id = upload_job(&h, JobType::Upload, &format!("{base}/secret.bin"), &local).await;
    h.engine
        .set(
            id,
            ferry::job::PropertyChange::Credentials(ferry::job::Credentials {
                server: Some((
                    ferry::job::AuthScheme::Basic,
                    "alice".into(),
                    "s3cret".into(),
                )),
            }),
        )
        .await
        .expect("credentials");
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    let uploaded = std::fs::read(served.path().join("secret.bin")).expect("uploaded");
    assert_eq!(sha256(&uploaded), sha256(&data));

    let anonymous = upload_job(&h, JobType::Upload, &format!("{base}/other.bin"), &local).await;
    h.engine.resume(anonymous).await.expect("resume");
    let job = h.wait_state(anonymous, JobState::Error).await;
    assert_eq!(job.error.map(|e| e.code), Some(ErrorCode::Http(401)));
    assert!(!served.path().join("other.bin").exists());

    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&identity.ca_file).expect("ca"))
                .expect("certificate"),
        )
        .build()
        .expect("client");
    let url = format!("{base}/secret.bin");
    let refused = http.get(&url).send().await.expect("get");
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    let fetched = http
        .get(&url)
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .expect("get");
    assert_eq!(fetched.status(), 200);
    assert_eq!(sha256(&fetched.bytes().await.expect("body")), sha256(&data));
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A web farm without shared storage: the machine that took Create-Session names itself in
/// BITS-Host-Id, and every later packet goes there, starting with a Ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pinned_to_a_host_is_continued_there() {
    let mut h = Harness::new().await;
    let node = Scripted::start(Script::default()).await;
    let front = Scripted::start(Script {
        host_id: Some((host_of(&node.url), None)),
        ..Script::default()
    })
    .await;
    let local = h.out("a.bin");
    std::fs::write(&local, content(600_000, 102)).expect("local");
    let id = upload_job(&h, JobType::Upload, &front.url, &local).await;
    h.engine.resume(id).await.expect("resume");
    h.wait_state(id, JobState::Transferred).await;
    session_ended(&mut h, id, false).await;
    assert_eq!(front.packets(), vec!["create-session".to_string()]);
    let at_node = node.packets();
    assert_eq!(
        at_node.first().map(String::as_str),
        Some("ping"),
        "{at_node:?}"
    );
    assert!(at_node.contains(&"fragment".to_string()), "{at_node:?}");
    assert_eq!(at_node.last().map(String::as_str), Some("close-session"));
}

/// The pinned host stays unreachable past BITS-Host-Id-Fallback-Timeout: packets go back to the
/// upload URL's own host (crossed with the engine's clock, not by waiting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_pinned_host_falls_back_after_its_timeout() {
    let mut h = Harness::new().await;
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gone_host = gone.local_addr().expect("address").to_string();
    drop(gone); // nothing listens there any more
    let front = Scripted::start(Script {
        host_id: Some((gone_host.clone(), Some(60))),
        ..Script::default()
    })
    .await;
    let local = h.out("a.bin");
    std::fs::write(&local, content(600_000, 103)).expect("local");
    let id = upload_job(&h, JobType::Upload, &front.url, &local).await;
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::TransientError).await;
    let pin = job.upload_host.expect("pinned");
    assert_eq!(pin.host, gone_host);
    assert_eq!(pin.fallback_secs, Some(60));
    assert_eq!(pin.unreachable_since, Some(crate::start_time()));
    // The retry comes after the minimum delay (600 s), past the 60 s fallback.
    h.clock.advance(Duration::from_secs(600));
    let job = h.wait_state(id, JobState::Transferred).await;
    assert_eq!(job.upload_host, None);
    let packets = front.packets();
    assert_eq!(packets.first().map(String::as_str), Some("create-session"));
    assert!(packets.contains(&"fragment".to_string()), "{packets:?}");
}

/// Ferry stops abruptly in the middle of an upload: the next engine continues the same server
/// session from the saved offset (no second Create-Session).
#[test]
fn an_upload_continues_its_session_after_ferry_restarts() {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let server_runtime = runtime();
    let server = server_runtime.block_on(Scripted::start(Script {
        hold_from: Some(1),
        ..Script::default()
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("a.bin");
    let data = content(1_000_000, 104);
    std::fs::write(&local, &data).expect("local");
    let clock = Arc::new(ferry::engine::ManualClock::new(crate::start_time()));
    let config = crate::test_config();
    let first = runtime();
    let id = first.block_on(async {
        let (engine, _) =
            Harness::start_engine(dir.path(), &config, clock.clone()).expect("engine");
        let mut events = engine.subscribe();
        let id = engine
            .create_job("a", JobType::Upload, None)
            .await
            .expect("create");
        let file = NewFile {
            remote_url: server.url.clone(),
            local_path: local.clone(),
            ranges: None,
            checksum: None,
        };
        engine.add_files(id, vec![file]).await.expect("add");
        engine.resume(id).await.expect("resume");
        loop {
            let event = tokio::time::timeout(crate::PATIENCE, events.recv())
                .await
                .expect("a checkpoint in time")
                .expect("event");
            if let EngineEvent::ProgressSaved { job, checkpointed } = event
                && job == id
                && checkpointed > 0
            {
                break id;
            }
        }
    });
    first.shutdown_background(); // no shutdown of the engine: as a crash
    server.state.lock().expect("state").hold_from = None;
    server.release.send_replace(true);
    runtime().block_on(async {
        let (engine, _) = crate::restart_engine(dir.path(), &config, clock.clone()).await;
        let mut events = engine.subscribe();
        let job = engine.job(id).await.expect("the job survived");
        assert_eq!(job.upload_session.as_deref(), Some("{SCRIPTED}"));
        loop {
            if engine.job(id).await.expect("job").state == JobState::Transferred {
                break;
            }
            tokio::time::timeout(crate::PATIENCE, events.recv())
                .await
                .expect("progress")
                .expect("event");
        }
    });
    let packets = server.packets();
    let creates = packets.iter().filter(|p| *p == "create-session").count();
    assert_eq!(creates, 1, "{packets:?}");
}

/// The application answers with a static reply URL (BITS-Static-Response-URL): the client
/// fetches its reply from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_reply_url_from_the_application_is_fetched() {
    let mut h = Harness::new().await;
    let served = tempfile::tempdir().expect("served");
    std::fs::create_dir(served.path().join("replies")).expect("replies");
    std::fs::write(served.path().join("replies/thanks.txt"), "thanks").expect("reply");
    let app = App::start(AppScript::default()).await;
    let server = Server::start_with(notify_options(served.path(), &app, false)).await;
    app.state.lock().expect("state").static_reply =
        Some(format!("{}/replies/thanks.txt", server.base));
    let local = h.out("a.bin");
    std::fs::write(&local, content(10_000, 105)).expect("local");
    let url = format!("{}/a.bin", server.base);
    let id = upload_job(&h, JobType::UploadReply, &url, &local).await;
    h.engine.resume(id).await.expect("resume");
    let job = h.wait_state(id, JobState::Transferred).await;
    assert_eq!(
        job.reply.download.as_ref().map(|r| r.remote_url.clone()),
        Some(format!("{}/replies/thanks.txt", server.base))
    );
    assert_eq!(h.engine.reply_data(id).await.expect("reply"), b"thanks");
    assert!(
        served.path().join("replies/thanks.txt").exists(),
        "a static reply is not deleted"
    );
}

/// `ferry put` interrupted with Ctrl+C suspends its job; the same command again resumes it in
/// the same server session (no second Create-Session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_interrupted_by_ctrl_c_resumes_in_the_same_session() {
    let server = Scripted::start(Script {
        hold_from: Some(1),
        ..Script::default()
    })
    .await;
    let home = crate::home::Home::new();
    home.ok(&["daemon"]).await;
    let work = tempfile::tempdir().expect("work");
    let local = work.path().join("a.bin");
    std::fs::write(&local, content(1_000_000, 106)).expect("local");
    let put = || {
        let mut command = home.ferry();
        command.arg("put").arg(&local).arg(&server.url);
        command
    };
    let mut events = home
        .client()
        .events(ferry::engine::Subscription::All)
        .await
        .expect("events");
    let first = crate::cli::Watched::start(put());
    home.wait_checkpoint(&mut events, ferry::engine::bits_upload::FIRST_FRAGMENT)
        .await;
    first.signal(libc::SIGINT);
    let (text, exit) = first.finish().await;
    assert_eq!(exit.code(), Some(130), "{text}");
    assert!(text.contains("suspended"), "{text}");
    server.state.lock().expect("state").hold_from = None;
    server.release.send_replace(true);
    let output = crate::home::run(put()).await;
    let said = crate::home::stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("resuming job"), "{said}");
    assert!(said.contains("uploaded 1 file(s)"), "{said}");
    // Close-Session goes out in the background: wait for the service to say it was answered.
    home.wait_event(&mut events, "Close-Session", |e| {
        matches!(
            e,
            EngineEvent::UploadSessionEnded {
                cancel: false,
                acknowledged: true,
                ..
            }
        )
    })
    .await;
    let packets = server.packets();
    let creates = packets.iter().filter(|p| *p == "create-session").count();
    assert_eq!(creates, 1, "{packets:?}");
    assert_eq!(packets.last().map(String::as_str), Some("close-session"));
}
