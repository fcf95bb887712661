//! The BITS upload protocol, server side (spec §8.5): Ping, Create-Session, Fragment,
//! Close-Session and Cancel-Session on `BITS_POST`. Fragments are streamed into a hidden session
//! folder inside the served folder (`.ferry-uploads`, never served, never an upload target) and
//! the file is renamed into place when its last byte arrives (§12 D1), never replacing a file
//! unless `--allow-overwrite`. Sessions are kept on disk, so a restarted server resumes them.

use super::{Served, paths};
use crate::engine::bits_upload::PROTOCOL;
use crate::job::ErrorCode;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Session data inside the served folder (same file system, so the final rename is atomic).
pub const SESSIONS_DIR: &str = ".ferry-uploads";
/// Where replies of upload-reply sessions are served: `/.ferry-replies/<session id>`.
pub const REPLIES_PATH: &str = "/.ferry-replies/";
/// How long the server application has to answer a notification (spec §8.5: 5 minutes).
pub const APP_TIMEOUT: Duration = Duration::from_secs(300);

const E_INVALIDARG: ErrorCode = ErrorCode::InvalidArg;
const E_ACCESSDENIED: ErrorCode = ErrorCode::AccessDenied;
/// E_FAIL: the server application could not be asked (no BITS name).
const E_FAIL: u32 = 0x8000_4005;
/// HRESULT_FROM_WIN32(ERROR_BUSY): not a BITS code, so not an `ErrorCode`.
const ERROR_BUSY: u32 = 0x8007_00AA;

/// What is saved of a session (`{id}.ron` beside its `{id}.part`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    destination: PathBuf,
    /// Fixed by the first fragment.
    total: Option<u64>,
    /// The upload is done with: at its destination, or (with a server application) handed to
    /// the application, which answered.
    committed: bool,
    /// The reply URL sent with the last acknowledgement (server application only).
    #[serde(default)]
    reply_url: Option<String>,
    /// Who created the session (for the sessions-per-client limit).
    #[serde(default)]
    client: Option<IpAddr>,
}

struct Session {
    id: String,
    record: Record,
    /// Bytes held, from 0 without gaps.
    received: u64,
    touched: Instant,
    /// Closed, cancelled or expired while a request waited for it.
    ended: bool,
}

pub struct Sessions {
    dir: PathBuf,
    map: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
    /// The client of each session, readable without locking the sessions.
    clients: std::sync::Mutex<HashMap<String, IpAddr>>,
}

