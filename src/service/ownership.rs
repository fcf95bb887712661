//! TakeOwnership (spec §9) across two services: root's service finds the user's store and
//! service, has the job handed over (by the user's service, or by itself under the store's lock
//! when no service runs there), and takes it in. The steps and why a crash leaves the job in
//! exactly one store: `store/ownership.rs`.

use super::client::{Client, ClientError};
use crate::engine::{EngineHandle, api::TakenOver};
use crate::job::{BitsError, ErrorCode, Job};
use crate::platform::Account;
use crate::store::machine::{MachineRegistry, ServiceRecord, services_of};
use crate::store::ownership::{MoveRecord, UsersStore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long root waits for the user's service: a user's stopped (or hostile) service must not
/// hold root's request forever.
const USER_SERVICE_PATIENCE: Duration = Duration::from_secs(15);

/// Body of `POST /v1/take-ownership`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeOwnership {
    /// The job: its id, a unique prefix of it, or its display name among the user's jobs.
    pub job: String,
    /// The user whose job it is.
    pub user: String,
    /// The user's data directory, when it is neither in the machine registry nor the default.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

fn denied(message: String) -> BitsError {
    BitsError::new(ErrorCode::AccessDenied, message)
}

fn from_client(e: ClientError) -> BitsError {
    match e {
        ClientError::Api(e) => e,
        other => BitsError::new(ErrorCode::LocalIo, other.to_string()),
    }
}

/// One place the user's jobs may be: a store, and the service on it if one answers there.
struct Place {
    store: UsersStore,
    service: Option<Client>,
    socket: PathBuf,
}

/// The user's service on `socket`, if one answers there and it is theirs on that store: the
/// socket must be the user's file, and the service must say it runs for them on `data_dir`
/// (a record names any socket its user likes).
async fn users_service(socket: &Path, account: &Account, data_dir: &Path) -> Option<Client> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(socket).ok()?;
    if !meta.file_type().is_socket() || meta.uid() != account.uid {
        return None;
    }
    let client = Client::new(socket).ok()?;
    let status = tokio::time::timeout(USER_SERVICE_PATIENCE, client.status())
        .await
        .ok()?
        .ok()?;
    (status.uid == account.uid && status.data_dir == data_dir).then_some(client)
}

/// Where `account`'s stores may be: `data_dir` if given, else those their services recorded in
/// the machine registry, and the default (`~/.local/share/ferry`).
fn candidates(account: &Account, data_dir: Option<&Path>) -> Vec<ServiceRecord> {
    let recorded = services_of(&MachineRegistry::dir_from_env(), account.uid);
    let default_socket = PathBuf::from(format!("/run/user/{}/ferry/ferry.sock", account.uid));
    if let Some(dir) = data_dir {
        let socket = recorded
            .iter()
            .find(|r| r.data_dir == dir)
            .map_or(default_socket, |r| r.socket.clone());
        return vec![ServiceRecord {
            data_dir: dir.to_path_buf(),
            socket,
        }];
    }
    let mut places = recorded;
    let default = account.home.join(".local/share/ferry");
    if !places.iter().any(|r| r.data_dir == default) {
        places.push(ServiceRecord {
            data_dir: default,
            socket: default_socket,
        });
    }
    places
}

