//! BITS error codes, the error object of a job, and the transient/fatal classification.
//!
//! Every error Ferry reports carries the BITS (or Win32/HTTP-derived) name and HRESULT next to a
//! plain-language message, so that users who know BITS recognise it and everybody else can act on it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An error code with its BITS name and HRESULT value (spec §11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    NotFound,
    InvalidState,
    Empty,
    FileNotAvailable,
    ErrorInformationUnavailable,
    NetworkDisconnected,
    /// The bandwidth policy allows the job's priority nothing now (spec T28).
    BlockedByPolicy,
    MissingFileSize,
    InsufficientHttpSupport,
    InsufficientRangeSupport,
    TooManyFiles,
    LocalFileChanged,
    /// The upload server no longer knows the session (expired, another server): start over.
    SessionNotFound,
    /// The upload is larger than the server accepts.
    TooLarge,
    StringTooLong,
    UsernameTooLarge,
    PasswordTooLarge,
    InvalidRange,
    OverlappingRanges,
    InvalidProxyInfo,
    InvalidCredentials,
    TooManyJobsPerUser,
    TooManyJobsPerMachine,
    TooManyFilesInJob,
    TooManyRangesInFile,
    MaxDownloadTimeout,
    ValidationFailed,
    ProxyListTooLarge,
    ProxyBypassListTooLarge,
    /// A final HTTP status the job cannot use (BG_E_HTTP_ERROR_nnn = 0x80190000 | status).
    Http(u16),
    AccessDenied,
    InvalidArg,
    NotImpl,
    /// The destination file already exists and the job may not replace it (ERROR_FILE_EXISTS).
    FileExists,
    PathNotFound,
    DiskFull,
    /// Any other local I/O failure (E_FAIL).
    LocalIo,
    /// Transport failures, named after the WinHTTP errors BITS reports for them.
    Timeout,
    NameNotResolved,
    CannotConnect,
    ConnectionError,
    SecureFailure,
    RedirectFailed,
    /// The server answered something the client cannot use (bad Content-Range, body longer than announced).
    InvalidServerResponse,
}

impl ErrorCode {
    /// One of the limits of spec §5 (jobs per user or machine, files per job, ranges per file).
    pub fn is_quota(self) -> bool {
        matches!(
            self,
            ErrorCode::TooManyJobsPerUser
                | ErrorCode::TooManyJobsPerMachine
                | ErrorCode::TooManyFilesInJob
                | ErrorCode::TooManyRangesInFile
        )
    }

    /// The HRESULT as BITS prints it: `0x80200002`.
    pub fn hresult_text(self) -> String {
        format!("0x{:08X}", self.hresult())
    }

    /// The HRESULT value, as BITS reports it.
    pub fn hresult(self) -> u32 {
        use ErrorCode::*;
        match self {
            NotFound => 0x8020_0001,
            InvalidState => 0x8020_0002,
            Empty => 0x8020_0003,
            FileNotAvailable => 0x8020_0004,
            ErrorInformationUnavailable => 0x8020_000F,
            NetworkDisconnected => 0x8020_0010,
            BlockedByPolicy => 0x8020_003E,
            MissingFileSize => 0x8020_0011,
            InsufficientHttpSupport => 0x8020_0012,
            InsufficientRangeSupport => 0x8020_0013,
            TooManyFiles => 0x8020_001C,
            LocalFileChanged => 0x8020_001D,
            SessionNotFound => 0x8020_001F,
            TooLarge => 0x8020_0020,
            StringTooLong => 0x8020_0021,
            UsernameTooLarge => 0x8020_0025,
            PasswordTooLarge => 0x8020_0026,
            InvalidRange => 0x8020_002B,
            OverlappingRanges => 0x8020_002C,
            InvalidProxyInfo => 0x8020_003F,
            InvalidCredentials => 0x8020_0040,
            TooManyJobsPerUser => 0x8020_0049,
            TooManyJobsPerMachine => 0x8020_0050,
            TooManyFilesInJob => 0x8020_0051,
            TooManyRangesInFile => 0x8020_0052,
            MaxDownloadTimeout => 0x8020_0054,
            ValidationFailed => 0x8020_0053,
            ProxyListTooLarge => 0x8020_0018,
            ProxyBypassListTooLarge => 0x8020_0019,
            Http(status) => 0x8019_0000 | u32::from(status),
            AccessDenied => 0x8007_0005,
            InvalidArg => 0x8007_0057,
            NotImpl => 0x8000_4001,
            FileExists => 0x8007_0050,
            PathNotFound => 0x8007_0003,
            DiskFull => 0x8007_0070,
            LocalIo => 0x8000_4005,
            Timeout => 0x8007_2EE2,
            NameNotResolved => 0x8007_2EE7,
            CannotConnect => 0x8007_2EFD,
            ConnectionError => 0x8007_2EFE,
            SecureFailure => 0x8007_2F8F,
            RedirectFailed => 0x8007_2F7C,
            InvalidServerResponse => 0x8007_2F78,
        }
    }

