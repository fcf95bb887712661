//! TakeOwnership (spec §9) in the engine: the giving side (`hand_over`, on the owner's engine)
//! and the taking side (`begin_move`, `finish_move`, `abort_move`, and the recovery at start, on
//! root's). The protocol and its commit point are in `store/ownership.rs`.

use super::actor::Actor;
use super::api::{EngineEvent, TakenOver};
use super::saver::Saver;
use crate::job::{self, BitsError, ErrorCode, Event, Job, JobId, JobType, Timestamp};
use crate::platform::{Access, Account};
use crate::store::ownership::{MoveRecord, UsersStore};
use crate::store::{Store, StoreError};

fn store_failed(what: &str) -> impl FnOnce(StoreError) -> BitsError + '_ {
    move |e| BitsError::new(ErrorCode::LocalIo, format!("{what}: {e}"))
}

/// Every file of `job` must be one its owner could reach: the folder of a download's file (and
/// of an upload-reply's reply) to write in, an upload's file to read. The job file was theirs to
/// write, so without this a user could have root's service write or send any file of the machine.
pub fn check_reachable(job: &Job, account: &Account) -> Result<(), BitsError> {
    let mut refused = Vec::new();
    let folder_of = |path: &std::path::Path| {
        path.parent()
            .is_some_and(|dir| account.may(Access::WriteInFolder, dir))
    };
    for file in &job.files {
        let reachable = match job.job_type {
            JobType::Download => folder_of(&file.local_path),
            JobType::Upload | JobType::UploadReply => account.may(Access::Read, &file.local_path),
        };
        if !reachable {
            refused.push(file.local_path.display().to_string());
        }
    }
    if let Some(reply) = &job.reply.file_name
        && job.job_type == JobType::UploadReply
        && !folder_of(reply)
    {
        refused.push(reply.display().to_string());
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(BitsError::new(
        ErrorCode::AccessDenied,
        format!(
            "job {} names files {} (uid {}) could not reach: {}. Root does not take over a job \
             that would make it read or write files its owner may not (the job file was theirs \
             to write); cancel it as that user instead",
            job.id,
            account.name,
            account.uid,
            refused.join(", ")
        ),
    ))
}

/// The user whose store a move comes from, as the password database knows them.
fn account_of(record: &MoveRecord) -> Result<Account, BitsError> {
    Account::by_name(&record.from_user)
        .filter(|a| a.uid == record.from_uid)
        .ok_or_else(|| {
            BitsError::new(
                ErrorCode::InvalidArg,
                format!(
                    "there is no user {} with uid {} on this machine",
                    record.from_user, record.from_uid
                ),
            )
        })
}

/// The handed-over job of `record`, read from the user's store, checked, and made `owner`'s
/// (blocking). Also what it lost.
pub(super) fn adopt(
    record: &MoveRecord,
    owner: &str,
    now: Timestamp,
) -> Result<(Job, Vec<&'static str>), BitsError> {
    let theirs = UsersStore::open(&record.from_data_dir, record.from_uid)
        .map_err(|e| BitsError::new(ErrorCode::AccessDenied, e))?;
    let mut job = theirs.read(record.id, true).map_err(|e| {
        BitsError::new(
            ErrorCode::LocalIo,
            format!("cannot read the job {} handed over: {e}", record.id),
        )
    })?;
    check_reachable(&job, &account_of(record)?)?;
    let removed = job.give_to(owner, now);
    // Running transfers were stopped by the hand-over: they go on from their checkpoint.
    let _ = job::apply(&mut job, Event::Recovered, now);
    Ok((job, removed))
}

/// Finishes the moves root's journal names, at start (before the jobs are handed to the actor):
/// each job ends up in exactly one store. `loaded` gains the jobs taken over.
pub(super) fn recover_moves(store: &Store, loaded: &mut Vec<Job>, owner: &str, now: Timestamp) {
    let moves = match store.moves() {
        Ok(moves) => moves,
        Err(e) => {
            tracing::error!("cannot read the journal of jobs taken over: {e}");
            return;
        }
    };
    for record in moves {
        let id = record.id;
        let mut ours = loaded.iter().any(|j| j.id == id);
        let mut finished = true;
        match UsersStore::open(&record.from_data_dir, record.from_uid) {
            Ok(theirs) => {
                if !ours && theirs.has(id, true) {
                    let adopted = adopt(&record, owner, now).map_err(|e| e.to_string());
                    match adopted.and_then(|(job, _)| {
                        store.save(&job).map_err(|e| e.to_string())?;
                        Ok(job)
                    }) {
                        Ok(job) => {
                            tracing::info!(job = %id, from = %record.from_user, "took over a job handed over before the stop");
                            loaded.push(job);
                            ours = true;
                        }
                        Err(e) => {
                            // Still in their store, inert: tried again at the next start.
                            tracing::error!(job = %id, from = %record.from_user, "cannot take over the job handed over: {e}");
                            finished = false;
                        }
                    }
                }
                if ours && let Err(e) = theirs.remove_handed_over(id) {
                    tracing::warn!(job = %id, "cannot delete the handed-over copy: {e}");
                    finished = false;
                }
            }
            Err(e) => tracing::warn!(job = %id, "the store the job was to come from is gone: {e}"),
        }
        if finished && let Err(e) = store.end_move(id) {
            tracing::warn!(job = %id, "cannot end the move's journal entry: {e}");
        }
    }
}

impl Actor {
    /// The giving side: see [`super::EngineHandle::hand_over`].
    pub(super) async fn hand_over(&mut self, id: JobId, to: String) -> Result<(), BitsError> {
        let Some(job) = self.jobs.get(&id) else {
            // Asked again after an answer that was lost: the file says whether it was done.
            let handed_over = Saver::done(self.store.run(move |store| {
                if store.is_handed_over(id) {
                    Ok(())
                } else {
                    Err(StoreError::Io {
                        path: "jobs".into(),
                        source: std::io::ErrorKind::NotFound.into(),
                    })
                }
            }))
            .await;
            return match handed_over {
                Ok(()) => Ok(()),
                Err(_) => self.job(id).map(drop),
            };
        };
        if job.state.is_final() {
            return self.job(id).map(drop);
        }
        self.stop_worker(id).await;
        let Some(job) = self.jobs.get(&id).cloned() else {
            return Err(BitsError::from_code(ErrorCode::NotFound));
        };
        self.save(&job).await?;
        Saver::done(self.store.run(move |store| store.hand_over(id)))
            .await
            .map_err(store_failed("cannot hand the job over"))?;
        self.emit(EngineEvent::OwnerChanged {
            job: id,
            from: self.user.name.clone(),
            to,
        });
        self.jobs.remove(&id);
        self.dirty.remove(&id);
        self.job_paces.remove(&id);
        self.slice_started.remove(&id);
        self.notify_retry.remove(&id);
        self.modifications.remove(&id);
        self.to_complete.retain(|j| *j != id);
        self.publish_machine(None);
        Ok(())
    }

    /// The taking side, first step: see [`super::EngineHandle::begin_move`].
    pub(super) async fn begin_move(&mut self, record: MoveRecord) -> Result<(), BitsError> {
        if !self.user.is_admin() {
            return Err(BitsError::new(
                ErrorCode::AccessDenied,
                format!(
                    "only root may take ownership of another user's job; this service is {}'s",
                    self.user.name
                ),
            ));
        }
        let id = record.id;
        if self.jobs.contains_key(&id) || self.moves.contains_key(&id) {
            return Err(BitsError::new(
                ErrorCode::InvalidState,
                format!("job {id} is already root's, or being taken over"),
            ));
        }
        let entry = record.clone();
        Saver::done(self.store.run(move |store| store.begin_move(&entry)))
            .await
            .map_err(store_failed("cannot write the move's journal entry"))?;
        self.moves.insert(id, record);
        Ok(())
    }

    /// The taking side, once handed over: see [`super::EngineHandle::finish_move`].
    pub(super) async fn finish_move(&mut self, id: JobId) -> Result<TakenOver, BitsError> {
        let record = self.moves.get(&id).cloned().ok_or_else(|| {
            BitsError::new(
                ErrorCode::NotFound,
                format!("no move of job {id} was begun"),
            )
        })?;
        let (owner, now) = (self.user.name.clone(), self.now());
        let reading = record.clone();
        let adopted = tokio::task::spawn_blocking(move || adopt(&reading, &owner, now))
            .await
            .map_err(|e| BitsError::new(ErrorCode::LocalIo, e.to_string()))?;
        let (job, removed) = match adopted {
            Ok(adopted) => adopted,
            Err(e) => {
                // Changed since it was checked (the user raced their own service): back to them.
                let giving = record.clone();
                let given_back = tokio::task::spawn_blocking(move || {
                    UsersStore::open(&giving.from_data_dir, giving.from_uid)
                        .and_then(|s| s.give_back(giving.id).map_err(|e| e.to_string()))
                })
                .await;
                if matches!(given_back, Ok(Ok(()))) {
                    self.abort_move(id).await?;
                    return Err(BitsError::new(
                        e.code,
                        format!(
                            "{} It is back in {}'s store; their service loads it when it next \
                             starts.",
                            e.message, record.from_user
                        ),
                    ));
                }
                return Err(e);
            }
        };
        // Saved before anyone hears: from here the journal entry finishes the move at a start.
        self.save(&job).await?;
        self.jobs.insert(id, job.clone());
        self.moves.remove(&id);
        self.publish_machine(None);
        self.emit(EngineEvent::OwnerChanged {
            job: id,
            from: record.from_user.clone(),
            to: self.user.name.clone(),
        });
        let cleaning = record.clone();
        let cleaned = tokio::task::spawn_blocking(move || {
            UsersStore::open(&cleaning.from_data_dir, cleaning.from_uid)
                .and_then(|s| s.remove_handed_over(cleaning.id).map_err(|e| e.to_string()))
        })
        .await;
        match cleaned {
            Ok(Ok(())) => Saver::log_failure(
                self.store.run(move |store| store.end_move(id)),
                id,
                "cannot end the move's journal entry",
            ),
            Ok(Err(e)) => {
                tracing::warn!(job = %id, "cannot delete the handed-over copy ({e}): done at the next start");
            }
            Err(e) => tracing::warn!(job = %id, "{e}"),
        }
        Ok(TakenOver {
            job,
            from: record.from_user,
            removed: removed.into_iter().map(String::from).collect(),
        })
    }

    /// The taking side, when the job was not handed over.
    pub(super) async fn abort_move(&mut self, id: JobId) -> Result<(), BitsError> {
        self.moves.remove(&id);
        Saver::done(self.store.run(move |store| store.end_move(id)))
            .await
            .map_err(store_failed("cannot end the move's journal entry"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobDefaults, NotifyCommand};

    fn job(owner: &str, name: &str) -> Job {
        let now = chrono::DateTime::UNIX_EPOCH;
        let mut job = Job::new(
            JobId::new_random(),
            JobType::Download,
            name,
            owner,
            &JobDefaults::default(),
            now,
        )
        .expect("job");
        job.custom_headers = vec![("X-Token".into(), "theirs".into())];
        job.notify_command = Some(NotifyCommand {
            program: "/bin/true".into(),
            args: Vec::new(),
        });
        job
    }

    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The three states a crash can leave a move in, each finished at the next start with the
    /// job in exactly one store.
    #[test]
    fn a_start_finishes_each_move_in_exactly_one_store() {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let user = crate::platform::user_name(uid).expect("this user has a name");
        let (theirs_dir, ours_dir) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let theirs = Store::open(theirs_dir.path()).expect("their store");
        // Handed over, not yet in root's store; never handed over; handed over and already in
        // root's store, their copy not yet deleted.
        let (handed, kept, copied) = (
            job(&user, "handed"),
            job(&user, "kept"),
            job(&user, "copied"),
        );
        for job in [&handed, &kept, &copied] {
            theirs.save(job).expect("save");
        }
        theirs.hand_over(handed.id).expect("hand over");
        theirs.hand_over(copied.id).expect("hand over");
        theirs
            .hand_over(copied.id)
            .expect("a second hand-over finds it done");
        drop(theirs);
        let ours = Store::open(ours_dir.path()).expect("root's store");
        let mut copy = copied.clone();
        copy.give_to("root", chrono::DateTime::UNIX_EPOCH);
        ours.save(&copy).expect("save");
        for job in [&handed, &kept, &copied] {
            ours.begin_move(&MoveRecord {
                id: job.id,
                from_uid: uid,
                from_user: user.clone(),
                from_data_dir: theirs_dir.path().to_path_buf(),
            })
            .expect("journal");
        }
        let (mut loaded, _) = ours.load().expect("load");
        recover_moves(&ours, &mut loaded, "root", chrono::DateTime::UNIX_EPOCH);

        let mut ids: Vec<JobId> = loaded.iter().map(|j| j.id).collect();
        ids.sort();
        let mut expected = vec![handed.id, copied.id];
        expected.sort();
        assert_eq!(ids, expected, "root has the jobs handed over");
        let adopted = loaded.iter().find(|j| j.id == handed.id).expect("adopted");
        assert_eq!(adopted.owner, "root");
        assert!(adopted.custom_headers.is_empty() && adopted.notify_command.is_none());
        let (reloaded, _) = ours.load().expect("load again");
        assert!(
            reloaded.iter().any(|j| j.id == handed.id),
            "saved in root's store"
        );
        assert!(
            ours.moves().expect("journal").is_empty(),
            "every move finished"
        );
        assert_eq!(
            names_in(&theirs_dir.path().join("jobs")),
            vec![format!("{}.ron", kept.id.0)],
            "the user keeps only the job never handed over"
        );
    }

    #[test]
    fn another_users_store_is_not_opened_as_theirs() {
        let dir = tempfile::tempdir().expect("dir");
        drop(Store::open(dir.path()).expect("store"));
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let error = UsersStore::open(dir.path(), uid.wrapping_add(1))
            .err()
            .expect("not that uid's");
        assert!(
            error.contains(&format!("it belongs to uid {uid}")),
            "{error}"
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).expect("link");
        assert!(
            UsersStore::open(&link, uid).is_err(),
            "a link is not followed"
        );
        assert!(UsersStore::open(dir.path(), uid).is_ok());
    }
}
