//! Drawing the main window: toolbar, job table, details panel, status bar and the Settings page.
//! Everything here reads the app's state and turns clicks into requests; nothing waits.

use super::app::{Connection, FerryApp, Page, PickKind};
use super::bridge::Action;
use super::format;
use super::model::{self, Column, Now};
use super::rules::{self, Availability};
use super::settings::Theme;
use super::theme;
use crate::job::{Job, JobId, JobState, JobType, Priority};
use egui::{Color32, Key, Modifiers, RichText};
use egui_extras::{Column as Width, TableBuilder};
use std::collections::BTreeSet;

const ROW_HEIGHT: f32 = 22.0;
/// The narrowest the details panel gets.
const DETAILS_MIN: f32 = 260.0;
/// Below this width the toolbar folds the job actions into a menu.
const WIDE_TOOLBAR: f32 = 1120.0;

/// The colour and icon of a state, and its BITS name.
pub fn state_look(state: JobState, job_type: JobType) -> (&'static str, Color32) {
    match state {
        JobState::Queued => ("⏳", theme::QUEUED),
        JobState::Connecting => ("🔌", theme::CONNECTING),
        JobState::Transferring if job_type.is_upload() => ("⬆", theme::TRANSFERRING),
        JobState::Transferring => ("⬇", theme::TRANSFERRING),
        JobState::Suspended => ("⏸", theme::SUSPENDED),
        JobState::Error => ("⛔", theme::FAILED),
        JobState::TransientError => ("⚠", theme::TRANSIENT),
        JobState::Transferred => ("✔", theme::TRANSFERRED),
        JobState::Acknowledged => ("☑", theme::ACKNOWLEDGED),
        JobState::Cancelled => ("✖", theme::CANCELLED),
    }
}

fn action_button(ui: &mut egui::Ui, label: &str, availability: &Availability, hint: &str) -> bool {
    let response = ui.add_enabled(availability.is_enabled(), egui::Button::new(label));
    let response = match availability {
        Availability::Enabled => response.on_hover_text(hint),
        Availability::Disabled(why) => disabled_because(response, why),
    };
    response.clicked()
}

/// A disabled widget says why: in its tooltip, and to screen readers as its description.
fn disabled_because(response: egui::Response, why: &str) -> egui::Response {
    response.ctx.accesskit_node_builder(response.id, |node| {
        node.set_description(why.to_string());
    });
    response.on_disabled_hover_text(why)
}

