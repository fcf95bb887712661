//! The eframe application: it holds the latest picture of the jobs, turns clicks and keys into
//! requests to the service, and turns the service's replies and events into rows, toasts,
//! desktop notifications and the tray's look. It never waits on the service.

use super::bridge::{Action, Bridge, Connect, Failure, Reply, Request};
use super::desktop::Desktop;
use super::dialogs::{Dialog, DownloadForm, UploadForm};
use super::format;
use super::jobs_view::{Command, JobsView};
use super::model::{Jobs, Now};
use super::notices::{self, DesktopCommand, GroupKey, Member, Notifier};
use super::rules::{self, Availability};
use super::saver::Saver;
use super::settings::{GuiSettings, Layout, Theme};
use super::toasts::{Clicked, Level, ToastAction, Toasts};
use super::tray::{Tray, TrayCommand, TrayView};
use crate::engine::{Clock, EngineEvent};
use crate::job::{Job, JobId, JobState, NotifyFlags, PropertyChange, Timestamp};
use crate::service::api::Status;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// While a transfer shows live progress the window repaints this often, and no more. Four times
/// a second looks live; each frame of a 1440×860 window costs ~50 ms of CPU where GL is software
/// (llvmpipe: VMs, remote desktops), so 10/s would take half a core there (scripts/bench-gui.sh).
pub const LIVE_REPAINT: Duration = Duration::from_millis(250);
/// With nothing moving, the clocks on screen ("expires in") are refreshed this often.
const IDLE_REPAINT: Duration = Duration::from_secs(30);
/// The layout is saved once it has not changed for this long.
const LAYOUT_SAVE_DELAY: Duration = Duration::from_secs(1);
/// How long an ordinary toast stays.
const TOAST_SECONDS: f64 = 8.0;

/// The file dialogs, behind a seam so that tests answer them without a desktop portal.
pub trait Pickers: Send {
    /// Opens a dialog of `kind`; the answer goes to `reply` (`None`: the user closed it).
    /// Returns `false`, without calling `reply`, when this desktop has no dialog to open: the
    /// window then shows its own.
    fn pick(
        &mut self,
        kind: PickKind,
        start: &Path,
        reply: Box<dyn FnOnce(Option<PathBuf>) + Send>,
    ) -> bool;
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

impl PickKind {
    /// A folder is chosen (else a file).
    pub fn wants_folder(self) -> bool {
        matches!(self, PickKind::DownloadFolder | PickKind::DefaultFolder)
    }

    /// The dialog's title, the desktop's or Ferry's own.
    pub fn title(self) -> &'static str {
        match self {
            PickKind::DownloadFolder | PickKind::DefaultFolder => "Choose the destination folder",
            PickKind::UrlList => "Import a list of URLs",
            PickKind::UploadFile => "Choose the file to upload",
        }
    }
}

/// rfd's dialogs (the desktop portal, or zenity), each on a thread of its own so that the
/// window keeps painting while the dialog is open.
pub struct NativePickers {
    /// The desktop had a dialog when last looked up on a thread (the lookup is a D-Bus round
    /// trip, kept out of the click's frame while the answer is yes).
    available: Arc<std::sync::atomic::AtomicBool>,
}

impl NativePickers {
    /// Starts looking up whether the desktop has file dialogs.
    pub fn new() -> NativePickers {
        let pickers = NativePickers {
            available: Arc::default(),
        };
        pickers.look_up();
        pickers
    }

    fn look_up(&self) {
        let available = Arc::clone(&self.available);
        let _ = std::thread::Builder::new()
            .name("ferry-portal-check".into())
            .spawn(move || {
                available.store(
                    native_dialogs_available(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            });
    }
}

impl Default for NativePickers {
    fn default() -> Self {
        NativePickers::new()
    }
}

/// Whether rfd has a dialog to show: the desktop portal (running or D-Bus-activatable) or
/// zenity. Without either rfd returns "closed" at once, and Browse… would seem to do nothing.
fn native_dialogs_available() -> bool {
    let zenity = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("zenity").is_file()));
    zenity || portal_on_session_bus()
}

fn portal_on_session_bus() -> bool {
    const PORTAL: &str = "org.freedesktop.portal.Desktop";
    let Ok(connection) = zbus::blocking::Connection::session() else {
        return false;
    };
    ["ListNames", "ListActivatableNames"].iter().any(|method| {
        connection
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                *method,
                &(),
            )
            .ok()
            .and_then(|reply| reply.body().deserialize::<Vec<String>>().ok())
            .is_some_and(|names| names.iter().any(|n| n == PORTAL))
    })
}

