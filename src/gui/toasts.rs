//! In-app toasts: short messages in the bottom-right corner, some with buttons (Keep, Complete,
//! Cancel, Review…), and the notification centre that keeps every one of them for the session.
//! Ferry draws its own because the toast crates show text only. Job notices come grouped (one
//! toast per [`GroupKey`], redrawn each frame so countdowns are live); other toasts say what a
//! click did. Nothing is dropped: toasts beyond the few shown wait in the centre.

use super::notices::{Content, GroupKey};
use crate::job::{JobId, Timestamp};
use egui::{Align2, Color32, Id, RichText};

/// What a toast button (or a desktop notification's action) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToastAction {
    /// Counts as activity: the inactivity timer starts again.
    Keep(JobId),
    Complete(JobId),
    Cancel(JobId),
    OpenStale,
    /// The Stale view, for the jobs of a grouped notice.
    Review,
    /// Keep every job the expiry notice is about.
    KeepAll,
    /// Open a completed download's file, or its folder.
    OpenFile(JobId),
    OpenFolder(JobId),
    /// Complete a job whose files are in the way of existing ones, replacing them.
    Replace(JobId),
}

impl ToastAction {
    pub fn label(self) -> &'static str {
        match self {
            ToastAction::Keep(_) => "Keep",
            ToastAction::Complete(_) => "Complete",
            ToastAction::Cancel(_) => "Cancel",
            ToastAction::OpenStale => "Open Stale view",
            ToastAction::Review => "Review",
            ToastAction::KeepAll => "Keep all",
            ToastAction::OpenFile(_) => "Open",
            ToastAction::OpenFolder(_) => "Open folder",
            ToastAction::Replace(_) => "Replace",
        }
    }

    /// The id desktop notifications use for the action.
    pub fn key(self) -> &'static str {
        match self {
            ToastAction::Keep(_) => "keep",
            ToastAction::Complete(_) => "complete",
            ToastAction::Cancel(_) => "cancel",
            ToastAction::OpenStale => "stale",
            ToastAction::Review => "review",
            ToastAction::KeepAll => "keep-all",
            ToastAction::OpenFile(_) => "open",
            ToastAction::OpenFolder(_) => "open-folder",
            ToastAction::Replace(_) => "replace",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Success,
    Warning,
    Error,
}