impl Sessions {
    /// Opens the session folder under `root` and takes up the sessions a previous run left.
    pub fn open(root: &Path) -> std::io::Result<Sessions> {
        let dir = root.join(SESSIONS_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut map = HashMap::new();
        let mut clients = HashMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "ron") {
                continue;
            }
            let Some(id) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            let record: Option<Record> = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| ron::from_str(&text).ok());
            let part = dir.join(format!("{id}.part"));
            // What the part file holds; a committed session's part is its destination now.
            let held = std::fs::metadata(&part).map(|m| m.len()).ok();
            match record {
                Some(record) if held.is_some() || record.committed => {
                    let total = record.total.unwrap_or(0);
                    let received =
                        held.map_or(total, |held| held.min(record.total.unwrap_or(held)));
                    if let Some(client) = record.client {
                        clients.insert(id.clone(), client);
                    }
                    let session = Session {
                        id: id.clone(),
                        record,
                        received,
                        touched: Instant::now(),
                        ended: false,
                    };
                    map.insert(id, Arc::new(tokio::sync::Mutex::new(session)));
                }
                _ => {
                    tracing::warn!("dropping the damaged upload session {}", path.display());
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_file(&part);
                }
            }
        }
        Ok(Sessions {
            dir,
            map: std::sync::Mutex::new(map),
            clients: std::sync::Mutex::new(clients),
        })
    }

    /// The live session of a request's `BITS-Session-Id`, locked (one request at a time per
    /// session), or the SESSION_NOT_FOUND answer.
    async fn live(&self, id: &str) -> Result<tokio::sync::OwnedMutexGuard<Session>, Response> {
        let session = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(session_not_found)?;
        let session = session.lock_owned().await;
        if session.ended {
            return Err(session_not_found());
        }
        Ok(session)
    }

    fn part(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.ron"))
    }

    fn reply_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.reply"))
    }

    /// The reply file of a live session, named by the id in a reply URL (without braces).
    pub fn reply_file(&self, url_id: &str) -> Option<PathBuf> {
        let id = format!("{{{}}}", url_id.trim_matches(['{', '}']).to_uppercase());
        let live = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id);
        let path = self.reply_path(&id);
        (live && path.is_file()).then_some(path)
    }

    /// Writes the session's record durably, off the async threads (it fsyncs).
    async fn save(&self, session: &Session) -> std::io::Result<()> {
        let text = ron::to_string(&session.record).map_err(std::io::Error::other)?;
        let path = self.record_path(&session.id);
        tokio::task::spawn_blocking(move || crate::store::write_atomically(&path, text.as_bytes()))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Forgets a session and deletes its data (the uploaded file stays if it was committed).
    fn end(&self, session: &mut Session) {
        session.ended = true;
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session.id);
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session.id);
        let _ = std::fs::remove_file(self.part(&session.id));
        let _ = std::fs::remove_file(self.reply_path(&session.id));
        let _ = std::fs::remove_file(self.record_path(&session.id));
    }

    /// Ends the sessions idle for longer than `timeout`; returns how many.
    pub async fn expire(&self, timeout: Duration) -> usize {
        let all: Vec<_> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut expired = 0;
        for session in all {
            // A session busy with a request is not idle.
            if let Ok(mut session) = session.try_lock()
                && session.touched.elapsed() > timeout
            {
                tracing::info!("upload session {} expired", session.id);
                self.end(&mut session);
                expired += 1;
            }
        }
        expired
    }
}

/// One `BITS_POST` request.
pub(crate) async fn handle(
    served: &Served,
    client: IpAddr,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let Some(sessions) = &served.sessions else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            E_ACCESSDENIED,
            None,
            "uploads are turned off on this server (--read-only)",
        );
    };
    if headers.get(header::CONTENT_LENGTH).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            E_INVALIDARG,
            None,
            "every BITS request needs Content-Length",
        );
    }
    let packet = text(headers, "BITS-Packet-Type").to_ascii_lowercase();
    match packet.as_str() {
        "ping" => ack(StatusCode::OK, None, Vec::new()),
        "create-session" => create(served, sessions, client, uri, headers).await,
        "fragment" => fragment(served, sessions, uri, headers, body).await,
        "close-session" => close(sessions, headers, false).await,
        "cancel-session" => close(sessions, headers, true).await,
        _ => error(
            StatusCode::BAD_REQUEST,
            E_INVALIDARG,
            None,
            "unknown BITS-Packet-Type",
        ),
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
}

