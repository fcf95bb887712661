//! The command line. Thin: it parses, talks to the service and prints.

mod daemon;
mod get;
mod jobs;
mod put;
mod serve;
mod show;

use crate::job::{BitsError, ErrorCode, Priority, Rate};
use crate::service::client::ClientError;
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other error (bad input, a refused request, a local file problem).
    pub const FAILURE: u8 = 1;
    /// Usage error (clap's own code).
    pub const USAGE: u8 = 2;
    /// The job ended in ERROR (`get` cancels it; `wait` leaves it for you to look at).
    pub const JOB_ERROR: u8 = 3;
    /// Another service already runs for this data directory (`ferry daemon`).
    pub const SERVICE_BUSY: u8 = 4;
    /// No job matches the name or id given, or more than one does.
    pub const NO_SUCH_JOB: u8 = 5;
    /// BG_E_INVALID_STATE: the job's state does not allow the request.
    pub const INVALID_STATE: u8 = 6;
    /// A quota was hit (jobs per user or machine, files per job, ranges per file).
    pub const QUOTA: u8 = 7;
    /// The service cannot be reached or started, or refused this user.
    pub const UNREACHABLE: u8 = 8;
    /// S_FALSE: `set --replace-remote-prefix` matched no file, so nothing changed.
    pub const NO_MATCH: u8 = 9;
    /// `wait --timeout` ran out before the job finished.
    pub const TIMEOUT: u8 = 124;
    /// Interrupted (Ctrl+C): `get` suspended its job.
    pub const INTERRUPTED: u8 = 130;
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 other error (bad input, a refused request); \
2 usage error; 3 the job ended in ERROR; 4 another service already runs (ferry daemon); 5 no such \
job, or the name matches several; 6 the job's state does not allow it (BG_E_INVALID_STATE); 7 a \
quota was hit; 8 the service cannot be reached or started, or access is denied (E_ACCESSDENIED); 9 `set --replace-remote-prefix` \
matched no file (S_FALSE); 124 `wait --timeout` ran out; 130 \
interrupted.\n\nA JOB is its id, a unique prefix of the id, or its display name when no other job \
of yours has that name.";

