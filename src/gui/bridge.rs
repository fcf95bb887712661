//! The GUI's only link to the service: a thread with its own single-threaded tokio runtime. The
//! UI thread hands it requests and never waits; replies, fresh copies of jobs and notable events
//! come back on a channel, each followed by a repaint request. Job updates are batched (at most
//! one batch per [`BATCH`]); a batch of mere progress asks for a repaint within
//! [`super::app::LIVE_REPAINT`] rather than at once, so a busy queue costs the UI a few frames a
//! second, while state changes and answers to the user show at once.

use crate::config::Config;
use crate::engine::{CancelOutcome, CompleteOutcome, EngineEvent, JobSpec, Subscription};
use crate::job::{ErrorCode, Job, JobId, PropertyChange};
use crate::service::api::{ConfigSaved, Status};
use crate::service::client::{Client, ClientError, ServiceEvent};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;

const BATCH: Duration = Duration::from_millis(100);
/// Wait before connecting again after the service went away.
const RECONNECT: Duration = Duration::from_secs(2);
/// More changed jobs than this in one batch: one listing is cheaper than many calls.
const LIST_INSTEAD: usize = 64;

/// How the bridge finds the service.
#[derive(Clone, Debug)]
pub enum Connect {
    /// The user's service, started in the background when none runs.
    StartIfNeeded,
    /// The service at this socket only (tests).
    Socket(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Resume,
    Suspend,
    Complete,
    Cancel,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Resume => "Resume",
            Action::Suspend => "Suspend",
            Action::Complete => "Complete",
            Action::Cancel => "Cancel",
        }
    }
}

#[derive(Debug)]
pub enum Request {
    Act(Action, Vec<JobId>),
    Set(Vec<JobId>, PropertyChange),
    /// Create a job with its files; resume it when `start`.
    Create {
        spec: JobSpec,
        start: bool,
    },
    /// Read the service's configuration.
    LoadConfig,
    /// Validate, save and apply a configuration.
    SaveConfig(Box<Config>),
    /// These requests one after the other, each after the previous one's answer (requests are
    /// otherwise answered concurrently): Set then Complete, SetRemoteName then Resume.
    InOrder(Vec<Request>),
    /// Read the history of finished jobs.
    LoadHistory,
    /// Forget the whole history.
    ClearHistory,
}

/// An error as the GUI shows it: BITS name and code (when there is one) and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: Option<ErrorCode>,
    pub text: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api(e) => Failure {
                code: Some(e.code),
                text: format!("{} {}: {}", e.code.name(), e.code.hresult_text(), e.message),
            },
            other => Failure {
                code: None,
                text: other.to_string(),
            },
        }
    }
}

#[derive(Debug)]
pub enum Reply {
    Connected(Box<Status>),
    Disconnected(String),
    /// Every job the service knows (the queue and the recently finished).
    Jobs(Vec<Job>),
    Job(Box<Job>),
    Gone(JobId),
    Event(EngineEvent),
    /// One result per job of an [`Request::Act`] or [`Request::Set`]; `Ok` carries a BITS
    /// success code worth telling (partial complete), if any.
    Done {
        action: &'static str,
        results: Vec<(JobId, Result<Option<String>, Failure>)>,
    },
    Created(Result<JobId, Failure>),
    Config(Result<Box<Config>, Failure>),
    ConfigSaved(Result<Box<ConfigSaved>, Failure>),
    History(Result<Vec<crate::store::HistoryEntry>, Failure>),
}

/// The UI's end: send requests, drain replies.
pub struct Bridge {
    requests: mpsc::UnboundedSender<Request>,
    pub replies: std_mpsc::Receiver<Reply>,
}

impl Bridge {
    /// Starts the bridge thread; `wake(within)` is called after each reply: the UI should
    /// repaint within that time (zero: at once).
    pub fn start(connect: Connect, wake: impl Fn(Duration) + Send + Sync + 'static) -> Bridge {
        let (requests, request_rx) = mpsc::unbounded_channel();
        let (reply_tx, replies) = std_mpsc::channel();
        let outbox = Outbox {
            tx: reply_tx,
            wake: std::sync::Arc::new(wake),
        };
        let spawned = std::thread::Builder::new()
            .name("ferry-gui-bridge".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(run(connect, request_rx, outbox)),
                    Err(e) => outbox.send(Reply::Disconnected(format!("cannot start: {e}"))),
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the service bridge thread: {e}");
        }
        Bridge { requests, replies }
    }