/// An Ack: `BITS-Packet-Type: Ack`, the session, the extra headers, and `Content-Length: 0`.
fn ack(status: StatusCode, session: Option<&str>, extra: Vec<(&'static str, String)>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("BITS-Packet-Type", HeaderValue::from_static("Ack"));
    if let Some(id) = session.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert("BITS-Session-Id", id);
    }
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// A BITS code, or a Windows HRESULT BITS has no name for.
trait Hresult {
    fn hresult(self) -> u32;
}

impl Hresult for ErrorCode {
    fn hresult(self) -> u32 {
        ErrorCode::hresult(self)
    }
}

impl Hresult for u32 {
    fn hresult(self) -> u32 {
        self
    }
}

/// BG_ERROR_CONTEXT_REMOTE_FILE: the server itself refused.
const CONTEXT_REMOTE_FILE: u32 = 0x5;
/// BG_ERROR_CONTEXT_REMOTE_APPLICATION: the server application refused or failed.
const CONTEXT_REMOTE_APPLICATION: u32 = 0x7;

/// An Ack carrying an error (§8.1): the HRESULT and the server context.
fn error(status: StatusCode, code: impl Hresult, session: Option<&str>, why: &str) -> Response {
    error_in(CONTEXT_REMOTE_FILE, status, code, session, why)
}

fn error_in(
    context: u32,
    status: StatusCode,
    code: impl Hresult,
    session: Option<&str>,
    why: &str,
) -> Response {
    tracing::debug!("BITS_POST refused ({status}): {why}");
    ack(
        status,
        session,
        vec![
            ("BITS-Error-Code", format!("0x{:08X}", code.hresult())),
            ("BITS-Error-Context", format!("0x{context:X}")),
        ],
    )
}

async fn create(
    served: &Served,
    sessions: &Sessions,
    client: IpAddr,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let offered = text(headers, "BITS-Supported-Protocols");
    if !offered
        .split([' ', ','])
        .any(|p| p.trim().eq_ignore_ascii_case(PROTOCOL))
    {
        return error(
            StatusCode::BAD_REQUEST,
            E_INVALIDARG,
            None,
            "no protocol in common",
        );
    }
    let destination = match destination(served, uri) {
        Ok(path) => path,
        Err(response) => return *response,
    };
    if destination.is_dir() {
        return error(
            StatusCode::BAD_REQUEST,
            E_INVALIDARG,
            None,
            "the URL names a folder",
        );
    }
    if destination.exists() && !served.allow_overwrite {
        return error(
            StatusCode::CONFLICT,
            E_ACCESSDENIED,
            None,
            "the file exists and may not be overwritten",
        );
    }
    let open = sessions
        .clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|c| **c == client)
        .count();
    if served.sessions_per_client > 0 && open >= served.sessions_per_client {
        // Transient for the client: it tries again once older sessions closed or expired.
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ERROR_BUSY,
            None,
            "this client has as many upload sessions open as the server allows",
        );
    }
    let id = format!("{{{}}}", uuid::Uuid::new_v4().to_string().to_uppercase());
    let session = Session {
        id: id.clone(),
        record: Record {
            destination,
            total: None,
            committed: false,
            reply_url: None,
            client: Some(client),
        },
        received: 0,
        touched: Instant::now(),
        ended: false,
    };
    let part = sessions.part(&id);
    let created = tokio::task::spawn_blocking(move || std::fs::File::create(part).map(drop))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let created = match created {
        Ok(()) => sessions.save(&session).await,
        Err(e) => Err(e),
    };
    if let Err(e) = created {
        return local_error(&e, None);
    }
    sessions
        .map
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
    sessions
        .clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), client);
    ack(
        StatusCode::OK,
        Some(&id),
        vec![
            ("BITS-Protocol", PROTOCOL.to_string()),
            ("Accept-Encoding", "identity".to_string()),
        ],
    )
}

/// The file an upload URL names, inside the served folder and outside the session folder.
fn destination(served: &Served, uri: &Uri) -> Result<PathBuf, Box<Response>> {
    let refuse = |why: String| Box::new(error(StatusCode::FORBIDDEN, E_ACCESSDENIED, None, &why));
    let path = paths::resolve(&served.root, uri.path()).map_err(|e| refuse(e.to_string()))?;
    if !path.parent().is_some_and(Path::is_dir) {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            E_ACCESSDENIED,
            None,
            "the folder of the URL does not exist",
        )));
    }
    paths::contained(&served.root, &path).map_err(|e| refuse(e.to_string()))?;
    if path.starts_with(served.root.join(SESSIONS_DIR)) || path == served.root {
        return Err(refuse("not an upload target".into()));
    }
    Ok(path)
}

/// The session is unknown: expired, closed, or from another server (the client starts over).
fn session_not_found() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::SessionNotFound,
        None,
        "no such session",
    )
}

