//! Drawing the main window: toolbar, job table, details panel, status bar and the Settings page.
//! Everything here reads the app's state and turns clicks into requests; nothing waits.

use super::app::{Connection, FerryApp, Page, PickKind};
use super::format;
use super::jobs_view::{self, Command, NAME_MIN, ROW_HEIGHT, state_look};
use super::model::Now;
use super::settings::Theme;
use crate::job::{JobState, JobType, Priority};
use egui::{Key, Modifiers, RichText};
use egui_extras::{Column as Width, TableBuilder};

/// The narrowest the details panel gets.
const DETAILS_MIN: f32 = 260.0;
/// Below this width the toolbar folds the job actions into a menu.
const WIDE_TOOLBAR: f32 = 1120.0;

impl FerryApp {
    pub(super) fn draw(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if let Some(text) = self.copy_text.take() {
            ctx.copy_text(text);
        }
        let now = self.now();
        let job_page = matches!(self.page, Page::Jobs | Page::Stale);
        let mut out = Vec::new();
        if job_page {
            self.jobs_view
                .prepare(&mut self.jobs, &now, self.page == Page::Stale);
        } else {
            // No job rows on this page: nothing may stay selected behind it.
            self.jobs_view.clear_selection();
        }
        self.keyboard(&ctx, &now, &mut out);
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar(ui, &mut out));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        if job_page && let Some(entry) = self.jobs_view.detail(&self.jobs) {
            // Bounded: at most half the window, so the table always keeps room; long text wraps.
            let most = (ui.available_width() * 0.5).max(DETAILS_MIN);
            let panel = egui::Panel::right("details")
                .resizable(true)
                .default_size(self.layout.details_width().min(most))
                .size_range(DETAILS_MIN..=most)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical()
                        .auto_shrink([false, false])
                        .show(ui, |ui| jobs_view::details(ui, entry, &now, &mut out));
                });
            let width = panel.response.rect.width();
            if (width - self.layout.details_width).abs() >= 1.0 {
                self.layout.details_width = width;
            }
        }
        egui::CentralPanel::default().show(ui, |ui| match self.page {
            Page::Settings => self.settings_page(ui),
            Page::Jobs | Page::Stale => {
                // Again: a toolbar click may have just switched between Jobs and Stale.
                self.jobs_view
                    .prepare(&mut self.jobs, &now, self.page == Page::Stale);
                self.jobs_view.table(ui, &mut self.jobs, &now, &mut out)
            }
            Page::History => self.history_page(ui, &mut out),
        });
        for command in out {
            self.command(command);
        }
        if !self.show_builtin_picker(&ctx) {
            super::dialogs::show(self, &ctx);
        }
        self.open_pending_urls();
        self.centre(&ctx);
        let groups = self.group_toasts(&ctx);
        if let Some(clicked) = self.toasts.show(&ctx, self.mono(), &groups) {
            self.toast_clicked(clicked);
        }
    }

    /// The finished jobs (the service keeps the newest 1000 across restarts), newest first: what
    /// was downloaded where, with Open, Open folder, Copy URL and Download again.
    fn history_page(&mut self, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        if self.history_stale {
            // A job finished meanwhile; read again (one request: the flag waits for its answer).
            self.history_stale = false;
            self.send(super::bridge::Request::LoadHistory);
        }
        match &self.history {
            None => {
                ui.label("Reading the history…");
            }
            Some(Err(e)) => {
                ui.label(RichText::new(e).color(ui.visuals().error_fg_color));
            }
            Some(Ok(entries)) => history_table(ui, entries, &self.jobs_view.spec.text, out),
        }
    }
}

