//! A self-hosted Cog server, or a fleet of them (`endpoint=http://a:5000,http://b:5000`).
//!
//! Each server runs one prediction at a time. A window takes a free server, and sends
//! `PUT /predictions/{id}` and waits for the answer: the server answers when the
//! prediction has ended, with its output inline (a data URI) or as a URL. The asynchronous
//! form (`Prefer: respond-async`, then the same PUT again to poll) cannot be used: Cog's
//! server (coglet) forgets a prediction when it ends, and the next PUT of the same id
//! starts it again, so its end is never seen. 409 means the server is busy (someone else
//! uses it): the window waits and tries again. Dropping the edit sends
//! `POST /predictions/{id}/cancel`.
//!
//! A window goes only to a server whose `GET /health-check` answers READY (or BUSY). A
//! server that fails it, refuses the connection, or drops a prediction and then fails it,
//! is out of the fleet; windows looking for a server check it again (at most once a
//! second) and take it back once healthy. With every server out, a window fails with an
//! error naming each server and why.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{join_all, select_all};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::fields::Fields;
use super::http::{Call, Http, Kind};
use super::join;
use super::prediction::{self, ListOutput};
use super::runner::{Inputs, Job, Media, Poll, Protocol};
use crate::backend::{BackendError, Resolution};

/// A server out of the fleet is checked again when a window looks for a server this long
/// after its last check.
const RECHECK: Duration = Duration::from_secs(1);
/// A health check gives up after this long: a server that cannot answer one is down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Server {
    pub url: Url,
    /// One prediction at a time: Cog's default.
    slot: Arc<Semaphore>,
    /// Why the server is out of the fleet, while it is.
    down: Mutex<Option<Down>>,
}

struct Down {
    why: String,
    checked: Instant,
}

impl Server {
    pub fn new(url: Url) -> Self {
        Self {
            url,
            slot: Arc::new(Semaphore::new(1)),
            down: Mutex::new(None),
        }
    }

    fn is_up(&self) -> bool {
        self.down.lock().unwrap().is_none()
    }

