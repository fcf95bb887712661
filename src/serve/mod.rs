//! `ferry serve DIR`: an HTTP server for a folder. Downloads: GET/HEAD with single and multiple
//! ranges (spec §8.7). Uploads: the BITS upload protocol (§8.5, `upload.rs`).

mod beneath;
pub mod paths;
pub mod ranges;
pub mod upload;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use std::collections::HashMap;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How much of a file one body chunk holds.
const CHUNK: u64 = 256 * 1024;

pub struct ServeOptions {
    /// The served folder; must exist.
    pub root: PathBuf,
    pub listen: SocketAddr,
    /// No uploads (BITS_POST answers 501, as IIS does with uploads disabled).
    pub read_only: bool,
    /// An upload may replace an existing file (BITSAllowOverwrites); default: 409.
    pub allow_overwrite: bool,
    /// Largest upload accepted (BITSMaximumUploadSize); larger ones get BG_E_TOO_LARGE.
    pub max_upload_size: Option<u64>,
    /// An upload session idle this long is discarded (BITSSessionTimeout, default 14 days).
    pub session_timeout: Duration,
    /// Open upload sessions one client address may have (BITSNumberOfSessionsLimit, default
    /// 50); 0: no limit.
    pub sessions_per_client: usize,
    /// Largest fragment accepted (IIS's request limit); larger ones get 413 and the client
    /// sends smaller ones. `None`: any size (fragments are streamed to disk either way).
    pub max_fragment_size: Option<u64>,
    /// The server application told of each finished upload (BITSServerNotificationType 1/2);
    /// `None`: uploads go to their destination (type 0).
    pub notify: Option<Notify>,
    /// HTTP Basic accounts (user, password): every request must name one. Empty: no auth.
    pub users: Vec<(String, String)>,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// A client must send a request head (and a TLS handshake) within this time, also between
    /// the requests of a kept-alive connection; a trickling or silent client is dropped.
    pub header_timeout: Duration,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Connections open at once from one address, so that one client cannot lock out the rest.
    pub max_connections_per_client: usize,
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// Reads `user:password` lines (`#` comments, blank lines ignored) for HTTP Basic auth.
pub fn read_users(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the accounts file {}: {e}", path.display()))?;
    let mut users = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                users.push((user.to_string(), password.to_string()))
            }
            _ => anyhow::bail!(
                "{}:{}: expected `user:password` (neither empty)",
                path.display(),
                number + 1
            ),
        }
    }
    if users.is_empty() {
        anyhow::bail!(
            "{} names no account: write one `user:password` per line",
            path.display()
        );
    }
    Ok(users)
}

/// How the server application hears of an upload (spec §8.5 rule 4).
#[derive(Clone, Debug)]
pub struct Notify {
    /// Absolute, or relative to the upload URL; the upload URL's query string is appended.
    pub url: String,
    /// The upload as the request body and the reply as the answer's body; otherwise the paths
    /// of both go in headers (by reference).
    pub by_value: bool,
}

impl ServeOptions {
    pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(1_209_600);
    pub const DEFAULT_SESSIONS_PER_CLIENT: usize = 50;
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
    pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 64;

    /// `https` with TLS, else `http`: how clients reach the server.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serving `root` on `listen` with the defaults: uploads on, no overwrite, no size limits.
    pub fn new(root: PathBuf, listen: SocketAddr) -> ServeOptions {
        ServeOptions {
            root,
            listen,
            read_only: false,
            allow_overwrite: false,
            max_upload_size: None,
            session_timeout: Self::DEFAULT_SESSION_TIMEOUT,
            sessions_per_client: Self::DEFAULT_SESSIONS_PER_CLIENT,
            max_fragment_size: None,
            notify: None,
            users: Vec::new(),
            tls: None,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: Self::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        }
    }
}

