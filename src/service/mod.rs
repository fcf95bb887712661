//! The service: the engine, headless, behind a local HTTP+JSON API on a Unix domain socket.
//!
//! Every tool (the CLI, the GUI, scripts with `curl --unix-socket`) talks to the one engine of a
//! user through this API; `docs/api.md` documents it. The socket lives in a private runtime
//! directory (0700) and is itself 0600; on top of that, every request is checked against the
//! peer's credentials: only the service's own user and root may use it.

pub mod api;
pub mod client;
mod ownership;
pub mod resolve;
pub mod spawn;

use crate::config::Config;
use crate::engine::{self, Clock, EngineError, EngineHandle, EngineOptions, JobSpec};
use crate::job::{BitsError, ErrorCode, JobId, PropertyChange};
use crate::platform::User;
use crate::store::StoreError;
use api::{AddFiles, Cancelled, Completed, Created, ErrorReply, Status};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Path as RoutePath, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

pub struct ServiceOptions {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub config: Config,
    /// The config file `PUT /v1/config` rewrites; `None`: the configuration cannot be changed.
    pub config_path: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    pub user: User,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Another service (or a `ferry` process) holds the data directory.
    #[error(
        "another Ferry service is already running for {}{holder}; use it, or stop it first \
         (ferry daemon --stop)", dir.display()
    )]
    Busy { dir: PathBuf, holder: String },
    #[error("{0}")]
    Engine(EngineError),
    #[error("cannot listen on {path}: {reason}")]
    Listen { path: PathBuf, reason: String },
}

/// Runs the service until SIGINT/SIGTERM, `POST /v1/shutdown`, or the idle timeout. `ready` is
/// called once the socket accepts connections.
pub async fn run(options: ServiceOptions, ready: impl FnOnce(&Status)) -> Result<(), ServiceError> {
    let config = &options.config;
    let mut status = Status {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        user: options.user.name.clone(),
        uid: options.user.uid,
        data_dir: options.data_dir.clone(),
        socket: options.socket.clone(),
        jobs: 0,
        idle_exit_secs: config.service_idle_exit_secs,
        job_inactivity_timeout_secs: config.job_inactivity_timeout_secs,
        inactivity_warning_secs: config.inactivity_warning_secs,
        quarantined: Vec::new(),
    };
    let (engine, report) = engine::start(EngineOptions {
        data_dir: options.data_dir,
        config: options.config,
        clock: options.clock,
        user: options.user,
        fault_injection: None,
        machine_registry: Some(engine::MachineRegistryOptions {
            dir: crate::store::machine::MachineRegistry::dir_from_env(),
            socket: options.socket.clone(),
        }),
    })
    .map_err(|e| match e {
        EngineError::Store(StoreError::Locked { dir, holder }) => {
            ServiceError::Busy { dir, holder }
        }
        other => ServiceError::Engine(other),
    })?;
    for damaged in report.quarantined {
        tracing::warn!(
            "a damaged job file was moved to {} ({})",
            damaged.moved_to.display(),
            damaged.reason
        );
        status.quarantined.push(api::QuarantinedFile {
            moved_to: damaged.moved_to,
            reason: damaged.reason,
        });
    }
    let listener = match bind(&options.socket) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = engine.shutdown().await;
            return Err(e);
        }
    };
    let (stop_tx, stop) = watch::channel(false);
    let idle_exit = status.idle_exit_secs;
    let state = AppState {
        engine: engine.clone(),
        uid: status.uid,
        user: status.user.clone(),
        config_path: options.config_path,
        status: Arc::new(std::sync::Mutex::new(status)),
        activity: Arc::new(Activity::new()),
        stop: stop_tx.clone(),
        stopping: stop.clone(),
    };
    ready(&state.status());
    if idle_exit > 0 {
        tokio::spawn(exit_when_idle(
            state.clone(),
            Duration::from_secs(idle_exit),
        ));
    }
    tokio::spawn(stop_on_signal(stop_tx));
    let app = router(state).into_make_service_with_connect_info::<Peer>();
    let mut stopping = stop;
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = engine.shutdown().await {
        tracing::warn!("engine shutdown: {e}");
    }
    let _ = std::fs::remove_file(&options.socket);
    served.map_err(|e| ServiceError::Listen {
        path: options.socket,
        reason: e.to_string(),
    })
}

