//! The one place where a server's answer to a download request is judged before a byte of it is
//! written, and where failed requests are classified. Nothing here trusts the server: every
//! number it sends is parsed without panics, compared with what was asked and what is known, and
//! combined with checked arithmetic.
//!
//! - A `206` must carry a single `Content-Range` that starts where the request started, ends
//!   within what was asked, lies within its own total, and agrees with `Content-Length`. A short
//!   but honest one (a server may send less than asked, RFC 9110 §14.4) is used, and the worker
//!   asks for the rest; anything else is refused before the body is read.
//! - Failed requests are classified from the error's chain of sources (typed: `io::ErrorKind`,
//!   `rustls::Error`, our resolver's error), never from its text, which contains the URL.

use crate::config::Config;
use crate::content_range::{ContentRange, digits};
use crate::job::{ErrorClass, ProxySettings, ProxyUsage};
use crate::job::{ErrorCode, RedirectMode, RedirectPolicy, Validators};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use std::time::Duration;

/// What a ranged GET asked for: `bytes=start-` or `bytes=start-last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Asked {
    pub start: u64,
    /// The last byte asked for (inclusive); `None` = to the end of the remote file.
    pub last: Option<u64>,
}

impl Asked {
    /// The `Range` header value.
    pub fn header(&self) -> String {
        match self.last {
            Some(last) => format!("bytes={}-{last}", self.start),
            None => format!("bytes={}-", self.start),
        }
    }
}

/// The part of the remote file a `206` carries, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub start: u64,
    /// Bytes in the body (≥ 1).
    pub length: u64,
    /// The remote file's size, when the server told it.
    pub total: Option<u64>,
}

/// Why a server's answer is not used. `code` is what the job's error says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: ErrorCode,
    pub reason: String,
}

fn refuse(reason: String) -> Refusal {
    Refusal {
        code: ErrorCode::InvalidServerResponse,
        reason,
    }
}

/// Judges a `206` answer to `asked`, knowing the remote size `known_total` from earlier answers.
/// A total that differs from the known one is not refused here: it is a change of the remote
/// file, which the caller detects with the validators and answers by restarting the file.
pub(crate) fn check_partial(asked: Asked, headers: &HeaderMap) -> Result<Part, Refusal> {
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("multipart/"))
    {
        return Err(refuse(
            "the server answered a single range with several parts (multipart/byteranges)".into(),
        ));
    }
    let mut values = headers.get_all(header::CONTENT_RANGE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(refuse(
            "a 206 answer needs exactly one Content-Range header".into(),
        ));
    };
    let text = value.to_str().unwrap_or("(not text)");
    let Some(range) = ContentRange::parse(text) else {
        return Err(refuse(format!(
            "a 206 answer with an invalid Content-Range {text:?}"
        )));
    };
    let ContentRange::Bytes { first, last, total } = range else {
        return Err(refuse(format!(
            "a 206 answer with the Content-Range of a 416 ({text:?})"
        )));
    };
    if first != asked.start {
        return Err(refuse(format!(
            "asked for bytes from {} but the server sent bytes {first}-{last}",
            asked.start
        )));
    }
    if let Some(total) = total
        && last >= total
    {
        return Err(refuse(format!(
            "the server sent bytes {first}-{last} of a file it says has {total} bytes"
        )));
    }
    if let Some(asked_last) = asked.last
        && last > asked_last
    {
        return Err(refuse(format!(
            "asked for bytes {}-{asked_last} but the server sent bytes {first}-{last}",
            asked.start
        )));
    }
    // `last < u64::MAX` here (it is below the total, or at most an asked `last`, which a
    // request never sets to u64::MAX), but stay checked: this is a server's number.
    let Some(length) = (last - first).checked_add(1) else {
        return Err(refuse(format!("the range {first}-{last} is too large")));
    };
    if let Some(announced) = content_length(headers)?
        && announced != length
    {
        return Err(refuse(format!(
            "Content-Range says {length} bytes ({first}-{last}) but Content-Length says {announced}"
        )));
    }
    // The range reaches past the end of the remote file: the server sent all there is (spec
    // §3.2: BG_E_INVALID_RANGE, ERROR).
    if let (Some(asked_last), Some(total)) = (asked.last, total)
        && last < asked_last
        && last.checked_add(1) == Some(total)
    {
        return Err(Refusal {
            code: ErrorCode::InvalidRange,
            reason: format!(
                "the range {}-{asked_last} reaches past the end of the remote file ({total} bytes)",
                asked.start
            ),
        });
    }
    Ok(Part {
        start: first,
        length,
        total,
    })
}

