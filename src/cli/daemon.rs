//! `ferry daemon`: the service, in the background or in this process.

use super::say;
use super::{DaemonArgs, block_on, exit, fail, report};
use crate::config::Config;
use crate::engine::SystemClock;
use crate::platform::{self, User};
use crate::service::client::{Client, ClientError};
use crate::service::spawn::{self, Started};
use crate::service::{self, ServiceError, ServiceOptions};
use std::io::Write;
use std::sync::Arc;

pub(super) fn run(args: DaemonArgs) -> u8 {
    if args.foreground {
        return foreground(args.idle_exit);
    }
    if args.stop || args.status {
        return block_on(control(args.stop));
    }
    match spawn::daemonize() {
        Ok(Started::Started { pid }) => {
            eprintln!(
                "ferry: the service runs in the background (pid {pid}); socket {}",
                platform::socket_path().display()
            );
            exit::OK
        }
        Ok(Started::AlreadyRunning) => {
            eprintln!(
                "ferry: a service already runs on {}",
                platform::socket_path().display()
            );
            exit::SERVICE_BUSY
        }
        Err(e) => {
            eprintln!("ferry: {e}");
            exit::UNREACHABLE
        }
    }
}

/// `--stop` and `--status`: talk to a running service, never start one.
async fn control(stop: bool) -> u8 {
    let client = match Client::new(&platform::socket_path()) {
        Ok(client) => client,
        Err(e) => return report(&e),
    };
    let status = match client.status().await {
        Ok(status) => status,
        Err(ClientError::Unreachable { socket, .. }) => {
            say!("no service is running (socket {})", socket.display());
            return if stop { exit::OK } else { exit::UNREACHABLE };
        }
        Err(e) => return report(&e),
    };
    if stop {
        return match client.shutdown().await {
            Ok(()) => {
                say!("service {} is stopping", status.pid);
                exit::OK
            }
            Err(e) => report(&e),
        };
    }
    say!("pid:       {}", status.pid);
    say!("version:   {}", status.version);
    say!("user:      {} (uid {})", status.user, status.uid);
    say!("socket:    {}", status.socket.display());
    say!("data:      {}", status.data_dir.display());
    say!("jobs:      {}", status.jobs);
    match status.idle_exit_secs {
        0 => say!("idle exit: never"),
        secs => say!("idle exit: after {secs} s with no jobs and no clients"),
    }
    for damaged in &status.quarantined {
        say!(
            "damaged:   {} ({})",
            damaged.moved_to.display(),
            damaged.reason
        );
    }
    exit::OK
}

fn foreground(idle_exit: Option<u64>) -> u8 {
    let (data_dir, config_path) = match (platform::data_dir(), platform::config_path()) {
        (Ok(data), Ok(config)) => (data, config),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let mut config = match Config::load(&config_path) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    if let Some(secs) = idle_exit {
        config.service_idle_exit_secs = secs;
    }
    let options = ServiceOptions {
        data_dir,
        socket: platform::socket_path(),
        config,
        config_path: Some(config_path),
        clock: Arc::new(SystemClock::default()),
        user: User::current(),
    };
    // On one thread, like every Ferry process (see `block_on`): the engine, its workers and the
    // API hand each other small messages; bodies reach the disk through writer threads.
    block_on(async {
        let ready = |status: &crate::service::api::Status| {
            tracing::info!(pid = status.pid, socket = %status.socket.display(), "service ready");
            // The one line on stdout: `ferry daemon` (the background starter) waits for it.
            // Nothing is printed on stdout afterwards, since the reader may be gone.
            let mut out = std::io::stdout();
            let _ = writeln!(
                out,
                "{} pid {} socket {}",
                spawn::READY,
                status.pid,
                status.socket.display()
            );
            let _ = out.flush();
        };
        match service::run(options, ready).await {
            Ok(()) => exit::OK,
            Err(e @ ServiceError::Busy { .. }) => {
                eprintln!("ferry: {e}");
                exit::SERVICE_BUSY
            }
            Err(e) => fail(e),
        }
    })
}