/// Binds the socket (0600) in a private runtime directory, replacing a stale socket file but
/// never a live one.
fn bind(socket: &Path) -> Result<UnixListener, ServiceError> {
    let fail = |reason: String| ServiceError::Listen {
        path: socket.to_path_buf(),
        reason,
    };
    let dir = socket
        .parent()
        .ok_or_else(|| fail("the socket path has no parent directory".into()))?;
    crate::platform::prepare_runtime_dir(dir).map_err(fail)?;
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(ServiceError::Busy {
            dir: socket.to_path_buf(),
            holder: String::new(),
        });
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("cannot remove the stale socket: {e}"))),
    }
    let listener = UnixListener::bind(socket).map_err(|e| fail(e.to_string()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(e.to_string()))?;
    Ok(listener)
}

async fn stop_on_signal(stop: watch::Sender<bool>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    let _ = stop.send(true);
}

/// Requests and event streams keep the service up; so does any job in the queue, because every
/// job has a timer (retry, inactivity) that needs the engine running.
struct Activity {
    last: Mutex<Instant>,
    streams: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            last: Mutex::new(Instant::now()),
            streams: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }

    fn last(&self) -> Instant {
        self.last
            .lock()
            .map(|l| *l)
            .unwrap_or_else(|_| Instant::now())
    }
}

async fn exit_when_idle(state: AppState, grace: Duration) {
    loop {
        // A grace of centuries (the config caps it, but an Instant must never overflow) is a
        // wait of decades.
        let last = state.activity.last();
        let far = Duration::from_secs(30 * 365 * 24 * 3600);
        tokio::time::sleep_until(last.checked_add(grace).unwrap_or(last + far)).await;
        if state.activity.streams.load(Ordering::SeqCst) > 0
            || state.activity.last().elapsed() < grace
        {
            state.activity.touch();
            continue;
        }
        match state.engine.queue_len().await {
            Ok(0) => break,
            Ok(_) => state.activity.touch(),
            Err(_) => break, // the engine is gone: nothing left to serve
        }
    }
    tracing::info!("idle for {} s with no jobs: exiting", grace.as_secs());
    let _ = state.stop.send(true);
}

#[derive(Clone)]
struct AppState {
    engine: EngineHandle,
    uid: u32,
    user: String,
    config_path: Option<PathBuf>,
    /// Changes with the configuration (`PUT /v1/config`).
    status: Arc<std::sync::Mutex<Status>>,
    activity: Arc<Activity>,
    stop: watch::Sender<bool>,
    stopping: watch::Receiver<bool>,
}

impl AppState {
    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Who is at the other end of a connection (SO_PEERCRED).
#[derive(Clone, Copy, Debug)]
struct Peer {
    uid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Peer {
            uid: stream.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

fn router(state: AppState) -> Router {
    let p = |route: &str| format!("{}{route}", api::PREFIX);
    Router::new()
        .route(&p("/status"), get(status))
        .route(&p("/jobs"), get(list).post(create))
        .route(&p("/jobs/{id}"), get(job).patch(set))
        .route(&p("/jobs/{id}/files"), post(add_files))
        .route(&p("/jobs/{id}/resume"), post(resume))
        .route(&p("/jobs/{id}/suspend"), post(suspend))
        .route(&p("/jobs/{id}/complete"), post(complete))
        .route(&p("/jobs/{id}/cancel"), post(cancel))
        .route(&p("/jobs/{id}/validation"), post(validate))
        .route(
            &p("/jobs/{id}/replace-remote-prefix"),
            post(replace_remote_prefix),
        )
        .route(&p("/jobs/{id}/reply"), get(reply_data).post(save_reply))
        .route(&p("/jobs/{id}/hand-over"), post(hand_over))
        .route(&p("/take-ownership"), post(take_ownership))
        .route(&p("/events"), get(events))
        .route(&p("/history"), get(history).delete(clear_history))
        .route(&p("/config"), get(get_config).put(put_config))
        .route(&p("/shutdown"), post(shutdown))
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Refuses every user but the service's own and root (spec §9: owner or administrator).
async fn guard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    state.activity.touch();
    match peer.uid {
        Some(uid) if uid == state.uid || uid == 0 => {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            as_bits_error(next.run(request).await, &method, &path)
        }
        other => {
            let who = other.map_or("an unknown user".to_string(), |uid| format!("uid {uid}"));
            tracing::warn!("refused a connection from {who}");
            error(&BitsError::new(
                ErrorCode::AccessDenied,
                format!(
                    "this Ferry service runs the jobs of {} (uid {}); {who} may not use it. Run \
                     ferry as your own user: it starts a service of your own",
                    state.user, state.uid
                ),
            ))
        }
    }
}

/// Errors raised by the HTTP layer itself (a wrong method, a body too large) get the same JSON
/// shape as every other error, so that clients need one way to read them.
fn as_bits_error(response: Response, method: &axum::http::Method, path: &str) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            format!("{path} does not take {method}; it takes {allowed}. See docs/api.md")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is too large (at most 2 MiB); add files in several requests".into()
        }
        other => format!("{method} {path} was refused by the HTTP layer ({other})"),
    };
    let mut replaced = json(status, &ErrorReply::from(&invalid(message)));
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replaced.headers_mut().insert(header::ALLOW, allow.clone());
    }
    replaced
}

