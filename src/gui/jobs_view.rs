//! The Jobs and Stale pages: the job table with its selection and keyboard cursor, the job
//! actions, the row menu and the details of one job. The view reads the jobs (`Jobs`, borrowed
//! mutably only for its cache of sorted rows) and says what the user asked for as [`Command`]s;
//! the window carries them out (asks, sends, opens).
//! So it can be drawn and tested on a seeded `Jobs`, without a service.

use super::bridge::{Action, Request};
use super::format;
use super::model::{self, Column, Jobs, Now, ViewSpec};
use super::rules::{self, Availability};
use super::theme;
use crate::job::{Job, JobId, JobState, JobType, Priority, PropertyChange};
use egui::{Color32, Key, Modifiers, RichText};
use egui_extras::{Column as Width, TableBuilder};
use std::collections::BTreeSet;
use std::path::PathBuf;

pub(super) const ROW_HEIGHT: f32 = 22.0;

/// What a view asks the window to do.
#[derive(Debug)]
pub enum Command {
    /// To the service as it is (the view already chose the suitable jobs).
    Request(Request),
    /// Resume, Suspend, Complete or Cancel of these jobs, by the window's rules: the suitable
    /// ones, with a confirmation where the action deletes or loses files, naming the skipped.
    Ask(Action, Vec<JobId>),
    /// Open a file or folder with the desktop's application.
    Open(PathBuf),
    /// Put this text on the clipboard.
    Copy(String),
    /// Give file `usize` of the job a new URL (the Edit URL dialog).
    EditUrl(JobId, usize),
    /// A New download of these URLs, one per line.
    NewDownload(String),
}

/// The state of the Jobs and Stale pages: which rows show, which are selected, where the
/// keyboard is.
#[derive(Default)]
pub struct JobsView {
    pub spec: ViewSpec,
    selection: BTreeSet<JobId>,
    /// The row the keyboard is on.
    cursor: Option<JobId>,
    /// Where a range selection starts: Shift+click and Shift+arrow select from here.
    anchor: Option<JobId>,
    scroll_to_cursor: bool,
    /// The rows version (see [`Jobs::rows_version`]) the selection was last pruned against.
    pruned: Option<u64>,
}

impl JobsView {
    pub fn selection(&self) -> &BTreeSet<JobId> {
        &self.selection
    }

    /// Selects these jobs (they leave the selection again if they are not shown).
    pub fn select(&mut self, ids: impl IntoIterator<Item = JobId>) {
        self.selection = ids.into_iter().collect();
        self.pruned = None;
    }

    /// Selects one job, puts the keyboard on it and scrolls it into view.
    pub fn focus(&mut self, id: JobId) {
        self.select([id]);
        self.cursor = Some(id);
        self.anchor = Some(id);
        self.scroll_to_cursor = true;
    }

    /// A job is gone (removed from the service): it leaves the selection.
    pub fn forget(&mut self, id: &JobId) {
        self.selection.remove(id);
    }

    /// After a full listing: jobs the service no longer has leave the selection.
    pub fn retain_known(&mut self, jobs: &Jobs) {
        self.selection.retain(|id| jobs.get(id).is_some());
    }

    pub fn clear_selection(&mut self) {
        self.selection.clear();
    }

