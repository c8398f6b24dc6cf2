//! HTTP for the hosted backends: authentication, retries, error texts and capped downloads.
//!
//! Providers differ in paths and bodies, not in how a request must be treated: every one of
//! them rate-limits with 429, fails transiently with 5xx, and hands out output URLs that
//! expire. This module does that part once.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::backend::BackendError;
use crate::backend::retry::{BACKOFF_CAP, backoff, is_transient_status};

/// How many times a request is sent at most, the first time included.
const MAX_ATTEMPTS: u32 = 6;
/// Provider texts quoted in errors are cut to this many characters.
const MESSAGE_LIMIT: usize = 500;

/// How requests are paced: how long one may stall, and how retries back off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The longest wait for an answer's headers, or between two pieces of its body; a
    /// request that stalls longer is abandoned (and retried where that is harmless).
    pub request_timeout: Duration,
    /// The first retry waits about this long; each further one twice as long.
    pub first_retry: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            first_retry: Duration::from_millis(500),
        }
    }
}

/// Whether sending a request twice can do harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads, uploads and cancels: sending them again is harmless.
    Repeatable,
    /// Creates a job: once the provider may have received it, sending it again could start
    /// (and bill) a second job. Only a refused connection or a 429 is retried.
    Create,
    /// A health check: repeatable, but a refused connection is its answer (the server is
    /// down), not a reason to try again.
    Probe,
}

/// The body of a request, kept so that a retry can send it again.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Value),
    Bytes {
        data: Bytes,
        content_type: &'static str,
    },
    /// A multipart form with one file field.
    File {
        field: &'static str,
        file_name: String,
        content_type: &'static str,
        data: Bytes,
    },
}

/// One request, as the protocol adapters describe it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub url: Url,
    pub body: Body,
    pub kind: Kind,
    /// Extra headers; values marked sensitive stay out of Debug output.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The server answers only once the job has ended (Cog's synchronous PUT): no request
    /// timeout applies, `job-timeout` bounds the wait.
    pub until_done: bool,
}

impl Call {
    pub fn new(method: Method, url: Url, kind: Kind) -> Self {
        Self {
            method,
            url,
            body: Body::Empty,
            kind,
            headers: Vec::new(),
            until_done: false,
        }
    }

    pub fn get(url: Url) -> Self {
        Self::new(Method::GET, url, Kind::Repeatable)
    }

    /// A POST that may be sent again: an upload, a storage ticket, a cancel.
    pub fn post(url: Url) -> Self {
        Self::new(Method::POST, url, Kind::Repeatable)
    }

    /// The POST that creates a job from `body`: see [`Kind::Create`].
    pub fn create(url: Url, body: Value) -> Self {
        Self::new(Method::POST, url, Kind::Create).json(body)
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// See [`Call::until_done`].
    pub fn until_done(mut self) -> Self {
        self.until_done = true;
        self
    }
}

/// The `Authorization` header a provider expects, and where the key came from.
pub struct Auth {
    pub header: HeaderValue,
    /// Named in 401/403 errors so that the user knows what to fix.
    pub source: String,
}

impl Auth {
    /// `scheme` is "Bearer" or "Key"; `source` says where the key was found.
    pub fn new(scheme: &str, key: &str, source: String) -> Result<Self, String> {
        let mut header = HeaderValue::from_str(&format!("{scheme} {key}"))
            .map_err(|_| "the API key holds characters that cannot be sent in a header")?;
        header.set_sensitive(true);
        Ok(Self { header, source })
    }
}

/// A client for one provider endpoint.
pub struct Http {
    client: reqwest::Client,
    auth: Option<Auth>,
    /// Origins that receive the key. Output and upload URLs elsewhere get none.
    trusted: Vec<url::Origin>,
    /// Whether the endpoint is on this machine: only then may outputs come over plain http.
    loopback: bool,
    max_output_bytes: u64,
    pacing: Pacing,
}

/// Why one attempt at a request failed, and whether another may follow.
struct Failed {
    error: BackendError,
    retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    No,
    /// After the server's `Retry-After`, else after the backoff.
    After(Option<Duration>),
}

impl Failed {
    fn no_retry(error: BackendError) -> Self {
        Self {
            error,
            retry: Retry::No,
        }
    }

    fn retry(error: BackendError, wait: Option<Duration>) -> Self {
        Self {
            error,
            retry: Retry::After(wait),
        }
    }

