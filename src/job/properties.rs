//! Job properties (spec §7.1) and their validation rules.

use super::Priority;
use super::error::{BitsError, ErrorCode};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `BG_LENGTH_TO_EOF`: a range that runs to the end of the remote file.
pub const LENGTH_TO_EOF: u64 = u64::MAX;

/// BG_FILE_RANGE (spec §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRange {
    pub offset: u64,
    /// Bytes to fetch, or [`LENGTH_TO_EOF`].
    pub length: u64,
}

impl FileRange {
    /// Parses `offset:length` with `eof` allowed as length (bitsadmin syntax).
    pub fn parse_list(text: &str) -> Result<Vec<FileRange>, BitsError> {
        text.split(',')
            .map(|part| {
                let (offset, length) = part.trim().split_once(':').ok_or_else(|| {
                    BitsError::new(
                        ErrorCode::InvalidArg,
                        format!("range {part:?} is not OFFSET:LENGTH (e.g. 0:100 or 5000:eof)"),
                    )
                })?;
                let number = |s: &str| {
                    s.trim().parse::<u64>().map_err(|_| {
                        BitsError::new(
                            ErrorCode::InvalidArg,
                            format!("{s:?} in range {part:?} is not a number"),
                        )
                    })
                };
                let length = if length.trim().eq_ignore_ascii_case("eof") {
                    LENGTH_TO_EOF
                } else {
                    number(length)?
                };
                Ok(FileRange {
                    offset: number(offset)?,
                    length,
                })
            })
            .collect()
    }

    /// The bytes this range yields from a remote file of `size` bytes.
    pub fn resolved_length(self, size: u64) -> u64 {
        if self.length == LENGTH_TO_EOF {
            size.saturating_sub(self.offset)
        } else {
            self.length
        }
    }
}

/// The AddFileWithRanges rules of spec §3.2: at least one range, no zero length (except that BITS
/// compares overlaps after a sort by offset only, which this reproduces), no offset at EOF marker,
/// no overlaps or duplicates.
pub fn validate_ranges(ranges: &[FileRange]) -> Result<(), BitsError> {
    if ranges.is_empty() {
        return Err(BitsError::new(
            ErrorCode::InvalidArg,
            "a file needs at least one byte range",
        ));
    }
    for range in ranges {
        if range.offset == LENGTH_TO_EOF {
            return Err(BitsError::new(
                ErrorCode::InvalidRange,
                "a range cannot start at the end-of-file marker",
            ));
        }
        if range.length != LENGTH_TO_EOF && range.offset.checked_add(range.length).is_none() {
            return Err(BitsError::new(
                ErrorCode::InvalidRange,
                format!(
                    "range {range} ends past the largest possible offset (2^64 - 1): \
                     shorten it, or use eof as its length"
                ),
            ));
        }
    }
    // Stable sort by offset only, as BITS does: for equal offsets the given order stays.
    let mut sorted: Vec<&FileRange> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.offset);
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let a_end = if a.length == LENGTH_TO_EOF {
            u64::MAX
        } else {
            a.offset.saturating_add(a.length)
        };
        if a.offset == b.offset || a_end > b.offset {
            return Err(BitsError::new(
                ErrorCode::OverlappingRanges,
                format!("ranges {a} and {b} overlap; give each byte once"),
            ));
        }
    }
    if let Some(zero) = ranges.iter().find(|r| r.length == 0) {
        return Err(BitsError::new(
            ErrorCode::InvalidRange,
            format!("range at offset {} has length 0", zero.offset),
        ));
    }
    Ok(())
}

/// `OFFSET:LENGTH`, with `eof` for [`LENGTH_TO_EOF`]: the form [`FileRange::parse_list`] reads.
impl std::fmt::Display for FileRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.length == LENGTH_TO_EOF {
            write!(f, "{}:eof", self.offset)
        } else {
            write!(f, "{}:{}", self.offset, self.length)
        }
    }
}

pub const DEFAULT_NOTIFY_FLAGS: u32 = NotifyFlags::JOB_TRANSFERRED | NotifyFlags::JOB_ERROR;

/// BG_NOTIFY_* flags (spec §0.2, §7.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NotifyFlags(pub u32);