/// The History page's table: the entries matching `filter` (name or URL, ignoring case), each
/// with Open, Open folder, Copy URL and Download again.
pub fn history_table(
    ui: &mut egui::Ui,
    all: &[crate::store::HistoryEntry],
    filter: &str,
    out: &mut Vec<Command>,
) {
    let text = filter.to_lowercase();
    let entries: Vec<&crate::store::HistoryEntry> = all
        .iter()
        .filter(|e| {
            text.is_empty()
                || e.name.to_lowercase().contains(&text)
                || e.files
                    .iter()
                    .any(|f| f.remote_url.to_lowercase().contains(&text))
        })
        .collect();
    {
        ui.horizontal(|ui| {
            ui.label(format!(
                "{} finished job(s), newest first; the service keeps the last 1000.",
                entries.len()
            ));
            if ui
                .button("Clear history")
                .on_hover_text("Forgets the list; the files stay where they are")
                .clicked()
            {
                out.push(Command::Request(super::bridge::Request::ClearHistory));
            }
        });
        if entries.is_empty() {
            ui.centered_and_justified(|ui| {
                ui.label("Nothing finished yet: completed and cancelled jobs are listed here.");
            });
            return;
        }
        ui.style_mut().interaction.selectable_labels = false;
        let mut chosen: Option<Command> = None;
        TableBuilder::new(ui)
            .id_salt("history")
            .striped(true)
            .resizable(true)
            .sense(egui::Sense::click())
            .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
            .column(
                Width::remainder()
                    .at_least(NAME_MIN)
                    .resizable(false)
                    .clip(true),
            )
            .column(Width::initial(124.0).clip(true))
            .column(Width::initial(80.0).clip(true))
            .column(Width::initial(150.0).clip(true))
            .column(Width::initial(260.0).at_least(80.0).clip(true))
            .header(ROW_HEIGHT, |mut header| {
                for title in ["Name", "State", "Size", "Finished", "Saved to"] {
                    header.col(|ui| {
                        ui.label(RichText::new(title).strong());
                    });
                }
            })
            .body(|body| {
                body.rows(ROW_HEIGHT, entries.len(), |mut row| {
                    let entry = entries[row.index()];
                    row.col(|ui| {
                        ui.label(&entry.name);
                    });
                    row.col(|ui| {
                        let (icon, colour) = state_look(entry.state, entry.job_type);
                        ui.label(RichText::new(format!("{icon} {}", entry.state)).color(colour));
                    });
                    row.col(|ui| {
                        ui.label(format::bytes(entry.bytes));
                    });
                    row.col(|ui| {
                        ui.label(entry.finished.format("%Y-%m-%d %H:%M").to_string());
                    });
                    row.col(|ui| {
                        let place = match entry.files.as_slice() {
                            [file] => file.local_path.display().to_string(),
                            files => format!("{} files", files.len()),
                        };
                        ui.label(place);
                    });
                    let response = row.response();
                    response.ctx.accesskit_node_builder(response.id, |node| {
                        node.set_role(egui::accesskit::Role::Row);
                        node.set_label(format!(
                            "{}, {}, {}",
                            entry.name,
                            entry.state,
                            format::bytes(entry.bytes)
                        ));
                    });
                    if response.double_clicked()
                        && entry.state == JobState::Acknowledged
                        && let [file] = entry.files.as_slice()
                    {
                        chosen = Some(Command::Open(file.local_path.clone()));
                    }
                    response.context_menu(|ui| {
                        if let Some(action) = history_menu(ui, entry) {
                            chosen = Some(action);
                            ui.close();
                        }
                    });
                });
            });
        out.extend(chosen);
    }
}