#[derive(Parser, Debug)]
#[command(name = "ferry", version, about = "Background transfers with the job model of BITS", after_help = EXIT_CODES)]
pub struct Cli {
    /// Without a command, Ferry opens its window (as `ferry gui`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the window: the job table, details, the Stale view, settings, and the tray icon.
    ///
    /// Transfers run in the service, which the window starts when none runs; closing the window
    /// (or quitting from the tray) never stops them. One window per session: a second `ferry
    /// gui` brings the open one forward and hands it its URLs.
    Gui {
        /// URLs to open in the New download dialog.
        urls: Vec<String>,
    },
    /// Download URLs now, as one FOREGROUND job, and wait for it.
    ///
    /// The files are named after the last segment of each URL's path. Transient errors are
    /// retried; a fatal error cancels the job. Ctrl+C suspends the job: run the same command again
    /// to resume it where it stopped.
    #[command(after_help = EXIT_CODES)]
    Get(GetArgs),
    /// Upload a file now, as one FOREGROUND job with the BITS upload protocol, and wait for it.
    ///
    /// The server must speak the BITS upload protocol (IIS with the BITS extension, or
    /// `ferry serve`). With --reply the job is an upload-reply job and the server application's
    /// reply is saved to FILE. Ctrl+C suspends the job: run the same command again to resume it
    /// in the same upload session.
    #[command(after_help = EXIT_CODES)]
    Put(PutArgs),
    /// Print the reply of an upload-reply job, or save it with --out.
    ///
    /// The reply can be read once the job is TRANSFERRED (and after Complete, while the job is
    /// still listed). Printed replies are limited to 1 MiB (BG_E_TOO_LARGE above): save larger
    /// ones with --out.
    #[command(after_help = EXIT_CODES)]
    Reply(ReplyArgs),
    /// Create a job (SUSPENDED, with no files) and print its id.
    #[command(after_help = EXIT_CODES)]
    Create(CreateArgs),
    /// Add files to a job: one URL, a list file (--set), or byte ranges of one URL (--ranges).
    #[command(after_help = EXIT_CODES)]
    Add(AddArgs),
    /// Start or continue transferring the jobs.
    #[command(after_help = EXIT_CODES)]
    Resume(JobsArgs),
    /// Stop transferring the jobs (they keep their progress).
    #[command(after_help = EXIT_CODES)]
    Suspend(JobsArgs),
    /// Complete the jobs: move the transferred files to their names; delete the others.
    #[command(after_help = EXIT_CODES)]
    Complete(JobsArgs),
    /// Cancel the jobs and delete their temporary files.
    #[command(after_help = EXIT_CODES)]
    Cancel(JobsArgs),
    /// Cancel all of your jobs.
    #[command(after_help = EXIT_CODES)]
    Reset,
    /// List your jobs, oldest first.
    #[command(after_help = EXIT_CODES)]
    List(ListArgs),
    /// Show everything about a job.
    #[command(after_help = EXIT_CODES)]
    Info(InfoArgs),
    /// Change properties of a job.
    #[command(after_help = EXIT_CODES)]
    Set(SetArgs),
    /// Take ownership of another user's job (root only; BITS's TakeOwnership).
    ///
    /// The job moves from that user's service and store into root's, where it goes on in the
    /// state it had (a transfer resumes from its checkpoint): never in both stores and never in
    /// neither, even if either service stops midway. Its credentials, custom headers and notify
    /// command line are removed. Every file of the job must be one its owner could reach; the
    /// user's store is found through the machine registry, else in ~/.local/share/ferry.
    #[command(name = "take-ownership", after_help = EXIT_CODES)]
    TakeOwnership(TakeOwnershipArgs),
    /// Show or change the global speed limits (all downloads, all uploads).
    ///
    /// Without options, prints them. They are saved in the service's config file
    /// (`download_limit`, `upload_limit`) and take effect at once, also mid-transfer. Each job
    /// may have its own limit on top (`ferry set JOB --limit-rate`).
    #[command(after_help = EXIT_CODES)]
    Limit(LimitArgs),
    /// Wait until a job is TRANSFERRED (exit 0) or in ERROR (exit 3).
    #[command(after_help = EXIT_CODES)]
    Wait(WaitArgs),
    /// Show your jobs, refreshed live, until Ctrl+C.
    #[command(after_help = EXIT_CODES)]
    Monitor(MonitorArgs),
    /// Run the service: in the background (the default), or in this process with --foreground.
    ///
    /// Other commands start the service by themselves when none runs, so this is only needed
    /// for service managers (see assets/ferry.service) and debugging.
    #[command(after_help = EXIT_CODES)]
    Daemon(DaemonArgs),
    /// Serve a folder over HTTP: downloads with ranges, and BITS uploads into it.
    ///
    /// Runs until Ctrl+C. Paths are confined to DIR: `..`, encoded separators and symlinks that
    /// lead out of it are refused. Uploads in progress live in DIR/.ferry-uploads and appear at
    /// their name only when complete.
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (ferry.1 and one per command) into DIR.
    Man {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Priority of the job: foreground, high, normal or low.
    #[arg(long, default_value = "foreground", value_parser = parse_priority)]
    pub priority: Priority,
    /// Folder the files go to (default: the current folder).
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// No progress bar; errors are still printed.
    #[arg(short, long)]
    pub quiet: bool,
    /// Replace destination files that already exist (by default Ferry refuses to).
    #[arg(long)]
    pub overwrite: bool,
    /// Connections per file, 1 to 16 (default: the config's, 8 for foreground jobs). A file is
    /// split only when its server serves ranges and ties them to one version of the file.
    #[arg(short = 'x', long, value_name = "N", value_parser = parse_connection_count)]
    pub connections: Option<u32>,
    /// How many of the files download at once, 1 to 32 (default 1: one after another). They
    /// are still reported done in the order given.
    #[arg(short = 'j', long, value_name = "N", value_parser = parse_parallel_files)]
    pub parallel: Option<u32>,
    /// The job's speed limit in bytes per second, curl's syntax: 500K, 2M (K = 1024 bytes).
    /// Change it later with `ferry set JOB --limit-rate`; `ferry limit` sets the global ones.
    #[arg(long, value_name = "RATE", value_parser = Rate::parse)]
    pub limit_rate: Option<Rate>,
    /// The digest a file must have: sha-256=HEX (or sha-512, sha-1, md5); once per URL, in
    /// their order. A file that does not match is not kept: the job ends in ERROR
    /// (BG_E_VALIDATION_FAILED), naming the file and both digests.
    #[arg(long, value_name = "ALGORITHM=HEX", value_parser = parse_checksum)]
    pub checksum: Vec<crate::job::checksum::Checksum>,
    /// A checksums file (SHA256SUMS, SHA512SUMS, MD5SUMS, or BSD-style lines) that gives every
    /// file its digest by file name; a file it does not list is refused.
    #[arg(long, value_name = "URL", conflicts_with = "checksum")]
    pub checksums: Option<String>,
    /// The URLs to download (http:// or https://).
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// Priority of the job: foreground, high, normal or low.
    #[arg(long, default_value = "foreground", value_parser = parse_priority)]
    pub priority: Priority,
    /// No progress bar; errors are still printed.
    #[arg(short, long)]
    pub quiet: bool,
    /// Make an upload-reply job and save the server's reply to FILE (which must not exist).
    #[arg(long, value_name = "FILE")]
    pub reply: Option<PathBuf>,
    /// The job's speed limit in bytes per second, curl's syntax: 500K, 2M (K = 1024 bytes).
    #[arg(long, value_name = "RATE", value_parser = Rate::parse)]
    pub limit_rate: Option<Rate>,
    /// The file to upload.
    pub local: PathBuf,
    /// Where it goes (http:// or https://).
    pub url: String,
}

#[derive(clap::Args, Debug)]
pub struct LimitArgs {
    /// All downloads together: a rate (curl's syntax: 500K, 2M, 1G; K = 1024 bytes) or `none`.
    #[arg(long, value_name = "RATE|none", value_parser = parse_rate_setting)]
    pub download: Option<RateSetting>,
    /// All uploads together, likewise.
    #[arg(long, value_name = "RATE|none", value_parser = parse_rate_setting)]
    pub upload: Option<RateSetting>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ReplyArgs {
    pub job: String,
    /// Save the reply to FILE (which must not exist) instead of printing it.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// An upload job (one file, sent with the BITS upload protocol).
    #[arg(long, conflicts_with = "upload_reply")]
    pub upload: bool,
    /// An upload job whose server sends a reply back.
    #[arg(long)]
    pub upload_reply: bool,
    /// foreground, high, normal or low (default: normal, or the config file's default).
    #[arg(long, value_parser = parse_priority)]
    pub priority: Option<Priority>,
    /// The job's display name (up to 256 characters).
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    pub job: String,
    /// The remote file (http:// or https://).
    #[arg(required_unless_present = "set", conflicts_with = "set")]
    pub url: Option<String>,
    /// Where the file goes (default: the URL's file name in the current folder).
    #[arg(conflicts_with = "set")]
    pub local: Option<PathBuf>,
    /// A file with one `URL LOCAL` pair per line (`#` starts a comment); all are added or none.
    #[arg(long, value_name = "FILE")]
    pub set: Option<PathBuf>,
    /// Only these byte ranges: OFFSET:LENGTH,… with `eof` as a length (e.g. 0:100,2000:eof).
    #[arg(long, requires = "local", conflicts_with = "set")]
    pub ranges: Option<String>,
    /// The digest the file must have: sha-256=HEX (or sha-512, sha-1, md5). It is checked once
    /// the file is downloaded; a mismatch puts the job in ERROR (BG_E_VALIDATION_FAILED) and
    /// the file is downloaded again on Resume. In a --set file: a third column.
    #[arg(long, value_name = "ALGORITHM=HEX", value_parser = parse_checksum, conflicts_with = "set")]
    pub checksum: Option<crate::job::checksum::Checksum>,
}

fn parse_checksum(text: &str) -> Result<crate::job::checksum::Checksum, String> {
    crate::job::checksum::Checksum::parse(text).map_err(|e| e.message)
}

#[derive(clap::Args, Debug)]
pub struct JobsArgs {
    #[arg(required = true, value_name = "JOB")]
    pub jobs: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Also show jobs that recently ended (ACKNOWLEDGED or CANCELLED).
    #[arg(long)]
    pub all_states: bool,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    pub job: String,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct TakeOwnershipArgs {
    /// The job: its id, a unique prefix of it, or its display name among the user's jobs.
    pub job: String,
    /// The user whose job it is.
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// The user's Ferry data directory, when their service runs with FERRY_HOME elsewhere and
    /// is not in the machine registry.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct SetArgs {
    pub job: String,
    #[arg(long, value_parser = parse_priority)]
    pub priority: Option<Priority>,
    /// The display name.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Seconds to wait before retrying after a transient error (at least 5).
    #[arg(long, value_name = "SECONDS")]
    pub min_retry_delay: Option<u64>,
    /// Seconds without progress after which a transient error becomes ERROR.
    #[arg(long, value_name = "SECONDS")]
    pub no_progress_timeout: Option<u64>,
    /// Seconds the job may spend transferring before it goes to ERROR.
    #[arg(long, value_name = "SECONDS")]
    pub max_download_time: Option<u64>,
    /// Every file whose URL starts with OLD (case-sensitive) gets NEW in its place, as BITS's
    /// ReplaceRemotePrefix (a mirror moved, http became https). Download jobs only. A running
    /// transfer moves to the new URLs at once; each file goes on from where it was if the new
    /// server has the same file. Exit code 9 when no file matched.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    pub replace_remote_prefix: Option<Vec<String>>,
    /// Which notifications to send: a number, decimal or 0x hex (1 transferred, 2 error, 4 disable,
    /// 8 modification, 16 file transferred), or names joined by commas (transferred,error,…).
    #[arg(long, value_parser = parse_notify_flags, value_name = "FLAGS")]
    pub notify_flags: Option<u32>,
    /// Program (absolute path) and arguments to run on a notification; `--notify-cmd ''` clears.
    /// It takes every argument after it, so give it last.
    #[arg(long, num_args = 1.., value_name = "PROGRAM [ARGS]", allow_hyphen_values = true)]
    pub notify_cmd: Option<Vec<String>>,
    /// A custom header sent with every request (`Name: value`); repeat for several. Replaces the
    /// job's headers; `--header ''` clears them.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// preconfig (the environment's proxy), no-proxy, autodetect, or override (with --proxy-list).
    #[arg(long, value_parser = parse_proxy_usage, value_name = "USAGE")]
    pub proxy: Option<crate::job::ProxyUsage>,
    /// Proxies for --proxy override, comma-separated (e.g. http://127.0.0.1:3128).
    #[arg(long, requires = "proxy")]
    pub proxy_list: Option<String>,
    /// Hosts that bypass the proxy, space- or comma-separated (`<local>` for local names).
    #[arg(long, requires = "proxy")]
    pub proxy_bypass: Option<String>,
    /// allow-silent (default), allow-report (the file's URL becomes the final one), or disallow.
    #[arg(long, value_parser = parse_redirect_mode, value_name = "POLICY")]
    pub redirect_policy: Option<crate::job::RedirectMode>,
    /// With --redirect-policy: also follow redirects from https to http.
    #[arg(long, requires = "redirect_policy")]
    pub allow_https_to_http: bool,
    /// Allow (true) or forbid (false) Complete to replace existing destination files.
    #[arg(long, value_name = "BOOL")]
    pub replace_existing: Option<bool>,
    /// The service completes the job as soon as it is TRANSFERRED (true), or the job waits for
    /// `ferry complete` (false, the BITS rule and the default for jobs made here).
    #[arg(long, value_name = "BOOL")]
    pub complete_when_transferred: Option<bool>,
    /// Connections one file may use, 1 to 16, or `default` for the config's default for the
    /// job's priority (8 for foreground, 1 for the others). Takes effect when the transfer next
    /// starts.
    #[arg(long, value_name = "N|default", value_parser = parse_connections)]
    pub connections: Option<ConnectionSetting>,
    /// How many of the job's files transfer at once, 1 to 32 (1, the BITS rule, by default).
    /// Files are still reported transferred in their order. Takes effect when the transfer
    /// next starts.
    #[arg(long, value_name = "N", value_parser = parse_parallel_files)]
    pub parallel_files: Option<u32>,
    /// The job's speed limit (curl's syntax: 500K, 2M; K = 1024 bytes), or `none`. Takes
    /// effect at once, also mid-transfer; the global limits (`ferry limit`) still apply.
    #[arg(long, value_name = "RATE|none", value_parser = parse_rate_setting)]
    pub limit_rate: Option<RateSetting>,
    /// Server credentials, `basic:USER` or `digest:USER`; the password is read from standard
    /// input (asked for, without echo, on a terminal). Kept in the service's memory only: set
    /// them again after the service restarts.
    #[arg(long, value_name = "SCHEME:USER", value_parser = parse_credentials, conflicts_with = "no_credentials")]
    pub credentials: Option<(crate::job::AuthScheme, String)>,
    /// Remove the job's credentials.
    #[arg(long)]
    pub no_credentials: bool,
    /// Upload-reply jobs: where Complete puts the reply (until the reply download begins).
    #[arg(long, value_name = "FILE")]
    pub reply_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    pub job: String,
    /// Give up after this many seconds (exit code 124).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
}

#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    /// Also show jobs that recently ended.
    #[arg(long)]
    pub all_states: bool,
    /// Redraw at least this often, in seconds (changes show at once anyway).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub refresh: f64,
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Run in this process (for service managers and debugging) instead of in the background.
    #[arg(long, conflicts_with_all = ["stop", "status"])]
    pub foreground: bool,
    /// Ask the running service to stop; its transfers resume when it starts again.
    #[arg(long, conflicts_with = "status")]
    pub stop: bool,
    /// Print whether a service runs, and its pid, socket and data directory.
    #[arg(long)]
    pub status: bool,
    /// With --foreground: exit after this many idle seconds (no jobs, no clients); 0 never.
    /// Default: `service_idle_exit_secs` of the config file. Service managers want 0.
    /// At most 100 years, as in the config file.
    #[arg(long, value_name = "SECONDS", requires = "foreground",
          value_parser = clap::value_parser!(u64).range(0..=3_153_600_000))]
    pub idle_exit: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The folder to serve.
    pub dir: PathBuf,
    /// Address and port to listen on (port 0: any free port; the address used is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Refuse uploads (BITS_POST answers 501 with E_ACCESSDENIED, as IIS does).
    #[arg(long)]
    pub read_only: bool,
    /// Let an upload replace an existing file (default: 409 Conflict).
    #[arg(long)]
    pub allow_overwrite: bool,
    /// Largest upload accepted, in bytes; larger ones get BG_E_TOO_LARGE.
    #[arg(long, value_name = "BYTES")]
    pub max_upload_size: Option<u64>,
    /// Discard an upload session idle for this many seconds (default 14 days).
    #[arg(long, value_name = "SECONDS", default_value_t = 1_209_600)]
    pub session_timeout: u64,
    /// Upload sessions one client address may have open at once (0: no limit); more get 503.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub sessions_per_client: usize,
    /// Largest fragment accepted in one request (default: any); larger ones get 413, and BITS
    /// clients send smaller ones.
    #[arg(long, value_name = "BYTES")]
    pub max_fragment_size: Option<u64>,
    /// Hand each finished upload to the server application at URL (POST), whose answer is the
    /// reply of upload-reply jobs. By reference (the default): the paths of the upload and of
    /// the reply file to write go in BITS-Request-DataFile-Name / BITS-Response-DataFile-Name.
    /// The upload reaches its own URL only if the application answers with
    /// BITS-Copy-File-To-Destination.
    #[arg(long, value_name = "URL")]
    pub notify_url: Option<String>,
    /// With --notify-url: send the upload as the request body and take the answer's body as
    /// the reply (by value).
    #[arg(long, requires = "notify_url")]
    pub notify_by_value: bool,
    /// Ask for HTTP Basic credentials: FILE has one `user:password` per line. Use with TLS
    /// off loopback, or the passwords travel in clear.
    #[arg(long, value_name = "FILE")]
    pub basic_auth_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate (PEM, with its chain); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Drop a client that has not sent a whole request head (or finished its TLS handshake)
    /// within this many seconds, also between requests on a kept-alive connection.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Connections open at once; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Connections open at once from one address; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_per_client: u64,
}

