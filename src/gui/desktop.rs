//! Desktop notifications (freedesktop, via notify-rust) on a thread of their own: a call takes
//! tens of milliseconds over D-Bus, and waiting for an action blocks until the user answers.
//! Without a notification daemon (or a session bus) the first failure is logged and the rest
//! are dropped quietly; the GUI never depends on them.

use super::toasts::ToastAction;
use std::sync::mpsc;

pub struct Note {
    pub title: String,
    pub body: String,
    pub actions: Vec<ToastAction>,
    pub urgent: bool,
}

/// Sends notes to the notification thread; clicked actions come back through `on_action`.
pub struct Desktop {
    tx: mpsc::Sender<Note>,
}

impl Desktop {
    pub fn start(on_action: impl Fn(ToastAction) + Send + Sync + 'static) -> Desktop {
        let (tx, rx) = mpsc::channel::<Note>();
        let on_action = std::sync::Arc::new(on_action);
        let spawned = std::thread::Builder::new()
            .name("ferry-notifications".into())
            .spawn(move || {
                let mut failed = false;
                for note in rx {
                    deliver(note, &on_action, &mut failed);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("desktop notifications are off: cannot start their thread: {e}");
        }
        Desktop { tx }
    }

    pub fn notify(&self, note: Note) {
        let _ = self.tx.send(note);
    }
}

fn deliver(
    note: Note,
    on_action: &std::sync::Arc<impl Fn(ToastAction) + Send + Sync + 'static>,
    failed: &mut bool,
) {
    let mut notification = notify_rust::Notification::new();
    notification
        .appname("Ferry")
        .summary(&note.title)
        .body(&note.body)
        .icon("folder-download");
    if note.urgent {
        notification.urgency(notify_rust::Urgency::Critical);
    }
    for action in &note.actions {
        notification.action(action.key(), action.label());
    }
    match notification.show() {
        Ok(handle) => {
            *failed = false;
            if note.actions.is_empty() {
                return;
            }
            // Waiting for the answer blocks: one short-lived thread per notification with buttons.
            let (actions, on_action) = (note.actions, on_action.clone());
            let _ = std::thread::Builder::new()
                .name("ferry-notification-action".into())
                .spawn(move || {
                    handle.wait_for_action(|key| {
                        if let Some(action) = actions.iter().find(|a| a.key() == key) {
                            on_action(*action);
                        }
                    });
                });
        }
        Err(e) if !*failed => {
            *failed = true;
            tracing::warn!(
                "desktop notifications are unavailable ({e}); Ferry shows them in its window only"
            );
        }
        Err(_) => {}
    }
}