/// A local file error, with the code the engine gives the same error (disk full → 0x80070070).
fn local_error(e: &std::io::Error, session: Option<&str>) -> Response {
    let (code, _) = crate::job::classify_io(e);
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        code,
        session,
        &e.to_string(),
    )
}

/// `bytes FIRST-LAST/TOTAL`, inclusive, FIRST ≤ LAST < TOTAL.
fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    match crate::content_range::ContentRange::parse(value)? {
        crate::content_range::ContentRange::Bytes {
            first,
            last,
            total: Some(total),
        } if last < total => Some((first, last, total)),
        _ => None,
    }
}

/// A fragment whose body is not written is still read (up to [`DRAIN_LIMIT`]) before the answer,
/// so that the client, still sending, gets the answer instead of a reset connection.
async fn fragment(
    served: &Served,
    sessions: &Sessions,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let mut body = Some(body);
    let response = fragment_into(served, sessions, uri, headers, &mut body).await;
    if let Some(body) = body {
        let mut stream = body.into_data_stream();
        let mut read = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_LIMIT {
                break;
            }
        }
    }
    response
}

/// How much of a fragment is gathered before it is written to the session's file.
const WRITE_BUFFER: usize = 256 << 10;

/// A write slower than this is the disk's pace, not the page cache's: the rest of the fragment
/// is written off the connection's thread.
const SLOW_WRITE: Duration = Duration::from_millis(5);

/// Most of an unwanted body read and dropped; beyond it the connection is closed instead.
const DRAIN_LIMIT: u64 = 64 << 20;

async fn fragment_into(
    served: &Served,
    sessions: &Sessions,
    uri: &Uri,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Response {
    let id = text(headers, "BITS-Session-Id").to_string();
    let mut session = match sessions.live(&id).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    session.touched = Instant::now();
    let id = Some(id.as_str());
    let Some((first, last, total)) = content_range(text(headers, "Content-Range")) else {
        return error(
            StatusCode::BAD_REQUEST,
            E_INVALIDARG,
            id,
            "bad or missing Content-Range",
        );
    };
    let length: Option<u64> = text(headers, "Content-Length").parse().ok();
    if length != Some(last - first + 1) {
        return error(
            StatusCode::BAD_REQUEST,
            E_INVALIDARG,
            id,
            "Content-Length differs from Content-Range",
        );
    }
    if served
        .max_fragment_size
        .is_some_and(|max| last - first + 1 > max)
    {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            E_INVALIDARG,
            id,
            "the fragment is larger than this server accepts in one request; send smaller ones",
        );
    }
    if session.record.total.is_some_and(|t| t != total) {
        return error(
            StatusCode::BAD_REQUEST,
            E_INVALIDARG,
            id,
            "the total length differs from earlier fragments",
        );
    }
    if served.max_upload_size.is_some_and(|max| total > max) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TooLarge,
            id,
            "the upload is larger than this server accepts",
        );
    }
    if session.record.total.is_none() {
        session.record.total = Some(total);
        if let Err(e) = sessions.save(&session).await {
            return local_error(&e, id);
        }
    }
    let next = session.received;
    let received = |offset: u64| vec![("BITS-Received-Content-Range", offset.to_string())];
    if first > next {
        // A gap: the client resends from where the server is.
        return ack(StatusCode::RANGE_NOT_SATISFIABLE, id, received(next));
    }
    if next == total {
        // All here (a repeated last fragment, or the application failed before): finish.
        return finish(served, sessions, &mut session, uri, headers).await;
    }
    if last < next {
        return ack(StatusCode::OK, id, received(next));
    }
    // Write bytes next..=last; the overlap before `next` is read and dropped (§12 D5).
    let Some(body) = body.take() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            E_INVALIDARG,
            id,
            "no body",
        );
    };
    let part = sessions.part(&session.id);
    let written = match write_tail(
        &part,
        body,
        first,
        next,
        last,
        served.idle_timeout,
        SLOW_WRITE,
    )
    .await
    {
        Ok(written) => written,
        Err(e) => {
            // What arrived in full is kept; the client resends from `received`.
            session.received = next + e.1;
            return match e.0 {
                Some(io) => local_error(&io, id),
                None => error(
                    StatusCode::BAD_REQUEST,
                    E_INVALIDARG,
                    id,
                    "the body ended before Content-Length",
                ),
            };
        }
    };
    session.received = next + written;
    if session.received == total {
        return finish(served, sessions, &mut session, uri, headers).await;
    }
    ack(StatusCode::OK, id, received(session.received))
}