fn error(e: &BitsError) -> Response {
    let status = match e.code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::AccessDenied => StatusCode::FORBIDDEN,
        ErrorCode::InvalidState => StatusCode::CONFLICT,
        code if code.is_quota() => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::LocalIo | ErrorCode::DiskFull => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    json(status, &ErrorReply::from(e))
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn reply<T: serde::Serialize>(result: Result<T, BitsError>) -> Response {
    match result {
        Ok(body) => json(StatusCode::OK, &body),
        Err(e) => error(&e),
    }
}

fn invalid(message: String) -> BitsError {
    BitsError::new(ErrorCode::InvalidArg, message)
}

/// Parses a JSON body into `T`, with an error that says what was wrong and where to look.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, BitsError> {
    serde_json::from_slice(bytes).map_err(|e| {
        invalid(format!(
            "the request body is not valid for this route: {e}. See docs/api.md for its shape"
        ))
    })
}

fn job_id(text: &str) -> Result<JobId, BitsError> {
    JobId::parse(text).ok_or_else(|| {
        invalid(format!(
            "{text:?} is not a job id: use the id as listed by GET /v1/jobs, e.g. \
             6f1c3c52-3f4e-4f59-a0f3-2b0d9c1e4a7b"
        ))
    })
}

async fn no_route(request: Request) -> Response {
    error(&BitsError::new(
        ErrorCode::NotFound,
        format!(
            "no API route {} {}: see docs/api.md for the routes",
            request.method(),
            request.uri().path()
        ),
    ))
}

async fn status(State(state): State<AppState>) -> Response {
    let jobs = state.engine.queue_len().await;
    reply(jobs.map(|jobs| Status {
        jobs,
        ..state.status()
    }))
}

/// `?all=true` adds the jobs that recently ended (`GET /v1/jobs`), or asks for every event
/// whatever the jobs' notify flags (`GET /v1/events`).
fn query_all(query: Option<&str>, route: &str) -> Result<bool, BitsError> {
    let mut all = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        all = match pair {
            "all" | "all=true" | "all=1" => true,
            "all=false" | "all=0" => false,
            other => {
                return Err(invalid(format!(
                    "unknown query {other:?}: {route} takes only all=true or all=false"
                )));
            }
        };
    }
    Ok(all)
}

async fn list(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    reply(
        async {
            state
                .engine
                .list(query_all(query.as_deref(), "GET /v1/jobs")?)
                .await
        }
        .await,
    )
}

async fn create(State(state): State<AppState>, bytes: Bytes) -> Response {
    let result = async {
        let spec: JobSpec = body(&bytes)?;
        state.engine.create(spec).await
    }
    .await;
    match result {
        Ok(id) => json(StatusCode::CREATED, &Created { id }),
        Err(e) => error(&e),
    }
}

async fn job(State(state): State<AppState>, RoutePath(id): RoutePath<String>) -> Response {
    reply(async { state.engine.job(job_id(&id)?).await }.await)
}

/// Runs `action` on the job the route names, then replies with the job as it is afterwards.
async fn on_job(
    state: &AppState,
    id: &str,
    action: impl AsyncFnOnce(&EngineHandle, JobId) -> Result<(), BitsError>,
) -> Response {
    let result = async {
        let id = job_id(id)?;
        action(&state.engine, id).await?;
        state.engine.job(id).await
    };
    reply(result.await)
}

