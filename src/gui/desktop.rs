//! Desktop notifications over the freedesktop Notifications D-Bus interface, on a thread of
//! their own (a call takes tens of milliseconds). One notification per notice group: a new
//! one of a group replaces the one shown (`replaces_id`), and a resolved group is withdrawn
//! (`CloseNotification`). Clicked actions arrive as `ActionInvoked` signals on a second thread.
//! Without a notification server (or a session bus) the first failure is logged and the rest
//! are dropped quietly; the GUI never depends on them.

use super::notices::{DesktopCommand, GroupKey};
use super::toasts::ToastAction;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, mpsc};
use zbus::zvariant::Value;

const SERVICE: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

/// Sends commands to the notification thread; clicked actions come back through `on_action`.
pub struct Desktop {
    tx: mpsc::Sender<DesktopCommand>,
}

/// The notifications on screen: group → server id, and id → the actions it offers.
#[derive(Default)]
struct Shown {
    ids: HashMap<GroupKey, u32>,
    actions: HashMap<u32, Vec<ToastAction>>,
}

impl Desktop {
    /// `shown`: the notifications an earlier window left on screen; `on_id` hears of each
    /// change of a group's notification id (to remember them for the next window).
    pub fn start(
        on_action: impl Fn(ToastAction) + Send + Sync + 'static,
        shown: BTreeMap<GroupKey, u32>,
        on_id: impl Fn(GroupKey, Option<u32>) + Send + Sync + 'static,
    ) -> Desktop {
        let (tx, rx) = mpsc::channel::<DesktopCommand>();
        let spawned = std::thread::Builder::new()
            .name("ferry-notifications".into())
            .spawn(move || run(rx, on_action, shown, on_id));
        if let Err(e) = spawned {
            tracing::warn!("desktop notifications are off: cannot start their thread: {e}");
        }
        Desktop { tx }
    }

    pub fn send(&self, command: DesktopCommand) {
        let _ = self.tx.send(command);
    }
}

fn run(
    rx: mpsc::Receiver<DesktopCommand>,
    on_action: impl Fn(ToastAction) + Send + Sync + 'static,
    shown_before: BTreeMap<GroupKey, u32>,
    on_id: impl Fn(GroupKey, Option<u32>) + Send + Sync + 'static,
) {
    let connection = match zbus::blocking::Connection::session() {
        Ok(connection) => connection,
        Err(e) => {
            tracing::warn!("no session bus ({e}): Ferry shows notifications in its window only");
            for _ in rx {}
            return;
        }
    };
    let shown = Arc::new(Mutex::new(Shown {
        ids: shown_before.into_iter().collect(),
        actions: HashMap::new(),
    }));
    let on_id = Arc::new(on_id);
    listen(&connection, shown.clone(), on_action, on_id.clone());
    let mut failed = false;
    for command in rx {
        let result = match command {
            DesktopCommand::Show { content, urgent } => {
                let replaces = lock(&shown).ids.get(&content.key).copied().unwrap_or(0);
                notify(
                    &connection,
                    replaces,
                    &content.title,
                    &content.body,
                    &content.actions,
                    urgent,
                )
                .map(|id| {
                    let mut shown = lock(&shown);
                    if replaces != 0 {
                        shown.actions.remove(&replaces);
                    }
                    shown.ids.insert(content.key, id);
                    shown.actions.insert(id, content.actions);
                    drop(shown);
                    on_id(content.key, Some(id));
                })
            }
            DesktopCommand::Close(key) => {
                let id = lock(&shown).ids.remove(&key);
                match id {
                    Some(id) => {
                        lock(&shown).actions.remove(&id);
                        on_id(key, None);
                        connection
                            .call_method(
                                Some(SERVICE),
                                PATH,
                                Some(SERVICE),
                                "CloseNotification",
                                &(id,),
                            )
                            .map(|_| ())
                    }
                    None => Ok(()),
                }
            }
        };
        match result {
            Ok(()) => failed = false,
            Err(e) if !failed => {
                failed = true;
                tracing::warn!(
                    "desktop notifications are unavailable ({e}); Ferry shows them in its window only"
                );
            }
            Err(_) => {}
        }
    }
}

fn lock(shown: &Mutex<Shown>) -> std::sync::MutexGuard<'_, Shown> {
    shown
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Notification servers may read the body as markup: text from servers and file names is
/// escaped so that it shows as written.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn notify(
    connection: &zbus::blocking::Connection,
    replaces: u32,
    title: &str,
    body: &str,
    actions: &[ToastAction],
    urgent: bool,
) -> zbus::Result<u32> {
    let mut keys: Vec<&str> = Vec::with_capacity(actions.len() * 2);
    for action in actions {
        keys.push(action.key());
        keys.push(action.label());
    }
    let mut hints: HashMap<&str, Value<'_>> = HashMap::new();
    hints.insert("urgency", Value::U8(if urgent { 2 } else { 1 }));
    hints.insert("desktop-entry", Value::from("ferry"));
    let reply = connection.call_method(
        Some(SERVICE),
        PATH,
        Some(SERVICE),
        "Notify",
        &(
            "Ferry",
            replaces,
            "folder-download",
            title,
            escape(body),
            keys,
            hints,
            -1i32,
        ),
    )?;
    reply.body().deserialize::<u32>()
}

/// Turns `ActionInvoked` signals for Ferry's notifications into actions, and forgets closed ones.
fn listen(
    connection: &zbus::blocking::Connection,
    shown: Arc<Mutex<Shown>>,
    on_action: impl Fn(ToastAction) + Send + Sync + 'static,
    on_id: Arc<impl Fn(GroupKey, Option<u32>) + Send + Sync + 'static>,
) {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(SERVICE)
        .and_then(|b| b.path(PATH))
        .map(|b| b.build());
    let messages = rule.and_then(|rule| {
        zbus::blocking::MessageIterator::for_match_rule(rule, connection, Some(64))
    });
    let messages = match messages {
        Ok(messages) => messages,
        Err(e) => {
            tracing::warn!("notification buttons are off: cannot listen for them ({e})");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("ferry-notification-actions".into())
        .spawn(move || {
            for message in messages.flatten() {
                let header = message.header();
                let member = header.member().map(|m| m.as_str().to_string());
                match member.as_deref() {
                    Some("ActionInvoked") => {
                        let Ok((id, key)) = message.body().deserialize::<(u32, String)>() else {
                            continue;
                        };
                        let action = lock(&shown)
                            .actions
                            .get(&id)
                            .and_then(|actions| actions.iter().find(|a| a.key() == key).copied());
                        if let Some(action) = action {
                            on_action(action);
                        }
                    }
                    Some("NotificationClosed") => {
                        let Ok((id, _reason)) = message.body().deserialize::<(u32, u32)>() else {
                            continue;
                        };
                        let mut shown = lock(&shown);
                        shown.actions.remove(&id);
                        let closed: Vec<GroupKey> = shown
                            .ids
                            .iter()
                            .filter(|(_, shown_id)| **shown_id == id)
                            .map(|(key, _)| *key)
                            .collect();
                        shown.ids.retain(|_, shown_id| *shown_id != id);
                        drop(shown);
                        for key in closed {
                            on_id(key, None);
                        }
                    }
                    _ => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("notification buttons are off: {e}");
    }
}
