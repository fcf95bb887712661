//! Where the engine's events go. Two streams: the whole stream, for Ferry's own surfaces (the
//! window, `ferry get` and `ferry wait` follow every job whatever its notify flags), and the
//! stream by notify flags, where a job is heard only as an application that set its flags asked
//! (spec §7.5): JobTransferred with BG_NOTIFY_JOB_TRANSFERRED, JobError with BG_NOTIFY_JOB_ERROR,
//! JobModification with BG_NOTIFY_JOB_MODIFICATION, nothing with BG_NOTIFY_DISABLE.

use tokio::sync::broadcast;

use super::api::EngineEvent;
use crate::job::{JobState, NotifyFlags};

/// Events a listener may fall behind by before it hears `Lagged`.
const CAPACITY: usize = 4096;

/// The two streams, fed together so that each keeps the engine's order. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    all: broadcast::Sender<EngineEvent>,
    by_flags: broadcast::Sender<EngineEvent>,
}

/// Which events a listener hears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Every event of every job (Ferry's surfaces).
    All,
    /// Each job's events as its notify flags ask (what BITS delivers to a callback).
    ByNotifyFlags,
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus {
            all: broadcast::channel(CAPACITY).0,
            by_flags: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    /// Sends `event` to every listener that should hear it. `flags` are the notify flags of the
    /// job the event is about (`None`: not about a job, or a job already gone).
    pub fn publish(&self, event: EngineEvent, flags: Option<NotifyFlags>) {
        if self.by_flags.receiver_count() > 0 && told_by_flags(&event, flags) {
            let _ = self.by_flags.send(event.clone());
        }
        let _ = self.all.send(event);
    }

    pub fn subscribe(&self, which: Subscription) -> broadcast::Receiver<EngineEvent> {
        match which {
            Subscription::All => self.all.subscribe(),
            Subscription::ByNotifyFlags => self.by_flags.subscribe(),
        }
    }
}

/// Whether a listener by notify flags hears `event` of a job whose flags are `flags`.
///
/// StateChanged and ProgressSaved are details of a JobModification and go with its flag; like
/// it, a change into ERROR or TRANSFERRED is told by JobError / JobTransferred only. Ferry's own
/// events about a job (inactivity, a failed Complete, a failed notify command, an ended upload
/// session) are told unless the job disabled notifications. Events about no job always are.
pub fn told_by_flags(event: &EngineEvent, flags: Option<NotifyFlags>) -> bool {
    let Some(flags) = flags else {
        return true;
    };
    if event.job().is_none() {
        return true;
    }
    if flags.0 & NotifyFlags::DISABLE != 0 {
        return false;
    }
    match event {
        EngineEvent::JobTransferred { .. } => flags.wants(NotifyFlags::JOB_TRANSFERRED),
        EngineEvent::JobError { .. } => flags.wants(NotifyFlags::JOB_ERROR),
        EngineEvent::FileTransferred { .. } => flags.wants(NotifyFlags::FILE_TRANSFERRED),
        EngineEvent::JobModification { .. } | EngineEvent::ProgressSaved { .. } => {
            flags.wants(NotifyFlags::JOB_MODIFICATION)
        }
        EngineEvent::StateChanged { to, .. } => {
            flags.wants(NotifyFlags::JOB_MODIFICATION)
                && !matches!(to, JobState::Error | JobState::Transferred)
        }
        EngineEvent::InactivityWarning { .. }
        | EngineEvent::InactivityCancelled { .. }
        | EngineEvent::NotifyCommandFailed { .. }
        | EngineEvent::UploadSessionEnded { .. }
        | EngineEvent::CompleteFailed { .. }
        | EngineEvent::OwnerChanged { .. }
        | EngineEvent::QuotaExceeded { .. }
        | EngineEvent::Yielding { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, Progress};

    fn flags(bits: u32) -> Option<NotifyFlags> {
        Some(NotifyFlags(bits))
    }

    #[test]
    fn each_event_follows_its_flag() {
        let job = JobId::new_random();
        let transferred = EngineEvent::JobTransferred { job };
        let modification = EngineEvent::JobModification {
            job,
            state: JobState::Transferring,
            progress: Progress {
                bytes_total: Some(10),
                bytes_transferred: 5,
                files_total: 1,
                files_transferred: 0,
            },
        };
        let queued = EngineEvent::StateChanged {
            job,
            from: JobState::Suspended,
            to: JobState::Queued,
        };
        let into_transferred = EngineEvent::StateChanged {
            job,
            from: JobState::Transferring,
            to: JobState::Transferred,
        };
        let file = EngineEvent::FileTransferred { job, file: 0 };
        let inactivity = EngineEvent::InactivityCancelled { job };
        let yielding = EngineEvent::Yielding {
            download: true,
            upload: false,
        };
        // (event, flags, told)
        let table = [
            (&transferred, 0x1, true),
            (&transferred, 0x2, false),
            (&transferred, 0x1 | 0x4, false),
            (&modification, 0x3, false),
            (&modification, 0x8, true),
            (&modification, 0x8 | 0x4, false),
            (&queued, 0x3, false),
            (&queued, 0x8, true),
            (&into_transferred, 0x8 | 0x1, false),
            (&file, 0x3, false),
            (&file, 0x10, true),
            (&inactivity, 0x0, true),
            (&inactivity, 0x4, false),
            (&yielding, 0x4, true),
        ];
        for (event, bits, told) in table {
            assert_eq!(
                told_by_flags(event, flags(bits)),
                told,
                "{event:?} with flags {bits:#x}"
            );
        }
    }

    #[tokio::test]
    async fn the_whole_stream_hears_what_the_flags_leave_out() {
        let bus = EventBus::default();
        let mut all = bus.subscribe(Subscription::All);
        let mut by_flags = bus.subscribe(Subscription::ByNotifyFlags);
        let job = JobId::new_random();
        bus.publish(EngineEvent::JobTransferred { job }, flags(0x2));
        bus.publish(
            EngineEvent::JobError {
                job,
                error: crate::job::JobError::new(
                    crate::job::ErrorContext::RemoteFile,
                    crate::job::ErrorCode::Http(404),
                    None,
                ),
            },
            flags(0x2),
        );
        assert_eq!(
            all.recv().await.unwrap(),
            EngineEvent::JobTransferred { job }
        );
        assert!(matches!(
            all.recv().await.unwrap(),
            EngineEvent::JobError { .. }
        ));
        assert!(matches!(
            by_flags.recv().await.unwrap(),
            EngineEvent::JobError { .. }
        ));
        assert!(by_flags.try_recv().is_err(), "nothing else by flags");
    }
}