    /// An answer lost on the way (reset, stall, truncated body): the server may have acted
    /// on the request, so only a repeatable one goes again.
    fn lost(error: BackendError, repeatable: bool) -> Self {
        if repeatable {
            Self::retry(error, None)
        } else {
            Self::no_retry(error)
        }
    }
}

impl Http {
    /// `endpoints` are the provider's own bases: they get the key; the first decides
    /// whether the endpoint counts as loopback.
    pub fn new(
        endpoints: &[Url],
        auth: Option<Auth>,
        max_output_bytes: u64,
        pacing: Pacing,
    ) -> Result<Self, String> {
        let loopback = endpoints.iter().all(is_loopback);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30).min(pacing.request_timeout))
            .user_agent(concat!("wanedit/", env!("CARGO_PKG_VERSION")));
        if loopback {
            // A proxy from the environment must not swallow requests to this machine.
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"))?;
        Ok(Self {
            client,
            auth,
            trusted: endpoints.iter().map(Url::origin).collect(),
            loopback,
            max_output_bytes,
            pacing,
        })
    }

    /// Sends a call, retrying what may be retried, and parses the JSON answer (`Null` when
    /// empty).
    pub async fn send(&self, call: &Call) -> Result<Value, BackendError> {
        let text = self.retrying(|| self.attempt(call)).await?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            BackendError::Protocol(format!("an answer that is not JSON ({e}): {}", clip(&text)))
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or has been tried `MAX_ATTEMPTS`
    /// times; the caller's `job-timeout` bounds the whole.
    async fn retrying<T, F>(&self, mut attempt: impl FnMut() -> F) -> Result<T, BackendError>
    where
        F: Future<Output = Result<T, Failed>>,
    {
        let mut tries = 1;
        loop {
            let failed = match attempt().await {
                Ok(value) => return Ok(value),
                Err(failed) => failed,
            };
            match failed.retry {
                Retry::After(wait) if tries < MAX_ATTEMPTS => {
                    let wait = wait
                        .unwrap_or_else(|| backoff(self.pacing.first_retry, tries))
                        .min(BACKOFF_CAP);
                    tokio::time::sleep(wait).await;
                    tries += 1;
                }
                _ => return Err(failed.error),
            }
        }
    }

    /// One attempt at a call: the whole answer's body as text.
    async fn attempt(&self, call: &Call) -> Result<String, Failed> {
        let repeatable = call.kind != Kind::Create;
        let timeout = (!call.until_done).then_some(self.pacing.request_timeout);
        let response = match within(timeout, self.send_once(call)).await {
            Ok(Ok(response)) => response,
            // Nothing reached the server: any request may go again.
            Ok(Err(e)) if e.is_connect() => {
                let error = transport_error(e);
                return Err(match call.kind {
                    Kind::Probe => Failed::no_retry(error),
                    Kind::Repeatable | Kind::Create => Failed::retry(error, None),
                });
            }
            Ok(Err(e)) => return Err(Failed::lost(transport_error(e), repeatable)),
            Err(stalled) => return Err(Failed::lost(stalled, repeatable)),
        };
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers());
            let error = self.status_error(call, response).await;
            // A create refused with 429 was not acted on; any other failure of a create
            // may have started a job.
            return Err(
                if status == StatusCode::TOO_MANY_REQUESTS
                    || (repeatable && is_transient_status(status.as_u16()))
                {
                    Failed::retry(error, wait)
                } else {
                    Failed::no_retry(error)
                },
            );
        }
        // Cog answers with the clip inline, as base64 (4/3 of its size) in JSON.
        let cap = self.max_output_bytes.saturating_mul(2);
        let body = self.read_body(response, cap, timeout, repeatable).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Reads a body to its end, refusing more than `cap` bytes; a stall of more than
    /// `timeout` between two pieces, or a connection that ends early, is a lost answer
    /// (sent again if `repeatable`).
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        cap: u64,
        timeout: Option<Duration>,
        repeatable: bool,
    ) -> Result<Vec<u8>, Failed> {
        let too_big = |size: u64| {
            Failed::no_retry(BackendError::Output(format!(
                "the answer is {size} bytes or more, over the {cap} byte cap"
            )))
        };
        let lost = |error| Failed::lost(error, repeatable);
        if let Some(length) = response.content_length()
            && length > cap
        {
            return Err(too_big(length));
        }
        let mut data = Vec::new();
        loop {
            let chunk = within(timeout, response.chunk())
                .await
                .map_err(lost)?
                .map_err(|e| lost(transport_error(e)))?;
            let Some(chunk) = chunk else {
                return Ok(data);
            };
            if (data.len() + chunk.len()) as u64 > cap {
                return Err(too_big((data.len() + chunk.len()) as u64));
            }
            data.extend_from_slice(&chunk);
        }
    }

    async fn send_once(&self, call: &Call) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self.client.request(call.method.clone(), call.url.clone());
        if let Some(auth) = self.key_for(call) {
            request = request.header(reqwest::header::AUTHORIZATION, auth.header.clone());
        }
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        request = match &call.body {
            Body::Empty => request,
            Body::Json(value) => request.json(value),
            Body::Bytes { data, content_type } => request
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(data.clone()),
            Body::File {
                field,
                file_name,
                content_type,
                data,
            } => {
                let part = reqwest::multipart::Part::stream(data.clone())
                    .file_name(file_name.clone())
                    .mime_str(content_type)?;
                request.multipart(reqwest::multipart::Form::new().part(*field, part))
            }
        };
        request.send().await
    }

    /// The key goes to the provider's own origins only, and not where the call carries
    /// credentials of its own (a storage token).
    fn key_for(&self, call: &Call) -> Option<&Auth> {
        let own = call
            .headers
            .iter()
            .any(|(name, _)| name == reqwest::header::AUTHORIZATION);
        self.auth
            .as_ref()
            .filter(|_| !own && self.trusted.contains(&call.url.origin()))
    }

    /// The error for an answer with a failure status, with the provider's own message.
    async fn status_error(&self, call: &Call, response: reqwest::Response) -> BackendError {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let mut message = provider_message(&text);
        if matches!(status.as_u16(), 401 | 403)
            && let Some(auth) = self.key_for(call)
        {
            message = format!("{message} (the key was refused: check {})", auth.source);
        }
        BackendError::Http {
            status: status.as_u16(),
            message,
        }
    }

    /// Checks that a URL the provider handed out may be fetched or written to.
    pub fn check_foreign_url(&self, url: &Url) -> Result<(), BackendError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.loopback => Ok(()),
            scheme => Err(BackendError::Protocol(format!(
                "the provider gave a {scheme} URL ({}); only https is accepted from a \
                 remote endpoint",
                without_query(url)
            ))),
        }
    }

    /// Downloads an output at once (outputs expire), refusing more than the size cap,
    /// retrying what may pass.
    pub async fn download(&self, url: &Url) -> Result<Vec<u8>, BackendError> {
        self.check_foreign_url(url)?;
        self.retrying(|| self.download_once(url)).await
    }

    async fn download_once(&self, url: &Url) -> Result<Vec<u8>, Failed> {
        let timeout = Some(self.pacing.request_timeout);
        let lost = |error| Failed::lost(error, true);
        // Outputs are capability URLs: they need no key, so they get none, wherever they are.
        let response = within(timeout, self.client.get(url.clone()).send())
            .await
            .map_err(lost)?
            .map_err(|e| lost(transport_error(e)))?;
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            let output = without_query(url);
            let message = provider_message(&text);
            let code = status.as_u16();
            return Err(if is_transient_status(code) {
                Failed::retry(
                    BackendError::Http {
                        status: code,
                        message: format!("the output {output} could not be fetched: {message}"),
                    },
                    wait,
                )
            } else {
                let why = match code {
                    403 | 404 | 410 => "has expired or is gone",
                    _ => "could not be fetched",
                };
                Failed::no_retry(BackendError::Output(format!(
                    "the output {output} {why}: HTTP {code}: {message}"
                )))
            });
        }
        self.read_body(response, self.max_output_bytes, timeout, true)
            .await
    }
}