    /// The symbolic name (BG_E_…, E_…, ERROR_…).
    pub fn name(self) -> String {
        use ErrorCode::*;
        let name = match self {
            NotFound => "BG_E_NOT_FOUND",
            InvalidState => "BG_E_INVALID_STATE",
            Empty => "BG_E_EMPTY",
            FileNotAvailable => "BG_E_FILE_NOT_AVAILABLE",
            ErrorInformationUnavailable => "BG_E_ERROR_INFORMATION_UNAVAILABLE",
            NetworkDisconnected => "BG_E_NETWORK_DISCONNECTED",
            BlockedByPolicy => "BG_E_BLOCKED_BY_POLICY",
            MissingFileSize => "BG_E_MISSING_FILE_SIZE",
            InsufficientHttpSupport => "BG_E_INSUFFICIENT_HTTP_SUPPORT",
            InsufficientRangeSupport => "BG_E_INSUFFICIENT_RANGE_SUPPORT",
            TooManyFiles => "BG_E_TOO_MANY_FILES",
            LocalFileChanged => "BG_E_LOCAL_FILE_CHANGED",
            SessionNotFound => "BG_E_SESSION_NOT_FOUND",
            TooLarge => "BG_E_TOO_LARGE",
            StringTooLong => "BG_E_STRING_TOO_LONG",
            UsernameTooLarge => "BG_E_USERNAME_TOO_LARGE",
            PasswordTooLarge => "BG_E_PASSWORD_TOO_LARGE",
            InvalidRange => "BG_E_INVALID_RANGE",
            OverlappingRanges => "BG_E_OVERLAPPING_RANGES",
            InvalidProxyInfo => "BG_E_INVALID_PROXY_INFO",
            InvalidCredentials => "BG_E_INVALID_CREDENTIALS",
            TooManyJobsPerUser => "BG_E_TOO_MANY_JOBS_PER_USER",
            TooManyJobsPerMachine => "BG_E_TOO_MANY_JOBS_PER_MACHINE",
            TooManyFilesInJob => "BG_E_TOO_MANY_FILES_IN_JOB",
            TooManyRangesInFile => "BG_E_TOO_MANY_RANGES_IN_FILE",
            MaxDownloadTimeout => "BG_E_MAXDOWNLOAD_TIMEOUT",
            ValidationFailed => "BG_E_VALIDATION_FAILED",
            ProxyListTooLarge => "BG_E_PROXY_LIST_TOO_LARGE",
            ProxyBypassListTooLarge => "BG_E_PROXY_BYPASS_LIST_TOO_LARGE",
            Http(status) => return format!("BG_E_HTTP_ERROR_{status}"),
            AccessDenied => "E_ACCESSDENIED",
            InvalidArg => "E_INVALIDARG",
            NotImpl => "E_NOTIMPL",
            FileExists => "ERROR_FILE_EXISTS",
            PathNotFound => "ERROR_PATH_NOT_FOUND",
            DiskFull => "ERROR_DISK_FULL",
            LocalIo => "E_FAIL",
            Timeout => "ERROR_WINHTTP_TIMEOUT",
            NameNotResolved => "ERROR_WINHTTP_NAME_NOT_RESOLVED",
            CannotConnect => "ERROR_WINHTTP_CANNOT_CONNECT",
            ConnectionError => "ERROR_WINHTTP_CONNECTION_ERROR",
            SecureFailure => "ERROR_WINHTTP_SECURE_FAILURE",
            RedirectFailed => "ERROR_WINHTTP_REDIRECT_FAILED",
            InvalidServerResponse => "ERROR_WINHTTP_INVALID_SERVER_RESPONSE",
        };
        name.to_string()
    }

