//! Ferry's configuration file (`config.ron`): limits, defaults and timers. A missing file means the
//! BITS defaults; an invalid one is an error that names the file and the field.

use crate::job::{BandwidthPolicy, JobDefaults, Limits, PolicyNow, Priority, Rate, TimePolicy};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every field may be left out; what is left out takes the BITS default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub max_jobs_per_user: u32,
    pub max_jobs_per_machine: u32,
    pub max_files_per_job: u32,
    pub max_ranges_per_file: u32,
    /// Administrators (root) are exempt from the quotas, as in BITS. Turn off to enforce them on root.
    pub admin_exempt_from_quotas: bool,
    pub default_priority: Priority,
    pub minimum_retry_delay_secs: u64,
    pub no_progress_timeout_secs: u64,
    pub max_download_time_secs: u64,
    pub job_inactivity_timeout_secs: u64,
    /// The InactivityWarning event fires this long before the inactivity deadline.
    pub inactivity_warning_secs: u64,
    /// Round-robin time slice of background jobs of the same priority.
    pub time_slice_secs: u64,
    /// Minimum interval between two JobModification events of one job.
    pub modification_interval_ms: u64,
    /// Give up on a connection attempt after this long (transient error).
    pub connect_timeout_secs: u64,
    /// Give up on a response that sends nothing for this long (transient error).
    pub read_timeout_ms: u64,
    /// PEM files of certificate authorities to trust besides the system's (a company CA, say).
    pub extra_root_certificates: Vec<PathBuf>,
    /// Watch the routing table: jobs wait for the network instead of retrying without one.
    pub watch_network: bool,
    /// The service exits after this long with no job in its queue and no client; a client command
    /// starts it again. 0: never exit.
    pub service_idle_exit_secs: u64,
    /// Connections one file may use when the job does not say (`ferry set --connections`):
    /// FOREGROUND jobs get several, background jobs one, as BITS background transfers must stay
    /// gentle on the network.
    pub connections_per_file: ConnectionsPerFile,
    /// The most connections all files together open to one server (host and port).
    pub connections_per_host: u32,
    /// All downloads together move at most this much (`Some("2M")`: 2 MiB/s; curl's syntax).
    /// Changed live: running transfers slow down or speed up within a second.
    pub download_limit: Option<Rate>,
    /// All uploads together, likewise.
    pub upload_limit: Option<Rate>,
    /// The BITS bandwidth policy for background priorities (HIGH, NORMAL, LOW): a weekly
    /// schedule of windows, each with a limit per priority, and the limits outside them. A limit
    /// of `"0"` holds those jobs (BG_E_BLOCKED_BY_POLICY) until the schedule allows them again.
    /// FOREGROUND jobs are never held by it. Follows the wall clock's local time.
    pub bandwidth_policy: BandwidthPolicy,
    /// Background jobs (HIGH, NORMAL, LOW) use only bandwidth nobody else on this machine uses:
    /// they give way to other traffic within a second and come back when it ends. FOREGROUND
    /// jobs are never held back by it.
    pub idle_bandwidth_for_background: bool,
}

/// Default connections per file, by priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsPerFile {
    pub foreground: u32,
    /// HIGH, NORMAL and LOW.
    pub background: u32,
}

impl Default for ConnectionsPerFile {
    fn default() -> Self {
        Self {
            foreground: 8,
            background: 1,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_jobs_per_user: 60,
            max_jobs_per_machine: 300,
            max_files_per_job: 200,
            max_ranges_per_file: 500,
            admin_exempt_from_quotas: true,
            default_priority: Priority::Normal,
            minimum_retry_delay_secs: 600,
            no_progress_timeout_secs: 14 * 24 * 3600,
            max_download_time_secs: 90 * 24 * 3600,
            job_inactivity_timeout_secs: 90 * 24 * 3600,
            inactivity_warning_secs: 7 * 24 * 3600,
            time_slice_secs: 300,
            modification_interval_ms: 500,
            connect_timeout_secs: 30,
            read_timeout_ms: 120_000,
            extra_root_certificates: Vec::new(),
            watch_network: true,
            service_idle_exit_secs: 600,
            connections_per_file: ConnectionsPerFile::default(),
            connections_per_host: 16,
            download_limit: None,
            upload_limit: None,
            bandwidth_policy: BandwidthPolicy::default(),
            idle_bandwidth_for_background: true,
        }
    }
}

