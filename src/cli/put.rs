//! `ferry put`: one FOREGROUND upload (or upload-reply) job, run to the end like `ferry get`.

use super::{PutArgs, exit, fail, report};
use crate::engine::JobSpec;
use crate::job::{Job, JobType, NewFile, PropertyChange};
use crate::service::client::{Client, ClientError};
use std::path::PathBuf;

/// Marks jobs made by `ferry put`, so that running the same command again resumes its job.
const PUT_DESCRIPTION: &str = "ferry put";

struct Plan {
    file: NewFile,
    job_type: JobType,
    reply: Option<PathBuf>,
}

fn plan(args: &PutArgs) -> Result<Plan, String> {
    let local = super::jobs::absolute(&args.local)?;
    let reply = args
        .reply
        .as_deref()
        .map(super::jobs::absolute)
        .transpose()?;
    if reply.as_ref() == Some(&local) {
        return Err(format!(
            "the reply cannot replace the file being uploaded ({}): choose another --reply file",
            local.display()
        ));
    }
    Ok(Plan {
        file: NewFile {
            remote_url: args.url.clone(),
            local_path: local,
            ranges: None,
            checksum: None,
        },
        job_type: if reply.is_some() {
            JobType::UploadReply
        } else {
            JobType::Upload
        },
        reply,
    })
}

/// A job of an earlier `ferry put` of the same file to the same URL, not finished yet.
fn earlier_job<'a>(jobs: &'a [Job], plan: &Plan) -> Option<&'a Job> {
    jobs.iter().find(|job| {
        job.description == PUT_DESCRIPTION
            && job.job_type == plan.job_type
            && job.files.len() == 1
            && job.files[0].remote_url == crate::job::url_without_credentials(&plan.file.remote_url)
            && job.files[0].local_path == plan.file.local_path
            && (plan.reply.is_none() || job.reply.file_name == plan.reply)
    })
}

pub(super) async fn run(client: &Client, args: PutArgs) -> u8 {
    let plan = match plan(&args) {
        Ok(plan) => plan,
        Err(message) => return fail(message),
    };
    let interrupt = match super::jobs::interrupt_signal() {
        Ok(signal) => signal,
        Err(e) => return fail(format!("cannot watch for Ctrl+C: {e}")),
    };
    // Listening before the job exists: none of its state changes is missed.
    let events = match client.events(crate::engine::Subscription::All).await {
        Ok(events) => events,
        Err(e) => return report(&e),
    };
    let followed = match prepare(client, &args, &plan).await {
        Ok(followed) => followed,
        Err(e) => return report(&e),
    };
    let code = super::get::follow(
        client,
        followed,
        events,
        args.quiet,
        interrupt,
        plan.job_type,
    )
    .await;
    if code == exit::OK
        && let Some(reply) = &plan.reply
        && !args.quiet
    {
        eprintln!("ferry: the server's reply is in {}", reply.display());
    }
    code
}

async fn prepare(
    client: &Client,
    args: &PutArgs,
    plan: &Plan,
) -> Result<super::get::Followed, ClientError> {
    let jobs = client.jobs(false).await?;
    if let Some(job) = earlier_job(&jobs, plan) {
        let settings = args
            .limit_rate
            .map(|rate| PropertyChange::LimitRate(Some(rate)))
            .into_iter()
            .collect();
        return super::get::take_up(client, job, args.priority, settings, args.quiet).await;
    }
    let spec = JobSpec {
        priority: Some(args.priority),
        description: PUT_DESCRIPTION.into(),
        files: vec![plan.file.clone()],
        reply_file: plan.reply.clone(),
        limit_rate: args.limit_rate,
        resume: true,
        ..JobSpec::new(
            &super::get::file_label(&plan.file.local_path),
            plan.job_type,
        )
    };
    // Created with its file and reply name and resumed in one step: a refusal (an existing
    // reply file among them) leaves no job behind.
    let id = client.create(&spec).await?;
    Ok(super::get::Followed {
        id,
        taken_up: false,
    })
}
