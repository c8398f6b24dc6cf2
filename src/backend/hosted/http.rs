//! HTTP for the hosted backends: authentication, retries, error texts and capped downloads.
//!
//! Providers differ in paths and bodies, not in how a request must be treated: every one of
//! them rate-limits with 429, fails transiently with 5xx, and hands out output URLs that
//! expire. This module does that part once.
//!
//! A provider is not trusted to be well-behaved: every body is read through one capped and
//! timed reader (error bodies and JSON answers with small caps), every wait it asks for is
//! capped, every URL it hands out or redirects to is checked, and no URL query reaches an
//! error text.

use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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
/// The largest JSON answer read (states, tickets, tokens, health checks: a few KiB).
/// Cog's answers, which carry the clip inline, have the clip's cap instead.
const JSON_CAP: u64 = 4 << 20;
/// The most of an error body read: enough for any provider's message, which is cut to
/// `MESSAGE_LIMIT` characters anyway.
const ERROR_BODY_CAP: u64 = 64 << 10;
/// Redirects followed at most for one request.
const MAX_REDIRECTS: usize = 10;

/// How requests are paced: how long one may stall or take, and how retries back off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The longest wait for an answer's headers (once the request's body is sent), or
    /// between two pieces of its body; a request that stalls longer is abandoned (and
    /// retried where that is harmless).
    pub request_timeout: Duration,
    /// The first retry waits about this long; each further one twice as long.
    pub first_retry: Duration,
    /// No wait between two attempts is longer, whatever `Retry-After` asks for.
    pub backoff_cap: Duration,
    /// The slowest a body may move, on average, in bytes a second: a request's body must
    /// be sent, and an answer's body read, within `request_timeout` plus a second for
    /// each `min_rate` bytes. A body that trickles in never stalls, but is bounded by this.
    pub min_rate: u64,
    /// A cancel gives up after this long, retries included: the job is abandoned whether
    /// or not the provider hears, and a cancel must not run for minutes behind the edit.
    pub cancel_deadline: Duration,
}

impl Pacing {
    pub const DEFAULT: Self = Self {
        request_timeout: Duration::from_secs(60),
        first_retry: Duration::from_millis(500),
        backoff_cap: BACKOFF_CAP,
        min_rate: 64 * 1024,
        cancel_deadline: Duration::from_secs(10),
    };

    /// How long moving a body of `bytes` may take at most.
    fn allowance(&self, bytes: u64) -> Duration {
        let millis = bytes.saturating_mul(1000) / self.min_rate.max(1);
        self.request_timeout
            .saturating_add(Duration::from_millis(millis))
    }
}