/// A count from 1 to `max` of `what`.
fn parse_count(text: &str, max: u32, what: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of {what}: give 1 to {max}"
        )),
    }
}

fn parse_connection_count(text: &str) -> Result<u32, String> {
    parse_count(text, crate::job::MAX_CONNECTIONS, "connections")
}

fn parse_parallel_files(text: &str) -> Result<u32, String> {
    parse_count(text, crate::job::MAX_PARALLEL_FILES, "files at once")
}

/// `ferry set --connections`: a count, or the config's default (`None`). A type of its own, as
/// clap reads `Option<Option<_>>` as a flag whose value may be left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionSetting(pub Option<u32>);

fn parse_connections(text: &str) -> Result<ConnectionSetting, String> {
    if text.eq_ignore_ascii_case("default") {
        return Ok(ConnectionSetting(None));
    }
    parse_connection_count(text)
        .map(|n| ConnectionSetting(Some(n)))
        .map_err(|e| format!("{e}, or `default`"))
}

/// A speed limit to set, or `none` to lift it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSetting(pub Option<Rate>);

fn parse_rate_setting(text: &str) -> Result<RateSetting, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(RateSetting(None));
    }
    Rate::parse(text)
        .map(|rate| RateSetting(Some(rate)))
        .map_err(|e| format!("{e}, or `none` for no limit"))
}

