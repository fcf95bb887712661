//! The status-tray icon (StatusNotifierItem over D-Bus, no GTK): its look shows the aggregate
//! state, its tooltip the active jobs, its menu the common actions and the latest jobs. Menu
//! clicks arrive on another thread and are forwarded to the UI through a channel.

use super::format;
use crate::job::{Job, JobId, JobState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrayCommand {
    ToggleWindow,
    SuspendAll,
    ResumeAll,
    ShowJob(JobId),
    Quit,
    /// A tray host (StatusNotifierWatcher with a host) appeared (`true`) or went away.
    HostChanged(bool),
    /// A host is there but Ferry's icon is not registered with it (the host started after
    /// Ferry and the item missed it): build the icon again.
    Reregister,
}

/// The aggregate state the icon shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    Idle,
    Transferring,
    Error,
}

/// What the tray shows; the icon is rebuilt only when this changes.
#[derive(Clone, Debug, PartialEq)]
pub struct TrayView {
    pub look: Look,
    pub tooltip: String,
    /// The latest jobs: id and "name — STATE".
    pub recent: Vec<(JobId, String)>,
    pub window_visible: bool,
}

pub struct Tray {
    icon: TrayIcon,
    shown: Option<TrayView>,
    /// Whether a tray host shows the icon. The icon registers on the session bus whether or not
    /// a host (KDE, GNOME's AppIndicator extension, waybar, …) is there to show it; without one,
    /// hiding the window would leave the user no way back, so close-to-tray needs this.
    host: Arc<AtomicBool>,
}

