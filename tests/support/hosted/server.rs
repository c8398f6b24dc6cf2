//! The servers: one axum app whose handler routes by provider, as a real provider would.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::StreamExt;
use gstwanedit::backend::BackendKind;
use serde_json::{Value, json};

use super::edit_clip;

/// The key every server accepts.
pub const KEY: &str = "r8_wanedit_test_key_0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Replicate,
    Fal,
    Wavespeed,
    Together,
    Cog,
}

impl Kind {
    /// The backend that speaks to this server.
    pub fn backend(self) -> BackendKind {
        match self {
            Kind::Replicate => BackendKind::Replicate,
            Kind::Fal => BackendKind::Fal,
            Kind::Wavespeed => BackendKind::Wavespeed,
            Kind::Together => BackendKind::Together,
            Kind::Cog => BackendKind::Cog,
        }
    }
}

/// What a request was for, for faults and for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Upload,
    Create,
    Poll,
    Result,
    Cancel,
    Download,
    Other,
}

/// One request the server got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub route: Route,
    pub method: Method,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub referer: Option<String>,
    pub body: Value,
    pub at: Instant,
}

/// What a fault does to the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Serves the fault's status, headers and body instead of the normal answer.
    Answer,
    /// Closes the connection without an answer, after the fault's delay (a stall).
    Reset,
    /// Serves the normal answer with its full `content-length`, but closes the
    /// connection after half of the body.
    Truncated,
    /// Serves the fault's status and headers, then a body of `chunk` bytes every `every`
    /// that ends only after `total` bytes (an endless or trickling body); see
    /// [`Mock::streamed`].
    Stream {
        chunk: usize,
        every: Duration,
        total: u64,
    },
}

/// An answer served instead of the normal one.
#[derive(Debug, Clone)]
pub struct Fault {
    pub failure: Failure,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Waits this long before answering (a create that times out).
    pub delay: Duration,
}

impl Fault {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            failure: Failure::Answer,
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// A transient status with a body of the kind gateways send.
    pub fn status(status: u16) -> Self {
        Self::new(
            status,
            format!("{{\"detail\": \"transient fault {status}\"}}"),
        )
    }

    /// The connection closed with no answer.
    pub fn reset() -> Self {
        Self {
            failure: Failure::Reset,
            ..Self::new(0, "")
        }
    }

    /// No answer for `delay`, then the connection closes.
    pub fn stall(delay: Duration) -> Self {
        Self::reset().delay(delay)
    }

    /// The normal answer, cut after half of its body.
    pub fn truncated() -> Self {
        Self {
            failure: Failure::Truncated,
            ..Self::new(0, "")
        }
    }

    /// `status` with a body that comes as fast as the client takes it and would end only
    /// after 256 MiB.
    pub fn flood(status: u16) -> Self {
        Self {
            failure: Failure::Stream {
                chunk: 64 * 1024,
                every: Duration::ZERO,
                total: 256 << 20,
            },
            ..Self::new(status, "")
        }
    }