pub(crate) struct Served {
    /// Canonical, so that symlink checks compare like with like.
    root: PathBuf,
    /// The same folder held open: files are opened and placed beneath it.
    root_dir: Arc<beneath::Root>,
    /// `None` when read-only.
    sessions: Option<upload::Sessions>,
    allow_overwrite: bool,
    max_upload_size: Option<u64>,
    sessions_per_client: usize,
    max_fragment_size: Option<u64>,
    notify: Option<Notify>,
    /// Talks to the server application.
    app: reqwest::Client,
    /// The `Authorization` values that are let in (`Basic …`); empty: no auth.
    authorized: Vec<String>,
    /// `https` with TLS, else `http`: how clients reach this server.
    scheme: &'static str,
    /// The head timeout, also how long a body may stall (see [`ServeOptions::header_timeout`]).
    idle_timeout: Duration,
}

impl Served {
    fn lets_in(&self, headers: &HeaderMap) -> bool {
        if self.authorized.is_empty() {
            return true;
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Every account compared in full, so the time taken does not tell which one is close.
        self.authorized.iter().fold(false, |hit, wanted| {
            hit | same_bytes(given, wanted.as_bytes())
        })
    }
}

/// Compares without stopping at the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certificates = CertificateDer::pem_file_iter(&files.certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the certificate {}: {e}; give a PEM file with the server's certificate (and its chain)",
                files.certificate.display()
            )
        })?;
    if certificates.is_empty() {
        anyhow::bail!(
            "{} holds no certificate; give a PEM file with the server's certificate",
            files.certificate.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the private key {}: {e}; give the PEM file of the certificate's key",
            files.key.display()
        )
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .map_err(|e| {
        anyhow::anyhow!(
            "the certificate {} and key {} do not make a TLS identity: {e}",
            files.certificate.display(),
            files.key.display()
        )
    })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Binds, calls `ready` with the address (the port when 0 was asked), and serves until
/// `shutdown` completes.
pub async fn run(
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let root = std::fs::canonicalize(&options.root).map_err(|e| {
        anyhow::anyhow!(
            "cannot serve {}: {e}; give an existing folder",
            options.root.display()
        )
    })?;
    if !root.is_dir() {
        anyhow::bail!(
            "{} is not a folder; give the folder to serve",
            root.display()
        );
    }
    let tls = options.tls.as_ref().map(tls_acceptor).transpose()?;
    let scheme = options.scheme();
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e}; choose another address with --listen",
                options.listen
            )
        })?;
    let sessions = if options.read_only {
        None
    } else {
        Some(upload::Sessions::open(&root).map_err(|e| {
            anyhow::anyhow!(
                "cannot keep upload sessions in {}: {e}; make the folder writable or use --read-only",
                root.join(upload::SESSIONS_DIR).display()
            )
        })?)
    };
    let root_dir = Arc::new(beneath::Root::open(&root).map_err(|e| {
        anyhow::anyhow!(
            "cannot open {}: {e}; give a readable folder",
            root.display()
        )
    })?);
    let served = Arc::new(Served {
        root,
        root_dir,
        sessions,
        allow_overwrite: options.allow_overwrite,
        max_upload_size: options.max_upload_size,
        sessions_per_client: options.sessions_per_client,
        max_fragment_size: options.max_fragment_size,
        notify: options.notify,
        app: reqwest::Client::builder()
            .timeout(upload::APP_TIMEOUT)
            .no_proxy()
            .build()?,
        scheme,
        idle_timeout: options.header_timeout,
        authorized: options
            .users
            .iter()
            .map(|(user, password)| {
                use base64::Engine;
                let pair = format!("{user}:{password}");
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            })
            .collect(),
    });
    if !options.listen.ip().is_loopback() && (options.users.is_empty() || tls.is_none()) {
        tracing::warn!(
            "serving {} on a non-loopback address without {}: anyone who can reach it can read{}",
            options.listen,
            if tls.is_none() { "TLS" } else { "accounts" },
            if options.read_only { "" } else { " and write" }
        );
    }
    if served.sessions.is_some() {
        // Idle sessions are looked for every minute (or every timeout, if shorter).
        let period = options
            .session_timeout
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        let timeout = options.session_timeout;
        let cleaner = served.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                if let Some(sessions) = &cleaner.sessions {
                    sessions.expire(timeout).await;
                }
            }
        });
    }
    ready(listener.local_addr()?);
    let app = Router::new().fallback(handle).with_state(served);
    let limits = Limits {
        header_timeout: options.header_timeout,
        total: Arc::new(tokio::sync::Semaphore::new(options.max_connections)),
        per_client: options.max_connections_per_client,
        clients: Arc::new(std::sync::Mutex::new(HashMap::new())),
    };
    serve_connections(listener, tls, app, limits, shutdown).await;
    Ok(())
}