/// The job `token` names among the user's jobs, and the place it is in.
async fn find(
    account: &Account,
    token: &str,
    data_dir: Option<&Path>,
) -> Result<(Place, Job), BitsError> {
    let mut places = Vec::new();
    let mut looked = Vec::new();
    for record in candidates(account, data_dir) {
        looked.push(record.data_dir.display().to_string());
        let (dir, uid) = (record.data_dir.clone(), account.uid);
        let Ok(Ok(store)) = tokio::task::spawn_blocking(move || UsersStore::open(&dir, uid)).await
        else {
            continue;
        };
        let service = users_service(&record.socket, account, &record.data_dir).await;
        places.push(Place {
            store,
            service,
            socket: record.socket,
        });
    }
    // Their jobs as their service has them (the newest), else as their store has them; jobs
    // handed over in a move cut short are in the store only.
    let mut jobs: Vec<(usize, Job)> = Vec::new();
    for (index, place) in places.iter().enumerate() {
        let listed = match &place.service {
            Some(client) => tokio::time::timeout(USER_SERVICE_PATIENCE, client.jobs(false))
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let stored = place.store.jobs();
        let mut seen: Vec<Job> = listed.unwrap_or_default();
        for job in stored {
            if !seen.iter().any(|j| j.id == job.id) {
                seen.push(job);
            }
        }
        jobs.extend(seen.into_iter().map(|job| (index, job)));
    }
    if places.is_empty() {
        return Err(BitsError::new(
            ErrorCode::NotFound,
            format!(
                "{} has no Ferry store in {}; name theirs with --data-dir",
                account.name,
                looked.join(", ")
            ),
        ));
    }
    let all: Vec<Job> = jobs.iter().map(|(_, job)| job.clone()).collect();
    let job = super::resolve::resolve(&all, token)
        .map_err(|e| {
            BitsError::new(
                e.code,
                format!(
                    "{} has no job {token:?} (an id, a unique prefix of one, or a display name; \
                     looked in {})",
                    account.name,
                    looked.join(", ")
                ),
            )
        })?
        .clone();
    let index = jobs
        .iter()
        .find(|(_, j)| j.id == job.id)
        .map_or(0, |(index, _)| *index);
    let place = places.swap_remove(index);
    Ok((place, job))
}

/// `POST /v1/take-ownership`, on root's service.
pub(super) async fn take_ownership(
    engine: &EngineHandle,
    service_uid: u32,
    request: TakeOwnership,
) -> Result<TakenOver, BitsError> {
    if service_uid != 0 {
        return Err(denied(
            "only root may take ownership of another user's job (E_ACCESSDENIED, as in BITS): run \
             it as root, for example with sudo"
                .into(),
        ));
    }
    let account = Account::by_name(&request.user).ok_or_else(|| {
        BitsError::new(
            ErrorCode::InvalidArg,
            format!("there is no user {:?} on this machine", request.user),
        )
    })?;
    if account.uid == 0 {
        return Err(BitsError::new(
            ErrorCode::InvalidArg,
            "the job would be root's already: name the user whose job it is".to_string(),
        ));
    }
    let (place, job) = find(&account, &request.job, request.data_dir.as_deref()).await?;
    // Refused before anything moves; checked again on the file handed over.
    crate::engine::check_reachable(&job, &account)?;
    let id = job.id;
    engine
        .begin_move(MoveRecord {
            id,
            from_uid: account.uid,
            from_user: account.name.clone(),
            from_data_dir: place.store.data_dir().to_path_buf(),
        })
        .await?;
    if let Err(e) = release(&place, &account, id).await {
        let _ = engine.abort_move(id).await;
        return Err(e);
    }
    engine.finish_move(id).await
}

/// Has the job handed over: by the user's service when it runs, else by root under the store's
/// lock (so that no service starts on the store meanwhile).
async fn release(place: &Place, account: &Account, id: crate::job::JobId) -> Result<(), BitsError> {
    if place.store.has(id, true) {
        return Ok(()); // handed over by a move cut short
    }
    if let Some(client) = &place.service {
        return match tokio::time::timeout(USER_SERVICE_PATIENCE, client.hand_over(id)).await {
            Ok(result) => result.map_err(from_client),
            Err(_) => Err(BitsError::new(
                ErrorCode::LocalIo,
                format!(
                    "{}'s service at {} did not hand the job over within {} s; nothing was \
                     moved: try again",
                    account.name,
                    place.socket.display(),
                    USER_SERVICE_PATIENCE.as_secs()
                ),
            )),
        };
    }
    let lock = place.store.lock_if_idle().map_err(|e| {
        BitsError::new(
            ErrorCode::LocalIo,
            format!(
                "cannot lock {}'s store {}: {e}",
                account.name,
                place.store.data_dir().display()
            ),
        )
    })?;
    let Some(_lock) = lock else {
        return Err(BitsError::new(
            ErrorCode::LocalIo,
            format!(
                "a service of {}'s holds the store {} but does not answer at {}; nothing was \
                 moved: try again once it answers, or name its data directory with --data-dir",
                account.name,
                place.store.data_dir().display(),
                place.socket.display()
            ),
        ));
    };
    place.store.hand_over(id).map_err(|e| {
        BitsError::new(
            ErrorCode::LocalIo,
            format!(
                "cannot hand the job over in {}: {e}",
                place.store.data_dir().display()
            ),
        )
    })
}
