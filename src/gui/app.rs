//! The eframe application: it holds the latest picture of the jobs, turns clicks and keys into
//! requests to the service, and turns the service's replies and events into rows, toasts,
//! desktop notifications and the tray's look. It never waits on the service.

use super::bridge::{Action, Bridge, Connect, Failure, Reply, Request};
use super::desktop::{Desktop, Note};
use super::dialogs::{Dialog, DownloadForm, UploadForm};
use super::format;
use super::model::{Jobs, Now, ViewSpec};
use super::rules;
use super::settings::{GuiSettings, Theme};
use super::toasts::{Level, ToastAction, Toasts};
use super::tray::{Tray, TrayCommand, TrayView};
use crate::engine::{Clock, EngineEvent};
use crate::job::{ErrorCode, Job, JobId, JobState, NotifyFlags, PropertyChange, Timestamp};
use crate::service::api::Status;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// While a transfer shows live progress the window repaints this often, and no more. Four times
/// a second looks live; each frame of a 1440×860 window costs ~50 ms of CPU where GL is software
/// (llvmpipe: VMs, remote desktops), so 10/s would take half a core there (scripts/bench-gui.sh).
pub const LIVE_REPAINT: Duration = Duration::from_millis(250);
/// With nothing moving, the clocks on screen ("expires in") are refreshed this often.
const IDLE_REPAINT: Duration = Duration::from_secs(30);
/// How long an ordinary toast stays.
const TOAST_SECONDS: f64 = 8.0;

