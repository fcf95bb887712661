//! The client side of the service's API, shared by the CLI and the GUI. It speaks HTTP+JSON over
//! the Unix socket (reqwest) and starts the service when none runs.

use super::api::{self, AddFiles, Cancelled, Completed, Created, ErrorReply, Status};
use crate::engine::{CancelOutcome, CompleteOutcome, EngineEvent, JobSpec, Subscription};
use crate::job::{BitsError, Job, JobId, NewFile, PropertyChange};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// No call takes the service this long (the longest, Complete and Cancel, rename or delete a
/// job's files); past it the service is taken for hung, not slow. The event stream has no limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No service answers on the socket (and none could be started).
    #[error("cannot reach the Ferry service at {}: {reason}", socket.display())]
    Unreachable { socket: PathBuf, reason: String },
    /// The service refused the request with a BITS error.
    #[error("{0}")]
    Api(BitsError),
    /// The service answered something this client does not understand (a version mismatch?).
    #[error(
        "the Ferry service gave an answer this client cannot read ({0}); are client and service the same version? Restart the service: ferry daemon --stop"
    )]
    Protocol(String),
}

impl From<BitsError> for ClientError {
    fn from(e: BitsError) -> Self {
        ClientError::Api(e)
    }
}

/// A connection to one service. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    socket: PathBuf,
}

/// An event from `GET /v1/events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceEvent {
    Engine(EngineEvent),
    /// The client read too slowly and `missed` events were dropped: fetch the jobs again.
    Lagged {
        missed: u64,
    },
}

