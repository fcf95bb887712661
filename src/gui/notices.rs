//! What Ferry tells the user about jobs, grouped so that it scales to hundreds of jobs: one
//! notice per kind ("12 jobs expire within 7 days"), never one per job. The same groups feed the
//! in-window toasts and the desktop notifications; this module decides, from an injected clock,
//! when a desktop notification goes out, when it is replaced and when it is withdrawn. No IO.
//!
//! The rules: events that come together (a listing at start, a sweep of the inactivity timer)
//! are gathered for [`GATHER`] and shown as one notification; a group is notified again at most
//! every [`MIN_INTERVAL`], and only when it grew; a group whose jobs are all resolved (kept,
//! completed, cancelled, resumed) is withdrawn. An expiry warning is sent once per job and
//! deadline, also across restarts of the window ([`Memory`]).

use super::format;
use super::toasts::{Level, ToastAction};
use crate::job::{Job, JobId, JobType, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Events this close together make one desktop notification.
pub const GATHER: f64 = 2.0;
/// A group's desktop notification is replaced at most this often.
pub const MIN_INTERVAL: f64 = 60.0;
/// Names listed in a group's text before "and N more".
const NAMES_LISTED: usize = 3;

/// The kinds of notice; one desktop notification and one toast per kind at a time.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum GroupKey {
    /// Jobs near their inactivity timeout.
    Expiring,
    /// Jobs the inactivity timeout cancelled.
    Cancelled,
    /// Jobs whose files are all transferred, waiting for Complete.
    Transferred,
    /// Jobs in ERROR or TRANSIENT_ERROR.
    Failed,
    /// A quota refused a job.
    Quota,
    /// Jobs the service completed by themselves ("complete when transferred"): files in place.
    Completed,
    /// Jobs that could not complete by themselves (a file in the way): still TRANSFERRED.
    CompleteFailed,
}

impl GroupKey {
    pub const ALL: [GroupKey; 7] = [
        GroupKey::Expiring,
        GroupKey::Cancelled,
        GroupKey::Transferred,
        GroupKey::Failed,
        GroupKey::Quota,
        GroupKey::Completed,
        GroupKey::CompleteFailed,
    ];

    pub fn level(self) -> Level {
        match self {
            GroupKey::Expiring | GroupKey::Cancelled | GroupKey::CompleteFailed => Level::Warning,
            GroupKey::Transferred | GroupKey::Completed => Level::Success,
            GroupKey::Failed | GroupKey::Quota => Level::Error,
        }
    }

    /// Critical urgency is for errors only.
    pub fn urgent(self) -> bool {
        matches!(self, GroupKey::Failed | GroupKey::Quota)
    }
}

/// One job in a group, as the notice names it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    pub job_type: JobType,
    /// Expiring: when the inactivity timeout cancels it.
    pub deadline: Option<Timestamp>,
    /// Failed: the error in one line; Quota: the service's message.
    pub detail: String,
    /// Complete is allowed for it (offered as a button on a single-job notice).
    pub can_complete: bool,
}

/// What a notice says, for a toast or a desktop notification.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    pub key: GroupKey,
    pub title: String,
    pub body: String,
    pub actions: Vec<ToastAction>,
}

/// A request to the desktop's notification server.
#[derive(Clone, Debug, PartialEq)]
pub enum DesktopCommand {
    /// Show the group's notification, replacing the one shown before for the same group.
    Show { content: Content, urgent: bool },
    /// Withdraw the group's notification (CloseNotification).
    Close(GroupKey),
}

#[derive(Default)]
struct Group {
    members: BTreeMap<JobId, Member>,
    /// Quota: the refusals counted (they have no job).
    refusals: u32,
    /// A desktop notification of this group is on screen.
    shown: bool,
    last_sent: Option<f64>,
    /// Grew since it was last sent, at this time.
    pending_since: Option<f64>,
    /// The last time a job joined.
    grew_at: f64,
}