impl Default for Pacing {
    fn default() -> Self {
        Self::DEFAULT
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
    /// The answer may carry the clip inline (Cog's data URI): it gets the clip's cap
    /// rather than `JSON_CAP`.
    pub carries_clip: bool,
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
            carries_clip: false,
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

    /// See [`Call::carries_clip`].
    pub fn carries_clip(mut self) -> Self {
        self.carries_clip = true;
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
    /// Origins that receive the key. Output and upload URLs elsewhere get none. Shared
    /// with the redirect policy, and grown by [`Http::trust`].
    trusted: Arc<RwLock<Vec<url::Origin>>>,
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
        let trusted = Arc::new(RwLock::new(
            endpoints.iter().map(Url::origin).collect::<Vec<_>>(),
        ));
        // Each hop of a redirect is checked as the URL it came from was; no Referer tells
        // the next host the signed URL before it.
        let own = trusted.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            // `previous` holds the first URL too.
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let refused = refusal(attempt.url(), loopback, &own.read().unwrap());
            match refused {
                Some(why) => attempt.error(format!("the provider redirected to {why}")),
                None => attempt.follow(),
            }
        });
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30).min(pacing.request_timeout))
            .redirect(redirects)
            .referer(false)
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
            trusted,
            loopback,
            max_output_bytes,
            pacing,
        })
    }

    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    /// Makes `url`'s origin one of the endpoint's own: an address a Cog fleet's name
    /// resolved to is the user's server as much as the name is. Origins are never taken
    /// back: a window may still run on an address its name no longer resolves to.
    pub fn trust(&self, url: &Url) {
        let origin = url.origin();
        let mut trusted = self.trusted.write().unwrap();
        if !trusted.contains(&origin) {
            trusted.push(origin);
        }
    }

    fn is_own(&self, url: &Url) -> bool {
        self.trusted.read().unwrap().contains(&url.origin())
    }

    /// Sends a call, retrying what may be retried, and parses the JSON answer (`Null` when
    /// empty).
    pub async fn send(&self, call: &Call) -> Result<Value, BackendError> {
        let body = self.retrying(|| self.attempt(call)).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| {
            // The start of the body is enough to show what came instead.
            let start = &body[..body.len().min(4 * MESSAGE_LIMIT)];
            let text = String::from_utf8_lossy(start);
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
                        .min(self.pacing.backoff_cap);
                    tokio::time::sleep(wait).await;
                    tries += 1;
                }
                _ => return Err(failed.error),
            }
        }
    }

    /// One attempt at a call: the whole answer's body.
    async fn attempt(&self, call: &Call) -> Result<Vec<u8>, Failed> {
        let repeatable = call.kind != Kind::Create;
        let (request, size) = self
            .request(call)
            .map_err(|e| request_failed(e, call.kind))?;
        // The request's body is sent within the same wait as the answer's headers: an
        // upload gets more time the larger it is.
        let timeout = (!call.until_done).then(|| self.pacing.allowance(size));
        let response = match within(timeout, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(request_failed(e, call.kind)),
            Err(stalled) => return Err(Failed::lost(stalled, repeatable)),
        };
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers(), self.pacing.backoff_cap);
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
        let body = if call.carries_clip {
            // Cog answers with the clip inline, as base64 (4/3 of its size) in JSON.
            Cap::Clip(self.max_output_bytes.saturating_mul(2))
        } else {
            Cap::Json
        };
        self.read_body(response, body, repeatable).await
    }

    /// Reads a body to its end, refusing more than `cap` allows; a stall, a body slower
    /// than `Pacing::min_rate`, or a connection that ends early, is a lost answer (sent
    /// again if `repeatable`).
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        cap: Cap,
        repeatable: bool,
    ) -> Result<Vec<u8>, Failed> {
        let too_big = |size: u64| Failed::no_retry(cap.refusal(size));
        if let Some(length) = response.content_length()
            && length > cap.bytes()
        {
            return Err(too_big(length));
        }
        let mut data = Vec::new();
        match self.read_into(&mut response, cap.bytes(), &mut data).await {
            Ok(Some(over)) => Err(too_big(over)),
            Ok(None) => Ok(data),
            Err(error) => Err(Failed::lost(error, repeatable)),
        }
    }

    /// Reads `response`'s body into `data`, up to `cap` bytes; where more comes, stops
    /// reading there (the connection is dropped with the response) and returns how much
    /// had come. Gives up on a stall of `request_timeout`, or once the body took longer
    /// than its `Pacing::allowance`.
    async fn read_into(
        &self,
        response: &mut reqwest::Response,
        cap: u64,
        data: &mut Vec<u8>,
    ) -> Result<Option<u64>, BackendError> {
        let started = Instant::now();
        loop {
            let left = self
                .pacing
                .allowance(data.len() as u64)
                .saturating_sub(started.elapsed());
            let wait = left.min(self.pacing.request_timeout);
            let chunk = match tokio::time::timeout(wait, response.chunk()).await {
                Ok(chunk) => chunk.map_err(transport_error)?,
                // The deadline, not a stall, cut the wait short.
                Err(_) if wait == left => {
                    return Err(BackendError::Transport(format!(
                        "the answer came too slowly: {} bytes in {:.1} s, under the {} \
                         bytes/s it must average",
                        data.len(),
                        started.elapsed().as_secs_f64(),
                        self.pacing.min_rate
                    )));
                }
                Err(_) => return Err(stalled(wait)),
            };
            let Some(chunk) = chunk else {
                return Ok(None);
            };
            let size = (data.len() + chunk.len()) as u64;
            if size > cap {
                return Ok(Some(size));
            }
            data.extend_from_slice(&chunk);
        }
    }

    /// The request for a call, and the size of its body.
    fn request(&self, call: &Call) -> Result<(reqwest::RequestBuilder, u64), reqwest::Error> {
        let mut request = self.client.request(call.method.clone(), call.url.clone());
        if let Some(auth) = self.key_for(call) {
            request = request.header(reqwest::header::AUTHORIZATION, auth.header.clone());
        }
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        Ok(match &call.body {
            Body::Empty => (request, 0),
            Body::Json(value) => {
                // Serialized here rather than by reqwest, to know its size (a Cog or
                // Together job carries the clip inline).
                let data = serde_json::to_vec(value).expect("a JSON value always serializes");
                let size = data.len() as u64;
                let request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(data);
                (request, size)
            }
            Body::Bytes { data, content_type } => (
                request
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(data.clone()),
                data.len() as u64,
            ),
            Body::File {
                field,
                file_name,
                content_type,
                data,
            } => {
                let part = reqwest::multipart::Part::stream(data.clone())
                    .file_name(file_name.clone())
                    .mime_str(content_type)?;
                let form = reqwest::multipart::Form::new().part(*field, part);
                (request.multipart(form), data.len() as u64)
            }
        })
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
            .filter(|_| !own && self.is_own(&call.url))
    }

    /// The error for an answer with a failure status, with the provider's own message.
    async fn status_error(&self, call: &Call, response: reqwest::Response) -> BackendError {
        let status = response.status();
        let mut message = self.error_message(response).await;
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

    /// The provider's message in an error body: what came of it within `ERROR_BODY_CAP`
    /// and the body's deadline. An error body is only read for its message, so a body cut
    /// short, too slow or too long still gives what came.
    async fn error_message(&self, mut response: reqwest::Response) -> String {
        let mut data = Vec::new();
        let _ = self
            .read_into(&mut response, ERROR_BODY_CAP, &mut data)
            .await;
        provider_message(&String::from_utf8_lossy(&data))
    }

    /// Checks that a URL the provider handed out may be fetched or written to.
    pub fn check_foreign_url(&self, url: &Url) -> Result<(), BackendError> {
        let refused = refusal(url, self.loopback, &self.trusted.read().unwrap());
        match refused {
            Some(why) => Err(BackendError::Protocol(format!("the provider gave {why}"))),
            None => Ok(()),
        }
    }

    /// Checks that a URL the provider handed out for its own API (a job's status, result
    /// or cancel URL) is on one of its own origins: requests there carry the key, and one
    /// elsewhere (another host, plain http, a private address) is never sent.
    pub fn check_own_url(&self, url: &Url) -> Result<(), BackendError> {
        if self.is_own(url) {
            return Ok(());
        }
        let mut own: Vec<String> = self
            .trusted
            .read()
            .unwrap()
            .iter()
            .map(url::Origin::ascii_serialization)
            .collect();
        own.dedup();
        Err(BackendError::Protocol(format!(
            "the provider gave a job URL ({}) that is not the provider's own ({}): it is \
             not followed",
            without_query(url),
            own.join(", ")
        )))
    }

    /// Downloads an output at once (outputs expire), refusing more than the size cap,
    /// retrying what may pass.
    pub async fn download(&self, url: &Url) -> Result<Vec<u8>, BackendError> {
        self.check_foreign_url(url)?;
        self.retrying(|| self.download_once(url)).await
    }

    async fn download_once(&self, url: &Url) -> Result<Vec<u8>, Failed> {
        let timeout = Some(self.pacing.request_timeout);
        // Outputs are capability URLs: they need no key, so they get none, wherever they are.
        let response = within(timeout, self.client.get(url.clone()).send())
            .await
            .map_err(|stalled| Failed::lost(stalled, true))?
            .map_err(|e| request_failed(e, Kind::Repeatable))?;
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers(), self.pacing.backoff_cap);
            let output = without_query(url);
            let message = self.error_message(response).await;
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
        self.read_body(response, Cap::Clip(self.max_output_bytes), true)
            .await
    }
}