impl FerryApp {
    pub(super) fn draw(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if let Some(text) = self.copy_text.take() {
            ctx.copy_text(text);
        }
        self.keyboard(&ctx);
        self.prune_selection();
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        let detail = (matches!(self.page, Page::Jobs | Page::Stale) && self.selection.len() == 1)
            .then(|| self.selection.first().copied())
            .flatten();
        if let Some(id) = detail
            && self.job(&id).is_some()
        {
            // Bounded: at most half the window, so the table always keeps room; long text wraps.
            let most = (ui.available_width() * 0.5).max(DETAILS_MIN);
            let panel = egui::Panel::right("details")
                .resizable(true)
                .default_size(self.layout.details_width().min(most))
                .size_range(DETAILS_MIN..=most)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical()
                        .auto_shrink([false, false])
                        .show(ui, |ui| self.details(ui, id));
                });
            let width = panel.response.rect.width();
            if (width - self.layout.details_width).abs() >= 1.0 {
                self.layout.details_width = width;
            }
        }
        egui::CentralPanel::default().show(ui, |ui| match self.page {
            Page::Settings => self.settings_page(ui),
            Page::Jobs | Page::Stale => self.table(ui),
            Page::History => self.history_page(ui),
        });
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

    /// The selection is what the user sees selected: rows that left the view (filtered out,
    /// removed, another page) leave it, so that no action reaches a job the user cannot see.
    fn prune_selection(&mut self) {
        if !matches!(self.page, Page::Jobs | Page::Stale) {
            // No job rows on this page: nothing may stay selected behind it.
            self.selection.clear();
            return;
        }
        if self.selection.is_empty() {
            return;
        }
        let now = self.now();
        self.spec.stale_only = self.page == Page::Stale;
        let visible: std::collections::HashSet<JobId> =
            self.jobs.rows(&self.spec, &now).iter().copied().collect();
        // A job just created is selected before the service reports it: it stays.
        let jobs = &self.jobs;
        self.selection
            .retain(|id| visible.contains(id) || jobs.get(id).is_none());
    }

    /// The finished jobs (the service keeps the newest 1000 across restarts), newest first: what
    /// was downloaded where, with Open, Open folder, Copy URL and Download again.
    fn history_page(&mut self, ui: &mut egui::Ui) {
        if self.history_stale {
            // A job finished meanwhile; read again (one request: the flag waits for its answer).
            self.history_stale = false;
            self.send(super::bridge::Request::LoadHistory);
        }
        let entries: Vec<crate::store::HistoryEntry> = match &self.history {
            None => {
                ui.label("Reading the history…");
                return;
            }
            Some(Err(e)) => {
                ui.label(RichText::new(e).color(ui.visuals().error_fg_color));
                return;
            }
            Some(Ok(entries)) => {
                let text = self.spec.text.to_lowercase();
                entries
                    .iter()
                    .filter(|e| {
                        text.is_empty()
                            || e.name.to_lowercase().contains(&text)
                            || e.files
                                .iter()
                                .any(|f| f.remote_url.to_lowercase().contains(&text))
                    })
                    .cloned()
                    .collect()
            }
        };
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
                self.send(super::bridge::Request::ClearHistory);
            }
        });
        if entries.is_empty() {
            ui.centered_and_justified(|ui| {
                ui.label("Nothing finished yet: completed and cancelled jobs are listed here.");
            });
            return;
        }
        ui.style_mut().interaction.selectable_labels = false;
        let mut chosen: Option<HistoryAction> = None;
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
                    let entry = &entries[row.index()];
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
                        chosen = Some(HistoryAction::Open(file.local_path.clone()));
                    }
                    response.context_menu(|ui| {
                        if let Some(action) = history_menu(ui, entry) {
                            chosen = Some(action);
                            ui.close();
                        }
                    });
                });
            });
        match chosen {
            Some(HistoryAction::Open(path)) => self.open_path(&path),
            Some(HistoryAction::Copy(text)) => self.copy_text = Some(text),
            Some(HistoryAction::Again(urls)) => self.open_new_download(urls),
            None => {}
        }
    }

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

    fn keyboard(&mut self, ctx: &egui::Context) {
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
        let jobs_page = matches!(self.page, Page::Jobs | Page::Stale);
        let pressed =
            |modifiers: Modifiers, key: Key| ctx.input_mut(|i| i.consume_key(modifiers, key));
        if pressed(Modifiers::COMMAND, Key::N) {
            self.open_new_download(String::new());
        } else if !jobs_page {
            // The job keys below act on job rows, which only the Jobs and Stale pages show.
        } else if pressed(Modifiers::COMMAND, Key::Enter) {
            self.request_complete();
        } else if pressed(Modifiers::NONE, Key::Delete) {
            self.request_cancel();
        } else if pressed(Modifiers::NONE, Key::Space) {
            self.toggle_suspend();
        } else if pressed(Modifiers::COMMAND, Key::A) {
            let now = self.now();
            self.selection = self.jobs.rows(&self.spec, &now).iter().copied().collect();
        } else if pressed(Modifiers::NONE, Key::Escape) {
            self.selection.clear();
        // Shift first: `consume_key` ignores an extra Shift, so the plain arrow would take it.
        } else if pressed(Modifiers::SHIFT, Key::ArrowDown) {
            self.move_cursor(1, true);
        } else if pressed(Modifiers::SHIFT, Key::ArrowUp) {
            self.move_cursor(-1, true);
        } else if pressed(Modifiers::NONE, Key::ArrowDown) {
            self.move_cursor(1, false);
        } else if pressed(Modifiers::NONE, Key::ArrowUp) {
            self.move_cursor(-1, false);
        }
    }

    fn move_cursor(&mut self, step: isize, extend: bool) {
        let now = self.now();
        let rows = self.jobs.rows(&self.spec, &now);
        if rows.is_empty() {
            return;
        }
        let at = self
            .cursor
            .and_then(|c| rows.iter().position(|r| *r == c))
            .map(|i| (i as isize + step).clamp(0, rows.len() as isize - 1) as usize)
            .unwrap_or(0);
        let id = rows[at];
        if extend {
            // Shift+arrow extends from the anchor (where the plain move or click began) to the
            // new row, and shrinks again when the user comes back.
            let anchor = self
                .anchor
                .and_then(|a| rows.iter().position(|r| *r == a))
                .unwrap_or(at);
            let (from, to) = (anchor.min(at), anchor.max(at));
            self.selection = rows[from..=to].iter().copied().collect();
            self.anchor = Some(rows[anchor]);
        } else {
            self.selection = BTreeSet::from([id]);
            self.anchor = Some(id);
        }
        self.cursor = Some(id);
        self.scroll_to_cursor = true;
    }

    /// One row at any width: below [`WIDE_TOOLBAR`] the job actions fold into an "Actions"
    /// menu, and the filter field takes what room is left.
    fn toolbar(&mut self, ui: &mut egui::Ui) {
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
                    self.selection.clear();
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
                self.job_actions(ui);
            } else {
                ui.menu_button("Actions ⏷", |ui| {
                    if ui.button("New upload").clicked() {
                        self.open_new_upload(None);
                    }
                    ui.separator();
                    self.job_actions(ui);
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
                            ui.checkbox(&mut self.spec.states[i], state.name());
                        }
                        if ui.button("All").clicked() {
                            self.spec.states = [true; 9];
                        }
                    });
                }
                // The History page is filtered by the same text.
                if self.page != Page::Settings {
                    let width = (ui.available_width() - 50.0).clamp(60.0, 220.0);
                    // Right to left: the field, then its label on its left.
                    let field = ui.add(
                        egui::TextEdit::singleline(&mut self.spec.text)
                            .hint_text("name, description or URL")
                            .desired_width(width),
                    );
                    let label = ui.label("Filter");
                    field.labelled_by(label.id);
                }
            });
        });
    }

    /// Resume, Suspend, Complete, Cancel and Priority for the selection: in the toolbar when it
    /// is wide, in its Actions menu when not. Each acts on the suitable selected jobs.
    fn job_actions(&mut self, ui: &mut egui::Ui) {
        let jobs = self.selected_jobs();
        let resume = rules::resume(&jobs).availability();
        let suspend = rules::suspend(&jobs).availability();
        let complete = rules::complete(&jobs).availability();
        let cancel = rules::cancel(&jobs).availability();
        let priority = rules::change(&jobs).availability();
        let current_priority = jobs.first().map(|j| j.priority);
        let mut clicked = None;
        if action_button(ui, "Resume", &resume, "Space toggles Resume and Suspend") {
            clicked = Some(Action::Resume);
        }
        if action_button(ui, "Suspend", &suspend, "Space toggles Resume and Suspend") {
            clicked = Some(Action::Suspend);
        }
        let complete_hint = if jobs.iter().all(|j| j.job_type.is_upload()) && !jobs.is_empty() {
            "Ctrl+Enter: finish the uploads (and save the replies)"
        } else {
            "Ctrl+Enter: move the transferred files to their names"
        };
        if action_button(ui, "Complete", &complete, complete_hint) {
            clicked = Some(Action::Complete);
        }
        if action_button(
            ui,
            "Cancel",
            &cancel,
            "Delete: remove the jobs and their temporary files",
        ) {
            clicked = Some(Action::Cancel);
        }
        let mut chosen = None;
        ui.add_enabled_ui(priority.is_enabled(), |ui| {
            let text = format!(
                "Priority: {} ⏷",
                current_priority.map(|p| p.name()).unwrap_or("—")
            );
            let menu = ui.menu_button(text, |ui| {
                for p in Priority::ALL {
                    if ui
                        .selectable_label(current_priority == Some(p), p.name())
                        .clicked()
                    {
                        chosen = Some(p);
                        ui.close();
                    }
                }
            });
            if let Availability::Disabled(why) = &priority {
                disabled_because(menu.response, why);
            }
        });
        if let Some(p) = chosen {
            self.set_priority(p);
        }
        match clicked {
            Some(Action::Complete) => self.request_complete(),
            Some(Action::Cancel) => self.request_cancel(),
            Some(action) => self.resume_or_suspend(action),
            None => {}
        }
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
            if !self.selection.is_empty() {
                ui.separator();
                ui.label(format!("{} selected", self.selection.len()));
            }
        });
    }

    fn table(&mut self, ui: &mut egui::Ui) {
        let now = self.now();
        if self.page == Page::Stale {
            ui.horizontal(|ui| {
                ui.label(format!(
                    "Jobs waiting for you: TRANSFERRED or in ERROR, or idle for {} days or more; \
                     the next to expire first.",
                    self.settings.stale_after_days
                ));
                let mut spec = self.spec.clone();
                spec.stale_only = true;
                if ui.button("Select all").clicked() {
                    self.selection = self.jobs.rows(&spec, &now).iter().copied().collect();
                }
                if ui
                    .button("Keep all")
                    .on_hover_text("Counts as activity for every job listed here: their inactivity timers start again")
                    .clicked()
                {
                    let ids: Vec<JobId> = self.jobs.rows(&spec, &now).to_vec();
                    if !ids.is_empty() {
                        self.send(super::bridge::Request::Set(
                            ids,
                            crate::job::PropertyChange::Touch,
                        ));
                    }
                }
            });
        }
        self.spec.stale_only = self.page == Page::Stale;
        let rows: Vec<JobId> = self.jobs.rows(&self.spec, &now).to_vec();
        if rows.is_empty() {
            ui.centered_and_justified(|ui| {
                ui.label(match (self.page, self.jobs.is_empty()) {
                    (Page::Stale, _) => "No stale job: nothing waits for you.",
                    (_, true) => "No jobs yet. New download (Ctrl+N), or paste URLs with Ctrl+V.",
                    _ => "No job matches the filter.",
                });
            });
            return;
        }
        let scroll_to = self
            .scroll_to_cursor
            .then(|| self.cursor.and_then(|c| rows.iter().position(|r| *r == c)))
            .flatten();
        self.scroll_to_cursor = false;
        // Selectable text would take the clicks that select rows.
        ui.style_mut().interaction.selectable_labels = false;
        let columns = visible_columns(ui.available_width());
        let mask = columns.iter().fold(0u32, |m, c| m | 1 << (*c as u32));
        // Each set of columns keeps its own widths; the Name column takes what is left.
        let mut builder = TableBuilder::new(ui)
            .id_salt((self.page == Page::Stale, mask))
            .striped(true)
            .resizable(true)
            .sense(egui::Sense::click())
            .cell_layout(egui::Layout::left_to_right(egui::Align::Center));
        for column in &columns {
            builder = builder.column(match column {
                Column::Name => Width::remainder()
                    .at_least(NAME_MIN)
                    .resizable(false)
                    .clip(true),
                other => Width::initial(column_width(*other))
                    .at_least(30.0)
                    .clip(true),
            });
        }
        if let Some(row) = scroll_to {
            builder = builder.scroll_to_row(row, None);
        }
        let mut clicked: Option<(JobId, Modifiers)> = None;
        let mut double_clicked: Option<JobId> = None;
        let mut right_clicked: Option<JobId> = None;
        let mut menu_action: Option<RowAction> = None;
        let mut sort_by = None;
        builder
            .header(ROW_HEIGHT, |mut header| {
                for column in columns.iter().copied() {
                    header.col(|ui| {
                        let arrow = match (self.spec.sort == column, self.spec.ascending) {
                            _ if self.page == Page::Stale => "",
                            (true, true) => " ⏶",
                            (true, false) => " ⏷",
                            _ => "",
                        };
                        let text = RichText::new(format!("{}{arrow}", column.title())).strong();
                        if ui.add(egui::Button::new(text).frame(false)).clicked() {
                            sort_by = Some(column);
                        }
                    });
                }
            })
            .body(|body| {
                body.rows(ROW_HEIGHT, rows.len(), |mut row| {
                    let id = rows[row.index()];
                    let Some(entry) = self.jobs.get(&id) else {
                        return;
                    };
                    let selected = self.selection.contains(&id);
                    row.set_selected(selected);
                    row_cells(&mut row, entry, &now, &columns);
                    let response = row.response();
                    // To screen readers, a row of the table with its selected state and what
                    // it shows in one line.
                    response.ctx.accesskit_node_builder(response.id, |node| {
                        node.set_role(egui::accesskit::Role::Row);
                        node.set_label(row_summary(entry, &now));
                        node.set_selected(selected);
                    });
                    if response.clicked() {
                        clicked = Some((id, response.ctx.input(|i| i.modifiers)));
                    }
                    if response.double_clicked() {
                        double_clicked = Some(id);
                    }
                    if response.secondary_clicked() && !selected {
                        // A right click on a row outside the selection acts on that row alone.
                        right_clicked = Some(id);
                    }
                    // The menu acts on the selection when the row is in it, else on the row.
                    let targets: Vec<&Job> = if selected {
                        self.selection
                            .iter()
                            .filter_map(|id| self.jobs.get(id).map(|e| &e.job))
                            .collect()
                    } else {
                        vec![&entry.job]
                    };
                    response.context_menu(|ui| {
                        if let Some(action) = row_menu(ui, &targets) {
                            menu_action = Some(action);
                            ui.close();
                        }
                    });
                });
            });
        if let Some(id) = right_clicked {
            self.selection = BTreeSet::from([id]);
            self.cursor = Some(id);
            self.anchor = Some(id);
        }
        if let Some(id) = double_clicked {
            self.open_job(id);
        }
        if let Some(action) = menu_action {
            self.row_action(action);
        }
        if let Some(column) = sort_by {
            if self.spec.sort == column {
                self.spec.ascending = !self.spec.ascending;
            } else {
                self.spec.sort = column;
                self.spec.ascending = true;
            }
        }
        if let Some((id, modifiers)) = clicked {
            self.click_row(id, modifiers, &rows);
        }
    }

    fn click_row(&mut self, id: JobId, modifiers: Modifiers, rows: &[JobId]) {
        if modifiers.command {
            if !self.selection.remove(&id) {
                self.selection.insert(id);
            }
        } else if modifiers.shift
            && let Some(anchor) = self
                .anchor
                .or(self.cursor)
                .and_then(|c| rows.iter().position(|r| *r == c))
            && let Some(at) = rows.iter().position(|r| *r == id)
        {
            let (from, to) = (anchor.min(at), anchor.max(at));
            self.selection = rows[from..=to].iter().copied().collect();
            self.cursor = Some(id);
            return;
        } else {
            self.selection = BTreeSet::from([id]);
        }
        self.cursor = Some(id);
        self.anchor = Some(id);
    }

    fn details(&mut self, ui: &mut egui::Ui, id: JobId) {
        let now = self.now();
        let mut complete_change = None;
        let Some(entry) = self.jobs.get(&id) else {
            return;
        };
        let job = &entry.job;
        let (icon, colour) = state_look(job.state, job.job_type);
        ui.add(egui::Label::new(RichText::new(super::notices::job_label(job)).heading()).wrap());
        ui.label(
            RichText::new(format!("{icon} {}", job.state))
                .color(colour)
                .strong(),
        );
        if let Some(error) = &job.error
            && matches!(job.state, JobState::Error | JobState::TransientError)
        {
            ui.separator();
            ui.label(
                RichText::new(format!(
                    "{} {} · {}",
                    error.code.name(),
                    error.code.hresult_text(),
                    error.context.name()
                ))
                .strong()
                .color(colour),
            );
            // The message once; the advice only when it adds something.
            let advice = error.code.advice();
            if !error.description.is_empty() {
                ui.add(egui::Label::new(&error.description).wrap());
            }
            if error.description.is_empty() || !error.description.contains(advice.as_str()) {
                ui.add(egui::Label::new(RichText::new(advice).italics()).wrap());
            }
            if let Some(file) = error.file.and_then(|i| job.files.get(i)) {
                ui.add(
                    egui::Label::new(
                        RichText::new(crate::job::redact_url(&file.remote_url))
                            .small()
                            .weak(),
                    )
                    .wrap(),
                );
            }
            if let Some(at) = job.retry.next_retry_at {
                ui.label(format!("Next retry {}", at.format("%Y-%m-%d %H:%M:%S UTC")));
            }
        }
        ui.separator();
        if !job.state.is_final() {
            let mut on = job.complete_when_transferred;
            if ui
                .checkbox(&mut on, "Complete when transferred")
                .on_hover_text(
                    "The service moves the files to their names as soon as every byte is here, \
                     also with the window closed. Off: the job waits in TRANSFERRED for Complete.",
                )
                .changed()
            {
                complete_change = Some(on);
            }
        }
        egui::CollapsingHeader::new("Properties")
            .default_open(true)
            .show(ui, |ui| properties(ui, job, &now));
        ui.separator();
        ui.label(RichText::new("Speed").strong());
        let points: Vec<[f64; 2]> = entry.speed.history.iter().copied().collect();
        egui_plot::Plot::new(("speed", id.0))
            .height(110.0)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .include_y(0.0)
            .y_axis_formatter(|mark, _| format::rate(mark.value))
            .x_axis_formatter(|_, _| String::new())
            .show(ui, |plot| {
                plot.line(egui_plot::Line::new("bytes/s", points).color(theme::SPEED_LINE));
            });
        ui.separator();
        ui.label(RichText::new(format!("Files ({})", job.files.len())).strong());
        for (index, file) in job.files.iter().enumerate() {
            let fraction = match file.bytes_total {
                Some(0) => 1.0,
                Some(total) => (file.bytes_transferred as f64 / total as f64).min(1.0) as f32,
                None => 0.0,
            };
            let name = file
                .local_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let state = if file.completed {
                "committed"
            } else if file.transferred {
                "transferred"
            } else {
                ""
            };
            ui.label(format!("{}. {name} {state}", index + 1));
            ui.add(progress_bar(fraction).text(format!(
                "{} / {}",
                format::bytes(file.bytes_transferred),
                file.bytes_total.map(format::bytes).unwrap_or_else(|| "?".into())
            )));
            ui.add(egui::Label::new(RichText::new(&file.remote_url).small().weak()).wrap());
            ui.add(
                egui::Label::new(
                    RichText::new(file.local_path.display().to_string())
                        .small()
                        .weak(),
                )
                .wrap(),
            );
        }
        if let Some(session) = &job.upload_session {
            ui.label(
                RichText::new(format!("Upload session {session}"))
                    .small()
                    .weak(),
            );
        }
        if let Some(reply) = job.reply_progress() {
            ui.separator();
            ui.label(RichText::new("Reply").strong());
            let fraction = match reply.bytes_total {
                Some(0) => 1.0,
                Some(total) => (reply.bytes_transferred as f64 / total as f64).min(1.0) as f32,
                None => 0.0,
            };
            ui.add(progress_bar(fraction).text(format!(
                "{} / {}",
                format::bytes(reply.bytes_transferred),
                reply
                    .bytes_total
                    .map(format::bytes)
                    .unwrap_or_else(|| "?".into())
            )));
            let source = match job.reply.download.as_ref().map(|r| r.remote_url.as_str()) {
                Some("") => "the server sent no reply".to_string(),
                Some(url) => url.to_string(),
                None => "named by the server once the upload is done".to_string(),
            };
            ui.label(RichText::new(source).small().weak());
            let file = job
                .reply
                .file_name
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "named at the first Resume".into());
            ui.label(
                RichText::new(format!("Saved by Complete to {file}"))
                    .small()
                    .weak(),
            );
        }
        if let Some(on) = complete_change {
            self.send(super::bridge::Request::Set(
                vec![id],
                crate::job::PropertyChange::CompleteWhenTransferred(on),
            ));
        }
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
            });
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