/// What the notifier remembers across restarts of the window (gui-notified.ron).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Memory {
    /// Expiry warnings already sent: (job, deadline).
    pub warned: BTreeSet<(JobId, Timestamp)>,
    /// The desktop notifications on screen, by group: the next window replaces or withdraws
    /// them instead of leaving them with buttons nobody listens to.
    pub shown: BTreeMap<GroupKey, u32>,
    /// The session bus the ids belong to: after a new login the notification server numbers
    /// from 1 again, and an old id would name another application's notification.
    pub session: String,
}

impl Memory {
    /// The memory for `session`: the shown ids of another session are dropped.
    pub fn for_session(mut self, session: &str) -> Memory {
        if self.session != session {
            self.shown.clear();
            self.session = session.to_string();
        }
        self
    }
}

#[derive(Default)]
pub struct Notifier {
    groups: BTreeMap<GroupKey, Group>,
    memory: Memory,
    memory_changed: bool,
}

/// A short name for a job: its name, else its first file's, else the start of its id.
pub fn job_label(job: &Job) -> String {
    if !job.display_name.trim().is_empty() {
        return job.display_name.clone();
    }
    job.files
        .first()
        .and_then(|f| f.local_path.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| short_id(job.id))
}

/// "job d54dc82f": how a job with no name (or one already gone) is called.
pub fn short_id(id: JobId) -> String {
    let text = id.0.simple().to_string();
    format!("job {}", &text[..8.min(text.len())])
}

impl Notifier {
    pub fn with_memory(memory: Memory) -> Notifier {
        let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
        for key in memory.shown.keys() {
            // On screen from an earlier window: withdrawn if its jobs turn out resolved.
            groups.entry(*key).or_default().shown = true;
        }
        Notifier {
            groups,
            memory,
            memory_changed: false,
        }
    }

    /// The notification server's id of a group's notification (`None`: it was closed).
    pub fn set_shown_id(&mut self, key: GroupKey, id: Option<u32>) {
        let before = match id {
            Some(id) => self.memory.shown.insert(key, id),
            None => self.memory.shown.remove(&key),
        };
        self.memory_changed |= before != id;
        if id.is_none()
            && let Some(group) = self.groups.get_mut(&key)
        {
            group.shown = false;
        }
    }

    /// Puts `job` in `key`'s group. `now` is the GUI's monotonic clock in seconds.
    pub fn add(&mut self, key: GroupKey, job: JobId, member: Member, now: f64) {
        let fresh = match (key, member.deadline) {
            (GroupKey::Expiring, Some(deadline)) => {
                let new = self.memory.warned.insert((job, deadline));
                self.memory_changed |= new;
                new
            }
            _ => true,
        };
        let group = self.groups.entry(key).or_default();
        let grew = group.members.insert(job, member).is_none();
        if grew {
            group.grew_at = now;
        }
        if grew && fresh {
            group.pending_since.get_or_insert(now);
        }
    }

    /// A quota refused a job (it has no job id to group by).
    pub fn refused(&mut self, message: String, now: f64) {
        let group = self.groups.entry(GroupKey::Quota).or_default();
        group.refusals += 1;
        group.members.insert(
            JobId(uuid::Uuid::nil()),
            Member {
                name: String::new(),
                job_type: JobType::Download,
                deadline: None,
                detail: message,
                can_complete: false,
            },
        );
        group.pending_since.get_or_insert(now);
    }

    /// `job` no longer belongs in `key` (it was kept, completed, resumed…).
    pub fn resolve(&mut self, key: GroupKey, job: JobId) {
        if let Some(group) = self.groups.get_mut(&key) {
            group.members.remove(&job);
        }
    }

    /// `job` is gone or finished: out of every group but the records of what happened to it
    /// (cancelled, completed), which stay until seen.
    pub fn resolve_everywhere(&mut self, job: JobId) {
        for (key, group) in &mut self.groups {
            if !matches!(key, GroupKey::Cancelled | GroupKey::Completed) {
                group.members.remove(&job);
            }
        }
    }

