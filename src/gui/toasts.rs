//! In-app toasts: short messages in the bottom-right corner, some with buttons (Keep, Complete,
//! Cancel, Open Stale view). Ferry draws its own because the toast crates show text only.

use crate::job::JobId;
use egui::{Align2, Color32, Id, RichText};

/// What a toast button (or a desktop notification's action) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToastAction {
    /// Counts as activity: the inactivity timer starts again.
    Keep(JobId),
    Complete(JobId),
    Cancel(JobId),
    OpenStale,
}

impl ToastAction {
    pub fn label(self) -> &'static str {
        match self {
            ToastAction::Keep(_) => "Keep",
            ToastAction::Complete(_) => "Complete",
            ToastAction::Cancel(_) => "Cancel",
            ToastAction::OpenStale => "Open Stale view",
        }
    }

    /// The id desktop notifications use for the action.
    pub fn key(self) -> &'static str {
        match self {
            ToastAction::Keep(_) => "keep",
            ToastAction::Complete(_) => "complete",
            ToastAction::Cancel(_) => "cancel",
            ToastAction::OpenStale => "stale",
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
    fn colour(self) -> Color32 {
        match self {
            Level::Success => Color32::from_rgb(60, 170, 90),
            Level::Warning => Color32::from_rgb(230, 160, 40),
            Level::Error => Color32::from_rgb(220, 70, 60),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Toast {
    pub level: Level,
    pub title: String,
    pub body: String,
    pub actions: Vec<ToastAction>,
    /// Dismissed at this time (egui's clock, seconds); `None` stays until dismissed.
    expires: Option<f64>,
    id: u64,
}

#[derive(Default)]
pub struct Toasts {
    items: Vec<Toast>,
    next_id: u64,
}

/// At most this many toasts show at once; older ones go first.
const MAX_SHOWN: usize = 5;

impl Toasts {
    /// Adds a toast that lasts `seconds` from `now` (`None`: until dismissed).
    pub fn push(
        &mut self,
        level: Level,
        title: impl Into<String>,
        body: impl Into<String>,
        actions: Vec<ToastAction>,
        seconds: Option<f64>,
        now: f64,
    ) {
        let title = title.into();
        // The same news twice (an event and a refused call about one quota) shows once.
        self.items.retain(|t| t.title != title);
        self.next_id += 1;
        self.items.push(Toast {
            level,
            title,
            body: body.into(),
            actions,
            expires: seconds.map(|s| now + s),
            id: self.next_id,
        });
        if self.items.len() > MAX_SHOWN {
            self.items.remove(0);
        }
    }

    pub fn items(&self) -> &[Toast] {
        &self.items
    }

    /// Drops the toasts about `job` that ask for an action on it (the job changed or ended).
    pub fn forget_job(&mut self, job: JobId) {
        self.items.retain(|t| {
            !t.actions.iter().any(|a| {
                matches!(a, ToastAction::Keep(j) | ToastAction::Complete(j) | ToastAction::Cancel(j) if *j == job)
            })
        });
    }

    /// Draws the toasts; returns the button clicked, if any. Asks for a repaint when the next
    /// toast expires, so that an idle window still clears them.
    pub fn show(&mut self, ctx: &egui::Context, now: f64) -> Option<ToastAction> {
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
        egui::Area::new(Id::unique("ferry-toasts"))
            .anchor(Align2::RIGHT_BOTTOM, [-12.0, -36.0])
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                ui.set_max_width(380.0);
                for toast in &self.items {
                    egui::Frame::popup(ui.style())
                        .stroke(egui::Stroke::new(1.5, toast.level.colour()))
                        .show(ui, |ui| {
                            ui.set_width(360.0);
                            ui.horizontal(|ui| {
                                ui.label(
                                    RichText::new(&toast.title)
                                        .strong()
                                        .color(toast.level.colour()),
                                );
                                ui.with_layout(
                                    egui::Layout::right_to_left(egui::Align::Min),
                                    |ui| {
                                        if ui.small_button("×").on_hover_text("Dismiss").clicked()
                                        {
                                            dismissed = Some(toast.id);
                                        }
                                    },
                                );
                            });
                            if !toast.body.is_empty() {
                                ui.label(&toast.body);
                            }
                            if !toast.actions.is_empty() {
                                ui.horizontal(|ui| {
                                    for action in &toast.actions {
                                        if ui.button(action.label()).clicked() {
                                            clicked = Some(*action);
                                            dismissed = Some(toast.id);
                                        }
                                    }
                                });
                            }
                        });
                    ui.add_space(6.0);
                }
            });
        if let Some(id) = dismissed {
            self.items.retain(|t| t.id != id);
        }
        clicked
    }
}