    /// `status` with a body of one byte every `every`, for ten minutes.
    pub fn trickle(status: u16, every: Duration) -> Self {
        Self {
            failure: Failure::Stream {
                chunk: 1,
                every,
                total: (600.0 / every.as_secs_f64()) as u64,
            },
            ..Self::new(status, "")
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// How the server hands out the edited clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Good,
    /// The first third of the file.
    Truncated,
    /// The output URL answers 403, as an expired signed URL does.
    Expired,
    /// The clip padded with this many bytes of junk.
    Padded(usize),
    /// The clip, its container declaring 16000x16000 frames (its coded frames unchanged).
    Huge,
}

/// What the server does, and what it saw.
pub struct Mock {
    pub kind: Kind,
    pub url: String,
    seen: Mutex<Vec<Seen>>,
    faults: Mutex<Vec<(Route, Fault)>>,
    jobs: Mutex<HashMap<String, Job>>,
    uploads: Mutex<HashMap<String, Vec<u8>>>,
    next_id: AtomicUsize,
    /// Polls answered "processing" before a job may be done.
    pub pending_polls: AtomicUsize,
    /// How long a job takes at least.
    pub job_time: Mutex<Duration>,
    /// Where set, each job takes at least a time drawn evenly from this range instead
    /// (from the chaos generator where there is one).
    pub job_times: Mutex<Option<(Duration, Duration)>>,
    /// Jobs fail with this message.
    pub fail_with: Mutex<Option<String>>,
    /// Jobs never end.
    pub never_finish: std::sync::atomic::AtomicBool,
    pub output: Mutex<Output>,
    /// Answers a body that is not JSON to polls.
    pub malformed: std::sync::atomic::AtomicBool,
    /// Jobs are announced under this id, with no URLs: the client builds their paths from
    /// it. The server finds them again by it.
    pub job_id: Mutex<Option<String>>,
    /// The status, result and cancel URLs of jobs point below this base instead of the
    /// server's own.
    pub job_urls_at: Mutex<Option<String>>,
    /// The ids jobs were announced under, and their own.
    aliases: Mutex<HashMap<String, String>>,
    /// Jobs return this clip instead of editing theirs: the server's own CPU then stays out
    /// of a benchmark.
    pub canned: Mutex<Option<Arc<Vec<u8>>>>,
    /// Cog only: jobs running now, and the most seen at once.
    running: AtomicUsize,
    pub most_running: AtomicUsize,
    /// Cog only: the `status` its health check answers.
    pub health: Mutex<&'static str>,
    /// Random faults: each request gets one with this probability, from a seeded
    /// generator.
    chaos: Mutex<Option<Chaos>>,
    /// The server is gone: the port refuses connections and open connections are cut.
    killed: std::sync::atomic::AtomicBool,
    serving: Mutex<Option<tokio::task::AbortHandle>>,
    /// See [`Mock::fail_every`]; 0: no job fails that way.
    fail_every: AtomicUsize,
    jobs_created: AtomicUsize,
    /// Jobs made to fail by [`Mock::fail_every`] so far.
    pub jobs_failed: AtomicUsize,
    /// See [`Mock::forget_after`].
    forget: Mutex<Option<Duration>>,
    /// Bytes of [`Failure::Stream`] bodies handed to the connection so far: what a client
    /// that stops reading at a cap made the server send.
    pub streamed: AtomicU64,
    /// Where set, request bodies are read at this many bytes a second (a slow uplink).
    pub read_rate: Mutex<Option<u64>>,
    /// When each upload was stored, oldest first, while uploads are forgotten.
    upload_times: Mutex<VecDeque<(Instant, String)>>,
}

/// Seeded random faults (see [`Mock::chaos`]).
struct Chaos {
    state: u64,
    rate: f64,
    stall: Duration,
    /// Faults served, by kind.
    served: HashMap<&'static str, usize>,
    /// Requests that went through the generator, with or without a fault.
    drawn: usize,
}

impl Chaos {
    /// xorshift64*: reproducible from the seed, with no dependency.
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fault(&mut self, route: Route) -> Option<(&'static str, Fault)> {
        self.drawn += 1;
        if (self.next() % 1_000_000) as f64 >= self.rate * 1_000_000.0 {
            return None;
        }
        let mut pick = || self.next();
        let (name, fault) = match (route, pick() % 11) {
            // A create is only ever refused in ways that say it was not acted on.
            (Route::Create, n) if n % 2 == 0 => {
                ("429", Fault::status(429).header("retry-after-ms", "100"))
            }
            (Route::Create, _) => ("503-create", Fault::status(503)),
            (_, 0) => ("408", Fault::status(408)),
            (_, 1) => ("425", Fault::status(425)),
            (_, 2) => ("429", Fault::status(429).header("retry-after", "1")),
            (_, 3) => ("500", Fault::status(500)),
            (_, 4) => ("502", Fault::status(502)),
            (_, 5) => ("503", Fault::status(503)),
            (_, 6) => ("504", Fault::status(504)),
            (_, 7) => ("reset", Fault::reset()),
            (_, 8) => ("stall", Fault::stall(self.stall)),
            _ => ("truncated", Fault::truncated()),
        };
        *self.served.entry(name).or_default() += 1;
        Some((name, fault))
    }
}

struct Job {
    created: Instant,
    /// How long it takes at least.
    takes: Duration,
    polls: usize,
    input: Value,
    /// The edited clip, once the model is done.
    result: Arc<Mutex<Option<Vec<u8>>>>,
    canceled: bool,
    /// Fails once it has run its time (see [`Mock::fail_every`]).
    fails: bool,
}

impl Mock {
    /// Starts a server for `kind` on a free port of 127.0.0.1; it runs until the test ends.
    pub fn start(kind: Kind) -> Arc<Mock> {
        Self::serve(kind, std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Starts a server for `kind` on `listener` (an address of the test's choosing); it
    /// runs until the test ends.
    pub fn serve(kind: Kind, listener: std::net::TcpListener) -> Arc<Mock> {
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mock = Arc::new(Mock {
            kind,
            url,
            seen: Mutex::default(),
            faults: Mutex::default(),
            jobs: Mutex::default(),
            uploads: Mutex::default(),
            next_id: AtomicUsize::new(1),
            pending_polls: AtomicUsize::new(1),
            job_time: Mutex::new(Duration::ZERO),
            job_times: Mutex::default(),
            fail_with: Mutex::default(),
            never_finish: Default::default(),
            output: Mutex::new(Output::Good),
            malformed: Default::default(),
            job_id: Mutex::default(),
            job_urls_at: Mutex::default(),
            aliases: Mutex::default(),
            canned: Mutex::default(),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
            health: Mutex::new("READY"),
            chaos: Mutex::default(),
            killed: Default::default(),
            serving: Mutex::default(),
            fail_every: AtomicUsize::new(0),
            jobs_created: AtomicUsize::new(0),
            jobs_failed: AtomicUsize::new(0),
            forget: Mutex::default(),
            upload_times: Mutex::default(),
            streamed: AtomicU64::new(0),
            read_rate: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn_with_state(
                mock.clone(),
                read_slowly,
            ))
            .with_state(mock.clone());
        let rt = gstwanedit::backend::runtime::runtime();
        let serving = rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        *mock.serving.lock().unwrap() = Some(serving.abort_handle());
        mock
    }

    /// Kills the server: its port refuses connections from now on, and requests on
    /// connections already open (a prediction running) are cut without an answer.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Some(serving) = self.serving.lock().unwrap().take() {
            serving.abort();
        }
    }

    /// From now on, each request gets a random fault (every kind `Chaos::fault` knows)
    /// with probability `rate`, drawn from a generator seeded with `seed`; stalls last
    /// `stall`.
    pub fn chaos(&self, seed: u64, rate: f64, stall: Duration) {
        *self.chaos.lock().unwrap() = Some(Chaos {
            state: seed.max(1),
            rate,
            stall,
            served: HashMap::new(),
            drawn: 0,
        });
    }

    /// Requests that went through the random faults so far, with or without one.
    pub fn chaos_requests(&self) -> usize {
        self.chaos.lock().unwrap().as_ref().map_or(0, |c| c.drawn)
    }

    /// From now on, every `every`-th job created fails once it has run its time, with a
    /// message that says it may pass (a GPU out of memory): window retries then happen at
    /// a known rate, where random ones could as well not happen in a short run.
    pub fn fail_every(&self, every: usize) {
        self.fail_every.store(every, Ordering::SeqCst);
    }

    /// From now on, uploads, jobs and the request log older than `age` are forgotten, as a
    /// provider's storage expires: a soak runs for hours in the same process as the
    /// server, and what the server kept would count as the element's memory. A job polled
    /// after that is unknown (404).
    pub fn forget_after(&self, age: Duration) {
        *self.forget.lock().unwrap() = Some(age);
    }

    /// Drops what [`Mock::forget_after`] says is too old.
    fn forget_old(&self) {
        let Some(age) = *self.forget.lock().unwrap() else {
            return;
        };
        let old = |at: Instant| at.elapsed() > age;
        self.seen.lock().unwrap().retain(|s| !old(s.at));
        self.jobs.lock().unwrap().retain(|_, job| !old(job.created));
        let mut times = self.upload_times.lock().unwrap();
        while let Some((_, id)) = times.front().filter(|(at, _)| old(*at)) {
            self.uploads.lock().unwrap().remove(id);
            times.pop_front();
        }
    }

    /// The random faults served so far, by kind.
    pub fn chaos_served(&self) -> HashMap<&'static str, usize> {
        self.chaos
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| c.served.clone())
            .unwrap_or_default()
    }

    /// Serves `fault` to the next request for `route`.
    pub fn fault(&self, route: Route, fault: Fault) {
        self.faults.lock().unwrap().push((route, fault));
    }

    /// Faults queued with [`Mock::fault`] and not served yet.
    pub fn faults_left(&self) -> usize {
        self.faults.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self, route: Route) -> usize {
        self.seen().iter().filter(|s| s.route == route).count()
    }

    /// The inputs the jobs were created with.
    pub fn inputs(&self) -> Vec<Value> {
        let seen = self.seen();
        seen.iter()
            .filter(|s| s.route == Route::Create)
            .map(|s| s.body.clone())
            .collect()
    }

    fn take_fault(&self, route: Route) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap();
        if let Some(i) = faults.iter().position(|(r, _)| *r == route) {
            return Some(faults.remove(i).1);
        }
        drop(faults);
        let mut chaos = self.chaos.lock().unwrap();
        chaos.as_mut()?.fault(route).map(|(_, fault)| fault)
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{:04}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    fn auth_ok(&self, headers: &HeaderMap) -> bool {
        let expected = match self.kind {
            Kind::Fal => format!("Key {KEY}"),
            Kind::Cog => return true,
            _ => format!("Bearer {KEY}"),
        };
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected)
    }

    /// Stores an uploaded file; returns its URL.
    fn store(&self, data: Vec<u8>) -> String {
        let id = self.id("file");
        self.keep_upload(id.clone(), data);
        format!("{}/files/{id}", self.url)
    }

    fn keep_upload(&self, id: String, data: Vec<u8>) {
        if self.forget.lock().unwrap().is_some() {
            let mut times = self.upload_times.lock().unwrap();
            times.push_back((Instant::now(), id.clone()));
        }
        self.uploads.lock().unwrap().insert(id, data);
    }

    /// The bytes behind a URL or data URI a job was given.
    fn fetch_input(&self, reference: &str) -> Vec<u8> {
        if let Some(rest) = reference.strip_prefix("data:") {
            let (_, payload) = rest.split_once(";base64,").unwrap();
            return base64::engine::general_purpose::STANDARD
                .decode(payload)
                .unwrap();
        }
        let id = reference.rsplit('/').next().unwrap();
        self.uploads.lock().unwrap()[id].clone()
    }

    /// Every file uploaded, in the order they came.
    pub fn uploaded(&self) -> Vec<Vec<u8>> {
        let uploads = self.uploads.lock().unwrap();
        let mut ids: Vec<&String> = uploads.keys().collect();
        ids.sort_by_key(|id| {
            id.trim_start_matches(char::is_alphabetic)
                .parse::<usize>()
                .ok()
        });
        ids.into_iter().map(|id| uploads[id].clone()).collect()
    }

    /// The id job `id` is announced under (see [`Mock::job_id`]).
    fn announce(&self, id: String) -> String {
        match self.job_id.lock().unwrap().clone() {
            Some(shown) => {
                self.aliases.lock().unwrap().insert(shown.clone(), id);
                shown
            }
            None => id,
        }
    }

    /// The job a path segment names: escaped, and maybe under an announced id.
    fn job_of(&self, segment: &str) -> String {
        // The segment unescaped (`form_urlencoded` also reads '+' as a space: no id has one).
        let (id, _) = url::form_urlencoded::parse(segment.as_bytes())
            .next()
            .unwrap_or_default();
        let aliases = self.aliases.lock().unwrap();
        aliases
            .get(id.as_ref())
            .cloned()
            .unwrap_or_else(|| id.into_owned())
    }

    /// The URL of a job's `path` that an answer gives: none where jobs are announced under
    /// [`Mock::job_id`], else below [`Mock::job_urls_at`] or the server.
    fn job_url(&self, path: &str) -> Option<String> {
        if self.job_id.lock().unwrap().is_some() {
            return None;
        }
        let base = self.job_urls_at.lock().unwrap().clone();
        Some(format!("{}{path}", base.as_deref().unwrap_or(&self.url)))
    }

    /// Creates a job from the clip at `video`; the model starts at once.
    fn create_job(&self, input: Value, video: &str) -> String {
        self.forget_old();
        let id = self.id("job");
        let every = self.fail_every.load(Ordering::SeqCst);
        let created = self.jobs_created.fetch_add(1, Ordering::SeqCst) + 1;
        let fails = every > 0 && created.is_multiple_of(every);
        if fails {
            self.jobs_failed.fetch_add(1, Ordering::SeqCst);
        }
        let result = Arc::new(Mutex::new(None));
        if let Some(canned) = self.canned.lock().unwrap().clone() {
            *result.lock().unwrap() = Some(canned.to_vec());
        } else {
            let clip = self.fetch_input(video);
            let slot = result.clone();
            tokio::task::spawn_blocking(move || *slot.lock().unwrap() = Some(edit_clip(clip)));
        }
        let takes = match *self.job_times.lock().unwrap() {
            Some((least, most)) => {
                let draw = match self.chaos.lock().unwrap().as_mut() {
                    Some(chaos) => chaos.next(),
                    None => rand::random(),
                };
                least + (most - least).mul_f64((draw % 1_000_000) as f64 / 1_000_000.0)
            }
            None => *self.job_time.lock().unwrap(),
        };
        self.jobs.lock().unwrap().insert(
            id.clone(),
            Job {
                created: Instant::now(),
                takes,
                polls: 0,
                input,
                result,
                canceled: false,
                fails,
            },
        );
        id
    }

    /// Where job `id` stands after one more poll.
    fn advance(&self, id: &str) -> Option<JobState> {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs.get_mut(id)?;
        job.polls += 1;
        if job.canceled {
            return Some(JobState::Canceled);
        }
        if self.never_finish.load(Ordering::SeqCst)
            || job.polls <= self.pending_polls.load(Ordering::SeqCst)
            || job.created.elapsed() < job.takes
            || job.result.lock().unwrap().is_none()
        {
            return Some(JobState::Running(job.polls));
        }
        if let Some(message) = self.fail_with.lock().unwrap().clone() {
            return Some(JobState::Failed(message));
        }
        if job.fails {
            return Some(JobState::Failed(
                "CUDA out of memory (injected by the test server)".into(),
            ));
        }
        Some(JobState::Done(format!("{}/outputs/{id}.mp4", self.url)))
    }

    fn cancel(&self, id: &str) -> bool {
        match self.jobs.lock().unwrap().get_mut(id) {
            Some(job) => {
                job.canceled = true;
                true
            }
            None => false,
        }
    }

    fn output_bytes(&self, id: &str) -> Option<Vec<u8>> {
        let jobs = self.jobs.lock().unwrap();
        let data = jobs.get(id)?.result.lock().unwrap().clone()?;
        Some(match *self.output.lock().unwrap() {
            Output::Good | Output::Expired => data,
            Output::Truncated => data[..data.len() / 3].to_vec(),
            Output::Padded(extra) => [data, vec![0; extra]].concat(),
            Output::Huge => declare_size(data, 16000, 16000),
        })
    }
}

/// `mp4` (with its `moov` first) with its video track declaring `width`x`height` frames in
/// `tkhd` and `avc1`: the sizes the demuxer announces, whatever the coded frames are.
fn declare_size(mut mp4: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
    let tkhd = find(&mp4, b"tkhd").unwrap() - 4;
    // Version 1 has 64-bit times: 12 bytes more before the size.
    let at = tkhd + if mp4[tkhd + 8] == 1 { 96 } else { 84 };
    mp4[at..at + 4].copy_from_slice(&(u32::from(width) << 16).to_be_bytes());
    mp4[at + 4..at + 8].copy_from_slice(&(u32::from(height) << 16).to_be_bytes());
    // "avc1" may be a brand in `ftyp`: the sample entry is the one in `stsd`.
    let stsd = find(&mp4, b"stsd").unwrap();
    let avc1 = stsd + find(&mp4[stsd..], b"avc1").unwrap() - 4;
    mp4[avc1 + 32..avc1 + 34].copy_from_slice(&width.to_be_bytes());
    mp4[avc1 + 34..avc1 + 36].copy_from_slice(&height.to_be_bytes());
    mp4
}

/// A request as the provider handlers see it.
struct Request<'a> {
    route: Route,
    path: &'a str,
    headers: &'a HeaderMap,
    body: Bytes,
    /// The body as JSON; `Null` where it is not.
    json: Value,
}