/// What a history row's context menu asks for.
enum HistoryAction {
    Open(std::path::PathBuf),
    Copy(String),
    /// New download of these URLs (one per line).
    Again(String),
}

fn history_menu(ui: &mut egui::Ui, entry: &crate::store::HistoryEntry) -> Option<HistoryAction> {
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
        action = Some(HistoryAction::Open(file.local_path.clone()));
    }
    if let Some(folder) = entry.files.first().and_then(|f| f.local_path.parent())
        && ui.button("Open folder").clicked()
    {
        action = Some(HistoryAction::Open(folder.to_path_buf()));
    }
    let urls: Vec<&str> = entry.files.iter().map(|f| f.remote_url.as_str()).collect();
    if ui.button("Copy URL").clicked() {
        action = Some(HistoryAction::Copy(urls.join("\n")));
    }
    if entry.job_type == JobType::Download && ui.button("Download again").clicked() {
        action = Some(HistoryAction::Again(urls.join("\n")));
    }
    action
}

/// What a row's context menu asks for.
pub(super) enum RowAction {
    OpenFile(std::path::PathBuf),
    OpenFolder(std::path::PathBuf),
    CopyUrls(String),
    Act(Action, Vec<JobId>),
    Complete(Vec<JobId>),
    Cancel(Vec<JobId>),
    Priority(Vec<JobId>, Priority),
    Keep(Vec<JobId>),
    EditUrl(JobId, usize),
}