    /// Whether the server is down and its last check is old enough to check again.
    fn is_due(&self) -> bool {
        self.down
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|down| down.checked.elapsed() >= RECHECK)
    }

    /// Asks the server whether it can take predictions (`GET /health-check`: READY, or
    /// BUSY with someone else's), and takes it in or out of the fleet by the answer.
    async fn check(&self, http: &Http) -> Result<(), String> {
        let verdict = match join(&self.url, "health-check") {
            Ok(url) => {
                let probe = Call::new(Method::GET, url, Kind::Probe);
                match tokio::time::timeout(PROBE_TIMEOUT, http.send(&probe)).await {
                    Ok(Ok(body)) => health(&body),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!(
                        "no health-check answer within {} s",
                        PROBE_TIMEOUT.as_secs()
                    )),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        *self.down.lock().unwrap() = verdict.as_ref().err().map(|why| Down {
            why: why.clone(),
            checked: Instant::now(),
        });
        verdict
    }
}

/// Whether a health-check answer says the server can run a prediction.
fn health(body: &Value) -> Result<(), String> {
    match body.get("status").and_then(Value::as_str) {
        Some("READY" | "BUSY") => Ok(()),
        Some(status) => Err(format!("health check says {status}")),
        None => Err(format!("health check answered {}", super::short(body))),
    }
}

pub struct Cog {
    pub servers: Vec<Server>,
    /// Where the search for a free server starts, so that the fleet is used evenly.
    next: AtomicUsize,
}

impl Cog {
    pub fn new(servers: Vec<Server>) -> Self {
        Self {
            servers,
            next: AtomicUsize::new(0),
        }
    }

    /// A free server that passed its health check, waiting for one if all are busy.
    /// Servers out of the fleet are checked again on the way, and come back when healthy.
    async fn take_server(
        &self,
        http: &Http,
    ) -> Result<(usize, OwnedSemaphorePermit), BackendError> {
        loop {
            join_all(
                self.servers
                    .iter()
                    .filter(|s| s.is_due())
                    .map(|s| s.check(http)),
            )
            .await;
            let (server, slot) = self.free_server().await?;
            if self.servers[server].check(http).await.is_ok() {
                return Ok((server, slot));
            }
        }
    }

    /// A free server among those up; waits (at most `RECHECK`, to look at the fleet
    /// again) while all are busy.
    async fn free_server(&self) -> Result<(usize, OwnedSemaphorePermit), BackendError> {
        loop {
            let up: Vec<usize> = (0..self.servers.len())
                .filter(|&i| self.servers[i].is_up())
                .collect();
            if up.is_empty() {
                return Err(self.all_down());
            }
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for i in (0..up.len()).map(|k| up[(start + k) % up.len()]) {
                if let Ok(permit) = self.servers[i].slot.clone().try_acquire_owned() {
                    return Ok((i, permit));
                }
            }
            let waits = up
                .iter()
                .map(|&i| Box::pin(self.servers[i].slot.clone().acquire_owned()));
            if let Ok((permit, k, _)) = tokio::time::timeout(RECHECK, select_all(waits)).await {
                return Ok((up[k], permit.expect("server slots are never closed")));
            }
        }
    }

    /// The error when no server is up: each one, and why it is out.
    fn all_down(&self) -> BackendError {
        let mut text = String::from("every Cog server is down:");
        for server in &self.servers {
            let why = server
                .down
                .lock()
                .unwrap()
                .as_ref()
                .map_or_else(|| "back up".to_owned(), |down| down.why.clone());
            let shown = super::redacted_endpoint(server.url.as_str());
            let _ = write!(text, " {shown} ({why});");
        }
        text.pop();
        BackendError::Transport(text)
    }

    fn server_of(&self, job: &Job) -> Option<&Server> {
        self.servers
            .iter()
            .find(|s| job.poll.as_str().starts_with(s.url.as_str()))
    }
}

impl Protocol for Cog {
    async fn stage(&self, _http: &Http, media: Media) -> Result<String, BackendError> {
        // Cog reads data URIs; a server has no upload API of its own.
        Ok(media.data_uri())
    }

    async fn create(&self, http: &Http, inputs: Inputs<'_>) -> Result<Job, BackendError> {
        let (server, slot) = self.take_server(http).await?;
        let id = format!("wanedit-{:016x}", rand::random::<u64>());
        let base = &self.servers[server].url;
        let mut job = Job::new(id.clone(), join(base, &format!("predictions/{id}"))?);
        job.cancel = Some(join(base, &format!("predictions/{id}/cancel"))?);
        job.request = Some(json!({
            "id": id,
            "input": Fields::DIFFUSERS.input(&inputs, Resolution::default()),
        }));
        job.slot = Some(slot);
        Ok(job)
    }

    async fn poll(&self, http: &Http, job: &Job) -> Result<Poll, BackendError> {
        let request = job.request.clone().expect("cog jobs carry their request");
        // Kind::Create: a PUT of an ended prediction starts it again.
        let call = Call::new(Method::PUT, job.poll.clone(), Kind::Create)
            .json(request)
            .until_done()
            .carries_clip();
        let body = match http.send(&call).await {
            Ok(body) => body,
            Err(BackendError::Http { status: 409, .. }) => {
                return Ok(Poll::Pending { progress: None });
            }
            Err(e @ BackendError::Transport(_)) => {
                // The server may have died under the prediction: if so, later windows go
                // to the others.
                if let Some(server) = self.server_of(job) {
                    let _ = server.check(http).await;
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        prediction::poll(&body, ListOutput::Last)
    }

    async fn cancel(&self, http: &Http, job: &Job) -> Result<(), BackendError> {
        prediction::cancel(http, job).await
    }
}
