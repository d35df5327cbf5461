//! One HTTP client for the Microsoft identity platform, Partner Center, Graph and Halo.
//!
//! [`Http`] wraps a single pooled `reqwest::Client` and adds what every call needs: timeouts, retries of
//! throttled and failed requests (honouring `Retry-After`), a strict rolling-window limiter in front of
//! Halo, redaction of URLs in logs and errors, request counters, and error bodies turned into short
//! messages ([`ApiError`]). Request headers, token request bodies and tokens are never logged.
//!
//! Retry rules (SPEC section 10):
//! - 429: retried for every kind of request (the server did not process it), after `Retry-After` when
//!   given (integer seconds, fractional seconds or an HTTP date), else exponential backoff with jitter.
//! - 5xx, timeouts and dropped connections: retried for reads and idempotent writes; a [`RequestKind::Create`]
//!   is never re-sent and fails with [`ErrorKind::Uncertain`] (the write may have landed).
//! - A connection that could not be established at all is retried for every kind (nothing was sent).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Environment variable holding a float that multiplies every computed retry sleep (tests use 0.001).
pub const RETRY_SCALE_ENV: &str = "CSP_SYNC_RETRY_SCALE";

/// The longest `Retry-After` honoured before giving up (so a cron job never hangs for hours).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// Characters of a response body kept in errors and trace logs.
const EXCERPT_CHARS: usize = 300;

/// The service a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// The Microsoft identity platform token endpoint.
    Login,
    PartnerCenter,
    Graph,
    Halo,
    /// Azure blob storage (billing export files, read with the SAS of their manifest, never a token).
    Blob,
}

impl Api {
    /// Every API, in a fixed order (the blob host of billing exports is not one: it is counted apart).
    pub const ALL: [Api; 4] = [Api::Login, Api::PartnerCenter, Api::Graph, Api::Halo];

    /// A short lower-case label (`login`, `partner_center`, `graph`, `halo`), for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Api::Login => "login",
            Api::PartnerCenter => "partner_center",
            Api::Graph => "graph",
            Api::Halo => "halo",
            Api::Blob => "blob",
        }
    }

    fn index(self) -> usize {
        match self {
            Api::Login => 0,
            Api::PartnerCenter => 1,
            Api::Graph => 2,
            Api::Halo => 3,
            Api::Blob => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Api::Login => "Microsoft login",
            Api::PartnerCenter => "Partner Center",
            Api::Graph => "Microsoft Graph",
            Api::Halo => "Halo",
            Api::Blob => "Azure blob storage",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a request does, which decides what may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A read (GET, or a POST that only reads such as a token request or a Graph `$batch` of GETs).
    Read,
    /// A write that is safe to repeat (a Halo update batch: every record carries its `id`).
    Idempotent,
    /// A write that creates records: never re-sent after a 5xx, a timeout or a dropped connection.
    Create,
}

/// Retry settings for one API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retries).
    pub max_attempts: u32,
    /// Backoff before the first retry when the server gives no `Retry-After`; doubled on each retry.
    pub base_delay: Duration,
    /// Cap of the computed backoff.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Microsoft APIs: start at 2 s, cap at 60 s.
    pub fn microsoft() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        }
    }

    /// Halo: its limit is a 5-minute rolling window, so start at 30 s and cap at 5 min.
    pub fn halo() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(300),
        }
    }

    /// The backoff before retry number `retry` (1-based), with jitter in [50 %, 100 %] of the
    /// exponential value, unscaled.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = 2f64.powi(retry.saturating_sub(1).min(30) as i32);
        let raw = (self.base_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(raw * (0.5 + fastrand::f64() * 0.5))
    }
}

/// Halo's client-side rate limit: at most `requests` requests in any `per` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