/// What the accept loop enforces.
struct Limits {
    header_timeout: Duration,
    total: Arc<tokio::sync::Semaphore>,
    per_client: usize,
    /// Open connections per client address.
    clients: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
}

/// One open connection counted against its client; uncounted when dropped.
struct Counted {
    clients: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
    address: std::net::IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = clients.get_mut(&self.address) {
            *open -= 1;
            if *open == 0 {
                clients.remove(&self.address);
            }
        }
    }
}

impl Limits {
    /// Counts a new connection, or says why it is refused.
    fn admit(&self, address: std::net::IpAddr) -> Result<Counted, &'static str> {
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "too many connections")?;
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let open = clients.entry(address).or_default();
        if *open >= self.per_client {
            return Err("too many connections from your address");
        }
        *open += 1;
        Ok(Counted {
            clients: self.clients.clone(),
            address,
            _permit: permit,
        })
    }
}

/// The accept loop, for HTTP and HTTPS alike: connection limits, a deadline for the TLS
/// handshake and for every request head, then the router with the peer's address.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    // The connections, ended with the loop: a stopped server answers nothing more.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    // Out of descriptors, say: give others a moment to close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let counted = match limits.admit(peer.ip()) {
            Ok(counted) => counted,
            Err(why) => {
                tracing::debug!("refused a connection from {peer}: {why}");
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: \
                     close\r\nRetry-After: 5\r\n\r\n{why}",
                    why.len()
                );
                // Small enough for the socket buffer: never waits on the client. What the client
                // sent is read (briefly) before closing, or the close would be a reset that
                // loses the answer.
                let _ = stream.try_write(answer.as_bytes());
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut stream = stream;
                    let _ = stream.shutdown().await;
                    let mut sink = [0u8; 4096];
                    let drain = async {
                        while let Ok(n @ 1..) = stream.read(&mut sink).await {
                            let _ = n;
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                });
                continue;
            }
        };
        let (tls, app, header_timeout) = (tls.clone(), app.clone(), limits.header_timeout);
        connections.spawn(async move {
            let _counted = counted;
            let activity = Arc::new(Activity::new());
            let app = app
                .layer(axum::middleware::from_fn_with_state(
                    activity.clone(),
                    count_request,
                ))
                .layer(axum::Extension(ConnectInfo(peer)));
            let service = hyper_util::service::TowerToHyperService::new(app);
            // HTTP/1.1 only: what BITS and download clients speak, and what the head timeout
            // covers.
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .http1_only();
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let stream = Watched {
                inner: stream,
                activity: activity.clone(),
            };
            let connection = async {
                match tls {
                    None => {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = builder.serve_connection(io, service).await;
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(header_timeout, acceptor.accept(stream));
                        let tls = match handshake.await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake with {peer} failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake with {peer} timed out");
                                return;
                            }
                        };
                        let io = hyper_util::rt::TokioIo::new(tls);
                        let _ = builder.serve_connection(io, service).await;
                    }
                }
            };
            tokio::select! {
                _ = connection => {}
                _ = activity.idle_for(header_timeout) => {
                    tracing::debug!("dropped {peer}: nothing sent or received for {header_timeout:?}");
                }
            }
        });
    }
}

/// When a connection last moved a byte, and how many of its requests are being handled (an
/// upload's last fragment may wait minutes for the server application without a byte moving).
struct Activity {
    start: tokio::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    busy: std::sync::atomic::AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            busy: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends once no byte moved for `limit` while no request was being handled.
    async fn idle_for(&self, limit: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Relaxed));
            tokio::time::sleep_until(last + limit).await;
            let quiet = self
                .start
                .elapsed()
                .saturating_sub(Duration::from_millis(self.last_ms.load(Relaxed)));
            if quiet >= limit && self.busy.load(Relaxed) == 0 {
                return;
            }
            if self.busy.load(Relaxed) > 0 {
                self.touch(); // look again a whole period after the request is handled
            }
        }
    }
}