    /// Empties `key`'s group when nothing joined it for `after` seconds (news that fades, like
    /// "downloaded"); returns when to look again.
    pub fn fade(&mut self, key: GroupKey, now: f64, after: f64) -> Option<f64> {
        let group = self.groups.get_mut(&key)?;
        if group.members.is_empty() {
            return None;
        }
        if now - group.grew_at >= after {
            group.members.clear();
            None
        } else {
            Some(group.grew_at + after)
        }
    }

    /// The user saw or dismissed the group: it starts empty again.
    pub fn clear(&mut self, key: GroupKey) {
        if let Some(group) = self.groups.get_mut(&key) {
            group.members.clear();
            group.refusals = 0;
        }
    }

    pub fn members(&self, key: GroupKey) -> impl Iterator<Item = (&JobId, &Member)> {
        self.groups
            .get(&key)
            .into_iter()
            .flat_map(|g| g.members.iter())
    }

    pub fn is_member(&self, key: GroupKey, job: JobId) -> bool {
        self.groups
            .get(&key)
            .is_some_and(|g| g.members.contains_key(&job))
    }

    /// The memory, when it changed since the last call (to be saved).
    pub fn take_memory_change(&mut self) -> Option<&Memory> {
        std::mem::take(&mut self.memory_changed).then_some(&self.memory)
    }

    /// Forgets warnings about jobs that no longer exist, so the memory does not grow forever.
    pub fn prune_memory(&mut self, exists: impl Fn(JobId) -> bool) {
        let before = self.memory.warned.len();
        self.memory.warned.retain(|(id, _)| exists(*id));
        self.memory_changed |= self.memory.warned.len() != before;
    }

    /// What each non-empty group says now (the toasts redraw from this every frame, so their
    /// countdowns are live).
    pub fn contents(&self, wall: Timestamp) -> Vec<Content> {
        self.groups
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|(key, g)| render(*key, g, wall))
            .collect()
    }

    pub fn content(&self, key: GroupKey, wall: Timestamp) -> Option<Content> {
        self.groups
            .get(&key)
            .filter(|g| !g.members.is_empty())
            .map(|g| render(key, g, wall))
    }

    /// The desktop notifications due at `now`, and when to ask again (`None`: nothing waits).
    pub fn poll(&mut self, now: f64, wall: Timestamp) -> (Vec<DesktopCommand>, Option<f64>) {
        let mut commands = Vec::new();
        let mut next: Option<f64> = None;
        for (key, group) in &mut self.groups {
            if group.members.is_empty() {
                group.pending_since = None;
                if std::mem::take(&mut group.shown) {
                    commands.push(DesktopCommand::Close(*key));
                }
                continue;
            }
            let Some(since) = group.pending_since else {
                continue;
            };
            let due = (since + GATHER).max(group.last_sent.map_or(0.0, |t| t + MIN_INTERVAL));
            if now >= due {
                commands.push(DesktopCommand::Show {
                    content: render(*key, group, wall),
                    urgent: key.urgent(),
                });
                group.shown = true;
                group.last_sent = Some(now);
                group.pending_since = None;
            } else {
                next = Some(next.map_or(due, |n: f64| n.min(due)));
            }
        }
        (commands, next)
    }
}

/// The first names, soonest deadline first, then by name.
fn quoted_names<'a>(members: impl Iterator<Item = &'a Member>, count: usize) -> String {
    let mut members: Vec<&Member> = members.collect();
    members.sort_by(|a, b| (a.deadline, &a.name).cmp(&(b.deadline, &b.name)));
    let names: Vec<String> = members
        .into_iter()
        .take(NAMES_LISTED)
        .map(|m| format!("“{}”", m.name))
        .collect();
    let names = names.join(", ");
    if count > NAMES_LISTED {
        format!("{names} and {} more", count - NAMES_LISTED)
    } else {
        names
    }
}

/// "within 7 days": the span to the latest deadline, in whole days when it is a day or more.
fn within(wall: Timestamp, latest: Timestamp) -> String {
    let left = format::between(wall, latest);
    let days = left.as_secs().div_ceil(86_400);
    if left >= Duration::from_secs(86_400) {
        format!("{days} days")
    } else {
        format::span(left)
    }
}