/// `Content-Length`, refused when present but not a number (or given twice, differently).
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Refusal> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let parsed = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| refuse(format!("an invalid Content-Length {value:?}")))?;
        if length.is_some_and(|l| l != parsed) {
            return Err(refuse("two different Content-Length headers".into()));
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// `Content-Range: bytes */TOTAL` of a 416 answer.
pub(crate) fn unsatisfied_range_total(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    match ContentRange::parse(value)? {
        ContentRange::Unsatisfied { total } => Some(total),
        ContentRange::Bytes { .. } => None,
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The validators (size, Last-Modified, ETag) an answer states. The size of a 206 is its
/// Content-Range total, of a 200 its Content-Length.
pub(crate) fn response_validators(status: StatusCode, headers: &HeaderMap) -> Validators {
    let size = match status {
        StatusCode::PARTIAL_CONTENT => headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(ContentRange::parse)
            .and_then(|range| match range {
                ContentRange::Bytes { total, .. } => total,
                ContentRange::Unsatisfied { .. } => None,
            }),
        _ => content_length(headers).ok().flatten(),
    };
    Validators {
        size,
        last_modified: header_text(headers, header::LAST_MODIFIED),
        etag: header_text(headers, header::ETAG),
    }
}

/// Size and Last-Modified decide, as in BITS; the ETag too when both sides have one (extension).
pub(crate) fn validators_differ(old: &Validators, new: &Validators) -> bool {
    fn differs<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
        a.is_some() && b.is_some() && a != b
    }
    differs(&old.size, &new.size)
        || (old.last_modified.is_some() && old.last_modified != new.last_modified)
        || differs(&old.etag, &new.etag)
}

/// Whether an answer to a GET shows that the server serves byte ranges of this file: a 206, or
/// a 200 with `Accept-Ranges: bytes`.
pub(crate) fn serves_ranges(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::PARTIAL_CONTENT
        || headers
            .get_all(header::ACCEPT_RANGES)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|unit| unit.trim().eq_ignore_ascii_case("bytes"))
}

/// The validator that ties the pieces of a file fetched over several connections to one version
/// of it, sent as `If-Range`: a strong ETag, else Last-Modified. `None`: the file cannot be split
/// safely (a weak ETag alone does not tell byte-identical versions apart).
pub(crate) fn piece_validator(validators: &Validators) -> Option<String> {
    let strong = validators.etag.clone().filter(|tag| !tag.starts_with("W/"));
    strong.or_else(|| validators.last_modified.clone())
}

/// A piece's answer is of the same version as the rest of the file: the same size and exactly
/// the same ETag and Last-Modified (a validator missing from one answer is a difference here:
/// pieces from two versions must never be spliced into one file).
pub(crate) fn same_version(known: &Validators, seen: &Validators) -> bool {
    known.size.is_some() && known == seen
}

/// The longest wait a `Retry-After` may ask for; longer ones are cut to it (a server must not
/// park a job for years).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// `Retry-After` as seconds or an HTTP date, at most [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Some(seconds) = digits(value) {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A name the resolver could not resolve. Our own type, so that a failed request is classified
/// as ERROR_WINHTTP_NAME_NOT_RESOLVED by its type, not by searching its text.
#[derive(Debug)]
pub(crate) struct NameNotResolved {
    name: String,
    cause: std::io::Error,
}

impl std::fmt::Display for NameNotResolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot resolve {:?}: {}", self.name, self.cause)
    }
}

impl std::error::Error for NameNotResolved {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// The system resolver (getaddrinfo on the blocking pool, as reqwest's own), with a typed error.
struct Resolver;

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map(|addresses| addresses.collect::<Vec<_>>());
            match found {
                Ok(addresses) => {
                    if addresses.is_empty() {
                        let cause = std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "the name has no addresses",
                        );
                        return Err(Box::new(NameNotResolved { name, cause }) as _);
                    }
                    Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
                }
                Err(cause) => Err(Box::new(NameNotResolved { name, cause }) as _),
            }
        })
    }
}