/// Settings of [`Http`]. `Default` gives the documented defaults and reads [`RETRY_SCALE_ENV`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    /// Whole-request timeout (headers and body).
    pub request_timeout: Duration,
    pub microsoft_retry: RetryPolicy,
    pub halo_retry: RetryPolicy,
    /// `None`: no client-side limiter in front of Halo.
    pub halo_rate_limit: Option<RateLimit>,
    /// The state directory whose Halo rate window this process shares with the others (SPEC 9); `None`:
    /// the limiter keeps this process's requests only.
    pub halo_window_dir: Option<std::path::PathBuf>,
    /// Multiplies every retry sleep, `Retry-After` included (tests: 0.001).
    pub retry_scale: f64,
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: request_timeout_from_env(),
            microsoft_retry: RetryPolicy::microsoft(),
            halo_retry: RetryPolicy::halo(),
            halo_rate_limit: Some(RateLimit {
                requests: 300,
                per: Duration::from_secs(300),
            }),
            halo_window_dir: None,
            retry_scale: retry_scale_from_env(),
            user_agent: format!("csp-sync/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Overrides the whole-request timeout (seconds, 1 to 600; default 60), for slow links and the fault tests.
pub const REQUEST_TIMEOUT_ENV: &str = "CSP_SYNC_HTTP_TIMEOUT";

fn request_timeout_from_env() -> Duration {
    std::env::var(REQUEST_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|v| (1..=600).contains(v))
        .map_or(Duration::from_secs(60), Duration::from_secs)
}

/// Reads [`RETRY_SCALE_ENV`]; anything missing, unparsable, negative or not finite gives 1.0.
pub fn retry_scale_from_env() -> f64 {
    std::env::var(RETRY_SCALE_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(1.0)
}

/// A strict rolling-window limiter (not a bursting token bucket): [`RollingWindow::acquire`] waits until
/// fewer than `requests` requests were let through in the last `per`, then records the new one.
/// Shared by every task through an `Arc`; waiters are served in order (tokio's mutex is fair).
///
/// With a state directory the window is the one every csp-sync process of that directory shares
/// ([`crate::rate_window`], SPEC 9); should its file fail (an unwritable directory), the limiter warns once
/// and goes on with this process's own window, which it keeps in both cases.
#[derive(Debug)]
pub struct RollingWindow {
    limit: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
    shared: Option<crate::rate_window::SharedWindow>,
    shared_failed: std::sync::atomic::AtomicBool,
}

impl RollingWindow {
    pub fn new(limit: RateLimit) -> Self {
        RollingWindow {
            limit: limit.requests.max(1) as usize,
            window: limit.per,
            sent: Mutex::new(VecDeque::new()),
            shared: None,
            shared_failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A limiter whose window is shared with the other processes of `state_dir`.
    pub fn shared(limit: RateLimit, state_dir: &std::path::Path) -> Self {
        RollingWindow {
            shared: Some(crate::rate_window::SharedWindow::new(state_dir, limit)),
            ..RollingWindow::new(limit)
        }
    }

    /// Waits for a free slot in the window and takes it.
    pub async fn acquire(&self) {
        let mut sent = self.sent.lock().await;
        loop {
            let now = Instant::now();
            while let Some(&oldest) = sent.front() {
                if now.duration_since(oldest) >= self.window {
                    sent.pop_front();
                } else {
                    break;
                }
            }
            match self.shared_take().await {
                Some(crate::rate_window::Take::Taken) => {
                    sent.push_back(now);
                    return;
                }
                // The lock is held while waiting on purpose: later callers queue behind this one.
                Some(crate::rate_window::Take::Wait(d)) => {
                    tokio::time::sleep(d).await;
                    continue;
                }
                None => {}
            }
            if sent.len() < self.limit {
                sent.push_back(now);
                return;
            }
            let free_at = sent.front().copied().map_or(now, |t| t + self.window);
            tokio::time::sleep_until(free_at).await;
        }
    }

    /// A slot of the shared window, or `None` without one (or once it failed).
    async fn shared_take(&self) -> Option<crate::rate_window::Take> {
        use crate::rate_window::unix_ms;
        let shared = self.shared.clone()?;
        if self.shared_failed.load(Ordering::Relaxed) {
            return None;
        }
        let now = unix_ms(std::time::SystemTime::now());
        let taken = tokio::task::spawn_blocking(move || shared.try_take(now))
            .await
            .unwrap_or_else(|e| Err(format!("the rate window task failed: {e}")));
        match taken {
            Ok(take) => Some(take),
            Err(e) => {
                if !self.shared_failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the Halo rate window shared with other csp-sync runs is not usable ({e}); this run \
                         keeps [halo] rate_limit on its own, so runs side by side may go over it together \
                         (set [sync] state_dir to a writable local directory)"
                    );
                }
                None
            }
        }
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(Value),
    /// A form body (token requests). Every value is a secret as far as logging goes.
    Form(Vec<(&'static str, SecretString)>),
}

/// One logical request; re-sent as is on retries (same headers, so the same `MS-RequestId`).
#[derive(Debug, Clone)]
pub struct Request {
    pub api: Api,
    pub method: reqwest::Method,
    pub url: String,
    pub kind: RequestKind,
    /// Extra headers (never logged).
    pub headers: Vec<(String, String)>,
    pub bearer: Option<SecretString>,
    pub body: Body,
    /// Never log the response body (token responses).
    pub sensitive_response: bool,
    /// Overrides the client's request timeout.
    pub timeout: Option<Duration>,
}

impl Request {
    pub fn new(api: Api, method: reqwest::Method, url: impl Into<String>) -> Self {
        let kind = if method == reqwest::Method::GET {
            RequestKind::Read
        } else {
            RequestKind::Create
        };
        Request {
            api,
            method,
            url: url.into(),
            kind,
            headers: Vec::new(),
            bearer: None,
            body: Body::None,
            sensitive_response: api == Api::Login,
            timeout: None,
        }
    }

    pub fn get(api: Api, url: impl Into<String>) -> Self {
        Request::new(api, reqwest::Method::GET, url)
    }

    /// A POST; its kind defaults to [`RequestKind::Create`] (the safe assumption) until set.
    pub fn post(api: Api, url: impl Into<String>) -> Self {
        Request::new(api, reqwest::Method::POST, url)
    }

    #[must_use]
    pub fn kind(mut self, kind: RequestKind) -> Self {
        self.kind = kind;
        self
    }

    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    #[must_use]
    pub fn bearer(mut self, token: &SecretString) -> Self {
        self.bearer = Some(token.clone());
        self
    }

    #[must_use]
    pub fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    #[must_use]
    pub fn form(mut self, fields: Vec<(&'static str, SecretString)>) -> Self {
        self.body = Body::Form(fields);
        self.sensitive_response = true;
        self
    }

    #[must_use]
    pub fn sensitive(mut self) -> Self {
        self.sensitive_response = true;
        self
    }
}

/// A response whose body was read in full, with a leading UTF-8 byte-order mark removed.
#[derive(Debug, Clone)]
pub struct Response {
    pub api: Api,
    pub method: String,
    /// Redacted URL.
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    /// Parses the body as JSON; an [`ErrorKind::Decode`] error names the URL and what was expected.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_str(&self.body).map_err(|e| ApiError {
            api: self.api,
            method: self.method.clone(),
            url: self.url.clone(),
            status: Some(self.status.as_u16()),
            kind: ErrorKind::Decode,
            code: None,
            message: format!(
                "could not read the response as {}: {e} (body starts: {})",
                short_type_name::<T>(),
                excerpt(&self.body)
            ),
            retry_after: None,
        })
    }

    /// Turns a non-success response into an [`ApiError`]; success passes through.
    pub fn error_for_status(self) -> Result<Response, ApiError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(ApiError::from_response(&self))
        }
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// What kind of failure an [`ApiError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Unauthorized,
    Forbidden,
    NotFound,
    BadRequest,
    Throttled,
    Server,
    Transport,
    Timeout,
    /// A create failed in a way that leaves open whether the server processed it.
    Uncertain,
    Decode,
}

/// A failed API call, safe to print: the URL is redacted and no header or token is included.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ApiError {
    pub api: Api,
    pub method: String,
    /// URL with its query string, secrets redacted.
    pub url: String,
    pub status: Option<u16>,
    pub kind: ErrorKind,
    /// The service's error code when the body has one (Graph `error.code`, Partner Center `code`,
    /// AADSTS number, OAuth `error`).
    pub code: Option<String>,
    /// The parsed message, or a short excerpt of the body.
    pub message: String,
    /// The server's `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Builds the error for a non-success response from its status and body.
    pub fn from_response(resp: &Response) -> Self {
        let status = resp.status.as_u16();
        let (code, mut message) = parse_error_body(&resp.body);
        if resp.status.is_redirection() {
            let to = resp
                .headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "somewhere unnamed".to_string(), redact_url);
            message = format!("redirected to {to}");
        }
        let kind = match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 | 410 => ErrorKind::NotFound,
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::BadRequest,
        };
        ApiError {
            api: resp.api,
            method: resp.method.clone(),
            url: resp.url.clone(),
            status: Some(status),
            kind,
            code,
            message,
            retry_after: retry_after(&resp.headers),
        }
    }

    fn hint(&self) -> &'static str {
        match (self.kind, self.api) {
            (ErrorKind::Unauthorized, Api::Halo) => {
                "check [halo] client_id and the Halo client secret (`csp-sync auth check`)"
            }
            (ErrorKind::Unauthorized, _) => {
                "the token was refused; run `csp-sync auth check` to see which credential fails"
            }
            (ErrorKind::Forbidden, Api::Halo) => {
                "the Halo API application or the agent it logs in as lacks a permission for this"
            }
            (ErrorKind::Forbidden, Api::Graph) => {
                "the app lacks a Graph permission in this tenant, or the GDAP roles do not cover it \
                 (`csp-sync tenants health`, `csp-sync tenants consent`)"
            }
            (ErrorKind::Forbidden, _) => {
                "the account or app lacks access; check its Partner Center role and GDAP relationship"
            }
            (ErrorKind::NotFound, _) => "check the id and the configured base URL",
            (ErrorKind::BadRequest, _) if self.status.is_some_and(|s| (300..400).contains(&s)) => {
                "the server redirected to another origin, which csp-sync does not follow (the token \
                 would go along); set the base URL in the config to where the service really is"
            }
            (ErrorKind::BadRequest, _) => "the request was rejected as invalid",
            (ErrorKind::Throttled, _) => {
                "still throttled after retrying; run again later or lower [sync] concurrency / \
                 [halo] rate_limit"
            }
            (ErrorKind::Server, _) => "the service failed; try again later",
            (ErrorKind::Transport, Api::Halo) => {
                "could not talk to Halo; check [halo] url (and auth_url), DNS, proxy and network"
            }
            (ErrorKind::Transport, Api::Login) => {
                "could not talk to the Microsoft identity platform; check [microsoft] login_url (or \
                 cloud), DNS, proxy and network"
            }
            (ErrorKind::Transport, Api::Graph) => {
                "could not talk to Microsoft Graph; check [microsoft] graph_url (or cloud), DNS, proxy \
                 and network"
            }
            (ErrorKind::Transport, Api::PartnerCenter) => {
                "could not talk to Partner Center; check [microsoft] partner_center_url (or cloud), DNS, \
                 proxy and network"
            }
            (ErrorKind::Transport, Api::Blob) => {
                "could not download the billing export file from Azure storage; check the network and \
                 proxy (the storage host is named by the export's manifest); the next run reads it again"
            }
            (ErrorKind::Timeout, _) => "the server did not answer in time; try again later",
            (ErrorKind::Uncertain, _) => {
                "the write may have landed: do not simply re-run it; the next sync reads Halo \
                 first and only creates what is still missing"
            }
            (ErrorKind::Decode, _) => {
                "the response had an unexpected shape; check the base URL points at the right service"
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} failed", self.api, self.method, self.url)?;
        match self.status {
            Some(s) => write!(f, " with HTTP {s}")?,
            None => write!(f, " ({:?})", self.kind)?,
        }
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        write!(f, " ({})", self.hint())
    }
}