impl Level {
    pub fn colour(self) -> Color32 {
        match self {
            Level::Success => super::theme::SUCCESS,
            Level::Warning => super::theme::WARNING,
            Level::Error => super::theme::ERROR,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Toast {
    pub level: Level,
    pub title: String,
    pub body: String,
    pub actions: Vec<ToastAction>,
    /// A grouped job notice (its text comes from the notifier); `None`: a one-off message.
    pub group: Option<GroupKey>,
    /// Dismissed at this time (egui's clock, seconds); `None` stays until dismissed.
    expires: Option<f64>,
    id: u64,
}

/// A line of the notification centre.
#[derive(Clone, Debug)]
pub struct Record {
    pub at: Timestamp,
    pub level: Level,
    pub title: String,
    pub body: String,
}

#[derive(Default)]
pub struct Toasts {
    items: Vec<Toast>,
    next_id: u64,
    /// Everything told this session, oldest first.
    history: Vec<Record>,
    /// History entries the user has not looked at in the centre.
    unseen: usize,
    /// Grouped notices dismissed by the user: not shown again until the group grows.
    dismissed_groups: Vec<(GroupKey, usize)>,
}

/// At most this many toasts show at once; the rest wait in the notification centre.
const MAX_SHOWN: usize = 4;
/// The centre keeps this many records (a long session's oldest go first).
const HISTORY: usize = 2000;
const TOAST_WIDTH: f32 = 360.0;

/// What a frame of toasts asked for.
pub enum Clicked {
    Action(ToastAction),
    /// A grouped notice was dismissed with ×.
    Dismissed(GroupKey),
}

impl Toasts {
    /// Adds a one-off toast that lasts `seconds` from `now` (`None`: until dismissed).
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        level: Level,
        title: impl Into<String>,
        body: impl Into<String>,
        actions: Vec<ToastAction>,
        seconds: Option<f64>,
        now: f64,
        wall: Timestamp,
    ) {
        let title = title.into();
        let body = body.into();
        self.record(wall, level, &title, &body);
        // The same news twice shows once.
        self.items.retain(|t| t.title != title);
        self.next_id += 1;
        self.items.push(Toast {
            level,
            title,
            body,
            actions,
            group: None,
            expires: seconds.map(|s| now + s),
            id: self.next_id,
        });
    }

    /// Writes a line in the centre's history without a toast (each job of a grouped notice).
    pub fn record(&mut self, at: Timestamp, level: Level, title: &str, body: &str) {
        self.history.push(Record {
            at,
            level,
            title: title.to_string(),
            body: body.to_string(),
        });
        self.unseen += 1;
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }

    /// Makes the grouped toasts say what `groups` say now: new groups appear, changed ones are
    /// redrawn in place, empty ones go.
    pub fn sync_groups(&mut self, groups: &[(Content, usize)]) {
        self.items.retain(|t| {
            t.group
                .is_none_or(|key| groups.iter().any(|(c, _)| c.key == key))
        });
        self.dismissed_groups
            .retain(|(key, _)| groups.iter().any(|(c, _)| c.key == *key));
        for (content, size) in groups {
            if let Some(at) = self
                .dismissed_groups
                .iter()
                .position(|(key, _)| *key == content.key)
            {
                if self.dismissed_groups[at].1 >= *size {
                    continue;
                }
                self.dismissed_groups.remove(at);
            }
            if let Some(toast) = self.items.iter_mut().find(|t| t.group == Some(content.key)) {
                toast.title.clone_from(&content.title);
                toast.body.clone_from(&content.body);
                toast.actions.clone_from(&content.actions);
            } else {
                self.next_id += 1;
                self.items.push(Toast {
                    level: content.key.level(),
                    title: content.title.clone(),
                    body: content.body.clone(),
                    actions: content.actions.clone(),
                    group: Some(content.key),
                    expires: None,
                    id: self.next_id,
                });
            }
        }
    }

    pub fn items(&self) -> &[Toast] {
        &self.items
    }

    pub fn history(&self) -> &[Record] {
        &self.history
    }

    pub fn unseen(&self) -> usize {
        self.unseen
    }

    pub fn mark_seen(&mut self) {
        self.unseen = 0;
    }

    pub fn clear_history(&mut self) {
        self.history.clear();
        self.unseen = 0;
    }

    /// Drops the one-off toasts about `job` that ask for an action on it (the job ended).
    pub fn forget_job(&mut self, job: JobId) {
        self.items.retain(|t| {
            t.group.is_some()
                || !t.actions.iter().any(|a| {
                    matches!(a, ToastAction::Keep(j) | ToastAction::Complete(j) | ToastAction::Cancel(j) if *j == job)
                })
        });
    }

    /// Draws the newest toasts; returns the button clicked, if any. Asks for a repaint when the
    /// next toast expires, so that an idle window still clears them.
    pub fn show(
        &mut self,
        ctx: &egui::Context,
        now: f64,
        group_sizes: &[(GroupKey, usize)],
    ) -> Option<Clicked> {
        self.items.retain(|t| t.expires.is_none_or(|at| at > now));
        if let Some(next) = self
            .items
            .iter()
            .filter_map(|t| t.expires)
            .min_by(|a, b| a.total_cmp(b))
        {
            ctx.request_repaint_after(std::time::Duration::from_secs_f64((next - now).max(0.0)));
        }
        if self.items.is_empty() {
            return None;
        }
        let mut clicked = None;
        let mut dismissed = None;
        let hidden = self.items.len().saturating_sub(MAX_SHOWN);
        egui::Area::new(Id::unique("ferry-toasts"))
            .anchor(Align2::RIGHT_BOTTOM, [-12.0, -36.0])
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                ui.set_max_width(TOAST_WIDTH + 20.0);
                // At most a third of the window's height of toasts, however many there are.
                let height = ctx.content_rect().height() * 0.6;
                egui::ScrollArea::vertical()
                    .max_height(height)
                    .stick_to_bottom(true)
                    .show(ui, |ui| {
                        if hidden > 0 {
                            ui.label(
                                RichText::new(format!("{hidden} older in 🔔 Notifications")).weak(),
                            );
                        }
                        for toast in &self.items[hidden..] {
                            draw(ui, toast, &mut clicked, &mut dismissed);
                            ui.add_space(6.0);
                        }
                    });
            });
        if let Some(id) = dismissed {
            if let Some(toast) = self.items.iter().find(|t| t.id == id)
                && let Some(key) = toast.group
            {
                let size = group_sizes
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(0, |(_, n)| *n);
                self.dismissed_groups.push((key, size));
                if clicked.is_none() {
                    clicked = Some(Clicked::Dismissed(key));
                }
            }
            self.items.retain(|t| t.id != id);
        }
        clicked
    }
}

fn draw(
    ui: &mut egui::Ui,
    toast: &Toast,
    clicked: &mut Option<Clicked>,
    dismissed: &mut Option<u64>,
) {
    egui::Frame::popup(ui.style())
        .stroke(egui::Stroke::new(1.5, toast.level.colour()))
        .show(ui, |ui| {
            ui.set_width(TOAST_WIDTH);
            ui.horizontal_top(|ui| {
                // The title wraps beside the × instead of running under it.
                let title_width = TOAST_WIDTH - 28.0;
                ui.allocate_ui_with_layout(
                    egui::vec2(title_width, 0.0),
                    egui::Layout::top_down(egui::Align::Min),
                    |ui| {
                        ui.set_min_width(title_width);
                        ui.set_max_width(title_width);
                        ui.add(
                            egui::Label::new(
                                RichText::new(&toast.title)
                                    .strong()
                                    .color(toast.level.colour()),
                            )
                            .wrap(),
                        );
                    },
                );
                if ui.small_button("×").on_hover_text("Dismiss").clicked() {
                    *dismissed = Some(toast.id);
                }
            });
            if !toast.body.is_empty() {
                ui.add(egui::Label::new(&toast.body).wrap());
            }
            if !toast.actions.is_empty() {
                ui.horizontal_wrapped(|ui| {
                    for action in &toast.actions {
                        if ui.button(action.label()).clicked() {
                            *clicked = Some(Clicked::Action(*action));
                            *dismissed = Some(toast.id);
                        }
                    }
                });
            }
        });
}