/// The longest duration a config field may give: longer ones are mistakes, and would overflow
/// clocks.
const MAX_DURATION_SECS: u64 = 100 * 365 * 24 * 3600;
/// The largest config file read (a real one is under a kilobyte).
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// Reads a config file: a regular file only (never blocks on a FIFO; a link to one, as dotfile
/// managers make, is followed), at most [`MAX_CONFIG_FILE`] bytes, made private (0600).
fn read_config_file(path: &Path) -> std::io::Result<String> {
    use crate::platform::{SmallFileError, read_small_file};
    read_small_file(path, MAX_CONFIG_FILE, true).map_err(|e| match e {
        SmallFileError::Io(e) => e,
        SmallFileError::NotRegular(kind) => std::io::Error::other(format!(
            "it is not a regular file but a {kind}: replace it with a text file"
        )),
        SmallFileError::TooLarge(size) => std::io::Error::other(format!(
            "it has {size} bytes, more than a config file can need (1 MiB)"
        )),
    })
}

/// A RON error with the field it is in: the last `name:` before the error's position.
fn describe_ron_error(text: &str, error: &ron::error::SpannedError) -> String {
    let (line, column) = (error.span.start.line, error.span.start.col);
    // The line's start in bytes, then the column (counted in characters) within it.
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let in_line = text
        .get(line_start..)
        .unwrap_or_default()
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(0, |(at, _)| at);
    let offset = line_start + in_line;
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let field = before.rsplit([',', '(']).find_map(|part| {
        let (name, _) = part.split_once(':')?;
        // The word just before the colon (a comment may stand before it).
        let name = name.split_whitespace().next_back()?;
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then_some(name)
    });
    match field {
        Some(field) => format!(
            "field `{field}`: {} (line {line}, column {column})",
            error.code
        ),
        None => format!("{} (line {line}, column {column})", error.code),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the config file {path} is invalid: {message}. Fix or delete that field (a missing field takes its default)."
    )]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub const FILE_NAME: &'static str = "config.ron";

    /// Loads `path`; a missing file gives the defaults, and so does an empty one (what a power
    /// cut during an editor's save can leave), with a warning.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match read_config_file(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            tracing::warn!(file = %path.display(), "the config file is empty: using the defaults");
            return Ok(Config::default());
        }
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses and validates the text of a config file; the error names the field.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = ron::from_str(text).map_err(|e| describe_ron_error(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that a file or a client may get wrong; names the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_jobs_per_user", self.max_jobs_per_user as u64),
            ("max_jobs_per_machine", self.max_jobs_per_machine as u64),
            ("max_files_per_job", self.max_files_per_job as u64),
            ("max_ranges_per_file", self.max_ranges_per_file as u64),
            (
                "job_inactivity_timeout_secs",
                self.job_inactivity_timeout_secs,
            ),
            ("time_slice_secs", self.time_slice_secs),
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("read_timeout_ms", self.read_timeout_ms),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(format!("field `{field}` must be greater than 0"));
            }
        }
        let durations = [
            ("minimum_retry_delay_secs", self.minimum_retry_delay_secs, 1),
            ("no_progress_timeout_secs", self.no_progress_timeout_secs, 1),
            ("max_download_time_secs", self.max_download_time_secs, 1),
            (
                "job_inactivity_timeout_secs",
                self.job_inactivity_timeout_secs,
                1,
            ),
            ("inactivity_warning_secs", self.inactivity_warning_secs, 1),
            ("time_slice_secs", self.time_slice_secs, 1),
            ("connect_timeout_secs", self.connect_timeout_secs, 1),
            ("service_idle_exit_secs", self.service_idle_exit_secs, 1),
            ("read_timeout_ms", self.read_timeout_ms, 1000),
            (
                "modification_interval_ms",
                self.modification_interval_ms,
                1000,
            ),
        ];
        for (field, value, per_second) in durations {
            if value / per_second > MAX_DURATION_SECS {
                return Err(format!(
                    "field `{field}` is {value}, longer than 100 years; give at most {}",
                    MAX_DURATION_SECS * per_second
                ));
            }
        }
        let max = crate::job::MAX_CONNECTIONS;
        let connections = [
            (
                "connections_per_file.foreground",
                self.connections_per_file.foreground,
                max,
            ),
            (
                "connections_per_file.background",
                self.connections_per_file.background,
                max,
            ),
            ("connections_per_host", self.connections_per_host, 256),
        ];
        for (field, value, max) in connections {
            if !(1..=max).contains(&value) {
                return Err(format!("field `{field}` is {value}: give 1 to {max}"));
            }
        }
        self.bandwidth_policy
            .validate()
            .map_err(|e| format!("field `bandwidth_policy`: {e}"))?;
        self.root_certificates()
            .map_err(|e| format!("field `extra_root_certificates`: {e}"))?;
        if self.inactivity_warning_secs >= self.job_inactivity_timeout_secs {
            return Err(
                "field `inactivity_warning_secs` must be shorter than `job_inactivity_timeout_secs`"
                    .into(),
            );
        }
        Ok(())
    }

    /// The extra certificate authorities, read and parsed.
    pub fn root_certificates(&self) -> Result<Vec<reqwest::Certificate>, String> {
        let mut all = Vec::new();
        for path in &self.extra_root_certificates {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{} is not a PEM certificate: {e}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!(
                    "{} holds no PEM certificate (a block starting with \
                     -----BEGIN CERTIFICATE-----); convert it, e.g. with \
                     `openssl x509 -inform der -in FILE -out FILE.pem`",
                    path.display()
                ));
            }
            all.extend(certificates);
        }
        Ok(all)
    }

    pub fn limits(&self, is_admin: bool) -> Limits {
        Limits {
            jobs_per_user: self.max_jobs_per_user,
            jobs_per_machine: self.max_jobs_per_machine,
            files_per_job: self.max_files_per_job,
            ranges_per_file: self.max_ranges_per_file,
            exempt: is_admin && self.admin_exempt_from_quotas,
        }
    }

    pub fn job_defaults(&self) -> JobDefaults {
        JobDefaults {
            priority: self.default_priority,
            minimum_retry_delay: Duration::from_secs(self.minimum_retry_delay_secs),
            no_progress_timeout: Duration::from_secs(self.no_progress_timeout_secs),
            max_download_time: Duration::from_secs(self.max_download_time_secs),
        }
    }

    /// Connections per file for a job with this priority and setting.
    pub fn connections_for(&self, priority: Priority, setting: Option<u32>) -> u32 {
        let default = match priority {
            Priority::Foreground => self.connections_per_file.foreground,
            _ => self.connections_per_file.background,
        };
        setting
            .unwrap_or(default)
            .clamp(1, crate::job::MAX_CONNECTIONS)
    }

    /// What the bandwidth schedule says at `wall` (read in the machine's local time zone, as
    /// the schedule is written); the service, the window and `ferry limit` all ask this.
    pub fn schedule_at(&self, wall: crate::job::Timestamp) -> PolicyNow {
        if self.bandwidth_policy.is_empty() {
            return PolicyNow::default();
        }
        let local = wall.with_timezone(&chrono::Local).naive_local();
        self.bandwidth_policy.at(local)
    }

    pub fn time_policy(&self) -> TimePolicy {
        TimePolicy {
            inactivity_timeout: Duration::from_secs(self.job_inactivity_timeout_secs),
            warning_window: Duration::from_secs(self.inactivity_warning_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_bits_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::load(&dir.path().join("config.ron")).expect("defaults");
        assert_eq!(config, Config::default());
        assert_eq!(config.limits(false), Limits::default());
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.ron");
        std::fs::write(&path, "(max_jobs_per_user: 3, default_priority: Low)").expect("write");
        let config = Config::load(&path).expect("valid");
        assert_eq!(config.max_jobs_per_user, 3);
        assert_eq!(config.default_priority, Priority::Low);
        assert_eq!(config.max_files_per_job, 200);
    }

    #[test]
    fn invalid_file_names_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.ron");
        std::fs::write(&path, "(max_jobs_per_usr: 3)").expect("write");
        let err = Config::load(&path).expect_err("unknown field").to_string();
        assert!(
            err.contains("max_jobs_per_usr") && err.contains("config.ron"),
            "{err}"
        );
        std::fs::write(&path, "(time_slice_secs: 0)").expect("write");
        let err = Config::load(&path).expect_err("zero").to_string();
        assert!(err.contains("time_slice_secs"), "{err}");
        std::fs::write(&path, "(max_files_per_job: \"many\")").expect("write");
        let err = Config::load(&path).expect_err("type").to_string();
        assert!(err.contains("invalid"), "{err}");
        // Defect: a type error did not name the field.
        std::fs::write(
            &path,
            "(\n  time_slice_secs: 5,\n  max_jobs_per_user: \"ten\",\n)",
        )
        .expect("write");
        let err = Config::load(&path).expect_err("type").to_string();
        assert!(err.contains("field `max_jobs_per_user`"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        // Columns count characters: text with accents before the error names the right field.
        std::fs::write(
            &path,
            "(time_slice_secs: 5, /* déjà vu, été */ max_jobs_per_user: \"ten\")",
        )
        .expect("write");
        let err = Config::load(&path).expect_err("type").to_string();
        assert!(err.contains("field `max_jobs_per_user`"), "{err}");
    }

    /// Defect: a huge duration panicked a task; now it is refused, naming the field.
    #[test]
    fn durations_longer_than_a_century_are_refused() {
        let err =
            Config::parse("(service_idle_exit_secs: 18446744073709551615)").expect_err("huge");
        assert!(
            err.contains("service_idle_exit_secs") && err.contains("100 years"),
            "{err}"
        );
        let err = Config::parse("(read_timeout_ms: 18446744073709551615)").expect_err("huge");
        assert!(err.contains("read_timeout_ms"), "{err}");
        assert!(Config::parse("(service_idle_exit_secs: 3153600000)").is_ok());
    }

    /// Defect: a zero-length config.ron (a power cut's leftover) stopped the service.
    #[test]
    fn connections_default_by_priority_and_are_bounded() {
        let config = Config::default();
        assert_eq!(config.connections_for(Priority::Foreground, None), 8);
        assert_eq!(config.connections_for(Priority::Normal, None), 1);
        assert_eq!(config.connections_for(Priority::Low, Some(4)), 4);
        let config = Config::parse("(connections_per_file: (background: 2))").expect("valid");
        assert_eq!(config.connections_per_file.foreground, 8);
        assert_eq!(config.connections_for(Priority::High, None), 2);
        let error = Config::parse("(connections_per_file: (foreground: 0))").expect_err("0");
        assert!(error.contains("connections_per_file.foreground"), "{error}");
        let config = Config::parse("(download_limit: Some(\"2M\"), upload_limit: Some(65536))")
            .expect("limits as text or bytes");
        assert_eq!(
            config.download_limit.map(|r| r.bytes_per_second()),
            Some(2 << 20)
        );
        assert_eq!(
            config.upload_limit.map(|r| r.bytes_per_second()),
            Some(65536)
        );
        let error = Config::parse("(download_limit: Some(\"2 megs\"))").expect_err("bad rate");
        assert!(
            error.contains("download_limit") && error.contains("500K, 2M"),
            "{error}"
        );
        let error = Config::parse("(connections_per_host: 1000)").expect_err("too many");
        assert!(
            error.contains("connections_per_host") && error.contains("1 to 256"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.ron");
        std::fs::write(&path, "").expect("write");
        assert_eq!(Config::load(&path).expect("defaults"), Config::default());
        std::fs::write(&path, " \n").expect("write");
        assert_eq!(Config::load(&path).expect("defaults"), Config::default());
        // Read, it is made private (it may name certificate files and proxies).
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_fifo_or_a_folder_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.ron");
        let c_path = std::ffi::CString::new(path.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let err = Config::load(&path).expect_err("fifo").to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    /// Defect: a file without any PEM block was accepted as a certificate authority.
    #[test]
    fn a_non_pem_certificate_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let der = dir.path().join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0x01, 0x0a, 0x02]).expect("write");
        let config = Config {
            extra_root_certificates: vec![der.clone()],
            ..Config::default()
        };
        let err = config.validate().expect_err("not PEM");
        assert!(
            err.contains("extra_root_certificates") && err.contains("no PEM"),
            "{err}"
        );
    }
}