/// The downloaded file a job's row opens: its only file, once committed (ACKNOWLEDGED).
pub(super) fn openable_file(job: &Job) -> Option<&std::path::Path> {
    match (job.state, job.job_type, job.files.as_slice()) {
        (JobState::Acknowledged, JobType::Download, [file]) => Some(&file.local_path),
        _ => None,
    }
}

/// The folder a job's files go to (its first file's).
pub(super) fn job_folder(job: &Job) -> Option<&std::path::Path> {
    job.files.first().and_then(|f| f.local_path.parent())
}

/// The context menu of a row: the file and its folder, the URL, and the job actions, each
/// enabled by the state of the jobs it acts on (as the toolbar's buttons).
fn row_menu(ui: &mut egui::Ui, jobs: &[&Job]) -> Option<RowAction> {
    let mut action = None;
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    let single = (jobs.len() == 1).then(|| jobs[0]);
    if let Some(job) = single {
        let file = openable_file(job);
        if ui
            .add_enabled(file.is_some(), egui::Button::new("Open file"))
            .on_disabled_hover_text("Once the job is completed (its file is at its name)")
            .clicked()
            && let Some(file) = file
        {
            action = Some(RowAction::OpenFile(file.to_path_buf()));
        }
        let folder = job_folder(job).map(std::path::Path::to_path_buf);
        if ui
            .add_enabled(folder.is_some(), egui::Button::new("Open folder"))
            .clicked()
            && let Some(folder) = folder
        {
            action = Some(RowAction::OpenFolder(folder));
        }
    }
    let urls: Vec<String> = jobs
        .iter()
        .flat_map(|j| {
            j.files
                .iter()
                .map(|f| crate::job::redact_url(&f.remote_url))
        })
        .collect();
    if ui
        .add_enabled(!urls.is_empty(), egui::Button::new("Copy URL"))
        .clicked()
    {
        action = Some(RowAction::CopyUrls(urls.join("\n")));
    }
    ui.separator();
    let retry = jobs
        .iter()
        .any(|j| matches!(j.state, JobState::Error | JobState::TransientError));
    let resume = rules::resume(jobs);
    let label = if retry { "Retry" } else { "Resume" };
    if menu_item(ui, label, &resume.availability()) {
        action = Some(RowAction::Act(Action::Resume, resume.ids()));
    }
    let suspend = rules::suspend(jobs);
    if menu_item(ui, "Suspend", &suspend.availability()) {
        action = Some(RowAction::Act(Action::Suspend, suspend.ids()));
    }
    if menu_item(ui, "Complete", &rules::complete(jobs).availability()) {
        action = Some(RowAction::Complete(ids.clone()));
    }
    if menu_item(ui, "Cancel…", &rules::cancel(jobs).availability()) {
        action = Some(RowAction::Cancel(ids.clone()));
    }
    let change = rules::change(jobs);
    ui.add_enabled_ui(change.availability().is_enabled(), |ui| {
        ui.menu_button("Priority", |ui| {
            for p in Priority::ALL {
                if ui.button(p.name()).clicked() {
                    action = Some(RowAction::Priority(change.ids(), p));
                }
            }
        });
    });
    if menu_item(ui, "Keep", &change.availability()) {
        action = Some(RowAction::Keep(change.ids()));
    }
    if let Some(job) = single
        && job.job_type == JobType::Download
        && !job.state.is_final()
    {
        // The file that failed, else the first.
        let file = job
            .error
            .as_ref()
            .and_then(|e| e.file)
            .filter(|i| *i < job.files.len())
            .unwrap_or(0);
        if ui
            .add_enabled(!job.files.is_empty(), egui::Button::new("Edit URL…"))
            .on_hover_text("Give the file a new address (SetRemoteName) and retry")
            .clicked()
        {
            action = Some(RowAction::EditUrl(job.id, file));
        }
    }
    action
}