/// The file dialogs, behind a seam so that tests answer them without a desktop portal.
pub trait Pickers: Send {
    /// Opens a dialog of `kind`; the answer goes to `reply` (`None`: the user closed it).
    fn pick(
        &mut self,
        kind: PickKind,
        start: &Path,
        reply: Box<dyn FnOnce(Option<PathBuf>) + Send>,
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickKind {
    /// The destination folder of a new download.
    DownloadFolder,
    /// The default folder in Settings.
    DefaultFolder,
    /// A text file of URLs, one per line.
    UrlList,
    /// The local file of a new upload.
    UploadFile,
}

/// rfd's dialogs (the desktop portal, or zenity), each on a thread of its own so that the
/// window keeps painting while the dialog is open.
pub struct NativePickers;

impl Pickers for NativePickers {
    fn pick(
        &mut self,
        kind: PickKind,
        start: &Path,
        reply: Box<dyn FnOnce(Option<PathBuf>) + Send>,
    ) {
        let start = start.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("ferry-file-dialog".into())
            .spawn(move || {
                let dialog = rfd::FileDialog::new().set_directory(&start);
                let answer = match kind {
                    PickKind::DownloadFolder | PickKind::DefaultFolder => dialog
                        .set_title("Choose the destination folder")
                        .pick_folder(),
                    PickKind::UrlList => dialog
                        .set_title("Import a list of URLs")
                        .add_filter("Text", &["txt", "list", "urls"])
                        .pick_file(),
                    PickKind::UploadFile => {
                        dialog.set_title("Choose the file to upload").pick_file()
                    }
                };
                reply(answer);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot open the file dialog: {e}");
        }
    }
}

pub struct GuiOptions {
    pub connect: Connect,
    /// Wall time for "last activity" and "expires in"; the service's clock in tests.
    pub clock: Arc<dyn Clock>,
    /// Where the GUI settings are kept; `None`: defaults, never saved.
    pub settings_path: Option<PathBuf>,
    /// Tray icon and desktop notifications (off in tests).
    pub system_integration: bool,
    pub pickers: Box<dyn Pickers>,
}

impl GuiOptions {
    /// The real program: the user's service (started if needed), the system clock, native dialogs.
    pub fn desktop() -> GuiOptions {
        GuiOptions {
            connect: Connect::StartIfNeeded,
            clock: Arc::new(crate::engine::SystemClock::default()),
            // Next to the service's config.ron: both are settings a user may edit or back up.
            settings_path: crate::platform::config_path()
                .ok()
                .and_then(|config| Some(config.parent()?.join(GuiSettings::FILE_NAME))),
            system_integration: true,
            pickers: Box::new(NativePickers),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Up,
    Down(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Jobs,
    Stale,
    Settings,
}

/// Asynchronous answers the UI waits for without blocking.
enum Inbound {
    Picked(PickKind, Option<PathBuf>),
    Notification(ToastAction),
    Tray(TrayCommand),
}

pub struct FerryApp {
    pub(super) bridge: Bridge,
    /// Replies taken off the channel by [`FerryApp::wait_for_reply`], handled next frame.
    stashed: Vec<Reply>,
    pub(super) jobs: Jobs,
    pub(super) status: Option<Status>,
    pub(super) connection: Connection,
    pub(super) clock: Arc<dyn Clock>,
    started: Instant,
    pub(super) page: Page,
    pub(super) spec: ViewSpec,
    pub(super) selection: BTreeSet<JobId>,
    /// The row the keyboard is on; Shift+click and Shift+arrow extend from here.
    pub(super) cursor: Option<JobId>,
    pub(super) dialog: Option<Dialog>,
    pub(super) toasts: Toasts,
    pub(super) settings: GuiSettings,
    /// The Settings page's copy, saved only when valid.
    pub(super) settings_draft: GuiSettings,
    pub(super) settings_error: Option<String>,
    settings_path: Option<PathBuf>,
    /// The service's configuration as last read, and the Settings page's copy of it.
    pub(super) service_config: Option<crate::config::Config>,
    pub(super) service_draft: Option<crate::config::Config>,
    /// What the service said about the last save (an error, or fields needing a restart).
    pub(super) service_message: Option<(bool, String)>,
    /// The user agreed that a shorter inactivity timeout cancels the jobs already past it.
    pub(super) cancel_overdue_ok: bool,
    pickers: Box<dyn Pickers>,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound: mpsc::Receiver<Inbound>,
    desktop: Option<Desktop>,
    pub(super) tray: Option<Tray>,
    window_visible: bool,
    quitting: bool,
    /// How often the window is drawn (logged at debug level; scripts/bench-gui.sh reads it).
    frames: FrameRate,
    /// Jobs whose near-timeout warning was shown, with the activity time it was about.
    warned: HashSet<(JobId, Timestamp)>,
    applied_theme: Option<Theme>,
    pub(super) scroll_to_cursor: bool,
}

impl FerryApp {
    pub fn new(cc: &eframe::CreationContext<'_>, options: GuiOptions) -> FerryApp {
        let ctx = cc.egui_ctx.clone();
        let wake = {
            let ctx = ctx.clone();
            move || ctx.request_repaint()
        };
        let bridge = Bridge::start(options.connect, {
            let ctx = ctx.clone();
            move |within| ctx.request_repaint_after(within)
        });
        let (inbound_tx, inbound) = mpsc::channel();
        let (settings, settings_error) = match &options.settings_path {
            Some(path) => GuiSettings::load(path),
            None => (GuiSettings::default(), None),
        };
        let (desktop, tray) = if options.system_integration {
            let tx = inbound_tx.clone();
            let wake_n = wake.clone();
            let desktop = Desktop::start(move |action| {
                let _ = tx.send(Inbound::Notification(action));
                wake_n();
            });
            let (tray_tx, tray_rx) = mpsc::channel();
            let tx = inbound_tx.clone();
            let wake_t = wake.clone();
            // Forward tray commands into the one inbound channel.
            let _ = std::thread::Builder::new()
                .name("ferry-tray-forward".into())
                .spawn(move || {
                    for command in tray_rx {
                        if tx.send(Inbound::Tray(command)).is_err() {
                            break;
                        }
                        wake_t();
                    }
                });
            (Some(desktop), Tray::start(tray_tx, wake))
        } else {
            (None, None)
        };
        let mut app = FerryApp {
            bridge,
            stashed: Vec::new(),
            jobs: Jobs::default(),
            status: None,
            connection: Connection::Connecting,
            clock: options.clock,
            started: Instant::now(),
            page: Page::Jobs,
            spec: ViewSpec::default(),
            selection: BTreeSet::new(),
            cursor: None,
            dialog: None,
            toasts: Toasts::default(),
            settings_draft: settings.clone(),
            settings,
            settings_error: None,
            settings_path: options.settings_path,
            service_config: None,
            service_draft: None,
            service_message: None,
            cancel_overdue_ok: false,
            pickers: options.pickers,
            inbound_tx,
            inbound,
            desktop,
            tray,
            window_visible: true,
            quitting: false,
            frames: FrameRate::default(),
            warned: HashSet::new(),
            applied_theme: None,
            scroll_to_cursor: false,
        };
        app.spec.stale_after = app.stale_after();
        if let Some(message) = settings_error {
            app.toast(Level::Warning, "Settings not loaded", message, vec![], None);
        }
        app
    }

    /// Blocks until the service bridge sends something, or `timeout` passes; returns whether
    /// something came. For tests: they wait for the service's answer, not for a fixed time.
    pub fn wait_for_reply(&mut self, timeout: Duration) -> bool {
        match self.bridge.replies.recv_timeout(timeout) {
            Ok(reply) => {
                self.stashed.push(reply);
                true
            }
            Err(_) => false,
        }
    }

    pub fn page(&self) -> Page {
        self.page
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The GUI's copy of a job, as last reported by the service.
    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id).map(|e| &e.job)
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Replaces the jobs without a service (benchmarks of the table with many jobs).
    pub fn load_jobs(&mut self, jobs: Vec<Job>) {
        let mono = self.mono();
        self.jobs.replace_all(jobs, mono);
    }

    /// One newer job without a service (benchmarks).
    pub fn load_jobs_update(&mut self, job: Job) {
        let mono = self.mono();
        self.jobs.update(job, mono);
    }

    pub fn toast_titles(&self) -> Vec<String> {
        self.toasts
            .items()
            .iter()
            .map(|t| t.title.clone())
            .collect()
    }

    pub(super) fn mono(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub(super) fn now(&self) -> Now {
        Now {
            wall: self.clock.now(),
            mono: self.mono(),
            inactivity_timeout: self.inactivity_timeout(),
        }
    }

    fn inactivity_timeout(&self) -> Duration {
        Duration::from_secs(
            self.status
                .as_ref()
                .map(|s| s.job_inactivity_timeout_secs)
                .unwrap_or(90 * 86_400),
        )
    }

    fn stale_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.settings.stale_after_days.max(1)) * 86_400)
    }

    pub(super) fn selected_jobs(&self) -> Vec<&Job> {
        self.selection
            .iter()
            .filter_map(|id| self.job(id))
            .collect()
    }

    pub(super) fn name_of(&self, id: JobId) -> String {
        self.job(&id)
            .map(|j| j.display_name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    pub(super) fn toast(
        &mut self,
        level: Level,
        title: impl Into<String>,
        body: impl Into<String>,
        actions: Vec<ToastAction>,
        seconds: Option<f64>,
    ) {
        let now = self.mono();
        self.toasts.push(level, title, body, actions, seconds, now);
    }

    /// A toast, and the same as a desktop notification when the settings (and, for job events,
    /// the job's notify flags) allow.
    fn announce(
        &mut self,
        level: Level,
        title: String,
        body: String,
        actions: Vec<ToastAction>,
        flag: Option<(JobId, u32)>,
    ) {
        let seconds = if actions.is_empty() {
            Some(TOAST_SECONDS)
        } else {
            None
        };
        let wanted = match flag {
            None => true,
            Some((id, flag)) => self.job(&id).is_none_or(|j| {
                !j.notify_flags.wants(NotifyFlags::DISABLE) && j.notify_flags.wants(flag)
            }),
        };
        if let (Some(desktop), true, true) = (&self.desktop, self.settings.notifications, wanted) {
            desktop.notify(Note {
                title: title.clone(),
                body: body.clone(),
                actions: actions.clone(),
                urgent: level == Level::Error,
            });
        }
        self.toast(level, title, body, actions, seconds);
    }

    // ---- requests ------------------------------------------------------------------------

    pub(super) fn act(&mut self, action: Action, ids: Vec<JobId>) {
        if !ids.is_empty() {
            self.bridge.send(Request::Act(action, ids));
        }
    }

    /// Complete the selection, through the partial-complete confirmation when files would be lost.
    pub(super) fn request_complete(&mut self) {
        let jobs = self.selected_jobs();
        if !rules::complete(&jobs).is_enabled() {
            return;
        }
        let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
        match rules::complete_confirmation(&jobs) {
            Some(text) => {
                self.dialog = Some(Dialog::Confirm {
                    action: Action::Complete,
                    ids,
                    text,
                })
            }
            None => self.act(Action::Complete, ids),
        }
    }

    /// Cancel the selection, always through a confirmation that says what is deleted.
    pub(super) fn request_cancel(&mut self) {
        let jobs = self.selected_jobs();
        if !rules::cancel(&jobs).is_enabled() {
            return;
        }
        let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
        let text = rules::cancel_confirmation(&jobs);
        self.dialog = Some(Dialog::Confirm {
            action: Action::Cancel,
            ids,
            text,
        });
    }

    /// Space: resume when every selected job is suspended (or waiting in ERROR), else suspend.
    pub(super) fn toggle_suspend(&mut self) {
        let jobs = self.selected_jobs();
        let resume = !jobs.is_empty()
            && jobs
                .iter()
                .all(|j| matches!(j.state, JobState::Suspended | JobState::Error));
        let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
        if resume && rules::resume(&jobs).is_enabled() {
            self.act(Action::Resume, ids);
        } else if !resume && rules::suspend(&jobs).is_enabled() {
            self.act(Action::Suspend, ids);
        }
    }

    pub(super) fn set_priority(&mut self, priority: crate::job::Priority) {
        let ids: Vec<JobId> = self.selection.iter().copied().collect();
        if !ids.is_empty() {
            self.bridge
                .send(Request::Set(ids, PropertyChange::Priority(priority)));
        }
    }

    pub(super) fn open_new_download(&mut self, urls: String) {
        self.dialog = Some(Dialog::NewDownload(DownloadForm::new(
            urls,
            &self.settings.default_folder,
        )));
    }

    pub(super) fn open_new_upload(&mut self, local: Option<PathBuf>) {
        self.dialog = Some(Dialog::NewUpload(UploadForm::new(local)));
    }

    pub(super) fn pick(&mut self, kind: PickKind, start: &Path, ctx: &egui::Context) {
        let tx = self.inbound_tx.clone();
        let ctx = ctx.clone();
        self.pickers.pick(
            kind,
            start,
            Box::new(move |answer| {
                let _ = tx.send(Inbound::Picked(kind, answer));
                ctx.request_repaint();
            }),
        );
    }

    pub(super) fn send(&self, request: Request) {
        self.bridge.send(request);
    }

    /// Jobs that a job inactivity timeout of `secs` would cancel at once.
    pub(super) fn overdue_with(&self, secs: u64) -> usize {
        let now = self.clock.now();
        self.jobs
            .iter()
            .filter(|e| !e.job.state.is_final())
            .filter(|e| e.job.inactivity_deadline(Duration::from_secs(secs)) <= now)
            .count()
    }

    pub(super) fn save_service_config(&mut self) {
        let Some(draft) = self.service_draft.clone() else {
            return;
        };
        if let Err(e) = draft.validate() {
            self.service_message = Some((false, e));
            return;
        }
        self.service_message = None;
        self.send(Request::SaveConfig(Box::new(draft)));
    }

    pub(super) fn save_settings(&mut self) {
        if let Err(e) = self.settings_draft.validate() {
            self.settings_error = Some(e);
            return;
        }
        if let Some(path) = &self.settings_path
            && let Err(e) = self.settings_draft.save(path)
        {
            self.settings_error = Some(e);
            return;
        }
        self.settings_error = None;
        self.settings = self.settings_draft.clone();
        self.spec.stale_after = self.stale_after();
        self.toast(Level::Success, "Settings saved", "", vec![], Some(3.0));
    }

    // ---- replies and events --------------------------------------------------------------

    fn handle_reply(&mut self, reply: Reply) {
        let mono = self.mono();
        match reply {
            Reply::Connected(status) => {
                self.connection = Connection::Up;
                self.status = Some(*status);
            }
            Reply::Disconnected(why) => self.connection = Connection::Down(why),
            Reply::Jobs(jobs) => {
                self.jobs.replace_all(jobs, mono);
                let known: Vec<JobId> = self.selection.iter().copied().collect();
                for id in known {
                    if self.jobs.get(&id).is_none() {
                        self.selection.remove(&id);
                    }
                }
                self.warn_near_timeout_all();
            }
            Reply::Job(job) => {
                let id = job.id;
                let warned = job.inactivity_warned && !job.state.is_final();
                if job.state.is_final() {
                    self.toasts.forget_job(id);
                }
                self.jobs.update(*job, mono);
                if warned {
                    self.warn_near_timeout(id);
                }
            }
            Reply::Gone(id) => {
                self.jobs.remove(id);
                self.selection.remove(&id);
                self.toasts.forget_job(id);
            }
            Reply::Event(event) => self.handle_event(event),
            Reply::Done { action, results } => self.handle_done(action, results),
            Reply::Created(result) => self.handle_created(result),
            Reply::Config(result) => match result {
                Ok(config) => {
                    self.service_config = Some((*config).clone());
                    self.service_draft = Some(*config);
                }
                Err(failure) => self.service_message = Some((false, failure.text)),
            },
            Reply::ConfigSaved(result) => match result {
                Ok(saved) => {
                    let text = if saved.restart_needed.is_empty() {
                        "Saved and in force.".to_string()
                    } else {
                        format!(
                            "Saved. {} take(s) effect when the service starts again.",
                            saved.restart_needed.join(", ")
                        )
                    };
                    self.service_message = Some((true, text));
                    self.service_config = Some(saved.config.clone());
                    self.service_draft = Some(saved.config);
                    self.cancel_overdue_ok = false;
                }
                Err(failure) => self.service_message = Some((false, failure.text)),
            },
        }
    }

    fn handle_event(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::InactivityWarning { job, .. } => self.warn_near_timeout(job),
            EngineEvent::InactivityCancelled { job } => {
                self.toasts.forget_job(job);
                let days = self.inactivity_timeout().as_secs() / 86_400;
                self.announce(
                    Level::Error,
                    format!("“{}” was cancelled", self.name_of(job)),
                    format!(
                        "Nothing happened to it for {}: the inactivity timeout cancelled it and \
                         deleted its temporary files.",
                        if days > 0 {
                            format!("{days} days")
                        } else {
                            format::span(self.inactivity_timeout())
                        }
                    ),
                    vec![],
                    None,
                );
            }
            EngineEvent::QuotaExceeded { code, message } => self.quota_toast(code, &message),
            EngineEvent::JobTransferred { job } => {
                let mut actions = vec![];
                if self
                    .job(&job)
                    .is_some_and(|j| crate::job::check_complete(j).is_ok())
                {
                    actions.push(ToastAction::Complete(job));
                }
                self.announce(
                    Level::Success,
                    format!("“{}” is transferred", self.name_of(job)),
                    "Complete it to move its files to their names.".into(),
                    actions,
                    Some((job, NotifyFlags::JOB_TRANSFERRED)),
                );
            }
            EngineEvent::JobError { job, error } => {
                let file = error
                    .file
                    .and_then(|i| self.job(&job).and_then(|j| j.files.get(i)))
                    .map(|f| format!("\nFile: {}", f.remote_url))
                    .unwrap_or_default();
                self.announce(
                    Level::Error,
                    format!("“{}” failed", self.name_of(job)),
                    format!(
                        "{} {} ({}): {}{file}\n{}",
                        error.code.name(),
                        error.code.hresult_text(),
                        error.context.name(),
                        if error.description.is_empty() {
                            error.code.advice()
                        } else {
                            error.description.clone()
                        },
                        error.code.advice()
                    ),
                    vec![],
                    Some((job, NotifyFlags::JOB_ERROR)),
                );
            }
            _ => {}
        }
    }

    fn quota_toast(&mut self, code: ErrorCode, message: &str) {
        self.announce(
            Level::Error,
            format!("Quota reached: {} {}", code.name(), code.hresult_text()),
            format!("{message}\nThe Stale view lists the jobs waiting for you."),
            vec![ToastAction::OpenStale],
            None,
        );
    }

    fn warn_near_timeout_all(&mut self) {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|e| e.job.inactivity_warned && !e.job.state.is_final())
            .map(|e| e.job.id)
            .collect();
        for id in ids {
            self.warn_near_timeout(id);
        }
    }

    /// The near-timeout warning, once per job and idle period.
    fn warn_near_timeout(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id).map(|e| &e.job) else {
            return;
        };
        if job.state.is_final() || !self.warned.insert((id, job.times.modified)) {
            return;
        }
        let now = self.now();
        let deadline = job.inactivity_deadline(now.inactivity_timeout);
        let left = format::between(now.wall, deadline);
        let mut actions = vec![ToastAction::Keep(id)];
        if crate::job::check_complete(job).is_ok() {
            actions.push(ToastAction::Complete(id));
        }
        actions.push(ToastAction::Cancel(id));
        let title = format!("“{}” expires in {}", job.display_name, format::span(left));
        let body = format!(
            "No activity since {}. Ferry cancels it at {} unless something happens: Keep counts \
             as activity.",
            job.times.modified.format("%Y-%m-%d %H:%M"),
            deadline.format("%Y-%m-%d %H:%M UTC"),
        );
        self.announce(Level::Warning, title, body, actions, None);
    }

    fn handle_done(
        &mut self,
        action: &'static str,
        results: Vec<(JobId, Result<Option<String>, Failure>)>,
    ) {
        let mut succeeded = Vec::new();
        for (id, result) in results {
            match result {
                Ok(None) => succeeded.push(id),
                Ok(Some(info)) => {
                    let title = format!("{action}: “{}”", self.name_of(id));
                    self.toast(Level::Warning, title, info, vec![], Some(TOAST_SECONDS));
                }
                Err(failure) => {
                    if let Some(code) = failure.code.filter(|c| c.is_quota()) {
                        self.quota_toast(code, &failure.text);
                    } else {
                        let title = format!("{action} failed: “{}”", self.name_of(id));
                        self.toast(
                            Level::Error,
                            title,
                            failure.text,
                            vec![],
                            Some(TOAST_SECONDS),
                        );
                    }
                }
            }
        }
        let done = match action {
            "Complete" => "completed: the files are at their names",
            "Cancel" => "cancelled",
            _ => return,
        };
        match succeeded.as_slice() {
            [] => {}
            [one] => {
                let title = format!("“{}” {done}", self.name_of(*one));
                self.toast(Level::Success, title, "", vec![], Some(TOAST_SECONDS));
            }
            many => {
                let title = format!("{} jobs {done}", many.len());
                self.toast(Level::Success, title, "", vec![], Some(TOAST_SECONDS));
            }
        }
    }

    fn handle_created(&mut self, result: Result<JobId, Failure>) {
        match result {
            Ok(id) => {
                self.dialog = None;
                self.selection = BTreeSet::from([id]);
                self.cursor = Some(id);
                self.scroll_to_cursor = true;
                self.page = Page::Jobs;
            }
            Err(failure) => {
                if let Some(code) = failure.code.filter(|c| c.is_quota()) {
                    self.quota_toast(code, &failure.text);
                }
                if let Some(dialog) = &mut self.dialog {
                    dialog.failed(failure.text);
                }
            }
        }
    }

    fn handle_inbound(&mut self, inbound: Inbound, ctx: &egui::Context) {
        match inbound {
            Inbound::Picked(kind, answer) => {
                let Some(path) = answer else { return };
                match kind {
                    PickKind::DefaultFolder => self.settings_draft.default_folder = path,
                    _ => {
                        if let Some(dialog) = &mut self.dialog {
                            dialog.picked(kind, path);
                        }
                    }
                }
            }
            Inbound::Notification(action) => self.toast_action(action),
            Inbound::Tray(command) => self.tray_command(command, ctx),
        }
    }

    pub(super) fn toast_action(&mut self, action: ToastAction) {
        match action {
            ToastAction::Keep(id) => self.send(Request::Set(vec![id], PropertyChange::Touch)),
            ToastAction::Complete(id) => {
                self.selection = BTreeSet::from([id]);
                self.request_complete();
            }
            ToastAction::Cancel(id) => {
                self.selection = BTreeSet::from([id]);
                self.request_cancel();
            }
            ToastAction::OpenStale => {
                self.page = Page::Stale;
                self.selection.clear();
            }
        }
    }

    fn tray_command(&mut self, command: TrayCommand, ctx: &egui::Context) {
        tracing::debug!("tray command: {command:?}");
        match command {
            TrayCommand::ToggleWindow => self.set_window_visible(!self.window_visible, ctx),
            TrayCommand::SuspendAll | TrayCommand::ResumeAll => {
                let resume = command == TrayCommand::ResumeAll;
                let ids: Vec<JobId> = self
                    .jobs
                    .iter()
                    .filter(|e| !e.job.state.is_final() && !e.job.files.is_empty())
                    .filter(|e| {
                        if resume {
                            e.job.state == JobState::Suspended
                        } else {
                            e.job.state != JobState::Suspended
                        }
                    })
                    .map(|e| e.job.id)
                    .collect();
                let action = if resume {
                    Action::Resume
                } else {
                    Action::Suspend
                };
                self.act(action, ids);
            }
            TrayCommand::ShowJob(id) => {
                self.page = Page::Jobs;
                self.selection = BTreeSet::from([id]);
                self.cursor = Some(id);
                self.scroll_to_cursor = true;
                self.set_window_visible(true, ctx);
            }
            TrayCommand::Quit => {
                self.quitting = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            // A hidden window with no tray to bring it back would be lost to the user.
            TrayCommand::HostChanged(false) if !self.window_visible => {
                self.set_window_visible(true, ctx)
            }
            TrayCommand::HostChanged(_) => {}
        }
    }

    fn set_window_visible(&mut self, visible: bool, ctx: &egui::Context) {
        self.window_visible = visible;
        ctx.send_viewport_cmd(egui::ViewportCommand::Visible(visible));
        if visible {
            ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
        }
    }

    fn tray_view(&self) -> TrayView {
        super::tray::summarize(self.jobs.iter().map(|e| &e.job), self.window_visible)
    }

    fn apply_theme(&mut self, ctx: &egui::Context) {
        if self.applied_theme == Some(self.settings.theme) {
            return;
        }
        ctx.set_theme(match self.settings.theme {
            Theme::System => egui::ThemePreference::System,
            Theme::Light => egui::ThemePreference::Light,
            Theme::Dark => egui::ThemePreference::Dark,
        });
        self.applied_theme = Some(self.settings.theme);
    }
}

impl eframe::App for FerryApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let mut changed = false;
        for reply in std::mem::take(&mut self.stashed) {
            self.handle_reply(reply);
            changed = true;
        }
        while let Ok(reply) = self.bridge.replies.try_recv() {
            self.handle_reply(reply);
            changed = true;
        }
        let was_visible = self.window_visible;
        while let Ok(inbound) = self.inbound.try_recv() {
            self.handle_inbound(inbound, ctx);
        }
        if ctx.input(|i| i.viewport().close_requested())
            && !self.quitting
            && self.settings.close_to_tray
            && self.tray.as_ref().is_some_and(Tray::has_host)
        {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.set_window_visible(false, ctx);
        }
        // Also while the window is hidden: `logic` runs then, `ui` does not.
        if (changed || was_visible != self.window_visible) && self.tray.is_some() {
            let view = self.tray_view();
            if let Some(tray) = &mut self.tray {
                tray.show(view);
            }
        }
        self.apply_theme(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
        self.frames.count(ui.ctx().cumulative_pass_nr());
        let live = self.jobs.iter().any(|e| e.job.state.is_running());
        ui.ctx()
            .request_repaint_after(if live { LIVE_REPAINT } else { IDLE_REPAINT });
    }
}

/// Counts frames and logs the rate every 10 s, at debug level.
struct FrameRate {
    since: Instant,
    first_pass: u64,
}

impl Default for FrameRate {
    fn default() -> FrameRate {
        FrameRate {
            since: Instant::now(),
            first_pass: 0,
        }
    }
}

impl FrameRate {
    const PERIOD: Duration = Duration::from_secs(10);

    fn count(&mut self, pass: u64) {
        let elapsed = self.since.elapsed();
        if elapsed >= Self::PERIOD {
            let passes = pass.saturating_sub(self.first_pass);
            tracing::debug!(
                "frames: {passes} in {:.1} s ({:.1}/s)",
                elapsed.as_secs_f64(),
                passes as f64 / elapsed.as_secs_f64()
            );
            self.since = Instant::now();
            self.first_pass = pass;
        }
    }
}