impl Tray {
    /// Registers the icon; `None` (logged once) where there is no session bus.
    pub fn start(
        commands: mpsc::Sender<TrayCommand>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Option<Tray> {
        let commands_for_host = commands.clone();
        let commands_for_click = commands.clone();
        let wake = Arc::new(wake);
        let wake_for_click = wake.clone();
        MenuEvent::set_event_handler(Some(move |event: MenuEvent| {
            tracing::debug!("tray menu: {:?}", event.id);
            if let Some(command) = parse_id(event.id.as_ref()) {
                let _ = commands.send(command);
                wake();
            }
        }));
        // A left click on the icon (the host's Activate) shows or hides the window.
        tray_icon::TrayIconEvent::set_event_handler(Some(
            move |event: tray_icon::TrayIconEvent| {
                if let tray_icon::TrayIconEvent::Click {
                    button: tray_icon::MouseButton::Left,
                    ..
                } = event
                {
                    let _ = commands_for_click.send(TrayCommand::ToggleWindow);
                    wake_for_click();
                }
            },
        ));
        let host = Arc::new(AtomicBool::new(false));
        match build() {
            Ok(icon) => {
                watch_host(host.clone(), commands_for_host);
                Some(Tray {
                    icon,
                    shown: None,
                    host,
                })
            }
            Err(e) => {
                tracing::warn!("no tray icon ({e}); Ferry works without it");
                None
            }
        }
    }

    /// Builds the icon again (it registers with the watcher as it starts) and shows the last
    /// view on it.
    pub fn rebuild(&mut self) {
        match build() {
            Ok(icon) => {
                tracing::info!("tray icon registered again with the tray host");
                self.icon = icon;
                if let Some(view) = self.shown.take() {
                    self.show(view);
                }
            }
            Err(e) => tracing::warn!("cannot build the tray icon again: {e}"),
        }
    }

    /// A tray host shows the icon (so a hidden window can be brought back from it).
    pub fn has_host(&self) -> bool {
        self.host.load(Ordering::Relaxed)
    }

    pub fn show(&mut self, view: TrayView) {
        if self.shown.as_ref() == Some(&view) {
            return;
        }
        if self.shown.as_ref().is_none_or(|s| s.look != view.look) {
            let _ = self.icon.set_icon(icon(view.look));
        }
        let _ = self.icon.set_tooltip(Some(&view.tooltip));
        self.icon.set_menu(Some(Box::new(menu(&view))));
        self.shown = Some(view);
    }
}

fn build() -> tray_icon::Result<TrayIcon> {
    let mut builder = TrayIconBuilder::new()
        .with_id("ferry")
        .with_title("Ferry")
        .with_tooltip("Ferry");
    if let Some(idle) = icon(Look::Idle) {
        builder = builder.with_icon(idle);
    }
    builder.build()
}

/// How often the host is looked for. A D-Bus property read (well under a millisecond) on a
/// thread of its own: the UI does not wake for it unless the answer changes.
const HOST_POLL: Duration = Duration::from_secs(3);

/// Keeps `host` true while a StatusNotifierWatcher on the session bus has a host registered,
/// and reports each change. Logs once when there is none.
fn watch_host(host: Arc<AtomicBool>, changes: mpsc::Sender<TrayCommand>) {
    let spawned = std::thread::Builder::new()
        .name("ferry-tray-host".into())
        .spawn(move || {
            let connection = match zbus::blocking::Connection::session() {
                Ok(connection) => connection,
                Err(e) => {
                    tracing::warn!("no session bus ({e}): no tray; closing the window quits");
                    return;
                }
            };
            let mut logged = false;
            // Polls in a row that found a host without Ferry's icon registered with it.
            let mut missing = 0;
            let mut attempts = 0;
            let own = format!("StatusNotifierItem-{}-", std::process::id());
            loop {
                // Shown: a host runs and Ferry's icon is registered with it (or the watcher
                // does not say). Closing to the tray needs both, else the window is lost.
                let present = host_registered(&connection);
                let listed = registered(&connection, &own);
                let shown = present && listed != Some(false);
                if shown != host.swap(shown, Ordering::Relaxed)
                    && changes.send(TrayCommand::HostChanged(shown)).is_err()
                {
                    return; // the window is gone
                }
                missing = match (present, listed) {
                    (true, Some(false)) => missing + 1,
                    _ => 0,
                };
                // Two polls: the item registers itself a moment after a host appears. A few
                // attempts only: a host that lists items under other names would loop.
                if missing >= 2 && attempts < 3 {
                    missing = 0;
                    attempts += 1;
                    if changes.send(TrayCommand::Reregister).is_err() {
                        return;
                    }
                }
                if !present && !logged {
                    tracing::warn!(
                        "no tray host (StatusNotifierWatcher) on the session bus: the tray icon \
                         is not shown and closing the window quits; Ferry looks again every {} s",
                        HOST_POLL.as_secs()
                    );
                    logged = true;
                }
                std::thread::sleep(HOST_POLL);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch for a tray host ({e}); closing the window quits");
    }
}

/// The StatusNotifierWatcher, read afresh at each call (no property cache).
fn watcher(
    connection: &zbus::blocking::Connection,
) -> zbus::Result<zbus::blocking::Proxy<'static>> {
    zbus::blocking::proxy::Builder::<zbus::blocking::Proxy>::new(connection)
        .destination("org.kde.StatusNotifierWatcher")
        .and_then(|b| b.path("/StatusNotifierWatcher"))
        .and_then(|b| b.interface("org.kde.StatusNotifierWatcher"))
        .map(|b| b.cache_properties(zbus::proxy::CacheProperties::No))
        .and_then(|b| b.build())
}

fn host_registered(connection: &zbus::blocking::Connection) -> bool {
    watcher(connection)
        .and_then(|proxy| proxy.get_property::<bool>("IsStatusNotifierHostRegistered"))
        .unwrap_or(false)
}

/// Whether one of this process's items is registered with the watcher (`None`: cannot tell).
fn registered(connection: &zbus::blocking::Connection, own: &str) -> Option<bool> {
    let items: Vec<String> = watcher(connection)
        .ok()?
        .get_property("RegisteredStatusNotifierItems")
        .ok()?;
    // Items are listed by well-known name (".../StatusNotifierItem-PID-N") or, by some
    // watchers, by unique name (":1.42/..."): then the bus says whose connection that is.
    Some(items.iter().any(|item| {
        let name = item.split('/').next().unwrap_or(item);
        item.contains(own)
            || (name.starts_with(':') && pid_of(connection, name) == Some(std::process::id()))
    }))
}

/// The process owning a bus connection.
fn pid_of(connection: &zbus::blocking::Connection, name: &str) -> Option<u32> {
    connection
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetConnectionUnixProcessID",
            &(name,),
        )
        .ok()?
        .body()
        .deserialize::<u32>()
        .ok()
}

/// What the tray shows for these jobs: ERROR wins over transferring, which wins over idle; the
/// tooltip sums the active jobs; the menu lists the five with the latest activity.
pub fn summarize<'a>(jobs: impl Iterator<Item = &'a Job>, window_visible: bool) -> TrayView {
    let (mut active, mut errors) = (0, 0);
    let (mut done, mut total) = (0u64, 0u64);
    let mut recent: Vec<&Job> = Vec::new();
    for job in jobs {
        recent.push(job);
        if job.state.is_final() {
            continue;
        }
        if job.state.is_running() || job.state == JobState::Queued {
            active += 1;
            let progress = job.progress();
            done += progress.bytes_transferred;
            total += progress.bytes_total.unwrap_or(progress.bytes_transferred);
        }
        if job.state == JobState::Error {
            errors += 1;
        }
    }
    let look = if errors > 0 {
        Look::Error
    } else if active > 0 {
        Look::Transferring
    } else {
        Look::Idle
    };
    // The host shows the title ("Ferry") above this: no "Ferry:" again.
    let mut tooltip = match active {
        0 => "No active transfer".to_string(),
        n => format!(
            "{n} active, {} of {} ({}%)",
            format::bytes(done),
            format::bytes(total),
            (done * 100).checked_div(total).unwrap_or(0)
        ),
    };
    if errors > 0 {
        tooltip.push_str(&format!(", {errors} in ERROR"));
    }
    recent.sort_by_key(|j| (std::cmp::Reverse(j.times.modified), j.id));
    TrayView {
        look,
        tooltip,
        recent: recent
            .into_iter()
            .take(5)
            .map(|j| (j.id, format!("{} — {}", j.display_name, j.state)))
            .collect(),
        window_visible,
    }
}