/// Extracts `(code, message)` from an error body of any of the services (reference section 5).
pub fn parse_error_body(body: &str) -> (Option<String>, String) {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        if let Some(x) = storage_error_body(body) {
            return x;
        }
        return (None, excerpt(body));
    };
    let str_of = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    // Graph: {"error": {"code", "message"}}.
    if let Some(err) = v.get("error").filter(|e| e.is_object()) {
        let code = err.get("code").and_then(str_of);
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return (code, excerpt(msg));
    }
    // Entra token endpoint: {"error", "error_description", "error_codes": [n]}.
    if let Some(desc) = v.get("error_description").and_then(Value::as_str) {
        let code = v
            .get("error_codes")
            .and_then(|c| c.get(0))
            .and_then(str_of)
            .map(|n| format!("AADSTS{n}"))
            .or_else(|| v.get("error").and_then(str_of));
        return (code, excerpt(first_line(desc)));
    }
    // Partner Center: {"code", "description"}; its 429: {"statusCode", "message"}.
    if let Some(desc) = v.get("description").and_then(Value::as_str) {
        return (v.get("code").and_then(str_of), excerpt(desc));
    }
    for key in ["message", "Message", "errorMessage", "error", "title"] {
        if let Some(msg) = v.get(key).and_then(Value::as_str) {
            let code = v
                .get("code")
                .or_else(|| v.get("resultCode"))
                .or_else(|| v.get("statusCode"))
                .and_then(str_of);
            return (code, excerpt(msg));
        }
    }
    if let Some(s) = v.as_str() {
        return (None, excerpt(s));
    }
    (None, excerpt(body))
}

/// Azure Storage's XML error (`<Error><Code>..</Code><Message>..</Message>[<AuthenticationErrorDetail>..]`):
/// the code, and the detail when there is one (it says why, e.g. an expired SAS), else the message's first
/// line (the rest is the request id and time).
fn storage_error_body(body: &str) -> Option<(Option<String>, String)> {
    let tag = |name: &str| -> Option<&str> {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(&body[start..end])
    };
    tag("Error")?;
    let code = tag("Code").map(|c| c.trim().to_string());
    let message = tag("AuthenticationErrorDetail")
        .or_else(|| tag("Message").map(first_line))
        .unwrap_or_default();
    Some((code, excerpt(message)))
}

fn first_line(s: &str) -> &str {
    s.split(['\r', '\n']).next().unwrap_or(s).trim()
}