/// `future`, abandoned as a stalled request after `timeout`.
async fn within<T>(
    timeout: Option<Duration>,
    future: impl Future<Output = T>,
) -> Result<T, BackendError> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, future).await.map_err(|_| {
            BackendError::Transport(format!(
                "no answer within {} s (the request stalled)",
                limit.as_secs_f64()
            ))
        }),
        None => Ok(future.await),
    }
}

fn transport_error(error: reqwest::Error) -> BackendError {
    // The URL says which request failed; it never holds the key.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    BackendError::Transport(text)
}

/// How long `Retry-After` (seconds) or `retry-after-ms` asks to wait.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number(RETRY_AFTER.as_str()).map(Duration::from_secs_f64))
        .map(|wait| wait.min(BACKOFF_CAP))
}

/// The provider's own explanation in an error body, whatever its shape:
/// problem+json (`title`, `detail`), FastAPI (`detail: [{loc, msg}]`), `error` as a string
/// or an object with `message`, or a bare `message`.
pub fn provider_message(text: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return clip(text.trim());
    };
    let message = match &value {
        Value::Object(map) => {
            let detail = map.get("detail").and_then(detail_text);
            let title = map.get("title").and_then(Value::as_str);
            let error = map.get("error").and_then(|e| match e {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("message").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            });
            let message = map.get("message").and_then(Value::as_str);
            match (title, detail) {
                (Some(title), Some(detail)) => Some(format!("{title}: {detail}")),
                (_, Some(detail)) => Some(detail),
                (title, None) => error
                    .or(message.map(str::to_owned))
                    .or(title.map(str::to_owned)),
            }
        }
        _ => None,
    };
    // An empty message says nothing: the body then speaks for itself.
    let message = message.filter(|m| !m.trim().is_empty());
    clip(&message.unwrap_or_else(|| text.trim().to_owned()))
}