/// Applies the changes in order; stops at the first one refused (the earlier ones stay).
async fn set(
    State(state): State<AppState>,
    RoutePath(id): RoutePath<String>,
    bytes: Bytes,
) -> Response {
    on_job(&state, &id, async |engine, id| {
        let changes: Vec<PropertyChange> = body(&bytes)?;
        let count = changes.len();
        for (index, change) in changes.into_iter().enumerate() {
            engine.set(id, change).await.map_err(|e| match index {
                0 => e,
                _ => BitsError::new(
                    e.code,
                    format!(
                        "{} (change {} of {count}; the {index} before it were applied)",
                        e.message,
                        index + 1
                    ),
                ),
            })?;
        }
        Ok(())
    })
    .await
}

async fn add_files(
    State(state): State<AppState>,
    RoutePath(id): RoutePath<String>,
    bytes: Bytes,
) -> Response {
    on_job(&state, &id, async |engine, id| {
        let add: AddFiles = body(&bytes)?;
        engine.add_files(id, add.files).await
    })
    .await
}

async fn resume(State(state): State<AppState>, RoutePath(id): RoutePath<String>) -> Response {
    on_job(&state, &id, async |engine, id| engine.resume(id).await).await
}

async fn suspend(State(state): State<AppState>, RoutePath(id): RoutePath<String>) -> Response {
    on_job(&state, &id, async |engine, id| engine.suspend(id).await).await
}

async fn complete(State(state): State<AppState>, RoutePath(id): RoutePath<String>) -> Response {
    let result = async {
        let outcome = state.engine.complete(job_id(&id)?).await?;
        Ok(Completed { outcome })
    };
    reply(result.await)
}

async fn replace_remote_prefix(
    State(state): State<AppState>,
    RoutePath(id): RoutePath<String>,
    bytes: Bytes,
) -> Response {
    let result = async {
        let id = job_id(&id)?;
        let api::ReplacePrefix { old, new } = body(&bytes)?;
        let files = state
            .engine
            .replace_remote_prefix(id, old.clone(), new.clone())
            .await?;
        let total = state.engine.job(id).await?.files.len();
        Ok(api::PrefixReplaced::new(files, &old, &new, total))
    };
    reply(result.await)
}

/// TakeOwnership, the giving side: only root may ask, of a service that is not root's.
async fn hand_over(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    RoutePath(id): RoutePath<String>,
) -> Response {
    let result = async {
        let id = job_id(&id)?;
        if peer.uid != Some(0) {
            return Err(BitsError::new(
                ErrorCode::AccessDenied,
                "only root hands a job over, by taking ownership of it (ferry take-ownership)",
            ));
        }
        if state.uid == 0 {
            return Err(invalid("root's jobs are root's already".into()));
        }
        state.engine.hand_over(id).await?;
        Ok(serde_json::json!({ "handed_over": id }))
    };
    reply(result.await)
}

/// TakeOwnership (spec §9), asked of root's service: `ownership.rs`.
async fn take_ownership(State(state): State<AppState>, bytes: Bytes) -> Response {
    let result = async {
        let request: ownership::TakeOwnership = body(&bytes)?;
        ownership::take_ownership(&state.engine, state.uid, request).await
    };
    reply(result.await)
}

async fn cancel(State(state): State<AppState>, RoutePath(id): RoutePath<String>) -> Response {
    let result = async {
        let outcome = state.engine.cancel(job_id(&id)?).await?;
        Ok(Cancelled { outcome })
    };
    reply(result.await)
}

#[derive(Deserialize)]
struct Validation {
    file: usize,
    valid: bool,
}

async fn validate(
    State(state): State<AppState>,
    RoutePath(id): RoutePath<String>,
    bytes: Bytes,
) -> Response {
    on_job(&state, &id, async |engine, id| {
        let v: Validation = body(&bytes)?;
        engine.set_validation(id, v.file, v.valid).await
    })
    .await
}

/// GetReplyData: the reply's bytes (at most 1 MiB).
async fn reply_data(State(state): State<AppState>, RoutePath(id): RoutePath<String>) -> Response {
    let result = async { state.engine.reply_data(job_id(&id)?).await }.await;
    match result {
        Ok(data) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            data,
        )
            .into_response(),
        Err(e) => error(&e),
    }
}

