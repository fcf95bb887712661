//! The GUI's picture of the service's jobs: the latest copy of each job as the service sent it, a
//! measured speed per job, and the visible rows (filtered, sorted). It is a read model only: every
//! change of a job is a request to the service, and the change shows when the service reports it.

use super::format;
use crate::job::{ClassLimits, Job, JobId, JobState, Priority, Rate, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Points kept for the speed graph (one per update, at most a few per second).
const HISTORY: usize = 600;

/// A job's transfer rate, measured from the progress the service reports.
#[derive(Clone, Debug, Default)]
pub struct Speed {
    last: Option<(f64, u64)>,
    /// Bytes per second, smoothed.
    rate: f64,
    /// (seconds since the GUI started, bytes per second), for the graph.
    pub history: VecDeque<[f64; 2]>,
}

impl Speed {
    fn observe(&mut self, at: f64, bytes: u64, running: bool) {
        let Some((then, before)) = self.last else {
            self.last = Some((at, bytes));
            return;
        };
        let dt = at - then;
        if bytes < before || !running {
            self.rate = 0.0;
            self.last = Some((at, bytes));
        } else if dt >= 0.25 {
            let now = (bytes - before) as f64 / dt;
            self.rate = if self.rate == 0.0 {
                now
            } else {
                0.5 * self.rate + 0.5 * now
            };
            self.last = Some((at, bytes));
        } else {
            return;
        }
        self.history.push_back([at, self.rate]);
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    /// The rate at `at`: zero once no progress came for a while (a stalled transfer).
    pub fn rate(&self, at: f64) -> f64 {
        match self.last {
            Some((then, _)) if at - then < 3.0 => self.rate,
            _ => 0.0,
        }
    }
}

pub struct Entry {
    pub job: Job,
    pub speed: Speed,
}

/// The columns of the job table, which are also the sort keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Column {
    Name,
    Type,
    State,
    Progress,
    Speed,
    Eta,
    Priority,
    Files,
    LastActivity,
    ExpiresIn,
}

impl Column {
    pub const ALL: [Column; 10] = [
        Column::Name,
        Column::Type,
        Column::State,
        Column::Progress,
        Column::Speed,
        Column::Eta,
        Column::Priority,
        Column::Files,
        Column::LastActivity,
        Column::ExpiresIn,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Name => "Name",
            Column::Type => "Type",
            Column::State => "State",
            Column::Progress => "Progress",
            Column::Speed => "Speed",
            Column::Eta => "ETA",
            Column::Priority => "Priority",
            Column::Files => "Files",
            Column::LastActivity => "Last activity",
            Column::ExpiresIn => "Expires in",
        }
    }
}

/// Which rows show, and in which order.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewSpec {
    pub sort: Column,
    pub ascending: bool,
    /// Matched against the name, the description and the URLs, ignoring case.
    pub text: String,
    /// The states shown, in [`JobState::ALL`] order.
    pub states: [bool; 9],
    /// The Stale view: jobs waiting for the user, oldest activity first.
    pub stale_only: bool,
    pub stale_after: Duration,
}

impl ViewSpec {
    /// Whether the passing of time alone changes which rows show or their order: the Stale view
    /// (jobs become stale) and the columns computed from the time (rates, time left).
    pub fn depends_on_time(&self) -> bool {
        self.stale_only || matches!(self.sort, Column::Speed | Column::Eta | Column::ExpiresIn)
    }
}

impl Default for ViewSpec {
    fn default() -> Self {
        ViewSpec {
            sort: Column::Name,
            ascending: true,
            text: String::new(),
            states: [true; 9],
            stale_only: false,
            stale_after: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Everything time-dependent a row shows needs these.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub wall: Timestamp,
    /// Seconds since the GUI started (for rates).
    pub mono: f64,
    pub inactivity_timeout: Duration,
    /// The service's global speed limits (its config), as last read.
    pub limits: GlobalLimits,
}

/// What limits the service's transfers as a whole: its config's speed limits, what its
/// bandwidth schedule gives background priorities now, and whether background jobs give way to
/// other traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalLimits {
    pub download: Option<Rate>,
    pub upload: Option<Rate>,
    pub schedule: ClassLimits,
    pub yielding_download: bool,
    pub yielding_upload: bool,
}

/// What holds a job back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldKind {
    /// A speed limit: the job's own or the global one.
    Limit,
    /// The bandwidth schedule (a limit, or 0 that stops background jobs).
    Schedule,
    /// Other traffic on the network: background jobs use idle bandwidth only.
    Traffic,
}