/// The last byte is in: the file goes to its destination (no server application), or to the
/// application, whose answer decides the reply and whether the file also goes to its
/// destination. Done once; a repeated last fragment gets the same answer.
async fn finish(
    served: &Served,
    sessions: &Sessions,
    session: &mut Session,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let id = session.id.clone();
    let sid = Some(id.as_str());
    if !session.record.committed {
        let copy = match &served.notify {
            None => true,
            Some(notify) => {
                let original = original_url(served, uri, headers);
                match notify_application(served, sessions, session, notify, &original).await {
                    Ok(answer) => {
                        session.record.reply_url = Some(answer.reply_url);
                        answer.copy
                    }
                    Err(response) => return response,
                }
            }
        };
        if copy {
            let part = sessions.part(&id);
            let destination = session.record.destination.clone();
            let (root, replace) = (served.root_dir.clone(), served.allow_overwrite);
            // Keeps the session for the application (copy) or hands its data over (rename),
            // beneath the served folder and off the async threads.
            let keep = served.notify.is_some();
            let relative = destination
                .strip_prefix(&served.root)
                .map(Path::to_path_buf)
                .map_err(|_| std::io::Error::other("the destination is outside the served folder"));
            let placed = match relative {
                Ok(relative) => tokio::task::spawn_blocking(move || {
                    if keep {
                        root.copy_into(&part, &relative, replace).map(|_| ())
                    } else {
                        root.rename_into(&part, &relative, replace)
                    }
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
                Err(e) => Err(e),
            };
            if let Err(e) = placed {
                // The bytes stay in the session: the client may close or cancel it.
                return if e.kind() == std::io::ErrorKind::AlreadyExists {
                    error(
                        StatusCode::CONFLICT,
                        E_ACCESSDENIED,
                        sid,
                        "a file appeared at the destination and may not be overwritten",
                    )
                } else {
                    local_error(&e, sid)
                };
            }
        }
        session.record.committed = true;
        if let Err(e) = sessions.save(session).await {
            return local_error(&e, sid);
        }
    }
    let mut extra = vec![("BITS-Received-Content-Range", session.received.to_string())];
    if let Some(url) = &session.record.reply_url {
        extra.push(("BITS-Reply-URL", url.clone()));
    }
    ack(StatusCode::OK, sid, extra)
}

/// The upload URL as the client sent it (for BITS-Original-Request-URL).
fn original_url(served: &Served, uri: &Uri, headers: &HeaderMap) -> String {
    let host = text(headers, "Host");
    let host = if host.is_empty() { "localhost" } else { host };
    format!("{}://{host}{uri}", served.scheme)
}

/// The server application's answer to a notification.
struct AppAnswer {
    reply_url: String,
    /// BITS-Copy-File-To-Destination: the upload also goes to its destination.
    copy: bool,
}

/// Notifies the server application (spec §8.5 rule 4): by reference (paths of the upload and
/// of the reply to write) or by value (the upload as the body, the reply as the answer's body).
/// A refusal or failure becomes the client's answer, with context REMOTE_APPLICATION.
async fn notify_application(
    served: &Served,
    sessions: &Sessions,
    session: &Session,
    notify: &super::Notify,
    original: &str,
) -> Result<AppAnswer, Response> {
    let id = session.id.as_str();
    let app_error = |status: StatusCode, code: u32, why: String| {
        tracing::warn!("upload session {id}: the server application {why}");
        error_in(CONTEXT_REMOTE_APPLICATION, status, code, Some(id), &why)
    };
    let target = notification_target(&notify.url, original).ok_or_else(|| {
        app_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            E_FAIL,
            format!("notification URL {:?} is not valid", notify.url),
        )
    })?;
    let part = sessions.part(id);
    let reply = sessions.reply_path(id);
    let _ = std::fs::remove_file(&reply); // a failed earlier try may have left one
    let mut request = served
        .app
        .post(&target)
        .header("BITS-Original-Request-URL", original);
    if notify.by_value {
        let file = tokio::fs::File::open(&part)
            .await
            .map_err(|e| local_error(&e, Some(id)))?;
        let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        request = request
            .header(header::CONTENT_LENGTH, length)
            .body(reqwest::Body::from(file));
    } else {
        request = request
            .header("BITS-Request-DataFile-Name", part.display().to_string())
            .header("BITS-Response-DataFile-Name", reply.display().to_string())
            .header(header::CONTENT_LENGTH, 0)
            .body(Vec::new());
    }
    let mut answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) if e.is_timeout() => {
            return Err(app_error(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::Http(408).hresult(),
                format!("did not answer within {} s", APP_TIMEOUT.as_secs()),
            ));
        }
        Err(e) => {
            return Err(app_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                E_FAIL,
                format!("cannot be reached at {target}: {e}"),
            ));
        }
    };
    let status = answer.status();
    if status != reqwest::StatusCode::OK {
        // Forwarded with its status (§8.5): the client classifies it (a 403 is final).
        let forwarded =
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(app_error(
            forwarded,
            ErrorCode::Http(status.as_u16()).hresult(),
            format!("answered HTTP {status}"),
        ));
    }
    let static_url = answer
        .headers()
        .get("BITS-Static-Response-URL")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let copy = answer
        .headers()
        .contains_key("BITS-Copy-File-To-Destination");
    if static_url.is_none() && (notify.by_value || !reply.exists()) {
        // By value the answer's body is the reply; by reference an application that wrote
        // no reply file sent an empty reply (spec §1).
        let written = async {
            let mut file = tokio::fs::File::create(&reply).await?;
            if notify.by_value {
                while let Some(chunk) = answer.chunk().await.map_err(std::io::Error::other)? {
                    file.write_all(&chunk).await?;
                }
            }
            file.sync_all().await
        };
        written.await.map_err(|e| local_error(&e, Some(id)))?;
    }
    let reply_url =
        static_url.unwrap_or_else(|| format!("{REPLIES_PATH}{}", id.trim_matches(['{', '}'])));
    Ok(AppAnswer { reply_url, copy })
}