impl Pickers for NativePickers {
    fn pick(
        &mut self,
        kind: PickKind,
        start: &Path,
        reply: Box<dyn FnOnce(Option<PathBuf>) + Send>,
    ) -> bool {
        // A dialog known to be there is trusted (looked up again on a thread after each
        // click); "none" or "not known yet" is looked up now, so that a portal started since
        // is used at once — that round trip is only paid on desktops without one.
        let available =
            self.available.load(std::sync::atomic::Ordering::Relaxed) || native_dialogs_available();
        self.look_up();
        if !available {
            tracing::info!("no desktop portal and no zenity: using Ferry's own file dialog");
            return false;
        }
        let start = start.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("ferry-file-dialog".into())
            .spawn(move || {
                let dialog = rfd::FileDialog::new()
                    .set_directory(&start)
                    .set_title(kind.title());
                let answer = match kind {
                    _ if kind.wants_folder() => dialog.pick_folder(),
                    PickKind::UrlList => dialog
                        .add_filter("Text", &["txt", "list", "urls"])
                        .pick_file(),
                    _ => dialog.pick_file(),
                };
                reply(answer);
            });
        match spawned {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("cannot open the desktop's file dialog ({e}): using Ferry's own");
                false
            }
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
    /// Later launches asking this window to come forward (single instance).
    pub activations: Option<mpsc::Receiver<super::instance::Activation>>,
    /// Filled with the window's context once it exists, so other threads can wake it.
    pub wake: Arc<std::sync::OnceLock<egui::Context>>,
    /// URLs to open in a new download when the window starts.
    pub urls: Vec<String>,
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
            pickers: Box::new(NativePickers::new()),
            activations: None,
            wake: Arc::default(),
            urls: Vec::new(),
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
    /// The finished jobs, kept by the service across restarts.
    History,
    Settings,
}

/// Asynchronous answers the UI waits for without blocking.
enum Inbound {
    Picked(PickKind, Option<PathBuf>),
    Notification(ToastAction),
    Tray(TrayCommand),
    /// The notification server's id for a group's notification (`None`: it closed).
    NotificationId(GroupKey, Option<u32>),
    /// Another launch asked this window to come forward.
    Activate(super::instance::Activation),
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
    /// The Jobs and Stale pages' table: filter, sort, selection, keyboard cursor.
    pub(super) jobs_view: JobsView,
    /// Window size, panel width, sort and filter, saved in gui.ron when they change.
    pub(super) layout: Layout,
    /// The layout changed at this time (the injected clock) and is not saved yet.
    layout_dirty_since: Option<Timestamp>,
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
    /// A save of the config from the status bar's speed limit is on its way: its answer changes
    /// only that field of the Settings page's draft, not the user's other edits.
    pub(super) quick_limit_saving: bool,
    /// Background downloads and uploads give way to other traffic (the service's last word).
    pub(super) yielding: (bool, bool),
    pickers: Box<dyn Pickers>,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound: mpsc::Receiver<Inbound>,
    desktop: Option<Desktop>,
    pub(super) tray: Option<Tray>,
    window_visible: bool,
    quitting: bool,
    /// How often the window is drawn (logged at debug level; scripts/bench-gui.sh reads it).
    frames: FrameRate,
    /// The grouped job notices behind the toasts and the desktop notifications.
    pub(super) notifier: Notifier,
    /// The service's first listing came: until then no group is known to be resolved.
    listed: bool,
    /// Where the notifier's memory of sent warnings is kept (beside gui.ron).
    notified_path: Option<PathBuf>,
    /// The notification centre is open.
    pub(super) centre_open: bool,
    /// The service's history of finished jobs, as last read (`Err`: why it could not be).
    pub(super) history: Option<Result<Vec<crate::store::HistoryEntry>, String>>,
    /// A job finished since the history was read: read it again while the page shows.
    pub(super) history_stale: bool,
    /// URLs handed over by another launch while a dialog was open.
    pending_urls: Option<String>,
    /// Text to put on the clipboard at the next frame (Copy URL).
    pub(super) copy_text: Option<String>,
    /// Ferry's own file dialog, open where the desktop has none.
    pub(super) builtin_picker: Option<super::dialogs::BuiltinPicker>,
    applied_theme: Option<Theme>,
    /// Writes gui.ron and gui-notified.ron off the frame.
    saver: Saver,
}

impl FerryApp {
    pub fn new(cc: &eframe::CreationContext<'_>, options: GuiOptions) -> FerryApp {
        let ctx = cc.egui_ctx.clone();
        let _ = options.wake.set(ctx.clone());
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
        let notified_path = options
            .settings_path
            .as_deref()
            .map(|p| p.with_file_name(NOTIFIED_FILE));
        let session = std::env::var("DBUS_SESSION_BUS_ADDRESS").unwrap_or_default();
        let memory = notified_path
            .as_deref()
            .map(load_notified)
            .unwrap_or_default()
            .for_session(&session);
        let (desktop, tray) = if options.system_integration {
            let (tx, tx_ids) = (inbound_tx.clone(), inbound_tx.clone());
            let (wake_n, wake_ids) = (wake.clone(), wake.clone());
            let desktop = Desktop::start(
                move |action| {
                    let _ = tx.send(Inbound::Notification(action));
                    wake_n();
                },
                memory.shown.clone(),
                move |key, id| {
                    let _ = tx_ids.send(Inbound::NotificationId(key, id));
                    wake_ids();
                },
            );
            let (tray_tx, tray_rx) = mpsc::channel();
            forward(
                "ferry-tray-forward",
                tray_rx,
                inbound_tx.clone(),
                Inbound::Tray,
                {
                    let wake = wake.clone();
                    move || wake()
                },
            );
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
            jobs_view: JobsView::default(),
            saver: Saver::spawn(),
            layout: settings.layout.clone(),
            layout_dirty_since: None,
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
            quick_limit_saving: false,
            yielding: (false, false),
            pickers: options.pickers,
            inbound_tx,
            inbound,
            desktop,
            tray,
            window_visible: true,
            quitting: false,
            frames: FrameRate::default(),
            notifier: Notifier::with_memory(memory),
            listed: false,
            notified_path,
            centre_open: false,
            builtin_picker: None,
            copy_text: None,
            pending_urls: None,
            history: None,
            history_stale: false,
            applied_theme: None,
        };
        let stale_after = app.stale_after();
        let spec = &mut app.jobs_view.spec;
        spec.stale_after = stale_after;
        spec.sort = app.layout.sort;
        spec.ascending = app.layout.ascending;
        spec.text = app.layout.filter.clone();
        spec.states = app.layout.states;
        if let Some(message) = settings_error {
            app.toast(Level::Warning, "Settings not loaded", message, vec![], None);
        }
        if let Some(activations) = options.activations {
            let ctx = ctx.clone();
            forward(
                "ferry-activations",
                activations,
                app.inbound_tx.clone(),
                Inbound::Activate,
                move || ctx.request_repaint(),
            );
        }
        if !options.urls.is_empty() {
            app.open_new_download(options.urls.join("\n"));
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

    /// The history of finished jobs as the window last read it.
    pub fn history(&self) -> Option<&[crate::store::HistoryEntry]> {
        self.history
            .as_ref()
            .and_then(|h| h.as_ref().ok())
            .map(Vec::as_slice)
    }

    /// The window's layout as it will be saved (size, panel width, sort, filter).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The ids of the selected jobs.
    pub fn selection(&self) -> Vec<JobId> {
        self.jobs_view.selection().iter().copied().collect()
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
            limits: self
                .service_config
                .as_ref()
                .map(|c| super::model::GlobalLimits {
                    download: c.download_limit,
                    upload: c.upload_limit,
                    schedule: c.schedule_at(self.clock.now()).limits,
                    yielding_download: self.yielding.0,
                    yielding_upload: self.yielding.1,
                })
                .unwrap_or_default(),
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

    fn jobs_of(&self, ids: &[JobId]) -> Vec<&Job> {
        ids.iter().filter_map(|id| self.job(id)).collect()
    }

    pub(super) fn name_of(&self, id: JobId) -> String {
        self.job(&id)
            .map(notices::job_label)
            .unwrap_or_else(|| notices::short_id(id))
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
        let wall = self.clock.now();
        self.toasts
            .push(level, title, body, actions, seconds, now, wall);
    }

    /// Whether the job asks for notices of `flag` (its BITS notify flags).
    fn job_wants(&self, id: JobId, flag: u32) -> bool {
        self.job(&id).is_none_or(|j| {
            !j.notify_flags.wants(NotifyFlags::DISABLE) && j.notify_flags.wants(flag)
        })
    }

    fn member(&self, id: JobId, detail: String) -> Member {
        let job = self.job(&id);
        Member {
            name: self.name_of(id),
            job_type: job
                .map(|j| j.job_type)
                .unwrap_or(crate::job::JobType::Download),
            deadline: job.map(|j| j.inactivity_deadline(self.inactivity_timeout())),
            detail,
            can_complete: job.is_some_and(|j| crate::job::check_complete(j).is_ok()),
        }
    }

    /// Puts a job in a notice group and writes the event in the notification centre.
    fn notice(&mut self, key: GroupKey, id: JobId, detail: String) {
        let member = self.member(id, detail);
        let (title, body) = match key {
            GroupKey::Expiring => (
                format!("“{}” expires soon", member.name),
                format!(
                    "Cancelled at {} unless something happens.",
                    member
                        .deadline
                        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_default()
                ),
            ),
            GroupKey::Cancelled => (
                format!("“{}” was cancelled by the inactivity timeout", member.name),
                String::new(),
            ),
            GroupKey::Transferred => (format!("“{}” is transferred", member.name), String::new()),
            GroupKey::Failed => (format!("“{}” failed", member.name), member.detail.clone()),
            GroupKey::Quota => ("Quota reached".into(), member.detail.clone()),
            GroupKey::Completed => (
                format!("“{}” is downloaded", member.name),
                member.detail.clone(),
            ),
            GroupKey::CompleteFailed => (
                format!("“{}” could not be completed", member.name),
                member.detail.clone(),
            ),
        };
        let wall = self.clock.now();
        self.toasts.record(wall, key.level(), &title, &body);
        let mono = self.mono();
        self.notifier.add(key, id, member, mono);
    }

    /// Keeps the notice groups true to the job as the service last reported it: a job leaves
    /// the expiry warning when kept, the error notice when it runs again, every notice when it
    /// ends; a job the service warns about joins the warning (also the ones listed at start).
    fn sync_notices(&mut self, id: JobId) {
        let Some(job) = self.job(&id) else {
            self.notifier.resolve_everywhere(id);
            return;
        };
        if job.state.is_final() {
            self.notifier.resolve_everywhere(id);
            self.toasts.forget_job(id);
            return;
        }
        let (warned, state) = (job.inactivity_warned, job.state);
        if !warned {
            self.notifier.resolve(GroupKey::Expiring, id);
        } else if !self.notifier.is_member(GroupKey::Expiring, id) {
            self.notice(GroupKey::Expiring, id, String::new());
        }
        if !matches!(state, JobState::Error | JobState::TransientError) {
            self.notifier.resolve(GroupKey::Failed, id);
        }
        if state != JobState::Transferred {
            self.notifier.resolve(GroupKey::Transferred, id);
            self.notifier.resolve(GroupKey::CompleteFailed, id);
        }
    }

    /// Sends the desktop notifications that are due, saves the memory of sent warnings, and
    /// asks to be called again when the next one is due. Runs in `logic`, also while hidden.
    fn poll_notices(&mut self, ctx: &egui::Context) {
        if !self.listed {
            return;
        }
        let (commands, next) = self.notifier.poll(self.mono(), self.clock.now());
        if let Some(desktop) = &self.desktop {
            for command in commands {
                if self.settings.notifications || matches!(command, DesktopCommand::Close(_)) {
                    desktop.send(command);
                }
            }
        }
        if let Some(at) = next {
            ctx.request_repaint_after(Duration::from_secs_f64((at - self.mono()).max(0.05)));
        }
        if let Some(memory) = self.notifier.take_memory_change()
            && let Some(path) = &self.notified_path
        {
            match ron::to_string(memory) {
                Ok(text) => self.saver.save(path.clone(), text.into_bytes()),
                Err(e) => tracing::warn!("cannot save {}: {e}", path.display()),
            }
        }
    }

    /// The grouped notices as toasts, redrawn from the notifier (live countdowns).
    pub(super) fn group_toasts(&mut self, ctx: &egui::Context) -> Vec<(GroupKey, usize)> {
        // "Downloaded" fades like an ordinary toast; the other notices wait for the user.
        if let Some(at) = self
            .notifier
            .fade(GroupKey::Completed, self.mono(), TOAST_SECONDS)
        {
            ctx.request_repaint_after(Duration::from_secs_f64((at - self.mono()).max(0.05)));
        }
        let wall = self.clock.now();
        let contents: Vec<(notices::Content, usize)> = self
            .notifier
            .contents(wall)
            .into_iter()
            .map(|c| {
                let size = self.notifier.members(c.key).count();
                (c, size)
            })
            .collect();
        self.toasts.sync_groups(&contents);
        contents.into_iter().map(|(c, n)| (c.key, n)).collect()
    }

    pub(super) fn toast_clicked(&mut self, clicked: Clicked) {
        match clicked {
            Clicked::Action(action) => self.toast_action(action),
            // Information only: seen once dismissed. The others stay until resolved.
            Clicked::Dismissed(
                key @ (GroupKey::Cancelled | GroupKey::Quota | GroupKey::Completed),
            ) => self.notifier.clear(key),
            Clicked::Dismissed(_) => {}
        }
    }

    // ---- requests ------------------------------------------------------------------------

    pub(super) fn act(&mut self, action: Action, ids: Vec<JobId>) {
        if !ids.is_empty() {
            self.bridge.send(Request::Act(action, ids));
        }
    }

    /// Complete the suitable ones of these jobs, through the partial-complete confirmation
    /// when files would be lost; the others are named as skipped.
    pub(super) fn request_complete(&mut self, ids: Vec<JobId>) {
        let jobs = self.jobs_of(&ids);
        let split = rules::complete(&jobs);
        if split.ok.is_empty() {
            return;
        }
        let skipped = split.skipped_text();
        let ids = split.ids();
        match rules::complete_confirmation(&split.ok) {
            Some(text) => {
                self.dialog = Some(Dialog::Confirm {
                    action: Action::Complete,
                    ids,
                    text,
                    skipped,
                })
            }
            None => {
                if let Some(skipped) = skipped {
                    self.toast(
                        Level::Warning,
                        "Complete: some jobs skipped",
                        skipped,
                        vec![],
                        Some(TOAST_SECONDS),
                    );
                }
                self.act(Action::Complete, ids)
            }
        }
    }

    /// Cancel the suitable ones of these jobs, always through a confirmation that says what
    /// is deleted and what is skipped.
    pub(super) fn request_cancel(&mut self, ids: Vec<JobId>) {
        let jobs = self.jobs_of(&ids);
        let split = rules::cancel(&jobs);
        if split.ok.is_empty() {
            if let Availability::Disabled(why) = split.availability() {
                self.toast(
                    Level::Warning,
                    "Nothing to cancel",
                    why,
                    vec![],
                    Some(TOAST_SECONDS),
                );
            }
            return;
        }
        let text = rules::cancel_confirmation(&split.ok);
        self.dialog = Some(Dialog::Confirm {
            action: Action::Cancel,
            ids: split.ids(),
            text,
            skipped: split.skipped_text(),
        });
    }

    /// Resume or Suspend the suitable ones of these jobs; say what was skipped.
    pub(super) fn resume_or_suspend(&mut self, action: Action, ids: Vec<JobId>) {
        let jobs = self.jobs_of(&ids);
        let split = match action {
            Action::Resume => rules::resume(&jobs),
            _ => rules::suspend(&jobs),
        };
        let (ids, skipped) = (split.ids(), split.skipped_text());
        if ids.is_empty() {
            return;
        }
        if let Some(skipped) = skipped {
            let title = format!("{}: some jobs skipped", action.verb());
            self.toast(Level::Warning, title, skipped, vec![], Some(TOAST_SECONDS));
        }
        self.act(action, ids);
    }

    /// Opens a file or folder with the desktop's application for it (xdg-open).
    pub(super) fn open_path(&mut self, path: &Path) {
        let spawned = std::process::Command::new("xdg-open")
            .arg(path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            // Reaped on its own thread: xdg-open may wait for the application.
            Ok(mut child) => {
                let _ = std::thread::Builder::new()
                    .name("ferry-open".into())
                    .spawn(move || child.wait());
            }
            Err(e) => self.toast(
                Level::Error,
                format!("Cannot open {}", path.display()),
                format!("xdg-open did not start ({e}): install xdg-utils."),
                vec![],
                Some(TOAST_SECONDS),
            ),
        }
    }

    /// Carries out what a view asked for.
    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Request(request) => self.send(request),
            Command::Ask(Action::Complete, ids) => self.request_complete(ids),
            Command::Ask(Action::Cancel, ids) => self.request_cancel(ids),
            Command::Ask(action, ids) => self.resume_or_suspend(action, ids),
            Command::Open(path) => self.open_path(&path),
            Command::Copy(text) => self.copy_text = Some(text),
            Command::NewDownload(urls) => self.open_new_download(urls),
            Command::EditUrl(id, file) => {
                let url = self
                    .job(&id)
                    .and_then(|j| j.files.get(file))
                    .map(|f| crate::job::redact_url(&f.remote_url))
                    .unwrap_or_default();
                self.dialog = Some(Dialog::EditUrl {
                    id,
                    file,
                    url,
                    error: None,
                });
            }
        }
    }

    /// URLs from another launch: added to an open New download, else opened in one — but an
    /// open confirmation or form is never replaced: they wait until it is closed.
    fn receive_urls(&mut self, urls: String) {
        match &mut self.dialog {
            None => self.open_new_download(urls),
            Some(Dialog::NewDownload(form)) => form.add_urls(&urls),
            Some(_) => match &mut self.pending_urls {
                Some(pending) => {
                    pending.push('\n');
                    pending.push_str(&urls);
                }
                None => self.pending_urls = Some(urls),
            },
        }
    }

    /// Opens the URLs that waited for a dialog to close.
    pub(super) fn open_pending_urls(&mut self) {
        if self.dialog.is_none()
            && let Some(urls) = self.pending_urls.take()
        {
            self.open_new_download(urls);
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
        let wake = ctx.clone();
        let native = self.pickers.pick(
            kind,
            start,
            Box::new(move |answer| {
                let _ = tx.send(Inbound::Picked(kind, answer));
                wake.request_repaint();
            }),
        );
        if !native {
            self.builtin_picker = Some(super::dialogs::BuiltinPicker::open(kind, start));
        }
    }

    /// Ferry's own file dialog, where the desktop has none; the form it serves waits hidden.
    pub(super) fn show_builtin_picker(&mut self, ctx: &egui::Context) -> bool {
        let Some(picker) = &mut self.builtin_picker else {
            return false;
        };
        match picker.show(ctx) {
            None => true,
            Some(answer) => {
                let kind = picker.kind;
                self.builtin_picker = None;
                let _ = self.inbound_tx.send(Inbound::Picked(kind, answer));
                ctx.request_repaint();
                false
            }
        }
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

    /// The status bar's speed limit: the global download limit, saved in the service's config
    /// and in force at once.
    pub(super) fn set_download_limit(&mut self, limit: Option<crate::job::Rate>) {
        let Some(mut config) = self.service_config.clone() else {
            return;
        };
        config.download_limit = limit;
        self.quick_limit_saving = true;
        self.send(Request::SaveConfig(Box::new(config)));
    }

    /// Follows the window's size, the panel, sort and filter; saves them in gui.ron a second
    /// after they stop changing (a drag of the window's edge is one save, not hundreds).
    fn track_layout(&mut self, ctx: &egui::Context) {
        let size = ctx.input(|i| i.viewport().inner_rect.map(|r| [r.width(), r.height()]));
        let mut layout = self.layout.clone();
        if let Some(size) = size
            && self.window_visible
        {
            layout.window_size = Some([size[0].round(), size[1].round()]);
        }
        let spec = &self.jobs_view.spec;
        layout.sort = spec.sort;
        layout.ascending = spec.ascending;
        layout.filter.clone_from(&spec.text);
        layout.states = spec.states;
        // The injected clock: tests move it instead of waiting.
        let now = self.clock.now();
        if layout != self.layout {
            self.layout = layout;
            self.layout_dirty_since = Some(now);
        }
        if let Some(since) = self.layout_dirty_since {
            let waited = format::between(since, now);
            if waited >= LAYOUT_SAVE_DELAY {
                self.save_layout();
            } else {
                ctx.request_repaint_after(LAYOUT_SAVE_DELAY - waited);
            }
        }
    }

    fn save_layout(&mut self) {
        self.layout_dirty_since = None;
        self.settings.layout = self.layout.clone();
        self.settings_draft.layout = self.layout.clone();
        if let Some(path) = &self.settings_path {
            // On the saver's thread: the fsync stays out of the frame.
            match self.settings.text() {
                Ok(text) => self.saver.save(path.clone(), text.into_bytes()),
                Err(e) => tracing::warn!("cannot save {}: {e}", path.display()),
            }
        }
    }

    /// Waits until the window's own files (layout, notices' memory) are written (tests).
    pub fn flush_saves(&self) {
        self.saver.flush();
    }

    pub(super) fn save_settings(&mut self) {
        self.settings_draft.layout = self.layout.clone();
        if let Err(e) = self.settings_draft.validate() {
            self.settings_error = Some(e);
            return;
        }
        // Written here, on the user's Save, to say at once if it failed; but only after the
        // saver's queued layouts, which share the file (and its temp file) and would otherwise
        // race this write or overwrite it with the settings before.
        self.saver.flush();
        if let Some(path) = &self.settings_path
            && let Err(e) = self.settings_draft.save(path)
        {
            self.settings_error = Some(e);
            return;
        }
        self.settings_error = None;
        self.settings = self.settings_draft.clone();
        self.jobs_view.spec.stale_after = self.stale_after();
        self.toast(Level::Success, "Settings saved", "", vec![], Some(3.0));
    }

    // ---- replies and events --------------------------------------------------------------

    fn handle_reply(&mut self, reply: Reply) {
        let mono = self.mono();
        match reply {
            Reply::Connected(status) => {
                self.connection = Connection::Up;
                self.status = Some(*status);
                // The global speed limits, for the status bar.
                self.send(Request::LoadConfig);
            }
            Reply::Disconnected(why) => self.connection = Connection::Down(why),
            Reply::Jobs(jobs) => {
                self.listed = true;
                self.jobs.replace_all(jobs, mono);
                self.jobs_view.retain_known(&self.jobs);
                let ids: Vec<JobId> = self.jobs.iter().map(|e| e.job.id).collect();
                for id in ids {
                    self.sync_notices(id);
                }
                let jobs = &self.jobs;
                self.notifier.prune_memory(|id| jobs.get(&id).is_some());
            }
            Reply::Job(job) => {
                let id = job.id;
                // A job first seen now (it may have started and finished within one batch)
                // counts as not finished before.
                let was_final = self.job(&id).is_some_and(|j| j.state.is_final());
                let completed_itself = job.state == JobState::Acknowledged
                    && job.complete_when_transferred
                    && job.job_type == crate::job::JobType::Download;
                let now_final = job.state.is_final();
                self.jobs.update(*job, mono);
                self.sync_notices(id);
                if now_final && !was_final {
                    self.history_stale = true;
                }
                if completed_itself
                    && !was_final
                    && self.job_wants(id, NotifyFlags::JOB_TRANSFERRED)
                {
                    let detail = self
                        .job(&id)
                        .map(|j| match j.files.as_slice() {
                            [file] => format!("Saved as {}", file.local_path.display()),
                            files => format!("{} files saved", files.len()),
                        })
                        .unwrap_or_default();
                    self.notice(GroupKey::Completed, id, detail);
                }
            }
            Reply::History(result) => {
                self.history = Some(result.map_err(|f| f.text));
                self.history_stale = false;
            }
            Reply::Gone(id) => {
                self.jobs.remove(id);
                self.jobs_view.forget(&id);
                self.toasts.forget_job(id);
                self.notifier.resolve_everywhere(id);
            }
            Reply::Event(event) => self.handle_event(event),
            Reply::Done { action, results } => self.handle_done(action, results),
            Reply::Created(result) => self.handle_created(result),
            Reply::Config(result) => match result {
                Ok(config) => {
                    // A draft with the user's unsaved edits stays as it is.
                    if self.service_draft.is_none() || self.service_draft == self.service_config {
                        self.service_draft = Some((*config).clone());
                    }
                    self.service_config = Some(*config);
                }
                Err(failure) => self.service_message = Some((false, failure.text)),
            },
            Reply::ConfigSaved(result) if self.quick_limit_saving => {
                self.quick_limit_saving = false;
                match result {
                    Ok(saved) => {
                        if let Some(draft) = &mut self.service_draft {
                            draft.download_limit = saved.config.download_limit;
                        }
                        self.service_config = Some(saved.config);
                    }
                    Err(failure) => self.toast(
                        Level::Error,
                        "The speed limit was not changed",
                        failure.text,
                        Vec::new(),
                        Some(8.0),
                    ),
                }
            }
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
            EngineEvent::Yielding { download, upload } => self.yielding = (download, upload),
            EngineEvent::InactivityWarning { job, .. } => self.sync_notices(job),
            EngineEvent::InactivityCancelled { job } => {
                self.notifier.resolve_everywhere(job);
                self.toasts.forget_job(job);
                self.notice(GroupKey::Cancelled, job, String::new());
            }
            EngineEvent::QuotaExceeded { code, message } => {
                let text = format!("{} {}: {message}", code.name(), code.hresult_text());
                let wall = self.clock.now();
                self.toasts
                    .record(wall, Level::Error, "Quota reached", &text);
                let mono = self.mono();
                self.notifier.refused(text, mono);
            }
            // A job that completes by itself is told about once its files are in place.
            EngineEvent::JobTransferred { job }
                if self.job_wants(job, NotifyFlags::JOB_TRANSFERRED)
                    && !self.job(&job).is_some_and(|j| j.complete_when_transferred) =>
            {
                self.notice(GroupKey::Transferred, job, String::new());
            }
            EngineEvent::CompleteFailed { job, code, message } => {
                let detail = format!("{} {}: {message}", code.name(), code.hresult_text());
                self.notice(GroupKey::CompleteFailed, job, detail);
            }
            EngineEvent::JobError { job, error } => {
                if !self.job_wants(job, NotifyFlags::JOB_ERROR) {
                    return;
                }
                let file = error
                    .file
                    .and_then(|i| self.job(&job).and_then(|j| j.files.get(i)))
                    .map(|f| format!("\nFile: {}", crate::job::redact_url(&f.remote_url)))
                    .unwrap_or_default();
                let what = if error.description.is_empty() {
                    error.code.advice().to_string()
                } else {
                    error.description.clone()
                };
                let detail = format!(
                    "{} {}: {what}{file}",
                    error.code.name(),
                    error.code.hresult_text(),
                );
                self.notice(GroupKey::Failed, job, detail);
            }
            // TakeOwnership: the job left this window's list (or joined it) with no click here.
            EngineEvent::OwnerChanged { job, from, to } => {
                let wall = self.clock.now();
                let text = format!("Job {job} of {from} now belongs to {to}.");
                self.toasts
                    .record(wall, Level::Warning, "Job taken over", &text);
            }
            _ => {}
        }
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
                self.jobs_view.focus(id);
                self.page = Page::Jobs;
            }
            // A quota refusal also comes as the service's QuotaExceeded event: one notice.
            Err(failure) => {
                if let Some(dialog) = &mut self.dialog {
                    dialog.failed(failure.text, failure.code);
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
            Inbound::NotificationId(key, id) => self.notifier.set_shown_id(key, id),
            Inbound::Tray(command) => self.tray_command(command, ctx),
            Inbound::Activate(activation) => {
                self.set_window_visible(true, ctx);
                ctx.send_viewport_cmd(egui::ViewportCommand::RequestUserAttention(
                    egui::UserAttentionType::Informational,
                ));
                if !activation.urls.is_empty() {
                    self.receive_urls(activation.urls.join("\n"));
                }
            }
        }
    }

    pub(super) fn toast_action(&mut self, action: ToastAction) {
        match action {
            ToastAction::Keep(id) => self.send(Request::Set(vec![id], PropertyChange::Touch)),
            ToastAction::Complete(id) => self.request_complete(vec![id]),
            ToastAction::Cancel(id) => self.request_cancel(vec![id]),
            ToastAction::OpenStale => {
                self.page = Page::Stale;
                self.jobs_view.clear_selection();
            }
            ToastAction::Review => {
                self.page = Page::Stale;
                let ids: Vec<JobId> = GroupKey::ALL
                    .iter()
                    .filter(|k| **k != GroupKey::Cancelled)
                    .flat_map(|k| self.notifier.members(*k).map(|(id, _)| *id))
                    .filter(|id| self.job(id).is_some())
                    .collect();
                self.jobs_view.select(ids);
            }
            ToastAction::OpenFile(id) => {
                if let Some(path) = self.job(&id).and_then(super::jobs_view::openable_file) {
                    let path = path.to_path_buf();
                    self.open_path(&path);
                }
            }
            ToastAction::OpenFolder(id) => {
                let folder = self
                    .job(&id)
                    .and_then(super::jobs_view::job_folder)
                    .map(Path::to_path_buf);
                if let Some(folder) = folder {
                    self.open_path(&folder);
                }
            }
            ToastAction::Replace(id) => self.send(Request::InOrder(vec![
                Request::Set(vec![id], PropertyChange::ReplaceExisting(true)),
                Request::Act(Action::Complete, vec![id]),
            ])),
            ToastAction::KeepAll => {
                let ids: Vec<JobId> = self
                    .notifier
                    .members(GroupKey::Expiring)
                    .map(|(id, _)| *id)
                    .collect();
                if !ids.is_empty() {
                    self.send(Request::Set(ids, PropertyChange::Touch));
                }
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
                self.jobs_view.focus(id);
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
            TrayCommand::Reregister => {
                if let Some(tray) = &mut self.tray {
                    tray.rebuild();
                }
            }
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
        let mut view =
            super::tray::summarize(self.jobs.iter().map(|e| &e.job), self.window_visible);
        let now = self.now();
        use super::model::HoldKind;
        let mut held = [0usize; 3];
        for entry in self.jobs.iter() {
            let rate = entry.speed.rate(now.mono);
            if let Some(hold) = super::model::held_back(&entry.job, rate, &now.limits) {
                held[hold.kind as usize] += 1;
            }
        }
        for (kind, count) in [HoldKind::Limit, HoldKind::Schedule, HoldKind::Traffic]
            .into_iter()
            .zip(held)
            .filter(|(_, count)| *count > 0)
        {
            let why = match kind {
                HoldKind::Limit => "held back by a speed limit",
                HoldKind::Schedule => "held by the bandwidth schedule",
                HoldKind::Traffic => "giving way to other traffic",
            };
            view.tooltip.push_str(&format!(", {count} {why}"));
        }
        view
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
        self.poll_notices(ctx);
        self.track_layout(ctx);
        self.apply_theme(ctx);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        if self.layout_dirty_since.is_some() {
            self.save_layout();
        }
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

/// Moves what another thread sends on `from` into the window's one inbound channel, waking the
/// window after each; ends when either side is gone.
fn forward<T: Send + 'static>(
    name: &str,
    from: mpsc::Receiver<T>,
    into: mpsc::Sender<Inbound>,
    wrap: fn(T) -> Inbound,
    wake: impl Fn() + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for message in from {
                if into.send(wrap(message)).is_err() {
                    break;
                }
                wake();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start {name}: {e}");
    }
}

/// Where the memory of sent expiry warnings is kept, beside gui.ron.
const NOTIFIED_FILE: &str = "gui-notified.ron";

/// What an earlier run of the window notified. A damaged file only means that some warnings
/// may be sent again: it is logged and ignored.
fn load_notified(path: &Path) -> notices::Memory {
    match crate::platform::read_small_file(path, 4 << 20, false) {
        Ok(text) => ron::from_str::<notices::Memory>(&text).unwrap_or_else(|e| {
            tracing::warn!(
                "ignoring {} ({e}): some warnings may show again",
                path.display()
            );
            notices::Memory::default()
        }),
        Err(_) => notices::Memory::default(),
    }
}