/// A job held back, by what, and at which limit (none for traffic, and for a schedule of 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldBack {
    pub kind: HoldKind,
    /// "its own speed limit", "the global download limit", "the bandwidth schedule"…
    pub by: &'static str,
    pub limit: Option<Rate>,
}

impl HeldBack {
    pub fn describe(&self) -> String {
        match (self.kind, self.limit) {
            (HoldKind::Traffic, _) => "Giving way to other traffic on the network: background \
                 jobs use only idle bandwidth, and come back to full speed when it ends"
                .into(),
            (HoldKind::Schedule, None) => "Waiting for the bandwidth schedule: it allows \
                 background jobs of this priority no transfer now (FOREGROUND jobs are never held)"
                .into(),
            (_, Some(limit)) => format!("Held back by {} ({})", self.by, format::limit(limit)),
            (HoldKind::Limit, None) => format!("Held back by {}", self.by),
        }
    }
}

/// Whether `job`, moving at `rate` bytes per second, is held back: the bandwidth schedule
/// holds it (BG_E_BLOCKED_BY_POLICY); or it runs and moves at 85 % or more of the lowest of its
/// own limit, the global one of its direction and the schedule's for its priority; or it is a
/// background job giving way to other traffic.
pub fn held_back(job: &Job, rate: f64, limits: &GlobalLimits) -> Option<HeldBack> {
    if job.is_blocked_by_policy() {
        return Some(HeldBack {
            kind: HoldKind::Schedule,
            by: "the bandwidth schedule",
            limit: None,
        });
    }
    if !job.state.is_running() {
        return None;
    }
    let upload = job.job_type.is_upload();
    let global = if upload {
        (HoldKind::Limit, "the global upload limit", limits.upload)
    } else {
        (
            HoldKind::Limit,
            "the global download limit",
            limits.download,
        )
    };
    let schedule = (
        HoldKind::Schedule,
        "the bandwidth schedule",
        limits.schedule.for_priority(job.priority).rate(),
    );
    // The lowest; on a tie, the job's own (the one the user can change there).
    let lowest = [
        (HoldKind::Limit, "its own speed limit", job.limit_rate),
        global,
        schedule,
    ]
    .into_iter()
    .filter_map(|(kind, by, limit)| Some((kind, by, limit?)))
    .min_by_key(|(_, _, limit)| *limit);
    if let Some((kind, by, limit)) = lowest
        && rate >= 0.85 * limit.bytes_per_second() as f64
    {
        return Some(HeldBack {
            kind,
            by,
            limit: Some(limit),
        });
    }
    let yielding = if upload {
        limits.yielding_upload
    } else {
        limits.yielding_download
    };
    (yielding && job.priority.is_background()).then_some(HeldBack {
        kind: HoldKind::Traffic,
        by: "other traffic",
        limit: None,
    })
}

/// A job waits for the user: it is TRANSFERRED or in ERROR, or nothing happened to it for
/// `stale_after`.
pub fn is_stale(job: &Job, now: Timestamp, stale_after: Duration) -> bool {
    !job.state.is_final()
        && (matches!(job.state, JobState::Transferred | JobState::Error)
            || format::between(job.times.modified, now) >= stale_after)
}

/// Time left before the inactivity timeout cancels the job; `None` for finished jobs.
pub fn expires_in(job: &Job, now: &Now) -> Option<Duration> {
    (!job.state.is_final())
        .then(|| format::between(now.wall, job.inactivity_deadline(now.inactivity_timeout)))
}