fn parse_id(id: &str) -> Option<TrayCommand> {
    match id {
        "show" => Some(TrayCommand::ToggleWindow),
        "suspend-all" => Some(TrayCommand::SuspendAll),
        "resume-all" => Some(TrayCommand::ResumeAll),
        "quit" => Some(TrayCommand::Quit),
        other => other
            .strip_prefix("job:")
            .and_then(JobId::parse)
            .map(TrayCommand::ShowJob),
    }
}

fn menu(view: &TrayView) -> Menu {
    let menu = Menu::new();
    let toggle = if view.window_visible {
        "Hide window"
    } else {
        "Show window"
    };
    let items: Vec<Box<dyn tray_icon::menu::IsMenuItem>> = {
        let mut items: Vec<Box<dyn tray_icon::menu::IsMenuItem>> = vec![
            Box::new(MenuItem::with_id("show", toggle, true, None)),
            Box::new(PredefinedMenuItem::separator()),
            Box::new(MenuItem::with_id("suspend-all", "Suspend all", true, None)),
            Box::new(MenuItem::with_id("resume-all", "Resume all", true, None)),
        ];
        if !view.recent.is_empty() {
            items.push(Box::new(PredefinedMenuItem::separator()));
            for (id, text) in &view.recent {
                items.push(Box::new(MenuItem::with_id(
                    format!("job:{}", id.0),
                    text,
                    true,
                    None,
                )));
            }
        }
        items.push(Box::new(PredefinedMenuItem::separator()));
        items.push(Box::new(MenuItem::with_id(
            "quit",
            "Quit (transfers go on)",
            true,
            None,
        )));
        items
    };
    for item in &items {
        let _ = menu.append(item.as_ref());
    }
    menu
}

