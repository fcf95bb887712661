//! `ferry serve DIR`: runs the server of [`crate::serve`] in the foreground until Ctrl+C.

use super::{ServeArgs, exit, fail};
use crate::serve::ServeOptions;
use std::io::Write;

pub async fn run(args: ServeArgs) -> u8 {
    let shown = args.dir.display().to_string();
    let users = match args
        .basic_auth_file
        .as_deref()
        .map(crate::serve::read_users)
    {
        Some(Ok(users)) => users,
        Some(Err(e)) => return fail(e),
        None => Vec::new(),
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(certificate), Some(key)) => Some(crate::serve::TlsFiles { certificate, key }),
        _ => None,
    };
    let options = ServeOptions {
        users,
        tls,
        root: args.dir,
        listen: args.listen,
        read_only: args.read_only,
        allow_overwrite: args.allow_overwrite,
        max_upload_size: args.max_upload_size,
        session_timeout: std::time::Duration::from_secs(args.session_timeout),
        sessions_per_client: args.sessions_per_client,
        max_fragment_size: args.max_fragment_size,
        notify: args.notify_url.map(|url| crate::serve::Notify {
            url,
            by_value: args.notify_by_value,
        }),
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections as usize,
        max_connections_per_client: args.max_connections_per_client as usize,
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let scheme = options.scheme();
    let ready = |address: std::net::SocketAddr| {
        // One line on stdout, flushed: scripts and tests read the port from it.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ferry serve: serving {shown} on {scheme}://{address}/");
        let _ = out.flush();
    };
    match crate::serve::run(options, ready, stop).await {
        Ok(()) => exit::OK,
        Err(e) => fail(e),
    }
}