    pub fn send(&self, request: Request) {
        // Fails only when the bridge thread is gone, and then Disconnected was already reported.
        let _ = self.requests.send(request);
    }
}

#[derive(Clone)]
struct Outbox {
    tx: std_mpsc::Sender<Reply>,
    wake: std::sync::Arc<dyn Fn(Duration) + Send + Sync>,
}

impl Outbox {
    fn send(&self, reply: Reply) {
        self.send_within(reply, Duration::ZERO);
    }

    /// For progress: shown with the next live repaint, without a frame of its own.
    fn send_within(&self, reply: Reply, within: Duration) {
        if self.tx.send(reply).is_ok() {
            (self.wake)(within);
        }
    }
}

async fn connect(how: &Connect) -> Result<Client, ClientError> {
    match how {
        Connect::StartIfNeeded => Client::connect_or_start().await,
        Connect::Socket(path) => {
            let client = Client::new(path)?;
            client.status().await?;
            Ok(client)
        }
    }
}

/// Events that only move progress along: they need no frame of their own.
fn is_progress(event: &EngineEvent) -> bool {
    matches!(
        event,
        EngineEvent::JobModification { .. } | EngineEvent::ProgressSaved { .. }
    )
}

/// Events the UI acts on itself (toasts, notifications); the rest only refresh jobs.
fn is_notable(event: &EngineEvent) -> bool {
    matches!(
        event,
        EngineEvent::StateChanged { .. }
            | EngineEvent::JobTransferred { .. }
            | EngineEvent::JobError { .. }
            | EngineEvent::InactivityWarning { .. }
            | EngineEvent::InactivityCancelled { .. }
            | EngineEvent::QuotaExceeded { .. }
            | EngineEvent::CompleteFailed { .. }
            | EngineEvent::OwnerChanged { .. }
            | EngineEvent::Yielding { .. }
    )
}

async fn run(how: Connect, mut requests: mpsc::UnboundedReceiver<Request>, out: Outbox) {
    loop {
        let session = async {
            let client = connect(&how).await?;
            // Subscribe before listing, so that nothing between the two is missed.
            let events = client.events(Subscription::All).await?;
            let status = client.status().await?;
            out.send(Reply::Connected(Box::new(status)));
            out.send(Reply::Jobs(client.jobs(true).await?));
            Ok::<_, ClientError>((client, events))
        };
        let (client, mut events) = match session.await {
            Ok(session) => session,
            Err(e) => {
                out.send(Reply::Disconnected(e.to_string()));
                // Requests made meanwhile fail at once rather than hang.
                let retry = tokio::time::sleep(RECONNECT);
                tokio::pin!(retry);
                loop {
                    tokio::select! {
                        _ = &mut retry => break,
                        request = requests.recv() => match request {
                            None => return,
                            Some(request) => refuse(request, &e.to_string(), &out),
                        },
                    }
                }
                continue;
            }
        };
        let mut dirty: HashSet<JobId> = HashSet::new();
        let mut refetch_all = false;
        // The batch holds more than progress (a state change, a new file done, …).
        let mut urgent = false;
        let mut batch = tokio::time::interval(BATCH);
        batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    None => return,
                    Some(request) => {
                        // The user acted: what changes next answers them, so show it at once.
                        urgent = true;
                        let (client, out) = (client.clone(), out.clone());
                        tokio::spawn(async move { handle(&client, request, &out).await });
                    }
                },
                event = events.next() => match event {
                    Some(Ok(ServiceEvent::Engine(event))) => {
                        if let Some(id) = event.job() {
                            dirty.insert(id);
                            urgent |= !is_progress(&event);
                        }
                        if is_notable(&event) {
                            out.send(Reply::Event(event));
                        }
                    }
                    Some(Ok(ServiceEvent::Lagged { .. })) => refetch_all = true,
                    Some(Err(e)) => {
                        out.send(Reply::Disconnected(e.to_string()));
                        break;
                    }
                    None => {
                        out.send(Reply::Disconnected("the service stopped".into()));
                        break;
                    }
                },
                _ = batch.tick(), if refetch_all || !dirty.is_empty() => {
                    let within = if std::mem::take(&mut urgent) || refetch_all {
                        Duration::ZERO
                    } else {
                        super::app::LIVE_REPAINT
                    };
                    if refetch_all || dirty.len() > LIST_INSTEAD {
                        refetch_all = false;
                        dirty.clear();
                        if let Ok(jobs) = client.jobs(true).await {
                            out.send_within(Reply::Jobs(jobs), within);
                        }
                    } else {
                        for id in dirty.drain() {
                            match client.job(id).await {
                                Ok(job) => out.send_within(Reply::Job(Box::new(job)), within),
                                Err(ClientError::Api(e)) if e.code == ErrorCode::NotFound => {
                                    out.send(Reply::Gone(id))
                                }
                                Err(_) => {} // the stream reports a lost service
                            }
                        }
                    }
                }
            }
        }
    }
}