fn menu_item(ui: &mut egui::Ui, label: &str, availability: &Availability) -> bool {
    let response = ui.add_enabled(availability.is_enabled(), egui::Button::new(label));
    let response = match availability {
        Availability::Enabled => response,
        Availability::Disabled(why) => disabled_because(response, why),
    };
    response.clicked()
}

/// The Name column is never narrower than this; other columns give way first.
const NAME_MIN: f32 = 150.0;

fn column_width(column: Column) -> f32 {
    match column {
        Column::Name => NAME_MIN,
        Column::Type => 62.0,
        Column::State => 124.0,
        Column::Progress => 150.0,
        Column::Speed => 70.0,
        Column::Eta => 62.0,
        Column::Priority => 84.0,
        Column::Files => 40.0,
        Column::LastActivity => 84.0,
        Column::ExpiresIn => 80.0,
    }
}

/// The columns that fit in `width`: the least needed go first (Type, Files, Priority, ETA,
/// Last activity), so that a narrow window or an open details panel never cuts the table.
pub fn visible_columns(width: f32) -> Vec<Column> {
    const GIVE_WAY: [Column; 5] = [
        Column::Type,
        Column::Files,
        Column::Priority,
        Column::Eta,
        Column::LastActivity,
    ];
    let mut columns = Column::ALL.to_vec();
    let need =
        |columns: &[Column]| -> f32 { columns.iter().map(|c| column_width(*c) + 8.0).sum::<f32>() };
    for column in GIVE_WAY {
        if need(&columns) <= width {
            break;
        }
        columns.retain(|c| *c != column);
    }
    columns
}