/// A failed request (no HTTP answer) as a BITS code and class, with the error's whole chain of
/// causes for the description. Downloads and uploads share it. Decided by the types in the
/// chain; the text only describes.
pub(crate) fn classify_transport(error: &reqwest::Error) -> (ErrorCode, ErrorClass, String) {
    let chain = error_chain(error);
    let (code, class) = if error.is_redirect() {
        (ErrorCode::RedirectFailed, ErrorClass::Fatal)
    } else if error.is_timeout() {
        (ErrorCode::Timeout, ErrorClass::Transient)
    } else if let Some(cause) = source_cause(error) {
        cause
    } else if error.is_connect() {
        (ErrorCode::CannotConnect, ErrorClass::Transient)
    } else {
        (ErrorCode::ConnectionError, ErrorClass::Transient)
    };
    (code, class, chain)
}

/// The first cause in the chain whose type tells what happened.
fn source_cause(error: &reqwest::Error) -> Option<(ErrorCode, ErrorClass)> {
    use std::io::ErrorKind;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.downcast_ref::<NameNotResolved>().is_some() {
            return Some((ErrorCode::NameNotResolved, ErrorClass::Transient));
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return Some((ErrorCode::SecureFailure, ErrorClass::Fatal));
        }
        let Some(io) = cause.downcast_ref::<std::io::Error>() else {
            source = cause.source();
            continue;
        };
        // An io::Error's `source()` skips the error it wraps (rustls reports through an
        // io::Error, sometimes wrapped twice), so step into it instead.
        if let Some(inner) = io.get_ref() {
            source = Some(inner as &(dyn std::error::Error + 'static));
            continue;
        }
        return match io.kind() {
            ErrorKind::ConnectionRefused
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::AddrNotAvailable => {
                Some((ErrorCode::CannotConnect, ErrorClass::Transient))
            }
            ErrorKind::TimedOut => Some((ErrorCode::Timeout, ErrorClass::Transient)),
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => Some((ErrorCode::ConnectionError, ErrorClass::Transient)),
            _ => None,
        };
    }
    None
}

pub(crate) fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What an HTTP client is built for: a job's redirect policy and proxy, and whether it waits
/// long for answers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    pub redirect: RedirectPolicy,
    pub proxy: ProxySettings,
    /// Upload packets: the server may hold the last Ack while its application works (up to 5
    /// minutes, spec §8.4–8.5), so reads wait at least that long.
    pub patient: bool,
}

/// What one read of an HTTP/1 connection takes in at most. 128 KiB: the full speed of hyper's
/// default (1 GiB on loopback, paired runs: 1.01–1.04× its time; 64 KiB took 1.15×) for a
/// fraction of its memory (peak RSS of the service over 16 connections, `scripts/bench-rss.sh`:
/// 20.8–21.4 MiB; 64 KiB 18.0–18.5, hyper's default 34.0–35.5).
const READ_BUFFER: usize = 128 * 1024;