/// The notification URL, resolved against the upload URL when relative, with the upload URL's
/// query string appended (spec §8.5).
fn notification_target(notify: &str, original: &str) -> Option<String> {
    let base = url::Url::parse(original).ok()?;
    let mut target = base.join(notify).ok()?;
    if let Some(query) = base.query() {
        let joined = match target.query() {
            Some(own) if !own.is_empty() => format!("{own}&{query}"),
            _ => query.to_string(),
        };
        target.set_query(Some(&joined));
    }
    Some(target.into())
}

/// Streams the body into `part` from offset `next`, skipping the `next - first` bytes already
/// held; flushes to disk. Returns the bytes written, or the error and the bytes written before.
async fn write_tail(
    part: &Path,
    body: Body,
    first: u64,
    next: u64,
    last: u64,
    idle: Duration,
    slow_write: Duration,
) -> Result<u64, (Option<std::io::Error>, u64)> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(part)
        .map_err(|e| (Some(e), 0))?;
    let file = Arc::new(file);
    let mut skip = next - first;
    let mut wanted = last + 1 - next;
    let mut written = 0u64;
    let mut stream = body.into_data_stream();
    // Body chunks are small: they are gathered (without copying) into positioned writes of
    // about WRITE_BUFFER bytes. Memory per upload stays at two batches.
    let mut pending: Vec<Bytes> = Vec::new();
    let mut pending_len = 0usize;
    let mut ended = false;
    // Writes happen on this thread while they are quick: the page cache takes a batch in well
    // under a millisecond, and the bytes just received are still in this core's cache (handing
    // every batch to the blocking pool made a loopback upload about 17% slower). A write that
    // takes longer than `slow_write` (a slow or busy disk) sends the rest of the fragment's writes
    // to the blocking pool, one running while the next batch arrives, so that the server's other
    // connections are held up by one slow write, not by a slow fragment.
    let mut inline = true;
    let mut running: Option<(tokio::task::JoinHandle<std::io::Result<()>>, usize)> = None;
    let mut queued = 0u64;
    while wanted > 0 && !ended {
        // A client that stops sending mid-body ends the fragment (what arrived counts), so that
        // it holds neither the connection nor the session's lock.
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(mut chunk))) => {
                let dropped = skip.min(chunk.len() as u64) as usize;
                let _ = chunk.split_to(dropped);
                skip -= dropped as u64;
                chunk.truncate(wanted.min(chunk.len() as u64) as usize);
                wanted -= chunk.len() as u64;
                pending_len += chunk.len();
                pending.push(chunk);
            }
            _ => ended = true,
        }
        // What arrived in full is kept, also when the body ended early.
        if pending_len >= WRITE_BUFFER || wanted == 0 || ended {
            let chunks = std::mem::take(&mut pending);
            let at = next + queued;
            if inline {
                let started = Instant::now();
                write_batch(&file, &chunks, at).map_err(|e| (Some(e), written))?;
                written += pending_len as u64;
                inline = started.elapsed() < slow_write;
            } else {
                if let Some((write, len)) = running.take() {
                    finish_write(write).await.map_err(|e| (Some(e), written))?;
                    written += len as u64;
                }
                let writer = file.clone();
                let write = tokio::task::spawn_blocking(move || write_batch(&writer, &chunks, at));
                running = Some((write, pending_len));
            }
            queued += pending_len as u64;
            pending_len = 0;
        }
    }
    if let Some((write, len)) = running.take() {
        finish_write(write).await.map_err(|e| (Some(e), written))?;
        written += len as u64;
    }
    // A checkpoint that claims only bytes on disk: a restarted server trusts the file's length.
    let synced = tokio::task::spawn_blocking(move || file.sync_data())
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    if let Err(e) = synced {
        return Err((Some(e), 0));
    }
    if wanted > 0 {
        return Err((None, written));
    }
    Ok(written)
}

