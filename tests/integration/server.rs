//! A loopback HTTP server for the tests (axum on 127.0.0.1:0). It serves files with Range and
//! If-Range support and can be told, per path, to misbehave: any status, Retry-After, no
//! Content-Length, ignore Range, cut the connection after N bytes, stall, redirect, require auth.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Answer this status with an empty body instead of the file…
    pub status: Option<u16>,
    /// …only for this many requests (then serve normally); `None` = always.
    pub status_times: Option<u32>,
    pub retry_after: Option<String>,
    /// Send the body chunked, without Content-Length.
    pub omit_length: bool,
    /// Answer range requests with the whole file (200).
    pub ignore_range: bool,
    /// Close the connection after this many body bytes, for `cut_times` responses.
    pub cut_after: Option<u64>,
    pub cut_times: u32,
    /// Send this many body bytes, then nothing more (the connection stays open).
    pub stall_after: Option<u64>,
    /// Answer with `302 Found` and this Location.
    pub redirect_to: Option<String>,
    /// Require HTTP Basic authentication with this user and password.
    pub basic_auth: Option<(String, String)>,
    /// Require HTTP Digest authentication (MD5, qop=auth) with this user and password.
    pub digest_auth: Option<(String, String)>,
    /// Send each body at this many bytes per second (a per-connection limit, as nginx's
    /// `limit_rate`).
    pub rate: Option<u64>,
    /// Leave `Accept-Ranges` out of the answers.
    pub no_accept_ranges: bool,
    /// Answer every range request with `206` from this other version (content, ETag), whatever
    /// `If-Range` says: a server whose connections disagree about the file.
    pub ranges_from: Option<(Bytes, String)>,
    /// After the first request, the file becomes this version (content, ETag).
    pub switch_to: Option<(Bytes, String)>,
}

impl Behaviour {
    /// Send `bytes` of the body, then nothing more.
    pub fn stall_after(bytes: u64) -> Behaviour {
        Behaviour {
            stall_after: Some(bytes),
            ..Default::default()
        }
    }

    /// Close the connection after `bytes` of the body, once.
    pub fn cut_once_after(bytes: u64) -> Behaviour {
        Behaviour {
            cut_after: Some(bytes),
            cut_times: 1,
            ..Default::default()
        }
    }

    /// Send every body at `bytes_per_second`.
    pub fn rate(bytes_per_second: u64) -> Behaviour {
        Behaviour {
            rate: Some(bytes_per_second),
            ..Default::default()
        }
    }

