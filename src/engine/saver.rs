//! The store on a thread of its own. Saves and removals fsync (the file and its folder); done on
//! the engine's single-threaded runtime they would stall every transfer and every API call for
//! the length of an fsync. One thread, one queue: writes reach the disk in the order the actor
//! made them, and the actor awaits each that must be durable before it answers or reports. A save
//! that a later save of the same job, already queued, would overwrite is not written: its waiters
//! hear back with the later one (a TRANSFERRED job the user completes at once is written once).

use crate::job::{Job, JobId};
use crate::store::{HistoryEntry, Store, StoreError};
use std::collections::VecDeque;
use tokio::sync::oneshot;

/// Told when a write is durable (or failed)…
type Done = oneshot::Sender<Result<(), StoreError>>;
/// …and where that is heard.
type Receipt = oneshot::Receiver<Result<(), StoreError>>;

/// Work on the store beyond saves and removals (the journal and hand-over of TakeOwnership).
type StoreWork = Box<dyn FnOnce(&Store) -> Result<(), StoreError> + Send>;

enum Write {
    /// The job, and who waits for it (more than one when earlier saves were folded into it).
    Save(Box<Job>, Vec<Done>),
    Remove(JobId, Done),
    Record(Box<HistoryEntry>),
    Forget(Option<Vec<JobId>>, Done),
    /// Anything else done to the store, in its turn (the journal and hand-over of TakeOwnership).
    Run(StoreWork, Done),
}

/// The way to the store's thread. Dropping it lets the thread finish what is queued and release
/// the store (and its lock); [`Saver::close`] waits for that.
pub(super) struct Saver {
    queue: std::sync::mpsc::Sender<Write>,
    closed: Option<oneshot::Receiver<()>>,
}

fn gone() -> StoreError {
    StoreError::Io {
        path: "jobs".into(),
        source: std::io::Error::other("the store's thread has stopped"),
    }
}

impl Saver {
    pub(super) fn start(store: Store) -> std::io::Result<Saver> {
        let (queue, writes) = std::sync::mpsc::channel::<Write>();
        let (closed_tx, closed) = oneshot::channel();
        std::thread::Builder::new()
            .name("ferry-store".into())
            .spawn(move || {
                let mut queued = VecDeque::new();
                while let Some(write) = queued.pop_front().or_else(|| writes.recv().ok()) {
                    queued.extend(writes.try_iter());
                    match write {
                        Write::Save(job, waiters) => {
                            if let Some(later) = superseding_save(&mut queued, job.id) {
                                later.extend(waiters);
                                continue;
                            }
                            let result = store.save(&job);
                            for done in waiters {
                                let _ = done.send(result.as_ref().map(|_| ()).map_err(copy_of));
                            }
                        }
                        Write::Remove(id, done) => {
                            let _ = done.send(store.remove(id));
                        }
                        Write::Record(entry) => {
                            if let Err(e) = store.record(&entry) {
                                tracing::warn!("cannot write the history entry: {e}");
                            }
                        }
                        Write::Forget(ids, done) => {
                            let _ = done.send(store.forget(ids.as_deref()));
                        }
                        Write::Run(work, done) => {
                            let _ = done.send(work(&store));
                        }
                    }
                }
                drop(store); // releases the lock
                let _ = closed_tx.send(());
            })?;
        Ok(Saver {
            queue,
            closed: Some(closed),
        })
    }

    /// Queues a save of the job as it is now; the result says when it is durable.
    pub(super) fn save(&self, job: &Job) -> Receipt {
        let (done, result) = oneshot::channel();
        let _ = self
            .queue
            .send(Write::Save(Box::new(job.clone()), vec![done]));
        result
    }

    /// Queues the removal of a job's file.
    pub(super) fn remove(&self, id: JobId) -> Receipt {
        let (done, result) = oneshot::channel();
        let _ = self.queue.send(Write::Remove(id, done));
        result
    }

    /// Queues a history entry (not awaited: a lost entry loses no data).
    pub(super) fn record(&self, entry: HistoryEntry) {
        let _ = self.queue.send(Write::Record(Box::new(entry)));
    }