/// How long an upload packet's answer may take (spec §8.4: responses within 5 minutes).
pub(crate) const UPLOAD_ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// An HTTP client for jobs with this key.
pub(crate) fn build_client(
    key: &ClientKey,
    config: &Config,
) -> Result<reqwest::Client, (ErrorCode, String)> {
    let proxy_error = |message: String| (ErrorCode::InvalidProxyInfo, message);
    let policy = key.redirect;
    let redirect = reqwest::redirect::Policy::custom(move |attempt| {
        if policy.mode == RedirectMode::Disallow {
            return attempt.stop();
        }
        if attempt.previous().len() >= 10 {
            return attempt.error("too many redirects (more than 10)");
        }
        let from_https = attempt
            .previous()
            .last()
            .is_some_and(|url| url.scheme() == "https");
        if from_https && attempt.url().scheme() == "http" && !policy.allow_https_to_http {
            return attempt
                .error("redirect from HTTPS to HTTP refused by the job's redirect policy");
        }
        attempt.follow()
    });
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("Ferry/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect)
        .dns_resolver(std::sync::Arc::new(Resolver))
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
        .tcp_nodelay(true)
        // Reads of a fixed size: hyper's default buffer grows to about 400 KiB a connection and
        // is allocated again while body chunks cut from it wait for the disk (about 1 MiB a
        // connection; vendor/reqwest/FERRY-PATCH.md).
        .http1_read_buf_exact_size(READ_BUFFER);
    if key.patient {
        // Uploads: the answer to a fragment may take the server a while. Downloads count the
        // server's silence themselves (`transfer.rs`): this timer would also run while a
        // connection waits on a speed limit, and fail it for no fault of the server.
        builder = builder
            .read_timeout(Duration::from_millis(config.read_timeout_ms).max(UPLOAD_ANSWER_TIMEOUT));
    }
    let certificates = config
        .root_certificates()
        .map_err(|e| (ErrorCode::SecureFailure, e))?;
    for certificate in certificates {
        builder = builder.add_root_certificate(certificate);
    }
    match key.proxy.usage {
        // No WPAD on Linux: AUTODETECT uses the system (environment) settings like PRECONFIG.
        ProxyUsage::Preconfig | ProxyUsage::Autodetect => {}
        ProxyUsage::NoProxy => builder = builder.no_proxy(),
        ProxyUsage::Override => {
            let list = key.proxy.list.as_deref().unwrap_or_default();
            let bypass = key
                .proxy
                .bypass
                .as_deref()
                .map(|b| b.split_whitespace().collect::<Vec<_>>().join(","));
            for entry in list.split([' ', ',', ';']).filter(|e| !e.is_empty()) {
                let (scheme, target) = match entry.split_once('=') {
                    Some((scheme, target)) => (Some(scheme.to_ascii_lowercase()), target),
                    None => (None, entry),
                };
                let url = if target.contains("://") {
                    target.to_string()
                } else {
                    format!("http://{target}")
                };
                let proxy = match scheme.as_deref() {
                    Some("http") => reqwest::Proxy::http(&url),
                    Some("https") => reqwest::Proxy::https(&url),
                    None => reqwest::Proxy::all(&url),
                    Some(other) => {
                        return Err(proxy_error(format!(
                            "proxy entry {entry:?}: unknown scheme {other:?}"
                        )));
                    }
                }
                .map_err(|e| proxy_error(format!("proxy entry {entry:?} is invalid: {e}")))?;
                let proxy =
                    proxy.no_proxy(bypass.as_deref().and_then(reqwest::NoProxy::from_string));
                builder = builder.proxy(proxy);
            }
        }
    }
    builder
        .build()
        .map_err(|e| (ErrorCode::LocalIo, format!("cannot set up HTTP: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    fn partial(asked: Asked, range: &str, length: Option<u64>) -> Result<Part, Refusal> {
        let mut map = headers(&[(header::CONTENT_RANGE, range)]);
        if let Some(length) = length {
            map.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        check_partial(asked, &map)
    }

    const FROM_1M: Asked = Asked {
        start: 1_000_000,
        last: Some(1_999_999),
    };

    #[test]
    fn an_honest_short_206_is_used() {
        let part = partial(FROM_1M, "bytes 1000000-1499999/2000000", Some(500_000));
        assert_eq!(
            part,
            Ok(Part {
                start: 1_000_000,
                length: 500_000,
                total: Some(2_000_000)
            })
        );
    }

    #[test]
    fn misplaced_overlong_and_inconsistent_206s_are_refused() {
        for (range, length, why) in [
            ("bytes 999999-1999999/2000000", None, "asked for bytes from"),
            (
                "bytes 1000001-1999999/2000000",
                None,
                "asked for bytes from",
            ),
            ("bytes 1000000-2000000/3000000", None, "but the server sent"),
            ("bytes 1000000-1999999/1500000", None, "it says has"),
            (
                "bytes 1000000-1999999/2000000",
                Some(5),
                "Content-Length says 5",
            ),
            ("bytes */2000000", None, "Content-Range of a 416"),
            ("bytes 1000000-x/2000000", None, "invalid Content-Range"),
        ] {
            let refusal = partial(FROM_1M, range, length).expect_err(range);
            assert_eq!(refusal.code, ErrorCode::InvalidServerResponse, "{range}");
            assert!(refusal.reason.contains(why), "{range}: {}", refusal.reason);
        }
        let none = check_partial(FROM_1M, &HeaderMap::new()).expect_err("no Content-Range");
        assert!(none.reason.contains("exactly one Content-Range"));
        let two = headers(&[
            (header::CONTENT_RANGE, "bytes 1000000-1000001/2000000"),
            (header::CONTENT_RANGE, "bytes 1000000-1000001/2000000"),
        ]);
        assert!(check_partial(FROM_1M, &two).is_err());
        let multipart = headers(&[
            (header::CONTENT_RANGE, "bytes 1000000-1000001/2000000"),
            (header::CONTENT_TYPE, "multipart/byteranges; boundary=x"),
        ]);
        assert!(check_partial(FROM_1M, &multipart).is_err());
    }

    #[test]
    fn a_range_past_the_end_of_the_file_is_an_invalid_range() {
        let asked = Asked {
            start: 1_048_000,
            last: Some(1_048_999),
        };
        let refusal =
            partial(asked, "bytes 1048000-1048575/1048576", Some(576)).expect_err("past the end");
        assert_eq!(refusal.code, ErrorCode::InvalidRange);
        assert!(
            refusal.reason.contains("1048576 bytes"),
            "{}",
            refusal.reason
        );
        // To the end of the file: all of it is the answer.
        let open = Asked {
            start: 1_048_000,
            last: None,
        };
        assert!(partial(open, "bytes 1048000-1048575/1048576", Some(576)).is_ok());
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let asked = Asked {
            start: 0,
            last: None,
        };
        let max = u64::MAX;
        assert!(partial(asked, &format!("bytes 0-{max}/*"), None).is_err());
        assert!(partial(asked, &format!("bytes 0-{}/{max}", max - 1), None).is_ok());
        assert!(partial(asked, &format!("bytes 0-{max}/{max}"), None).is_err());
    }

    #[test]
    fn retry_after_seconds_dates_and_a_cap() {
        let map = headers(&[(header::RETRY_AFTER, "120")]);
        assert_eq!(retry_after(&map), Some(Duration::from_secs(120)));
        let future = std::time::SystemTime::now() + Duration::from_secs(3600);
        let map = headers(&[(header::RETRY_AFTER, &httpdate::fmt_http_date(future))]);
        let wait = retry_after(&map).expect("date");
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
        let map = headers(&[(header::RETRY_AFTER, "99999999999999999")]);
        assert_eq!(retry_after(&map), Some(MAX_RETRY_AFTER));
        let map = headers(&[(header::RETRY_AFTER, "+5")]);
        assert_eq!(retry_after(&map), None);
    }

    #[test]
    fn change_detection_rules() {
        let old = Validators {
            size: Some(10),
            last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
            etag: Some("\"a\"".into()),
        };
        assert!(!validators_differ(&old, &old.clone()));
        let bigger = Validators {
            size: Some(11),
            ..old.clone()
        };
        assert!(validators_differ(&old, &bigger));
        let undated = Validators {
            last_modified: None,
            ..old.clone()
        };
        assert!(validators_differ(&old, &undated));
        let retagged = Validators {
            etag: Some("\"b\"".into()),
            ..old.clone()
        };
        assert!(validators_differ(&old, &retagged));
        let untagged = Validators {
            etag: None,
            ..old.clone()
        };
        assert!(!validators_differ(&old, &untagged));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn header_text() -> impl Strategy<Value = String> {
            prop_oneof![
                "bytes [0-9*]{0,21}-[0-9]{0,21}/[0-9*]{0,21}",
                "[ -~]{0,40}",
                (
                    any::<u64>(),
                    any::<u64>(),
                    proptest::option::of(any::<u64>())
                )
                    .prop_map(|(a, b, t)| match t {
                        Some(t) => format!("bytes {a}-{b}/{t}"),
                        None => format!("bytes {a}-{b}/*"),
                    }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            #[test]
            fn no_answer_makes_the_checks_panic_or_pass_a_wrong_part(
                start in any::<u64>(),
                last in proptest::option::of(any::<u64>()),
                range in header_text(),
                length in proptest::option::of("[0-9]{0,22}"),
            ) {
                let asked = Asked { start, last: last.filter(|l| *l >= start) };
                let mut map = HeaderMap::new();
                if let Ok(value) = HeaderValue::from_str(&range) {
                    map.insert(header::CONTENT_RANGE, value);
                }
                if let Some(length) = length.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    map.insert(header::CONTENT_LENGTH, length);
                }
                let _ = response_validators(StatusCode::PARTIAL_CONTENT, &map);
                let _ = unsatisfied_range_total(&map);
                if let Ok(part) = check_partial(asked, &map) {
                    // What is written is exactly what was asked for, from where it was asked.
                    prop_assert_eq!(part.start, asked.start);
                    prop_assert!(part.length >= 1);
                    let end = part.start.checked_add(part.length);
                    prop_assert!(end.is_some());
                    if let (Some(end), Some(asked_last)) = (end, asked.last) {
                        prop_assert!(end - 1 <= asked_last);
                    }
                    if let (Some(end), Some(total)) = (end, part.total) {
                        prop_assert!(end <= total);
                    }
                }
            }
        }
    }
}