/// Seconds to go at the current rate; `None` when unknown (or beyond what a `Duration` holds:
/// a rate that decayed towards zero while the job made no progress).
pub fn eta(entry: &Entry, now: &Now) -> Option<Duration> {
    let progress = entry.job.progress();
    let left = progress
        .bytes_total?
        .checked_sub(progress.bytes_transferred)?;
    let rate = entry.speed.rate(now.mono);
    if !(rate > 0.0 && entry.job.state.is_running()) {
        return None;
    }
    Duration::try_from_secs_f64(left as f64 / rate).ok()
}

/// Share done, 0..=1; `None` while the total is unknown.
pub fn fraction(job: &Job) -> Option<f32> {
    let progress = job.progress();
    match progress.bytes_total? {
        0 => Some(if job.all_files_transferred() {
            1.0
        } else {
            0.0
        }),
        total => Some((progress.bytes_transferred as f64 / total as f64).min(1.0) as f32),
    }
}

#[derive(Default)]
pub struct Jobs {
    entries: HashMap<JobId, Entry>,
    /// Shared with the table being drawn (no copy of every id each frame).
    rows: Arc<Vec<JobId>>,
    /// The spec, second and time the rows were computed for; `None` after a listing.
    rows_for: Option<(ViewSpec, i64, Now)>,
    /// Counts the changes of `rows`: a view re-checks its selection only when it moved.
    rows_version: u64,
}

impl Jobs {
    /// Replaces every job (a fresh listing from the service).
    pub fn replace_all(&mut self, jobs: Vec<Job>, mono: f64) {
        let mut old = std::mem::take(&mut self.entries);
        for job in jobs {
            let mut speed = old.remove(&job.id).map(|e| e.speed).unwrap_or_default();
            speed.observe(
                mono,
                job.progress().bytes_transferred,
                job.state.is_running(),
            );
            self.entries.insert(job.id, Entry { job, speed });
        }
        self.rows_for = None;
    }

    /// A newer copy of one job.
    pub fn update(&mut self, job: Job, mono: f64) {
        let entry = self.entries.entry(job.id).or_insert_with(|| Entry {
            job: job.clone(),
            speed: Speed::default(),
        });
        entry.speed.observe(
            mono,
            job.progress().bytes_transferred,
            job.state.is_running(),
        );
        entry.job = job;
        let id = entry.job.id;
        self.reposition(id);
    }

    /// Moves one changed job to its place in the cached rows (or out of them), as a full
    /// recompute for the same spec and time would: a progress update every frame then costs a
    /// binary search, not a sort of every row (10,000 rows: ~2 ms a frame).
    fn reposition(&mut self, id: JobId) {
        let Some((spec, _, now)) = &self.rows_for else {
            return;
        };
        self.rows_version += 1;
        let rows = Arc::make_mut(&mut self.rows);
        if let Some(at) = rows.iter().position(|r| *r == id) {
            rows.remove(at);
        }
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        if !shown(entry, spec, &spec.text.to_lowercase(), now) {
            return;
        }
        let entries = &self.entries;
        let at = rows.partition_point(|other| {
            entries
                .get(other)
                .is_some_and(|o| row_order(o, entry, spec, now).is_lt())
        });
        rows.insert(at, id);
    }

    pub fn remove(&mut self, id: JobId) {
        if self.entries.remove(&id).is_some() {
            self.rows_version += 1;
            Arc::make_mut(&mut self.rows).retain(|r| *r != id);
        }
    }

    pub fn get(&self, id: &JobId) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The visible rows for `spec`: computed again for a new listing or another spec, and each
    /// second where [`ViewSpec::depends_on_time`]; a changed job is moved to its place.
    pub fn rows(&mut self, spec: &ViewSpec, now: &Now) -> Arc<Vec<JobId>> {
        let second = now.wall.timestamp();
        // Computed again each second only where the time changes the rows (10,000 rows: a
        // sort of a few milliseconds, a stutter once a second with a job transferring).
        let fresh = matches!(&self.rows_for,
            Some((s, t, _)) if s == spec && (*t == second || !spec.depends_on_time()));
        if !fresh {
            self.rows = Arc::new(self.compute_rows(spec, now));
            self.rows_for = Some((spec.clone(), second, *now));
            self.rows_version += 1;
        }
        Arc::clone(&self.rows)
    }