enum JobState {
    Running(usize),
    Done(String),
    Failed(String),
    Canceled,
}

fn json_reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A response whose body fails at once: the server closes the connection.
fn reset_reply() -> Response {
    let cut = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("connection cut by the test server"))
    });
    Response::new(axum::body::Body::from_stream(cut))
}

/// `response` with its full length announced and half of its body sent.
async fn truncated_reply(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let data = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let half = data.slice(..data.len() / 2);
    parts
        .headers
        .insert("content-length", data.len().to_string().parse().unwrap());
    // The cut comes a moment later, so that the head and the half are on the wire.
    let cut = futures::stream::once(async { Ok(half) }).chain(futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::other("connection cut by the test server"))
    }));
    Response::from_parts(parts, axum::body::Body::from_stream(cut))
}

/// The fault's status and headers with a [`Failure::Stream`] body, counted in
/// [`Mock::streamed`] as the connection takes it.
fn stream_reply(mock: &Arc<Mock>, fault: Fault) -> Response {
    let Failure::Stream {
        chunk,
        every,
        total,
    } = fault.failure
    else {
        unreachable!("only stream faults are streamed")
    };
    let mock = mock.clone();
    let body = futures::stream::unfold(0u64, move |sent| {
        let mock = mock.clone();
        async move {
            if sent >= total {
                return None;
            }
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            mock.streamed.fetch_add(chunk as u64, Ordering::SeqCst);
            Some((
                Ok::<_, std::io::Error>(Bytes::from(vec![b' '; chunk])),
                sent + chunk as u64,
            ))
        }
    });
    let mut response = Response::new(axum::body::Body::from_stream(body));
    *response.status_mut() = StatusCode::from_u16(fault.status).unwrap();
    for (name, value) in fault.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// Reads request bodies at [`Mock::read_rate`] where it is set: hyper reads the socket
/// only as fast as the body is taken, so the client's upload slows down to it.
async fn read_slowly(
    State(mock): State<Arc<Mock>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(rate) = *mock.read_rate.lock().unwrap() else {
        return next.run(request).await;
    };
    let request = request.map(|body| {
        axum::body::Body::from_stream(body.into_data_stream().then(move |chunk| async move {
            if let Ok(data) = &chunk {
                tokio::time::sleep(Duration::from_secs_f64(data.len() as f64 / rate as f64)).await;
            }
            chunk
        }))
    });
    next.run(request).await
}

fn fault_reply(fault: Fault) -> Response {
    let mut response = (StatusCode::from_u16(fault.status).unwrap(), fault.body).into_response();
    for (name, value) in fault.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

fn route_of(kind: Kind, method: &Method, path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if path.starts_with("/outputs/") {
        return Route::Download;
    }
    if kind == Kind::Cog && path == "/health-check" {
        return Route::Health;
    }
    match kind {
        Kind::Replicate => match (method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "files"]) => Route::Upload,
            ("POST", ["v1", "models", _, _, "predictions"] | ["v1", "predictions"]) => {
                Route::Create
            }
            ("GET", ["v1", "predictions", _]) => Route::Poll,
            ("POST", ["v1", "predictions", _, "cancel"]) => Route::Cancel,
            _ => Route::Other,
        },
        Kind::Fal => match (method.as_str(), segments.as_slice()) {
            ("POST", ["storage", ..] | ["cdn", ..]) => Route::Upload,
            ("GET", [.., "requests", _, "status"]) => Route::Poll,
            ("GET", [.., "requests", _]) => Route::Result,
            ("PUT", [.., "requests", _, "cancel"]) => Route::Cancel,
            ("POST", _) => Route::Create,
            _ => Route::Other,
        },
        Kind::Wavespeed => match (method.as_str(), segments.as_slice()) {
            ("POST", ["api", "v3", "media", ..]) | ("PUT", ["presigned", _]) => Route::Upload,
            ("GET", ["api", "v3", "predictions", _, "result"]) => Route::Poll,
            ("POST", ["api", "v3", ..]) => Route::Create,
            _ => Route::Other,
        },
        Kind::Together => match (method.as_str(), segments.as_slice()) {
            ("POST", ["v2", "videos"]) => Route::Create,
            ("GET", ["v2", "videos", _]) => Route::Poll,
            _ => Route::Other,
        },
        Kind::Cog => match (method.as_str(), segments.as_slice()) {
            ("PUT", ["predictions", _]) => Route::Create,
            ("POST", ["predictions", _, "cancel"]) => Route::Cancel,
            _ => Route::Other,
        },
    }
}