/// Saves the reply, whatever its size, to a file that must not exist yet.
async fn save_reply(
    State(state): State<AppState>,
    RoutePath(id): RoutePath<String>,
    bytes: Bytes,
) -> Response {
    let result = async {
        let save: api::SaveReply = body(&bytes)?;
        if !save.out.is_absolute() {
            return Err(invalid(format!(
                "out {:?} must be an absolute path",
                save.out
            )));
        }
        let bytes = state.engine.save_reply(job_id(&id)?, save.out).await?;
        Ok(api::ReplySaved { bytes })
    };
    reply(result.await)
}

fn config_path(state: &AppState) -> Result<&Path, BitsError> {
    state.config_path.as_deref().ok_or_else(|| {
        BitsError::new(
            ErrorCode::NotImpl,
            "this service was started without a config file; edit its configuration where it \
             was started",
        )
    })
}

/// The configuration in the config file (what `PUT` last wrote, or the defaults).
async fn get_config(State(state): State<AppState>) -> Response {
    reply(config_path(&state).and_then(|path| {
        Config::load(path).map_err(|e| BitsError::new(ErrorCode::LocalIo, e.to_string()))
    }))
}

/// Validates a whole configuration, writes it to the config file (atomically) and applies it.
async fn put_config(State(state): State<AppState>, bytes: Bytes) -> Response {
    let result = async {
        let path = config_path(&state)?;
        let config: Config = body(&bytes)?;
        config
            .validate()
            .map_err(|e| invalid(format!("the configuration is invalid: {e}")))?;
        let before = Config::load(path).unwrap_or_default();
        let text = ron::ser::to_string_pretty(&config, ron::ser::PrettyConfig::default())
            .map_err(|e| BitsError::new(ErrorCode::LocalIo, e.to_string()))?;
        crate::store::write_atomically(path, text.as_bytes()).map_err(|e| {
            BitsError::new(
                ErrorCode::LocalIo,
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
        state.engine.configure(config.clone()).await?;
        {
            let mut status = state.status.lock().unwrap_or_else(|e| e.into_inner());
            status.job_inactivity_timeout_secs = config.job_inactivity_timeout_secs;
            status.inactivity_warning_secs = config.inactivity_warning_secs;
        }
        let mut restart_needed = Vec::new();
        if config.watch_network != before.watch_network {
            restart_needed.push("watch_network".to_string());
        }
        if config.service_idle_exit_secs != before.service_idle_exit_secs {
            restart_needed.push("service_idle_exit_secs".to_string());
        }
        Ok(api::ConfigSaved {
            config,
            restart_needed,
        })
    }
    .await;
    reply(result)
}

/// The finished jobs, newest first (kept across restarts).
async fn history(State(state): State<AppState>) -> Response {
    reply(state.engine.history().await)
}

/// Forgets the whole history (the files stay where they are).
async fn clear_history(State(state): State<AppState>) -> Response {
    reply(
        state
            .engine
            .clear_history(None)
            .await
            .map(|()| serde_json::json!({ "cleared": true })),
    )
}

async fn shutdown(State(state): State<AppState>) -> Response {
    let _ = state.stop.send(true);
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "stopping": true }),
    )
}

/// Ends the stream (and so lets the service stop) when the service stops.
struct StreamGuard(Arc<Activity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

/// `GET /v1/events`: newline-delimited JSON, one event per line, until the client hangs up or the
/// service stops: each job's events as its notify flags ask, or with `?all=true` every event. A
/// client that reads too slowly gets `{"event":"Lagged","missed":N}` and should fetch the jobs
/// again.
async fn events(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let receiver = match query_all(query.as_deref(), "GET /v1/events") {
        Ok(true) => state.engine.subscribe(),
        Ok(false) => state.engine.subscribe_by_notify_flags(),
        Err(e) => return error(&e),
    };
    state.activity.streams.fetch_add(1, Ordering::SeqCst);
    let guard = StreamGuard(state.activity.clone());
    let stream = futures_util::stream::unfold(
        (receiver, state.stopping.clone(), guard),
        |(mut receiver, mut stopping, guard)| async move {
            let line = tokio::select! {
                event = receiver.recv() => match event {
                    Ok(event) => serde_json::to_vec(&event).ok()?,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        serde_json::to_vec(&serde_json::json!({"event": "Lagged", "missed": missed})).ok()?
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = stopping.wait_for(|stop| *stop) => return None,
            };
            let mut line = line;
            line.push(b'\n');
            Some((
                Ok::<_, std::io::Error>(Bytes::from(line)),
                (receiver, stopping, guard),
            ))
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}