/// A row read aloud: name, state, progress, and when it expires.
fn row_summary(entry: &model::Entry, now: &Now) -> String {
    let job = &entry.job;
    let progress = job.progress();
    let mut text = format!(
        "{}, {}, {} of {}",
        super::notices::job_label(job),
        job.state,
        format::bytes(progress.bytes_transferred),
        progress
            .bytes_total
            .map(format::bytes)
            .unwrap_or_else(|| "unknown size".into())
    );
    if let Some(left) = model::expires_in(job, now) {
        text.push_str(&format!(", expires in {}", format::span(left)));
    }
    text
}

fn row_cells(
    row: &mut egui_extras::TableRow<'_, '_>,
    entry: &model::Entry,
    now: &Now,
    columns: &[Column],
) {
    let job = &entry.job;
    let progress = job.progress();
    for column in columns {
        row.col(|ui| match column {
            Column::Name => {
                ui.label(super::notices::job_label(job));
            }
            Column::Type => {
                ui.label(match job.job_type {
                    JobType::Download => "Download",
                    JobType::Upload => "Upload",
                    JobType::UploadReply => "Upl.-reply",
                });
            }
            Column::State => {
                let (icon, colour) = state_look(job.state, job.job_type);
                ui.label(RichText::new(format!("{icon} {}", job.state)).color(colour));
            }
            Column::Progress => {
                let total = progress
                    .bytes_total
                    .map(format::bytes)
                    .unwrap_or_else(|| "?".into());
                let done = format::bytes(progress.bytes_transferred);
                // A cancelled job has nothing left to show progress of.
                if job.state == JobState::Cancelled {
                    ui.label(RichText::new(format!("{done} of {total}")).weak());
                    return;
                }
                let fraction = model::fraction(job);
                let text = match fraction {
                    Some(f) => format!("{:.0}% · {done} / {total}", f * 100.0),
                    None => format!("{done} / {total}"),
                };
                ui.add(
                    progress_bar(fraction.unwrap_or(0.0))
                        .text(text)
                        .desired_height(ROW_HEIGHT - 6.0),
                );
            }
            Column::Speed => {
                let rate = entry.speed.rate(now.mono);
                if job.state.is_running() && rate > 0.0 {
                    ui.label(format::rate(rate));
                }
            }
            Column::Eta => {
                if let Some(eta) = model::eta(entry, now) {
                    ui.label(format::span(eta));
                }
            }
            Column::Priority => {
                ui.label(job.priority.name());
            }
            Column::Files => {
                ui.label(format!(
                    "{}/{}",
                    progress.files_transferred, progress.files_total
                ));
            }
            Column::LastActivity => {
                ui.label(format!(
                    "{} ago",
                    format::span(format::between(job.times.modified, now.wall))
                ));
            }
            Column::ExpiresIn => {
                if let Some(left) = model::expires_in(job, now) {
                    ui.label(format::span(left));
                }
            }
        });
    }
}