async fn handle(
    State(mock): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if mock.killed.load(Ordering::SeqCst) {
        return reset_reply();
    }
    let route = route_of(mock.kind, &method, uri.path());
    let fault = mock.take_fault(route);
    let truncate = match &fault {
        Some(fault) if fault.failure == Failure::Truncated => true,
        Some(fault) => {
            mock.see(route, &method, &uri, &headers, &body);
            tokio::time::sleep(fault.delay).await;
            return match fault.failure {
                Failure::Reset => reset_reply(),
                Failure::Stream { .. } => stream_reply(&mock, fault.clone()),
                _ => fault_reply(fault.clone()),
            };
        }
        None => false,
    };
    let response = serve(mock.clone(), route, method, uri, headers, body).await;
    if truncate {
        truncated_reply(response).await
    } else {
        response
    }
}

impl Mock {
    fn see(&self, route: Route, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        self.seen.lock().unwrap().push(Seen {
            route,
            method: method.clone(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            referer: headers
                .get("referer")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            at: Instant::now(),
        });
    }
}

/// The normal answer to a request.
async fn serve(
    mock: Arc<Mock>,
    route: Route,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    mock.see(route, &method, &uri, &headers, &body);
    let path = uri.path().to_owned();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if route == Route::Download {
        let id = path
            .trim_start_matches("/outputs/")
            .trim_end_matches(".mp4");
        if *mock.output.lock().unwrap() == Output::Expired {
            return (
                StatusCode::FORBIDDEN,
                "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            )
                .into_response();
        }
        return match mock.output_bytes(id) {
            Some(data) => ([("content-type", "video/mp4")], data).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let presigned = path.starts_with("/presigned/") || path.starts_with("/cdn/");
    if !presigned && !mock.auth_ok(&headers) {
        return unauthorized(mock.kind);
    }
    if route == Route::Poll && mock.malformed.load(Ordering::SeqCst) {
        return (StatusCode::OK, "{\"status\": \"processing\", \"logs\": ").into_response();
    }
    let request = Request {
        route,
        path: &path,
        headers: &headers,
        body,
        json,
    };
    match mock.kind {
        Kind::Replicate => replicate(&mock, request).await,
        Kind::Fal => fal(&mock, request).await,
        Kind::Wavespeed => wavespeed(&mock, request).await,
        Kind::Together => together(&mock, request).await,
        Kind::Cog => cog(&mock, request).await,
    }
}

fn unauthorized(kind: Kind) -> Response {
    match kind {
        Kind::Replicate => json_reply(
            401,
            json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401}),
        ),
        Kind::Fal => json_reply(
            401,
            json!({"detail": "No user found for Key ID and Secret"}),
        ),
        Kind::Wavespeed => json_reply(401, json!({"code": 401, "message": "Invalid API key"})),
        Kind::Together => json_reply(
            401,
            json!({"error": {"message": "Invalid API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        ),
        Kind::Cog => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn last_segment(path: &str, from_end: usize) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    segments[segments.len() - 1 - from_end].to_owned()
}

/// The file in a multipart body with one part.
fn multipart_file(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let content_type = headers["content-type"].to_str().unwrap();
    let boundary = content_type.split("boundary=").nth(1).unwrap();
    let start = find(body, b"\r\n\r\n").unwrap() + 4;
    let end = find(&body[start..], format!("\r\n--{boundary}").as_bytes()).unwrap();
    body[start..start + end].to_vec()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn replicate(mock: &Mock, request: Request<'_>) -> Response {
    let prediction = |id: &str, status: &str, output: Value, error: Value, logs: &str| {
        json!({
            "id": id, "model": "wan-video/wan-2.7-videoedit", "status": status,
            "input": {}, "output": output, "error": error, "logs": logs,
            "urls": {
                "get": mock.job_url(&format!("/v1/predictions/{id}")),
                "cancel": mock.job_url(&format!("/v1/predictions/{id}/cancel")),
            },
        })
    };
    match request.route {
        Route::Upload => {
            let url = mock.store(multipart_file(request.headers, &request.body));
            let id = url.rsplit('/').next().unwrap().to_owned();
            json_reply(
                201,
                json!({"id": id, "content_type": "video/mp4", "urls": {"get": url}, "expires_at": "2099-01-01T00:00:00Z"}),
            )
        }
        Route::Create => {
            let Some(video) = request.json.pointer("/input/video").and_then(Value::as_str) else {
                return json_reply(
                    422,
                    json!({"title": "Input validation failed", "detail": "- input: video is required", "status": 422}),
                );
            };
            let id = mock.announce(mock.create_job(request.json.clone(), video));
            json_reply(
                201,
                prediction(&id, "starting", Value::Null, Value::Null, ""),
            )
        }
        Route::Poll => {
            let id = mock.job_of(&last_segment(request.path, 0));
            match mock.advance(&id) {
                None => json_reply(
                    404,
                    json!({"title": "Not found", "detail": "Not found", "status": 404}),
                ),
                Some(JobState::Running(n)) => json_reply(
                    200,
                    prediction(
                        &id,
                        "processing",
                        Value::Null,
                        Value::Null,
                        &format!("{:3}%|#####     | {n}/10\n", (n * 10).min(90)),
                    ),
                ),
                Some(JobState::Done(url)) => json_reply(
                    200,
                    prediction(
                        &id,
                        "succeeded",
                        json!(url),
                        Value::Null,
                        "100%|##########| 10/10\n",
                    ),
                ),
                Some(JobState::Failed(message)) => json_reply(
                    200,
                    prediction(&id, "failed", Value::Null, json!(message), ""),
                ),
                Some(JobState::Canceled) => json_reply(
                    200,
                    prediction(&id, "canceled", Value::Null, Value::Null, ""),
                ),
            }
        }
        Route::Cancel => {
            let id = mock.job_of(&last_segment(request.path, 1));
            mock.cancel(&id);
            json_reply(
                200,
                prediction(&id, "canceled", Value::Null, Value::Null, ""),
            )
        }
        _ => json_reply(
            404,
            json!({"title": "Not found", "detail": "Not found", "status": 404}),
        ),
    }
}

async fn fal(mock: &Mock, request: Request<'_>) -> Response {
    let base = "/fal-ai/wan/requests";
    match (request.route, request.path) {
        (Route::Upload, p) if p.starts_with("/storage/auth/token") => json_reply(
            200,
            json!({"token": "cdn-token-1", "token_type": "Bearer", "base_url": format!("{}/cdn", mock.url), "expires_at": "2099-01-01T00:00:00Z"}),
        ),
        (Route::Upload, "/cdn/files/upload") => {
            if request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                != Some("Bearer cdn-token-1")
                || request.headers.get("x-fal-file-name").is_none()
            {
                return json_reply(401, json!({"detail": "bad storage token"}));
            }
            json_reply(
                200,
                json!({"access_url": mock.store(request.body.to_vec())}),
            )
        }
        (Route::Create, _) => {
            let Some(video) = request.json.get("video_url").and_then(Value::as_str) else {
                return json_reply(
                    422,
                    json!({"detail": [{"loc": ["body", "video_url"], "msg": "field required", "type": "missing"}]}),
                );
            };
            let id = mock.create_job(request.json.clone(), video);
            json_reply(
                200,
                json!({
                    "request_id": id,
                    "status_url": mock.job_url(&format!("{base}/{id}/status")),
                    "response_url": mock.job_url(&format!("{base}/{id}")),
                    "cancel_url": mock.job_url(&format!("{base}/{id}/cancel")),
                }),
            )
        }
        (Route::Poll, _) => match mock.advance(&last_segment(request.path, 1)) {
            None => json_reply(404, json!({"detail": "Request not found"})),
            Some(JobState::Running(1)) => {
                json_reply(202, json!({"status": "IN_QUEUE", "queue_position": 0}))
            }
            Some(JobState::Running(n)) => json_reply(
                202,
                json!({"status": "IN_PROGRESS", "logs": [{"message": format!("{:3}%|####  | {n}/10", (n * 10).min(90)), "level": "INFO"}]}),
            ),
            Some(JobState::Done(_)) => json_reply(200, json!({"status": "COMPLETED", "logs": []})),
            Some(JobState::Failed(message)) => json_reply(
                200,
                json!({"status": "COMPLETED", "error": message, "error_type": "model_error"}),
            ),
            Some(JobState::Canceled) => json_reply(
                200,
                json!({"status": "COMPLETED", "error": "Request was cancelled"}),
            ),
        },
        (Route::Result, _) => {
            let id = last_segment(request.path, 0);
            json_reply(
                200,
                json!({"video": {"url": format!("{}/outputs/{id}.mp4", mock.url), "content_type": "video/mp4"}, "seed": 42}),
            )
        }
        (Route::Cancel, _) => {
            mock.cancel(&last_segment(request.path, 1));
            json_reply(202, json!({"status": "CANCELLATION_REQUESTED"}))
        }
        _ => json_reply(404, json!({"detail": "Not found"})),
    }
}

async fn wavespeed(mock: &Mock, request: Request<'_>) -> Response {
    let wrap = |data: Value| {
        json_reply(
            200,
            json!({"code": 200, "message": "success", "data": data}),
        )
    };
    match (request.route, request.path) {
        (Route::Upload, "/api/v3/media/uploads") => {
            let id = mock.id("up");
            wrap(json!({
                "download_url": format!("{}/files/{id}", mock.url),
                "upload": {"method": "PUT", "url": format!("{}/presigned/{id}", mock.url),
                           "headers": {"Content-Type": request.json["content_type"]}},
            }))
        }
        (Route::Upload, p) if p.starts_with("/presigned/") => {
            mock.keep_upload(last_segment(p, 0), request.body.to_vec());
            StatusCode::OK.into_response()
        }
        (Route::Create, _) => {
            let Some(video) = request.json.get("video").and_then(Value::as_str) else {
                return json_reply(400, json!({"code": 400, "message": "video is required"}));
            };
            let id = mock.announce(mock.create_job(request.json.clone(), video));
            wrap(json!({
                "id": id, "status": "created",
                "urls": {"get": mock.job_url(&format!("/api/v3/predictions/{id}/result"))},
            }))
        }
        (Route::Poll, _) => {
            let id = mock.job_of(&last_segment(request.path, 1));
            let state = |status: &str, outputs: Value, error: &str| {
                wrap(
                    json!({"id": id, "status": status, "outputs": outputs, "error": error, "timings": {}}),
                )
            };
            match mock.advance(&id) {
                None => json_reply(404, json!({"code": 404, "message": "prediction not found"})),
                Some(JobState::Running(_)) => state("processing", json!([]), ""),
                Some(JobState::Done(url)) => state("completed", json!([url]), ""),
                Some(JobState::Failed(message)) => state("failed", json!([]), &message),
                Some(JobState::Canceled) => state("cancelled", json!([]), ""),
            }
        }
        _ => json_reply(404, json!({"code": 404, "message": "not found"})),
    }
}

async fn together(mock: &Mock, request: Request<'_>) -> Response {
    match request.route {
        Route::Create => {
            let Some(video) = request
                .json
                .pointer("/media/source_video/video")
                .and_then(Value::as_str)
            else {
                return json_reply(
                    400,
                    json!({"error": {"message": "media.source_video is required", "type": "invalid_request_error", "code": null}}),
                );
            };
            let id = mock.announce(mock.create_job(request.json.clone(), video));
            json_reply(
                200,
                json!({"id": id, "object": "video", "status": "queued"}),
            )
        }
        Route::Poll => {
            let id = mock.job_of(&last_segment(request.path, 0));
            match mock.advance(&id) {
                None => json_reply(
                    404,
                    json!({"error": {"message": "not found", "type": "not_found"}}),
                ),
                // A status word of another API generation: still running.
                Some(JobState::Running(1)) => {
                    json_reply(200, json!({"id": id, "status": "pending"}))
                }
                Some(JobState::Running(_)) => {
                    json_reply(200, json!({"id": id, "status": "in_progress"}))
                }
                Some(JobState::Done(url)) => json_reply(
                    200,
                    json!({"id": id, "status": "completed", "outputs": {"video_url": url, "cost": 0.1}}),
                ),
                Some(JobState::Failed(message)) => json_reply(
                    200,
                    json!({"id": id, "status": "failed", "error": {"code": "model_error", "message": message}}),
                ),
                Some(JobState::Canceled) => {
                    json_reply(200, json!({"id": id, "status": "cancelled"}))
                }
            }
        }
        _ => json_reply(
            404,
            json!({"error": {"message": "not found", "type": "not_found"}}),
        ),
    }
}

/// Cog: `PUT /predictions/{id}` answers when the prediction has ended; one at a time.
async fn cog(mock: &Mock, request: Request<'_>) -> Response {
    match request.route {
        Route::Health => {
            let status = match *mock.health.lock().unwrap() {
                "READY" if mock.running.load(Ordering::SeqCst) > 0 => "BUSY",
                status => status,
            };
            json_reply(
                200,
                json!({"status": status, "setup": {"status": "succeeded"}}),
            )
        }
        Route::Create => {
            let id = last_segment(request.path, 0);
            let busy = Busy::enter(&mock.running);
            if busy.already > 0 {
                return json_reply(
                    409,
                    json!({"error": "At capacity - all prediction slots busy"}),
                );
            }
            mock.most_running
                .fetch_max(busy.already + 1, Ordering::SeqCst);
            let video = request
                .json
                .pointer("/input/video")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut jobs_input = request.json.clone();
            jobs_input["id"] = json!(id);
            let job = mock.create_job(jobs_input, &video);
            let answer = loop {
                if mock.killed.load(Ordering::SeqCst) {
                    return reset_reply();
                }
                match mock.advance(&job) {
                    Some(JobState::Running(_)) => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Some(JobState::Done(_)) => {
                        let data = mock.output_bytes(&job).unwrap();
                        let uri = format!(
                            "data:video/mp4;base64,{}",
                            base64::engine::general_purpose::STANDARD.encode(data)
                        );
                        break json!({"id": id, "status": "succeeded", "output": uri, "logs": "", "metrics": {}});
                    }
                    Some(JobState::Failed(message)) => {
                        break json!({"id": id, "status": "failed", "error": message, "logs": ""});
                    }
                    Some(JobState::Canceled) | None => {
                        break json!({"id": id, "status": "canceled", "logs": ""});
                    }
                }
            };
            json_reply(200, answer)
        }
        Route::Cancel => {
            // The job is known under the server's own id; cancel the one this PUT made.
            let id = last_segment(request.path, 1);
            let job = mock
                .jobs
                .lock()
                .unwrap()
                .iter()
                .find(|(_, j)| j.input["id"] == json!(id))
                .map(|(k, _)| k.clone());
            match job {
                Some(job) => {
                    mock.cancel(&job);
                    StatusCode::OK.into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Counts a running prediction until its request ends, answered or dropped.
struct Busy<'a> {
    count: &'a AtomicUsize,
    already: usize,
}

impl<'a> Busy<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let already = count.fetch_add(1, Ordering::SeqCst);
        Self { count, already }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}
