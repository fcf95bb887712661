//! The engine: one tokio task (an actor) owns every job. Commands come in on a channel, each with
//! a typed reply; events go out on a broadcast channel. Transfer workers run beside it and report
//! back. Every change of a job goes through [`crate::job::apply`].
//!
//! The public face is small: [`api`] (what clients pass and get back) and [`EngineHandle`].
//! Inside: `actor.rs` (the task and its commands), `workers.rs` (spawning, supervising and
//! stopping transfer workers), `timers.rs` (deadlines, checkpoints), `http.rs` (HTTP clients and
//! the checks of every server answer), `transfer.rs` / `upload.rs` (the workers themselves).

mod actor;
pub mod api;
pub mod bandwidth;
pub mod bits_upload;
mod checksums_file;
mod clock;
mod digest;
pub mod events;
pub(crate) mod files;
mod handle;
mod http;
mod idle;
mod network;
mod ownership;
mod policy;
mod saver;
mod scheduler;
mod timers;
mod transfer;
mod upload;
mod workers;
mod writer;

pub use api::{
    CancelOutcome, CompleteOutcome, EngineError, EngineEvent, EngineOptions, JobSpec,
    MachineRegistryOptions, REPLY_DATA_LIMIT, StartReport,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use events::Subscription;
pub use handle::EngineHandle;
pub use ownership::check_reachable;
pub use workers::{FaultInjection, WorkerFault};

use crate::job::{self, Event};
use crate::store::Store;
use actor::Actor;
use std::collections::{HashMap, HashSet, VecDeque};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Opens the store, loads the jobs and starts the engine on the current tokio runtime.
pub fn start(options: EngineOptions) -> Result<(EngineHandle, StartReport), EngineError> {
    let store = Store::open(&options.data_dir)?;
    let (mut loaded, quarantined) = store.load()?;
    let now = options.clock.now();
    ownership::recover_moves(&store, &mut loaded, &options.user.name, now);
    // The history is a record: one that cannot be read does not keep the service from starting.
    let mut history: VecDeque<crate::store::HistoryEntry> = store
        .load_history()
        .unwrap_or_else(|e| {
            tracing::warn!("the history is not available: {e}");
            Vec::new()
        })
        .into();
    // An entry of a job that is still live (a crash between the record and the removal of the
    // job file) is not history.
    let live: HashSet<job::JobId> = loaded
        .iter()
        .filter(|j| !j.state.is_final())
        .map(|j| j.id)
        .collect();
    history.retain(|e| !live.contains(&e.id));
    let (commands_tx, commands) = mpsc::channel(64);
    let events = events::EventBus::default();
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let (notify_tx, notify_exits) = mpsc::unbounded_channel();
    let mut jobs = HashMap::new();
    let mut dirty = HashSet::new();
    for mut job in loaded {
        if job.state.is_final() {
            let _ = store.remove(job.id);
            continue;
        }
        let before = job.clone();
        // Transfers cut by the stop resume from their checkpoint.
        if job::apply(&mut job, Event::Recovered, now).is_ok() && job != before {
            dirty.insert(job.id);
        }
        jobs.insert(job.id, job);
    }
    let report = StartReport {
        jobs_loaded: jobs.len(),
        quarantined,
    };
    // Jobs that became TRANSFERRED just before a stop, set to complete by themselves, and jobs
    // whose Complete the stop cut short (its plan is saved; someone asked for it): completed in
    // the first round.
    let to_complete = jobs
        .values()
        .filter(|j| j.awaits_its_complete())
        .map(|j| j.id)
        .collect();
    let machine = options.machine_registry.as_ref().and_then(|registry| {
        machine_registry(registry, &options.user, &options.data_dir, jobs.len())
    });
    let actor = Actor {
        machine,
        jobs,
        store: saver::Saver::start(store).map_err(|source| {
            EngineError::Store(crate::store::StoreError::Io {
                path: options.data_dir.clone(),
                source,
            })
        })?,
        user: options.user,
        download_limit: bandwidth::Bucket::new(options.config.download_limit),
        upload_limit: bandwidth::Bucket::new(options.config.upload_limit),
        idle_download: bandwidth::Bucket::new(None),
        idle_upload: bandwidth::Bucket::new(None),
        idle_enabled: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
            options.config.idle_bandwidth_for_background,
        )),
        config: options.config,
        clock: options.clock,
        events: events.clone(),
        reports_tx,
        notify_tx,
        workers: HashMap::new(),
        tasks: tokio::task::JoinSet::new(),
        fault_injection: options.fault_injection,
        next_run: 0,
        clients: HashMap::new(),
        host_slots: HashMap::new(),
        answering: false,
        dirty,
        last_flush: Instant::now(),
        modifications: HashMap::new(),
        slice_started: HashMap::new(),
        notify_retry: HashMap::new(),
        network_up: true,
        job_paces: HashMap::new(),
        policy_now: crate::job::PolicyNow::default(),
        policy_deadline: None,
        finished: VecDeque::new(),
        moves: HashMap::new(),
        to_complete,
        history,
    };
    let watch_network = actor.config.watch_network;
    tokio::spawn(idle::run(idle::Wiring {
        download_total: std::sync::Arc::downgrade(&actor.download_limit),
        upload_total: std::sync::Arc::downgrade(&actor.upload_limit),
        download_idle: std::sync::Arc::downgrade(&actor.idle_download),
        upload_idle: std::sync::Arc::downgrade(&actor.idle_upload),
        enabled: actor.idle_enabled.clone(),
        events: events.clone(),
    }));
    let weak = commands_tx.downgrade();
    tokio::spawn(actor.run(commands, reports, notify_exits));
    if watch_network {
        tokio::spawn(network::watch(weak));
    }
    Ok((
        EngineHandle {
            commands: commands_tx,
            events,
        },
        report,
    ))
}

/// The machine registry, if it can be trusted, with this engine's record rewritten from the
/// store (which heals a record a crash left stale). Otherwise the machine limit counts only this
/// engine's jobs, and the log says why.
fn machine_registry(
    options: &api::MachineRegistryOptions,
    user: &crate::platform::User,
    data_dir: &std::path::Path,
    jobs: usize,
) -> Option<(
    crate::store::machine::MachineRegistry,
    crate::store::machine::Recorder,
)> {
    use crate::store::machine::{MachineRegistry, Recorder};
    let registry = MachineRegistry::at(&options.dir, user.uid, data_dir, &options.socket);
    let opened = registry.open().and_then(|()| {
        Recorder::start(registry.clone()).map_err(|e| format!("cannot start its writer: {e}"))
    });
    match opened {
        Ok(recorder) => {
            recorder.publish(jobs, None);
            Some((registry, recorder))
        }
        Err(why) => {
            tracing::warn!(
                "the machine registry is not used, so the jobs-per-machine limit counts only \
                 this user's jobs: {why}"
            );
            None
        }
    }
}