impl Client {
    /// A client for the service at `socket`; nothing is sent yet.
    pub fn new(socket: &Path) -> Result<Client, ClientError> {
        // A local socket: no proxy to look up, and no certificates to load (a few ms of every
        // command's start).
        let http = reqwest::Client::builder()
            .unix_socket(socket)
            .no_proxy()
            .tls_certs_only(Vec::new())
            .build()
            .map_err(|e| ClientError::Unreachable {
                socket: socket.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Client {
            http,
            socket: socket.to_path_buf(),
        })
    }

    /// Connects to the user's service (see [`crate::platform::socket_path`]), starting it in the
    /// background when none runs.
    pub async fn connect_or_start() -> Result<Client, ClientError> {
        let client = Client::new(&crate::platform::socket_path())?;
        match client.status().await {
            Ok(_) => return Ok(client),
            Err(ClientError::Unreachable { .. }) => {}
            Err(other) => return Err(other),
        }
        let socket = client.socket.clone();
        // Another user's socket or runtime directory: say so, rather than start a service there.
        if let Err(sentence) = crate::platform::check_runtime_access(&socket) {
            return Err(ClientError::Api(BitsError::new(
                crate::job::ErrorCode::AccessDenied,
                sentence,
            )));
        }
        tokio::task::spawn_blocking(super::spawn::start_in_background)
            .await
            .map_err(|e| e.to_string())
            .and_then(|started| started)
            .map_err(|reason| ClientError::Unreachable { socket, reason })?;
        client.status().await?;
        Ok(client)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn url(&self, route: &str) -> String {
        // The host is ignored on a Unix socket; it only has to be a valid one.
        format!("http://ferry{}{route}", api::PREFIX)
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            socket: self.socket.clone(),
            reason: if e.is_connect() {
                "no service is listening".into()
            } else if e.is_timeout() {
                format!(
                    "the service did not answer within {} s; it may be hung: see service.log in \
                     the data directory, and restart it (ferry daemon --stop)",
                    CALL_TIMEOUT.as_secs()
                )
            } else {
                e.to_string()
            },
        }
    }

    async fn send(
        &self,
        method: Method,
        route: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, self.url(route));
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        match serde_json::from_slice::<ErrorReply>(&bytes) {
            Ok(reply) => Err(ClientError::Api(reply.into())),
            Err(_) => Err(ClientError::Protocol(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ))),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let response = self.send(method, route, body, Some(CALL_TIMEOUT)).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Method::GET, "/status", None::<&()>).await
    }

    /// The queue, oldest first; with `finished`, also the jobs that recently ended.
    pub async fn jobs(&self, finished: bool) -> Result<Vec<Job>, ClientError> {
        let route = if finished { "/jobs?all=true" } else { "/jobs" };
        self.call(Method::GET, route, None::<&()>).await
    }

    pub async fn job(&self, id: JobId) -> Result<Job, ClientError> {
        self.call(Method::GET, &format!("/jobs/{}", id.0), None::<&()>)
            .await
    }

    /// The finished jobs, newest first.
    pub async fn history(&self) -> Result<Vec<crate::store::HistoryEntry>, ClientError> {
        self.call(Method::GET, "/history", None::<&()>).await
    }

    /// Forgets the whole history.
    pub async fn clear_history(&self) -> Result<(), ClientError> {
        let _: serde_json::Value = self.call(Method::DELETE, "/history", None::<&()>).await?;
        Ok(())
    }

    pub async fn create(&self, spec: &JobSpec) -> Result<JobId, ClientError> {
        let created: Created = self.call(Method::POST, "/jobs", Some(spec)).await?;
        Ok(created.id)
    }

    pub async fn add_files(&self, id: JobId, files: Vec<NewFile>) -> Result<Job, ClientError> {
        let route = format!("/jobs/{}/files", id.0);
        self.call(Method::POST, &route, Some(&AddFiles { files }))
            .await
    }

    async fn action<T: DeserializeOwned>(&self, id: JobId, verb: &str) -> Result<T, ClientError> {
        let route = format!("/jobs/{}/{verb}", id.0);
        self.call(Method::POST, &route, None::<&()>).await
    }

    pub async fn resume(&self, id: JobId) -> Result<Job, ClientError> {
        self.action(id, "resume").await
    }

    pub async fn suspend(&self, id: JobId) -> Result<Job, ClientError> {
        self.action(id, "suspend").await
    }

    pub async fn complete(&self, id: JobId) -> Result<CompleteOutcome, ClientError> {
        let completed: Completed = self.action(id, "complete").await?;
        Ok(completed.outcome)
    }

    pub async fn cancel(&self, id: JobId) -> Result<CancelOutcome, ClientError> {
        let cancelled: Cancelled = self.action(id, "cancel").await?;
        Ok(cancelled.outcome)
    }

    /// Applies the changes in order; the first refused one stops the rest.
    pub async fn set(&self, id: JobId, changes: &[PropertyChange]) -> Result<Job, ClientError> {
        self.call(Method::PATCH, &format!("/jobs/{}", id.0), Some(&changes))
            .await
    }

    /// ReplaceRemotePrefix: `status` is `S_FALSE` when no file's URL started with `old`.
    pub async fn replace_remote_prefix(
        &self,
        id: JobId,
        old: &str,
        new: &str,
    ) -> Result<api::PrefixReplaced, ClientError> {
        let body = api::ReplacePrefix {
            old: old.into(),
            new: new.into(),
        };
        let route = format!("/jobs/{}/replace-remote-prefix", id.0);
        self.call(Method::POST, &route, Some(&body)).await
    }

    /// TakeOwnership, asked of the job owner's service by root: the job leaves that service.
    pub async fn hand_over(&self, id: JobId) -> Result<(), ClientError> {
        let route = format!("/jobs/{}/hand-over", id.0);
        let _: serde_json::Value = self.call(Method::POST, &route, None::<&()>).await?;
        Ok(())
    }

    /// TakeOwnership, asked of root's service: `user`'s job `job` becomes root's.
    pub async fn take_ownership(
        &self,
        job: &str,
        user: &str,
        data_dir: Option<&Path>,
    ) -> Result<crate::engine::api::TakenOver, ClientError> {
        let body = super::ownership::TakeOwnership {
            job: job.into(),
            user: user.into(),
            data_dir: data_dir.map(Path::to_path_buf),
        };
        self.call(Method::POST, "/take-ownership", Some(&body))
            .await
    }

    /// GetReplyData: the reply of an upload-reply job (at most 1 MiB).
    pub async fn reply_data(&self, id: JobId) -> Result<Vec<u8>, ClientError> {
        let route = format!("/jobs/{}/reply", id.0);
        let response = self
            .send(Method::GET, &route, None, Some(CALL_TIMEOUT))
            .await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok(bytes.to_vec())
    }

    /// Saves the reply of an upload-reply job to `out` (absolute, not existing yet).
    pub async fn save_reply(&self, id: JobId, out: &Path) -> Result<u64, ClientError> {
        let route = format!("/jobs/{}/reply", id.0);
        let save = api::SaveReply {
            out: out.to_path_buf(),
        };
        let saved: api::ReplySaved = self.call(Method::POST, &route, Some(&save)).await?;
        Ok(saved.bytes)
    }

    /// The configuration in the service's config file.
    pub async fn config(&self) -> Result<crate::config::Config, ClientError> {
        self.call(Method::GET, "/config", None::<&()>).await
    }

    /// Validates, saves and applies a whole configuration.
    pub async fn set_config(
        &self,
        config: &crate::config::Config,
    ) -> Result<api::ConfigSaved, ClientError> {
        self.call(Method::PUT, "/config", Some(config)).await
    }

    /// Asks the service to stop (transfers stop at a checkpoint and resume when it starts again).
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        let _: serde_json::Value = self.call(Method::POST, "/shutdown", None::<&()>).await?;
        Ok(())
    }

    /// Subscribes to the live events: every event (`All`, what Ferry's own surfaces follow), or
    /// each job's as its notify flags ask (`ByNotifyFlags`, what BITS tells a callback).
    pub async fn events(&self, which: Subscription) -> Result<EventStream, ClientError> {
        let route = match which {
            Subscription::All => "/events?all=true",
            Subscription::ByNotifyFlags => "/events",
        };
        let response = self.send(Method::GET, route, None, None).await?;
        Ok(EventStream {
            response,
            buffer: Vec::new(),
        })
    }
}

/// The live events of the service, as they come.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the service closed the stream (it stopped).
    pub async fn next(&mut self) -> Option<Result<ServiceEvent, ClientError>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(parse_event(&line[..end]));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return None,
                Err(e) => {
                    return Some(Err(ClientError::Protocol(format!(
                        "the event stream broke: {e}"
                    ))));
                }
            }
        }
    }
}

fn parse_event(line: &[u8]) -> Result<ServiceEvent, ClientError> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if value.get("event").and_then(|e| e.as_str()) == Some("Lagged") {
        let missed = value.get("missed").and_then(|m| m.as_u64()).unwrap_or(0);
        return Ok(ServiceEvent::Lagged { missed });
    }
    serde_json::from_value(value)
        .map(ServiceEvent::Engine)
        .map_err(|e| ClientError::Protocol(e.to_string()))
}
