//! A self-hosted Cog server, or a fleet of them (`endpoint=http://a:5000,http://b:5000`,
//! or a name that resolves to several addresses: see [`super::fleet`]).
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
//! error naming each server and why (and each name that cannot be resolved).

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
use super::fleet::Fleet;
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
    /// The server in errors and logs: its URL without the password, and the name and
    /// address it came from.
    pub shown: String,
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
    pub fn new(url: Url, shown: String) -> Self {
        Self {
            url,
            shown,
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

/// A server and its slot, taken for a window.
type Taken = (Arc<Server>, OwnedSemaphorePermit);

pub struct Cog {
    fleet: Fleet,
    /// Where the search for a free server starts, so that the fleet is used evenly.
    next: AtomicUsize,
}

impl Cog {
    pub fn new(fleet: Fleet) -> Self {
        Self {
            fleet,
            next: AtomicUsize::new(0),
        }
    }

    /// A free server that passed its health check, waiting for one if all are busy.
    /// The fleet's names are resolved again and servers out of the fleet checked again on
    /// the way: new servers join, and healthy ones come back.
    async fn take_server(&self, http: &Http) -> Result<Taken, BackendError> {
        loop {
            let servers = self.fleet.servers(http).await;
            join_all(servers.iter().filter(|s| s.is_due()).map(|s| s.check(http))).await;
            if let Some((server, slot)) = self.free_server(&servers).await?
                // Its name may have stopped resolving to it while the window waited.
                && self.fleet.holds(&server)
                && server.check(http).await.is_ok()
            {
                return Ok((server, slot));
            }
        }
    }

    /// A free server among those up; waits at most `RECHECK` while all are busy, then
    /// answers `None`, to look at the fleet again.
    async fn free_server(&self, servers: &[Arc<Server>]) -> Result<Option<Taken>, BackendError> {
        let up: Vec<&Arc<Server>> = servers.iter().filter(|s| s.is_up()).collect();
        if up.is_empty() {
            return Err(self.all_down(servers));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for server in (0..up.len()).map(|k| up[(start + k) % up.len()]) {
            if let Ok(permit) = server.slot.clone().try_acquire_owned() {
                return Ok(Some((server.clone(), permit)));
            }
        }
        let waits = up
            .iter()
            .map(|server| Box::pin(server.slot.clone().acquire_owned()));
        Ok(tokio::time::timeout(RECHECK, select_all(waits))
            .await
            .ok()
            .map(|(permit, k, _)| {
                let permit = permit.expect("server slots are never closed");
                (up[k].clone(), permit)
            }))
    }

    /// The error when no server is up: each one, and why it is out, and each name that
    /// cannot be resolved.
    fn all_down(&self, servers: &[Arc<Server>]) -> BackendError {
        let mut text = String::from("every Cog server is down:");
        for server in servers {
            let why = server
                .down
                .lock()
                .unwrap()
                .as_ref()
                .map_or_else(|| "back up".to_owned(), |down| down.why.clone());
            let _ = write!(text, " {} ({why});", server.shown);
        }
        for failure in self.fleet.failures() {
            let _ = write!(text, " {failure};");
        }
        text.pop();
        BackendError::Transport(text)
    }

    fn server_of(&self, job: &Job) -> Option<Arc<Server>> {
        self.fleet
            .members()
            .into_iter()
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
        let base = &server.url;
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
                // to the others. One that left the fleet is no longer asked.
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