impl NotifyFlags {
    pub const JOB_TRANSFERRED: u32 = 0x1;
    pub const JOB_ERROR: u32 = 0x2;
    pub const DISABLE: u32 = 0x4;
    pub const JOB_MODIFICATION: u32 = 0x8;
    pub const FILE_TRANSFERRED: u32 = 0x10;
    pub const FILE_RANGES_TRANSFERRED: u32 = 0x20;
    pub const ALL: u32 = 0x3F;

    /// Whether a notification of kind `flag` is wanted (DISABLE silences everything).
    pub fn wants(self, flag: u32) -> bool {
        self.0 & Self::DISABLE == 0 && self.0 & flag != 0
    }
}

/// SetNotifyCmdLine (spec §7.6): a program with its full path, and its argv (argv[0] first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyCommand {
    pub program: String,
    pub args: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthScheme {
    Basic,
    Digest,
}

/// One credential per (target, scheme) as in BITS; Ferry supports server Basic and Digest.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub server: Option<(AuthScheme, String, String)>,
}

/// BG_JOB_PROXY_USAGE plus its lists (spec §7.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ProxyUsage {
    /// The system's settings (Ferry: the `http_proxy`/`https_proxy`/`no_proxy` environment).
    #[default]
    Preconfig,
    NoProxy,
    Override,
    Autodetect,
}