/// The most of an answer's body read, by what it holds.
#[derive(Debug, Clone, Copy)]
enum Cap {
    Json,
    /// The edited clip, or an answer that carries it: the cap in bytes.
    Clip(u64),
}

impl Cap {
    fn bytes(self) -> u64 {
        match self {
            Cap::Json => JSON_CAP,
            Cap::Clip(cap) => cap,
        }
    }

    /// The error for a body of `size` bytes or more, over the cap.
    fn refusal(self, size: u64) -> BackendError {
        let cap = self.bytes();
        match self {
            Cap::Json => BackendError::Protocol(format!(
                "the answer is {size} bytes or more, over the {cap} byte cap for a JSON answer"
            )),
            Cap::Clip(_) => BackendError::Output(format!(
                "the answer is {size} bytes or more, over the {cap} byte cap"
            )),
        }
    }
}

/// Why sending a request of `kind` failed, and whether it may go again.
fn request_failed(error: reqwest::Error, kind: Kind) -> Failed {
    // A redirect refused (see `Http::new`) would be refused again: the answer broke the
    // rules, the transport did not fail.
    if error.is_redirect() {
        return Failed::no_retry(BackendError::Protocol(describe(error)));
    }
    if error.is_builder() {
        return Failed::no_retry(transport_error(error));
    }
    let connect = error.is_connect();
    let error = transport_error(error);
    match kind {
        // Nothing reached the server: any request may go again, but a refused
        // connection is a health check's answer.
        Kind::Probe if connect => Failed::no_retry(error),
        _ if connect => Failed::retry(error, None),
        Kind::Create => Failed::no_retry(error),
        Kind::Repeatable | Kind::Probe => Failed::retry(error, None),
    }
}