    /// Changes whenever the rows may have changed.
    pub fn rows_version(&self) -> u64 {
        self.rows_version
    }

    fn compute_rows(&self, spec: &ViewSpec, now: &Now) -> Vec<JobId> {
        let needle = spec.text.to_lowercase();
        let mut rows: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| shown(e, spec, &needle, now))
            .collect();
        if !spec.stale_only && spec.sort == Column::Name {
            // Lower-cased once per row, not twice per comparison (10,000 rows: ~6× faster);
            // the same order as `row_order`.
            rows.sort_by_cached_key(|e| (e.job.display_name.to_lowercase(), e.job.id));
            if !spec.ascending {
                rows.reverse();
            }
        } else {
            rows.sort_by(|a, b| row_order(a, b, spec, now));
        }
        rows.into_iter().map(|e| e.job.id).collect()
    }
}

/// The row passes the spec's filter (`needle`: its text, lower-cased).
fn shown(entry: &Entry, spec: &ViewSpec, needle: &str, now: &Now) -> bool {
    spec.states[state_order(entry.job.state)]
        && (!spec.stale_only || is_stale(&entry.job, now.wall, spec.stale_after))
        && (needle.is_empty() || matches_text(&entry.job, needle))
}

/// The order of the rows: the sort column, then the id, so that no two rows tie; the Stale view
/// shows the oldest activity first (the next to expire at the top).
fn row_order(a: &Entry, b: &Entry, spec: &ViewSpec, now: &Now) -> std::cmp::Ordering {
    if spec.stale_only {
        return (a.job.times.modified, a.job.id).cmp(&(b.job.times.modified, b.job.id));
    }
    let order = compare(a, b, spec.sort, now).then_with(|| a.job.id.cmp(&b.job.id));
    if spec.ascending {
        order
    } else {
        order.reverse()
    }
}

fn matches_text(job: &Job, needle: &str) -> bool {
    job.display_name.to_lowercase().contains(needle)
        || job.description.to_lowercase().contains(needle)
        || job
            .files
            .iter()
            .any(|f| f.remote_url.to_lowercase().contains(needle))
}

fn state_order(state: JobState) -> usize {
    JobState::ALL.iter().position(|s| *s == state).unwrap_or(0)
}

fn priority_order(priority: Priority) -> u8 {
    priority as u8
}