    /// Queues the deletion of history entries (`None`: all).
    pub(super) fn forget(&self, ids: Option<Vec<JobId>>) -> Receipt {
        let (done, result) = oneshot::channel();
        let _ = self.queue.send(Write::Forget(ids, done));
        result
    }

    /// Queues `work` on the store, after the writes queued before it.
    pub(super) fn run(
        &self,
        work: impl FnOnce(&Store) -> Result<(), StoreError> + Send + 'static,
    ) -> Receipt {
        let (done, result) = oneshot::channel();
        let _ = self.queue.send(Write::Run(Box::new(work), done));
        result
    }

    /// Lets a queued write go on with nobody waiting for it; a failure is logged.
    pub(super) fn log_failure(result: Receipt, job: JobId, what: &'static str) {
        tokio::spawn(async move {
            if let Err(e) = Saver::done(result).await {
                tracing::error!(job = %job, "{what}: {e}");
            }
        });
    }

    /// Waits for a queued write.
    pub(super) async fn done(result: Receipt) -> Result<(), StoreError> {
        result.await.unwrap_or_else(|_| Err(gone()))
    }

    /// Finishes the queued writes and releases the store.
    pub(super) async fn close(mut self) {
        let closed = self.closed.take();
        drop(self);
        if let Some(closed) = closed {
            let _ = closed.await;
        }
    }
}

/// The waiters of a later save of job `id` in `queued`, if one comes before anything else that
/// touches the job's file.
fn superseding_save(queued: &mut VecDeque<Write>, id: JobId) -> Option<&mut Vec<Done>> {
    for write in queued.iter_mut() {
        match write {
            Write::Save(job, waiters) if job.id == id => return Some(waiters),
            Write::Remove(removed, _) if *removed == id => return None,
            _ => {}
        }
    }
    None
}

/// The same error for each of several waiters.
fn copy_of(error: &StoreError) -> StoreError {
    match error {
        StoreError::Locked { dir, holder } => StoreError::Locked {
            dir: dir.clone(),
            holder: holder.clone(),
        },
        StoreError::Io { path, source } => StoreError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobDefaults, JobType};

    fn job(name: &str) -> Job {
        let now = chrono::DateTime::UNIX_EPOCH;
        Job::new(
            JobId::new_random(),
            JobType::Download,
            name,
            "alice",
            &JobDefaults::default(),
            now,
        )
        .expect("job")
    }

    fn save(job: &Job) -> (Write, Receipt) {
        let (done, result) = oneshot::channel();
        (Write::Save(Box::new(job.clone()), vec![done]), result)
    }

    #[test]
    fn a_save_folds_into_a_later_save_of_the_same_job_only() {
        let (a, b) = (job("a"), job("b"));
        let (later_a, _) = save(&a);
        let (save_b, _) = save(&b);
        let mut queued = VecDeque::from([save_b, later_a]);
        let waiters = superseding_save(&mut queued, a.id).expect("the later save of a");
        assert_eq!(waiters.len(), 1);
        // A removal between the two: the earlier save is written (it is not the last word).
        let (done, _) = oneshot::channel();
        let (after_removal, _) = save(&a);
        let mut queued = VecDeque::from([Write::Remove(a.id, done), after_removal]);
        assert!(superseding_save(&mut queued, a.id).is_none());
        assert!(superseding_save(&mut VecDeque::new(), a.id).is_none());
    }

    #[tokio::test]
    async fn every_waiter_of_folded_saves_hears_when_the_last_is_durable() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let saver = Saver::start(store).expect("saver");
        let mut a = job("first");
        let results: Vec<_> = (0..5)
            .map(|i| {
                a.display_name = format!("version {i}");
                saver.save(&a)
            })
            .collect();
        for result in results {
            Saver::done(result).await.expect("saved");
        }
        saver.close().await;
        let text = std::fs::read_to_string(dir.path().join("jobs").join(format!("{}.ron", a.id.0)))
            .expect("job file");
        assert!(text.contains("version 4"), "the last version is on disk");
    }
}