    /// A plain-language explanation of the code and, where there is one, what to do about it.
    pub fn advice(self) -> String {
        use ErrorCode::*;
        let text = match self {
            NotFound => "No job with that id exists (it may have been completed or cancelled).",
            InvalidState => "The job's current state does not allow this action.",
            Empty => "The job has no files: add at least one file before resuming it.",
            FileNotAvailable => "The error is not tied to a particular file.",
            ErrorInformationUnavailable => {
                "The job is not in an error state, so there is no error to show."
            }
            NetworkDisconnected => {
                "The network is unreachable; the job resumes when it comes back."
            }
            BlockedByPolicy => {
                "The bandwidth schedule allows this priority no transfer now; the job goes on \
                 by itself when the schedule allows it (or make it FOREGROUND, which the \
                 schedule never holds)."
            }
            MissingFileSize => {
                "The server did not send the file size (Content-Length); \
                 mark the job as dynamic content to download it anyway."
            }
            InsufficientHttpSupport => "The server does not support the HTTP/1.1 features needed.",
            InsufficientRangeSupport => {
                "The server does not support byte ranges, so the download cannot resume; \
                 mark the job as dynamic content to restart it from the beginning instead."
            }
            TooManyFiles => "Upload jobs carry exactly one file.",
            LocalFileChanged => "The local file changed while it was being uploaded.",
            SessionNotFound => {
                "The server lost the upload session (it expired or another server answered); \
                 the upload starts over."
            }
            TooLarge => "The file is larger than the server accepts for uploads.",
            StringTooLong => "The text is longer than allowed.",
            UsernameTooLarge => "The user name is longer than 300 characters.",
            PasswordTooLarge => "The password is longer than 65,535 characters.",
            InvalidRange => "A byte range is invalid or lies outside the remote file.",
            OverlappingRanges => "Byte ranges overlap or repeat; give each byte once.",
            InvalidProxyInfo => "The proxy settings are invalid.",
            InvalidCredentials => "The credentials are invalid.",
            TooManyJobsPerUser => {
                "You have reached the limit of jobs per user: complete or cancel stale jobs."
            }
            TooManyJobsPerMachine => {
                "The machine has reached its limit of jobs: complete or cancel stale jobs."
            }
            TooManyFilesInJob => "The job has reached its limit of files: use another job.",
            TooManyRangesInFile => "Too many byte ranges for one file.",
            MaxDownloadTimeout => {
                "The job spent longer than its maximum download time transferring; \
                 resume it to try again."
            }
            ValidationFailed => {
                "The downloaded file was rejected by validation; resume the job to download it again."
            }
            ProxyListTooLarge => "The proxy list is longer than 4,000 characters.",
            ProxyBypassListTooLarge => "The proxy bypass list is longer than 4,000 characters.",
            Http(status) => return http_advice(status),
            AccessDenied => "Access is denied: check the permissions of the destination folder.",
            InvalidArg => "An argument is invalid.",
            NotImpl => "This is not supported for this kind of job.",
            FileExists => {
                "The destination file already exists: remove or rename it, \
                 or allow the job to replace existing files."
            }
            PathNotFound => "The destination folder does not exist: create it first.",
            DiskFull => "The disk is full: free some space; the job retries on its own.",
            LocalIo => "A local file operation failed.",
            Timeout => "The server did not answer in time.",
            NameNotResolved => "The server name could not be resolved.",
            CannotConnect => "The connection to the server could not be established.",
            ConnectionError => "The connection to the server was reset or closed early.",
            SecureFailure => "The TLS connection failed (certificate or handshake).",
            RedirectFailed => {
                "The server redirected to a location the job's redirect policy forbids."
            }
            InvalidServerResponse => "The server sent a response that cannot be used.",
        };
        text.to_string()
    }
}

fn http_advice(status: u16) -> String {
    let what = match status {
        400 => "Bad request",
        401 => "Authentication required: set credentials for the job",
        403 => "Forbidden: the server refuses access to this file",
        404 => "Not found: check the URL",
        407 => "Proxy authentication required: set proxy credentials",
        408 => "Request timeout",
        409 => "Conflict",
        410 => "Gone: the file was removed from the server",
        416 => "Range not satisfiable: the file is shorter than the requested range",
        429 => "Too many requests: the server asks to slow down",
        500 => "Internal server error",
        501 => "Not implemented by the server",
        502 => "Bad gateway",
        503 => "Service unavailable",
        504 => "Gateway timeout",
        505 => "HTTP version not supported",
        _ => "The server answered with an unexpected status",
    };
    format!("HTTP {status}: {what}.")
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name(), self.hresult_text())
    }
}

/// The failure of a method call (Resume, AddFile, a setter, …). It never changes the job and never
/// creates an error object on the job (spec §4.4).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct BitsError {
    pub code: ErrorCode,
    pub message: String,
}

impl BitsError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// An error whose message is the code's standard advice.
    pub fn from_code(code: ErrorCode) -> Self {
        Self {
            code,
            message: code.advice(),
        }
    }
}

/// Where an error happened (BG_ERROR_CONTEXT, spec §0.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorContext {
    None,
    Unknown,
    GeneralQueueManager,
    QueueManagerNotification,
    LocalFile,
    RemoteFile,
    GeneralTransport,
    RemoteApplication,
}