    /// The one selected job whose details show, if exactly one is selected and known.
    pub fn detail<'a>(&self, jobs: &'a Jobs) -> Option<&'a model::Entry> {
        match self.selection.len() {
            1 => self.selection.first().and_then(|id| jobs.get(id)),
            _ => None,
        }
    }

    pub fn selected_jobs<'a>(&self, jobs: &'a Jobs) -> Vec<&'a Job> {
        self.selection
            .iter()
            .filter_map(|id| jobs.get(id).map(|e| &e.job))
            .collect()
    }

    /// Before drawing: shows the Stale view or all jobs, and keeps in the selection only what
    /// the user sees selected: rows that left the view (filtered out, removed) leave it, so that
    /// no action reaches a job the user cannot see. Checked only when the rows changed.
    pub fn prepare(&mut self, jobs: &mut Jobs, now: &Now, stale: bool) {
        // Another page is another spec: its rows, and so their version, are new.
        self.spec.stale_only = stale;
        if self.selection.is_empty() {
            return;
        }
        let rows = jobs.rows(&self.spec, now);
        let version = jobs.rows_version();
        if self.pruned == Some(version) {
            return;
        }
        let visible: std::collections::HashSet<JobId> = rows.iter().copied().collect();
        // A job just created is selected before the service reports it: it stays.
        self.selection
            .retain(|id| visible.contains(id) || jobs.get(id).is_none());
        self.pruned = Some(version);
    }

    /// The keys of the job pages: Ctrl+Enter, Delete, Space, Ctrl+A, Escape and the arrows
    /// (Shift extends). Call only when no text field has the keyboard.
    pub fn keys(
        &mut self,
        ctx: &egui::Context,
        jobs: &mut Jobs,
        now: &Now,
        out: &mut Vec<Command>,
    ) {
        let pressed =
            |modifiers: Modifiers, key: Key| ctx.input_mut(|i| i.consume_key(modifiers, key));
        let selected = || self.selection.iter().copied().collect::<Vec<_>>();
        if pressed(Modifiers::COMMAND, Key::Enter) {
            out.push(Command::Ask(Action::Complete, selected()));
        } else if pressed(Modifiers::NONE, Key::Delete) {
            out.push(Command::Ask(Action::Cancel, selected()));
        } else if pressed(Modifiers::NONE, Key::Space) {
            // Resume when the selection has jobs waiting to be resumed, else suspend.
            let action = if rules::resume(&self.selected_jobs(jobs)).ok.is_empty() {
                Action::Suspend
            } else {
                Action::Resume
            };
            out.push(Command::Ask(action, selected()));
        } else if pressed(Modifiers::COMMAND, Key::A) {
            self.select(jobs.rows(&self.spec, now).iter().copied());
        } else if pressed(Modifiers::NONE, Key::Escape) {
            self.selection.clear();
        // Shift first: `consume_key` ignores an extra Shift, so the plain arrow would take it.
        } else if pressed(Modifiers::SHIFT, Key::ArrowDown) {
            self.move_cursor(jobs, now, 1, true);
        } else if pressed(Modifiers::SHIFT, Key::ArrowUp) {
            self.move_cursor(jobs, now, -1, true);
        } else if pressed(Modifiers::NONE, Key::ArrowDown) {
            self.move_cursor(jobs, now, 1, false);
        } else if pressed(Modifiers::NONE, Key::ArrowUp) {
            self.move_cursor(jobs, now, -1, false);
        }
    }

    fn move_cursor(&mut self, jobs: &mut Jobs, now: &Now, step: isize, extend: bool) {
        let rows = jobs.rows(&self.spec, now);
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

    /// Resume, Suspend, Complete, Cancel and Priority for the selection: in the toolbar when it
    /// is wide, in its Actions menu when not. Each acts on the suitable selected jobs.
    pub fn actions(&self, ui: &mut egui::Ui, jobs: &Jobs, out: &mut Vec<Command>) {
        let jobs = self.selected_jobs(jobs);
        let resume = rules::resume(&jobs).availability();
        let suspend = rules::suspend(&jobs).availability();
        let complete = rules::complete(&jobs).availability();
        let cancel = rules::cancel(&jobs).availability();
        let priority = rules::change(&jobs).availability();
        let current_priority = jobs.first().map(|j| j.priority);
        let mut clicked = None;
        if action_button(
            ui,
            "Resume",
            &resume,
            Some("Space toggles Resume and Suspend"),
        ) {
            clicked = Some(Action::Resume);
        }
        if action_button(
            ui,
            "Suspend",
            &suspend,
            Some("Space toggles Resume and Suspend"),
        ) {
            clicked = Some(Action::Suspend);
        }
        let complete_hint = if jobs.iter().all(|j| j.job_type.is_upload()) && !jobs.is_empty() {
            "Ctrl+Enter: finish the uploads (and save the replies)"
        } else {
            "Ctrl+Enter: move the transferred files to their names"
        };
        if action_button(ui, "Complete", &complete, Some(complete_hint)) {
            clicked = Some(Action::Complete);
        }
        if action_button(
            ui,
            "Cancel",
            &cancel,
            Some("Delete: remove the jobs and their temporary files"),
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
        let ids = || self.selection.iter().copied().collect::<Vec<_>>();
        if let Some(p) = chosen {
            out.push(Command::Request(Request::Set(
                ids(),
                PropertyChange::Priority(p),
            )));
        }
        out.extend(clicked.map(|action| Command::Ask(action, ids())));
    }

    /// The table of the Jobs or Stale page (after [`JobsView::prepare`]).
    pub fn table(&mut self, ui: &mut egui::Ui, jobs: &mut Jobs, now: &Now, out: &mut Vec<Command>) {
        let stale = self.spec.stale_only;
        if stale {
            ui.horizontal(|ui| {
                ui.label(format!(
                    "Jobs waiting for you: TRANSFERRED or in ERROR, or idle for {} days or more; \
                     the next to expire first.",
                    self.spec.stale_after.as_secs() / 86_400
                ));
                if ui.button("Select all").clicked() {
                    self.select(jobs.rows(&self.spec, now).iter().copied());
                }
                if ui
                    .button("Keep all")
                    .on_hover_text("Counts as activity for every job listed here: their inactivity timers start again")
                    .clicked()
                {
                    let ids: Vec<JobId> = jobs.rows(&self.spec, now).to_vec();
                    if !ids.is_empty() {
                        out.push(Command::Request(Request::Set(ids, PropertyChange::Touch)));
                    }
                }
            });
        }
        // Shared, not copied: 10,000 ids a frame would be a needless copy.
        let rows = jobs.rows(&self.spec, now);
        if rows.is_empty() {
            ui.centered_and_justified(|ui| {
                ui.label(match (stale, jobs.is_empty()) {
                    (true, _) => "No stale job: nothing waits for you.",
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
        // Labels while AccessKit is on (a screen reader, or the tests), painted text otherwise.
        let cell_text = CellText {
            widgets: ui
                .ctx()
                .accesskit_node_builder(ui.unique_id(), |_| ())
                .is_some(),
        };
        let columns = visible_columns(ui.available_width());
        // One id whatever the columns: the rows' ids, the open row menu and the scroll position
        // hang on it, and the columns change when a selection opens the details panel. (The
        // column widths start again when the set of columns changes; the Name column takes
        // what is left.)
        let mut builder = TableBuilder::new(ui)
            .id_salt(stale)
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
        let mut menu_action: Option<Command> = None;
        let mut sort_by = None;
        builder
            .header(ROW_HEIGHT, |mut header| {
                for column in columns.iter().copied() {
                    header.col(|ui| {
                        let arrow = match (self.spec.sort == column, self.spec.ascending) {
                            _ if stale => "",
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
                    let Some(entry) = jobs.get(&id) else {
                        return;
                    };
                    let selected = self.selection.contains(&id);
                    row.set_selected(selected);
                    row_cells(&mut row, entry, now, &columns, cell_text);
                    let response = row.response();
                    // To screen readers, a row of the table with its selected state and what
                    // it shows in one line.
                    response.ctx.accesskit_node_builder(response.id, |node| {
                        node.set_role(egui::accesskit::Role::Row);
                        node.set_label(row_summary(entry, now));
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
                    response.context_menu(|ui| {
                        // The menu acts on the selection when the row is in it, else on the row
                        // (gathered only while the menu is open: not for every row and frame).
                        let targets: Vec<&Job> = if selected {
                            self.selection
                                .iter()
                                .filter_map(|id| jobs.get(id).map(|e| &e.job))
                                .collect()
                        } else {
                            vec![&entry.job]
                        };
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
        if let Some(file) = double_clicked
            .and_then(|id| jobs.get(&id))
            .and_then(|e| openable_file(&e.job))
        {
            // A completed download opens; any other job just shows its details.
            out.push(Command::Open(file.to_path_buf()));
        }
        out.extend(menu_action);
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
}

/// The details panel of one job: state, error, properties, speed, files, reply.
pub fn details(ui: &mut egui::Ui, entry: &model::Entry, now: &Now, out: &mut Vec<Command>) {
    let id = entry.job.id;
    let mut complete_change = None;
    let mut setting_change = None;
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
        setting_change = transfer_settings(ui, job);
    }
    egui::CollapsingHeader::new("Properties")
        .default_open(true)
        .show(ui, |ui| properties(ui, job, now));
    ui.separator();
    ui.label(RichText::new("Speed").strong());
    if let Some(held) = model::held_back(job, entry.speed.rate(now.mono), &now.limits) {
        ui.label(RichText::new(held.describe()).color(ui.visuals().warn_fg_color));
    }
    let points: Vec<[f64; 2]> = entry.speed.history.iter().copied().collect();
    egui_plot::Plot::new(("speed", id.0))
        .height(110.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .include_y(0.0)
        .y_axis_formatter(|mark, _| format::rate(mark.value))
        .y_grid_spacer(|input| rate_marks(input.bounds))
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
        if !file.segments.is_empty() && !file.transferred {
            segment_bars(ui, index, &file.segments);
        }
        if let Some(checksum) = &file.checksum {
            let (text, color) = if file.checksum_verified {
                (
                    format!("✔ {} verified", checksum.algorithm.name()),
                    theme::SUCCESS,
                )
            } else {
                (
                    format!("{} checked when downloaded", checksum.algorithm.name()),
                    ui.visuals().weak_text_color(),
                )
            };
            ui.label(RichText::new(text).small().color(color))
                .on_hover_text(checksum.to_string());
        }
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
    if let Some(change) = setting_change {
        out.push(Command::Request(Request::Set(vec![id], change)));
    }
    if let Some(on) = complete_change {
        out.push(Command::Request(Request::Set(
            vec![id],
            PropertyChange::CompleteWhenTransferred(on),
        )));
    }
}

/// Grid marks of the speed graph from 0 to `bounds.1`: three or four at a round 1, 2 or 5 × 10ⁿ
/// apart. egui_plot's default, powers of ten, puts six marks on 0–55 MB/s in a 110-point graph,
/// too close for their labels, and the axis showed nothing but "0 B/s".
pub fn rate_marks(bounds: (f64, f64)) -> Vec<egui_plot::GridMark> {
    let top = bounds.1;
    if !top.is_finite() || top <= 0.0 {
        return Vec::new();
    }
    let rough = top / 3.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * power);
    (0..)
        .map(|i| i as f64 * step)
        .take_while(|value| *value <= top)
        .map(|value| egui_plot::GridMark {
            value,
            step_size: step,
        })
        .collect()
}

/// Connections per file and files at once (downloads), and the speed limit, as menus; the
/// change the user picked.
fn transfer_settings(ui: &mut egui::Ui, job: &crate::job::Job) -> Option<PropertyChange> {
    let mut change = None;
    ui.horizontal_wrapped(|ui| {
        if job.job_type == JobType::Download {
            let mut connections = job.connections;
            connections_menu(
                ui,
                ("connections", job.id.0),
                "Connections per file",
                &mut connections,
            );
            if connections != job.connections {
                change = Some(PropertyChange::Connections(connections));
            }
            let mut at_once = job.parallel_files;
            files_at_once_menu(ui, ("parallel-files", job.id.0), &mut at_once);
            if at_once != job.parallel_files {
                change = Some(PropertyChange::ParallelFiles(at_once));
            }
        }
        let mut limit = job.limit_rate;
        limit_menu(
            ui,
            ("limit-rate", job.id.0),
            "Speed limit",
            &mut limit,
            "This job's speed limit, all its connections together, on top of the global \
             limits (Settings). Changed at once, also mid-transfer.",
        );
        if limit != job.limit_rate {
            change = Some(PropertyChange::LimitRate(limit));
        }
    });
    change
}

/// The useful speed limits, in KiB/s (any other, set with `ferry set --limit-rate`, is shown
/// too).
const LIMIT_CHOICES_KIB: [u64; 10] = [
    256,
    512,
    1 << 10,
    2 << 10,
    5 << 10,
    10 << 10,
    20 << 10,
    50 << 10,
    100 << 10,
    500 << 10,
];

fn limit_choices() -> impl Iterator<Item = crate::job::Rate> {
    LIMIT_CHOICES_KIB
        .iter()
        .filter_map(|kib| crate::job::Rate::new(kib * 1024).ok())
}

/// A menu of speed limits (`None`: no limit): here, in New download, Settings and the status
/// bar.
pub(crate) fn limit_menu(
    ui: &mut egui::Ui,
    id: impl std::hash::Hash + std::fmt::Debug,
    label: &str,
    limit: &mut Option<crate::job::Rate>,
    hover: &str,
) -> egui::Response {
    let shown = |rate: Option<crate::job::Rate>| rate.map_or("none".to_string(), format::limit);
    let choices: Vec<Option<crate::job::Rate>> = std::iter::once(None)
        .chain(limit_choices().map(Some))
        .collect();
    choice_menu(ui, id, label, 96.0, limit, &choices, shown).on_hover_text(hover)
}

/// A menu of what the bandwidth schedule gives one background priority: no limit, a rate, or
/// 0, which holds its jobs.
pub(crate) fn class_limit_menu(
    ui: &mut egui::Ui,
    id: impl std::hash::Hash + std::fmt::Debug,
    name: &str,
    limit: &mut crate::job::ClassLimit,
) -> egui::Response {
    use crate::job::ClassLimit;
    let shown = |limit: ClassLimit| match limit {
        ClassLimit::Unlimited => "none".to_string(),
        ClassLimit::Blocked => "0 (hold)".to_string(),
        ClassLimit::Limited(rate) => format::limit(rate),
    };
    let choices: Vec<ClassLimit> = [ClassLimit::Unlimited, ClassLimit::Blocked]
        .into_iter()
        .chain(limit_choices().map(ClassLimit::Limited))
        .collect();
    let response = choice_menu(ui, id, "", 72.0, limit, &choices, shown);
    named(response, egui::Role::ComboBox, name)
}

/// A menu of `choices`, plus the current value when it is none of them (set elsewhere).
fn choice_menu<T: Copy + PartialEq>(
    ui: &mut egui::Ui,
    id: impl std::hash::Hash + std::fmt::Debug,
    label: &str,
    width: f32,
    value: &mut T,
    choices: &[T],
    shown: impl Fn(T) -> String,
) -> egui::Response {
    egui::ComboBox::new(id, label)
        .width(width)
        .selected_text(shown(*value))
        .show_ui(ui, |ui| {
            if !choices.contains(value) {
                ui.selectable_value(value, *value, shown(*value));
            }
            for choice in choices {
                ui.selectable_value(value, *choice, shown(*choice));
            }
        })
        .response
}

/// Names a widget for screen readers where a grid's heading says it to the eye.
pub(crate) fn named(response: egui::Response, role: egui::Role, name: &str) -> egui::Response {
    let name = name.to_string();
    response.widget_info(|| egui::WidgetInfo::labeled(role, true, name.clone()));
    response
}

/// The menu of connections per file (`None`: the config's default), here and in New download.
pub(crate) fn connections_menu(
    ui: &mut egui::Ui,
    id: impl std::hash::Hash + std::fmt::Debug,
    label: &str,
    connections: &mut Option<u32>,
) {
    let shown = |n: Option<u32>| n.map_or("default".to_string(), |n| n.to_string());
    egui::ComboBox::new(id, label)
        .width(84.0)
        .selected_text(shown(*connections))
        .show_ui(ui, |ui| {
            for n in CONNECTION_CHOICES {
                ui.selectable_value(connections, n, shown(n));
            }
        })
        .response
        .on_hover_text(
            "A file is split over this many connections when its server serves ranges \
             (default: the config's, 8 for FOREGROUND, 1 for the others). For a job that runs, \
             from its next start.",
        );
}

/// The menu of how many of a job's files download at once, here and in New download.
pub(crate) fn files_at_once_menu(
    ui: &mut egui::Ui,
    id: impl std::hash::Hash + std::fmt::Debug,
    at_once: &mut u32,
) {
    egui::ComboBox::new(id, "Files at once")
        .width(84.0)
        .selected_text(at_once.to_string())
        .show_ui(ui, |ui| {
            for n in PARALLEL_CHOICES {
                ui.selectable_value(at_once, n, n.to_string());
            }
        })
        .response
        .on_hover_text(
            "How many of the job's files download at once; they are still reported done in \
             their order. For a job that runs, from its next start.",
        );
}

/// The choices of the two menus (the model accepts any value in range; these are the useful
/// ones).
const CONNECTION_CHOICES: [Option<u32>; 6] = [None, Some(1), Some(2), Some(4), Some(8), Some(16)];
const PARALLEL_CHOICES: [u32; 6] = [1, 2, 4, 8, 16, 32];

/// A small bar per piece of a file split over several connections: where each one stands.
fn segment_bars(ui: &mut egui::Ui, file: usize, segments: &[crate::job::Segment]) {
    egui::CollapsingHeader::new(format!("Pieces ({})", segments.len()))
        .id_salt(("pieces", file))
        .default_open(true)
        .show(ui, |ui| {
            for piece in segments {
                let size = piece.end.saturating_sub(piece.start);
                let fraction = if size == 0 {
                    1.0
                } else {
                    (piece.written_len() as f64 / size as f64).min(1.0) as f32
                };
                ui.add(
                    progress_bar(fraction).desired_height(10.0).text(
                        RichText::new(format!(
                            "{} of {} from {}",
                            format::bytes(piece.written_len()),
                            format::bytes(size),
                            format::bytes(piece.start)
                        ))
                        .small(),
                    ),
                );
            }
        });
}

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

/// A button enabled by the rules, with `hint` as its tooltip, or else its reason (toolbar and
/// row menu alike).
fn action_button(
    ui: &mut egui::Ui,
    label: &str,
    availability: &Availability,
    hint: Option<&str>,
) -> bool {
    let response = ui.add_enabled(availability.is_enabled(), egui::Button::new(label));
    let response = match (availability, hint) {
        (Availability::Enabled, Some(hint)) => response.on_hover_text(hint),
        (Availability::Enabled, None) => response,
        (Availability::Disabled(why), _) => disabled_because(response, why),
    };
    response.clicked()
}

/// A disabled widget says why: in its tooltip, and to screen readers as its description.
pub(super) fn disabled_because(response: egui::Response, why: &str) -> egui::Response {
    response.ctx.accesskit_node_builder(response.id, |node| {
        node.set_description(why.to_string());
    });
    response.on_disabled_hover_text(why)
}

/// The downloaded file a job's row opens: its only file, once committed (ACKNOWLEDGED).
pub fn openable_file(job: &Job) -> Option<&std::path::Path> {
    match (job.state, job.job_type, job.files.as_slice()) {
        (JobState::Acknowledged, JobType::Download, [file]) => Some(&file.local_path),
        _ => None,
    }
}

/// The folder a job's files go to (its first file's).
pub fn job_folder(job: &Job) -> Option<&std::path::Path> {
    job.files.first().and_then(|f| f.local_path.parent())
}

/// The context menu of a row: the file and its folder, the URL, and the job actions, each
/// enabled by the state of the jobs it acts on (as the toolbar's buttons).
fn row_menu(ui: &mut egui::Ui, jobs: &[&Job]) -> Option<Command> {
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
            action = Some(Command::Open(file.to_path_buf()));
        }
        let folder = job_folder(job).map(std::path::Path::to_path_buf);
        if ui
            .add_enabled(folder.is_some(), egui::Button::new("Open folder"))
            .clicked()
            && let Some(folder) = folder
        {
            action = Some(Command::Open(folder));
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
        action = Some(Command::Copy(urls.join("\n")));
    }
    ui.separator();
    let retry = jobs
        .iter()
        .any(|j| matches!(j.state, JobState::Error | JobState::TransientError));
    let resume = rules::resume(jobs);
    let label = if retry { "Retry" } else { "Resume" };
    if action_button(ui, label, &resume.availability(), None) {
        action = Some(Command::Request(Request::Act(Action::Resume, resume.ids())));
    }
    let suspend = rules::suspend(jobs);
    if action_button(ui, "Suspend", &suspend.availability(), None) {
        action = Some(Command::Request(Request::Act(
            Action::Suspend,
            suspend.ids(),
        )));
    }
    if action_button(ui, "Complete", &rules::complete(jobs).availability(), None) {
        action = Some(Command::Ask(Action::Complete, ids.clone()));
    }
    if action_button(ui, "Cancel…", &rules::cancel(jobs).availability(), None) {
        action = Some(Command::Ask(Action::Cancel, ids.clone()));
    }
    let change = rules::change(jobs);
    ui.add_enabled_ui(change.availability().is_enabled(), |ui| {
        ui.menu_button("Priority", |ui| {
            for p in Priority::ALL {
                if ui.button(p.name()).clicked() {
                    action = Some(Command::Request(Request::Set(
                        change.ids(),
                        PropertyChange::Priority(p),
                    )));
                }
            }
        });
    });
    if action_button(ui, "Keep", &change.availability(), None) {
        action = Some(Command::Request(Request::Set(
            change.ids(),
            PropertyChange::Touch,
        )));
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
            action = Some(Command::EditUrl(job.id, file));
        }
    }
    action
}

/// The Name column is never narrower than this; other columns give way first.
pub(super) const NAME_MIN: f32 = 150.0;

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

/// How a cell shows its text: as a label (a widget, with its node in the accessibility tree) while
/// AccessKit is on, for screen readers and the tests that read the tree; else only painted,
/// which costs a tenth of a widget — with hundreds of cells on screen the difference is most of
/// a frame.
#[derive(Clone, Copy)]
struct CellText {
    widgets: bool,
}

impl CellText {
    fn show(self, ui: &mut egui::Ui, text: impl Into<String>, colour: Option<Color32>, weak: bool) {
        self.show_at(ui, text, colour, weak);
    }

    /// Shows `text`; returns where.
    fn show_at(
        self,
        ui: &mut egui::Ui,
        text: impl Into<String>,
        colour: Option<Color32>,
        weak: bool,
    ) -> egui::Rect {
        let text = text.into();
        if self.widgets {
            let mut rich = RichText::new(text);
            if let Some(colour) = colour {
                rich = rich.color(colour);
            }
            if weak {
                rich = rich.weak();
            }
            return ui.label(rich).rect;
        }
        let colour = colour.unwrap_or_else(|| {
            if weak {
                ui.visuals().weak_text_color()
            } else {
                ui.visuals().text_color()
            }
        });
        let font = egui::TextStyle::Body.resolve(ui.style());
        let galley = ui.painter().layout_no_wrap(text, font, colour);
        let (_, rect) = ui.allocate_space(galley.size());
        ui.painter().galley(rect.min, galley, colour);
        rect
    }
}

fn row_cells(
    row: &mut egui_extras::TableRow<'_, '_>,
    entry: &model::Entry,
    now: &Now,
    columns: &[Column],
    text: CellText,
) {
    let job = &entry.job;
    let progress = job.progress();
    let rate = entry.speed.rate(now.mono);
    let held = model::held_back(job, rate, &now.limits);
    for column in columns {
        row.col(|ui| match column {
            Column::Name => text.show(ui, super::notices::job_label(job), None, false),
            Column::Type => text.show(
                ui,
                match job.job_type {
                    JobType::Download => "Download",
                    JobType::Upload => "Upload",
                    JobType::UploadReply => "Upl.-reply",
                },
                None,
                false,
            ),
            Column::State => {
                let (icon, colour) = state_look(job.state, job.job_type);
                let rect = text.show_at(ui, format!("{icon} {}", job.state), Some(colour), false);
                // Why a job is slow or waits, on hover (the details say it too).
                if let Some(held) = held {
                    ui.interact(
                        rect,
                        ui.scope_id().with(("held", job.id.0)),
                        egui::Sense::hover(),
                    )
                    .on_hover_text(held.describe());
                }
            }
            Column::Progress => {
                let total = progress
                    .bytes_total
                    .map(format::bytes)
                    .unwrap_or_else(|| "?".into());
                let done = format::bytes(progress.bytes_transferred);
                // A cancelled job has nothing left to show progress of.
                if job.state == JobState::Cancelled {
                    text.show(ui, format!("{done} of {total}"), None, true);
                    return;
                }
                let fraction = model::fraction(job);
                let label = match fraction {
                    Some(f) => format!("{:.0}% · {done} / {total}", f * 100.0),
                    None => format!("{done} / {total}"),
                };
                ui.add(
                    progress_bar(fraction.unwrap_or(0.0))
                        .text(label)
                        .desired_height(ROW_HEIGHT - 6.0),
                );
            }
            Column::Speed => {
                if held.is_some() {
                    let warn = ui.visuals().warn_fg_color;
                    // "At most": a narrow column keeps the mark; the details say which. A job
                    // the schedule holds at 0 is not moving at all: "≤ 0 B/s" would read as a
                    // stall.
                    let shown = if job.is_blocked_by_policy() {
                        "held".to_string()
                    } else {
                        format!("≤ {}", format::rate(rate))
                    };
                    text.show(ui, shown, Some(warn), false);
                } else if job.state.is_running() && rate > 0.0 {
                    text.show(ui, format::rate(rate), None, false);
                }
            }
            Column::Eta => {
                if let Some(eta) = model::eta(entry, now) {
                    text.show(ui, format::span(eta), None, false);
                }
            }
            Column::Priority => text.show(ui, job.priority.name(), None, false),
            Column::Files => text.show(
                ui,
                format!("{}/{}", progress.files_transferred, progress.files_total),
                None,
                false,
            ),
            Column::LastActivity => text.show(
                ui,
                format!(
                    "{} ago",
                    format::span(format::between(job.times.modified, now.wall))
                ),
                None,
                false,
            ),
            Column::ExpiresIn => {
                if let Some(left) = model::expires_in(job, now) {
                    text.show(ui, format::span(left), None, false);
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
pub(super) fn progress_bar(fraction: f32) -> egui::ProgressBar {
    let bar = egui::ProgressBar::new(fraction);
    if fraction > 0.0 {
        bar.fill(theme::PROGRESS)
    } else {
        bar.fill(egui::Color32::TRANSPARENT)
    }
}

#[cfg(test)]
mod tests {
    use super::rate_marks;

    #[test]
    fn the_speed_graph_has_a_few_round_marks_at_any_speed() {
        let values =
            |top: f64| -> Vec<f64> { rate_marks((0.0, top)).iter().map(|m| m.value).collect() };
        assert_eq!(values(55e6), vec![0.0, 20e6, 40e6]);
        assert_eq!(values(2.4e6), vec![0.0, 1e6, 2e6]);
        assert_eq!(values(900.0), vec![0.0, 500.0]);
        assert!(values(0.0).is_empty() && values(f64::NAN).is_empty());
    }
}