/// Why a URL the provider handed out, or redirected to, may not be used: a scheme other
/// than https (http only from an endpoint on this machine), or, from a remote endpoint,
/// a host on this machine or its network (a remote provider must not make the element
/// reach its cloud metadata, router or local services). The endpoints the user set
/// (`trusted`) are always fine.
fn refusal(url: &Url, loopback: bool, trusted: &[url::Origin]) -> Option<String> {
    if trusted.contains(&url.origin()) {
        return None;
    }
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        scheme => {
            return Some(format!(
                "a {scheme} URL ({}); only https is accepted from a remote endpoint",
                without_query(url)
            ));
        }
    }
    (!loopback && is_internal(url)).then(|| {
        format!(
            "a URL on a local or private address ({}); a remote endpoint may only send \
             public ones",
            without_query(url)
        )
    })
}

/// Whether a URL's host is this machine, a private or link-local address, or unspecified.
/// Only literals are known without a lookup: a name that resolves to such an address is
/// not caught here.
fn is_internal(url: &Url) -> bool {
    let v4 = |ip: Ipv4Addr| {
        ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
    };
    match url.host() {
        Some(url::Host::Domain(domain)) => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            domain == "localhost" || domain.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => v4(ip),
        Some(url::Host::Ipv6(ip)) => match ip.to_ipv4_mapped() {
            Some(ip) => v4(ip),
            None => {
                ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_unique_local()
                    || ip.is_unicast_link_local()
            }
        },
        None => true,
    }
}

/// `future`, abandoned as a stalled request after `timeout`.
async fn within<T>(
    timeout: Option<Duration>,
    future: impl Future<Output = T>,
) -> Result<T, BackendError> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, future)
            .await
            .map_err(|_| stalled(limit)),
        None => Ok(future.await),
    }
}

fn stalled(limit: Duration) -> BackendError {
    BackendError::Transport(format!(
        "no answer within {} s (the request stalled)",
        limit.as_secs_f64()
    ))
}