/// A 32×32 round badge with a down arrow: grey when idle, blue when transferring, red on error.
fn icon(look: Look) -> Option<Icon> {
    const SIZE: u32 = 32;
    let [r, g, b] = match look {
        Look::Idle => [128, 128, 128],
        Look::Transferring => [40, 120, 220],
        Look::Error => [210, 50, 40],
    };
    let mut rgba = Vec::with_capacity((SIZE * SIZE * 4) as usize);
    let c = (SIZE as f32 - 1.0) / 2.0;
    for y in 0..SIZE {
        for x in 0..SIZE {
            let (dx, dy) = (x as f32 - c, y as f32 - c);
            let inside = dx * dx + dy * dy <= c * c;
            // The arrow: a stem and a head, in white.
            let stem = dx.abs() <= 2.0 && (-9.0..=3.0).contains(&dy);
            let head = (3.0..=9.0).contains(&dy) && dx.abs() <= 9.0 - dy;
            let pixel = if !inside {
                [0, 0, 0, 0]
            } else if stem || head {
                [255, 255, 255, 255]
            } else {
                [r, g, b, 255]
            };
            rgba.extend_from_slice(&pixel);
        }
    }
    // A fixed 32×32 buffer always makes a valid icon; were it refused, the tray has none.
    Icon::from_rgba(rgba, SIZE, SIZE).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::job::{JobDefaults, JobFile, JobType};

    pub(crate) fn job(name: &str, state: JobState, done: u64, total: u64, minute: i64) -> Job {
        let at = chrono::DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).expect("time");
        let mut job = Job::new(
            JobId::new_random(),
            JobType::Download,
            name,
            "me",
            &JobDefaults::default(),
            at,
        )
        .expect("job");
        job.state = state;
        job.files.push(JobFile {
            remote_url: "http://127.0.0.1/f".into(),
            local_path: "/tmp/f".into(),
            temp_path: "/tmp/.f".into(),
            ranges: None,
            bytes_total: Some(total),
            bytes_transferred: done,
            bytes_checkpointed: done,
            transferred: done == total,
            completed: false,
            validators: None,
            segments: Vec::new(),
            checksum: None,
            checksum_verified: false,
        });
        job
    }

    #[test]
    fn the_tray_sums_up_the_jobs() {
        let idle = [job("a", JobState::Suspended, 0, 10, 0)];
        let view = summarize(idle.iter(), true);
        assert_eq!(
            (view.look, view.tooltip.as_str()),
            (Look::Idle, "No active transfer")
        );

        let busy = [
            job("a", JobState::Transferring, 250, 1000, 1),
            job("b", JobState::Queued, 0, 1000, 2),
            job("c", JobState::Acknowledged, 5, 5, 3),
        ];
        let view = summarize(busy.iter(), false);
        assert_eq!(view.look, Look::Transferring);
        assert_eq!(view.tooltip, "2 active, 250 B of 2.0 kB (12%)");
        assert_eq!(
            view.recent[0].1, "c — ACKNOWLEDGED",
            "latest activity first"
        );
        assert!(!view.window_visible);

        let failed = [
            job("a", JobState::Transferring, 1, 2, 1),
            job("x", JobState::Error, 0, 2, 2),
        ];
        let view = summarize(failed.iter(), true);
        assert_eq!(view.look, Look::Error);
        assert!(view.tooltip.ends_with(", 1 in ERROR"), "{}", view.tooltip);
        let many: Vec<Job> = (0..9)
            .map(|i| job("n", JobState::Suspended, 0, 1, i))
            .collect();
        assert_eq!(summarize(many.iter(), true).recent.len(), 5);
    }

    #[test]
    fn menu_ids_round_trip() {
        let id = JobId::new_random();
        assert_eq!(
            parse_id(&format!("job:{}", id.0)),
            Some(TrayCommand::ShowJob(id))
        );
        assert_eq!(parse_id("quit"), Some(TrayCommand::Quit));
        assert_eq!(parse_id("job:nonsense"), None);
        for look in [Look::Idle, Look::Transferring, Look::Error] {
            assert!(icon(look).is_some());
        }
    }
}