fn render(key: GroupKey, group: &Group, wall: Timestamp) -> Content {
    let count = group.members.len();
    let single = (count == 1).then(|| group.members.iter().next()).flatten();
    let names = quoted_names(group.members.values(), count);
    let (title, body, actions) = match (key, single) {
        (GroupKey::Expiring, Some((id, m))) => {
            let deadline = m.deadline.unwrap_or(wall);
            let mut actions = vec![ToastAction::Keep(*id)];
            if m.can_complete {
                actions.push(ToastAction::Complete(*id));
            }
            actions.push(ToastAction::Cancel(*id));
            (
                format!(
                    "“{}” expires in {}",
                    m.name,
                    format::span(format::between(wall, deadline))
                ),
                format!(
                    "Nothing happened to it for a long time. Ferry cancels it at {} unless \
                     something happens: Keep counts as activity.",
                    deadline.format("%Y-%m-%d %H:%M UTC")
                ),
                actions,
            )
        }
        (GroupKey::Expiring, _) => {
            let latest = group
                .members
                .values()
                .filter_map(|m| m.deadline)
                .max()
                .unwrap_or(wall);
            (
                format!("{count} jobs expire within {}", within(wall, latest)),
                format!(
                    "{names}: no activity for a long time. Ferry cancels them unless something \
                     happens. Review them in the Stale view, or keep them all."
                ),
                vec![ToastAction::Review, ToastAction::KeepAll],
            )
        }
        (GroupKey::Cancelled, Some((_, m))) => (
            format!("“{}” was cancelled", m.name),
            "Nothing happened to it for the whole inactivity timeout: Ferry cancelled it and \
             deleted its temporary files."
                .to_string(),
            vec![],
        ),
        (GroupKey::Cancelled, _) => (
            format!("{count} jobs were cancelled"),
            format!(
                "{names}: nothing happened to them for the whole inactivity timeout; their \
                 temporary files are deleted."
            ),
            vec![],
        ),
        (GroupKey::Transferred, Some((id, m))) => {
            let body = if m.job_type.is_upload() {
                "The server has every byte. Complete it to finish the job."
            } else {
                "Every byte is here. Complete it to move its files to their names."
            };
            let actions = if m.can_complete {
                vec![ToastAction::Complete(*id)]
            } else {
                vec![]
            };
            (format!("“{}” is transferred", m.name), body.into(), actions)
        }
        (GroupKey::Transferred, _) => (
            format!("{count} jobs are transferred"),
            format!("{names}: complete them to finish them."),
            vec![ToastAction::Review],
        ),
        (GroupKey::Failed, Some((_, m))) => {
            (format!("“{}” failed", m.name), m.detail.clone(), vec![])
        }
        (GroupKey::Failed, _) => (
            format!("{count} jobs failed"),
            format!("{names}. The Stale view lists them with their errors."),
            vec![ToastAction::Review],
        ),
        (GroupKey::Completed, Some((id, m))) => (
            format!("“{}” is downloaded", m.name),
            m.detail.clone(),
            vec![ToastAction::OpenFile(*id), ToastAction::OpenFolder(*id)],
        ),
        (GroupKey::Completed, _) => (
            format!("{count} downloads are complete"),
            format!("{names}: their files are at their names."),
            vec![],
        ),
        (GroupKey::CompleteFailed, Some((id, m))) => (
            format!("“{}” is transferred but not completed", m.name),
            format!(
                "{}\nReplace what is there, or deal with it and complete the job later.",
                m.detail
            ),
            vec![ToastAction::Replace(*id), ToastAction::Review],
        ),
        (GroupKey::CompleteFailed, _) => (
            format!("{count} jobs could not be completed"),
            format!("{names}: something is in the way of their files. The Stale view lists them."),
            vec![ToastAction::Review],
        ),
        (GroupKey::Quota, _) => {
            let message = group
                .members
                .values()
                .next()
                .map(|m| m.detail.clone())
                .unwrap_or_default();
            let title = match group.refusals {
                0 | 1 => "Quota reached".to_string(),
                n => format!("Quota reached ({n} refusals)"),
            };
            (
                title,
                format!("{message}\nThe Stale view lists the jobs waiting for you."),
                vec![ToastAction::OpenStale],
            )
        }
    };
    Content {
        key,
        title,
        body,
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    fn member(name: &str, deadline: i64) -> Member {
        Member {
            name: name.into(),
            job_type: JobType::Download,
            deadline: Some(at(deadline)),
            detail: String::new(),
            can_complete: true,
        }
    }

    fn shows(commands: &[DesktopCommand]) -> Vec<String> {
        commands
            .iter()
            .filter_map(|c| match c {
                DesktopCommand::Show { content, .. } => Some(content.title.clone()),
                DesktopCommand::Close(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_storm_of_warnings_and_cancellations_is_two_notifications() {
        let mut notifier = Notifier::default();
        let ids: Vec<JobId> = (0..150).map(|_| JobId::new_random()).collect();
        for (i, id) in ids.iter().enumerate() {
            let name = format!("job-{i}");
            notifier.add(GroupKey::Expiring, *id, member(&name, 6 * 86_400), 0.0);
        }
        let (commands, next) = notifier.poll(1.0, at(0));
        assert!(commands.is_empty(), "gathered first");
        assert_eq!(next, Some(GATHER));
        let (commands, next) = notifier.poll(GATHER, at(2));
        assert_eq!(shows(&commands), ["150 jobs expire within 6 days"]);
        assert_eq!(next, None);
        let text = notifier.content(GroupKey::Expiring, at(2)).expect("group");
        assert!(
            text.body
                .starts_with("“job-0”, “job-1”, “job-10” and 147 more"),
            "{}",
            text.body
        );
        assert_eq!(text.actions, [ToastAction::Review, ToastAction::KeepAll]);

        // The timer cancels 136 of them: the warning shrinks (not re-sent), one notice of the
        // cancellations.
        for id in &ids[..136] {
            notifier.resolve_everywhere(*id);
            let m = member("c", 0);
            notifier.add(GroupKey::Cancelled, *id, m, 100.0);
        }
        let (commands, _) = notifier.poll(103.0, at(103));
        assert_eq!(shows(&commands), ["136 jobs were cancelled"]);
        // The 14 left are kept: the warning is withdrawn.
        for id in &ids[136..] {
            notifier.resolve(GroupKey::Expiring, *id);
        }
        let (commands, _) = notifier.poll(104.0, at(104));
        assert_eq!(commands, [DesktopCommand::Close(GroupKey::Expiring)]);
        assert_eq!(notifier.poll(200.0, at(200)).0, []);
    }

    #[test]
    fn growth_is_sent_again_at_most_once_a_minute() {
        let mut notifier = Notifier::default();
        notifier.add(GroupKey::Failed, JobId::new_random(), member("a", 0), 0.0);
        assert_eq!(shows(&notifier.poll(2.0, at(2)).0), ["“a” failed"]);
        notifier.add(GroupKey::Failed, JobId::new_random(), member("b", 0), 5.0);
        let (commands, next) = notifier.poll(7.0, at(7));
        assert!(commands.is_empty());
        assert_eq!(next, Some(2.0 + MIN_INTERVAL));
        for i in 0..30 {
            let name = format!("n{i}");
            notifier.add(
                GroupKey::Failed,
                JobId::new_random(),
                member(&name, 0),
                10.0,
            );
        }
        let (commands, _) = notifier.poll(62.0, at(62));
        assert_eq!(shows(&commands), ["32 jobs failed"]);
        let DesktopCommand::Show { urgent, .. } = &commands[0] else {
            panic!("a show");
        };
        assert!(urgent, "errors are critical");
    }

    #[test]
    fn a_warning_is_sent_once_per_deadline_across_restarts() {
        let id = JobId::new_random();
        let mut first = Notifier::default();
        first.add(GroupKey::Expiring, id, member("a", 500), 0.0);
        assert_eq!(shows(&first.poll(2.0, at(2)).0).len(), 1);
        let memory = first.take_memory_change().expect("changed").clone();
        assert!(first.take_memory_change().is_none());
        assert!(
            memory.shown.is_empty(),
            "the desktop reports the ids, not the notifier"
        );

        let mut second = Notifier::with_memory(memory.clone());
        second.add(GroupKey::Expiring, id, member("a", 500), 0.0);
        assert!(second.poll(10.0, at(10)).0.is_empty(), "not sent again");
        assert!(
            second.content(GroupKey::Expiring, at(10)).is_some(),
            "still a toast"
        );
        // Kept, idle again: a new deadline is a new warning.
        let mut third = Notifier::with_memory(memory);
        third.add(GroupKey::Expiring, id, member("a", 900), 0.0);
        assert_eq!(shows(&third.poll(2.0, at(2)).0).len(), 1);
        third.prune_memory(|_| false);
        assert!(
            third
                .take_memory_change()
                .expect("pruned")
                .warned
                .is_empty()
        );
    }

    #[test]
    fn a_notification_left_by_an_earlier_window_is_withdrawn_when_resolved() {
        let memory = Memory {
            shown: BTreeMap::from([(GroupKey::Expiring, 7)]),
            ..Memory::default()
        };
        let mut notifier = Notifier::with_memory(memory);
        // Its jobs were kept while no window ran: the group is empty, the notification goes.
        assert_eq!(
            notifier.poll(0.0, at(0)).0,
            [DesktopCommand::Close(GroupKey::Expiring)]
        );
        notifier.set_shown_id(GroupKey::Expiring, None);
        assert!(
            notifier
                .take_memory_change()
                .expect("changed")
                .shown
                .is_empty()
        );
        // Another login: the ids of the old notification server mean nothing.
        let old = Memory {
            shown: BTreeMap::from([(GroupKey::Failed, 3)]),
            session: "unix:path=/run/user/1000/bus,guid=1".into(),
            ..Memory::default()
        };
        let elsewhere = old
            .clone()
            .for_session("unix:path=/run/user/1000/bus,guid=2");
        assert!(elsewhere.shown.is_empty());
        let same = old.session.clone();
        assert_eq!(old.for_session(&same).shown.len(), 1);
    }

    #[test]
    fn a_single_warning_counts_down() {
        let mut notifier = Notifier::default();
        let id = JobId::new_random();
        notifier.add(GroupKey::Expiring, id, member("a", 3600), 0.0);
        let title = |w| notifier.content(GroupKey::Expiring, w).expect("one").title;
        assert_eq!(title(at(0)), "“a” expires in 1 h 0 min");
        assert_eq!(title(at(1800)), "“a” expires in 30 min 0 s");
    }

    #[test]
    fn uploads_get_upload_words_and_unnamed_jobs_a_name() {
        let mut notifier = Notifier::default();
        let mut upload = member("report.pdf", 0);
        upload.job_type = JobType::Upload;
        notifier.add(GroupKey::Transferred, JobId::new_random(), upload, 0.0);
        let text = notifier.content(GroupKey::Transferred, at(0)).expect("one");
        assert_eq!(text.title, "“report.pdf” is transferred");
        assert!(
            text.body.contains("The server has every byte"),
            "{}",
            text.body
        );
        assert!(!text.body.contains("move its files"));

        let mut job = crate::gui::tray::tests::job("", crate::job::JobState::Error, 0, 1, 0);
        assert_eq!(job_label(&job), "f", "its file's name");
        job.files.clear();
        let label = job_label(&job);
        assert!(label.starts_with("job ") && label.len() == 12, "{label}");
        assert!(!label.contains('{') && !label.contains('-'));
    }

    #[test]
    fn quota_refusals_are_one_notice() {
        let mut notifier = Notifier::default();
        notifier.refused("too many jobs".into(), 0.0);
        notifier.refused("too many jobs".into(), 0.5);
        let (commands, _) = notifier.poll(3.0, at(3));
        assert_eq!(shows(&commands), ["Quota reached (2 refusals)"]);
    }
}