impl FerryApp {
    /// The notification centre: everything told this session, newest first.
    fn centre(&mut self, ctx: &egui::Context) {
        if !self.centre_open {
            return;
        }
        let mut open = true;
        let mut clear = false;
        let size = ctx.content_rect().size();
        egui::Window::new("Notifications")
            .open(&mut open)
            .collapsible(false)
            .default_size([420.0_f32.min(size.x - 40.0), size.y * 0.6])
            .max_height(size.y - 80.0)
            .anchor(egui::Align2::RIGHT_TOP, [-8.0, 40.0])
            .show(ctx, |ui| {
                let history = self.toasts.history();
                ui.horizontal(|ui| {
                    ui.label(format!("{} this session", history.len()));
                    if ui.button("Clear").clicked() {
                        clear = true;
                    }
                });
                ui.separator();
                if history.is_empty() {
                    ui.label("Nothing yet.");
                }
                egui::ScrollArea::vertical()
                    .auto_shrink([false, false])
                    .show_rows(ui, 36.0, history.len(), |ui, range| {
                        for record in history.iter().rev().skip(range.start).take(range.len()) {
                            ui.horizontal_top(|ui| {
                                ui.label(
                                    RichText::new(record.at.format("%H:%M:%S").to_string())
                                        .weak()
                                        .monospace(),
                                );
                                ui.vertical(|ui| {
                                    ui.add(
                                        egui::Label::new(
                                            RichText::new(&record.title)
                                                .strong()
                                                .color(record.level.colour()),
                                        )
                                        .truncate(),
                                    );
                                    if !record.body.is_empty() {
                                        ui.add(
                                            egui::Label::new(RichText::new(&record.body).small())
                                                .truncate(),
                                        )
                                        .on_hover_text(&record.body);
                                    }
                                });
                            });
                        }
                    });
            });
        self.toasts.mark_seen();
        if clear {
            self.toasts.clear_history();
        }
        self.centre_open = open;
    }