fn transport_error(error: reqwest::Error) -> BackendError {
    BackendError::Transport(describe(error))
}

/// reqwest's text for an error and its causes.
fn describe(error: reqwest::Error) -> String {
    // The URL says which request failed; its query may be a signature, so it goes.
    let url = error.url().map(without_query);
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    if let Some(url) = url {
        text = format!("{text} ({url})");
    }
    text
}

/// How long `Retry-After` (seconds) or `retry-after-ms` asks to wait, at most `cap`.
fn retry_after(headers: &HeaderMap, cap: Duration) -> Option<Duration> {
    let seconds = |name: &str, scale: f64| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            // Capped before it becomes a Duration, which cannot hold 1e20 s.
            .map(|v| Duration::from_secs_f64((v * scale).min(cap.as_secs_f64())))
    };
    seconds("retry-after-ms", 1e-3).or_else(|| seconds(RETRY_AFTER.as_str(), 1.0))
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
        assert_eq!(retry_after(&headers, BACKOFF_CAP), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(
            retry_after(&headers, BACKOFF_CAP),
            Some(Duration::from_secs(3))
        );
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(
            retry_after(&headers, BACKOFF_CAP),
            Some(Duration::from_millis(250))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        headers.remove("retry-after-ms");
        assert_eq!(retry_after(&headers, BACKOFF_CAP), Some(BACKOFF_CAP));
        // Past what a Duration holds: capped, not a panic.
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1e20"));
        assert_eq!(retry_after(&headers, BACKOFF_CAP), Some(BACKOFF_CAP));
        headers.insert("retry-after-ms", HeaderValue::from_static("1e23"));
        assert_eq!(
            retry_after(&headers, Duration::from_millis(5)),
            Some(Duration::from_millis(5))
        );
    }

    /// A client for `endpoint`, without a key.
    fn client(endpoint: &str) -> Http {
        Http::new(&[Url::parse(endpoint).unwrap()], None, 1, Pacing::default()).unwrap()
    }

    #[test]
    fn plain_http_outputs_only_from_a_loopback_endpoint() {
        let remote = client("https://api.replicate.com");
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
        let local = client("http://127.0.0.1:5000");
        assert!(local.check_foreign_url(&output).is_ok());
        assert!(
            local
                .check_foreign_url(&Url::parse("file:///etc/passwd").unwrap())
                .is_err()
        );
    }

    #[test]
    fn a_remote_endpoint_may_not_send_local_or_private_addresses() {
        let remote = client("https://api.replicate.com");
        for url in [
            "https://169.254.169.254/latest/meta-data/",
            "https://127.0.0.1:8443/out.mp4",
            "https://10.1.2.3/out.mp4",
            "https://192.168.0.1/out.mp4",
            "https://172.16.5.4/out.mp4",
            "https://0.0.0.0/out.mp4",
            "https://localhost/out.mp4",
            "https://LOCALHOST./out.mp4",
            "https://api.localhost/out.mp4",
            "https://[::1]/out.mp4",
            "https://[::]/out.mp4",
            "https://[fd00::1]/out.mp4",
            "https://[fe80::1]/out.mp4",
            "https://[::ffff:169.254.169.254]/out.mp4",
        ] {
            let error = remote
                .check_foreign_url(&Url::parse(&format!("{url}?sig=secret")).unwrap())
                .unwrap_err()
                .to_string();
            assert_eq!(
                error,
                format!(
                    "unexpected answer: the provider gave a URL on a local or private \
                     address ({}); a remote endpoint may only send public ones",
                    Url::parse(url).unwrap()
                )
            );
        }
        for url in ["https://8.8.8.8/o.mp4", "https://[2606:4700::1]/o.mp4"] {
            assert!(remote.check_foreign_url(&Url::parse(url).unwrap()).is_ok());
        }
        // A local endpoint's outputs are local.
        let local = client("http://127.0.0.1:5000");
        assert!(
            local
                .check_foreign_url(&Url::parse("http://127.0.0.1:5000/o.mp4").unwrap())
                .is_ok()
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