fn compare(a: &Entry, b: &Entry, column: Column, now: &Now) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let float = |x: f64, y: f64| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    match column {
        Column::Name => a
            .job
            .display_name
            .to_lowercase()
            .cmp(&b.job.display_name.to_lowercase()),
        Column::Type => a.job.job_type.name().cmp(b.job.job_type.name()),
        Column::State => state_order(a.job.state).cmp(&state_order(b.job.state)),
        Column::Progress => float(
            fraction(&a.job).unwrap_or(0.0) as f64,
            fraction(&b.job).unwrap_or(0.0) as f64,
        ),
        Column::Speed => float(a.speed.rate(now.mono), b.speed.rate(now.mono)),
        Column::Eta => eta(a, now)
            .unwrap_or(Duration::MAX)
            .cmp(&eta(b, now).unwrap_or(Duration::MAX)),
        Column::Priority => priority_order(a.job.priority).cmp(&priority_order(b.job.priority)),
        Column::Files => a
            .job
            .progress()
            .files_total
            .cmp(&b.job.progress().files_total),
        Column::LastActivity => a.job.times.modified.cmp(&b.job.times.modified),
        Column::ExpiresIn => expires_in(&a.job, now)
            .unwrap_or(Duration::MAX)
            .cmp(&expires_in(&b.job, now).unwrap_or(Duration::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gui::tray::tests::job;

    fn now_at(minute: i64) -> Now {
        Now {
            wall: chrono::DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).expect("time"),
            mono: 100.0,
            inactivity_timeout: Duration::from_secs(90 * 86_400),
            limits: GlobalLimits::default(),
        }
    }

    #[test]
    fn a_job_at_its_lower_limit_is_held_back_by_it() {
        let rate = |t: &str| Rate::parse(t).expect("rate");
        let mut job = Job::new(
            JobId::new_random(),
            crate::job::JobType::Download,
            "j",
            "me",
            &crate::job::JobDefaults::default(),
            chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        )
        .expect("job");
        let global = GlobalLimits {
            download: Some(rate("4M")),
            upload: Some(rate("256K")),
            ..GlobalLimits::default()
        };
        let mib = 1024.0 * 1024.0;
        assert_eq!(held_back(&job, 4.0 * mib, &global), None, "not running");
        job.state = JobState::Transferring;
        assert_eq!(
            held_back(&job, 3.9 * mib, &global).map(|h| h.by),
            Some("the global download limit")
        );
        assert_eq!(
            held_back(&job, 2.0 * mib, &global),
            None,
            "well below the limit"
        );
        job.limit_rate = Some(rate("1M"));
        let held = held_back(&job, 0.99 * mib, &global).expect("its own, the lower");
        assert_eq!(
            held.describe(),
            "Held back by its own speed limit (1 MiB/s)"
        );
        job.limit_rate = Some(rate("8M"));
        assert_eq!(
            held_back(&job, 3.9 * mib, &global).map(|h| h.by),
            Some("the global download limit"),
            "the global one is lower"
        );
        job.job_type = crate::job::JobType::Upload;
        assert_eq!(
            held_back(&job, 250.0 * 1024.0, &global).map(|h| h.by),
            Some("the global upload limit")
        );
        assert_eq!(held_back(&job, 1.0, &GlobalLimits::default()), None);

        // The schedule's limit for the job's priority counts as one more limit…
        job.job_type = crate::job::JobType::Download;
        job.limit_rate = None;
        job.priority = Priority::Low;
        let scheduled = GlobalLimits {
            schedule: ClassLimits {
                low: crate::job::ClassLimit::Limited(rate("512K")),
                ..ClassLimits::default()
            },
            ..global
        };
        let held = held_back(&job, 510.0 * 1024.0, &scheduled).expect("by the schedule");
        assert_eq!(held.kind, HoldKind::Schedule);
        assert_eq!(
            held.describe(),
            "Held back by the bandwidth schedule (512 KiB/s)"
        );
        // …for background priorities only.
        job.priority = Priority::Foreground;
        assert_eq!(held_back(&job, 510.0 * 1024.0, &scheduled), None);
        // Giving way to other traffic: background jobs in that direction.
        let busy = GlobalLimits {
            yielding_download: true,
            ..GlobalLimits::default()
        };
        assert_eq!(
            held_back(&job, 10.0, &busy),
            None,
            "FOREGROUND never gives way"
        );
        job.priority = Priority::Normal;
        let held = held_back(&job, 10.0, &busy).expect("giving way");
        assert_eq!(held.kind, HoldKind::Traffic);
        assert!(
            held.describe().contains("other traffic"),
            "{}",
            held.describe()
        );
        // Held by a schedule of 0: in TRANSIENT_ERROR with BG_E_BLOCKED_BY_POLICY.
        job.state = JobState::TransientError;
        job.error = Some(crate::job::JobError::new(
            crate::job::ErrorContext::GeneralQueueManager,
            crate::job::ErrorCode::BlockedByPolicy,
            None,
        ));
        let held = held_back(&job, 0.0, &GlobalLimits::default()).expect("held");
        assert_eq!(held.kind, HoldKind::Schedule);
        assert!(
            held.describe()
                .starts_with("Waiting for the bandwidth schedule")
        );
    }

    fn names(jobs: &mut Jobs, spec: &ViewSpec, now: &Now) -> Vec<String> {
        let rows = jobs.rows(spec, now).to_vec();
        rows.iter()
            .map(|id| jobs.get(id).expect("row").job.display_name.clone())
            .collect()
    }

    proptest::proptest! {
        /// A job update moves its row where a full recompute would put it, for every sort
        /// column and direction, the Stale view and a text filter.
        #[test]
        fn an_update_puts_the_row_where_a_full_sort_would(
            updates in proptest::collection::vec(
                (0usize..12, 0usize..9, 0u64..=100, 0i64..30_000, proptest::bool::ANY),
                1..40,
            ),
            column in 0usize..Column::ALL.len(),
            ascending in proptest::bool::ANY,
            stale_only in proptest::bool::ANY,
            filtered in proptest::bool::ANY,
        ) {
            let mut base: Vec<Job> = (0..12)
                .map(|i| job(&format!("job {}", i % 5), JobState::ALL[i % 9], 10, 100, i as i64))
                .collect();
            let mut jobs = Jobs::default();
            jobs.replace_all(base.clone(), 0.0);
            let spec = ViewSpec {
                sort: Column::ALL[column],
                ascending,
                text: if filtered { "3".into() } else { String::new() },
                stale_only,
                ..ViewSpec::default()
            };
            let now = now_at(30_000);
            jobs.rows(&spec, &now);
            for (step, (index, state, done, minute, rename)) in updates.into_iter().enumerate() {
                let job = &mut base[index];
                job.state = JobState::ALL[state];
                job.files[0].bytes_transferred = done;
                job.times.modified =
                    chrono::DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).expect("time");
                if rename {
                    job.display_name = format!("Job {}", step % 7);
                }
                // Within the last second before `now` (mono 100): the rates are live, so that
                // Speed and ETA sort on real values.
                jobs.update(job.clone(), 99.0 + step as f64 * 0.02);
                let kept = jobs.rows(&spec, &now).to_vec();
                proptest::prop_assert_eq!(&kept, &jobs.compute_rows(&spec, &now));
            }
        }
    }

    #[test]
    fn rows_sort_filter_and_follow_updates() {
        let mut jobs = Jobs::default();
        let mut b = job("beta", JobState::Transferring, 50, 100, 2);
        b.files[0].remote_url = "http://127.0.0.1/special/iso".into();
        jobs.replace_all(
            vec![
                job("Alpha", JobState::Suspended, 0, 100, 1),
                b.clone(),
                job("gamma", JobState::Error, 10, 100, 3),
            ],
            0.0,
        );
        let now = now_at(10);
        let mut spec = ViewSpec::default();
        assert_eq!(names(&mut jobs, &spec, &now), ["Alpha", "beta", "gamma"]);
        spec.ascending = false;
        assert_eq!(names(&mut jobs, &spec, &now), ["gamma", "beta", "Alpha"]);
        spec.sort = Column::Progress;
        spec.ascending = true;
        assert_eq!(names(&mut jobs, &spec, &now), ["Alpha", "gamma", "beta"]);
        spec.sort = Column::State; // BG_JOB_STATE order: TRANSFERRING < SUSPENDED < ERROR
        assert_eq!(names(&mut jobs, &spec, &now), ["beta", "Alpha", "gamma"]);
        spec.text = "SPECIAL".into(); // URLs match too, ignoring case
        assert_eq!(names(&mut jobs, &spec, &now), ["beta"]);
        spec.text.clear();
        spec.states[3] = false; // no SUSPENDED
        assert_eq!(names(&mut jobs, &spec, &now), ["beta", "gamma"]);

        // An update re-sorts without waiting for the next second.
        b.files[0].bytes_transferred = 0;
        b.state = JobState::Suspended;
        jobs.update(b.clone(), 1.0);
        spec.states = [true; 9];
        spec.sort = Column::Progress;
        assert_eq!(names(&mut jobs, &spec, &now)[2], "gamma");
        jobs.remove(b.id);
        assert_eq!(jobs.len(), 2);
    }

    #[test]
    fn rows_are_sorted_again_each_second_only_where_time_changes_them() {
        let mut jobs = Jobs::default();
        jobs.replace_all(vec![job("a", JobState::Suspended, 0, 1, 0)], 0.0);
        let mut spec = ViewSpec::default();
        jobs.rows(&spec, &now_at(10));
        let version = jobs.rows_version();
        jobs.rows(&spec, &now_at(11));
        assert_eq!(
            jobs.rows_version(),
            version,
            "by name: the same rows a minute on"
        );
        spec.sort = Column::ExpiresIn;
        jobs.rows(&spec, &now_at(11));
        let version = jobs.rows_version();
        jobs.rows(&spec, &now_at(12));
        assert_ne!(jobs.rows_version(), version, "time left: computed again");
    }

    #[test]
    fn stale_rows_are_the_jobs_waiting_for_the_user_oldest_first() {
        let mut jobs = Jobs::default();
        let day = 24 * 60;
        jobs.replace_all(
            vec![
                job("fresh", JobState::Suspended, 0, 1, 20 * day),
                job("idle", JobState::Suspended, 0, 1, 0),
                job("failed", JobState::Error, 0, 1, 19 * day),
                job("done", JobState::Transferred, 1, 1, 10 * day),
                job("running", JobState::Transferring, 0, 1, 20 * day),
                job("gone", JobState::Cancelled, 0, 1, 0),
            ],
            0.0,
        );
        let spec = ViewSpec {
            stale_only: true,
            ..ViewSpec::default()
        };
        let now = now_at(20 * day + 5);
        assert_eq!(names(&mut jobs, &spec, &now), ["idle", "done", "failed"]);
        let idle = jobs
            .iter()
            .find(|e| e.job.display_name == "idle")
            .expect("idle");
        assert_eq!(
            expires_in(&idle.job, &now),
            Some(Duration::from_secs(70 * 86_400 - 5 * 60))
        );
    }

    #[test]
    fn speed_and_eta_come_from_the_reported_progress() {
        let mut jobs = Jobs::default();
        let mut j = job("j", JobState::Transferring, 0, 10_000_000, 0);
        jobs.update(j.clone(), 0.0);
        j.files[0].bytes_transferred = 1_000_000;
        jobs.update(j.clone(), 1.0);
        let entry = jobs.get(&j.id).expect("entry");
        assert_eq!(entry.speed.rate(1.5), 1_000_000.0);
        let now = Now {
            mono: 1.5,
            ..now_at(0)
        };
        assert_eq!(eta(entry, &now), Some(Duration::from_secs(9)));
        assert_eq!(
            entry.speed.rate(10.0),
            0.0,
            "a stalled transfer shows no rate"
        );
        assert_eq!(entry.speed.history.len(), 1);
        j.state = JobState::Suspended;
        jobs.update(j.clone(), 2.0);
        assert_eq!(jobs.get(&j.id).expect("entry").speed.rate(2.0), 0.0);
    }

    #[test]
    fn a_running_job_that_stops_moving_has_no_eta_rather_than_a_panic() {
        let mut jobs = Jobs::default();
        let mut j = job("stuck", JobState::Transferring, 0, 10_000_000, 0);
        jobs.update(j.clone(), 0.0);
        j.files[0].bytes_transferred = 1_000_000;
        jobs.update(j.clone(), 1.0);
        // The service keeps reporting it running with no new byte: the rate decays each time.
        for i in 1..=100 {
            jobs.update(j.clone(), 1.0 + f64::from(i) * 0.3);
        }
        let now = Now {
            mono: 31.1,
            ..now_at(0)
        };
        let entry = jobs.get(&j.id).expect("entry");
        assert!(
            entry.speed.rate(now.mono) > 0.0,
            "a rate that is tiny, not zero"
        );
        assert_eq!(
            eta(entry, &now),
            None,
            "no time left that a Duration can hold"
        );
    }
}