fn detail_text(detail: &Value) -> Option<String> {
    match detail {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| {
                    let msg = item.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                    match item.get("loc").and_then(Value::as_array) {
                        Some(loc) => {
                            let loc: Vec<String> = loc
                                .iter()
                                .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_owned))
                                .collect();
                            format!("{}: {msg}", loc.join("."))
                        }
                        None => msg.to_owned(),
                    }
                })
                .collect();
            Some(parts.join("; "))
        }
        _ => None,
    }
}

/// `text` cut to `MESSAGE_LIMIT` characters.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(MESSAGE_LIMIT) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// A URL for messages: query strings of signed URLs are credentials of a kind.
pub fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_messages_of_every_shape() {
        assert_eq!(
            provider_message(
                r#"{"title":"Unauthenticated","detail":"You did not pass a valid token","status":401}"#
            ),
            "Unauthenticated: You did not pass a valid token"
        );
        assert_eq!(
            provider_message(
                r#"{"detail":[{"loc":["body","video_url"],"msg":"field required","type":"missing"}]}"#
            ),
            "body.video_url: field required"
        );
        assert_eq!(
            provider_message(r#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#),
            "bad model"
        );
        assert_eq!(
            provider_message(r#"{"error":"At capacity"}"#),
            "At capacity"
        );
        assert_eq!(
            provider_message(r#"{"code":400,"message":"no prompt"}"#),
            "no prompt"
        );
        assert_eq!(provider_message("Bad Gateway\n"), "Bad Gateway");
    }

    #[test]
    fn retry_after_in_seconds_or_milliseconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        headers.remove("retry-after-ms");
        assert_eq!(retry_after(&headers), Some(BACKOFF_CAP));
    }

    #[test]
    fn plain_http_outputs_only_from_a_loopback_endpoint() {
        let remote = Http::new(
            &[Url::parse("https://api.replicate.com").unwrap()],
            None,
            1,
            Pacing::default(),
        )
        .unwrap();
        let output = Url::parse("http://cdn.example.com/out.mp4?sig=secret").unwrap();
        let error = remote.check_foreign_url(&output).unwrap_err().to_string();
        assert_eq!(
            error,
            "unexpected answer: the provider gave a http URL (http://cdn.example.com/out.mp4); \
             only https is accepted from a remote endpoint"
        );
        assert!(
            remote
                .check_foreign_url(&Url::parse("https://cdn.example.com/o.mp4").unwrap())
                .is_ok()
        );
        let local = Http::new(
            &[Url::parse("http://127.0.0.1:5000").unwrap()],
            None,
            1,
            Pacing::default(),
        )
        .unwrap();
        assert!(local.check_foreign_url(&output).is_ok());
        assert!(
            local
                .check_foreign_url(&Url::parse("file:///etc/passwd").unwrap())
                .is_err()
        );
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:5000",
            "http://localhost/",
            "http://[::1]:80",
        ] {
            assert!(is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
        for url in ["https://api.replicate.com", "http://10.0.0.1:5000"] {
            assert!(!is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
    }
}