/// Writes `chunks` one after the other into `file` from offset `at`.
fn write_batch(file: &std::fs::File, chunks: &[Bytes], at: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut offset = at;
    for chunk in chunks {
        file.write_all_at(chunk, offset)?;
        offset += chunk.len() as u64;
    }
    Ok(())
}

async fn finish_write(write: tokio::task::JoinHandle<std::io::Result<()>>) -> std::io::Result<()> {
    write.await.map_err(std::io::Error::other)?
}

/// Close-Session (`cancel` false) or Cancel-Session. Before the last byte both discard the
/// partial upload; after it the file stays either way.
async fn close(sessions: &Sessions, headers: &HeaderMap, cancel: bool) -> Response {
    let id = text(headers, "BITS-Session-Id").to_string();
    let mut session = match sessions.live(&id).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    tracing::debug!(
        "upload session {id} {} ({} of {:?} bytes, committed: {})",
        if cancel { "cancelled" } else { "closed" },
        session.received,
        session.record.total,
        session.record.committed
    );
    sessions.end(&mut session);
    ack(StatusCode::OK, Some(&id), Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_checked() {
        assert_eq!(content_range("bytes 0-4891/4892"), Some((0, 4891, 4892)));
        assert_eq!(content_range("bytes  10-19/100"), Some((10, 19, 100)));
        assert_eq!(content_range("bytes 10-9/100"), None);
        assert_eq!(content_range("bytes 0-100/100"), None);
        assert_eq!(content_range("bytes */100"), None);
        assert_eq!(content_range("items 0-1/2"), None);
        assert_eq!(content_range(""), None);
    }

    /// A body of `data` in chunks of the given sizes (the last one takes the rest).
    fn chunked(data: &[u8], sizes: &[usize]) -> Body {
        let mut chunks = Vec::new();
        let mut at = 0;
        for size in sizes {
            let end = (at + size).min(data.len());
            chunks.push(Ok::<_, std::io::Error>(Bytes::copy_from_slice(
                &data[at..end],
            )));
            at = end;
        }
        chunks.push(Ok(Bytes::copy_from_slice(&data[at..])));
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    async fn write_both_ways(first: u64, next: u64, data: &[u8]) -> Vec<Vec<u8>> {
        let mut results = Vec::new();
        // Inline throughout, and (no write is quick enough) the blocking pool after the first.
        for slow_write in [Duration::from_secs(60), Duration::ZERO] {
            let dir = tempfile::tempdir().unwrap();
            let part = dir.path().join("part");
            std::fs::write(&part, vec![7u8; next as usize]).unwrap();
            let last = first + data.len() as u64 - 1;
            let body = chunked(data, &[1, 70_000, 300_000, 5, 900_000, 262_144]);
            let idle = Duration::from_secs(60);
            let written = write_tail(&part, body, first, next, last, idle, slow_write).await;
            assert_eq!(written.map_err(|e| e.1), Ok(last + 1 - next));
            results.push(std::fs::read(&part).unwrap());
        }
        results
    }

    #[tokio::test]
    async fn a_fragment_lands_byte_exact_written_inline_or_in_the_pool() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for held in write_both_ways(0, 0, &data).await {
            assert_eq!(held, data);
        }
        // 1,000,000 bytes already held: the overlap is skipped, the rest goes after them.
        let first = 400_000;
        for held in write_both_ways(first, 1_000_000, &data).await {
            assert_eq!(held.len(), first as usize + data.len());
            assert!(held[..1_000_000].iter().all(|b| *b == 7));
            assert_eq!(&held[1_000_000..], &data[(1_000_000 - first) as usize..]);
        }
    }

    #[tokio::test]
    async fn a_body_that_ends_early_keeps_what_arrived_either_way() {
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
        for slow_write in [Duration::from_secs(60), Duration::ZERO] {
            let dir = tempfile::tempdir().unwrap();
            let part = dir.path().join("part");
            std::fs::write(&part, b"").unwrap();
            // Claims 3,000,000 bytes, sends 2,000,000.
            let body = chunked(&data, &[500_000, 600_000]);
            let idle = Duration::from_secs(60);
            let outcome = write_tail(&part, body, 0, 0, 2_999_999, idle, slow_write).await;
            let (error, written) = outcome.unwrap_err();
            assert!(error.is_none(), "a short body is not an IO error");
            assert_eq!(written, 2_000_000);
            assert_eq!(std::fs::read(&part).unwrap(), data);
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            #[test]
            fn bits_content_ranges_parse_without_panic_and_round_trip(
                text in "[ -~]{0,40}",
                first in any::<u64>(),
                len in any::<u64>(),
                extra in 1..u64::MAX,
            ) {
                if let Some((a, b, t)) = content_range(&text) {
                    prop_assert!(a <= b && b < t);
                }
                let last = first.saturating_add(len);
                let total = last.saturating_add(extra);
                let parsed = content_range(&format!("bytes {first}-{last}/{total}"));
                if last < total {
                    prop_assert_eq!(parsed, Some((first, last, total)));
                }
            }
        }
    }
}