/// Counts a request as being handled until its response is ready.
async fn count_request(
    State(activity): State<Arc<Activity>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    struct Busy(Arc<Activity>);
    impl Drop for Busy {
        fn drop(&mut self) {
            self.0
                .busy
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            self.0.touch();
        }
    }
    activity
        .busy
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _busy = Busy(activity);
    next.run(request).await
}

/// A connection's stream that notes in its [`Activity`] every byte it moves.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn handle(
    State(served): State<Arc<Served>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !served.lets_in(&headers) {
        return plain_with(
            StatusCode::UNAUTHORIZED,
            "this server wants a user name and password (HTTP Basic)",
            (header::WWW_AUTHENTICATE, "Basic realm=\"ferry serve\""),
        );
    }
    match method.as_str() {
        "GET" => download(&served, &uri, &headers, false).await,
        "HEAD" => download(&served, &uri, &headers, true).await,
        m if m.eq_ignore_ascii_case("BITS_POST") => {
            upload::handle(&served, peer.ip(), &uri, &headers, body).await
        }
        _ => plain_with(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET, HEAD or BITS_POST",
            (header::ALLOW, "GET, HEAD, BITS_POST"),
        ),
    }
}

/// [`plain`] with one more header.
fn plain_with(
    status: StatusCode,
    text: &str,
    (name, value): (header::HeaderName, &'static str),
) -> Response {
    let mut response = plain(status, text.to_string());
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
    response
}

fn plain(status: StatusCode, text: String) -> Response {
    let mut response = Response::new(Body::from(text + "\n"));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

enum Piece {
    Text(Bytes),
    File { start: u64, len: u64 },
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Text(bytes) => bytes.len() as u64,
            Piece::File { len, .. } => *len,
        }
    }
}

async fn download(served: &Served, uri: &Uri, headers: &HeaderMap, head: bool) -> Response {
    if let Some(id) = uri.path().strip_prefix(upload::REPLIES_PATH) {
        // The reply of an upload-reply session, while the session lasts.
        return match served.sessions.as_ref().and_then(|s| s.reply_file(id)) {
            Some(path) => {
                let file = tokio::fs::File::open(&path).await;
                send_file(file, uri, headers, head).await
            }
            None => plain(
                StatusCode::NOT_FOUND,
                format!(
                    "{}: no such reply (the session ended or has none)",
                    uri.path()
                ),
            ),
        };
    }
    let path = match paths::resolve(&served.root, uri.path()) {
        Ok(path) => path,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{}: {e}", uri.path())),
    };
    if path.starts_with(served.root.join(upload::SESSIONS_DIR)) {
        // Uploads in progress are never visible.
        return plain(
            StatusCode::NOT_FOUND,
            format!("{}: no such file", uri.path()),
        );
    }
    if let Err(e) = paths::contained(&served.root, &path) {
        // Also what a missing folder on the way gives: do not tell them apart.
        return match path.exists() {
            true => plain(StatusCode::FORBIDDEN, format!("{}: {e}", uri.path())),
            false => plain(
                StatusCode::NOT_FOUND,
                format!("{}: no such file", uri.path()),
            ),
        };
    }
    send_served(served, &path, uri, headers, head).await
}

/// GET/HEAD of one file: validators, single and multi-range answers, streamed.
/// GET/HEAD of a file inside the served folder, opened beneath it (see `beneath.rs`).
async fn send_served(
    served: &Served,
    path: &Path,
    uri: &Uri,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let Ok(relative) = path.strip_prefix(&served.root).map(Path::to_path_buf) else {
        return plain(
            StatusCode::FORBIDDEN,
            format!("{}: outside the served folder", uri.path()),
        );
    };
    let root = served.root_dir.clone();
    let opened = tokio::task::spawn_blocking(move || root.open_read(&relative)).await;
    let opened = opened.unwrap_or_else(|e| Err(std::io::Error::other(e)));
    send_file(opened.map(tokio::fs::File::from_std), uri, headers, head).await
}