fn parse_priority(text: &str) -> Result<Priority, String> {
    Priority::parse(text)
        .ok_or_else(|| format!("{text:?} is not a priority: use foreground, high, normal or low"))
}

fn parse_notify_flags(text: &str) -> Result<u32, String> {
    use crate::job::NotifyFlags as F;
    let number = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse::<u32>().ok(),
    };
    if let Some(number) = number {
        return if number & !F::ALL == 0 {
            Ok(number)
        } else {
            Err(format!(
                "{text} has bits that are not notify flags (at most {} = {:#x})",
                F::ALL,
                F::ALL
            ))
        };
    }
    text.split(',')
        .map(|name| match name.trim().to_ascii_lowercase().as_str() {
            "transferred" => Ok(F::JOB_TRANSFERRED),
            "error" => Ok(F::JOB_ERROR),
            "disable" => Ok(F::DISABLE),
            "modification" => Ok(F::JOB_MODIFICATION),
            "file-transferred" => Ok(F::FILE_TRANSFERRED),
            "file-ranges-transferred" => Ok(F::FILE_RANGES_TRANSFERRED),
            other => Err(format!(
                "{other:?} is not a notify flag: use transferred, error, disable, modification, \
                 file-transferred, file-ranges-transferred, or a number (decimal or 0x hex)"
            )),
        })
        .try_fold(0, |all, flag| flag.map(|f| all | f))
}