    fn keyboard(&mut self, ctx: &egui::Context, now: &Now, out: &mut Vec<Command>) {
        if self.dialog.is_some() {
            return;
        }
        // A file dropped on the window: upload it (one file per upload job, as in BITS).
        let dropped: Vec<std::path::PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        if let Some(first) = dropped.first() {
            if dropped.len() > 1 {
                self.toast(
                    super::toasts::Level::Warning,
                    "One file per upload job",
                    format!(
                        "{} files were dropped; the dialog opened for {}. Drop the others one at a time.",
                        dropped.len(),
                        first.display()
                    ),
                    vec![],
                    Some(8.0),
                );
            }
            self.open_new_upload(Some(first.clone()));
            return;
        }
        // Ctrl+V anywhere outside a text field: the pasted URLs open a new download.
        if !ctx.egui_wants_keyboard_input() {
            let pasted = ctx.input(|i| {
                i.events.iter().find_map(|e| match e {
                    egui::Event::Paste(text) if !text.trim().is_empty() => Some(text.clone()),
                    _ => None,
                })
            });
            if let Some(text) = pasted {
                self.open_new_download(text);
                return;
            }
        }
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        if ctx.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::N)) {
            self.open_new_download(String::new());
        } else if matches!(self.page, Page::Jobs | Page::Stale) {
            // The job keys act on job rows, which only the Jobs and Stale pages show.
            self.jobs_view.keys(ctx, &mut self.jobs, now, out);
        }
    }

    /// One row at any width: below [`WIDE_TOOLBAR`] the job actions fold into an "Actions"
    /// menu, and the filter field takes what room is left.
    fn toolbar(&mut self, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let wide = ui.available_width() >= WIDE_TOOLBAR;
        ui.horizontal(|ui| {
            for (page, label) in [
                (Page::Jobs, "Jobs"),
                (Page::Stale, "Stale"),
                (Page::History, "History"),
                (Page::Settings, "Settings"),
            ] {
                if ui.selectable_label(self.page == page, label).clicked() && self.page != page {
                    self.page = page;
                    self.jobs_view.clear_selection();
                    self.settings_draft = self.settings.clone();
                    if page == Page::Settings {
                        self.service_message = None;
                        self.send(super::bridge::Request::LoadConfig);
                    }
                    if page == Page::History {
                        self.send(super::bridge::Request::LoadHistory);
                    }
                }
            }
            ui.separator();
            if ui
                .button("New download")
                .on_hover_text("Ctrl+N; or paste URLs anywhere with Ctrl+V")
                .clicked()
            {
                self.open_new_download(String::new());
            }
            if wide && ui.button("New upload").clicked() {
                self.open_new_upload(None);
            }
            ui.separator();
            if wide {
                self.jobs_view.actions(ui, &self.jobs, out);
            } else {
                ui.menu_button("Actions ⏷", |ui| {
                    if ui.button("New upload").clicked() {
                        self.open_new_upload(None);
                    }
                    ui.separator();
                    self.jobs_view.actions(ui, &self.jobs, out);
                });
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let unseen = self.toasts.unseen();
                let bell = if unseen > 0 {
                    format!("🔔 {unseen}")
                } else {
                    "🔔".to_string()
                };
                if ui
                    .selectable_label(self.centre_open, bell)
                    .on_hover_text("Notifications of this session")
                    .clicked()
                {
                    self.centre_open = !self.centre_open;
                }
                if matches!(self.page, Page::Jobs | Page::Stale) {
                    ui.menu_button("States", |ui| {
                        for (i, state) in JobState::ALL.iter().enumerate() {
                            ui.checkbox(&mut self.jobs_view.spec.states[i], state.name());
                        }
                        if ui.button("All").clicked() {
                            self.jobs_view.spec.states = [true; 9];
                        }
                    });
                }
                // The History page is filtered by the same text.
                if self.page != Page::Settings {
                    let width = (ui.available_width() - 50.0).clamp(60.0, 220.0);
                    // Right to left: the field, then its label on its left.
                    let field = ui.add(
                        egui::TextEdit::singleline(&mut self.jobs_view.spec.text)
                            .hint_text("name, description or URL")
                            .desired_width(width),
                    );
                    let label = ui.label("Filter");
                    field.labelled_by(label.id);
                }
            });
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            match &self.connection {
                Connection::Connecting => {
                    ui.label("Connecting to the Ferry service…");
                }
                Connection::Up => {
                    let status = self.status.as_ref();
                    ui.label(format!(
                        "Service pid {} · {} jobs",
                        status.map(|s| s.pid).unwrap_or_default(),
                        self.jobs.len()
                    ));
                }
                Connection::Down(why) => {
                    ui.label(
                        RichText::new(format!("Service unreachable, retrying: {why}"))
                            .color(ui.visuals().error_fg_color),
                    );
                }
            }
            let now = self.now();
            let (mut active, mut rate) = (0, 0.0);
            for entry in self.jobs.iter().filter(|e| e.job.state.is_running()) {
                active += 1;
                rate += entry.speed.rate(now.mono);
            }
            if active > 0 {
                ui.separator();
                ui.label(format!("{active} transferring · {}", format::rate(rate)));
            }
            if !self.jobs_view.selection().is_empty() {
                ui.separator();
                ui.label(format!("{} selected", self.jobs_view.selection().len()));
            }
            if let Some(config) = &self.service_config {
                let mut limit = config.download_limit;
                let upload = config.upload_limit;
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let menu = super::jobs_view::limit_menu(
                        ui,
                        "status-download-limit",
                        "",
                        &mut limit,
                        "All downloads together move at most this fast (the config's \
                         download_limit; in force at once). Each job may have its own limit \
                         too, in its details.",
                    );
                    let label = ui.label(if limit.is_some() {
                        RichText::new("Download limit").color(ui.visuals().warn_fg_color)
                    } else {
                        RichText::new("Download limit")
                    });
                    let _ = menu.labelled_by(label.id);
                    if let Some(up) = upload {
                        ui.separator();
                        ui.label(format!("Upload limit {}", format::limit(up)));
                    }
                });
                if limit != config.download_limit {
                    self.set_download_limit(limit);
                }
            }
        });
    }

    fn settings_page(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Settings");
            let draft = &mut self.settings_draft;
            let mut pick = None;
            egui::Grid::new("gui-settings")
                .num_columns(2)
                .show(ui, |ui| {
                    let label = ui.label("Default download folder");
                    ui.horizontal(|ui| {
                        let mut text = draft.default_folder.display().to_string();
                        if ui
                            .add(egui::TextEdit::singleline(&mut text).desired_width(320.0))
                            .labelled_by(label.id)
                            .changed()
                        {
                            draft.default_folder = text.into();
                        }
                        if ui.button("Browse…").clicked() {
                            pick = Some(draft.default_folder.clone());
                        }
                    });
                    ui.end_row();
                    let label = ui.label("Stale after (days)");
                    ui.add(egui::DragValue::new(&mut draft.stale_after_days).range(1..=3650))
                        .labelled_by(label.id);
                    ui.end_row();
                    ui.label("Theme");
                    ui.horizontal(|ui| {
                        ui.radio_value(&mut draft.theme, Theme::System, "System");
                        ui.radio_value(&mut draft.theme, Theme::Light, "Light");
                        ui.radio_value(&mut draft.theme, Theme::Dark, "Dark");
                    });
                    ui.end_row();
                });
            ui.checkbox(&mut draft.notifications, "Desktop notifications");
            ui.checkbox(
                &mut draft.close_to_tray,
                "Closing the window hides it in the tray",
            );
            if draft.close_to_tray && !self.tray.as_ref().is_some_and(super::tray::Tray::has_host) {
                ui.label(
                    RichText::new(
                        "No tray host is running on this desktop (a StatusNotifierItem host, \
                         e.g. GNOME's AppIndicator extension), so closing the window quits.",
                    )
                    .weak(),
                );
            }
            if let Some(error) = &self.settings_error {
                ui.label(RichText::new(error).color(ui.visuals().error_fg_color));
            }
            let changed = self.settings_draft != self.settings;
            if ui
                .add_enabled(changed, egui::Button::new("Save settings"))
                .clicked()
            {
                self.save_settings();
            }
            if let Some(start) = pick {
                let ctx = ui.ctx().clone();
                self.pick(PickKind::DefaultFolder, &start, &ctx);
            }
            ui.separator();
            self.service_settings(ui);
            ui.separator();
            ui.heading("Service");
            if let Some(status) = &self.status {
                egui::Grid::new("service").num_columns(2).show(ui, |ui| {
                    let mut row = |k: &str, v: String| {
                        ui.label(k);
                        ui.label(v);
                        ui.end_row();
                    };
                    row("Data directory", status.data_dir.display().to_string());
                    row("Socket", status.socket.display().to_string());
                    row("Version", status.version.clone());
                });
            }
        });
    }
}

