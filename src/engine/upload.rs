//! The upload worker: sends the one file of an upload or upload-reply job with the BITS upload
//! protocol ([`super::bits_upload`]) and reports to the engine like a download worker does. The
//! reply of an upload-reply job is fetched afterwards by a download worker ([`super::transfer`])
//! as the file [`crate::job::REPLY_FILE`].

use super::bits_upload::{Outcome, Progress, Upload};
use super::transfer::{End, Final, Report, Reporter, Stopped, UploadEnd, WorkerMessage};
use crate::job::JobId;
use tokio::sync::{mpsc, watch};

pub(crate) struct UploadTask {
    pub job: JobId,
    pub run: u64,
    /// Upload-reply: the last acknowledgement must name the reply.
    pub reply: bool,
    pub upload: Upload,
    /// Where the job stands: its session, acknowledged bytes and local-file stamp.
    pub progress: Progress,
}

pub(crate) async fn run(
    task: UploadTask,
    out: mpsc::UnboundedSender<WorkerMessage>,
    mut stop: watch::Receiver<bool>,
) -> Final {
    let reporter = Reporter {
        task_job: task.job,
        run: task.run,
        file: 0,
        out,
    };
    let mut progress = task.progress;
    let mut connected = false;
    let mut session = progress.session.clone();
    let mut host = progress.host.clone();
    let mut source_known = progress.source.is_some();
    let outcome = task
        .upload
        .send(
            &mut progress,
            task.reply,
            |now| {
                if !connected {
                    connected = true;
                    reporter.send(Report::Connected);
                }
                if !source_known && let Some(source) = &now.source {
                    source_known = true;
                    reporter.send(Report::FileInfo {
                        bytes_total: source.size,
                        validators: source.clone(),
                    });
                }
                if now.session != session {
                    session = now.session.clone();
                    reporter.send(Report::Session(session.clone()));
                }
                if now.host != host {
                    host = now.host.clone();
                    reporter.send(Report::Host(host.clone()));
                }
                reporter.send(Report::Progress {
                    transferred: now.acknowledged,
                    checkpointed: now.acknowledged,
                });
            },
            &mut stop,
        )
        .await;
    // The pin or its timer may have changed after the last acknowledgement.
    if progress.host != host {
        reporter.send(Report::Host(progress.host.clone()));
    }
    let mut end = UploadEnd {
        session: progress.session.clone(),
        host: progress.host.clone(),
        reply: None,
    };
    let sent = progress.acknowledged;
    match outcome {
        Outcome::Done { reply_url } => {
            if task.reply {
                reporter.send(Report::ReplyLocated {
                    url: reply_url.clone(),
                });
                end.reply = Some(reply_url);
            }
            reporter.send(Report::Done {
                transferred: sent,
                digest: None,
            });
            Final {
                done: vec![(0, sent, None)],
                stopped: Vec::new(),
                end: End::AllDone,
                upload: Some(end),
            }
        }
        Outcome::Stopped => Final {
            done: Vec::new(),
            stopped: vec![(
                0,
                Stopped {
                    transferred: sent,
                    checkpointed: sent,
                    segments: Vec::new(),
                },
            )],
            end: End::Stopped,
            upload: Some(end),
        },
        Outcome::Failed(failure) => {
            reporter.send(Report::Failed(failure.clone()));
            Final {
                done: Vec::new(),
                stopped: Vec::new(),
                end: End::Failed(failure),
                upload: Some(end),
            }
        }
    }
}
