//! The actor's clocks: the model's deadlines (retry, no-progress, inactivity, time slices) on the
//! engine's clock, and the checkpoint and event pacing on the monotonic one.

use super::actor::{Actor, CHECKPOINT_INTERVAL, Persist};
use super::api::EngineEvent;
use super::saver::Saver;
use super::scheduler;
use crate::job::{Event, Job, JobId, JobState, Timestamp, later};
use std::time::Duration;
use tokio::time::Instant;

impl Actor {
    /// Applies Tick to jobs whose timers are due and reruns failed notify commands.
    pub(super) async fn on_time(&mut self) {
        let now = self.now();
        let policy = self.config.time_policy();
        let due: Vec<JobId> = self
            .jobs
            .values()
            .filter(|job| self.job_deadline(job).is_some_and(|at| at <= now))
            .map(|job| job.id)
            .collect();
        for id in due {
            let _ = self.apply(id, Event::Tick(policy), Persist::Now).await;
        }
        let reruns: Vec<JobId> = self
            .notify_retry
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in reruns {
            if let Some((_, state)) = self.notify_retry.remove(&id)
                && self.jobs.get(&id).is_some_and(|j| j.state == state)
            {
                self.run_notify_command(id);
            }
        }
    }

    /// The earliest moment a Tick could change this job.
    fn job_deadline(&self, job: &Job) -> Option<Timestamp> {
        let policy = self.config.time_policy();
        let inactivity = job.inactivity_deadline(policy.inactivity_timeout);
        let mut deadline = inactivity;
        if !job.inactivity_warned {
            let warn_at = inactivity
                .checked_sub_signed(
                    chrono::Duration::from_std(policy.warning_window).unwrap_or_default(),
                )
                .unwrap_or(inactivity);
            deadline = deadline.min(warn_at);
        }
        if job.state == JobState::TransientError {
            if let Some(at) = job.retry.next_retry_at {
                deadline = deadline.min(at);
            }
            if let Some(since) = job.retry.no_progress_since {
                deadline = deadline.min(later(since, job.no_progress_timeout));
            }
        }
        if let Some(since) = job.download_clock.running_since {
            let left = job
                .max_download_time
                .saturating_sub(job.download_clock.used);
            // Strictly past the limit: one millisecond after it.
            deadline = deadline.min(later(since, left + Duration::from_millis(1)));
        }
        Some(deadline)
    }

    pub(super) fn next_model_deadline(&self) -> Option<Timestamp> {
        let jobs = self.jobs.values().filter_map(|job| self.job_deadline(job));
        let notify = self.notify_retry.values().map(|(at, _)| *at);
        let slice = scheduler::slice_deadline(&self.jobs, &self.slice_started, self.slice());
        jobs.chain(notify)
            .chain(slice)
            .chain(self.policy_deadline)
            .min()
    }

    pub(super) fn next_io_deadline(&self) -> Option<Instant> {
        let flush = (!self.dirty.is_empty()).then(|| self.last_flush + CHECKPOINT_INTERVAL);
        let interval = Duration::from_millis(self.config.modification_interval_ms);
        let modification = self
            .modifications
            .values()
            .filter(|m| m.pending)
            .map(|m| m.last.map_or_else(Instant::now, |last| last + interval))
            .min();
        flush.into_iter().chain(modification).min()
    }

    pub(super) fn slice(&self) -> Duration {
        Duration::from_secs(self.config.time_slice_secs)
    }

    /// Saves changed progress, at most once per checkpoint interval unless `force`.
    /// Saves the jobs whose progress changed (all queued at once, then awaited), and reports
    /// each checkpoint once it is durable.
    pub(super) async fn flush(&mut self, force: bool) {
        if self.dirty.is_empty() || (!force && self.last_flush.elapsed() < CHECKPOINT_INTERVAL) {
            return;
        }
        let mut queued = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let checkpointed: u64 = job.files.iter().map(|f| f.bytes_checkpointed).sum();
            queued.push((id, checkpointed, self.store.save(job)));
        }
        for (id, checkpointed, done) in queued {
            match Saver::done(done).await {
                Ok(()) => {
                    tracing::debug!(job = %id, checkpointed, "progress saved");
                    self.emit(EngineEvent::ProgressSaved {
                        job: id,
                        checkpointed,
                    });
                }
                Err(e) => {
                    tracing::error!(job = %id, "cannot save a checkpoint: {e}");
                    self.dirty.insert(id); // tried again at the next checkpoint
                }
            }
        }
        self.last_flush = Instant::now();
    }

    /// Sends the JobModification events that are due (rate-limited per job).
    pub(super) fn publish_modifications(&mut self, force: bool) {
        let interval = Duration::from_millis(self.config.modification_interval_ms);
        let now = Instant::now();
        let mut due = Vec::new();
        for (id, pacing) in &mut self.modifications {
            let ready = pacing.last.is_none_or(|last| now >= last + interval);
            if pacing.pending && (force || ready) {
                pacing.pending = false;
                pacing.last = Some(now);
                due.push(*id);
            }
        }
        for id in due {
            let job = self
                .jobs
                .get(&id)
                .or_else(|| self.finished.iter().rev().find(|j| j.id == id));
            if let Some(job) = job {
                self.emit(EngineEvent::JobModification {
                    job: id,
                    state: job.state,
                    progress: job.progress(),
                });
            }
        }
    }
}