    /// Answer every request with `status`.
    pub fn status(status: u16) -> Behaviour {
        Behaviour {
            status: Some(status),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug)]
pub struct Served {
    pub content: Bytes,
    pub last_modified: Option<String>,
    pub etag: Option<String>,
    pub behaviour: Behaviour,
}

#[derive(Clone, Debug)]
pub struct Logged {
    /// The client's end of the connection that carried the request.
    pub peer: Option<SocketAddr>,
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, Served>,
    log: Vec<Logged>,
    /// Bodies being sent now, and the most there were at once.
    sending: usize,
    most_sending: usize,
}

/// Counts a body while it is being sent.
struct Sending(Arc<Mutex<Inner>>);

impl Sending {
    fn start(inner: &Arc<Mutex<Inner>>) -> Sending {
        let mut locked = inner.lock().unwrap_or_else(|e| e.into_inner());
        locked.sending += 1;
        locked.most_sending = locked.most_sending.max(locked.sending);
        drop(locked);
        Sending(inner.clone())
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        let mut locked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        locked.sending = locked.sending.saturating_sub(1);
    }
}

#[derive(Clone)]
pub struct TestServer {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

pub const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

impl TestServer {
    pub async fn start() -> TestServer {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("address");
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(inner.clone());
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        TestServer { addr, inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves `content` at `path` with a fixed Last-Modified and an ETag.
    pub fn put(&self, path: &str, content: impl Into<Bytes>) {
        let content = content.into();
        let etag = format!("\"v{}\"", content.len());
        self.lock().files.insert(
            path.into(),
            Served {
                content,
                last_modified: Some(LAST_MODIFIED.into()),
                etag: Some(etag),
                behaviour: Behaviour::default(),
            },
        );
    }

    pub fn behave(&self, path: &str, behaviour: Behaviour) {
        if let Some(file) = self.lock().files.get_mut(path) {
            file.behaviour = behaviour;
        }
    }

    pub fn edit(&self, path: &str, edit: impl FnOnce(&mut Served)) {
        if let Some(file) = self.lock().files.get_mut(path) {
            edit(file);
        }
    }

    pub fn requests(&self, path: &str) -> Vec<Logged> {
        self.lock()
            .log
            .iter()
            .filter(|l| l.path == path)
            .cloned()
            .collect()
    }

    /// The Range header of the last request for `path`: where the last attempt started.
    pub fn last_range(&self, path: &str) -> Option<String> {
        self.requests(path).last().and_then(|r| r.range.clone())
    }

    /// The connections (client ends) that carried requests for `path`.
    pub fn connections(&self, path: &str) -> std::collections::HashSet<SocketAddr> {
        self.requests(path).iter().filter_map(|r| r.peer).collect()
    }

    /// The most bodies this server was sending at once.
    pub fn most_sending_at_once(&self) -> usize {
        self.lock().most_sending
    }

    pub fn request_paths(&self) -> Vec<String> {
        self.lock().log.iter().map(|l| l.path.clone()).collect()
    }
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `bytes=A-B`, `bytes=A-` (single ranges only).
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() {
        len.checked_sub(1)?
    } else {
        b.parse::<u64>().ok()?.min(len.checked_sub(1)?)
    };
    (start <= end && start < len).then_some((start, end))
}

async fn serve(State(inner): State<Arc<Mutex<Inner>>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let range = text(&headers, header::RANGE);
    let if_range = text(&headers, header::IF_RANGE);
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let served = {
        let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.log.push(Logged {
            peer,
            path: path.clone(),
            range: range.clone(),
            if_range: if_range.clone(),
        });
        let Some(file) = inner.files.get_mut(&path) else {
            return status_only(404);
        };
        let mut snapshot = file.clone();
        if let Some(times) = file.behaviour.status_times.as_mut() {
            if *times == 0 {
                snapshot.behaviour.status = None;
            } else {
                *times -= 1;
            }
        }
        if file.behaviour.cut_after.is_some() {
            if file.behaviour.cut_times == 0 {
                snapshot.behaviour.cut_after = None;
            } else {
                file.behaviour.cut_times -= 1;
            }
        }
        if let Some((content, etag)) = file.behaviour.switch_to.take() {
            file.content = content;
            file.etag = Some(etag);
        }
        snapshot
    };
    let b = &served.behaviour;
    if let Some((user, password)) = &b.basic_auth {
        use base64_lite::encode;
        let expected = format!("Basic {}", encode(format!("{user}:{password}").as_bytes()));
        if text(&headers, header::AUTHORIZATION).as_deref() != Some(expected.as_str()) {
            let mut response = status_only(401);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"test\""),
            );
            return response;
        }
    }
    if let Some((user, password)) = &b.digest_auth {
        let valid = text(&headers, header::AUTHORIZATION)
            .and_then(|value| digest_auth::AuthorizationHeader::parse(&value).ok())
            .is_some_and(|claimed| {
                let mut expected = claimed.clone();
                expected.digest(&digest_auth::AuthContext::new(
                    user.as_str(),
                    password.as_str(),
                    claimed.uri.as_str(),
                ));
                claimed.username == *user
                    && claimed.nonce == "ferry-nonce"
                    && expected.response == claimed.response
            });
        if !valid {
            let mut response = status_only(401);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Digest realm=\"test\", qop=\"auth\", nonce=\"ferry-nonce\", algorithm=MD5",
                ),
            );
            return response;
        }
    }
    if let Some(location) = &b.redirect_to {
        let mut response = status_only(302);
        if let Ok(value) = HeaderValue::try_from(location.as_str()) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return response;
    }
    if let Some(status) = b.status {
        let mut response = status_only(status);
        if let Some(retry) = &b.retry_after
            && let Ok(value) = HeaderValue::try_from(retry.as_str())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let len = served.content.len() as u64;
    let validator_matches = match &if_range {
        None => true,
        Some(tag) => {
            Some(tag) == served.etag.as_ref() || Some(tag) == served.last_modified.as_ref()
        }
    };
    let mut status = StatusCode::OK;
    let mut body = served.content.clone();
    let mut etag = served.etag.clone();
    let mut content_range = None;
    if let Some(range) = &range
        && !b.ignore_range
        && (validator_matches || b.ranges_from.is_some())
    {
        let mut content = served.content.clone();
        if let Some((other, other_etag)) = &b.ranges_from {
            content = other.clone();
            etag = Some(other_etag.clone());
        }
        match parse_range(range, len) {
            Some((start, end)) => {
                status = StatusCode::PARTIAL_CONTENT;
                body = content.slice(start as usize..=end as usize);
                content_range = Some(format!("bytes {start}-{end}/{len}"));
            }
            None => {
                let mut response = status_only(416);
                if let Ok(value) = HeaderValue::try_from(format!("bytes */{len}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return response;
            }
        }
    }
    let body_len = body.len() as u64;
    let limit = b.cut_after.or(b.stall_after).map(|n| n.min(body_len));
    let response_body = match limit {
        None if b.omit_length => Body::from_stream(stream::iter(
            body.chunks(16 * 1024)
                .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )),
        None => match b.rate {
            Some(rate) => Body::from_stream(paced(body, rate, Sending::start(&inner))),
            None => Body::from(body),
        },
        Some(n) => {
            let head = body.slice(..n as usize);
            let first = stream::iter(vec![Ok::<_, std::io::Error>(head)]);
            if b.cut_after.is_some() {
                // Give the sent bytes time to leave before the connection is torn down; the
                // tests do not rely on how many arrive.
                let cut = stream::once(async {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    Err(std::io::Error::other("cut by the test server"))
                });
                Body::from_stream(first.chain(cut))
            } else {
                Body::from_stream(first.chain(stream::pending()))
            }
        }
    };
    let mut response = Response::new(response_body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    if !b.omit_length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    }
    if !b.no_accept_ranges {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Some(value) = content_range.and_then(|v| HeaderValue::try_from(v).ok()) {
        h.insert(header::CONTENT_RANGE, value);
    }
    if let Some(value) = served
        .last_modified
        .and_then(|v| HeaderValue::try_from(v).ok())
    {
        h.insert(header::LAST_MODIFIED, value);
    }
    if let Some(value) = etag.and_then(|v| HeaderValue::try_from(v).ok()) {
        h.insert(header::ETAG, value);
    }
    response
}

/// `body` in 16 KiB chunks at `rate` bytes per second (the pace of a slow link, not a wait for
/// anything); `sending` counts it while it lasts.
fn paced(
    body: Bytes,
    rate: u64,
    sending: Sending,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    const CHUNK: usize = 16 * 1024;
    let start = tokio::time::Instant::now();
    let rate = rate.max(1) as f64;
    stream::unfold((0usize, sending), move |(sent, sending)| {
        let body = body.clone();
        async move {
            if sent >= body.len() {
                return None;
            }
            let due = start + std::time::Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(due).await;
            let end = (sent + CHUNK).min(body.len());
            Some((Ok(body.slice(sent..end)), (end, sending)))
        }
    })
}

fn status_only(status: u16) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

/// Base64 for the Basic auth check, so that the test server needs no extra crate.
mod base64_lite {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