impl ProxyUsage {
    /// The BG_JOB_PROXY_USAGE_* name, without the prefix.
    pub fn name(self) -> &'static str {
        match self {
            ProxyUsage::Preconfig => "PRECONFIG",
            ProxyUsage::NoProxy => "NO_PROXY",
            ProxyUsage::Override => "OVERRIDE",
            ProxyUsage::Autodetect => "AUTODETECT",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct ProxySettings {
    pub usage: ProxyUsage,
    pub list: Option<String>,
    pub bypass: Option<String>,
}

/// Redirect policy (spec §7.10). HTTPS→HTTP is refused unless `allow_https_to_http`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RedirectPolicy {
    pub mode: RedirectMode,
    pub allow_https_to_http: bool,
}

impl Default for RedirectPolicy {
    fn default() -> Self {
        Self {
            mode: RedirectMode::AllowSilent,
            allow_https_to_http: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RedirectMode {
    /// Follow redirects; the job keeps its URLs.
    AllowSilent,
    /// Follow redirects and rewrite the file's URL to the final one.
    AllowReport,
    /// A redirect puts the job in ERROR (and records the target URL).
    Disallow,
}

impl RedirectMode {
    /// The BG_HTTP_REDIRECT_POLICY_* name, without the prefix.
    pub fn name(self) -> &'static str {
        match self {
            RedirectMode::AllowSilent => "ALLOW_SILENT",
            RedirectMode::AllowReport => "ALLOW_REPORT",
            RedirectMode::Disallow => "DISALLOW",
        }
    }
}

/// A setter call (spec §2.3: every setter is allowed in every non-final state). In the service's
/// JSON, durations are whole seconds, as in BITS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PropertyChange {
    DisplayName(String),
    Description(String),
    Priority(Priority),
    /// Raised to the 5 s floor.
    MinimumRetryDelay(#[serde(with = "seconds")] Duration),
    NoProgressTimeout(#[serde(with = "seconds")] Duration),
    MaxDownloadTime(#[serde(with = "seconds")] Duration),
    NotifyFlags(u32),
    NotifyCommand(Option<NotifyCommand>),
    CustomHeaders(Vec<(String, String)>),
    Credentials(Credentials),
    Proxy(ProxySettings),
    RedirectPolicy(RedirectPolicy),
    /// Only before the first Resume, download jobs only, not with ranges.
    DynamicContent(bool),
    ReplaceExisting(bool),
    /// Ferry's extension: complete the job by itself once it is TRANSFERRED.
    CompleteWhenTransferred(bool),
    /// Ferry's extension: connections per file, 1 to [`super::MAX_CONNECTIONS`]; `None` = the
    /// config's default for the job's priority. Takes effect when the transfer next starts.
    Connections(Option<u32>),
    /// Ferry's extension: how many of the job's files transfer at once, 1 to
    /// [`super::MAX_PARALLEL_FILES`]. Takes effect when the transfer next starts.
    ParallelFiles(u32),
    /// Ferry's extension: the job's speed limit, `None` for none beyond the global limits.
    /// Takes effect at once, also mid-transfer.
    LimitRate(Option<super::Rate>),
    /// SetRemoteName for one file of a download job.
    RemoteName {
        file: usize,
        url: String,
    },
    /// ReplaceRemotePrefix (spec §7.1, §7.12): every file of a download job whose URL starts with
    /// `old` (case-sensitive) gets `new` in its place, each as SetRemoteName would, all or none.
    /// No file matching is no change (BITS's S_FALSE: the engine tells it). Through the API's
    /// own route only (`POST /v1/jobs/{id}/replace-remote-prefix`), which says how many changed.
    #[serde(skip)]
    ReplaceRemotePrefix {
        old: String,
        new: String,
    },
    /// SetReplyFileName (upload-reply only): where Complete puts the reply; only until the
    /// reply download begins.
    ReplyFileName(std::path::PathBuf),
    /// "Keep" from the GUI: no change but counts as activity for the inactivity timeout.
    Touch,
}

pub(crate) fn check_length(text: &str, max: usize, what: &str) -> Result<(), BitsError> {
    let chars = text.chars().count();
    if chars > max {
        return Err(BitsError::new(
            ErrorCode::StringTooLong,
            format!("the {what} has {chars} characters; the limit is {max}"),
        ));
    }
    Ok(())
}

/// A remote URL Ferry can transfer: http or https, legal characters, at most 2,200 characters.
pub fn check_remote_url(url: &str) -> Result<(), BitsError> {
    check_length(url, super::MAX_URL, "remote URL")?;
    let shown = redact_url(url);
    let parsed = url::Url::parse(url).map_err(|e| {
        BitsError::new(
            ErrorCode::InvalidArg,
            format!("{shown:?} is not a valid URL: {e}"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(BitsError::new(
            ErrorCode::InvalidArg,
            format!("{shown:?}: only http:// and https:// URLs are supported"),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(BitsError::new(
            ErrorCode::InvalidArg,
            format!("{shown:?} has no host"),
        ));
    }
    Ok(())
}

/// The shape of a local path, before any file system look-up: absolute, naming a file (not a
/// folder), without NUL bytes (which no file name can hold) or `.`/`..` components.
pub fn check_local_path(path: &std::path::Path) -> Result<(), BitsError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let invalid = |why: &str| {
        BitsError::new(
            ErrorCode::InvalidArg,
            format!("local name {:?} {why}", path.display().to_string()),
        )
    };
    if bytes.contains(&0) {
        return Err(invalid("contains a NUL byte, which no file name can hold"));
    }
    if !path.is_absolute() {
        return Err(invalid("must be absolute (start with /)"));
    }
    if bytes.ends_with(b"/") || path.file_name().is_none() {
        return Err(invalid(
            "names a folder: give the path of the file inside it",
        ));
    }
    // Raw segments: `Path::components` quietly drops inner `.` components.
    if bytes
        .split(|&b| b == b'/')
        .any(|segment| segment == b"." || segment == b"..")
    {
        return Err(invalid(
            "must not contain . or .. components: give the plain path",
        ));
    }
    Ok(())
}

/// A URL fit to print: `user:password@` (if any) replaced by `***@`, even when the URL does not
/// parse, so that no error message carries a password.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The URL without `user:password@`, as the job stores it (for comparing with stored URLs).
pub fn url_without_credentials(url: &str) -> String {
    take_url_credentials(url).map_or_else(|_| url.to_string(), |(url, _)| url)
}

/// Server credentials written into a URL.
pub(crate) type UrlCredentials = (String, String);

/// Takes `user:password@` out of a URL: the URL without it, and the user name and password
/// (percent-decoded), which the job keeps in memory like any credentials — never on disk, never
/// printed. A URL without them comes back unchanged.
pub(crate) fn take_url_credentials(
    url: &str,
) -> Result<(String, Option<UrlCredentials>), BitsError> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Ok((url.to_string(), None)); // check_remote_url says what is wrong
    };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return Ok((url.to_string(), None));
    }
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(parsed.username());
    let password = parsed.password().map(decode).unwrap_or_default();
    if user.chars().count() > 300 {
        return Err(BitsError::from_code(ErrorCode::UsernameTooLarge));
    }
    if password.chars().count() > 65_535 {
        return Err(BitsError::from_code(ErrorCode::PasswordTooLarge));
    }
    // Both succeed for http(s) URLs with a host, the only ones that have credentials here.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((parsed.to_string(), Some((user, password))))
}

pub(crate) fn validate_change(change: &PropertyChange) -> Result<(), BitsError> {
    match change {
        PropertyChange::DisplayName(name) => {
            check_length(name, super::MAX_DISPLAY_NAME, "display name")
        }
        PropertyChange::Description(text) => {
            check_length(text, super::MAX_DESCRIPTION, "description")
        }
        PropertyChange::NotifyFlags(flags) if flags & !NotifyFlags::ALL != 0 => {
            Err(BitsError::new(
                ErrorCode::NotImpl,
                format!("notify flags 0x{flags:X} contain unknown bits; valid bits are 0x3F"),
            ))
        }
        PropertyChange::NotifyCommand(Some(command)) => {
            if !command.program.starts_with('/') {
                return Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    format!(
                        "notify program {:?} must be an absolute path (no PATH search)",
                        command.program
                    ),
                ));
            }
            check_length(&command.program, 4096, "notify program path")?;
            check_length(&command.args.join(" "), 4000, "notify parameters")
        }
        PropertyChange::CustomHeaders(headers) => {
            let total: usize = headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
                + 1;
            if total > 16_384 {
                return Err(BitsError::new(
                    ErrorCode::StringTooLong,
                    format!("custom headers take {total} characters; the limit is 16,384"),
                ));
            }
            for (name, value) in headers {
                let bad_name =
                    name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                if bad_name || value.contains(['\r', '\n']) {
                    return Err(BitsError::new(
                        ErrorCode::InvalidArg,
                        format!("custom header {name:?} is not a valid `Name: value` header"),
                    ));
                }
            }
            Ok(())
        }
        PropertyChange::Credentials(creds) => {
            if let Some((_, user, password)) = &creds.server {
                if user.chars().count() > 300 {
                    return Err(BitsError::from_code(ErrorCode::UsernameTooLarge));
                }
                if password.chars().count() > 65_535 {
                    return Err(BitsError::from_code(ErrorCode::PasswordTooLarge));
                }
            }
            Ok(())
        }
        PropertyChange::Proxy(proxy) => {
            let lists = proxy.list.is_some() || proxy.bypass.is_some();
            match proxy.usage {
                ProxyUsage::Override if proxy.list.is_none() => Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    "proxy usage OVERRIDE needs a proxy list",
                )),
                ProxyUsage::Override => {
                    if proxy
                        .list
                        .as_ref()
                        .is_some_and(|l| l.chars().count() > 4000)
                    {
                        return Err(BitsError::from_code(ErrorCode::ProxyListTooLarge));
                    }
                    if proxy
                        .bypass
                        .as_ref()
                        .is_some_and(|l| l.chars().count() > 4000)
                    {
                        return Err(BitsError::from_code(ErrorCode::ProxyBypassListTooLarge));
                    }
                    Ok(())
                }
                _ if lists => Err(BitsError::new(
                    ErrorCode::InvalidArg,
                    "a proxy list or bypass list is only allowed with proxy usage OVERRIDE",
                )),
                _ => Ok(()),
            }
        }
        PropertyChange::RemoteName { url, .. } => check_remote_url(url),
        _ => Ok(()),
    }
}

/// The password never reaches a log line.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let server = self
            .server
            .as_ref()
            .map(|(scheme, user, _)| format!("{scheme:?} {user} ***"));
        f.debug_struct("Credentials")
            .field("server", &server)
            .finish()
    }
}

/// Serde for a [`Duration`] as whole seconds.
pub mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(duration.as_secs())
    }

    /// Whole seconds; also reads serde's own `(secs, nanos)` form, which stores written before
    /// durations were seconds contain.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Seconds(u64),
            Serde { secs: u64, nanos: u32 },
        }
        Ok(match Either::deserialize(d)? {
            Either::Seconds(secs) => Duration::from_secs(secs),
            Either::Serde { secs, nanos } => Duration::new(secs, nanos),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder(#[serde(with = "seconds")] Duration);

    #[test]
    fn durations_are_seconds_and_the_older_form_still_reads() {
        let text = ron::to_string(&Holder(Duration::from_secs(600))).expect("ron");
        assert_eq!(text, "(600)");
        let old: Holder =
            ron::from_str("((secs: 600, nanos: 0))").unwrap_or_else(|e| panic!("old form: {e}"));
        assert_eq!(old, Holder(Duration::from_secs(600)));
        let json: Holder = serde_json::from_str("60").expect("json");
        assert_eq!(json, Holder(Duration::from_secs(60)));
    }
}