fn refuse(request: Request, why: &str, out: &Outbox) {
    let failure = Failure {
        code: None,
        text: format!("the service is not reachable: {why}"),
    };
    match request {
        Request::Act(action, ids) => out.send(Reply::Done {
            action: action.verb(),
            results: ids
                .into_iter()
                .map(|id| (id, Err(failure.clone())))
                .collect(),
        }),
        Request::Set(ids, _) => out.send(Reply::Done {
            action: "Change",
            results: ids
                .into_iter()
                .map(|id| (id, Err(failure.clone())))
                .collect(),
        }),
        Request::Create { .. } => out.send(Reply::Created(Err(failure))),
        Request::LoadConfig => out.send(Reply::Config(Err(failure))),
        Request::SaveConfig(_) => out.send(Reply::ConfigSaved(Err(failure))),
        Request::LoadHistory | Request::ClearHistory => out.send(Reply::History(Err(failure))),
        Request::InOrder(requests) => {
            for request in requests {
                refuse(request, why, out);
            }
        }
    }
}

async fn handle(client: &Client, request: Request, out: &Outbox) {
    match request {
        // One task for the whole sequence: each request after the previous one's answer.
        Request::InOrder(requests) => {
            for request in requests {
                Box::pin(handle(client, request, out)).await;
            }
        }
        Request::Act(action, ids) => {
            let mut results = Vec::with_capacity(ids.len());
            for id in ids {
                let result = match action {
                    Action::Resume => client.resume(id).await.map(|_| None),
                    Action::Suspend => client.suspend(id).await.map(|_| None),
                    Action::Complete => client.complete(id).await.map(|outcome| match outcome {
                        CompleteOutcome::Complete => None,
                        CompleteOutcome::PartialComplete => Some(
                            "BG_S_PARTIAL_COMPLETE 0x00200017: files not transferred were deleted"
                                .to_string(),
                        ),
                        CompleteOutcome::UnableToDeleteFiles => Some(
                            "BG_S_UNABLE_TO_DELETE_FILES 0x0020001A: some temporary files remain"
                                .to_string(),
                        ),
                    }),
                    Action::Cancel => client.cancel(id).await.map(|outcome| match outcome {
                        CancelOutcome::Cancelled => None,
                        _ => Some(
                            "BG_S_UNABLE_TO_DELETE_FILES 0x0020001A: some temporary files remain"
                                .to_string(),
                        ),
                    }),
                };
                results.push((id, result.map_err(Failure::from)));
            }
            out.send(Reply::Done {
                action: action.verb(),
                results,
            });
        }
        Request::Set(ids, change) => {
            let mut results = Vec::with_capacity(ids.len());
            for id in ids {
                let result = client.set(id, std::slice::from_ref(&change)).await;
                results.push((id, result.map(|_| None).map_err(Failure::from)));
            }
            out.send(Reply::Done {
                action: "Change",
                results,
            });
        }
        Request::Create { spec, start } => {
            let created = async {
                let id = client.create(&spec).await?;
                if start {
                    client.resume(id).await?;
                }
                Ok::<_, ClientError>(id)
            };
            out.send(Reply::Created(created.await.map_err(Failure::from)));
        }
        Request::LoadConfig => {
            let config = client.config().await.map(Box::new);
            out.send(Reply::Config(config.map_err(Failure::from)));
        }
        Request::LoadHistory => {
            let history = client.history().await;
            out.send(Reply::History(history.map_err(Failure::from)));
        }
        Request::ClearHistory => {
            let history = match client.clear_history().await {
                Ok(()) => client.history().await,
                Err(e) => Err(e),
            };
            out.send(Reply::History(history.map_err(Failure::from)));
        }
        Request::SaveConfig(config) => {
            let saved = client.set_config(&config).await.map(Box::new);
            let ok = saved.is_ok();
            out.send(Reply::ConfigSaved(saved.map_err(Failure::from)));
            if ok && let Ok(status) = client.status().await {
                out.send(Reply::Connected(Box::new(status)));
            }
        }
    }
}