/// The first [`EXCERPT_CHARS`] characters of a text on one line.
pub fn excerpt(s: &str) -> String {
    let one_line: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(EXCERPT_CHARS + 1)
        .collect();
    if one_line.chars().count() > EXCERPT_CHARS {
        let cut: String = one_line.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// Removes a leading UTF-8 byte-order mark.
pub fn strip_bom(s: &str) -> &str {
    s.strip_prefix('\u{feff}').unwrap_or(s)
}

/// Parses `Retry-After`: integer seconds, fractional seconds ("0.5", Graph) or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        // A huge value (1e30) would panic in `from_secs_f64`; anything past a day means "give up" anyway
        // (see MAX_RETRY_AFTER), so it is clamped there.
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = PARSER.parse_timestamp(value).ok()?;
    let ms = at.as_millisecond() - jiff::Timestamp::now().as_millisecond();
    Some(Duration::from_millis(ms.max(0) as u64))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

pub use crate::redact::url as redact_url;

/// Attempts in total when the connection cannot be opened (refused, unknown host, unreachable network).
pub const CONNECT_ATTEMPTS: u32 = 3;

/// The wait before connection retry number `retry` (1-based): 0.5 s, then 1 s, unscaled, no jitter
/// (nothing reached the server, so there is no herd to spread).
pub fn connect_backoff(retry: u32) -> Duration {
    Duration::from_millis(500) * 2u32.pow(retry.saturating_sub(1).min(4))
}

/// One retry [`Http`] took: after which attempt, how long it waited (unscaled) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub api: Api,
    pub attempt: u32,
    pub wait: Duration,
    /// "throttled", "server error" or "connection failed" / "request failed".
    pub cause: &'static str,
}

/// `scheme://host:port` of a URL, the unit redirects may stay within.
fn origin_of(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// The one HTTP client of a run. Cheap to share: wrap it in an `Arc`.
#[derive(Debug)]
pub struct Http {
    /// API calls: redirects followed only within the same origin (scheme, host, port).
    client: reqwest::Client,
    /// Token requests (form bodies holding secrets): redirects never followed.
    no_redirects: reqwest::Client,
    /// Every retry taken, in order (the end-of-run figures, and what tests assert the schedule on).
    retries: std::sync::Mutex<Vec<Retry>>,
    /// Origins whose connection failed on every quick attempt: later requests fail at once instead of
    /// each waiting through its own attempts (an unreachable Halo fails a run in seconds, not minutes).
    unreachable: std::sync::Mutex<std::collections::HashMap<String, String>>,
    options: HttpOptions,
    halo_limiter: Option<Arc<RollingWindow>>,
    counters: [AtomicU64; 5],
    /// 429 answers received per API, retried ones included.
    throttled: [AtomicU64; 5],
}

impl Http {
    pub fn new(options: HttpOptions) -> Result<Self, ApiError> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(options.connect_timeout)
                .timeout(options.request_timeout)
                .user_agent(options.user_agent.clone())
        };
        let setup_error = |e: reqwest::Error| ApiError {
            api: Api::Login,
            method: String::new(),
            url: String::new(),
            status: None,
            kind: ErrorKind::Transport,
            code: None,
            message: format!("could not set up the HTTP client: {e}"),
            retry_after: None,
        };
        let no_redirects = builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(setup_error)?;
        let client = builder()
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let first = attempt.previous().first().map(origin_of);
                if attempt.previous().len() >= 5 {
                    attempt.error("more than 5 redirects")
                } else if first.is_some_and(|o| o == origin_of(attempt.url())) {
                    attempt.follow()
                } else {
                    // Another origin: the bearer token would go along; the 3xx is returned instead.
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| ApiError {
                api: Api::Login,
                method: String::new(),
                url: String::new(),
                status: None,
                kind: ErrorKind::Transport,
                code: None,
                message: format!("could not set up the HTTP client: {e}"),
                retry_after: None,
            })?;
        let halo_limiter = options.halo_rate_limit.map(|l| {
            Arc::new(match &options.halo_window_dir {
                Some(dir) => RollingWindow::shared(l, dir),
                None => RollingWindow::new(l),
            })
        });
        Ok(Http {
            client,
            no_redirects,
            unreachable: std::sync::Mutex::default(),
            retries: std::sync::Mutex::default(),
            options,
            halo_limiter,
            counters: Default::default(),
            throttled: Default::default(),
        })
    }

    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// The retries taken so far, in order.
    pub fn retries(&self) -> Vec<Retry> {
        self.retries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn note_retry(&self, api: Api, attempt: u32, wait: Duration, cause: &'static str) {
        self.retries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Retry {
                api,
                attempt,
                wait,
                cause,
            });
    }

    /// Records a retry a caller takes itself for part of a response (a Graph `$batch` item, which
    /// [`Http::send_raw`] cannot see): listed in [`Http::retries`], and when `throttled` counted in
    /// [`Http::throttled_count`] like a 429 of a whole request.
    pub fn note_part_retry(&self, api: Api, attempt: u32, wait: Duration, throttled: bool) {
        if throttled {
            self.throttled[api.index()].fetch_add(1, Ordering::Relaxed);
        }
        let cause = if throttled {
            "throttled"
        } else {
            "server error"
        };
        self.note_retry(api, attempt, wait, cause);
    }

    /// Requests sent to `api` so far, retries included.
    pub fn request_count(&self, api: Api) -> u64 {
        self.counters[api.index()].load(Ordering::Relaxed)
    }

    /// 429 (throttled) answers `api` gave so far.
    pub fn throttled_count(&self, api: Api) -> u64 {
        self.throttled[api.index()].load(Ordering::Relaxed)
    }

    fn policy(&self, api: Api) -> RetryPolicy {
        match api {
            Api::Halo => self.options.halo_retry,
            _ => self.options.microsoft_retry,
        }
    }

    /// Sleeps `d` multiplied by the retry scale. Also used by callers that retry parts of a
    /// response themselves (Graph `$batch` items).
    pub async fn retry_sleep(&self, d: Duration) {
        let scaled = d.as_secs_f64() * self.options.retry_scale;
        if scaled > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(scaled)).await;
        }
    }

    /// A retry wait as a person reads it, scaled like the sleep itself ("21 s", "3 min 30 s").
    pub fn shown_wait(&self, d: Duration) -> String {
        let secs = (d.as_secs_f64() * self.options.retry_scale).round() as u64;
        match secs {
            0 => "less than a second".to_string(),
            1..=59 => format!("{secs} s"),
            _ if secs.is_multiple_of(60) => format!("{} min", secs / 60),
            _ => format!("{} min {} s", secs / 60, secs % 60),
        }
    }

    /// The retry policy in force for `api`.
    pub fn retry_policy(&self, api: Api) -> RetryPolicy {
        self.policy(api)
    }

    /// Sends `req` with retries and returns a success response or an [`ApiError`].
    pub async fn send(&self, req: &Request) -> Result<Response, ApiError> {
        self.send_raw(req).await?.error_for_status()
    }

    /// Sends `req` with retries; returns the final response whatever its status (token requests
    /// parse their own error bodies). Errors only for transport failures, exhausted retries of
    /// 5xx/transport errors, and uncertain creates.
    pub async fn send_raw(&self, req: &Request) -> Result<Response, ApiError> {
        let policy = self.policy(req.api);
        let max_attempts = policy.max_attempts.max(1);
        let redacted = redact_url(&req.url);
        let origin = reqwest::Url::parse(&req.url)
            .map(|u| origin_of(&u))
            .unwrap_or_default();
        if let Some(message) = self
            .unreachable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&origin)
        {
            return Err(ApiError {
                api: req.api,
                method: req.method.to_string(),
                url: redacted,
                status: None,
                kind: ErrorKind::Transport,
                code: None,
                message: format!("{message}; not tried again in this run"),
                retry_after: None,
            });
        }
        let mut attempt = 1;
        loop {
            if req.api == Api::Halo
                && let Some(limiter) = &self.halo_limiter
            {
                limiter.acquire().await;
            }
            self.counters[req.api.index()].fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let outcome = self.execute_once(req).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let can_retry = attempt < max_attempts;
            match outcome {
                Ok(resp) => {
                    tracing::debug!(
                        api = %req.api, method = %req.method, url = %redacted,
                        status = resp.status.as_u16(), elapsed_ms, attempt, "http"
                    );
                    if !req.sensitive_response {
                        tracing::trace!(api = %req.api, url = %redacted, body = %excerpt(&resp.body), "http body");
                    }
                    let status = resp.status;
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        self.throttled[req.api.index()].fetch_add(1, Ordering::Relaxed);
                        let server_wait = retry_after(&resp.headers);
                        if !can_retry || server_wait.is_some_and(|w| w > MAX_RETRY_AFTER) {
                            return Ok(resp);
                        }
                        let wait = server_wait.unwrap_or_else(|| policy.backoff(attempt));
                        tracing::warn!(
                            api = %req.api, url = %redacted, attempt,
                            wait_ms = wait.as_millis() as u64, from_server = server_wait.is_some(),
                            "throttled (429) by {} at {redacted}; retrying in {} (attempt {} of {max_attempts})",
                            req.api, self.shown_wait(wait), attempt + 1
                        );
                        self.note_retry(req.api, attempt, wait, "throttled");
                        self.retry_sleep(wait).await;
                    } else if status.is_server_error() {
                        // 501 Not Implemented and 505 say the server will never do this: the URL
                        // points at the wrong service, and waiting does not cure that.
                        if matches!(status.as_u16(), 501 | 505) {
                            return Ok(resp);
                        }
                        if req.kind == RequestKind::Create {
                            let mut err = ApiError::from_response(&resp);
                            err.kind = ErrorKind::Uncertain;
                            return Err(err);
                        }
                        if !can_retry {
                            return Ok(resp);
                        }
                        let wait = retry_after(&resp.headers)
                            .filter(|w| *w <= MAX_RETRY_AFTER)
                            .unwrap_or_else(|| policy.backoff(attempt));
                        tracing::warn!(
                            api = %req.api, url = %redacted, status = status.as_u16(), attempt,
                            wait_ms = wait.as_millis() as u64,
                            "{} answered HTTP {} at {redacted}; retrying in {} (attempt {} of {max_attempts})",
                            req.api, status.as_u16(), self.shown_wait(wait), attempt + 1
                        );
                        self.note_retry(req.api, attempt, wait, "server error");
                        self.retry_sleep(wait).await;
                    } else {
                        return Ok(resp);
                    }
                }
                Err(failure) => {
                    tracing::debug!(
                        api = %req.api, method = %req.method, url = %redacted,
                        elapsed_ms, attempt, error = %failure.message, "http failed"
                    );
                    // A connection that never opened carried nothing: safe to retry even a create.
                    let uncertain = req.kind == RequestKind::Create && !failure.connect;
                    // A refused connection or an unknown host is not a busy server: a few quick
                    // attempts, then the error naming the URL (and the hint its config key).
                    let can_retry = if failure.connect {
                        attempt < CONNECT_ATTEMPTS
                    } else {
                        can_retry
                    };
                    if failure.connect && !can_retry {
                        self.unreachable
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(
                                origin.clone(),
                                format!("{} after {attempt} attempt(s)", failure.message),
                            );
                    }
                    if uncertain || !can_retry {
                        let kind = if uncertain {
                            ErrorKind::Uncertain
                        } else if failure.timeout {
                            ErrorKind::Timeout
                        } else {
                            ErrorKind::Transport
                        };
                        return Err(ApiError {
                            api: req.api,
                            method: req.method.to_string(),
                            url: redacted,
                            status: None,
                            kind,
                            code: None,
                            message: format!("{} after {attempt} attempt(s)", failure.message),
                            retry_after: None,
                        });
                    }
                    let wait = if failure.connect {
                        connect_backoff(attempt)
                    } else {
                        policy.backoff(attempt)
                    };
                    tracing::warn!(
                        api = %req.api, url = %redacted, attempt,
                        wait_ms = wait.as_millis() as u64, error = %failure.message,
                        "{} request to {redacted} failed ({}); retrying in {} (attempt {} of {})",
                        req.api, failure.message, self.shown_wait(wait), attempt + 1,
                        if failure.connect { CONNECT_ATTEMPTS } else { max_attempts }
                    );
                    let cause = if failure.connect {
                        "connection failed"
                    } else {
                        "request failed"
                    };
                    self.note_retry(req.api, attempt, wait, cause);
                    self.retry_sleep(wait).await;
                }
            }
            attempt += 1;
        }
    }

    /// Opens a GET of a file whose body the caller streams (billing export blobs): no bearer token is
    /// ever sent (the URL carries its own SAS), and no retry here (a stream that breaks half way is
    /// restarted by the caller, which alone knows what it has consumed). A non-success status is an
    /// [`ApiError`] with the URL redacted (the SAS `sig` never appears).
    pub async fn open_stream(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, ApiError> {
        let redacted = redact_url(url);
        self.counters[Api::Blob.index()].fetch_add(1, Ordering::Relaxed);
        let transport = |f: Failure| ApiError {
            api: Api::Blob,
            method: "GET".into(),
            url: redacted.clone(),
            status: None,
            kind: if f.timeout {
                ErrorKind::Timeout
            } else {
                ErrorKind::Transport
            },
            code: None,
            message: f.message,
            retry_after: None,
        };
        let resp = self
            .client
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport(Failure::from(e)))?;
        let status = resp.status();
        tracing::debug!(api = %Api::Blob, method = "GET", url = %redacted, status = status.as_u16(), "http");
        if status.is_success() {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Err(ApiError::from_response(&Response {
            api: Api::Blob,
            method: "GET".into(),
            url: redacted,
            status,
            headers,
            body,
        }))
    }

    async fn execute_once(&self, req: &Request) -> Result<Response, Failure> {
        let client = if matches!(req.body, Body::Form(_)) {
            &self.no_redirects
        } else {
            &self.client
        };
        let mut builder = client.request(req.method.clone(), &req.url);
        if let Some(t) = req.timeout {
            builder = builder.timeout(t);
        }
        builder = builder.header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(token) = &req.bearer {
            builder = builder.bearer_auth(token.expose_secret());
        }
        builder = match &req.body {
            Body::None => builder,
            Body::Json(v) => builder.json(v),
            Body::Form(fields) => {
                let pairs: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(k, v)| (*k, v.expose_secret()))
                    .collect();
                builder.form(&pairs)
            }
        };
        let resp = builder.send().await.map_err(Failure::from)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(Failure::from)?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(Response {
            api: req.api,
            method: req.method.to_string(),
            url: redact_url(&req.url),
            status,
            headers,
            body: strip_bom(&text).to_string(),
        })
    }
}