fn properties(ui: &mut egui::Ui, job: &Job, now: &Now) {
    let value_width = (ui.available_width() - 130.0).max(80.0);
    egui::Grid::new("properties")
        .num_columns(2)
        .striped(true)
        .max_col_width(value_width)
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(k);
                ui.add(egui::Label::new(v).wrap());
                ui.end_row();
            };
            let time = |t: &crate::job::Timestamp| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
            let progress = job.progress();
            row("Id", job.id.to_string());
            row("Type", job.job_type.name().into());
            row("Priority", job.priority.name().into());
            row("Owner", job.owner.clone());
            if !job.description.is_empty() {
                row("Description", job.description.clone());
            }
            row(
                "Progress",
                format!(
                    "{} / {} · files {}/{}",
                    format::bytes(progress.bytes_transferred),
                    progress
                        .bytes_total
                        .map(format::bytes)
                        .unwrap_or_else(|| "?".into()),
                    progress.files_transferred,
                    progress.files_total
                ),
            );
            row("Created", time(&job.times.created));
            row("Last activity", time(&job.times.modified));
            if let Some(at) = &job.times.transfer_completed {
                row("Transferred", time(at));
            }
            if let Some(left) = model::expires_in(job, now) {
                row(
                    "Expires",
                    format!(
                        "in {} ({})",
                        format::span(left),
                        time(&job.inactivity_deadline(now.inactivity_timeout))
                    ),
                );
            }
            row("Retry delay", format::span(job.minimum_retry_delay));
            row("No-progress timeout", format::span(job.no_progress_timeout));
            row("Max download time", format::span(job.max_download_time));
            row("Error count", job.error_count.to_string());
            row("Notify flags", format!("0x{:X}", job.notify_flags.0));
            row("Proxy", job.proxy.usage.name().into());
            row("Redirects", job.redirect_policy.mode.name().into());
            row(
                "Replace existing",
                if job.replace_existing { "yes" } else { "no" }.into(),
            );
            row(
                "Dynamic content",
                if job.dynamic_content { "yes" } else { "no" }.into(),
            );
            if !job.custom_headers.is_empty() {
                row("Custom headers", job.custom_headers.len().to_string());
            }
            if job.credentials_dropped {
                row(
                    "Credentials",
                    "not kept across the restart: set them again".into(),
                );
            }
        });
}

/// Progress in the theme's colour (egui's default is the selection colour, invisible on a
/// selected row). egui draws an empty bar with a dot of fill (its rounded end); nothing done
/// shows no fill.
fn progress_bar(fraction: f32) -> egui::ProgressBar {
    let bar = egui::ProgressBar::new(fraction);
    if fraction > 0.0 {
        bar.fill(theme::PROGRESS)
    } else {
        bar.fill(egui::Color32::TRANSPARENT)
    }
}