async fn send_file(
    file: std::io::Result<tokio::fs::File>,
    uri: &Uri,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return plain(
                StatusCode::NOT_FOUND,
                format!("{}: no such file", uri.path()),
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return plain(StatusCode::FORBIDDEN, format!("{}: {e}", uri.path()));
        }
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let meta = match file.metadata().await {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return plain(StatusCode::NOT_FOUND, format!("{}: not a file", uri.path())),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let size = meta.len();
    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    let last_modified = httpdate::fmt_http_date(modified);
    let mtime = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Strong: it changes with the size and the modification time (to the nanosecond).
    let etag = format!("\"{mtime:x}-{size:x}\"");
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range_holds = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == etag || v == last_modified);
    let wanted = if if_range_holds {
        ranges::parse(range, size)
    } else {
        ranges::Wanted::Whole
    };
    let (status, content_type, content_range, pieces) = match wanted {
        ranges::Wanted::Whole => (
            StatusCode::OK,
            "application/octet-stream".to_string(),
            None,
            vec![Piece::File {
                start: 0,
                len: size,
            }],
        ),
        ranges::Wanted::Unsatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            "application/octet-stream".to_string(),
            Some(format!("bytes */{size}")),
            Vec::new(),
        ),
        ranges::Wanted::Ranges(ranges) if ranges.len() == 1 => {
            let (first, last) = ranges[0];
            (
                StatusCode::PARTIAL_CONTENT,
                "application/octet-stream".to_string(),
                Some(format!("bytes {first}-{last}/{size}")),
                vec![Piece::File {
                    start: first,
                    len: last - first + 1,
                }],
            )
        }
        ranges::Wanted::Ranges(ranges) => {
            let boundary = uuid::Uuid::new_v4().simple().to_string();
            let mut pieces = Vec::new();
            for (first, last) in ranges {
                pieces.push(Piece::Text(Bytes::from(format!(
                    "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\
                     Content-Range: bytes {first}-{last}/{size}\r\n\r\n"
                ))));
                pieces.push(Piece::File {
                    start: first,
                    len: last - first + 1,
                });
            }
            pieces.push(Piece::Text(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
            (
                StatusCode::PARTIAL_CONTENT,
                format!("multipart/byteranges; boundary={boundary}"),
                None,
                pieces,
            )
        }
    };
    let length: u64 = pieces.iter().map(Piece::len).sum();
    let mut response = if head {
        Response::new(Body::empty())
    } else {
        Response::new(body(file, pieces))
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            h.insert(name, value);
        }
    };
    set(header::CONTENT_LENGTH, &length.to_string());
    set(header::CONTENT_TYPE, &content_type);
    set(header::ACCEPT_RANGES, "bytes");
    set(header::LAST_MODIFIED, &last_modified);
    set(header::ETAG, &etag);
    if let Some(content_range) = content_range {
        set(header::CONTENT_RANGE, &content_range);
    }
    response
}

/// Streams the pieces, reading the file a chunk at a time (memory stays bounded).
fn body(file: tokio::fs::File, pieces: Vec<Piece>) -> Body {
    let state = (file, pieces.into_iter(), 0u64);
    let stream =
        futures_util::stream::try_unfold(state, |(mut file, mut pieces, mut left)| async move {
            loop {
                if left > 0 {
                    let n = left.min(CHUNK);
                    let mut buf = vec![0; n as usize];
                    file.read_exact(&mut buf).await?;
                    return Ok::<_, std::io::Error>(Some((
                        Bytes::from(buf),
                        (file, pieces, left - n),
                    )));
                }
                match pieces.next() {
                    None => return Ok(None),
                    Some(Piece::Text(text)) => return Ok(Some((text, (file, pieces, 0)))),
                    Some(Piece::File { start, len }) => {
                        file.seek(SeekFrom::Start(start)).await?;
                        left = len;
                    }
                }
            }
        });
    Body::from_stream(stream)
}