impl FerryApp {
    /// The service's limits and timeouts (its config file), validated here and by the service,
    /// applied at once.
    fn service_settings(&mut self, ui: &mut egui::Ui) {
        ui.heading("Limits and timeouts");
        let overdue = self
            .service_draft
            .as_ref()
            .map(|d| self.overdue_with(d.job_inactivity_timeout_secs))
            .unwrap_or(0);
        let Some(draft) = &mut self.service_draft else {
            ui.label("Reading the service's configuration…");
            return;
        };
        egui::Grid::new("service-settings")
            .num_columns(3)
            .show(ui, |ui| {
                let count = |ui: &mut egui::Ui, label: &str, value: &mut u32| {
                    let label = ui.label(label);
                    ui.add(egui::DragValue::new(value).range(1..=100_000))
                        .labelled_by(label.id);
                    ui.label("");
                    ui.end_row();
                };
                count(ui, "Jobs per user", &mut draft.max_jobs_per_user);
                count(ui, "Jobs per machine", &mut draft.max_jobs_per_machine);
                count(ui, "Files per job", &mut draft.max_files_per_job);
                count(ui, "Ranges per file", &mut draft.max_ranges_per_file);
                let seconds = |ui: &mut egui::Ui, label: &str, value: &mut u64| {
                    let label = ui.label(label);
                    ui.add(
                        egui::DragValue::new(value)
                            .range(0..=10 * 365 * 86_400)
                            .suffix(" s"),
                    )
                    .labelled_by(label.id);
                    ui.label(format::span(std::time::Duration::from_secs(*value)));
                    ui.end_row();
                };
                seconds(
                    ui,
                    "Minimum retry delay",
                    &mut draft.minimum_retry_delay_secs,
                );
                seconds(
                    ui,
                    "No-progress timeout",
                    &mut draft.no_progress_timeout_secs,
                );
                seconds(
                    ui,
                    "Maximum download time",
                    &mut draft.max_download_time_secs,
                );
                seconds(
                    ui,
                    "Job inactivity timeout",
                    &mut draft.job_inactivity_timeout_secs,
                );
                seconds(
                    ui,
                    "Near-timeout warning",
                    &mut draft.inactivity_warning_secs,
                );
                let label = ui.label("Default priority");
                egui::ComboBox::new("default-priority", "")
                    .selected_text(draft.default_priority.name())
                    .show_ui(ui, |ui| {
                        for p in Priority::ALL {
                            ui.selectable_value(&mut draft.default_priority, p, p.name());
                        }
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
                for (what, limit, hover) in [
                    (
                        "Download limit",
                        &mut draft.download_limit,
                        "All downloads together move at most this fast; each job may have \
                         its own limit too. In force at once, also mid-transfer.",
                    ),
                    (
                        "Upload limit",
                        &mut draft.upload_limit,
                        "All uploads together, likewise.",
                    ),
                ] {
                    let label = ui.label(what);
                    let _ = super::jobs_view::limit_menu(ui, what, "", limit, hover)
                        .labelled_by(label.id);
                    ui.label("");
                    ui.end_row();
                }
            });
        bandwidth_schedule(ui, draft);
        let changed = self.service_config.as_ref() != Some(draft);
        if overdue > 0 {
            ui.label(
                RichText::new(format!(
                    "{overdue} job(s) have been idle longer than this inactivity timeout: saving \
                     cancels them at once."
                ))
                .color(ui.visuals().warn_fg_color),
            );
            ui.checkbox(&mut self.cancel_overdue_ok, "Yes, cancel them");
        }
        if let Some((ok, message)) = &self.service_message {
            let colour = if *ok {
                ui.visuals().text_color()
            } else {
                ui.visuals().error_fg_color
            };
            ui.label(RichText::new(message).color(colour));
        }
        let allowed = changed && (overdue == 0 || self.cancel_overdue_ok);
        if ui
            .add_enabled(allowed, egui::Button::new("Save limits and timeouts"))
            .clicked()
        {
            self.save_service_config();
        }
    }
}

/// The Settings page's bandwidth schedule (BITS policy) and the idle-bandwidth switch, edited
/// in the draft config (saved, and checked by the service, with the rest).
fn bandwidth_schedule(ui: &mut egui::Ui, draft: &mut crate::config::Config) {
    use crate::job::{ClassLimit, Day, PolicyWindow, TimeOfDay};
    ui.add_space(8.0);
    ui.label(RichText::new("Background jobs (HIGH, NORMAL, LOW)").strong());
    ui.checkbox(
        &mut draft.idle_bandwidth_for_background,
        "Use only idle bandwidth: give way to other traffic on this machine",
    )
    .on_hover_text(
        "Background jobs slow to a trickle within a second or two when another program \
         downloads or uploads, and come back when it stops. FOREGROUND jobs never give way.",
    );
    ui.label(
        "Bandwidth schedule: in each window, a limit per priority (0 holds the jobs until the \
         window ends; the first window that holds wins). FOREGROUND jobs are never limited.",
    );
    let policy = &mut draft.bandwidth_policy;
    let mut remove = None;
    egui::Grid::new("schedule")
        .num_columns(7)
        .striped(true)
        .show(ui, |ui| {
            for heading in ["", "Days", "From", "To", "HIGH", "NORMAL", "LOW"] {
                ui.label(RichText::new(heading).weak());
            }
            ui.end_row();
            for (index, window) in policy.windows.iter_mut().enumerate() {
                // First, not last: a narrow window keeps it in sight.
                let button = ui.small_button("✖").on_hover_text("Remove this window");
                let name = format!("Remove window {}", index + 1);
                if super::jobs_view::named(button, egui::Role::Button, &name).clicked() {
                    remove = Some(index);
                }
                ui.horizontal(|ui| {
                    for day in Day::ALL {
                        let on = window.days.contains(&day);
                        let name = &day.name()[..2];
                        if ui
                            .selectable_label(on, name)
                            .on_hover_text(day.name())
                            .clicked()
                        {
                            if on {
                                window.days.retain(|d| *d != day);
                            } else {
                                window.days.push(day);
                                window.days.sort();
                            }
                        }
                    }
                });
                for (which, time) in [("start", &mut window.start), ("end", &mut window.end)] {
                    ui.horizontal(|ui| {
                        let (mut hour, mut minute) = (time.minutes() / 60, time.minutes() % 60);
                        let spin = egui::Role::SpinButton;
                        let n = index + 1;
                        let h = ui.add(
                            egui::DragValue::new(&mut hour)
                                .range(0..=24)
                                .custom_formatter(|v, _| format!("{v:02}")),
                        );
                        let h =
                            super::jobs_view::named(h, spin, &format!("Window {n} {which} hour"));
                        ui.label(":");
                        let m = ui.add(
                            egui::DragValue::new(&mut minute)
                                .range(0..=59)
                                .custom_formatter(|v, _| format!("{v:02}")),
                        );
                        let m =
                            super::jobs_view::named(m, spin, &format!("Window {n} {which} minute"));
                        if h.changed() || m.changed() {
                            let minute = if hour == 24 { 0 } else { minute };
                            if let Ok(new) = TimeOfDay::new(hour, minute) {
                                *time = new;
                            }
                        }
                    });
                }
                let place = format!("in window {}", index + 1);
                let limits = [&mut window.high, &mut window.normal, &mut window.low];
                class_limit_menus(ui, &place, limits);
                ui.end_row();
            }
            ui.label("");
            ui.label("Outside the windows");
            ui.label("");
            ui.label("");
            let outside = &mut policy.outside;
            let limits = [&mut outside.high, &mut outside.normal, &mut outside.low];
            class_limit_menus(ui, "outside the windows", limits);
            ui.end_row();
        });
    if let Some(index) = remove {
        policy.windows.remove(index);
    }
    if policy.windows.len() < crate::job::MAX_WINDOWS
        && ui.button("Add a window").clicked()
        && let (Ok(start), Ok(end)) = (TimeOfDay::new(9, 0), TimeOfDay::new(17, 0))
    {
        // Working hours, limiting nothing yet: the user picks the limits.
        policy.windows.push(PolicyWindow {
            days: vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
            start,
            end,
            high: ClassLimit::default(),
            normal: ClassLimit::default(),
            low: ClassLimit::default(),
        });
    }
}

/// The HIGH, NORMAL and LOW limit menus of one row of the schedule (`place` names the row).
fn class_limit_menus(ui: &mut egui::Ui, place: &str, limits: [&mut crate::job::ClassLimit; 3]) {
    for (class, limit) in ["HIGH", "NORMAL", "LOW"].into_iter().zip(limits) {
        let name = format!("{class} limit {place}");
        super::jobs_view::class_limit_menu(ui, &name, &name, limit);
    }
}

/// What a history row's context menu asks for.
fn history_menu(ui: &mut egui::Ui, entry: &crate::store::HistoryEntry) -> Option<Command> {
    let mut action = None;
    let single = match entry.files.as_slice() {
        [file] => Some(file),
        _ => None,
    };
    let completed = entry.state == JobState::Acknowledged && entry.job_type == JobType::Download;
    if ui
        .add_enabled(
            completed && single.is_some(),
            egui::Button::new("Open file"),
        )
        .clicked()
        && let Some(file) = single
    {
        action = Some(Command::Open(file.local_path.clone()));
    }
    if let Some(folder) = entry.files.first().and_then(|f| f.local_path.parent())
        && ui.button("Open folder").clicked()
    {
        action = Some(Command::Open(folder.to_path_buf()));
    }
    let urls: Vec<&str> = entry.files.iter().map(|f| f.remote_url.as_str()).collect();
    if ui.button("Copy URL").clicked() {
        action = Some(Command::Copy(urls.join("\n")));
    }
    if entry.job_type == JobType::Download && ui.button("Download again").clicked() {
        action = Some(Command::NewDownload(urls.join("\n")));
    }
    action
}