/// A transport failure, described without the URL (reqwest's Display includes it, query and all).
struct Failure {
    message: String,
    timeout: bool,
    connect: bool,
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        let timeout = e.is_timeout();
        let connect = e.is_connect();
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        let message = if timeout {
            format!("timed out ({message})")
        } else if connect {
            format!("could not connect ({message})")
        } else {
            message
        };
        Failure {
            message,
            timeout,
            connect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 57 "), Some(Duration::from_secs(57)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("2.128"),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after("-3"), None);
        assert_eq!(parse_retry_after("1e30"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_retry_after("soon"), None);
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let future = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let header = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&future)
            .unwrap();
        let d = parse_retry_after(&header).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn error_bodies_of_every_service() {
        let graph = r#"{"error":{"code":"TooManyRequests","innerError":{"code":"429"},"message":"Please retry again later."}}"#;
        assert_eq!(
            parse_error_body(graph),
            (
                Some("TooManyRequests".into()),
                "Please retry again later.".into()
            )
        );
        let aad = r#"{"error":"invalid_scope","error_description":"AADSTS70011: The provided value is not valid.\r\nTrace ID: 255d\r\nCorrelation ID: fb3d","error_codes":[70011]}"#;
        assert_eq!(
            parse_error_body(aad),
            (
                Some("AADSTS70011".into()),
                "AADSTS70011: The provided value is not valid.".into()
            )
        );
        let pc_num = r#"{"code": 20002,"description":"The partner ID has no commerce relationship.","data":[],"source":"PartnerFD"}"#;
        assert_eq!(parse_error_body(pc_num).0.as_deref(), Some("20002"));
        let pc_str = r#"{"code": "600012","description":"x","data":[],"source":"PartnerFD"}"#;
        assert_eq!(parse_error_body(pc_str).0.as_deref(), Some("600012"));
        let pc_429 = r#"{ "statusCode": 429, "message": "Rate limit is exceeded. Try again in 57 seconds." }"#;
        assert_eq!(
            parse_error_body(pc_429),
            (
                Some("429".into()),
                "Rate limit is exceeded. Try again in 57 seconds.".into()
            )
        );
        assert_eq!(
            parse_error_body(r#"{"ClassName":"System.Exception","Message":"Boom"}"#).1,
            "Boom"
        );
        assert_eq!(
            parse_error_body(r#"{"resultCode":3,"errorMessage":"Bad site"}"#),
            (Some("3".into()), "Bad site".into())
        );
        assert_eq!(
            parse_error_body("An Outcome must be entered for this Action").1,
            "An Outcome must be entered for this Action"
        );
        let long = "x".repeat(1000);
        assert_eq!(parse_error_body(&long).1.chars().count(), EXCERPT_CHARS + 1);
        // Azure Storage (the billing export's blob host), an expired SAS as the service words it.
        let storage = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.\nRequestId:fc3ea0bb-801a-00da-4cc9-21dfba000000\nTime:2019-06-13T09:22:53.9093129Z</Message><AuthenticationErrorDetail>Signature not valid in the specified time frame: Start [Thu, 13 Jun 2019 16:18:07 GMT] - Expiry [Fri, 14 Jun 2019 16:23:07 GMT] - Current [Thu, 13 Jun 2019 09:22:53 GMT]</AuthenticationErrorDetail></Error>";
        let (code, message) = parse_error_body(storage);
        assert_eq!(code.as_deref(), Some("AuthenticationFailed"));
        assert!(
            message.starts_with("Signature not valid in the specified time frame: Start ["),
            "{message}"
        );
        let missing = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>BlobNotFound</Code><Message>The specified blob does not exist.\nRequestId:1\nTime:2</Message></Error>";
        assert_eq!(
            parse_error_body(missing),
            (
                Some("BlobNotFound".into()),
                "The specified blob does not exist.".into()
            )
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://h/b?sv=1&sig=abc&client_secret=s&size=5"),
            "https://h/b?sv=1&sig=REDACTED&client_secret=REDACTED&size=5"
        );
        let d =
            redact_url("https://g/v1.0/users/delta?$deltatoken=MF1LuFYbK6Lw4DtZ4o9PDrcGekRP65WE");
        assert!(
            d.starts_with("https://g/v1.0/users/delta?$deltatoken=MF1LuFYbK6Lw…"),
            "{d}"
        );
        assert_eq!(redact_url("https://h/api/Users"), "https://h/api/Users");
    }

    #[test]
    fn bom_is_stripped() {
        assert_eq!(strip_bom("\u{feff}{\"a\":1}"), "{\"a\":1}");
        assert_eq!(strip_bom("{}"), "{}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(300),
        };
        for _ in 0..20 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_secs(15) && first <= Duration::from_secs(30));
            let third = p.backoff(3);
            assert!(third >= Duration::from_secs(60) && third <= Duration::from_secs(120));
            assert!(p.backoff(20) <= Duration::from_secs(300));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_window_is_strict() {
        let limiter = Arc::new(RollingWindow::new(RateLimit {
            requests: 3,
            per: Duration::from_secs(10),
        }));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..7 {
            limiter.acquire().await;
            times.push(start.elapsed().as_secs());
        }
        // Three at once, then one slot frees up only when the oldest request leaves the window.
        assert_eq!(times, vec![0, 0, 0, 10, 10, 10, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_window_has_no_burst_after_partial_use() {
        let limiter = Arc::new(RollingWindow::new(RateLimit {
            requests: 2,
            per: Duration::from_secs(10),
        }));
        let start = Instant::now();
        limiter.acquire().await; // t=0
        tokio::time::sleep(Duration::from_secs(6)).await;
        limiter.acquire().await; // t=6
        limiter.acquire().await; // waits for t=0 to expire: t=10
        assert_eq!(start.elapsed().as_secs(), 10);
        limiter.acquire().await; // waits for t=6 to expire: t=16
        assert_eq!(start.elapsed().as_secs(), 16);
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_window_shared_by_tasks() {
        let limiter = Arc::new(RollingWindow::new(RateLimit {
            requests: 5,
            per: Duration::from_secs(60),
        }));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..12 {
            let l = limiter.clone();
            handles.push(tokio::spawn(async move {
                l.acquire().await;
                start.elapsed().as_secs()
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap());
        }
        times.sort_unstable();
        assert_eq!(times, vec![0, 0, 0, 0, 0, 60, 60, 60, 60, 60, 120, 120]);
        // In every 60 s window at most 5 were let through.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..].iter().filter(|u| **u < t + 60).count();
            assert!(in_window <= 5);
        }
    }

    mod wire {
        use super::super::*;
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        pub(crate) fn test_http(scale: f64) -> Http {
            Http::new(HttpOptions {
                retry_scale: scale,
                microsoft_retry: RetryPolicy {
                    max_attempts: 4,
                    base_delay: Duration::from_millis(100),
                    max_delay: Duration::from_secs(1),
                },
                halo_retry: RetryPolicy {
                    max_attempts: 4,
                    base_delay: Duration::from_millis(100),
                    max_delay: Duration::from_secs(1),
                },
                ..HttpOptions::default()
            })
            .unwrap()
        }

        async fn throttled_then_ok(retry_after: &str) -> (Duration, u64) {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .and(path("/x"))
                .respond_with(
                    ResponseTemplate::new(429)
                        .insert_header("Retry-After", retry_after)
                        .set_body_string(
                            r#"{"statusCode":429,"message":"Rate limit is exceeded."}"#,
                        ),
                )
                .up_to_n_times(1)
                .expect(1)
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .and(path("/x"))
                .respond_with(ResponseTemplate::new(200).set_body_string("\u{feff}{\"ok\":true}"))
                .expect(1)
                .mount(&server)
                .await;
            let http = test_http(0.1);
            let started = std::time::Instant::now();
            let resp = http
                .send(&Request::get(
                    Api::PartnerCenter,
                    format!("{}/x", server.uri()),
                ))
                .await
                .unwrap();
            let v: Value = resp.json().unwrap();
            assert_eq!(v["ok"], true);
            (started.elapsed(), http.request_count(Api::PartnerCenter))
        }

        #[tokio::test]
        async fn honours_integer_retry_after() {
            let (elapsed, count) = throttled_then_ok("1").await;
            assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
            assert_eq!(count, 2);
        }

        #[tokio::test]
        async fn honours_fractional_retry_after() {
            let (elapsed, count) = throttled_then_ok("0.5").await;
            assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
            assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
            assert_eq!(count, 2);
        }

        #[tokio::test]
        async fn honours_http_date_retry_after() {
            let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
            let header = jiff::fmt::rfc2822::DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&at)
                .unwrap();
            let (elapsed, count) = throttled_then_ok(&header).await;
            // 2-3 s to wait (the date has whole seconds) scaled by 0.1.
            assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
            assert_eq!(count, 2);
        }

        #[tokio::test]
        async fn retries_503_for_reads() {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(503))
                .up_to_n_times(2)
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
                .mount(&server)
                .await;
            let http = test_http(0.001);
            let resp = http
                .send(&Request::get(Api::Graph, format!("{}/y", server.uri())))
                .await
                .unwrap();
            assert_eq!(resp.body, "[]");
            assert_eq!(http.request_count(Api::Graph), 3);
        }

        #[tokio::test]
        async fn gives_up_after_max_attempts_with_server_error() {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(500).set_body_string(r#"{"Message":"Kaput"}"#))
                .expect(4)
                .mount(&server)
                .await;
            let http = test_http(0.001);
            let err = http
                .send(&Request::get(
                    Api::Halo,
                    format!("{}/api/Users?page_no=1", server.uri()),
                ))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Server);
            assert_eq!(err.status, Some(500));
            assert_eq!(err.message, "Kaput");
            assert!(err.to_string().contains("/api/Users?page_no=1"), "{err}");
        }

        #[tokio::test]
        async fn create_is_never_resent_after_503() {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(503))
                .expect(1)
                .mount(&server)
                .await;
            let http = test_http(0.001);
            let err = http
                .send(
                    &Request::post(Api::Halo, format!("{}/api/Users", server.uri()))
                        .kind(RequestKind::Create)
                        .json(serde_json::json!([{"name": "x"}])),
                )
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Uncertain);
            assert!(err.to_string().contains("may have landed"), "{err}");
        }

        #[tokio::test]
        async fn create_is_retried_after_429() {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(429))
                .up_to_n_times(1)
                .expect(1)
                .mount(&server)
                .await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(201).set_body_string(r#"{"id":5}"#))
                .expect(1)
                .mount(&server)
                .await;
            let http = test_http(0.001);
            let resp = http
                .send(
                    &Request::post(Api::Halo, format!("{}/api/Users", server.uri()))
                        .kind(RequestKind::Create)
                        .json(serde_json::json!([{"name": "x"}])),
                )
                .await
                .unwrap();
            assert_eq!(resp.status.as_u16(), 201);
        }

        #[tokio::test]
        async fn idempotent_write_is_retried_after_503() {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(503))
                .up_to_n_times(1)
                .mount(&server)
                .await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"id":5}"#))
                .mount(&server)
                .await;
            let http = test_http(0.001);
            http.send(
                &Request::post(Api::Halo, format!("{}/api/Users", server.uri()))
                    .kind(RequestKind::Idempotent)
                    .json(serde_json::json!([{"id": 5, "inactive": true}])),
            )
            .await
            .unwrap();
            assert_eq!(http.request_count(Api::Halo), 2);
        }

        #[tokio::test]
        async fn token_requests_never_follow_redirects() {
            let elsewhere = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
                .expect(0)
                .mount(&elsewhere)
                .await;
            let server = MockServer::start().await;
            for (status, target) in [
                (307, format!("{}/token", elsewhere.uri())),
                (308, format!("{}/token2", server.uri())),
            ] {
                Mock::given(method("POST"))
                    .respond_with(
                        ResponseTemplate::new(status).insert_header("Location", target.as_str()),
                    )
                    .up_to_n_times(1)
                    .mount(&server)
                    .await;
                let http = test_http(0.001);
                let resp = http
                    .send_raw(
                        &Request::post(Api::Login, format!("{}/t/oauth2/v2.0/token", server.uri()))
                            .kind(RequestKind::Read)
                            .form(vec![("client_secret", SecretString::from("s"))]),
                    )
                    .await
                    .unwrap();
                // Not even a same-origin redirect is followed with a secret in the body.
                assert_eq!(resp.status.as_u16(), status);
            }
            assert_eq!(server.received_requests().await.unwrap().len(), 2);
        }

        #[tokio::test]
        async fn api_calls_follow_redirects_only_within_the_origin() {
            let elsewhere = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
                .expect(0)
                .mount(&elsewhere)
                .await;
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .and(path("/away"))
                .respond_with(
                    ResponseTemplate::new(302)
                        .insert_header("Location", format!("{}/x?sig=SAS-SIG", elsewhere.uri())),
                )
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .and(path("/moved"))
                .respond_with(ResponseTemplate::new(301).insert_header("Location", "/here"))
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .and(path("/here"))
                .respond_with(ResponseTemplate::new(200).set_body_string("[1]"))
                .mount(&server)
                .await;
            let http = test_http(0.001);
            let token = SecretString::from("BEARER-VALUE");
            let resp = http
                .send(&Request::get(Api::Graph, format!("{}/moved", server.uri())).bearer(&token))
                .await
                .unwrap();
            assert_eq!(resp.body, "[1]");
            let err = http
                .send(&Request::get(Api::Graph, format!("{}/away", server.uri())).bearer(&token))
                .await
                .unwrap_err();
            assert_eq!(err.status, Some(302));
            let text = err.to_string();
            assert!(
                text.contains("redirected to") && text.contains("another origin"),
                "{text}"
            );
            assert!(!text.contains("SAS-SIG"), "{text}");
        }

        #[tokio::test]
        async fn refused_connection_fails_after_quick_attempts_naming_url_and_key() {
            // A port nothing listens on.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let http = test_http(0.001);
            let url = format!("http://127.0.0.1:{port}/api/Client");
            let err = http.send(&Request::get(Api::Halo, &url)).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Transport);
            let text = err.to_string();
            assert!(text.contains(&url) && text.contains("[halo] url"), "{text}");
            assert!(
                text.contains(&format!("after {CONNECT_ATTEMPTS} attempt(s)")),
                "{text}"
            );
            assert_eq!(http.request_count(Api::Halo), u64::from(CONNECT_ATTEMPTS));
            // The schedule: 0.5 s then 1 s (unscaled), not Halo's 30 s throttling backoff.
            let waits: Vec<(u32, Duration)> = http
                .retries()
                .into_iter()
                .map(|r| (r.attempt, r.wait))
                .collect();
            assert_eq!(
                waits,
                vec![(1, Duration::from_millis(500)), (2, Duration::from_secs(1))]
            );
            assert_eq!(connect_backoff(1), Duration::from_millis(500));
            assert_eq!(connect_backoff(2), Duration::from_secs(1));
            // The next request to that origin fails at once, without new attempts.
            let again = http
                .send(&Request::get(
                    Api::Halo,
                    format!("http://127.0.0.1:{port}/api/Users"),
                ))
                .await
                .unwrap_err();
            assert!(again.to_string().contains("not tried again"), "{again}");
            assert_eq!(http.request_count(Api::Halo), u64::from(CONNECT_ATTEMPTS));
        }

        #[tokio::test]
        async fn unknown_host_fails_quickly_too() {
            let http = test_http(0.001);
            let err = http
                .send(&Request::get(
                    Api::Graph,
                    "https://no-such-host.invalid/v1.0/users",
                ))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Transport, "{err}");
            assert!(err.to_string().contains("[microsoft] graph_url"), "{err}");
            assert_eq!(http.request_count(Api::Graph), u64::from(CONNECT_ATTEMPTS));
        }

        /// A server that reads each request and closes the connection without answering.
        async fn dropping_server() -> (String, Arc<AtomicU64>) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(AtomicU64::new(0));
            let counter = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else {
                        return;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut buf = [0u8; 4096];
                    let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
                    drop(sock);
                }
            });
            (format!("http://{addr}"), seen)
        }

        #[tokio::test]
        async fn create_is_never_resent_after_dropped_connection() {
            let (base, seen) = dropping_server().await;
            let http = test_http(0.001);
            let err = http
                .send(
                    &Request::post(Api::Halo, format!("{base}/api/Asset"))
                        .kind(RequestKind::Create)
                        .json(serde_json::json!([{"inventory_number": "A1"}])),
                )
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Uncertain, "{err}");
            assert_eq!(seen.load(Ordering::SeqCst), 1);
            assert_eq!(http.request_count(Api::Halo), 1);
        }

        #[tokio::test]
        async fn read_is_retried_after_dropped_connection() {
            let (base, seen) = dropping_server().await;
            let http = test_http(0.001);
            let err = http
                .send(&Request::get(Api::Graph, format!("{base}/v1.0/users")))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Transport, "{err}");
            assert_eq!(seen.load(Ordering::SeqCst), 4);
        }

        #[tokio::test]
        async fn timeout_is_reported_as_timeout() {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(500)))
                .mount(&server)
                .await;
            let http = test_http(0.001);
            let mut req = Request::get(Api::Graph, format!("{}/slow", server.uri()));
            req.timeout = Some(Duration::from_millis(50));
            let err = http.send(&req).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
            assert_eq!(http.request_count(Api::Graph), 4);
        }
    }
}