fn parse_credentials(text: &str) -> Result<(crate::job::AuthScheme, String), String> {
    use crate::job::AuthScheme;
    let (scheme, user) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not SCHEME:USER (e.g. basic:alice)"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "basic" => AuthScheme::Basic,
        "digest" => AuthScheme::Digest,
        other => {
            return Err(format!(
                "{other:?} is not an authentication scheme Ferry supports: use basic or digest"
            ));
        }
    };
    if user.is_empty() {
        return Err("the user name is empty (e.g. basic:alice)".into());
    }
    Ok((scheme, user.to_string()))
}

fn parse_proxy_usage(text: &str) -> Result<crate::job::ProxyUsage, String> {
    use crate::job::ProxyUsage;
    match text.to_ascii_lowercase().replace('_', "-").as_str() {
        "preconfig" => Ok(ProxyUsage::Preconfig),
        "no-proxy" => Ok(ProxyUsage::NoProxy),
        "autodetect" => Ok(ProxyUsage::Autodetect),
        "override" => Ok(ProxyUsage::Override),
        _ => Err(format!(
            "{text:?} is not a proxy usage: use preconfig, no-proxy, autodetect or override"
        )),
    }
}

fn parse_redirect_mode(text: &str) -> Result<crate::job::RedirectMode, String> {
    use crate::job::RedirectMode;
    match text.to_ascii_lowercase().replace('_', "-").as_str() {
        "allow-silent" => Ok(RedirectMode::AllowSilent),
        "allow-report" => Ok(RedirectMode::AllowReport),
        "disallow" => Ok(RedirectMode::Disallow),
        _ => Err(format!(
            "{text:?} is not a redirect policy: use allow-silent, allow-report or disallow"
        )),
    }
}