impl ErrorContext {
    /// The BG_ERROR_CONTEXT number (spec §0.2).
    pub fn value(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorContext::None => "BG_ERROR_CONTEXT_NONE",
            ErrorContext::Unknown => "BG_ERROR_CONTEXT_UNKNOWN",
            ErrorContext::GeneralQueueManager => "BG_ERROR_CONTEXT_GENERAL_QUEUE_MANAGER",
            ErrorContext::QueueManagerNotification => "BG_ERROR_CONTEXT_QUEUE_MANAGER_NOTIFICATION",
            ErrorContext::LocalFile => "BG_ERROR_CONTEXT_LOCAL_FILE",
            ErrorContext::RemoteFile => "BG_ERROR_CONTEXT_REMOTE_FILE",
            ErrorContext::GeneralTransport => "BG_ERROR_CONTEXT_GENERAL_TRANSPORT",
            ErrorContext::RemoteApplication => "BG_ERROR_CONTEXT_REMOTE_APPLICATION",
        }
    }
}

/// The error object of a job in ERROR or TRANSIENT_ERROR (spec §4.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub context: ErrorContext,
    pub code: ErrorCode,
    /// Index of the file involved; `None` means BG_E_FILE_NOT_AVAILABLE.
    pub file: Option<usize>,
    pub description: String,
}

impl JobError {
    pub fn new(context: ErrorContext, code: ErrorCode, file: Option<usize>) -> Self {
        Self {
            context,
            code,
            file,
            description: code.advice(),
        }
    }

    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

/// How a failure is retried (spec §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Retried after the minimum retry delay, until the no-progress timeout.
    Transient,
    /// Retried on an environmental event (network back), not on the timer; never counted (§2.4, §4.5).
    Environmental,
    /// The job goes to ERROR and waits for the user.
    Fatal,
}

/// The transient/fatal table of spec §4.3 for a final HTTP status that is not a success.
pub fn classify_http_status(status: u16) -> ErrorClass {
    match status {
        300..=305 | 307 => ErrorClass::Fatal,
        300..=399 => ErrorClass::Transient,
        // 429 is not in the BITS table; Ferry retries it (honouring Retry-After), an extension.
        408 | 409 | 429 => ErrorClass::Transient,
        400..=499 => ErrorClass::Fatal,
        501 | 505 => ErrorClass::Fatal,
        500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Transient,
    }
}

/// What a local file error means for a job: its code, and whether retrying can help (a full disk
/// may empty; a missing folder or a refused permission will not fix themselves).
pub fn classify_io(error: &std::io::Error) -> (ErrorCode, ErrorClass) {
    use std::io::ErrorKind::*;
    match error.kind() {
        AlreadyExists => (ErrorCode::FileExists, ErrorClass::Fatal),
        NotFound => (ErrorCode::PathNotFound, ErrorClass::Fatal),
        PermissionDenied | ReadOnlyFilesystem => (ErrorCode::AccessDenied, ErrorClass::Fatal),
        IsADirectory | NotADirectory | InvalidFilename => (ErrorCode::LocalIo, ErrorClass::Fatal),
        StorageFull | QuotaExceeded => (ErrorCode::DiskFull, ErrorClass::Transient),
        _ => (ErrorCode::LocalIo, ErrorClass::Transient),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_codes_map_to_bits_hresults() {
        assert_eq!(ErrorCode::Http(404).hresult(), 0x8019_0194);
        assert_eq!(ErrorCode::Http(407).hresult(), 0x8019_0197);
        assert_eq!(ErrorCode::Http(503).hresult(), 0x8019_01F7);
        assert_eq!(ErrorCode::Http(404).name(), "BG_E_HTTP_ERROR_404");
        assert_eq!(
            ErrorCode::InvalidState.to_string(),
            "BG_E_INVALID_STATE 0x80200002"
        );
    }

    #[test]
    fn transient_fatal_table() {
        let table: &[(u16, ErrorClass)] = &[
            (300, ErrorClass::Fatal),
            (301, ErrorClass::Fatal),
            (302, ErrorClass::Fatal),
            (303, ErrorClass::Fatal),
            (304, ErrorClass::Fatal),
            (305, ErrorClass::Fatal),
            (306, ErrorClass::Transient),
            (307, ErrorClass::Fatal),
            (308, ErrorClass::Transient),
            (400, ErrorClass::Fatal),
            (401, ErrorClass::Fatal),
            (403, ErrorClass::Fatal),
            (404, ErrorClass::Fatal),
            (408, ErrorClass::Transient),
            (409, ErrorClass::Transient),
            (410, ErrorClass::Fatal),
            (429, ErrorClass::Transient),
            (500, ErrorClass::Transient),
            (501, ErrorClass::Fatal),
            (502, ErrorClass::Transient),
            (503, ErrorClass::Transient),
            (504, ErrorClass::Transient),
            (505, ErrorClass::Fatal),
            (599, ErrorClass::Transient),
            (199, ErrorClass::Transient),
        ];
        for &(status, class) in table {
            assert_eq!(classify_http_status(status), class, "HTTP {status}");
        }
    }
}