/// Prints an error from the service and returns its exit code.
pub(crate) fn report(e: &ClientError) -> u8 {
    match e {
        ClientError::Api(e) => report_bits(e),
        ClientError::Unreachable { .. } => {
            eprintln!("ferry: {e}");
            exit::UNREACHABLE
        }
        ClientError::Protocol(_) => {
            eprintln!("ferry: {e}");
            exit::FAILURE
        }
    }
}

pub(crate) fn report_bits(e: &BitsError) -> u8 {
    eprintln!("ferry: {e}");
    exit_code(e.code)
}

fn exit_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::NotFound => exit::NO_SUCH_JOB,
        ErrorCode::InvalidState => exit::INVALID_STATE,
        code if code.is_quota() => exit::QUOTA,
        ErrorCode::AccessDenied => exit::UNREACHABLE,
        _ => exit::FAILURE,
    }
}

/// Prints a plain error (no BITS code: it happened before any request) and returns 1.
pub(crate) fn fail(message: impl std::fmt::Display) -> u8 {
    eprintln!("ferry: {message}");
    exit::FAILURE
}

/// `println!` for command output: when the reader of stdout has gone (`ferry list | head`),
/// the command ends quietly with exit 0 instead of panicking on EPIPE.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::say_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

pub(crate) fn say_line(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    reader_gone(written);
}

/// `print!` of a whole text, with [`say!`]'s handling of a closed stdout.
pub(crate) fn print_text(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    reader_gone(out.write_all(text.as_bytes()).and_then(|()| out.flush()));
}

/// Ends the process quietly if a write to stdout failed because its reader went away.
pub(crate) fn reader_gone(written: std::io::Result<()>) {
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(exit::OK));
        }
        eprintln!("ferry: cannot write the output: {e}");
        std::process::exit(i32::from(exit::FAILURE));
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let command = cli.command.unwrap_or(Command::Gui { urls: Vec::new() });
    // SIGPIPE stays ignored (Rust's default) for every command: a server that writes to a socket
    // its client closed must get EPIPE, not die, and a command whose reader goes away
    // (`ferry list | head`) ends quietly with exit 0 through `say!` rather than by a signal.
    match command {
        Command::Gui { urls } => match crate::gui::run(crate::gui::GuiOptions::desktop(), urls) {
            Ok(()) => exit::OK,
            Err(e) => fail(e),
        },
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut script);
            reader_gone(std::io::Write::write_all(&mut std::io::stdout(), &script));
            exit::OK
        }
        Command::Man { dir } => match clap_mangen::generate_to(Cli::command(), &dir) {
            Ok(()) => exit::OK,
            Err(e) => fail(format!(
                "cannot write the man pages to {}: {e}",
                dir.display()
            )),
        },
        Command::Daemon(args) => daemon::run(args),
        Command::Serve(args) => block_on(serve::run(args)),
        command => block_on(client_command(command)),
    }
}

/// Runs `task` to its end on a single-threaded tokio runtime (all Ferry processes use one: their
/// tasks hand each other small messages, and cross-thread wake-ups cost more than they give).
pub(crate) fn block_on(task: impl std::future::Future<Output = u8>) -> u8 {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(task),
        Err(e) => fail(format!("cannot start: {e}")),
    }
}

/// The commands that talk to the service (which they start when none runs).
async fn client_command(command: Command) -> u8 {
    let client = match crate::service::client::Client::connect_or_start().await {
        Ok(client) => client,
        Err(e) => return report(&e),
    };
    match command {
        Command::Get(args) => get::run(&client, args).await,
        Command::Put(args) => put::run(&client, args).await,
        Command::Reply(args) => jobs::reply(&client, args).await,
        Command::Create(args) => jobs::create(&client, args).await,
        Command::Add(args) => jobs::add(&client, args).await,
        Command::Resume(args) => jobs::each(&client, args, jobs::Verb::Resume).await,
        Command::Suspend(args) => jobs::each(&client, args, jobs::Verb::Suspend).await,
        Command::Complete(args) => jobs::each(&client, args, jobs::Verb::Complete).await,
        Command::Cancel(args) => jobs::each(&client, args, jobs::Verb::Cancel).await,
        Command::Reset => jobs::reset(&client).await,
        Command::List(args) => jobs::list(&client, args).await,
        Command::Info(args) => jobs::info(&client, args).await,
        Command::Set(args) => jobs::set(&client, args).await,
        Command::Limit(args) => jobs::limit(&client, args).await,
        Command::TakeOwnership(args) => jobs::take_ownership(&client, args).await,
        Command::Wait(args) => jobs::wait(&client, args).await,
        Command::Monitor(args) => jobs::monitor(&client, args).await,
        Command::Daemon(_)
        | Command::Serve(_)
        | Command::Gui { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => exit::USAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_notify_flags;

    #[test]
    fn notify_flags_are_numbers_in_decimal_or_hex_or_names() {
        assert_eq!(parse_notify_flags("11"), Ok(11));
        assert_eq!(parse_notify_flags("0x5"), Ok(5));
        assert_eq!(parse_notify_flags("transferred, disable"), Ok(5));
        let too_big = parse_notify_flags("0x40").unwrap_err();
        assert!(
            too_big.contains("0x40 has bits") && too_big.contains("0x3f"),
            "{too_big}"
        );
        let unknown = parse_notify_flags("done").unwrap_err();
        assert!(
            unknown.contains("\"done\" is not a notify flag"),
            "{unknown}"
        );
    }
}
